"""Seeds, numpy's way: fresh entropy by default, ``SeedSequence`` seeds and the :class:`Philox` generator.

The counter-based stream is addressed by a 64-bit key and a 64-bit stream number (see ``fillers.philox_raw``).
How each kind of seed becomes a key:

- an ``int`` in [0, 2**64) *is* the key (the bytes of every earlier release are kept);
- a ``numpy.random.SeedSequence`` ``ss`` gives the key ``w0 | w1 << 32`` where
  ``w0, w1 = ss.generate_state(2, numpy.uint32)``;
- ``None`` is fresh entropy from the operating system (``os.urandom``), as ``numpy.random.default_rng()``
  draws: the key is 8 random bytes, little-endian (4 for Caffe's 32-bit seed).

A :class:`Philox` generator owns one key and hands stream 0, 1, 2, ... of it to successive fills, so
``fill(a, f, rng=Philox(s))`` then ``fill(b, f, rng=...)`` equals ``fill(a, f, seed=s, stream=0)`` then
``fill(b, f, seed=s, stream=1)``.  ``spawn(n)`` gives children whose keys come from
``SeedSequence.spawn``, independent of the parent's and of each other's.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Union

import numpy as np

__all__ = ["Philox", "SeedLike", "key_of"]

_U64 = 1 << 64

# numpy.random is imported on first use only (numpy 2 loads it lazily): a seed that is an int never needs it,
# and the command line starts faster without it.
SeedLike = Union[int, np.integer, "np.random.SeedSequence", None]


def key_of(seed: SeedLike, *, bits: int = 64) -> int:
    """The integer seed (a Philox key, or with ``bits=32`` a Caffe seed) a seed stands for.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence or None
        An int is returned as is (it must fit in ``bits``); a SeedSequence gives its first ``bits / 32``
        generated uint32 words, little-endian; None draws ``bits / 8`` bytes of OS entropy (``os.urandom``).
    bits : {64, 32}
        Width of the result.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        ``seed`` of another type (bool included).
    ValueError
        An int outside [0, 2**bits).

    Examples
    --------
    >>> key_of(1701)
    1701
    >>> import numpy as np
    >>> w = np.random.SeedSequence(5).generate_state(2, np.uint32)
    >>> key_of(np.random.SeedSequence(5)) == int(w[0]) | int(w[1]) << 32
    True
    """
    if seed is None:
        return int.from_bytes(os.urandom(bits // 8), "little")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        if isinstance(seed, np.random.SeedSequence):
            words = seed.generate_state(bits // 32, np.uint32)
            return sum(int(w) << (32 * i) for i, w in enumerate(words))
        raise TypeError(f"seed must be an int, a numpy.random.SeedSequence or None, not {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"seed must be in [0, 2**{bits}), got {value}")
    return value


class Philox:
    """A generator for :func:`fillers.fill`: each fill with ``rng=gen`` gets the next stream of one key.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence or None
        The key, as :func:`key_of` maps it: an int is the key itself, a SeedSequence is hashed to one.  None
        is a fresh ``SeedSequence()`` (its entropy shows in the repr, so the generator can be made again).

    Attributes
    ----------
    key : int
        The 64-bit Philox key.
    fills : int
        How many streams have been handed out; the next fill uses stream ``fills``.
    seed_seq : numpy.random.SeedSequence
        The sequence :meth:`spawn` draws children from (``SeedSequence(seed)`` for an int seed).

    Notes
    -----
    The k-th fill (from 0) with ``rng=gen`` is ``fill(..., seed=gen.key, stream=k)``: the whole sequence is
    reproducible from the seed, and consecutive fills use distinct streams of the same key, which Philox
    makes independent.  A generator pickles with its position.  It is safe to share between threads (each
    fill takes one stream atomically); which thread gets which stream then depends on timing.

    Examples
    --------
    >>> import numpy as np, fillers
    >>> gen = fillers.Philox(1701)
    >>> a = fillers.fill(np.empty(4, np.float32), "gaussian", rng=gen)
    >>> b = fillers.fill(np.empty(4, np.float32), "gaussian", rng=gen)
    >>> bool((a == fillers.fill(np.empty(4, np.float32), "gaussian", seed=1701, stream=0)).all())
    True
    >>> bool((b == fillers.fill(np.empty(4, np.float32), "gaussian", seed=1701, stream=1)).all())
    True
    >>> gen
    Philox(seed=1701, fills=2)
    """

    def __init__(self, seed: SeedLike = None) -> None:
        if seed is None:
            seed = np.random.SeedSequence()
        self.key = key_of(seed)
        self.seed_seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(self.key)
        self._seed = seed if isinstance(seed, np.random.SeedSequence) else self.key
        self._fills = 0
        self._lock = threading.Lock()

    @property
    def fills(self) -> int:
        return self._fills

    def next_stream(self) -> tuple[int, int]:
        """Take the next stream: returns ``(key, stream)`` and advances :attr:`fills`."""
        with self._lock:
            stream = self._fills
            if stream >= _U64:  # pragma: no cover - 2**64 fills
                raise OverflowError("this Philox generator has used all 2**64 streams of its key")
            self._fills += 1
        return self.key, stream

    def spawn(self, n_children: int) -> list[Philox]:
        """``n_children`` independent generators, as ``SeedSequence.spawn``: child ``i`` of a generator's
        ``j``-th spawn has ``SeedSequence(entropy, spawn_key=(..., j + i))``.  The parent's streams are
        unchanged.

        Parameters
        ----------
        n_children : int

        Returns
        -------
        list of Philox
        """
        return [Philox(child) for child in self.seed_seq.spawn(n_children)]

    def __repr__(self) -> str:
        seed = self._seed if isinstance(self._seed, int) else _seq_repr(self._seed)
        return f"Philox(seed={seed}, fills={self._fills})"

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self._seed, "seed_seq": self.seed_seq, "fills": self._fills}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seed"])
        self.seed_seq = state["seed_seq"]  # keeps the count of children already spawned
        self._fills = state["fills"]


def _seq_repr(seq: np.random.SeedSequence) -> str:
    """``SeedSequence(entropy=..., spawn_key=...)`` on one line (numpy's repr spans lines)."""
    spawn = f", spawn_key={tuple(seq.spawn_key)}" if seq.spawn_key else ""
    return f"SeedSequence(entropy={seq.entropy}{spawn})"
