"""Drop-in replacements for ``torch.nn.init``, filling tensors in place through fillers' kernels.

Each function has the signature of its ``torch.nn.init`` namesake, computes the same distribution (torch's
fans: ``fan_in = size(1) * receptive field``, torch's ``calculate_gain``) and returns the tensor::

    import fillers.torch as init
    init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    init.trunc_normal_(linear.weight, std=0.02)

Differences from torch.nn.init:

- The values come from fillers' counter-based Philox stream, not torch's generator, so they differ from
  torch's draw (the distributions are the same).  They are still reproducible under ``torch.manual_seed``:
  each call takes its 64-bit key from ``generator`` (torch's default generator when None) with one
  ``torch.randint`` draw, and fills stream 0 of that key.
- Parameters pass through ``FillerParameter``'s proto ``float`` fields: a float64 tensor sees
  ``double(float(std))``, as Caffe's fillers do.
- The tensor must be in CPU memory (other devices raise :class:`fillers.ArrayError`); float32, float64,
  float16 and bfloat16 are filled (half precision: the float32 values rounded to nearest even).
  Tensors that require grad are filled through ``tensor.detach()`` (the same memory), as torch fills them
  under ``no_grad``.
- Anything :func:`fillers.fill` accepts (numpy arrays, buffers) can be passed instead of a tensor.

Importing this module imports torch.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from fillers._fill import fill, fill_validated, philox_plan
from fillers._params import FillerParameter, FillPlan

__all__ = [
    "constant_", "dirac_", "eye_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_", "orthogonal_",
    "trunc_normal_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_",
]

_MODES = {"fan_in": "FAN_IN", "fan_out": "FAN_OUT"}


def _key(generator: torch.Generator | None) -> int:
    """A 64-bit Philox key drawn from torch's generator (one int64)."""
    draw = torch.randint(-(2**63), 2**63 - 1, (1,), dtype=torch.int64, generator=generator)
    return int(draw.item()) & (2**64 - 1)


@functools.lru_cache(maxsize=256)
def _parameter(fields: tuple) -> FillerParameter:
    """The FillerParameter of these (field, value) pairs, made once (a model's layers repeat a few)."""
    return FillerParameter(**dict(fields))


@functools.lru_cache(maxsize=1024)
def _plan(fields: tuple, shape: tuple[int, ...], dtype: type) -> FillPlan:
    """The checked plan of a filler for a whole blob, made once per (filler, shape, dtype)."""
    return philox_plan(_parameter(fields), shape, dtype)


def _fast_dtypes() -> dict:
    """torch dtype -> (numpy dtype of the fast path's view, the dtype the fill computes in); bfloat16 where
    ml_dtypes is installed (elsewhere the generic path says it is needed)."""
    dtypes = {torch.float32: (np.dtype(np.float32), np.float32), torch.float64: (np.dtype(np.float64), np.float64),
              torch.float16: (np.dtype(np.float16), np.float32)}
    try:
        import ml_dtypes
    except ImportError:
        return dtypes
    dtypes[torch.bfloat16] = (np.dtype(ml_dtypes.bfloat16), np.float32)
    return dtypes


_FAST_DTYPES = _fast_dtypes()


