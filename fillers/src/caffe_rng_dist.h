/* Boost.Random's distributions as Caffe uses them, written once for a Dtype T.  Included by caffe_rng.c
 * with T (float or double), SUF (f32 or f64), T_EXP, T_FABS, T_NEXTAFTER and T_MAX defined; needs the raw-word
 * adapters fl_int_float_pair_SUF and fl_uniform01_SUF.  Every expression keeps Boost's operand order,
 * conversions and comparison types (a comparison of T with a table entry runs in double where Boost's
 * does). */
#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_FN(name) FL_CAT(name, SUF)

/* detail::unit_exponential_distribution<T> (256-layer ziggurat, tail handled by shifting). */
static T FL_FN(fl_unit_exponential)(fl_mt19937 *st)
{
    const double *tx = fl_zig_exp_x, *ty = fl_zig_exp_y;
    T shift = 0;
    for (;;) {
        int i;
        const T r = FL_FN(fl_int_float_pair)(st, &i);
        const T x = r * (T)tx[i];
        if (x < (T)tx[i + 1])
            return shift + x;
        if (i == 0) {
            shift += (T)tx[1];
            continue;
        }
        const T y01 = FL_FN(fl_uniform01)(st);
        const T y = (T)ty[i] + y01 * (T)(ty[i + 1] - ty[i]);
        const T y_above_ubound = (T)(tx[i] - tx[i + 1]) * y01 - ((T)tx[i] - x);
        const T y_above_lbound = y - ((T)ty[i + 1] + ((T)tx[i + 1] - x) * (T)ty[i + 1]);
        if (y_above_ubound < 0 && (y_above_lbound < 0 || y < T_EXP(-x)))
            return x + shift;
    }
}

/* unit_normal_distribution::generate_tail: exponential_distribution<T>(x1) and exponential_distribution<T>()
 * draws, in that order, until 2y > x^2. */
static T FL_FN(fl_normal_tail)(fl_mt19937 *st)
{
    const T tail_start = (T)fl_zig_normal_x[1];
    for (;;) {
        const T x = FL_FN(fl_unit_exponential)(st) / tail_start;
        const T y = FL_FN(fl_unit_exponential)(st) / (T)1;
        if (2 * y > x * x)
            return x + tail_start;
    }
}

/* The ziggurat's first test, which accepts ~97% of samples: Boost's x = r * x[i] (i = bucket >> 1), accepted
 * iff x < x[i + 1] in double, returned as x * sign (sign = (bucket & 1) * 2 - 1).  The generated tables
 * hold T(+-x[i]) per bucket and the least T not below x[i + 1], so the test runs in T without branches on
 * the sign.  Returns nonzero and the signed sample in *out on success. */
static inline int FL_FN(fl_normal_fast)(T r, int bucket, T *out)
{
    const T x = r * FL_FN(fl_zig_normal_width)[bucket];
    *out = x;
    return T_FABS(x) < FL_FN(fl_zig_normal_limit)[bucket];
}

/* detail::unit_normal_distribution<T>::operator(), all of it. */
static T FL_FN(fl_unit_normal)(fl_mt19937 *st)
{
    const double *tx = fl_zig_normal_x, *ty = fl_zig_normal_y;
    for (;;) {
        int bucket;
        T signed_x;
        const T r = FL_FN(fl_int_float_pair)(st, &bucket);
        if (FL_FN(fl_normal_fast)(r, bucket, &signed_x))
            return signed_x;
        const int i = bucket >> 1;
        const T sign = (T)((bucket & 1) * 2 - 1);
        if (i == 0)
            return FL_FN(fl_normal_tail)(st) * sign;
        const T x = r * (T)tx[i];
        const T y01 = FL_FN(fl_uniform01)(st);
        const T y = (T)ty[i] + y01 * (T)(ty[i + 1] - ty[i]);
        /* y - (the chord or the tangent): which one bounds from above depends on convexity at x[i]. */
        const T chord = (T)(tx[i] - tx[i + 1]) * y01 - ((T)tx[i] - x);
        const T tangent = y - ((T)ty[i] + ((T)tx[i] - x) * (T)ty[i] * (T)tx[i]);
        const T y_above_ubound = tx[i] >= 1 ? chord : tangent;
        const T y_above_lbound = tx[i] >= 1 ? tangent : chord;
        if (y_above_ubound < 0 && (y_above_lbound < 0 || y < T_EXP(-(x * x / 2))))
            return x * sign;
    }
}

