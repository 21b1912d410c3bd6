#include <math.h>
#include "common.h"

#define FL_DEFINE_CONSTANT(SUFFIX, T)                                   \
    void fl_constant_##SUFFIX(int64_t n, T value, T *out)              \
    {                                                                   \
        for (int64_t i = 0; i < n; ++i)                                 \
            out[i] = value;                                             \
    }

/* Caffe's BilinearFiller (BVLC master): f = ceil(K / 2.), c = Dtype((K - 1) / (2. * f)), then
 * (1 - |x / f - c|) * (1 - |y / f - c|) with x, y and every step in Dtype (Caffe's CPU build sees the float
 * overload of fabs through <math.h>, so a float blob is computed in float and a double blob in double). */
#define FL_DEFINE_BILINEAR(SUFFIX, T)                                                  \
    void fl_bilinear_##SUFFIX(int64_t first, int64_t n, int64_t k, T *out)           \
    {                                                                                  \
        const T f = (T)ceil((double)k / 2.0);                                          \
        const T c = (T)((double)(k - 1) / (2.0 * (double)f));                         \
        for (int64_t j = 0; j < n; ++j) {                                              \
            const int64_t i = first + j;                                               \
            const T x = (T)(i % k);                                                    \
            const T y = (T)((i / k) % k);                                              \
            out[j] = (1 - (T)fabs(x / f - c)) * (1 - (T)fabs(y / f - c));              \
        }                                                                              \
    }

#define FL_DEFINE_NORMALIZE_ROWS(SUFFIX, T)                                     \
    void fl_normalize_rows_##SUFFIX(T *data, int64_t rows, int64_t row_len)    \
    {                                                                           \
        for (int64_t r = 0; r < rows; ++r) {                                    \
            T *row = data + r * row_len;                                        \
            T sum = 0;                                                          \
            for (int64_t j = 0; j < row_len; ++j)                               \
                sum += row[j];                                                  \
            for (int64_t j = 0; j < row_len; ++j)                               \
                row[j] /= sum;                                                  \
        }                                                                       \
    }

FL_DEFINE_CONSTANT(f32, float)
FL_DEFINE_CONSTANT(f64, double)
FL_DEFINE_BILINEAR(f32, float)
FL_DEFINE_BILINEAR(f64, double)
FL_DEFINE_NORMALIZE_ROWS(f32, float)
FL_DEFINE_NORMALIZE_ROWS(f64, double)
