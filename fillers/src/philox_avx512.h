/* The AVX-512 dispatch path (F, DQ, BW, VL): 8 Philox blocks per group, one block per 64-bit lane.
 *
 * Each 64-bit lane carries one block's counter word in its low half; _mm512_mul_epu32 multiplies those low
 * halves into full 64-bit products, so a Philox round is two multiplies, two shifts and two three-way XORs
 * (vpternlogq) for 8 blocks; the high halves hold garbage that no later step reads.  Lane j runs block
 * FL_LANE_BLOCK[j] = (0, 4, 1, 5, 2, 6, 3, 7)[j] of the group, so the in-lane unpacks that interleave
 * results leave blocks 0-3 in the low vector and 4-7 in the high one: stores need no cross-lane shuffle.
 * Compiled with a target attribute and chosen at run time (never -march flags). Included by philox_fill.c.
 */
#define FL_SFX(name) name##_avx512
#define FL_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#define FL_FN static inline FL_TARGET
#define FL_KERNEL static FL_TARGET
#define FL_GB 8
#define FL_NF 16
#define FL_NWV 2
#define FL_NPV 1
#define FL_NQV 1

#define FL_VF __m512
#define FL_VU __m512i
#define FL_VD __m512d
#define FL_VQ __m512i

#define F_SET(c) _mm512_set1_ps(c)
#define F_ADD _mm512_add_ps
#define F_SUB _mm512_sub_ps
#define F_MUL _mm512_mul_ps
#define F_DIV _mm512_div_ps
#define F_SQRT _mm512_sqrt_ps
#define F_MIN _mm512_min_ps
#define F_FROM_U _mm512_cvtepi32_ps
#define F_BITS _mm512_castps_si512
#define F_FROM_BITS _mm512_castsi512_ps
#define F_STORE _mm512_storeu_ps
#define U_SET(c) _mm512_set1_epi32((int)(c))
#define U_ADD _mm512_add_epi32
#define U_SUB _mm512_sub_epi32
#define U_AND _mm512_and_si512
#define U_XOR _mm512_xor_si512
#define U_SRL _mm512_srli_epi32
#define U_SLL _mm512_slli_epi32
#define U_SEL(m, a, b) _mm512_ternarylogic_epi32(m, a, b, 0xca)

#define D_SET(c) _mm512_set1_pd(c)
#define D_ADD _mm512_add_pd
#define D_SUB _mm512_sub_pd
#define D_MUL _mm512_mul_pd
#define D_DIV _mm512_div_pd
#define D_SQRT _mm512_sqrt_pd
#define D_MIN _mm512_min_pd
#define D_MAX _mm512_max_pd
#define D_LT(a, b) _mm512_movm_epi64(_mm512_cmp_pd_mask(a, b, _CMP_LT_OQ))
#define D_FROM_U _mm512_cvtepi64_pd
#define D_BITS _mm512_castpd_si512
#define D_FROM_BITS _mm512_castsi512_pd
#define Q_SET(c) _mm512_set1_epi64((long long)(c))
#define Q_ADD _mm512_add_epi64
#define Q_SUB _mm512_sub_epi64
#define Q_AND _mm512_and_si512
#define Q_XOR _mm512_xor_si512
#define Q_SRL _mm512_srli_epi64
#define Q_SLL _mm512_slli_epi64
#define Q_SEL(m, a, b) _mm512_ternarylogic_epi64(m, a, b, 0xca)

