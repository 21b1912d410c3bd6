/* Caffe 1.0's CPU random stream: boost::mt19937 and the Boost.Random (>= 1.64, checked against 1.74)
 * distributions that Caffe's fillers draw from, reproduced bit for bit.
 *
 * One fl_mt19937 is one caffe::rng_t.  Every function consumes raw 32-bit words exactly as the Boost
 * distribution it mirrors, so successive calls continue the stream like successive fillers in one Caffe
 * process.  No global state, no allocation, no Python: the caller owns the state and must not use one state
 * from two threads at once. */
#ifndef FILLERS_CAFFE_RNG_H
#define FILLERS_CAFFE_RNG_H

#include <stdint.h>

#define FL_MT_N 624

typedef struct {
    uint32_t key[FL_MT_N];  /* the untempered MT19937 state block (numpy's MT19937 "key") */
    uint32_t out[FL_MT_N];  /* the tempered block, always equal to temper(key) */
    int32_t pos;            /* index of the next word in out; FL_MT_N: twist before the next draw */
    uint64_t blocks;        /* twists since seeding: words drawn = blocks * FL_MT_N + pos - FL_MT_N */
} fl_mt19937;

/* boost::mt19937(seed): the reference init_genrand; the first draw twists (pos = FL_MT_N). */
void fl_mt_seed(fl_mt19937 *st, uint32_t seed);
/* Restore a state saved as (key, pos, blocks); pos must be in [0, FL_MT_N]. */
void fl_mt_set(fl_mt19937 *st, const uint32_t *key, int32_t pos, uint64_t blocks);
/* n raw words, the engine's operator(). */
void fl_mt_raw(fl_mt19937 *st, int64_t n, uint32_t *out);

/* caffe_rng_uniform<Dtype>(n, lo, hi): boost::uniform_real<Dtype>(lo, nextafter(hi, max)).
 * Requires finite lo <= hi. */
void fl_caffe_uniform_f32(fl_mt19937 *st, int64_t n, float lo, float hi, float *out);
void fl_caffe_uniform_f64(fl_mt19937 *st, int64_t n, double lo, double hi, double *out);

/* caffe_rng_gaussian<Dtype>(n, mean, std): boost::normal_distribution<Dtype>(mean, std), the ziggurat of
 * Boost >= 1.64: unit normal * std + mean in Dtype. */
void fl_caffe_gaussian_f32(fl_mt19937 *st, int64_t n, float mean, float std, float *out);
void fl_caffe_gaussian_f64(fl_mt19937 *st, int64_t n, double mean, double std, double *out);

/* GaussianFiller's sparse step: caffe_rng_bernoulli<Dtype>(n, p, mask) then data[i] *= mask[i].
 * p in [0, 1]; p == 0 draws nothing (every mask is 0). */
void fl_caffe_bernoulli_mask_f32(fl_mt19937 *st, int64_t n, float p, float *data);
void fl_caffe_bernoulli_mask_f64(fl_mt19937 *st, int64_t n, double p, double *data);

#endif
