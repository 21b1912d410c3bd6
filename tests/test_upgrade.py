"""fillers.upgrade: Caffe's UpgradeNetAsNeeded, checked on our own examples and against real Caffe."""
import hashlib
import json
import warnings
from pathlib import Path

import pytest

from fillers import PrototxtError, caffe_pb2, load_net, upgrade_net
from fillers.prototxt import PrototxtWarning, parse_text, to_text
from fillers.upgrade import net_needs_upgrade, upgrade_solver

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((Path(__file__).parent / "data" / "caffe_upgrade" / "reference.json").read_text())


def raw(text):
    """Parse without upgrading."""
    return parse_text(text, caffe_pb2.NetParameter).message


def by_name(net):
    return {layer.name: layer for layer in net.layer}


# --------------------------------------------------------------------------
# Our examples, fact by fact
# --------------------------------------------------------------------------


def test_v0_example():
    net = load_net(EXAMPLES / "tiny_v0.prototxt")
    assert [layer.name for layer in net.layer] == [
        "input", "conv1", "relu1", "pool1", "norm1", "score", "drop", "prob"]
    assert [layer.type for layer in net.layer] == [
        "Input", "Convolution", "ReLU", "Pooling", "LRN", "InnerProduct", "Dropout", "Softmax"]
    layers = by_name(net)
    assert list(layers["input"].top) == ["pixels"]
    assert list(layers["input"].input_param.shape[0].dim) == [2, 3, 16, 16]
    conv = layers["conv1"]
    assert list(conv.bottom) == ["pixels"]  # the padding layer is folded in
    cp = conv.convolution_param
    assert (list(cp.pad), list(cp.kernel_size), list(cp.stride), cp.group) == ([1], [3], [1], 1)
    assert cp.weight_filler.std == pytest.approx(0.02) and cp.bias_filler.value == pytest.approx(0.1)
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    pool = layers["pool1"].pooling_param
    assert (pool.pool, pool.kernel_size, pool.stride) == (caffe_pb2.PoolingParameter.AVE, 2, 2)
    lrn = layers["norm1"].lrn_param
    assert (lrn.local_size, lrn.beta) == (3, 0.5)
    ip = layers["score"].inner_product_param
    assert (ip.num_output, ip.bias_term, ip.HasField("bias_filler")) == (5, False, False)
    assert layers["drop"].dropout_param.dropout_ratio == 0.25


def test_v1_example():
    net = load_net(EXAMPLES / "tiny_v1.prototxt")
    layers = by_name(net)
    data = layers["source"]
    assert data.type == "Data" and data.include[0].phase == caffe_pb2.TRAIN
    assert not data.data_param.HasField("scale") and not data.data_param.HasField("mirror")
    assert data.transform_param.scale == pytest.approx(1 / 256) and data.transform_param.mirror
    a, b = layers["branch_a"], layers["branch_b"]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in a.param] == [
        ("shared_w", 1, 1), ("shared_b", 2, 0)]
    assert [p.name for p in b.param] == ["shared_w", "shared_b"]
    assert b.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert not b.param[1].HasField("share_mode") and not b.param[0].HasField("lr_mult")
    assert a.convolution_param.weight_filler.variance_norm == caffe_pb2.FillerParameter.FAN_OUT
    assert layers["sum"].type == "Eltwise"
    assert [(p.lr_mult, p.HasField("decay_mult")) for p in layers["fc"].param] == [
        (1, False), (2, False)]
    loss = layers["loss"]
    assert loss.type == "SoftmaxWithLoss" and list(loss.loss_weight) == [1]


def test_v2_example_input_and_batchnorm():
    net = load_net(EXAMPLES / "tiny_v2.prototxt")
    assert net.layer[0].name == "input" and net.layer[0].type == "Input"
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 12, 12]
    bn = by_name(net)["bn"]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in bn.param] == [
        ("", 0, 0), ("", 0, 0), ("bn_counter", 0, 0)]
    assert by_name(net)["conv"].param[0].lr_mult == 1  # other layers untouched


@pytest.mark.parametrize("name", sorted(REFERENCE["examples"]))
def test_examples_match_caffe(name):
    """Caffe's own upgrade (reference.json, see make_reference.py) for our examples."""
    expected = REFERENCE["examples"][name]
    net = load_net(EXAMPLES / name)
    assert hashlib.sha256(net.SerializeToString(deterministic=True)).hexdigest() == \
        expected["binary_sha256"]
    assert hashlib.sha256(to_text(net).encode()).hexdigest() == expected["text_sha256"]


@pytest.mark.parametrize("name", ["tiny_v0.prototxt", "tiny_v1.prototxt", "tiny_v2.prototxt"])
def test_upgrade_is_idempotent_on_examples(name):
    net = load_net(EXAMPLES / name)
    # (Caffe's NetNeedsUpgrade stays true for a BatchNorm with three params, as in tiny_v2.)
    assert not net.layers and not net.input
    assert upgrade_net(net) == net
    assert load_net(to_text(net)) == net


def test_upgrade_net_does_not_modify_its_argument():
    old = raw("layers { name: 'a' type: RELU }")
    snapshot = old.SerializeToString()
    new = upgrade_net(old)
    assert old.SerializeToString() == snapshot and new.layer[0].type == "ReLU"


# --------------------------------------------------------------------------
# Rules with sharp edges
# --------------------------------------------------------------------------


def test_needs_upgrade():
    assert net_needs_upgrade(raw("layers { name: 'a' }"))
    assert net_needs_upgrade(raw("input: 'x'"))
    assert not net_needs_upgrade(raw("layer { name: 'a' type: 'ReLU' }"))


