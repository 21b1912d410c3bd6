"""Shape inference: real Caffe's blob shapes for corpus nets, each layer rule on small nets, clear errors."""
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from fillers import FillerParameter, NetParameter, ShapeError, infer_shapes
from fillers.caffe_pb2 import LayerParameter


def net(text: str) -> NetParameter:
    return text_format.Parse(text, NetParameter())


def has_field(name: str) -> bool:
    return name in LayerParameter.DESCRIPTOR.fields_by_name


def has_loader() -> bool:
    try:
        import fillers.prototxt  # noqa: F401
    except ImportError:
        return False
    return True


def load(path: Path) -> NetParameter:
    """A corpus file as a current-format net: the loader when there is one, else current-format files only."""
    try:
        from fillers.prototxt import load_net
    except ImportError:
        parsed = text_format.Parse(path.read_text(), NetParameter(), allow_unknown_field=True)
        if parsed.layers or parsed.input:
            pytest.skip(f"{path.name}: needs fillers.prototxt.load_net for legacy formats")
        return parsed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's notes on fields it skips
        return load_net(path)


def shapes(result) -> list:
    return [(layer.name, layer.type, [blob.shape for blob in layer.blobs]) for layer in result]


def one(text: str, **kwargs) -> list:
    """The blob shapes of the only learnable layer of a net."""
    result = infer_shapes(net(text), **kwargs)
    assert len(result) == 1
    return [blob.shape for blob in result[0].blobs]


INPUT = 'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}\n'


def with_input(dims: tuple, body: str) -> str:
    return INPUT.format(dims=" ".join(f"dim: {d}" for d in dims)) + body


def conv(params: str, bottom: str = "x", name: str = "c", type_: str = "Convolution") -> str:
    return (f'layer {{ name: "{name}" type: "{type_}" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ {params} }} }}\n')


def ip(bottom: str, name: str = "fc", params: str = "num_output: 3") -> str:
    return f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" ' \
           f'inner_product_param {{ {params} }} }}\n'


def top_after(dims: tuple, body: str, top: str, **kwargs) -> int:
    """The element count per item that reaches an InnerProduct placed on ``top`` (its weight's second axis)."""
    return infer_shapes(net(with_input(dims, body + ip(top, "probe"))), **kwargs)[-1].blobs[0].shape[1]


# ----------------------------------------------------------------------------------------------------------
# Real Caffe's shapes


def nets_json(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "caffe_vectors" / "nets.json").read_text())


def test_nets_json_shapes_match_caffe(shared_dir):
    data = nets_json(shared_dir)
    assert data["phase"] == "TEST"
    checked = []
    for rel, layers in data["nets"].items():
        try:
            parsed = load(shared_dir / "corpus" / rel)
        except pytest.skip.Exception:
            continue
        expected = [(l["name"], l["type"], [tuple(b["shape"]) for b in l["blobs"]]) for l in layers]
        assert shapes(infer_shapes(parsed, phase="TEST")) == expected, rel
        checked.append(rel)
    assert len(checked) == len(data["nets"]) or len(checked) >= 4 and not has_loader()


# ----------------------------------------------------------------------------------------------------------
# Convolution family


def test_conv_group_dilation_and_output_size():
    body = conv("num_output: 6 kernel_size: 3 dilation: 2 group: 2 pad: 1 stride: 2")
    assert one(with_input((1, 4, 11, 11), body)) == [(6, 2, 3, 3), (6,)]
    # (11 + 2 - 5) / 2 + 1 = 5
    assert top_after((1, 4, 11, 11), body, "c") == 6 * 5 * 5


def test_conv_hw_fields_and_no_bias():
    body = conv("num_output: 2 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 bias_term: false")
    assert one(with_input((1, 3, 9, 4), body)) == [(2, 3, 3, 1)]
    assert top_after((1, 3, 9, 4), body, "c") == 2 * 5 * 4


def test_conv_nd_repeated_fields():
    body = conv("num_output: 4 kernel_size: 3 kernel_size: 1 kernel_size: 2 stride: 1 stride: 2 stride: 1 pad: 1 "
                "pad: 0 pad: 0")
    assert one(with_input((1, 2, 5, 6, 7), body)) == [(4, 2, 3, 1, 2), (4,)]
    assert top_after((1, 2, 5, 6, 7), body, "c") == 4 * 5 * 3 * 6


def test_conv_axis():
    body = conv("num_output: 5 kernel_size: 1 axis: 2")
    assert one(with_input((2, 3, 4, 6), body)) == [(5, 4, 1), (5,)]


def test_conv_output_uses_c_division():
    # (3 - 4) / 2 truncates to 0 in C, so the output is 1 wide (floor division would give 0)
    body = conv("num_output: 1 kernel_size: 4 stride: 2 bias_term: false")
    assert top_after((1, 1, 3, 3), body, "c") == 1


def test_conv_group_must_divide_channels():
    with pytest.raises(ShapeError, match="divisible by group"):
        infer_shapes(net(with_input((1, 3, 8, 8), conv("num_output: 4 kernel_size: 3 group: 2"))))


def test_deconvolution_weight_is_channels_first():
    body = conv("num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 3", type_="Deconvolution")
    assert one(with_input((1, 9, 5, 5), body)) == [(9, 2, 4, 4), (6,)]
    assert top_after((1, 9, 5, 5), body, "c") == 6 * 10 * 10


@pytest.mark.parametrize("type_", ["DepthwiseConvolution"])
def test_depthwise_convolution_is_a_grouped_convolution(type_):
    assert one(with_input((1, 8, 6, 6), conv("num_output: 8 group: 8 kernel_size: 3", type_=type_))) == \
        [(8, 1, 3, 3), (8,)]


def test_convolution_depthwise_fork_ignores_num_output():
    body = conv("num_output: 99 kernel_size: 3 stride: 2 pad: 1 bias_term: false", type_="ConvolutionDepthwise")
    assert one(with_input((1, 8, 6, 6), body)) == [(8, 1, 3, 3)]
    assert top_after((1, 8, 6, 6), body, "c") == 8 * 3 * 3


