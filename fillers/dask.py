"""Fills as Dask arrays: every chunk filled independently, on any worker (``pip install 'fillers[dask]'``).

The counter-based stream gives every element of a blob from its flat C-order index alone, so a chunk of a
Dask array is filled where it is computed, with no communication: ``filled(...).compute()`` equals
``fillers.fill`` of the whole blob bit for bit, whatever the chunks, scheduler or number of workers.  A chunk
of a multi-dimensional array is a box whose elements are strided in the flat index: it is filled as the
contiguous runs of its trailing axes, each at its own offset.  Caffe's stream (``rng="caffe"``) is sequential
and cannot be filled in independent chunks.

Store the result with ``dask.array.to_zarr`` or ``to_npy_stack``; see also ``fillers.fill_net(..., out=path)``
for one machine.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from fillers._fill import _check_u64, fill
from fillers._params import FillerLike, as_filler_parameter, resolve
from fillers.caffe_pb2 import FillerParameter, NetParameter
from fillers.errors import FillerError

try:
    import dask.array as da
    from dask.array.core import normalize_chunks
    from dask.base import tokenize
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError("fillers.dask needs the optional packages dask and zarr: pip install 'fillers[dask]'") from None

__all__ = ["fill_net", "filled"]


def _check_rng(rng: str) -> None:
    if rng == "caffe":
        raise ValueError("rng='caffe' is Caffe's sequential stream: it cannot be filled in independent chunks; "
                         "use fillers.fill_net(..., rng='caffe') on one machine, or rng='philox'")
    if rng != "philox":
        raise ValueError(f"rng must be 'philox' (or 'caffe', which cannot be chunked), got {rng!r}")


def _fill_block(*, filler: bytes, blob_shape: tuple[int, ...], blob_dtype: np.dtype, seed: int, stream: int,
                block_info: dict | None = None) -> np.ndarray:
    """One chunk: the box ``block_info``'s array-location of the whole blob ``blob_shape``, filled as the contiguous
    runs of its trailing axes, each at its flat offset."""
    shape = blob_shape
    location = block_info[None]["array-location"] if block_info else []
    starts = [a for a, _ in location]
    box = tuple(b - a for a, b in location)
    out = np.empty(box, blob_dtype)
    if out.size == 0:
        return out
    # Axes after `split` span the whole blob: a run is box[split] * their extent, contiguous in both.
    split = len(shape) - 1
    while split > 0 and box[split] == shape[split]:
        split -= 1
    split = max(split, 0)
    run = math.prod(box[split:]) if shape else 1
    inner = math.prod(shape[split + 1:])
    runs = out.reshape(-1, run)
    leading = box[:split]
    parameter = FillerParameter.FromString(filler)
    for r, index in enumerate(np.ndindex(*leading)):
        offset = 0
        for axis, i in enumerate(index):  # flat index of (starts[:split] + index, starts[split], 0, ...)
            offset = offset * shape[axis] + starts[axis] + i
        if shape:
            offset = (offset * shape[split] + starts[split]) * inner
        fill(runs[r], parameter, seed=seed, stream=stream, offset=offset, blob_shape=shape, threads=1)
    return out


def filled(
    shape: Sequence[int],
    filler: FillerLike,
    *,
    seed: int = 0,
    stream: int = 0,
    dtype: Any = np.float32,
    chunks: Any = "auto",
    rng: str = "philox",
) -> da.Array:
    """A Dask array holding ``fillers.fill(np.empty(shape, dtype), filler, seed=seed, stream=stream)``, each
    chunk filled independently where it is computed.

    Parameters
    ----------
    shape : sequence of int
        The blob's shape.
    filler : FillerParameter, mapping or str
        As for :func:`fillers.fill`.
    seed, stream : int
        The counter-based stream's key and stream.
    dtype : float32 or float64
    chunks : int, tuple, "auto", ...
        Dask chunks (any form ``dask.array`` accepts).  For ``positive_unitball``, which normalises whole
        rows (all axes but the first), ``"auto"`` keeps rows whole; explicit chunks that cut a row are an
        error.
    rng : {"philox"}
        ``"caffe"`` raises: Caffe's stream is sequential.

    Returns
    -------
    dask.array.Array
        ``.compute()`` equals the in-memory fill bit for bit.

    Raises
    ------
    ValueError
        ``rng="caffe"``; chunks that cut positive_unitball rows; an invalid filler (:class:`FillerError`).
    """
    _check_rng(rng)
    shape = tuple(int(d) for d in shape)
    dt = np.dtype(dtype)
    seed = _check_u64("seed", seed)
    stream = _check_u64("stream", stream)
    parameter = as_filler_parameter(filler)
    plan = resolve(parameter, shape, dt)  # validates the filler for this shape and dtype
    unitball = plan.kind == "unitball" and len(shape) > 1
    if unitball and chunks == "auto":
        chunks = ("auto",) + tuple(-1 for _ in shape[1:])
    normalized = normalize_chunks(chunks, shape, dtype=dt)
    if unitball and any(len(c) > 1 for c in normalized[1:]):
        raise FillerError(f"positive_unitball normalises whole rows of {math.prod(shape[1:])} elements: chunks "
                          f"must span every axis but the first, got {normalized}; use chunks=(n, "
                          f"{', '.join('-1' for _ in shape[1:])})")
    encoded = parameter.SerializeToString()
    name = "fillers-filled-" + tokenize(shape, encoded, seed, stream, dt.str, normalized)
    return da.map_blocks(_fill_block, chunks=normalized, dtype=dt, name=name, meta=np.empty((0,) * len(shape), dt),
                         filler=encoded, blob_shape=shape, blob_dtype=dt, seed=seed, stream=stream)


def fill_net(
    net: NetParameter | str | os.PathLike,
    *,
    seed: int = 0,
    rng: str = "philox",
    dtype: Any = np.float32,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int = "TEST",
    chunks: Any = "auto",
) -> dict[str, list[da.Array]]:
    """:func:`fillers.fill_net` as Dask arrays: one per blob, each chunk filled independently.

    Parameters
    ----------
    net, seed, dtype, inputs, phase
        As for :func:`fillers.fill_net` (Philox streams keyed by layer name, the same values).
    rng : {"philox"}
        ``"caffe"`` raises: Caffe's stream is sequential.
    chunks
        Dask chunks for every blob (see :func:`filled`).

    Returns
    -------
    dict of str to list of dask.array.Array
        As :func:`fillers.fill_net`'s dict; a shared blob is the owner's array (reshaped for PERMISSIVE
        sharing); values written in the net are wrapped with ``dask.array.from_array``.  Store them with
        ``dask.array.to_zarr`` or ``to_npy_stack``.
    """
    from fillers._fill import element_dtype
    from fillers.net import _PhiloxBlob, _plan, layer_keys
    from fillers.prototxt import load_net
    from fillers.shapes import infer_shapes

    _check_rng(rng)
    dt = element_dtype(dtype)
    layers = infer_shapes(net if isinstance(net, NetParameter) else load_net(net), inputs=inputs, phase=phase)
    made: dict[int, da.Array] = {}  # by Philox stream: a shared blob is made once
    out: dict[str, list[da.Array]] = {}
    for key, blobs in _plan(layers, layer_keys(layers), seed=_check_u64("seed", seed), caffe_rng=None, dt=dt,
                            threads=1, copies={}):
        arrays = []
        for blob in blobs:
            if isinstance(blob, _PhiloxBlob):
                if blob.stream not in made:
                    made[blob.stream] = filled(blob.fill_shape, blob.filler, seed=seed, stream=blob.stream,
                                               dtype=dt, chunks=chunks)
                array = made[blob.stream]
                arrays.append(array if array.shape == blob.shape else array.reshape(blob.shape))
            else:
                arrays.append(da.from_array(blob, chunks=chunks))
        out[key] = arrays
    return out
