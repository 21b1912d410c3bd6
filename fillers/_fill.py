"""The public filling API: :func:`fill` and :func:`philox_raw`."""
from __future__ import annotations

import math
import operator
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fillers import _dlpack, _kernels
from fillers.errors import ArrayError, FillerError
from fillers._params import CAFFE_TYPES, FillerLike, FillPlan, as_filler_parameter, resolve
from fillers.seeds import Philox, SeedLike, key_of

if TYPE_CHECKING:  # pragma: no cover
    from fillers._caffe import CaffeRNG

#: Environment variable that sets the default number of threads.
THREADS_ENV = "FILLERS_NUM_THREADS"
_U64 = 1 << 64
_I64 = 1 << 63


def default_threads() -> int:
    """The thread count used when ``threads=None``: ``$FILLERS_NUM_THREADS`` or the usable cores."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _check_u64(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    value = int(value)
    if not 0 <= value < _U64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return value


def _check_threads(threads: Any) -> int:
    """The thread count to use, capped at ``_kernels.max_threads()`` (min(4 x logical CPUs, 256))."""
    if threads is None:
        threads = default_threads()
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, not {type(threads).__name__}")
    elif threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return min(int(threads), _kernels.max_threads())


def _has_internal_overlap(blob: np.ndarray) -> bool:
    """True when two elements of ``blob`` share memory (a broadcast or as_strided view)."""
    if blob.size <= 1 or blob.flags.c_contiguous or blob.flags.f_contiguous:
        return False
    dims = sorted((abs(s), n) for n, s in zip(blob.shape, blob.strides) if n > 1)
    reach = blob.itemsize  # bytes spanned by the axes seen so far
    for stride, n in dims:
        if stride < reach:
            return True
        reach = stride * (n - 1) + reach
    return False


#: The element types fill() writes (bfloat16 is ml_dtypes' numpy dtype).
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")


def element_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of an element type :func:`fill` writes, from a name, a type or a dtype.

    Parameters
    ----------
    dtype : str, type or numpy.dtype
        float32, float64, float16 or bfloat16 (the name ``"bfloat16"`` or ``ml_dtypes.bfloat16``), native
        byte order.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    TypeError
        Any other dtype.
    ImportError
        ``"bfloat16"`` without the optional package ml_dtypes.
    """
    if isinstance(dtype, str) and dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError("bfloat16 needs the optional package 'ml_dtypes': pip install 'fillers[bfloat16]'"
                              ) from None
        return np.dtype(ml_dtypes.bfloat16)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}") from None
    if dt.name not in DTYPE_NAMES or not dt.isnative:
        raise TypeError(f"dtype must be one of {', '.join(DTYPE_NAMES)} (native byte order), got {dt}")
    return dt


def _as_array(blob: Any) -> tuple[np.ndarray, Any]:
    """A numpy view of ``blob``'s memory (never a copy) and what keeps that memory alive while it is used:
    an ndarray itself, a CPU ``__dlpack__`` object (torch tensors ...), or any buffer (memoryview ...)."""
    if isinstance(blob, np.ndarray):
        return blob, None
    if hasattr(blob, "__dlpack__"):
        return _dlpack.from_dlpack(blob)
    try:
        view = memoryview(blob)
    except TypeError:
        raise TypeError(f"blob must be a numpy.ndarray, an object with __dlpack__ (a torch tensor ...) or a "
                        f"writable buffer, not {type(blob).__name__}") from None
    return np.asarray(view), None


def _check_blob(blob: np.ndarray) -> np.ndarray:
    # dtype.char first: dtype.name is slow, and a fill of a small blob should cost little more than its writes
    if blob.dtype.char not in "fdeE" or (blob.dtype.char == "E" and blob.dtype.name != "bfloat16"):
        raise TypeError(f"blob must have dtype {', '.join(DTYPE_NAMES)}, not {blob.dtype}")
    if not blob.dtype.isnative:
        raise ArrayError(f"blob must be in native byte order, got dtype {blob.dtype.str}")
    if not blob.flags.writeable:
        raise ArrayError("blob is read-only; fill() writes in place")
    if _has_internal_overlap(blob):
        raise ArrayError("blob has elements that share memory (a broadcast view?); fill() needs one "
                         "location per element")
    return blob


