"""The .npy folder format: <layer folder>/<i>.npy per blob and a fillers.json index (layer order, metadata),
written atomically (a temporary folder renamed into place; only a folder fillers wrote is ever replaced)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fillers
from fillers import cli
from fillers.errors import FileFormatError
from fillers.io import FOLDER_INDEX, atomic_folder, load, npy_folder_names, read_metadata, save


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {
        "conv1": [rng.standard_normal((8, 3, 5, 5), dtype=np.float32), np.zeros(8, np.float32)],
        "inception_3a/1x1": [rng.standard_normal((2, 8, 1, 1), dtype=np.float32)],
        "..": [np.full((), 0.25, np.float32)],
        "Conv1": [rng.standard_normal((3, 2))],  # conv1 but for case: its own folder on any file system
        "empty": [np.zeros((0, 4), np.float32)],
        "ünï cødé %2F": [np.arange(3, dtype=np.float32)],
    }


def assert_same(got, want):
    assert list(got) == list(want)
    for key in want:
        assert len(got[key]) == len(want[key]), key
        for a, b in zip(got[key], want[key]):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), key


def test_round_trip_keeps_order_names_dtypes_and_metadata(tmp_path, params):
    path = tmp_path / "net.npy"
    save(params, path, metadata={"fillers.seed": "7"})
    assert_same(load(path), params)
    assert read_metadata(path) == {"fillers.seed": "7"}
    index = json.loads((path / FOLDER_INDEX).read_text("utf-8"))
    assert [entry["name"] for entry in index["layers"]] == list(params)
    folders = {entry["name"]: entry["folder"] for entry in index["layers"]}
    assert folders["inception_3a/1x1"] == "inception_3a%2F1x1"  # a '/' nests nothing
    assert folders[".."] == "%2E."  # no special folder
    assert folders["Conv1"].startswith("Conv1~") and folders["conv1"] == "conv1"
    assert sorted(os.listdir(path)) == sorted([FOLDER_INDEX, *folders.values()])
    # every file is a plain .npy numpy reads
    np.testing.assert_array_equal(np.load(path / "conv1" / "0.npy"), params["conv1"][0])


def test_a_trailing_slash_names_the_same_folder(tmp_path, params):
    save(params, f"{tmp_path / 'net.npy'}/")
    assert_same(load(f"{tmp_path / 'net.npy'}{os.sep}"), params)


@pytest.mark.parametrize("shape", [(8, 3, 5, 5), (4096, 1024), (1024, 4096, 1)], ids=["read", "mapped", "mapped-F"])
def test_loaded_arrays_are_writable_and_never_write_back(tmp_path, shape):
    """Blobs of 16 MiB or more are mapped copy-on-write, smaller ones read (Fortran order kept)."""
    blob = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    blob = np.asfortranarray(blob) if len(shape) == 3 else blob
    path = tmp_path / "net.npy"
    save({"conv1": [blob]}, path)
    got = load(path)["conv1"][0]
    assert got.flags.f_contiguous == blob.flags.f_contiguous and np.array_equal(got, blob)
    assert isinstance(got.base, np.memmap) == (blob.nbytes >= 16 << 20)
    got[...] = 0
    assert np.array_equal(load(path)["conv1"][0], blob)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptor limit")
def test_a_folder_of_more_blobs_than_descriptors_loads(tmp_path):
    resource = pytest.importorskip("resource")
    many = {f"layer{i}": [np.full((2, 2), i, np.float32)] for i in range(300)}
    many["big"] = [np.zeros(5 << 20, np.float32)]  # 20 MiB: mapped
    save(many, tmp_path / "net.npy")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(128, hard), hard))
    try:
        back = load(tmp_path / "net.npy")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert_same(back, many)


def test_folder_names_are_single_safe_unique_names():
    layers = ["a/b", "../x", ".", "", "A/B", "x" * 300, "x" * 300 + "y", "fillers.json", "FILLERS.JSON", "a b\0c"]
    names = npy_folder_names(layers)
    values = list(names.values())
    assert len({name.casefold() for name in values}) == len(values)
    assert FOLDER_INDEX.casefold() not in {name.casefold() for name in values}
    for name in values:
        assert "/" not in name and "\0" not in name and not name.startswith(".")
        assert 0 < len(name.encode()) <= 255 or name == ""
    assert names["a b\0c"] == "a%20b%00c"


def test_replaces_its_own_folder_and_keeps_its_mode(tmp_path, params):
    path = tmp_path / "net.npy"
    save({"old": [np.ones(2, np.float32)]}, path)
    path.chmod(0o750)
    save(params, path)
    assert_same(load(path), params)
    assert os.stat(path).st_mode & 0o777 == 0o750
    assert os.listdir(tmp_path) == ["net.npy"]


@pytest.mark.parametrize("make", ["file", "user folder", "stray file", "stray in a layer folder", "empty folder"])
def test_never_replaces_what_fillers_did_not_write(tmp_path, params, make):
    path = tmp_path / "net.npy"
    if make == "file":
        path.write_bytes(b"\x93NUMPY a user's array")
    else:
        if make in ("stray file", "stray in a layer folder"):
            save({"conv1": [np.ones(2, np.float32)]}, path)
        else:
            path.mkdir()
        if make == "user folder":
            (path / "notes.txt").write_text("mine")
        if make == "stray file":
            (path / "notes.txt").write_text("mine")
        if make == "stray in a layer folder":
            (path / "conv1" / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(FileExistsError, match="not replaced"):
        save(params, path)
    with pytest.raises(FileExistsError, match="not replaced"):  # before anything is filled
        fillers.fill_net(fillers.load_net(LENET), seed=1, out=path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


LENET = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "lenet.prototxt")


def test_an_error_while_writing_leaves_the_old_folder_and_no_temporary(tmp_path, params, monkeypatch):
    path = tmp_path / "net.npy"
    save(params, path)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        save({"other": [np.ones(3, np.float32)]}, path)
    assert os.listdir(tmp_path) == ["net.npy"]
    monkeypatch.undo()
    assert_same(load(path), params)


def test_stale_temporary_folders_of_dead_processes_are_removed(tmp_path, params):
    path = tmp_path / "net.npy"
    with pytest.raises(RuntimeError):
        with atomic_folder(path) as folder:
            raise RuntimeError
    assert os.listdir(tmp_path) == []
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that no longer runs
    with atomic_folder(path) as folder:
        stale = folder.parent / folder.name.replace(f".{os.getpid()}.", f".{dead}.")
        (stale / "conv1").mkdir(parents=True)
    assert os.listdir(tmp_path) == ["net.npy"]


def test_sigterm_during_a_streamed_fill_leaves_nothing(tmp_path):
    """A child filling a 256 MiB blob into a .npy folder is sent SIGTERM: it dies by the signal and removes its
    temporary folder."""
    net = tmp_path / "big.prototxt"
    net.write_text(BIG % (1 << 13, 1 << 13))
    out = tmp_path / "out"
    out.mkdir()
    script = ("import sys, fillers\nprint('ready', flush=True)\n"
              "fillers.fill_net(sys.argv[1], seed=0, out=sys.argv[2], threads=1)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(net), str(out / "w.npy")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert child.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while not list(out.rglob("0.npy")) and time.monotonic() < deadline:  # the blob's file is being filled
        time.sleep(0.005)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM
    assert os.listdir(out) == []


BIG = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: %d } } }\n' \
      'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: %d ' \
      'weight_filler { type: "gaussian" std: 0.01 } } }'


def _corrupt(path, how):
    blob = path / "conv1" / "0.npy"
    if how == "trailing bytes":
        with open(blob, "ab") as handle:
            handle.write(b"xx")
    elif how == "truncated":
        os.truncate(blob, blob.stat().st_size - 4)
    elif how == "missing blob":
        blob.unlink()
    elif how == "no index":
        (path / FOLDER_INDEX).unlink()
    elif how == "bad index":
        (path / FOLDER_INDEX).write_text('{"format": "fillers .npy folder", "layers": [')
    elif how == "escaping index":
        index = json.loads((path / FOLDER_INDEX).read_text())
        index["layers"][0]["folder"] = ".."
        (path / FOLDER_INDEX).write_text(json.dumps(index))
    elif how == "pickle":
        np.save(blob, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("how, message", [
    ("trailing bytes", "2 bytes after the end"), ("truncated", "truncated"), ("missing blob", "missing"),
    ("no index", "without fillers.json"), ("bad index", "JSONDecodeError"), ("escaping index", "not a name inside"),
    ("pickle", "Python objects")])
def test_a_damaged_folder_is_a_file_format_error(tmp_path, params, how, message):
    path = tmp_path / "net.npy"
    save(params, path)
    _corrupt(path, how)
    with pytest.raises(FileFormatError, match=message):
        load(path)


def test_a_single_npy_file_is_not_a_folder(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(FileFormatError, match="a file: fillers' .npy format is a folder"):
        load(tmp_path / "x.npy")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npy")


def test_weights_and_inspect_take_a_folder(tmp_path):
    net = fillers.load_net(LENET)
    path = tmp_path / "w.npy"
    first = fillers.fill_net(net, seed=4, out=path)
    tuned = fillers.fill_net(net, seed=5, weights=path)
    assert len(tuned.report.copied) == sum(len(blobs) for blobs in first.values())
    assert_same(tuned, load(path))
    html = tmp_path / "r.html"
    assert cli.main(["inspect", LENET, "--html", str(html), "--weights", str(path)]) == 0
    assert html.stat().st_size > 0
