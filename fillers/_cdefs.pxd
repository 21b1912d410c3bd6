# C declarations of the kernels in fillers/src, shared by the Cython modules.
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t


cdef extern from "src/philox.h" nogil:
    ctypedef struct fl_philox_key:
        uint64_t seed
        uint64_t stream
    void fl_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                          uint32_t out[4]) noexcept


cdef extern from "src/philox_fill.h" nogil:
    enum:
        FL_SIMD_COUNT
    const char *fl_simd_name(int path) noexcept
    int fl_simd_supported(int path) noexcept
    int fl_simd_best() noexcept
    int fl_simd_set(int path) noexcept
    int fl_simd_get() noexcept
    void fl_philox_raw(const fl_philox_key *key, uint64_t first, int64_t n, uint32_t *out) noexcept
    void fl_philox_uniform_f32(const fl_philox_key *key, int64_t first, int64_t n, float lo, float hi,
                               float *out) noexcept
    void fl_philox_uniform_f64(const fl_philox_key *key, int64_t first, int64_t n, double lo, double hi,
                               double *out) noexcept
    void fl_philox_gaussian_f32(const fl_philox_key *key, int64_t first, int64_t n, float mean, float std,
                                float *out) noexcept
    void fl_philox_gaussian_f64(const fl_philox_key *key, int64_t first, int64_t n, double mean, double std,
                                double *out) noexcept
    ctypedef struct fl_truncated_params:
        double p_lo
        double p_span
        double mean
        double scale
        double lo
        double hi
    void fl_philox_truncated_f32(const fl_philox_key *key, int64_t first, int64_t n,
                                 const fl_truncated_params *t, float *out) noexcept
    void fl_philox_truncated_f64(const fl_philox_key *key, int64_t first, int64_t n,
                                 const fl_truncated_params *t, double *out) noexcept
    void fl_philox_sparsify_f32(const fl_philox_key *key, int64_t first, int64_t n, double p,
                                float *out) noexcept
    void fl_philox_sparsify_f64(const fl_philox_key *key, int64_t first, int64_t n, double p,
                                double *out) noexcept


cdef extern from "src/common.h" nogil:
    enum:
        FL_ROWS_AT_ONCE
    void fl_constant_f32(int64_t n, float value, int streaming, float *out) noexcept
    void fl_constant_f64(int64_t n, double value, int streaming, double *out) noexcept
    void fl_constant_u16(int64_t n, uint16_t value, int streaming, uint16_t *out) noexcept
    void fl_diagonal_f32(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                         int64_t per_group, float value, int streaming, float *out) noexcept
    void fl_diagonal_f64(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                         int64_t per_group, double value, int streaming, double *out) noexcept
    void fl_diagonal_u16(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                         int64_t per_group, uint16_t value, int streaming, uint16_t *out) noexcept
    void fl_bilinear_f32(int64_t first, int64_t n, int64_t k, float *out) noexcept
    void fl_bilinear_f64(int64_t first, int64_t n, int64_t k, double *out) noexcept
    void fl_normalize_rows_f32(float *data, int64_t rows, int64_t row_len) noexcept
    void fl_normalize_rows_f64(double *data, int64_t rows, int64_t row_len) noexcept


cdef extern from "src/half.h" nogil:
    enum:
        FL_HALF_TILE
        FL_HALF_F16
        FL_HALF_BF16
    void fl_round_half(const float *src, int64_t n, int kind, uint16_t *out) noexcept
    void fl_philox_unitball_half(const fl_philox_key *key, int64_t first, int64_t rows, int64_t row_len, int kind,
                                 uint16_t *out) noexcept


cdef extern from "src/caffe_rng.h" nogil:
    enum: FL_MT_N
    ctypedef struct fl_mt19937:
        uint32_t key[624]
        uint32_t out[624]
        int32_t pos
        uint64_t blocks
    void fl_mt_seed(fl_mt19937 *st, uint32_t seed) noexcept
    void fl_mt_set(fl_mt19937 *st, const uint32_t *key, int32_t pos, uint64_t blocks) noexcept
    void fl_mt_raw(fl_mt19937 *st, int64_t n, uint32_t *out) noexcept
    void fl_caffe_uniform_f32(fl_mt19937 *st, int64_t n, float lo, float hi, float *out) noexcept
    void fl_caffe_uniform_f64(fl_mt19937 *st, int64_t n, double lo, double hi, double *out) noexcept
    void fl_caffe_gaussian_f32(fl_mt19937 *st, int64_t n, float mean, float std, float *out) noexcept
    void fl_caffe_gaussian_f64(fl_mt19937 *st, int64_t n, double mean, double std, double *out) noexcept
    void fl_caffe_bernoulli_mask_f32(fl_mt19937 *st, int64_t n, float p, float *data) noexcept
    void fl_caffe_bernoulli_mask_f64(fl_mt19937 *st, int64_t n, double p, double *data) noexcept


cdef extern from "src/pool.h" nogil:
    ctypedef void (*fl_pool_work)(void *ctx, int64_t begin, int64_t end) noexcept nogil
    void fl_pool_for(int64_t n, int64_t grain, int threads, fl_pool_work work, void *ctx) noexcept
    int fl_pool_threads(int threads) noexcept
    int fl_pool_max_threads() noexcept
