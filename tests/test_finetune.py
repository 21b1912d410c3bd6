"""Fine-tuning: pretrained weights, filler overrides, the fill report, PyTorch names."""
import json
from pathlib import Path

import numpy as np
import pytest

import fillers
from fillers.cli import main

LENET = Path(__file__).resolve().parents[1] / "examples" / "lenet.prototxt"


def lenet(num_output=10, name="ip2"):
    """LeNet with its last layer renamed or resized (as a fine-tuning net changes it)."""
    net = fillers.load_net(LENET)
    last = net.layer[[layer.name for layer in net.layer].index("ip2")]
    last.name = name
    last.inner_product_param.num_output = num_output
    for layer in net.layer:  # the loss reads the renamed layer's top
        layer.bottom[:] = [name if b == "ip2" else b for b in layer.bottom]
    last.top[:] = [name]
    return net


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "pretrained.caffemodel"
    fillers.save(fillers.fill_net(LENET, seed=99), path)
    return path


def test_layers_found_by_name_and_shape_are_copied_the_rest_filled(pretrained):
    source = fillers.load(pretrained)
    params = fillers.fill_net(lenet(num_output=5, name="ip_new"), seed=1, weights=pretrained)
    for layer in ("conv1", "conv2", "ip1"):
        for copied, original in zip(params[layer], source[layer]):
            assert np.array_equal(copied, original)
    fresh = fillers.fill_net(lenet(num_output=5, name="ip_new"), seed=1)
    assert np.array_equal(params["ip_new"][0], fresh["ip_new"][0])  # filled as without weights
    report = params.report
    assert report.copied == ["conv1/0", "conv1/1", "conv2/0", "conv2/1", "ip1/0", "ip1/1"]
    assert report.filled == ["ip_new/0", "ip_new/1"] and report.unused == ["ip2"] and report.mismatched == []
    assert params.metadata["fillers.weights"] == str(pretrained)


def test_a_shape_mismatch_is_an_error_naming_layer_and_shapes(pretrained):
    with pytest.raises(fillers.ShapeError, match=r"'ip2', blob 0: the weights have shape \(10, 500\), the net "
                                                 r"\(5, 500\)") as err:
        fillers.fill_net(lenet(num_output=5), weights=pretrained)
    assert err.value.layer == "ip2"
    params = fillers.fill_net(lenet(num_output=5), seed=3, weights=pretrained, allow_mismatch=True)
    assert params.report.mismatched == [("ip2/0", (10, 500), (5, 500)), ("ip2/1", (10,), (5,))]
    assert "ip2/0" in params.report.filled
    assert np.array_equal(params["ip2"][0], fillers.fill_net(lenet(num_output=5), seed=3)["ip2"][0])


def test_a_blob_count_mismatch(pretrained):
    weights = fillers.load(pretrained)
    weights["ip2"] = weights["ip2"][:1]
    with pytest.raises(fillers.ShapeError, match="'ip2': the weights have 1 blobs, the net 2"):
        fillers.fill_net(LENET, weights=weights)
    params = fillers.fill_net(LENET, weights=weights, allow_mismatch=True)
    assert params.report.mismatched == [("ip2/0", None, (10, 500)), ("ip2/1", None, (10,))]


def test_legacy_4d_blobs_match_as_in_caffe(pretrained):
    weights = fillers.load(pretrained)
    weights["ip2"] = [weights["ip2"][0].reshape(1, 1, 10, 500), weights["ip2"][1].reshape(1, 1, 1, 10)]
    params = fillers.fill_net(LENET, weights=weights)
    assert params["ip2"][1].shape == (10,) and "ip2/1" in params.report.copied
    weights["ip2"][1] = weights["ip2"][1].reshape(1, 1, 10, 1)  # not Caffe's LegacyShape of (10,)
    with pytest.raises(fillers.ShapeError):
        fillers.fill_net(LENET, weights=weights)


def test_caffe_stream_fills_everything_then_copies(pretrained):
    # Caffe sets the net up (every filler draws) before CopyTrainedLayersFrom: the blobs not copied equal a
    # plain Caffe-exact fill.
    net = lenet(num_output=5, name="ip_new")
    tuned = fillers.fill_net(net, seed=1701, rng="caffe", weights=pretrained)
    plain = fillers.fill_net(net, seed=1701, rng="caffe")
    assert np.array_equal(tuned["ip_new"][0], plain["ip_new"][0])
    assert np.array_equal(tuned["conv1"][0], fillers.load(pretrained)["conv1"][0])


