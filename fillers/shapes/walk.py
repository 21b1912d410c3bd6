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
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from google.protobuf.message import Message

from fillers._params import resolve
from fillers.caffe_pb2 import (BlobProto, FillerParameter, LayerParameter, NetParameter, NetState, NetStateRule,
                               as_message)
from fillers.caffemodel import blob_array, blob_shape
from fillers.errors import ShapeError, ShapeWarning
from fillers.shapes.context import (LEARNABLE, RULES, BlobSpec, FillCycle, FillStep, LayerBlobs, LayerContext,
                                    NeedsUnknown, NetLayer, Shape, Unknown, count, input_hint, reshape_problem,
                                    teach_hint)
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
        problem = reshape_problem(dims)
        if problem is not None:
            raise ShapeError(f"inputs[{name!r}]: {problem}", blob=name)
        out[name] = dims
    return out


def _as_net(net: Any) -> NetParameter:
    """A current-format NetParameter (V0/V1 messages are upgraded; files are the loader's business)."""
    if isinstance(net, (str, os.PathLike)):
        raise TypeError(f"net must be a NetParameter, not a path ({os.fspath(net)!r}): read the file with "
                        "fillers.load_net first")
    if not isinstance(net, Message):
        raise TypeError(f"net must be a NetParameter, not {type(net).__name__}")
    net = as_message(net, NetParameter)  # another schema's NetParameter (pycaffe's) through its bytes
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
    runs = [run for step in fills for run in (step.steps if isinstance(step, FillCycle) else (step,))]
    for step in runs:  # a filler Caffe's setup would reject (unknown type, sparse > 1, xavier on 0-D ...)
        try:
            resolve(step.filler, step.shape, np.float32)
        except ValueError as err:
            raise layer.error(f"blob {step.blob}: {err}") from None
    return LayerBlobs(name=param.name, type=param.type, blobs=specs, fills=tuple(fills), raw_draws_before=draws,
                      given=given, variant=layer.variant, make_given=make_given)


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
    phase: str | int | None = "TEST",
    strict: bool = False,
) -> list[LayerBlobs]:
    """The learnable blobs of every layer, with shapes and fillers, in Caffe's order.

    Parameters
    ----------
    net : NetParameter
        The net, as :func:`fillers.load_net` returns it (V0/V1 messages are upgraded first; another schema's
        ``NetParameter``, pycaffe's ``caffe_pb2``, is read through its serialized bytes).  Shape inference
        reads no file and converts no stored weights.
    inputs : mapping of str to sequence of int, optional
        Shapes for top blobs by name; they override whatever the net says (use them for data layers whose
        shapes come from data, ``Python`` layers, or to change an input size).
    phase : {"TEST", "TRAIN"} or None
        The phase the net is built for.  As in ``caffe::Net(file, phase)`` it replaces ``state { phase }``,
        the level is 0 and the file's ``state { stage }`` entries are kept for the include/exclude rules.
        ``None`` uses the net's ``state`` (phase, level, stages) as it is, as ``caffe::Net(NetParameter)``
        does (a solver's train net, its ``train_state`` merged in).
    strict : bool
        A layer of a type no rule knows is an error.  Otherwise (the default) it is passed over with a
        :class:`~fillers.ShapeWarning`: its tops get unknown shapes (an in-place top keeps its bottom's), which
        only stop the net when a learnable layer needs them; one that surely has learnable blobs (``param``
        specs, ``blobs`` or a filler field) is still an error.

    Returns
    -------
    list of LayerBlobs
        One entry per layer that has learnable blobs, in prototxt order after filtering (a layer that shares
        a param by name is listed with its own entry, its blob's ``share_owner`` naming the owner).

    Raises
    ------
    ShapeError
        A learnable layer needs a shape that cannot be known from the net (the message names the layer the
        shape comes from and how to pass it with ``inputs`` or teach fillers its type), a layer type fillers
        does not know that has learnable blobs (any unknown type with ``strict``), a bottom
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
    layers = net_layers(net, inputs=inputs, phase=phase, strict=strict)
    return [layer.learnable for layer in layers if layer.learnable]


def net_layers(
    net: NetParameter,
    *,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int | None = "TEST",
    strict: bool = False,
) -> list[NetLayer]:
    """Every layer of the net as Caffe's ``Net::Init`` sets it up, with its bottom and top shapes.

    Parameters and errors as for :func:`infer_shapes`, which lists the ``learnable`` part of these.

    Returns
    -------
    list of NetLayer
        One entry per layer that passes the include/exclude rules, in prototxt order.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    return _walk(_as_net(net), _check_inputs(inputs), None if phase is None else _phase(phase), strict)


def _known(shape: Shape | Unknown) -> Shape | None:
    return None if isinstance(shape, Unknown) else shape


def _net_state(net: NetParameter, phase: int | None) -> NetState:
    """The state Caffe builds with: ``caffe::Net(file, phase)``'s (the file's stages, the given phase, level 0),
    or with ``phase`` None ``caffe::Net(NetParameter)``'s, the net's own ``state``."""
    state = NetState()
    state.CopyFrom(net.state)
    if phase is not None:
        state.phase = phase
        state.level = 0
    return state


