"""The ``fillers`` command: fill and inspect, exit codes, messages."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fillers
from fillers.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LENET = EXAMPLES / "lenet.prototxt"
UPSAMPLE = EXAMPLES / "upsample_bilinear.prototxt"


@pytest.mark.parametrize("suffix", [".caffemodel", ".npz", ".h5", ".safetensors"])
def test_fill_writes_what_fill_net_returns(tmp_path, suffix, capsys):
    out = tmp_path / f"lenet{suffix}"
    assert main(["fill", str(LENET), "-o", str(out), "--seed", "7"]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("filled 4 layers, 431,080 parameters") and str(out) in summary
    expected = fillers.fill_net(fillers.load_net(LENET), seed=7)
    written = fillers.load(out)
    assert list(written) == list(expected)
    for layer, blobs in expected.items():
        for got, want in zip(written[layer], blobs):
            assert got.tobytes() == want.tobytes()


def test_fill_caffe_stream_float64_quiet(tmp_path, capsys):
    out = tmp_path / "up.npz"
    args = ["fill", str(UPSAMPLE), "-o", str(out), "--rng", "caffe", "--seed", "1701", "--dtype", "float64",
            "--quiet"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    written = fillers.load(out)
    expected = fillers.fill_net(fillers.load_net(UPSAMPLE), seed=1701, rng="caffe", dtype=np.float64)
    assert written["upscore"][0].dtype == np.float64
    assert all(a.tobytes() == b.tobytes() for layer in expected for a, b in zip(written[layer], expected[layer]))


def test_input_overrides_the_net(tmp_path):
    out = tmp_path / "lenet.npz"
    assert main(["fill", str(LENET), "-o", str(out), "--input", "data=1,1,32,32", "--quiet"]) == 0
    assert fillers.load(out)["ip1"][0].shape == (500, 50 * 5 * 5)


def test_inspect_table_and_json(capsys):
    assert main(["inspect", str(UPSAMPLE)]) == 0
    table = capsys.readouterr().out
    assert "upscore  Deconvolution" in table and "bilinear" in table
    assert table.strip().endswith("total: 5 layers, 10 blobs, 678 parameters")
    assert main(["inspect", str(LENET), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] == 431_080 and report["layers"] == 4
    conv2 = [blob for blob in report["blobs"] if blob["layer"] == "conv2"][0]
    assert conv2["shape"] == [50, 20, 5, 5]
    assert conv2["filler"] == {"type": "msra", "variance_norm": "FAN_OUT"}


def test_errors_are_one_line_with_exit_code_1(tmp_path, capsys):
    assert main(["fill", str(tmp_path / "missing.prototxt"), "-o", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fillers: error: ") and "missing.prototxt" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  name: "a"\n  type: "Input"\n  bogus_field {\n')
    assert main(["inspect", str(bad)]) == 1
    assert "bad.prototxt:" in capsys.readouterr().err
    assert main(["fill", str(LENET), "-o", str(tmp_path / "x.pkl")]) == 1
    assert "cannot tell the format" in capsys.readouterr().err
    assert not (tmp_path / "x.pkl").exists()


def test_unknown_shape_suggests_input(tmp_path, capsys):
    net = tmp_path / "data.prototxt"
    net.write_text('layer { name: "d" type: "Data" top: "data" data_param { source: "x" batch_size: 4 } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                   'inner_product_param { num_output: 3 } }\n')
    assert main(["inspect", str(net)]) == 1
    assert "--input" in capsys.readouterr().err
    assert main(["inspect", str(net), "--input", "data=4,2,5,5"]) == 0
    assert "3x50" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["fill", str(LENET)],
        ["fill", str(LENET), "-o", "x.npz", "--rng", "mt"],
        ["fill", str(LENET), "-o", "x.npz", "--input", "data"],
        ["fill", str(LENET), "-o", "x.npz", "--threads", "0"],
        ["fill", str(LENET), "-o", "x.npz", "--seed", "-1"],
        ["inspect", str(LENET), "--phase", "VAL"],
    ],
)
def test_usage_errors_exit_2(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2


def test_console_script_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-c", "import sys; from fillers.cli import main; sys.exit(main())"]
    missing = str(tmp_path / "missing.prototxt")
    plain = subprocess.run(cmd + ["inspect", missing], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd + ["--debug", "inspect", missing], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_inspect_blobs_a_layer_writes_itself(tmp_path, capsys):
    crf = tmp_path / "crf.prototxt"
    crf.write_text('layer { name: "in" type: "Input" top: "u" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }\n'
                   'layer { name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "u" bottom: "u" top: "q" '
                   'multi_stage_meanfield_param { num_iterations: 2 spatial_filter_weights_str: "1 1" '
                   'bilateral_filter_weights_str: "1 1" } }\n')
    assert main(["inspect", str(crf)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert rows == [["crf", "MultiStageMeanfield", str(i), "1x1x2x2", "set", "by", "the", "layer", "4"] for i in range(3)]
    assert main(["inspect", str(crf), "--json"]) == 0
    assert [row["filler"] for row in json.loads(capsys.readouterr().out)["blobs"]] == [None] * 3


def test_fill_to_stdout_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fill", str(LENET), "-o", "-"])
    assert exit_info.value.code == 2
    assert "fill -o -: the weight formats are binary" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["-m", "fillers"],
                                     ["-c", "import sys; from fillers.cli import main; sys.exit(main())"]])
def test_version(command, tmp_path):
    run = subprocess.run([sys.executable, *command, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"fillers {fillers.__version__}\n", "")


def test_python_m_fillers_runs_the_command(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fillers", "inspect", str(LENET)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "total: 4 layers, 8 blobs, 431,080 parameters"
