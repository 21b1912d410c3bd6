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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
from google.protobuf import text_format

from fillers._caffe import CaffeRNG
from fillers._fill import fill
from fillers._params import FillerLike, as_filler_parameter
from fillers.caffe_pb2 import TRAIN, FillerParameter, NetParameter, NetState, SolverParameter
from fillers.errors import ShapeError
from fillers.io import load
from fillers.prototxt import load_net, load_solver, load_solver_net
from fillers.seeds import SeedLike, key_of
from fillers.shapes import LayerBlobs, infer_shapes
from fillers.upgrade import net_needs_upgrade, upgrade_net

__all__ = ["apply_overrides", "FilledNet", "FillReport", "fill_net", "fill_solver", "layer_keys", "philox_stream",
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


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr that shows only for fills taking more than a moment."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, delay=0.5, unit="param", unit_scale=True, file=sys.stderr,
                desc="filling", leave=False)


def _runs(layer: LayerBlobs, caffe: bool) -> list[tuple[int | None, tuple[int, ...], Any]]:
    """The filler runs of a layer: Caffe's (every run, shared blobs too) or Philox's (owned blobs only)."""
    if caffe:
        return [(step.blob, step.shape, step.filler) for step in layer.fills]
    if layer.given:  # values written in the net: nothing to fill
        return []
    return [(i, blob.shape, blob.filler) for i, blob in enumerate(layer.blobs) if blob.share_owner is None]


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
    """The result of :func:`fill_net`: a dict of layer name to its blobs, with how it was made.

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
    metadata : dict of str to str
        What :func:`fillers.save` records in ``.safetensors``, ``.h5`` and ``.npz`` files: ``fillers.seed``,
        ``fillers.rng``, ``fillers.dtype``, ``fillers.version``, ``fillers.phase`` and, where given,
        ``fillers.inputs``, ``fillers.weights``, ``fillers.overrides`` (JSON).
    """

    def __init__(self, blobs: dict[str, list[np.ndarray]], *, net: NetParameter, seed: int, rng: str,
                 dtype: np.dtype, report: FillReport, metadata: dict[str, str]) -> None:
        super().__init__(blobs)
        self.net = net
        self.seed = seed
        self.rng = rng
        self.dtype = dtype
        self.report = report
        self.metadata = metadata

    def __reduce__(self):
        return _rebuild_filled_net, (dict(self), self.net.SerializeToString(), self.seed, self.rng,
                                     self.dtype, self.report, self.metadata)


def _rebuild_filled_net(blobs, net, seed, rng, dtype, report, metadata) -> FilledNet:
    return FilledNet(blobs, net=NetParameter.FromString(net), seed=seed, rng=rng, dtype=dtype, report=report,
                     metadata=metadata)


