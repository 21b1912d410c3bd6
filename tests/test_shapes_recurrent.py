"""Shape rules of the recurrent layers (LSTM, RNN) and CRF-as-RNN's mean-field layer."""

import numpy as np
import pytest

from fillers import ShapeError, infer_shapes
from shape_helpers import net, with_input, ip, top_after, fork


LSTM = ('layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ dim: 3 dim: 2 }} }} }}'
        'layer {{ name: "r" type: "{type_}" bottom: "x" bottom: "cont" top: "h" '
        'recurrent_param {{ num_output: 4 weight_filler {{ type: "uniform" }} bias_filler {{ type: "constant" value: 1 }} }} }}')


def test_lstm_blobs_and_filler_runs():
    (layer,) = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="LSTM"))))
    assert [b.shape for b in layer.blobs] == [(16, 5), (16,), (16, 4)]
    # W_hc runs once per timestep; only the first run is kept, the other two are one cycle
    *kept, cycle = layer.fills
    assert [(f.blob, f.shape) for f in kept] == [(0, (16, 5)), (1, (16,)), (2, (16, 4))]
    assert [f.filler.type for f in kept] == ["uniform", "constant", "uniform"]
    assert cycle.times == 2 and [(f.blob, f.shape, f.filler.type) for f in cycle.steps] == [(None, (16, 4), "uniform")]


def test_rnn_blobs_and_filler_runs():
    (layer,) = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="RNN"))))
    assert [b.shape for b in layer.blobs] == [(4, 5), (4,), (4, 4), (4, 4), (4,)]
    *kept, cycle = layer.fills
    assert [f.blob for f in kept] == [0, 1, 2, 3, 4]
    assert cycle.times == 2 and [(f.blob, f.shape) for f in cycle.steps] == [(None, (4, 4)), (None, (4, 4)),
                                                                             (None, (4,))]


def test_recurrent_timesteps_described_in_constant_space():
    """5e8 timesteps: one cycle, not one record per timestep (this took unbounded memory before)."""
    (layer,) = infer_shapes(net(with_input((500_000_000, 1, 1), LSTM.format(type_="LSTM").replace(
        "dim: 3 dim: 2", "dim: 500000000 dim: 1"))))
    assert len(layer.fills) == 4 and layer.fills[-1].times == 499_999_999


def test_recurrent_output_shape():
    probe = ip("h", "probe", "num_output: 1 axis: 0")
    result = infer_shapes(net(with_input((3, 2, 5), LSTM.format(type_="LSTM") + probe)))
    assert result[-1].blobs[0].shape == (1, 3 * 2 * 4)


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
