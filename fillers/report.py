"""The HTML report of a net and its weights: ``fillers inspect NET --html`` and ``fillers fill ... --report``.

One self-contained page (inline CSS and SVG, no script, nothing fetched when it is viewed):

- the layer table in the manner of netscope: every layer of the built net with its type, bottom and top blobs
  with their shapes, its learnable blobs with shape, filler and parameter count, and the totals;
- with weights, per learnable blob a histogram of its values drawn against the density its filler should give
  (a uniform box, a gaussian curve, point masses for constants, a sparse gaussian's zeros and bilinear kernels),
  with the blob's mean, standard deviation, minimum, maximum and share of zeros beside the expected ones.

Statistics read every value, in one chunked pass per blob.  The histogram reads at most
:data:`HISTOGRAM_SAMPLE` values: larger blobs are sampled uniformly (with replacement, a fixed seed), and the
page says so.  Plots are drawn by matplotlib's SVG backend (``pip install 'fillers[report]'``).
"""
from __future__ import annotations

import dataclasses
import html
import io
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fillers._fill import fill
from fillers._params import resolve
from fillers.caffe_pb2 import FillerParameter, NetParameter
from fillers.errors import ShapeError
from fillers.io import atomic_write
from fillers.net import apply_overrides, layer_keys
from fillers.shapes import BlobSpec, NetLayer, net_layers

__all__ = ["HISTOGRAM_SAMPLE", "BlobStats", "Expected", "blob_stats", "expected", "write_report"]

#: The most values a histogram reads; a larger blob is sampled (uniformly, with replacement, seed 0).
HISTOGRAM_SAMPLE = 1 << 22
_BINS = 63  # odd: a symmetric range puts its centre (a point mass) mid-bin
_CHUNK = 1 << 18  # elements per step of the statistics pass: a float64 buffer of 2 MiB, in cache
_SQRT12 = math.sqrt(12.0)
_BLUE, _RED = "#9ab8d8", "#c0392b"  # the values, the expected distribution


# ----------------------------------------------------------------------------------------------------------
# What a filler should give


@dataclass(frozen=True)
class Expected:
    """The distribution a filler gives a blob.

    Attributes
    ----------
    mean, std : float
        Its moments (``std`` of the population).
    min, max : float or None
        Its bounds; ``None`` where it has none (gaussians).
    zeros : float
        The probability of an exact zero (a sparse gaussian's dropped elements, a constant 0).
    atoms : tuple of (float, float)
        Point masses ``(value, probability)``.
    box : tuple of (float, float, float) or None
        A uniform part ``(low, high, probability)``.
    gaussian : tuple of (float, float, float) or None
        A gaussian part ``(mean, std, probability)``.
    note : str
        Where the figures are an approximation, why.
    """

    mean: float
    std: float
    min: float | None
    max: float | None
    zeros: float
    atoms: tuple[tuple[float, float], ...] = ()
    box: tuple[float, float, float] | None = None
    gaussian: tuple[float, float, float] | None = None
    note: str = ""

    def density(self, x: np.ndarray) -> np.ndarray:
        """The density of the continuous part at ``x`` (weighted by its probability)."""
        y = np.zeros_like(x, dtype=np.float64)
        if self.box is not None:
            low, high, p = self.box
            y += np.where((x >= low) & (x <= high), p / (high - low), 0.0)
        if self.gaussian is not None:
            mean, std, p = self.gaussian
            y += p * np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        return y


def _point(value: float) -> Expected:
    return Expected(mean=value, std=0.0, min=value, max=value, zeros=float(value == 0), atoms=((value, 1.0),))


def _uniform(low: float, high: float) -> Expected:
    if low == high:
        return _point(low)
    return Expected(mean=(low + high) / 2, std=(high - low) / _SQRT12, min=low, max=high, zeros=0.0,
                    box=(low, high, 1.0))