def test_weights_from_several_files_later_wins(tmp_path, pretrained):
    other = tmp_path / "other.npz"
    fillers.save({"ip1": fillers.fill_net(LENET, seed=5)["ip1"]}, other)
    params = fillers.fill_net(LENET, weights=[pretrained, other])
    assert np.array_equal(params["ip1"][0], fillers.load(other)["ip1"][0])
    assert np.array_equal(params["conv1"][0], fillers.load(pretrained)["conv1"][0])
    assert params.metadata["fillers.weights"] == f"{pretrained},{other}"


def test_dtype_conversion_of_copied_blobs(pretrained):
    params = fillers.fill_net(LENET, dtype=np.float64, weights=pretrained)
    assert params["conv1"][0].dtype == np.float64
    assert np.array_equal(params["conv1"][0], fillers.load(pretrained)["conv1"][0].astype(np.float64))


def test_overrides_replace_a_layers_or_one_blobs_filler():
    params = fillers.fill_net(LENET, seed=4, overrides={"ip2": "xavier", "ip2/1": {"type": "constant", "value": 2}})
    xavier = fillers.fill(np.empty((10, 500), np.float32), "xavier", seed=4, stream=fillers.philox_stream("ip2", 0))
    assert np.array_equal(params["ip2"][0], xavier)
    assert (params["ip2"][1] == 2).all()
    assert params.report.overridden == ["ip2/0", "ip2/1"]
    recorded = json.loads(params.metadata["fillers.overrides"])
    assert recorded["ip2"] == 'type: "xavier"'
    assert fillers.FillerParameter(type="constant", value=2) == fillers._params.as_filler_parameter(recorded["ip2/1"])


def test_overrides_with_the_caffe_stream_draw_in_caffes_order():
    # Caffe-exact with gaussian for conv1's weights: the later layers see the stream after that draw.
    text = 'type: "gaussian" std: 0.5'
    params = fillers.fill_net(LENET, seed=9, rng="caffe", overrides={"conv1/0": text})
    rng = fillers.CaffeRNG(9)
    expected = fillers.fill(np.empty((20, 1, 5, 5), np.float32), text, rng=rng)
    assert np.array_equal(params["conv1"][0], expected)
    fillers.fill(np.empty(20, np.float32), "constant", rng=rng)
    conv2 = fillers.fill(np.empty((50, 20, 5, 5), np.float32), 'type: "msra" variance_norm: FAN_OUT', rng=rng)
    assert np.array_equal(params["conv2"][0], conv2)


@pytest.mark.parametrize("overrides, match", [
    ({"fc8": "xavier"}, "'fc8' names no layer .* the net's are conv1, conv2, ip1, ip2"),
    ({"ip2/2": "xavier"}, "layer 'ip2' has 2 blobs, no blob 2"),
    ({"ip2/x": "xavier"}, "names no layer"),
    ({"ip2": "nonsense"}, "layer 'ip2' .*unknown filler type 'nonsense'"),
    ({"ip2": 'type: "gaussian" std: -1'}, "std must be > 0"),
])
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        fillers.fill_net(LENET, overrides=overrides)


def test_a_shared_blob_cannot_be_overridden():
    net = fillers.load_net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
                           'layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" param { name: "w" } '
                           'inner_product_param { num_output: 3 } }'
                           'layer { name: "b" type: "InnerProduct" bottom: "y" top: "z" param { name: "w" } '
                           'inner_product_param { num_output: 3 } }')
    with pytest.raises(ValueError, match="layer 'b', blob 0 has no filler of its own .*'a'"):
        fillers.fill_net(net, overrides={"b": "xavier"})
    params = fillers.fill_net(net, overrides={"a/0": "xavier"})
    assert params["a"][0] is params["b"][0] and params["a"][0].any()


# --------------------------------------------------------------------------- PyTorch names

