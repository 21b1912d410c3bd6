/* The thread pool behind every multithreaded fill (see pool.h for the contract).
 *
 * One process-wide pool.  A call that finds the workers idle claims them: it publishes its job and opens
 * `seats` places in it; each worker that wakes takes a seat and then pulls pieces from the job's atomic
 * counter, as the calling thread does.  Whoever finds the counter exhausted closes the remaining seats, and
 * the caller returns only once every seated worker has left, so no worker ever touches a finished job (it
 * lives on the caller's stack).  A call that finds the workers claimed runs its own pieces serially. */
#if defined(__linux__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask, sysconf under -std=c11 (glibc, musl) */
#endif
#include <stddef.h>
#include <stdint.h>

#include "pool.h"

/* Workers run kernels with stack buffers of a few tens of KiB; musl's default thread stack is 128 KiB. */
#define FL_POOL_STACK_BYTES (1u << 21)

#ifdef _WIN32
#include <process.h>
#include <windows.h>

typedef SRWLOCK fl_mutex;
typedef CONDITION_VARIABLE fl_cond;
typedef volatile LONG64 fl_counter;
#define FL_MUTEX_INIT SRWLOCK_INIT
#define FL_COND_INIT CONDITION_VARIABLE_INIT
#define fl_lock(m) AcquireSRWLockExclusive(m)
#define fl_unlock(m) ReleaseSRWLockExclusive(m)
#define fl_wait(c, m) SleepConditionVariableSRW((c), (m), INFINITE, 0)
#define fl_signal(c) WakeConditionVariable(c)
#define fl_counter_set(c, v) InterlockedExchange64((c), (LONG64)(v))
#define fl_counter_next(c) ((int64_t)InterlockedExchangeAdd64((c), 1))
#else
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

typedef pthread_mutex_t fl_mutex;
typedef pthread_cond_t fl_cond;
typedef atomic_size_t fl_counter; /* size_t: lock-free everywhere, no libatomic on 32-bit targets */
#define FL_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define FL_COND_INIT PTHREAD_COND_INITIALIZER
#define fl_lock(m) pthread_mutex_lock(m)
#define fl_unlock(m) pthread_mutex_unlock(m)
#define fl_wait(c, m) pthread_cond_wait((c), (m))
#define fl_signal(c) pthread_cond_signal(c)
#define fl_counter_set(c, v) atomic_store_explicit((c), (size_t)(v), memory_order_relaxed)
#define fl_counter_next(c) ((int64_t)atomic_fetch_add_explicit((c), 1, memory_order_relaxed))
#endif

typedef struct {
    fl_pool_work work;
    void *ctx;
    int64_t n, grain, pieces;
    fl_counter next; /* the next piece to hand out */
} fl_pool_job;

static struct {
    fl_mutex lock;
    fl_cond wake;     /* workers: seats opened */
    fl_cond left;     /* the caller: the last seated worker left */
    int workers;      /* created (never destroyed) */
    int claimed;      /* a call owns the workers */
    int seats;        /* workers that may still join `job` */
    int active;       /* workers inside `job` */
    fl_pool_job *job;
} fl_pool = {FL_MUTEX_INIT, FL_COND_INIT, FL_COND_INIT, 0, 0, 0, 0, NULL};

static int fl_pool_cpus = 1;

static void fl_pool_run_pieces(fl_pool_job *job)
{
    for (int64_t i; (i = fl_counter_next(&job->next)) < job->pieces;) {
        const int64_t begin = i * job->grain;
        job->work(job->ctx, begin, job->n - begin < job->grain ? job->n : begin + job->grain);
    }
}

static void fl_pool_worker_loop(void)
{
    fl_lock(&fl_pool.lock);
    for (;;) {
        while (fl_pool.seats == 0)
            fl_wait(&fl_pool.wake, &fl_pool.lock);
        fl_pool_job *job = fl_pool.job;
        --fl_pool.seats;
        ++fl_pool.active;
        fl_unlock(&fl_pool.lock);
        fl_pool_run_pieces(job);
        fl_lock(&fl_pool.lock);
        fl_pool.seats = 0; /* the counter is exhausted: a worker joining now would find nothing */
        if (--fl_pool.active == 0)
            fl_signal(&fl_pool.left);
    }
}

#ifdef _WIN32
static unsigned __stdcall fl_pool_worker(void *arg)
{
    (void)arg;
    fl_pool_worker_loop();
    return 0;
}