void FL_FN(fl_caffe_gaussian)(fl_mt19937 *st, int64_t n, T mean, T std, T *out)
{
    int64_t j = 0;
    while (j < n) {
        if (sizeof(T) == sizeof(float)) {
            /* Fast run straight over the tempered block while samples take the one-word path. */
            if (st->pos >= FL_MT_N)
                fl_mt_refill(st);
            const uint32_t *w = st->out;
            int32_t p = st->pos;
            const int32_t end = (int32_t)(n - j < FL_MT_N - p ? p + (n - j) : FL_MT_N);
            for (; p < end; ++p) {
                T x;
                if (!FL_FN(fl_normal_fast)((T)(w[p] >> 8) * (T)0x1p-24, (int)(w[p] & 0xffu), &x))
                    break;
                out[j++] = x * std + mean;
            }
            st->pos = p;
            if (p == end)
                continue;
        }
        out[j++] = FL_FN(fl_unit_normal)(st) * std + mean;
    }
}

/* boost::uniform_real<T>(lo, top) with top = boost::math::nextafter(hi, max): generate_uniform_real on a
 * 32-bit engine, x = T(u) / (T(2^32 - 1) + 1) * (top - lo) + lo, redrawn unless x < top; ranges wider than
 * max/2 are drawn at half scale and doubled, as Boost does. */
static inline T FL_FN(fl_uniform_one)(fl_mt19937 *st, T lo, T top, T range)
{
    for (;;) {
        const T x = (T)fl_mt_next(st) * (T)0x1p-32 * range + lo;
        if (x < top)
            return x;
    }
}

void FL_FN(fl_caffe_uniform)(fl_mt19937 *st, int64_t n, T lo, T hi, T *out)
{
    T top = T_NEXTAFTER(hi, T_MAX);
    const int halved = top / 2 - lo / 2 > T_MAX / 2;
    if (halved) {
        lo = lo / 2;
        top = top / 2;
    }
    const T range = top - lo;
    int64_t j = 0;
    while (j < n) {
        if (st->pos >= FL_MT_N)
            fl_mt_refill(st);
        const int64_t m = n - j < FL_MT_N - st->pos ? n - j : FL_MT_N - st->pos;
        const uint32_t *w = st->out + st->pos;
        T *o = out + j;
        int rejected = 0;
        for (int64_t k = 0; k < m; ++k) {  /* one word per sample unless a draw is rejected */
            const T x = (T)w[k] * (T)0x1p-32 * range + lo;
            o[k] = x;
            rejected |= !(x < top);
        }
        if (rejected) {  /* rare: redo this run one draw at a time */
            for (int64_t k = 0; k < m; ++k)
                o[k] = FL_FN(fl_uniform_one)(st, lo, top, range);
        } else {
            st->pos += (int32_t)m;
        }
        j += m;
    }
    if (halved)
        for (int64_t k = 0; k < n; ++k)
            out[k] = 2 * out[k];
}

/* bernoulli_distribution<T>(p): success iff T(u) <= p * T(2^32 - 1); p == 0 draws nothing.  Then Caffe's
 * data[i] *= mask[i] (so negative values masked out become -0.0). */
void FL_FN(fl_caffe_bernoulli_mask)(fl_mt19937 *st, int64_t n, T p, T *data)
{
    if (p == 0) {
        for (int64_t k = 0; k < n; ++k)
            data[k] *= 0;
        return;
    }
    const T threshold = p * (T)4294967295u;
    for (int64_t k = 0; k < n; ++k)
        data[k] *= (T)((T)fl_mt_next(st) <= threshold);
}

#undef FL_CAT_
#undef FL_CAT
#undef FL_FN
