"""A streaming ``.caffemodel`` reader and writer over the protobuf wire format.

A ``.caffemodel`` is one binary ``NetParameter``: a sequence of tagged fields, its layers length-delimited
``LayerParameter`` messages (field 100; V1 models: ``V1LayerParameter``, field 2) whose ``blobs`` are
``BlobProto`` messages holding the weights as packed ``float`` (``data``, field 5) or ``double``
(``double_data``, field 8) fields.  Protobuf's own parse turns every float into a repeated-field element (and
numpy copies them again); here the small messages are still parsed by protobuf, but the packed weights are
read and written by hand:

- :func:`read_caffemodel` maps the file (``mmap``, copy-on-write) and returns arrays that are views of the
  packed data where the layout allows (little-endian ``float32`` ``data``, ``float64`` ``double_data`` on a
  little-endian host), copying only what it must (unpacked repeated floats, a field split in pieces,
  big-endian hosts).
- :class:`CaffemodelWriter` writes a ``NetParameter`` layer by layer: the caller passes each layer's
  ``LayerParameter`` (without blobs) and its blobs, as arrays or as :class:`ChunkedBlob` producers whose
  pieces are filled straight into the output as the packed field is written.  The bytes equal protobuf's
  ``SerializeToString`` of the same message (fields in number order), as Caffe's ``Net::ToProto`` writes it.

Blob shapes follow Caffe's ``Blob::FromProto``: a ``shape`` field gives the axes; otherwise the legacy
``num``/``channels``/``height``/``width`` fields, when any is present, give a 4-D shape; otherwise the blob has
zero axes (Caffe writes a 0-axis blob, e.g. PReLU's ``channel_shared`` slope, with no shape field and one value).
"""
from __future__ import annotations

import math
import mmap
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
from google.protobuf.message import DecodeError

from fillers import caffe_pb2
from fillers.errors import FileFormatError
from fillers.naming import numbered_names

__all__ = [
    "CAFFEMODEL_LIMIT",
    "CaffemodelWriter",
    "ChunkedBlob",
    "blob_array",
    "blob_pieces",
    "blob_shape",
    "write_blob",
    "WriteQueue",
    "caffemodel_size",
    "check_caffemodel_size",
    "read_caffemodel",
    "read_caffemodel_layers",
    "read_net",
]

#: The largest message protobuf (and Caffe's ``ReadProtoFromBinaryFile``, ``SetTotalBytesLimit(INT_MAX)``) reads.
CAFFEMODEL_LIMIT = 2**31 - 1

# Field numbers (proto/caffe.proto).
_NET_LAYERS_V1 = 2  # NetParameter.layers (V1LayerParameter)
_NET_LAYER = 100  # NetParameter.layer (LayerParameter)
_LAYER_BLOBS = 7  # LayerParameter.blobs
_V1_LAYER_BLOBS = 6  # V1LayerParameter.blobs
_BLOB_DATA = 5  # repeated float, packed
_BLOB_DOUBLE_DATA = 8  # repeated double, packed

_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_LITTLE = sys.byteorder == "little"
_FORMAT = "caffemodel"


# ------------------------------------------------------------------------------------------------------
# Wire-format primitives

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_field(number: int, size: int) -> bytes:
    """Key and length of a length-delimited field of ``size`` payload bytes."""
    return _key(number, _LENGTH) + _varint(size)


def _length_field_size(number: int, size: int) -> int:
    return len(_length_field(number, size)) + size