def test_im2col():
    body = 'layer { name: "i" type: "Im2col" bottom: "x" top: "i" convolution_param { kernel_size: 2 stride: 2 } }'
    assert top_after((1, 3, 4, 4), body, "i") == 3 * 4 * 2 * 2


# ----------------------------------------------------------------------------------------------------------
# Pooling


def pool(params: str) -> str:
    return f'layer {{ name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param {{ {params} }} }}\n'


@pytest.mark.parametrize(
    "size, params, expected",
    [
        (6, "pool: MAX kernel_size: 3 stride: 2", 3),  # ceil((6 - 3) / 2) + 1
        (6, "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR", 2),
        (5, "pool: MAX kernel_size: 2 stride: 2 pad: 1", 3),  # 4 before the last-window clip
        (7, "pool: AVE kernel_size: 3 stride: 2 pad: 1", 4),  # no clip: 3 * 2 < 7 + 1
        (7, "pool: AVE global_pooling: true", 1),
    ],
)
def test_pooling_rounding_and_clip(size, params, expected):
    assert top_after((1, 2, size, size), pool(params), "p") == 2 * expected * expected


def test_pooling_hw_fields():
    assert top_after((1, 1, 9, 8), pool("kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 2"), "p") == 3 * 4


def test_pooling_clips_both_axes_when_either_is_padded():
    # Caffe: if (pad_h || pad_w) the last-window clip applies to both axes.  Width: ceil((6 - 2) / 3) + 1 = 3,
    # and (3 - 1) * 3 >= 6 + 0 drops the window that starts past the input, although pad_w is 0.
    params = "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0"
    assert top_after((1, 1, 9, 6), pool(params), "p") == 5 * 2


def test_pooling_rejects_bad_parameters():
    with pytest.raises(ShapeError, match="not both"):
        infer_shapes(net(with_input((1, 1, 8, 8), pool("kernel_size: 2 kernel_h: 2 kernel_w: 2"))))
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        infer_shapes(net(with_input((1, 1, 8, 8), pool("kernel_size: 2 pad: 2"))))


def test_spp():
    body = 'layer { name: "s" type: "SPP" bottom: "x" top: "s" spp_param { pyramid_height: 3 } }'
    assert top_after((2, 4, 13, 13), body, "s") == 4 * (1 + 4 + 16)


# ----------------------------------------------------------------------------------------------------------
# Fully connected, embedding, normalization, scaling


def test_inner_product_axis_and_transpose():
    assert one(with_input((2, 3, 4, 5), ip("x", params="num_output: 7 axis: 2"))) == [(7, 20), (7,)]
    assert one(with_input((2, 3, 4, 5), ip("x", params="num_output: 7 transpose: true bias_term: false"))) == \
        [(60, 7)]


def test_embed():
    body = 'layer { name: "e" type: "Embed" bottom: "x" top: "e" embed_param { num_output: 8 input_dim: 100 } }'
    result = infer_shapes(net(with_input((5, 2), body + ip("e", "probe"))))
    assert [b.shape for b in result[0].blobs] == [(100, 8), (8,)]
    assert result[1].blobs[0].shape == (3, 16)


def test_batch_norm_blobs_are_zero_constants():
    body = 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }'
    (layer,) = infer_shapes(net(with_input((2, 5, 3, 3), body)))
    assert [b.shape for b in layer.blobs] == [(5,), (5,), (1,)]
    assert all(b.filler.type == "constant" and b.filler.value == 0 for b in layer.blobs)


def test_scale_defaults_and_bias():
    body = 'layer { name: "s" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }'
    (layer,) = infer_shapes(net(with_input((2, 5, 3, 3), body)))
    assert [b.shape for b in layer.blobs] == [(5,), (5,)]
    assert (layer.blobs[0].filler.type, layer.blobs[0].filler.value) == ("constant", 1.0)
    assert (layer.blobs[1].filler.type, layer.blobs[1].filler.value) == ("constant", 0.0)


def test_scale_axis_num_axes():
    body = 'layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { axis: 1 num_axes: -1 } }'
    assert one(with_input((2, 5, 3, 4), body)) == [(5, 3, 4)]
    body = 'layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { axis: -2 num_axes: 0 } }'
    assert one(with_input((2, 5, 3, 4), body)) == [()]


def test_scale_with_two_bottoms_has_only_the_bias():
    body = with_input((2, 3, 4, 5), 'layer { name: "in2" type: "Input" top: "w" input_param { shape { dim: 2 dim: 3 } } }'
                      'layer { name: "s" type: "Scale" bottom: "x" bottom: "w" top: "y" '
                      'scale_param { axis: 0 bias_term: true } }')
    assert one(body) == [(2, 3)]
    plain = body.replace("bias_term: true", "bias_term: false")
    assert infer_shapes(net(plain)) == []


def test_bias_layer():
    body = 'layer { name: "b" type: "Bias" bottom: "x" top: "y" bias_param { axis: 2 } }'
    assert one(with_input((2, 3, 4, 5), body)) == [(4,)]
    assert one(with_input((2, 3, 4, 5), body.replace("axis: 2", "axis: 2 num_axes: 2"))) == [(4, 5)]


def test_prelu_channel_shared_has_zero_axes():
    body = 'layer { name: "p" type: "PReLU" bottom: "x" top: "x" prelu_param { channel_shared: true } }'
    (layer,) = infer_shapes(net(with_input((1, 6, 2, 2), body)))
    assert layer.blobs[0].shape == ()
    assert layer.blobs[0].filler.value == pytest.approx(0.25)
    assert one(with_input((1, 6, 2, 2), body.replace("true", "false"))) == [(6,)]


def test_parameter_layer():
    body = 'layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 3 dim: 4 } } }' + ip("p")
    assert shapes(infer_shapes(net(body)))[0] == ("p", "Parameter", [(3, 4)])


