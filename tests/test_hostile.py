"""Hostile and unlucky input: every failure a documented error naming the place, bounded work, nothing lost.

Each test here failed before its fix (issue 11); the README's "Bad input" table lists the same cases.
"""
import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fillers
from fillers import caffe_pb2
from fillers.errors import BudgetError, FileFormatError, FillerError, PrototxtError, ShapeError
from fillers.io import _temp_prefix, atomic_write, load, save
from fillers.shapes.recurrent import _stof

INPUT = 'input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }\n'
IP = 'layer {{ name: "ip" type: "InnerProduct" bottom: "{bottom}" top: "ip" inner_product_param {{ num_output: 2 {extra} }} }}\n'


def net(text: str) -> caffe_pb2.NetParameter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fillers.load_net(text)


def shapes(text: str):
    return fillers.infer_shapes(net(text))


# ----------------------------------------------------------------------------------------------------------
# Text: the pre-scanner, encodings, enum tokens


@pytest.mark.parametrize("depth", [500, 20_000])
def test_deep_nesting_in_an_unknown_field_is_skipped_without_recursion(depth):
    text = 'name: "x" fork_field { ' + "a { " * depth + "} " * depth + "}"
    with pytest.warns(fillers.PrototxtWarning, match="fork_field"):
        assert fillers.load_net(text).name == "x"


def test_unbalanced_deep_nesting_is_a_prototxt_error():
    with pytest.raises(PrototxtError, match="<string>:1:"):
        fillers.load_net('name: "x" layer { ' + "convolution_param { " * 5000)


@pytest.mark.parametrize("encoding", ["gbk", "latin-1"])
def test_a_non_utf8_comment_is_harmless(tmp_path, encoding):
    comment = "# 卷积层: 权重\n" if encoding == "gbk" else "# poids initialisés\n"
    path = tmp_path / "net.prototxt"
    path.write_bytes((INPUT + comment + IP.format(bottom="data", extra="")).encode(encoding))
    assert [layer.name for layer in fillers.load_net(path).layer] == ["input", "ip"]


def test_a_non_utf8_string_value_is_an_error_at_its_place(tmp_path):
    path = tmp_path / "net.txt"  # .txt is text too, whatever its bytes
    path.write_bytes((INPUT + IP.format(bottom="data", extra="")).replace('"ip"', '"ip\xe9"', 1).encode("latin-1"))
    with pytest.raises(PrototxtError, match=r"net.txt:2:15: a string value that is not UTF-8"):
        fillers.load_net(path)


@pytest.mark.parametrize("suffix", [".binaryproto", ".caffemodel"])
def test_binary_layer_names_that_are_not_utf8_are_refused_in_every_path(tmp_path, suffix):
    message = caffe_pb2.NetParameter(name="n")
    layer = message.layer.add(name="ipX", type="InnerProduct")
    layer.blobs.add().data.extend([1.0, 2.0])
    layer.blobs[0].shape.dim.append(2)
    path = tmp_path / f"w{suffix}"
    path.write_bytes(message.SerializeToString().replace(b"ipX", b"ip\xe9"))
    with pytest.raises(FileFormatError, match="not UTF-8"):
        fillers.load_net(path)
    if suffix == ".caffemodel":
        with pytest.raises(FileFormatError, match="not UTF-8"):
            load(path)


def test_a_non_ascii_enum_token_is_an_unknown_enum_value():
    """protobuf's enum lookup raised SystemError on a lone surrogate."""
    with pytest.warns(fillers.PrototxtWarning, match="unknown value"):
        fillers.load_net(b'name: "x" layer { name: "a" type: "ReLU" phase: \xd1 }')


def test_v1_fork_field_positions_are_those_of_the_file():
    text = ('name: "v1"\nlayers { name: "r" type: ROI_POOLING\n  roi_pooling_param { pooled_h: 2\n'
            '    fork_only: 3 } }\n')
    with pytest.warns(fillers.PrototxtWarning) as caught:
        fillers.load_net(text)
    assert any("<string>:4:5: unknown field" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_v0_int32_into_uint32_converts_as_cpp_does():
    """V0's int32 new_height into V1's uint32 raised protobuf's "Value out of range"."""
    loaded = net('layers { layer { name: "d" type: "images" new_height: -1 new_width: -1 batchsize: 1 } '
                 'top: "data" top: "label" }')
    assert loaded.layer[0].image_data_param.new_height == 2**32 - 1
    with pytest.raises(ShapeError, match="'d'.*INT_MAX"):
        fillers.infer_shapes(loaded)


# ----------------------------------------------------------------------------------------------------------
# Shape rules: Caffe's refusals, arithmetic that cannot go wrong


@pytest.mark.parametrize("layer, match", [
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 stride: 0 } }',
     "'p'.*stride"),
    ('layer { name: "f" type: "Flatten" bottom: "data" top: "p" flatten_param { axis: 3 end_axis: 1 } }',
     "'f'.*after end_axis"),
    ('layer { name: "d" type: "Data" data_param { batch_size: 2 } transform_param { crop_size: 3 } }',
     "'d'.*top"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "p" convolution_param { num_output: 0 '
     'kernel_size: 1 } }', "'c'"),
    ('layer { name: "s" type: "Scale" bottom: "data" top: "p" scale_param { axis: 1 num_axes: 0 } }', None),
])
def test_caffe_refusals_are_shape_errors_naming_the_layer(layer, match):
    text = INPUT + layer + "\n" + IP.format(bottom="p", extra="")
    if match is None:  # a zero-axis learnable blob is fine (one value); the net must set up
        assert shapes(text)
        return
    with pytest.raises(ShapeError, match=match) as info:
        shapes(text)
    assert info.value.layer