def read_varint(buf: memoryview | np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``buf[pos]`` and the position after it.

    Raises
    ------
    ValueError
        The varint runs past ``end`` or is longer than 10 bytes.
    """
    value = shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


class _Reader:
    """Walks the fields of one message in ``buf[start:end]``; errors name the file and the byte offset."""

    def __init__(self, buf: memoryview, path: str) -> None:
        self.buf = buf
        self.path = path

    def error(self, reason: str, offset: int) -> FileFormatError:
        return FileFormatError(self.path, _FORMAT, reason, offset)

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        try:
            return read_varint(self.buf, pos, end)
        except ValueError as err:
            raise self.error(str(err), pos) from None

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
        """``(number, wire type, field start, value start, value end)`` of every field; a length-delimited
        field's value is its payload, a varint's or fixed field's its bytes."""
        pos = start
        while pos < end:
            key, value_start = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.error("field number 0 (garbage or a corrupt file)", pos)
            if wire == _VARINT:
                _, value_end = self.varint(value_start, end)
            elif wire == _FIXED64:
                value_end = value_start + 8
            elif wire == _FIXED32:
                value_end = value_start + 4
            elif wire == _LENGTH:
                size, value_start = self.varint(value_start, end)
                value_end = value_start + size
            else:  # groups (3, 4) are not in caffe.proto; 6 and 7 do not exist
                raise self.error(f"field {number} has wire type {wire}, which caffe.proto never uses", pos)
            if value_end > end:
                raise self.error(f"field {number} needs {value_end - value_start} bytes, "
                                 f"{end - value_start} remain (truncated file?)", pos)
            yield number, wire, pos, value_start, value_end
            pos = value_end

    def proto(self, message_type: type, spans: list[tuple[int, int]], where: str):
        """Parse the fields in ``spans`` (byte ranges of whole fields, in order) with protobuf."""
        msg = message_type()
        try:
            msg.ParseFromString(b"".join(self.buf[a:b] for a, b in spans))
        except DecodeError as err:
            raise self.error(f"{where}: {err}", spans[0][0] if spans else None) from None
        return msg


# ------------------------------------------------------------------------------------------------------
# Reading

@dataclass
class _Values:
    """The pieces of a repeated float or double field: packed runs and unpacked elements."""

    dtype: np.dtype
    pieces: list[np.ndarray]

    def array(self) -> np.ndarray:
        if len(self.pieces) == 1:
            values = self.pieces[0]
        else:
            values = np.concatenate(self.pieces) if self.pieces else np.empty(0, self.dtype)
        return values if _LITTLE else values.astype(self.dtype.newbyteorder("="))


class _BlobParser:
    def __init__(self, reader: _Reader, data: np.ndarray) -> None:
        self.reader = reader
        self.data = data  # the whole file as uint8, for views

    def _unpacked_run(self, number: int, wire: int, pos: int, end: int, dtype: np.dtype) -> tuple[np.ndarray, int]:
        """The run of consecutive unpacked elements of field ``number`` starting at ``pos`` (one key byte then
        ``dtype.itemsize`` bytes each): a copy of their values, and where the run ends."""
        key = _key(number, wire)[0]
        stride = 1 + dtype.itemsize
        records = self.data[pos:pos + (end - pos) // stride * stride].reshape(-1, stride)
        mismatch = np.flatnonzero(records[:, 0] != key)
        n = int(mismatch[0]) if mismatch.size else len(records)
        values = np.ascontiguousarray(records[:n, 1:]).view(dtype).reshape(-1)
        return values, pos + n * stride

    def parse(self, start: int, end: int, where: str) -> np.ndarray:
        reader = self.reader
        floats = _Values(np.dtype("<f4"), [])
        doubles = _Values(np.dtype("<f8"), [])
        small: list[tuple[int, int]] = []  # shape, legacy dims, diffs: protobuf parses them
        pos = start
        while pos < end:
            # A run of unpacked elements is read in one step (each is a field of its own).
            key, value_start = reader.varint(pos, end)
            for values, number, wire in ((floats, _BLOB_DATA, _FIXED32), (doubles, _BLOB_DOUBLE_DATA, _FIXED64)):
                if key == number << 3 | wire:
                    piece, after = self._unpacked_run(number, wire, pos, end, values.dtype)
                    if not piece.size:
                        raise reader.error(f"{where}: field {number} needs {values.dtype.itemsize} bytes, "
                                           f"{end - value_start} remain (truncated file?)", pos)
                    values.pieces.append(piece)
                    pos = after
                    break
            else:
                number, wire, field_start, a, b = next(reader.fields(pos, end))
                if number in (_BLOB_DATA, _BLOB_DOUBLE_DATA) and wire == _LENGTH:
                    values = floats if number == _BLOB_DATA else doubles
                    if (b - a) % values.dtype.itemsize:
                        raise reader.error(f"{where}: packed field {number} of {b - a} bytes is not a whole number "
                                           f"of {values.dtype.itemsize}-byte values", field_start)
                    values.pieces.append(self.data[a:b].view(values.dtype))
                else:
                    small.append((field_start, b))
                pos = b
        head = reader.proto(caffe_pb2.BlobProto, small, where)
        values = doubles if doubles.pieces else floats
        array = values.array()
        shape = blob_shape(head)
        if math.prod(shape) != array.size:
            raise reader.error(f"{where}: {array.size} values for shape {shape}", start)
        return array.reshape(shape)


def blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The shape Caffe's ``Blob::FromProto`` gives a BlobProto: legacy dims when any is present, else its
    ``shape`` (no shape at all: zero axes)."""
    if any(blob.HasField(name) for name in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim)


def blob_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A parsed BlobProto's values as an array of its Caffe shape (:func:`blob_shape`), float64 when it holds
    ``double_data``, else float32 (a copy of protobuf's repeated field)."""
    if len(blob.double_data):
        return np.array(blob.double_data, np.float64).reshape(blob_shape(blob))
    return np.array(blob.data, np.float32).reshape(blob_shape(blob))


def map_file(path: str | os.PathLike) -> np.ndarray:
    """The file's bytes as a uint8 array over a private (copy-on-write) mapping: views are writable, and
    writes never reach the file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return np.empty(0, np.uint8)
        return np.frombuffer(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY), np.uint8)


@dataclass
class _Layer:
    """One layer entry of the file: its small fields' spans, its blobs' spans, and its V1-ness."""

    v1: bool
    small: list[tuple[int, int]]
    blobs: list[tuple[int, int]]
    offset: int


def _scan(reader: _Reader, end: int) -> tuple[list[tuple[int, int]], list[_Layer]]:
    """The top-level fields of a NetParameter: spans of the small ones, and every layer entry."""
    small: list[tuple[int, int]] = []
    layers: list[_Layer] = []
    for number, wire, field_start, a, b in reader.fields(0, end):
        if number in (_NET_LAYER, _NET_LAYERS_V1) and wire == _LENGTH:  # another wire type: unknown, as protobuf
            v1 = number == _NET_LAYERS_V1
            blobs_field = _V1_LAYER_BLOBS if v1 else _LAYER_BLOBS
            layer = _Layer(v1, [], [], field_start)
            for sub, sub_wire, sub_start, c, d in reader.fields(a, b):
                if sub == blobs_field and sub_wire == _LENGTH:
                    layer.blobs.append((c, d))
                else:
                    layer.small.append((sub_start, d))
            layers.append(layer)
        else:
            small.append((field_start, b))
    return small, layers


def _layer_message(reader: _Reader, layer: _Layer):
    return reader.proto(caffe_pb2.V1LayerParameter if layer.v1 else caffe_pb2.LayerParameter, layer.small,
                        f"layer at byte {layer.offset}")


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """The blobs of a ``.caffemodel`` by layer name, reading only the small messages with protobuf (the
    layers of :func:`read_caffemodel_layers`, keyed as :func:`fillers.fill_net` keys them).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to list of numpy.ndarray
        Layer name to its blobs, in file order, layers without blobs left out.  The layers are the file's
        ``layer`` entries, or its V1 ``layers`` when it has no ``layer``.  A name that repeats (Caffe allows
        it; a whole net written by :func:`fillers.save` keeps it) is keyed ``name#2``, ``name#3`` ... on its
        later layers with blobs, as :func:`fillers.fill_net` keys them.  Arrays are writable copy-on-write views of the file
        where the layout allows (possibly unaligned); ``float64`` when the blob holds ``double_data``.

    Raises
    ------
    FileFormatError
        A truncated or corrupt file, trailing garbage, or values that do not match their shape (the byte
        offset is named).
    """
    named = read_caffemodel_layers(path)
    return dict(zip(numbered_names(name for name, _ in named), (blobs for _, blobs in named)))


def read_caffemodel_layers(path: str | os.PathLike) -> list[tuple[str, list[np.ndarray]]]:
    """The layers of a ``.caffemodel`` that hold blobs, in file order, each with its own name (a name may
    repeat) and its blobs, as :func:`read_caffemodel` reads them; Caffe's ``CopyTrainedLayersFrom`` reads
    a file this way.

    Raises
    ------
    FileFormatError
        As :func:`read_caffemodel`.
    """
    path = os.fspath(path)
    data = map_file(path)
    reader = _Reader(memoryview(data), path)
    small, layers = _scan(reader, data.size)
    reader.proto(caffe_pb2.NetParameter, small, "NetParameter")  # the net's own fields must parse too
    if any(not layer.v1 for layer in layers):
        layers = [layer for layer in layers if not layer.v1]
    parser = _BlobParser(reader, data)
    named: list[tuple[str, list[np.ndarray]]] = []
    for layer in layers:
        message = _layer_message(reader, layer)
        if isinstance(message.name, bytes):  # protobuf's Python runtime hands out a non-UTF-8 string as bytes
            raise reader.error(f"layer name {message.name!r} is not UTF-8 (protobuf's Python runtime holds UTF-8 "
                               "strings only)", layer.offset)
        where = f"layer {message.name!r}"
        blobs = [parser.parse(a, b, f"{where}, blob {i}") for i, (a, b) in enumerate(layer.blobs)]
        if not blobs and layer.v1 and len(message.layer.blobs):  # a V0 layer wrapped in V1: its own blobs
            blobs = [blob_array(blob) for blob in message.layer.blobs]
        if blobs:
            named.append((message.name, blobs))
    return named


def read_net(path: str | os.PathLike, *, blobs: bool = True) -> caffe_pb2.NetParameter:
    """The ``NetParameter`` of a binary file, parsed one layer at a time from a mapping of the file (never the
    whole file in memory at once).

    Parameters
    ----------
    path : str or os.PathLike
    blobs : bool
        False: leave every layer's ``blobs`` out (the topology only; the weights are never read).

    Raises
    ------
    FileFormatError
        A truncated or corrupt file (the byte offset is named).
    """
    path = os.fspath(path)
    data = map_file(path)
    reader = _Reader(memoryview(data), path)
    small, layers = _scan(reader, data.size)
    net = reader.proto(caffe_pb2.NetParameter, small, "NetParameter")
    for layer in layers:
        message = _layer_message(reader, layer)
        if blobs:
            for a, b in layer.blobs:
                blob = message.blobs.add()
                try:
                    blob.ParseFromString(reader.buf[a:b])
                except DecodeError as err:
                    raise reader.error(f"layer {message.name!r}: {err}", a) from None
        (net.layers if layer.v1 else net.layer).append(message)
    return net


# ------------------------------------------------------------------------------------------------------
# Writing

@dataclass(frozen=True)
class ChunkedBlob:
    """A blob produced piece by piece, for writers that fill it straight into their output.

    Attributes
    ----------
    shape : tuple of int
        The blob's shape.
    dtype : numpy.dtype
        float32 or float64.
    fill : callable
        ``fill(out, offset)`` writes the flat C-order elements ``offset .. offset + out.size - 1`` into the
        1-D, C-contiguous, native-order array ``out``.  Called for consecutive pieces, in order.
    piece : int
        Elements per piece (the last may be shorter); a multiple of whatever the producer needs (whole rows).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fill: Callable[[np.ndarray, int], None]
    piece: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def pieces(self) -> Iterator[tuple[int, int]]:
        """``(offset, count)`` of each piece, in order."""
        step = max(1, self.piece)
        for offset in range(0, self.size, step):
            yield offset, min(step, self.size - offset)


Blob = Union[np.ndarray, ChunkedBlob]


def _check_blob(blob: Blob, where: str) -> Blob:
    if isinstance(blob, ChunkedBlob):
        dtype = np.dtype(blob.dtype)
    elif isinstance(blob, np.ndarray):
        dtype = blob.dtype
    else:
        raise TypeError(f"{where} must be a numpy array or a ChunkedBlob, not {type(blob).__name__}")
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{where} must be float32 or float64, not {dtype}")
    return blob


def _blob_fields(shape: tuple[int, ...], dtype: np.dtype) -> tuple[bytes, bytes]:
    """The BlobProto fields that describe ``shape``, split into those written before the values and after them
    (protobuf writes fields in number order: legacy dims 1-4 < ``data`` 5 < ``shape`` 7 < ``double_data`` 8).

    As Caffe's ``Blob::ToProto``: ``shape`` with the dims, none for a 0-axis blob.  A 4-D shape whose first axis
    is 1 gets the legacy num/channels/height/width fields instead, which Caffe matches against any blob of at
    most 4 axes with the same shape padded by leading 1s: a V1-era model's ``(1, 1, 1, n)`` bias re-saved still
    loads into the ``(n,)`` bias of the upgraded net."""
    if len(shape) == 4 and shape[0] == 1:
        return caffe_pb2.BlobProto(num=shape[0], channels=shape[1], height=shape[2],
                                   width=shape[3]).SerializeToString(), b""
    encoded = caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=shape)).SerializeToString() if shape else b""
    return (b"", encoded) if dtype == np.float32 else (encoded, b"")