def _shape(blob_shape: Sequence[int] | None, blob: np.ndarray, offset: int) -> tuple[int, ...]:
    if blob_shape is None:
        shape = blob.shape
    else:
        try:
            shape = tuple(operator.index(d) for d in blob_shape)
        except TypeError:
            raise TypeError(f"blob_shape must be a sequence of ints, got {blob_shape!r}") from None
        if any(d < 0 for d in shape):
            raise ArrayError(f"blob_shape must not have negative dimensions, got {shape}")
    count = math.prod(shape)
    if count >= _I64:
        raise ArrayError(f"blob_shape {shape} has more than 2**63 - 1 elements")
    if offset + blob.size > count:
        raise ArrayError(f"offset {offset} + blob.size {blob.size} exceeds the {count} elements of blob_shape {shape}")
    return shape


def _check_philox(plan: FillPlan) -> None:
    # Caffe (Boost) draws such ranges at half scale; the counter-based transform lo + (hi - lo) * u cannot.
    if plan.kind == "uniform" and not plan.b - plan.a <= float(np.finfo(plan.dtype).max):
        raise FillerError(
            f"filler 'uniform': max - min overflows {plan.dtype.name} with the philox stream "
            f"(min={plan.a}, max={plan.b}); rng=CaffeRNG supports it"
        )


def _fill_philox(out: np.ndarray, plan: FillPlan, seed: int, stream: int, offset: int, threads: int) -> None:
    if plan.kind == "orthogonal":
        out[...] = _orthogonal(plan, seed, stream, threads).reshape(-1)
        return
    # float16 / bfloat16: the kernels write the rounded float32 values as bits
    bf16 = out.dtype.char == "E"  # _check_blob let only bfloat16 through with this char
    bits = out.view(np.uint16) if out.dtype.itemsize == 2 else out
    if plan.kind == "constant":
        _kernels.constant(bits, plan.a, threads, bf16)
    elif plan.kind == "bilinear":
        _kernels.bilinear(bits, offset, plan.kernel, threads, bf16)
    elif plan.kind == "uniform":
        _kernels.uniform(bits, seed, stream, offset, plan.a, plan.b, threads, bf16)
    elif plan.kind == "gaussian":
        sparse_p = -1.0 if plan.sparse_p is None else plan.sparse_p
        _kernels.gaussian(bits, seed, stream, offset, plan.a, plan.b, sparse_p, threads, bf16)
    elif plan.kind == "truncated":
        p_lo, p_span, lo, hi = plan.truncation
        _kernels.truncated(bits, seed, stream, offset, p_lo, p_span, plan.a, plan.b, lo, hi, threads, bf16)
    elif plan.kind == "diagonal":
        _kernels.diagonal(bits, offset, *plan.diagonal, plan.a, threads, bf16)
    else:  # unitball
        _kernels.unitball(bits, seed, stream, offset, plan.row_len, threads, bf16)


