"""fillers.prototxt: loading nets and solvers, lenient/strict modes, error messages."""
import re
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fillers
from fillers import PrototxtError, caffe_pb2, load_net, load_solver
from fillers.prototxt import PrototxtWarning, load_solver_net, parse_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SOLVER_TYPES = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"}


def load_quiet(source, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = load_net(source, **kw)
    return net, [str(w.message) for w in caught if issubclass(w.category, PrototxtWarning)]


# --------------------------------------------------------------------------
# The whole corpus
# --------------------------------------------------------------------------


def test_every_corpus_net_loads(corpus_net):
    text = corpus_net.read_text(encoding="utf-8")
    if re.search(r":\s*\$\{", text):  # the DeepLab template: a clear error, not a crash
        with pytest.raises(PrototxtError, match=r"template placeholder \$\{\w+\}") as err:
            load_net(corpus_net)
        assert err.value.filename == str(corpus_net) and err.value.line is not None
        return
    net, messages = load_quiet(corpus_net)
    assert len(net.layer) > 0
    assert not net.layers and not net.input and not net.input_dim and not net.input_shape
    for message in messages:  # every warning names the file (parse warnings also the line)
        assert message.startswith(f"{corpus_net}:"), message
        if "unknown" in message and "(skipped)" in message:
            assert re.match(re.escape(str(corpus_net)) + r":\d+:\d+: ", message), message


def test_every_corpus_solver_loads(corpus_solver):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrototxtWarning)
        solver = load_solver(corpus_solver)
    assert not solver.HasField("solver_type")
    assert solver.type in SOLVER_TYPES
    for net in [*solver.test_net_param, solver.net_param, solver.train_net_param]:
        assert not net.layers and not net.input


def corpus_file(shared_dir, suffix):
    [path] = (shared_dir / "corpus" / "prototxt").glob("*" + suffix)
    return path


def test_corpus_fork_fields_are_read(shared_dir):
    ssd, _ = load_quiet(corpus_file(shared_dir, "SSD_300x300__deploy.prototxt"))
    norm = next(layer for layer in ssd.layer if layer.type == "Normalize")
    assert norm.norm_param.scale_filler.value == 20
    assert any(layer.prior_box_param.min_size for layer in ssd.layer)
    enet, _ = load_quiet(corpus_file(shared_dir, "enet_deploy_final.prototxt"))
    assert any(layer.type == "Upsample" and layer.HasField("upsample_param") for layer in enet.layer)
    shuffle, _ = load_quiet(corpus_file(shared_dir, "shufflenet_1x_g3_deploy.prototxt"))
    assert {l.shuffle_channel_param.group for l in shuffle.layer if l.type == "ShuffleChannel"} == {3}
    frcnn, _ = load_quiet(corpus_file(shared_dir, "faster_rcnn_end2end__test.prototxt"))
    roi = next(layer for layer in frcnn.layer if layer.type == "ROIPooling")
    assert (roi.roi_pooling_param.pooled_w, roi.roi_pooling_param.pooled_h) == (7, 7)


def test_corpus_solver_names_its_net(shared_dir):
    solver = corpus_file(shared_dir, "lenet_consolidated_solver.prototxt")
    net = load_solver_net(solver)
    assert net.layer[0].type == "Data" and not net.layers


def test_mixed_layer_and_layers_keep_file_order(shared_dir):
    path = corpus_file(shared_dir, "TVG_CRFRNN_new_traintest.prototxt")
    net, messages = load_quiet(path)
    assert [layer.name for layer in net.layer[:4]] == ["data_rgb", "data_label", "data_rgb",
                                                         "data_label"]
    assert sum("string type read as a \"layer\" block" in m for m in messages) == 3
    with pytest.raises(PrototxtError, match="string type"):
        load_net(path, strict=True)


# --------------------------------------------------------------------------
# Syntax accepted
# --------------------------------------------------------------------------

CLEAN = """name: "n"
layer {
  name: "c"
  type: "Convolution"
  convolution_param {
    num_output: 2
    weight_filler {
      type: "gaussian"
      std: 0.5
    }
  }
}
"""


