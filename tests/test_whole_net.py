"""Whole-net ``.caffemodel`` files, as Caffe's ``Net::ToProto`` writes them: the built net (filtered, Split
layers inserted, every layer's phase set) with the blobs in place; they load back as nets."""
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import fillers
from fillers.cli import main
from fillers.shapes import built_net, net_layers

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def net(text: str) -> fillers.NetParameter:
    return text_format.Parse(text, fillers.NetParameter())


BRANCHY = '''
name: "branchy"
state { stage: "deploy" }
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } } }
layer { name: "train_only" type: "Input" top: "label" include { phase: TRAIN } input_param { shape { dim: 2 } } }
layer { name: "a" type: "Convolution" bottom: "x" top: "a" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "b" type: "Convolution" bottom: "x" top: "b" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "b" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "x" top: "s" phase: TRAIN }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "a" top: "l" top: "s2" loss_weight: 2 loss_weight: 0 }
'''


def _topology(message):
    return [(layer.name, layer.type, list(layer.bottom), list(layer.top), list(layer.loss_weight), layer.phase)
            for layer in message.layer]


def test_built_net_filters_inserts_caffes_splits_and_sets_the_phase():
    built = built_net(net(BRANCHY))
    assert built.name == "branchy" and not built.HasField("state")
    assert _topology(built) == [
        ("in", "Input", [], ["x"], [], 1),
        ("x_in_0_split", "Split", ["x"], ["x_in_0_split_0", "x_in_0_split_1", "x_in_0_split_2"], [], 1),
        ("a", "Convolution", ["x_in_0_split_0"], ["a"], [], 1),
        ("a_a_0_split", "Split", ["a"], ["a_a_0_split_0", "a_a_0_split_1"], [], 1),
        ("b", "Convolution", ["x_in_0_split_1"], ["b"], [], 1),
        ("relu", "ReLU", ["b"], ["b"], [], 1),
        ("sum", "Eltwise", ["a_a_0_split_0", "b", "x_in_0_split_2"], ["s"], [], 0),  # its own phase stays
        ("loss", "EuclideanLoss", ["s", "a_a_0_split_1"], ["l", "s2"], [2, 0], 1),
    ]
    # A top that a layer reads and a loss weight weighs: the split carries the weight (InsertSplits).
    weighted = built_net(net(BRANCHY.replace('top: "s" phase: TRAIN', 'top: "s" phase: TRAIN loss_weight: 0.5')))
    sum_layer, split = weighted.layer[6], weighted.layer[7]
    assert (sum_layer.name, list(sum_layer.loss_weight)) == ("sum", [])
    assert (split.name, list(split.top), list(split.loss_weight)) == ("s_sum_0_split", ["s_sum_0_split_0",
                                                                                    "s_sum_0_split_1"], [0.5, 0])
    assert list(weighted.layer[8].bottom) == ["s_sum_0_split_1", "a_a_0_split_1"]
    train = built_net(net(BRANCHY), phase="TRAIN")
    assert [layer.name for layer in train.layer][:3] == ["in", "x_in_0_split", "train_only"]
    assert all(layer.phase == 0 for layer in train.layer)


def test_built_net_names_an_unknown_bottom():
    with pytest.raises(fillers.ShapeError, match="layer 'a' .*unknown bottom blob 'y' .*bottom index 0"):
        built_net(net('layer { name: "a" type: "ReLU" bottom: "y" top: "z" }'))


def test_save_with_net_writes_every_layer_with_its_blobs(tmp_path):
    lenet = fillers.load_net(EXAMPLES / "lenet.prototxt")
    params = fillers.fill_net(lenet, seed=5)
    path = tmp_path / "lenet.caffemodel"
    fillers.save(params, path, net=lenet)
    written = fillers.NetParameter.FromString(path.read_bytes())
    expected = built_net(lenet)
    with_blobs = fillers.NetParameter()
    with_blobs.CopyFrom(expected)
    for layer in with_blobs.layer:
        for array in params.get(layer.name, []):
            layer.blobs.add(shape=fillers.caffe_pb2.BlobShape(dim=array.shape)).data.extend(array.ravel().tolist())
    assert path.read_bytes() == with_blobs.SerializeToString()  # protobuf's own encoding, as Net::ToProto's
    for layer in written.layer:  # the blobs in place, float32 data with their shapes
        blobs = params.get(layer.name, [])
        assert [tuple(b.shape.dim) for b in layer.blobs] == [b.shape for b in blobs]
        for blob, array in zip(layer.blobs, blobs):
            assert np.array_equal(np.array(blob.data, np.float32), array.ravel())
        layer.ClearField("blobs")
    assert written == expected  # every other field as the built net has it
    # The same file from Python and from the command line.
    assert main(["fill", str(EXAMPLES / "lenet.prototxt"), "-o", str(tmp_path / "cli.caffemodel"), "--seed", "5",
                 "--quiet"]) == 0
    assert (tmp_path / "cli.caffemodel").read_bytes() == path.read_bytes()