BN_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 bias_term: false weight_filler { type: "msra" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "scale2" type: "Scale" bottom: "fc" top: "fc2" scale_param { bias_term: true } }
"""


def test_torch_names(tmp_path):
    net = fillers.load_net(BN_NET)
    params = fillers.fill_net(net, seed=1)
    params["bn1"][0][:] = [2, 4, 6, 8]  # Caffe stores sums and the factor that divides them
    params["bn1"][1][:] = [1, 1, 1, 1]
    params["bn1"][2][:] = 2
    for suffix in (".npz", ".safetensors"):
        path = tmp_path / f"w{suffix}"
        fillers.save(params, path, naming="torch")
        if suffix == ".npz":
            with np.load(path) as npz:
                tensors = {key: npz[key] for key in npz.files if key != "__metadata__"}
        else:
            import safetensors.numpy

            tensors = safetensors.numpy.load_file(path)
        assert sorted(tensors) == ["bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.weight", "conv1.weight",
                                   "fc.bias", "fc.weight", "relu1.weight", "scale2.bias", "scale2.weight"]
        assert np.array_equal(tensors["bn1.running_mean"], [1, 2, 3, 4])
        assert np.array_equal(tensors["bn1.running_var"], [0.5] * 4)
        assert np.array_equal(tensors["bn1.weight"], params["scale1"][0])
        assert np.array_equal(tensors["relu1.weight"], np.full(4, 0.25, np.float32))
        assert tensors["fc.weight"].shape == (2, 4 * 6 * 6)
        assert fillers.read_metadata(path)["fillers.naming"] == "torch"


def test_torch_names_of_a_fresh_batchnorm_are_caffes_test_statistics(tmp_path):
    params = fillers.fill_net(fillers.load_net(BN_NET), seed=1)  # factor 0: Caffe uses mean = var = 0
    fillers.save(params, tmp_path / "w.npz", naming="torch")
    with np.load(tmp_path / "w.npz") as npz:
        assert not npz["bn1.running_var"].any() and not npz["bn1.running_mean"].any()


def test_torch_naming_errors(tmp_path):
    params = fillers.fill_net(fillers.load_net(BN_NET), seed=1)
    with pytest.raises(ValueError, match="applies to .npz and .safetensors"):
        fillers.save(params, tmp_path / "w.caffemodel", naming="torch")
    with pytest.raises(ValueError, match="needs the net"):
        fillers.save(dict(params), tmp_path / "w.npz", naming="torch")
    with pytest.raises(ValueError, match="naming must be"):
        fillers.save(params, tmp_path / "w.npz", naming="keras")


def test_torch_loads_the_state_dict(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is an optional test dependency")
    from safetensors.torch import load_file

    fillers.save(fillers.fill_net(fillers.load_net(BN_NET), seed=1), tmp_path / "w.safetensors", naming="torch")
    model = torch.nn.Module()
    model.conv1 = torch.nn.Conv2d(3, 4, 3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(4)
    model.relu1 = torch.nn.PReLU(4)
    model.fc = torch.nn.Linear(4 * 6 * 6, 2)
    model.scale2 = torch.nn.Module()
    model.scale2.weight = torch.nn.Parameter(torch.empty(2))
    model.scale2.bias = torch.nn.Parameter(torch.empty(2))
    model.load_state_dict(load_file(tmp_path / "w.safetensors"), strict=True)


# --------------------------------------------------------------------------- the command line


def test_cli_weights_filler_and_report(tmp_path, pretrained, capsys):
    net = tmp_path / "tuned.prototxt"
    from fillers.prototxt import to_text

    net.write_text(to_text(lenet(num_output=5)))
    out = tmp_path / "tuned.safetensors"
    assert main(["fill", str(net), "-o", str(out), "--weights", str(pretrained)]) == 1
    assert "ip2" in capsys.readouterr().err
    assert main(["fill", str(net), "-o", str(out), "--weights", str(pretrained), "--allow-mismatch",
                 "--filler", "ip2=xavier", "--filler", "ip2/1=constant", "--seed", "8", "--naming", "torch"]) == 0
    err = capsys.readouterr().err
    assert "6 blobs copied, 2 filled (2 of them for a shape mismatch, 2 with an override)" in err
    assert "ip2/0: filled, the weights have (10, 500), the net (5, 500)" in err and "seed 8 (philox)" in err
    import safetensors.numpy

    tensors = safetensors.numpy.load_file(out)
    assert np.array_equal(tensors["conv1.weight"], fillers.load(pretrained)["conv1"][0])
    assert not tensors["ip2.bias"].any()
    meta = fillers.read_metadata(out)
    assert meta["fillers.weights"] == str(pretrained) and "ip2" in json.loads(meta["fillers.overrides"])


def test_cli_prints_the_seed_it_draws(tmp_path, capsys):
    out = tmp_path / "w.npz"
    assert main(["fill", str(LENET), "-o", str(out)]) == 0
    seed = fillers.read_metadata(out)["fillers.seed"]
    assert f"seed {seed} (philox)" in capsys.readouterr().err
    assert main(["fill", str(LENET), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_inspect_shows_overrides(capsys):
    assert main(["inspect", str(LENET), "--filler", 'ip2=type: "gaussian" std: 0.01']) == 0
    table = capsys.readouterr().out
    assert 'gaussian std=0.01 (override)' in table and table.count("(override)") == 2
    assert main(["inspect", str(LENET), "--filler", "ip1/0=msra", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["blobs"]
    assert [(r["layer"], r["blob"]) for r in rows if r["override"]] == [("ip1", 0)]
    assert [r["filler"]["type"] for r in rows if r["override"]] == ["msra"]
    assert main(["inspect", str(LENET), "--filler", "fc8=xavier"]) == 1
    assert "conv1, conv2, ip1, ip2" in capsys.readouterr().err


@pytest.mark.parametrize("rng", ["philox", "caffe"])
def test_weights_and_overrides_stream_into_a_file_as_in_memory(tmp_path, pretrained, rng):
    net = lenet(num_output=5, name="ip_new")
    options = dict(seed=6, rng=rng, weights=pretrained, overrides={"ip_new": "xavier"})
    want = fillers.fill_net(net, **options)
    written = fillers.fill_net(net, out=tmp_path / "w.safetensors", **options)
    assert written.report == want.report
    got = fillers.load(tmp_path / "w.safetensors")
    for layer in want:
        for a, b in zip(want[layer], got[layer]):
            assert np.array_equal(a, b)


def test_a_sharing_layer_copies_into_its_owners_blob_the_later_wins():
    net = fillers.load_net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
                           'layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" param { name: "w" } '
                           'inner_product_param { num_output: 3 } }'
                           'layer { name: "b" type: "InnerProduct" bottom: "y" top: "z" param { name: "w" } '
                           'inner_product_param { num_output: 3 } }')
    wa, wb = np.full((3, 3), 1, np.float32), np.full((3, 3), 2, np.float32)
    bias = np.zeros(3, np.float32)
    params = fillers.fill_net(net, weights={"a": [wa, bias], "b": [wb, bias + 1]})
    assert params["a"][0] is params["b"][0] and (params["a"][0] == 2).all()  # Caffe's shared memory: b wrote last
    assert (params["b"][1] == 1).all() and (params["a"][1] == 0).all()
    assert params.report.copied == ["a/0", "a/1", "b/0", "b/1"] and params.report.filled == []


REPEATED = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "a"
        inner_product_param { num_output: 2 bias_term: false weight_filler { type: "constant" value: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "b"
        inner_product_param { num_output: 2 bias_term: false weight_filler { type: "constant" value: 7 } } }
"""


