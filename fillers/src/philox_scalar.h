/* The scalar dispatch path: one Philox block per group, one lane per "vector".  The reference every
 * SIMD path must reproduce byte for byte; the only path on non-x86 machines.  Included by philox_fill.c. */

#define FL_SFX(name) name##_scalar
#define FL_FN static inline
#define FL_KERNEL static
#define FL_GB 1
#define FL_NF 1
#define FL_NWV 4
#define FL_NPV 2
#define FL_NQV 1

#define FL_VF float
#define FL_VU uint32_t
#define FL_VD double
#define FL_VQ uint64_t

#define F_SET(c) ((float)(c))
#define F_ADD(a, b) ((a) + (b))
#define F_SUB(a, b) ((a) - (b))
#define F_MUL(a, b) ((a) * (b))
#define F_DIV(a, b) ((a) / (b))
#define F_SQRT(a) sqrtf(a)
#define F_MIN(a, b) ((a) < (b) ? (a) : (b))
#define F_FROM_U(u) ((float)(int32_t)(u))
#define F_BITS(x) fl_f32_bits(x)
#define F_FROM_BITS(u) fl_f32_from_bits(u)
#define F_STORE(p, v) (*(p) = (v))
#define U_SET(c) ((uint32_t)(c))
#define U_ADD(a, b) ((uint32_t)((a) + (b)))
#define U_SUB(a, b) ((uint32_t)((a) - (b)))
#define U_AND(a, b) ((a) & (b))
#define U_XOR(a, b) ((a) ^ (b))
#define U_SRL(a, n) ((uint32_t)(a) >> (n))
#define U_SLL(a, n) ((uint32_t)((a) << (n)))
#define U_SEL(m, a, b) (((m) & (a)) | (~(m) & (b)))

#define D_SET(c) ((double)(c))
#define D_ADD(a, b) ((a) + (b))
#define D_SUB(a, b) ((a) - (b))
#define D_MUL(a, b) ((a) * (b))
#define D_DIV(a, b) ((a) / (b))
#define D_SQRT(a) sqrt(a)
#define D_MIN(a, b) ((a) < (b) ? (a) : (b))
#define D_MAX(a, b) ((a) > (b) ? (a) : (b))
#define D_LT(a, b) ((a) < (b) ? ~(uint64_t)0 : (uint64_t)0)
#define D_FROM_U(u) ((double)(int64_t)(u))
#define D_BITS(x) fl_f64_bits(x)
#define D_FROM_BITS(u) fl_f64_from_bits(u)
#define Q_SET(c) ((uint64_t)(c))
#define Q_ADD(a, b) ((uint64_t)((a) + (b)))
#define Q_SUB(a, b) ((uint64_t)((a) - (b)))
#define Q_AND(a, b) ((a) & (b))
#define Q_XOR(a, b) ((a) ^ (b))
#define Q_SRL(a, n) ((uint64_t)(a) >> (n))
#define Q_SLL(a, n) ((uint64_t)((a) << (n)))
#define Q_SEL(m, a, b) (((m) & (a)) | (~(m) & (b)))

static inline uint32_t fl_f32_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fl_f32_from_bits(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint64_t fl_f64_bits(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double fl_f64_from_bits(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

static inline void fl_group_words_scalar(const fl_round_keys *rk, uint64_t b, uint32_t w[4])
{
    fl_philox_rounds(rk, b, w);
}

static inline void fl_group_pairs_scalar(const fl_round_keys *rk, uint64_t b, uint32_t w1[2], uint32_t w2[2])
{
    uint32_t w[4];
    fl_philox_rounds(rk, b, w);
    w1[0] = w[0];
    w2[0] = w[1];
    w1[1] = w[2];
    w2[1] = w[3];
}

static inline void fl_store_pairs_f32_scalar(const float x0[2], const float x1[2], float *dst)
{
    dst[0] = x0[0];
    dst[1] = x1[0];
    dst[2] = x0[1];
    dst[3] = x1[1];
}

static inline void fl_group_halves_scalar(const fl_round_keys *rk, uint64_t b, uint64_t a[1], uint64_t c[1])
{
    uint32_t w[4];
    fl_philox_rounds(rk, b, w);
    a[0] = (uint64_t)w[1] << 32 | w[0];
    c[0] = (uint64_t)w[3] << 32 | w[2];
}

static inline void fl_store_halves_f64_scalar(const double xa[1], const double xc[1], double *dst)
{
    dst[0] = xa[0];
    dst[1] = xc[0];
}

static inline void fl_keep_f32_scalar(uint32_t w, uint32_t thr, float *dst) { *dst *= (float)(w < thr); }
static inline void fl_keep_f64_scalar(uint32_t w, uint32_t thr, double *dst) { *dst *= (double)(w < thr); }

#include "philox_math.h"
#include "philox_kernels.h"
#include "philox_undef.h"