# ----------------------------------------------------------------------------------------------------------
# Reshaping layers


@pytest.mark.parametrize(
    "params, expected",
    [
        ("shape { dim: 0 dim: -1 dim: 4 }", 60),
        ("axis: 1 num_axes: 2 shape { dim: -1 }", 60),
        ("shape { dim: -1 dim: 6 }", 6),
        ("shape { dim: 0 dim: 0 dim: 20 }", 60),
    ],
)
def test_reshape_zero_and_minus_one(params, expected):
    body = f'layer {{ name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param {{ {params} }} }}'
    assert top_after((2, 3, 4, 5), body, "r") == expected


def test_reshape_axes():
    body = 'layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 4 } } }'
    # (2, 15, 4): an InnerProduct on axis 2 sees K = 4
    probe = ip("r", "probe", "num_output: 1 axis: 2")
    assert one(with_input((2, 3, 4, 5), body + probe))[0] == (1, 4)
    body = 'layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { axis: 1 num_axes: 2 shape { dim: -1 } } }'
    assert one(with_input((2, 3, 4, 5), body + probe))[0] == (1, 5)  # (2, 12, 5)


def test_reshape_rejects_bad_counts():
    body = 'layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { shape { dim: 7 dim: -1 } } }'
    with pytest.raises(ShapeError, match="divisible"):
        infer_shapes(net(with_input((2, 3), body)))


def test_flatten():
    body = 'layer { name: "f" type: "Flatten" bottom: "x" top: "f" flatten_param { axis: 1 end_axis: 2 } }'
    assert one(with_input((2, 3, 4, 5), body + ip("f", "probe", "num_output: 1 axis: 2")))[0] == (1, 5)


def test_crop():
    body = with_input((1, 3, 10, 12), 'layer { name: "in2" type: "Input" top: "r" input_param { shape { dim: 1 dim: 5 dim: 6 dim: 7 } } }'
                      'layer { name: "c" type: "Crop" bottom: "x" bottom: "r" top: "c" crop_param { axis: 2 offset: 1 } }')
    assert one(body + ip("c", "probe"))[0] == (3, 3 * 6 * 7)
    with pytest.raises(ShapeError, match="out of bounds"):
        infer_shapes(net(body.replace("offset: 1", "offset: 5")))


def test_slice_points_and_even_split():
    body = ('layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" top: "c" '
            'slice_param { axis: 1 slice_point: 3 slice_point: 7 } }')
    result = infer_shapes(net(with_input((1, 10, 2), body + ip("a", "pa") + ip("b", "pb") + ip("c", "pc"))))
    assert [layer.blobs[0].shape[1] for layer in result] == [6, 8, 6]
    body = 'layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" slice_param { slice_dim: 1 } }'
    assert one(with_input((1, 10, 2), body + ip("b", "pb")))[0] == (3, 10)


def test_concat_axis_and_concat_dim():
    two = ('layer { name: "in2" type: "Input" top: "y" input_param { shape { dim: 1 dim: 4 dim: 3 } } }'
           'layer { name: "c" type: "Concat" bottom: "x" bottom: "y" top: "c" concat_param { %s } }')
    assert one(with_input((1, 2, 3), two % "axis: 1") + ip("c", "p", "num_output: 1 axis: 2"))[0] == (1, 3)
    assert one(with_input((1, 2, 3), two % "concat_dim: 1") + ip("c", "p", "num_output: 1 axis: 1"))[0] == (1, 18)
    with pytest.raises(ShapeError, match="outside axis"):
        infer_shapes(net(with_input((1, 2, 3), two % "axis: 2")))


def test_tile_reduction_argmax():
    tile = 'layer { name: "t" type: "Tile" bottom: "x" top: "t" tile_param { axis: 1 tiles: 3 } }'
    assert top_after((2, 4, 5), tile, "t") == 60
    red = 'layer { name: "r" type: "Reduction" bottom: "x" top: "r" reduction_param { axis: 2 } }'
    assert top_after((2, 4, 5), red, "r") == 4
    arg = 'layer { name: "a" type: "ArgMax" bottom: "x" top: "a" argmax_param { top_k: 2 out_max_val: true } }'
    assert top_after((2, 4, 5), arg, "a") == 2 * 2  # (2, 2, 2)
    arg = 'layer { name: "a" type: "ArgMax" bottom: "x" top: "a" argmax_param { top_k: 2 axis: 1 } }'
    assert top_after((2, 4, 5), arg, "a") == 2 * 5


def test_losses_are_scalars_and_accuracy_per_class():
    body = with_input((4, 10), 'layer { name: "l" type: "Input" top: "label" input_param { shape { dim: 4 } } }'
                      'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" top: "prob" }'
                      'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "acc" top: "per_class" }'
                      + ip("prob", "p1") + ip("per_class", "p2", "num_output: 3 axis: 0")
                      + 'layer { name: "r" type: "Reshape" bottom: "loss" top: "r" reshape_param { shape { dim: 1 } } }'
                      + ip("r", "p3", "num_output: 2 axis: 0"))
    result = infer_shapes(net(body))
    assert [layer.blobs[0].shape for layer in result] == [(3, 10), (3, 10), (2, 1)]


# ----------------------------------------------------------------------------------------------------------
# Recurrent layers


LSTM = ('layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ dim: 3 dim: 2 }} }} }}'
        'layer {{ name: "r" type: "{type_}" bottom: "x" bottom: "cont" top: "h" '
        'recurrent_param {{ num_output: 4 weight_filler {{ type: "uniform" }} bias_filler {{ type: "constant" value: 1 }} }} }}')


