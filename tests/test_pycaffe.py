"""fillers beside pycaffe: another ``caffe_pb2`` built from a ``caffe.proto`` in package ``caffe``.

pycaffe (``caffe.proto.caffe_pb2``) and model converters register Caffe's schema as file ``caffe.proto`` in the
process-wide default descriptor pool. fillers registers its own as ``fillers/caffe.proto`` (package
``fillers.caffe``), so both load in either order, and fillers takes the other schema's messages.

The other schema is a Caffe-like subset with Caffe's own field numbers, compiled by grpc_tools' protoc into a
temporary directory; each import order runs in a fresh interpreter, since the default pool is per process.
"""
import subprocess
import sys
import textwrap

import pytest

protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools (in the test extra) compiles the schema")

# Caffe's field numbers (BVLC caffe.proto); a subset of the messages and fields.
CAFFE_LIKE_PROTO = """
syntax = "proto2";
package caffe;

message BlobShape { repeated int64 dim = 1 [packed = true]; }

message FillerParameter {
  optional string type = 1 [default = 'constant'];
  optional float value = 2 [default = 0];
  optional float min = 3 [default = 0];
  optional float max = 4 [default = 1];
  optional float mean = 5 [default = 0];
  optional float std = 6 [default = 1];
  optional int32 sparse = 7 [default = -1];
  enum VarianceNorm { FAN_IN = 0; FAN_OUT = 1; AVERAGE = 2; }
  optional VarianceNorm variance_norm = 8 [default = FAN_IN];
}

message NetParameter {
  optional string name = 1;
  repeated LayerParameter layer = 100;
}

message SolverParameter {
  optional NetParameter net_param = 25;
  optional float base_lr = 5;
  enum SolverType { SGD = 0; NESTEROV = 1; ADAGRAD = 2; }
  optional SolverType solver_type = 30 [default = SGD];
}

message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional ConvolutionParameter convolution_param = 106;
  optional InnerProductParameter inner_product_param = 117;
  optional InputParameter input_param = 143;
}

message ConvolutionParameter {
  optional uint32 num_output = 1;
  optional bool bias_term = 2 [default = true];
  repeated uint32 kernel_size = 4;
  optional FillerParameter weight_filler = 7;
  optional FillerParameter bias_filler = 8;
}

message InnerProductParameter {
  optional uint32 num_output = 1;
  optional bool bias_term = 2 [default = true];
  optional FillerParameter weight_filler = 3;
  optional FillerParameter bias_filler = 4;
}

message InputParameter { repeated BlobShape shape = 1; }
"""

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3
                            weight_filler { type: "xavier" variance_norm: AVERAGE }
                            bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.01 sparse: 2 } } }
"""

CHECKS = """
import numpy as np
from google.protobuf import text_format

from fillers import caffe_pb2 as ours

# Both schemas live in the default pool under their own file names.
assert caffe_pb2.DESCRIPTOR.name == "caffe.proto" and caffe_pb2.DESCRIPTOR.package == "caffe"
assert ours.DESCRIPTOR.name == "fillers/caffe.proto" and ours.DESCRIPTOR.package == "fillers.caffe"

# fill: another schema's FillerParameter gives what fillers' own gives.
theirs = caffe_pb2.FillerParameter(type="msra", variance_norm=caffe_pb2.FillerParameter.FAN_OUT)
for rng in (None, fillers.CaffeRNG(9)):
    got = fillers.fill(np.empty((6, 4, 3, 3), np.float32), theirs, seed=9, rng=rng)
    want = fillers.fill(np.empty((6, 4, 3, 3), np.float32), 'type: "msra" variance_norm: FAN_OUT', seed=9,
                        rng=None if rng is None else fillers.CaffeRNG(9))
    assert got.tobytes() == want.tobytes()

# fill_net / infer_shapes / upgrade_net: another schema's NetParameter gives what the prototxt gives.
net = text_format.Parse(NET, caffe_pb2.NetParameter())
for rng in ("philox", "caffe"):
    got = fillers.fill_net(net, seed=5, rng=rng)
    want = fillers.fill_net(fillers.load_net(NET), seed=5, rng=rng)
    assert list(got) == list(want) == ["conv", "fc"]
    for name in got:
        assert [a.tobytes() for a in got[name]] == [a.tobytes() for a in want[name]], name
shapes = [[b.shape for b in layer.blobs] for layer in fillers.infer_shapes(net)]
assert shapes == [[(4, 3, 3, 3), (4,)], [(5, 144), (5,)]], shapes
assert fillers.upgrade_net(net).SerializeToString() == net.SerializeToString()

# upgrade_solver: another schema's SolverParameter, through its bytes.
solver = caffe_pb2.SolverParameter(base_lr=0.5, solver_type=caffe_pb2.SolverParameter.NESTEROV)
solver.net_param.CopyFrom(net)
upgraded = fillers.upgrade.upgrade_solver(solver)
assert isinstance(upgraded, ours.SolverParameter)
assert (upgraded.type, upgraded.base_lr, upgraded.net_param.name) == ("Nesterov", 0.5, "tiny")

# A message of another type is a TypeError naming both.
try:
    fillers.fill(np.empty(3, np.float32), caffe_pb2.NetParameter())
except TypeError as err:
    assert str(err) == "expected a FillerParameter message, not caffe.NetParameter", err
else:
    raise AssertionError("no TypeError")
print("ok")
"""

IMPORTS = {
    "pycaffe first": "import caffe_pb2\nimport fillers\n",
    "fillers first": "import fillers\nimport caffe_pb2\n",
}


@pytest.fixture(scope="module")
def caffe_pb2_dir(tmp_path_factory):
    """A directory with ``caffe_pb2.py`` generated by protoc from a Caffe-like ``caffe.proto``."""
    out = tmp_path_factory.mktemp("pycaffe")
    (out / "caffe.proto").write_text(CAFFE_LIKE_PROTO)
    assert protoc.main(["protoc", f"-I{out}", f"--python_out={out}", str(out / "caffe.proto")]) == 0
    return out


@pytest.mark.parametrize("order", sorted(IMPORTS))
def test_beside_another_caffe_pb2(caffe_pb2_dir, order):
    script = (f"import sys\nsys.path.insert(0, {str(caffe_pb2_dir)!r})\n{IMPORTS[order]}"
              f"NET = {NET!r}\n{textwrap.dedent(CHECKS)}")
    # cwd: not the checkout, whose source tree would shadow the installed package
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=caffe_pb2_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
