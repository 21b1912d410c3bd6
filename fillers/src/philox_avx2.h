/* The AVX2 dispatch path: 12 Philox blocks per group, in FL_NV = 3 vectors of 4 blocks, one block per 64-bit
 * lane (see philox_avx512.h for the layout; here lane j of vector v runs block 4 v + (0, 2, 1, 3)[j] of the
 * group).  A Philox round is a dependent chain of multiply (3 cycles), shift and XOR: independent vectors
 * interleaved round by round fill its latency.  Three measured fastest on Zen 3 for every float32 kernel
 * (+20-35% over one; four spill registers).  Included by philox_fill.c. */
#define FL_SFX(name) name##_avx2
#define FL_TARGET __attribute__((target("avx2")))
#define FL_FN static inline FL_TARGET
#define FL_KERNEL static FL_TARGET
#define FL_NV 3
#define FL_GB (4 * FL_NV)
#define FL_NF 8
#define FL_NWV (2 * FL_NV)
#define FL_NPV FL_NV
#define FL_NQV FL_NV

#define FL_VF __m256
#define FL_VU __m256i
#define FL_VD __m256d
#define FL_VQ __m256i

#define F_SET(c) _mm256_set1_ps(c)
#define F_ADD _mm256_add_ps
#define F_SUB _mm256_sub_ps
#define F_MUL _mm256_mul_ps
#define F_DIV _mm256_div_ps
#define F_SQRT _mm256_sqrt_ps
#define F_MIN _mm256_min_ps
#define F_FROM_U _mm256_cvtepi32_ps
#define F_BITS _mm256_castps_si256
#define F_FROM_BITS _mm256_castsi256_ps
#define F_STORE _mm256_storeu_ps
#define U_SET(c) _mm256_set1_epi32((int)(c))
#define U_ADD _mm256_add_epi32
#define U_SUB _mm256_sub_epi32
#define U_AND _mm256_and_si256
#define U_XOR _mm256_xor_si256
#define U_SRL _mm256_srli_epi32
#define U_SLL _mm256_slli_epi32
#define U_SEL(m, a, b) _mm256_blendv_epi8(b, a, m) /* m: all-ones or all-zero lanes */

#define D_SET(c) _mm256_set1_pd(c)
#define D_ADD _mm256_add_pd
#define D_SUB _mm256_sub_pd
#define D_MUL _mm256_mul_pd
#define D_DIV _mm256_div_pd
#define D_SQRT _mm256_sqrt_pd
#define D_MIN _mm256_min_pd
#define D_MAX _mm256_max_pd
#define D_LT(a, b) _mm256_castpd_si256(_mm256_cmp_pd(a, b, _CMP_LT_OQ))
#define D_FROM_U fl_u53_to_f64_avx2
#define D_BITS _mm256_castpd_si256
#define D_FROM_BITS _mm256_castsi256_pd
#define Q_SET(c) _mm256_set1_epi64x((long long)(c))
#define Q_ADD _mm256_add_epi64
#define Q_SUB _mm256_sub_epi64
#define Q_AND _mm256_and_si256
#define Q_XOR _mm256_xor_si256
#define Q_SRL _mm256_srli_epi64
#define Q_SLL _mm256_slli_epi64
#define Q_SEL(m, a, b) _mm256_blendv_epi8(b, a, m)

/* Exact conversion of uint64 lanes <= 2^53 (AVX2 has none): (2^84 + hi 2^32) - 2^84 + (2^52 + lo) - 2^52,
 * every step exact. */
FL_FN __m256d fl_u53_to_f64_avx2(__m256i u)
{
    const __m256i hi = _mm256_srli_epi64(u, 32);
    const __m256i lo = _mm256_blend_epi32(u, _mm256_setzero_si256(), 0xaa);
    const __m256d dhi = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(hi, _mm256_set1_epi64x(0x4530000000000000))),
                                      _mm256_set1_pd(0x1p84));
    const __m256d dlo = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(lo, _mm256_set1_epi64x(0x4330000000000000))),
                                      _mm256_set1_pd(0x1p52));
    return _mm256_add_pd(dhi, dlo);
}

/* Blocks b .. b + 4 FL_NV - 1: vector v runs blocks b + 4 v + (0, 2, 1, 3)[j] in its 64-bit lanes j, with
 * counter word i of each in c[v][i]'s low halves. */
