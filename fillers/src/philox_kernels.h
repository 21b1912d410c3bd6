/* The counter-based fill kernels, written once for every dispatch path (a template, like philox_math.h).
 *
 * A path works on groups of FL_GB consecutive Philox blocks and defines, besides the operations listed in
 * philox_math.h:
 *   FL_GB, FL_NF            blocks per group; float (= uint32) lanes per vector
 *   FL_NWV, FL_NPV, FL_NQV  vectors per group of: words (4 GB / NF), Box-Muller pairs (2 GB / NF),
 *                           64-bit words of even / odd float64 elements (GB / double lanes)
 *   fl_group_words(rk, b, w[NWV])         words 4 b .. 4 (b + GB) - 1 in order
 *   fl_group_pairs(rk, b, w1[NPV], w2[NPV])   the pairs' first and second words, in a path-defined order
 *   fl_store_pairs_f32(x0[NPV], x1[NPV], dst)  store pair results as elements 4 b .., in order
 *   fl_group_halves(rk, b, a[NQV], c[NQV])    64-bit words (w[4i+1] << 32 | w[4i]), (w[4i+3] << 32 | w[4i+2])
 *   fl_store_halves_f64(xa[NQV], xc[NQV], dst) store as elements 2 b .. (a-derived even, c-derived odd)
 *   fl_keep_f32 / fl_keep_f64(w, thr, dst)     dst[l] *= (w lane l < thr) for NF elements
 *   F_STORE(dst, v), D_STORE(dst, v)           unaligned stores
 * Each kernel fills out[0 .. n) with the elements first .. first + n - 1 (see philox_fill.h).
 */
#include <string.h>

/* Run BODY (which writes the group's GE elements to `dst`) for every group g meeting [first, first + n);
 * groups cut by either end are computed into a buffer and their overlap copied.  IN_PLACE: BODY reads dst
 * too, so the buffer is loaded with the overlap first.  Unsigned, so the last group may reach past 2^63. */
#define FL_FOR_GROUPS(T, GE, FIRST, N, OUT, IN_PLACE, ...)                                                \
    do {                                                                                                \
        const uint64_t fl_first = (uint64_t)(FIRST), fl_end = fl_first + (uint64_t)(N);                 \
        for (uint64_t g = fl_first / (GE); g * (GE) < fl_end; ++g) {                                    \
            const uint64_t fl_start = g * (GE);                                                         \
            if (fl_start >= fl_first && fl_start + (GE) <= fl_end) {                                    \
                T *dst = (OUT) + (fl_start - fl_first);                                                 \
                __VA_ARGS__                                                                             \
            } else {                                                                                    \
                T fl_buf[GE];                                                                           \
                const uint64_t fl_lo = fl_start > fl_first ? fl_start : fl_first;                       \
                const uint64_t fl_hi = fl_start + (GE) < fl_end ? fl_start + (GE) : fl_end;             \
                const size_t fl_bytes = (size_t)(fl_hi - fl_lo) * sizeof(T);                            \
                T *dst = fl_buf;                                                                        \
                if (IN_PLACE) {                                                                         \
                    memset(fl_buf, 0, sizeof fl_buf);                                                   \
                    memcpy(fl_buf + (fl_lo - fl_start), (OUT) + (fl_lo - fl_first), fl_bytes);          \
                }                                                                                       \
                __VA_ARGS__                                                                             \
                memcpy((OUT) + (fl_lo - fl_first), fl_buf + (fl_lo - fl_start), fl_bytes);              \
            }                                                                                           \
        }                                                                                               \
    } while (0)

FL_KERNEL void FL_SFX(fl_uniform_f32)(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi,
                                      float *out)
{
    fl_round_keys rk;
    fl_make_round_keys(key, &rk);
    const FL_VF vlo = F_SET(lo), vspan = F_SET(hi - lo), vhi = F_SET(hi);
    FL_FOR_GROUPS(float, 4 * FL_GB, first, n, out, 0, {
        FL_VU w[FL_NWV];
        FL_SFX(fl_group_words)(&rk, g * FL_GB, w);
        for (int v = 0; v < FL_NWV; ++v)
            F_STORE(dst + v * FL_NF, FL_SFX(fl_uniform_map_f32)(w[v], vlo, vspan, vhi));
    });
}

FL_KERNEL void FL_SFX(fl_uniform_f64)(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi,
                                      double *out)
{
    fl_round_keys rk;
    fl_make_round_keys(key, &rk);
    const FL_VD vlo = D_SET(lo), vspan = D_SET(hi - lo), vhi = D_SET(hi);
    FL_FOR_GROUPS(double, 2 * FL_GB, first, n, out, 0, {
        FL_VQ a[FL_NQV], c[FL_NQV];
        FL_VD xa[FL_NQV], xc[FL_NQV];
        FL_SFX(fl_group_halves)(&rk, g * FL_GB, a, c);
        for (int v = 0; v < FL_NQV; ++v) {
            xa[v] = FL_SFX(fl_uniform_map_f64)(a[v], vlo, vspan, vhi);
            xc[v] = FL_SFX(fl_uniform_map_f64)(c[v], vlo, vspan, vhi);
        }
        FL_SFX(fl_store_halves_f64)(xa, xc, dst);
    });
}

