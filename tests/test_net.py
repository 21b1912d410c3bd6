"""fill_net: real Caffe's weights for corpus nets, Caffe's draw order, Philox streams keyed by layer."""
import hashlib
import json
import warnings

import numpy as np
import pytest
from google.protobuf import text_format

from fillers import CaffeRNG, NetParameter, ShapeError, fill, fill_net, load_net, philox_stream


def net(text: str) -> NetParameter:
    return text_format.Parse(text, NetParameter())


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_nets_json_weights_match_caffe(shared_dir):
    data = json.loads((shared_dir / "caffe_vectors" / "nets.json").read_text())
    for rel, layers in data["nets"].items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = fill_net(load_net(shared_dir / "corpus" / rel), seed=data["seed"], rng="caffe",
                              phase=data["phase"])
        assert list(params) == [layer["name"] for layer in layers], rel
        for layer in layers:
            for i, blob in enumerate(layer["blobs"]):
                array = params[layer["name"]][i]
                assert array.dtype == np.float32 and array.shape == tuple(blob["shape"])
                assert sha256(array) == blob["sha256"], (rel, layer["name"], i)


TWO = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" }
                            bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "c" top: "f"
        inner_product_param { num_output: 5 weight_filler { type: "msra" } bias_filler { type: "uniform" } } }
"""


def test_caffe_order_is_layers_then_weight_before_bias():
    params = fill_net(net(TWO), seed=7, rng="caffe")
    rng = CaffeRNG(7)
    expected = [fill(np.empty(shape, np.float32), filler, rng=rng) for shape, filler in [
        ((4, 3, 3, 3), "xavier"), ((4,), 'type: "gaussian" std: 0.1'), ((5, 144), "msra"), ((5,), "uniform")]]
    got = params["conv"] + params["fc"]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_caffe_float64():
    params = fill_net(net(TWO), seed=7, rng="caffe", dtype=np.float64)
    rng = CaffeRNG(7)
    assert np.array_equal(params["conv"][0], fill(np.empty((4, 3, 3, 3)), "xavier", rng=rng))


DATA_FIRST = """
layer { name: "d" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 2 }
        transform_param { mirror: true crop_size: 4 mean_value: 1 mean_value: 2 mean_value: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "f"
        inner_product_param { num_output: 2 weight_filler { type: "uniform" } } }
"""


def test_caffe_skips_the_seeds_data_layers_draw():
    params = fill_net(net(DATA_FIRST), seed=3, rng="caffe")
    rng = CaffeRNG(3)
    rng.raw(3)  # two transformer seeds (mirror) and the prefetch thread's seed
    assert np.array_equal(params["fc"][0], fill(np.empty((2, 48), np.float32), "uniform", rng=rng))


SHARED = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" param { name: "w" }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" } bias_filler { type: "uniform" } } }
"""


@pytest.mark.parametrize("rng", ["philox", "caffe"])
def test_shared_blob_is_the_owners_array(rng):
    params = fill_net(net(SHARED), seed=5, rng=rng)
    assert params["b"][0] is params["a"][0]
    assert params["b"][1] is not params["a"][1]


def test_caffe_sharing_layer_still_draws_its_own_filler():
    params = fill_net(net(SHARED), seed=5, rng="caffe")
    rng = CaffeRNG(5)
    for shape, filler in [((3, 6), "gaussian"), ((3,), "constant"), ((3, 6), "gaussian")]:
        fill(np.empty(shape, np.float32), filler, rng=rng)  # b's own weight run is drawn, then replaced
    assert np.array_equal(params["b"][1], fill(np.empty(3, np.float32), "uniform", rng=rng))


LSTM = """
layer { name: "x" type: "Input" top: "x" top: "cont" input_param { shape { dim: 3 dim: 2 dim: 5 } shape { dim: 3 dim: 2 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
        recurrent_param { num_output: 4 weight_filler { type: "uniform" min: -0.1 max: 0.1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "h" top: "f"
        inner_product_param { num_output: 2 axis: 2 weight_filler { type: "uniform" } } }
"""


