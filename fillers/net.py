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
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
from google.protobuf.message import Message

from fillers._caffe import CaffeRNG
from fillers._fill import _check_u64, fill
from fillers.caffe_pb2 import FillerParameter, NetParameter, as_message
from fillers.caffemodel import ChunkedBlob
from fillers.prototxt import load_net
from fillers.shapes import LayerBlobs, infer_shapes
from fillers.stream import write_streamed

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


def _runs(layer: LayerBlobs, caffe: bool) -> list[tuple[int | None, tuple[int, ...], Any]]:
    """The filler runs of a layer: Caffe's (every run, shared blobs too) or Philox's (owned blobs only)."""
    if caffe:
        return [(step.blob, step.shape, step.filler) for step in layer.fills]
    if layer.given:  # values written in the net: nothing to fill
        return []
    return [(i, blob.shape, blob.filler) for i, blob in enumerate(layer.blobs) if blob.share_owner is None]


#: Bytes per piece when a blob is filled piece by piece (streamed to a file, or with progress reports).
PIECE_BYTES = 32 << 20


@dataclass(frozen=True)
class _PhiloxBlob:
    """A blob of the counter-based stream, to be filled whole or in pieces (a piece gets the values the whole
    fill puts at its offset).  ``shape`` is the blob's own; ``fill_shape`` the shape its filler sees (the
    owner's, for a blob shared by param name with PERMISSIVE sharing); ``label`` names it in errors."""

    shape: tuple[int, ...]
    fill_shape: tuple[int, ...]
    dtype: np.dtype
    filler: FillerParameter
    seed: int
    stream: int
    threads: int | None
    label: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def fill(self, out: np.ndarray, offset: int) -> None:
        """Fill the flat elements ``offset .. offset + out.size - 1`` into the 1-D ``out``."""
        try:
            fill(out, self.filler, seed=self.seed, stream=self.stream, offset=offset, blob_shape=self.fill_shape,
                 threads=self.threads)
        except ValueError as err:
            raise type(err)(f"{self.label}: {err}") from None

    def chunked(self) -> ChunkedBlob:
        """The blob as pieces of about :data:`PIECE_BYTES` (whole rows for positive_unitball)."""
        piece = max(1, PIECE_BYTES // self.dtype.itemsize)
        if self.filler.type == "positive_unitball" and self.fill_shape and self.fill_shape[0]:
            row = max(1, math.prod(self.fill_shape) // self.fill_shape[0])
            piece = max(1, piece // row) * row
        return ChunkedBlob(self.shape, self.dtype, self.fill, piece)

    def array(self, report: Callable[[int], None] | None = None) -> np.ndarray:
        """The whole blob, filled (in pieces, each reported, when ``report`` is given).  The most common filler,
        constant +0.0 (every bias, BatchNorm's statistics, a filler left out), draws nothing: it gets
        ``np.zeros``, whose pages the OS supplies already zeroed, instead of a write pass over fresh memory."""
        if _is_zero(self.filler):
            zeros = np.zeros(self.shape, self.dtype)
            if report is not None:
                report(zeros.nbytes)
            return zeros
        flat = np.empty(math.prod(self.fill_shape), self.dtype)
        if report is None:
            self.fill(flat, 0)
        else:
            for offset, count in self.chunked().pieces():
                self.fill(flat[offset:offset + count], offset)
                report(count * self.dtype.itemsize)
        return flat.reshape(self.shape)


def _is_zero(filler: FillerParameter) -> bool:
    """Constant +0.0 (infer_shapes has validated every filler already)."""
    return filler.type == "constant" and filler.value == 0 and math.copysign(1.0, filler.value) > 0


Blob = Union[np.ndarray, _PhiloxBlob]


def _plan(layers: list[LayerBlobs], keys: list[str], *, seed: int, caffe_rng: CaffeRNG | None, dt: np.dtype,
          threads: int | None) -> Iterator[tuple[str, list[Blob]]]:
    """Every layer's blobs, in net order: the Caffe stream's filled as the iteration reaches them (its draws are
    sequential), Philox's as :class:`_PhiloxBlob`, to fill whole or in pieces.  A blob shared by param name is
    its owner's object (reshaped for PERMISSIVE sharing)."""
    first_key = {layer.name: key for key, layer in reversed(list(zip(keys, layers)))}
    owners = {blob.share_owner for layer in layers for blob in layer.blobs if blob.share_owner is not None}
    kept: dict[tuple[str, int], Blob] = {}  # shared owners' blobs, for their sharers
    for key, layer in zip(keys, layers):
        blobs: list[Any] = [None] * len(layer.blobs)
        if caffe_rng is not None:
            caffe_rng.raw(layer.raw_draws_before)
        for index, shape, filler in _runs(layer, caffe_rng is not None):
            label = f"layer {layer.name!r} ({layer.type}), blob {index}"
            if caffe_rng is None:
                blobs[index] = _PhiloxBlob(shape, shape, dt, filler, seed, philox_stream(key, index), threads, label)
                continue
            try:
                array = np.zeros(shape, dt) if _is_zero(filler) else fill(np.empty(shape, dt), filler, rng=caffe_rng)
            except ValueError as err:
                raise type(err)(f"{label}: {err}") from None
            if index is not None:
                blobs[index] = array
        if layer.given:  # values written in the net (or by the setup) replace whatever the fills made
            blobs = [np.array(values, dt) for values in layer.given_values()]
        for i, blob in enumerate(layer.blobs):
            if blob.share_owner is not None:
                owner, index = blob.share_owner
                shared = kept[first_key[owner], index]
                if shared.shape != blob.shape:  # PERMISSIVE sharing: the sharer's shape over the owner's data
                    shared = shared.reshape(blob.shape) if isinstance(shared, np.ndarray) else \
                        replace(shared, shape=blob.shape)
                blobs[i] = shared
            elif (layer.name, i) in owners and key == first_key[layer.name]:
                kept[key, i] = blobs[i]
        yield key, blobs


def fill_net(
    net: NetParameter | str | os.PathLike,
    *,
    seed: int = 0,
    rng: str = "philox",
    dtype: Any = np.float32,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int = "TEST",
    threads: int | None = None,
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[np.ndarray]] | dict[str, list[tuple[int, ...]]]:
    """Fill every learnable blob of a net with the filler Caffe would use.

    Parameters
    ----------
    net : NetParameter or path
        The net (any format :func:`fillers.load_net` reads, or a loaded message, also pycaffe's).
    seed : int
        Philox: a 64-bit key.  Caffe: ``Caffe::set_random_seed``'s unsigned 32-bit seed.
    rng : {"philox", "caffe"}
        The stream (see the module notes).
    dtype : float32 or float64
        Caffe's ``Dtype``.
    inputs, phase
        As for :func:`fillers.infer_shapes`.
    threads : int, optional
        Worker threads for ``rng="philox"`` (never changes the values); must be ``None`` for Caffe's
        sequential stream.
    out : str or os.PathLike, optional
        Stream the blobs to this file instead of returning them (any format :func:`fillers.save` writes,
        written atomically): each Philox blob is filled in pieces of :data:`PIECE_BYTES` straight into the
        output, so memory stays bounded whatever the net's size; Caffe-stream blobs are filled whole, one at
        a time (the stream is sequential).  The file holds exactly what ``save(fill_net(...), out, net=...)``
        writes.
    progress : callable, optional
        Called as ``progress(done, total)`` with the bytes filled (and, with ``out``, written) so far and the
        total, after each piece.  The library draws nothing; the ``fillers`` command shows a bar.

    Returns
    -------
    dict of str to list of numpy.ndarray, or dict of str to list of tuple
        Layer name to its blobs, in net order; a shared blob is the owner's array object.  Caffe allows two
        layers one name: the later ones are keyed ``name#2``, ``name#3``, ... (and Philox keys their
        streams by that key).  With ``out``: layer name to the shapes of the blobs written.

    Raises
    ------
    ShapeError
        From :func:`fillers.infer_shapes`.
    ValueError
        Unknown ``rng``, a seed out of range, ``threads`` with ``rng="caffe"``, or a filler Caffe would
        reject (the layer is named).
    FileFormatError
        ``out`` cannot hold the net (a ``.caffemodel`` over 2 GiB, a layer name HDF5 cannot hold), before
        anything is filled.
    TypeError
        ``dtype`` other than float32/float64, or arguments of the wrong type.

    Examples
    --------
    >>> params = fill_net("examples/lenet.prototxt", seed=1701, rng="caffe")   # doctest: +SKIP
    >>> params["conv1"][0].shape                                                 # doctest: +SKIP
    (20, 1, 5, 5)
    >>> fill_net("vgg19.prototxt", out="vgg19.safetensors")                     # doctest: +SKIP
    """
    if rng not in _RNGS:
        raise ValueError(f"rng must be one of {', '.join(_RNGS)}, got {rng!r}")
    dt = _check_dtype(dtype)
    if rng == "caffe" and threads is not None:
        raise ValueError("threads does not apply with rng='caffe': Caffe's stream is sequential")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    caffe_rng = CaffeRNG(seed) if rng == "caffe" else None
    if caffe_rng is None:
        _check_u64("seed", seed)
    net_message = as_message(net, NetParameter) if isinstance(net, Message) else load_net(net)
    layers = infer_shapes(net_message, inputs=inputs, phase=phase)
    keys = _keys(layers)
    plan = _plan(layers, keys, seed=seed, caffe_rng=caffe_rng, dt=dt, threads=threads)
    shapes = {key: [blob.shape for blob in layer.blobs] for key, layer in zip(keys, layers)}
    if out is not None:
        pieces = ((key, [blob.chunked() if isinstance(blob, _PhiloxBlob) else blob for blob in blobs])
                  for key, blobs in plan)
        write_streamed(out, shapes, dt, pieces, net=net_message, progress=progress)
        return shapes
    total = sum(math.prod(shape) for blob_shapes in shapes.values() for shape in blob_shapes) * dt.itemsize
    return _fill_in_memory(plan, total, progress)


def _fill_in_memory(plan: Iterator[tuple[str, list[Blob]]], total: int,
                    progress: Callable[[int, int], None] | None) -> dict[str, list[np.ndarray]]:
    """The blobs as arrays, each Philox blob filled whole (in reported pieces with ``progress``); a blob shared
    by several layers is filled once and is the same array object (a view for PERMISSIVE sharing)."""
    done = 0

    def report(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        progress(done, total)

    made: dict[int, np.ndarray] = {}  # by Philox stream
    out: dict[str, list[np.ndarray]] = {}
    for key, blobs in plan:
        arrays = []
        for blob in blobs:
            if isinstance(blob, _PhiloxBlob):
                if blob.stream in made:
                    array = made[blob.stream]
                    array = array if array.shape == blob.shape else array.reshape(blob.shape)
                    if progress is not None:
                        report(array.nbytes)
                else:
                    array = made[blob.stream] = blob.array(report if progress is not None else None)
            else:
                array = blob
                if progress is not None:
                    report(array.nbytes)
            arrays.append(array)
        out[key] = arrays
    return out


def _keys(layers: list[LayerBlobs]) -> list[str]:
    """Layer names as dict keys: a name that repeats (Caffe allows it) gets ``#2``, ``#3``, ... on its later
    layers."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        seen[layer.name] = seen.get(layer.name, 0) + 1
        keys.append(layer.name if seen[layer.name] == 1 else f"{layer.name}#{seen[layer.name]}")
    return keys

