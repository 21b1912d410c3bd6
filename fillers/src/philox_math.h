/* The transforms from raw Philox words to uniform and normal variates, written once for every dispatch path.
 *
 * This file is a template: philox_fill.c includes it once per path (scalar, AVX2, AVX-512) after defining
 * the vector types and operations below, so every path runs *the same sequence of IEEE operations* on
 * every lane and the paths give identical bytes.  The build uses -ffp-contract=off (no fused multiply-add)
 * and nothing here calls libm.
 *
 * What a path defines (FL_VF: float lanes, FL_VU: uint32 lanes of the same width; FL_VD: double lanes,
 * FL_VQ: uint64 lanes of the same width):
 *   FL_SFX(name)   the path's suffix for function names      FL_FN  static inline + the path's target
 *   F_SET F_ADD F_SUB F_MUL F_DIV F_SQRT  rounded float ops (the ones whose order matters)
 *   F_MIN(a, b)    a < b ? a : b
 *   F_FROM_U(u)    exact conversion of a uint32 < 2^31       F_BITS / F_FROM_BITS  bit casts
 *   U_SET U_ADD U_SUB U_AND U_XOR U_SRL U_SLL                 uint32 lane ops (shift counts are constants)
 *   U_SEL(m, a, b) (m & a) | (~m & b)
 *   D_* and Q_*    the same for double / uint64 lanes; D_FROM_U converts a uint64 <= 2^53 exactly.
 *   D_MAX(a, b)    a > b ? a : b                             D_LT(a, b)  all-ones uint64 lanes where a < b
 * Operations that are exact (integer and bit operations, selections, conversions of representable
 * integers) may be implemented differently per path; the rounded float operations may not.
 */
#include "philox_poly.h"
#include "ndtri_as241.h"

/* ---------------------------------------------------------------------------------------------------- */
/* float32                                                                                               */

/* u = (w >> 8) * 2^-24 in [0, 1): the 24 high bits of w, exactly. */
FL_FN FL_VF FL_SFX(fl_u24)(FL_VU w) { return F_MUL(F_FROM_U(U_SRL(w, 8)), F_SET(0x1p-24f)); }

/* min(lo + span * u, hi) */
FL_FN FL_VF FL_SFX(fl_uniform_map_f32)(FL_VU w, FL_VF lo, FL_VF span, FL_VF hi)
{
    return F_MIN(hi, F_ADD(lo, F_MUL(span, FL_SFX(fl_u24)(w))));
}

/* ln(x) for x in [2^-24, 1] (normal, positive): x = 2^k (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)),
 * s = f / (2 + f), ln(1 + f) = f - f^2/2 + s (f^2/2 + s^2 P(s^2)); fdlibm's evaluation order. */
FL_FN FL_VF FL_SFX(fl_log_f32)(FL_VF x)
{
    const FL_VU ix = U_ADD(F_BITS(x), U_SET(0x3f800000u - 0x3f3504f3u));
    const FL_VF k = F_SUB(F_FROM_U(U_SRL(ix, 23)), F_SET(127.0f));
    const FL_VF f = F_SUB(F_FROM_BITS(U_ADD(U_AND(ix, U_SET(0x007fffffu)), U_SET(0x3f3504f3u))), F_SET(1.0f));
    const FL_VF s = F_DIV(f, F_ADD(F_SET(2.0f), f));
    const FL_VF z = F_MUL(s, s);
    const FL_VF p = F_ADD(F_SET(FL_LOG_F0), F_MUL(z, F_ADD(F_SET(FL_LOG_F1), F_MUL(z, F_SET(FL_LOG_F2)))));
    const FL_VF r = F_MUL(z, p);
    const FL_VF hfsq = F_MUL(F_SET(0.5f), F_MUL(f, f));
    return F_SUB(F_MUL(k, F_SET(FL_LN2_HI_F)),
                 F_SUB(F_SUB(hfsq, F_ADD(F_MUL(s, F_ADD(hfsq, r)), F_MUL(k, F_SET(FL_LN2_LO_F)))), f));
}

/* sin and cos of 2 pi t for t = k 2^-24 (k < 2^24, in turns).  The reduction is exact: q = round(4 t),
 * y = t - q / 4 in [-1/8, 1/8] (both steps exact in float), then polynomials in y and a quadrant swap. */