def test_crlf_tabs_single_quotes_colon_brace_and_no_final_newline():
    messy = ("name: 'n'\r\nlayer: {\r\n\tname: 'c'\ttype: \"Convolution\"\r\n"
             "\tconvolution_param: { num_output: 2 weight_filler: <type: 'gaussian' std: 0.5> }"
             "\r\n}")
    assert load_net(messy) == load_net(CLEAN)


def test_bytes_path_and_pathlike(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(CLEAN)
    expected = load_net(CLEAN)
    assert load_net(path) == load_net(str(path)) == load_net(CLEAN.encode()) == expected


def test_binary_netparameter_from_bytes_and_caffemodel_path(tmp_path):
    net = load_net(CLEAN)
    blob = net.SerializeToString()
    path = tmp_path / "w.caffemodel"
    path.write_bytes(blob)
    assert load_net(blob) == load_net(path) == net


def test_binary_v1_net_is_upgraded(tmp_path):
    v1 = caffe_pb2.NetParameter()
    layer = v1.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    layer.blobs_lr.extend([1, 2])
    path = tmp_path / "old.binaryproto"
    path.write_bytes(v1.SerializeToString())
    net = load_net(path)
    assert net.layer[0].type == "InnerProduct"
    assert [p.lr_mult for p in net.layer[0].param] == [1, 2]


def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def test_binary_unknown_fields_warn_or_fail():
    layer = caffe_pb2.LayerParameter(name="x").SerializeToString()
    # NetParameter.layer (field 100, length-delimited), then field 127 (varint 1)
    data = varint(100 << 3 | 2) + varint(len(layer)) + layer + varint(127 << 3) + b"\x01"
    with pytest.warns(PrototxtWarning, match="unknown binary field"):
        net = load_net(data)
    assert net.layer[0].name == "x"
    with pytest.raises(PrototxtError, match="unknown fields NetParameter.#127"):
        load_net(data, strict=True)


def test_binary_garbage_is_a_prototxt_error():
    with pytest.raises(PrototxtError, match="not a binary NetParameter"):
        load_net(b"\xff\xff\xff\xff\x0f\x00")


def test_missing_file_is_oserror_with_path(tmp_path):
    missing = tmp_path / "nope.prototxt"
    with pytest.raises(FileNotFoundError, match="nope.prototxt"):
        load_net(missing)
    with pytest.raises(FileNotFoundError):
        load_net(str(missing))


# --------------------------------------------------------------------------
# Errors: file:line:column, the line and a caret
# --------------------------------------------------------------------------


def test_syntax_error_message(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  type "Conv"\n}\n')
    with pytest.raises(PrototxtError) as err:
        load_net(path)
    e = err.value
    assert (e.filename, e.line, e.column) == (str(path), 4, 8)
    lines = str(e).splitlines()
    assert lines[0].startswith(f"{path}:4:8: ")
    assert lines[1] == '      type "Conv"'
    assert lines[2] == "    " + " " * 7 + "^"
    assert isinstance(e, ValueError)


def test_wrong_value_message():
    with pytest.raises(PrototxtError) as err:
        load_net('layer {\n  convolution_param { num_output: -3 }\n}')
    assert (err.value.line, err.value.filename) == (2, "<string>")
    assert "num_output" in str(err.value) or "-3" in str(err.value)
    assert str(err.value).splitlines()[-1].endswith("^")


def test_caret_follows_tabs():
    with pytest.raises(PrototxtError) as err:
        load_net("layer {\n\t\tname: @\n}")
    assert str(err.value).splitlines()[-1] == "    \t\t      ^"


def test_positions_stay_right_after_skipped_fields():
    text = 'layer {\n  fancy_param { a: 1 b { c: "}" } }\n  name: "x"\n  top: 5x\n}'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrototxtWarning)
        with pytest.raises(PrototxtError) as err:
            load_net(text)
    assert (err.value.line, err.value.column) == (4, 8)