static int fl_pool_spawn(void)
{
    const uintptr_t h = _beginthreadex(NULL, FL_POOL_STACK_BYTES, fl_pool_worker, NULL,
                                       STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (h == 0)
        return -1;
    CloseHandle((HANDLE)h);
    return 0;
}

static INIT_ONCE fl_pool_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK fl_pool_init(PINIT_ONCE once, PVOID param, PVOID *context)
{
    (void)once, (void)param, (void)context;
    const DWORD cpus = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    fl_pool_cpus = cpus > 0 ? (int)(cpus < FL_POOL_MAX_THREADS ? cpus : FL_POOL_MAX_THREADS) : 1;
    return TRUE;
}

static void fl_pool_init_once(void) { InitOnceExecuteOnce(&fl_pool_once, fl_pool_init, NULL, NULL); }
#else
static void *fl_pool_worker(void *arg)
{
    (void)arg;
    fl_pool_worker_loop();
    return NULL;
}

/* A worker with every signal blocked (signals go to the threads the program made), detached. */
static int fl_pool_spawn(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    int err;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, FL_POOL_STACK_BYTES);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&thread, &attr, fl_pool_worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return err == 0 ? 0 : -1;
}

/* fork: hold the lock across it so the child's copy of the pool is consistent, then give the child an
 * empty pool (the parent's workers do not exist there; the forking thread is the child's only thread). */
static void fl_pool_before_fork(void) { fl_lock(&fl_pool.lock); }
static void fl_pool_after_fork_parent(void) { fl_unlock(&fl_pool.lock); }

static void fl_pool_after_fork_child(void)
{
    pthread_mutex_init(&fl_pool.lock, NULL);
    pthread_cond_init(&fl_pool.wake, NULL);
    pthread_cond_init(&fl_pool.left, NULL);
    fl_pool.workers = fl_pool.claimed = fl_pool.seats = fl_pool.active = 0;
    fl_pool.job = NULL;
}

static pthread_once_t fl_pool_once = PTHREAD_ONCE_INIT;

static void fl_pool_init(void)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    fl_pool_cpus = cpus > 0 ? (int)(cpus < FL_POOL_MAX_THREADS ? cpus : FL_POOL_MAX_THREADS) : 1;
    pthread_atfork(fl_pool_before_fork, fl_pool_after_fork_parent, fl_pool_after_fork_child);
}

static void fl_pool_init_once(void) { pthread_once(&fl_pool_once, fl_pool_init); }
#endif

int fl_pool_max_threads(void)
{
    fl_pool_init_once();
    const int cap = FL_POOL_THREADS_PER_CPU * fl_pool_cpus;
    return cap < FL_POOL_MAX_THREADS ? cap : FL_POOL_MAX_THREADS;
}

int fl_pool_threads(int threads)
{
    const int cap = fl_pool_max_threads();
    return threads < 1 ? 1 : threads > cap ? cap : threads;
}

/* Claim the workers for `job` with up to `helpers` of them (creating missing ones); 0 when another call
 * holds them or none could be created. */
static int fl_pool_claim(fl_pool_job *job, int helpers)
{
    fl_lock(&fl_pool.lock);
    if (fl_pool.claimed) {
        fl_unlock(&fl_pool.lock);
        return 0;
    }
    while (fl_pool.workers < helpers && fl_pool_spawn() == 0)
        ++fl_pool.workers;
    if (fl_pool.workers == 0) {
        fl_unlock(&fl_pool.lock);
        return 0;
    }
    fl_pool.claimed = 1;
    fl_pool.job = job;
    fl_pool.seats = helpers < fl_pool.workers ? helpers : fl_pool.workers;
    for (int i = 0; i < fl_pool.seats; ++i)
        fl_signal(&fl_pool.wake);
    fl_unlock(&fl_pool.lock);
    return 1;
}

static void fl_pool_release(void)
{
    fl_lock(&fl_pool.lock);
    fl_pool.seats = 0;
    while (fl_pool.active > 0)
        fl_wait(&fl_pool.left, &fl_pool.lock);
    fl_pool.job = NULL;
    fl_pool.claimed = 0;
    fl_unlock(&fl_pool.lock);
}

void fl_pool_for(int64_t n, int64_t grain, int threads, fl_pool_work work, void *ctx)
{
    fl_pool_job job;
    if (n <= 0)
        return;
    job.work = work;
    job.ctx = ctx;
    job.n = n;
    job.grain = grain < 1 ? 1 : grain;
    job.pieces = (n - 1) / job.grain + 1;
    fl_counter_set(&job.next, 0);
    threads = fl_pool_threads(threads);
    if (threads > 1 && job.pieces > 1 && (uint64_t)job.pieces < SIZE_MAX / 2 &&
        fl_pool_claim(&job, (int)(job.pieces - 1 < threads - 1 ? job.pieces - 1 : threads - 1))) {
        fl_pool_run_pieces(&job);
        fl_pool_release();
        return;
    }
    fl_pool_run_pieces(&job);
}