FL_FN void FL_SFX(fl_sincos_turns_f32)(FL_VU k, FL_VF *sn, FL_VF *cs)
{
    const FL_VU q = U_SRL(U_ADD(k, U_SET(1u << 21)), 22);
    const FL_VF y = F_SUB(F_MUL(F_FROM_U(k), F_SET(0x1p-24f)), F_MUL(F_FROM_U(q), F_SET(0.25f)));
    const FL_VF z = F_MUL(y, y);
    const FL_VF s = F_MUL(y, F_ADD(F_SET(FL_SIN_F0),
                                   F_MUL(z, F_ADD(F_SET(FL_SIN_F1),
                                                  F_MUL(z, F_ADD(F_SET(FL_SIN_F2), F_MUL(z, F_SET(FL_SIN_F3))))))));
    const FL_VF c = F_ADD(F_SET(1.0f),
                          F_MUL(z, F_ADD(F_SET(FL_COS_F0),
                                         F_MUL(z, F_ADD(F_SET(FL_COS_F1),
                                                        F_MUL(z, F_ADD(F_SET(FL_COS_F2),
                                                                       F_MUL(z, F_SET(FL_COS_F3)))))))));
    /* quadrant q: sin = (s, c, -s, -c)[q], cos = (c, -s, -c, s)[q] */
    const FL_VU swap = U_SUB(U_SET(0), U_AND(q, U_SET(1)));
    const FL_VU sbits = U_SEL(swap, F_BITS(c), F_BITS(s));
    const FL_VU cbits = U_SEL(swap, F_BITS(s), F_BITS(c));
    *sn = F_FROM_BITS(U_XOR(sbits, U_SLL(U_AND(q, U_SET(2)), 30)));
    *cs = F_FROM_BITS(U_XOR(cbits, U_SLL(U_AND(U_ADD(q, U_SET(1)), U_SET(2)), 30)));
}

/* One Box-Muller pair from words w1, w2: u1 = ((w1 >> 8) + 1) 2^-24 in (0, 1], t = (w2 >> 8) 2^-24,
 * r = sqrt(-2 ln u1); x0 = mean + std (r cos 2 pi t), x1 = mean + std (r sin 2 pi t). */
FL_FN void FL_SFX(fl_box_muller_f32)(FL_VU w1, FL_VU w2, FL_VF mean, FL_VF std, FL_VF *x0, FL_VF *x1)
{
    const FL_VF u1 = F_MUL(F_FROM_U(U_ADD(U_SRL(w1, 8), U_SET(1))), F_SET(0x1p-24f));
    const FL_VF r = F_SQRT(F_MUL(F_SET(-2.0f), FL_SFX(fl_log_f32)(u1)));
    FL_VF sn, cs;
    FL_SFX(fl_sincos_turns_f32)(U_SRL(w2, 8), &sn, &cs);
    *x0 = F_ADD(mean, F_MUL(std, F_MUL(r, cs)));
    *x1 = F_ADD(mean, F_MUL(std, F_MUL(r, sn)));
}

/* ---------------------------------------------------------------------------------------------------- */
/* float64                                                                                               */

/* u = (w >> 11) * 2^-53 in [0, 1) for a 64-bit word w = (hi << 32) | lo. */
FL_FN FL_VD FL_SFX(fl_u53)(FL_VQ w) { return D_MUL(D_FROM_U(Q_SRL(w, 11)), D_SET(0x1p-53)); }

FL_FN FL_VD FL_SFX(fl_uniform_map_f64)(FL_VQ w, FL_VD lo, FL_VD span, FL_VD hi)
{
    return D_MIN(hi, D_ADD(lo, D_MUL(span, FL_SFX(fl_u53)(w))));
}

