"""Out-of-core writing: blobs filled piece by piece straight into the output file.

:func:`write_streamed` is what ``fill_net(..., out=path)`` and ``fillers fill`` use.  Every format is written
sequentially from one reused piece buffer (the blob never exists whole in memory, and the file's pages are
written with ``write``, so they count in the page cache, not in the process's resident set):

- ``.caffemodel``: :class:`fillers.caffemodel.CaffemodelWriter`, the packed field written as it is filled;
- ``.safetensors``: its JSON header first (every shape is known in advance), then the data in header order;
  these two go through one :class:`~fillers.caffemodel.WriteQueue` for the whole file, so the filling never
  waits for the writing at a blob's end (the next blob's first piece is filled while the last is written);
- ``.h5``: h5py lays out the file with every dataset contiguous and allocated (no fill values written), then
  each dataset's bytes are written at the offset HDF5 gave it (a 0-axis blob's one value through h5py);
- ``.npz``: a stored (uncompressed) zip, as ``numpy.savez`` writes, each member's ``.npy`` header then its
  values through ``zipfile``'s streaming member writer;
- ``.npy`` folder: each blob's file laid out by ``numpy.lib.format.open_memmap``, then its values written
  after the header through a :class:`~fillers.caffemodel.WriteQueue` of its own.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fillers import caffe_pb2
from fillers.caffemodel import (
    Blob,
    CaffemodelWriter,
    WriteQueue,
    blob_pieces,
    check_caffemodel_size,
    write_blob,
)
from fillers.io import (
    _NPZ_METADATA,
    _ORDER_KEY,
    Writeback,
    _format,
    _optional,
    atomic_write,
    caffemodel_layers,
    check_dtype,
    check_layer_names,
    npy_folder,
)

__all__ = ["write_streamed"]

Shapes = Mapping[str, Sequence[tuple[int, ...]]]
Layers = Iterable[tuple[str, Sequence[Blob]]]


class _Counter:
    """Adds up bytes written, passes them to ``written`` and reports ``(done, total)``."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None,
                 written: Callable[[int], None]) -> None:
        self.done = 0
        self.total = total
        self.progress = progress
        self.written = written

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        self.written(nbytes)
        if self.progress is not None:
            self.progress(self.done, self.total)


def _checked(layers: Layers, shapes: Shapes) -> Iterator[tuple[str, Sequence[Blob]]]:
    """The layers, each checked against the shapes announced beforehand (the headers were written from them)."""
    expected = iter(shapes.items())
    for key, blobs in layers:
        name, blob_shapes = next(expected, (None, None))
        got = [tuple(blob.shape) for blob in blobs]
        if name != key or got != [tuple(shape) for shape in blob_shapes]:
            raise RuntimeError(f"layer {key!r} with blobs {got} does not match the announced {name!r}: "
                               f"{blob_shapes}")  # a bug in the caller, not bad input
        yield key, blobs


def write_streamed(path: str | os.PathLike, shapes: Shapes, dtype: np.dtype, layers: Layers, *,
                   net: caffe_pb2.NetParameter | None = None, phase: str | int | None = "TEST",
                   progress: Callable[[int, int], None] | None = None,
                   metadata: Mapping[str, str] | None = None) -> None:
    """Write blobs produced one layer at a time to ``path`` (atomically), in any format :func:`fillers.save`
    writes, with the same content ``save`` gives the same blobs.

    Parameters
    ----------
    path : str or os.PathLike
        The output; its extension chooses the format.
    shapes : mapping of str to sequence of tuple
        Every layer key and its blobs' shapes, in order, known before anything is filled.
    dtype : numpy.dtype
        float32, float64, float16 or bfloat16: every blob's.
    layers : iterable of (str, sequence of numpy.ndarray or ChunkedBlob)
        The blobs, in the order of ``shapes``; a :class:`~fillers.caffemodel.ChunkedBlob` is filled piece by
        piece as it is written.  The iterable is consumed once, in step with the writing.
    net : NetParameter, optional
        The net: a ``.caffemodel`` holds it whole, built for ``phase``, as :func:`fillers.save` writes it.
    phase : {"TEST", "TRAIN"} or None
        As for :func:`fillers.save`.
    progress : callable, optional
        ``progress(done, total)`` in bytes after each piece written.
    metadata : mapping of str to str, optional
        Recorded as :func:`fillers.save` records it (not in a ``.caffemodel``).

    Raises
    ------
    FileFormatError
        A ``.caffemodel`` over protobuf's 2 GiB limit, or a dtype the format cannot hold, before anything is
        written.
    FileExistsError
        A ``.npy`` path that is a file or a folder fillers did not write, before anything is written.
    ValueError
        A layer name HDF5 cannot hold, or an unknown extension, before anything is written.
    """
    fmt = _format(path)
    check_layer_names(path, fmt, shapes)
    dtype = np.dtype(dtype)
    check_dtype(path, fmt, dtype)
    layers = _checked(layers, shapes)
    total = sum(math.prod(s) for blob_shapes in shapes.values() for s in blob_shapes) * dtype.itemsize
    metadata = dict(metadata or {})
    if fmt == ".npy":  # a folder: each blob's file its own writeback
        _write_npy_folder(path, shapes, layers, _Counter(total, progress, lambda nbytes: None), metadata)
        return
    if fmt == ".caffemodel":
        plan = caffemodel_layers(shapes, net, phase)
        head = caffe_pb2.NetParameter(name=net.name) if net is not None else None
        check_caffemodel_size(path, head, [(layer, [np.broadcast_to(dtype.type(0), shape) for shape in shapes[key]]
                                                   if key is not None else []) for layer, key in plan])
    with atomic_write(path) as handle, Writeback(handle) as written:
        counter = _Counter(total, progress, written)
        if fmt == ".caffemodel":
            with WriteQueue(_bytes_writer(handle), counter) as queue:
                _write_caffemodel(queue, head, plan, layers)
        elif fmt == ".safetensors":
            with WriteQueue(_bytes_writer(handle), counter) as queue:
                _write_safetensors(queue, shapes, dtype, layers, metadata)
        elif fmt == ".h5":
            _write_h5(handle, shapes, dtype, layers, counter, metadata)
        else:
            _write_npz(handle, dtype, layers, counter, metadata)