def _split_layer(layer, blobs_field: int) -> tuple[bytes, bytes]:
    """A layer's serialized small fields, split where its blobs go (protobuf writes fields in number order,
    then unknown fields)."""
    encoded = layer.SerializeToString()
    reader = _Reader(memoryview(encoded), "<LayerParameter>")
    for number, _, field_start, _, _ in reader.fields(0, len(encoded)):
        if number > blobs_field:
            return encoded[:field_start], encoded[field_start:]
    return encoded, b""


def _blob_size(blob: Blob) -> int:
    dtype = np.dtype(blob.dtype)
    nbytes = math.prod(blob.shape) * dtype.itemsize
    return sum(map(len, _blob_fields(tuple(blob.shape), dtype))) + (_length_field_size(_BLOB_DATA, nbytes)
                                                                      if nbytes else 0)


def _is_v1(layer) -> bool:
    return isinstance(layer, caffe_pb2.V1LayerParameter)


def _layer_size(layer, blobs: Sequence[Blob]) -> int:
    """Payload bytes of a layer entry."""
    field = _V1_LAYER_BLOBS if _is_v1(layer) else _LAYER_BLOBS
    return len(layer.SerializeToString()) + sum(_length_field_size(field, _blob_size(b)) for b in blobs)


def caffemodel_size(net: caffe_pb2.NetParameter | None, layers: Iterable[tuple[Any, Sequence[Blob]]]) -> int:
    """Bytes :class:`CaffemodelWriter` writes for ``net``'s own fields and these ``(layer, blobs)`` entries."""
    head = CaffemodelWriter.head(net)
    return len(head) + sum(_length_field_size(_NET_LAYERS_V1 if _is_v1(layer) else _NET_LAYER,
                                              _layer_size(layer, blobs)) for layer, blobs in layers)