/* ln(x) for x in [2^-53, 1]; the float32 algorithm with a longer polynomial. */
FL_FN FL_VD FL_SFX(fl_log_f64)(FL_VD x)
{
    const FL_VQ ix = Q_ADD(D_BITS(x), Q_SET(0x3ff0000000000000u - 0x3fe6a09e667f3bcdu));
    const FL_VD k = D_SUB(D_FROM_U(Q_SRL(ix, 52)), D_SET(1023.0));
    const FL_VD f = D_SUB(D_FROM_BITS(Q_ADD(Q_AND(ix, Q_SET(0x000fffffffffffffu)), Q_SET(0x3fe6a09e667f3bcdu))),
                          D_SET(1.0));
    const FL_VD s = D_DIV(f, D_ADD(D_SET(2.0), f));
    const FL_VD z = D_MUL(s, s);
    FL_VD p = D_SET(FL_LOG_D6);
    p = D_ADD(D_SET(FL_LOG_D5), D_MUL(z, p));
    p = D_ADD(D_SET(FL_LOG_D4), D_MUL(z, p));
    p = D_ADD(D_SET(FL_LOG_D3), D_MUL(z, p));
    p = D_ADD(D_SET(FL_LOG_D2), D_MUL(z, p));
    p = D_ADD(D_SET(FL_LOG_D1), D_MUL(z, p));
    p = D_ADD(D_SET(FL_LOG_D0), D_MUL(z, p));
    const FL_VD r = D_MUL(z, p);
    const FL_VD hfsq = D_MUL(D_SET(0.5), D_MUL(f, f));
    return D_SUB(D_MUL(k, D_SET(FL_LN2_HI_D)),
                 D_SUB(D_SUB(hfsq, D_ADD(D_MUL(s, D_ADD(hfsq, r)), D_MUL(k, D_SET(FL_LN2_LO_D)))), f));
}

/* sin and cos of 2 pi t for t = k 2^-53 (k < 2^53); the float32 reduction with q = round(4 t). */
FL_FN void FL_SFX(fl_sincos_turns_f64)(FL_VQ k, FL_VD *sn, FL_VD *cs)
{
    const FL_VQ q = Q_SRL(Q_ADD(k, Q_SET((uint64_t)1 << 50)), 51);
    const FL_VD y = D_SUB(D_MUL(D_FROM_U(k), D_SET(0x1p-53)), D_MUL(D_FROM_U(q), D_SET(0.25)));
    const FL_VD z = D_MUL(y, y);
    FL_VD ps = D_SET(FL_SIN_D6);
    ps = D_ADD(D_SET(FL_SIN_D5), D_MUL(z, ps));
    ps = D_ADD(D_SET(FL_SIN_D4), D_MUL(z, ps));
    ps = D_ADD(D_SET(FL_SIN_D3), D_MUL(z, ps));
    ps = D_ADD(D_SET(FL_SIN_D2), D_MUL(z, ps));
    ps = D_ADD(D_SET(FL_SIN_D1), D_MUL(z, ps));
    ps = D_ADD(D_SET(FL_SIN_D0), D_MUL(z, ps));
    FL_VD pc = D_SET(FL_COS_D6);
    pc = D_ADD(D_SET(FL_COS_D5), D_MUL(z, pc));
    pc = D_ADD(D_SET(FL_COS_D4), D_MUL(z, pc));
    pc = D_ADD(D_SET(FL_COS_D3), D_MUL(z, pc));
    pc = D_ADD(D_SET(FL_COS_D2), D_MUL(z, pc));
    pc = D_ADD(D_SET(FL_COS_D1), D_MUL(z, pc));
    pc = D_ADD(D_SET(FL_COS_D0), D_MUL(z, pc));
    const FL_VD s = D_MUL(y, ps);
    const FL_VD c = D_ADD(D_SET(1.0), D_MUL(z, pc));
    const FL_VQ swap = Q_SUB(Q_SET(0), Q_AND(q, Q_SET(1)));
    const FL_VQ sbits = Q_SEL(swap, D_BITS(c), D_BITS(s));
    const FL_VQ cbits = Q_SEL(swap, D_BITS(s), D_BITS(c));
    *sn = D_FROM_BITS(Q_XOR(sbits, Q_SLL(Q_AND(q, Q_SET(2)), 62)));
    *cs = D_FROM_BITS(Q_XOR(cbits, Q_SLL(Q_AND(Q_ADD(q, Q_SET(1)), Q_SET(2)), 62)));
}