def test_save_without_net_writes_what_it_has_and_stray_layers_are_errors(tmp_path):
    params = {"w": [np.ones((2, 3), np.float32)]}
    fillers.save(params, tmp_path / "bare.caffemodel")
    bare = fillers.NetParameter.FromString((tmp_path / "bare.caffemodel").read_bytes())
    assert [(layer.name, layer.type, len(layer.blobs)) for layer in bare.layer] == [("w", "", 1)]
    lenet = fillers.load_net(EXAMPLES / "lenet.prototxt")
    with pytest.raises(fillers.ShapeError, match="blobs given for layer 'w', which the net"):
        fillers.save(params, tmp_path / "stray.caffemodel", net=lenet)
    assert not (tmp_path / "stray.caffemodel").exists()


def test_repeated_layer_names_keep_their_own_blobs(tmp_path):
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }'
            'layer { name: "ip" type: "ReLU" bottom: "y" top: "y" }'
            'layer { name: "ip" type: "InnerProduct" bottom: "y" top: "z" inner_product_param { num_output: 4 } }')
    params = fillers.fill_net(net(text))
    assert list(params) == ["ip", "ip#2"]
    path = tmp_path / "dup.caffemodel"
    fillers.save(params, path, net=net(text))
    written = fillers.NetParameter.FromString(path.read_bytes())
    assert [(layer.type, [tuple(b.shape.dim) for b in layer.blobs]) for layer in written.layer] == [
        ("Input", []), ("InnerProduct", [(2, 3), (2,)]), ("ReLU", []), ("InnerProduct", [(4, 2), (4,)])]


def test_fillers_reads_its_own_files_back(tmp_path, capsys):
    """``inspect`` and ``fill_net(load_net(...))`` on a whole-net file: Caffe's semantics, the blobs in the
    file are the net's values."""
    source = EXAMPLES / "upsample_bilinear.prototxt"
    path = tmp_path / "net.caffemodel"
    assert main(["fill", str(source), "-o", str(path), "--seed", "9", "--quiet"]) == 0
    assert main(["inspect", str(path)]) == 0
    assert "upscore" in capsys.readouterr().out
    again = fillers.fill_net(fillers.load_net(path), seed=123)
    for key, blobs in fillers.fill_net(fillers.load_net(source), seed=9).items():
        assert all(np.array_equal(a, b) for a, b in zip(again[key], blobs, strict=True)), key


# The corpus: every net that fills round-trips with its topology.  The blobs themselves are written for nets up
# to this many parameters (the test stays fast); the larger ones are written without blobs (the topology is
# the same; the blob path is what the smaller ones test).
_WITH_BLOBS = 1_000_000


def _learnable_shapes(message):
    return [(layer.name, layer.type, [blob.shape for blob in layer.blobs]) for layer in fillers.infer_shapes(message)]


def test_corpus_nets_round_trip_through_load_net(corpus_net, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = fillers.load_net(corpus_net)
            layers = net_layers(source)
        except ValueError as err:  # a template, or a net whose shapes only data can tell: it does not fill
            pytest.skip(f"does not fill: {str(err).splitlines()[0][:120]}")
    count = sum(math.prod(blob.shape) for layer in layers if layer.learnable for blob in layer.learnable.blobs)
    params = fillers.fill_net(source, seed=1) if count <= _WITH_BLOBS else {}
    path = tmp_path / "net.caffemodel"
    fillers.save(params, path, net=source)
    loaded = fillers.load_net(path)
    expected = built_net(source)
    assert _topology(loaded) == _topology(expected)
    stripped = fillers.NetParameter()
    stripped.CopyFrom(loaded)
    for layer in stripped.layer:
        layer.ClearField("blobs")
    assert stripped == expected  # every field of every layer
    assert _learnable_shapes(loaded) == _learnable_shapes(expected) == _learnable_shapes(source)
    if params:
        # The file's blobs are the net's values (Caffe's semantics; a recurrent layer refills its own).
        refilled = fillers.fill_net(loaded, seed=2)
        assert list(refilled) == list(params)
        given = [layer.given == "net" for layer in fillers.infer_shapes(loaded)]
        for (key, blobs), kept in zip(params.items(), given):
            if kept:
                assert all(np.array_equal(a, b) for a, b in zip(refilled[key], blobs, strict=True)), key


def test_load_keys_repeated_names_as_fill_net_does(tmp_path):
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }'
            'layer { name: "ip" type: "InnerProduct" bottom: "y" top: "z" inner_product_param { num_output: 4 } }')
    params = fillers.fill_net(net(text), seed=4)
    fillers.save(params, tmp_path / "dup.caffemodel", net=net(text))
    back = fillers.load(tmp_path / "dup.caffemodel")
    assert list(back) == ["ip", "ip#2"]
    assert all(np.array_equal(a, b) for key in params for a, b in zip(back[key], params[key], strict=True))