def test_lstm_blobs_and_filler_runs():
    (layer,) = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="LSTM"))))
    assert [b.shape for b in layer.blobs] == [(16, 5), (16,), (16, 4)]
    # W_hc runs once per timestep; only the first run is kept
    assert [(f.blob, f.shape) for f in layer.fills] == [(0, (16, 5)), (1, (16,)), (2, (16, 4)), (None, (16, 4)),
                                                        (None, (16, 4))]
    assert [f.filler.type for f in layer.fills] == ["uniform", "constant", "uniform", "uniform", "uniform"]


def test_rnn_blobs_and_filler_runs():
    (layer,) = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="RNN"))))
    assert [b.shape for b in layer.blobs] == [(4, 5), (4,), (4, 4), (4, 4), (4,)]
    assert [f.blob for f in layer.fills] == [0, 1, 2, 3, 4, None, None, None, None, None, None]


def test_recurrent_output_shape():
    probe = ip("h", "probe", "num_output: 1 axis: 0")
    result = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="LSTM") + probe)))
    assert result[-1].blobs[0].shape == (1, 3 * 2 * 4)


# ----------------------------------------------------------------------------------------------------------
# Net state rules, sharing, names, inputs


STAGED = """
state { stage: "deploy" }
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "train" type: "InnerProduct" bottom: "x" top: "a" inner_product_param { num_output: 1 }
        include { phase: TRAIN } }
layer { name: "test" type: "InnerProduct" bottom: "x" top: "b" inner_product_param { num_output: 1 }
        include { phase: TEST } }
layer { name: "staged" type: "InnerProduct" bottom: "x" top: "c" inner_product_param { num_output: 1 }
        include { stage: "deploy" } }
layer { name: "two_stages" type: "InnerProduct" bottom: "x" top: "d" inner_product_param { num_output: 1 }
        include { stage: "deploy" stage: "other" } }
layer { name: "not_deploy" type: "InnerProduct" bottom: "x" top: "e" inner_product_param { num_output: 1 }
        include { not_stage: "deploy" } }
layer { name: "excluded_in_test" type: "InnerProduct" bottom: "x" top: "f" inner_product_param { num_output: 1 }
        exclude { phase: TEST } }
layer { name: "level" type: "InnerProduct" bottom: "x" top: "g" inner_product_param { num_output: 1 }
        include { min_level: 1 } }
layer { name: "max_level" type: "InnerProduct" bottom: "x" top: "h" inner_product_param { num_output: 1 }
        include { max_level: 0 } }
"""


def test_include_exclude_stages_levels():
    names = lambda phase: [layer.name for layer in infer_shapes(net(STAGED), phase=phase)]  # noqa: E731
    assert names("TEST") == ["test", "staged", "max_level"]
    assert names("TRAIN") == ["train", "staged", "excluded_in_test", "max_level"]


def test_phase_argument_overrides_state_phase():
    assert [layer.name for layer in infer_shapes(net(STAGED.replace("state {", "state { phase: TRAIN")))] == \
        ["test", "staged", "max_level"]


def test_phase_must_be_train_or_test():
    with pytest.raises(ValueError, match="phase"):
        infer_shapes(net(STAGED), phase="VAL")


