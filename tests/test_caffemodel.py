"""The streaming .caffemodel reader and writer (fillers/caffemodel.py) against protobuf's own parse."""
import io
import json
import math
import warnings
import os
import struct
import sys
import threading
import time

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fillers
from fillers import caffe_pb2
from fillers.caffemodel import (CaffemodelWriter, ChunkedBlob, WriteQueue, blob_array, caffemodel_size,
                                read_caffemodel, read_net)
from fillers.errors import FileFormatError


def protobuf_blobs(data: bytes) -> dict:
    """What protobuf's own parse gives: the reference the streaming reader must equal."""
    net = caffe_pb2.NetParameter.FromString(data)
    layers = list(net.layer) or list(net.layers)
    if any(isinstance(layer.name, bytes) for layer in layers):  # a name that is not UTF-8: fillers refuses it
        raise ValueError("a layer name that is not UTF-8")
    return {layer.name: [blob_array(blob) for blob in layer.blobs] for layer in layers if len(layer.blobs)}


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for a, b in zip(got[name], want[name]):
            assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
            assert a.tobytes() == b.tobytes(), name


def blob_proto(array: np.ndarray, legacy: bool = False) -> caffe_pb2.BlobProto:
    blob = caffe_pb2.BlobProto()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = array.shape
    elif array.ndim:
        blob.shape.dim.extend(array.shape)
    (blob.double_data if array.dtype == np.float64 else blob.data).extend(array.reshape(-1).tolist())
    return blob


def sample_net() -> caffe_pb2.NetParameter:
    """Every kind of blob: float32, float64, 0-axis, zero elements, legacy 4-D, a layer with none."""
    rng = np.random.default_rng(5)
    net = caffe_pb2.NetParameter(name="sample")
    net.input.append("data")
    layer = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    layer.param.add(lr_mult=1)
    layer.blobs.append(blob_proto(rng.standard_normal((4, 3, 2, 2)).astype(np.float32)))
    layer.blobs.append(blob_proto(rng.standard_normal(4).astype(np.float32)))
    layer.include.add(phase=caffe_pb2.TEST)  # a field numbered after blobs
    layer.convolution_param.num_output = 4
    net.layer.add(name="relu", type="ReLU", bottom=["conv"], top=["conv"])
    net.layer.add(name="prelu", type="PReLU").blobs.append(blob_proto(np.array(0.25, np.float32)))
    net.layer.add(name="empty", type="Parameter").blobs.append(blob_proto(np.empty((0, 3), np.float32)))
    net.layer.add(name="double", type="InnerProduct").blobs.append(blob_proto(rng.standard_normal((3, 5))))
    net.layer.add(name="legacy", type="InnerProduct").blobs.append(
        blob_proto(np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4), legacy=True))
    return net


