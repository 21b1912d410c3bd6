"""Whole-net shape inference: every learnable blob of a net, with the filler Caffe would run on it.

:func:`infer_shapes` walks a current-format ``NetParameter`` the way Caffe's ``Net::Init`` does: layers are
filtered by their include/exclude rules against the net state (``StateMeetsRule``), then set up in prototxt
order, each top blob shaped by the rules of the layer's ``LayerSetUp``/``Reshape`` in BVLC Caffe (and in the
forks whose layers the corpus uses: SSD, Faster R-CNN, DeepLab, SegNet/ENet, ShuffleNet, MobileNet, SENet).

Blob names resolve as in Caffe: a bottom names the latest top of that name, so an in-place layer
(``top == bottom``) or a later layer reusing a top name replaces the earlier blob.  Shapes that only real data
could tell (a database, an image list, an HDF5 file, a ``Python`` layer) are *unknown*; they flow through
parameter-free layers and only raise :class:`ShapeError` when a layer with learnable blobs needs them, naming
both layers and how to give the shape (``inputs=`` / ``--input NAME=D0,D1,...``).

What the data layers tell without their data:

- ``Input``, ``DummyData``, ``MemoryData``, ``Parameter``: everything, from their parameters.
- ``Data``, ``WindowData`` and SSD's ``AnnotatedData``: the batch size; the height and width when
  ``transform_param`` crops (``crop_size``; SSD also ``crop_h``/``crop_w`` or a WARP / FIT_LARGE_SIZE_AND_PAD
  ``resize_param``); the channel count only when ``transform_param`` lists one ``mean_value`` per channel
  (Caffe accepts one mean value or exactly one per channel).  Labels are ``(batch,)`` (SSD's: unknown).
- ``ImageData`` and the segmentation forks' ``ImageSegData``/``DenseImageData``: 3 channels (``is_color``)
  or 1, the size from ``crop_size``, else ``new_height``/``new_width``.
- ``HDF5Data`` and ``Python`` layers: nothing.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from fillers.caffe_pb2 import (
    FillerParameter,
    LayerParameter,
    NetParameter,
    NetState,
    NetStateRule,
    PoolingParameter,
)
from fillers._params import resolve
from fillers.errors import ShapeError
from fillers.io import blob_array
from fillers.prototxt import load_net
from fillers.upgrade import net_needs_upgrade, upgrade_net

__all__ = ["BlobSpec", "FillStep", "LayerBlobs", "ShapeError", "infer_shapes"]

_INT_MAX = 2**31 - 1
_MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

Shape = tuple[int, ...]


@dataclass(frozen=True)
class BlobSpec:
    """One learnable blob of a layer.

    Attributes
    ----------
    shape : tuple of int
        The blob shape (``()`` is a blob with zero axes and one value, e.g. a shared PReLU slope).
    filler : FillerParameter or None
        The filler Caffe runs on this blob, defaults filled in (a missing filler is ``constant`` 0);
        ``None`` when the layer's setup writes the initial values itself, without a filler (they are in
        :attr:`LayerBlobs.given`; e.g. CRF-as-RNN's kernel weights).
    param_name : str
        The layer's ``param { name }`` for this blob, or ``""``.
    share_owner : tuple of (str, int) or None
        ``(layer name, blob index)`` of the blob this one shares by ``param`` name; ``None`` for an owner.
    """

    shape: Shape
    filler: FillerParameter | None
    param_name: str = ""
    share_owner: tuple[str, int] | None = None


@dataclass(frozen=True)
class FillStep:
    """One filler run in the layer's setup, in Caffe's order.

    ``blob`` is the index of the blob the run produces, or ``None`` for a run whose values Caffe discards
    (an unrolled LSTM/RNN runs its shared recurrent filler once per timestep; only the first is kept).
    """

    blob: int | None
    shape: Shape
    filler: FillerParameter


@dataclass(frozen=True)
class LayerBlobs:
    """A layer with learnable blobs.

    Attributes
    ----------
    name, type : str
        The layer's name and type.
    blobs : list of BlobSpec
        Its learnable blobs, in Caffe's order (weight before bias).
    fills : tuple of FillStep
        The filler runs of its setup in Caffe's order (one per blob, except for recurrent layers).
    raw_draws_before : int
        How many raw 32-bit words Caffe takes from its global random stream (``caffe_rng_rand()``) between
        the setup of the previous listed layer and this one: the seeds that data layers draw in setup.
    given : tuple of numpy.ndarray
        Values written in the net itself (``LayerParameter.blobs``): Caffe uses them and skips the layer's
        fillers (a recurrent layer still builds, and so fills, its unrolled net first).  Otherwise, for a
        layer whose setup writes its blobs' initial values itself (blob fillers ``None``), those values.
    """

    name: str
    type: str
    blobs: list[BlobSpec]
    fills: tuple[FillStep, ...] = ()
    raw_draws_before: int = 0
    given: tuple[np.ndarray, ...] = ()


# ----------------------------------------------------------------------------------------------------------
# Unknown shapes


@dataclass(frozen=True)
class _Unknown:
    """The shape of a blob that only data could tell: ``origin`` says which layer made it and why, ``blob``
    names that layer's top (filled in when the top is stored)."""

    origin: str
    blob: str = ""


class _NeedsUnknown(Exception):
    """Raised by a layer rule that asked for a bottom shape nobody can know."""

    def __init__(self, bottom: str, unknown: _Unknown):
        super().__init__(bottom)
        self.bottom = bottom
        self.unknown = unknown


def _hint(blob: str) -> str:
    return f"give its shape with inputs={{{blob!r}: (D0, D1, ...)}} (command line: --input {blob}=D0,D1,...)"


# ----------------------------------------------------------------------------------------------------------
# The per-layer context handed to the rules


