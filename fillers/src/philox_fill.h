/* Counter-based fill kernels: every output element depends only on (key, its flat index, parameters).
 *
 * Each function fills out[0 .. n) with the elements whose flat indices in the whole blob are
 * first .. first + n - 1, so a blob can be filled in any pieces, on any number of threads, with
 * identical bytes.  The transforms from raw Philox words (see philox.h; word j = word j % 4 of block j / 4)
 * are part of the stream contract documented in README.md:
 *
 *   uniform  float32  element i: word i;            u = (w >> 8) * 2^-24 in [0, 1)
 *            float64  element i: words 2i, 2i+1;    u = ((w[2i+1] << 32 | w[2i]) >> 11) * 2^-53
 *            x = min(lo + (hi - lo) * u, hi)
 *   gaussian elements 2k, 2k+1 form a Box-Muller pair
 *            float32  words 2k, 2k+1:               u1 = ((w[2k] >> 8) + 1) * 2^-24 in (0, 1]
 *                                                   t  = (w[2k+1] >> 8) * 2^-24
 *            float64  words 4k .. 4k+3:             u1 = (((w[4k+1] << 32 | w[4k]) >> 11) + 1) * 2^-53
 *                                                   t  = ((w[4k+3] << 32 | w[4k+2]) >> 11) * 2^-53
 *            r = sqrt(-2 ln u1); z[2k] = r cos(2 pi t), z[2k+1] = r sin(2 pi t); x = mean + std * z
 *            ln, cos and sin are fillers' own (philox_math.h: fdlibm-style ln with our polynomial; sin/cos
 *            in turns after the exact reduction t = q/4 + y, |y| <= 1/8, with our polynomials in y),
 *            evaluated in the element type without FMA: a few ulp from the exact values, and the same
 *            bytes on every CPU, dispatch path, compiler and libm.
 *   truncated_gaussian  element i: words 2i, 2i+1 -> u as for the float64 uniform, in float64 for both types:
 *            p = min(p_lo + p_span u, 1 - 2^-53), x = min(hi, max(lo, mean + scale ndtri(p))), ndtri by AS 241
 *            (ndtri_as241.h) with fl_log_f64; a float32 element is that float64 value rounded once
 *   sparse   element i is kept iff word i of the block domain 2^63 + i / 4 is < p * 2^32 (p < 1);
 *            x *= keep (a dropped negative value becomes -0.0, as in Caffe)
 *
 * Compatibility: the values for a given (seed, stream, filler, shape) change only with a new minor
 * version that says so in its release notes (the words -> value rules above, including the polynomial
 * coefficients in philox_poly.h, are the whole contract; tests pin sha256 digests of reference fills).
 *
 * Dispatch: the scalar path is the reference; on x86-64 AVX2 and AVX-512 (F, DQ, BW, VL) paths are chosen
 * at run time from the CPU (fl_simd_best) unless fl_simd_set forces one; all give identical bytes.
 */
#ifndef FILLERS_PHILOX_FILL_H
#define FILLERS_PHILOX_FILL_H

#include <stdint.h>
#include "philox.h"

/* Dispatch paths, best last. */
enum { FL_SIMD_SCALAR = 0, FL_SIMD_AVX2 = 1, FL_SIMD_AVX512 = 2, FL_SIMD_COUNT = 3 };

const char *fl_simd_name(int path);  /* "scalar", "avx2", "avx512"; NULL when out of range */
int fl_simd_supported(int path);     /* compiled in and supported by this CPU */
int fl_simd_best(void);              /* the best supported path */
int fl_simd_set(int path);           /* force a path: 0, or -1 when unsupported (nothing changes) */
int fl_simd_get(void);               /* the active path (fl_simd_best() until fl_simd_set) */

void fl_philox_raw(const fl_philox_key *key, uint64_t first, int64_t n, uint32_t *out);

void fl_philox_uniform_f32(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi, float *out);
void fl_philox_uniform_f64(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi, double *out);

void fl_philox_gaussian_f32(const fl_philox_key *key, int64_t first, int64_t n, float mean, float std, float *out);
void fl_philox_gaussian_f64(const fl_philox_key *key, int64_t first, int64_t n, double mean, double std,
                            double *out);

/* The inverse-CDF truncated normal: p_lo = Phi(alpha) >= 2^-1022 and p_span = Phi(beta) - Phi(alpha) of the
 * standardised bounds (the caller mirrors the interval into the lower half, scale = -std, for accurate tails),
 * lo/hi the bounds in the element type. */
typedef struct {
    double p_lo, p_span, mean, scale, lo, hi;
} fl_truncated_params;

void fl_philox_truncated_f32(const fl_philox_key *key, int64_t first, int64_t n, const fl_truncated_params *t,
                             float *out);
void fl_philox_truncated_f64(const fl_philox_key *key, int64_t first, int64_t n, const fl_truncated_params *t,
                             double *out);

/* Multiply out[0 .. n) (flat indices first ..) by the Bernoulli(p) keep mask; p >= 1 leaves out as is. */
void fl_philox_sparsify_f32(const fl_philox_key *key, int64_t first, int64_t n, double p, float *out);
void fl_philox_sparsify_f64(const fl_philox_key *key, int64_t first, int64_t n, double p, double *out);

#endif
