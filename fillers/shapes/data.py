"""Rules of the data and input layers: what they tell of their tops without their data, and the seeds
Caffe's data layers draw from the global stream while they are set up."""
from __future__ import annotations

from typing import Any

from fillers.shapes.context import Shape, Unknown, LayerContext, rule, fork_field, unknown_tops, guarded


def _needs_rand(layer: LayerContext) -> bool:
    """``DataTransformer::InitRand``: a transformer seeds its own RNG when it mirrors or crops in TRAIN."""
    tp = layer.param.transform_param
    return bool(tp.mirror or (layer.phase == 0 and tp.crop_size))  # Phase TRAIN = 0


def _prefetch_draws(layer: LayerContext, setup_draws: int = 0) -> None:
    """Seeds a prefetching data layer draws: InitRand, its own setup, InitRand again, the thread's seed.
    (Every prefetching data layer has a data top: Caffe's ``CheckBlobCounts`` refuses one without tops.)"""
    layer.top_name(0)
    layer.raw_draws = 2 * _needs_rand(layer) + setup_draws + 1


def _channels_from_means(layer: LayerContext, what: str) -> int:
    """The channel count a data layer's ``transform_param`` pins down: Caffe requires one mean value or
    one per channel, so two or more mean values give the channel count."""
    tp = layer.param.transform_param
    if len(tp.mean_value) > 1:
        return len(tp.mean_value)
    raise layer.error(
        f"the number of channels of top {layer.top_name(0)!r} comes from {what}; "
        "only a transform_param with one mean_value per channel tells it here"
    )


def _data_top(layer: LayerContext, batch: int, channels: int, what: str) -> Shape:
    crop = layer.param.transform_param.crop_size
    layer.check(crop > 0, f"the height and width of top {layer.top_name(0)!r} come from {what} "
                          "(no transform_param crop_size)")
    return layer.shape((batch, channels, crop, crop))


@rule("Input")
def _input(layer: LayerContext) -> list[Shape | Unknown]:
    shapes = layer.param.input_param.shape
    layer.check(len(shapes) in (0, 1, layer.num_tops),
                f"input_param has {len(shapes)} shapes for {layer.num_tops} tops (want 0, 1 or one per top)")
    if not shapes:
        return unknown_tops(layer, "input_param gives no shape")
    return [layer.shape(shapes[0 if len(shapes) == 1 else i].dim) for i in range(layer.num_tops)]


@rule("DummyData")
def _dummy_data(layer: LayerContext) -> list[Shape | Unknown]:
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


