"""Rules of the layers with learnable weights that are not convolutions: inner products, embeddings,
normalisation and per-channel affine layers."""
from __future__ import annotations


from fillers.shapes.context import Shape, Unknown, LayerContext, count, constant_filler, rule


@rule("InnerProduct", learnable=True)
def _inner_product(layer: LayerContext) -> list[Shape | Unknown]:
    ip = layer.param.inner_product_param
    shape = layer.bottom(0)
    axis = layer.axis(ip.axis, shape)
    k, n = count(shape, axis), ip.num_output
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


@rule("Normalize", learnable=True)
def _normalize(layer: LayerContext) -> list[Shape | Unknown]:
    """SSD's L2 normalization; its scale is one value when channel_shared (the default), else per channel."""
    np_ = layer.sub("norm_param")
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    channels = layer.legacy(shape, 1)
    layer.add_blob(() if np_.channel_shared else (channels,),
                   np_.scale_filler if np_.HasField("scale_filler") else constant_filler(1.0))
    return [shape]


@rule("BN", learnable=True)
def _bn(layer: LayerContext) -> list[Shape | Unknown]:
    """SegNet/ENet batch normalization: scale and shift blobs of shape (1, C, 1, 1); optional mean and
    variance tops."""
    bp = layer.sub("bn_param")
    n, c, h, w = layer.nchw(layer.bottom(0))
    layer.add_blob((1, c, 1, 1), bp.scale_filler)
    layer.add_blob((1, c, 1, 1), bp.shift_filler)
    return [(n, c, h, w), *[(1, c, 1, 1)] * (min(layer.num_tops, 3) - 1)]


@rule("Parameter", learnable=True)
def _parameter(layer: LayerContext) -> list[Shape | Unknown]:
    """A free blob of the given shape; Caffe allocates it zeroed and runs no filler."""
    shape = layer.shape(layer.param.parameter_param.shape.dim)
    layer.add_blob(shape, constant_filler(0))
    return [shape]
