#include <math.h>
#include <string.h>
#include "common.h"
#include "platform.h"

#if FL_X86_SIMD
#include <emmintrin.h>
#endif

/* Kernels of up to this many elements per K x K plane are built once per call (tiled) and copied. */
#define FL_BILINEAR_PLANE_MAX 4096

/* AVX2 / AVX-512 clones of loops the compiler vectorises, where the platform has them; these kernels only
 * use exact IEEE operations (copies, +, /, conversions) in a fixed order, so every clone gives the same
 * bytes. */
#define FL_CLONES FL_TARGET_CLONES("avx512f", "avx2", "default")

/* Non-temporal (cache-bypassing) stores of a 16-byte pattern over the 16-byte-aligned body of
 * [out, out + bytes): *body bytes from out + *head (the caller writes the *head bytes before it and the
 * tail after it).  A write-only pass over a blob larger than the caches then moves each byte to memory once,
 * instead of reading every cache line before overwriting it; x86-64 only (SSE2 is part of it), elsewhere
 * nothing is streamed. */
static void fl_stream_pattern(unsigned char *out, int64_t bytes, const unsigned char *pattern, int64_t *head,
                              int64_t *body)
{
#if FL_X86_SIMD
    const __m128i v = _mm_loadu_si128((const __m128i *)pattern);
    int64_t skip = (int64_t)((16 - ((uintptr_t)out & 15)) & 15);
    if (skip > bytes)
        skip = bytes;
    const int64_t whole = (bytes - skip) & ~(int64_t)15;
    for (int64_t i = skip; i < skip + whole; i += 16)
        _mm_stream_si128((__m128i *)(out + i), v);
    _mm_sfence(); /* the streamed lines are globally visible before the pool reports the piece done */
    *head = skip;
    *body = whole;
#else
    (void)out;
    (void)bytes;
    (void)pattern;
    *head = 0;
    *body = 0;
#endif
}

/* out[0 .. n) = value.  streaming: non-temporal stores (see above) for blobs larger than the caches; an
 * all-zero value (+0.0) otherwise goes to memset.  Elements are aligned to their size, so the 16-byte body
 * starts on an element boundary and the pattern (value repeated) lines up with the elements. */
#define FL_DEFINE_CONSTANT(SUFFIX, T)                                                                    \
    void fl_constant_##SUFFIX(int64_t n, T value, int streaming, T *out)                                \
    {                                                                                                    \
        int64_t begin = 0, end = n;                                                                      \
        if (streaming) {                                                                                 \
            T pattern[16 / sizeof(T)];                                                                   \
            int64_t head, body;                                                                          \
            for (size_t i = 0; i < 16 / sizeof(T); ++i)                                                  \
                pattern[i] = value;                                                                      \
            fl_stream_pattern((unsigned char *)out, n * (int64_t)sizeof(T), (const unsigned char *)pattern, \
                              &head, &body);                                                             \
            if (body) {                                                                                  \
                for (int64_t i = 0; i < head / (int64_t)sizeof(T); ++i)                                  \
                    out[i] = value;                                                                      \
                begin = (head + body) / (int64_t)sizeof(T);                                              \
            }                                                                                            \
        }                                                                                                \
        const T zero = 0;                                                                                \
        if (memcmp(&value, &zero, sizeof(T)) == 0) {                                                     \
            memset(out + begin, 0, (size_t)(end - begin) * sizeof(T));                                   \
            return;                                                                                      \
        }                                                                                                \
        for (int64_t i = begin; i < end; ++i)                                                            \
            out[i] = value;                                                                              \
    }

/* Caffe's BilinearFiller (BVLC master): f = ceil(K / 2.), c = Dtype((K - 1) / (2. * f)), then
 * (1 - |x / f - c|) * (1 - |y / f - c|) with x, y and every step in Dtype (Caffe's CPU build sees the float
 * overload of fabs through <math.h>, so a float blob is computed in float and a double blob in double).
 * Element first + j is plane position p = (first + j) % (k * k), x = p % k, y = p / k.  Small planes are
 * built once and copied; large ones row by row (the y factor once per row). */
