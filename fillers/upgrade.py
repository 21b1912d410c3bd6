"""Bring old Caffe net and solver definitions to the current format.

:func:`upgrade_net` follows Caffe's ``UpgradeNetAsNeeded``
(``src/caffe/util/upgrade_proto.cpp``) step by step, so that for every net Caffe
accepts the result equals, message for message, what Caffe's
``upgrade_net_proto_text`` writes:

1. V0 -> V1 (``layers { layer { ... } }``): padding layers are folded into the
   convolution or pooling layer they feed, the lower-case type names become
   V1 enums and the flat V0 fields move into the ``*_param`` messages.
2. Data transformation: ``scale``/``mean_file``/``crop_size``/``mirror`` of the
   V1 Data, ImageData and WindowData parameters move to ``transform_param``.
3. V1 -> V2 (``layers`` -> ``layer``): enum types become strings
   (``SOFTMAX_LOSS`` -> ``"SoftmaxWithLoss"``), ``param``/``blob_share_mode``/
   ``blobs_lr``/``weight_decay`` become ``param { name share_mode lr_mult
   decay_mult }``.
4. ``input``/``input_shape``/``input_dim`` become an ``Input`` layer named
   ``"input"``, placed first. Inputs given without any dimensions are dropped.
5. BatchNorm layers with three ``param`` entries get ``lr_mult`` and
   ``decay_mult`` set to 0 (names are kept).

Where Caffe gives up (unknown V0 type, a net with both ``layer`` and
``layers``, a padding layer feeding something other than conv/pool ...) the
lenient mode (default) goes on with one :class:`~fillers.prototxt.PrototxtWarning`
per problem, keeping what it can (an unknown V0 type is kept as the type
string); ``strict=True`` raises :class:`~fillers.prototxt.PrototxtError`.
"""

from __future__ import annotations

import warnings

import re

from google.protobuf.descriptor import FieldDescriptor

from . import caffe_pb2
from .errors import PrototxtError, PrototxtWarning
from .prototxt import ParsedText

__all__ = ["net_needs_upgrade", "upgrade_net", "upgrade_solver", "V1_TYPE_NAMES"]

