"""Whole-net shape inference: every learnable blob of a net, with the filler Caffe would run on it.

:func:`infer_shapes` walks a current-format ``NetParameter`` the way Caffe's ``Net::Init`` does: layers are
filtered by their include/exclude rules against the net state (``StateMeetsRule``), then set up in prototxt
order, each top blob shaped by the rules of the layer's ``LayerSetUp``/``Reshape`` in BVLC Caffe (and in the
forks whose layers the corpus uses: SSD, Faster R-CNN, DeepLab, SegNet/ENet, ShuffleNet, MobileNet, SENet).

Blob names resolve as in Caffe: a bottom names the latest top of that name, so an in-place layer
(``top == bottom``) or a later layer reusing a top name replaces the earlier blob.  Shapes that only real data
could tell (a database, an image list, an HDF5 file, a ``Python`` layer) are *unknown*; they flow through
parameter-free layers and only raise :class:`ShapeError` when a layer with learnable blobs needs them, naming
both layers and how to give the shape (``inputs=`` / ``--input NAME=D0,D1,...``).

What the data layers tell without their data:

- ``Input``, ``DummyData``, ``MemoryData``, ``Parameter``: everything, from their parameters.
- ``Data``, ``WindowData`` and SSD's ``AnnotatedData``: the batch size; the height and width when
  ``transform_param`` crops (``crop_size``; SSD also ``crop_h``/``crop_w`` or a WARP / FIT_LARGE_SIZE_AND_PAD
  ``resize_param``); the channel count only when ``transform_param`` lists one ``mean_value`` per channel
  (Caffe accepts one mean value or exactly one per channel).  Labels are ``(batch,)`` (SSD's: unknown).
- ``ImageData`` and the segmentation forks' ``ImageSegData``/``DenseImageData``: 3 channels (``is_color``)
  or 1, the size from ``crop_size``, else ``new_height``/``new_width``.
- ``HDF5Data`` and ``Python`` layers: nothing.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from google.protobuf.message import Message

from fillers._params import resolve
from fillers.caffe_pb2 import LayerParameter, NetParameter, NetState, NetStateRule, as_message
from fillers.errors import ShapeError
from fillers.caffemodel import blob_array, blob_shape
from fillers.shapes.context import Shape, BlobSpec, FillStep, LayerBlobs, Unknown, NeedsUnknown, input_hint, LayerContext, count, RULES, LEARNABLE, rule
from fillers.upgrade import net_needs_upgrade, upgrade_net


def _phase(phase: Any) -> int:
    if isinstance(phase, str) and phase.upper() in ("TRAIN", "TEST"):
        return 0 if phase.upper() == "TRAIN" else 1
    if phase in (0, 1) and not isinstance(phase, bool):
        return int(phase)
    raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")


def _state_meets_rule(state: NetState, rule: NetStateRule) -> bool:
    """Caffe's ``Net::StateMeetsRule``."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stage for stage in rule.stage):
        return False
    return not any(stage in state.stage for stage in rule.not_stage)


def _included(layer: LayerParameter, state: NetState) -> bool:
    """Caffe's ``Net::FilterNet`` for one layer."""
    if layer.include and layer.exclude:
        raise ShapeError(f"layer {layer.name!r}: specify either include rules or exclude rules; not both")
    if not layer.include:
        return not any(_state_meets_rule(state, rule) for rule in layer.exclude)
    return any(_state_meets_rule(state, rule) for rule in layer.include)


def _check_inputs(inputs: Mapping[str, Sequence[int]] | None) -> dict[str, Shape]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of top name to shape, not {type(inputs).__name__}")
    out = {}
    for name, shape in inputs.items():
        if not isinstance(name, str):
            raise TypeError(f"inputs keys must be top names (str), got {name!r}")
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise TypeError(f"inputs[{name!r}] must be a sequence of ints, got {shape!r}") from None
        if any(d < 0 for d in dims) or any(int(d) != d for d in shape):
            raise ValueError(f"inputs[{name!r}] must hold non-negative integers, got {tuple(shape)!r}")
        out[name] = dims
    return out