SHARED = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" } inner_product_param { num_output: 3 } }
layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" param { name: "w" %s } inner_product_param { %s } }
"""


def test_shared_params_must_match():
    with pytest.raises(ShapeError, match="cannot share param 'w'"):
        infer_shapes(net(SHARED % ("", "num_output: 4")))
    # (6, 3) has the count of (3, 6): enough for PERMISSIVE, not for the default STRICT check
    with pytest.raises(ShapeError, match="cannot share param 'w'"):
        infer_shapes(net(SHARED % ("", "num_output: 3 transpose: true")))
    b = infer_shapes(net(SHARED % ("share_mode: PERMISSIVE", "num_output: 3 transpose: true")))[1]
    assert b.blobs[0].shape == (6, 3) and b.blobs[0].share_owner == ("a", 0)


def test_shared_params_name_their_owner():
    a, b = infer_shapes(net(SHARED % ("", "num_output: 3")))
    assert a.blobs[0].share_owner is None and a.blobs[0].param_name == "w"
    assert b.blobs[0].share_owner == ("a", 0) and b.blobs[0].param_name == "w"
    assert b.blobs[1].share_owner is None and a.blobs[1].param_name == ""


def test_in_place_and_reused_top_names():
    body = with_input((2, 3, 4, 4), conv("num_output: 5 kernel_size: 3")
                      + 'layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }'
                      + 'layer { name: "again" type: "Pooling" bottom: "c" top: "c" pooling_param { kernel_size: 2 stride: 2 } }'
                      + ip("c", "probe"))
    assert infer_shapes(net(body))[-1].blobs[0].shape == (3, 5)


def test_inputs_override_the_net():
    body = with_input((1, 3, 8, 8), conv("num_output: 2 kernel_size: 3") + ip("c"))
    assert infer_shapes(net(body), inputs={"x": (1, 4, 10, 10)})[0].blobs[0].shape == (2, 4, 3, 3)
    assert infer_shapes(net(body), inputs={"x": [1, 4, 10, 10]})[1].blobs[0].shape == (3, 2 * 8 * 8)
    with pytest.raises(ShapeError, match="name no top"):
        infer_shapes(net(body), inputs={"nope": (1,)})
    with pytest.raises(ValueError, match="non-negative"):
        infer_shapes(net(body), inputs={"x": (1, -3)})


# ----------------------------------------------------------------------------------------------------------
# What cannot be known


def test_unknown_shape_names_both_layers_and_suggests_inputs():
    body = ('layer { name: "py" type: "Python" top: "data" python_param { module: "m" layer: "L" } }'
            + conv("num_output: 2 kernel_size: 3", bottom="data"))
    with pytest.raises(ShapeError) as err:
        infer_shapes(net(body))
    message = str(err.value)
    assert "'c' (Convolution)" in message and "'py' (Python)" in message
    assert "inputs={'data'" in message and "--input data=" in message
    assert infer_shapes(net(body), inputs={"data": (1, 3, 5, 5)})[0].blobs[0].shape == (2, 3, 3, 3)


def test_unknown_shape_hint_names_the_blob_it_comes_from():
    body = with_input((1, 4, 9, 9),
                      'layer { name: "proposal" type: "Python" bottom: "x" top: "rois" python_param { module: "m" layer: "P" } }'
                      'layer { name: "roi" type: "ROIPooling" bottom: "x" bottom: "rois" top: "pool" '
                      'roi_pooling_param { pooled_h: 2 pooled_w: 2 } }' + ip("pool", "fc6"))
    if not has_field("roi_pooling_param"):
        pytest.skip("schema without fork messages")
    with pytest.raises(ShapeError, match="blob 'pool', which is computed from blob 'rois'.*--input rois="):
        infer_shapes(net(body))
    assert infer_shapes(net(body), inputs={"rois": (300, 5)})[0].blobs[0].shape == (3, 4 * 2 * 2)


def test_inputs_give_free_net_inputs():
    body = conv("num_output: 2 kernel_size: 3", bottom="data")
    with pytest.raises(ShapeError, match="unknown bottom blob 'data'.*inputs="):
        infer_shapes(net(body))
    assert infer_shapes(net(body), inputs={"data": (1, 3, 5, 5)})[0].blobs[0].shape == (2, 3, 3, 3)


def test_layer_without_type():
    with pytest.raises(ShapeError, match="no type"):
        infer_shapes(net('layer { name: "m" top: "x" }'))


def test_unknown_shapes_flow_through_parameter_free_layers():
    body = ('layer { name: "py" type: "Python" top: "data" top: "label" python_param { module: "m" layer: "L" } }'
            'layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" }')
    assert infer_shapes(net(body)) == []


def test_data_layer_shapes_and_setup_draws():
    def data(transform: str) -> str:
        return (f'layer {{ name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "db" batch_size: 8 }} '
                f'transform_param {{ {transform} }} }}' + conv("num_output: 2 kernel_size: 3", bottom="data"))

    known = data("crop_size: 5 mirror: true mean_value: 1 mean_value: 2 mean_value: 3")
    (layer,) = infer_shapes(net(known))
    assert layer.blobs[0].shape == (2, 3, 3, 3)
    assert layer.raw_draws_before == 3  # two transformer seeds (mirror) and the prefetch thread's seed
    with pytest.raises(ShapeError, match="database 'db'"):
        infer_shapes(net(data("crop_size: 5 mean_value: 1")))
    plain = data("crop_size: 5 mean_value: 1 mean_value: 2")
    assert infer_shapes(net(plain))[0].raw_draws_before == 1
    assert infer_shapes(net(plain), phase="TRAIN")[0].raw_draws_before == 3  # TRAIN crops randomly


def test_image_data_shapes_and_draws():
    body = ('layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { source: "list" '
            'batch_size: 4 new_height: 7 new_width: 9 is_color: false shuffle: true rand_skip: 3 } }'
            + conv("num_output: 2 kernel_size: 3", bottom="data") + ip("c", "probe"))
    result = infer_shapes(net(body))
    assert result[0].blobs[0].shape == (2, 1, 3, 3)
    assert result[0].raw_draws_before == 3  # shuffle seed, skip draw, prefetch thread seed
    assert result[1].blobs[0].shape == (3, 2 * 5 * 7)


def test_dummy_and_memory_data_draw_nothing():
    body = ('layer { name: "d" type: "DummyData" top: "a" dummy_data_param { num: 2 channels: 3 height: 4 width: 5 '
            'data_filler { type: "gaussian" } } }'
            'layer { name: "m" type: "MemoryData" top: "b" top: "l" memory_data_param { batch_size: 2 channels: 1 '
            'height: 3 width: 3 } }' + ip("a", "p1") + ip("b", "p2"))
    result = infer_shapes(net(body))
    assert [(l.blobs[0].shape, l.raw_draws_before) for l in result] == [((3, 60), 0), ((3, 9), 0)]


def test_unknown_layer_type():
    with pytest.raises(ShapeError, match="unknown layer type 'Mystery'"):
        infer_shapes(net('layer { name: "m" type: "Mystery" top: "x" }'))


def test_unknown_bottom():
    with pytest.raises(ShapeError, match="unknown bottom blob 'nope'"):
        infer_shapes(net(ip("nope")))


def test_shape_error_is_a_value_error():
    assert issubclass(ShapeError, ValueError)


def test_filler_defaults_are_copies():
    parsed = net(with_input((1, 2), ip("x")))
    (layer,) = infer_shapes(parsed)
    assert isinstance(layer.blobs[0].filler, FillerParameter)
    layer.blobs[0].filler.type = "xavier"
    assert not parsed.layer[1].inner_product_param.HasField("weight_filler")


# ----------------------------------------------------------------------------------------------------------
# Fork layers (need the fork schema)

fork = pytest.mark.skipif(not has_field("norm_param"), reason="schema without fork messages")


@fork
def test_normalize_scale_is_shared_by_default():
    body = 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" norm_param { %s } }'
    (layer,) = infer_shapes(net(with_input((1, 16, 4, 4), body % "across_spatial: false")))
    assert layer.blobs[0].shape == () and layer.blobs[0].filler.value == 1
    assert one(with_input((1, 16, 4, 4), body % "channel_shared: false scale_filler { type: 'constant' value: 20 }")) \
        == [(16,)]


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
def test_fork_layers_shape_their_tops():
    cases = {
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { zoom_factor: 2 } }': 4 * 9 * 11,
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { shrink_factor: 2 } }': 4 * 3 * 3,
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { height: 7 width: 8 } }': 4 * 7 * 8,
        'layer { name: "t" type: "ShuffleChannel" bottom: "x" top: "t" shuffle_channel_param { group: 2 } }': 4 * 5 * 6,
        'layer { name: "t" type: "Upsample" bottom: "x" bottom: "x" top: "t" upsample_param { scale: 2 } }': 4 * 10 * 12,
        'layer { name: "t" type: "Upsample" bottom: "x" bottom: "x" top: "t" '
        'upsample_param { upsample_h: 9 upsample_w: 11 } }': 4 * 9 * 11,
    }
    for body, count in cases.items():
        assert top_after((2, 4, 5, 6), body, "t") == count, body


@pytest.mark.skipif(not has_field("padding_param"), reason="schema without DeepLab's padding_param")
def test_deeplab_padding():
    body = 'layer { name: "t" type: "Padding" bottom: "x" top: "t" padding_param { pad_beg: -1 pad_end: -2 } }'
    assert top_after((2, 4, 9, 8), body, "t") == 4 * 6 * 5


@pytest.mark.skipif(not has_loader(), reason="needs fillers.prototxt.load_net for V1 files")
def test_deeplab_v1_padding_layer_file():
    from fillers.prototxt import load_net

    v1 = ('input: "x" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5 '
          'layers { name: "pad" type: PADDING bottom: "x" top: "p" padding_param { pad_beg: 2 pad_end: 1 } } '
          'layers { name: "fc" type: INNER_PRODUCT bottom: "p" top: "f" inner_product_param { num_output: 3 } }')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PADDING is not a BVLC V1 type
        parsed = load_net(v1)
    assert shapes(infer_shapes(parsed)) == [("fc", "InnerProduct", [(3, 2 * 8 * 8), (3,)])]
    with pytest.raises(ShapeError, match=r"layer 'pad' \(Padding\): padding must either be both positive or"):
        infer_shapes(net(with_input((1, 2, 5, 5), 'layer { name: "pad" type: "Padding" bottom: "x" top: "p" '
                                                  'padding_param { pad_beg: 2 pad_end: -1 } }')))


REORG = 'layer {{ name: "r" type: "Reorg" bottom: "x" top: "{top}" reorg_param {{ {params} }} }}\n'


@fork
def test_intel_reorg_moves_space_to_depth_and_back():
    def reorg(dims: tuple, params: str) -> tuple:
        body = REORG.format(top="r", params=params)
        return infer_shapes(net(with_input(dims, body + conv("num_output: 1 kernel_size: 1", "r"))))[0].blobs[0].shape

    assert reorg((2, 64, 26, 26), "stride: 2") == (1, 256, 1, 1)
    assert top_after((2, 64, 26, 26), REORG.format(top="r", params="stride: 2"), "r") == 256 * 13 * 13
    assert top_after((1, 8, 7, 9), REORG.format(top="r", params="stride: 2"), "r") == 32 * 3 * 4  # floors
    assert top_after((1, 64, 5, 6), REORG.format(top="r", params="stride: 4 reverse: true"), "r") == 4 * 20 * 24


@fork
@pytest.mark.parametrize("params, top, message", [
    ("", "r", "needs reorg_param stride"),
    ("stride: 0", "r", "stride must be positive"),
    ("stride: 2", "x", "does not allow in-place computation"),
])
def test_intel_reorg_rejects_what_its_setup_rejects(params, top, message):
    with pytest.raises(ShapeError, match=rf"layer 'r' \(Reorg\): {message}"):
        infer_shapes(net(with_input((1, 4, 4, 4), REORG.format(top=top, params=params))))


@fork
def test_intel_eval_detection_top():
    body = ('layer { name: "e" type: "EvalDetection" bottom: "x" bottom: "x" top: "e" '
            'eval_detection_param { side: 3 num_class: 2 num_object: 5 } }')
    assert top_after((4, 5 * (2 + 5), 3, 3), body, "e") == 2 + 3 * 3 * 5 * 4
    with pytest.raises(ShapeError, match=r"layer 'e' \(EvalDetection\): bottom 0 \(4, 34, 3, 3\) must hold"):
        infer_shapes(net(with_input((4, 34, 3, 3), body)))


CRF = ('layer {{ name: "in" type: "Input" top: "u" top: "img" '
       'input_param {{ shape {{ dim: 2 dim: 4 dim: 5 dim: 6 }} shape {{ dim: 2 dim: 3 dim: 5 dim: 6 }} }} }}\n'
       'layer {{ name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "u" bottom: "img" top: "q" '
       'multi_stage_meanfield_param {{ {params} }} }}\n')
CRF_STR = 'num_iterations: 5 spatial_filter_weights_str: "3 3 2 1.5 7" bilateral_filter_weights_str: "5 5 5 {last}"'


@fork
def test_crf_as_rnn_blobs_are_written_by_its_setup_not_filled():
    (layer,) = infer_shapes(net(CRF.format(params=CRF_STR.format(last="-0.25"))))
    assert [(b.shape, b.filler) for b in layer.blobs] == [((1, 1, 4, 4), None)] * 3
    assert layer.fills == () and layer.raw_draws_before == 0
    assert layer.given == "setup"
    spatial, bilateral, compatibility = layer.given_values()
    np.testing.assert_array_equal(spatial[0, 0], np.diag([3, 3, 2, 1.5]))  # values past the class count: unread
    np.testing.assert_array_equal(bilateral[0, 0], np.diag([5, 5, 5, -0.25]))
    np.testing.assert_array_equal(compatibility[0, 0], -np.eye(4))
    assert all(g.dtype == np.float32 for g in layer.given_values())
    assert top_after((2, 1), CRF.format(params=CRF_STR.format(last="1")), "q") == 4 * 5 * 6


@fork
@pytest.mark.parametrize("params, message", [
    (CRF_STR.format(last="1").replace("num_iterations: 5", "num_iterations: 1"),
     "number of iterations must be greater than 1, got 1"),
    (CRF_STR.format(last=""), "bilateral_filter_weights_str '5 5 5 ' has 3 values for 4 classes"),
    (CRF_STR.format(last="1").replace('"3 3', '"3  3'), r"spatial_filter_weights_str '3  3 2 1.5 7': '' is not a float"),
    (CRF_STR.format(last="x"), r"bilateral_filter_weights_str '5 5 5 x': 'x' is not a float"),
    (CRF_STR.format(last="1e39"), r".*: '1e39' is not a float"),  # out of float's range: std::stof throws
    (CRF_STR.format(last="1e-50"), r".*: '1e-50' is not a float"),
    ("num_iterations: 5 spatial_filter_weight: 3 bilateral_filter_weight: 5",
     "the initial kernel weights cannot be known from the net: .* spatial.par and bilateral.par"),
])
def test_crf_as_rnn_rejects_what_its_setup_rejects(params, message):
    with pytest.raises(ShapeError, match=rf"layer 'crf' \(MultiStageMeanfield\): {message}"):
        infer_shapes(net(CRF.format(params=params)))


@fork
def test_crf_as_rnn_strings_read_as_std_stof_reads_them():
    # getline(' ') tokens: a trailing space ends the list; stof skips leading white space, stops at the first
    # character that does not continue a number, reads hex and inf, and rounds to the nearest float.
    text = '"\\t1.5e1x +.5 0x1p-2 -inf 16777217 "'
    params = f"num_iterations: 2 spatial_filter_weights_str: {text} bilateral_filter_weights_str: {text}"
    (layer,) = infer_shapes(net(CRF.format(params=params).replace("dim: 2 dim: 4", "dim: 2 dim: 5")))
    diagonal = np.diag(layer.given_values()[0][0, 0])
    assert list(diagonal) == [15.0, 0.5, 0.25, -np.inf, 16777216.0]  # 2**24 + 1 is a tie: to even


@fork
def test_crf_as_rnn_first_version_fields_read_and_blobs_written_in_the_net_need_no_strings():
    blob = 'blobs { shape { dim: 1 dim: 1 dim: 4 dim: 4 } data: [%s] }' % ", ".join(["2"] * 16)
    body = CRF.format(params="num_iterations: 3 spatial_filter_weight: 3 bilateral_filter_weight: 5")
    (layer,) = infer_shapes(net(body.replace('top: "q" ', f'top: "q" {blob} {blob} {blob} ')))
    assert layer.given == "net"
    assert len(layer.given_values()) == 3
    assert all(np.array_equal(g, np.full((1, 1, 4, 4), 2.0)) for g in layer.given_values())
    assert net(body).layer[1].multi_stage_meanfield_param.spatial_filter_weight == 3


SPP_PR = ('layer {{ name: "data" type: "SpatialPyramidPoolingData" top: "f" top: "l" '
          'spatial_pyramid_pooling_data_param {{ features_source: "conv5_db" regions_source: "regions.txt" }} }}\n'
          'layer {{ name: "spp" type: "SpatialPyramidPooling" bottom: "f" top: "s" '
          'spatial_pyramid_pooling_param {{ {bins} }} }}\n')


@fork
def test_spatial_pyramid_pooling_pull_601():
    def k(bins: str, dims: tuple) -> int:
        return infer_shapes(net(SPP_PR.format(bins=bins) + ip("s")), inputs={"f": dims})[0].blobs[0].shape[1]

    # kernel = stride = int(13 / bin): 13, 6, 4, 2; ceil-rounded pooling gives 1, 3, 4 and 7 bins a side
    assert k("spatial_bin: 1 spatial_bin: 2 spatial_bin: 3 spatial_bin: 6", (2, 8, 13, 13)) == 8 * (1 + 9 + 16 + 49)
    assert k("spatial_bin: 4", (2, 8, 13, 10)) == 8  # one level: the whole map, whatever the bin
    with pytest.raises(ShapeError, match=r"layer 'spp' \(SpatialPyramidPooling\): filter dimensions cannot be zero"):
        k("spatial_bin: 1 spatial_bin: 20", (2, 8, 13, 13))
    with pytest.raises(ShapeError, match=r"layer 'spp' \(SpatialPyramidPooling\): needs at least one spatial_bin"):
        k("", (2, 8, 13, 13))


@fork
def test_spatial_pyramid_pooling_data_shapes_come_from_its_files():
    with pytest.raises(ShapeError, match=r"layer 'fc' \(InnerProduct\) needs the shape of blob 's', which is computed "
                                         r"from blob 'f'; that cannot be known from the net: layer 'data' "
                                         r"\(SpatialPyramidPoolingData\): .*'conv5_db'.*'regions.txt'.*--input f=D0"):
        infer_shapes(net(SPP_PR.format(bins="spatial_bin: 1") + ip("s")))


def test_import_layer_stands_for_layers_of_another_file():
    body = 'layer { name: "cp1" type: "Import" } ' + ip("x")
    with pytest.raises(ShapeError, match=r"layer 'cp1' \(Import\): the layers it stands for cannot be known from the "
                                         r"net: Caffe replaces an Import layer by the layers of the net file"):
        infer_shapes(net(with_input((1, 2), body)))


@fork
def test_roi_pooling_takes_the_roi_count_from_the_second_bottom():
    body = ('layer { name: "r" type: "Input" top: "rois" input_param { shape { dim: 7 dim: 5 } } }'
            'layer { name: "t" type: "ROIPooling" bottom: "x" bottom: "rois" top: "t" '
            'roi_pooling_param { pooled_h: 2 pooled_w: 3 spatial_scale: 0.0625 } }'
            + ip("t", "probe", "num_output: 1 axis: 0"))
    assert one(with_input((1, 4, 9, 9), body))[0] == (1, 7 * 4 * 2 * 3)


@fork
def test_bn_fork_blobs():
    body = ('layer { name: "bn" type: "BN" bottom: "x" top: "x" bn_param { scale_filler { type: "constant" value: 1 } '
            'shift_filler { type: "constant" value: 0.001 } } }')
    (layer,) = infer_shapes(net(with_input((2, 5, 3, 3), body)))
    assert [b.shape for b in layer.blobs] == [(1, 5, 1, 1), (1, 5, 1, 1)]
    assert layer.blobs[1].filler.value == pytest.approx(0.001)


# ----------------------------------------------------------------------------------------------------------
# The corpus


def test_corpus_sweep(shared_dir, capsys):
    """Every corpus net file infers or fails with ShapeError; no other exception."""
    try:
        from fillers.prototxt import load_net
    except ImportError:
        pytest.skip("needs fillers.prototxt.load_net")
    manifest = (shared_dir / "corpus" / "MANIFEST.tsv").read_text().splitlines()[1:]
    files = [line.split("\t")[0] for line in manifest if line.split("\t")[4] != "solver"]
    inferred, failed, unreadable = [], [], []
    for rel in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the loader's notes on fields it skips
                parsed = load_net(shared_dir / "corpus" / rel)
        except ValueError as err:  # PrototxtError: the file itself is broken
            unreadable.append((rel, str(err).splitlines()[0][:160]))
            continue
        try:
            infer_shapes(parsed)
            inferred.append(rel)
        except ShapeError as err:
            failed.append((rel, str(err)[:200]))
    with capsys.disabled():
        print(f"\ncorpus: {len(inferred)} infer, {len(failed)} ShapeError, {len(unreadable)} unreadable")
        for rel, why in failed + unreadable:
            print(f"  {rel}: {why}")
    assert len(inferred) + len(failed) + len(unreadable) == len(files)
    templates = [rel for rel in files if re.search(r":\s*\$\{", (shared_dir / "corpus" / rel).read_text())]
    assert [rel for rel, _ in unreadable] == templates  # only placeholders make a file unreadable
    for rel, why in failed:  # the clear error names the layer
        assert why.startswith("layer '"), (rel, why)


# The corpus's deploy nets named in the issue (families, matched on file names): all of them must fill.
DEPLOY_NETS = ("bvlc_alexnet__deploy", "bvlc_googlenet__deploy", "VGG_ILSVRC_19_layers_deploy",
               "ResNet-50-deploy", "SqueezeNet_v1.1__deploy", "SENet__models", "MobileNet-Caffe__mobilenet",
               "pose_deploy", "voc-fcn8s__deploy", "SSD_300x300__deploy", "MobileNet-SSD__deploy",
               "enet_deploy", "DenseNet_121", "shufflenet", "imagenet_winners", "yolo__yolov2_test",
               "TVG_CRFRNN_new_deploy", "DeepLab-Context__voc12__vgg128_noup__test")


def test_corpus_deploy_nets_fill(shared_dir):
    from fillers import fill_net

    paths = sorted(p for p in (shared_dir / "corpus" / "prototxt").iterdir() if any(k in p.name for k in DEPLOY_NETS))
    assert len(paths) >= 18
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = fill_net(path, seed=1)
        blobs = [blob for blobs in params.values() for blob in blobs]
        assert blobs and all(np.isfinite(blob).all() for blob in blobs), path.name


def test_takes_messages_only_and_upgrades_legacy_ones(tmp_path):
    v1 = ('input: "data" input_dim: 1 input_dim: 2 input_dim: 6 input_dim: 6 '
          'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" '
          'convolution_param { num_output: 3 kernel_size: 3 } }')
    path = tmp_path / "v1.prototxt"
    path.write_text(v1)
    expected = [("conv", "Convolution", [(3, 2, 3, 3), (3,)])]
    assert shapes(infer_shapes(net(v1))) == expected
    raw = NetParameter()  # a V1 message as parsed, not upgraded
    from google.protobuf import text_format
    text_format.Parse(v1, raw)
    assert shapes(infer_shapes(raw)) == expected
    for not_a_message in (path, str(path)):  # shape inference reads no file
        with pytest.raises(TypeError, match="not a path .*fillers.load_net"):
            infer_shapes(not_a_message)
    with pytest.raises(TypeError, match="must be a NetParameter, not int"):
        infer_shapes(42)


@pytest.mark.parametrize(
    "filler, message",
    [
        ('weight_filler { type: "gabor" }', "blob 0: unknown filler type 'gabor'"),
        ('weight_filler { type: "gaussian" sparse: 5 }', "blob 0: filler 'gaussian': sparse must be <= shape"),
        ('bias_filler { type: "xavier" sparse: 1 }', "blob 1: filler 'xavier': sparse is only supported"),
    ],
)
def test_fillers_caffe_would_reject_fail_the_setup(filler, message):
    body = f'layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param {{ num_output: 3 {filler} }} }}'
    with pytest.raises(ShapeError, match=rf"layer 'ip' \(InnerProduct\): {message}"):
        infer_shapes(net(with_input((2, 4), body)))


def test_net_layers_lists_every_layer_with_bottom_and_top_shapes():
    from fillers.shapes import net_layers

    text = ('layer { name: "data" type: "Data" top: "data" top: "label" data_param { batch_size: 8 } '
            'include { phase: TRAIN } }'
            'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } '
            'include { phase: TEST } }'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 5 kernel_size: 3 } }'
            'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }')
    test = net_layers(net(text))
    assert [(layer.param.name, layer.bottoms, layer.tops) for layer in test] == [
        ("in", (), (("data", (2, 3, 4, 4)),)),
        ("conv", (("data", (2, 3, 4, 4)),), (("conv", (2, 5, 2, 2)),)),
        ("relu", (("conv", (2, 5, 2, 2)),), (("conv", (2, 5, 2, 2)),)),
    ]
    assert [layer.learnable is not None for layer in test] == [False, True, False]
    assert [layer.learnable for layer in test if layer.learnable] == infer_shapes(net(text))
    # TRAIN: the Data layer's image shape is unknown (None), its label's batch known.
    train = net_layers(net(text.replace('"conv" type: "Convolution" bottom: "data"', '"conv" type: "Convolution" '
                                        'bottom: "label"')), phase="TRAIN", inputs={"label": (8, 1, 3, 3)})
    assert train[0].tops == (("data", None), ("label", (8, 1, 3, 3)))
