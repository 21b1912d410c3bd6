"""Rules of the detection layers (SSD, Faster R-CNN, YOLO v2 ports)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fillers.shapes.context import Shape, Unknown, LayerContext, count, rule, unknown_tops


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
            ratios.append(np.float32(1.0 / float(ar)))
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


@rule("ROIPooling")
def _roi_pooling(layer: LayerContext) -> list[Shape | Unknown]:
    rp = layer.sub("roi_pooling_param")
    layer.check(rp.pooled_h > 0 and rp.pooled_w > 0, "pooled_h and pooled_w must be positive")
    channels = layer.legacy(layer.bottom(0), 1)
    return [layer.shape((layer.legacy(layer.bottom(1), 0), channels, rp.pooled_h, rp.pooled_w))]


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