def _as_net(net: Any) -> NetParameter:
    """A current-format NetParameter (V0/V1 messages are upgraded; files are the loader's business); another
    schema's NetParameter (pycaffe's) is read through its bytes."""
    if isinstance(net, (str, os.PathLike)):
        raise TypeError(f"net must be a NetParameter, not a path ({os.fspath(net)!r}): read the file with "
                        "fillers.load_net first")
    if not isinstance(net, Message):
        raise TypeError(f"net must be a NetParameter, not {type(net).__name__}")
    net = as_message(net, NetParameter)
    return upgrade_net(net) if net_needs_upgrade(net) else net


def _layer_blobs(layer: LayerContext, owners: dict[str, tuple[str, int, Shape]], draws: int) -> LayerBlobs:
    """Apply ``Net::AppendParam``'s sharing by param name to a set-up layer's blobs."""
    param = layer.param
    specs = []
    if len(param.param) > len(layer.blobs):
        raise layer.error(f"{len(param.param)} param specs for {len(layer.blobs)} learnable blobs")
    for i, (shape, filler) in enumerate(layer.blobs):
        spec = param.param[i] if i < len(param.param) else None
        name = spec.name if spec is not None else ""
        owner = None
        if name and name in owners:
            owner_layer, owner_index, owner_shape = owners[name]
            if spec.share_mode == spec.PERMISSIVE:
                ok = count(owner_shape) == count(shape)
            else:
                ok = owner_shape == shape
            if not ok:
                raise layer.error(f"cannot share param {name!r} owned by layer {owner_layer!r}: "
                                  f"owner shape {owner_shape}, this layer's {shape}")
            owner = (owner_layer, owner_index)
        elif name:
            owners[name] = (param.name, i, shape)
        specs.append(BlobSpec(shape=shape, filler=filler, param_name=name, share_owner=owner))
    fills = layer.fills if layer.fills is not None else [
        FillStep(i, shape, filler) for i, (shape, filler) in enumerate(layer.blobs) if filler is not None
    ]
    # Blobs written in the net: Caffe uses them and skips the fillers ("Skipping parameter initialization"),
    # except in a recurrent layer (explicit fills), whose setup clears them for its unrolled net's own.
    given, make_given = "", None
    if param.blobs and layer.fills is None:
        _check_net_blobs(layer)
        given, fills = "net", []
        make_given = functools.partial(_net_blob_values, param)
    elif layer.written:
        given, make_given = "setup", functools.partial(_written_values, tuple(layer.written))
    for step in fills:  # a filler Caffe's setup would reject (unknown type, sparse > 1, xavier on 0-D ...)
        try:
            resolve(step.filler, step.shape, np.float32)
        except ValueError as err:
            raise layer.error(f"blob {step.blob}: {err}") from None
    return LayerBlobs(name=param.name, type=param.type, blobs=specs, fills=tuple(fills), raw_draws_before=draws,
                      given=given, make_given=make_given)


def _check_net_blobs(layer: LayerContext) -> None:
    """The blobs written in the net must have the layer's shapes and as many values (read from their shape
    fields and value counts: nothing is converted here)."""
    expected = [shape for shape, _ in layer.blobs]
    shapes = [blob_shape(blob) for blob in layer.param.blobs]
    if shapes != expected:
        raise layer.error(f"the net gives blobs of shapes {shapes}; the layer's are {expected}")
    for i, (blob, shape) in enumerate(zip(layer.param.blobs, shapes)):
        values = len(blob.double_data) or len(blob.data)
        if values != count(shape):
            raise layer.error(f"blob {i} written in the net has {values} values for its shape {shape}")


def _net_blob_values(param: LayerParameter) -> tuple[np.ndarray, ...]:
    return tuple(blob_array(blob) for blob in param.blobs)


def _written_values(written: tuple[Callable[[], np.ndarray], ...]) -> tuple[np.ndarray, ...]:
    return tuple(values() for values in written)


