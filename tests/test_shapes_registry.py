"""The public layer registry (register_layer, LayerContext), layers of unknown types (passed over unless they
surely have learnable blobs, or strict), and the CLI's --like, --plugin and --strict."""
import warnings

import numpy as np
import pytest

import fillers
from fillers import FillerParameter, ShapeError, ShapeWarning, fill_net, infer_shapes, register_layer
from fillers.cli import main
from fillers.shapes.context import LEARNABLE, RULES
from shape_helpers import net, with_input, ip, one


@pytest.fixture(autouse=True)
def registry():
    """Every test starts from the built-in registry and leaves it as it found it."""
    rules, learnable = dict(RULES), set(LEARNABLE)
    yield
    RULES.clear()
    RULES.update(rules)
    LEARNABLE.clear()
    LEARNABLE.update(learnable)


GATE = with_input((2, 3, 4, 4), 'layer { name: "g" type: "Gate" bottom: "x" top: "g" }' + ip("g", "fc"))


def gate(layer):
    """A fork-style layer: one learnable per-channel gate (constant 2), the top shaped like the bottom."""
    n, c, *rest = layer.bottom_shapes[0]
    layer.add_blob((c,), FillerParameter(type="constant", value=2))
    return [(n, c, *rest)]


# ---------------------------------------------------------------------------------------------------------
# register_layer


def test_a_registered_rule_fills_a_net_from_python():
    register_layer("Gate", gate)
    assert [layer.name for layer in infer_shapes(net(GATE))] == ["g", "fc"]
    params = fill_net(net(GATE), seed=3)
    assert params["g"][0].shape == (3,) and (params["g"][0] == 2).all()
    assert params["fc"][0].shape == (3, 48)


def test_decorator_form_and_set_top_form():
    @fillers.register_layer("Gate")
    def gate_with_set_top(layer: fillers.LayerContext):
        shape = layer.bottom(0)
        layer.add_blob((shape[1],), FillerParameter(type="constant", value=2))
        layer.set_top(0, shape)

    assert gate_with_set_top is RULES["Gate"]
    assert one(with_input((2, 3, 4, 4), 'layer { name: "g" type: "Gate" bottom: "x" top: "g" }')) == [(3,)]
    register_layer("NoTop", lambda layer: None)
    with pytest.raises(ShapeError, match="layer 'n' \\(NoTop\\): its rule set no shape for top\\(s\\) \\[0\\]"):
        infer_shapes(net(with_input((1, 2), 'layer { name: "n" type: "NoTop" bottom: "x" top: "y" }')))


def test_duplicates_are_refused_unless_replaced():
    register_layer("Gate", gate)
    with pytest.raises(ValueError, match="'Gate' is registered already \\(pass replace=True"):
        register_layer("Gate", gate)
    with pytest.raises(ValueError, match="'ReLU' is registered already"):
        register_layer("ReLU", like="Sigmoid")
    register_layer("Gate", like="ReLU", replace=True)
    assert infer_shapes(net(GATE))[0].name == "fc"  # now parameter-free


