"""Rules of the convolution, pooling and spatial resampling layers (BVLC Caffe and forks)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fillers.caffe_pb2 import PoolingParameter
from fillers.shapes.context import Shape, Unknown, LayerContext, count, cdiv, fork_field, rule


#: ConvolutionParameter's repeated N-D fields and their 2-D ``_h``/``_w`` alternatives.
_HW = {"kernel_size": ("kernel_h", "kernel_w"), "stride": ("stride_h", "stride_w"), "pad": ("pad_h", "pad_w")}


def _repeated(layer: LayerContext, cp: Any, name: str, nsp: int, default: int | None) -> list[int]:
    """kernel_size/stride/pad: once, once per spatial axis, or (not kernel) absent; or the _h/_w pair."""
    h, w = _HW[name]
    values = list(getattr(cp, name))
    if cp.HasField(h) or cp.HasField(w):
        layer.check(nsp == 2, f"{h} & {w} can only be used for 2D convolution")
        layer.check(not values, f"either {name} or {h}/{w} should be specified; not both")
        return [getattr(cp, h), getattr(cp, w)]
    allowed = (1, nsp) if default is None else (0, 1, nsp)
    layer.check(len(values) in allowed,
                f"{name} must be specified once, or once per spatial dimension "
                f"({name} specified {len(values)} times; {nsp} spatial dims)")
    return [default if not values else values[0 if len(values) == 1 else i] for i in range(nsp)]


@dataclass(frozen=True)
class _ConvGeometry:
    channel_axis: int
    kernel: list[int]
    stride: list[int]
    pad: list[int]
    dilation: list[int]


def conv_geometry(layer: LayerContext, shape: Shape, min_spatial: int = 0, cp: Any = None) -> _ConvGeometry:
    """``BaseConvolutionLayer::LayerSetUp`` / ``Im2colLayer::LayerSetUp``: the N-D geometry, from
    ``cp`` (default: the layer's ``convolution_param``)."""
    cp = layer.param.convolution_param if cp is None else cp
    channel_axis = layer.axis(cp.axis, shape)
    nsp = len(shape) - channel_axis - 1
    layer.check(nsp >= min_spatial, f"needs at least {min_spatial} spatial axes after axis {channel_axis}")
    kernel = _repeated(layer, cp, "kernel_size", nsp, None)
    layer.check(all(k > 0 for k in kernel), "filter dimensions must be nonzero")
    stride = _repeated(layer, cp, "stride", nsp, 1)
    layer.check(all(s > 0 for s in stride), "stride dimensions must be nonzero")
    pad = _repeated(layer, cp, "pad", nsp, 0)
    dil = list(cp.dilation)
    layer.check(len(dil) in (0, 1, nsp), f"dilation must be specified once, or once per spatial dimension "
                                         f"(dilation specified {len(dil)} times; {nsp} spatial dims)")
    dilation = [1 if not dil else dil[0 if len(dil) == 1 else i] for i in range(nsp)]
    return _ConvGeometry(channel_axis, kernel, stride, pad, dilation)


def _conv_out(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return cdiv(size + 2 * pad - (dilation * (kernel - 1) + 1), stride) + 1


def _deconv_out(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _conv_blobs(layer: LayerContext, weight: Sequence[int], bias: int, cp: Any = None) -> None:
    cp = layer.param.convolution_param if cp is None else cp
    layer.add_blob(weight, cp.weight_filler)
    if cp.bias_term:
        layer.add_blob((bias,), cp.bias_filler)


def _conv_top(layer: LayerContext, cp: Any, shape: Shape, geo: _ConvGeometry,
              out: Callable[[int, int, int, int, int], int], reverse: bool) -> Shape:
    """The weights and bias of a convolution-like layer over ``shape`` (declared), and its top shape."""
    channels = shape[geo.channel_axis]
    num_output, group = cp.num_output, cp.group
    layer.check(num_output > 0, f"num_output must be positive (it is {num_output}{'' if num_output else ': not given'})")
    layer.check(group > 0 and channels % group == 0, f"{channels} input channels are not divisible by group {group}")
    layer.check(num_output % group == 0, f"num_output {num_output} is not divisible by group {group}")
    out_ch, in_ch = (channels, num_output) if reverse else (num_output, channels)
    _conv_blobs(layer, (out_ch, in_ch // group, *geo.kernel), num_output, cp)
    spatial = shape[geo.channel_axis + 1:]
    return layer.shape((*shape[:geo.channel_axis], num_output,
                        *(out(spatial[i], geo.kernel[i], geo.stride[i], geo.pad[i], geo.dilation[i])
                          for i in range(len(spatial)))))


def _base_conv(layer: LayerContext, out: Callable[[int, int, int, int, int], int], reverse: bool) -> list[Shape]:
    """Convolution and Deconvolution: every bottom must have bottom 0's shape; one top per bottom."""
    cp = layer.param.convolution_param
    shape = layer.bottom(0)
    top = _conv_top(layer, cp, shape, conv_geometry(layer, shape), out, reverse)
    for i in range(1, layer.num_bottoms):
        layer.check(layer.bottom(i) == shape, f"bottom {i} {layer.bottom(i)} differs from bottom 0 {shape}")
    return [top] * layer.num_bottoms


@rule("Convolution", "DepthwiseConvolution", learnable=True)
def _convolution(layer: LayerContext) -> list[Shape | Unknown]:
    return list(_base_conv(layer, _conv_out, reverse=False))


@rule("Deconvolution", learnable=True)
def _deconvolution(layer: LayerContext) -> list[Shape | Unknown]:
    return list(_base_conv(layer, _deconv_out, reverse=True))


def _pair(cp: Any, name: str, default: int) -> tuple[int, int]:
    """The (h, w) pair of the 2-D-only depthwise fork: ``name_h``/``name_w`` when both are set, else the
    repeated field once or twice (absent: ``default``)."""
    h, w = _HW.get(name, ("", ""))
    if h and cp.HasField(h) and cp.HasField(w):
        return getattr(cp, h), getattr(cp, w)
    values = list(getattr(cp, name))
    if not values:
        return default, default
    return values[0], values[1 if len(values) > 1 else 0]


@rule("DeformableConvolution", learnable=True)
def _deformable_convolution(layer: LayerContext) -> list[Shape | Unknown]:
    """unsky/Deformable-ConvNets-caffe: a 2-D convolution of bottom 0 (weights and bias as Convolution's) at
    positions moved by bottom 1, the offsets: 2 * kernel_h * kernel_w * deformable_group channels over the
    input's height and width (the output's, in ports that compute the offsets at output resolution)."""
    dp = layer.sub("deformable_convolution_param")
    shape = layer.bottom(0)
    geo = conv_geometry(layer, shape, cp=dp)
    layer.check(len(geo.kernel) == 2, f"takes 2-D input (N, C, H, W), got {shape}")
    top = _conv_top(layer, dp, shape, geo, _conv_out, reverse=False)
    offsets = layer.bottom(1)
    per_group = 2 * geo.kernel[0] * geo.kernel[1]
    groups = [dp.deformable_group] if dp.HasField("deformable_group") else [4, 1]  # the forks' defaults
    layer.check(len(offsets) == 4 and offsets[1] in [per_group * g for g in groups],
                f"the offsets (bottom 1) {offsets} must have 2 * kernel_h * kernel_w * deformable_group = "
                f"{' or '.join(str(per_group * g) for g in groups)} channels")
    layer.check(offsets[2:] in (shape[2:], top[2:]),
                f"the offsets (bottom 1) {offsets} must have the height and width of the input {shape}")
    return [top] * layer.num_tops


@rule("Convolution3D", "Deconvolution3D", learnable=True)
def _convolution_3d(layer: LayerContext) -> list[Shape | Unknown]:
    """C3D's 3-D (de)convolution over (N, C, L, H, W): ``convolution3d_param`` (C3D v1.1) or the V1 layer's
    ``convolution_param`` with C3D's ``kernel_depth``/``temporal_*`` fields (v1.0).  The weights are
    (num_output, C, kernel_depth, k, k) -- (C, num_output, ...) for Deconvolution3D -- whatever
    ``filter_group``; the bias (1, 1, 1, 1, num_output).  v1.1's Deconvolution3D reads ``bias_term`` from
    ``convolution_param`` (as its source does)."""
    v11 = layer.param.HasField("convolution3d_param")
    cp = layer.sub("convolution3d_param") if v11 else layer.param.convolution_param

    def first(name: str, default: int) -> int:  # repeated in convolution_param, one value in v1.1's message
        value = getattr(cp, name)
        return value if isinstance(value, int) else value[0] if len(value) else default

    k, pad, stride = first("kernel_size", 0), first("pad", 0), first("stride", 1)
    kd, tpad, tstride = cp.kernel_depth, cp.temporal_pad, cp.temporal_stride
    shape = layer.bottom(0)
    layer.check(len(shape) == 5, f"takes a 5-axis blob (N, C, length, height, width), got {shape}")
    n, c, length, h, w = shape
    layer.check(cp.num_output > 0, f"num_output must be positive (it is {cp.num_output})")
    layer.check(k > 0 and kd > 0, f"kernel_size ({k}) and kernel_depth ({kd}) must be positive")
    layer.check(stride > 0 and tstride > 0, "stride and temporal_stride must be positive")
    deconv = layer.param.type == "Deconvolution3D"
    if deconv:
        bias_term = layer.param.convolution_param.bias_term
        top = ((length - 1) * tstride - 2 * tpad + kd, (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k)
        weight = (c, cp.num_output, kd, k, k)
    else:
        layer.check(cp.filter_group > 0 and cp.num_output % cp.filter_group == 0,
                    f"num_output {cp.num_output} is not divisible by filter_group {cp.filter_group}")
        bias_term = cp.bias_term
        top = (cdiv(length + 2 * tpad - kd, tstride) + 1, cdiv(h + 2 * pad - k, stride) + 1,
               cdiv(w + 2 * pad - k, stride) + 1)
        weight = (cp.num_output, c, kd, k, k)
    layer.add_blob(weight, cp.weight_filler)
    if bias_term:
        layer.add_blob((1, 1, 1, 1, cp.num_output), cp.bias_filler)
    return [layer.shape((n, cp.num_output, *top))]


@rule("Pooling3D")
def _pooling_3d(layer: LayerContext) -> list[Shape | Unknown]:
    """C3D's 3-D pooling over (N, C, L, H, W) (``pooling3d_param``, v1.1, or the V1 layer's
    ``pooling_param``, v1.0): sizes rounded up, no padding in time."""
    pp = layer.sub("pooling3d_param") if layer.param.HasField("pooling3d_param") else layer.param.pooling_param
    shape = layer.bottom(0)
    layer.check(len(shape) == 5, f"takes a 5-axis blob (N, C, length, height, width), got {shape}")
    n, c, length, h, w = shape
    k, kd, stride, tstride, pad = pp.kernel_size, pp.kernel_depth, pp.stride, pp.temporal_stride, pp.pad
    layer.check(k > 0 and kd > 0, f"kernel_size ({k}) and kernel_depth ({kd}) must be positive")
    layer.check(stride > 0 and tstride > 0, "stride and temporal_stride must be positive")
    layer.check(pad == 0 or pp.pool == pp.AVE, "padding is implemented only for average pooling")

    def pooled(size: int, kernel: int, step: int) -> int:
        return int(np.ceil(np.float32(size - kernel) / np.float32(step))) + 1

    return [layer.shape((n, c, pooled(length, kd, tstride), pooled(h + 2 * pad, k, stride),
                         pooled(w + 2 * pad, k, stride)))]


@rule("ConvolutionDepthwise", learnable=True)
def _convolution_depthwise(layer: LayerContext) -> list[Shape | Unknown]:
    """MobileNet/ShuffleNet fork layer: one k x k filter per input channel; num_output is not used."""
    cp = layer.param.convolution_param
    n, c, h, w = layer.nchw(layer.bottom(0))
    kh, kw = _pair(cp, "kernel_size", 0)
    layer.check(kh > 0 and kw > 0, "needs kernel_size or kernel_h/kernel_w")
    sh, sw = _pair(cp, "stride", 1)
    ph, pw = _pair(cp, "pad", 0)
    dh, dw = _pair(cp, "dilation", 1)
    _conv_blobs(layer, (c, 1, kh, kw), c)
    return [layer.shape((n, c, _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)))]


@rule("Im2col")
def _im2col(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    geo = conv_geometry(layer, shape, min_spatial=1)
    top = list(shape)
    for i in range(len(geo.kernel)):
        top[geo.channel_axis] *= geo.kernel[i]
        axis = geo.channel_axis + i + 1
        top[axis] = _conv_out(shape[axis], geo.kernel[i], geo.stride[i], geo.pad[i], geo.dilation[i])
    return [layer.shape(top)]


def _pool_out(size: int, kernel: int, stride: int, pad: int, ceil: bool, padded: bool) -> int:
    """Caffe's pooled size: float division rounded by round_mode, then, when the layer has any padding
    (``padded``: pad_h or pad_w, on either axis), the clip of a last window that starts in the padding."""
    ratio = np.float32(size + 2 * pad - kernel) / np.float32(stride)
    pooled = int(np.ceil(ratio) if ceil else np.floor(ratio)) + 1
    if padded and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _pool_params(layer: LayerContext, pp: Any, h: int, w: int) -> tuple[int, int, int, int, int, int]:
    """``PoolingLayer::LayerSetUp`` checks; returns kernel, pad and stride as (h, w) pairs."""
    if pp.global_pooling:
        layer.check(not (pp.HasField("kernel_size") or pp.HasField("kernel_h") or pp.HasField("kernel_w")),
                    "with global_pooling the filter size cannot be specified")
        kh, kw = h, w
    else:
        layer.check(pp.HasField("kernel_size") != (pp.HasField("kernel_h") and pp.HasField("kernel_w")),
                    "filter size is kernel_size OR kernel_h and kernel_w; not both")
        kh, kw = (pp.kernel_size, pp.kernel_size) if pp.HasField("kernel_size") else (pp.kernel_h, pp.kernel_w)
    layer.check(kh > 0 and kw > 0, "filter dimensions cannot be zero")
    for name in ("pad", "stride"):
        has_h, has_w = pp.HasField(f"{name}_h"), pp.HasField(f"{name}_w")
        layer.check((not pp.HasField(name) and has_h and has_w) or (not has_h and not has_w),
                    f"{name} is {name} OR {name}_h and {name}_w")
    ph, pw = (pp.pad_h, pp.pad_w) if pp.HasField("pad_h") else (pp.pad, pp.pad)
    sh, sw = (pp.stride_h, pp.stride_w) if pp.HasField("stride_h") else (pp.stride, pp.stride)
    if pp.global_pooling:
        layer.check(ph == 0 and pw == 0 and sh == 1 and sw == 1, "with global_pooling only pad 0 and stride 1")
    # Caffe divides by the stride (a zero one is a division by zero there): refused
    layer.check(sh > 0 and sw > 0, f"stride dimensions must be nonzero, got ({sh}, {sw})")
    if ph or pw:
        layer.check(pp.pool in (pp.MAX, pp.AVE), "padding is implemented only for average and max pooling")
        layer.check(ph < kh and pw < kw, f"pad ({ph}, {pw}) must be smaller than the kernel ({kh}, {kw})")
    return kh, kw, ph, pw, sh, sw


def _pool_shape(layer: LayerContext, pp: Any, shape: Shape) -> Shape:
    layer.check(len(shape) == 4, f"input must have 4 axes (num, channels, height, width), got {shape}")
    n, c, h, w = shape
    kh, kw, ph, pw, sh, sw = _pool_params(layer, pp, h, w)
    ceil = pp.round_mode == pp.CEIL
    if fork_field(pp, "ceil_mode") is not None:  # BVLC/caffe pull 3057
        layer.check(not pp.HasField("round_mode") or ceil == pp.ceil_mode,
                    f"round_mode {pp.RoundMode.Name(pp.round_mode)} contradicts ceil_mode {str(pp.ceil_mode).lower()}")
        ceil = pp.ceil_mode
    padded = bool(ph or pw)  # Caffe clips and checks both axes when either has padding
    out_h, out_w = _pool_out(h, kh, sh, ph, ceil, padded), _pool_out(w, kw, sw, pw, ceil, padded)
    layer.check(not padded or (out_h - 1) * sh < h + ph, "the last pooling window starts in the padding")
    layer.check(not padded or (out_w - 1) * sw < w + pw, "the last pooling window starts in the padding")
    return layer.shape((n, c, out_h, out_w))


@rule("Pooling")
def _pooling(layer: LayerContext) -> list[Shape | Unknown]:
    top = _pool_shape(layer, layer.param.pooling_param, layer.bottom(0))
    return [top] * layer.num_tops


@rule("SPP")
def _spp(layer: LayerContext) -> list[Shape | Unknown]:
    """Spatial pyramid pooling: per level a pooling whose kernel/stride/pad cover the input, flattened and
    concatenated (one level: the pooling output itself)."""
    sp = layer.param.spp_param
    shape = layer.bottom(0)
    layer.check(len(shape) == 4, f"input must have 4 axes, got {shape}")
    n, c, h, w = shape
    layer.check(h > 0 and w > 0, "input dimensions cannot be zero")
    layer.check(sp.pyramid_height > 0, "pyramid_height must be positive")
    outs = []
    for level in range(sp.pyramid_height):
        bins = 2**level
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        pp = PoolingParameter(
            kernel_h=kh, kernel_w=kw, stride_h=kh, stride_w=kw,
            pad_h=(kh * bins - h + 1) // 2, pad_w=(kw * bins - w + 1) // 2, pool=sp.pool,
        )
        outs.append(_pool_shape(layer, pp, shape))
    if sp.pyramid_height == 1:
        return [outs[0]]
    return [layer.shape((n, sum(count(o, 1) for o in outs)))]


@rule("SpatialPyramidPooling")
def _spatial_pyramid_pooling(layer: LayerContext) -> list[Shape | Unknown]:
    """BVLC/caffe pull 601 (not BVLC's SPP): one level pools the whole map to (N, C, 1, 1); more levels pool
    with kernel = stride = size / bin (float division, truncated), and their flattened outputs are
    concatenated as the V1 layers did it, to (N, sum, 1, 1)."""
    sp = layer.sub("spatial_pyramid_pooling_param")
    layer.check(len(sp.spatial_bin) >= 1, "needs at least one spatial_bin")
    shape = layer.nchw(layer.bottom(0))
    n, c, h, w = shape
    if len(sp.spatial_bin) == 1:
        return [_pool_shape(layer, PoolingParameter(kernel_h=h, kernel_w=w, stride_h=h, stride_w=w), shape)]
    total = 0
    for spatial_bin in sp.spatial_bin:
        layer.check(spatial_bin > 0, f"spatial_bin must be positive, got {spatial_bin}")
        kh, kw = (int(np.float32(size) / np.float32(spatial_bin)) for size in (h, w))
        pooled = _pool_shape(layer, PoolingParameter(kernel_h=kh, kernel_w=kw, stride_h=kh, stride_w=kw), shape)
        total += count(pooled, 1)
    return [layer.shape((n, total, 1, 1))]


@rule("LRN")
def _lrn(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    layer.check(layer.param.lrn_param.local_size % 2 == 1, "LRN only supports odd values for local_size")
    layer.check(len(shape) == 4, f"input must have 4 axes (num, channels, height, width), got {shape}")
    return [shape]


@rule("Interp")
def _interp(layer: LayerContext) -> list[Shape | Unknown]:
    """DeepLab's bilinear interpolation (v2 rules; v1 accepts a subset)."""
    ip = layer.sub("interp_param")
    n, c, h, w = layer.nchw(layer.bottom(0))
    layer.check(ip.pad_beg <= 0 and ip.pad_end <= 0, "only non-positive padding (cropping) is supported")
    h_eff, w_eff = h + ip.pad_beg + ip.pad_end, w + ip.pad_beg + ip.pad_end
    shrink, zoom = ip.HasField("shrink_factor"), ip.HasField("zoom_factor")
    if shrink:
        layer.check(ip.shrink_factor >= 1, "shrink factor must be positive")
    if zoom:
        layer.check(ip.zoom_factor >= 1, "zoom factor must be positive")
    if shrink or zoom:
        out_h, out_w = h_eff, w_eff
        if shrink:
            out_h, out_w = cdiv(out_h - 1, ip.shrink_factor) + 1, cdiv(out_w - 1, ip.shrink_factor) + 1
        if zoom:
            out_h, out_w = out_h + (out_h - 1) * (ip.zoom_factor - 1), out_w + (out_w - 1) * (ip.zoom_factor - 1)
    elif ip.HasField("height") and ip.HasField("width"):
        out_h, out_w = ip.height, ip.width
    elif layer.num_bottoms == 2:
        _, _, out_h, out_w = layer.nchw(layer.bottom(1))
    else:
        raise layer.error("give zoom_factor, shrink_factor, height and width, or a second bottom")
    layer.check(h_eff > 0 and w_eff > 0 and out_h > 0 and out_w > 0, "sizes must be positive")
    return [layer.shape((n, c, out_h, out_w))]


@rule("Padding")
def _padding(layer: LayerContext) -> list[Shape | Unknown]:
    """DeepLab v1: pads (or, negative, crops) height and width by pad_beg + pad_end."""
    pp = layer.sub("padding_param")
    layer.check(pp.pad_beg * pp.pad_end >= 0, "padding must either be both positive or negative")
    n, c, h, w = layer.nchw(layer.bottom(0))
    out_h, out_w = h + pp.pad_beg + pp.pad_end, w + pp.pad_beg + pp.pad_end
    layer.check(out_h > 0 and out_w > 0, "padding makes the height or width <= 0")
    return [(n, c, out_h, out_w)]


@rule("Upsample")
def _upsample(layer: LayerContext) -> list[Shape | Unknown]:
    """SegNet/ENet max-unpooling with the pooling mask as the second bottom."""
    up = layer.sub("upsample_param")
    shape = layer.bottom(0)
    layer.check(len(shape) == 4, f"input must have 4 axes, got {shape}")
    if layer.num_bottoms > 1:
        layer.check(layer.bottom(1) == shape, f"the mask {layer.bottom(1)} must be shaped like {shape}")
    n, c, h, w = shape
    if up.HasField("upsample_h") and up.HasField("upsample_w"):
        out_h, out_w = up.upsample_h, up.upsample_w
        layer.check(out_h > 1 and out_w > 1, "upsample_h and upsample_w must be > 1")
    else:
        layer.check(up.HasField("scale_h") == up.HasField("scale_w") and not (up.HasField("scale") and up.HasField("scale_h")),
                    "give upsample_h & upsample_w, or scale, or scale_h & scale_w")
        sh, sw = (up.scale_h, up.scale_w) if up.HasField("scale_h") else (up.scale, up.scale)
        layer.check(sh > 1 and sw > 1, "the scale must be > 1")
        layer.check((not up.pad_out_h or sh == 2) and (not up.pad_out_w or sw == 2), "pad_out needs scale 2")
        out_h, out_w = h * sh - int(up.pad_out_h), w * sw - int(up.pad_out_w)
    return [layer.shape((n, c, out_h, out_w))]


@rule("Reorg")
def _reorg(layer: LayerContext) -> list[Shape | Unknown]:
    """Intel caffe's YOLO v2 space-to-depth: (N, C*s*s, H/s, W/s), or with ``reverse`` depth-to-space
    (N, C/(s*s), H*s, W*s); integer division as in its ``LayerSetUp``."""
    rp = layer.sub("reorg_param")
    layer.check(rp.HasField("stride"), "needs reorg_param stride")
    layer.check(rp.stride > 0, "stride must be positive")
    n, c, h, w = layer.nchw(layer.bottom(0))
    layer.check(layer.param.top[:1] != layer.param.bottom[:1], "does not allow in-place computation")
    s = rp.stride
    if rp.reverse:
        return [layer.shape((n, c // (s * s), h * s, w * s))]
    return [layer.shape((n, c * s * s, h // s, w // s))]