def infer_shapes(
    net: NetParameter,
    *,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int = "TEST",
) -> list[LayerBlobs]:
    """The learnable blobs of every layer, with shapes and fillers, in Caffe's order.

    Parameters
    ----------
    net : NetParameter
        The net, as :func:`fillers.load_net` returns it (V0/V1 messages are upgraded first), or another
        schema's NetParameter (pycaffe's ``caffe_pb2``, read through its bytes).  Shape inference reads no file
        and converts no stored weights.
    inputs : mapping of str to sequence of int, optional
        Shapes for top blobs by name; they override whatever the net says (use them for data layers whose
        shapes come from data, ``Python`` layers, or to change an input size).
    phase : {"TEST", "TRAIN"}
        The phase the net is built for.  As in ``caffe::Net(file, phase)`` it replaces ``state { phase }``,
        the level is 0 and the file's ``state { stage }`` entries are kept for the include/exclude rules.

    Returns
    -------
    list of LayerBlobs
        One entry per layer that has learnable blobs, in prototxt order after filtering (a layer that shares
        a param by name is listed with its own entry, its blob's ``share_owner`` naming the owner).

    Raises
    ------
    ShapeError
        A learnable layer needs a shape that cannot be known from the net (the message names the layer the
        shape comes from and how to pass it with ``inputs``), a layer type fillers does not know, a bottom
        no layer produces, ``inputs`` naming no top, or parameters Caffe itself would reject.
    TypeError, ValueError
        ``net`` (a path included), ``inputs`` or ``phase`` of the wrong kind.

    Examples
    --------
    >>> from fillers import load_net, infer_shapes
    >>> for layer in infer_shapes(load_net("lenet.prototxt")):     # doctest: +SKIP
    ...     print(layer.name, [blob.shape for blob in layer.blobs])
    conv1 [(20, 1, 5, 5), (20,)]
    """
    return _walk(_as_net(net), _check_inputs(inputs), _phase(phase))


def _walk(net: NetParameter, inputs: dict[str, Shape], phase: int) -> list[LayerBlobs]:
    state = NetState()
    state.CopyFrom(net.state)
    state.phase = phase
    state.level = 0
    blobs: dict[str, Shape | Unknown] = {}
    owners: dict[str, tuple[str, int, Shape]] = {}
    unused_inputs = set(inputs)
    out: list[LayerBlobs] = []
    draws = 0
    for param in net.layer:
        if not _included(param, state):
            continue
        for j, name in enumerate(param.bottom):
            if name in blobs:
                continue
            if name not in inputs:
                raise ShapeError(f"layer {param.name!r} ({param.type}): unknown bottom blob {name!r} "
                                 f"(bottom index {j}); no earlier layer produces it (give the shape of a net "
                                 f"input with inputs={{{name!r}: (D0, D1, ...)}})")
            blobs[name] = inputs[name]
            unused_inputs.discard(name)
        layer = LayerContext(param=param, phase=param.phase if param.HasField("phase") else phase,
                       bottom_names=list(param.bottom), _bottoms=[blobs[b] for b in param.bottom])
        rule = RULES.get(param.type)
        if not param.type:
            raise layer.error("the layer has no type (a legacy V0/V1 layer type that has no current name?)")
        if rule is None:
            raise layer.error(f"unknown layer type {param.type!r}: fillers does not know its learnable blobs "
                              "or top shapes")
        try:
            tops = rule(layer)
            if tops is None:  # a rule that set its tops with layer.set_top
                missing = [i for i in range(layer.num_tops) if i not in layer.tops]
                if missing:
                    raise layer.error(f"its rule set no shape for top(s) {missing}")
                tops = [layer.tops[i] for i in range(layer.num_tops)]
        except NeedsUnknown as need:
            if param.type in LEARNABLE:
                source = need.unknown.blob or need.bottom
                via = "" if source == need.bottom else f", which is computed from blob {source!r}"
                raise ShapeError(
                    f"layer {param.name!r} ({param.type}) needs the shape of blob {need.bottom!r}{via}; that "
                    f"cannot be known from the net: {need.unknown.origin}; {input_hint(source)}"
                ) from None
            tops = [need.unknown] * layer.num_tops
        if len(tops) < layer.num_tops:
            raise layer.error(f"has {layer.num_tops} tops; this layer type makes {len(tops)}")
        draws += layer.raw_draws
        for name, shape in zip(param.top, tops):
            if isinstance(shape, Unknown) and not shape.blob:
                shape = Unknown(shape.origin, name)
            if name in inputs:
                shape = inputs[name]
                unused_inputs.discard(name)
            blobs[name] = shape
        if layer.blobs:
            out.append(_layer_blobs(layer, owners, draws))
            draws = 0
    if unused_inputs:
        raise ShapeError(f"inputs name no top blob of the net: {sorted(unused_inputs)}; "
                         f"its tops are {sorted(blobs)}")
    return out
