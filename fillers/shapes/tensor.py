"""Rules of the layers that keep, combine, split or reshape blobs, and of the losses and metrics."""
from __future__ import annotations

import math
from typing import Any

from fillers.shapes.context import Shape, Unknown, LayerContext, count, rule


@rule("AbsVal", "BNLL", "Clip", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU", "Sigmoid", "Swish", "TanH",
       "Threshold", "Softmax", "Reverse",
       "ReLU6",  # MobileNet v2 / SSDLite and YOLO ports (eric612/MobileNet-YOLO and others)
       "Flip")  # happynear/caffe-windows (AM-Softmax / NormFace test-time mirroring)
def _same(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    if layer.param.type == "Softmax":
        layer.axis(layer.param.softmax_param.axis, shape)
    return [shape]


@rule("MVN", "ShuffleChannel")
def _legacy_4d(layer: LayerContext) -> list[Shape | Unknown]:
    """Layers whose top is reshaped to (num, channels, height, width) of the bottom."""
    return [layer.nchw(layer.bottom(0))]


@rule("Split")
def _split(layer: LayerContext) -> list[Shape | Unknown]:
    return [layer.bottom(0)] * layer.num_tops


@rule("Eltwise")
def _eltwise(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    ep = layer.param.eltwise_param
    layer.check(len(ep.coeff) in (0, layer.num_bottoms), "Eltwise takes one coefficient per bottom blob")
    for i in range(1, layer.num_bottoms):
        layer.check(layer.bottom(i) == shape, f"bottom {i} {layer.bottom(i)} differs from bottom 0 {shape}")
    return [shape]


@rule("Axpy")
def _axpy(layer: LayerContext) -> list[Shape | Unknown]:
    """SENet fork: ``a * x + y`` with a per-channel ``a``; the top is shaped like ``x``."""
    a, x, y = layer.bottom(0), layer.bottom(1), layer.bottom(2)
    layer.check(a[:2] == x[:2] and x == y, f"bottoms {a}, {x}, {y} do not fit a * x + y")
    return [x]


def _concat_axis(layer: LayerContext, p: Any, legacy_field: str, shape: Shape) -> int:
    layer.check(not (p.HasField("axis") and p.HasField(legacy_field)),
                f"either axis or {legacy_field} should be specified; not both")
    if p.HasField(legacy_field):
        axis = getattr(p, legacy_field)
        layer.check(axis < len(shape), f"{legacy_field} {axis} out of range for {shape}")
        return axis
    return layer.axis(p.axis, shape)


@rule("Concat")
def _concat(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    axis = _concat_axis(layer, layer.param.concat_param, "concat_dim", shape)
    top = list(shape)
    for i in range(1, layer.num_bottoms):
        other = layer.bottom(i)
        layer.check(len(other) == len(shape) and all(other[j] == shape[j] for j in range(len(shape)) if j != axis),
                    f"bottom {i} {other} differs from bottom 0 {shape} outside axis {axis}")
        top[axis] += other[axis]
    return [layer.shape(top)]


@rule("Slice")
def _slice(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    sp = layer.param.slice_param
    axis = _concat_axis(layer, sp, "slice_dim", shape)
    size, n = shape[axis], layer.num_tops
    points = list(sp.slice_point)
    if points:
        layer.check(len(points) == n - 1, f"{len(points)} slice points for {n} tops")
        layer.check(n <= size, f"{n} tops cannot slice axis {axis} of size {size}")
        bounds = [0, *points, size]
        for a, b in zip(bounds[:-2], bounds[1:-1]):
            layer.check(b > a, f"slice points must increase: {points}")
        sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        layer.check(n > 0 and size % n == 0, f"{n} tops do not evenly divide axis {axis} of size {size}")
        sizes = [size // n] * n
    return [layer.shape((*shape[:axis], s, *shape[axis + 1:])) for s in sizes]


@rule("Flatten")
def _flatten(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    fp = layer.param.flatten_param
    start, end = layer.axis(fp.axis, shape), layer.axis(fp.end_axis, shape)
    layer.check(start <= end + 1, f"axis {fp.axis} (axis {start}) comes after end_axis {fp.end_axis} "
                                  f"(axis {end}) of the {len(shape)}-axis bottom {shape}")
    return [layer.shape((*shape[:start], count(shape, start, end + 1), *shape[end + 1:]))]


@rule("Reshape")
def _reshape(layer: LayerContext) -> list[Shape | Unknown]:
    """``0`` copies the bottom dimension at that position, one ``-1`` is inferred from the count."""
    shape = layer.bottom(0)
    rp = layer.param.reshape_param
    dims = [int(d) for d in rp.shape.dim]
    layer.check(dims.count(-1) <= 1, "new shape contains multiple -1 dims")
    n = len(shape)
    start = rp.axis if rp.axis >= 0 else n + rp.axis + 1
    layer.check(0 <= start <= n, f"axis {rp.axis} out of range for a {n}-axis bottom")
    layer.check(rp.num_axes >= -1, "num_axes must be >= 0, or -1 for all")
    end = n if rp.num_axes == -1 else start + rp.num_axes
    layer.check(end <= n, "axis + num_axes is out of range")
    top = [*shape[:start], *dims, *shape[end:]]
    for i, d in enumerate(dims):
        if d == 0:
            layer.check(start + i < n, "new shape contains a 0, but there is no bottom axis to copy")
            top[start + i] = shape[start + i]
    if -1 in dims:
        known = count(shape[:start]) * count(shape[end:])
        known *= math.prod(d if d > 0 else top[start + i] for i, d in enumerate(dims) if d != -1)
        total = count(shape)
        layer.check(known != 0 and total % known == 0,
                    f"bottom count {total} is not divisible by the product of the given dimensions {known}")
        top[start + dims.index(-1)] = total // known
    top_shape = layer.shape(top)
    layer.check(count(top_shape) == count(shape), f"output count of {top_shape} must match input {shape}")
    return [top_shape]


@rule("Crop")
def _crop(layer: LayerContext) -> list[Shape | Unknown]:
    shape, ref = layer.bottom(0), layer.bottom(1)
    cp = layer.param.crop_param
    start = layer.axis(cp.axis, shape)
    offsets = list(cp.offset)
    layer.check(len(offsets) <= 1 or start + len(offsets) == len(shape),
                "give one offset, or one per axis from the crop axis on")
    top = list(shape)
    for i in range(start, len(shape)):
        layer.check(i < len(ref), f"reference bottom {ref} has no axis {i}")
        offset = offsets[0] if len(offsets) == 1 else offsets[i - start] if offsets else 0
        layer.check(shape[i] - offset >= ref[i], f"crop of axis {i} is out of bounds: size {ref[i]}, offset {offset}")
        top[i] = ref[i]
    return [layer.shape(top)]


@rule("Tile")
def _tile(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    tp = layer.param.tile_param
    axis = layer.axis(tp.axis, shape)
    layer.check(tp.HasField("tiles") and tp.tiles > 0, "the number of tiles must be given and positive")
    return [layer.shape((*shape[:axis], shape[axis] * tp.tiles, *shape[axis + 1:]))]


@rule("Reduction")
def _reduction(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    return [shape[: layer.axis(layer.param.reduction_param.axis, shape)]]


@rule("ArgMax")
def _argmax(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    ap = layer.param.argmax_param
    layer.check(ap.top_k >= 1, "top_k must not be less than 1")
    if ap.HasField("axis"):
        axis = layer.axis(ap.axis, shape)
        layer.check(ap.top_k <= shape[axis], "top_k must not exceed the dimension of the axis")
        return [layer.shape((*shape[:axis], ap.top_k, *shape[axis + 1:]))]
    layer.check(ap.top_k <= count(shape, 1), "top_k must not exceed the flattened size of one instance")
    top = [1] * max(len(shape), 3)
    top[0], top[2] = shape[layer.axis(0, shape)], ap.top_k
    if ap.out_max_val:
        top[1] = 2
    return [layer.shape(top)]


@rule("BatchReindex")
def _batch_reindex(layer: LayerContext) -> list[Shape | Unknown]:
    shape, index = layer.bottom(0), layer.bottom(1)
    layer.check(len(index) == 1, f"the index bottom must have 1 axis, got {index}")
    return [(index[0], *shape[1:])]


@rule("Filter")
def _filter(layer: LayerContext) -> list[Shape | Unknown]:
    """At setup Caffe passes every item (the selector's values only matter at run time)."""
    layer.check(layer.num_tops == layer.num_bottoms - 1, "needs one top per filtered bottom")
    selector = layer.bottom(layer.num_bottoms - 1)
    tops = []
    for i in range(layer.num_tops):
        shape = layer.bottom(i)
        layer.check(shape[:1] == selector[:1], f"bottom {i} {shape} and the selector {selector} differ in axis 0")
        tops.append((layer.bottom(0)[0], *shape[1:]))
    return tops


@rule("Silence", "HDF5Output", "MatWrite")
def _no_tops(layer: LayerContext) -> list[Shape | Unknown]:
    return []


@rule("ContrastiveLoss", "EuclideanLoss", "HingeLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss",
       "SmoothL1Loss", "MultiBoxLoss", "CTCLoss", "L1Loss", "RegionLoss",
       "CtcLoss", "WarpCTCLoss",  # CRNN ports (yalecyu/crnn.caffe; warp-ctc ports)
       "Yolov3", "GaussianYolov3", "YoloSeg",  # eric612/MobileNet-YOLO
       "YoloV3Loss")  # synopsys-caffe and other YOLO v3 ports
def _loss(layer: LayerContext) -> list[Shape | Unknown]:
    """A loss is a scalar (zero axes)."""
    return [()]


@rule("LabelSpecificAdd")
def _label_specific_add(layer: LayerContext) -> list[Shape | Unknown]:
    """AM-Softmax's additive margin (happynear/AMSoftmax, caffe-windows): bottoms the scores and the labels;
    the top is shaped like the scores, an optional second top holds the margin, (1,)."""
    return [layer.bottom(0), (1,)][: layer.num_tops]


@rule("SoftmaxWithLoss", "InfogainLoss")
def _softmax_loss(layer: LayerContext) -> list[Shape | Unknown]:
    """The loss, and with a second top the probabilities shaped like the scores."""
    return [(), *[layer.bottom(0)] * (layer.num_tops - 1)]


@rule("Accuracy")
def _accuracy(layer: LayerContext) -> list[Shape | Unknown]:
    if layer.num_tops < 2:
        return [()]
    shape = layer.bottom(0)
    return [(), (shape[layer.axis(layer.param.accuracy_param.axis, shape)],)]


@rule("SegAccuracy")
def _seg_accuracy(layer: LayerContext) -> list[Shape | Unknown]:
    """DeepLab's segmentation accuracy: (1, 1, 1, 3)."""
    return [(1, 1, 1, 3)]


@rule("Permute")
def _permute(layer: LayerContext) -> list[Shape | Unknown]:
    shape = layer.bottom(0)
    order = list(layer.sub("permute_param").order)
    layer.check(all(0 <= o < len(shape) for o in order), f"order {order} out of range for {shape}")
    layer.check(len(set(order)) == len(order), f"order {order} has duplicates")
    order += [i for i in range(len(shape)) if i not in order]
    return [tuple(shape[o] for o in order)]