#define FL_DEFINE_BILINEAR(SUFFIX, T)                                                                    \
    static inline T fl_bilinear_factor_##SUFFIX(int64_t x, T f, T c) { return 1 - (T)fabs((T)x / f - c); } \
                                                                                                         \
    void fl_bilinear_##SUFFIX(int64_t first, int64_t n, int64_t k, T *out)                              \
    {                                                                                                    \
        const T f = (T)ceil((double)k / 2.0);                                                            \
        const T c = (T)((double)(k - 1) / (2.0 * (double)f));                                           \
        const int64_t plane = k * k;                                                                     \
        int64_t p = first % plane;                                                                       \
        if (plane <= FL_BILINEAR_PLANE_MAX) {                                                            \
            T w[FL_BILINEAR_PLANE_MAX]; /* as many whole planes as fit, copied in large pieces */        \
            const int64_t tile = FL_BILINEAR_PLANE_MAX / plane * plane;                                  \
            for (int64_t y = 0; y < k; ++y) {                                                            \
                const T fy = fl_bilinear_factor_##SUFFIX(y, f, c);                                       \
                for (int64_t x = 0; x < k; ++x)                                                          \
                    w[y * k + x] = fl_bilinear_factor_##SUFFIX(x, f, c) * fy;                            \
            }                                                                                            \
            for (int64_t i = plane; i < tile; ++i)                                                       \
                w[i] = w[i - plane];                                                                     \
            for (int64_t j = 0; j < n;) {                                                                \
                const int64_t m = tile - p < n - j ? tile - p : n - j;                                   \
                memcpy(out + j, w + p, (size_t)m * sizeof(T));                                           \
                j += m;                                                                                  \
                p = 0;                                                                                   \
            }                                                                                            \
            return;                                                                                      \
        }                                                                                                \
        for (int64_t j = 0; j < n;) {                                                                    \
            const int64_t x0 = p % k, m = k - x0 < n - j ? k - x0 : n - j;                               \
            const T fy = fl_bilinear_factor_##SUFFIX(p / k, f, c);                                       \
            for (int64_t x = 0; x < m; ++x)                                                              \
                out[j + x] = fl_bilinear_factor_##SUFFIX(x0 + x, f, c) * fy;                             \
            j += m;                                                                                      \
            p = (p + m) % plane;                                                                         \
        }                                                                                                \
    }

/* Sums run sequentially per row (Caffe's order, so the same bytes as Caffe's loop); FL_ROWS_AT_ONCE
 * rows are summed side by side so the additions of different rows overlap.  A row whose draws are all
 * zero (sum 0, where Caffe would divide 0 by 0) becomes the centre of the simplex, 1/row_len each. */
#define FL_DEFINE_NORMALIZE_ROWS(SUFFIX, T)                                                \
    static inline void fl_divide_row_##SUFFIX(T *row, int64_t row_len, T sum)             \
    {                                                                                      \
        if (sum == 0) {                                                                    \
            for (int64_t j = 0; j < row_len; ++j)                                          \
                row[j] = (T)1 / (T)row_len;                                                \
            return;                                                                        \
        }                                                                                  \
        for (int64_t j = 0; j < row_len; ++j)                                              \
            row[j] /= sum;                                                                 \
    }                                                                                      \
    FL_CLONES void fl_normalize_rows_##SUFFIX(T *data, int64_t rows, int64_t row_len)     \
    {                                                                                      \
        int64_t r = 0;                                                                     \
        for (; r + FL_ROWS_AT_ONCE <= rows; r += FL_ROWS_AT_ONCE) {                        \
            T *base = data + r * row_len;                                                  \
            T sum[FL_ROWS_AT_ONCE] = {0};                                                  \
            for (int64_t j = 0; j < row_len; ++j)                                          \
                for (int q = 0; q < FL_ROWS_AT_ONCE; ++q)                                  \
                    sum[q] += base[q * row_len + j];                                       \
            for (int q = 0; q < FL_ROWS_AT_ONCE; ++q)                                      \
                fl_divide_row_##SUFFIX(base + q * row_len, row_len, sum[q]);               \
        }                                                                                  \
        for (; r < rows; ++r) {                                                            \
            T *row = data + r * row_len;                                                   \
            T sum = 0;                                                                     \
            for (int64_t j = 0; j < row_len; ++j)                                          \
                sum += row[j];                                                             \
            fl_divide_row_##SUFFIX(row, row_len, sum);                                     \
        }                                                                                  \
    }

#define FL_DEFINE_DIAGONAL(SUFFIX, T)                                                                    \
    void fl_diagonal_##SUFFIX(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center, \
                              int64_t per_group, T value, int streaming, T *out)                         \
    {                                                                                                    \
        const int64_t row = in_channels * spatial, end = first + n;                                      \
        fl_constant_##SUFFIX(n, 0, streaming, out);                                                      \
        if (row == 0)                                                                                    \
            return;                                                                                      \
        for (int64_t o = first / row; o * row < end; ++o) {                                              \
            const int64_t d = o % per_group, at = o * row + d * spatial + center;                        \
            if (d < in_channels && at >= first && at < end)                                              \
                out[at - first] = value;                                                                 \
        }                                                                                                \
    }

FL_DEFINE_CONSTANT(f32, float)
FL_DEFINE_CONSTANT(f64, double)
FL_DEFINE_CONSTANT(u16, uint16_t)
FL_DEFINE_DIAGONAL(f32, float)
FL_DEFINE_DIAGONAL(f64, double)
FL_DEFINE_DIAGONAL(u16, uint16_t)
FL_DEFINE_BILINEAR(f32, float)
FL_DEFINE_BILINEAR(f64, double)
FL_DEFINE_NORMALIZE_ROWS(f32, float)
FL_DEFINE_NORMALIZE_ROWS(f64, double)
