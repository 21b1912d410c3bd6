"""PyTorch names for Caffe blobs: ``save(..., naming="torch")``.

A Caffe layer ``L`` becomes the torch module ``L`` (names are kept as they are) and its blobs get the names of
the module torch would use for it, so the file loads with ``model.load_state_dict`` when the modules are
named after the layers:

=================================================  ==========================================================
Caffe layer (blobs)                                torch names
=================================================  ==========================================================
Convolution, Deconvolution, InnerProduct, Embed,   ``L.weight``, ``L.bias`` (Caffe's shapes are torch's:
depthwise convolutions (weight, bias)              Conv/ConvTranspose ``(out|in, in|out / groups, kH, kW)``,
                                                   Linear ``(out, in)``, Embedding ``(num, dim)``)
BatchNorm (mean sum, variance sum, factor)         ``L.running_mean``, ``L.running_var``: the sums times
                                                   ``1 / factor`` (0 when the factor is 0), the statistics
                                                   Caffe's BatchNorm uses at test time.  The factor has no
                                                   torch counterpart and is not written (``BatchNorm2d``
                                                   supplies ``num_batches_tracked`` = 0 when it is absent).
Scale right after a BatchNorm ``B`` (gamma, beta)  ``B.weight``, ``B.bias``: Caffe's BatchNorm + Scale is one
                                                   ``BatchNorm2d(affine=True)``
Scale elsewhere (gamma, beta)                      ``L.weight``, ``L.bias``
Bias (beta)                                        ``L.bias``
PReLU (slopes)                                     ``L.weight``
any other layer                                    ``L.<i>`` (recurrent layers' gates are not torch's order)
=================================================  ==========================================================

InnerProduct with ``transpose: true`` stores ``(in, out)``: it is written as stored.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fillers.caffe_pb2 import LayerParameter, NetParameter

__all__ = ["torch_state_dict"]

_WEIGHT_BIAS = {"Convolution", "Deconvolution", "InnerProduct", "Embed", "DepthwiseConvolution",
                "ConvolutionDepthwise", "Scale"}
_SINGLE = {"Bias": "bias", "PReLU": "weight"}


def _batchnorm_stats(blobs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Caffe's test-time mean and variance: the stored sums times 1 / factor (0 for a zero factor)."""
    mean, var, factor = blobs
    f = factor.reshape(-1)[0]
    scale = factor.dtype.type(0) if f == 0 else factor.dtype.type(1) / f
    return mean * scale, var * scale


def torch_state_dict(params: Mapping[str, Sequence[np.ndarray]], net: NetParameter | None,
                     ) -> dict[str, np.ndarray]:
    """The blobs of ``params`` under PyTorch ``state_dict`` names (see the module notes).

    Parameters
    ----------
    params : mapping of str to sequence of numpy.ndarray
        Layer name to its blobs, as from :func:`fillers.fill_net`.
    net : NetParameter
        The net, for its layer types and which Scale follows which BatchNorm.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    ValueError
        No net, or two blobs that would get one name.
    """
    from fillers.upgrade import net_needs_upgrade, upgrade_net

    if net is None:
        raise ValueError("naming='torch' needs the net (its layer types): pass net=")
    if net_needs_upgrade(net):
        net = upgrade_net(net)
    types = {}
    owner = {}  # a Scale's name -> the BatchNorm it follows
    producer: dict[str, LayerParameter] = {}
    for layer in net.layer:
        types.setdefault(layer.name, layer.type)
        source = producer.get(layer.bottom[0]) if layer.bottom else None
        if layer.type == "Scale" and source is not None and source.type == "BatchNorm":
            owner.setdefault(layer.name, source.name)
        for top in layer.top:
            producer[top] = layer
    out: dict[str, np.ndarray] = {}
    for name, blobs in params.items():
        kind = types.get(name, types.get(name.rpartition("#")[0], ""))  # "conv#2": a repeated name
        if kind == "BatchNorm" and len(blobs) == 3:
            mean, var = _batchnorm_stats(blobs)
            named = {f"{name}.running_mean": mean, f"{name}.running_var": var}
        elif kind in _WEIGHT_BIAS and len(blobs) <= 2:
            module = owner.get(name, name)
            named = dict(zip((f"{module}.weight", f"{module}.bias"), blobs))
        elif kind in _SINGLE and len(blobs) == 1:
            named = {f"{name}.{_SINGLE[kind]}": blobs[0]}
        else:
            named = {f"{name}.{i}": blob for i, blob in enumerate(blobs)}
        for key, blob in named.items():
            if key in out:
                raise ValueError(f"naming='torch': two blobs would be named {key!r}")
            out[key] = blob
    return out
