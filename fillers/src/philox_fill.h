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
 *                                                   u2 = (w[2k+1] >> 8) * 2^-24
 *            float64  words 4k .. 4k+3:             u1 = (53 bits of w[4k], w[4k+1] + 1) * 2^-53
 *                                                   u2 = (53 bits of w[4k+2], w[4k+3]) * 2^-53
 *            r = sqrt(-2 ln u1); z[2k] = r cos(2 pi u2), z[2k+1] = r sin(2 pi u2); x = mean + std * z
 *   sparse   element i is kept iff word i of the block domain 2^63 + i / 4 is < p * 2^32;
 *            x *= keep (a dropped negative value becomes -0.0, as in Caffe)
 */
#ifndef FILLERS_PHILOX_FILL_H
#define FILLERS_PHILOX_FILL_H

#include <stdint.h>
#include "philox.h"

void fl_philox_raw(const fl_philox_key *key, uint64_t first, int64_t n, uint32_t *out);

void fl_philox_uniform_f32(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi, float *out);
void fl_philox_uniform_f64(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi, double *out);

void fl_philox_gaussian_f32(const fl_philox_key *key, int64_t first, int64_t n, float mean, float std, float *out);
void fl_philox_gaussian_f64(const fl_philox_key *key, int64_t first, int64_t n, double mean, double std,
                            double *out);

/* Multiply out[0 .. n) (flat indices first ..) by the Bernoulli(p) keep mask. */
void fl_philox_sparsify_f32(const fl_philox_key *key, int64_t first, int64_t n, double p, float *out);
void fl_philox_sparsify_f64(const fl_philox_key *key, int64_t first, int64_t n, double p, double *out);

#endif