def _too_large(path: str, size: int, limit: int, what: str) -> FileFormatError:
    return FileFormatError(path, _FORMAT, f"{what} takes the file to {size:,} bytes, past the {limit:,} bytes "
                                          "protobuf and Caffe can read; save as .h5 or .safetensors instead")


def check_caffemodel_size(path: str | os.PathLike, net: caffe_pb2.NetParameter | None,
                          layers: Iterable[tuple[Any, Sequence[Blob]]]) -> None:
    """Raise :class:`FileFormatError` when these layers make a ``.caffemodel`` larger than protobuf reads
    (:data:`CAFFEMODEL_LIMIT`; call it before writing anything)."""
    size, limit = caffemodel_size(net, layers), CAFFEMODEL_LIMIT
    if size > limit:
        raise _too_large(os.fspath(path), size, limit, "the model")


class CaffemodelWriter:
    """Write a binary ``NetParameter`` one layer at a time, blob data streamed straight to the file.

    Parameters
    ----------
    handle : binary file object or WriteQueue
        Where to write (e.g. from :func:`fillers.io.atomic_write`); only ``write`` is used.  Through a
        :class:`WriteQueue` the blobs are written behind :meth:`add_layer` (the next filled meanwhile) and the
        queue reports the progress.
    net : NetParameter, optional
        The net's own fields (name, inputs, state ...), written first; its ``layer``/``layers`` are ignored:
        pass each layer to :meth:`add_layer`.
    limit : int, optional
        Refuse (before writing) a layer that would take the file past this many bytes; default
        :data:`CAFFEMODEL_LIMIT`, the most protobuf and Caffe read.

    Examples
    --------
    >>> import io, numpy as np
    >>> from fillers import caffe_pb2
    >>> out = io.BytesIO()
    >>> writer = CaffemodelWriter(out, caffe_pb2.NetParameter(name="tiny"))
    >>> writer.add_layer(caffe_pb2.LayerParameter(name="ip", type="InnerProduct"),
    ...                  [np.ones((2, 3), np.float32), np.zeros(2, np.float32)])
    >>> net = caffe_pb2.NetParameter.FromString(out.getvalue())
    >>> net.layer[0].blobs[0].shape.dim[:], len(net.layer[0].blobs[0].data)
    ([2, 3], 6)
    """

    def __init__(self, handle: IO[bytes], net: caffe_pb2.NetParameter | None = None, *,
                 limit: int | None = None) -> None:
        self._handle = handle
        self._limit = CAFFEMODEL_LIMIT if limit is None else limit
        self.bytes_written = 0
        self._write(self.head(net))

    @staticmethod
    def head(net: caffe_pb2.NetParameter | None) -> bytes:
        """``net``'s own fields, serialized (its layers left out)."""
        if net is None:
            return b""
        head = caffe_pb2.NetParameter()
        head.CopyFrom(net)
        head.ClearField("layer")
        head.ClearField("layers")
        return head.SerializeToString()

    def _write(self, data) -> None:
        self._handle.write(data)
        self.bytes_written += memoryview(data).nbytes

    def add_layer(self, layer, blobs: Sequence[Blob] = (), *,
                  progress: Callable[[int], None] | None = None) -> None:
        """Write one layer entry: ``layer``'s own fields with ``blobs`` as its ``blobs``.

        Parameters
        ----------
        layer : LayerParameter or V1LayerParameter
            The layer, without blobs (any it holds are an error: pass them in ``blobs``).  A V1 layer goes to
            the V1 ``layers`` field.
        blobs : sequence of numpy.ndarray or ChunkedBlob
            float32 blobs become ``data``, float64 ones ``double_data`` (Caffe's ``Blob<double>::ToProto``);
            any shape, zero axes and zero elements included.
        progress : callable, optional
            Called with the number of data bytes after each piece is written.

        Raises
        ------
        FileFormatError
            The file would exceed :data:`CAFFEMODEL_LIMIT` (protobuf and Caffe cannot read it: use ``.h5`` or
            ``.safetensors``); nothing of this layer is written.
        TypeError
            A layer or blob of the wrong type.
        """
        if not isinstance(layer, (caffe_pb2.LayerParameter, caffe_pb2.V1LayerParameter)):
            raise TypeError(f"layer must be a LayerParameter or V1LayerParameter, not {type(layer).__name__}")
        if len(layer.blobs):
            raise ValueError(f"layer {layer.name!r} holds blobs: pass them in `blobs` instead")
        blobs = [_check_blob(blob, f"layer {layer.name!r}, blob {i}") for i, blob in enumerate(blobs)]
        v1 = _is_v1(layer)
        blobs_field = _V1_LAYER_BLOBS if v1 else _LAYER_BLOBS
        size = _layer_size(layer, blobs)
        entry = _length_field(_NET_LAYERS_V1 if v1 else _NET_LAYER, size)
        if self.bytes_written + len(entry) + size > self._limit:
            raise _too_large(str(getattr(self._handle, "name", "<stream>")), self.bytes_written + len(entry) + size,
                             self._limit, f"layer {layer.name!r}")
        before, after = _split_layer(layer, blobs_field)
        self._write(entry + before)
        for blob in blobs:
            self._write(_length_field(blobs_field, _blob_size(blob)))
            self._write_blob(blob, progress)
        self._write(after)

    def _write_blob(self, blob: Blob, progress: Callable[[int], None] | None) -> None:
        dtype = np.dtype(blob.dtype)
        number = _BLOB_DATA if dtype == np.float32 else _BLOB_DOUBLE_DATA
        before, after = _blob_fields(tuple(blob.shape), dtype)
        self._write(before)
        nbytes = math.prod(blob.shape) * dtype.itemsize
        if nbytes:  # Caffe writes no values field for an empty blob
            self._write(_length_field(number, nbytes))
            self._write_values(blob, dtype, progress)
        self._write(after)

    def _write_values(self, blob: Blob, dtype: np.dtype, progress: Callable[[int], None] | None) -> None:
        if isinstance(self._handle, WriteQueue):  # written behind; the queue reports the progress
            write_blob(self._handle, blob, progress)
            self.bytes_written += math.prod(blob.shape) * dtype.itemsize
        else:
            write_blob(self._write, blob, progress)


