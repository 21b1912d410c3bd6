"""save()/load(): four formats, round trips, Caffe's layouts, atomic writes."""
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from fillers import caffe_pb2
from fillers.errors import FileFormatError
from fillers.io import atomic_write, load, save

FORMATS = [".caffemodel", ".caffemodel.h5", ".h5", ".npz", ".safetensors"]


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((4, 3), dtype=np.float32)
    return {
        "conv1": [rng.standard_normal((8, 3, 5, 5), dtype=np.float32), np.zeros(8, np.float32)],
        "inception_3a/1x1": [rng.standard_normal((2, 8, 1, 1), dtype=np.float32)],
        "fc.6": [shared],
        "fc7": [shared],
        "prelu": [np.full((), 0.25, np.float32)],
        "double": [rng.standard_normal((3, 2))],
    }


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip(tmp_path, params, suffix):
    path = tmp_path / f"net{suffix}"
    if suffix.endswith(".h5"):  # Caffe's HDF5 layout cannot hold '/' in a layer name
        with pytest.raises(ValueError, match="'inception_3a/1x1' contains '/'"):
            save(params, path)
        assert not path.exists()
        params = {layer.replace("/", "_"): blobs for layer, blobs in params.items()}
    save(params, path)
    back = load(path)
    assert list(back) == list(params)
    for layer, blobs in params.items():
        assert len(back[layer]) == len(blobs)
        for got, want in zip(back[layer], blobs):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_caffemodel_without_a_net_is_a_netparameter_with_names_and_shapes(tmp_path, params):
    """Without ``net=`` the file holds what params has (the whole net: tests/test_whole_net.py)."""
    path = tmp_path / "tiny.caffemodel"
    save(params, path)
    parsed = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert not parsed.HasField("name")
    assert [(layer.name, layer.type) for layer in parsed.layer] == [(name, "") for name in params]
    conv = parsed.layer[0]
    assert list(conv.blobs[0].shape.dim) == [8, 3, 5, 5]
    np.testing.assert_array_equal(np.array(conv.blobs[0].data, np.float32), params["conv1"][0].ravel())
    assert not parsed.layer[4].blobs[0].HasField("shape")  # a 0-axis blob: no shape field, as Caffe writes it
    assert len(parsed.layer[5].blobs[0].double_data) == 6
    # Byte-identical to what protobuf itself would encode for the same message.
    expected = caffe_pb2.NetParameter()
    for layer, blobs in params.items():
        message = expected.layer.add(name=layer)
        for blob in blobs:
            proto = message.blobs.add(shape=caffe_pb2.BlobShape(dim=blob.shape)) if blob.ndim else message.blobs.add()
            (proto.data if blob.dtype == np.float32 else proto.double_data).extend(blob.ravel().tolist())
    assert path.read_bytes() == expected.SerializeToString()


def test_h5_uses_caffes_layout(tmp_path, params):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "net.caffemodel.h5"
    del params["inception_3a/1x1"]
    save(params, path)
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(h5["data/conv1/1"][()], params["conv1"][1])
        assert h5["data/conv1/0"].dtype == np.float32


def test_legacy_v1_caffemodel_is_read(tmp_path):
    net = caffe_pb2.NetParameter()
    layer = net.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    blob = layer.blobs.add(num=1, channels=1, height=2, width=3)
    blob.data.extend(range(6))
    path = tmp_path / "old.caffemodel"
    path.write_bytes(net.SerializeToString())
    np.testing.assert_array_equal(load(path)["ip"][0], np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3))


@pytest.mark.parametrize(
    "name, params, error, message",
    [
        ("x.pkl", {"a": [np.zeros(1, np.float32)]}, ValueError, "cannot tell the format"),
        ("x.npz", {"a": [np.zeros(1, np.int32)]}, TypeError, "float32, float64, float16, bfloat16"),
        ("x.npz", {"": [np.zeros(1, np.float32)]}, FileFormatError, "an empty layer name"),
    ],
)
def test_bad_input(tmp_path, name, params, error, message):
    with pytest.raises(error, match=message):
        save(params, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write(b"partial")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_interrupted_save_leaves_nothing(tmp_path):
    # A child process saving a large model is interrupted by SIGINT (Ctrl-C) mid-write.
    path = tmp_path / "big.npz"
    script = (
        "import numpy as np, signal, sys, fillers.io as io\n"
        # Ctrl-C's default Python handling, even where the suite runs with SIGINT ignored (a background job)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "blobs = {f'l{i}': [np.zeros(2**22, np.float32)] for i in range(200)}\n"
        "print('ready', flush=True)\n"
        f"io.save(blobs, {str(path)!r})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=tmp_path.parent)  # not the checkout: import the installed package
    assert child.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while not os.listdir(tmp_path) and time.monotonic() < deadline:  # the temporary file is being written
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode != 0 and b"KeyboardInterrupt" in err, err.decode()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_0_axis_blob_loads_as_a_0_d_array_and_saves_again(tmp_path, suffix):
    """PReLU channel_shared's blob has zero axes: every format gives it back as a 0-d array (h5py's [()] would
    give a numpy scalar, which save then refuses)."""
    path = tmp_path / f"prelu{suffix}"
    save({"prelu": [np.full((), 0.25, np.float32)]}, path)
    blob = load(path)["prelu"][0]
    assert isinstance(blob, np.ndarray) and blob.shape == () and blob == np.float32(0.25)
    save(load(path), tmp_path / f"again{suffix}")


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_new_file_mode_honours_the_umask(tmp_path, umask, text):
    path = tmp_path / "out"
    with atomic_write(path, "w" if text else "wb") as handle:
        handle.write("x" if text else b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under the same umask
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755, 0o640])
def test_replaced_file_keeps_its_mode(tmp_path, umask, mode, params):
    path = tmp_path / "w.npz"
    path.write_bytes(b"old")
    path.chmod(mode)
    save(params, path)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert list(load(path)) == list(params)
