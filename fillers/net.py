"""Fill every learnable blob of a net: :func:`fill_net`.

Two streams:

- ``rng="philox"`` (default): blob ``i`` of layer ``L`` is filled from the counter-based stream with
  ``stream = philox_stream(L, i)``, the first 8 bytes (little-endian) of ``sha256(f"{L}\\0{i}")``.  Its values
  depend only on ``seed``, the layer name, the blob index, its shape and filler: adding, removing or
  reordering other layers never changes them, and any thread count gives the same bytes.
- ``rng="caffe"``: one :class:`~fillers.CaffeRNG` consumed in the order of Caffe's ``Net::Init``: layers in
  prototxt order after filtering, weight before bias, the seeds data layers draw in setup, every filler run of
  an unrolled recurrent layer, and a layer sharing a param by name running its own filler before the owner's
  blob replaces it.  The result equals the weights of ``caffe::Net<Dtype>`` built after
  ``Caffe::set_random_seed(seed)`` on the CPU.

A blob shared by ``param { name }`` is the owner's array itself in every layer that shares it.

Fine-tuning: ``weights`` copies the blobs of a pretrained model found by layer name with equal shapes (as
Caffe's ``CopyTrainedLayersFrom`` after the setup), ``overrides`` replaces fillers of layers or blobs; the
result, a :class:`FilledNet`, reports what was copied and filled (:class:`FillReport`) and carries the seed
used and the metadata files record.  :func:`fill_solver` fills the train net of a Caffe solver as
``caffe train`` would start it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import Message

from fillers._caffe import CaffeRNG
from fillers._fill import element_dtype, fill
from fillers._params import FillerLike, as_filler_parameter
from fillers.caffe_pb2 import TRAIN, FillerParameter, NetParameter, NetState, SolverParameter, as_message
from fillers.caffemodel import ChunkedBlob, read_caffemodel_layers
from fillers.errors import BudgetError, ShapeError
from fillers.io import _format, load
from fillers.naming import numbered_names
from fillers.prototxt import load_net, load_solver, load_solver_net
from fillers.seeds import SeedLike, key_of
from fillers.shapes import FillCycle, LayerBlobs, infer_shapes
from fillers.stream import write_streamed

__all__ = ["apply_overrides", "available_memory", "FilledNet", "FillReport", "fill_net", "fill_solver", "layer_keys", "philox_stream",
           "solver_train_net"]

_RNGS = ("philox", "caffe")


def philox_stream(layer: str, index: int) -> int:
    """The Philox stream of blob ``index`` of layer ``layer``: sha256 of ``"{layer}\\0{index}"`` (UTF-8), first
    8 bytes as a little-endian unsigned integer.

    Examples
    --------
    >>> philox_stream("conv1", 0) == int.from_bytes(hashlib.sha256(b"conv1\\x000").digest()[:8], "little")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{layer}\0{index}".encode()).digest()[:8], "little")


def _computed_in(dt: np.dtype) -> np.dtype:
    """The dtype a blob's values are computed in: float32 for float16 and bfloat16 (their values are the float32
    ones rounded to nearest even, as :func:`fillers.fill` makes them), else the blob's own."""
    return np.dtype(np.float32) if dt.itemsize == 2 else dt


def _runs(layer: LayerBlobs, caffe: bool) -> list[tuple[int | None, tuple[int, ...], Any, int]]:
    """The filler runs of a layer as ``(blob index or None, shape, filler, times)``: Caffe's (every run, shared
    blobs and the discarded timestep cycles of a recurrent layer too) or Philox's (owned blobs only)."""
    if caffe:
        return [run for step in layer.fills for run in (
            [(None, s.shape, s.filler, step.times) for s in step.steps] if isinstance(step, FillCycle)
            else [(step.blob, step.shape, step.filler, 1)])]
    if layer.given:  # values written in the net: nothing to fill
        return []
    return [(i, blob.shape, blob.filler, 1) for i, blob in enumerate(layer.blobs) if blob.share_owner is None]