def _values(params):
    return {key: float(blobs[0].reshape(-1)[0]) for key, blobs in params.items()}


@pytest.mark.parametrize("rng", ["philox", "caffe"])
def test_a_repeated_layer_name_is_copied_as_caffe_copies_it(tmp_path, rng):
    """Caffe's CopyTrainedLayersFrom (a .caffemodel) copies every source layer of a name into the net's first
    layer of that name, the later source last; CopyTrainedLayersFromHDF5 into the last (its name index).  A
    mapping, .npz and .safetensors are matched by fill_net's keys (ip, ip#2)."""
    net = fillers.load_net(REPEATED)
    source = {"ip": [np.full((2, 3), 1, np.float32)], "ip#2": [np.full((2, 3), 2, np.float32)]}
    fillers.save(source, tmp_path / "w.caffemodel", net=net)  # two layers named ip, as Caffe writes them
    got = fillers.fill_net(net, rng=rng, seed=1, weights=tmp_path / "w.caffemodel")
    assert _values(got) == {"ip": 2.0, "ip#2": 7.0}
    assert got.report.copied == ["ip/0"] and got.report.filled == ["ip#2/0"]

    fillers.save({"ip": [np.full((2, 3), 3, np.float32)]}, tmp_path / "w.h5")  # HDF5 names are unique
    assert _values(fillers.fill_net(net, rng=rng, seed=1, weights=tmp_path / "w.h5")) == {"ip": 5.0, "ip#2": 3.0}

    for weights in (source, tmp_path / "w.npz"):
        fillers.save(source, tmp_path / "w.npz")
        assert _values(fillers.fill_net(net, rng=rng, seed=1, weights=weights)) == {"ip": 1.0, "ip#2": 2.0}