def test_flatten_axis_right_after_end_axis_is_allowed_as_in_caffe():
    """Blob::count(s, s) is 1: axis = end_axis + 1 inserts an axis of 1."""
    text = INPUT + 'layer { name: "f" type: "Flatten" bottom: "data" top: "p" flatten_param { axis: 2 end_axis: 1 } }\n'
    text += IP.format(bottom="p", extra="axis: -1")
    assert shapes(text)[0].blobs[0].shape == (2, 8)


def test_zero_sized_learnable_blobs_are_refused():
    text = 'input: "data" input_shape { dim: 2 dim: 0 dim: 4 dim: 4 }\n' + \
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 3 } }'
    with pytest.raises(ShapeError, match=r"'c'.*\(2, 0, 3, 3\).*no elements"):
        shapes(text)


def test_prior_box_aspect_ratio_zero_is_no_division_error():
    text = INPUT + ('layer { name: "pb" type: "PriorBox" bottom: "data" bottom: "data" top: "p" '
                    'prior_box_param { min_size: 4 aspect_ratio: 0 flip: true } }\n') + IP.format(bottom="p", extra="")
    assert shapes(text)[0].blobs[0].shape == (2, 8 * 8 * 3 * 4 * 2)


@pytest.mark.parametrize("shape, match", [((1,) * 40, "at most 32 axes"), ((1, 3_000_000_000), "INT_MAX"),
                                          ((10**30, 1), "INT_MAX")])
def test_inputs_are_held_to_blob_limits(shape, match):
    with pytest.raises(ShapeError, match=match):
        fillers.infer_shapes(net(INPUT + IP.format(bottom="data", extra="")), inputs={"data": shape})


def test_blobs_written_in_the_net_must_match_their_shape():
    text = INPUT + IP.format(bottom="data", extra="").replace(
        "} }", "} blobs { shape { dim: 2 dim: 192 } data: 1 data: 2 } blobs { shape { dim: 2 } data: 0 data: 0 } }")
    with pytest.raises(ShapeError, match="'ip'.*2 values for its shape"):
        shapes(text)


CRF = ('layer {{ name: "in" type: "Input" top: "u" top: "q" top: "im" input_param {{ shape {{ dim: 1 dim: 2 dim: 4 '
       'dim: 4 }} }} }}\nlayer {{ name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "q" bottom: "im" '
       'top: "o" multi_stage_meanfield_param {{ num_iterations: 2 spatial_filter_weights_str: "{w} 1" '
       'bilateral_filter_weights_str: "1 1" }} }}')


@pytest.mark.parametrize("weight", ["1e-9999999", "1e400", "-1e99999999999", "0x1p99999"])
def test_crf_weights_out_of_float_range_are_shape_errors(weight):
    """1e-9999999 took 88 s in Fraction arithmetic; 1e400 raised OverflowError."""
    with pytest.raises(ShapeError, match=f"'crf'.*{weight!r}"[:-1]):
        fillers.fill_net(net(CRF.format(w=weight)))


@pytest.mark.parametrize("text, value", [("0e99999999", 0.0), ("3.4028235e38", 3.4028235e38), ("2e-38", 2e-38),
                                         ("0." + "0" * 3000 + "1e3000", 0.1), ("1" * 400 + "e-399", 1.1111111111111112)])
def test_stof_keeps_exact_rounding_within_range(text, value):
    assert _stof(text) == np.float32(value)


# ----------------------------------------------------------------------------------------------------------
# Bounded work: recurrent timesteps, the memory budget


