"""Shape rules of the layers that keep, combine, split or reshape blobs, and of the losses."""

import pytest

from fillers import ShapeError, infer_shapes
from shape_helpers import net, one, with_input, ip, top_after


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