def fill_net(
    net: NetParameter | str | os.PathLike,
    *,
    seed: SeedLike = None,
    rng: str = "philox",
    dtype: Any = np.float32,
    inputs: Mapping[str, Sequence[int]] | None = None,
    phase: str | int | None = "TEST",
    threads: int | None = None,
    progress: bool = False,
    weights: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, Sequence[np.ndarray]] | None = None,
    allow_mismatch: bool = False,
    overrides: Mapping[str, FillerLike] | None = None,
) -> FilledNet:
    """Fill every learnable blob of a net with the filler Caffe would use.

    Parameters
    ----------
    net : NetParameter or path
        The net (any format :func:`fillers.load_net` reads, or a loaded message).
    seed : int, numpy.random.SeedSequence or None
        Philox: the 64-bit key.  Caffe: ``Caffe::set_random_seed``'s unsigned 32-bit seed.  A SeedSequence
        stands for the integer :func:`fillers.seeds.key_of` derives from it (64 or 32 bits); None (the
        default) draws one from fresh entropy.  The result's ``seed`` attribute is the integer used.
    rng : {"philox", "caffe"}
        The stream (see the module notes).
    dtype : float32 or float64
        Caffe's ``Dtype``.
    inputs, phase
        As for :func:`fillers.infer_shapes` (``phase=None`` takes the whole state from the net's ``state``).
    threads : int, optional
        Worker threads for ``rng="philox"`` (never changes the values); must be ``None`` for Caffe's
        sequential stream.
    progress : bool
        Show a progress bar on stderr when the fill takes more than a moment.
    weights : path, sequence of paths, or mapping of str to sequence of numpy.ndarray, optional
        Pretrained parameters (files :func:`fillers.load` reads, a later file's layers replacing an earlier
        one's, or a mapping as :func:`fillers.load` returns): every blob of a layer of
        the same name and shape is copied instead of filled, as Caffe's ``CopyTrainedLayersFrom`` does after
        the net is set up (with ``rng="caffe"`` every filler still draws, so the other blobs equal Caffe's).
        A legacy 4-D blob matches a blob of up to 4 axes padded with leading 1s, as in Caffe.
    allow_mismatch : bool
        Fill blobs whose shape (or layer whose number of blobs) differs in ``weights`` instead of raising.
    overrides : mapping of str to filler, optional
        Replacement fillers: ``"fc8"`` for every blob of layer ``fc8``, ``"fc8/1"`` for its blob 1 (a blob key
        wins over its layer's).  Values are anything :func:`fillers.fill` takes as a filler.

    Returns
    -------
    FilledNet
        A dict of layer name to its blobs, in net order; a shared blob is the owner's array object.  Caffe
        allows two layers one name: the later ones are keyed ``name#2``, ``name#3``, ... (and Philox keys their
        streams by that key).  Its ``seed``, ``report`` (:class:`FillReport`: copied, filled, mismatched,
        unused, overridden) and ``metadata`` tell how it was made.

    Raises
    ------
    ShapeError
        From :func:`fillers.infer_shapes`; or a blob of ``weights`` whose shape differs from the net's (without
        ``allow_mismatch``; the message names the layer and both shapes).
    ValueError
        Unknown ``rng``, a seed out of range, ``threads`` with ``rng="caffe"``, a filler Caffe would reject
        (the layer is named), or an override naming no layer or blob of the net (the layers are listed).
    TypeError
        ``dtype`` other than float32/float64, or arguments of the wrong type.

    Examples
    --------
    >>> params = fill_net("examples/lenet.prototxt", seed=1701, rng="caffe")   # doctest: +SKIP
    >>> params["conv1"][0].shape                                                 # doctest: +SKIP
    (20, 1, 5, 5)
    >>> tuned = fill_net("new.prototxt", weights="pretrained.caffemodel")       # doctest: +SKIP
    >>> tuned.report.filled                                                      # doctest: +SKIP
    ['fc8_new/0', 'fc8_new/1']
    """
    if rng not in _RNGS:
        raise ValueError(f"rng must be one of {', '.join(_RNGS)}, got {rng!r}")
    dt = _check_dtype(dtype)
    if rng == "caffe" and threads is not None:
        raise ValueError("threads does not apply with rng='caffe': Caffe's stream is sequential")
    seed = key_of(seed, bits=32 if rng == "caffe" else 64)
    caffe_rng = CaffeRNG(seed) if rng == "caffe" else None
    net = load_net(net) if isinstance(net, (str, os.PathLike)) else net
    if isinstance(net, NetParameter) and net_needs_upgrade(net):
        net = upgrade_net(net)
    report = FillReport()
    layers = infer_shapes(net, inputs=inputs, phase=phase)
    keys = layer_keys(layers)
    if overrides:
        layers, report.overridden = apply_overrides(layers, overrides)
    source = _load_weights(weights)
    copies = _plan_copies(source, keys, layers, allow_mismatch, report)
    runs = [(key, layer, _runs(layer, caffe_rng is not None)) for key, layer in zip(keys, layers)]
    out: dict[str, list[np.ndarray]] = {}
    with _progress(sum(math.prod(shape) for *_, steps in runs for _, shape, _ in steps), progress) as bar:
        for key, layer, steps in runs:
            if caffe_rng is not None:
                caffe_rng.raw(layer.raw_draws_before)
            arrays: list[Any] = [None] * len(layer.blobs)
            for index, shape, filler in steps:
                if caffe_rng is None and (key, index) in copies:  # overwritten below; Philox need not draw
                    array = np.empty(shape, dt)
                else:
                    where = {"rng": caffe_rng} if caffe_rng is not None else \
                        {"seed": seed, "stream": philox_stream(key, index), "threads": threads}
                    try:
                        array = _new_blob(shape, dt, filler, where)
                    except ValueError as err:
                        raise ValueError(f"layer {layer.name!r} ({layer.type}), blob {index}: {err}") from None
                if index is not None:
                    arrays[index] = array
                bar.update(array.size)
            if layer.given:  # values written in the net (or by the setup) replace whatever the fills made
                arrays = [np.array(values, dt) for values in layer.given_values()]
            out[key] = arrays
            report.filled += [f"{key}/{i}" for i, blob in enumerate(layer.blobs)
                              if blob.share_owner is None and (key, i) not in copies]
    first_key = {layer.name: key for key, layer in reversed(list(zip(keys, layers)))}
    for key, layer in zip(keys, layers):
        for i, blob in enumerate(layer.blobs):
            if blob.share_owner is not None:
                owner, index = blob.share_owner
                shared = out[first_key[owner]][index]
                # PERMISSIVE sharing keeps the sharer's shape over the owner's data (equal counts).
                out[key][i] = shared if shared.shape == blob.shape else shared.reshape(blob.shape)
    for (key, i), values in copies.items():  # in the order of weights; a shared blob writes its owner's memory
        np.copyto(out[key][i], values.reshape(out[key][i].shape), casting="same_kind")
    metadata = _metadata(seed, rng, dt, net if phase is None else phase, inputs, weights, overrides)
    return FilledNet(out, net=net, seed=seed, rng=rng, dtype=dt, report=report, metadata=metadata)


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
                fills=tuple(replace(step, filler=mine.get(step.blob, step.filler)) for step in layer.fills),
            )
        out.append(layer)
    return out, overridden