def _bytes_writer(handle) -> Callable[[bytes | np.ndarray], None]:
    """``handle.write`` taking an array as its bytes (a bfloat16 array has no buffer format, 'E')."""
    def write(data: bytes | np.ndarray) -> None:
        handle.write(data.view(np.uint8) if isinstance(data, np.ndarray) else data)
    return write


def _write_all(handle, blobs: Sequence[Blob], counter: _Counter) -> None:
    for blob in blobs:
        write_blob(_bytes_writer(handle), blob, counter)


def _write_caffemodel(queue: WriteQueue, head: caffe_pb2.NetParameter | None, plan, layers) -> None:
    writer = CaffemodelWriter(queue, head)
    for layer, key in plan:
        blobs: Sequence[Blob] = ()
        if key is not None:
            got, blobs = next(layers)
            if got != key:
                raise RuntimeError(f"layer {got!r} comes where the net has {key!r}")  # a bug in the caller
        writer.add_layer(layer, blobs)


def _write_safetensors(queue: WriteQueue, shapes: Shapes, dtype: np.dtype, layers,
                       metadata: dict[str, str]) -> None:
    """The safetensors layout: an 8-byte little-endian header size, the JSON header (padded with spaces to a
    multiple of 8 bytes, so the data is aligned), then every tensor's bytes back to back in header order."""
    name = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16"}[dtype.name]
    header: dict[str, object] = {"__metadata__": {**metadata, _ORDER_KEY: json.dumps(list(shapes))}}
    offset = 0
    for key, blob_shapes in shapes.items():
        for i, shape in enumerate(blob_shapes):
            size = math.prod(shape) * dtype.itemsize
            header[f"{key}.{i}"] = {"dtype": name, "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    queue.write(len(encoded).to_bytes(8, "little") + encoded)
    for _, blobs in layers:
        for blob in blobs:
            queue.put_blob(blob)


def _write_h5(handle, shapes: Shapes, dtype: np.dtype, layers, counter: _Counter, metadata: dict[str, str]) -> None:
    h5py = _optional("h5py", "h5")
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # storage placed now, so its offset is known
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # and not written twice
    with h5py.File(handle, "w", track_order=True) as h5:
        h5.attrs.update(metadata)
        data = h5.create_group("data", track_order=True)
        datasets = {}
        for key, blob_shapes in shapes.items():
            group = data.create_group(key, track_order=True)
            datasets[key] = [group.create_dataset(str(i), shape=shape, dtype=dtype.newbyteorder("<"), dcpl=dcpl)
                             for i, shape in enumerate(blob_shapes)]
        for key, blobs in layers:
            for dataset, blob in zip(datasets[key], blobs):
                offset = dataset.id.get_offset()
                if offset is not None:
                    handle.seek(offset)
                    _write_all(handle, [blob], counter)
                elif blob.size:  # a 0-axis blob: HDF5 stores its one value in the header
                    dataset[()] = next(blob_pieces(blob))[0]
                    counter(dtype.itemsize)


def _write_npz(handle, dtype: np.dtype, layers, counter: _Counter, metadata: dict[str, str]) -> None:
    descr = np.lib.format.dtype_to_descr(dtype.newbyteorder("<"))
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
        if metadata:  # as numpy.savez stores save()'s __metadata__ entry
            with npz.open(f"{_NPZ_METADATA}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.array(json.dumps(metadata)))
        for key, blobs in layers:
            for i, blob in enumerate(blobs):
                with npz.open(f"{key}/{i}.npy", "w", force_zip64=True) as member:
                    header = {"descr": descr, "fortran_order": False, "shape": tuple(blob.shape)}
                    np.lib.format.write_array_header_1_0(member, header)
                    _write_all(member, [blob], counter)


def _write_npy_folder(path, shapes: Shapes, layers, counter: _Counter, metadata: dict[str, str]) -> None:
    """A ``.npy`` folder (:func:`fillers.io.npy_folder`): each blob's file is laid out by ``open_memmap``
    (header, then the file sized, nothing touched), then its values are written after the header through a
    :class:`~fillers.caffemodel.WriteQueue` (a ChunkedBlob filled piece by piece, each while the last is
    written), their writeback started as they go (:class:`fillers.io.Writeback`); the folder is synced before
    it is moved into place.  Written, not mapped: a piece filled straight into a mapping of the file faults
    in every page on its own, which measured slower than filling a cached buffer and writing it."""
    with npy_folder(path, {key: len(blob_shapes) for key, blob_shapes in shapes.items()}, metadata) as blob_file:
        for key, blobs in layers:
            for i, blob in enumerate(blobs):
                where = blob_file(key, i)
                created = np.lib.format.open_memmap(where, mode="w+", dtype=blob.dtype, shape=tuple(blob.shape))
                offset = created.offset
                del created  # unmapped untouched
                with open(where, "r+b") as handle, Writeback(handle) as written:
                    handle.seek(offset)

                    def report(nbytes: int) -> None:
                        counter(nbytes)
                        written(nbytes)
                    with WriteQueue(_bytes_writer(handle), report) as queue:
                        queue.put_blob(blob)