@rule("MemoryData")
def _memory_data(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.param.memory_data_param
    layer.raw_draws = int(_needs_rand(layer))
    layer.check(p.batch_size * p.channels * p.height * p.width > 0,
                "batch_size, channels, height and width must be positive")
    return [layer.shape((p.batch_size, p.channels, p.height, p.width)), (p.batch_size,)]


@rule("Data")
def _data(layer: LayerContext) -> list[Shape | Unknown]:
    _prefetch_draws(layer)
    batch = layer.param.data_param.batch_size
    what = f"the records of database {layer.param.data_param.source!r}"
    data = guarded(layer, lambda: _data_top(layer, batch, _channels_from_means(layer, what), what))
    return [data, (batch,)][: layer.num_tops]


@rule("ImageData")
def _image_data(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.param.image_data_param
    _prefetch_draws(layer, int(p.shuffle) + int(p.rand_skip > 0))
    layer.check((p.new_height == 0 and p.new_width == 0) or (p.new_height > 0 and p.new_width > 0),
                "new_height and new_width must be set together")
    channels = 3 if p.is_color else 1
    crop = layer.param.transform_param.crop_size
    if crop:
        data: Shape | Unknown = layer.shape((p.batch_size, channels, crop, crop))
    elif p.new_height:
        data = layer.shape((p.batch_size, channels, p.new_height, p.new_width))
    else:
        data = Unknown(f"layer {layer.param.name!r} (ImageData): the image size comes from the images "
                        f"listed in {p.source!r} (no crop_size, new_height or new_width)")
    return [data, (p.batch_size,)]


@rule("WindowData")
def _window_data(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.param.window_data_param
    tp = layer.param.transform_param
    _prefetch_draws(layer, int(bool(tp.mirror or tp.crop_size)))
    what = f"the window file {p.source!r}"
    data = guarded(layer, lambda: _data_top(layer, p.batch_size, _channels_from_means(layer, what), what))
    return [data, (p.batch_size,)]


@rule("AnnotatedData")
def _annotated_data(layer: LayerContext) -> list[Shape | Unknown]:
    """SSD's data layer: like Data, with the image size also fixed by a WARP or FIT_LARGE_SIZE_AND_PAD
    resize; the label's row count depends on the boxes of the first record."""
    _prefetch_draws(layer)
    tp = layer.param.transform_param
    batch = layer.param.data_param.batch_size
    what = f"the records of database {layer.param.data_param.source!r}"

    def data() -> Shape:
        channels = _channels_from_means(layer, what)
        crop_h = tp.crop_size or fork_field(tp, "crop_h", 0)
        crop_w = tp.crop_size or fork_field(tp, "crop_w", 0)
        resize = fork_field(tp, "resize_param")
        if resize is not None and resize.resize_mode != resize.FIT_SMALL_SIZE:
            crop_h, crop_w = crop_h or resize.height, crop_w or resize.width
        layer.check(crop_h > 0 and crop_w > 0, f"the image size comes from {what} (no crop or fixed resize)")
        return layer.shape((batch, channels, crop_h, crop_w))

    label = Unknown(f"layer {layer.param.name!r} (AnnotatedData): the label rows are the boxes of a record")
    # eric612/MobileNet-YOLO's third top: segmentation labels, sized by the records' label maxima
    segmentation = Unknown(f"layer {layer.param.name!r} (AnnotatedData): the segmentation label channels are the "
                           "label maxima of the records")
    return [guarded(layer, data), label, segmentation][: layer.num_tops]


def _segmentation_data(layer: LayerContext, p: Any, crop_hw: tuple[int, int]) -> Shape | Unknown:
    """DeepLab's ImageSegData / SegNet's DenseImageData: image size from crop, else from new_height/width."""
    layer.check((p.new_height == 0) == (p.new_width == 0), "new_height and new_width must be set together")
    _prefetch_draws(layer, int(p.shuffle) + int(p.rand_skip > 0))
    crop = layer.param.transform_param.crop_size
    h, w = (crop, crop) if crop else crop_hw if crop_hw[0] else (p.new_height, p.new_width)
    if not h:
        return Unknown(f"layer {layer.param.name!r} ({layer.param.type}): the image size comes from the "
                        f"images listed in {p.source!r} (no crop_size, new_height or new_width)")
    return layer.shape((p.batch_size, 3 if p.is_color else 1, h, w))


def _label_like(layer: LayerContext, data: Shape | Unknown) -> Shape | Unknown:
    return data if isinstance(data, Unknown) else (data[0], 1, *data[2:])


@rule("ImageSegData")
def _image_seg_data(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.param.image_data_param
    data = _segmentation_data(layer, p, (0, 0))
    return [data, _label_like(layer, data), (p.batch_size, 1, 1, 2)][: layer.num_tops]


@rule("DenseImageData")
def _dense_image_data(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.sub("dense_image_data_param")
    data = _segmentation_data(layer, p, (p.crop_height, p.crop_width))
    return [data, _label_like(layer, data)][: layer.num_tops]


def _frames_hw(layer: LayerContext, crop: int, height: int, width: int, source: str) -> tuple[int, int] | Unknown:
    """The frame size a video data layer gives: its crop, else its resize, else only the videos tell."""
    layer.check((height == 0) == (width == 0), "new_height and new_width must be set together")
    if crop or height:
        return (crop, crop) if crop else (height, width)
    return Unknown(f"layer {layer.param.name!r} (VideoData): the frame size comes from the videos listed in "
                   f"{source!r} (no crop_size, new_height or new_width)")


@rule("VideoData_c3d")
def _video_data_c3d(layer: LayerContext) -> list[Shape | Unknown]:
    """C3D's clips (facebook/C3D), (batch, C, new_length, H, W).

    - v1.1: ``video_data_param``; C 3 (1 without ``is_color``); H and W from ``transform_param`` crop_size,
      else new_height/new_width; labels (batch,), or (batch, num_of_labels) with ``use_multiple_label``.
    - v1.0 (V1 ``VIDEO_DATA``): ``image_data_param`` with C3D's ``new_length``; C 3; H and W from its
      crop_size, else new_height/new_width; labels (batch, 1, 1, 1, 1).
    """
    layer.variant = "VideoData_c3d"
    if layer.param.HasField("image_data_param"):
        p = layer.param.image_data_param
        batch, channels, length = p.batch_size, 3, fork_field(p, "new_length", 0)
        hw = _frames_hw(layer, p.crop_size, p.new_height, p.new_width, p.source)
        label: Shape = (batch, 1, 1, 1, 1)
    else:
        vp = layer.param.video_data_param
        batch, channels, length = vp.batch_size, 3 if vp.is_color else 1, vp.new_length
        hw = _frames_hw(layer, layer.param.transform_param.crop_size, vp.new_height, vp.new_width, vp.source)
        label = (batch, vp.num_of_labels) if vp.use_multiple_label else (batch,)
    layer.check(batch > 0, "positive batch size required")
    layer.check(length > 0, "new_length must be positive")
    data = hw if isinstance(hw, Unknown) else layer.shape((batch, channels, length, *hw))
    return [data, label][: layer.num_tops]


@rule("VideoData_tsn")
def _video_data_tsn(layer: LayerContext) -> list[Shape | Unknown]:
    """TSN's snippets (yjxiong/caffe): (batch, num_segments * new_length * C, H, W) with C 3 for RGB frames
    (1 ``grayscale``) and 2 for FLOW (x and y images, the default); H and W from ``transform_param``
    crop_size, else new_height/new_width; labels (batch, 1, 1, 1)."""
    layer.variant = "VideoData_tsn"
    vp = layer.param.video_data_param
    length = vp.new_length if vp.HasField("new_length") else 1  # TSN's default
    per_frame = (1 if vp.grayscale else 3) if vp.modality == vp.RGB else 2
    channels = vp.num_segments * length * per_frame
    layer.check(channels > 0, "num_segments and new_length must be positive")
    hw = _frames_hw(layer, layer.param.transform_param.crop_size, vp.new_height, vp.new_width, vp.source)
    data = hw if isinstance(hw, Unknown) else layer.shape((vp.batch_size, channels, *hw))
    return [data, (vp.batch_size, 1, 1, 1)][: layer.num_tops]


@rule("VideoData_ssd")
def _video_data_ssd(layer: LayerContext) -> list[Shape | Unknown]:
    """SSD's frames from a webcam or a video file (weiliu89/caffe): shapes from the frames."""
    layer.variant = "VideoData_ssd"
    return unknown_tops(layer, "SSD's video layer shapes its tops from the frames of a webcam or video file")


_TSN_VIDEO_FIELDS = ("num_segments", "modality", "name_pattern", "encoded", "grayscale")


@rule("VideoData")
def _video_data(layer: LayerContext) -> list[Shape | Unknown]:
    """Three forks' layers of one name, told apart by their parameters: TSN's fields (``num_segments``,
    ``modality`` ...), else C3D's (``video_data_param`` fields beyond SSD's four, or a V1 layer's
    ``image_data_param``), else SSD's."""
    vp = layer.param.video_data_param
    if any(vp.HasField(name) for name in _TSN_VIDEO_FIELDS):
        return _video_data_tsn(layer)
    if any(f.number > 4 for f, _ in vp.ListFields()) or layer.param.HasField("image_data_param"):
        return _video_data_c3d(layer)
    return _video_data_ssd(layer)


@rule("VideoSegmentationData", "VideoWithVoxelTruthData")
def _c3d_voxel_data(layer: LayerContext) -> list[Shape | Unknown]:
    """C3D v1.0's video-to-video data layers: the clip's channels are the volume's less its truth channels,
    known only from the videos."""
    return unknown_tops(layer, f"the channels of its clips and truth come from the volumes listed in "
                                f"{layer.param.image_data_param.source!r}")


@rule("HDF5Data")
def _hdf5_data(layer: LayerContext) -> list[Shape | Unknown]:
    return unknown_tops(layer, f"its shapes come from the HDF5 files listed in "
                                f"{layer.param.hdf5_data_param.source!r}")


@rule("Python")
def _python(layer: LayerContext) -> list[Shape | Unknown]:
    p = layer.param.python_param
    return unknown_tops(layer, f"a Python layer ({p.module}.{p.layer}) shapes its tops at run time")


@rule("SpatialPyramidPoolingData")
def _spatial_pyramid_pooling_data(layer: LayerContext) -> list[Shape | Unknown]:
    """BVLC/caffe pull 601: region features and labels read from a database and a regions file (its setup
    draws no seed)."""
    p = layer.sub("spatial_pyramid_pooling_data_param")
    names = ", ".join(f"{name} {getattr(p, name)!r}" for name in ("features_source", "regions_source")
                      if getattr(p, name))
    return unknown_tops(layer, "its region features and labels come from a feature database and a regions "
                                "file" + (f" ({names})" if names else ""))


@rule("Import")
def _import(layer: LayerContext) -> list[Shape | Unknown]:
    """BVLC/caffe pull 1290: Caffe replaces the layer by the layers of another net file."""
    raise layer.error("the layers it stands for cannot be known from the net: Caffe replaces an Import layer "
                      "by the layers of the net file its import_param names (learnable ones included), read "
                      "when the net is built; put those layers in the net instead")
