"""The fuzzing harness: mutations of real nets, and the whole pipeline run on each mutant.

``mutate(data, rnd)`` makes one hostile variant of a net file (flipped bytes, deleted and repeated tokens,
absurd numbers, deep nesting, swapped layer types, truncation, foreign encodings, a binary encoding) from a
``random.Random``; ``run_pipeline(data)`` sends it through ``load_net -> upgrade (text round trip) ->
infer_shapes -> fill_net (small max_bytes) -> save -> load`` and returns the outcome: ``"ok"``, the name of
the documented error class that stopped it (``"PrototxtError"``, ``"ShapeError"`` ...), or
``"UNDOCUMENTED <type>: <message>"`` for anything else -- the bug class the harness hunts.

Used by ``tests/test_fuzz.py`` (a few thousand seeded inputs through hypothesis) and ``benchmarks/fuzz.py``
(100,000 inputs over worker processes, with a per-input time limit).
"""
from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

import fillers
from fillers.prototxt import to_text

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FILLERS_SHARED", REPO.parent / "shared"))

#: Where the save/load leg writes: memory, where there is a tmpfs (an fsync there costs nothing).
WORKDIR = "/dev/shm" if os.path.isdir("/dev/shm") else None

#: The fill budget of the pipeline: large enough for LeNet-sized nets, small enough to stay fast.
MAX_BYTES = 8 << 20

#: Small hand-written seeds that reach the rules the corpus rarely does (recurrent, CRF, fork layers).
EXTRA_SEEDS = [
    b'name: "lstm" input: "x" input_shape { dim: 4 dim: 2 dim: 3 } input: "c" input_shape { dim: 4 dim: 2 }\n'
    b'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "c" top: "h"\n'
    b'  recurrent_param { num_output: 5 weight_filler { type: "uniform" min: -0.1 max: 0.1 } } }\n',
    b'name: "rnn" input: "x" input_shape { dim: 3 dim: 1 dim: 2 } input: "c" input_shape { dim: 3 dim: 1 }\n'
    b'layer { name: "rnn" type: "RNN" bottom: "x" bottom: "c" top: "h"\n'
    b'  recurrent_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }\n',
    b'layer { name: "in" type: "Input" top: "u" top: "q" top: "im"\n'
    b'  input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
    b'    shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
    b'layer { name: "crf" type: "MultiStageMeanfield" bottom: "u" bottom: "q" bottom: "im" top: "out"\n'
    b'  multi_stage_meanfield_param { num_iterations: 2 spatial_filter_weights_str: "3 3 3"\n'
    b'    bilateral_filter_weights_str: "5 5 5" } }\n',
    b'name: "v0" layers { layer { name: "conv" type: "conv" num_output: 4 kernelsize: 3 stride: 1\n'
    b'  weight_filler { type: "xavier" } } bottom: "data" top: "conv" }\n'
    b'input: "data" input_dim: 1 input_dim: 2 input_dim: 8 input_dim: 8\n',
    b'name: "v1" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
    b'layers { name: "c" type: CONVOLUTION bottom: "data" top: "c" blobs_lr: 1 blobs_lr: 2\n'
    b'  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "msra" } } }\n'
    b'layers { name: "p" type: POOLING bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
    b'layers { name: "f" type: FLATTEN bottom: "p" top: "f" }\n'
    b'layers { name: "ip" type: INNER_PRODUCT bottom: "f" top: "ip" inner_product_param { num_output: 3\n'
    b'  weight_filler { type: "positive_unitball" } } }\n',
    b'layer { name: "d" type: "Data" top: "data" top: "label" data_param { batch_size: 2 }\n'
    b'  transform_param { crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3 } }\n'
    b'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }\n'
    b'layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }\n'
    b'layer { name: "pr" type: "PReLU" bottom: "bn" top: "bn" }\n'
    b'layer { name: "dc" type: "Deconvolution" bottom: "bn" top: "up" convolution_param { num_output: 3\n'
    b'  group: 3 kernel_size: 4 stride: 2 weight_filler { type: "bilinear" } bias_term: false } }\n'
    b'layer { name: "pb" type: "PriorBox" bottom: "up" bottom: "data" top: "pb"\n'
    b'  prior_box_param { min_size: 4 aspect_ratio: 2 flip: true } }\n'
    b'layer { name: "fl" type: "Flatten" bottom: "up" top: "fl" flatten_param { axis: 1 end_axis: -1 } }\n'
    b'layer { name: "ip" type: "InnerProduct" bottom: "fl" top: "ip" inner_product_param { num_output: 2\n'
    b'  weight_filler { type: "gaussian" std: 0.5 sparse: 1 } } }\n',
]