def test_like_shares_a_known_rule_and_its_learnability():
    register_layer("MyConv", like="Convolution")
    body = ('layer { name: "c" type: "MyConv" bottom: "x" top: "c" convolution_param { num_output: 5 '
            'kernel_size: 3 } }')
    assert one(with_input((1, 2, 6, 6), body)) == [(5, 2, 3, 3), (5,)]
    assert "MyConv" in LEARNABLE
    register_layer("MyReLU", like="ReLU")
    assert "MyReLU" not in LEARNABLE


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("Gate", gate), {"like": "ReLU"}, ValueError, "both"),
    (("Gate",), {"like": "NoSuchType"}, ValueError, "'NoSuchType' is not a registered layer type"),
    (("Gate", 42), {}, TypeError, "rule must be callable"),
    (("", gate), {}, TypeError, "non-empty str"),
])
def test_bad_registrations(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        register_layer(*args, **kwargs)


def test_context_checks_shapes_as_caffe_does():
    register_layer("Huge", lambda layer: layer.add_blob((2**16, 2**16), FillerParameter()) or [()])
    with pytest.raises(ShapeError, match="layer 'h' \\(Huge\\): .*INT_MAX"):
        infer_shapes(net(with_input((1,), 'layer { name: "h" type: "Huge" bottom: "x" top: "h" }')))


# ---------------------------------------------------------------------------------------------------------
# Unknown layer types


def infer_warned(text: str, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = infer_shapes(net(text), **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, ShapeWarning)]


def test_an_unknown_layer_at_the_end_stops_nothing():
    body = with_input((1, 3, 8, 8), 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" '
                      'convolution_param { num_output: 4 kernel_size: 3 } }'
                      'layer { name: "det" type: "FancyDetectionOutput" bottom: "c" top: "det" }')
    result, messages = infer_warned(body)
    assert [layer.name for layer in result] == ["c"]
    assert messages == ["layer 'det' (net.layer[2], type 'FancyDetectionOutput'): unknown layer type passed over; "
                        "its top(s) ['det'] have unknown shapes"]
    with pytest.warns(ShapeWarning, match="'det'"):
        assert fill_net(net(body), seed=1)["c"][0].shape == (4, 3, 3, 3)


def test_an_in_place_unknown_layer_keeps_its_bottoms_shape():
    body = with_input((2, 6), 'layer { name: "act" type: "HardSwishX" bottom: "x" top: "x" }' + ip("x"))
    result, messages = infer_warned(body)
    assert result[0].blobs[0].shape == (3, 6)
    assert messages == ["layer 'act' (net.layer[1], type 'HardSwishX'): unknown layer type passed over; its tops "
                        "keep their bottoms' shapes"]


def test_a_learnable_layer_after_an_unknown_one_names_it_the_blob_and_three_ways_out():
    body = with_input((2, 6), 'layer { name: "odd" type: "Oddity" bottom: "x" top: "y" }'
                      'layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }' + ip("y"))
    with pytest.raises(ShapeError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapeWarning)
        infer_shapes(net(body))
    message = str(err.value)
    assert message.startswith("layer 'fc' (InnerProduct) needs the shape of blob 'y'")
    assert "layer 'odd' (net.layer[1], type 'Oddity') is of a type fillers does not know" in message
    assert "--input y=D0,D1,..." in message and "--like Oddity=KNOWN" in message and "--plugin FILE.py" in message
    assert err.value.layer == "fc" and err.value.blob == "y"
    assert infer_warned(body, inputs={"y": (2, 5)})[0][0].blobs[0].shape == (3, 5)


@pytest.mark.parametrize("extra, mark", [
    ('param { lr_mult: 1 }', "1 param spec\\(s\\)"),
    ('blobs { shape { dim: 2 } data: 1 data: 2 }', "1 blob\\(s\\)"),
    ('convolution_param { num_output: 2 weight_filler { type: "xavier" } }', "filler convolution_param.weight_filler"),
])
def test_an_unknown_layer_that_surely_has_learnable_blobs_is_an_error(extra, mark):
    body = with_input((1, 2, 4, 4), f'layer {{ name: "mystery" type: "MysteryConv" bottom: "x" top: "y" {extra} }}')
    with pytest.raises(ShapeError, match=f"layer 'mystery' \\(MysteryConv\\): unknown layer type 'MysteryConv' "
                                         f"with learnable blobs \\({mark}\\).*--like MysteryConv=KNOWN"):
        infer_shapes(net(body))


def test_strict_keeps_unknown_types_errors():
    body = with_input((1, 2), 'layer { name: "det" type: "FancyDetectionOutput" bottom: "x" top: "det" }')
    with pytest.raises(ShapeError, match="unknown layer type 'FancyDetectionOutput'"):
        infer_shapes(net(body), strict=True)
    with pytest.raises(ShapeError, match="unknown layer type 'FancyDetectionOutput'"):
        fill_net(net(body), strict=True)
    with pytest.raises(TypeError, match="strict must be a bool"):
        infer_shapes(net(body), strict="yes")


# ---------------------------------------------------------------------------------------------------------
# Command line: --plugin, --like, --strict

PLUGIN = '''
import fillers


@fillers.register_layer("Gate")
def gate(layer):
    shape = layer.bottom(0)
    layer.add_blob((shape[1],), fillers.FillerParameter(type="constant", value=2))
    return [shape]
'''


def test_cli_plugin_fills_a_net_with_a_custom_layer(tmp_path, capsys):
    (tmp_path / "gate_layers.py").write_text(PLUGIN)
    (tmp_path / "net.prototxt").write_text(GATE)
    out = tmp_path / "w.npz"
    assert main(["fill", str(tmp_path / "net.prototxt"), "-o", str(out), "--plugin", str(tmp_path / "gate_layers.py"),
                 "--quiet"]) == 0
    with np.load(out) as params:
        assert (params["g/0"] == 2).all() and params["fc/0"].shape == (3, 48)
    assert "Gate" not in RULES  # the registration lived for the command only
    assert main(["inspect", str(tmp_path / "net.prototxt")]) == 1
    assert "--plugin FILE.py" in capsys.readouterr().err


def test_cli_like_and_strict(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(with_input((1, 2, 5, 5), 'layer { name: "r6" type: "ReLUX" bottom: "x" top: "y" }' + ip("y")))
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"warning: {path}:2: layer 'r6' (net.layer[1], type 'ReLUX'): unknown layer type passed over" in err
    assert "--like ReLUX=KNOWN" in err
    assert main(["inspect", str(path), "--like", "ReLUX=ReLU", "--json"]) == 0
    assert '"shape": [\n    3,\n    50\n   ]' in capsys.readouterr().out
    assert main(["inspect", str(path), "--like", "ReLUX=ReLU", "--strict"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(path), "--strict"]) == 1
    assert "error: layer 'r6' (ReLUX): unknown layer type 'ReLUX'" in capsys.readouterr().err
    assert main(["inspect", str(path), "--like", "ReLUX=NoSuch"]) == 1
    assert "--like ReLUX=NoSuch: like='NoSuch' is not a registered layer type" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", str(path), "--like", "ReLUX"])
    assert exit_.value.code == 2
    assert main(["inspect", str(path), "--plugin", str(tmp_path / "missing.py")]) == 1
    assert "missing.py" in capsys.readouterr().err


def test_the_warning_names_the_layer_and_the_cli_its_line(tmp_path, capsys):
    text = ('name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 2 }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n\n'
            'layer {\n  name: "det"\n  type: "FancyOut"\n  bottom: "c" top: "det"\n}\n')
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    loaded = fillers.load_net(path)
    with pytest.warns(ShapeWarning) as caught:
        infer_shapes(loaded)
    assert (caught[0].message.layer, caught[0].message.index) == ("det", 2)  # the Input layer of `input` is 0
    assert fillers.prototxt.layer_lines(path) == [None, 4, 6]
    assert main(["inspect", str(path)]) == 0
    assert f"warning: {path}:6: layer 'det' (net.layer[2], type 'FancyOut'): unknown layer type passed over" \
        in capsys.readouterr().err
    v1 = tmp_path / "v1.prototxt"
    v1.write_text('layers { name: "odd" type: ODD_THING top: "odd" }\n'
                  'layers { name: "r" type: RELU bottom: "odd" top: "r" }\n')
    assert main(["inspect", str(v1)]) == 0
    assert f"warning: {v1}:1: layer 'odd' (net.layer[0], type 'OddThing')" in capsys.readouterr().err