FL_KERNEL void FL_SFX(fl_gaussian_f32)(const fl_philox_key *key, int64_t first, int64_t n, float mean,
                                       float std, float *out)
{
    fl_round_keys rk;
    fl_make_round_keys(key, &rk);
    const FL_VF vmean = F_SET(mean), vstd = F_SET(std);
    FL_FOR_GROUPS(float, 4 * FL_GB, first, n, out, 0, {
        FL_VU w1[FL_NPV], w2[FL_NPV];
        FL_VF x0[FL_NPV], x1[FL_NPV];
        FL_SFX(fl_group_pairs)(&rk, g * FL_GB, w1, w2);
        for (int v = 0; v < FL_NPV; ++v)
            FL_SFX(fl_box_muller_f32)(w1[v], w2[v], vmean, vstd, &x0[v], &x1[v]);
        FL_SFX(fl_store_pairs_f32)(x0, x1, dst);
    });
}

FL_KERNEL void FL_SFX(fl_gaussian_f64)(const fl_philox_key *key, int64_t first, int64_t n, double mean,
                                       double std, double *out)
{
    fl_round_keys rk;
    fl_make_round_keys(key, &rk);
    const FL_VD vmean = D_SET(mean), vstd = D_SET(std);
    FL_FOR_GROUPS(double, 2 * FL_GB, first, n, out, 0, {
        FL_VQ a[FL_NQV], c[FL_NQV];
        FL_VD x0[FL_NQV], x1[FL_NQV];
        FL_SFX(fl_group_halves)(&rk, g * FL_GB, a, c);
        for (int v = 0; v < FL_NQV; ++v)
            FL_SFX(fl_box_muller_f64)(a[v], c[v], vmean, vstd, &x0[v], &x1[v]);
        FL_SFX(fl_store_halves_f64)(x0, x1, dst);
    });
}

/* truncated_gaussian: element i from the 64-bit word of words 2i, 2i+1 (the float64 uniform's), computed in
 * float64 for both element types; a float32 element is the float64 value rounded once. */
#define FL_TRUNCATED_GROUP(DST)                                                                           \
    do {                                                                                                  \
        FL_VQ a[FL_NQV], c[FL_NQV];                                                                       \
        FL_VD xa[FL_NQV], xc[FL_NQV];                                                                     \
        FL_SFX(fl_group_halves)(&rk, g * FL_GB, a, c);                                                    \
        for (int v = 0; v < FL_NQV; ++v) {                                                                \
            xa[v] = FL_SFX(fl_truncated_map_f64)(a[v], p_lo, p_span, mean, scale, lo, hi);                \
            xc[v] = FL_SFX(fl_truncated_map_f64)(c[v], p_lo, p_span, mean, scale, lo, hi);                \
        }                                                                                                 \
        FL_SFX(fl_store_halves_f64)(xa, xc, DST);                                                         \
    } while (0)

#define FL_TRUNCATED_SETUP                                                                                \
    fl_round_keys rk;                                                                                     \
    fl_make_round_keys(key, &rk);                                                                         \
    const FL_VD p_lo = D_SET(t->p_lo), p_span = D_SET(t->p_span), mean = D_SET(t->mean);                 \
    const FL_VD scale = D_SET(t->scale), lo = D_SET(t->lo), hi = D_SET(t->hi)

FL_KERNEL void FL_SFX(fl_truncated_f64)(const fl_philox_key *key, int64_t first, int64_t n,
                                        const fl_truncated_params *t, double *out)
{
    FL_TRUNCATED_SETUP;
    FL_FOR_GROUPS(double, 2 * FL_GB, first, n, out, 0, { FL_TRUNCATED_GROUP(dst); });
}

FL_KERNEL void FL_SFX(fl_truncated_f32)(const fl_philox_key *key, int64_t first, int64_t n,
                                        const fl_truncated_params *t, float *out)
{
    FL_TRUNCATED_SETUP;
    FL_FOR_GROUPS(float, 2 * FL_GB, first, n, out, 0, {
        double wide[2 * FL_GB];
        FL_TRUNCATED_GROUP(wide);
        for (int i = 0; i < 2 * FL_GB; ++i)
            dst[i] = (float)wide[i];
    });
}
#undef FL_TRUNCATED_GROUP
#undef FL_TRUNCATED_SETUP

/* The Bernoulli keep mask: element i is kept iff word i of the mask domain is < thr (thr <= 2^32 - 1;
 * the caller skips p = 1, where every element is kept). */
#define FL_DEFINE_SPARSIFY(SUFFIX, T)                                                                     \
    FL_KERNEL void FL_SFX(fl_sparsify_##SUFFIX)(const fl_philox_key *key, int64_t first, int64_t n,         \
                                                uint32_t thr, T *out)                                     \
    {                                                                                                     \
        fl_round_keys rk;                                                                                 \
        fl_make_round_keys(key, &rk);                                                                     \
        FL_FOR_GROUPS(T, 4 * FL_GB, first, n, out, 1, {                                                   \
            FL_VU w[FL_NWV];                                                                              \
            FL_SFX(fl_group_words)(&rk, FL_MASK_DOMAIN | (g * FL_GB), w);                       \
            for (int v = 0; v < FL_NWV; ++v)                                                              \
                FL_SFX(fl_keep_##SUFFIX)(w[v], thr, dst + v * FL_NF);                                     \
        });                                                                                               \
    }

FL_DEFINE_SPARSIFY(f32, float)
FL_DEFINE_SPARSIFY(f64, double)
#undef FL_DEFINE_SPARSIFY
#undef FL_FOR_GROUPS

static const fl_philox_impl FL_SFX(fl_impl) = {
    FL_SFX(fl_uniform_f32), FL_SFX(fl_uniform_f64), FL_SFX(fl_gaussian_f32),
    FL_SFX(fl_gaussian_f64), FL_SFX(fl_sparsify_f32), FL_SFX(fl_sparsify_f64),
    FL_SFX(fl_truncated_f32), FL_SFX(fl_truncated_f64),
};
