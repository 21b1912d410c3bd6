/* A small pool of native threads (POSIX threads; Win32 threads under _WIN32) for the fill kernels.
 *
 * fl_pool_for(n, grain, threads, work, ctx) splits the range [0, n) into pieces of `grain` items (the
 * last one shorter) and calls work(ctx, begin, end) once per piece, on up to `threads` threads: the calling
 * thread and threads - 1 pool workers.  Pieces are handed out one at a time from an atomic counter, so a
 * thread slowed by another process on its core simply takes fewer.  Which thread runs a piece, and in which
 * order, is unspecified: `work` must compute each piece from (begin, end) and ctx alone, never from the
 * thread or from another piece (that is what keeps the thread count from changing a value), and must not
 * call fl_pool_for itself (a nested call runs its pieces serially on the calling thread).
 *
 * Thread count rule: `threads` is capped at fl_pool_max_threads() = min(4 x the logical CPUs, 256), and at
 * the number of pieces; values below 1 mean 1.  It is never an error: when the system refuses a new thread
 * the pool runs with the workers it has (at worst the calling thread alone).
 *
 * Workers are created on first need and kept (blocked on a condition variable, all signals masked) for the
 * process's life.  Fork-safe: the child of a fork starts with an empty pool and creates its own workers
 * when it first needs them (the parent's do not exist in the child).  Calls from several threads at once
 * are safe: while one call uses the workers, another runs its pieces on its own calling thread. */
#ifndef FILLERS_POOL_H
#define FILLERS_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_POOL_MAX_THREADS 256   /* absolute cap, whatever the CPU count */
#define FL_POOL_THREADS_PER_CPU 4 /* ... and at most this many threads per logical CPU */

typedef void (*fl_pool_work)(void *ctx, int64_t begin, int64_t end);

/* Run work over [0, n) in pieces of `grain` items (grain >= 1) on up to `threads` threads; returns when
 * every piece is done.  n <= 0 does nothing. */
void fl_pool_for(int64_t n, int64_t grain, int threads, fl_pool_work work, void *ctx);

/* The thread count fl_pool_for will use at most for a request of `threads`: the rule above, without the
 * cap by the number of pieces. */
int fl_pool_threads(int threads);

/* min(FL_POOL_THREADS_PER_CPU x logical CPUs, FL_POOL_MAX_THREADS). */
int fl_pool_max_threads(void);

#ifdef __cplusplus
}
#endif

#endif