_ABSURD = ["0", "-1", "-0", "1e400", "-1e400", "1e-9999999", "1e9999999999", "nan", "inf", "-inf",
           "2147483647", "2147483648", "4294967295", "4294967296", "9223372036854775808",
           "99999999999999999999999999", "0x7fffffff", "3.4e38", "1e38", "1e-45", "0.0", "65536", "1000000000",
           "2000000000", "-2147483649", '"1e-9999999 1e400 nan"', "''", "true"]
_TYPES = ["Convolution", "Deconvolution", "InnerProduct", "Pooling", "Flatten", "Reshape", "LSTM", "RNN",
          "Embed", "Scale", "Bias", "BatchNorm", "PReLU", "Concat", "Slice", "Crop", "PriorBox", "Normalize",
          "Interp", "ROIPooling", "MultiStageMeanfield", "Data", "Input", "DummyData", "Eltwise", "Tile",
          "Im2col", "LRN", "SPP", "Permute", "Reorg", "Upsample", "ShuffleChannel", "ConvolutionDepthwise",
          "Python", "Unknown", "Softmax", "ArgMax", "Accuracy", "InfogainLoss", "Parameter", "Axpy"]
_NUMBER = re.compile(rb"(?<![\w.])-?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)(?![\w.])")
_TOKEN = re.compile(rb"\S+")


def corpus_files() -> list[Path]:
    """The seed files: the shared corpus (when present) and the repository's examples."""
    files = sorted((SHARED / "corpus" / "prototxt").glob("*.prototxt"))
    return files + sorted((REPO / "examples").glob("*.prototxt"))


def seeds() -> list[bytes]:
    """Every seed's bytes (files first, then the hand-written ones)."""
    return [path.read_bytes() for path in corpus_files()] + list(EXTRA_SEEDS)


def _spans(pattern: re.Pattern, data: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(data)]


def _pick_span(pattern: re.Pattern, data: bytes, rnd: random.Random) -> tuple[int, int] | None:
    spans = _spans(pattern, data)
    return spans[rnd.randrange(len(spans))] if spans else None