def _load_weights(weights: Any) -> dict[str, list[np.ndarray]]:
    """Layer name to blobs from a path, a sequence of paths (a later file's layer replaces an earlier one's, as
    successive ``CopyTrainedLayersFrom`` calls do) or a mapping."""
    if weights is None:
        return {}
    if isinstance(weights, (str, os.PathLike)):
        return load(weights)
    if isinstance(weights, Mapping):
        return {name: [np.asarray(blob) for blob in blobs] for name, blobs in weights.items()}
    if isinstance(weights, Sequence) and all(isinstance(path, (str, os.PathLike)) for path in weights):
        merged: dict[str, list[np.ndarray]] = {}
        for path in weights:
            merged.update(load(path))
        return merged
    raise TypeError(f"weights must be a path, a sequence of paths or a mapping of layer name to blobs, not "
                    f"{type(weights).__name__}")


def _matches(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Caffe's ``Blob::ShapeEquals``: equal shapes, or a legacy 4-D blob against up to 4 axes padded with 1s."""
    if source == target:
        return True
    return len(source) == 4 and len(target) <= 4 and (1,) * (4 - len(target)) + target == source


def _plan_copies(source: dict[str, list[np.ndarray]], keys: list[str], layers: list[LayerBlobs],
                 allow_mismatch: bool, report: FillReport) -> dict[tuple[str, int], np.ndarray]:
    """The blobs to copy from ``source``, keyed ``(layer key, index)`` in the order of ``source``."""
    by_key = dict(zip(keys, layers))
    copies: dict[tuple[str, int], np.ndarray] = {}
    for name, blobs in source.items():
        layer = by_key.get(name)
        if layer is None:
            report.unused.append(name)
            continue
        if len(blobs) != len(layer.blobs):
            if not allow_mismatch:
                raise ShapeError(f"layer {name!r}: the weights have {len(blobs)} blobs, the net "
                                 f"{len(layer.blobs)} (allow_mismatch=True / --allow-mismatch fills the layer)",
                                 layer=name)
            report.mismatched += [(f"{name}/{i}", None, b.shape) for i, b in enumerate(layer.blobs)]
            continue
        for i, (values, blob) in enumerate(zip(blobs, layer.blobs)):
            if _matches(tuple(values.shape), blob.shape):
                copies[(name, i)] = values
                report.copied.append(f"{name}/{i}")
            elif not allow_mismatch:
                raise ShapeError(f"layer {name!r}, blob {i}: the weights have shape {tuple(values.shape)}, the net "
                                 f"{blob.shape} (allow_mismatch=True / --allow-mismatch fills it)", layer=name)
            else:
                report.mismatched.append((f"{name}/{i}", tuple(values.shape), blob.shape))
    return copies


def _new_blob(shape: tuple[int, ...], dt: np.dtype, filler: FillerParameter, where: dict) -> np.ndarray:
    """A filled array.  The most common filler, constant +0.0 (every bias, BatchNorm's statistics, a filler
    left out), draws nothing: it gets ``np.zeros``, whose pages the OS supplies already zeroed, instead of a
    write pass over fresh memory.  (infer_shapes has validated every filler already.)"""
    if filler.type == "constant" and filler.value == 0 and math.copysign(1.0, filler.value) > 0:
        return np.zeros(shape, dt)
    return fill(np.empty(shape, dt), filler, **where)


def layer_keys(layers: list[LayerBlobs]) -> list[str]:
    """Layer names as dict keys: a name that repeats (Caffe allows it) gets ``#2``, ``#3``, ... on its later
    layers."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        seen[layer.name] = seen.get(layer.name, 0) + 1
        keys.append(layer.name if seen[layer.name] == 1 else f"{layer.name}#{seen[layer.name]}")
    return keys

