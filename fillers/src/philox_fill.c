/* Counter-based fill kernels and their run-time dispatch (see philox_fill.h for the stream contract).
 *
 * The kernels are written once (philox_math.h, philox_kernels.h) and instantiated per dispatch path: the
 * portable scalar path, and on x86-64 AVX2 and AVX-512 variants compiled with per-function target
 * attributes, so the extension runs on any x86-64 and the best path is chosen from the CPU at run time.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "philox_fill.h"
#include "platform.h"

/* GCC on x86 schedules instructions only after register allocation unless asked; scheduling before it, with
 * register pressure in view, interleaves the independent Philox and Box-Muller chains of a group (AVX2
 * kernels +15-20% on Zen 3).  It reorders instructions only: the values are the same. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)
#pragma GCC optimize("schedule-insns", "sched-pressure")
#endif

#if FL_X86_SIMD
#include <immintrin.h>
#endif

#define FL_MASK_DOMAIN ((uint64_t)1 << 63)

/* A key with its ten round keys precomputed (what the SIMD paths broadcast). */
typedef struct {
    uint32_t k0[10], k1[10];
    uint32_t s0, s1;
} fl_round_keys;

static void fl_make_round_keys(const fl_philox_key *key, fl_round_keys *rk)
{
    for (uint32_t r = 0; r < 10; ++r) {
        rk->k0[r] = (uint32_t)key->seed + r * FL_PHILOX_W0;
        rk->k1[r] = (uint32_t)(key->seed >> 32) + r * FL_PHILOX_W1;
    }
    rk->s0 = (uint32_t)key->stream;
    rk->s1 = (uint32_t)(key->stream >> 32);
}

static inline void fl_philox_rounds(const fl_round_keys *rk, uint64_t b, uint32_t out[4])
{
    fl_philox4x32_10((uint32_t)b, (uint32_t)(b >> 32), rk->s0, rk->s1, rk->k0[0], rk->k1[0], out);
}

/* One dispatch path's kernels. */
typedef struct {
    void (*uniform_f32)(const fl_philox_key *, int64_t, int64_t, float, float, float *);
    void (*uniform_f64)(const fl_philox_key *, int64_t, int64_t, double, double, double *);
    void (*gaussian_f32)(const fl_philox_key *, int64_t, int64_t, float, float, float *);
    void (*gaussian_f64)(const fl_philox_key *, int64_t, int64_t, double, double, double *);
    void (*sparsify_f32)(const fl_philox_key *, int64_t, int64_t, uint32_t, float *);
    void (*sparsify_f64)(const fl_philox_key *, int64_t, int64_t, uint32_t, double *);
    void (*truncated_f32)(const fl_philox_key *, int64_t, int64_t, const fl_truncated_params *, float *);
    void (*truncated_f64)(const fl_philox_key *, int64_t, int64_t, const fl_truncated_params *, double *);
} fl_philox_impl;

#include "philox_scalar.h"
#if FL_X86_SIMD
#include "philox_avx2.h"
#include "philox_avx512.h"
#endif

static const char *const fl_simd_names[FL_SIMD_COUNT] = {"scalar", "avx2", "avx512"};

static const fl_philox_impl *const fl_impls[FL_SIMD_COUNT] = {
    &fl_impl_scalar,
#if FL_X86_SIMD
    &fl_impl_avx2,
    &fl_impl_avx512,
#else
    NULL,
    NULL,
#endif
};

static int fl_path = -1; /* chosen on first use, or by fl_simd_set */

const char *fl_simd_name(int path) { return path >= 0 && path < FL_SIMD_COUNT ? fl_simd_names[path] : NULL; }

int fl_simd_supported(int path)
{
    switch (path) {
    case FL_SIMD_SCALAR:
        return 1;
#if FL_X86_SIMD
    case FL_SIMD_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
    case FL_SIMD_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    default:
        return 0;
    }
}

int fl_simd_best(void)
{
    for (int path = FL_SIMD_COUNT - 1; path > 0; --path)
        if (fl_simd_supported(path))
            return path;
    return FL_SIMD_SCALAR;
}

int fl_simd_set(int path)
{
    if (!fl_simd_supported(path))
        return -1;
    fl_path = path;
    return 0;
}

int fl_simd_get(void)
{
    if (fl_path < 0)
        fl_path = fl_simd_best();
    return fl_path;
}

static inline const fl_philox_impl *fl_impl(void) { return fl_impls[fl_simd_get()]; }

void fl_philox_raw(const fl_philox_key *key, uint64_t first, int64_t n, uint32_t *out)
{
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t w = first + (uint64_t)j;
        if (j == 0 || (w & 3) == 0)
            fl_philox_block(key, w >> 2, block);
        out[j] = block[w & 3];
    }
}

void fl_philox_uniform_f32(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi, float *out)
{
    if (n > 0)
        fl_impl()->uniform_f32(key, first, n, lo, hi, out);
}

void fl_philox_uniform_f64(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi, double *out)
{
    if (n > 0)
        fl_impl()->uniform_f64(key, first, n, lo, hi, out);
}

void fl_philox_gaussian_f32(const fl_philox_key *key, int64_t first, int64_t n, float mean, float std, float *out)
{
    if (n > 0)
        fl_impl()->gaussian_f32(key, first, n, mean, std, out);
}

void fl_philox_gaussian_f64(const fl_philox_key *key, int64_t first, int64_t n, double mean, double std,
                            double *out)
{
    if (n > 0)
        fl_impl()->gaussian_f64(key, first, n, mean, std, out);
}

void fl_philox_truncated_f32(const fl_philox_key *key, int64_t first, int64_t n, const fl_truncated_params *t,
                             float *out)
{
    if (n > 0)
        fl_impl()->truncated_f32(key, first, n, t, out);
}

void fl_philox_truncated_f64(const fl_philox_key *key, int64_t first, int64_t n, const fl_truncated_params *t,
                             double *out)
{
    if (n > 0)
        fl_impl()->truncated_f64(key, first, n, t, out);
}

/* p * 2^32 as the keep threshold; p >= 1 keeps everything (x * 1 == x), so no pass is needed. */
static inline int fl_keep_threshold(double p, uint32_t *thr)
{
    const uint64_t t = (uint64_t)(p * 4294967296.0);
    *thr = (uint32_t)t;
    return t <= 0xffffffffu;
}

void fl_philox_sparsify_f32(const fl_philox_key *key, int64_t first, int64_t n, double p, float *out)
{
    uint32_t thr;
    if (n > 0 && fl_keep_threshold(p, &thr))
        fl_impl()->sparsify_f32(key, first, n, thr, out);
}

void fl_philox_sparsify_f64(const fl_philox_key *key, int64_t first, int64_t n, double p, double *out)
{
    uint32_t thr;
    if (n > 0 && fl_keep_threshold(p, &thr))
        fl_impl()->sparsify_f64(key, first, n, thr, out);
}