def _guarded_rule(layer: LayerContext, rule: Callable[[LayerContext], Any]) -> Any:
    """Run a rule.  A rule is arithmetic on the net's numbers: whatever it trips on (a division by zero, an
    overflow, a NaN, an index past a repeated field's end, a check with no layer named) becomes a
    :class:`ShapeError` naming the layer."""
    try:
        return rule(layer)
    except NeedsUnknown:
        raise
    except ShapeError as err:
        if err.layer is not None:
            raise
        raise layer.error(str(err)) from None
    except (ArithmeticError, ValueError, IndexError) as err:
        raise layer.error(f"its parameters cannot be set up: {type(err).__name__}: {err}") from None


def _run_rule(layer: LayerContext, rule: Callable[[LayerContext], Any]) -> list[Shape | Unknown]:
    """The top shapes a layer's rule gives (unknown ones when a parameter-free layer needs an unknown
    bottom shape; a learnable layer that needs one is an error naming where the shape comes from)."""
    param = layer.param
    try:
        tops = _guarded_rule(layer, rule)
        if tops is None:  # a rule that set its tops with layer.set_top
            missing = [i for i in range(layer.num_tops) if i not in layer.tops]
            if missing:
                raise layer.error(f"its rule set no shape for top(s) {missing}")
            tops = [layer.tops[i] for i in range(layer.num_tops)]
    except NeedsUnknown as need:
        if param.type not in LEARNABLE:
            return [need.unknown] * layer.num_tops
        source = need.unknown.blob or need.bottom
        via = "" if source == need.bottom else f", which is computed from blob {source!r}"
        raise ShapeError(
            f"layer {param.name!r} ({param.type}) needs the shape of blob {need.bottom!r}{via}; that cannot be "
            f"known from the net: {need.unknown.origin}; {input_hint(source, need.unknown.unknown_type)}",
            layer=param.name, blob=source,
        ) from None
    return list(tops)


def _learnable_marks(param: LayerParameter) -> list[str]:
    """What in a layer says it surely has learnable blobs: param specs, blobs, filler fields."""
    marks = [f"{len(param.param)} param spec(s)"] if param.param else []
    if param.blobs:
        marks.append(f"{len(param.blobs)} blob(s)")

    def fillers_in(message: Any, path: str) -> None:
        for fd, value in message.ListFields():
            if fd.message_type is None:
                continue
            for i, sub in enumerate(value if fd.is_repeated else [value]):
                where = f"{path}.{fd.name}" + (f"[{i}]" if fd.is_repeated else "")
                if fd.message_type is FillerParameter.DESCRIPTOR:
                    marks.append(f"filler {where[1:]}")
                elif fd.message_type is not BlobProto.DESCRIPTOR:
                    fillers_in(sub, where)

    fillers_in(param, "")
    return marks


def _pass_over(layer: LayerContext, index: int, strict: bool) -> list[Shape | Unknown]:
    """A layer of a type no rule knows: its tops get unknown shapes (an in-place top keeps its bottom's),
    with one warning; an error when it surely has learnable blobs or ``strict``."""
    param = layer.param
    where = f"layer {param.name!r} (net.layer[{index}], type {param.type!r})"
    if strict:
        raise layer.error(f"unknown layer type {param.type!r}: fillers does not know its learnable blobs or "
                          f"top shapes; {teach_hint(param.type)}")
    marks = _learnable_marks(param)
    if marks:
        raise layer.error(f"unknown layer type {param.type!r} with learnable blobs ({', '.join(marks)}): their "
                          f"shapes cannot be guessed; {teach_hint(param.type)}")
    origin = f"{where} is of a type fillers does not know"
    tops: list[Shape | Unknown] = []
    for name in param.top:
        if name in param.bottom:  # in place: the layer keeps its bottom's shape
            tops.append(layer._bottoms[list(param.bottom).index(name)])
        else:
            tops.append(Unknown(origin, unknown_type=param.type))
    passed = [name for name, shape in zip(param.top, tops) if isinstance(shape, Unknown)]
    warnings.warn(ShapeWarning(f"{where}: unknown layer type passed over; "
                               + (f"its top(s) {passed} have unknown shapes" if passed
                                  else "its tops keep their bottoms' shapes"), layer=param.name, index=index),
                  stacklevel=5)
    return tops