class WriteQueue:
    """The writes of one output, run in the order given on a thread of their own, so that the caller prepares
    the next data meanwhile: :meth:`put_blob` fills a :class:`ChunkedBlob`'s next piece (or the next blob's
    first) while the last is being written (filling and writing both release the GIL), and the time is about
    the longer of the two rather than their sum.

    Parameters
    ----------
    write : callable
        ``write(data)``, e.g. a file's ``write``; called from the queue's thread only.
    progress : callable, optional
        Called from the caller's thread with the bytes of each blob piece once it is written, in order.

    Notes
    -----
    Data queued must stay unchanged until it is written: bytes do, an array given to :meth:`write` or
    :meth:`put_blob` must be left alone until the queue is closed, and a ChunkedBlob's pieces go to
    :attr:`BUFFERS` buffers of the queue's own, each filled again only once its last write is done.  Use the
    queue as a context manager: leaving the block waits for every write and raises the first error; leaving
    it by an exception drops what is still queued.  A :class:`CaffemodelWriter` given a queue as its handle
    writes through it.
    """

    #: Piece buffers taken in turn: a piece is filled while up to BUFFERS - 1 before it are written or wait to
    #: be, so a write slowed for a moment (the OS finding pages) does not stop the filling at once; VGG-19 to
    #: .caffemodel measured 2-3% faster with 3 than with 2, no faster with 4.
    BUFFERS = 3

    def __init__(self, write: Callable[[Any], Any], progress: Callable[[int], None] | None = None) -> None:
        self._write = write
        self._progress = progress
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fillers-write")
        self._queued: deque[tuple[Future, int]] = deque()  # written or not, not yet reported
        self._buffers: list[np.ndarray | None] = [None] * self.BUFFERS
        self._buffer_writes: list[Future | None] = [None] * self.BUFFERS
        self._turn = 0

    def write(self, data: Any) -> None:
        """Queue ``data`` (bytes, or an array left unchanged until the queue is closed)."""
        self._put(data, 0)

    def put_blob(self, blob: Blob) -> None:
        """Queue a blob's values, little-endian in C order: an array's pieces as they are, a ChunkedBlob's
        filled piece by piece into the queue's buffers."""
        if isinstance(blob, np.ndarray):
            for piece in blob_pieces(blob):
                self._put(piece, piece.nbytes)
            return
        dtype = np.dtype(blob.dtype)
        for offset, count in blob.pieces():
            out = self._free_buffer(dtype, count)
            blob.fill(out, offset)
            data = out if _LITTLE else out.astype(dtype.newbyteorder("<"))
            self._buffer_writes[self._turn] = self._put(data, out.nbytes)
            self._turn = (self._turn + 1) % self.BUFFERS

    def close(self) -> None:
        """Wait for every write; raise the first error."""
        try:
            if self._queued:
                self._settle(self._queued[-1][0])
        finally:
            self._thread.shutdown(cancel_futures=True)

    def __enter__(self) -> "WriteQueue":
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the running write finishes, the rest is dropped: the output is abandoned anyway
            self._thread.shutdown(cancel_futures=True)

    def _put(self, data: Any, nbytes: int) -> Future:
        future = self._thread.submit(self._write, data)
        self._queued.append((future, nbytes))
        self._settle()
        return future

    def _free_buffer(self, dtype: np.dtype, count: int) -> np.ndarray:
        """``count`` elements of the buffer whose turn it is, once its last write is done."""
        k = self._turn
        if self._buffer_writes[k] is not None:
            self._settle(self._buffer_writes[k])
        buffer = self._buffers[k]
        if buffer is None or buffer.dtype != dtype or buffer.size < count:
            buffer = self._buffers[k] = np.empty(count, dtype)
        return buffer[:count]

    def _settle(self, until: Future | None = None) -> None:
        """Report the writes done, in order (raising the error of a failed one), after waiting for ``until``
        (one thread writes in order: every write queued before it is done too)."""
        if until is not None:
            wait([until])
        while self._queued and self._queued[0][0].done():
            future, nbytes = self._queued.popleft()
            future.result()
            if nbytes and self._progress is not None:
                self._progress(nbytes)


