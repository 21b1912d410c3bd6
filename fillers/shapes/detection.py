"""Rules of the detection layers (SSD, Faster R-CNN, YOLO v2 ports)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fillers.shapes.context import Shape, Unknown, LayerContext, count, rule, unknown_tops
from fillers.shapes.data import _needs_rand


@rule("DetectionEvaluate")
def _detection_evaluate(layer: LayerContext) -> list[Shape | Unknown]:
    """SSD's evaluation: its row count depends on the detections and labels at run time."""
    return unknown_tops(layer, "its rows depend on the detections and labels at run time")


def _aspect_ratios(pp: Any) -> list[np.float32]:
    """PriorBox's aspect ratios: 1, then each new one (and its inverse when flip), in float as SSD keeps them."""
    ratios = [np.float32(1.0)]
    for ar in (np.float32(a) for a in pp.aspect_ratio):
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if pp.flip:
            with np.errstate(divide="ignore"):  # SSD's 1./ar in double: 1/0 is inf, a prior all the same
                ratios.append(np.float32(np.float64(1.0) / np.float64(ar)))
    return ratios


@rule("PriorBox")
def _prior_box(layer: LayerContext) -> list[Shape | Unknown]:
    pp = layer.sub("prior_box_param")
    layer.check(len(pp.min_size) > 0, "must provide min_size")
    layer.check(not pp.max_size or len(pp.max_size) == len(pp.min_size), "needs one max_size per min_size")
    num_priors = len(_aspect_ratios(pp)) * len(pp.min_size) + len(pp.max_size)
    _, _, h, w = layer.nchw(layer.bottom(0))
    return [layer.shape((1, 2, h * w * num_priors * 4))]


@rule("DetectionOutput")
def _detection_output(layer: LayerContext) -> list[Shape | Unknown]:
    """(1, 1, kept detections, 7); at setup Caffe shapes it for one detection."""
    dp = layer.sub("detection_output_param")
    if dp.visualize:
        layer.raw_draws = int(_needs_rand(layer))
    return [(1, 1, 1, 7)]


@rule("YoloDetectionOutput")
def _yolo_detection_output(layer: LayerContext) -> list[Shape | Unknown]:
    """eric612/MobileNet-YOLO's YOLO v2 detections: (1, 1, kept, 7), shaped for one at setup."""
    layer.check(layer.sub("yolo_detection_output_param").HasField("num_classes"), "must specify num_classes")
    return [(1, 1, 1, 7)]


@rule("Yolov3DetectionOutput")
def _yolov3_detection_output(layer: LayerContext) -> list[Shape | Unknown]:
    """eric612/MobileNet-YOLO's YOLO v3 detections: one bottom per mask group; (1, 1, kept, 7), shaped for
    one at setup."""
    yp = layer.sub("yolov3_detection_output_param")
    layer.check(layer.num_bottoms == yp.mask_group_num,
                f"takes one bottom per mask group: mask_group_num {yp.mask_group_num}, {layer.num_bottoms} bottoms")
    return [(1, 1, 1, 7)]


@rule("ROIPooling")
def _roi_pooling(layer: LayerContext) -> list[Shape | Unknown]:
    rp = layer.sub("roi_pooling_param")
    layer.check(rp.pooled_h > 0 and rp.pooled_w > 0, "pooled_h and pooled_w must be positive")
    channels = layer.legacy(layer.bottom(0), 1)
    return [layer.shape((layer.legacy(layer.bottom(1), 0), channels, rp.pooled_h, rp.pooled_w))]


@rule("PSROIPooling")
def _psroi_pooling(layer: LayerContext) -> list[Shape | Unknown]:
    """R-FCN's position-sensitive ROI pooling (daijifeng001/caffe-rfcn): bottom 0 holds output_dim *
    group_size^2 score maps; one (output_dim, group_size, group_size) output per ROI of bottom 1."""
    pp = layer.sub("psroi_pooling_param")
    layer.check(pp.output_dim > 0, "output_dim must be > 0")
    layer.check(pp.group_size > 0, "group_size must be > 0")
    channels = layer.legacy(layer.bottom(0), 1)
    layer.check(channels == pp.output_dim * pp.group_size ** 2,
                f"input channel number {channels} does not match output_dim * group_size^2 = "
                f"{pp.output_dim * pp.group_size ** 2}")
    rois = layer.legacy(layer.bottom(1), 0)
    return [layer.shape((rois, pp.output_dim, pp.group_size, pp.group_size))]


@rule("EvalDetection")
def _eval_detection(layer: LayerContext) -> list[Shape | Unknown]:
    """Intel caffe's YOLO evaluation: per item the ground-truth count of each class, then (label, score,
    tp, fp) for every box of the side x side grid."""
    ep = layer.sub("eval_detection_param")
    shape = layer.bottom(0)
    expected = ep.side * ep.side * ep.num_object * (ep.num_class + 5)
    layer.check(count(shape, 1) == expected,
                f"bottom 0 {shape} must hold side*side*num_object*(num_class + 5) = {expected} values per item")
    return [layer.shape((layer.legacy(shape, 0), ep.num_class + ep.side * ep.side * ep.num_object * 4))]