def test_template_placeholder():
    with pytest.raises(PrototxtError, match=r"template placeholder \$\{NUM_LABELS\}") as err:
        load_net("layer {\n  inner_product_param { num_output: ${NUM_LABELS} }\n}")
    assert (err.value.line, err.value.column) == (2, 37)


# --------------------------------------------------------------------------
# Lenient and strict modes
# --------------------------------------------------------------------------

UNKNOWN_FIELD = 'layer {\n  name: "p"\n  ceil_mode_param { x: [1, 2] y { z: "a{b" } }\n  top: "p"\n}'
UNKNOWN_ENUM = 'layer {\n  name: "r"\n  pooling_param { pool: MEDIAN }\n  top: "r"\n}'


def test_unknown_field_lenient_warns_once_and_keeps_the_rest():
    net, messages = load_quiet(UNKNOWN_FIELD)
    assert list(net.layer[0].top) == ["p"] and net.layer[0].name == "p"
    assert messages == ['<string>:3:3: unknown field "ceil_mode_param" in caffe.LayerParameter '
                        "(skipped)"]


def test_unknown_field_strict_fails():
    with pytest.raises(PrototxtError, match='unknown field "ceil_mode_param"') as err:
        load_net(UNKNOWN_FIELD, strict=True)
    assert (err.value.line, err.value.column) == (3, 3)


def test_unknown_enum_value_lenient_and_strict():
    net, messages = load_quiet(UNKNOWN_ENUM)
    assert net.layer[0].name == "r" and list(net.layer[0].top) == ["r"]
    assert net.layer[0].HasField("pooling_param") and not net.layer[0].pooling_param.HasField("pool")
    assert messages == ['<string>:3:19: unknown value MEDIAN of enum '
                        'caffe.PoolingParameter.PoolMethod for field "pool" (skipped)']
    with pytest.raises(PrototxtError, match="MEDIAN") as err:
        load_net(UNKNOWN_ENUM, strict=True)
    assert (err.value.line, err.value.column) == (3, 19)


FORK_V1 = """layers {
  name: "roi"
  type: ROI_POOLING
  bottom: "conv5"
  roi_pooling_param { pooled_w: 6 pooled_h: 5 }
  strange_param { x: 1 }
}
layers { name: "x" type: SOME_NEW_LAYER }
"""


def test_v1_fork_types_and_fork_fields_survive_the_upgrade():
    net, messages = load_quiet(FORK_V1)
    roi, other = net.layer
    assert (roi.type, roi.roi_pooling_param.pooled_w, roi.roi_pooling_param.pooled_h) == (
        "ROIPooling", 6, 5)
    assert other.type == "SomeNewLayer"
    assert messages == [
        "<string>:3:3: V1 layer type ROI_POOLING is not a BVLC type (kept for the upgrade)",
        '<string>:5:3: V1 layer field "roi_pooling_param" is a fork extension (moved to the '
        "upgraded layer)",
        '<string>:6:3: unknown field "strange_param" in caffe.V1LayerParameter (skipped)',
        "<string>:8:20: V1 layer type SOME_NEW_LAYER is not a BVLC type (kept for the upgrade)",
    ]
    with pytest.raises(PrototxtError, match="ROI_POOLING"):
        load_net(FORK_V1, strict=True)


DEEPLAB_V1 = """layers {
  name: "crop"
  type: PADDING
  bottom: "x"
  top: "y"
  padding_param { pad_beg: -7 pad_end: -8 }
}
"""


def test_deeplab_v1_padding_param_is_a_v1_field_and_carried_by_the_upgrade():
    net, messages = load_quiet(DEEPLAB_V1)
    (layer,) = net.layer
    assert (layer.type, layer.padding_param.pad_beg, layer.padding_param.pad_end) == ("Padding", -7, -8)
    assert messages == ["<string>:3:3: V1 layer type PADDING is not a BVLC type (kept for the upgrade)"]


