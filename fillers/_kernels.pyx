# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Thin glue between the validated Python API and the C kernels in ``fillers/src``.

Every function here takes a 1-D C-contiguous typed memoryview (float32, float64, or uint16 holding float16
bits, or bfloat16 bits with ``bf16=True``), releases the GIL and hands the thread pool
(``fillers/src/pool.h``) a C work function that runs a C kernel on one chunk of ``CHUNK`` elements.
Each element's value depends only on its flat index (``first`` + position), never on the split, so the
thread count cannot change the result.  All checks happen in ``fillers._fill`` before these are called.

The counter-based kernels exist in several dispatch paths (scalar, AVX2, AVX-512) that give identical
bytes; the best one the CPU supports is used unless ``$FILLERS_SIMD`` names another (see
:func:`set_simd_path`).
"""
import os

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

from fillers._cdefs cimport (
    FL_ROWS_AT_ONCE, FL_SIMD_COUNT, fl_bilinear_f32, fl_bilinear_f64, fl_constant_f32, fl_constant_f64,
    fl_constant_u16, fl_diagonal_f32, fl_diagonal_f64, fl_diagonal_u16, fl_philox_truncated_f32, fl_philox_truncated_f64, fl_truncated_params,
    fl_normalize_rows_f32,
    fl_normalize_rows_f64, fl_philox4x32_10, fl_pool_for, fl_pool_max_threads, fl_pool_threads, fl_philox_gaussian_f32, fl_philox_gaussian_f64, fl_philox_key,
    fl_philox_raw, fl_philox_sparsify_f32, fl_philox_sparsify_f64, fl_philox_uniform_f32, fl_philox_uniform_f64,
    fl_simd_best, fl_simd_get, fl_simd_name, fl_simd_set, fl_simd_supported,
    FL_HALF_BF16, FL_HALF_F16, FL_HALF_TILE, fl_philox_unitball_half, fl_round_half,
)

ctypedef fused real:
    float
    double

# What the kernels write: float32, float64, or the bits of float16 / bfloat16 (Params.half says which),
# the float32 values rounded (fillers/src/half.h).
ctypedef fused element:
    float
    double
    uint16_t

# Elements per work item, handed out dynamically (a thread slowed by another process on its core takes
# fewer chunks).  Small enough that the fused passes of one chunk (gaussian then its sparse mask;
# positive_unitball's draw, row sums and division) stay in L2, large enough that scheduling costs nothing
# next to a chunk's work (~20 us).
CHUNK = 1 << 15
cdef int64_t _CHUNK = CHUNK
#: constant and diagonal blobs of at least this many bytes are written with non-temporal stores: past the
#: caches, a store that bypasses them saves the read of each line (glibc's memset switches to such stores
#: at a few MiB too); smaller blobs stay in cache for whatever reads them next.
STREAM_BYTES = 8 << 20

#: Environment variable that forces a dispatch path: ``scalar``, ``avx2``, ``avx512`` or ``auto``.
SIMD_ENV = "FILLERS_SIMD"

# What a chunked kernel does; one work function for the pool and one dispatch switch for every kernel.
cdef enum Op:
    OP_UNIFORM
    OP_GAUSSIAN
    OP_CONSTANT
    OP_BILINEAR
    OP_UNITBALL
    OP_NORMALIZE
    OP_TRUNCATED
    OP_DIAGONAL


cdef struct Params:
    fl_philox_key key
    double a           # uniform: lo; gaussian: mean; constant: value
    double b           # uniform: hi; gaussian: std
    double sparse_p    # gaussian: keep probability, < 0 for a dense fill
    int64_t k          # bilinear: kernel size; unitball, normalize: row length
    fl_truncated_params trunc   # truncated gaussian
    int64_t in_channels         # diagonal (fl_diagonal_*): the blob as (O, in_channels, spatial)
    int64_t spatial
    int64_t center
    int64_t per_group
    int half                    # uint16_t output: FL_HALF_F16 or FL_HALF_BF16
    int streaming               # constant, diagonal: non-temporal stores (a blob of >= STREAM_BYTES)


# The element type of a job's output.
cdef enum Elem:
    ELEM_F32
    ELEM_F64
    ELEM_HALF          # uint16_t bits of float16 or bfloat16 (Params.half)


cdef struct Job:
    Op op
    const Params *p
    void *out          # float *, double * or uint16_t *
    Elem elem
    int64_t first      # stream index of out[0]


cdef inline void _run_chunk(Op op, const Params *p, int64_t first, int64_t n, real *out) noexcept nogil:
    if real is float:
        if op == OP_UNIFORM:
            fl_philox_uniform_f32(&p.key, first, n, <float>p.a, <float>p.b, out)
        elif op == OP_GAUSSIAN:
            fl_philox_gaussian_f32(&p.key, first, n, <float>p.a, <float>p.b, out)
            if p.sparse_p >= 0:
                fl_philox_sparsify_f32(&p.key, first, n, p.sparse_p, out)
        elif op == OP_UNITBALL or op == OP_NORMALIZE:
            if op == OP_UNITBALL:
                fl_philox_uniform_f32(&p.key, first, n, 0, 1, out)
            fl_normalize_rows_f32(out, n // p.k, p.k)
        elif op == OP_TRUNCATED:
            fl_philox_truncated_f32(&p.key, first, n, &p.trunc, out)
        elif op == OP_DIAGONAL:
            fl_diagonal_f32(first, n, p.in_channels, p.spatial, p.center, p.per_group, <float>p.a, p.streaming, out)
        elif op == OP_CONSTANT:
            fl_constant_f32(n, <float>p.a, p.streaming, out)
        else:
            fl_bilinear_f32(first, n, p.k, out)
    else:
        if op == OP_UNIFORM:
            fl_philox_uniform_f64(&p.key, first, n, p.a, p.b, out)
        elif op == OP_GAUSSIAN:
            fl_philox_gaussian_f64(&p.key, first, n, p.a, p.b, out)
            if p.sparse_p >= 0:
                fl_philox_sparsify_f64(&p.key, first, n, p.sparse_p, out)
        elif op == OP_UNITBALL or op == OP_NORMALIZE:
            if op == OP_UNITBALL:
                fl_philox_uniform_f64(&p.key, first, n, 0, 1, out)
            fl_normalize_rows_f64(out, n // p.k, p.k)
        elif op == OP_TRUNCATED:
            fl_philox_truncated_f64(&p.key, first, n, &p.trunc, out)
        elif op == OP_DIAGONAL:
            fl_diagonal_f64(first, n, p.in_channels, p.spatial, p.center, p.per_group, p.a, p.streaming, out)
        elif op == OP_CONSTANT:
            fl_constant_f64(n, p.a, p.streaming, out)
        else:
            fl_bilinear_f64(first, n, p.k, out)


cdef void _run_chunk_half(Op op, const Params *p, int64_t first, int64_t n, uint16_t *out) noexcept nogil:
    """``op`` in float32, a tile at a time, rounded to float16/bfloat16 (unitball: whole rows, see half.h;
    constant and diagonal: their one value rounded once, then written as bits)."""
    cdef float tile[FL_HALF_TILE]
    cdef float value = <float>p.a
    cdef uint16_t bits
    cdef int64_t j = 0, m
    if op == OP_UNITBALL:
        fl_philox_unitball_half(&p.key, first, n // p.k, p.k, p.half, out)
        return
    if op == OP_CONSTANT or op == OP_DIAGONAL:
        fl_round_half(&value, 1, p.half, &bits)
        if op == OP_CONSTANT:
            fl_constant_u16(n, bits, p.streaming, out)
        else:
            fl_diagonal_u16(first, n, p.in_channels, p.spatial, p.center, p.per_group, bits, p.streaming, out)
        return
    while j < n:
        m = min(<int64_t>FL_HALF_TILE, n - j)
        _run_chunk(op, p, first + j, m, tile)
        fl_round_half(tile, m, p.half, out + j)
        j += m


cdef void _chunk_work(void *ctx, int64_t begin, int64_t end) noexcept nogil:
    """The pool's work function: elements ``begin .. end - 1`` of the job's output."""
    cdef const Job *job = <const Job *>ctx
    if job.elem == ELEM_F64:
        _run_chunk(job.op, job.p, job.first + begin, end - begin, <double *>job.out + begin)
    elif job.elem == ELEM_F32:
        _run_chunk(job.op, job.p, job.first + begin, end - begin, <float *>job.out + begin)
    else:
        _run_chunk_half(job.op, job.p, job.first + begin, end - begin, <uint16_t *>job.out + begin)


cdef void _run(Op op, const Params *p, element[::1] out, int64_t first, int64_t chunk, int threads) noexcept nogil:
    """``op`` over ``out`` in chunks of ``chunk`` elements (a multiple of the row length for unitball and
    normalize) on up to ``threads`` threads."""
    cdef Job job
    if out.shape[0] == 0:
        return
    job.op = op
    job.p = p
    job.out = &out[0]
    if element is double:
        job.elem = ELEM_F64
    elif element is float:
        job.elem = ELEM_F32
    else:
        job.elem = ELEM_HALF
    job.first = first
    fl_pool_for(out.shape[0], chunk, threads, _chunk_work, &job)


cdef inline Params _params(uint64_t seed, uint64_t stream, double a, double b, double sparse_p,
                           int64_t k, bint bf16) noexcept nogil:
    cdef Params p
    p.half = FL_HALF_BF16 if bf16 else FL_HALF_F16
    p.key.seed = seed
    p.key.stream = stream
    p.a = a
    p.b = b
    p.sparse_p = sparse_p
    p.k = k
    p.streaming = 0
    return p


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


def round_half(const float[::1] values, uint16_t[::1] out, bint bf16):
    """``values`` rounded to nearest even as float16 (or bfloat16) bits into ``out`` (what every half
    kernel applies to its float32 tile; exposed for the tests)."""
    if values.shape[0]:
        with nogil:
            fl_round_half(&values[0], min(values.shape[0], out.shape[0]), FL_HALF_BF16 if bf16 else FL_HALF_F16,
                          &out[0])


def uniform(element[::1] out, uint64_t seed, uint64_t stream, int64_t first, double lo, double hi, int threads,
            bint bf16=False):
    """U[lo, hi] from the counter-based stream."""
    cdef Params p = _params(seed, stream, lo, hi, -1, 0, bf16)
    with nogil:
        _run(OP_UNIFORM, &p, out, first, _CHUNK, threads)


def gaussian(element[::1] out, uint64_t seed, uint64_t stream, int64_t first, double mean, double std,
             double sparse_p, int threads, bint bf16=False):
    """N(mean, std) from the counter-based stream; when ``sparse_p >= 0`` each element is kept with
    probability ``sparse_p`` (else multiplied by 0), chunk by chunk while the chunk is in cache."""
    cdef Params p = _params(seed, stream, mean, std, sparse_p, 0, bf16)
    with nogil:
        _run(OP_GAUSSIAN, &p, out, first, _CHUNK, threads)


def unitball(element[::1] out, uint64_t seed, uint64_t stream, int64_t first, int64_t row_len, int threads,
             bint bf16=False):
    """positive_unitball: U[0, 1) from the counter-based stream, then each row of ``row_len`` elements
    divided by its sequential sum (Caffe's order).  ``first`` and ``out``'s size are multiples of
    ``row_len``.  Each work item draws at least FL_ROWS_AT_ONCE rows and normalises them while they are in
    cache; with too few rows to share out that way, all rows are drawn in parallel first."""
    cdef int64_t n = out.shape[0]
    cdef int64_t rows = n // row_len if row_len else 0
    cdef int64_t per = max(<int64_t>FL_ROWS_AT_ONCE, _CHUNK // max(row_len, 1))
    cdef Params p = _params(seed, stream, 0, 1, -1, row_len, bf16)
    if rows == 0:
        return
    threads = fl_pool_threads(threads)
    with nogil:
        if element is uint16_t:  # half.c's row passes: no float32 row to keep, so no separate draw pass
            _run(OP_UNITBALL, &p, out, first, per * row_len, threads)
        elif threads <= 1 or (rows + per - 1) // per >= threads:
            _run(OP_UNITBALL, &p, out, first, per * row_len, threads)
        else:
            _run(OP_UNIFORM, &p, out, first, _CHUNK, threads)
            _run(OP_NORMALIZE, &p, out, 0, (rows + threads - 1) // threads * row_len, threads)


def truncated(element[::1] out, uint64_t seed, uint64_t stream, int64_t first, double p_lo, double p_span,
              double mean, double scale, double lo, double hi, int threads, bint bf16=False):
    """truncated_gaussian by the inverse CDF: ``min(hi, max(lo, mean + scale * ndtri(p_lo + p_span * u)))``."""
    cdef Params p = _params(seed, stream, 0, 0, -1, 0, bf16)
    p.trunc.p_lo = p_lo
    p.trunc.p_span = p_span
    p.trunc.mean = mean
    p.trunc.scale = scale
    p.trunc.lo = lo
    p.trunc.hi = hi
    with nogil:
        _run(OP_TRUNCATED, &p, out, first, _CHUNK, threads)


def diagonal(element[::1] out, int64_t first, int64_t in_channels, int64_t spatial, int64_t center,
             int64_t per_group, double value, int threads, bint bf16=False):
    """dirac / identity / eye: zeros except ``value`` at ``(o, o % per_group, center)`` (see common.h)."""
    cdef Params p = _params(0, 0, value, 0, -1, 0, bf16)
    p.in_channels = in_channels
    p.spatial = spatial
    p.center = center
    p.per_group = per_group
    p.streaming = out.shape[0] * out.itemsize >= STREAM_BYTES
    with nogil:
        _run(OP_DIAGONAL, &p, out, first, _CHUNK, threads)


def constant(element[::1] out, double value, int threads, bint bf16=False):
    """Every element set to ``value``."""
    cdef Params p = _params(0, 0, value, 0, -1, 0, bf16)
    p.streaming = out.shape[0] * out.itemsize >= STREAM_BYTES
    with nogil:
        _run(OP_CONSTANT, &p, out, 0, _CHUNK, threads)


def bilinear(element[::1] out, int64_t first, int64_t kernel, int threads, bint bf16=False):
    """Caffe's bilinear upsampling weights for a ``kernel`` x ``kernel`` filter."""
    cdef Params p = _params(0, 0, 0, 0, -1, kernel, bf16)
    with nogil:
        _run(OP_BILINEAR, &p, out, first, _CHUNK, threads)


def normalize_rows(real[::1] out, int64_t row_len, int threads):
    """Divide each row of ``row_len`` elements by its sequential sum (positive_unitball's second step)."""
    cdef Params p = _params(0, 0, 0, 0, -1, row_len, False)
    if out.shape[0] == 0 or row_len == 0:
        return
    with nogil:
        _run(OP_NORMALIZE, &p, out, 0, max(1, _CHUNK // row_len) * row_len, threads)


def max_threads():
    """The most threads a fill uses: min(4 x the logical CPUs, 256); a larger ``threads`` is capped."""
    return fl_pool_max_threads()


def simd_paths():
    """The dispatch paths this machine supports, best last (``["scalar", "avx2", "avx512"]`` at most)."""
    return [fl_simd_name(i).decode() for i in range(FL_SIMD_COUNT) if fl_simd_supported(i)]


def simd_path():
    """The dispatch path the counter-based kernels use now."""
    return fl_simd_name(fl_simd_get()).decode()


def set_simd_path(name):
    """Force a dispatch path (``"scalar"``, ``"avx2"``, ``"avx512"``) or ``"auto"`` for the best one.

    Every path gives identical bytes; this exists for tests and benchmarks.  Not thread-safe: do not
    call it while another thread fills.

    Raises
    ------
    ValueError
        ``name`` is not a path, or this CPU (or build) does not support it.
    """
    if name == "auto":
        fl_simd_set(fl_simd_best())
        return
    for i in range(FL_SIMD_COUNT):
        if fl_simd_name(i).decode() == name:
            if fl_simd_set(i) != 0:
                raise ValueError(f"SIMD path {name!r} is not supported on this machine; "
                                 f"available: {', '.join(simd_paths())}")
            return
    names = ", ".join(fl_simd_name(i).decode() for i in range(FL_SIMD_COUNT))
    raise ValueError(f"unknown SIMD path {name!r}; valid: {names}, auto")


def _select_from_env():
    name = os.environ.get(SIMD_ENV, "").strip().lower()
    if name:
        try:
            set_simd_path(name)
        except ValueError as err:
            raise ValueError(f"${SIMD_ENV}: {err}") from None


_select_from_env()