def test_caffe_stream_runs_every_timestep_of_a_cycle():
    """The discarded timestep runs are one FillCycle, and the Caffe stream still consumes each of them: the
    draws after the layer equal a net with one timestep more consumed by hand."""
    lstm = ('input: "x" input_shape {{ dim: {t} dim: 1 dim: 2 }} input: "c" input_shape {{ dim: {t} dim: 1 }}\n'
            'layer {{ name: "l" type: "LSTM" bottom: "x" bottom: "c" top: "h" recurrent_param {{ num_output: 3 '
            'weight_filler {{ type: "gaussian" std: 0.1 }} }} }}\n'
            'layer {{ name: "after" type: "InnerProduct" bottom: "h" top: "o" inner_product_param {{ num_output: 2 '
            'weight_filler {{ type: "uniform" }} }} }}')
    (layer, _) = shapes(lstm.format(t=5))
    assert isinstance(layer.fills[-1], fillers.FillCycle) and layer.fills[-1].times == 4
    rng = fillers.CaffeRNG(3)
    for step in layer.fills[:-1]:
        fillers.fill(np.empty(step.shape, np.float32), step.filler, rng=rng)
    for _ in range(4):
        fillers.fill(np.empty((12, 3), np.float32), layer.fills[-1].steps[0].filler, rng=rng)
    expected = fillers.fill(np.empty((2, 3), np.float32), "uniform", rng=rng)
    assert np.array_equal(fillers.fill_net(net(lstm.format(t=5)), seed=3, rng="caffe")["after"][0], expected)


def test_max_bytes_refuses_before_allocating():
    text = INPUT + IP.format(bottom="data", extra="")  # 2 x 192 + 2 floats
    assert fillers.fill_net(net(text), max_bytes=386 * 4)
    with pytest.raises(BudgetError, match="1,544 bytes.*max_bytes") as info:
        fillers.fill_net(net(text), max_bytes=386 * 4 - 1)
    assert info.value.needed == 386 * 4


def test_default_budget_is_the_available_memory():
    """Ten layers of 2e9 parameters: 80 GB, refused at once (the OOM killer took such fills before)."""
    layers = "".join(f'layer {{ name: "ip{i}" type: "InnerProduct" bottom: "data" top: "ip{i}" '
                     f'inner_product_param {{ num_output: 40000 }} }}\n' for i in range(10))
    text = 'input: "data" input_shape { dim: 1 dim: 50000 }\n' + layers
    with pytest.raises(BudgetError, match="the memory available now"):
        fillers.fill_net(net(text))


def test_cli_max_bytes(tmp_path, capsys):
    from fillers.cli import main

    path = tmp_path / "n.prototxt"
    path.write_text(INPUT + IP.format(bottom="data", extra=""))
    assert main(["fill", str(path), "-o", str(tmp_path / "w.npz"), "--max-bytes", "1K", "--quiet"]) == 1
    assert "more than max_bytes" in capsys.readouterr().err
    assert main(["fill", str(path), "-o", str(tmp_path / "w.npz"), "--max-bytes", "2K", "--quiet"]) == 0


# ----------------------------------------------------------------------------------------------------------
# Fillers that would overflow, divisions by zero


def test_gaussian_that_can_overflow_is_refused():
    """std 1e38 wrote infinities in float32; |mean| + 16 std must be finite (float fields cannot overflow
    float64)."""
    with pytest.raises(FillerError, match="overflows"):
        fillers.fill(np.empty(100, np.float32), {"type": "gaussian", "std": 1e38}, seed=1)
    with pytest.raises(FillerError, match="overflows"):
        fillers.fill(np.empty(100, np.float32), {"type": "gaussian", "mean": 3.3e38, "std": 1e37},
                     rng=fillers.CaffeRNG(1))
    assert np.isfinite(fillers.fill(np.empty(100, np.float32), {"type": "gaussian", "std": 1e36}, seed=1)).all()
    assert np.isfinite(fillers.fill(np.empty(100, np.float64), {"type": "gaussian", "std": 3e38}, seed=1)).all()


def test_gaussian_overflow_in_a_net_names_the_layer():
    text = INPUT + IP.format(bottom="data", extra='weight_filler { type: "gaussian" std: 1e38 }')
    with pytest.raises(ShapeError, match="'ip'.*overflows"):
        fillers.fill_net(net(text))


def test_positive_unitball_row_of_zeros_is_the_simplex_centre():
    from fillers import _kernels

    rows = np.array([0, 0, 0, 1, 3, 0], np.float32)
    _kernels.normalize_rows(rows, 3, 1)
    assert rows.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.25, 0.75, 0.0])
    many = np.zeros(16 * 5, np.float64)  # the rows-at-once path too
    _kernels.normalize_rows(many, 5, 1)
    assert (many == np.float64(1) / 5).all()


# ----------------------------------------------------------------------------------------------------------
# Files


FORMATS = [".caffemodel", ".npz", ".h5", ".safetensors"]