def test_deeplab_v1_binary_padding_param_reads_by_deeplabs_field_number():
    # V1 layer (NetParameter field 2) holding only field 45 = { pad_beg (1): 3, pad_end (2): 4 }, as DeepLab
    # v1 wrote it; encoded by hand so that the test does not depend on our schema's numbers.
    padding = bytes([0x08, 3, 0x10, 4])
    layer = bytes([0xEA, 0x02, len(padding)]) + padding  # tag (45 << 3) | 2 as a varint
    net = load_net(bytes([0x12, len(layer)]) + layer)
    assert (net.layer[0].padding_param.pad_beg, net.layer[0].padding_param.pad_end) == (3, 4)


def test_crf_as_rnn_fields_of_both_versions_read():
    net, messages = load_quiet('layer { type: "MultiStageMeanfield" multi_stage_meanfield_param { '
                               'spatial_filter_weight: 3 bilateral_filter_weight: 5 '
                               'bilateral_filter_weights_str: "5 5" force_cpu: true } }')
    mp = net.layer[0].multi_stage_meanfield_param
    assert messages == []
    assert (mp.spatial_filter_weight, mp.bilateral_filter_weight, mp.bilateral_filter_weights_str) == (3, 5, "5 5")


def test_errors_inside_a_moved_fork_field_keep_their_position():
    with pytest.raises(PrototxtError) as err:
        load_quiet("layers {\n  type: ROI_POOLING\n  roi_pooling_param {\n    pooled_w: x\n  }\n}")
    assert (err.value.line, err.value.column) == (4, 15)


def test_numeric_enum_values_are_accepted():
    net = load_net("layer { inner_product_param { weight_filler { variance_norm: 2 } } }")
    assert net.layer[0].inner_product_param.weight_filler.variance_norm == 2


def test_repeated_singular_field():
    text = "layer { name: 'a' name: 'b' }"
    net, messages = load_quiet(text)
    assert net.layer[0].name == "b" and "more than once" in messages[0]
    with pytest.raises(PrototxtError, match="more than once"):
        load_net(text, strict=True)


def test_parse_text_without_upgrade():
    parsed = parse_text("input: 'x' layers { name: 'a' }", caffe_pb2.NetParameter)
    assert list(parsed.message.input) == ["x"] and parsed.message.layers[0].name == "a"
    assert parsed.top_order == ["layers"]


# --------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------


def test_solver_type_upgrade_and_net_beside_the_solver(tmp_path):
    (tmp_path / "net.prototxt").write_text(CLEAN)
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text('net: "net.prototxt"\nbase_lr: 0.01\nsolver_type: NESTEROV\n')
    solver = load_solver(solver_path)
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    assert load_solver_net(solver_path) == load_net(CLEAN)


def test_solver_with_both_types_is_refused():
    with pytest.raises(PrototxtError, match="solver_type"):
        load_solver('type: "Adam"\nsolver_type: ADAM\n')


def test_solver_naming_no_net():
    with pytest.raises(PrototxtError, match="names no net"):
        load_solver_net("base_lr: 0.1\n")


def test_public_exports():
    assert fillers.load_net is load_net and fillers.PrototxtError is PrototxtError
    assert fillers.load_solver is load_solver and callable(fillers.upgrade_net)


# --------------------------------------------------------------------------
# Malformed input never escapes as anything but PrototxtError
# --------------------------------------------------------------------------

TOKENS = ["layer", "layers", "name", "type", "top", "{", "}", "<", ">", ":", "[", "]", ",",
          "'a'", '"b"', "1", "-2.5e3", "CONVOLUTION", "convolution_param", "num_output", "#c\n",
          "input_dim", "input", "layer {", "${X}", "\t", "\r\n", "@", "'", "unknown_f"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.booleans())
def test_token_soup_gives_a_net_or_a_prototxt_error(tokens, strict):
    text = "\n" + " ".join(tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrototxtWarning)
        try:
            net = load_net(text, strict=strict)
        except PrototxtError as e:
            assert e.filename == "<string>"
        else:
            assert isinstance(net, caffe_pb2.NetParameter)
