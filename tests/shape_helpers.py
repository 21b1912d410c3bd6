"""Helpers shared by the shape-inference tests: small nets written as text, and their blob shapes."""

import warnings
from pathlib import Path

from google.protobuf import text_format
import pytest

from fillers import NetParameter, infer_shapes
from fillers.caffe_pb2 import LayerParameter


def net(text: str) -> NetParameter:
    return text_format.Parse(text, NetParameter())


def has_field(name: str) -> bool:
    return name in LayerParameter.DESCRIPTOR.fields_by_name


def has_loader() -> bool:
    try:
        import fillers.prototxt  # noqa: F401
    except ImportError:
        return False
    return True


def load(path: Path) -> NetParameter:
    """A corpus file as a current-format net: the loader when there is one, else current-format files only."""
    try:
        from fillers.prototxt import load_net
    except ImportError:
        parsed = text_format.Parse(path.read_text(), NetParameter(), allow_unknown_field=True)
        if parsed.layers or parsed.input:
            pytest.skip(f"{path.name}: needs fillers.prototxt.load_net for legacy formats")
        return parsed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's notes on fields it skips
        return load_net(path)


def shapes(result) -> list:
    return [(layer.name, layer.type, [blob.shape for blob in layer.blobs]) for layer in result]


def one(text: str, **kwargs) -> list:
    """The blob shapes of the only learnable layer of a net."""
    result = infer_shapes(net(text), **kwargs)
    assert len(result) == 1
    return [blob.shape for blob in result[0].blobs]


INPUT = 'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}\n'


def with_input(dims: tuple, body: str) -> str:
    return INPUT.format(dims=" ".join(f"dim: {d}" for d in dims)) + body


def conv(params: str, bottom: str = "x", name: str = "c", type_: str = "Convolution") -> str:
    return (f'layer {{ name: "{name}" type: "{type_}" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ {params} }} }}\n')


def ip(bottom: str, name: str = "fc", params: str = "num_output: 3") -> str:
    return f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" ' \
           f'inner_product_param {{ {params} }} }}\n'


def top_after(dims: tuple, body: str, top: str, **kwargs) -> int:
    """The element count per item that reaches an InnerProduct placed on ``top`` (its weight's second axis)."""
    return infer_shapes(net(with_input(dims, body + ip(top, "probe"))), **kwargs)[-1].blobs[0].shape[1]


def pool(params: str) -> str:
    return f'layer {{ name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param {{ {params} }} }}\n'


fork = pytest.mark.skipif(not has_field("norm_param"), reason="schema without fork messages")