_V1 = caffe_pb2.V1LayerParameter
_DATA_LAYERS = {_V1.DATA: "data_param", _V1.IMAGE_DATA: "image_data_param",
                _V1.WINDOW_DATA: "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

#: V0 type string -> V1 enum value (Caffe's UpgradeV0LayerType).
V0_TYPES = {
    "accuracy": _V1.ACCURACY, "bnll": _V1.BNLL, "concat": _V1.CONCAT,
    "conv": _V1.CONVOLUTION, "data": _V1.DATA, "dropout": _V1.DROPOUT,
    "euclidean_loss": _V1.EUCLIDEAN_LOSS, "flatten": _V1.FLATTEN,
    "hdf5_data": _V1.HDF5_DATA, "hdf5_output": _V1.HDF5_OUTPUT, "im2col": _V1.IM2COL,
    "images": _V1.IMAGE_DATA, "infogain_loss": _V1.INFOGAIN_LOSS,
    "innerproduct": _V1.INNER_PRODUCT, "lrn": _V1.LRN,
    "multinomial_logistic_loss": _V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": _V1.POOLING,
    "relu": _V1.RELU, "sigmoid": _V1.SIGMOID, "softmax": _V1.SOFTMAX,
    "softmax_loss": _V1.SOFTMAX_LOSS, "split": _V1.SPLIT, "tanh": _V1.TANH,
    "window_data": _V1.WINDOW_DATA,
}

#: V1 enum name -> current type string (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax",
    "BNLL": "BNLL", "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "DATA": "Data",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

#: Current type names for V1 enum types that only forks had (DeepLab v1, Fast
#: R-CNN, C3D); any other unknown V1 name becomes CamelCase (SOME_LAYER -> SomeLayer).
FORK_V1_TYPE_NAMES = {
    "IMAGE_SEG_DATA": "ImageSegData", "INTERP": "Interp", "SEG_ACCURACY": "SegAccuracy",
    "MAT_READ": "MatRead", "MAT_WRITE": "MatWrite", "PADDING": "Padding",
    "ROI_POOLING": "ROIPooling", "SMOOTH_L1_LOSS": "SmoothL1Loss",
    # C3D v1.0 (facebook/C3D):
    "CONVOLUTION3D": "Convolution3D", "DECONVOLUTION3D": "Deconvolution3D", "POOLING3D": "Pooling3D",
    "VIDEO_DATA": "VideoData", "VIDEO_SEGMENTATION_DATA": "VideoSegmentationData",
    "VIDEO_WITH_VOXEL_TRUTH_DATA": "VideoWithVoxelTruthData",
}


def fork_v1_type_name(enum_name: str) -> str:
    """Current-format type string for a V1 enum name that BVLC does not have."""
    if enum_name in FORK_V1_TYPE_NAMES:
        return FORK_V1_TYPE_NAMES[enum_name]
    return "".join(part.capitalize() for part in re.split(r"_+", enum_name) if part)


#: Solver ``solver_type`` enum name -> ``type`` string (Caffe's UpgradeSolverType).
SOLVER_TYPE_NAMES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                     "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


class _Report:
    """Where upgrade problems go: a warning each (lenient) or an error (strict)."""

    def __init__(self, strict: bool, filename: str) -> None:
        self.strict = strict
        self.filename = filename

    def __call__(self, message: str) -> None:
        if self.strict:
            raise PrototxtError(message, self.filename)
        warnings.warn(f"{self.filename}: {message}", PrototxtWarning, stacklevel=4)


# --------------------------------------------------------------------------
# What needs doing
# --------------------------------------------------------------------------


def _needs_v0(net: caffe_pb2.NetParameter) -> bool:
    return any(layer.HasField("layer") for layer in net.layers)


def _needs_data(net: caffe_pb2.NetParameter) -> bool:
    for layer in net.layers:
        field = _DATA_LAYERS.get(layer.type)
        if field and any(getattr(layer, field).HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def _needs_batch_norm(net: caffe_pb2.NetParameter) -> bool:
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in net.layer)


def net_needs_upgrade(net: caffe_pb2.NetParameter) -> bool:
    """True if :func:`upgrade_net` would change ``net`` (Caffe's NetNeedsUpgrade)."""
    return (_needs_v0(net) or len(net.layers) > 0 or _needs_data(net)
            or len(net.input) > 0 or _needs_batch_norm(net))


# --------------------------------------------------------------------------
# V0 -> V1
# --------------------------------------------------------------------------


def _fold_padding(net: caffe_pb2.NetParameter, report: _Report) -> caffe_pb2.NetParameter:
    """Drop V0 "padding" layers, moving their pad into the conv/pool they feed."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    last_top = {name: -1 for name in net.input}
    for i, conn in enumerate(net.layers):
        v0 = conn.layer
        if v0.type != "padding":
            out.layers.add().CopyFrom(conn)
        for j, blob in enumerate(conn.bottom):
            if blob not in last_top:
                report(f'layer "{v0.name}" reads blob "{blob}" that nothing produces')
                continue
            src_idx = last_top[blob]
            if src_idx == -1:
                continue
            src = net.layers[src_idx]
            if src.layer.type != "padding":
                continue
            if (v0.type not in ("conv", "pool") or len(conn.bottom) != 1
                    or len(src.bottom) != 1 or len(src.top) != 1):
                report(f'padding layer "{src.layer.name}" feeds layer "{v0.name}" of type '
                       f'"{v0.type}"; only a single-input conv or pool can absorb it')
                continue
            target = out.layers[-1]
            target.layer.pad = src.layer.pad
            target.bottom[j] = src.bottom[0]
        for blob in conn.top:
            last_top[blob] = i
    return out


# V0 field -> {V0 type: (V1 sub-message, field)}; "" as sub-message means the
# transform_param for any type. Order follows Caffe's UpgradeV0LayerParameter.
_V0_FIELDS: list[tuple[str, dict[str, tuple[str, str]]]] = [
    ("num_output", {"conv": ("convolution_param", "num_output"),
                    "innerproduct": ("inner_product_param", "num_output")}),
    ("biasterm", {"conv": ("convolution_param", "bias_term"),
                  "innerproduct": ("inner_product_param", "bias_term")}),
    ("weight_filler", {"conv": ("convolution_param", "weight_filler"),
                       "innerproduct": ("inner_product_param", "weight_filler")}),
    ("bias_filler", {"conv": ("convolution_param", "bias_filler"),
                     "innerproduct": ("inner_product_param", "bias_filler")}),
    ("pad", {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")}),
    ("kernelsize", {"conv": ("convolution_param", "kernel_size"),
                    "pool": ("pooling_param", "kernel_size")}),
    ("group", {"conv": ("convolution_param", "group")}),
    ("stride", {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")}),
    ("pool", {"pool": ("pooling_param", "pool")}),
    ("dropout_ratio", {"dropout": ("dropout_param", "dropout_ratio")}),
    ("local_size", {"lrn": ("lrn_param", "local_size")}),
    ("alpha", {"lrn": ("lrn_param", "alpha")}),
    ("beta", {"lrn": ("lrn_param", "beta")}),
    ("k", {"lrn": ("lrn_param", "k")}),
    ("source", {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
                "images": ("image_data_param", "source"),
                "window_data": ("window_data_param", "source"),
                "infogain_loss": ("infogain_loss_param", "source")}),
    ("scale", {"": ("transform_param", "scale")}),
    ("meanfile", {"": ("transform_param", "mean_file")}),
    ("batchsize", {"data": ("data_param", "batch_size"),
                   "hdf5_data": ("hdf5_data_param", "batch_size"),
                   "images": ("image_data_param", "batch_size"),
                   "window_data": ("window_data_param", "batch_size")}),
    ("cropsize", {"": ("transform_param", "crop_size")}),
    ("mirror", {"": ("transform_param", "mirror")}),
    ("rand_skip", {"data": ("data_param", "rand_skip"),
                   "images": ("image_data_param", "rand_skip")}),
    ("shuffle_images", {"images": ("image_data_param", "shuffle")}),
    ("new_height", {"images": ("image_data_param", "new_height")}),
    ("new_width", {"images": ("image_data_param", "new_width")}),
    ("concat_dim", {"concat": ("concat_param", "concat_dim")}),
    ("det_fg_threshold", {"window_data": ("window_data_param", "fg_threshold")}),
    ("det_bg_threshold", {"window_data": ("window_data_param", "bg_threshold")}),
    ("det_fg_fraction", {"window_data": ("window_data_param", "fg_fraction")}),
    ("det_context_pad", {"window_data": ("window_data_param", "context_pad")}),
    ("det_crop_mode", {"window_data": ("window_data_param", "crop_mode")}),
    ("hdf5_output_param", {"hdf5_output": ("hdf5_output_param", "")}),
]


def _v0_layer(conn: caffe_pb2.V1LayerParameter, report: _Report
              ) -> tuple[caffe_pb2.V1LayerParameter, str | None]:
    """One V0 layer as V1; also returns a V0 type that has no V1 enum (else None)."""
    out = caffe_pb2.V1LayerParameter()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not conn.HasField("layer"):
        return out, None
    v0 = conn.layer
    if v0.HasField("name"):
        out.name = v0.name
    kept_type = None
    if v0.HasField("type"):
        if v0.type in V0_TYPES:
            out.type = V0_TYPES[v0.type]
        else:
            report(f'layer "{v0.name}": unknown V0 layer type "{v0.type}" (kept as is)')
            kept_type = v0.type
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for v0_field, targets in _V0_FIELDS:
        if not v0.HasField(v0_field):
            continue
        target = targets.get(v0.type) or targets.get("")
        if target is None:
            report(f'layer "{v0.name}": V0 field {v0_field} does not apply to type "{v0.type}"'
                   " (dropped)")
            continue
        _set_v0(out, v0, v0_field, *target)
    return out, kept_type


def _set_v0(out: caffe_pb2.V1LayerParameter, v0: caffe_pb2.V0LayerParameter,
            v0_field: str, sub: str, field: str) -> None:
    value = getattr(v0, v0_field)
    if not field:  # whole message
        getattr(out, sub).CopyFrom(value)
        return
    msg = getattr(out, sub)
    target = getattr(msg, field)
    if hasattr(target, "CopyFrom"):
        target.CopyFrom(value)
    elif hasattr(target, "append"):  # repeated in ConvolutionParameter
        target.append(value)
    else:  # scalars; the V0 pool enum has the PoolingParameter numbering
        if msg.DESCRIPTOR.fields_by_name[field].cpp_type == FieldDescriptor.CPPTYPE_UINT32:
            value %= 2**32  # C++'s int32 -> uint32 conversion (V0's int32 new_height/new_width): -1 is 4294967295
        setattr(msg, field, value)


def _v0_to_v1(net: caffe_pb2.NetParameter, report: _Report
              ) -> tuple[caffe_pb2.NetParameter, dict[int, str]]:
    padded = _fold_padding(net, report)
    dropped = [f.name for f, _ in padded.ListFields()
               if f.name not in ("name", "layers", "input", "input_dim", "force_backward")]
    if dropped:
        report("V0 upgrade keeps only name, layers, input, input_dim, force_backward; "
               "dropped " + ", ".join(dropped))
    out = caffe_pb2.NetParameter()
    if padded.HasField("name"):
        out.name = padded.name
    kept: dict[int, str] = {}
    for i, conn in enumerate(padded.layers):
        layer, kept_type = _v0_layer(conn, report)
        out.layers.add().CopyFrom(layer)
        if kept_type is not None:
            kept[i] = kept_type
    out.input.extend(padded.input)
    out.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        out.force_backward = padded.force_backward
    return out, kept


# --------------------------------------------------------------------------
# Data transformation fields
# --------------------------------------------------------------------------


def _data_transformation(net: caffe_pb2.NetParameter) -> None:
    for layer in net.layers:
        field = _DATA_LAYERS.get(layer.type)
        if field is None:
            continue
        param = getattr(layer, field)
        param.SetInParent()
        layer.transform_param.SetInParent()
        for name in _TRANSFORM_FIELDS:
            if param.HasField(name):
                setattr(layer.transform_param, name, getattr(param, name))
                param.ClearField(name)


# --------------------------------------------------------------------------
# V1 -> V2
# --------------------------------------------------------------------------

_LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name


def _v1_layer(v1: caffe_pb2.V1LayerParameter, kept_type: str | None,
              fork_fields: list[caffe_pb2.LayerParameter], report: _Report
              ) -> caffe_pb2.LayerParameter:
    out = caffe_pb2.LayerParameter()
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    if kept_type is not None:
        out.type = kept_type
    elif v1.HasField("type"):
        enum_name = _V1.LayerType.Name(v1.type)
        out.type = V1_TYPE_NAMES.get(enum_name, enum_name)
    out.blobs.extend(v1.blobs)

    def param(i: int) -> caffe_pb2.ParamSpec:
        while len(out.param) <= i:
            out.param.add()
        return out.param[i]

    for i, name in enumerate(v1.param):
        param(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        param(i).share_mode = mode  # same numbering in both enums
    for i, lr in enumerate(v1.blobs_lr):
        param(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        param(i).decay_mult = decay
    out.loss_weight.extend(v1.loss_weight)
    for fd, value in v1.ListFields():
        if fd.name.endswith("_param") and fd.name in _LAYER_FIELDS:
            getattr(out, fd.name).CopyFrom(value)
    for fragment in fork_fields:
        out.MergeFrom(fragment)
    if v1.HasField("layer"):
        report(f'layer "{v1.name}": V0 layer inside a V1 layer ignored')
    return out


def _v1_to_v2(net: caffe_pb2.NetParameter, kept: dict[int, str],
              fork_fields: dict[int, list[caffe_pb2.LayerParameter]],
              top_order: list[str] | None, report: _Report) -> caffe_pb2.NetParameter:
    upgraded = [_v1_layer(v1, kept.get(i), fork_fields.get(i, []), report)
                for i, v1 in enumerate(net.layers)]
    current = list(net.layer)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    del out.layer[:]
    if current:
        report('the net has both "layer" and "layers" entries (Caffe refuses this); '
               '"layers" upgraded and kept in file order')
        if (top_order is not None and top_order.count("layers") == len(upgraded)
                and top_order.count("layer") == len(current)):
            v1_iter, v2_iter = iter(upgraded), iter(current)
            upgraded = [next(v1_iter) if kind == "layers" else next(v2_iter)
                        for kind in top_order]
        else:
            upgraded = upgraded + current
    out.layer.extend(upgraded)
    return out


# --------------------------------------------------------------------------
# Input fields, BatchNorm
# --------------------------------------------------------------------------


def _input_fields(net: caffe_pb2.NetParameter, report: _Report) -> None:
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if has_shape or has_dim:
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        layer.input_param.SetInParent()
        for i, name in enumerate(net.input):
            layer.top.append(name)
            if has_shape:
                if i < len(net.input_shape):
                    layer.input_param.shape.add().CopyFrom(net.input_shape[i])
                else:
                    report(f'input "{name}" has no input_shape')
            else:
                dims = net.input_dim[4 * i: 4 * i + 4]
                if len(dims) < 4:
                    report(f'input "{name}" needs 4 input_dim values, has {len(dims)}')
                layer.input_param.shape.add().dim.extend(dims)
        rest = list(net.layer)
        del net.layer[:]
        net.layer.add().CopyFrom(layer)
        net.layer.extend(rest)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def _batch_norm(net: caffe_pb2.NetParameter) -> None:
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def upgrade_net_ordered(parsed: ParsedText, *, strict: bool = False,
                        filename: str = "<net>") -> caffe_pb2.NetParameter:
    """:func:`upgrade_net` with what the loader saw in the text.

    ``parsed`` carries the text order of ``layer``/``layers`` entries (a net
    mixing both keeps it) and the fork types and fork fields of V1 layers that
    the schema cannot hold (they become the type and fields of the upgraded
    layer).
    """
    report = _Report(strict, filename)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(parsed.message)
    top_order: list[str] | None = parsed.top_order or None
    kept = {i: fork_v1_type_name(name) for i, name in parsed.v1_types.items()}
    fork_fields = parsed.v1_fields
    if _needs_v0(out):
        if len(out.layer):
            top_order = None
        out, kept = _v0_to_v1(out, report)
        fork_fields = {}
    if _needs_data(out):
        _data_transformation(out)
    if len(out.layers):
        out = _v1_to_v2(out, kept, fork_fields, top_order, report)
    if len(out.input):
        _input_fields(out, report)
    if _needs_batch_norm(out):
        _batch_norm(out)
    return out


def upgrade_net(net: caffe_pb2.NetParameter, *, strict: bool = False
                ) -> caffe_pb2.NetParameter:
    """Return ``net`` upgraded to the current format, as Caffe upgrades it.

    Parameters
    ----------
    net : caffe_pb2.NetParameter
        Any format: V0, V1, current, or a mixture. Not modified. Another schema's ``NetParameter``
        (pycaffe's ``caffe_pb2``) is read through its serialized bytes.
    strict : bool
        Raise where Caffe would fail or report an incomplete upgrade, instead
        of warning and going on.

    Returns
    -------
    caffe_pb2.NetParameter
        A new message; upgrading it again changes nothing.

    Raises
    ------
    PrototxtError
        In strict mode, for the problems described in the module docstring.

    Notes
    -----
    A net with both ``layer`` and ``layers`` entries (lenient mode) gets the
    upgraded ``layers`` first; :func:`fillers.load_net` keeps the file order.
    """
    return upgrade_net_ordered(ParsedText(caffe_pb2.as_message(net, caffe_pb2.NetParameter)), strict=strict)


def upgrade_solver(solver: caffe_pb2.SolverParameter) -> caffe_pb2.SolverParameter:
    """Return ``solver`` with the legacy ``solver_type`` enum turned into ``type``.

    ``solver`` may be another schema's ``SolverParameter`` (pycaffe's), read through its serialized bytes.

    Raises
    ------
    ValueError
        If both ``solver_type`` and ``type`` are given (Caffe refuses too).
    """
    out = caffe_pb2.SolverParameter()
    out.CopyFrom(caffe_pb2.as_message(solver, caffe_pb2.SolverParameter))
    if out.HasField("solver_type"):
        if out.HasField("type"):
            raise ValueError('solver has both the old "solver_type" and the new "type" field')
        enum_name = caffe_pb2.SolverParameter.SolverType.Name(out.solver_type)
        out.type = SOLVER_TYPE_NAMES[enum_name]
        out.ClearField("solver_type")
    return out