def _fast_view(tensor: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a non-empty, contiguous, aligned CPU tensor of a fillable dtype (bfloat16 through its
    bits), or None: anything else goes through :func:`fillers.fill`, which validates and explains."""
    dtypes = _FAST_DTYPES.get(tensor.dtype)
    if dtypes is None or tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.numel() == 0:
        return None
    try:
        if tensor.dtype == torch.bfloat16:
            view = tensor.view(torch.int16).numpy().view(dtypes[0])
        else:
            view = tensor.numpy()
    except (RuntimeError, TypeError):  # conjugate/negative views, tensor subclasses ...
        return None
    return view if view.flags.aligned else None  # torch.frombuffer at an odd offset: fill() copies


def _fill(tensor: Any, filler: dict, generator: torch.Generator | None = None, draws: bool = True) -> Any:
    target = tensor.detach() if isinstance(tensor, torch.Tensor) else tensor
    fields = tuple(filler.items())
    seed = _key(generator) if draws else 0
    view = _fast_view(target) if isinstance(target, torch.Tensor) else None
    if view is not None:
        try:
            plan = _plan(fields, view.shape, _FAST_DTYPES[target.dtype][1])
        except (TypeError, ValueError):  # a bad value: fill() below raises the error, naming it
            pass
        else:
            fill_validated(view, plan, seed)
            return tensor
    try:
        param = _parameter(fields)
    except (TypeError, ValueError):  # a value protobuf refuses (wrong type, out of range): fill names it
        param = filler
    fill(target, param, seed=seed)
    return tensor


def _kaiming(tensor: Any, kind: str, a: float, mode: str, nonlinearity: str, generator: Any) -> Any:
    if mode not in _MODES:
        raise ValueError(f"mode {mode!r} not supported, please use one of fan_in, fan_out")
    filler = {"type": kind, "variance_norm": _MODES[mode], "nonlinearity": nonlinearity, "fan_rule": "TORCH"}
    if nonlinearity == "leaky_relu":  # torch ignores a for the other nonlinearities
        filler["negative_slope"] = a
    return _fill(tensor, filler, generator)


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None) -> Any:
    """Fill with U(a, b) (``torch.nn.init.uniform_``)."""
    return _fill(tensor, {"type": "uniform", "min": a, "max": b}, generator)


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> Any:
    """Fill with N(mean, std) (``torch.nn.init.normal_``)."""
    return _fill(tensor, {"type": "gaussian", "mean": mean, "std": std}, generator)


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: torch.Generator | None = None) -> Any:
    """Fill with N(mean, std) truncated to the absolute bounds [a, b] (``torch.nn.init.trunc_normal_``), by the
    inverse CDF: correct tails for any bounds, no redraws."""
    return _fill(tensor, {"type": "truncated_gaussian", "mean": mean, "std": std, "lower": a, "upper": b},
                 generator)


def constant_(tensor: Any, val: float) -> Any:
    """Fill with ``val`` (``torch.nn.init.constant_``)."""
    return _fill(tensor, {"type": "constant", "value": val}, draws=False)


def ones_(tensor: Any) -> Any:
    """Fill with 1 (``torch.nn.init.ones_``)."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Any) -> Any:
    """Fill with 0 (``torch.nn.init.zeros_``)."""
    return constant_(tensor, 0.0)


def eye_(tensor: Any) -> Any:
    """The identity matrix in a 2-D tensor (``torch.nn.init.eye_``)."""
    return _fill(tensor, {"type": "eye"}, draws=False)


def dirac_(tensor: Any, groups: int = 1) -> Any:
    """The Dirac delta of a 3- to 5-D convolution weight, per group (``torch.nn.init.dirac_``)."""
    return _fill(tensor, {"type": "dirac", "groups": groups}, draws=False)


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: torch.Generator | None = None) -> Any:
    """U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)) (``torch.nn.init.xavier_uniform_``; Caffe's xavier with
    variance_norm AVERAGE and a gain)."""
    return _fill(tensor, {"type": "xavier", "variance_norm": "AVERAGE", "gain": gain, "fan_rule": "TORCH"},
                 generator)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: torch.Generator | None = None) -> Any:
    """N(0, gain sqrt(2 / (fan_in + fan_out))) (``torch.nn.init.xavier_normal_``)."""
    return _fill(tensor, {"type": "xavier_normal", "gain": gain, "fan_rule": "TORCH"}, generator)


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> Any:
    """U(-b, b), b = gain sqrt(3 / fan_mode) (``torch.nn.init.kaiming_uniform_``)."""
    return _kaiming(tensor, "kaiming_uniform", a, mode, nonlinearity, generator)


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> Any:
    """N(0, gain / sqrt(fan_mode)) (``torch.nn.init.kaiming_normal_``; Caffe's msra is the relu fan_in case)."""
    return _kaiming(tensor, "kaiming_normal", a, mode, nonlinearity, generator)


def orthogonal_(tensor: Any, gain: float = 1, generator: torch.Generator | None = None) -> Any:
    """A (semi-)orthogonal matrix times ``gain``, the tensor seen as (size(0), numel / size(0))
    (``torch.nn.init.orthogonal_``): the Q of a gaussian draw with R's diagonal positive (see the
    ``orthogonal`` filler: CholeskyQR for clearly rectangular float32 matrices, Householder QR otherwise)."""
    return _fill(tensor, {"type": "orthogonal", "gain": gain}, generator)