@dataclass
class _Layer:
    """A layer being set up: its parameters, bottom shapes and what its rule produced."""

    param: LayerParameter
    phase: int
    bottom_names: list[str]
    _bottoms: list[Shape | _Unknown]
    blobs: list[tuple[Shape, FillerParameter | None]] = field(default_factory=list)
    fills: list[FillStep] | None = None  # None: one run per blob with a filler, in blob order
    raw_draws: int = 0
    written: list[Callable[[], np.ndarray]] = field(default_factory=list)

    # -- errors and parameters ------------------------------------------------------------------------
    def error(self, message: str) -> ShapeError:
        return ShapeError(f"layer {self.param.name!r} ({self.param.type}): {message}", layer=self.param.name)

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.error(message)

    def sub(self, field_name: str) -> Any:
        """The layer's ``field_name`` message (fork fields need a schema that has them)."""
        if field_name not in LayerParameter.DESCRIPTOR.fields_by_name:
            raise self.error(f"the schema has no LayerParameter.{field_name}, which this layer type needs")
        return getattr(self.param, field_name)

    # -- bottoms ------------------------------------------------------------------------------------------
    @property
    def num_bottoms(self) -> int:
        return len(self._bottoms)

    @property
    def num_tops(self) -> int:
        return len(self.param.top)

    def bottom(self, i: int = 0) -> Shape:
        """The shape of bottom ``i`` (raises :class:`_NeedsUnknown` when nobody can know it)."""
        self.check(i < len(self._bottoms), f"needs at least {i + 1} bottom blob(s), has {len(self._bottoms)}")
        shape = self._bottoms[i]
        if isinstance(shape, _Unknown):
            raise _NeedsUnknown(self.bottom_names[i], shape)
        return shape

    # -- Blob helpers, as Caffe's Blob computes them ----------------------------------------------------
    def axis(self, axis: int, shape: Shape) -> int:
        """``Blob::CanonicalAxisIndex``."""
        n = len(shape)
        self.check(-n <= axis < n, f"axis {axis} out of range for a {n}-axis blob {shape}")
        return axis + n if axis < 0 else axis

    def legacy(self, shape: Shape, index: int) -> int:
        """``Blob::LegacyShape`` (num/channels/height/width accessors: at most 4 axes, missing ones are 1)."""
        self.check(len(shape) <= 4, f"needs a blob with at most 4 axes (legacy accessors), got {shape}")
        if index >= len(shape) or index < -len(shape):
            return 1
        return shape[index]

    def nchw(self, shape: Shape) -> Shape:
        return tuple(self.legacy(shape, i) for i in range(4))

    def shape(self, dims: Iterable[int]) -> Shape:
        """``Blob::Reshape`` checks: at most 32 axes, dims >= 0, count <= INT_MAX."""
        dims = tuple(int(d) for d in dims)
        self.check(len(dims) <= _MAX_BLOB_AXES, f"a blob may have at most {_MAX_BLOB_AXES} axes, got {dims}")
        count = 1
        for d in dims:
            self.check(d >= 0, f"computed a negative blob dimension: {dims}")
            if count != 0:
                self.check(d <= _INT_MAX // count, f"blob {dims} has more than INT_MAX elements")
            count *= d
        return dims

    # -- learnable blobs ----------------------------------------------------------------------------------
    def add_blob(self, dims: Iterable[int], filler: FillerParameter) -> None:
        self.blobs.append((self.shape(dims), _copy_filler(filler)))

    def add_written_blob(self, dims: Iterable[int], values: Callable[[], np.ndarray]) -> None:
        """A blob whose initial values the setup writes itself: no filler runs and nothing is drawn.

        ``values()`` makes them (shaped ``dims``); it is only called when the net does not give the blob's
        values (then Caffe skips the initialization).  A layer's blobs are all written or all filled.
        """
        self.blobs.append((self.shape(dims), None))
        self.written.append(values)


def _count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    return math.prod(shape[start:end])


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _copy_filler(filler: FillerParameter) -> FillerParameter:
    out = FillerParameter()
    out.CopyFrom(filler)
    return out


def _constant(value: float) -> FillerParameter:
    return FillerParameter(type="constant", value=value)


Rule = Callable[[_Layer], list[Shape | _Unknown]]
_RULES: dict[str, Rule] = {}
#: Layer types that create learnable blobs: an unknown bottom shape there is an error.
_LEARNABLE: set[str] = set()


def _rule(*types: str, learnable: bool = False) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for name in types:
            _RULES[name] = fn
            if learnable:
                _LEARNABLE.add(name)
        return fn

    return register


# ----------------------------------------------------------------------------------------------------------
# Data and input layers


def _needs_rand(layer: _Layer) -> bool:
    """``DataTransformer::InitRand``: a transformer seeds its own RNG when it mirrors or crops in TRAIN."""
    tp = layer.param.transform_param
    return bool(tp.mirror or (layer.phase == 0 and tp.crop_size))  # Phase TRAIN = 0


def _prefetch_draws(layer: _Layer, setup_draws: int = 0) -> None:
    """Seeds a prefetching data layer draws: InitRand, its own setup, InitRand again, the thread's seed."""
    layer.raw_draws = 2 * _needs_rand(layer) + setup_draws + 1


def _channels_from_means(layer: _Layer, what: str) -> int:
    """The channel count a data layer's ``transform_param`` pins down: Caffe requires one mean value or
    one per channel, so two or more mean values give the channel count."""
    tp = layer.param.transform_param
    if len(tp.mean_value) > 1:
        return len(tp.mean_value)
    raise layer.error(
        f"the number of channels of top {layer.param.top[0]!r} comes from {what}; "
        "only a transform_param with one mean_value per channel tells it here"
    )


def _data_top(layer: _Layer, batch: int, channels: int, what: str) -> Shape:
    crop = layer.param.transform_param.crop_size
    layer.check(crop > 0, f"the height and width of top {layer.param.top[0]!r} come from {what} "
                          "(no transform_param crop_size)")
    return layer.shape((batch, channels, crop, crop))


def _unknown_tops(layer: _Layer, why: str) -> list[Shape | _Unknown]:
    return [_Unknown(f"layer {layer.param.name!r} ({layer.param.type}): {why}")] * layer.num_tops


def _guarded(layer: _Layer, make: Callable[[], Shape]) -> Shape | _Unknown:
    try:
        return make()
    except ShapeError as err:
        return _Unknown(str(err))


@_rule("Input")
def _input(layer: _Layer) -> list[Shape | _Unknown]:
    shapes = layer.param.input_param.shape
    layer.check(len(shapes) in (0, 1, layer.num_tops),
                f"input_param has {len(shapes)} shapes for {layer.num_tops} tops (want 0, 1 or one per top)")
    if not shapes:
        return _unknown_tops(layer, "input_param gives no shape")
    return [layer.shape(shapes[0 if len(shapes) == 1 else i].dim) for i in range(layer.num_tops)]


@_rule("DummyData")
def _dummy_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.dummy_data_param
    n = layer.num_tops
    layer.check(len(p.data_filler) in (0, 1, n), "needs 0, 1 or one data_filler per top")
    legacy = [p.num, p.channels, p.height, p.width]
    if any(len(f) for f in legacy):
        layer.check(not p.shape, "both shape and num/channels/height/width are given")
        for f, name in zip(legacy, ("num", "channels", "height", "width")):
            layer.check(len(f) in (1, n), f"'{name}' must be given once or once per top")
        return [layer.shape(f[0 if len(f) == 1 else i] for f in legacy) for i in range(n)]
    layer.check(len(p.shape) in (1, n), "'shape' must be given once or once per top")
    return [layer.shape(p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]


@_rule("MemoryData")
def _memory_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.memory_data_param
    layer.raw_draws = int(_needs_rand(layer))
    layer.check(p.batch_size * p.channels * p.height * p.width > 0,
                "batch_size, channels, height and width must be positive")
    return [layer.shape((p.batch_size, p.channels, p.height, p.width)), (p.batch_size,)]


@_rule("Data")
def _data(layer: _Layer) -> list[Shape | _Unknown]:
    _prefetch_draws(layer)
    batch = layer.param.data_param.batch_size
    what = f"the records of database {layer.param.data_param.source!r}"
    data = _guarded(layer, lambda: _data_top(layer, batch, _channels_from_means(layer, what), what))
    return [data, (batch,)][: layer.num_tops]


@_rule("ImageData")
def _image_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.image_data_param
    _prefetch_draws(layer, int(p.shuffle) + int(p.rand_skip > 0))
    layer.check((p.new_height == 0 and p.new_width == 0) or (p.new_height > 0 and p.new_width > 0),
                "new_height and new_width must be set together")
    channels = 3 if p.is_color else 1
    crop = layer.param.transform_param.crop_size
    if crop:
        data: Shape | _Unknown = layer.shape((p.batch_size, channels, crop, crop))
    elif p.new_height:
        data = layer.shape((p.batch_size, channels, p.new_height, p.new_width))
    else:
        data = _Unknown(f"layer {layer.param.name!r} (ImageData): the image size comes from the images "
                        f"listed in {p.source!r} (no crop_size, new_height or new_width)")
    return [data, (p.batch_size,)]


@_rule("WindowData")
def _window_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.window_data_param
    tp = layer.param.transform_param
    _prefetch_draws(layer, int(bool(tp.mirror or tp.crop_size)))
    what = f"the window file {p.source!r}"
    data = _guarded(layer, lambda: _data_top(layer, p.batch_size, _channels_from_means(layer, what), what))
    return [data, (p.batch_size,)]


def _fork_field(message: Any, name: str, default: Any = None) -> Any:
    """A field that only fork schemas have (``default`` when this schema lacks it or it is unset)."""
    if name in message.DESCRIPTOR.fields_by_name and message.HasField(name):
        return getattr(message, name)
    return default


@_rule("AnnotatedData")
def _annotated_data(layer: _Layer) -> list[Shape | _Unknown]:
    """SSD's data layer: like Data, with the image size also fixed by a WARP or FIT_LARGE_SIZE_AND_PAD
    resize; the label's row count depends on the boxes of the first record."""
    _prefetch_draws(layer)
    tp = layer.param.transform_param
    batch = layer.param.data_param.batch_size
    what = f"the records of database {layer.param.data_param.source!r}"

    def data() -> Shape:
        channels = _channels_from_means(layer, what)
        crop_h = tp.crop_size or _fork_field(tp, "crop_h", 0)
        crop_w = tp.crop_size or _fork_field(tp, "crop_w", 0)
        resize = _fork_field(tp, "resize_param")
        if resize is not None and resize.resize_mode != resize.FIT_SMALL_SIZE:
            crop_h, crop_w = crop_h or resize.height, crop_w or resize.width
        layer.check(crop_h > 0 and crop_w > 0, f"the image size comes from {what} (no crop or fixed resize)")
        return layer.shape((batch, channels, crop_h, crop_w))

    label = _Unknown(f"layer {layer.param.name!r} (AnnotatedData): the label rows are the boxes of a record")
    return [_guarded(layer, data), label][: layer.num_tops]


def _segmentation_data(layer: _Layer, p: Any, crop_hw: tuple[int, int]) -> Shape | _Unknown:
    """DeepLab's ImageSegData / SegNet's DenseImageData: image size from crop, else from new_height/width."""
    layer.check((p.new_height == 0) == (p.new_width == 0), "new_height and new_width must be set together")
    _prefetch_draws(layer, int(p.shuffle) + int(p.rand_skip > 0))
    crop = layer.param.transform_param.crop_size
    h, w = (crop, crop) if crop else crop_hw if crop_hw[0] else (p.new_height, p.new_width)
    if not h:
        return _Unknown(f"layer {layer.param.name!r} ({layer.param.type}): the image size comes from the "
                        f"images listed in {p.source!r} (no crop_size, new_height or new_width)")
    return layer.shape((p.batch_size, 3 if p.is_color else 1, h, w))


def _label_like(layer: _Layer, data: Shape | _Unknown) -> Shape | _Unknown:
    return data if isinstance(data, _Unknown) else (data[0], 1, *data[2:])


@_rule("ImageSegData")
def _image_seg_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.image_data_param
    data = _segmentation_data(layer, p, (0, 0))
    return [data, _label_like(layer, data), (p.batch_size, 1, 1, 2)][: layer.num_tops]


@_rule("DenseImageData")
def _dense_image_data(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.sub("dense_image_data_param")
    data = _segmentation_data(layer, p, (p.crop_height, p.crop_width))
    return [data, _label_like(layer, data)][: layer.num_tops]


@_rule("HDF5Data")
def _hdf5_data(layer: _Layer) -> list[Shape | _Unknown]:
    return _unknown_tops(layer, f"its shapes come from the HDF5 files listed in "
                                f"{layer.param.hdf5_data_param.source!r}")


@_rule("Python")
def _python(layer: _Layer) -> list[Shape | _Unknown]:
    p = layer.param.python_param
    return _unknown_tops(layer, f"a Python layer ({p.module}.{p.layer}) shapes its tops at run time")


@_rule("SpatialPyramidPoolingData")
def _spatial_pyramid_pooling_data(layer: _Layer) -> list[Shape | _Unknown]:
    """BVLC/caffe pull 601: region features and labels read from a database and a regions file (its setup
    draws no seed)."""
    p = layer.sub("spatial_pyramid_pooling_data_param")
    names = ", ".join(f"{name} {getattr(p, name)!r}" for name in ("features_source", "regions_source")
                      if getattr(p, name))
    return _unknown_tops(layer, "its region features and labels come from a feature database and a regions "
                                "file" + (f" ({names})" if names else ""))


@_rule("Import")
def _import(layer: _Layer) -> list[Shape | _Unknown]:
    """BVLC/caffe pull 1290: Caffe replaces the layer by the layers of another net file."""
    raise layer.error("the layers it stands for cannot be known from the net: Caffe replaces an Import layer "
                      "by the layers of the net file its import_param names (learnable ones included), read "
                      "when the net is built; put those layers in the net instead")


# ----------------------------------------------------------------------------------------------------------
# Convolution family


#: ConvolutionParameter's repeated N-D fields and their 2-D ``_h``/``_w`` alternatives.
_HW = {"kernel_size": ("kernel_h", "kernel_w"), "stride": ("stride_h", "stride_w"), "pad": ("pad_h", "pad_w")}


def _repeated(layer: _Layer, cp: Any, name: str, nsp: int, default: int | None) -> list[int]:
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


def _conv_geometry(layer: _Layer, shape: Shape, min_spatial: int = 0) -> _ConvGeometry:
    """``BaseConvolutionLayer::LayerSetUp`` / ``Im2colLayer::LayerSetUp``: the N-D geometry."""
    cp = layer.param.convolution_param
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
    return _cdiv(size + 2 * pad - (dilation * (kernel - 1) + 1), stride) + 1


def _deconv_out(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _conv_blobs(layer: _Layer, weight: Sequence[int], bias: int) -> None:
    cp = layer.param.convolution_param
    layer.add_blob(weight, cp.weight_filler)
    if cp.bias_term:
        layer.add_blob((bias,), cp.bias_filler)


def _base_conv(layer: _Layer, out: Callable[[int, int, int, int, int], int], reverse: bool) -> list[Shape]:
    """Convolution and Deconvolution: every bottom must have bottom 0's shape; one top per bottom."""
    cp = layer.param.convolution_param
    shape = layer.bottom(0)
    geo = _conv_geometry(layer, shape)
    channels = shape[geo.channel_axis]
    num_output, group = cp.num_output, cp.group
    layer.check(num_output > 0, "num_output must be positive")
    layer.check(group > 0 and channels % group == 0, f"{channels} input channels are not divisible by group {group}")
    layer.check(num_output % group == 0, f"num_output {num_output} is not divisible by group {group}")
    out_ch, in_ch = (channels, num_output) if reverse else (num_output, channels)
    _conv_blobs(layer, (out_ch, in_ch // group, *geo.kernel), num_output)
    for i in range(1, layer.num_bottoms):
        layer.check(layer.bottom(i) == shape, f"bottom {i} {layer.bottom(i)} differs from bottom 0 {shape}")
    spatial = shape[geo.channel_axis + 1:]
    top = layer.shape((*shape[:geo.channel_axis], num_output,
                       *(out(spatial[i], geo.kernel[i], geo.stride[i], geo.pad[i], geo.dilation[i])
                         for i in range(len(spatial)))))
    return [top] * layer.num_bottoms


@_rule("Convolution", "DepthwiseConvolution", learnable=True)
def _convolution(layer: _Layer) -> list[Shape | _Unknown]:
    return list(_base_conv(layer, _conv_out, reverse=False))


@_rule("Deconvolution", learnable=True)
def _deconvolution(layer: _Layer) -> list[Shape | _Unknown]:
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


@_rule("ConvolutionDepthwise", learnable=True)
def _convolution_depthwise(layer: _Layer) -> list[Shape | _Unknown]:
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


@_rule("Im2col")
def _im2col(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    geo = _conv_geometry(layer, shape, min_spatial=1)
    top = list(shape)
    for i in range(len(geo.kernel)):
        top[geo.channel_axis] *= geo.kernel[i]
        axis = geo.channel_axis + i + 1
        top[axis] = _conv_out(shape[axis], geo.kernel[i], geo.stride[i], geo.pad[i], geo.dilation[i])
    return [layer.shape(top)]


# ----------------------------------------------------------------------------------------------------------
# Pooling


def _pool_out(size: int, kernel: int, stride: int, pad: int, ceil: bool, padded: bool) -> int:
    """Caffe's pooled size: float division rounded by round_mode, then, when the layer has any padding
    (``padded``: pad_h or pad_w, on either axis), the clip of a last window that starts in the padding."""
    ratio = np.float32(size + 2 * pad - kernel) / np.float32(stride)
    pooled = int(np.ceil(ratio) if ceil else np.floor(ratio)) + 1
    if padded and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _pool_params(layer: _Layer, pp: Any, h: int, w: int) -> tuple[int, int, int, int, int, int]:
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
    if ph or pw:
        layer.check(pp.pool in (pp.MAX, pp.AVE), "padding is implemented only for average and max pooling")
        layer.check(ph < kh and pw < kw, f"pad ({ph}, {pw}) must be smaller than the kernel ({kh}, {kw})")
    return kh, kw, ph, pw, sh, sw


def _pool_shape(layer: _Layer, pp: Any, shape: Shape) -> Shape:
    layer.check(len(shape) == 4, f"input must have 4 axes (num, channels, height, width), got {shape}")
    n, c, h, w = shape
    kh, kw, ph, pw, sh, sw = _pool_params(layer, pp, h, w)
    ceil = pp.round_mode == pp.CEIL
    padded = bool(ph or pw)  # Caffe clips and checks both axes when either has padding
    out_h, out_w = _pool_out(h, kh, sh, ph, ceil, padded), _pool_out(w, kw, sw, pw, ceil, padded)
    layer.check(not padded or (out_h - 1) * sh < h + ph, "the last pooling window starts in the padding")
    layer.check(not padded or (out_w - 1) * sw < w + pw, "the last pooling window starts in the padding")
    return layer.shape((n, c, out_h, out_w))


@_rule("Pooling")
def _pooling(layer: _Layer) -> list[Shape | _Unknown]:
    top = _pool_shape(layer, layer.param.pooling_param, layer.bottom(0))
    return [top] * layer.num_tops


@_rule("SPP")
def _spp(layer: _Layer) -> list[Shape | _Unknown]:
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
    return [layer.shape((n, sum(_count(o, 1) for o in outs)))]


@_rule("SpatialPyramidPooling")
def _spatial_pyramid_pooling(layer: _Layer) -> list[Shape | _Unknown]:
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
        total += _count(pooled, 1)
    return [layer.shape((n, total, 1, 1))]


# ----------------------------------------------------------------------------------------------------------
# Fully connected, embedding, normalization, scaling


@_rule("InnerProduct", learnable=True)
def _inner_product(layer: _Layer) -> list[Shape | _Unknown]:
    ip = layer.param.inner_product_param
    shape = layer.bottom(0)
    axis = layer.axis(ip.axis, shape)
    k, n = _count(shape, axis), ip.num_output
    layer.add_blob((k, n) if ip.transpose else (n, k), ip.weight_filler)
    if ip.bias_term:
        layer.add_blob((n,), ip.bias_filler)
    return [layer.shape((*shape[:axis], n))]


@_rule("Embed", learnable=True)
def _embed(layer: _Layer) -> list[Shape | _Unknown]:
    ep = layer.param.embed_param
    layer.check(ep.num_output > 0, "num_output must be positive")
    layer.check(ep.input_dim > 0, "input_dim must be positive")
    layer.add_blob((ep.input_dim, ep.num_output), ep.weight_filler)
    if ep.bias_term:
        layer.add_blob((ep.num_output,), ep.bias_filler)
    return [layer.shape((*layer.bottom(0), ep.num_output))]


@_rule("BatchNorm", learnable=True)
def _batch_norm(layer: _Layer) -> list[Shape | _Unknown]:
    """Mean, variance and the moving-average factor: zeros written by ``caffe_set``, no filler drawn."""
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    zeros = _constant(0)
    layer.add_blob((shape[1],), zeros)
    layer.add_blob((shape[1],), zeros)
    layer.add_blob((1,), zeros)
    return [shape]


def _axes_span(layer: _Layer, shape: Shape, axis: int, num_axes: int, what: str) -> Shape:
    """The part of ``shape`` a Scale/Bias blob covers: ``num_axes`` axes from ``axis`` (-1: to the end)."""
    start = layer.axis(axis, shape)
    layer.check(num_axes >= -1, "num_axes must be non-negative, or -1 to extend to the end of bottom[0]")
    if num_axes >= 0:
        layer.check(len(shape) >= start + num_axes,
                    f"{what} blob's shape extends past bottom[0]'s shape {shape} from axis {start}")
    return shape[start:] if num_axes == -1 else shape[start:start + num_axes]


def _check_operand(layer: _Layer, shape: Shape, operand: Shape, axis: int, what: str) -> None:
    """Scale/Bias ``Reshape``: the operand must match bottom[0] from the axis on (axis 0 for a scalar)."""
    start = 0 if not operand else layer.axis(axis, shape)
    layer.check(shape[start:start + len(operand)] == operand and len(shape) >= start + len(operand),
                f"{what} shape {operand} does not match bottom[0] shape {shape} from axis {start}")


@_rule("Bias", learnable=True)
def _bias(layer: _Layer) -> list[Shape | _Unknown]:
    bp = layer.param.bias_param
    shape = layer.bottom(0)
    if layer.num_bottoms == 1:
        layer.add_blob(_axes_span(layer, shape, bp.axis, bp.num_axes, "bias"), bp.filler)
    operand = layer.bottom(1) if layer.num_bottoms > 1 else layer.blobs[0][0]
    _check_operand(layer, shape, operand, bp.axis, "bias")
    return [shape]


@_rule("Scale", learnable=True)
def _scale(layer: _Layer) -> list[Shape | _Unknown]:
    """Scale (default filler constant 1), then with bias_term the internal Bias layer's blob."""
    sp = layer.param.scale_param
    shape = layer.bottom(0)
    if layer.num_bottoms == 1:
        layer.add_blob(_axes_span(layer, shape, sp.axis, sp.num_axes, "scale"),
                       sp.filler if sp.HasField("filler") else _constant(1))
        operand = layer.blobs[0][0]
    else:
        operand = layer.bottom(1)
    if sp.bias_term:
        num_axes = len(layer.bottom(1)) if layer.num_bottoms > 1 else sp.num_axes
        layer.add_blob(_axes_span(layer, shape, sp.axis, num_axes, "bias"), sp.bias_filler)
    _check_operand(layer, shape, operand, sp.axis, "scale")
    return [shape]


@_rule("PReLU", learnable=True)
def _prelu(layer: _Layer) -> list[Shape | _Unknown]:
    pp = layer.param.prelu_param
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    channels = layer.legacy(shape, 1)
    layer.add_blob(() if pp.channel_shared else (channels,), pp.filler if pp.HasField("filler") else _constant(0.25))
    return [shape]


@_rule("Normalize", learnable=True)
def _normalize(layer: _Layer) -> list[Shape | _Unknown]:
    """SSD's L2 normalization; its scale is one value when channel_shared (the default), else per channel."""
    np_ = layer.sub("norm_param")
    shape = layer.bottom(0)
    layer.check(len(shape) >= 2, f"needs a bottom with at least 2 axes, got {shape}")
    channels = layer.legacy(shape, 1)
    layer.add_blob(() if np_.channel_shared else (channels,),
                   np_.scale_filler if np_.HasField("scale_filler") else _constant(1.0))
    return [shape]


@_rule("BN", learnable=True)
def _bn(layer: _Layer) -> list[Shape | _Unknown]:
    """SegNet/ENet batch normalization: scale and shift blobs of shape (1, C, 1, 1); optional mean and
    variance tops."""
    bp = layer.sub("bn_param")
    n, c, h, w = layer.nchw(layer.bottom(0))
    layer.add_blob((1, c, 1, 1), bp.scale_filler)
    layer.add_blob((1, c, 1, 1), bp.shift_filler)
    return [(n, c, h, w), *[(1, c, 1, 1)] * (min(layer.num_tops, 3) - 1)]


@_rule("Parameter", learnable=True)
def _parameter(layer: _Layer) -> list[Shape | _Unknown]:
    """A free blob of the given shape; Caffe allocates it zeroed and runs no filler."""
    shape = layer.shape(layer.param.parameter_param.shape.dim)
    layer.add_blob(shape, _constant(0))
    return [shape]


# ----------------------------------------------------------------------------------------------------------
# Recurrent layers (unrolled nets)


def _recurrent(layer: _Layer, lstm: bool) -> list[Shape | _Unknown]:
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
    layer.add_blob((gates, _count(x, layer.axis(2, x))), rp.weight_filler)
    layer.add_blob((gates,), rp.bias_filler)
    if static:
        xs = layer.bottom(2)
        layer.check(len(xs) >= 1 and xs[0] == streams, f"bottom[2] (static input) must start with {streams}")
        layer.add_blob((gates, _count(xs, layer.axis(1, xs))), rp.weight_filler)
    fills = [FillStep(i, shape, filler) for i, (shape, filler) in enumerate(layer.blobs)]
    first = len(layer.blobs)
    per_step = [((gates, hidden), rp.weight_filler)]
    if not lstm:  # W_hh, then the output layer's W_ho and b_o
        per_step += [((hidden, hidden), rp.weight_filler), ((hidden,), rp.bias_filler)]
    for t in range(t_steps):
        for j, (shape, filler) in enumerate(per_step):
            if t == 0:
                layer.add_blob(shape, filler)
            fills.append(FillStep(first + j if t == 0 else None, shape, _copy_filler(filler)))
    layer.fills = fills
    state = (1, streams, hidden)
    for i in range(exposed):
        given = layer.bottom(2 + int(static) + i)
        layer.check(given == state, f"exposed hidden bottom {2 + int(static) + i} must be {state}, got {given}")
    return [layer.shape((t_steps, streams, hidden)), *[state] * (layer.num_tops - 1)]


@_rule("LSTM", learnable=True)
def _lstm(layer: _Layer) -> list[Shape | _Unknown]:
    return _recurrent(layer, lstm=True)


@_rule("RNN", learnable=True)
def _rnn(layer: _Layer) -> list[Shape | _Unknown]:
    return _recurrent(layer, lstm=False)


@_rule("LSTMUnit")
def _lstm_unit(layer: _Layer) -> list[Shape | _Unknown]:
    c_prev, gates = layer.bottom(0), layer.bottom(1)
    layer.check(len(c_prev) == 3 and len(gates) == 3 and gates[2] == 4 * c_prev[2],
                f"bottoms must be (1, N, H) and (1, N, 4H), got {c_prev} and {gates}")
    return [c_prev, c_prev]


# ----------------------------------------------------------------------------------------------------------
# Shape-preserving and reshaping layers


@_rule("AbsVal", "BNLL", "Clip", "Dropout", "ELU", "Exp", "Log", "Power", "ReLU", "Sigmoid", "Swish", "TanH",
       "Threshold", "Softmax", "Reverse")
def _same(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    if layer.param.type == "Softmax":
        layer.axis(layer.param.softmax_param.axis, shape)
    return [shape]


@_rule("LRN")
def _lrn(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    layer.check(layer.param.lrn_param.local_size % 2 == 1, "LRN only supports odd values for local_size")
    layer.check(len(shape) == 4, f"input must have 4 axes (num, channels, height, width), got {shape}")
    return [shape]


@_rule("MVN", "ShuffleChannel")
def _legacy_4d(layer: _Layer) -> list[Shape | _Unknown]:
    """Layers whose top is reshaped to (num, channels, height, width) of the bottom."""
    return [layer.nchw(layer.bottom(0))]


@_rule("Split")
def _split(layer: _Layer) -> list[Shape | _Unknown]:
    return [layer.bottom(0)] * layer.num_tops


@_rule("Eltwise")
def _eltwise(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    ep = layer.param.eltwise_param
    layer.check(len(ep.coeff) in (0, layer.num_bottoms), "Eltwise takes one coefficient per bottom blob")
    for i in range(1, layer.num_bottoms):
        layer.check(layer.bottom(i) == shape, f"bottom {i} {layer.bottom(i)} differs from bottom 0 {shape}")
    return [shape]


@_rule("Axpy")
def _axpy(layer: _Layer) -> list[Shape | _Unknown]:
    """SENet fork: ``a * x + y`` with a per-channel ``a``; the top is shaped like ``x``."""
    a, x, y = layer.bottom(0), layer.bottom(1), layer.bottom(2)
    layer.check(a[:2] == x[:2] and x == y, f"bottoms {a}, {x}, {y} do not fit a * x + y")
    return [x]


def _concat_axis(layer: _Layer, p: Any, legacy_field: str, shape: Shape) -> int:
    layer.check(not (p.HasField("axis") and p.HasField(legacy_field)),
                f"either axis or {legacy_field} should be specified; not both")
    if p.HasField(legacy_field):
        axis = getattr(p, legacy_field)
        layer.check(axis < len(shape), f"{legacy_field} {axis} out of range for {shape}")
        return axis
    return layer.axis(p.axis, shape)


@_rule("Concat")
def _concat(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    axis = _concat_axis(layer, layer.param.concat_param, "concat_dim", shape)
    top = list(shape)
    for i in range(1, layer.num_bottoms):
        other = layer.bottom(i)
        layer.check(len(other) == len(shape) and all(other[j] == shape[j] for j in range(len(shape)) if j != axis),
                    f"bottom {i} {other} differs from bottom 0 {shape} outside axis {axis}")
        top[axis] += other[axis]
    return [layer.shape(top)]


@_rule("Slice")
def _slice(layer: _Layer) -> list[Shape | _Unknown]:
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


@_rule("Flatten")
def _flatten(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    fp = layer.param.flatten_param
    start, end = layer.axis(fp.axis, shape), layer.axis(fp.end_axis, shape)
    return [layer.shape((*shape[:start], _count(shape, start, end + 1), *shape[end + 1:]))]


@_rule("Reshape")
def _reshape(layer: _Layer) -> list[Shape | _Unknown]:
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
        known = _count(shape[:start]) * _count(shape[end:])
        known *= math.prod(d if d > 0 else top[start + i] for i, d in enumerate(dims) if d != -1)
        total = _count(shape)
        layer.check(known != 0 and total % known == 0,
                    f"bottom count {total} is not divisible by the product of the given dimensions {known}")
        top[start + dims.index(-1)] = total // known
    top_shape = layer.shape(top)
    layer.check(_count(top_shape) == _count(shape), f"output count of {top_shape} must match input {shape}")
    return [top_shape]


@_rule("Crop")
def _crop(layer: _Layer) -> list[Shape | _Unknown]:
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


@_rule("Tile")
def _tile(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    tp = layer.param.tile_param
    axis = layer.axis(tp.axis, shape)
    layer.check(tp.HasField("tiles") and tp.tiles > 0, "the number of tiles must be given and positive")
    return [layer.shape((*shape[:axis], shape[axis] * tp.tiles, *shape[axis + 1:]))]


@_rule("Reduction")
def _reduction(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    return [shape[: layer.axis(layer.param.reduction_param.axis, shape)]]


@_rule("ArgMax")
def _argmax(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    ap = layer.param.argmax_param
    layer.check(ap.top_k >= 1, "top_k must not be less than 1")
    if ap.HasField("axis"):
        axis = layer.axis(ap.axis, shape)
        layer.check(ap.top_k <= shape[axis], "top_k must not exceed the dimension of the axis")
        return [layer.shape((*shape[:axis], ap.top_k, *shape[axis + 1:]))]
    layer.check(ap.top_k <= _count(shape, 1), "top_k must not exceed the flattened size of one instance")
    top = [1] * max(len(shape), 3)
    top[0], top[2] = shape[layer.axis(0, shape)], ap.top_k
    if ap.out_max_val:
        top[1] = 2
    return [layer.shape(top)]


@_rule("BatchReindex")
def _batch_reindex(layer: _Layer) -> list[Shape | _Unknown]:
    shape, index = layer.bottom(0), layer.bottom(1)
    layer.check(len(index) == 1, f"the index bottom must have 1 axis, got {index}")
    return [(index[0], *shape[1:])]


@_rule("Filter")
def _filter(layer: _Layer) -> list[Shape | _Unknown]:
    """At setup Caffe passes every item (the selector's values only matter at run time)."""
    layer.check(layer.num_tops == layer.num_bottoms - 1, "needs one top per filtered bottom")
    selector = layer.bottom(layer.num_bottoms - 1)
    tops = []
    for i in range(layer.num_tops):
        shape = layer.bottom(i)
        layer.check(shape[:1] == selector[:1], f"bottom {i} {shape} and the selector {selector} differ in axis 0")
        tops.append((layer.bottom(0)[0], *shape[1:]))
    return tops


@_rule("Silence", "HDF5Output", "MatWrite")
def _no_tops(layer: _Layer) -> list[Shape | _Unknown]:
    return []


# ----------------------------------------------------------------------------------------------------------
# Losses and accuracy


@_rule("ContrastiveLoss", "EuclideanLoss", "HingeLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss",
       "SmoothL1Loss", "MultiBoxLoss", "CTCLoss", "L1Loss", "RegionLoss")
def _loss(layer: _Layer) -> list[Shape | _Unknown]:
    """A loss is a scalar (zero axes)."""
    return [()]


@_rule("SoftmaxWithLoss", "InfogainLoss")
def _softmax_loss(layer: _Layer) -> list[Shape | _Unknown]:
    """The loss, and with a second top the probabilities shaped like the scores."""
    return [(), *[layer.bottom(0)] * (layer.num_tops - 1)]


@_rule("Accuracy")
def _accuracy(layer: _Layer) -> list[Shape | _Unknown]:
    if layer.num_tops < 2:
        return [()]
    shape = layer.bottom(0)
    return [(), (shape[layer.axis(layer.param.accuracy_param.axis, shape)],)]


@_rule("SegAccuracy")
def _seg_accuracy(layer: _Layer) -> list[Shape | _Unknown]:
    """DeepLab's segmentation accuracy: (1, 1, 1, 3)."""
    return [(1, 1, 1, 3)]


@_rule("DetectionEvaluate")
def _detection_evaluate(layer: _Layer) -> list[Shape | _Unknown]:
    """SSD's evaluation: its row count depends on the detections and labels at run time."""
    return _unknown_tops(layer, "its rows depend on the detections and labels at run time")


# ----------------------------------------------------------------------------------------------------------
# Fork layers that shape their tops (SSD, Faster R-CNN, DeepLab, SegNet)


@_rule("Permute")
def _permute(layer: _Layer) -> list[Shape | _Unknown]:
    shape = layer.bottom(0)
    order = list(layer.sub("permute_param").order)
    layer.check(all(0 <= o < len(shape) for o in order), f"order {order} out of range for {shape}")
    layer.check(len(set(order)) == len(order), f"order {order} has duplicates")
    order += [i for i in range(len(shape)) if i not in order]
    return [tuple(shape[o] for o in order)]


def _aspect_ratios(pp: Any) -> list[np.float32]:
    """PriorBox's aspect ratios: 1, then each new one (and its inverse when flip), in float as SSD keeps them."""
    ratios = [np.float32(1.0)]
    for ar in (np.float32(a) for a in pp.aspect_ratio):
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if pp.flip:
            ratios.append(np.float32(1.0 / float(ar)))
    return ratios


@_rule("PriorBox")
def _prior_box(layer: _Layer) -> list[Shape | _Unknown]:
    pp = layer.sub("prior_box_param")
    layer.check(len(pp.min_size) > 0, "must provide min_size")
    layer.check(not pp.max_size or len(pp.max_size) == len(pp.min_size), "needs one max_size per min_size")
    num_priors = len(_aspect_ratios(pp)) * len(pp.min_size) + len(pp.max_size)
    _, _, h, w = layer.nchw(layer.bottom(0))
    return [layer.shape((1, 2, h * w * num_priors * 4))]


@_rule("DetectionOutput")
def _detection_output(layer: _Layer) -> list[Shape | _Unknown]:
    """(1, 1, kept detections, 7); at setup Caffe shapes it for one detection."""
    dp = layer.sub("detection_output_param")
    if dp.visualize:
        layer.raw_draws = int(_needs_rand(layer))
    return [(1, 1, 1, 7)]


@_rule("ROIPooling")
def _roi_pooling(layer: _Layer) -> list[Shape | _Unknown]:
    rp = layer.sub("roi_pooling_param")
    layer.check(rp.pooled_h > 0 and rp.pooled_w > 0, "pooled_h and pooled_w must be positive")
    channels = layer.legacy(layer.bottom(0), 1)
    return [layer.shape((layer.legacy(layer.bottom(1), 0), channels, rp.pooled_h, rp.pooled_w))]


@_rule("Interp")
def _interp(layer: _Layer) -> list[Shape | _Unknown]:
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
            out_h, out_w = _cdiv(out_h - 1, ip.shrink_factor) + 1, _cdiv(out_w - 1, ip.shrink_factor) + 1
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


@_rule("Padding")
def _padding(layer: _Layer) -> list[Shape | _Unknown]:
    """DeepLab v1: pads (or, negative, crops) height and width by pad_beg + pad_end."""
    pp = layer.sub("padding_param")
    layer.check(pp.pad_beg * pp.pad_end >= 0, "padding must either be both positive or negative")
    n, c, h, w = layer.nchw(layer.bottom(0))
    out_h, out_w = h + pp.pad_beg + pp.pad_end, w + pp.pad_beg + pp.pad_end
    layer.check(out_h > 0 and out_w > 0, "padding makes the height or width <= 0")
    return [(n, c, out_h, out_w)]


@_rule("Upsample")
def _upsample(layer: _Layer) -> list[Shape | _Unknown]:
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


#: Half a unit in the last place above float's largest value: from here on a float rounds to infinity.
_FLT_OVERFLOW = Fraction(2**128 - 2**103)
_STRTOF = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?"
                     r"|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan(?:\(\w*\))?))", re.IGNORECASE)


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
    exact = Fraction(float.fromhex(text)) if "x" in text.lower() else Fraction(text)
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


def _diagonal(layer: _Layer, field_name: str, channels: int) -> np.ndarray:
    """CRF-as-RNN's ``read_into_the_diagonal``: the first ``channels`` values of a string split at each
    single space (``getline(..., ' ')``), each read by ``std::stof``, on the diagonal of a zero
    (1, 1, channels, channels) blob."""
    text = getattr(layer.sub("multi_stage_meanfield_param"), field_name)
    tokens = text.split(" ")[:-1] if text.endswith(" ") or not text else text.split(" ")
    layer.check(len(tokens) >= channels, f"{field_name} {text!r} has {len(tokens)} values for {channels} classes")
    out = np.zeros((1, 1, channels, channels), np.float32)
    for i, token in enumerate(tokens[:channels]):
        value = _stof(token)
        layer.check(value is not None, f"{field_name} {text!r}: {token!r} is not a float")
        out[0, 0, i, i] = value
    return out


@_rule("MultiStageMeanfield", learnable=True)
def _multi_stage_meanfield(layer: _Layer) -> list[Shape | _Unknown]:
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
    layer.add_written_blob((1, 1, c, c), lambda: _diagonal(layer, "spatial_filter_weights_str", c))
    layer.add_written_blob((1, 1, c, c), lambda: _diagonal(layer, "bilateral_filter_weights_str", c))
    layer.add_written_blob((1, 1, c, c), lambda: np.diag(np.full(c, -1, np.float32)).reshape(1, 1, c, c))
    return [(n, c, h, w)]


@_rule("Reorg")
def _reorg(layer: _Layer) -> list[Shape | _Unknown]:
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


@_rule("EvalDetection")
def _eval_detection(layer: _Layer) -> list[Shape | _Unknown]:
    """Intel caffe's YOLO evaluation: per item the ground-truth count of each class, then (label, score,
    tp, fp) for every box of the side x side grid."""
    ep = layer.sub("eval_detection_param")
    shape = layer.bottom(0)
    expected = ep.side * ep.side * ep.num_object * (ep.num_class + 5)
    layer.check(_count(shape, 1) == expected,
                f"bottom 0 {shape} must hold side*side*num_object*(num_class + 5) = {expected} values per item")
    return [layer.shape((layer.legacy(shape, 0), ep.num_class + ep.side * ep.side * ep.num_object * 4))]


# ----------------------------------------------------------------------------------------------------------
# The walk


def _phase(phase: Any) -> int:
    if isinstance(phase, str) and phase.upper() in ("TRAIN", "TEST"):
        return 0 if phase.upper() == "TRAIN" else 1
    if phase in (0, 1) and not isinstance(phase, bool):
        return int(phase)
    raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")


def _state_meets_rule(state: NetState, rule: NetStateRule) -> bool:
    """Caffe's ``Net::StateMeetsRule``."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stage for stage in rule.stage):
        return False
    return not any(stage in state.stage for stage in rule.not_stage)


def _included(layer: LayerParameter, state: NetState) -> bool:
    """Caffe's ``Net::FilterNet`` for one layer."""
    if layer.include and layer.exclude:
        raise ShapeError(f"layer {layer.name!r}: specify either include rules or exclude rules; not both")
    if not layer.include:
        return not any(_state_meets_rule(state, rule) for rule in layer.exclude)
    return any(_state_meets_rule(state, rule) for rule in layer.include)


def _check_inputs(inputs: Mapping[str, Sequence[int]] | None) -> dict[str, Shape]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of top name to shape, not {type(inputs).__name__}")
    out = {}
    for name, shape in inputs.items():
        if not isinstance(name, str):
            raise TypeError(f"inputs keys must be top names (str), got {name!r}")
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise TypeError(f"inputs[{name!r}] must be a sequence of ints, got {shape!r}") from None
        if any(d < 0 for d in dims) or any(int(d) != d for d in shape):
            raise ValueError(f"inputs[{name!r}] must hold non-negative integers, got {tuple(shape)!r}")
        out[name] = dims
    return out


def _as_net(net: Any) -> NetParameter:
    """A current-format NetParameter from a message or a prototxt path (older formats are upgraded)."""
    if isinstance(net, (str, os.PathLike)):
        return load_net(net)
    if not isinstance(net, NetParameter):
        raise TypeError(f"net must be a NetParameter or a prototxt path, not {type(net).__name__}")
    return upgrade_net(net) if net_needs_upgrade(net) else net


def _layer_blobs(layer: _Layer, owners: dict[str, tuple[str, int, Shape]], draws: int) -> LayerBlobs:
    """Apply ``Net::AppendParam``'s sharing by param name to a set-up layer's blobs."""
    param = layer.param
    specs = []
    if len(param.param) > len(layer.blobs):
        raise layer.error(f"{len(param.param)} param specs for {len(layer.blobs)} learnable blobs")
    for i, (shape, filler) in enumerate(layer.blobs):
        spec = param.param[i] if i < len(param.param) else None
        name = spec.name if spec is not None else ""
        owner = None
        if name and name in owners:
            owner_layer, owner_index, owner_shape = owners[name]
            if spec.share_mode == spec.PERMISSIVE:
                ok = _count(owner_shape) == _count(shape)
            else:
                ok = owner_shape == shape
            if not ok:
                raise layer.error(f"cannot share param {name!r} owned by layer {owner_layer!r}: "
                                  f"owner shape {owner_shape}, this layer's {shape}")
            owner = (owner_layer, owner_index)
        elif name:
            owners[name] = (param.name, i, shape)
        specs.append(BlobSpec(shape=shape, filler=filler, param_name=name, share_owner=owner))
    fills = layer.fills if layer.fills is not None else [
        FillStep(i, shape, filler) for i, (shape, filler) in enumerate(layer.blobs) if filler is not None
    ]
    # Blobs written in the net: Caffe uses them and skips the fillers ("Skipping parameter initialization"),
    # except in a recurrent layer (explicit fills), whose setup clears them for its unrolled net's own.
    given = tuple(blob_array(blob) for blob in param.blobs) if layer.fills is None else ()
    if given:
        expected = [shape for shape, _ in layer.blobs]
        if [g.shape for g in given] != expected:
            raise layer.error(f"the net gives blobs of shapes {[g.shape for g in given]}; the layer's are {expected}")
        fills = []
    else:
        given = tuple(values() for values in layer.written)
    for step in fills:  # a filler Caffe's setup would reject (unknown type, sparse > 1, xavier on 0-D ...)
        try:
            resolve(step.filler, step.shape, np.float32)
        except ValueError as err:
            raise layer.error(f"blob {step.blob}: {err}") from None
    return LayerBlobs(name=param.name, type=param.type, blobs=specs, fills=tuple(fills), raw_draws_before=draws,
                      given=given)


def infer_shapes(
    net: NetParameter | str | os.PathLike,
    *,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int | None = "TEST",
) -> list[LayerBlobs]:
    """The learnable blobs of every layer, with shapes and fillers, in Caffe's order.

    Parameters
    ----------
    net : NetParameter or path
        A current-format net (V0/V1 messages and files are upgraded first).
    inputs : mapping of str to sequence of int, optional
        Shapes for top blobs by name; they override whatever the net says (use them for data layers whose
        shapes come from data, ``Python`` layers, or to change an input size).
    phase : {"TEST", "TRAIN"} or None
        The phase the net is built for.  As in ``caffe::Net(file, phase)`` it replaces ``state { phase }``,
        the level is 0 and the file's ``state { stage }`` entries are kept for the include/exclude rules.
        ``None`` uses the net's ``state`` (phase, level, stages) as it is, as ``caffe::Net(NetParameter)``
        does (a solver's train net, its ``train_state`` merged in).

    Returns
    -------
    list of LayerBlobs
        One entry per layer that has learnable blobs, in prototxt order after filtering (a layer that shares
        a param by name is listed with its own entry, its blob's ``share_owner`` naming the owner).

    Raises
    ------
    ShapeError
        A learnable layer needs a shape that cannot be known from the net (the message names the layer the
        shape comes from and how to pass it with ``inputs``), a layer type fillers does not know, a bottom
        no layer produces, ``inputs`` naming no top, or parameters Caffe itself would reject.
    TypeError, ValueError
        ``net``, ``inputs`` or ``phase`` of the wrong kind.

    Examples
    --------
    >>> from fillers import load_net, infer_shapes
    >>> for layer in infer_shapes(load_net("lenet.prototxt")):     # doctest: +SKIP
    ...     print(layer.name, [blob.shape for blob in layer.blobs])
    conv1 [(20, 1, 5, 5), (20,)]
    """
    return _walk(_as_net(net), _check_inputs(inputs), None if phase is None else _phase(phase))


def _walk(net: NetParameter, inputs: dict[str, Shape], phase: int | None) -> list[LayerBlobs]:
    state = NetState()
    state.CopyFrom(net.state)
    if phase is None:
        phase = state.phase
    else:
        state.phase = phase
        state.level = 0
    blobs: dict[str, Shape | _Unknown] = {}
    owners: dict[str, tuple[str, int, Shape]] = {}
    unused_inputs = set(inputs)
    out: list[LayerBlobs] = []
    draws = 0
    for param in net.layer:
        if not _included(param, state):
            continue
        for j, name in enumerate(param.bottom):
            if name in blobs:
                continue
            if name not in inputs:
                raise ShapeError(f"layer {param.name!r} ({param.type}): unknown bottom blob {name!r} "
                                 f"(bottom index {j}); no earlier layer produces it (give the shape of a net "
                                 f"input with inputs={{{name!r}: (D0, D1, ...)}})")
            blobs[name] = inputs[name]
            unused_inputs.discard(name)
        layer = _Layer(param=param, phase=param.phase if param.HasField("phase") else phase,
                       bottom_names=list(param.bottom), _bottoms=[blobs[b] for b in param.bottom])
        rule = _RULES.get(param.type)
        if not param.type:
            raise layer.error("the layer has no type (a legacy V0/V1 layer type that has no current name?)")
        if rule is None:
            raise layer.error(f"unknown layer type {param.type!r}: fillers does not know its learnable blobs "
                              "or top shapes")
        try:
            tops = rule(layer)
        except _NeedsUnknown as need:
            if param.type in _LEARNABLE:
                source = need.unknown.blob or need.bottom
                via = "" if source == need.bottom else f", which is computed from blob {source!r}"
                raise ShapeError(
                    f"layer {param.name!r} ({param.type}) needs the shape of blob {need.bottom!r}{via}; that "
                    f"cannot be known from the net: {need.unknown.origin}; {_hint(source)}"
                ) from None
            tops = [need.unknown] * layer.num_tops
        if len(tops) < layer.num_tops:
            raise layer.error(f"has {layer.num_tops} tops; this layer type makes {len(tops)}")
        draws += layer.raw_draws
        for name, shape in zip(param.top, tops):
            if isinstance(shape, _Unknown) and not shape.blob:
                shape = _Unknown(shape.origin, name)
            if name in inputs:
                shape = inputs[name]
                unused_inputs.discard(name)
            blobs[name] = shape
        if layer.blobs:
            out.append(_layer_blobs(layer, owners, draws))
            draws = 0
    if unused_inputs:
        raise ShapeError(f"inputs name no top blob of the net: {sorted(unused_inputs)}; "
                         f"its tops are {sorted(blobs)}")
    return out