/* Blocks b .. b + 7 (lane j: block b + FL_LANE_BLOCK[j]); c[i] holds counter word i in its low halves. */
FL_FN void fl_philox_avx512(const fl_round_keys *rk, uint64_t b, __m512i c[4])
{
    const __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64((long long)b), _mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0));
    const __m512i m0 = _mm512_set1_epi64(FL_PHILOX_M0), m1 = _mm512_set1_epi64(FL_PHILOX_M1);
    __m512i c0 = ctr, c1 = _mm512_srli_epi64(ctr, 32);
    __m512i c2 = _mm512_set1_epi64(rk->s0), c3 = _mm512_set1_epi64(rk->s1);
    for (int r = 0; r < 10; ++r) {
        const __m512i p0 = _mm512_mul_epu32(c0, m0), p1 = _mm512_mul_epu32(c2, m1);
        c0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1, _mm512_set1_epi32((int)rk->k0[r]), 0x96);
        c2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3, _mm512_set1_epi32((int)rk->k1[r]), 0x96);
        c1 = p1;
        c3 = p0;
    }
    c[0] = c0;
    c[1] = c1;
    c[2] = c2;
    c[3] = c3;
}

/* Low halves of lo, high halves from the low halves of hi: per lane, (hi << 32) | lo. */
FL_FN __m512i fl_join_avx512(__m512i lo, __m512i hi)
{
    return _mm512_mask_blend_epi32(0xaaaa, lo, _mm512_slli_epi64(hi, 32));
}

FL_FN void fl_group_halves_avx512(const fl_round_keys *rk, uint64_t b, __m512i a[1], __m512i c[1])
{
    __m512i w[4];
    fl_philox_avx512(rk, b, w);
    a[0] = fl_join_avx512(w[0], w[1]);
    c[0] = fl_join_avx512(w[2], w[3]);
}

FL_FN void fl_group_words_avx512(const fl_round_keys *rk, uint64_t b, __m512i w[2])
{
    __m512i a, c;
    fl_group_halves_avx512(rk, b, &a, &c);
    w[0] = _mm512_unpacklo_epi64(a, c); /* lanes 0, 2, 4, 6: blocks 0-3, four words each */
    w[1] = _mm512_unpackhi_epi64(a, c); /* blocks 4-7 */
}

/* Pair 0 of lane j's block in 32-bit lane 2j, pair 1 in lane 2j + 1. */
FL_FN void fl_group_pairs_avx512(const fl_round_keys *rk, uint64_t b, __m512i w1[1], __m512i w2[1])
{
    __m512i w[4];
    fl_philox_avx512(rk, b, w);
    w1[0] = fl_join_avx512(w[0], w[2]);
    w2[0] = fl_join_avx512(w[1], w[3]);
}

FL_FN void fl_store_pairs_f32_avx512(const __m512 x0[1], const __m512 x1[1], float *dst)
{
    _mm512_storeu_ps(dst, _mm512_unpacklo_ps(x0[0], x1[0]));
    _mm512_storeu_ps(dst + 16, _mm512_unpackhi_ps(x0[0], x1[0]));
}

FL_FN void fl_store_halves_f64_avx512(const __m512d xa[1], const __m512d xc[1], double *dst)
{
    _mm512_storeu_pd(dst, _mm512_unpacklo_pd(xa[0], xc[0]));
    _mm512_storeu_pd(dst + 8, _mm512_unpackhi_pd(xa[0], xc[0]));
}

FL_FN void fl_keep_f32_avx512(__m512i w, uint32_t thr, float *dst)
{
    const __mmask16 keep = _mm512_cmplt_epu32_mask(w, _mm512_set1_epi32((int)thr));
    const __m512 x = _mm512_loadu_ps(dst);
    _mm512_storeu_ps(dst, _mm512_mask_blend_ps(keep, _mm512_mul_ps(x, _mm512_setzero_ps()), x));
}

FL_FN void fl_keep_f64_avx512(__m512i w, uint32_t thr, double *dst)
{
    const __mmask16 keep = _mm512_cmplt_epu32_mask(w, _mm512_set1_epi32((int)thr));
    for (int h = 0; h < 2; ++h) {
        const __m512d x = _mm512_loadu_pd(dst + 8 * h);
        _mm512_storeu_pd(dst + 8 * h,
                         _mm512_mask_blend_pd((__mmask8)(keep >> (8 * h)), _mm512_mul_pd(x, _mm512_setzero_pd()), x));
    }
}

#include "philox_math.h"
#include "philox_kernels.h"
#include "philox_undef.h"
#undef FL_TARGET
