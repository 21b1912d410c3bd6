"""Shape inference's walk of a net (Caffe's Net::Init): real Caffe's shapes for corpus nets, include/exclude
rules and phases, blob names, shared params, inputs, unknown shapes, clear errors."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from fillers import FillerParameter, NetParameter, ShapeError, infer_shapes
from shape_helpers import net, has_field, has_loader, load, shapes, with_input, conv, ip


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


def test_unknown_layer_type_is_an_error_when_strict():
    with pytest.raises(ShapeError, match="unknown layer type 'Mystery'.*--like Mystery=KNOWN.*--plugin"):
        infer_shapes(net('layer { name: "m" type: "Mystery" top: "x" }'), strict=True)


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