def available_memory() -> int:
    """The bytes of memory the machine has available now: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else
    ``os.sysconf``'s available physical pages; ``2**63 - 1`` where neither tells."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def _check_budget(layers: list[LayerBlobs], caffe: bool, streamed: bool, itemsize: int,
                  max_bytes: int | None) -> None:
    """Refuse a fill that would allocate more than ``max_bytes`` (default: the available memory), before
    anything is allocated.  In memory: every blob kept, plus the largest array a Caffe run fills and drops (a
    discarded timestep, a sharer's own run).  Streamed to a file: the largest array held at once (a whole
    Caffe-stream blob, or a Philox piece).  A Caffe-stream fill in half precision also holds the float32 draw of
    the largest blob."""
    runs = [(layer, run) for layer in layers for run in _runs(layer, caffe)]
    kept = [math.prod(blob.shape) for layer in layers for blob in layer.blobs if blob.share_owner is None]
    dropped = max((math.prod(shape) for layer, (index, shape, _, _) in runs
                   if index is None or layer.blobs[index].share_owner is not None), default=0)
    largest = max((math.prod(shape) for _, (_, shape, _, _) in runs), default=0)
    rounded = largest * 4 if caffe and itemsize == 2 else 0  # half precision: Caffe's float32 draw, then rounded
    if streamed:
        needed = (largest if caffe else min(largest, PIECE_BYTES // itemsize)) * itemsize + rounded
    else:
        needed = (sum(kept) + dropped) * itemsize + rounded
    budget = available_memory() if max_bytes is None else max_bytes
    if needed > budget:
        what = "the memory available now" if max_bytes is None else "max_bytes"
        raise BudgetError(f"the fill needs {needed:,} bytes ({needed / 2**30:,.2f} GiB) of memory, more than {what} "
                          f"({budget:,} bytes); raise max_bytes (--max-bytes) if the machine has it, or stream "
                          "the fill to a file (out=, the command line does)", needed=needed, budget=budget)


#: Bytes per piece when a blob is filled piece by piece (streamed to a file, or with progress reports): small
#: enough that two pieces (one filled while the other is written) stay in the CPU's last-level cache.
PIECE_BYTES = 4 << 20


@dataclass(frozen=True)
class _PhiloxBlob:
    """A blob of the counter-based stream, to be filled whole or in pieces (a piece gets the values the whole
    fill puts at its offset).  ``shape`` is the blob's own; ``fill_shape`` the shape its filler sees (the
    owner's, for a blob shared by param name with PERMISSIVE sharing); ``label`` names it in errors."""

    shape: tuple[int, ...]
    fill_shape: tuple[int, ...]
    dtype: np.dtype
    filler: FillerParameter
    seed: int
    stream: int
    threads: int | None
    label: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def fill(self, out: np.ndarray, offset: int) -> None:
        """Fill the flat elements ``offset .. offset + out.size - 1`` into the 1-D ``out``."""
        try:
            fill(out, self.filler, seed=self.seed, stream=self.stream, offset=offset, blob_shape=self.fill_shape,
                 threads=self.threads)
        except ValueError as err:
            raise type(err)(f"{self.label}: {err}") from None

    def chunked(self) -> ChunkedBlob:
        """The blob as pieces of about :data:`PIECE_BYTES` (whole rows for positive_unitball)."""
        piece = max(1, PIECE_BYTES // self.dtype.itemsize)
        if self.filler.type == "positive_unitball" and self.fill_shape and self.fill_shape[0]:
            row = max(1, math.prod(self.fill_shape) // self.fill_shape[0])
            piece = max(1, piece // row) * row
        return ChunkedBlob(self.shape, self.dtype, self.fill, piece)

    def array(self, report: Callable[[int], None] | None = None) -> np.ndarray:
        """The whole blob, filled (in pieces, each reported, when ``report`` is given).  The most common filler,
        constant +0.0 (every bias, BatchNorm's statistics, a filler left out), draws nothing: it gets
        ``np.zeros``, whose pages the OS supplies already zeroed, instead of a write pass over fresh memory."""
        if _is_zero(self.filler):
            zeros = np.zeros(self.shape, self.dtype)
            if report is not None:
                report(zeros.nbytes)
            return zeros
        flat = np.empty(math.prod(self.fill_shape), self.dtype)
        if report is None:
            self.fill(flat, 0)
        else:
            for offset, count in self.chunked().pieces():
                self.fill(flat[offset:offset + count], offset)
                report(count * self.dtype.itemsize)
        return flat.reshape(self.shape)


def _is_zero(filler: FillerParameter) -> bool:
    """Constant +0.0 (infer_shapes has validated every filler already)."""
    return filler.type == "constant" and filler.value == 0 and math.copysign(1.0, filler.value) > 0


Blob = Union[np.ndarray, _PhiloxBlob]


def _plan(layers: list[LayerBlobs], keys: list[str], *, seed: int, caffe_rng: CaffeRNG | None, dt: np.dtype,
          threads: int | None, copies: Mapping[tuple[str, int], np.ndarray]) -> Iterator[tuple[str, list[Blob]]]:
    """Every layer's blobs, in net order: the Caffe stream's filled as the iteration reaches them (its draws are
    sequential), Philox's as :class:`_PhiloxBlob`, to fill whole or in pieces; then the ``copies`` from
    pretrained weights replace theirs (after Caffe's draws, as ``CopyTrainedLayersFrom`` runs after the setup).
    A blob shared by param name is its owner's object (reshaped for PERMISSIVE sharing)."""
    first_key = {layer.name: key for key, layer in reversed(list(zip(keys, layers)))}
    owners = {blob.share_owner for layer in layers for blob in layer.blobs if blob.share_owner is not None}
    kept: dict[tuple[str, int], Blob] = {}  # shared owners' blobs, for their sharers
    for key, layer in zip(keys, layers):
        blobs: list[Any] = [None] * len(layer.blobs)
        if caffe_rng is not None:
            caffe_rng.raw(layer.raw_draws_before)
        for index, shape, filler, times in _runs(layer, caffe_rng is not None):
            label = f"layer {layer.name!r} ({layer.type}), blob {index}"
            if caffe_rng is None:
                blobs[index] = _PhiloxBlob(shape, shape, dt, filler, seed, philox_stream(key, index), threads, label)
                continue
            for _ in range(times):  # a discarded timestep cycle runs its fillers again and again
                try:
                    array = np.zeros(shape, dt) if _is_zero(filler) else \
                        fill(np.empty(shape, _computed_in(dt)), filler, rng=caffe_rng).astype(dt, copy=False)
                except ValueError as err:
                    raise type(err)(f"{label}: {err}") from None
            if index is not None:
                blobs[index] = array
        if layer.given:  # values written in the net (or by the setup) replace whatever the fills made
            blobs = [np.array(values, _computed_in(dt)).astype(dt, copy=False) for values in layer.given_values()]
        for i in range(len(blobs)):
            if (key, i) in copies:
                blobs[i] = copies[key, i]
        for i, blob in enumerate(layer.blobs):
            if blob.share_owner is not None:
                owner, index = blob.share_owner
                shared = kept[first_key[owner], index]
                if shared.shape != blob.shape:  # PERMISSIVE sharing: the sharer's shape over the owner's data
                    shared = shared.reshape(blob.shape) if isinstance(shared, np.ndarray) else \
                        replace(shared, shape=blob.shape)
                blobs[i] = shared
            elif (layer.name, i) in owners and key == first_key[layer.name]:
                kept[key, i] = blobs[i]
        yield key, blobs


@dataclass
class FillReport:
    """What :func:`fill_net` did with each blob.  Blobs are named ``"<layer>/<index>"`` (the layer by its key in
    the result).

    Attributes
    ----------
    copied : list of str
        Blobs copied from ``weights``.
    filled : list of str
        Blobs filled (a blob shared by ``param { name }`` is listed only under its owner).
    mismatched : list of tuple
        ``(blob, weights_shape, net_shape)`` for blobs found in ``weights`` with another shape (or a layer with
        another number of blobs: ``weights_shape`` is then ``None``) and filled because ``allow_mismatch``.
    unused : list of str
        Layers of ``weights`` the net does not have (Caffe ignores them too).
    overridden : list of str
        Blobs whose filler ``overrides`` replaced.
    """

    copied: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...] | None, tuple[int, ...]]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many blobs were copied, filled, mismatched; how many weights layers went unused."""
        return (f"{len(self.copied)} blobs copied, {len(self.filled)} filled ({len(self.mismatched)} of them for a "
                f"shape mismatch, {len(self.overridden)} with an override); {len(self.unused)} layers of the "
                "weights unused")


class FilledNet(dict):
    """The result of :func:`fill_net`: a dict of layer name to its blobs (their shapes, when ``fill_net``
    wrote them to ``out``), with how it was made.

    Attributes
    ----------
    net : NetParameter
        The net that was filled.
    seed : int
        The seed used (drawn from fresh entropy when ``fill_net`` got none): passing it back reproduces the
        values.
    rng : str
        ``"philox"`` or ``"caffe"``.
    dtype : numpy.dtype
    report : FillReport
    phase : {"TEST", "TRAIN"} or None
        The phase the net was built for (``None``: its own ``state``); :func:`fillers.save` writes a
        ``.caffemodel``'s net for it.
    metadata : dict of str to str
        What :func:`fillers.save` records in ``.safetensors``, ``.h5`` and ``.npz`` files: ``fillers.seed``,
        ``fillers.rng``, ``fillers.dtype``, ``fillers.version``, ``fillers.phase`` and, where given,
        ``fillers.inputs``, ``fillers.weights``, ``fillers.overrides`` (JSON), ``fillers.solver``.
    """

    def __init__(self, blobs: Mapping[str, list[np.ndarray]] | Mapping[str, list[tuple[int, ...]]], *, net: NetParameter, seed: int, rng: str,
                 dtype: np.dtype, report: FillReport, metadata: dict[str, str],
                 phase: str | int | None = "TEST") -> None:
        super().__init__(blobs)
        self.net = net
        self.phase = phase
        self.seed = seed
        self.rng = rng
        self.dtype = dtype
        self.report = report
        self.metadata = metadata

    def __reduce__(self):
        return _rebuild_filled_net, (dict(self), self.net.SerializeToString(), self.seed, self.rng,
                                     self.dtype, self.report, self.metadata, self.phase)


def _rebuild_filled_net(blobs, net, seed, rng, dtype, report, metadata, phase) -> FilledNet:
    return FilledNet(blobs, net=NetParameter.FromString(net), seed=seed, rng=rng, dtype=dtype, report=report,
                     metadata=metadata, phase=phase)


def fill_net(
    net: NetParameter | str | os.PathLike,
    *,
    seed: SeedLike = None,
    rng: str = "philox",
    dtype: Any = np.float32,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int | None = "TEST",
    strict: bool = False,
    threads: int | None = None,
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    weights: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, Sequence[np.ndarray]] | None = None,
    allow_mismatch: bool = False,
    overrides: Mapping[str, FillerLike] | None = None,
    max_bytes: int | None = None,
) -> FilledNet:
    """Fill every learnable blob of a net with the filler Caffe would use.

    Parameters
    ----------
    net : NetParameter or path
        The net (any format :func:`fillers.load_net` reads, or a loaded message, also pycaffe's).
    seed : int, numpy.random.SeedSequence or None
        Philox: the 64-bit key.  Caffe: ``Caffe::set_random_seed``'s unsigned 32-bit seed.  A SeedSequence
        stands for the integer :func:`fillers.seeds.key_of` derives from it (64 or 32 bits); None (the
        default) draws one from fresh entropy.  The result's ``seed`` attribute is the integer used.
    rng : {"philox", "caffe"}
        The stream (see the module notes).
    dtype : float32, float64, float16 or bfloat16
        Caffe's ``Dtype``; or half precision (a name, ``numpy.float16``, ``ml_dtypes.bfloat16``; bfloat16
        needs ml_dtypes): every value is the float32 fill's rounded to nearest even — Philox's in the kernels,
        Caffe's stream drawn in float32 as ``Net<float>`` draws it, then rounded; values written in the net
        go through float32 too; copied ``weights`` are rounded from their own dtype.  Half precision is not
        for ``.caffemodel`` (a ``BlobProto`` holds float/double), nor bfloat16 for ``.h5``.
    inputs, phase, strict
        As for :func:`fillers.infer_shapes` (``phase=None`` takes the whole state from the net's ``state``).
    threads : int, optional
        Worker threads for ``rng="philox"`` (never changes the values); must be ``None`` for Caffe's
        sequential stream.
    out : str or os.PathLike, optional
        Stream the blobs to this file instead of returning them (any format :func:`fillers.save` writes,
        written atomically): each Philox blob is filled in pieces of :data:`PIECE_BYTES` straight into the
        output, so memory stays bounded whatever the net's size; Caffe-stream blobs are filled whole, one at
        a time (the stream is sequential).  The file holds exactly what ``save(fill_net(...), out, net=...)``
        writes.
    progress : callable, optional
        Called as ``progress(done, total)`` with the bytes filled (and, with ``out``, written) so far and the
        total, after each piece.  The library draws nothing; the ``fillers`` command shows a bar.
    weights : path, sequence of paths, or mapping of str to sequence of numpy.ndarray, optional
        Pretrained parameters (files :func:`fillers.load` reads, a later file's layers replacing an earlier
        one's, or a mapping as :func:`fillers.load` returns): every blob of a layer of the same name and shape
        is copied instead of filled, as Caffe's ``CopyTrainedLayersFrom`` does after the net is set up (with
        ``rng="caffe"`` every filler still draws, so the other blobs equal Caffe's).  A legacy 4-D blob
        matches a blob of up to 4 axes padded with leading 1s, as in Caffe.  A layer sharing a blob by param
        name copies into its owner's blob, the later in the weights winning, as in Caffe.
    allow_mismatch : bool
        Fill blobs whose shape (or layer whose number of blobs) differs in ``weights`` instead of raising.
    overrides : mapping of str to filler, optional
        Replacement fillers: ``"fc8"`` for every blob of layer ``fc8``, ``"fc8/1"`` for its blob 1 (a blob key
        wins over its layer's).  Values are anything :func:`fillers.fill` takes as a filler.
    max_bytes : int, optional
        The most memory the fill may allocate (default: the memory the machine has available now,
        :func:`available_memory`): every blob in memory, or with ``out`` the largest array held at once.  A net
        that needs more is refused with :class:`~fillers.BudgetError` before anything is allocated.

    Returns
    -------
    FilledNet
        A dict of layer name to its blobs, in net order; a shared blob is the owner's array object.  Caffe
        allows two layers one name: the later ones are keyed ``name#2``, ``name#3``, ... (and Philox keys their
        streams by that key).  With ``out``: layer name to the shapes of the blobs written.  Its ``seed``,
        ``report`` (:class:`FillReport`: copied, filled, mismatched, unused, overridden) and ``metadata``
        (recorded in ``out`` as :func:`fillers.save` records it) tell how it was made.

    Raises
    ------
    ShapeError
        From :func:`fillers.infer_shapes`; or a blob of ``weights`` whose shape differs from the net's (without
        ``allow_mismatch``; the message names the layer and both shapes).
    ValueError
        Unknown ``rng``, a seed out of range, ``threads`` with ``rng="caffe"``, a filler Caffe would reject
        (the layer is named), or an override naming no layer or blob of the net (the layers are listed).
    BudgetError
        The fill would need more memory than ``max_bytes``.
    FileFormatError
        ``out`` cannot hold the net (a ``.caffemodel`` over 2 GiB, a layer name HDF5 cannot hold, a dtype the
        format cannot hold), before anything is filled.
    TypeError
        ``dtype`` other than float32, float64, float16 or bfloat16, or arguments of the wrong type.
    ImportError
        ``dtype="bfloat16"`` without ml_dtypes.

    Examples
    --------
    >>> params = fill_net("examples/lenet.prototxt", seed=1701, rng="caffe")   # doctest: +SKIP
    >>> params["conv1"][0].shape                                                 # doctest: +SKIP
    (20, 1, 5, 5)
    >>> fill_net("vgg19.prototxt", out="vgg19.safetensors")                     # doctest: +SKIP
    >>> tuned = fill_net("new.prototxt", weights="pretrained.caffemodel")       # doctest: +SKIP
    >>> tuned.report.filled                                                      # doctest: +SKIP
    ['fc8_new/0', 'fc8_new/1']
    """
    if rng not in _RNGS:
        raise ValueError(f"rng must be one of {', '.join(_RNGS)}, got {rng!r}")
    dt = element_dtype(dtype)
    if rng == "caffe" and threads is not None:
        raise ValueError("threads does not apply with rng='caffe': Caffe's stream is sequential")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool)):
        raise TypeError(f"max_bytes must be an int or None, not {type(max_bytes).__name__}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    seed = key_of(seed, bits=32 if rng == "caffe" else 64)
    caffe_rng = CaffeRNG(seed) if rng == "caffe" else None
    net_message = as_message(net, NetParameter) if isinstance(net, Message) else load_net(net)
    report = FillReport()
    layers = infer_shapes(net_message, inputs=inputs, phase=phase, strict=strict)
    keys = layer_keys(layers)
    if overrides:
        layers, report.overridden = apply_overrides(layers, overrides)
    _check_budget(layers, caffe_rng is not None, out is not None, dt.itemsize, max_bytes)
    copies = _plan_copies(_load_weights(weights), keys, layers, dt, allow_mismatch, report)
    report.filled = [f"{key}/{i}" for key, layer in zip(keys, layers) for i, blob in enumerate(layer.blobs)
                     if blob.share_owner is None and (key, i) not in copies]
    plan = _plan(layers, keys, seed=seed, caffe_rng=caffe_rng, dt=dt, threads=threads, copies=copies)
    shapes = {key: [blob.shape for blob in layer.blobs] for key, layer in zip(keys, layers)}
    metadata = _metadata(seed, rng, dt, net_message if phase is None else phase, inputs, weights, overrides)
    how = dict(net=net_message, seed=seed, rng=rng, dtype=dt, report=report, metadata=metadata, phase=phase)
    if out is not None:
        pieces = ((key, [blob.chunked() if isinstance(blob, _PhiloxBlob) else blob for blob in blobs])
                  for key, blobs in plan)
        write_streamed(out, shapes, dt, pieces, net=net_message, phase=phase, progress=progress, metadata=metadata)
        return FilledNet(shapes, **how)
    total = sum(math.prod(shape) for blob_shapes in shapes.values() for shape in blob_shapes) * dt.itemsize
    return FilledNet(_fill_in_memory(plan, total, progress), **how)


def solver_train_net(solver: str | bytes | os.PathLike) -> tuple[NetParameter, SolverParameter]:
    """The train net a Caffe solver builds, and the solver.

    The net is the one the solver names (:func:`fillers.prototxt.load_solver_net`), its ``state`` set as
    ``Solver::InitTrainNet`` sets it: phase TRAIN, then the net's own ``state`` merged in, then the solver's
    ``train_state`` (protobuf ``MergeFrom``: fields set replace, stages add up).  Fill it with ``phase=None``.

    Parameters
    ----------
    solver : path, text or bytes
        The solver, as for :func:`fillers.load_solver`.

    Returns
    -------
    (NetParameter, SolverParameter)
    """
    solver_param = load_solver(solver)
    net = NetParameter()
    net.CopyFrom(load_solver_net(solver))
    state = NetState(phase=TRAIN)
    state.MergeFrom(net.state)
    state.MergeFrom(solver_param.train_state)
    net.state.CopyFrom(state)
    return net, solver_param


def fill_solver(
    solver: str | bytes | os.PathLike,
    *,
    seed: SeedLike = None,
    rng: str = "caffe",
    weights: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, Sequence[np.ndarray]] | None = None,
    **options: Any,
) -> FilledNet:
    """The weights ``caffe train --solver=SOLVER`` starts from.

    Parameters
    ----------
    solver : path, text or bytes
        A Caffe solver; its train net is :func:`solver_train_net`'s (phase TRAIN with ``train_state``).
    seed : int, numpy.random.SeedSequence or None
        Default: the solver's ``random_seed`` (Caffe seeds with it modulo 2**32), or, where it has none (-1),
        a fresh seed (the result's ``seed``).
    rng : {"caffe", "philox"}
        Default ``"caffe"``: Caffe's own draws, as the solver would make them.
    weights : path, sequence of paths or mapping, optional
        Default: the solver's ``weights`` fields (comma-separated lists, applied in order as
        ``LoadNetWeights`` does); given, it replaces them, as ``caffe train --weights`` does.
    **options
        Passed to :func:`fill_net` (``dtype``, ``inputs``, ``threads``, ``progress``, ``allow_mismatch``,
        ``overrides``).

    Returns
    -------
    FilledNet
    """
    net, solver_param = solver_train_net(solver)
    if seed is None and solver_param.random_seed >= 0:
        seed = solver_param.random_seed % 2**32 if rng == "caffe" else solver_param.random_seed
    if weights is None:
        weights = [path.strip() for entry in solver_param.weights for path in entry.split(",")] or None
    filled = fill_net(net, seed=seed, rng=rng, weights=weights, phase=None, **options)
    if isinstance(solver, (str, os.PathLike)) and os.path.exists(solver):
        filled.metadata["fillers.solver"] = os.fspath(solver)
    return filled


def _metadata(seed: int, rng: str, dt: np.dtype, phase: str | int | NetParameter, inputs: Any, weights: Any,
              overrides: Any) -> dict[str, str]:
    """What a file needs to say to be reproduced; ``phase`` is the net itself when its state was used."""
    from fillers import __version__

    if isinstance(phase, NetParameter):
        phase = text_format.MessageToString(phase.state, as_one_line=True)
    meta = {"fillers.seed": str(seed), "fillers.rng": rng, "fillers.dtype": dt.name,
            "fillers.version": __version__, "fillers.phase": str(phase)}
    if inputs:
        meta["fillers.inputs"] = json.dumps({name: list(shape) for name, shape in inputs.items()})
    if isinstance(weights, (str, os.PathLike)):
        meta["fillers.weights"] = os.fspath(weights)
    elif isinstance(weights, Sequence):
        meta["fillers.weights"] = ",".join(os.fspath(path) for path in weights)
    elif weights is not None:
        meta["fillers.weights"] = "(a mapping)"
    if overrides:
        meta["fillers.overrides"] = json.dumps({name: _filler_text(filler) for name, filler in overrides.items()})
    return meta


def _filler_text(filler: FillerLike) -> str:
    return text_format.MessageToString(as_filler_parameter(filler), as_one_line=True)


def apply_overrides(layers: list[LayerBlobs], overrides: Mapping[str, FillerLike],
                    ) -> tuple[list[LayerBlobs], list[str]]:
    """Replace fillers of :func:`fillers.infer_shapes`' layers, as ``fill_net(overrides=...)`` does.

    Parameters
    ----------
    layers : list of LayerBlobs
    overrides : mapping of str to filler
        ``"layer"`` for every blob of a layer, ``"layer/i"`` for its blob ``i`` (a blob key wins over its
        layer's); a repeated layer name is keyed ``name#2`` ... as in ``fill_net``'s result.

    Returns
    -------
    (list of LayerBlobs, list of str)
        The layers with the new fillers, and the blobs overridden (``"layer/i"``).

    Raises
    ------
    ValueError
        A key naming no layer with learnable blobs (the layers are listed) or no blob of it, or a blob without
        a filler of its own (shared from another layer, or set by the layer).
    FillerError
        A filler that does not parse.
    """
    keys = layer_keys(layers)
    by_key = dict(zip(keys, layers))
    whole_layers: list[tuple[list[tuple[str, int]], FillerParameter]] = []
    single_blobs: list[tuple[list[tuple[str, int]], FillerParameter]] = []
    for name, filler in overrides.items():
        if not isinstance(name, str):
            raise TypeError(f"overrides keys must be str ('layer' or 'layer/index'), not {type(name).__name__}")
        if name in by_key:
            whole_layers.append(([(name, i) for i in range(len(by_key[name].blobs))], as_filler_parameter(filler)))
            continue
        layer, _, index = name.rpartition("/")
        if layer not in by_key or not index.isdigit():
            raise ValueError(f"overrides: {name!r} names no layer with learnable blobs (nor '<layer>/<index>'); "
                             f"the net's are {', '.join(keys)}")
        if int(index) >= len(by_key[layer].blobs):
            raise ValueError(f"overrides: layer {layer!r} has {len(by_key[layer].blobs)} blobs, no blob {index}")
        single_blobs.append(([(layer, int(index))], as_filler_parameter(filler)))
    chosen: dict[str, dict[int, FillerParameter]] = {}
    for targets, filler in whole_layers + single_blobs:
        for key, i in targets:
            blob = by_key[key].blobs[i]
            if by_key[key].given or blob.share_owner is not None:
                why = "the layer sets its values itself" if by_key[key].given else \
                    f"it is layer {blob.share_owner[0]!r}'s blob {blob.share_owner[1]}: override that one"
                raise ValueError(f"overrides: layer {key!r}, blob {i} has no filler of its own ({why})")
            chosen.setdefault(key, {})[i] = filler
    out = []
    overridden = []
    for key, layer in zip(keys, layers):
        mine = chosen.get(key, {})
        if mine:
            overridden += [f"{key}/{i}" for i in sorted(mine)]
            layer = replace(
                layer,
                blobs=[replace(b, filler=mine.get(i, b.filler)) for i, b in enumerate(layer.blobs)],
                fills=tuple(step if isinstance(step, FillCycle) else replace(step, filler=mine.get(step.blob, step.filler))
                            for step in layer.fills),
            )
        out.append(layer)
    return out, overridden


#: How a layer of the weights finds its layer in the net.  By fill_net's key (``conv``, ``conv#2``) for a
#: mapping and the formats fillers keys that way (.npz, .safetensors, .npy folders); by name as Caffe finds
#: it for Caffe's own formats: ``CopyTrainedLayersFrom`` (a .caffemodel) searches the net's layers in order and
#: takes the first of that name, ``CopyTrainedLayersFromHDF5`` looks the name up in its index, which holds the
#: last.  The two differ only for a net that repeats a layer name.
_BY_KEY, _FIRST_OF_NAME, _LAST_OF_NAME = "key", "first", "last"

Weights = list[tuple[str, list[np.ndarray], str]]


def _load_weights(weights: Any) -> Weights:
    """``(name, blobs, how it finds its layer)`` for every layer of the weights, in the order Caffe copies them
    (a later file's layer replaces an earlier one's, as successive ``CopyTrainedLayersFrom`` calls do), from a
    path, a sequence of paths or a mapping."""
    if weights is None:
        return []
    if isinstance(weights, (str, os.PathLike)):
        return _weights_file(weights)
    if isinstance(weights, Mapping):
        return [(name, [np.asarray(blob) for blob in blobs], _BY_KEY) for name, blobs in weights.items()]
    if isinstance(weights, Sequence) and all(isinstance(path, (str, os.PathLike)) for path in weights):
        return [layer for path in weights for layer in _weights_file(path)]
    raise TypeError(f"weights must be a path, a sequence of paths or a mapping of layer name to blobs, not "
                    f"{type(weights).__name__}")


def _weights_file(path: str | os.PathLike) -> Weights:
    fmt = _format(path)
    if fmt == ".caffemodel":
        return [(name, blobs, _FIRST_OF_NAME) for name, blobs in read_caffemodel_layers(path)]
    how = _LAST_OF_NAME if fmt == ".h5" else _BY_KEY
    return [(name, blobs, how) for name, blobs in load(path).items()]


def _matches(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Caffe's ``Blob::ShapeEquals``: equal shapes, or a legacy 4-D blob against up to 4 axes padded with 1s."""
    if source == target:
        return True
    return len(source) == 4 and len(target) <= 4 and (1,) * (4 - len(target)) + target == source


def _plan_copies(source: Weights, keys: list[str], layers: list[LayerBlobs], dt: np.dtype,
                 allow_mismatch: bool, report: FillReport) -> dict[tuple[str, int], np.ndarray]:
    """The blobs to copy from ``source`` as ``dt`` arrays, keyed by the blob that owns the memory (a layer that
    shares a blob by param name copies into its owner's, as Caffe's shared blobs do; the later in ``source``
    wins)."""
    by_key = dict(zip(keys, layers))
    first_key = {layer.name: key for key, layer in reversed(list(zip(keys, layers)))}
    key_of_name = {_FIRST_OF_NAME: first_key, _LAST_OF_NAME: {layer.name: key for key, layer in zip(keys, layers)}}
    copies: dict[tuple[str, int], np.ndarray] = {}
    for source_name, blobs, how in source:
        name = source_name if how == _BY_KEY else key_of_name[how].get(source_name)
        layer = by_key.get(name)
        if layer is None:
            report.unused.append(source_name)
            continue
        if len(blobs) != len(layer.blobs):
            if not allow_mismatch:
                raise ShapeError(f"layer {name!r}: the weights have {len(blobs)} blobs, the net "
                                 f"{len(layer.blobs)} (allow_mismatch=True / --allow-mismatch fills the layer)",
                                 layer=name)
            report.mismatched += [(f"{name}/{i}", None, b.shape) for i, b in enumerate(layer.blobs)]
            continue
        for i, (values, blob) in enumerate(zip(blobs, layer.blobs)):
            if not _matches(tuple(values.shape), blob.shape):
                if not allow_mismatch:
                    raise ShapeError(f"layer {name!r}, blob {i}: the weights have shape {tuple(values.shape)}, the "
                                     f"net {blob.shape} (allow_mismatch=True / --allow-mismatch fills it)",
                                     layer=name)
                report.mismatched.append((f"{name}/{i}", tuple(values.shape), blob.shape))
                continue
            owner = (name, i) if blob.share_owner is None else \
                (first_key[blob.share_owner[0]], blob.share_owner[1])
            owner_shape = by_key[owner[0]].blobs[owner[1]].shape
            copies[owner] = np.array(values, dt).reshape(owner_shape)
            if f"{name}/{i}" not in report.copied:  # copied again from a layer of the same name: listed once
                report.copied.append(f"{name}/{i}")
    return copies


def _fill_in_memory(plan: Iterator[tuple[str, list[Blob]]], total: int,
                    progress: Callable[[int, int], None] | None) -> dict[str, list[np.ndarray]]:
    """The blobs as arrays, each Philox blob filled whole (in reported pieces with ``progress``); a blob shared
    by several layers is filled once and is the same array object (a view for PERMISSIVE sharing)."""
    done = 0

    def report(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        progress(done, total)

    made: dict[int, np.ndarray] = {}  # by Philox stream
    out: dict[str, list[np.ndarray]] = {}
    for key, blobs in plan:
        arrays = []
        for blob in blobs:
            if isinstance(blob, _PhiloxBlob):
                if blob.stream in made:
                    array = made[blob.stream]
                    array = array if array.shape == blob.shape else array.reshape(blob.shape)
                    if progress is not None:
                        report(array.nbytes)
                else:
                    array = made[blob.stream] = blob.array(report if progress is not None else None)
            else:
                array = blob
                if progress is not None:
                    report(array.nbytes)
            arrays.append(array)
        out[key] = arrays
    return out


def layer_keys(layers: list[LayerBlobs]) -> list[str]:
    """Layer names as dict keys: a name that repeats (Caffe allows it) gets ``#2``, ``#3``, ... on its later
    layers (:func:`fillers.naming.numbered_names`)."""
    return numbered_names(layer.name for layer in layers)