def _available(fmt):
    module = {".h5": "h5py", ".safetensors": "safetensors"}.get(fmt)
    if module is not None:
        pytest.importorskip(module)


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_size_blobs_round_trip(tmp_path, fmt):
    _available(fmt)
    params = {"a": [np.zeros((0, 3), np.float32), np.ones(2, np.float32)], "b": [np.zeros(0, np.float64)]}
    save(params, tmp_path / f"w{fmt}")
    back = load(tmp_path / f"w{fmt}")
    assert {k: [a.shape for a in v] for k, v in back.items()} == {k: [a.shape for a in v] for k, v in params.items()}
    # an empty double blob has no double_data: a .caffemodel reads it back as float32, as Caffe would
    assert back["b"][0].dtype == (np.float32 if fmt == ".caffemodel" else np.float64)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["empty", "half", "last byte", "garbage", "zeros"])
def test_load_detects_damaged_files(tmp_path, fmt, damage):
    _available(fmt)
    path = tmp_path / f"w{fmt}"
    save({"a": [np.arange(6, dtype=np.float32)], "b": [np.ones(3, np.float32)]}, path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "half": data[:len(data) // 2], "last byte": data[:-1],
                      "garbage": data + b"garbage!", "zeros": data + bytes(16)}[damage])
    with pytest.raises(FileFormatError) as info:
        load(path)
    assert info.value.path == str(path)


def test_load_of_a_missing_file_stays_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_repeated_layer_names_keep_every_layer(tmp_path):
    text = INPUT + IP.format(bottom="data", extra="") + IP.format(bottom="ip", extra="")
    params = fillers.fill_net(net(text), seed=1)
    assert list(params) == ["ip", "ip#2"]
    from fillers.caffemodel import CaffemodelWriter

    path = tmp_path / "dup.caffemodel"
    with atomic_write(path) as handle:  # as Caffe writes such a net: the name twice
        writer = CaffemodelWriter(handle, None)
        for blobs in params.values():
            writer.add_layer(caffe_pb2.LayerParameter(name="ip", type="InnerProduct"), blobs)
    back = load(path)
    assert list(back) == ["ip", "ip#2"] and np.array_equal(back["ip#2"][0], params["ip#2"][0])


def test_an_empty_layer_name_is_refused_where_the_format_cannot_hold_it(tmp_path):
    with pytest.raises(FileFormatError, match="empty layer name"):
        save({"": [np.ones(2, np.float32)]}, tmp_path / "w.npz")
    with pytest.raises(FileFormatError, match="longer than a zip entry name"):  # was struct.error from zipfile
        save({"x" * 70_000: [np.ones(2, np.float32)]}, tmp_path / "w.npz")
    save({"": [np.ones(2, np.float32)]}, tmp_path / "w.caffemodel")
    assert list(load(tmp_path / "w.caffemodel")) == [""]


def test_symlinked_output_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    save({"a": [np.ones(2, np.float32)]}, tmp_path / "real" / "w.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "real" / "w.npz")
    save({"b": [np.ones(2, np.float32)]}, tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink() and list(load(tmp_path / "real" / "w.npz")) == ["b"]


def test_a_name_at_the_file_system_limit_works(tmp_path):
    path = tmp_path / ("w" * 245 + ".npz")  # 249 characters: the temporary name must still fit
    save({"a": [np.ones(2, np.float32)]}, path)
    assert list(load(path)) == ["a"]


def test_stale_temporary_files_of_dead_runs_are_removed(tmp_path):
    path = tmp_path / "w.npz"
    prefix = _temp_prefix(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f"{prefix}{dead}.0123.tmp").write_bytes(b"partial")
    (tmp_path / f"{prefix}{os.getpid()}.4567.tmp").write_bytes(b"a live writer's")
    save({"a": [np.ones(2, np.float32)]}, path)
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == [f"{prefix}{os.getpid()}.4567.tmp"]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGTERM/SIGHUP on this platform")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_termination_signals_remove_the_temporary_file(tmp_path, signum):
    code = ("import signal, sys, time\nfrom fillers.io import atomic_write\n"
            f"signal.signal(signal.{signum}, signal.SIG_DFL)\n"  # (a test run under nohup ignores SIGHUP)
            "with atomic_write(sys.argv[1]) as fh:\n    fh.write(b'x' * 1000)\n    print('ready', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "w.npz"], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)  # not the checkout: import the installed package
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(getattr(signal, signum))
    assert proc.wait(timeout=30) == -getattr(signal, signum)  # the signal then takes its usual course
    assert list(tmp_path.iterdir()) == []


def test_caffemodel_over_2_gib_is_refused_before_writing(tmp_path):
    big = np.broadcast_to(np.float32(0), (1 << 29, 1))  # 2 GiB of float32 that take no memory
    with pytest.raises(FileFormatError, match=r"\.h5|\.safetensors"):
        save({"huge": [big]}, tmp_path / "w.caffemodel")
    assert list(tmp_path.iterdir()) == []
