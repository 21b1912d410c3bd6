"""FillerParameter coercion and validation: from what a user passes to a :class:`FillPlan`.

Everything Caffe computes before it draws (proto ``float`` fields read as ``Dtype``, the fans, the xavier
scale and msra standard deviation in ``Dtype`` arithmetic, the sparse keep probability) is computed here,
once, for both random streams.  The kernels only ever see the five draw kinds of :class:`FillPlan`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from fillers.caffe_pb2 import FillerParameter, as_message
from fillers.errors import FillerError

#: The filler types Caffe 1.0's ``GetFiller`` knows, in its order.
FILLER_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear")

_JSON_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

FillerLike = Union[FillerParameter, Mapping[str, Any], str]


@dataclass(frozen=True)
class FillPlan:
    """What to draw, with every parameter already an exact ``dtype`` value.

    Attributes
    ----------
    kind : str
        ``"constant"``, ``"uniform"``, ``"gaussian"``, ``"unitball"`` or ``"bilinear"``.
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
    """

    kind: str
    dtype: np.dtype
    a: float = 0.0
    b: float = 0.0
    sparse_p: float | None = None
    row_len: int = 0
    kernel: int = 0


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


def _fan(param: FillerParameter, shape: tuple[int, ...], dt: type) -> Any:
    """Caffe's ``n`` for xavier/msra: fan_in, fan_out or their average, in Caffe's int-then-Dtype order."""
    if len(shape) < 1:
        raise FillerError(f"filler {param.type!r} needs a blob with at least one axis, got shape {shape}")
    count = math.prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    norm = param.variance_norm
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
        scale = np.sqrt(dt(3) / _fan(param, shape, dt))
        return plan(kind="uniform", a=float(-scale), b=float(scale))
    if kind == "msra":
        if count == 0:
            return plan(kind="gaussian", b=1.0)
        std = np.sqrt(dt(2) / _fan(param, shape, dt))
        return plan(kind="gaussian", a=0.0, b=float(std))
    # bilinear
    if len(shape) != 4 or shape[2] != shape[3]:
        raise FillerError(
            f"filler 'bilinear' needs a 4-D blob (N, C, K, K) with a square kernel, got shape {shape}"
        )
    return plan(kind="bilinear", kernel=shape[3])
