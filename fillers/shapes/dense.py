"""Rules of the layers with learnable weights that are not convolutions: inner products, embeddings,
normalisation and per-channel affine layers."""
from __future__ import annotations

import functools

import numpy as np

from fillers.shapes.context import Shape, Unknown, LayerContext, count, constant_filler, fork_field, rule


@rule("InnerProduct", learnable=True)
def _inner_product(layer: LayerContext) -> list[Shape | Unknown]:
    ip = layer.param.inner_product_param
    shape = layer.bottom(0)
    axis = layer.axis(ip.axis, shape)
    k, n = count(shape, axis), ip.num_output
    layer.check(n > 0, f"num_output must be positive (it is {n}{'' if n else ': not given'})")
    layer.add_blob((k, n) if ip.transpose else (n, k), ip.weight_filler)
    if ip.bias_term:
        layer.add_blob((n,), ip.bias_filler)
    return [layer.shape((*shape[:axis], n))]


@rule("Embed", learnable=True)
def _embed(layer: LayerContext) -> list[Shape | Unknown]:
    ep = layer.param.embed_param
    layer.check(ep.num_output > 0, "num_output must be positive")
    layer.check(ep.input_dim > 0, "input_dim must be positive")
    layer.add_blob((ep.input_dim, ep.num_output), ep.weight_filler)
    if ep.bias_term:
        layer.add_blob((ep.num_output,), ep.bias_filler)
    return [layer.shape((*layer.bottom(0), ep.num_output))]


@rule("BatchNorm", learnable=True)
def _batch_norm(layer: LayerContext) -> list[Shape | Unknown]:
    """Mean, variance and the moving-average factor: zeros written by ``caffe_set``, no filler drawn."""
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    zeros = constant_filler(0)
    layer.add_blob((shape[1],), zeros)
    layer.add_blob((shape[1],), zeros)
    layer.add_blob((1,), zeros)
    return [shape]


def _axes_span(layer: LayerContext, shape: Shape, axis: int, num_axes: int, what: str) -> Shape:
    """The part of ``shape`` a Scale/Bias blob covers: ``num_axes`` axes from ``axis`` (-1: to the end)."""
    start = layer.axis(axis, shape)
    layer.check(num_axes >= -1, "num_axes must be non-negative, or -1 to extend to the end of bottom[0]")
    if num_axes >= 0:
        layer.check(len(shape) >= start + num_axes,
                    f"{what} blob's shape extends past bottom[0]'s shape {shape} from axis {start}")
    return shape[start:] if num_axes == -1 else shape[start:start + num_axes]


def _check_operand(layer: LayerContext, shape: Shape, operand: Shape, axis: int, what: str) -> None:
    """Scale/Bias ``Reshape``: the operand must match bottom[0] from the axis on (axis 0 for a scalar)."""
    start = 0 if not operand else layer.axis(axis, shape)
    layer.check(shape[start:start + len(operand)] == operand and len(shape) >= start + len(operand),
                f"{what} shape {operand} does not match bottom[0] shape {shape} from axis {start}")


@rule("Bias", learnable=True)
def _bias(layer: LayerContext) -> list[Shape | Unknown]:
    bp = layer.param.bias_param
    shape = layer.bottom(0)
    if layer.num_bottoms == 1:
        layer.add_blob(_axes_span(layer, shape, bp.axis, bp.num_axes, "bias"), bp.filler)
    operand = layer.bottom(1) if layer.num_bottoms > 1 else layer.blobs[0][0]
    _check_operand(layer, shape, operand, bp.axis, "bias")
    return [shape]