def expected(filler: FillerParameter, shape: tuple[int, ...], dtype=np.float32) -> Expected:
    """The distribution ``filler`` gives a blob of ``shape`` (Caffe's parameter arithmetic: the xavier scale,
    the msra standard deviation and the sparse keep probability are those :func:`fillers.fill` uses).

    Parameters
    ----------
    filler : FillerParameter
    shape : tuple of int
    dtype : float32 or float64

    Returns
    -------
    Expected

    Raises
    ------
    FillerError
        A filler Caffe would reject for this shape.
    """
    plan = resolve(filler, tuple(shape), np.dtype(dtype))
    if plan.kind == "constant":
        return _point(plan.a)
    if plan.kind == "uniform":
        return _uniform(plan.a, plan.b)
    if plan.kind == "gaussian":
        p = 1.0 if plan.sparse_p is None else plan.sparse_p
        mean = p * plan.a
        std = math.sqrt(p * (plan.b ** 2 + plan.a ** 2) - mean ** 2)
        atoms = ((0.0, 1.0 - p),) if p < 1 else ()
        return Expected(mean=mean, std=std, min=None, max=None, zeros=1.0 - p, atoms=atoms,
                        gaussian=(plan.a, plan.b, p))
    if plan.kind == "unitball":
        k = plan.row_len
        if k <= 1:
            return _point(1.0)
        # Each value is u / (sum of the k uniforms of its row): the mean is exactly 1/k; for long rows the sum
        # is close to k/2, so the values are close to U[0, 2/k].
        approx = _uniform(0.0, 2.0 / k)
        return Expected(mean=1.0 / k, std=approx.std, min=0.0, max=1.0, zeros=0.0, box=approx.box,
                        note=f"rows of {k} values: the curve and std are the long-row limit U[0, 2/k]")
    # bilinear: the same K x K kernel for every (n, c); its values are the distribution.
    kernel = fill(np.empty((1, 1, plan.kernel, plan.kernel), np.float64), filler).ravel()
    values, counts = np.unique(kernel, return_counts=True)
    return Expected(mean=float(kernel.mean()), std=float(kernel.std()), min=float(values[0]),
                    max=float(values[-1]), zeros=float(np.count_nonzero(kernel == 0) / kernel.size),
                    atoms=tuple(zip(values.tolist(), (counts / kernel.size).tolist())))


# ----------------------------------------------------------------------------------------------------------
# What a blob holds