def write(tmp_path, data: bytes, name="m.caffemodel"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reader_equals_protobuf_on_every_kind_of_blob(tmp_path):
    data = sample_net().SerializeToString()
    got = read_caffemodel(write(tmp_path, data))
    assert_same(got, protobuf_blobs(data))
    assert got["prelu"][0].shape == () and got["legacy"][0].shape == (1, 1, 1, 4)
    assert got["double"][0].dtype == np.float64 and got["empty"][0].shape == (0, 3)


def test_reader_returns_copy_on_write_views_of_the_file(tmp_path):
    data = sample_net().SerializeToString()
    path = write(tmp_path, data)
    conv = read_caffemodel(path)["conv"][0]
    assert not conv.flags.owndata and isinstance(conv.base, np.ndarray) or conv.base is not None
    if sys.byteorder == "little":
        assert np.shares_memory(conv, conv.base)
    conv[...] = 7  # private mapping: writable, the file is untouched
    assert path.read_bytes() == data


def test_writer_bytes_equal_protobuf_serialization():
    net = sample_net()
    want = net.SerializeToString()
    layers = []
    for layer in net.layer:
        bare = caffe_pb2.LayerParameter()
        bare.CopyFrom(layer)
        bare.ClearField("blobs")
        layers.append((bare, [blob_array(blob) for blob in layer.blobs]))
    out = io.BytesIO()
    writer = CaffemodelWriter(out, net)  # its layers are left out: they come from add_layer
    for layer, blobs in layers:
        writer.add_layer(layer, blobs)
    assert out.getvalue() == want
    assert writer.bytes_written == len(want) == caffemodel_size(net, layers)


def test_chunked_blob_is_written_piece_by_piece():
    values = np.random.default_rng(1).standard_normal((7, 13)).astype(np.float32)
    calls = []

    def fill(out, offset):
        calls.append((offset, out.size))
        out[...] = values.reshape(-1)[offset:offset + out.size]

    layer = caffe_pb2.LayerParameter(name="ip", type="InnerProduct")
    whole, pieces = io.BytesIO(), io.BytesIO()
    CaffemodelWriter(whole).add_layer(layer, [values])
    progress = []
    CaffemodelWriter(pieces).add_layer(layer, [ChunkedBlob((7, 13), np.dtype(np.float32), fill, 26)],
                                       progress=progress.append)
    assert pieces.getvalue() == whole.getvalue()
    assert calls == [(0, 26), (26, 26), (52, 26), (78, 13)]
    assert sum(progress) == values.nbytes


def _counting_blob(shape, piece, start):
    """A ChunkedBlob whose element i is start + i (float64, exact), and the array it stands for."""
    values = np.arange(start, start + math.prod(shape), dtype=np.float64)

    def fill(out, offset):
        out[...] = values[offset:offset + out.size]
    return ChunkedBlob(shape, np.dtype(np.float64), fill, piece), values


def test_a_write_queue_writes_in_order_and_never_refills_a_buffer_being_written():
    """The writer is slow, so the filling runs ahead as far as the queue lets it: a buffer refilled before its
    write were done would show in the bytes.  Blobs of two piece sizes, arrays and bytes in between, and the
    progress in order, piece by piece, from the caller's thread."""
    written, threads, progress = [], set(), []

    def slow_write(data):
        time.sleep(0.002)
        threads.add(threading.current_thread().name)
        written.append(bytes(memoryview(data).cast("B")))

    first, first_values = _counting_blob((5, 7), 4, 0)
    second, second_values = _counting_blob((9,), 2, 1000)
    array = np.arange(6, dtype=np.float64) - 50
    with WriteQueue(slow_write, progress.append) as queue:
        queue.write(b"head")
        queue.put_blob(first)
        queue.write(b"middle")
        queue.put_blob(array)
        queue.put_blob(second)
    want = b"head" + first_values.tobytes() + b"middle" + array.tobytes() + second_values.tobytes()
    assert b"".join(written) == want
    assert threads == {next(iter(threads))} and next(iter(threads)).startswith("fillers-write")
    assert progress == [32] * 8 + [24] + [48] + [16] * 4 + [8]


def test_a_write_queue_raises_the_first_failed_write_and_drops_the_rest_on_error():
    calls = []

    def failing(data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    queue = WriteQueue(failing)
    with pytest.raises(OSError, match="No space left"), queue:
        for _ in range(5):
            queue.write(b"x" * 10)
    assert 2 <= len(calls) <= 5  # what follows the failure may run before it is seen; nothing waits after it

    dropped = []
    with pytest.raises(KeyboardInterrupt), WriteQueue(lambda data: (time.sleep(0.05), dropped.append(data))) as q:
        for _ in range(20):
            q.write(b"y")
        raise KeyboardInterrupt
    assert len(dropped) < 20  # leaving by an exception cancels what was still queued


def test_a_write_queue_reports_progress_itself():
    with WriteQueue(lambda data: None) as queue, pytest.raises(ValueError, match="reports the progress itself"):
        fillers.caffemodel.write_blob(queue, np.zeros(3), progress=print)


def test_a_caffemodel_written_through_a_queue_equals_the_direct_one():
    layer = caffe_pb2.LayerParameter(name="ip", type="InnerProduct")
    blob, values = _counting_blob((6, 5), 7, 3)
    direct, queued = io.BytesIO(), io.BytesIO()
    plain = CaffemodelWriter(direct, caffe_pb2.NetParameter(name="n"))
    plain.add_layer(layer, [values.reshape(6, 5), values[:5]])
    with WriteQueue(queued.write) as queue:
        behind = CaffemodelWriter(queue, caffe_pb2.NetParameter(name="n"))
        behind.add_layer(layer, [blob, values[:5]])
    assert queued.getvalue() == direct.getvalue()
    assert behind.bytes_written == plain.bytes_written == len(direct.getvalue())


def test_v1_model_and_resave_keeps_a_shape_caffe_accepts(tmp_path):
    """A V1-era model: `layers` entries with legacy num/channels/height/width blobs.  Re-saved, the (1,1,1,n)
    bias keeps legacy fields, which Caffe's Blob::ShapeEquals matches against the upgraded net's (n,) bias."""
    net = caffe_pb2.NetParameter(name="v1")
    layer = net.layers.add(name="fc", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    weight = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    bias = np.array([[[[0.5, -1.5]]]], np.float32)
    layer.blobs.extend([blob_proto(weight, legacy=True), blob_proto(bias, legacy=True)])
    data = net.SerializeToString()
    path = write(tmp_path, data)
    got = fillers.load(path)
    assert_same(got, protobuf_blobs(data))
    fillers.save(got, tmp_path / "again.caffemodel")
    again = caffe_pb2.NetParameter.FromString((tmp_path / "again.caffemodel").read_bytes())
    saved = again.layer[0].blobs[1]
    assert not saved.HasField("shape") and (saved.num, saved.channels, saved.height, saved.width) == (1, 1, 1, 2)
    assert_same(fillers.load(tmp_path / "again.caffemodel"), got)


def test_v1_wrapped_v0_layer_blobs(tmp_path):
    net = caffe_pb2.NetParameter()
    layer = net.layers.add()
    layer.layer.name = "old"
    layer.name = "old"
    layer.layer.blobs.append(blob_proto(np.ones((1, 1, 1, 3), np.float32), legacy=True))
    got = read_caffemodel(write(tmp_path, net.SerializeToString()))
    assert got["old"][0].shape == (1, 1, 1, 3)


def unpacked_net_bytes(values: np.ndarray, number: int, fmt: str) -> bytes:
    """A one-layer net whose blob holds ``values`` as unpacked repeated fields (one key per value), which
    protobuf accepts for a packed field and older writers produced."""
    wire = 5 if fmt == "<f" else 1
    body = b"".join(bytes([number << 3 | wire]) + struct.pack(fmt, v) for v in values.tolist())
    shape = caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[len(values)])).SerializeToString()
    blob = body + shape
    layer = caffe_pb2.LayerParameter(name="u").SerializeToString() + bytes([7 << 3 | 2]) + _len(blob) + blob
    return bytes([0xA2, 0x06]) + _len(layer) + layer  # field 100, wire type 2


def _len(payload: bytes) -> bytes:
    out, n = bytearray(), len(payload)
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


@pytest.mark.parametrize("number, fmt, dtype", [(5, "<f", np.float32), (8, "<d", np.float64)])
def test_unpacked_repeated_values(tmp_path, number, fmt, dtype):
    values = np.random.default_rng(2).standard_normal(300).astype(dtype)
    data = unpacked_net_bytes(values, number, fmt)
    got = read_caffemodel(write(tmp_path, data))
    assert_same(got, protobuf_blobs(data))
    assert got["u"][0].tobytes() == values.tobytes()


def test_every_truncation_and_garbage_agrees_with_protobuf(tmp_path):
    """Cut the file at every byte, or append garbage: where protobuf fails we raise FileFormatError with an
    offset inside the file; where it succeeds we give its result."""
    data = sample_net().SerializeToString()
    cases = [data[:cut] for cut in range(len(data))]
    cases += [data + garbage for garbage in (b"\xff", b"\x00", b"\x07\x01", b"\xa2\x06\x10abc", b"\x0f\x00")]
    path = tmp_path / "cut.caffemodel"
    for case in cases:
        path.write_bytes(case)
        try:
            want = protobuf_blobs(case)
        except DecodeError:
            with pytest.raises(FileFormatError) as err:
                read_caffemodel(path)
            assert err.value.offset is not None and 0 <= err.value.offset <= len(case), case
            assert str(path) in str(err.value)
        else:
            assert_same(read_caffemodel(path), want)


def test_values_that_do_not_match_the_shape(tmp_path):
    net = caffe_pb2.NetParameter()
    blob = net.layer.add(name="bad").blobs.add()
    blob.shape.dim.extend([2, 2])
    blob.data.extend([1.0, 2.0, 3.0])
    with pytest.raises(FileFormatError, match="3 values for shape"):
        read_caffemodel(write(tmp_path, net.SerializeToString()))


def test_empty_file(tmp_path):
    assert read_caffemodel(write(tmp_path, b"")) == {}


def test_read_net_without_blobs(tmp_path):
    net = sample_net()
    path = write(tmp_path, net.SerializeToString())
    full = read_net(path)
    assert full == net
    bare = read_net(path, blobs=False)
    assert all(len(layer.blobs) == 0 for layer in bare.layer)
    assert [layer.name for layer in bare.layer] == [layer.name for layer in net.layer]


def test_load_net_of_a_caffemodel_matches_protobuf(tmp_path):
    net = sample_net()
    path = write(tmp_path, net.SerializeToString())
    assert fillers.load_net(path) == fillers.load_net(net.SerializeToString())


def test_writer_refuses_past_the_protobuf_limit_before_writing():
    out = io.BytesIO()
    writer = CaffemodelWriter(out, caffe_pb2.NetParameter(name="n"), limit=100)
    writer.add_layer(caffe_pb2.LayerParameter(name="small"), [np.zeros(4, np.float32)])
    written = out.getvalue()
    with pytest.raises(FileFormatError, match=r"\.h5 or \.safetensors"):
        writer.add_layer(caffe_pb2.LayerParameter(name="big"), [np.zeros(40, np.float32)])
    assert out.getvalue() == written


def test_save_refuses_a_model_over_2_gib_without_writing(tmp_path, monkeypatch):
    monkeypatch.setattr("fillers.caffemodel.CAFFEMODEL_LIMIT", 1000)
    path = tmp_path / "big.caffemodel"
    with pytest.raises(FileFormatError, match="safetensors"):
        fillers.save({"ip": [np.zeros(1000, np.float32)]}, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_writer_rejects_bad_input():
    writer = CaffemodelWriter(io.BytesIO())
    with pytest.raises(TypeError):
        writer.add_layer("conv", [])
    with pytest.raises(TypeError):
        writer.add_layer(caffe_pb2.LayerParameter(name="x"), [np.zeros(3, np.int32)])
    with_blobs = caffe_pb2.LayerParameter(name="x")
    with_blobs.blobs.add()
    with pytest.raises(ValueError, match="holds blobs"):
        writer.add_layer(with_blobs, [])


def test_corpus_nets_written_whole_and_read(shared_dir, tmp_path):
    """Files made from the corpus nets real Caffe built (caffe_vectors/nets.json), each written whole as
    Caffe's Net::ToProto would (every LayerParameter with its blobs; float64 for one in two): the streaming
    reader equals protobuf's parse, and read_net equals protobuf's message."""
    nets = json.loads((shared_dir / "caffe_vectors" / "nets.json").read_text())["nets"]
    tested = 0
    for k, rel in enumerate(sorted(nets)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = fillers.load_net(shared_dir / "corpus" / rel)
        if sum(math.prod(b.shape) for layer in fillers.infer_shapes(net) for b in layer.blobs) > 4 << 20:
            continue  # larger nets: kept out of the unit tests (the benchmarks read VGG-19)
        params = fillers.fill_net(net, seed=k, dtype=np.float64 if k % 2 else np.float32)
        path = tmp_path / f"{k}.caffemodel"
        with open(path, "wb") as handle:
            writer = CaffemodelWriter(handle, net)
            for layer in net.layer:
                writer.add_layer(layer, params.get(layer.name, []))
        data = path.read_bytes()
        assert_same(read_caffemodel(path), protobuf_blobs(data))
        assert read_net(path) == caffe_pb2.NetParameter.FromString(data), rel
        tested += 1
    assert tested >= 4


def test_load_net_of_a_truncated_caffemodel_names_the_offset(tmp_path):
    data = sample_net().SerializeToString()
    path = write(tmp_path, data[:-3])
    with pytest.raises(FileFormatError, match=r"at byte \d+"):
        fillers.load_net(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, 10**6), tail=st.binary(max_size=6))
def test_corrupted_files_read_as_protobuf_reads_them(tmp_path, edits, cut, tail):
    """Bytes changed, a cut, garbage appended: the streaming reader gives protobuf's result or, where protobuf
    fails, a FileFormatError."""
    data = bytearray(sample_net().SerializeToString())
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[:len(data) - cut % 16]) + tail
    path = write(tmp_path, data, "fuzz.caffemodel")
    try:
        want = protobuf_blobs(data)
    except (DecodeError, ValueError):  # ValueError: values that do not fit the shape (np reshape)
        with pytest.raises(FileFormatError):
            read_caffemodel(path)
    else:
        assert_same(read_caffemodel(path), want)