def test_caffe_unrolled_lstm_draws_each_timestep():
    params = fill_net(net(LSTM), seed=11, rng="caffe")
    rng = CaffeRNG(11)
    w = 'type: "uniform" min: -0.1 max: 0.1'
    expected_xc = fill(np.empty((16, 5), np.float32), w, rng=rng)
    fill(np.empty(16, np.float32), "constant", rng=rng)
    expected_hc = fill(np.empty((16, 4), np.float32), w, rng=rng)
    for _ in range(2):  # timesteps 2 and 3 run the shared W_hc filler again
        fill(np.empty((16, 4), np.float32), w, rng=rng)
    assert np.array_equal(params["lstm"][0], expected_xc)
    assert np.array_equal(params["lstm"][2], expected_hc)
    assert np.array_equal(params["fc"][0], fill(np.empty((2, 4), np.float32), "uniform", rng=rng))


def test_philox_blob_streams_are_keyed_by_layer_and_index():
    params = fill_net(net(TWO), seed=9)
    assert np.array_equal(params["fc"][0], fill(np.empty((5, 144), np.float32), "msra", seed=9,
                                                stream=philox_stream("fc", 0)))
    assert philox_stream("fc", 0) == int.from_bytes(hashlib.sha256(b"fc\x000").digest()[:8], "little")


def test_philox_values_do_not_depend_on_other_layers():
    reordered = TWO.replace('name: "conv"', 'name: "conv_renamed"')
    extra = TWO + ('layer { name: "more" type: "InnerProduct" bottom: "f" top: "m" '
                   'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }')
    base = fill_net(net(TWO), seed=1)
    for other in (fill_net(net(reordered), seed=1), fill_net(net(extra), seed=1)):
        assert all(np.array_equal(a, b) for a, b in zip(base["fc"], other["fc"]))


def test_philox_threads_never_change_values():
    one = fill_net(net(TWO), seed=2, threads=1)
    four = fill_net(net(TWO), seed=2, threads=4)
    assert all(np.array_equal(one[k][i], four[k][i]) for k in one for i in range(len(one[k])))


def test_result_is_ordered_like_the_net():
    assert list(fill_net(net(TWO))) == ["conv", "fc"]


def test_errors():
    with pytest.raises(ValueError, match="rng must be"):
        fill_net(net(TWO), rng="mt")
    with pytest.raises(TypeError, match="float32, float64, float16, bfloat16"):
        fill_net(net(TWO), dtype=np.int32)
    with pytest.raises(ValueError, match="threads"):
        fill_net(net(TWO), rng="caffe", threads=2)
    with pytest.raises(ValueError):
        fill_net(net(TWO), rng="caffe", seed=2**32)
    with pytest.raises(ShapeError):
        fill_net(net('layer { name: "m" type: "Mystery" top: "x" }'), strict=True)
    bad = TWO.replace('type: "xavier"', 'type: "nonsense"')
    with pytest.raises(ValueError, match="layer 'conv'.*nonsense"):
        fill_net(net(bad))


def test_repeated_layer_names_get_unique_keys():
    twice = TWO + TWO.split("\n", 2)[2].replace('bottom: "x"', 'bottom: "f"').replace('bottom: "c"', 'bottom: "c2"') \
        .replace('top: "c"', 'top: "c2"').replace('top: "f"', 'top: "f2"')
    params = fill_net(net(twice), seed=4)
    assert list(params) == ["conv", "fc", "conv#2", "fc#2"]
    assert params["conv#2"][0].shape == (4, 5)  # a convolution over (2, 5): no spatial axes
    assert not np.array_equal(params["fc"][1], params["fc#2"][1])


def test_zero_constants_are_positive_zeros_and_negative_zero_is_kept():
    net = load_net(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 4 '
        'weight_filler { type: "constant" value: -0.0 } } }\n'
    )
    for rng in ("philox", "caffe"):
        weight, bias = fill_net(net, rng=rng)["ip"]
        assert np.all(weight == 0) and np.all(np.signbit(weight))
        assert np.all(bias == 0) and not np.any(np.signbit(bias)) and bias.flags.writeable


