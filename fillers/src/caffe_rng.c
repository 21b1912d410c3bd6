/* Caffe's CPU random stream: MT19937 (block generation) and Boost.Random's distributions.
 * See caffe_rng.h.  The distribution code is written once in caffe_rng_dist.h and instantiated for float
 * and double below; only the raw-word adapters (how many words a Dtype sample takes) differ by type.
 * Built with -ffp-contract=off and without FMA targets: every expression rounds as in Caffe's build. */
#include <math.h>
#include <float.h>
#include <string.h>

#include "caffe_rng.h"
#include "caffe_tables.h"
#include "platform.h"

#define FL_MT_M 397
#define FL_MT_MATRIX_A 0x9908b0dfu
#define FL_MT_UPPER 0x80000000u
#define FL_MT_LOWER 0x7fffffffu

/* Run-time dispatch for the integer-only bulk loops (identical results on every path). */
#define FL_INT_CLONES FL_TARGET_CLONES("avx2", "default")

static inline uint32_t fl_mt_mix(uint32_t cur, uint32_t next, uint32_t far)
{
    const uint32_t y = (cur & FL_MT_UPPER) | (next & FL_MT_LOWER);
    return far ^ (y >> 1) ^ ((0u - (y & 1u)) & FL_MT_MATRIX_A);
}

/* One full twist of the block followed by tempering of all of it.  The loops are split where the
 * recurrence's read distance changes so that each one vectorises. */
FL_INT_CLONES
static void fl_mt_twist(fl_mt19937 *st)
{
    uint32_t *mt = st->key;
    int i;
    for (i = 0; i < FL_MT_N - FL_MT_M; ++i)
        mt[i] = fl_mt_mix(mt[i], mt[i + 1], mt[i + FL_MT_M]);
    for (; i < FL_MT_N - 1; ++i)
        mt[i] = fl_mt_mix(mt[i], mt[i + 1], mt[i + FL_MT_M - FL_MT_N]);
    mt[FL_MT_N - 1] = fl_mt_mix(mt[FL_MT_N - 1], mt[0], mt[FL_MT_M - 1]);
}

FL_INT_CLONES
static void fl_mt_temper(fl_mt19937 *st)
{
    for (int i = 0; i < FL_MT_N; ++i) {
        uint32_t y = st->key[i];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        st->out[i] = y;
    }
}

static void fl_mt_refill(fl_mt19937 *st)
{
    fl_mt_twist(st);
    fl_mt_temper(st);
    st->pos = 0;
    st->blocks += 1;
}

static inline uint32_t fl_mt_next(fl_mt19937 *st)
{
    if (st->pos >= FL_MT_N)
        fl_mt_refill(st);
    return st->out[st->pos++];
}

void fl_mt_seed(fl_mt19937 *st, uint32_t seed)
{
    st->key[0] = seed;
    for (uint32_t i = 1; i < FL_MT_N; ++i)
        st->key[i] = 1812433253u * (st->key[i - 1] ^ (st->key[i - 1] >> 30)) + i;
    fl_mt_temper(st);
    st->pos = FL_MT_N;
    st->blocks = 0;
}

void fl_mt_set(fl_mt19937 *st, const uint32_t *key, int32_t pos, uint64_t blocks)
{
    memcpy(st->key, key, sizeof st->key);
    fl_mt_temper(st);
    st->pos = pos;
    st->blocks = blocks;
}

void fl_mt_raw(fl_mt19937 *st, int64_t n, uint32_t *out)
{
    while (n > 0) {
        if (st->pos >= FL_MT_N)
            fl_mt_refill(st);
        int64_t m = FL_MT_N - st->pos;
        if (m > n)
            m = n;
        memcpy(out, st->out + st->pos, (size_t)m * sizeof *out);
        st->pos += (int32_t)m;
        out += m;
        n -= m;
    }
}

/* ---- raw-word adapters: the only places where float and double consume the stream differently ---- */

/* boost::random::detail::generate_int_float_pair<Dtype, 8> on a 32-bit engine.  The low 8 bits of the
 * first word are the bucket; float takes its 24 fraction bits from the same word, double takes 24 more
 * bits from it and 29 from a second word: r = (low29(u2) + (u1 >> 8) / 2^24) / 2^29. */
static inline float fl_int_float_pair_f32(fl_mt19937 *st, int *bucket)
{
    const uint32_t u = fl_mt_next(st);
    *bucket = (int)(u & 0xffu);
    return (float)(u >> 8) * 0x1p-24f;
}

static inline double fl_int_float_pair_f64(fl_mt19937 *st, int *bucket)
{
    const uint32_t u1 = fl_mt_next(st);
    *bucket = (int)(u1 & 0xffu);
    double r = (double)(u1 >> 8) * 0x1p-24;
    r += (double)(fl_mt_next(st) & 0x1fffffffu);
    return r * 0x1p-29;
}

/* boost::random::uniform_01<Dtype> (new_uniform_01) on a 32-bit engine: Dtype(u) * (1 / (Dtype(2^32 - 1) + 1)),
 * redrawn when it rounds to 1 (possible for float only). */
static inline float fl_uniform01_f32(fl_mt19937 *st)
{
    for (;;) {
        const float r = (float)fl_mt_next(st) * 0x1p-32f;
        if (r < 1.0f)
            return r;
    }
}

static inline double fl_uniform01_f64(fl_mt19937 *st)
{
    for (;;) {
        const double r = (double)fl_mt_next(st) * 0x1p-32;
        if (r < 1.0)
            return r;
    }
}

/* ---- the distributions, once per Dtype ---- */
#define T float
#define SUF f32
#define T_EXP expf
#define T_FABS fabsf
#define T_NEXTAFTER nextafterf
#define T_MAX FLT_MAX
#include "caffe_rng_dist.h"
#undef T
#undef SUF
#undef T_EXP
#undef T_FABS
#undef T_NEXTAFTER
#undef T_MAX

#define T double
#define SUF f64
#define T_EXP exp
#define T_FABS fabs
#define T_NEXTAFTER nextafter
#define T_MAX DBL_MAX
#include "caffe_rng_dist.h"
#undef T
#undef SUF
#undef T_EXP
#undef T_FABS
#undef T_NEXTAFTER
#undef T_MAX
