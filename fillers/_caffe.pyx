# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""``CaffeRNG``: Caffe 1.0's global CPU generator (boost::mt19937 + Boost.Random >= 1.64 distributions).

The state lives in a C struct; every draw happens in ``fillers/src/caffe_rng.c`` with the GIL released.
All checks happen before that, here or in ``fillers._fill``.
"""
import threading

import numpy as np

from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcmp, memcpy

from fillers._cdefs cimport (
    FL_MT_N, fl_caffe_bernoulli_mask_f32, fl_caffe_bernoulli_mask_f64, fl_caffe_gaussian_f32,
    fl_caffe_gaussian_f64, fl_caffe_uniform_f32, fl_caffe_uniform_f64, fl_mt19937, fl_mt_raw, fl_mt_seed,
    fl_mt_set, fl_normalize_rows_f32, fl_normalize_rows_f64,
)

ctypedef fused real:
    float
    double

cdef enum Kind:
    KIND_UNIFORM
    KIND_GAUSSIAN
    KIND_UNITBALL

_KINDS = {"uniform": KIND_UNIFORM, "gaussian": KIND_GAUSSIAN, "unitball": KIND_UNITBALL}


cdef void _draw(fl_mt19937 *st, Kind kind, double a, double b, double sparse_p, int64_t row_len,
                real[::1] out) noexcept nogil:
    """One filler's draws into the whole blob ``out`` (a, b, sparse_p are exact ``real`` values)."""
    cdef int64_t n = out.shape[0]
    if n == 0:
        return
    if real is float:
        if kind == KIND_GAUSSIAN:
            fl_caffe_gaussian_f32(st, n, <float>a, <float>b, &out[0])
            if sparse_p >= 0:
                fl_caffe_bernoulli_mask_f32(st, n, <float>sparse_p, &out[0])
        elif kind == KIND_UNIFORM:
            fl_caffe_uniform_f32(st, n, <float>a, <float>b, &out[0])
        else:
            fl_caffe_uniform_f32(st, n, 0.0, 1.0, &out[0])
            fl_normalize_rows_f32(&out[0], n // row_len, row_len)
    else:
        if kind == KIND_GAUSSIAN:
            fl_caffe_gaussian_f64(st, n, a, b, &out[0])
            if sparse_p >= 0:
                fl_caffe_bernoulli_mask_f64(st, n, sparse_p, &out[0])
        elif kind == KIND_UNIFORM:
            fl_caffe_uniform_f64(st, n, a, b, &out[0])
        else:
            fl_caffe_uniform_f64(st, n, 0.0, 1.0, &out[0])
            fl_normalize_rows_f64(&out[0], n // row_len, row_len)


cdef uint32_t _check_seed(seed) except? 0:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int in [0, 2**32), not {type(seed).__name__}")
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be in [0, 2**32) (Caffe's unsigned int), got {seed}")
    return <uint32_t>seed


cdef class CaffeRNG:
    """Caffe 1.0's CPU random stream, bit for bit.

    The state of Caffe's global generator right after ``Caffe::set_random_seed(seed)``: a boost::mt19937
    seeded by the reference ``init_genrand(seed)``.  ``fillers.fill(blob, filler, rng=rng)`` draws from it
    exactly as ``GetFiller<Dtype>(param)->Fill(&blob)`` does in a CPU build of Caffe 1.0 with Boost >= 1.64,
    so successive fills continue the stream like successive layers in one Caffe process.

    Parameters
    ----------
    seed : int
        Caffe's ``random_seed``, an unsigned 32-bit integer in ``[0, 2**32)``.

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        If ``seed`` is outside ``[0, 2**32)``.

    Notes
    -----
    The raw stream equals ``numpy.random.MT19937`` after ``_legacy_seeding(seed)`` (see :meth:`raw`), and
    :attr:`state` uses numpy's MT19937 state layout.  One generator must not be used from two threads at
    once: such use raises ``RuntimeError`` instead of drawing in an order that depends on timing.  Copies
    (``copy.copy``, ``copy.deepcopy``, ``pickle``) continue the stream independently from the same point.

    Examples
    --------
    >>> import numpy as np, fillers
    >>> rng = fillers.CaffeRNG(1701)
    >>> w = np.empty((64, 3, 7, 7), np.float32)
    >>> w = fillers.fill(w, {"type": "xavier"}, rng=rng)  # what Caffe's first xavier layer gets
    >>> rng.drawn  # one word per uniform sample
    9408
    """

    cdef fl_mt19937 _st
    cdef object _seed  # the seed the stream started from; None after restoring a state that has none
    cdef object _lock

    def __cinit__(self):
        self._lock = threading.Lock()

    def __init__(self, seed):
        fl_mt_seed(&self._st, _check_seed(seed))
        self._seed = int(seed)

    cdef int _enter(self) except -1:
        """Take the generator for one call; another thread holding it is an error, not a wait."""
        if not self._lock.acquire(False):
            raise RuntimeError(
                "this CaffeRNG is in use by another thread; Caffe's stream is sequential, so give each "
                "thread its own generator (copy.copy(rng)) or serialise the calls"
            )
        return 0

    @property
    def seed(self):
        """int or None: the seed this stream started from (None after restoring a state without one)."""
        return self._seed

    @property
    def drawn(self):
        """int or None: raw 32-bit words drawn since :attr:`seed` (None when the seed is unknown)."""
        if self._seed is None:
            return None
        return int(self._st.blocks) * FL_MT_N + self._st.pos - FL_MT_N

    @property
    def state(self):
        """dict: the generator state, in numpy's ``MT19937.state`` layout plus ``seed`` and ``drawn``.

        ``numpy.random.MT19937().state = rng.state`` gives a numpy bit generator at the same point of the
        raw stream; assigning a numpy MT19937 state here restores it (``seed`` and ``drawn`` then unknown).
        """
        cdef uint32_t[::1] words
        self._enter()
        try:
            key = np.empty(FL_MT_N, dtype=np.uint32)
            words = key
            memcpy(&words[0], self._st.key, sizeof(self._st.key))
            return {
                "bit_generator": "MT19937",
                "state": {"key": key, "pos": int(self._st.pos)},
                "seed": self._seed,
                "drawn": self.drawn,
            }
        finally:
            self._lock.release()

    @state.setter
    def state(self, value):
        if not isinstance(value, dict) or value.get("bit_generator") != "MT19937" or "state" not in value:
            raise ValueError("state must be a dict with bit_generator 'MT19937' and a 'state' entry")
        inner = value["state"]
        key = np.asarray(inner["key"])
        pos = inner["pos"]
        if key.shape != (FL_MT_N,) or key.dtype.kind not in "ui" or key.min() < 0 or key.max() > 0xFFFFFFFF:
            raise ValueError(f"state['state']['key'] must be {FL_MT_N} unsigned 32-bit words")
        key = np.ascontiguousarray(key, dtype=np.uint32)
        if isinstance(pos, (bool, np.bool_)) or not isinstance(pos, (int, np.integer)) or not 0 <= pos <= FL_MT_N:
            raise ValueError(f"state['state']['pos'] must be an int in [0, {FL_MT_N}], got {pos!r}")
        seed, drawn = value.get("seed"), value.get("drawn")
        blocks = 0
        if seed is not None:
            _check_seed(seed)
            if isinstance(drawn, bool) or not isinstance(drawn, (int, np.integer)) or drawn < 0 \
                    or (drawn - pos) % FL_MT_N:
                raise ValueError(f"state['drawn'] {drawn!r} does not match pos {pos}")
            blocks = (drawn - pos) // FL_MT_N + 1
        cdef uint32_t[::1] words = key
        self._enter()
        try:
            fl_mt_set(&self._st, &words[0], pos, blocks)
            self._seed = None if seed is None else int(seed)
        finally:
            self._lock.release()

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        return (type(self), (0,), self.state)

    def __copy__(self):
        cdef CaffeRNG other = type(self).__new__(type(self))
        self._enter()
        try:
            other._st = self._st
            other._seed = self._seed
        finally:
            self._lock.release()
        return other

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __eq__(self, other):
        if not isinstance(other, CaffeRNG):
            return NotImplemented
        cdef CaffeRNG o = other
        return self._st.pos == o._st.pos and memcmp(self._st.key, o._st.key, sizeof(self._st.key)) == 0

    __hash__ = None

    def __repr__(self):
        if self._seed is None:
            return f"{type(self).__name__}(<restored state>, pos={self._st.pos})"
        return f"{type(self).__name__}(seed={self._seed})  # {self.drawn} words drawn"

    def raw(self, n):
        """Draw ``n`` raw 32-bit words (``boost::mt19937::operator()``).

        Parameters
        ----------
        n : int
            How many words, ``>= 0``.

        Returns
        -------
        numpy.ndarray
            uint32 array of shape ``(n,)``, equal to ``numpy.random.MT19937`` after
            ``_legacy_seeding(seed)`` and ``random_raw(n)``.

        Raises
        ------
        TypeError
            If ``n`` is not an integer.
        ValueError
            If ``n < 0``.
        """
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] view = out
        self._enter()
        try:
            if view.shape[0]:
                with nogil:
                    fl_mt_raw(&self._st, view.shape[0], &view[0])
        finally:
            self._lock.release()
        return out

    def _fill(self, plan, out):
        """Draw one filler (``plan`` from ``fillers._params.resolve``) into the whole blob ``out``.

        ``out`` is the whole blob: 1-D, C-contiguous, writable, native ``plan.dtype``.  ``fillers.fill``
        guarantees this (it fills a buffer and copies back for other layouts).  Kinds: ``"uniform"``,
        ``"gaussian"`` (with ``sparse_p``) and ``"unitball"``; constant and bilinear draw nothing and are
        filled by ``fillers.fill`` itself.
        """
        if plan.kind not in _KINDS:
            raise ValueError(f"CaffeRNG draws uniform, gaussian and unitball plans, not {plan.kind!r}")
        cdef Kind kind = _KINDS[plan.kind]
        if not isinstance(out, np.ndarray) or out.ndim != 1 or not out.flags.c_contiguous:
            raise ValueError("out must be a 1-D C-contiguous numpy array")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        if out.dtype != plan.dtype or not out.dtype.isnative or out.dtype.kind != "f":
            raise TypeError(f"out has dtype {out.dtype}; the plan draws native {np.dtype(plan.dtype)}")
        cdef int64_t row_len = plan.row_len
        if kind == KIND_UNITBALL and (row_len <= 0 or out.shape[0] % row_len):
            raise ValueError(f"unitball row_len {row_len} does not divide the {out.shape[0]} elements")
        cdef double sparse_p = -1.0
        if kind == KIND_GAUSSIAN and plan.sparse_p is not None:
            sparse_p = plan.sparse_p
            if not 0.0 <= sparse_p <= 1.0:
                raise ValueError(f"sparse_p must be in [0, 1], got {plan.sparse_p}")
        cdef double a = plan.a, b = plan.b
        cdef float[::1] out32
        cdef double[::1] out64
        cdef bint single = out.dtype == np.float32
        if single:
            out32 = out
        else:
            out64 = out
        self._enter()
        try:
            with nogil:
                if single:
                    _draw(&self._st, kind, a, b, sparse_p, row_len, out32)
                else:
                    _draw(&self._st, kind, a, b, sparse_p, row_len, out64)
        finally:
            self._lock.release()