def test_permissive_sharing_keeps_the_sharers_shape_over_the_owners_memory():
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }
    layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
            inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
    layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" param { name: "w" share_mode: PERMISSIVE }
            inner_product_param { num_output: 3 transpose: true weight_filler { type: "gaussian" } } }
    """
    params = fill_net(load_net(text), seed=3)
    owner, sharer = params["a"][0], params["b"][0]
    assert owner.shape == (3, 6) and sharer.shape == (6, 3)
    assert np.shares_memory(owner, sharer) and sharer.tobytes() == owner.tobytes()


def test_blobs_written_in_the_net_are_used_and_skip_the_fillers():
    given = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "fixed" type: "InnerProduct" bottom: "x" top: "a"
            inner_product_param { num_output: 2 weight_filler { type: "gaussian" } }
            blobs { shape { dim: 2 dim: 3 } data: [1, 2, 3, 4, 5, 6] }
            blobs { shape { dim: 2 } double_data: [0.5, -0.5] } }
    layer { name: "free" type: "InnerProduct" bottom: "a" top: "b"
            inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
    """
    for rng in ("philox", "caffe"):
        params = fill_net(load_net(given), seed=5, rng=rng)
        np.testing.assert_array_equal(params["fixed"][0], [[1, 2, 3], [4, 5, 6]])
        np.testing.assert_array_equal(params["fixed"][1], [0.5, -0.5])
        assert params["fixed"][0].dtype == np.float32
    # Caffe draws nothing for the given layer: the next layer gets the stream's first values.
    expected = fill(np.empty((4, 2), np.float32), "gaussian", rng=CaffeRNG(5))
    assert fill_net(load_net(given), seed=5, rng="caffe")["free"][0].tobytes() == expected.tobytes()
    with pytest.raises(ShapeError, match="the net gives blobs of shapes"):
        fill_net(load_net(given.replace("dim: 2 dim: 3 } data", "dim: 3 dim: 2 } data")))


CRF = """
layer { name: "in" type: "Input" top: "u" top: "img"
        input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "u" bottom: "img" top: "q"
        multi_stage_meanfield_param { num_iterations: 2 spatial_filter_weights_str: "3 2 1"
                                      bilateral_filter_weights_str: "0.1 0.2 0.3" } }
layer { name: "fc" type: "InnerProduct" bottom: "q" top: "f"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
"""


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blobs_a_layer_writes_itself_are_its_values_and_draw_nothing(dtype):
    expected = [np.diag([3, 2, 1]), np.diag(np.float32([0.1, 0.2, 0.3])), -np.eye(3)]
    for rng in ("philox", "caffe"):
        params = fill_net(net(CRF), seed=9, rng=rng, dtype=dtype)
        assert [b.shape for b in params["crf"]] == [(1, 1, 3, 3)] * 3 and params["crf"][0].dtype == dtype
        for got, want in zip(params["crf"], expected):
            assert got[0, 0].tobytes() == (want + 0.0).astype(dtype).tobytes()  # +0.0 off the diagonal
    # Caffe's stream is untouched: the next layer gets its first values.
    first = fill(np.empty((2, 48), np.float32), "gaussian", rng=CaffeRNG(9))
    assert fill_net(net(CRF), seed=9, rng="caffe")["fc"][0].tobytes() == first.tobytes()


def test_recurrent_layers_drop_blobs_written_in_the_net():
    # RecurrentLayer::LayerSetUp clears its blobs and takes its unrolled net's, whose fillers drew.
    body = """
    layer { name: "x" type: "Input" top: "x" top: "c"
            input_param { shape { dim: 2 dim: 1 dim: 3 } shape { dim: 2 dim: 1 } } }
    layer { name: "rnn" type: "RNN" bottom: "x" bottom: "c" top: "h"
            recurrent_param { num_output: 2 weight_filler { type: "uniform" } } %s }
    """
    plain = fill_net(load_net(body % ""), seed=9, rng="caffe")
    written = fill_net(load_net(body % "blobs { shape { dim: 1 } data: 7 }"), seed=9, rng="caffe")
    assert [a.tobytes() for a in written["rnn"]] == [a.tobytes() for a in plain["rnn"]]
