"""`fillers upgrade`: output, exit codes, one-line errors, atomic writes."""
import subprocess
import sys
from pathlib import Path

import pytest

import fillers.prototxt
from fillers import load_net
from fillers.cli import main
from fillers.prototxt import to_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
V1 = EXAMPLES / "tiny_v1.prototxt"


def test_stdout(capsys):
    assert main(["upgrade", str(V1)]) == 0
    out, err = capsys.readouterr()
    assert out == to_text(load_net(V1)) and err == ""


def test_text_output_round_trips(tmp_path, capsys):
    first = tmp_path / "up.prototxt"
    second = tmp_path / "up2.prototxt"
    assert main(["upgrade", str(EXAMPLES / "tiny_v0.prototxt"), "-o", str(first)]) == 0
    assert main(["upgrade", str(first), "-o", str(second)]) == 0
    assert first.read_text() == second.read_text()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("suffix", [".caffemodel", ".binaryproto"])
def test_binary_output(tmp_path, suffix):
    out = tmp_path / ("net" + suffix)
    assert main(["upgrade", str(V1), "-o", str(out)]) == 0
    assert load_net(out.read_bytes()) == load_net(V1)


def test_warnings_are_one_line_each(tmp_path, capsys):
    src = tmp_path / "fork.prototxt"
    src.write_text('layer {\n  name: "u"\n  type: "Up"\n  up_param { factor: 2 }\n}\n')
    assert main(["upgrade", str(src)]) == 0
    out, err = capsys.readouterr()
    assert err == f'fillers: warning: {src}:4:3: unknown field "up_param" in caffe.LayerParameter (skipped)\n'
    assert 'type: "Up"' in out
    assert main(["upgrade", "--strict", str(src)]) == 1
    assert capsys.readouterr().err.startswith(f"fillers: error: {src}:4:3: unknown field")


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["upgrade", str(tmp_path / "missing.prototxt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fillers: error: ") and "missing.prototxt" in err
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer {\n  name: 'x\n}\n")
    assert main(["upgrade", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fillers: error: {bad}:2:")


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "upgrade", str(tmp_path / "missing.prototxt")])


@pytest.mark.parametrize("argv", [[], ["upgrade"], ["upgrade", str(V1), "--no-such-option"],
                                  ["frobnicate"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    out = tmp_path / "net.prototxt"
    out.write_text("old contents")

    def interrupted(net):
        raise KeyboardInterrupt

    monkeypatch.setattr(fillers.prototxt, "to_text", interrupted)
    assert main(["upgrade", str(V1), "-o", str(out)]) == 130
    assert out.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]
    assert capsys.readouterr().err == "fillers: interrupted\n"


def test_as_a_process(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "fillers.cli", "upgrade", str(V1)],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith('name: "TinyV1"')
    bad = subprocess.run([sys.executable, "-m", "fillers.cli", "upgrade", "nope.prototxt"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "fillers.cli"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert usage.returncode == 2


def test_dash_output_is_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["upgrade", str(V1), "-o", "-"]) == 0
    assert capsys.readouterr() == (to_text(load_net(V1)), "")
    assert list(tmp_path.iterdir()) == []  # no file named "-"
