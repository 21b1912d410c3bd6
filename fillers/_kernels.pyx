# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Thin glue between the validated Python API and the C kernels in ``fillers/src``.

Every function here takes a 1-D C-contiguous typed memoryview, splits it into fixed chunks of
``CHUNK`` elements and hands each chunk to a C kernel inside ``prange`` with the GIL released.  Each
element's value depends only on its flat index (``first`` + position), never on the split, so the thread
count cannot change the result.  All checks happen in ``fillers._fill`` before these are called.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint32_t, uint64_t

from fillers._cdefs cimport (
    fl_bilinear_f32, fl_bilinear_f64, fl_constant_f32, fl_constant_f64, fl_normalize_rows_f32,
    fl_normalize_rows_f64, fl_philox_gaussian_f32, fl_philox_gaussian_f64, fl_philox4x32_10, fl_philox_key, fl_philox_raw,
    fl_philox_sparsify_f32, fl_philox_sparsify_f64, fl_philox_uniform_f32, fl_philox_uniform_f64,
)

ctypedef fused real:
    float
    double

# Elements per work item: large enough to amortise scheduling, small enough to stay in L2.
CHUNK = 1 << 16
cdef int64_t _CHUNK = CHUNK

# What a chunked kernel does; one dispatch switch instead of one prange loop per kernel.
cdef enum Op:
    OP_UNIFORM
    OP_GAUSSIAN
    OP_SPARSIFY
    OP_CONSTANT
    OP_BILINEAR


cdef inline void _run_chunk(Op op, const fl_philox_key *key, int64_t first, int64_t n, double a, double b,
                            int64_t k, real *out) noexcept nogil:
    if real is float:
        if op == OP_UNIFORM:
            fl_philox_uniform_f32(key, first, n, <float>a, <float>b, out)
        elif op == OP_GAUSSIAN:
            fl_philox_gaussian_f32(key, first, n, <float>a, <float>b, out)
        elif op == OP_SPARSIFY:
            fl_philox_sparsify_f32(key, first, n, a, out)
        elif op == OP_CONSTANT:
            fl_constant_f32(n, <float>a, out)
        else:
            fl_bilinear_f32(first, n, k, out)
    else:
        if op == OP_UNIFORM:
            fl_philox_uniform_f64(key, first, n, a, b, out)
        elif op == OP_GAUSSIAN:
            fl_philox_gaussian_f64(key, first, n, a, b, out)
        elif op == OP_SPARSIFY:
            fl_philox_sparsify_f64(key, first, n, a, out)
        elif op == OP_CONSTANT:
            fl_constant_f64(n, a, out)
        else:
            fl_bilinear_f64(first, n, k, out)


cdef void _run(Op op, real[::1] out, uint64_t seed, uint64_t stream, int64_t first, double a, double b,
               int64_t k, int threads) noexcept nogil:
    cdef fl_philox_key key
    cdef int64_t n = out.shape[0]
    cdef int64_t chunks = (n + _CHUNK - 1) // _CHUNK
    cdef int64_t c, start
    key.seed = seed
    key.stream = stream
    if n == 0:
        return
    if chunks == 1 or threads <= 1:
        _run_chunk(op, &key, first, n, a, b, k, &out[0])
        return
    for c in prange(chunks, schedule='static', num_threads=threads):
        start = c * _CHUNK
        _run_chunk(op, &key, first + start, min(_CHUNK, n - start), a, b, k, &out[start])


def philox_raw(uint32_t[::1] out, uint64_t seed, uint64_t stream, uint64_t first):
    """Raw Philox4x32-10 words ``first ..`` of ``(seed, stream)`` into ``out``."""
    cdef fl_philox_key key
    key.seed = seed
    key.stream = stream
    if out.shape[0]:
        with nogil:
            fl_philox_raw(&key, first, out.shape[0], &out[0])


def philox4x32_10(counter, key):
    """One Philox4x32-10 block for a 4-word ``counter`` and 2-word ``key`` (known-answer tests)."""
    cdef uint32_t out[4]
    cdef uint32_t c[4]
    cdef uint32_t k[2]
    c = counter
    k = key
    fl_philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1], out)
    return [out[0], out[1], out[2], out[3]]


def uniform(real[::1] out, uint64_t seed, uint64_t stream, int64_t first, double lo, double hi, int threads):
    """U[lo, hi] from the counter-based stream."""
    with nogil:
        _run(OP_UNIFORM, out, seed, stream, first, lo, hi, 0, threads)


def gaussian(real[::1] out, uint64_t seed, uint64_t stream, int64_t first, double mean, double std,
             double sparse_p, int threads):
    """N(mean, std) from the counter-based stream; when ``sparse_p >= 0`` each element is kept with
    probability ``sparse_p`` (else multiplied by 0)."""
    with nogil:
        _run(OP_GAUSSIAN, out, seed, stream, first, mean, std, 0, threads)
        if sparse_p >= 0:
            _run(OP_SPARSIFY, out, seed, stream, first, sparse_p, 0, 0, threads)


def constant(real[::1] out, double value, int threads):
    """Every element set to ``value``."""
    with nogil:
        _run(OP_CONSTANT, out, 0, 0, 0, value, 0, 0, threads)


def bilinear(real[::1] out, int64_t first, int64_t kernel, int threads):
    """Caffe's bilinear upsampling weights for a ``kernel`` x ``kernel`` filter."""
    with nogil:
        _run(OP_BILINEAR, out, 0, 0, first, 0, 0, kernel, threads)


def normalize_rows(real[::1] out, int64_t row_len, int threads):
    """Divide each row of ``row_len`` elements by its sum (positive_unitball)."""
    cdef int64_t rows = out.shape[0] // row_len if row_len else 0
    cdef int64_t per = max(1, _CHUNK // max(row_len, 1))
    cdef int64_t parts = (rows + per - 1) // per
    cdef int64_t c, r0
    with nogil:
        for c in prange(parts, schedule='static', num_threads=max(1, min(threads, parts))):
            r0 = c * per
            if real is float:
                fl_normalize_rows_f32(&out[r0 * row_len], min(per, rows - r0), row_len)
            else:
                fl_normalize_rows_f64(&out[r0 * row_len], min(per, rows - r0), row_len)
