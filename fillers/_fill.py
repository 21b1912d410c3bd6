"""The public filling API: :func:`fill` and :func:`philox_raw`."""
from __future__ import annotations

import math
import operator
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fillers import _kernels
from fillers.errors import ArrayError, FillerError
from fillers._params import FillerLike, FillPlan, as_filler_parameter, resolve
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


def _check_blob(blob: Any) -> np.ndarray:
    if not isinstance(blob, np.ndarray):
        raise TypeError(f"blob must be a numpy.ndarray, not {type(blob).__name__}")
    if blob.dtype.kind != "f" or blob.dtype.itemsize not in (4, 8):
        raise TypeError(f"blob must have dtype float32 or float64, not {blob.dtype}")
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
    if plan.kind == "constant":
        _kernels.constant(out, plan.a, threads)
    elif plan.kind == "bilinear":
        _kernels.bilinear(out, offset, plan.kernel, threads)
    elif plan.kind == "uniform":
        _kernels.uniform(out, seed, stream, offset, plan.a, plan.b, threads)
    elif plan.kind == "gaussian":
        sparse_p = -1.0 if plan.sparse_p is None else plan.sparse_p
        _kernels.gaussian(out, seed, stream, offset, plan.a, plan.b, sparse_p, threads)
    else:  # unitball
        _kernels.unitball(out, seed, stream, offset, plan.row_len, threads)


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
    blob: np.ndarray,
    filler: FillerLike,
    *,
    seed: SeedLike = None,
    stream: int = 0,
    offset: int = 0,
    blob_shape: Sequence[int] | None = None,
    threads: int | None = None,
    rng: CaffeRNG | Philox | None = None,
) -> np.ndarray:
    """Fill ``blob`` in place with a Caffe filler.

    Parameters
    ----------
    blob : numpy.ndarray
        Writable float32 or float64 array, any strides.  A non-contiguous view gets exactly the values a
        contiguous array of its shape would get; nothing outside the view is touched.
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
    numpy.ndarray
        ``blob`` itself.

    Raises
    ------
    TypeError
        ``blob`` is not a float32/float64 ndarray, or an argument has the wrong type.
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

    blob = _check_blob(blob)
    offset = _check_u64("offset", offset)
    shape = _shape(blob_shape, blob, offset)
    plan = resolve(as_filler_parameter(filler), shape, blob.dtype)
    if rng is not None and not isinstance(rng, (CaffeRNG, Philox)):
        raise TypeError(f"rng must be a fillers.Philox, a fillers.CaffeRNG or None, not {type(rng).__name__}")
    caffe_rng = rng if isinstance(rng, CaffeRNG) else None
    if caffe_rng is not None:
        _check_caffe_rng(blob, shape, offset, threads)
        seed = stream = 0  # unused: Caffe's stream carries its own state
    else:
        _check_philox(plan)
    nthreads = 1 if caffe_rng is not None else _check_threads(threads)
    if plan.kind == "unitball" and plan.row_len and (offset % plan.row_len or blob.size % plan.row_len):
        raise ValueError(
            f"positive_unitball normalises whole rows of {plan.row_len} elements: a piece must start and "
            f"end on a row boundary, got offset={offset}, size={blob.size}"
        )
    if caffe_rng is None:  # last: a generator hands out a stream only to a fill that will happen
        seed, stream = _key_and_stream(seed, stream, rng, offset, blob_shape)
    if blob.size == 0:
        return blob
    if blob.flags.c_contiguous and blob.flags.aligned:
        _fill_contiguous(blob.reshape(-1), plan, seed, stream, offset, nthreads, caffe_rng)
    else:
        buffer = np.empty(blob.shape, blob.dtype)
        _fill_contiguous(buffer.reshape(-1), plan, seed, stream, offset, nthreads, caffe_rng)
        np.copyto(blob, buffer)
    return blob


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