FL_FN void fl_philox_avx2(const fl_round_keys *rk, uint64_t b, __m256i c[FL_NV][4])
{
    const __m256i m0 = _mm256_set1_epi64x(FL_PHILOX_M0), m1 = _mm256_set1_epi64x(FL_PHILOX_M1);
    for (int v = 0; v < FL_NV; ++v) {
        const __m256i ctr = _mm256_add_epi64(_mm256_set1_epi64x((long long)(b + 4 * (uint64_t)v)),
                                             _mm256_set_epi64x(3, 1, 2, 0));
        c[v][0] = ctr;
        c[v][1] = _mm256_srli_epi64(ctr, 32);
        c[v][2] = _mm256_set1_epi64x(rk->s0);
        c[v][3] = _mm256_set1_epi64x(rk->s1);
    }
    for (int r = 0; r < 10; ++r) {
        const __m256i k0 = _mm256_set1_epi32((int)rk->k0[r]), k1 = _mm256_set1_epi32((int)rk->k1[r]);
        for (int v = 0; v < FL_NV; ++v) {
            const __m256i p0 = _mm256_mul_epu32(c[v][0], m0), p1 = _mm256_mul_epu32(c[v][2], m1);
            c[v][0] = _mm256_xor_si256(_mm256_srli_epi64(p1, 32), _mm256_xor_si256(c[v][1], k0));
            c[v][2] = _mm256_xor_si256(_mm256_srli_epi64(p0, 32), _mm256_xor_si256(c[v][3], k1));
            c[v][1] = p1;
            c[v][3] = p0;
        }
    }
}

FL_FN __m256i fl_join_avx2(__m256i lo, __m256i hi)
{
    return _mm256_blend_epi32(lo, _mm256_slli_epi64(hi, 32), 0xaa);
}

FL_FN void fl_group_halves_avx2(const fl_round_keys *rk, uint64_t b, __m256i a[FL_NV], __m256i c[FL_NV])
{
    __m256i w[FL_NV][4];
    fl_philox_avx2(rk, b, w);
    for (int v = 0; v < FL_NV; ++v) {
        a[v] = fl_join_avx2(w[v][0], w[v][1]);
        c[v] = fl_join_avx2(w[v][2], w[v][3]);
    }
}

FL_FN void fl_group_words_avx2(const fl_round_keys *rk, uint64_t b, __m256i w[2 * FL_NV])
{
    __m256i a[FL_NV], c[FL_NV];
    fl_group_halves_avx2(rk, b, a, c);
    for (int v = 0; v < FL_NV; ++v) {
        w[2 * v] = _mm256_unpacklo_epi64(a[v], c[v]);     /* lanes 0, 2: blocks 4 v, 4 v + 1 */
        w[2 * v + 1] = _mm256_unpackhi_epi64(a[v], c[v]); /* blocks 4 v + 2, 4 v + 3 */
    }
}

FL_FN void fl_group_pairs_avx2(const fl_round_keys *rk, uint64_t b, __m256i w1[FL_NV], __m256i w2[FL_NV])
{
    __m256i w[FL_NV][4];
    fl_philox_avx2(rk, b, w);
    for (int v = 0; v < FL_NV; ++v) {
        w1[v] = fl_join_avx2(w[v][0], w[v][2]);
        w2[v] = fl_join_avx2(w[v][1], w[v][3]);
    }
}

FL_FN void fl_store_pairs_f32_avx2(const __m256 x0[FL_NV], const __m256 x1[FL_NV], float *dst)
{
    for (int v = 0; v < FL_NV; ++v) {
        _mm256_storeu_ps(dst + 16 * v, _mm256_unpacklo_ps(x0[v], x1[v]));
        _mm256_storeu_ps(dst + 16 * v + 8, _mm256_unpackhi_ps(x0[v], x1[v]));
    }
}

FL_FN void fl_store_halves_f64_avx2(const __m256d xa[FL_NV], const __m256d xc[FL_NV], double *dst)
{
    for (int v = 0; v < FL_NV; ++v) {
        _mm256_storeu_pd(dst + 8 * v, _mm256_unpacklo_pd(xa[v], xc[v]));
        _mm256_storeu_pd(dst + 8 * v + 4, _mm256_unpackhi_pd(xa[v], xc[v]));
    }
}

/* All-ones lanes where w < thr (unsigned, by flipping the sign bits). */
FL_FN __m256i fl_below_avx2(__m256i w, uint32_t thr)
{
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(thr ^ 0x80000000u)), _mm256_xor_si256(w, sign));
}

FL_FN void fl_keep_f32_avx2(__m256i w, uint32_t thr, float *dst)
{
    const __m256 x = _mm256_loadu_ps(dst);
    _mm256_storeu_ps(dst, _mm256_blendv_ps(_mm256_mul_ps(x, _mm256_setzero_ps()), x,
                                           _mm256_castsi256_ps(fl_below_avx2(w, thr))));
}

FL_FN void fl_keep_f64_avx2(__m256i w, uint32_t thr, double *dst)
{
    const __m256i keep = fl_below_avx2(w, thr);
    const __m256i halves[2] = {_mm256_cvtepi32_epi64(_mm256_castsi256_si128(keep)),
                               _mm256_cvtepi32_epi64(_mm256_extracti128_si256(keep, 1))};
    for (int h = 0; h < 2; ++h) {
        const __m256d x = _mm256_loadu_pd(dst + 4 * h);
        _mm256_storeu_pd(dst + 4 * h, _mm256_blendv_pd(_mm256_mul_pd(x, _mm256_setzero_pd()), x,
                                                       _mm256_castsi256_pd(halves[h])));
    }
}

#include "philox_math.h"
#include "philox_kernels.h"
#include "philox_undef.h"
#undef FL_TARGET
#undef FL_NV
