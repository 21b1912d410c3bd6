#include <math.h>
#include <string.h>
#include "common.h"
#include "platform.h"

/* Kernels of up to this many elements per K x K plane are built once per call (tiled) and copied. */
#define FL_BILINEAR_PLANE_MAX 4096

/* AVX2 / AVX-512 clones of loops the compiler vectorises, where the platform has them; these kernels only
 * use exact IEEE operations (copies, +, /, conversions) in a fixed order, so every clone gives the same
 * bytes. */
#define FL_CLONES FL_TARGET_CLONES("avx512f", "avx2", "default")

#define FL_DEFINE_CONSTANT(SUFFIX, T)                                   \
    void fl_constant_##SUFFIX(int64_t n, T value, T *out)              \
    {                                                                   \
        for (int64_t i = 0; i < n; ++i)                                 \
            out[i] = value;                                             \
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
                              int64_t per_group, T value, T *out)                                        \
    {                                                                                                    \
        const int64_t row = in_channels * spatial, end = first + n;                                      \
        memset(out, 0, (size_t)n * sizeof(T));                                                           \
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