@rule("Scale", learnable=True)
def _scale(layer: LayerContext) -> list[Shape | Unknown]:
    """Scale (default filler constant 1), then with bias_term the internal Bias layer's blob."""
    sp = layer.param.scale_param
    shape = layer.bottom(0)
    if layer.num_bottoms == 1:
        layer.add_blob(_axes_span(layer, shape, sp.axis, sp.num_axes, "scale"),
                       sp.filler if sp.HasField("filler") else constant_filler(1))
        operand = layer.blobs[0][0]
    else:
        operand = layer.bottom(1)
    if sp.bias_term:
        num_axes = len(layer.bottom(1)) if layer.num_bottoms > 1 else sp.num_axes
        layer.add_blob(_axes_span(layer, shape, sp.axis, num_axes, "bias"), sp.bias_filler)
    _check_operand(layer, shape, operand, sp.axis, "scale")
    return [shape]


@rule("PReLU", learnable=True)
def _prelu(layer: LayerContext) -> list[Shape | Unknown]:
    pp = layer.param.prelu_param
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    channels = layer.legacy(shape, 1)
    layer.add_blob(() if pp.channel_shared else (channels,), pp.filler if pp.HasField("filler") else constant_filler(0.25))
    return [shape]


@rule("Normalize_ssd", learnable=True)
def _normalize_ssd(layer: LayerContext) -> list[Shape | Unknown]:
    """SSD's L2 normalization (weiliu89/caffe); its scale is one value when channel_shared (the default),
    else per channel."""
    layer.variant = "Normalize_ssd"
    np_ = layer.sub("norm_param")
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    channels = layer.legacy(shape, 1)
    layer.add_blob(() if np_.channel_shared else (channels,),
                   np_.scale_filler if np_.HasField("scale_filler") else constant_filler(1.0))
    return [shape]


@rule("Normalize_face")
def _normalize_face(layer: LayerContext) -> list[Shape | Unknown]:
    """The face-recognition forks' L2 normalization (happynear/caffe-windows, NormFace, AM-Softmax): no
    blobs; the top is (num, channels, height, width) of the bottom, the optional norm top (num, 1, h, w)."""
    layer.variant = "Normalize_face"
    n, c, h, w = layer.nchw(layer.bottom(0))
    return [(n, c, h, w), (n, 1, h, w)][: layer.num_tops]


@rule("Normalize", learnable=True)
def _normalize(layer: LayerContext) -> list[Shape | Unknown]:
    """Two forks' layers of one name, told apart by what the layer carries: SSD's (``norm_param``, learnable
    scale: ``param`` specs or ``blobs``) or the face forks' (``normalize_param``, a norm top); otherwise a
    bottom with 2 axes (features) is the face forks', a feature map SSD's."""
    param = layer.param
    if fork_field(param, "normalize_param") is not None or layer.num_tops == 2:
        return _normalize_face(layer)
    if param.HasField("norm_param") or param.param or param.blobs:
        return _normalize_ssd(layer)
    return (_normalize_face if len(layer.bottom(0)) == 2 else _normalize_ssd)(layer)


@rule("BN_segnet", learnable=True)
def _bn_segnet(layer: LayerContext) -> list[Shape | Unknown]:
    """SegNet/ENet batch normalization (alexgkendall/caffe-segnet, TimoSaemann/caffe-enet): scale and shift
    blobs of shape (1, C, 1, 1); optional mean and variance tops."""
    layer.variant = "BN_segnet"
    bp = layer.sub("bn_param")
    n, c, h, w = layer.nchw(layer.bottom(0))
    layer.add_blob((1, c, 1, 1), bp.scale_filler)
    layer.add_blob((1, c, 1, 1), bp.shift_filler)
    return [(n, c, h, w), *[(1, c, 1, 1)] * (min(layer.num_tops, 3) - 1)]


@rule("BN_pspnet", learnable=True)
def _bn_pspnet(layer: LayerContext) -> list[Shape | Unknown]:
    """PSPNet/ICNet batch normalization (hszhao/PSPNet; first in yjxiong/caffe, TSN's): slope and bias from their fillers, then the moving
    mean (zeros) and variance (ones when ``frozen``, else zeros), all (1, C, 1, 1); the top is the bottom's
    shape."""
    layer.variant = "BN_pspnet"
    bp = layer.sub("bn_param")
    shape = layer.bottom(0)
    c = layer.legacy(shape, 1)
    layer.add_blob((1, c, 1, 1), bp.slope_filler)
    layer.add_blob((1, c, 1, 1), bp.bias_filler)
    layer.add_blob((1, c, 1, 1), constant_filler(0))
    layer.add_blob((1, c, 1, 1), constant_filler(1 if bp.frozen else 0))
    return [shape]


