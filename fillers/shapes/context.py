"""The setup context handed to layer rules, the records shape inference produces, and the rule registry.

A *rule* is a function of a :class:`LayerContext` that does what a Caffe layer's ``LayerSetUp``/``Reshape``
do to shapes: it reads the layer's parameters and bottom shapes, declares the learnable blobs with their
fillers (:meth:`LayerContext.add_blob`) and returns (or sets, :meth:`LayerContext.set_top`) the top shapes.
Rules are registered by layer type (:func:`register_layer`); the families in this package register Caffe's
layers and the common forks'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from fillers.caffe_pb2 import FillerParameter, LayerParameter
from fillers.errors import ShapeError


__all__ = ["BlobSpec", "FillCycle", "FillStep", "LayerBlobs", "LayerContext", "register_layer"]

INT_MAX = 2**31 - 1
MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

Shape = tuple[int, ...]


@dataclass(frozen=True)
class BlobSpec:
    """One learnable blob of a layer.

    Attributes
    ----------
    shape : tuple of int
        The blob shape (``()`` is a blob with zero axes and one value, e.g. a shared PReLU slope).
    filler : FillerParameter or None
        The filler Caffe runs on this blob, defaults filled in (a missing filler is ``constant`` 0);
        ``None`` when the layer's setup writes the initial values itself, without a filler (they are in
        :attr:`LayerBlobs.given`; e.g. CRF-as-RNN's kernel weights).
    param_name : str
        The layer's ``param { name }`` for this blob, or ``""``.
    share_owner : tuple of (str, int) or None
        ``(layer name, blob index)`` of the blob this one shares by ``param`` name; ``None`` for an owner.
    """

    shape: Shape
    filler: FillerParameter | None
    param_name: str = ""
    share_owner: tuple[str, int] | None = None


@dataclass(frozen=True)
class FillStep:
    """One filler run in the layer's setup, in Caffe's order.

    ``blob`` is the index of the blob the run produces, or ``None`` for a run whose values Caffe discards
    (an unrolled LSTM/RNN runs its shared recurrent filler once per timestep; only the first is kept).
    """

    blob: int | None
    shape: Shape
    filler: FillerParameter


@dataclass(frozen=True)
class FillCycle:
    """Filler runs whose values Caffe discards, made ``times`` times over in order: the runs of the timesteps
    after the first of an unrolled LSTM/RNN (``steps`` are one timestep's runs, each with ``blob`` ``None``).

    A cycle describes any number of timesteps in constant space; only Caffe's sequential stream
    (``fill_net(rng="caffe")``) makes the runs, to consume the draws Caffe consumes.
    """

    steps: tuple[FillStep, ...]
    times: int

    @property
    def count(self) -> int:
        """The number of values the runs draw for, all cycles together."""
        return self.times * sum(math.prod(step.shape) for step in self.steps)


@dataclass(frozen=True)
class LayerBlobs:
    """A layer with learnable blobs.

    Attributes
    ----------
    name, type : str
        The layer's name and type.
    blobs : list of BlobSpec
        Its learnable blobs, in Caffe's order (weight before bias).
    fills : tuple of FillStep or FillCycle
        The filler runs of its setup in Caffe's order (one per blob, except for recurrent layers, whose
        discarded timestep runs are one :class:`FillCycle`).
    raw_draws_before : int
        How many raw 32-bit words Caffe takes from its global random stream (``caffe_rng_rand()``) between
        the setup of the previous listed layer and this one: the seeds that data layers draw in setup.
    given : {"", "net", "setup"}
        Where the blobs' initial values come from when no filler makes them: ``"net"``, values written in
        the net itself (``LayerParameter.blobs``: Caffe uses them and skips the layer's fillers; a recurrent
        layer still builds, and so fills, its unrolled net first); ``"setup"``, a layer whose setup writes
        them itself (blob fillers ``None``).  :meth:`given_values` makes them.
    variant : str
        Which fork's layer the rule took it for, when forks gave one type name to different layers (a
        registered type name such as ``"BN_pspnet"``); ``""`` otherwise.
    """

    name: str
    type: str
    blobs: list[BlobSpec]
    fills: tuple[FillStep | FillCycle, ...] = ()
    raw_draws_before: int = 0
    given: str = ""
    variant: str = ""
    make_given: Callable[[], tuple[np.ndarray, ...]] | None = field(default=None, repr=False, compare=False)

    def given_values(self) -> tuple[np.ndarray, ...]:
        """The initial values of the blobs when :attr:`given` is set (computed now: shape inference itself
        never converts or computes values), else ``()``.

        Raises
        ------
        ShapeError
            Values the layer's setup would reject (e.g. a CRF-as-RNN weight string that is not a float).
        """
        return self.make_given() if self.make_given is not None else ()


@dataclass(frozen=True)
class NetLayer:
    """A layer of the net as :func:`~fillers.shapes.net_layers` sets it up, with its blob shapes.

    Attributes
    ----------
    param : LayerParameter
        The layer's parameters as written in the net.
    bottoms, tops : tuple of (str, tuple of int or None)
        Each bottom and top blob name with its shape; ``None`` where only data could tell the shape.
    learnable : LayerBlobs or None
        The layer's learnable blobs, as :func:`~fillers.shapes.infer_shapes` lists them; ``None`` for a layer
        without any.
    """

    param: LayerParameter
    bottoms: tuple[tuple[str, Shape | None], ...]
    tops: tuple[tuple[str, Shape | None], ...]
    learnable: LayerBlobs | None = None


@dataclass(frozen=True)
class Unknown:
    """The shape of a blob that only data could tell: ``origin`` says which layer made it and why, ``blob``
    names that layer's top (filled in when the top is stored); ``unknown_type`` is the layer type when the
    layer was passed over because no rule knows its type."""

    origin: str
    blob: str = ""
    unknown_type: str = ""


class NeedsUnknown(Exception):
    """Raised by a layer rule that asked for a bottom shape nobody can know."""

    def __init__(self, bottom: str, unknown: Unknown):
        super().__init__(bottom)
        self.bottom = bottom
        self.unknown = unknown


def input_hint(blob: str, unknown_type: str = "") -> str:
    """How to get past a blob whose shape cannot be known (and, for a layer of an unknown type, how to
    teach fillers that type)."""
    hint = f"give its shape with inputs={{{blob!r}: (D0, D1, ...)}} (command line: --input {blob}=D0,D1,...)"
    if unknown_type:
        hint += f", or {teach_hint(unknown_type)}"
    return hint


def teach_hint(type_name: str) -> str:
    return (f"teach fillers the layer type: as a rename of a known type, register_layer({type_name!r}, "
            f"like='KNOWN') (command line: --like {type_name}=KNOWN), or with a rule in a Python file that "
            f"calls fillers.register_layer({type_name!r}, rule) (command line: --plugin FILE.py)")


@dataclass
class LayerContext:
    """A layer being set up, as handed to a layer rule: its parameters and bottom shapes, and what the rule
    declares (learnable blobs, top shapes).

    The built-in rules use exactly this object; a rule registered with :func:`register_layer` gets it too.

    Attributes
    ----------
    param : LayerParameter
        The layer as written in the net (current format).
    phase : int
        The phase the layer is built in: 0 TRAIN, 1 TEST (the layer's own ``phase`` field wins).
    bottom_names : list of str
        The names of its bottom blobs.
    blobs : list of (tuple of int, FillerParameter or None)
        The learnable blobs declared so far (:meth:`add_blob`), in Caffe's order.
    fills : list of FillStep or FillCycle, or None
        The filler runs of the setup when they differ from one run per blob in blob order (recurrent
        layers); ``None`` otherwise.
    raw_draws : int
        Raw 32-bit words the layer's setup takes from Caffe's global stream (data layers' seeds).
    variant : str
        Which fork's layer the rule took this one for, when forks gave one type name to different layers
        (``"BN_pspnet"`` or ``"BN_segnet"`` for a ``BN`` layer); ``""`` otherwise.  Shown by ``inspect``.

    Examples
    --------
    A rule for a fork's inner product with a learnable weight and no bias:

    >>> @register_layer("MarginInnerProduct")                       # doctest: +SKIP
    ... def margin_ip(layer):
    ...     n, *rest = layer.bottom_shapes[0]
    ...     p = layer.param.inner_product_param
    ...     layer.add_blob((p.num_output, math.prod(rest)), p.weight_filler)
    ...     layer.set_top(0, (n, p.num_output))
    """

    param: LayerParameter
    phase: int
    bottom_names: list[str]
    _bottoms: list[Shape | Unknown]
    blobs: list[tuple[Shape, FillerParameter | None]] = field(default_factory=list)
    fills: list[FillStep | FillCycle] | None = None  # None: one run per blob with a filler, in blob order
    raw_draws: int = 0
    written: list[Callable[[], np.ndarray]] = field(default_factory=list)
    tops: dict[int, Shape | Unknown] = field(default_factory=dict)
    variant: str = ""

    # -- errors and parameters ------------------------------------------------------------------------
    def error(self, message: str) -> ShapeError:
        return ShapeError(f"layer {self.param.name!r} ({self.param.type}): {message}", layer=self.param.name)

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.error(message)

    def sub(self, field_name: str) -> Any:
        """The layer's ``field_name`` message (fork fields need a schema that has them)."""
        if field_name not in LayerParameter.DESCRIPTOR.fields_by_name:
            raise self.error(f"the schema has no LayerParameter.{field_name}, which this layer type needs")
        return getattr(self.param, field_name)

    # -- bottoms ------------------------------------------------------------------------------------------
    @property
    def num_bottoms(self) -> int:
        return len(self._bottoms)

    @property
    def num_tops(self) -> int:
        return len(self.param.top)

    def top_name(self, i: int) -> str:
        """The name of top ``i`` (Caffe's ``CheckBlobCounts``: a layer that needs it has it)."""
        self.check(i < self.num_tops, f"needs at least {i + 1} top blob(s), has {self.num_tops}")
        return self.param.top[i]

    @property
    def bottom_shapes(self) -> list[Shape]:
        """The shapes of all bottoms, as tuples (an unknown one stops the rule as :meth:`bottom` does)."""
        return [self.bottom(i) for i in range(self.num_bottoms)]

    def set_top(self, i: int, shape: Iterable[int]) -> None:
        """Set the shape of top ``i`` (for a rule that returns ``None`` instead of the list of top shapes)."""
        self.check(0 <= i < self.num_tops, f"has {self.num_tops} tops; a rule set top {i}")
        self.tops[i] = self.shape(shape)

    def bottom(self, i: int = 0) -> Shape:
        """The shape of bottom ``i`` (raises :class:`NeedsUnknown` when nobody can know it)."""
        self.check(i < len(self._bottoms), f"needs at least {i + 1} bottom blob(s), has {len(self._bottoms)}")
        shape = self._bottoms[i]
        if isinstance(shape, Unknown):
            raise NeedsUnknown(self.bottom_names[i], shape)
        return shape

    def known_bottom(self, i: int) -> Shape | None:
        """The shape of bottom ``i``, or ``None`` when nobody can know it (for the checks a setup makes on a
        bottom that shapes neither blobs nor tops, e.g. labels)."""
        self.check(i < len(self._bottoms), f"needs at least {i + 1} bottom blob(s), has {len(self._bottoms)}")
        shape = self._bottoms[i]
        return None if isinstance(shape, Unknown) else shape

    # -- Blob helpers, as Caffe's Blob computes them ----------------------------------------------------
    def axis(self, axis: int, shape: Shape) -> int:
        """``Blob::CanonicalAxisIndex``."""
        n = len(shape)
        self.check(-n <= axis < n, f"axis {axis} out of range for a {n}-axis blob {shape}")
        return axis + n if axis < 0 else axis

    def legacy(self, shape: Shape, index: int) -> int:
        """``Blob::LegacyShape`` (num/channels/height/width accessors: at most 4 axes, missing ones are 1)."""
        self.check(len(shape) <= 4, f"needs a blob with at most 4 axes (legacy accessors), got {shape}")
        if index >= len(shape) or index < -len(shape):
            return 1
        return shape[index]

    def nchw(self, shape: Shape) -> Shape:
        return tuple(self.legacy(shape, i) for i in range(4))

    def shape(self, dims: Iterable[int]) -> Shape:
        """``Blob::Reshape`` checks: at most 32 axes, dims >= 0, count <= INT_MAX."""
        dims = tuple(int(d) for d in dims)
        problem = reshape_problem(dims)
        self.check(problem is None, str(problem))
        return dims

    # -- learnable blobs ----------------------------------------------------------------------------------
    def add_blob(self, dims: Iterable[int], filler: FillerParameter) -> None:
        """Declare the next learnable blob: its shape and the filler Caffe runs on it.

        A blob with no elements is an error, as in Caffe (its fillers ``CHECK(count)``)."""
        self.blobs.append((self.learnable_shape(dims), copy_filler(filler)))

    def learnable_shape(self, dims: Iterable[int]) -> Shape:
        shape = self.shape(dims)
        self.check(count(shape) > 0, f"learnable blob {len(self.blobs)} would have shape {shape}, with no "
                                     "elements (Caffe's fillers CHECK that a blob has some)")
        return shape

    def add_written_blob(self, dims: Iterable[int], values: Callable[[], np.ndarray]) -> None:
        """A blob whose initial values the setup writes itself: no filler runs and nothing is drawn.

        ``values()`` makes them (shaped ``dims``); it is only called when the net does not give the blob's
        values (then Caffe skips the initialization).  A layer's blobs are all written or all filled.
        """
        self.blobs.append((self.learnable_shape(dims), None))
        self.written.append(values)


def reshape_problem(dims: Shape) -> str | None:
    """What Caffe's ``Blob::Reshape`` would refuse in ``dims`` (more than 32 axes, a negative dimension, more
    than INT_MAX elements, checked in integer arithmetic), or ``None``."""
    if len(dims) > MAX_BLOB_AXES:
        return f"a blob may have at most {MAX_BLOB_AXES} axes, got {len(dims)}: {dims}"
    total = 1
    for d in dims:
        if d < 0:
            return f"computed a negative blob dimension: {dims}"
        if total != 0 and d > INT_MAX // total:
            return f"blob {dims} has more than INT_MAX elements"
        total *= d
    return None


def count(shape: Sequence[int], start: int = 0, end: int | None = None) -> int:
    """``Blob::count(start, end)``: the product of ``shape[start:end]``, with Caffe's checks
    (0 <= start <= end <= number of axes) -- a reversed range is an error, not an empty product."""
    end = len(shape) if end is None else end
    if not 0 <= start <= end <= len(shape):
        raise ShapeError(f"Blob::count({start}, {end}) of a {len(shape)}-axis blob {tuple(shape)}: Caffe requires "
                         f"0 <= start <= end <= {len(shape)}")
    return math.prod(shape[start:end])


def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def copy_filler(filler: FillerParameter) -> FillerParameter:
    out = FillerParameter()
    out.CopyFrom(filler)
    return out


def constant_filler(value: float) -> FillerParameter:
    return FillerParameter(type="constant", value=value)


Rule = Callable[[LayerContext], "list[Shape | Unknown] | None"]

#: Layer type to its rule.
RULES: dict[str, Rule] = {}
#: Layer types that create learnable blobs: an unknown bottom shape there is an error.
LEARNABLE: set[str] = set()


def rule(*types: str, learnable: bool = False) -> Callable[[Rule], Rule]:
    """Register a built-in rule for ``types`` (a decorator)."""
    def register(fn: Rule) -> Rule:
        for name in types:
            register_layer(name, fn, learnable=learnable)
        return fn

    return register


def register_layer(
    type_name: str,
    rule: Rule | None = None,
    *,
    like: str | None = None,
    replace: bool = False,
    learnable: bool | None = None,
) -> Any:
    """Teach shape inference a layer type.

    Parameters
    ----------
    type_name : str
        The layer type as written in ``type:`` (current format).
    rule : callable, optional
        ``rule(layer)`` with ``layer`` a :class:`LayerContext`: declares the learnable blobs
        (``layer.add_blob(shape, filler)``) and gives the top shapes, either returned as a list or set with
        ``layer.set_top(i, shape)`` (then it returns ``None``).  Without ``rule`` and ``like``,
        ``register_layer`` is a decorator.
    like : str, optional
        A registered type whose rule this type shares (a fork's rename of a known layer:
        ``register_layer("ReLU6", like="ReLU")``).
    replace : bool
        Replace an existing registration of ``type_name``; otherwise registering a type twice is an error.
    learnable : bool, optional
        Whether the type has learnable blobs (then a bottom shape that cannot be known is an error, not an
        unknown top).  Default: the ``like`` type's, or True for a new rule.

    Returns
    -------
    The rule (so it can be used as a decorator), or the decorator when neither ``rule`` nor ``like`` is given.

    Raises
    ------
    ValueError
        ``type_name`` is registered already (and ``replace`` is false), ``like`` is not registered, or both
        ``rule`` and ``like`` are given.
    TypeError
        ``type_name`` is not a non-empty string or ``rule`` is not callable.

    Examples
    --------
    >>> import fillers
    >>> fillers.register_layer("ReLU6", like="ReLU")                 # doctest: +SKIP
    """
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"type_name must be a non-empty str, got {type_name!r}")
    if rule is not None and like is not None:
        raise ValueError("give either rule or like, not both")
    if rule is None and like is None:
        return lambda fn: register_layer(type_name, fn, replace=replace, learnable=learnable)
    if like is not None:
        if like not in RULES:
            raise ValueError(f"like={like!r} is not a registered layer type")
        rule = RULES[like]
        learnable = like in LEARNABLE if learnable is None else learnable
    if not callable(rule):
        raise TypeError(f"rule must be callable, got {type(rule).__name__}")
    if type_name in RULES and not replace:
        raise ValueError(f"layer type {type_name!r} is registered already (pass replace=True to replace it)")
    RULES[type_name] = rule
    LEARNABLE.discard(type_name)
    if learnable is None or learnable:
        LEARNABLE.add(type_name)
    return rule


def unknown_tops(layer: LayerContext, why: str) -> list[Shape | Unknown]:
    return [Unknown(f"layer {layer.param.name!r} ({layer.param.type}): {why}")] * layer.num_tops


def guarded(layer: LayerContext, make: Callable[[], Shape]) -> Shape | Unknown:
    try:
        return make()
    except ShapeError as err:
        return Unknown(str(err))


def fork_field(message: Any, name: str, default: Any = None) -> Any:
    """A field that only fork schemas have (``default`` when this schema lacks it or it is unset)."""
    if name in message.DESCRIPTOR.fields_by_name and message.HasField(name):
        return getattr(message, name)
    return default