def _orthogonal(plan: FillPlan, seed: int, stream: int, threads: int) -> np.ndarray:
    """``gain`` times the orthogonal factor Q of a float64 gaussian ``(rows, cols)`` matrix (of its
    transpose when rows < cols), each column's sign made that of R's diagonal (torch's orthogonal_), in
    float64, rounded to the blob's dtype."""
    rows, cols = plan.matrix
    draw = np.empty(rows * cols, np.float64)
    _kernels.gaussian(draw, seed, stream, 0, 0.0, 1.0, -1.0, threads)
    matrix = draw.reshape(rows, cols)
    if rows < cols:
        matrix = matrix.T
    q, r = np.linalg.qr(matrix)
    q *= np.where(np.diagonal(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    return (q * plan.a).astype(plan.dtype)  # float32 for a half blob: its assignment rounds once more


def _fill_contiguous(out: np.ndarray, plan: FillPlan, seed: int, stream: int, offset: int, threads: int,
                     rng: CaffeRNG | None) -> None:
    """Fill the 1-D C-contiguous ``out`` (flat indices ``offset ..``) from the chosen stream."""
    if rng is not None and plan.kind not in ("constant", "bilinear"):
        rng._fill(plan, out)
    else:  # the counter-based stream, or a draw-free filler (the same kernels serve both streams)
        _fill_philox(out, plan, seed, stream, offset, threads)


def _check_caffe_rng(blob: np.ndarray, shape: tuple[int, ...], offset: int, threads: Any) -> None:
    if offset != 0 or shape != blob.shape:
        raise ValueError(
            "rng=CaffeRNG draws Caffe's sequential stream: pass the whole blob (offset=0, blob_shape=None), "
            f"got offset={offset}, blob_shape={shape} for a blob of shape {blob.shape}"
        )
    if threads is not None:
        raise ValueError("threads does not apply with rng=CaffeRNG: Caffe's stream is sequential")


def _check_caffe_type(filler_type: str) -> None:
    if filler_type not in CAFFE_TYPES:
        raise FillerError(f"filler {filler_type!r} is not one of Caffe's ({', '.join(CAFFE_TYPES)}): "
                          "rng=CaffeRNG draws Caffe's fillers only; use the counter-based stream")


def _key_and_stream(seed: Any, stream: Any, rng: Any, offset: int, blob_shape: Any) -> tuple[int, int]:
    """The Philox (key, stream) of one fill: from ``seed``/``stream``, or the next stream of a generator."""
    if isinstance(rng, Philox):
        if seed is not None or stream != 0:
            raise ValueError("rng=Philox(...) chooses the key and stream: leave seed and stream unset")
        if offset != 0 or blob_shape is not None:
            raise ValueError(
                "rng=Philox(...) gives each fill a new stream, so it cannot fill a blob in pieces; pass "
                "seed=gen.key, stream=k (the same for every piece) with offset and blob_shape instead"
            )
        return rng.next_stream()
    return key_of(seed), _check_u64("stream", stream)


def fill(
    blob: Any,
    filler: FillerLike,
    *,
    seed: SeedLike = None,
    stream: int = 0,
    offset: int = 0,
    blob_shape: Sequence[int] | None = None,
    threads: int | None = None,
    rng: CaffeRNG | Philox | None = None,
) -> Any:
    """Fill ``blob`` in place with a filler.

    Parameters
    ----------
    blob : numpy.ndarray, DLPack tensor or buffer
        Writable float32, float64, float16 or bfloat16 memory, any strides: a numpy array, an object with
        ``__dlpack__`` in CPU memory (a torch tensor, a JAX or CuPy CPU array; other devices raise
        :class:`~fillers.ArrayError`: copy to the host first) or any writable buffer (``memoryview``,
        ``array.array``).  A non-contiguous view gets exactly the values a contiguous array of its shape
        would get; nothing outside the view is touched.  float16 and bfloat16 elements are the float32
        fill's values rounded to nearest even.
    filler : FillerParameter, mapping or str
        The filler: a ``FillerParameter``, a mapping of its fields (``variance_norm`` by name or number),
        a type name (``"xavier"``) or FillerParameter text (``'type: "gaussian" std: 0.01 sparse: 15'``).
    seed : int, numpy.random.SeedSequence or None
        The key of the counter-based (Philox4x32-10) stream: an int in [0, 2**64) is the key itself, a
        SeedSequence is hashed to one (``fillers.seeds.key_of``), None (the default) draws fresh entropy, so
        two fills without a seed differ, as with ``numpy.random.default_rng()``.
    stream : int
        The 64-bit stream number under that key.
    offset : int
        Flat C-order index of ``blob``'s first element inside the whole blob, to fill a blob in pieces.
    blob_shape : sequence of int, optional
        Shape of the whole blob (fans, rows and ``sparse`` depend on it); default ``blob.shape``.
    threads : int, optional
        Worker threads; default ``$FILLERS_NUM_THREADS`` or all usable cores.  Never changes the values.
        More than min(4 x the logical CPUs, 256) are capped there.
    rng : Philox or CaffeRNG, optional
        A :class:`fillers.Philox` generator hands this fill its next stream (leave ``seed`` and ``stream``
        unset; the whole blob must be passed).  A :class:`fillers.CaffeRNG` draws from Caffe's own sequential
        stream instead (bit-identical to Caffe 1.0 on the CPU); the whole blob must be passed and
        ``threads``/``offset`` do not apply.

    Returns
    -------
    numpy.ndarray, tensor or buffer
        ``blob`` itself.

    Raises
    ------
    TypeError
        ``blob`` is not float memory of a supported dtype, or an argument has the wrong type.
    ValueError
        Unknown filler type, invalid parameter (the field and value are named), read-only, non-native or
        self-overlapping ``blob``, pieces that do not fit ``blob_shape``, or rows cut by a
        positive_unitball piece.  Nothing is written when an error is raised.

    Examples
    --------
    >>> import numpy as np, fillers
    >>> w = fillers.fill(np.empty((64, 3, 7, 7), np.float32), "xavier", seed=1)
    >>> bool(np.abs(w).max() <= np.sqrt(3 / (3 * 7 * 7)))
    True
    """
    from fillers._caffe import CaffeRNG

    target = blob
    array, keep_alive = _as_array(blob)  # keep_alive: a DLPack capsule whose memory `array` views
    blob = _check_blob(array)
    offset = _check_u64("offset", offset)
    shape = _shape(blob_shape, blob, offset)
    param = as_filler_parameter(filler)
    half = blob.dtype.itemsize == 2
    plan = resolve(param, shape, np.float32 if half else blob.dtype)  # half: the float32 fill, rounded
    if rng is not None and not isinstance(rng, (CaffeRNG, Philox)):
        raise TypeError(f"rng must be a fillers.Philox, a fillers.CaffeRNG or None, not {type(rng).__name__}")
    caffe_rng = rng if isinstance(rng, CaffeRNG) else None
    if caffe_rng is not None:
        _check_caffe_rng(blob, shape, offset, threads)
        _check_caffe_type(param.type)
        if half:
            raise TypeError(f"rng=CaffeRNG fills float32 or float64 (Caffe's Dtype), not {blob.dtype}")
        seed = stream = 0  # unused: Caffe's stream carries its own state
    else:
        _check_philox(plan)
    nthreads = 1 if caffe_rng is not None else _check_threads(threads)
    if plan.kind == "unitball" and plan.row_len and (offset % plan.row_len or blob.size % plan.row_len):
        raise ValueError(
            f"positive_unitball normalises whole rows of {plan.row_len} elements: a piece must start and "
            f"end on a row boundary, got offset={offset}, size={blob.size}"
        )
    if plan.kind == "orthogonal" and (offset != 0 or shape != blob.shape):
        raise ValueError(f"filler 'orthogonal' orthogonalises the whole blob: pass it whole (offset=0, "
                         f"blob_shape=None), got offset={offset}, blob_shape={shape} for a blob of shape "
                         f"{blob.shape}")
    if caffe_rng is None:  # last: a generator hands out a stream only to a fill that will happen
        seed, stream = _key_and_stream(seed, stream, rng, offset, blob_shape)
    if blob.size == 0:
        return target
    if blob.flags.c_contiguous and blob.flags.aligned:
        _fill_contiguous(blob.reshape(-1), plan, seed, stream, offset, nthreads, caffe_rng)
    else:
        buffer = np.empty(blob.shape, blob.dtype)
        _fill_contiguous(buffer.reshape(-1), plan, seed, stream, offset, nthreads, caffe_rng)
        np.copyto(blob, buffer)
    del keep_alive
    return target


def philox_raw(n: int, *, seed: int = 0, stream: int = 0, offset: int = 0) -> np.ndarray:
    """Raw words of the counter-based stream.

    Word ``j`` is word ``j % 4`` of the Philox4x32-10 block with key ``(seed & 0xffffffff, seed >> 32)`` and
    counter ``(b & 0xffffffff, b >> 32, stream & 0xffffffff, stream >> 32)``, ``b = j // 4``.

    Parameters
    ----------
    n : int
        Number of words.
    seed, stream : int
        64-bit key and stream.
    offset : int
        Index of the first word.

    Returns
    -------
    numpy.ndarray
        ``n`` uint32 words ``offset .. offset + n - 1``.

    Examples
    --------
    >>> [hex(w) for w in philox_raw(4)]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    seed = _check_u64("seed", seed)
    stream = _check_u64("stream", stream)
    offset = _check_u64("offset", offset)
    if offset + n > _U64:
        raise ValueError(f"offset + n must be <= 2**64, got {offset + n}")
    out = np.empty(n, np.uint32)
    _kernels.philox_raw(out, seed, stream, offset)
    return out
