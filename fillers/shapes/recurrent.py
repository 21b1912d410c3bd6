"""Rules of the recurrent layers (LSTM, RNN: unrolled nets) and CRF-as-RNN's mean-field layer."""
from __future__ import annotations

import functools
import re
from fractions import Fraction

import numpy as np

from fillers.shapes.context import Shape, FillCycle, FillStep, Unknown, LayerContext, count, copy_filler, rule


def _recurrent(layer: LayerContext, lstm: bool) -> list[Shape | Unknown]:
    """LSTM and RNN: the blobs of the unrolled net's owner layers, and its filler runs in order.

    The unrolled net has a hidden-to-hidden InnerProduct per timestep sharing one param by name; each runs
    its filler (Caffe draws them all) and the first one's values are kept.
    """
    rp = layer.param.recurrent_param
    hidden = rp.num_output
    x = layer.bottom(0)
    layer.check(len(x) >= 2, f"bottom[0] must have at least 2 axes (#timesteps, #streams, ...), got {x}")
    t_steps, streams = x[0], x[1]
    cont = layer.bottom(1)
    layer.check(cont == (t_steps, streams), f"bottom[1] must be (#timesteps, #streams) = {x[:2]}, got {cont}")
    n_recur = 2 if lstm else 1
    exposed = n_recur if rp.expose_hidden else 0
    static = layer.num_bottoms > 2 + exposed
    layer.check(hidden > 0, "num_output must be positive")
    gates = 4 * hidden if lstm else hidden
    layer.add_blob((gates, count(x, layer.axis(2, x))), rp.weight_filler)
    layer.add_blob((gates,), rp.bias_filler)
    if static:
        xs = layer.bottom(2)
        layer.check(len(xs) >= 1 and xs[0] == streams, f"bottom[2] (static input) must start with {streams}")
        layer.add_blob((gates, count(xs, layer.axis(1, xs))), rp.weight_filler)
    fills = [FillStep(i, shape, filler) for i, (shape, filler) in enumerate(layer.blobs)]
    first = len(layer.blobs)
    per_step = [((gates, hidden), rp.weight_filler)]
    if not lstm:  # W_hh, then the output layer's W_ho and b_o
        per_step += [((hidden, hidden), rp.weight_filler), ((hidden,), rp.bias_filler)]
    if t_steps > 0:
        for j, (shape, filler) in enumerate(per_step):
            layer.add_blob(shape, filler)
            fills.append(FillStep(first + j, shape, copy_filler(filler)))
    if t_steps > 1:
        fills.append(FillCycle(tuple(FillStep(None, shape, copy_filler(filler)) for shape, filler in per_step),
                               t_steps - 1))
    layer.fills = fills
    state = (1, streams, hidden)
    for i in range(exposed):
        given = layer.bottom(2 + int(static) + i)
        layer.check(given == state, f"exposed hidden bottom {2 + int(static) + i} must be {state}, got {given}")
    return [layer.shape((t_steps, streams, hidden)), *[state] * (layer.num_tops - 1)]


@rule("LSTM", learnable=True)
def _lstm(layer: LayerContext) -> list[Shape | Unknown]:
    return _recurrent(layer, lstm=True)


@rule("RNN", learnable=True)
def _rnn(layer: LayerContext) -> list[Shape | Unknown]:
    return _recurrent(layer, lstm=False)


@rule("ContinuationIndicator")
def _continuation_indicator(layer: LayerContext) -> list[Shape | Unknown]:
    """CRNN ports (yalecyu/crnn.caffe): the (time_step, batch_size) sequence-continuation markers an LSTM
    takes as its second bottom."""
    cp = layer.sub("continuation_indicator_param")
    layer.check(cp.batch_size > 0, "batch_size must be greater than 0")
    layer.check(cp.time_step > 0, "time_step must be greater than 0")
    return [layer.shape((cp.time_step, cp.batch_size))]


@rule("LSTMUnit")
def _lstm_unit(layer: LayerContext) -> list[Shape | Unknown]:
    c_prev, gates = layer.bottom(0), layer.bottom(1)
    layer.check(len(c_prev) == 3 and len(gates) == 3 and gates[2] == 4 * c_prev[2],
                f"bottoms must be (1, N, H) and (1, N, 4H), got {c_prev} and {gates}")
    return [c_prev, c_prev]


#: Half a unit in the last place above float's largest value: from here on a float rounds to infinity.
_FLT_OVERFLOW = Fraction(2**128 - 2**103)


_STRTOF = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?"
                     r"|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan(?:\(\w*\))?))", re.IGNORECASE)


#: Significant digits kept of a decimal mantissa: more than any float's halfway point has (at most 112), so
#: the digits dropped (replaced by one sticky nonzero digit) never change the rounding.
_KEPT_DIGITS = 160


def _exact_decimal(text: str) -> Fraction | None:
    """The exact value of a decimal number, or ``None`` when its magnitude is beyond float's range (above
    1e39, or below 1e-47 and not zero), decided from the exponent before any big-number arithmetic -- so
    "1e-9999999" costs what "1e-9" does."""
    mantissa, _, exponent = text.lower().partition("e")
    sign = -1 if mantissa.startswith("-") else 1
    whole, _, fraction = mantissa.lstrip("+-").partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return Fraction(0) * sign
    # the value is in [10**lead, 10**(lead + 1)): lead from the position of the first nonzero digit
    lead = int(exponent or 0) + len(whole.lstrip("0")) - 1 if whole.lstrip("0") else \
        int(exponent or 0) - (len(fraction) - len(fraction.lstrip("0"))) - 1
    if lead > 39 or lead < -47:
        return None
    if len(digits) > _KEPT_DIGITS:
        digits = digits[:_KEPT_DIGITS] + ("1" if digits[_KEPT_DIGITS:].strip("0") else "0")
    return sign * Fraction(int(digits)) * Fraction(10) ** (lead - len(digits) + 1)


