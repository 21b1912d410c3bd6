"""The HTML report's cost: its statistics and histograms against numpy's plain calls, and VGG-19's whole page.

- statistics: :func:`fillers.html_report.blob_stats` (mean, std, min, max and zeros in one chunked pass) against
  numpy's separate reductions of the same blob (``mean`` and ``std`` in float64, ``min``, ``max``,
  ``count_nonzero``), interleaved, best of ``repeat``;
- histogram: the report's (at most 4 Mi values, a fixed-seed sample) against ``numpy.histogram`` of the whole
  blob;
- the page: ``write_report`` of VGG-19 with gaussian weights (143.7 M values in 38 blobs), once, beside the
  ``fill_net`` that made them (when the corpus is beside the checkout).

Usage: ``python benchmarks/bench_report.py`` prints the line; ``benchmarks/run.py`` runs it as a section and
keeps ``run()``'s results in its results file.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

import fillers
from fillers import report as html_report
from run import best_interleaved  # benchmarks/run.py: this folder is on the path, as a script's or run.py's

VGG19 = (Path(os.environ.get("FILLERS_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "corpus"
         / "prototxt" / "davidgengenbach__vgg-caffe__model__VGG_ILSVRC_19_layers_deploy.prototxt")


def _numpy_stats(x: np.ndarray) -> None:
    np.mean(x, dtype=np.float64), np.std(x, dtype=np.float64), x.min(), x.max(), np.count_nonzero(x)


def _vgg19_page() -> dict:
    if not VGG19.exists():
        return {"skipped": f"{VGG19} not found"}
    net = fillers.load_net(VGG19)
    for layer in net.layer:  # the deploy file has no fillers: Caffe's training ones, gaussian std 0.01
        for field in ("convolution_param", "inner_product_param"):
            if layer.HasField(field):
                getattr(layer, field).weight_filler.CopyFrom(fillers.FillerParameter(type="gaussian", std=0.01))
    t0 = time.perf_counter()
    params = fillers.fill_net(net, seed=1)
    fill_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        html_report.write_report(Path(tmp) / "vgg19.html", net, weights=params)
        page_s = time.perf_counter() - t0
        size = (Path(tmp) / "vgg19.html").stat().st_size
    values = sum(b.size for blobs in params.values() for b in blobs)
    return {"values": values, "blobs": sum(map(len, params.values())), "fill_net_s": fill_s, "report_s": page_s,
            "page_bytes": size}


def run(size: int = 64 << 20, repeat: int = 3) -> dict:
    x = np.random.default_rng(0).standard_normal(size, dtype=np.float32)
    stats = html_report.blob_stats(x)
    lo, hi = stats.min, stats.max
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t = best_interleaved({"blob_stats": lambda: html_report.blob_stats(x), "numpy": lambda: _numpy_stats(x),
               "sampled_histogram": lambda: np.histogram(html_report._sample(x), bins=63, range=(lo, hi)),
               "numpy_histogram": lambda: np.histogram(x, bins=63, range=(lo, hi))}, repeat)
    return {"elements": size, "best_of": repeat, "load_average_1min": load,
            "stats_s": t["blob_stats"], "numpy_stats_s": t["numpy"], "stats_ratio": t["numpy"] / t["blob_stats"],
            "histogram_s": t["sampled_histogram"], "numpy_histogram_s": t["numpy_histogram"],
            "histogram_ratio": t["numpy_histogram"] / t["sampled_histogram"], "vgg19": _vgg19_page()}


def report(results: dict) -> str:
    """One line: the ratios, the VGG-19 page's time."""
    vgg = results["vgg19"]
    page = (f"; VGG-19 page ({vgg['values'] / 1e6:.1f} M values, {vgg['blobs']} blobs): {vgg['report_s']:.1f} s "
            f"(its fill_net {vgg['fill_net_s']:.1f} s), {vgg['page_bytes'] / 1024:.0f} KiB" if "report_s" in vgg
            else f"; VGG-19 page: {vgg['skipped']}")
    return (f"report, float32 {results['elements'] >> 20} Mi, best of {results['best_of']}: statistics "
            f"{results['stats_s']:.2f} s ({results['stats_ratio']:.2f}x numpy's separate reductions), histogram "
            f"{results['histogram_s']:.2f} s ({results['histogram_ratio']:.2f}x numpy.histogram of every value)"
            + page + (f"; load average before {results['load_average_1min']:.1f}"
                      if results["load_average_1min"] is not None else ""))


if __name__ == "__main__":
    print(report(run()))