def _walk(net: NetParameter, inputs: dict[str, Shape], phase: int | None, strict: bool) -> list[NetLayer]:
    state = _net_state(net, phase)
    phase = state.phase
    blobs: dict[str, Shape | Unknown] = {}
    owners: dict[str, tuple[str, int, Shape]] = {}
    unused_inputs = set(inputs)
    out: list[NetLayer] = []
    draws = 0
    for index, param in enumerate(net.layer):
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
            tops = _pass_over(layer, index, strict)
        else:
            tops = _run_rule(layer, rule)
        if len(tops) < layer.num_tops:
            raise layer.error(f"has {layer.num_tops} tops; this layer type makes {len(tops)}")
        tops = [top if isinstance(top, Unknown) else layer.shape(top) for top in tops]
        draws += layer.raw_draws
        for name, shape in zip(param.top, tops):
            if isinstance(shape, Unknown) and not shape.blob:
                shape = Unknown(shape.origin, name, shape.unknown_type)
            if name in inputs:
                shape = inputs[name]
                unused_inputs.discard(name)
            blobs[name] = shape
        learnable = None
        if layer.blobs:
            learnable = _layer_blobs(layer, owners, draws)
            draws = 0
        out.append(NetLayer(param=param, bottoms=tuple(zip(param.bottom, map(_known, layer._bottoms))),
                            tops=tuple((top, _known(blobs[top])) for top in param.top), learnable=learnable))
    if unused_inputs:
        raise ShapeError(f"inputs name no top blob of the net: {sorted(unused_inputs)}; "
                         f"its tops are {sorted(blobs)}")
    return out


def built_net(net: NetParameter, *, phase: str | int | None = "TEST") -> NetParameter:
    """The net as Caffe's ``Net::Init`` builds it, which is what ``Net::ToProto`` writes (blobs aside).

    ``FilterNet`` keeps the layers whose include/exclude rules the state meets (as :func:`infer_shapes`);
    ``InsertSplits`` adds a ``Split`` layer after every top that more than one layer reads (or that a layer
    reads and a loss weight weighs), named ``<blob>_<layer>_<top index>_split``, and renames the readers'
    bottoms to its tops; every layer without a ``phase`` gets the net's.  The net keeps only its name
    (``Net::ToProto`` writes no other field of its own).

    Parameters
    ----------
    net : NetParameter
        A current-format net (V0/V1 messages are upgraded first).
    phase : {"TEST", "TRAIN"} or None
        As for :func:`infer_shapes` (``None``: the net's own ``state``).

    Returns
    -------
    NetParameter
        A new message; its layers hold no ``blobs`` (``Net::ToProto`` writes each layer's own blobs there).

    Raises
    ------
    ShapeError
        A layer with both include and exclude rules, or a bottom no earlier layer produces (the layer and the
        bottom index are named).
    """
    net = _as_net(net)
    state = _net_state(net, None if phase is None else _phase(phase))
    phase_value = state.phase
    layers = []
    for layer in net.layer:
        if _included(layer, state):
            copy = LayerParameter()
            copy.CopyFrom(layer)
            copy.ClearField("blobs")
            layers.append(copy)
    out = NetParameter(name=net.name)
    out.layer.extend(_insert_splits(layers))
    for layer in out.layer:  # after the splits, as in Net::Init: they get the net's phase too
        if not layer.HasField("phase"):
            layer.phase = phase_value
    return out


def _insert_splits(layers: list[LayerParameter]) -> list[LayerParameter]:
    """Caffe's ``InsertSplits`` over filtered layers (modified in place; the Split layers are new)."""
    last_top: dict[str, tuple[int, int]] = {}  # blob name -> (layer, top index) of its latest writer
    source: dict[tuple[int, int], tuple[int, int]] = {}  # (layer, bottom index) -> the top it reads
    readers: dict[tuple[int, int], int] = {}
    loss_weight: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer.bottom):
            if name not in last_top:
                raise ShapeError(f"layer {layer.name!r} ({layer.type}): unknown bottom blob {name!r} (bottom index "
                                 f"{j}); no earlier layer produces it", layer=layer.name, blob=name)
            source[i, j] = last_top[name]
            readers[last_top[name]] = readers.get(last_top[name], 0) + 1
        for j, name in enumerate(layer.top):
            last_top[name] = (i, j)
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            top = last_top[layer.top[j]]
            loss_weight[top] = layer.loss_weight[j]
            if loss_weight[top]:
                readers[top] = readers.get(top, 0) + 1
    taken: dict[tuple[int, int], int] = {}  # split tops handed out so far
    out = []
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer.bottom):
            top = source[i, j]
            if readers[top] > 1:
                layer.bottom[j] = _split_blob(layers[top[0]].name, name, top[1], taken.get(top, 0))
                taken[top] = taken.get(top, 0) + 1
        out.append(layer)
        for j, name in enumerate(layer.top):
            n = readers.get((i, j), 0)
            if n > 1:
                weight = loss_weight.get((i, j), 0.0)
                split = LayerParameter(name=f"{name}_{layer.name}_{j}_split", type="Split", bottom=[name],
                                       top=[_split_blob(layer.name, name, j, k) for k in range(n)])
                if weight:
                    split.loss_weight.extend([weight] + [0.0] * (n - 1))
                    layer.ClearField("loss_weight")
                    taken[i, j] = taken.get((i, j), 0) + 1
                out.append(split)
    return out


def _split_blob(layer: str, blob: str, top_index: int, split_index: int) -> str:
    """Caffe's ``SplitBlobName``."""
    return f"{blob}_{layer}_{top_index}_split_{split_index}"
