"""Out-of-core fills: fill_net(..., out=path) streams every blob into the file, bit-identical to the in-memory
fill, with bounded memory; progress reports bytes."""
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fillers
from fillers import FileFormatError, NetParameter, cli, fill_net, load

LENET = Path(__file__).resolve().parents[1] / "examples" / "lenet.prototxt"

FORMATS = [".caffemodel", ".safetensors", ".h5", ".npz", ".npy"]

# Every kind of blob: fillers that depend on the whole shape (xavier, sparse gaussian, positive_unitball rows,
# bilinear), a shared blob with PERMISSIVE reshaping, values written in the net, a repeated layer name,
# zero constants and a PReLU's 0-axis slope.
NET = """
name: "every_kind"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 24 kernel_size: 3 weight_filler { type: "xavier" }
                            bias_filler { type: "gaussian" std: 0.1 sparse: 3 } } }
layer { name: "up" type: "Deconvolution" bottom: "c" top: "u"
        convolution_param { num_output: 24 group: 24 kernel_size: 4 stride: 2 bias_term: false
                            weight_filler { type: "bilinear" } } }
layer { name: "prelu" type: "PReLU" bottom: "u" top: "u" prelu_param { channel_shared: true } }
layer { name: "ip" type: "InnerProduct" bottom: "u" top: "f"
        param { name: "shared_w" } inner_product_param { num_output: 10 weight_filler { type: "positive_unitball" } } }
layer { name: "ip" type: "InnerProduct" bottom: "u" top: "g"
        param { name: "shared_w" } inner_product_param { num_output: 10 weight_filler { type: "uniform" } } }
layer { name: "given" type: "Scale" bottom: "f" top: "s" scale_param { bias_term: false }
        blobs { shape { dim: 10 } data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] } }
layer { name: "msra" type: "Convolution" bottom: "x" top: "m"
        convolution_param { num_output: 5 kernel_size: 1 weight_filler { type: "msra" } } }
"""


@pytest.fixture
def net() -> NetParameter:
    return fillers.load_net(NET)


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for key in want:
        assert [b.shape for b in got[key]] == [b.shape for b in want[key]], key
        for a, b in zip(got[key], want[key]):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), key


def half_or_skip(dtype):
    """The dtype; bfloat16 needs ml_dtypes (skipped with the reason where it is absent)."""
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes (pip install ml_dtypes)")
    return np.dtype(dtype)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("rng, dtype", [("philox", "float32"), ("philox", "float64"), ("caffe", "float32"),
                                        ("philox", "float16"), ("caffe", "float16"), ("philox", "bfloat16"),
                                        ("caffe", "bfloat16")])
