"""The fork layers built in: real prototxt files of each fork family (tests/data/forks) infer the shapes derived
from each fork's LayerSetUp/Reshape, fill, and agree with ``fillers inspect``; each rule refuses what its
fork's setup refuses."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fillers import ShapeError, fill_net, infer_shapes, load_net
from fillers.cli import main
from shape_helpers import net, with_input, ip, top_after, one

FORKS = Path(__file__).parent / "data" / "forks"


def load_quietly(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # C3D v1.0's V1 enum types are reported by the loader
        return load_net(path)


def layer_shapes(path: Path, **kwargs) -> dict:
    return {layer.name: [blob.shape for blob in layer.blobs] for layer in infer_shapes(load_quietly(path), **kwargs)}


# Shapes worked out by hand from each fork's source (comments: the tops that lead to them).
EXPECTED = {
    "rfcn_psroi_pooling.prototxt": {  # PSROIPooling: (300 rois, 21, 7, 7) -> AVE 7x7 -> (300, 21, 1, 1)
        "conv1": [(16, 3, 3, 3), (16,)], "rfcn_cls": [(1029, 16, 1, 1), (1029,)],
        "rfcn_bbox": [(392, 16, 1, 1), (392,)], "probe": [(2, 21), (2,)]},
    "deformable_convolution.prototxt": {  # dconv2: stride 2 over 32x32 -> (1, 16, 16, 16)
        "conv1": [(32, 3, 3, 3), (32,)], "res5a_branch2b_offset": [(72, 32, 3, 3), (72,)],
        "res5a_branch2b": [(64, 32, 3, 3), (64,)], "offset2": [(18, 64, 3, 3), (18,)],
        "dconv2": [(16, 32, 3, 3)], "probe": [(2, 16 * 16 * 16), (2,)]},
    "yolo_v3_mobilenet.prototxt": {  # Upsample x2 of (1, 32, 8, 8) concatenated with (1, 16, 16, 16)
        "conv0": [(8, 3, 3, 3)], "conv0/bn": [(8,), (8,), (1,)], "conv1": [(16, 8, 3, 3), (16,)],
        "conv2": [(32, 16, 3, 3), (32,)], "yolo/conv1": [(75, 32, 1, 1), (75,)], "yolo/conv2": [(75, 48, 1, 1), (75,)]},
    "yolo_v2_region.prototxt": {
        "conv1": [(16, 3, 3, 3), (16,)], "conv_reg": [(125, 16, 1, 1), (125,)]},
    "pspnet_bn_interp.prototxt": {  # BN: 4 blobs (1, C, 1, 1); Interp zoom 8 of 17x17 -> 129x129
        "conv1_1_3x3_s2": [(16, 3, 3, 3)], "conv1_1_3x3_s2/bn": [(1, 16, 1, 1)] * 4,
        "conv5_3_pool1_conv": [(4, 16, 1, 1)], "conv5_3_pool1_conv/bn": [(1, 4, 1, 1)] * 4,
        "conv6": [(21, 20, 1, 1), (21,)], "probe": [(1, 21 * 129 * 129), (1,)]},
    "segnet_bn_upsample.prototxt": {  # BN: scale and shift (1, C, 1, 1)
        "conv1_1": [(8, 3, 3, 3), (8,)], "conv1_1_bn": [(1, 8, 1, 1)] * 2,
        "conv1_1_D": [(11, 8, 3, 3), (11,)], "conv1_1_D_bn": [(1, 11, 1, 1)] * 2},
    "c3d_v1.0.prototxt": {  # data (2, 3, 8, 16, 16) -> pool1 (2, 8, 8, 8, 8) -> pool2 (2, 16, 4, 4, 4)
        "conv1a": [(8, 3, 3, 3, 3), (1, 1, 1, 1, 8)], "conv2a": [(16, 8, 3, 3, 3), (1, 1, 1, 1, 16)],
        "deconv2": [(16, 4, 2, 2, 2), (1, 1, 1, 1, 4)], "fc6": [(32, 16 * 4 * 4 * 4), (32,)], "fc8": [(10, 32), (10,)]},
    "c3d_v1.1.prototxt": {  # data (2, 3, 8, 12, 12) -> conv1 (2, 8, 8, 6, 6) -> pool1 (2, 8, 4, 3, 3)
        "conv1": [(8, 3, 3, 3, 3)], "bn_conv1": [(8,), (8,), (1,)],
        "deconv1": [(8, 4, 2, 2, 2), (1, 1, 1, 1, 4)], "fc8": [(10, 8 * 4 * 3 * 3), (10,)]},
    "crnn_ctc.prototxt": {  # (2, 32, 1, 50) permuted and reshaped to (T=50, N=2, 32)
        "conv1": [(16, 1, 3, 3), (16,)], "conv2": [(32, 16, 4, 1), (32,)],
        "lstm1": [(64, 32), (64,), (64, 16)], "fc1": [(11, 16), (11,)]},
    "face_sphereface_amsoftmax.prototxt": {  # the face Normalize makes (2, 32, 1, 1) of (2, 32)
        "conv1": [(8, 3, 3, 3), (8,)], "relu1": [(8,)], "fc5": [(32, 512), (32,)], "fc6": [(10, 32)],
        "fc6_am": [(10, 32)], "fc6_margin_scale": [(10,)], "center_loss": [(10, 32)], "scaled": [(1,)]},
    "pooling_ceil_mode.prototxt": {  # 8x8, kernel 3, stride 2, pad 1: floor -> 4x4, ceil -> 5x5
        "conv1": [(4, 3, 1, 1), (4,)], "fc_floor": [(2, 4 * 4 * 4), (2,)], "fc_ceil": [(2, 4 * 5 * 5), (2,)]},
}


def test_every_fork_file_is_checked():
    assert sorted(p.name for p in FORKS.glob("*.prototxt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fork_files_infer_the_forks_shapes(name):
    assert layer_shapes(FORKS / name) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fork_files_fill_with_both_streams(name):
    for rng in ("philox", "caffe"):
        params = fill_net(load_quietly(FORKS / name), seed=5, rng=rng)
        assert {key: [blob.shape for blob in blobs] for key, blobs in params.items()} == EXPECTED[name]
        assert all(np.isfinite(blob).all() for blobs in params.values() for blob in blobs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_and_fill_agree(name, tmp_path, capsys):
    path = FORKS / name
    assert main(["inspect", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["blobs"]
    out = tmp_path / "w.npz"
    assert main(["fill", str(path), "-o", str(out), "--quiet"]) == 0
    with np.load(out) as filled:
        assert {key: filled[key].shape for key in filled.files if key != "__metadata__"} == \
            {f"{row['layer']}/{row['blob']}": tuple(row["shape"]) for row in rows}


def test_training_heads_of_the_yolo_ports_are_scalar_losses():
    for name in ("yolo_v3_mobilenet.prototxt", "yolo_v2_region.prototxt"):
        assert layer_shapes(FORKS / name, phase="TRAIN") == EXPECTED[name]
    body = ('layer { name: "l" type: "Input" top: "label" input_param { shape { dim: 2 dim: 5 } } }'
            'layer { name: "loss" type: "YoloV3Loss" bottom: "x" bottom: "label" top: "loss" }')
    scalar = 'layer { name: "r" type: "Reshape" bottom: "loss" top: "r" reshape_param { shape { dim: 1 dim: -1 } } }'
    assert top_after((2, 75, 4, 4), body + scalar, "r") == 1  # the loss has no axes: one value


def test_bn_variant_is_told_by_what_the_layer_carries(capsys):
    psp = load_quietly(FORKS / "pspnet_bn_interp.prototxt")
    assert {layer.variant for layer in infer_shapes(psp) if layer.type == "BN"} == {"BN_pspnet"}
    seg = load_quietly(FORKS / "segnet_bn_upsample.prototxt")
    assert {layer.variant for layer in infer_shapes(seg) if layer.type == "BN"} == {"BN_segnet"}
    plain = 'layer { name: "bn" type: "BN" bottom: "x" top: "x" }'
    (layer,) = infer_shapes(net(with_input((1, 3, 4, 4), plain)))
    assert layer.variant == "BN_segnet" and len(layer.blobs) == 2  # nothing tells: SegNet's, as before
    mixed = 'layer { name: "bn" type: "BN" bottom: "x" top: "x" bn_param { scale_filler {} frozen: true } }'
    with pytest.raises(ShapeError, match="mixes PSPNet's BN fields"):
        infer_shapes(net(with_input((1, 3, 4, 4), mixed)))
    assert main(["inspect", str(FORKS / "pspnet_bn_interp.prototxt")]) == 0
    assert "BN (BN_pspnet)" in capsys.readouterr().out


def test_pspnet_bn_variance_is_one_when_frozen():
    params = fill_net(load_quietly(FORKS / "pspnet_bn_interp.prototxt"), seed=1)
    slope, bias, mean, variance = params["conv1_1_3x3_s2/bn"]
    assert (slope == 1).all() and (bias == 0).all() and (mean == 0).all() and (variance == 1).all()
    assert (params["conv5_3_pool1_conv/bn"][3] == 0).all()


def test_normalize_variant_ssd_or_face():
    face = 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" }' + ip("n", "p")
    assert [l.variant for l in infer_shapes(net(with_input((2, 32), face)))] == [""]  # only the probe learns
    assert top_after((2, 32), 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" }', "n") == 32
    ssd = 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" }'
    (layer,) = infer_shapes(net(with_input((1, 8, 3, 3), ssd)))
    assert layer.variant == "Normalize_ssd" and layer.blobs[0].shape == ()
    tops = 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" top: "norm" }' + ip("norm", "p")
    assert infer_shapes(net(with_input((1, 8, 3, 3), tops)))[0].blobs[0].shape == (3, 9)  # (1, 1, 3, 3) norms


def test_ceil_mode_and_round_mode_must_agree():
    body = ('layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { kernel_size: 3 stride: 2 '
            'ceil_mode: true round_mode: FLOOR } }')
    with pytest.raises(ShapeError, match="contradicts ceil_mode"):
        infer_shapes(net(with_input((1, 1, 8, 8), body)))


@pytest.mark.parametrize("layer, message", [
    ('type: "DeformableConvolution" bottom: "x" bottom: "x" top: "t" deformable_convolution_param { num_output: 2 '
     'kernel_size: 3 }', "offsets .* must have 2 \\* kernel_h \\* kernel_w \\* deformable_group = 72 or 18"),
    ('type: "PSROIPooling" bottom: "x" bottom: "x" top: "t" psroi_pooling_param { output_dim: 2 group_size: 3 }',
     "input channel number 4 does not match output_dim \\* group_size\\^2 = 18"),
    ('type: "Yolov3DetectionOutput" bottom: "x" top: "t" yolov3_detection_output_param { num_classes: 2 }',
     "one bottom per mask group: mask_group_num 2, 1 bottoms"),
    ('type: "YoloDetectionOutput" bottom: "x" top: "t"', "must specify num_classes"),
    ('type: "ContinuationIndicator" top: "t" continuation_indicator_param { time_step: 3 }',
     "batch_size must be greater than 0"),
    ('type: "Convolution3D" bottom: "x" top: "t" convolution3d_param { num_output: 2 kernel_size: 3 kernel_depth: 1 }',
     "takes a 5-axis blob"),
    ('type: "MarginInnerProduct" bottom: "x" bottom: "x" top: "t" margin_inner_product_param { }',
     "num_output must be positive"),
])
def test_fork_rules_refuse_what_their_setup_refuses(layer, message):
    with pytest.raises(ShapeError, match=message):
        infer_shapes(net(with_input((1, 4, 5, 5), f'layer {{ name: "l" {layer} }}')))


def test_c3d_v11_deconvolution_reads_bias_term_from_convolution_param():
    body = ('layer { name: "d" type: "Deconvolution3D" bottom: "x" top: "d" convolution3d_param { num_output: 2 '
            'kernel_size: 2 kernel_depth: 2 stride: 2 temporal_stride: 2 bias_term: false } %s }')
    assert one(with_input((1, 3, 4, 4, 4), body % "")) == [(3, 2, 2, 2, 2), (1, 1, 1, 1, 2)]
    assert one(with_input((1, 3, 4, 4, 4), body % "convolution_param { bias_term: false }")) == [(3, 2, 2, 2, 2)]


def test_video_data_tops_of_each_fork():
    v11 = ('layer { name: "d" type: "VideoData" top: "data" top: "label" video_data_param { source: "l" '
           'batch_size: 3 new_length: 4 new_height: 6 new_width: 7 is_color: false use_multiple_label: true '
           'num_of_labels: 5 } }' + ip("data", "p1") + ip("label", "p2"))
    assert [l.blobs[0].shape for l in infer_shapes(net(v11))] == [(3, 4 * 6 * 7), (3, 5)]
    tsn = ('layer { name: "d" type: "VideoData" top: "data" top: "label" transform_param { crop_size: 8 } '
           'video_data_param { source: "l" batch_size: 2 new_length: %s num_segments: 3 %s } }'
           + ip("data", "p1") + ip("label", "p2"))
    # TSN (yjxiong/caffe): segments x frames x (3 RGB / 2 flow) channels; FLOW is the default modality
    assert [l.blobs[0].shape for l in infer_shapes(net(tsn % (1, "modality: RGB")))] == [(3, 9 * 8 * 8), (3, 1)]
    assert [l.blobs[0].shape for l in infer_shapes(net(tsn % (5, "")))] == [(3, 30 * 8 * 8), (3, 1)]
    assert infer_shapes(net(tsn % (1, "modality: RGB")))[0].variant == ""  # the probes learn, not the data layer
    ssd = ('layer { name: "d" type: "VideoData" top: "data" video_data_param { video_type: VIDEO video_file: "v" } }'
           + ip("data", "p1"))
    with pytest.raises(ShapeError, match="SSD's video layer shapes its tops from the frames"):
        infer_shapes(net(ssd))


@pytest.mark.parametrize("layer", [
    'type: "InnerProduct" bottom: "x" top: "t" inner_product_param { weight_filler { type: "xavier" } }',
    'type: "Convolution" bottom: "x" top: "t" convolution_param { kernel_size: 3 }',
])
def test_no_num_output_is_refused_as_caffe_refuses_it(layer):
    """DIGITS-style templates leave num_output out: never a silent (0, K) blob."""
    with pytest.raises(ShapeError, match="layer 'l'.*num_output must be positive \\(it is 0: not given\\)"):
        infer_shapes(net(with_input((1, 4, 5, 5), f'layer {{ name: "l" {layer} }}')))


def test_zero_sized_learnable_blobs_are_refused():
    """Caffe's fillers CHECK that a blob has elements: a zero-channel input makes the BatchNorm statistics and
    an Embed with no inputs empty."""
    with pytest.raises(ShapeError, match="layer 'bn'.*shape \\(0,\\), with no elements"):
        infer_shapes(net(with_input((1, 0, 4, 4), 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }')))
    with pytest.raises(ShapeError, match="layer 'fc'.*with no elements"):
        infer_shapes(net(with_input((2, 0), ip("x"))))


def test_a_variant_can_be_forced(capsys):
    """`--like BN=BN_pspnet` reads every BN layer as PSPNet's, whatever it carries (for this command only)."""
    path = str(FORKS / "segnet_bn_upsample.prototxt")
    assert main(["inspect", path, "--like", "BN=BN_pspnet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["blobs"]
    assert {row["variant"] for row in rows if row["type"] == "BN"} == {"BN_pspnet"}
    assert [row["shape"] for row in rows if row["layer"] == "conv1_1_bn"] == [[1, 8, 1, 1]] * 4
    assert layer_shapes(FORKS / "segnet_bn_upsample.prototxt")["conv1_1_bn"] == [(1, 8, 1, 1)] * 2