def write_blob(write: Callable[[np.ndarray], Any] | WriteQueue, blob: Blob,
               progress: Callable[[int], None] | None = None) -> None:
    """Write a blob's values, little-endian in C order, with ``write`` (e.g. a file's ``write``), and return
    once they are written; or queue them on a :class:`WriteQueue` (which reports the progress itself).

    A :class:`ChunkedBlob` of several pieces goes through a :class:`WriteQueue` of its own: each piece is
    filled while the one before it is being written.  ``progress`` gets the bytes of each piece once it is
    written.
    """
    if isinstance(write, WriteQueue):
        if progress is not None:
            raise ValueError("a WriteQueue reports the progress itself: give it the callable")
        write.put_blob(blob)
    elif isinstance(blob, np.ndarray) or blob.size <= blob.piece:
        for piece in blob_pieces(blob):
            write(piece)
            if progress is not None:
                progress(piece.nbytes)
    else:
        with WriteQueue(write, progress) as queue:
            queue.put_blob(blob)


def blob_pieces(blob: Blob, piece_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
    """The values of an array or :class:`ChunkedBlob` as consecutive little-endian 1-D pieces, in C order.

    An array's pieces are views of about ``piece_bytes`` (a copy only for a non-contiguous or big-endian
    array); a ChunkedBlob's are filled one after another into one reused buffer: use each piece before
    asking for the next.
    """
    dtype = np.dtype(blob.dtype)
    little = dtype.newbyteorder("<")
    if isinstance(blob, np.ndarray):
        data = np.ascontiguousarray(blob, little).reshape(-1)
        step = max(1, piece_bytes // dtype.itemsize)
        for offset in range(0, data.size, step):
            yield data[offset:offset + step]
        return
    buffer = np.empty(min(blob.size, max(1, blob.piece)), dtype)
    for offset, count in blob.pieces():
        out = buffer[:count]
        blob.fill(out, offset)
        yield out if _LITTLE else out.astype(little)
