"""The HTML report: the layer table, a histogram per blob against its filler's density, a page Chromium opens
without console messages."""
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import fillers
from fillers import report
from fillers.cli import main
from fillers.report import blob_stats, expected, write_report
from fillers.shapes import net_layers

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LENET = EXAMPLES / "lenet.prototxt"
BILINEAR = EXAMPLES / "upsample_bilinear.prototxt"


def _shape(shape):
    return "\u00d7".join(map(str, shape)) or "scalar"


def _blob_divs(page: str) -> dict[str, str]:
    """Each blob's section (``blob-<layer>-<i>``) with its content."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div class="blob" id="([^"]+)">', page)]
    ends = [s for s, _ in starts[1:]] + [len(page)]
    return {anchor: page[start:end] for (start, anchor), end in zip(starts, ends)}


@pytest.mark.parametrize("path", [LENET, BILINEAR], ids=lambda p: p.name)
def test_page_holds_every_layer_blob_shape_and_an_svg_histogram_per_blob(tmp_path, path):
    pytest.importorskip("matplotlib")
    net = fillers.load_net(path)
    params = fillers.fill_net(net, seed=3)
    out = tmp_path / "report.html"
    write_report(out, net, weights=params)
    page = out.read_text(encoding="utf-8")
    layers = net_layers(net)
    for layer in layers:
        assert f"<b>{layer.param.name}</b>" in page
    sections = _blob_divs(page)
    expected_anchors = [f"blob-{name}-{i}" for name, blobs in params.items() for i in range(len(blobs))]
    assert list(sections) == expected_anchors
    for (name, blobs) in params.items():
        for i, blob in enumerate(blobs):
            section = sections[f"blob-{name}-{i}"]
            assert f"<code>{_shape(blob.shape)}</code>" in section
            assert section.count("<svg") == 1 and "</svg>" in section
    # Self-contained: no script, nothing fetched (only SVG namespace URIs and in-page links).
    assert "<script" not in page
    assert not re.search(r'(src|href)="(?!#)', page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) <= {"http://www.w3.org/2000/svg",
                                                            "http://www.w3.org/1999/xlink"}
    # Element ids are unique across the inlined SVGs.
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_the_table_has_tops_with_shapes_and_totals(tmp_path):
    out = tmp_path / "table.html"
    write_report(out, LENET)  # no weights: the table only, no plots (no matplotlib needed)
    page = out.read_text(encoding="utf-8")
    assert "<svg" not in page
    assert "&rarr; <code>conv1</code> 64\u00d720\u00d724\u00d724" in page
    assert "<code>pool2</code> 64\u00d750\u00d74\u00d74" in page
    total = sum(b.size for blobs in fillers.fill_net(LENET).values() for b in blobs)
    assert f"{total:,}" in page and "9 layers, 4 with learnable blobs" in page


def test_statistics_read_every_value_in_chunks(monkeypatch):
    monkeypatch.setattr(report, "_CHUNK", 1000)
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(10_007) * 3 + 1e4).astype(np.float32)  # far from 0: the shifted sums
    values[::7] = 0
    got = blob_stats(values)
    v64 = values.astype(np.float64)
    assert got.count == values.size and got.finite
    assert got.mean == pytest.approx(v64.mean(), rel=1e-12)
    assert got.std == pytest.approx(v64.std(), rel=1e-9)
    assert (got.min, got.max) == (v64.min(), v64.max())
    assert got.zeros == np.count_nonzero(values == 0) / values.size
    constant = blob_stats(np.full(3000, 0.1, np.float32))
    assert constant.std == 0 and constant.mean == pytest.approx(float(np.float32(0.1)), rel=1e-12)


def _draw(filler, shape, seed=11):
    return fillers.fill(np.empty(shape, np.float64), filler, seed=seed).ravel()


@pytest.mark.parametrize("filler, shape", [
    ('type: "uniform" min: -2 max: 3', (400, 500)),
    ('type: "xavier" variance_norm: AVERAGE', (300, 200, 3)),
    ('type: "gaussian" mean: 0.5 std: 2', (400, 500)),
    ('type: "msra"', (256, 64, 3, 3)),
])
def test_expected_continuous_distributions_match_the_fills(filler, shape):
    """Kolmogorov-Smirnov of 200 000 drawn values against the expected CDF (p > 1e-3: a true distribution
    fails one run in a thousand; a wrong scale by 1% fails always at this size)."""
    exp = expected(_param(filler), shape)
    values = _draw(filler, shape)[:200_000]
    if exp.box is not None:
        low, high, _ = exp.box
        cdf = stats.uniform(low, high - low).cdf
    else:
        mean, std, _ = exp.gaussian
        cdf = stats.norm(mean, std).cdf
    assert stats.kstest(values, cdf).pvalue > 1e-3
    assert exp.mean == pytest.approx(values.mean(), abs=6 * exp.std / math.sqrt(values.size))
    assert exp.std == pytest.approx(values.std(), rel=0.01)


def _param(text):
    from fillers._params import as_filler_parameter

    return as_filler_parameter(text)


def test_expected_sparse_gaussian_mass_at_zero_and_moments():
    filler, shape = 'type: "gaussian" mean: 1 std: 0.5 sparse: 30', (100, 5000)
    exp = expected(_param(filler), shape)
    values = _draw(filler, shape)
    assert exp.zeros == pytest.approx(0.7) and exp.atoms == ((0.0, pytest.approx(0.7)),)
    n = values.size  # binomial share of zeros: 5 standard errors
    assert np.count_nonzero(values == 0) / n == pytest.approx(exp.zeros, abs=5 * math.sqrt(0.21 / n))
    assert values.mean() == pytest.approx(exp.mean, abs=5 * exp.std / math.sqrt(n))
    assert values.std() == pytest.approx(exp.std, rel=0.01)
    kept = values[values != 0]
    assert stats.kstest(kept, stats.norm(1, 0.5).cdf).pvalue > 1e-3


def test_expected_bilinear_and_constant_are_exact():
    shape = (4, 3, 6, 6)
    values = _draw("bilinear", shape)
    exp = expected(_param("bilinear"), shape)
    assert (exp.mean, exp.min, exp.max) == pytest.approx((values.mean(), values.min(), values.max()), abs=1e-15)
    assert exp.std == pytest.approx(values.std(), abs=1e-15)
    assert sum(m for _, m in exp.atoms) == pytest.approx(1.0)
    const = expected(_param('type: "constant" value: -0.25'), (3,))
    assert (const.mean, const.std, const.min, const.max, const.atoms) == (-0.25, 0.0, -0.25, -0.25, ((-0.25, 1.0),))


def test_expected_unitball_mean_is_exact():
    shape = (200, 1000)
    values = _draw("positive_unitball", shape)
    exp = expected(_param("positive_unitball"), shape)
    assert values.mean() == pytest.approx(exp.mean, rel=1e-12)  # each row sums to 1
    assert values.std() == pytest.approx(exp.std, rel=0.02)  # the long-row limit, noted on the page
    assert exp.note


def test_large_blobs_are_sampled_and_the_page_says_so(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(report, "HISTOGRAM_SAMPLE", 1000)
    out = tmp_path / "sampled.html"
    write_report(out, LENET, weights=fillers.fill_net(LENET))
    sections = _blob_divs(out.read_text(encoding="utf-8"))
    assert "histogram of 1,000 of the 400,000 values" in sections["blob-ip1-0"]
    assert "histogram of" not in sections["blob-ip1-1"]  # 500 values: all of them


def test_weights_that_do_not_match_the_net_are_errors(tmp_path):
    pytest.importorskip("matplotlib")
    params = fillers.fill_net(LENET)
    with pytest.raises(fillers.ShapeError, match="layer 'conv2' .*no blobs for it"):
        write_report(tmp_path / "x.html", LENET, weights={k: v for k, v in params.items() if k != "conv2"})
    params["ip2"] = [params["ip2"][0][:5], params["ip2"][1]]
    with pytest.raises(fillers.ShapeError, match=r"layer 'ip2' \(InnerProduct\), blob 0: the weights' shape"):
        write_report(tmp_path / "x.html", LENET, weights=params)
    assert not (tmp_path / "x.html").exists()


def test_cli_inspect_html_with_weights_and_fill_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    weights, page, filled = tmp_path / "w.caffemodel", tmp_path / "r.html", tmp_path / "f.html"
    assert main(["fill", str(LENET), "-o", str(weights), "--quiet", "--report", str(filled)]) == 0
    assert main(["inspect", str(LENET), "--html", str(page), "--weights", str(weights)]) == 0
    assert len(_blob_divs(page.read_text())) == len(_blob_divs(filled.read_text())) == 8
    with pytest.raises(SystemExit) as usage:
        main(["inspect", str(LENET), "--weights", str(weights)])
    assert usage.value.code == 2 and "--weights needs --html" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# In a browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium)")


def _open_in_chromium(page: Path) -> tuple[str, list[str]]:
    """The DOM Chromium builds from ``page`` and the console messages it logged."""
    run = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=2000", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def test_the_page_opens_in_chromium_without_console_messages(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    write_report(out, LENET, weights=fillers.fill_net(LENET, seed=1))
    dom, console = _open_in_chromium(out)
    assert console == []
    assert dom.count("<svg") == 8 and "conv1" in dom
    # The check sees console messages when there are some.
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><script>console.error("broken page")</script></body></html>')
    assert any("broken page" in line for line in _open_in_chromium(broken)[1])


def test_overridden_and_copied_blobs(tmp_path):
    """The expected density is the override's; a blob copied from pretrained weights has none."""
    pytest.importorskip("matplotlib")
    net = fillers.load_net(LENET)
    filled = fillers.fill_net(net, seed=2, overrides={"ip1": "msra"}, weights={"conv1": fillers.fill_net(net)["conv1"]})
    assert filled.report.copied == ["conv1/0", "conv1/1"]
    out = tmp_path / "tuned.html"
    write_report(out, net, weights=filled, overrides={"ip1": "msra"}, copied=filled.report.copied)
    sections = _blob_divs(out.read_text(encoding="utf-8"))
    assert "msra (override)" in sections["blob-ip1-0"] and "sparse" not in sections["blob-ip1-0"]
    assert "<td class=n>0.05</td>" in sections["blob-ip1-0"]  # msra: std sqrt(2 / 800), not std=0.01
    assert "copied from the weights" in sections["blob-conv1-0"]
    assert "<td class=n>0.2</td>" not in sections["blob-conv1-0"]  # no expected column (xavier's std 0.2)
    cli_page = tmp_path / "cli.html"
    assert main(["fill", str(LENET), "-o", str(tmp_path / "w.npz"), "--quiet", "--filler", "ip1=msra",
                 "--report", str(cli_page)]) == 0
    assert "msra (override)" in _blob_divs(cli_page.read_text(encoding="utf-8"))["blob-ip1-0"]


def test_a_whole_net_caffemodel_reports_itself(tmp_path):
    """fillers inspect W.caffemodel --html --weights W.caffemodel: the net and its values from one file, drawn
    against the fillers the file's layers still name."""
    pytest.importorskip("matplotlib")
    model, page = tmp_path / "lenet.caffemodel", tmp_path / "self.html"
    assert main(["fill", str(LENET), "-o", str(model), "--quiet", "--seed", "3"]) == 0
    assert main(["inspect", str(model), "--html", str(page), "--weights", str(model)]) == 0
    sections = _blob_divs(page.read_text(encoding="utf-8"))
    assert len(sections) == 8
    assert "xavier (values given in the net)" in sections["blob-conv1-0"]
    assert "<td class=n>0.2</td>" in sections["blob-conv1-0"]  # xavier's expected std sqrt(3 / 25) / sqrt(3)
