"""FillerParameter coercion and validation: from what a user passes to a :class:`FillPlan`.

Everything Caffe computes before it draws (proto ``float`` fields read as ``Dtype``, the fans, the xavier
scale and msra standard deviation in ``Dtype`` arithmetic, the sparse keep probability) is computed here,
once, for both random streams.  The kernels only ever see the draw kinds of :class:`FillPlan`.

The modern initializers (:data:`MODERN_TYPES`: torch.nn.init's and Keras') compute their parameters in
float64 from the ``dtype`` values of the fields and round the result to ``dtype`` once; they run on the
counter-based stream only.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import Message

from fillers.caffe_pb2 import FillerParameter, as_message
from fillers.errors import FillerError

#: The filler types Caffe 1.0's ``GetFiller`` knows, in its order.
CAFFE_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear")

#: fillers' own types (torch.nn.init's and Keras' initializers) and the FillerParameter fields each one
#: reads besides ``type``; setting any other field is an error.
MODERN_TYPES: dict[str, frozenset[str]] = {
    "xavier_normal": frozenset({"gain", "variance_norm", "fan_rule"}),
    "kaiming_uniform": frozenset({"negative_slope", "nonlinearity", "variance_norm", "fan_rule"}),
    "kaiming_normal": frozenset({"negative_slope", "nonlinearity", "variance_norm", "fan_rule"}),
    "lecun_uniform": frozenset({"fan_rule"}),
    "lecun_normal": frozenset({"fan_rule"}),
    "variance_scaling": frozenset({"scale", "variance_norm", "distribution", "fan_rule"}),
    "truncated_gaussian": frozenset({"mean", "std", "lower", "upper"}),
    "orthogonal": frozenset({"gain", "fan_rule"}),
    "eye": frozenset({"gain"}),
    "dirac": frozenset({"gain", "groups"}),
    "identity": frozenset({"gain", "groups"}),
}

#: Every filler type, Caffe's first.
FILLER_TYPES = CAFFE_TYPES + tuple(MODERN_TYPES)

# Fields fillers added to FillerParameter (numbers >= 1000), and the ones Caffe's types accept among them.
_OWN_FIELDS = ("gain", "negative_slope", "nonlinearity", "lower", "upper", "fan_rule", "distribution", "groups")
_CAFFE_ACCEPTS = {"xavier": frozenset({"gain", "fan_rule"}), "msra": frozenset({"gain", "fan_rule"})}

#: torch.nn.init.calculate_gain's table; leaky_relu's gain depends on its negative slope.
NONLINEARITY_GAINS = {
    "linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0), "leaky_relu": math.nan, "selu": 0.75,
}

# Keras' truncated_normal: the standard deviation of N(0, 1) cut at +-2, divided out so the variance is s^2.
_KERAS_TRUNCATION_STD = 0.87962566103423978
_SMALLEST_NORMAL = 2.0 ** -1022

#: How many standard deviations from the mean a gaussian fill is assumed to reach: a gaussian whose
#: ``|mean| + NORMAL_BOUND * std`` overflows the element type is refused.  Box-Muller draws every value within
#: 8.6 std (u1 >= 2**-53); Caffe's ziggurat has an unbounded tail, but beyond 16 std its probability is
#: below 1e-57.
NORMAL_BOUND = 16.0

_JSON_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

FillerLike = Union[FillerParameter, Mapping[str, Any], str]


@dataclass(frozen=True)
class FillPlan:
    """What to draw, with every parameter already an exact ``dtype`` value.

    Attributes
    ----------
    kind : str
        ``"constant"``, ``"uniform"``, ``"gaussian"``, ``"unitball"``, ``"bilinear"``, ``"truncated"``,
        ``"diagonal"`` or ``"orthogonal"``.
    dtype : numpy.dtype
        float32 or float64.
    a, b : float
        constant: ``a`` = value; uniform: ``[a, b]``; gaussian: mean ``a``, standard deviation ``b``.
    sparse_p : float or None
        gaussian only: probability that an element is kept (Caffe's ``sparse / shape[0]``).
    row_len : int
        unitball only: elements per row (``count // shape[0]``).
    kernel : int
        bilinear only: the filter size K of a ``(N, C, K, K)`` blob.
    truncation : tuple of float or None
        truncated only: ``(p_lo, p_span, lo, hi)``; the value is ``min(hi, max(lo, a + b * ndtri(p_lo +
        p_span * u)))`` (``b`` is minus the standard deviation when the interval was mirrored into the
        lower half of the distribution, where the normal CDF is accurate).
    diagonal : tuple of int or None
        diagonal only: ``(in_channels, spatial, center, per_group)``: zeros, and ``a`` at element
        ``(o, o % per_group, center)`` of the blob seen as ``(O, in_channels, spatial)``.
    matrix : tuple of int or None
        orthogonal only: the ``(rows, cols)`` of the blob's matrix; its values are ``a`` times an orthogonal
        matrix from the QR decomposition of a gaussian draw in ``dtype`` (see ``fillers._orthogonal``).
    """

    kind: str
    dtype: np.dtype
    a: float = 0.0
    b: float = 0.0
    sparse_p: float | None = None
    row_len: int = 0
    kernel: int = 0
    truncation: tuple[float, float, float, float] | None = None
    diagonal: tuple[int, int, int, int] | None = None
    matrix: tuple[int, int] | None = None


def as_filler_parameter(filler: FillerLike) -> FillerParameter:
    """Turn what a user passed as a filler into a ``FillerParameter``.

    Parameters
    ----------
    filler : FillerParameter, mapping or str
        A message (also another schema's ``FillerParameter``, e.g. pycaffe's, read through its bytes); a mapping
        of its fields (``variance_norm`` by name or number); a bare type name such as ``"xavier"``; or
        FillerParameter text such as ``'type: "gaussian" std: 0.01'``.

    Returns
    -------
    FillerParameter

    Raises
    ------
    TypeError
        If ``filler`` is none of these (or a message of another type).
    ValueError
        If a mapping or text does not describe a FillerParameter.
    """
    if isinstance(filler, Message):
        return as_message(filler, FillerParameter)
    if isinstance(filler, Mapping):
        from google.protobuf import json_format  # here: ~20 ms of imports that the command line never needs

        # json_format spells non-finite floats as strings; accept Python's own so _finite can name them.
        fields = {k: _JSON_NONFINITE.get(repr(v), v) if isinstance(v, float) else v for k, v in filler.items()}
        try:
            return json_format.ParseDict(fields, FillerParameter())
        except json_format.ParseError as err:
            raise FillerError(f"invalid filler {dict(filler)!r}: {err}") from None
    if isinstance(filler, str):
        text = filler.strip()
        if text.isidentifier():
            return FillerParameter(type=text)
        try:
            return text_format.Parse(text, FillerParameter())
        except text_format.ParseError as err:
            raise FillerError(f"invalid FillerParameter text {filler!r}: {err}") from None
    raise TypeError(
        f"filler must be a FillerParameter, a mapping of its fields or a str, not {type(filler).__name__}"
    )


def _finite(param: FillerParameter, *fields: str) -> None:
    for field in fields:
        value = getattr(param, field)
        if not math.isfinite(value):
            raise FillerError(f"filler {param.type!r}: {field} must be finite, got {value}")


def _fans(param: FillerParameter, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a blob with elements, by the parameter's ``fan_rule``."""
    rule = param.fan_rule
    if rule == FillerParameter.KERAS:
        if len(shape) < 2:
            return (shape[0], shape[0]) if shape else (1, 1)
        field = math.prod(shape[:-2])
        return shape[-2] * field, shape[-1] * field
    if rule == FillerParameter.TORCH:
        if len(shape) < 2:
            raise FillerError(f"filler {param.type!r}: fan_rule TORCH needs a blob with at least 2 axes "
                              f"(torch cannot compute fans for fewer), got shape {shape}")
        field = math.prod(shape[2:])
        return shape[1] * field, shape[0] * field
    if len(shape) < 1:
        raise FillerError(f"filler {param.type!r} needs a blob with at least one axis, got shape {shape}")
    count = math.prod(shape)
    return count // shape[0], count // shape[1] if len(shape) > 1 else count


def _fan(param: FillerParameter, shape: tuple[int, ...], dt: type, default: int = FillerParameter.FAN_IN) -> Any:
    """Caffe's ``n`` for xavier/msra: fan_in, fan_out or their average, in Caffe's int-then-Dtype order.

    ``default`` is the ``variance_norm`` of a type when the field is not set."""
    fan_in, fan_out = _fans(param, shape)
    norm = param.variance_norm if param.HasField("variance_norm") else default
    if norm == FillerParameter.AVERAGE:
        return dt(fan_in + fan_out) / dt(2)
    if norm == FillerParameter.FAN_OUT:
        return dt(fan_out)
    return dt(fan_in)


def resolve(param: FillerParameter, shape: tuple[int, ...], dtype: np.dtype) -> FillPlan:
    """Validate ``param`` for a whole blob of ``shape`` and ``dtype`` and compute what to draw.

    Parameters
    ----------
    param : FillerParameter
    shape : tuple of int
        The shape of the whole blob (fans, rows and the sparse probability depend on it).
    dtype : numpy.dtype
        float32 or float64; Caffe's ``Dtype``.

    Returns
    -------
    FillPlan

    Raises
    ------
    ValueError
        Unknown type (the message lists the valid ones), a parameter out of range, non-finite or not
        supported by the type (``sparse`` outside gaussian), or a shape the filler cannot fill.
    """
    dt = np.dtype(dtype).type
    kind = param.type
    if kind not in FILLER_TYPES:
        raise FillerError(f"unknown filler type {kind!r}; valid types: {', '.join(FILLER_TYPES)}")
    if kind in MODERN_TYPES:
        return _resolve_modern(param, shape, np.dtype(dt))
    for field, _ in param.ListFields():
        if field.name in _OWN_FIELDS and field.name not in _CAFFE_ACCEPTS.get(kind, ()):
            raise FillerError(f"filler {kind!r}: {field.name} is not a parameter of Caffe's {kind} filler")
    if param.scale != 1:  # field 9 of Intel's Caffe fork, which BVLC's fillers do not know
        raise FillerError(
            f"filler {kind!r}: scale={param.scale} (Intel Caffe's FillerParameter field 9) is not supported; "
            "BVLC Caffe's fillers have no scale"
        )
    if param.sparse < -1:
        raise FillerError(f"filler {kind!r}: sparse must be >= -1, got {param.sparse}")
    if kind != "gaussian" and param.sparse != -1:
        raise FillerError(f"filler {kind!r}: sparse is only supported by the gaussian filler, got {param.sparse}")
    count = math.prod(shape)
    plan = functools.partial(FillPlan, dtype=np.dtype(dt))

    if kind == "constant":
        _finite(param, "value")
        return plan(kind="constant", a=float(dt(param.value)))
    if kind == "uniform":
        _finite(param, "min", "max")
        lo, hi = dt(param.min), dt(param.max)
        if lo > hi:
            raise FillerError(f"filler 'uniform': min must be <= max, got min={param.min} max={param.max}")
        return plan(kind="uniform", a=float(lo), b=float(hi))
    if kind == "gaussian":
        _finite(param, "mean", "std")
        std = dt(param.std)
        if not std > 0:
            raise FillerError(f"filler 'gaussian': std must be > 0, got {param.std}")
        if not abs(float(dt(param.mean))) + NORMAL_BOUND * float(std) <= float(np.finfo(dt).max):
            raise FillerError(
                f"filler 'gaussian': mean={param.mean} std={param.std} can draw values beyond "
                f"{np.dtype(dt).name}'s range (|mean| + {NORMAL_BOUND:g} std overflows)"
            )
        sparse_p = None
        if param.sparse >= 0:
            if len(shape) < 1:
                raise FillerError(f"filler 'gaussian': sparse needs a blob with at least one axis, got {shape}")
            if shape[0] == 0:
                raise FillerError("filler 'gaussian': sparse needs shape[0] > 0")
            p = dt(param.sparse) / dt(shape[0])
            if p > 1:
                raise FillerError(
                    f"filler 'gaussian': sparse must be <= shape[0] (keep probability sparse / shape[0] "
                    f"<= 1), got sparse={param.sparse} with shape[0]={shape[0]}"
                )
            sparse_p = float(p)
        return plan(kind="gaussian", a=float(dt(param.mean)), b=float(std), sparse_p=sparse_p)
    if kind == "positive_unitball":
        if len(shape) < 1:
            raise FillerError(f"filler 'positive_unitball' needs a blob with at least one axis, got {shape}")
        return plan(kind="unitball", row_len=count // shape[0] if shape[0] else 0)
    if kind == "xavier":
        if count == 0:
            return plan(kind="uniform")
        scale = np.sqrt(dt(3) / _fan(param, shape, dt)) * _gain(param, dt)
        return plan(kind="uniform", a=float(-scale), b=float(scale))
    if kind == "msra":
        if count == 0:
            return plan(kind="gaussian", b=1.0)
        std = np.sqrt(dt(2) / _fan(param, shape, dt)) * _gain(param, dt)
        return plan(kind="gaussian", a=0.0, b=float(std))
    # bilinear
    if len(shape) != 4 or shape[2] != shape[3]:
        raise FillerError(
            f"filler 'bilinear' needs a 4-D blob (N, C, K, K) with a square kernel, got shape {shape}"
        )
    return plan(kind="bilinear", kernel=shape[3])


def _gain(param: FillerParameter, dt: type) -> Any:
    """``gain`` in ``dt``: finite and > 0 (a gain of 1 multiplies exactly, keeping Caffe's values)."""
    _finite(param, "gain")
    if not param.gain > 0:
        raise FillerError(f"filler {param.type!r}: gain must be > 0, got {param.gain}")
    return dt(param.gain)


def nonlinearity_gain(nonlinearity: str, negative_slope: float = 0.0) -> float:
    """torch.nn.init.calculate_gain: the gain of a nonlinearity, by torch's name.

    Parameters
    ----------
    nonlinearity : str
        ``linear``, ``conv1d`` .. ``conv3d``, ``conv_transpose1d`` .. ``conv_transpose3d``, ``sigmoid``,
        ``tanh``, ``relu``, ``leaky_relu`` or ``selu``.
    negative_slope : float
        leaky_relu's slope (the gain is ``sqrt(2 / (1 + slope**2))``).

    Returns
    -------
    float

    Raises
    ------
    FillerError
        Unknown name (the valid ones are listed), or a slope on another nonlinearity.
    """
    if nonlinearity not in NONLINEARITY_GAINS:
        raise FillerError(f"unknown nonlinearity {nonlinearity!r}; valid: {', '.join(NONLINEARITY_GAINS)}")
    if not math.isfinite(negative_slope):
        raise FillerError(f"negative_slope must be finite, got {negative_slope}")
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + negative_slope**2))
    if negative_slope != 0:
        raise FillerError(f"negative_slope={negative_slope} applies to leaky_relu only, not {nonlinearity!r}")
    return NONLINEARITY_GAINS[nonlinearity]


def _fan_n(param: FillerParameter, shape: tuple[int, ...], default: int) -> float:
    """The fan ``n`` as a float64: fan_in, fan_out or their average by ``variance_norm`` (``default`` when
    unset); an error when it is 0."""
    fan_in, fan_out = _fans(param, shape)
    norm = param.variance_norm if param.HasField("variance_norm") else default
    n = {FillerParameter.FAN_IN: fan_in, FillerParameter.FAN_OUT: fan_out,
         FillerParameter.AVERAGE: (fan_in + fan_out) / 2}[norm]
    if n == 0:
        raise FillerError(f"filler {param.type!r}: the fan is 0 for shape {shape}")
    return float(n)


def _truncated(plan: functools.partial, dt: type, mean: float, std: float, lo: float, hi: float) -> FillPlan:
    """N(mean, std) cut to [lo, hi] by the inverse CDF: the standardised interval is mirrored into the
    lower half (where Phi is accurate) and its probabilities computed with erfc."""
    alpha, beta = (lo - mean) / std, (hi - mean) / std
    scale = std
    if alpha + beta > 0:
        alpha, beta, scale = -beta, -alpha, -std
    p_lo = max(0.5 * math.erfc(-alpha / math.sqrt(2.0)), _SMALLEST_NORMAL)
    p_span = 0.5 * math.erfc(-beta / math.sqrt(2.0)) - p_lo
    if not p_span > 0:
        raise FillerError(f"filler truncation [{lo}, {hi}] lies too far in the tail of N({mean}, {std}) "
                          "(more than 37 standard deviations)")
    return plan(kind="truncated", a=mean, b=scale, truncation=(p_lo, p_span, lo, hi))


def _keras_normal(plan: functools.partial, dt: type, variance: float, distribution: int) -> FillPlan:
    """Keras' VarianceScaling draw of the given variance."""
    s = math.sqrt(variance)
    if distribution == FillerParameter.UNIFORM:
        bound = float(dt(math.sqrt(3.0) * s))
        return plan(kind="uniform", a=-bound, b=bound)
    if distribution == FillerParameter.UNTRUNCATED_NORMAL:
        return plan(kind="gaussian", a=0.0, b=float(dt(s)))
    std = float(dt(s / _KERAS_TRUNCATION_STD))
    return _truncated(plan, dt, 0.0, std, float(dt(-2 * std)), float(dt(2 * std)))


def _resolve_modern(param: FillerParameter, shape: tuple[int, ...], dtype: np.dtype) -> FillPlan:
    """:func:`resolve` for the types of :data:`MODERN_TYPES`."""
    kind = param.type
    dt = dtype.type
    for field, _ in param.ListFields():
        if field.name != "type" and field.name not in MODERN_TYPES[kind]:
            raise FillerError(f"filler {kind!r}: {field.name} is not one of its parameters "
                              f"({', '.join(sorted(MODERN_TYPES[kind]))})")
    plan = functools.partial(FillPlan, dtype=dtype)
    count = math.prod(shape)

    if kind == "truncated_gaussian":
        _finite(param, "mean", "std", "lower", "upper")
        mean, std = float(dt(param.mean)), float(dt(param.std))
        if not std > 0:
            raise FillerError(f"filler 'truncated_gaussian': std must be > 0, got {param.std}")
        lo = float(dt(param.lower)) if param.HasField("lower") else float(dt(mean - 2 * std))
        hi = float(dt(param.upper)) if param.HasField("upper") else float(dt(mean + 2 * std))
        if not lo < hi:
            raise FillerError(f"filler 'truncated_gaussian': lower must be < upper, got lower={lo} upper={hi}")
        return _truncated(plan, dt, mean, std, lo, hi)
    if kind in ("eye", "dirac", "identity"):
        return _diagonal(param, shape, plan, dt)
    if count == 0:
        return plan(kind="constant")
    if kind == "orthogonal":
        gain = _gain(param, dt)
        if len(shape) < 2:
            raise FillerError(f"filler 'orthogonal' needs a blob with at least 2 axes, got shape {shape}")
        cols = shape[-1] if param.fan_rule == FillerParameter.KERAS else count // shape[0]
        return plan(kind="orthogonal", a=float(gain), matrix=(count // cols, cols))
    if kind == "xavier_normal":
        std = float(_gain(param, dt)) * math.sqrt(1.0 / _fan_n(param, shape, FillerParameter.AVERAGE))
        return plan(kind="gaussian", a=0.0, b=float(dt(std)))
    if kind in ("kaiming_uniform", "kaiming_normal"):
        _finite(param, "negative_slope")
        nonlinearity = param.nonlinearity if param.HasField("nonlinearity") else "leaky_relu"
        std = nonlinearity_gain(nonlinearity, float(dt(param.negative_slope))) / math.sqrt(
            _fan_n(param, shape, FillerParameter.FAN_IN))
        if kind == "kaiming_normal":
            return plan(kind="gaussian", a=0.0, b=float(dt(std)))
        bound = float(dt(math.sqrt(3.0) * std))
        return plan(kind="uniform", a=-bound, b=bound)
    if kind in ("lecun_uniform", "lecun_normal"):
        variance = 1.0 / _fan_n(param, shape, FillerParameter.FAN_IN)
        distribution = FillerParameter.UNIFORM if kind == "lecun_uniform" else FillerParameter.TRUNCATED_NORMAL
        return _keras_normal(plan, dt, variance, distribution)
    # variance_scaling
    _finite(param, "scale")
    if not param.scale > 0:
        raise FillerError(f"filler 'variance_scaling': scale must be > 0, got {param.scale}")
    variance = float(dt(param.scale)) / _fan_n(param, shape, FillerParameter.FAN_IN)
    return _keras_normal(plan, dt, variance, param.distribution)


def _diagonal(param: FillerParameter, shape: tuple[int, ...], plan: functools.partial, dt: type) -> FillPlan:
    """eye (2-D), dirac (3- to 5-D, torch's dirac_ with ``groups``) and identity (either)."""
    kind = param.type
    gain = float(_gain(param, dt))
    dims = len(shape)
    if kind == "eye" or (kind == "identity" and dims == 2):
        if dims != 2:
            raise FillerError(f"filler {kind!r} needs a 2-D blob, got shape {shape}")
        return plan(kind="diagonal", a=gain, diagonal=(shape[1], 1, 0, max(shape[0], 1)))
    if not 3 <= dims <= 5:
        raise FillerError(f"filler {kind!r} needs a 3- to 5-D blob{' (or 2-D)' if kind == 'identity' else ''}, "
                          f"got shape {shape}")
    groups = param.groups
    if groups < 1 or shape[0] % groups:
        raise FillerError(f"filler {kind!r}: groups must be >= 1 and divide shape[0] = {shape[0]}, got {groups}")
    center = 0
    for size in shape[2:]:
        center = center * size + size // 2
    return plan(kind="diagonal", a=gain, diagonal=(shape[1], math.prod(shape[2:]), center,
                                                   max(shape[0] // groups, 1)))
