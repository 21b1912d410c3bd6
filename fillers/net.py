"""Fill every learnable blob of a net: :func:`fill_net`.

Two streams:

- ``rng="philox"`` (default): blob ``i`` of layer ``L`` is filled from the counter-based stream with
  ``stream = philox_stream(L, i)``, the first 8 bytes (little-endian) of ``sha256(f"{L}\\0{i}")``.  Its values
  depend only on ``seed``, the layer name, the blob index, its shape and filler: adding, removing or
  reordering other layers never changes them, and any thread count gives the same bytes.
- ``rng="caffe"``: one :class:`~fillers.CaffeRNG` consumed in the order of Caffe's ``Net::Init``: layers in
  prototxt order after filtering, weight before bias, the seeds data layers draw in setup, every filler run of
  an unrolled recurrent layer, and a layer sharing a param by name running its own filler before the owner's
  blob replaces it.  The result equals the weights of ``caffe::Net<Dtype>`` built after
  ``Caffe::set_random_seed(seed)`` on the CPU.

A blob shared by ``param { name }`` is the owner's array itself in every layer that shares it.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from fillers._caffe import CaffeRNG
from fillers._fill import fill
from fillers.caffe_pb2 import FillerParameter, NetParameter
from fillers.prototxt import load_net
from fillers.shapes import LayerBlobs, infer_shapes

__all__ = ["fill_net", "philox_stream"]

_RNGS = ("philox", "caffe")


def philox_stream(layer: str, index: int) -> int:
    """The Philox stream of blob ``index`` of layer ``layer``: sha256 of ``"{layer}\\0{index}"`` (UTF-8), first
    8 bytes as a little-endian unsigned integer.

    Examples
    --------
    >>> philox_stream("conv1", 0) == int.from_bytes(hashlib.sha256(b"conv1\\x000").digest()[:8], "little")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{layer}\0{index}".encode()).digest()[:8], "little")


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr that shows only for fills taking more than a moment."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, delay=0.5, unit="param", unit_scale=True, file=sys.stderr,
                desc="filling", leave=False)


def _runs(layer: LayerBlobs, caffe: bool) -> list[tuple[int | None, tuple[int, ...], Any]]:
    """The filler runs of a layer: Caffe's (every run, shared blobs too) or Philox's (owned blobs only)."""
    if caffe:
        return [(step.blob, step.shape, step.filler) for step in layer.fills]
    if layer.given:  # values written in the net: nothing to fill
        return []
    return [(i, blob.shape, blob.filler) for i, blob in enumerate(layer.blobs) if blob.share_owner is None]


def fill_net(
    net: NetParameter | str | os.PathLike,
    *,
    seed: int = 0,
    rng: str = "philox",
    dtype: Any = np.float32,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int = "TEST",
    strict: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, list[np.ndarray]]:
    """Fill every learnable blob of a net with the filler Caffe would use.

    Parameters
    ----------
    net : NetParameter or path
        The net (any format :func:`fillers.load_net` reads, or a loaded message).
    seed : int
        Philox: a 64-bit key.  Caffe: ``Caffe::set_random_seed``'s unsigned 32-bit seed.
    rng : {"philox", "caffe"}
        The stream (see the module notes).
    dtype : float32 or float64
        Caffe's ``Dtype``.
    inputs, phase, strict
        As for :func:`fillers.infer_shapes`.
    threads : int, optional
        Worker threads for ``rng="philox"`` (never changes the values); must be ``None`` for Caffe's
        sequential stream.
    progress : bool
        Show a progress bar on stderr when the fill takes more than a moment.

    Returns
    -------
    dict of str to list of numpy.ndarray
        Layer name to its blobs, in net order; a shared blob is the owner's array object.  Caffe allows two
        layers one name: the later ones are keyed ``name#2``, ``name#3``, ... (and Philox keys their
        streams by that key).

    Raises
    ------
    ShapeError
        From :func:`fillers.infer_shapes`.
    ValueError
        Unknown ``rng``, a seed out of range, ``threads`` with ``rng="caffe"``, or a filler Caffe would
        reject (the layer is named).
    TypeError
        ``dtype`` other than float32/float64, or arguments of the wrong type.

    Examples
    --------
    >>> params = fill_net("examples/lenet.prototxt", seed=1701, rng="caffe")   # doctest: +SKIP
    >>> params["conv1"][0].shape                                                 # doctest: +SKIP
    (20, 1, 5, 5)
    """
    if rng not in _RNGS:
        raise ValueError(f"rng must be one of {', '.join(_RNGS)}, got {rng!r}")
    dt = _check_dtype(dtype)
    if rng == "caffe" and threads is not None:
        raise ValueError("threads does not apply with rng='caffe': Caffe's stream is sequential")
    caffe_rng = CaffeRNG(seed) if rng == "caffe" else None
    layers = infer_shapes(load_net(net) if isinstance(net, (str, os.PathLike)) else net, inputs=inputs, phase=phase,
                          strict=strict)
    keys = _keys(layers)
    runs = [(key, layer, _runs(layer, caffe_rng is not None)) for key, layer in zip(keys, layers)]
    out: dict[str, list[np.ndarray]] = {}
    with _progress(sum(math.prod(shape) for *_, steps in runs for _, shape, _ in steps), progress) as bar:
        for key, layer, steps in runs:
            if caffe_rng is not None:
                caffe_rng.raw(layer.raw_draws_before)
            arrays: list[Any] = [None] * len(layer.blobs)
            for index, shape, filler in steps:
                where = {"rng": caffe_rng} if caffe_rng is not None else \
                    {"seed": seed, "stream": philox_stream(key, index), "threads": threads}
                try:
                    array = _new_blob(shape, dt, filler, where)
                except ValueError as err:
                    raise ValueError(f"layer {layer.name!r} ({layer.type}), blob {index}: {err}") from None
                if index is not None:
                    arrays[index] = array
                bar.update(array.size)
            if layer.given:  # values written in the net (or by the setup) replace whatever the fills made
                arrays = [np.array(values, dt) for values in layer.given_values()]
            out[key] = arrays
    first_key = {layer.name: key for key, layer in reversed(list(zip(keys, layers)))}
    for key, layer in zip(keys, layers):
        for i, blob in enumerate(layer.blobs):
            if blob.share_owner is not None:
                owner, index = blob.share_owner
                shared = out[first_key[owner]][index]
                # PERMISSIVE sharing keeps the sharer's shape over the owner's data (equal counts).
                out[key][i] = shared if shared.shape == blob.shape else shared.reshape(blob.shape)
    return out


def _new_blob(shape: tuple[int, ...], dt: np.dtype, filler: FillerParameter, where: dict) -> np.ndarray:
    """A filled array.  The most common filler, constant +0.0 (every bias, BatchNorm's statistics, a filler
    left out), draws nothing: it gets ``np.zeros``, whose pages the OS supplies already zeroed, instead of a
    write pass over fresh memory.  (infer_shapes has validated every filler already.)"""
    if filler.type == "constant" and filler.value == 0 and math.copysign(1.0, filler.value) > 0:
        return np.zeros(shape, dt)
    return fill(np.empty(shape, dt), filler, **where)


def _keys(layers: list[LayerBlobs]) -> list[str]:
    """Layer names as dict keys: a name that repeats (Caffe allows it) gets ``#2``, ``#3``, ... on its later
    layers."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        seen[layer.name] = seen.get(layer.name, 0) + 1
        keys.append(layer.name if seen[layer.name] == 1 else f"{layer.name}#{seen[layer.name]}")
    return keys