@dataclass(frozen=True)
class BlobStats:
    """Statistics of a blob's values (all of them) and the histogram of (a sample of) them.

    Attributes
    ----------
    count : int
    mean, std, min, max : float
        Over every value (NaN for an empty blob; ``std`` of the population).
    zeros : float
        The share of values equal to zero.
    finite : bool
        Whether every value is finite (the histogram counts only finite values).
    sampled : int
        How many values the histogram read (``count`` unless the blob was sampled).
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    zeros: float
    finite: bool
    sampled: int


def blob_stats(values: np.ndarray) -> BlobStats:
    """Mean, std, min, max and the share of zeros of ``values`` in one pass over chunks of it."""
    flat = np.ravel(values)
    n = flat.size
    if n == 0:
        return BlobStats(0, math.nan, math.nan, math.nan, math.nan, math.nan, True, 0)
    total = squares = 0.0
    low, high, zeros = math.inf, -math.inf, 0
    shift = float(flat[0])  # sums of (x - shift) keep the variance exact for blobs far from 0 (constants)
    buffer = np.empty(min(n, _CHUNK), np.float64)
    for start in range(0, n, _CHUNK):
        part = flat[start:start + _CHUNK]
        low = min(low, float(part.min()))
        high = max(high, float(part.max()))
        zeros += part.size - int(np.count_nonzero(part))
        shifted = buffer[:part.size]
        np.subtract(part, shift, out=shifted, dtype=np.float64)
        total += float(shifted.sum())
        np.square(shifted, out=shifted)  # no BLAS dot: its threads cost more than they give on small chunks
        squares += float(shifted.sum())
    mean = total / n
    std = math.sqrt(max(squares / n - mean * mean, 0.0))
    finite = math.isfinite(total) and math.isfinite(squares)
    return BlobStats(n, mean + shift, std, low, high, zeros / n, finite, min(n, HISTOGRAM_SAMPLE))


def _sample(values: np.ndarray) -> np.ndarray:
    flat = np.ravel(values)
    if flat.size <= HISTOGRAM_SAMPLE:
        return flat
    index = np.random.default_rng(0).integers(0, flat.size, HISTOGRAM_SAMPLE)
    return flat[index]


# ----------------------------------------------------------------------------------------------------------
# Plots


def _matplotlib():
    """matplotlib and its Figure class (a Figure saved as SVG needs no pyplot and no GUI backend)."""
    try:
        import matplotlib
        import matplotlib.ticker
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the HTML report draws with matplotlib: pip install 'fillers[report]'") from None
    return matplotlib, Figure


def _range(stats: BlobStats, exp: Expected | None) -> tuple[float, float]:
    """The x range of a plot: the values' and the expected support (a gaussian's mean +- 4 std)."""
    points = [stats.min, stats.max] if stats.finite else []
    if exp is not None:
        points += [v for v in (exp.min, exp.max) if v is not None]
        if exp.gaussian is not None:
            mean, std, _ = exp.gaussian
            points += [mean - 4 * std, mean + 4 * std]
    points = [p for p in points if math.isfinite(p)] or [0.0]
    low, high = min(points), max(points)
    pad = (high - low) * 0.04 or max(abs(low) * 0.1, 1e-3)
    return low - pad, high + pad


class _Plotter:
    """Draws histograms into SVG text with one reused matplotlib figure."""

    def __init__(self) -> None:
        matplotlib, figure = _matplotlib()
        self._rc = matplotlib.rc_context({"svg.fonttype": "none", "font.size": 8, "svg.hashsalt": "fillers"})
        self._rc.__enter__()
        self.figure = figure(figsize=(4.6, 2.3), dpi=72)
        self.axes = self.figure.add_axes((0.1, 0.14, 0.88, 0.82))
        self.axes.set_autoscale_on(False)
        self.axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6))

    def close(self) -> None:
        self._rc.__exit__(None, None, None)

    def histogram(self, values: np.ndarray, stats: BlobStats, exp: Expected | None, prefix: str) -> str:
        ax = self.axes
        for artist in [*ax.lines, *ax.patches, *ax.collections, *ax.texts]:
            artist.remove()  # keeps the axes and their ticks (ax.clear() rebuilds them: most of the time)
        low, high = _range(stats, exp)
        sample = _sample(values)
        if not stats.finite:
            sample = sample[np.isfinite(sample)]
        counts, edges = np.histogram(sample, bins=_BINS, range=(low, high))
        width = edges[1] - edges[0]
        density = counts / max(sample.size, 1) / width
        ax.stairs(density, edges, fill=True, color=_BLUE)
        top = float(density.max(initial=0.0))
        if exp is not None:
            top = self._expected(exp, low, high, width, density, edges, top)
        ax.set_xlim(low, high)
        ax.set_ylim(0, top * 1.08 or 1.0)
        buffer = io.StringIO()
        self.figure.savefig(buffer, format="svg", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type")))
        return _inline_svg(buffer.getvalue(), prefix)

    def _expected(self, exp: Expected, low: float, high: float, width: float, density: np.ndarray,
                  edges: np.ndarray, top: float) -> float:
        """Draw the expected distribution; returns the y limit.  A point mass of probability m is a stem of
        height m / width (the mass spread over one bin, as its values fill one bar).  Beside a continuous part
        the stems are cut at the plot's top, labelled with their mass, so the continuous part stays visible."""
        ax = self.axes
        continuous = exp.box is not None or exp.gaussian is not None
        if continuous:
            x = np.linspace(low, high, 400)
            y = exp.density(x)
            ax.plot(x, y, color=_RED, lw=1.2)
            atom_bins = np.zeros(density.size, bool)
            for value, _ in exp.atoms:
                atom_bins |= (edges[:-1] <= value) & (value < edges[1:])
            top = max(float(y.max()), float(density[~atom_bins].max(initial=0.0)))
        for value, mass in exp.atoms:
            height = mass / width
            if continuous and height > top:
                ax.vlines(value, 0, top * 1.08, color=_RED, lw=1.2, linestyles="dashed")
                ax.text(value, top * 1.0, f" P({value:.3g}) = {mass:.3g}", color=_RED, va="top")
            else:
                ax.vlines(value, 0, height, color=_RED, lw=1.2)
                ax.plot([value], [height], "o", color=_RED, ms=3)
                top = max(top, height)
        return top