/* One Box-Muller pair from 64-bit words a, b: u1 = ((a >> 11) + 1) 2^-53, t = (b >> 11) 2^-53. */
FL_FN void FL_SFX(fl_box_muller_f64)(FL_VQ a, FL_VQ b, FL_VD mean, FL_VD std, FL_VD *x0, FL_VD *x1)
{
    const FL_VD u1 = D_MUL(D_FROM_U(Q_ADD(Q_SRL(a, 11), Q_SET(1))), D_SET(0x1p-53));
    const FL_VD r = D_SQRT(D_MUL(D_SET(-2.0), FL_SFX(fl_log_f64)(u1)));
    FL_VD sn, cs;
    FL_SFX(fl_sincos_turns_f64)(Q_SRL(b, 11), &sn, &cs);
    *x0 = D_ADD(mean, D_MUL(std, D_MUL(r, cs)));
    *x1 = D_ADD(mean, D_MUL(std, D_MUL(r, sn)));
}

/* ---------------------------------------------------------------------------------------------------- */
/* The inverse normal CDF (truncated_gaussian), in float64 for both element types                        */

/* c[0] + c[1] x + ... + c[7] x^7, Horner's order. */
FL_FN FL_VD FL_SFX(fl_poly7_f64)(const double c[8], FL_VD x)
{
    FL_VD v = D_SET(c[7]);
    for (int i = 6; i >= 0; --i)
        v = D_ADD(D_MUL(v, x), D_SET(c[i]));
    return v;
}

/* z with Phi(z) = p for p in [2^-1022, 1 - 2^-53]: AS 241 (ndtri_as241.h), every branch evaluated and the
 * lane's one selected, ln from fl_log_f64 (valid for every normal argument <= 1). */
FL_FN FL_VD FL_SFX(fl_ndtri_f64)(FL_VD p)
{
    const FL_VD q = D_SUB(p, D_SET(0.5));
    const FL_VQ sign = Q_AND(D_BITS(q), Q_SET(0x8000000000000000u));
    const FL_VD aq = D_FROM_BITS(Q_XOR(D_BITS(q), sign));
    const FL_VD rc = D_SUB(D_SET(0.180625), D_MUL(q, q));
    const FL_VD zc = D_DIV(D_MUL(q, FL_SFX(fl_poly7_f64)(fl_as241_a, rc)), FL_SFX(fl_poly7_f64)(fl_as241_b, rc));
    const FL_VD s = D_SQRT(D_SUB(D_SET(0.0), FL_SFX(fl_log_f64)(D_MIN(p, D_SUB(D_SET(1.0), p)))));
    const FL_VD rn = D_SUB(s, D_SET(1.6)), rf = D_SUB(s, D_SET(5.0));
    const FL_VD zn = D_DIV(FL_SFX(fl_poly7_f64)(fl_as241_c, rn), FL_SFX(fl_poly7_f64)(fl_as241_d, rn));
    const FL_VD zf = D_DIV(FL_SFX(fl_poly7_f64)(fl_as241_e, rf), FL_SFX(fl_poly7_f64)(fl_as241_f, rf));
    const FL_VQ tail = Q_XOR(Q_SEL(D_LT(D_SET(5.0), s), D_BITS(zf), D_BITS(zn)), sign);
    return D_FROM_BITS(Q_SEL(D_LT(D_SET(0.425), aq), tail, D_BITS(zc)));
}

/* truncated_gaussian from a 64-bit word w: u = (w >> 11) 2^-53, p = min(p_lo + p_span u, 1 - 2^-53),
 * x = min(hi, max(lo, mean + scale ndtri(p))). */
FL_FN FL_VD FL_SFX(fl_truncated_map_f64)(FL_VQ w, FL_VD p_lo, FL_VD p_span, FL_VD mean, FL_VD scale, FL_VD lo,
                                         FL_VD hi)
{
    const FL_VD p = D_MIN(D_ADD(p_lo, D_MUL(p_span, FL_SFX(fl_u53)(w))), D_SET(0x1.fffffffffffffp-1));
    const FL_VD x = D_ADD(mean, D_MUL(scale, FL_SFX(fl_ndtri_f64)(p)));
    return D_MIN(hi, D_MAX(lo, x));
}
