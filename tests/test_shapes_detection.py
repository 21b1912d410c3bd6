"""Shape rules of the detection layers (SSD, Faster R-CNN, Intel caffe's YOLO)."""

import pytest

from fillers import ShapeError, infer_shapes
from shape_helpers import net, one, with_input, ip, top_after, fork


@fork
def test_ssd_heads():
    body = ('layer { name: "perm" type: "Permute" bottom: "x" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }'
            'layer { name: "prior" type: "PriorBox" bottom: "x" top: "prior" prior_box_param { min_size: 30 max_size: 60 '
            'aspect_ratio: 2 aspect_ratio: 0.5 aspect_ratio: 3 flip: true } }'
            + ip("perm", "p1", "num_output: 1 axis: 3") + ip("prior", "p2", "num_output: 1 axis: 2"))
    result = infer_shapes(net(with_input((1, 8, 3, 5), body)))
    # priors: ratios 1, 2, 1/2, 3, 1/3 (0.5 is already there) plus one max_size box
    assert [layer.blobs[0].shape for layer in result] == [(1, 8), (1, 3 * 5 * 6 * 4)]


@fork
def test_intel_eval_detection_top():
    body = ('layer { name: "e" type: "EvalDetection" bottom: "x" bottom: "x" top: "e" '
            'eval_detection_param { side: 3 num_class: 2 num_object: 5 } }')
    assert top_after((4, 5 * (2 + 5), 3, 3), body, "e") == 2 + 3 * 3 * 5 * 4
    with pytest.raises(ShapeError, match=r"layer 'e' \(EvalDetection\): bottom 0 \(4, 34, 3, 3\) must hold"):
        infer_shapes(net(with_input((4, 34, 3, 3), body)))


@fork
def test_roi_pooling_takes_the_roi_count_from_the_second_bottom():
    body = ('layer { name: "r" type: "Input" top: "rois" input_param { shape { dim: 7 dim: 5 } } }'
            'layer { name: "t" type: "ROIPooling" bottom: "x" bottom: "rois" top: "t" '
            'roi_pooling_param { pooled_h: 2 pooled_w: 3 spatial_scale: 0.0625 } }'
            + ip("t", "probe", "num_output: 1 axis: 0"))
    assert one(with_input((1, 4, 9, 9), body))[0] == (1, 7 * 4 * 2 * 3)


def test_detection_output_with_visualize_draws_a_transformer_seed():
    """SSD's DetectionOutput builds a DataTransformer when it visualizes (one seed drawn when it mirrors)."""
    body = ('layer { name: "det" type: "DetectionOutput" bottom: "x" top: "det" transform_param { mirror: true } '
            'detection_output_param { num_classes: 2 visualize: true } }' + ip("det", "probe"))
    (layer,) = infer_shapes(net(with_input((1, 8), body)))
    assert layer.blobs[0].shape == (3, 7) and layer.raw_draws_before == 1