def test_streamed_file_equals_the_in_memory_fill(tmp_path, monkeypatch, net, suffix, rng, dtype):
    """Pieces of 4 KiB, so that every blob of any size is cut in many pieces (unit-ball rows kept whole)."""
    monkeypatch.setattr("fillers.net.PIECE_BYTES", 4096)
    dtype = half_or_skip(dtype)
    want = fill_net(net, seed=11, rng=rng, dtype=dtype)
    path = tmp_path / f"net{suffix}"
    if dtype.itemsize == 2 and (suffix == ".caffemodel" or (suffix == ".h5" and dtype.name == "bfloat16")):
        with pytest.raises(FileFormatError, match=f"no place for {dtype.name} values"):
            fill_net(net, seed=11, rng=rng, dtype=dtype, out=path)
        with pytest.raises(FileFormatError, match=f"no place for {dtype.name} values"):
            fillers.save(want, path)
        assert os.listdir(tmp_path) == []
        return
    shapes = fill_net(net, seed=11, rng=rng, dtype=dtype, out=path)
    assert shapes == {key: [b.shape for b in blobs] for key, blobs in want.items()}
    assert_same(load(path), want)
    saved = tmp_path / f"saved{suffix}"
    fillers.save(want, saved, net=net)
    assert_same(load(saved), load(path))
    if suffix in (".caffemodel", ".npz"):  # h5py and safetensors order their objects their own way
        assert saved.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("rng", ["philox", "caffe"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_the_float32_fill_rounded(net, rng, dtype):
    """Philox: the kernels round each float32 value to nearest even; Caffe's stream: Net<float>'s float32 draws,
    rounded (its sequence of draws is the float32 one); values written in the net too."""
    dtype = half_or_skip(dtype)
    single = fill_net(net, seed=5, rng=rng)
    half = fill_net(net, seed=5, rng=rng, dtype=dtype)
    assert half.dtype == dtype and half.metadata["fillers.dtype"] == dtype.name
    assert list(half) == list(single)
    for key in single:
        for got, ref in zip(half[key], single[key]):
            assert got.dtype == dtype and got.tobytes() == ref.astype(dtype).tobytes(), key
    assert half["ip"][0] is half["ip#2"][0]  # still one shared array


def test_half_precision_copies_weights_rounded(net):
    single = fill_net(net, seed=5)
    half = fill_net(net, seed=6, dtype=np.float16, weights=single)
    assert half.report.filled == []
    for key in single:
        for got, ref in zip(half[key], single[key]):
            assert got.dtype == np.float16 and got.tobytes() == ref.astype(np.float16).tobytes(), key


def test_half_precision_in_files_as_their_libraries_read_it(tmp_path, net):
    safetensors = pytest.importorskip("safetensors", reason="needs safetensors")
    bf16 = half_or_skip("bfloat16")
    fill_net(net, seed=5, dtype=np.float16, out=tmp_path / "w.safetensors")
    fill_net(net, seed=5, dtype=bf16, out=tmp_path / "b.safetensors")
    with safetensors.safe_open(str(tmp_path / "w.safetensors"), "np") as handle:
        assert handle.get_tensor("conv.0").dtype == np.float16
    with safetensors.safe_open(str(tmp_path / "b.safetensors"), "np") as handle:  # BF16, read by ml_dtypes
        assert handle.get_tensor("conv.0").dtype == bf16
    fill_net(net, seed=5, dtype=bf16, out=tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as npz:  # numpy keeps ml_dtypes' bfloat16 as raw 2-byte records
        assert npz["conv/0"].dtype == np.dtype("V2")
    assert load(tmp_path / "b.npz")["conv"][0].dtype == bf16  # fillers gives the type back


def test_bfloat16_without_ml_dtypes_is_a_clear_error(net, monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(ImportError, match="ml_dtypes"):
        fill_net(net, dtype="bfloat16")


@pytest.mark.parametrize("dtype", [np.int8, ">f4", "complex64"])
def test_other_dtypes_are_refused(net, dtype):
    with pytest.raises(TypeError, match="float32, float64, float16, bfloat16"):
        fill_net(net, dtype=dtype)


def test_cli_fills_half_precision(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    pytest.importorskip("safetensors", reason="needs safetensors")
    assert cli.main(["fill", str(LENET), "--dtype", "float16", "-o", str(out), "--seed", "3"]) == 0
    assert "(0.8 MiB)" in capsys.readouterr().err  # 431,080 parameters of 2 bytes
    want = fill_net(fillers.load_net(LENET), seed=3)
    got = load(out)
    for key in want:
        for a, b in zip(got[key], want[key]):
            assert a.dtype == np.float16 and a.tobytes() == b.astype(np.float16).tobytes()
    assert cli.main(["fill", str(LENET), "--dtype", "float16", "-o", str(tmp_path / "x.caffemodel")]) == 1
    assert "no place for float16 values" in capsys.readouterr().err


def test_a_streamed_caffemodel_is_what_protobuf_reads(tmp_path, net):
    path = tmp_path / "net.caffemodel"
    fill_net(net, seed=2, out=path)
    parsed = fillers.caffe_pb2.NetParameter.FromString(path.read_bytes())
    from fillers.shapes import built_net

    assert parsed.name == "every_kind"  # the whole net, as Net::ToProto writes it
    assert [(layer.name, layer.type) for layer in parsed.layer] == [(layer.name, layer.type)
                                                                     for layer in built_net(net).layer]
    prelu = next(layer for layer in parsed.layer if layer.name == "prelu")
    assert not prelu.blobs[0].HasField("shape")  # the 0-axis PReLU slope, as Caffe writes it


@pytest.mark.parametrize("suffix", [None, ".safetensors"])
def test_progress_reports_every_byte_in_order(tmp_path, monkeypatch, net, suffix):
    monkeypatch.setattr("fillers.net.PIECE_BYTES", 1024)
    calls = []
    out = None if suffix is None else tmp_path / f"net{suffix}"
    fill_net(net, seed=1, out=out, progress=lambda done, total: calls.append((done, total)))
    params = fill_net(net, seed=1)
    total = sum(b.nbytes for blobs in params.values() for b in blobs)
    assert len(calls) > 10 and all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total


def _fake_fadvise(monkeypatch, writeback_bytes: int, fadvise) -> None:
    """Pieces of 1 KiB, a writeback kick every ``writeback_bytes``, and ``fadvise`` in place of the OS's (the
    test is skipped where there is no posix_fadvise: the writeback is then left to the final fsync)."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform: the writeback is left to the final fsync")
    monkeypatch.setattr("fillers.net.PIECE_BYTES", 1024)
    monkeypatch.setattr("fillers.io.WRITEBACK_BYTES", writeback_bytes)
    monkeypatch.setattr("fillers.io.os.posix_fadvise", fadvise)


@pytest.mark.parametrize("suffix", FORMATS)
def test_the_disk_write_is_started_as_the_pieces_are_written(tmp_path, monkeypatch, net, suffix):
    """Every WRITEBACK_BYTES the temporary file is flushed and its writeback started (POSIX_FADV_DONTNEED on
    the whole file, from a thread of its own), so the final fsync waits for little; the file is unchanged by
    it."""
    kicks = []

    def fadvise(fd, offset, length, advice):
        kicks.append((os.fstat(fd).st_size, offset, length, advice))

    _fake_fadvise(monkeypatch, 4096, fadvise)
    path = tmp_path / f"net{suffix}"
    done = [0]
    fill_net(net, seed=3, out=path, progress=lambda d, t: done.append(d))
    expected, pending = 0, 0
    for before, after in zip(done, done[1:]):
        pending += after - before
        if pending >= 4096:
            expected, pending = expected + 1, 0
    assert 1 <= len(kicks) <= expected and expected > 10  # a kick still running when the next is due takes both
    assert all(k[1:] == (0, 0, os.POSIX_FADV_DONTNEED) for k in kicks)
    sizes = [k[0] for k in kicks]
    assert sizes == sorted(sizes) and sizes[0] > 0  # flushed before each kick, as the file grows
    assert_same(load(path), fill_net(net, seed=3))


def test_a_writeback_kick_still_running_takes_the_next_one_with_it(tmp_path, monkeypatch):
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    from fillers.io import Writeback

    monkeypatch.setattr("fillers.io.WRITEBACK_BYTES", 100)
    release, kicks = threading.Event(), []

    def fadvise(fd, offset, length, advice):
        kicks.append(os.fstat(fd).st_size)
        release.wait(10)

    monkeypatch.setattr("fillers.io.os.posix_fadvise", fadvise)
    with open(tmp_path / "f", "wb") as handle:
        with Writeback(handle) as written:
            for size in (60, 60, 150):  # the 2nd call kicks (120 bytes); the 3rd finds it running
                handle.write(b"x" * size)
                written(size)
            release.set()
            for _ in range(1000):  # 150 pending: a new kick once the running one has returned
                written(0)
                if len(kicks) == 2:
                    break
                time.sleep(0.01)
        assert kicks == [120, 270]
        handle.write(b"y")
        assert handle.tell() == 271  # closing it left the file alone


def test_a_refused_writeback_kick_stops_the_kicks_not_the_fill(tmp_path, monkeypatch, net):
    """posix_fadvise is advice: a file system that refuses it (EINVAL, ESPIPE) gets the file written as without
    the kicks, whole and identical."""
    calls = []

    def refuse(fd, offset, length, advice):
        calls.append(fd)
        raise OSError(22, "Invalid argument")

    _fake_fadvise(monkeypatch, 1, refuse)
    path = tmp_path / "net.caffemodel"
    fill_net(net, seed=4, out=path)
    assert len(calls) == 1  # refused once, never asked again
    assert_same(load(path), fill_net(net, seed=4))


def test_progress_must_be_callable(net):
    with pytest.raises(TypeError, match="progress must be callable"):
        fill_net(net, progress=True)


BIG = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: %d } } }\n' \
      'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: %d ' \
      'weight_filler { type: "gaussian" std: 0.01 } } }'


def test_a_caffemodel_over_2_gib_is_refused_before_filling(tmp_path):
    path = tmp_path / "huge.caffemodel"
    with pytest.raises(FileFormatError, match=r"2,147,483,647 bytes.*\.h5 or \.safetensors"):
        fill_net(BIG % (1 << 15, 1 << 14), out=path)  # 2 GiB of float32
    assert os.listdir(tmp_path) == []


def test_an_h5_layer_name_with_a_slash_is_refused_before_filling(tmp_path, net):
    net.layer[1].name = "conv/1"
    with pytest.raises(ValueError, match="'conv/1' contains '/'"):
        fill_net(net, out=tmp_path / "net.h5")
    assert os.listdir(tmp_path) == []


RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    import fillers
    net = fillers.load_net(sys.argv[1])
    fillers.fill_net(net, seed=0, out=sys.argv[2], threads=1)  # warm up: imports, first fill
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fillers.fill_net(net, seed=0, out=sys.argv[3])
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
""")


@pytest.mark.parametrize("suffix", [".caffemodel", ".h5"])
def test_a_streamed_fill_keeps_memory_bounded(tmp_path, suffix):
    """A 256 MiB blob streamed to a file raises the peak RSS by far less than the blob (pieces of 4 MiB; an
    in-memory fill needs all 256)."""
    small = tmp_path / "small.prototxt"
    small.write_text(BIG % (16, 16))
    big = tmp_path / "big.prototxt"
    big.write_text(BIG % (1 << 13, 1 << 13))
    grown = int(subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(big), str(tmp_path / f"s{suffix}"),
                                str(tmp_path / f"b{suffix}")], check=True, capture_output=True,
                               text=True, cwd=tmp_path).stdout)  # outside the source tree (the sdist's tests)
    assert (tmp_path / f"b{suffix}").stat().st_size > 256 << 20
    assert grown < 96 << 20, f"peak RSS grew by {grown / 2**20:.0f} MiB"


STATUS_SCRIPT = textwrap.dedent("""
    import json, sys
    import fillers

    def status():
        with open("/proc/self/status") as lines:
            fields = dict(line.split(":", 1) for line in lines)
        return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}

    fillers.fill_net(sys.argv[1], seed=0, out=sys.argv[2])  # warm up: imports, threads, first fill
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # the peak (VmHWM) starts again from the resident set now
    before = status()
    fillers.fill_net(sys.argv[3], seed=0, out=sys.argv[4])
    print(json.dumps({"before": before, "after": status()}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="reads Linux's /proc/self/status")
def test_a_streamed_npy_folder_keeps_memory_bounded(tmp_path):
    """A 256 MiB blob streamed into a .npy folder (laid out by open_memmap, written after the header): the peak
    resident set (mapped file pages included) grows by far less than the blob, and no file page stays mapped."""
    small = tmp_path / "small.prototxt"
    small.write_text(BIG % (16, 16))
    big = tmp_path / "big.prototxt"
    big.write_text(BIG % (1 << 13, 1 << 13))
    out = subprocess.run([sys.executable, "-c", STATUS_SCRIPT, str(small), str(tmp_path / "s.npy"), str(big),
                          str(tmp_path / "b.npy")], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    before, after = json.loads(out)["before"], json.loads(out)["after"]
    assert (tmp_path / "b.npy" / "ip" / "0.npy").stat().st_size > 256 << 20
    peak = after["VmHWM"] - before["VmRSS"]
    assert peak < 96 << 20, f"peak RSS grew by {peak / 2**20:.0f} MiB: {out}"
    assert after["RssFile"] - before["RssFile"] < 16 << 20, f"file pages still mapped: {out}"


def test_cli_prints_a_summary_line_when_stderr_is_not_a_terminal(tmp_path, capsys):
    out = tmp_path / "lenet.safetensors"
    assert cli.main(["fill", str(LENET), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("filled 4 layers, 431,080 parameters") and "\r" not in err


def test_cli_draws_a_byte_bar_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    seen = []

    def spy(net, **kwargs):
        seen.append(kwargs["progress"])
        kwargs["progress"](10, 100)
        kwargs["progress"](100, 100)
        return fillers.FilledNet({"ip": [(10, 10)]}, net=net, seed=1, rng="philox", dtype=np.dtype(np.float32),
                                 report=fillers.FillReport(), metadata={})

    monkeypatch.setattr(fillers, "fill_net", spy)
    assert cli.main(["fill", str(LENET), "-o", str(tmp_path / "x.npz")]) == 0
    assert callable(seen[0]) and "filled 1 layers" in err.getvalue()