def test_input_without_dims_is_dropped():
    net = upgrade_net(raw("input: 'data'\nlayer { name: 'r' type: 'ReLU' bottom: 'data' }"))
    assert [layer.name for layer in net.layer] == ["r"] and not net.input


def test_input_dim_without_input_is_kept():
    net = upgrade_net(raw("input_dim: 1 input_dim: 2"))
    assert list(net.input_dim) == [1, 2] and not net.layer


def test_two_inputs_get_one_input_layer_first():
    net = upgrade_net(raw("layer { name: 'r' }\ninput: 'a' input: 'b'\n"
                          "input_dim: [1, 2, 3, 4, 5, 6, 7, 8]"))
    first = net.layer[0]
    assert (first.name, list(first.top)) == ("input", ["a", "b"])
    assert [list(s.dim) for s in first.input_param.shape] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert net.layer[1].name == "r"


def test_v1_type_none_and_explicit_empty_fields():
    net = upgrade_net(raw("layers { type: NONE }"))
    assert net.layer[0].HasField("type") and net.layer[0].type == ""


def test_data_transformation_marks_every_data_layer():
    net = upgrade_net(raw("layers { name: 'd1' type: DATA data_param { crop_size: 5 } }\n"
                          "layers { name: 'd2' type: IMAGE_DATA }"))
    d1, d2 = net.layer
    assert d1.transform_param.crop_size == 5 and not d1.data_param.HasField("crop_size")
    assert d2.HasField("transform_param") and d2.HasField("image_data_param")


def test_batchnorm_with_other_param_counts_is_untouched():
    net = upgrade_net(raw("layer { type: 'BatchNorm' param { lr_mult: 3 } }"))
    assert net.layer[0].param[0].lr_mult == 3


def test_v0_padding_into_pool():
    net = upgrade_net(raw(
        "input: 'x'\n"
        "layers { layer { name: 'p' type: 'padding' pad: 2 } bottom: 'x' top: 'px' }\n"
        "layers { layer { name: 'q' type: 'pool' kernelsize: 3 } bottom: 'px' top: 'y' }"))
    [pool] = net.layer  # an input without dims is dropped
    assert list(pool.bottom) == ["x"] and pool.pooling_param.pad == 2


def test_v0_unknown_type_and_misplaced_field():
    text = "layers { layer { name: 'lc' type: 'locally_connected' num_output: 4 } }"
    with pytest.warns(PrototxtWarning) as caught:
        net = upgrade_net(raw(text))
    assert net.layer[0].type == "locally_connected"
    messages = " ".join(str(w.message) for w in caught)
    assert "unknown V0 layer type" in messages and "num_output" in messages
    with pytest.raises(PrototxtError, match="unknown V0 layer type"):
        upgrade_net(raw(text), strict=True)


MIXED = ("layer { name: 'first' type: 'ReLU' }\n"
         "layers { name: 'second' type: SIGMOID blobs_lr: 2 }\n"
         "layer { name: 'third' type: 'TanH' }\n")


def test_mixed_layer_and_layers():
    with pytest.warns(PrototxtWarning, match='both "layer" and "layers"'):
        net = load_net(MIXED)
    assert [(l.name, l.type) for l in net.layer] == [
        ("first", "ReLU"), ("second", "Sigmoid"), ("third", "TanH")]
    assert net.layer[1].param[0].lr_mult == 2
    with pytest.warns(PrototxtWarning):  # without the text order: upgraded layers first
        assert [l.name for l in upgrade_net(raw(MIXED)).layer] == ["second", "first", "third"]
    with pytest.raises(PrototxtError, match='both "layer" and "layers"'):
        load_net(MIXED, strict=True)


def test_solver_upgrade():
    for enum, name in [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                       ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")]:
        solver = caffe_pb2.SolverParameter(
            solver_type=caffe_pb2.SolverParameter.SolverType.Value(enum))
        assert upgrade_solver(solver).type == name
    with pytest.raises(ValueError):
        upgrade_solver(caffe_pb2.SolverParameter(type="SGD", solver_type=0))


# --------------------------------------------------------------------------
# The corpus against real Caffe
# --------------------------------------------------------------------------


def test_corpus_upgrade_is_idempotent(corpus_net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrototxtWarning)
        try:
            net = load_net(corpus_net)
        except PrototxtError as e:
            assert "template placeholder" in str(e)
            pytest.skip("template file: not a net until its placeholders are filled in")
        text = to_text(net)
        again = load_net(text, strict=True)
    assert upgrade_net(net) == net and again == net and to_text(again) == text


def test_corpus_matches_caffe(corpus_net):
    """Every corpus net Caffe reads (V0, V1 and current) upgrades to Caffe's exact message and text."""
    expected = REFERENCE["corpus"][corpus_net.name]
    if "caffe_exit" in expected:
        pytest.skip(f"Caffe itself rejects this file (exit {expected['caffe_exit']})")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrototxtWarning)  # Caffe read it: nothing to skip
        net = load_net(corpus_net)
    assert hashlib.sha256(net.SerializeToString(deterministic=True)).hexdigest() == \
        expected["binary_sha256"]
    assert hashlib.sha256(to_text(net).encode()).hexdigest() == expected["text_sha256"]


def test_reference_covers_the_old_formats():
    formats = [e["format"] for e in REFERENCE["corpus"].values() if "binary_sha256" in e]
    assert formats.count("v0") >= 13 and formats.count("v1") >= 16
