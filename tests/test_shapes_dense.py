"""Shape rules of the learnable layers that are not convolutions: inner products, embeddings, normalisation,
per-channel affine layers."""

import pytest

from fillers import infer_shapes
from shape_helpers import net, shapes, one, with_input, ip, fork


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


@fork
def test_normalize_scale_is_shared_by_default():
    body = 'layer { name: "n" type: "Normalize" bottom: "x" top: "n" norm_param { %s } }'
    (layer,) = infer_shapes(net(with_input((1, 16, 4, 4), body % "across_spatial: false")))
    assert layer.blobs[0].shape == () and layer.blobs[0].filler.value == 1
    assert one(with_input((1, 16, 4, 4), body % "channel_shared: false scale_filler { type: 'constant' value: 20 }")) \
        == [(16,)]


@fork
def test_bn_fork_blobs():
    body = ('layer { name: "bn" type: "BN" bottom: "x" top: "x" bn_param { scale_filler { type: "constant" value: 1 } '
            'shift_filler { type: "constant" value: 0.001 } } }')
    (layer,) = infer_shapes(net(with_input((2, 5, 3, 3), body)))
    assert [b.shape for b in layer.blobs] == [(1, 5, 1, 1), (1, 5, 1, 1)]
    assert layer.blobs[1].filler.value == pytest.approx(0.001)