def _inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element to inline in HTML: no XML prolog, ids unique to ``prefix``."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = svg.replace("url(#", f"url(#{prefix}-").replace('href="#', f'href="#{prefix}-')
    return svg


# ----------------------------------------------------------------------------------------------------------
# The page


def _shape(shape: Sequence[int] | None) -> str:
    if shape is None:
        return "?"
    return "\u00d7".join(map(str, shape)) or "scalar"


def _number(value: float | None) -> str:
    if value is None:
        return "\u2014"
    return f"{value:.6g}"


def _describe(spec: BlobSpec, given: bool, note: str = "") -> str:
    """The blob's filler as the table shows it; ``note``: "override" or "copied" (from pretrained weights)."""
    from fillers.cli import describe_filler

    if spec.share_owner is not None:
        owner, index = spec.share_owner
        return f"shares {spec.param_name!r} of {owner}/{index}"
    if note == "copied":
        return "copied from the weights"
    text = describe_filler(spec.filler) + (" (values given in the net)" if given else "")
    return f"{text} (override)" if note == "override" else text


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, monospace; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
.blob { display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }
.blob table td { font-size: 12px; padding: 1px 6px; }
.note { color: #666; font-size: 12px; max-width: 34em; }
"""


def _blobs_cell(layer: NetLayer, key: str, notes: Mapping[str, str]) -> str:
    if layer.learnable is None:
        return ""
    given = _given_in_net(layer)
    rows = []
    for i, spec in enumerate(layer.learnable.blobs):
        rows.append(f'<a href="#{html.escape(_anchor(key, i))}"><code>{_shape(spec.shape)}</code></a> '
                    f"{html.escape(_describe(spec, given, notes.get(f'{key}/{i}', '')))}")
    return "<br>".join(rows)


def _given_in_net(layer: NetLayer) -> bool:
    """Whether the layer's blob values are written in the net (not drawn by fillers, nor set by its setup)."""
    return layer.learnable.given == "net"


def _anchor(key: str, index: int) -> str:
    return f"blob-{key}-{index}"


def _blob_section(key: str, index: int, spec: BlobSpec, values: np.ndarray, given: bool, note: str,
                  plotter: _Plotter, dtype: np.dtype, number: int) -> str:
    stats = blob_stats(values)
    # Values given in the net (a .caffemodel read as the net) are still drawn against the net's filler.
    exp = expected(spec.filler, spec.shape, dtype) if spec.filler is not None and note != "copied" else None
    svg = plotter.histogram(values, stats, exp, f"h{number}")
    rows = [("mean", stats.mean, exp and exp.mean), ("std", stats.std, exp and exp.std),
            ("min", stats.min, exp and exp.min), ("max", stats.max, exp and exp.max),
            ("zeros", stats.zeros, exp and exp.zeros)]
    table = "".join(f"<tr><td>{name}</td><td class=n>{_number(got)}</td><td class=n>"
                    f"{_number(want) if exp is not None else ''}</td></tr>" for name, got, want in rows)
    notes = []
    if stats.sampled < stats.count:
        notes.append(f"histogram of {stats.sampled:,} of the {stats.count:,} values (sampled uniformly with "
                     "replacement, seed 0); the statistics read every value")
    if not stats.finite:
        notes.append("the blob holds NaN or infinite values; the histogram counts the finite ones")
    if exp is not None and exp.note:
        notes.append(exp.note)
    head = (f"<b>{html.escape(key)}</b> blob {index} <code>{_shape(spec.shape)}</code> "
            f"{html.escape(_describe(spec, given, note))}")
    return (f'<div class="blob" id="{html.escape(_anchor(key, index))}"><div>{head}</div>{svg}'
            f"<table><tr><th></th><th>blob</th><th>expected</th></tr>{table}</table>"
            + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes) + "</div>")


def _check_weights(layer: NetLayer, key: str, weights: Mapping[str, Sequence[np.ndarray]]) -> list[np.ndarray]:
    name = layer.param.name
    if key not in weights:
        raise ShapeError(f"layer {name!r} ({layer.param.type}): the weights have no blobs for it", layer=name)
    blobs = list(weights[key])
    specs = layer.learnable.blobs
    if len(blobs) != len(specs):
        raise ShapeError(f"layer {name!r} ({layer.param.type}): the weights have {len(blobs)} blobs, the layer "
                         f"{len(specs)}", layer=name)
    for i, (blob, spec) in enumerate(zip(blobs, specs)):
        if not isinstance(blob, np.ndarray):
            raise TypeError(f"weights[{key!r}][{i}] must be a numpy array, not {type(blob).__name__}")
        if math.prod(blob.shape) != math.prod(spec.shape):
            raise ShapeError(f"layer {name!r} ({layer.param.type}), blob {i}: the weights' shape "
                             f"{blob.shape}, the layer's {spec.shape}", layer=name, blob=str(i))
    return blobs


def write_report(
    path: str | os.PathLike,
    net: NetParameter | str | os.PathLike,
    *,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int | None = "TEST",
    overrides: Mapping[str, Any] | None = None,
    copied: Iterable[str] = (),
    title: str | None = None,
) -> None:
    """Write the HTML report of ``net`` (and of ``weights``) to ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file to write.
    net : NetParameter or path
        The net (any format :func:`fillers.load_net` reads).
    weights : mapping of str to sequence of numpy.ndarray, optional
        Blobs by layer, as :func:`fillers.fill_net` returns them or :func:`fillers.load` reads them: each
        learnable blob gets a histogram against its filler's expected density.  Without weights the page
        has the layer table only.
    inputs, phase
        As for :func:`fillers.infer_shapes`.
    overrides : mapping of str to filler, optional
        Fillers that replaced the net's, as ``fill_net(overrides=...)`` takes them: the table and the expected
        densities are theirs.
    copied : iterable of str
        Blobs (``"layer/i"``) copied from pretrained weights (``FillReport.copied``): no expected density.
    title : str, optional
        The page's heading (default: the net's name).

    Raises
    ------
    ShapeError
        From shape inference, or weights that miss a learnable layer or do not match its blobs.
    ImportError
        matplotlib is missing and ``weights`` are given (``pip install 'fillers[report]'``).
    """
    if isinstance(net, (str, os.PathLike)):
        from fillers.prototxt import load_net

        source = os.fspath(net)
        net = load_net(net)
    else:
        source = ""
    layers = net_layers(net, inputs=inputs, phase=phase)
    notes = dict.fromkeys(copied, "copied")
    if overrides:
        learnable = [layer for layer in layers if layer.learnable is not None]
        replaced, overridden = apply_overrides([layer.learnable for layer in learnable], overrides)
        new = {id(layer): dataclasses.replace(layer, learnable=blobs) for layer, blobs in zip(learnable, replaced)}
        layers = [new.get(id(layer), layer) for layer in layers]
        notes.update(dict.fromkeys(overridden, "override"))
    learnable = [layer for layer in layers if layer.learnable is not None]
    keys = dict(zip(map(id, learnable), layer_keys([layer.learnable for layer in learnable])))
    name = title or net.name or source or "net"
    total = sum(math.prod(spec.shape) for layer in learnable for spec in layer.learnable.blobs
                if spec.share_owner is None)
    rows = []
    for number, layer in enumerate(layers, 1):
        key = keys.get(id(layer), layer.param.name)
        ends = " ".join(f"<code>{html.escape(b)}</code> {_shape(s)}" for b, s in layer.bottoms)
        tops = " ".join(f"<code>{html.escape(t)}</code> {_shape(s)}" for t, s in layer.tops)
        count = sum(math.prod(s.shape) for s in layer.learnable.blobs if s.share_owner is None) \
            if layer.learnable else 0
        rows.append(f"<tr><td class=n>{number}</td><td><b>{html.escape(layer.param.name)}</b></td>"
                    f"<td>{html.escape(layer.param.type)}</td><td>{ends or '&mdash;'}</td>"
                    f"<td>&rarr; {tops or '&mdash;'}</td><td>{_blobs_cell(layer, key, notes)}</td>"
                    f"<td class=n>{f'{count:,}' if count else ''}</td></tr>")
    blob_count = sum(len(layer.learnable.blobs) for layer in learnable)
    rows.append(f'<tr class="total"><td></td><td colspan=4>{len(layers)} layers, {len(learnable)} with '
                f"learnable blobs</td><td>{blob_count} blobs</td><td class=n>{total:,}</td></tr>")
    sections = []
    if weights is not None:
        plotter = _Plotter()
        try:
            number = 0
            for layer in learnable:
                key = keys[id(layer)]
                blobs = _check_weights(layer, key, weights)
                given = _given_in_net(layer)
                for i, (spec, values) in enumerate(zip(layer.learnable.blobs, blobs)):
                    number += 1
                    dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.dtype(np.float64)
                    sections.append(_blob_section(key, i, spec, values, given, notes.get(f"{key}/{i}", ""),
                                                  plotter, dtype, number))
        finally:
            plotter.close()
    body = (f"<h1>{html.escape(name)}</h1>"
            + (f"<p>{html.escape(source)}</p>" if source else "")
            + "<table><tr><th>#</th><th>layer</th><th>type</th><th>bottoms</th><th>tops</th>"
              "<th>learnable blobs</th><th>parameters</th></tr>" + "".join(rows) + "</table>")
    if sections:
        body += ("<h2>Weights</h2><p class=note>Histograms show the values' density (blue) against the density "
                 "the filler gives (red: a curve for the continuous part; a stem for a point mass, its height "
                 "the mass spread over one bin).</p>" + "".join(sections))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
    with atomic_write(path, "w") as handle:
        handle.write(page)
