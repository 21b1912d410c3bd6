"""Shape rules of the data layers: what their tops are without their data, and the seeds their setup draws."""

import pytest

from fillers import ShapeError, infer_shapes
from shape_helpers import net, with_input, conv, ip


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


def test_import_layer_stands_for_layers_of_another_file():
    body = 'layer { name: "cp1" type: "Import" } ' + ip("x")
    with pytest.raises(ShapeError, match=r"layer 'cp1' \(Import\): the layers it stands for cannot be known from the "
                                         r"net: Caffe replaces an Import layer by the layers of the net file"):
        infer_shapes(net(with_input((1, 2), body)))