_PSPNET_BN_FIELDS = ("slope_filler", "bias_filler", "momentum", "eps", "frozen", "engine")
_SEGNET_BN_FIELDS = ("scale_filler", "shift_filler", "bn_mode")


@rule("BN", learnable=True)
def _bn(layer: LayerContext) -> list[Shape | Unknown]:
    """Two forks' layers of one name, told apart by what the layer carries: PSPNet's (its ``bn_param``
    fields, 4 blobs or more than 2 ``param`` specs) or SegNet's (its fields, statistics tops); SegNet's when
    nothing tells."""
    bp = layer.sub("bn_param")
    pspnet = [name for name in _PSPNET_BN_FIELDS if fork_field(bp, name) is not None]
    segnet = [name for name in _SEGNET_BN_FIELDS if bp.HasField(name)]
    layer.check(not (pspnet and segnet), f"bn_param mixes PSPNet's BN fields {pspnet} and SegNet's {segnet}")
    param = layer.param
    if pspnet or (not segnet and (len(param.blobs) == 4 or len(param.param) > 2) and layer.num_tops == 1):
        return _bn_pspnet(layer)
    return _bn_segnet(layer)


@rule("MarginInnerProduct", learnable=True)
def _margin_inner_product(layer: LayerContext) -> list[Shape | Unknown]:
    """SphereFace's A-Softmax inner product (wy1iu/sphereface; also happynear/caffe-windows): bottoms the
    features and the labels; one weight (num_output, K) without bias; an optional top with lambda, (1,)."""
    mp = layer.sub("margin_inner_product_param")
    shape = layer.bottom(0)
    labels = layer.known_bottom(1)
    layer.check(labels is None or layer.legacy(labels, 0) == layer.legacy(shape, 0),
                f"the labels {labels} must have as many items as the features {shape}")
    axis = layer.axis(mp.axis, shape)
    layer.check(mp.num_output > 0, f"num_output must be positive (it is {mp.num_output})")
    layer.add_blob((mp.num_output, count(shape, axis)), mp.weight_filler)
    return [layer.shape((*shape[:axis], mp.num_output)), (1,)][: layer.num_tops]


@rule("CenterLoss", learnable=True)
def _center_loss(layer: LayerContext) -> list[Shape | Unknown]:
    """Center loss (ydwen/caffe-face; happynear/caffe-windows): the class centers (num_output, K) from
    ``center_filler``; a scalar loss."""
    cp = layer.sub("center_loss_param")
    shape = layer.bottom(0)
    layer.check(cp.num_output > 0, f"num_output must be positive (it is {cp.num_output})")
    layer.add_blob((cp.num_output, count(shape, layer.axis(cp.axis, shape))), cp.center_filler)
    return [()]


@rule("ChannelScale")
def _channel_scale(layer: LayerContext) -> list[Shape | Unknown]:
    """happynear/caffe-windows: scales features by per-item norms (bottom 1); with ``global_scale`` one
    learnable scale, (1,), that its setup sets to -1, and an optional top with it."""
    cp = layer.sub("channel_scale_param")
    if cp.global_scale:  # declared first: its shape does not depend on the bottoms
        layer.add_written_blob((1,), functools.partial(np.full, (1,), -1, np.float32))
    return [layer.bottom(0), (1,)][: layer.num_tops]


@rule("Parameter", learnable=True)
def _parameter(layer: LayerContext) -> list[Shape | Unknown]:
    """A free blob of the given shape; Caffe allocates it zeroed and runs no filler."""
    shape = layer.shape(layer.param.parameter_param.shape.dim)
    layer.add_blob(shape, constant_filler(0))
    return [shape]