def _exact_hex(text: str) -> Fraction | None:
    """The exact value of a hexadecimal float (``0x1.8p3``), or ``None`` when it over- or underflows a
    double (then it is beyond float's range too)."""
    try:
        value = float.fromhex(text)
    except OverflowError:
        return None
    if value == 0 and re.search(r"[1-9a-f]", text.lower().partition("p")[0][2:]):
        return None
    return Fraction(value)


def _stof(token: str) -> np.float32 | None:
    """C++ ``std::stof`` (glibc): the float nearest to the longest number at the start of ``token`` after
    white space (ties to even); ``None`` where stof throws: no number, or a result out of float's range
    (infinite, or below the normal range and inexact)."""
    match = _STRTOF.match(token)
    if match is None:
        return None
    text = match.group(1)
    if re.search(r"inf|nan", text, re.IGNORECASE):
        return np.float32(text.split("(")[0])
    exact = _exact_hex(text) if "x" in text.lower() else _exact_decimal(text)
    if exact is None:  # beyond float's range either way: stof throws out_of_range
        return None
    if exact == 0:
        return np.float32(-0.0 if text.startswith("-") else 0.0)
    with np.errstate(over="ignore"):
        nearest = np.float32(float(exact))  # may be one step off (double rounding): pick the nearest
        candidates = [f for f in (np.nextafter(nearest, np.float32(-np.inf)), nearest,
                                  np.nextafter(nearest, np.float32(np.inf))) if np.isfinite(f)]
    best = min(candidates, key=lambda f: (abs(Fraction(float(f)) - exact), int(f.view(np.uint32)) & 1))
    if abs(best) == np.finfo(np.float32).max and abs(exact) >= _FLT_OVERFLOW:
        return None
    if abs(best) < np.finfo(np.float32).tiny and Fraction(float(best)) != exact:
        return None
    return best


def _diagonal_values(layer: LayerContext, field_name: str, channels: int) -> list[np.float32]:
    """CRF-as-RNN's ``read_into_the_diagonal`` reading: the first ``channels`` values of a string split at
    each single space (``getline(..., ' ')``), each read by ``std::stof`` (checked as its setup checks)."""
    text = getattr(layer.sub("multi_stage_meanfield_param"), field_name)
    tokens = text.split(" ")[:-1] if text.endswith(" ") or not text else text.split(" ")
    layer.check(len(tokens) >= channels, f"{field_name} {text!r} has {len(tokens)} values for {channels} classes")
    values = []
    for token in tokens[:channels]:
        value = _stof(token)
        layer.check(value is not None, f"{field_name} {text!r}: {token!r} is not a float")
        values.append(value)
    return values


def _diagonal(values: list[np.float32]) -> np.ndarray:
    """``values`` on the diagonal of a zero (1, 1, C, C) float32 blob."""
    channels = len(values)
    return np.diag(np.array(values, np.float32)).reshape(1, 1, channels, channels)


@rule("MultiStageMeanfield", learnable=True)
def _multi_stage_meanfield(layer: LayerContext) -> list[Shape | Unknown]:
    """CRF-as-RNN (torrvision/caffe, branch crfrnn): bottoms unary, Q0 and the image; the top is shaped like
    the unary (legacy num, channels, height, width).  Three (1, 1, C, C) blobs for C classes, written by the
    setup without a filler or a draw from Caffe's stream: the spatial and bilateral kernel weights (the
    values of ``spatial_filter_weights_str`` / ``bilateral_filter_weights_str`` on the diagonal) and the
    POTTS compatibility matrix, -1 on the diagonal.  (The lattices, split, softmax and eltwise layers the
    setup builds draw nothing either.)"""
    mp = layer.sub("multi_stage_meanfield_param")
    layer.check(layer.num_bottoms == 3, f"takes 3 bottom blobs (unary, Q0, image), has {layer.num_bottoms}")
    layer.check(mp.num_iterations > 1, f"number of iterations must be greater than 1, got {mp.num_iterations}")
    n, c, h, w = layer.nchw(layer.bottom(0))
    if not layer.param.blobs:
        layer.check(mp.HasField("spatial_filter_weights_str") or mp.HasField("bilateral_filter_weights_str"),
                    "the initial kernel weights cannot be known from the net: this layer's first version reads "
                    "them from the files spatial.par and bilateral.par in Caffe's working directory (its "
                    "spatial_filter_weight and bilateral_filter_weight are not used); write them as "
                    "spatial_filter_weights_str and bilateral_filter_weights_str, one value per class")
    if layer.param.blobs:  # the net gives the values: the strings are not read
        spatial = bilateral = [np.float32(0)] * c
    else:
        spatial = _diagonal_values(layer, "spatial_filter_weights_str", c)
        bilateral = _diagonal_values(layer, "bilateral_filter_weights_str", c)
    layer.add_written_blob((1, 1, c, c), functools.partial(_diagonal, spatial))
    layer.add_written_blob((1, 1, c, c), functools.partial(_diagonal, bilateral))
    layer.add_written_blob((1, 1, c, c), functools.partial(_diagonal, [np.float32(-1)] * c))
    return [(n, c, h, w)]