def _flip(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        if out:
            out[rnd.randrange(len(out))] = rnd.randrange(256)
    return bytes(out)


def _delete_token(data: bytes, rnd: random.Random) -> bytes:
    for _ in range(rnd.randint(1, 3)):
        span = _pick_span(_TOKEN, data, rnd)
        if span:
            data = data[:span[0]] + data[span[1]:]
    return data


def _repeat_token(data: bytes, rnd: random.Random) -> bytes:
    span = _pick_span(_TOKEN, data, rnd)
    if not span:
        return data
    token = data[span[0]:span[1]]
    return data[:span[1]] + (b" " + token) * rnd.randint(1, 4) + data[span[1]:]


def _repeat_lines(data: bytes, rnd: random.Random) -> bytes:
    lines = data.split(b"\n")
    i = rnd.randrange(len(lines))
    j = min(len(lines), i + rnd.randint(1, 30))
    return b"\n".join(lines[:j] + lines[i:j] * rnd.randint(1, 3) + lines[j:])


def _absurd_number(data: bytes, rnd: random.Random) -> bytes:
    for _ in range(rnd.randint(1, 3)):
        span = _pick_span(_NUMBER, data, rnd)
        if span:
            data = data[:span[0]] + rnd.choice(_ABSURD).encode() + data[span[1]:]
    return data


def _deep_nesting(data: bytes, rnd: random.Random) -> bytes:
    depth = rnd.choice([50, 200, 1000, 5000, 20000])
    name = rnd.choice([b"layer", b"convolution_param", b"weight_filler", b"x", b"layers"])
    nest = name + b" { " if rnd.random() < 0.8 else name + b" < "
    close = b"} " if nest.endswith(b"{ ") else b"> "
    block = nest * depth + close * rnd.choice([depth, depth - 1, 0])
    at = rnd.randrange(len(data) + 1)
    return data[:at] + block + data[at:]


def _swap_type(data: bytes, rnd: random.Random) -> bytes:
    spans = [m.span(1) for m in re.finditer(rb'type:\s*"([^"]*)"', data)]
    if not spans:
        return data
    a, b = spans[rnd.randrange(len(spans))]
    return data[:a] + rnd.choice(_TYPES).encode() + data[b:]


def _truncate(data: bytes, rnd: random.Random) -> bytes:
    return data[:rnd.randrange(len(data) + 1)]


def _foreign_bytes(data: bytes, rnd: random.Random) -> bytes:
    text = rnd.choice(["# 卷积层 权重初始化\n", "# café à côté\n", 'name: "é"\n'])
    encoded = text.encode(rnd.choice(["gbk", "latin-1", "utf-8"]), errors="replace")
    at = data.find(b"\n", rnd.randrange(len(data) + 1))
    at = len(data) if at < 0 else at + 1
    return data[:at] + encoded + data[at:]


def _binary(data: bytes, rnd: random.Random) -> bytes:
    """The net's binary encoding (when it loads), with a few flipped bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            encoded = fillers.load_net(data).SerializeToString()
        except fillers.FillersError:
            return data
    return _flip(encoded, rnd) if rnd.random() < 0.9 else encoded


#: The mutations and their weights: the ones that keep the syntax valid (numbers, types, repeated lines)
#: are drawn more often, so that most mutants reach shape inference and the fill.
MUTATIONS = {_flip: 1, _delete_token: 1, _repeat_token: 1, _repeat_lines: 2, _absurd_number: 5, _deep_nesting: 1,
             _swap_type: 4, _truncate: 1, _foreign_bytes: 1, _binary: 2}


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One to three random mutations of ``data`` (one most often)."""
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        data = rnd.choices(list(MUTATIONS), weights=list(MUTATIONS.values()))[0](data, rnd)
    return data


#: Formats the pipeline's save/load leg rotates through (h5 and safetensors when installed).
def _formats() -> list[str]:
    out = [".caffemodel", ".npz"]
    for module, suffix in (("h5py", ".h5"), ("safetensors", ".safetensors")):
        try:
            __import__(module)
            out.append(suffix)
        except ImportError:
            pass
    return out


FORMATS = _formats()


def _same_params(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        len(x) == len(y) and all(u.shape == v.shape and np.array_equal(u, v, equal_nan=True) for u, v in zip(x, y))
        for x, y in zip(a.values(), b.values()))


def run_pipeline(data: bytes, index: int = 0, workdir: str | None = None) -> str:
    """Send ``data`` through the whole pipeline; the outcome (see the module notes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = fillers.load_net(data)
            text = to_text(net)  # what `fillers upgrade` writes: it must read back to itself
            if to_text(fillers.load_net(text)) != text:
                return "UNDOCUMENTED upgrade: the upgraded text does not read back to the same net"
            fillers.infer_shapes(net)
            caffe = index % 2 == 1
            params = fillers.fill_net(net, seed=index, rng="caffe" if caffe else "philox",
                                      threads=None if caffe else 1, max_bytes=MAX_BYTES)
            suffix = FORMATS[index % len(FORMATS)]
            with tempfile.TemporaryDirectory(dir=workdir or WORKDIR) as tmp:
                path = os.path.join(tmp, "w" + suffix)
                fillers.save(params, path, net=net)
                back = fillers.load(path)
            if not _same_params(params, back):
                return f"UNDOCUMENTED {suffix}: load(save(params)) differs from params"
            return "ok"
    except fillers.FillersError as err:
        return type(err).__name__
    except Exception as err:  # noqa: BLE001 -- the harness's whole point
        first = (str(err).splitlines() or [""])[0][:160]
        return f"UNDOCUMENTED {type(err).__name__}: {first}"
