#include <string.h>
#include "half.h"
#include "philox_fill.h"
#include "platform.h"

#if FL_X86_SIMD
#include <immintrin.h>
#endif

static inline uint32_t fl_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fl_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* IEEE binary16, round to nearest even.  Normal results: rebias the exponent, add half an ulp minus one
 * (0xfff) plus the kept lowest bit (ties to even), shift; a carry rounds up into the exponent (and from
 * the largest finite value into infinity).  Subnormal results: adding 0.5 (2^-1) makes the float adder
 * round the value to a multiple of 2^-24 (the float16 subnormal ulp) in float32's own round-to-even; the
 * low bits are then the float16 bits. */
static inline uint16_t fl_to_f16(float x)
{
    const uint32_t bits = fl_bits(x), sign = (bits >> 16) & 0x8000u, mag = bits & 0x7fffffffu;
    if (mag >= 0x47800000u)                               /* >= 2^16 (or inf / nan): infinity or nan */
        return (uint16_t)(sign | (mag > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (mag < 0x38800000u)                                /* below 2^-14: float16 subnormal or zero */
        return (uint16_t)(sign | (fl_bits(fl_float(mag) + 0.5f) - 0x3f000000u));
    const uint32_t rounded = mag - ((127u - 15u) << 23) + 0xfffu + ((mag >> 13) & 1u);
    return (uint16_t)(sign | (rounded >> 13));
}

/* bfloat16: the high half of float32, rounded to nearest even (nan stays nan); branch-free, so the loop
 * below vectorises. */
static inline uint16_t fl_to_bf16(float x)
{
    const uint32_t bits = fl_bits(x);
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t nan = ((bits & 0x7fffffffu) > 0x7f800000u) ? ((bits >> 16) | 0x40u) : rounded;
    return (uint16_t)nan;
}

FL_TARGET_CLONES("avx2", "default") static void fl_round_bf16(const float *in, int64_t n, uint16_t *out)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = fl_to_bf16(in[i]);
}

static void fl_round_f16(const float *in, int64_t n, uint16_t *out)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = fl_to_f16(in[i]);
}

#if FL_X86_SIMD
/* The F16C instruction (every AVX2 CPU has it) converts 8 floats with the same IEEE rounding. */
__attribute__((target("avx2,f16c"))) static void fl_round_f16_f16c(const float *in, int64_t n, uint16_t *out)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    fl_round_f16(in + i, n - i, out + i);
}
#endif

void fl_round_half(const float *in, int64_t n, int kind, uint16_t *out)
{
    if (kind == FL_HALF_BF16)
        fl_round_bf16(in, n, out);
#if FL_X86_SIMD
    else if (fl_simd_get() >= FL_SIMD_AVX2)
        fl_round_f16_f16c(in, n, out);
#endif
    else
        fl_round_f16(in, n, out);
}

void fl_philox_unitball_half(const fl_philox_key *key, int64_t first, int64_t rows, int64_t row_len, int kind,
                             uint16_t *out)
{
    float tile[FL_HALF_TILE];
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t start = first + r * row_len;
        float sum = 0;
        for (int64_t j = 0; j < row_len; j += FL_HALF_TILE) {
            const int64_t m = row_len - j < FL_HALF_TILE ? row_len - j : FL_HALF_TILE;
            fl_philox_uniform_f32(key, start + j, m, 0, 1, tile);
            for (int64_t i = 0; i < m; ++i)
                sum += tile[i];
        }
        for (int64_t j = 0; j < row_len; j += FL_HALF_TILE) {
            const int64_t m = row_len - j < FL_HALF_TILE ? row_len - j : FL_HALF_TILE;
            fl_philox_uniform_f32(key, start + j, m, 0, 1, tile);
            for (int64_t i = 0; i < m; ++i)
                tile[i] /= sum;
            fl_round_half(tile, m, kind, out + r * row_len + j);
        }
    }
}
