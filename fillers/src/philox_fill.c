#include <math.h>
#include "philox_fill.h"

#define FL_TWO_PI 6.283185307179586476925286766559
#define FL_MASK_DOMAIN ((uint64_t)1 << 63)

void fl_philox_raw(const fl_philox_key *key, uint64_t first, int64_t n, uint32_t *out)
{
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t w = first + (uint64_t)j;
        if (j == 0 || (w & 3) == 0)
            fl_philox_block(key, w >> 2, block);
        out[j] = block[w & 3];
    }
}

static inline float fl_u24(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

static inline double fl_u53(uint32_t lo, uint32_t hi)
{
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53;
}

void fl_philox_uniform_f32(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi, float *out)
{
    const float span = hi - lo;
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)(first + j);
        if (j == 0 || (i & 3) == 0)
            fl_philox_block(key, i >> 2, block);
        float x = lo + span * fl_u24(block[i & 3]);
        out[j] = x > hi ? hi : x;
    }
}

void fl_philox_uniform_f64(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi, double *out)
{
    const double span = hi - lo;
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)(first + j);
        if (j == 0 || (i & 1) == 0)
            fl_philox_block(key, i >> 1, block);
        unsigned h = (unsigned)(i & 1) * 2;
        double x = lo + span * fl_u53(block[h], block[h + 1]);
        out[j] = x > hi ? hi : x;
    }
}

void fl_philox_gaussian_f32(const fl_philox_key *key, int64_t first, int64_t n, float mean, float std, float *out)
{
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)(first + j);
        if (j == 0 || (i & 3) == 0)
            fl_philox_block(key, i >> 2, block);
        unsigned h = (unsigned)(i & 2);
        float u1 = (float)((block[h] >> 8) + 1) * 0x1p-24f;
        float u2 = fl_u24(block[h + 1]);
        float r = sqrtf(-2.0f * logf(u1));
        float t = (float)FL_TWO_PI * u2;
        float z = (i & 1) ? r * sinf(t) : r * cosf(t);
        out[j] = mean + std * z;
    }
}

void fl_philox_gaussian_f64(const fl_philox_key *key, int64_t first, int64_t n, double mean, double std,
                            double *out)
{
    uint32_t block[4];
    for (int64_t j = 0; j < n; ++j) {
        uint64_t i = (uint64_t)(first + j);
        if (j == 0 || (i & 1) == 0)
            fl_philox_block(key, i >> 1, block);
        double u1 = (double)(((((uint64_t)block[1] << 32) | block[0]) >> 11) + 1) * 0x1p-53;
        double u2 = fl_u53(block[2], block[3]);
        double r = sqrt(-2.0 * log(u1));
        double t = FL_TWO_PI * u2;
        double z = (i & 1) ? r * sin(t) : r * cos(t);
        out[j] = mean + std * z;
    }
}

#define FL_DEFINE_SPARSIFY(SUFFIX, T)                                                              \
    void fl_philox_sparsify_##SUFFIX(const fl_philox_key *key, int64_t first, int64_t n, double p, \
                                     T *out)                                                       \
    {                                                                                              \
        const uint64_t threshold = (uint64_t)(p * 4294967296.0);                                   \
        uint32_t block[4];                                                                         \
        for (int64_t j = 0; j < n; ++j) {                                                          \
            uint64_t i = (uint64_t)(first + j);                                                    \
            if (j == 0 || (i & 3) == 0)                                                            \
                fl_philox_block(key, FL_MASK_DOMAIN | (i >> 2), block);                            \
            out[j] *= (T)((uint64_t)block[i & 3] < threshold);                                     \
        }                                                                                          \
    }

FL_DEFINE_SPARSIFY(f32, float)
FL_DEFINE_SPARSIFY(f64, double)
