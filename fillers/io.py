"""Reading and writing filled parameters: ``.caffemodel``, ``.h5``, ``.npz`` and ``.safetensors``.

Every writer goes through :func:`atomic_write`: the data goes to a temporary file in the target's directory,
is flushed and synced, and only then renamed over the target, so an error or Ctrl-C leaves the old file
untouched and no partial file behind. A new file gets the mode ``open`` would give it (0666 less the umask); a
replaced file keeps its mode.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from fillers import caffe_pb2
from fillers.caffemodel import CaffemodelWriter, check_caffemodel_size, read_caffemodel
from fillers.errors import ShapeError

PathLike = Union[str, "os.PathLike[str]"]
Params = Mapping[str, Sequence[np.ndarray]]

#: Suffixes :func:`save` and :func:`load` understand, longest first.
FORMATS = (".caffemodel.h5", ".caffemodel", ".h5", ".hdf5", ".npz", ".safetensors")

_ORDER_KEY = "fillers.layers"  # safetensors metadata: the layer order
_UNSET: Any = object()  # save's phase when the caller gives none
_NPZ_METADATA = "__metadata__"  # npz entry: the metadata as a JSON object


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` only when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.
    mode : str
        ``"wb"`` or ``"w"``.

    Yields
    ------
    file object
        The temporary file; its ``name`` is its path (for libraries that want a path: they may reopen it).

    Notes
    -----
    On any exception, ``KeyboardInterrupt`` included, the temporary file is removed and ``path`` is left as it
    was. The file is created with mode 0666, which the system reduces by the umask, as for ``open``; when it
    replaces a file, it gets that file's permission bits before anything is written. Text is written as UTF-8.
    """
    path = Path(path)
    try:
        kept_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        kept_mode = None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    try:
        if kept_mode is not None:
            os.chmod(tmp, kept_mode)
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _format(path: PathLike) -> str:
    name = os.fspath(path).lower()
    for suffix in FORMATS:
        if name.endswith(suffix):
            return {".hdf5": ".h5", ".caffemodel.h5": ".h5"}.get(suffix, suffix)
    raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: use one of {', '.join(FORMATS)}")


def _check_params(params: Params) -> None:
    for layer, blobs in params.items():
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer names must be non-empty strings, got {layer!r}")
        for i, blob in enumerate(blobs):
            if not isinstance(blob, np.ndarray) or blob.dtype not in (np.float32, np.float64):
                raise TypeError(f"{layer}/{i} must be a float32 or float64 numpy array")


def _optional(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(
            f"this format needs the optional package {module.split('.')[0]!r}: pip install 'fillers[{extra}]'"
        ) from None


def check_h5_names(layers: Iterable[str]) -> None:
    """Refuse layer names Caffe's HDF5 layout cannot hold: a '/' would nest groups, which Caffe's
    ``CopyTrainedLayersFromHDF5`` does not look into."""
    nested = [layer for layer in layers if "/" in layer]
    if nested:
        raise ValueError(
            f"layer name {nested[0]!r} contains '/', which Caffe's HDF5 layout cannot hold (Caffe would skip "
            "or reject it); use .caffemodel, .npz or .safetensors"
        )


def caffemodel_layers(keys: Iterable[str], net: caffe_pb2.NetParameter | None,
                     phase: str | int | None = "TEST") -> list[tuple[caffe_pb2.LayerParameter, str | None]]:
    """The layer entries of a ``.caffemodel`` and the key of the blobs each holds (``None``: none).

    With ``net``: every layer of the net as Caffe builds it for ``phase`` (:func:`fillers.shapes.built_net`),
    as ``Net::ToProto`` writes them; a layer of a type with learnable blobs holds the blobs of its key (its
    name; a name that repeats is ``name#2``, ``name#3`` ... on its later such layers, as
    :func:`fillers.fill_net` keys them).  Without: one layer per key, named by it.

    Raises
    ------
    ShapeError
        A key that names no layer of the built net with learnable blobs.
    """
    if net is None:
        return [(caffe_pb2.LayerParameter(name=key), key) for key in keys]
    from fillers.shapes import built_net  # shapes reads blobs with fillers.caffemodel, which io uses
    from fillers.shapes.context import LEARNABLE

    wanted = set(keys)
    placed: dict[str, int] = {}  # layers of each name that took blobs so far
    entries: list[tuple[caffe_pb2.LayerParameter, str | None]] = []
    for layer in built_net(net, phase=phase).layer:
        seen = placed.get(layer.name, 0)
        key = layer.name if not seen else f"{layer.name}#{seen + 1}"
        if layer.type in LEARNABLE and key in wanted:
            placed[layer.name] = seen + 1
            wanted.discard(key)
            entries.append((layer, key))
        else:
            entries.append((layer, None))
    if wanted:
        stray = next(key for key in keys if key in wanted)
        raise ShapeError(f"blobs given for layer {stray!r}, which the net ({net.name or 'unnamed'}, phase {phase}) "
                         "does not have as a layer with learnable blobs", layer=stray)
    return entries


def _write_caffemodel(params: Params, path: PathLike, net: caffe_pb2.NetParameter | None,
                      phase: str | int | None) -> None:
    """Stream a NetParameter (see :mod:`fillers.caffemodel`) of :func:`caffemodel_layers`; refused before
    anything is written when protobuf could not read the result."""
    head = caffe_pb2.NetParameter(name=net.name) if net is not None else None
    layers = [(layer, params[key] if key is not None else ()) for layer, key in caffemodel_layers(params, net, phase)]
    check_caffemodel_size(path, head, layers)
    with atomic_write(path) as handle:
        writer = CaffemodelWriter(handle, head)
        for layer, blobs in layers:
            writer.add_layer(layer, blobs)


def save(params: Params, path: PathLike, *, net: caffe_pb2.NetParameter | None = None,
         metadata: Mapping[str, str] | None = None, naming: str = "caffe", phase: Any = _UNSET) -> None:
    """Write filled parameters to ``path``, the format chosen by its extension.

    Parameters
    ----------
    params : mapping of str to sequence of numpy.ndarray
        Layer name to its blobs, as returned by :func:`fillers.fill_net`.
    path : str or os.PathLike
        ``.caffemodel`` (a binary NetParameter, loadable by Caffe's ``CopyTrainedLayersFrom``),
        ``.h5`` / ``.caffemodel.h5`` (Caffe's HDF5 layout ``data/<layer>/<i>``; needs h5py),
        ``.npz`` (keys ``<layer>/<i>``) or ``.safetensors`` (keys ``<layer>.<i>``; needs safetensors).
    net : NetParameter, optional
        The net the parameters belong to.  Default: ``params.net`` for what ``fill_net`` returned.  A
        ``.caffemodel`` then holds the whole net as Caffe's ``Net::ToProto`` writes a snapshot: every layer of
        the net built for ``phase`` (include/exclude rules applied, Caffe's ``Split`` layers inserted, in
        order, each with its bottoms, tops, ``param`` specs and every ``*_param`` message), the blobs of
        ``params`` in their layers, so Caffe (and Netron) can build the net from the file alone.  Without a
        net a ``.caffemodel`` holds only what ``params`` has: one layer per entry with its name and blobs (no
        type, bottoms or tops), which Caffe's ``CopyTrainedLayersFrom`` loads by name but which is no net
        definition.  ``naming="torch"`` needs the net's layer types.
    metadata : mapping of str to str, optional
        Recorded in the file (safetensors metadata, HDF5 attributes of the root group, the ``__metadata__``
        entry of an npz, a JSON object); :func:`read_metadata` reads it back.  A ``.caffemodel`` has no place
        for it (its net name is left alone).  Default: ``params.metadata`` for what ``fill_net`` returned
        (seed, rng, dtype, fillers version ...); given, it is added to that.
    naming : {"caffe", "torch"}
        ``"torch"`` writes PyTorch ``state_dict`` names (``conv1.weight``, ``conv1.bias``, BatchNorm's
        ``running_mean``/``running_var`` ...) in ``.npz`` and ``.safetensors``: see :mod:`fillers.naming`.
    phase : {"TEST", "TRAIN"} or None
        The phase the ``.caffemodel``'s net is built for, as in :func:`fillers.fill_net` (``None``: the net's
        own ``state``).  Default: ``params.phase`` for what ``fill_net`` returned, else ``"TEST"``.

    Raises
    ------
    ValueError
        Unknown extension or naming, invalid layer names, or ``naming="torch"`` for Caffe's formats.
    ShapeError
        ``params`` has blobs for a layer the net built for ``phase`` does not have.
    TypeError
        A blob that is not a float32/float64 array, or metadata that is not str to str.
    ImportError
        h5py or safetensors missing for their formats (the message names the extra to install).

    Notes
    -----
    The write is atomic: on error or interruption ``path`` is unchanged and no partial file remains.
    """
    fmt = _format(path)
    _check_params(params)
    net = net if net is not None else getattr(params, "net", None)
    phase = phase if phase is not _UNSET else getattr(params, "phase", "TEST")
    meta = {**getattr(params, "metadata", {}), **(metadata or {})}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise TypeError("metadata must map str to str")
    if naming not in ("caffe", "torch"):
        raise ValueError(f"naming must be 'caffe' or 'torch', got {naming!r}")
    if naming == "torch":
        if fmt not in (".npz", ".safetensors"):
            raise ValueError(f"naming='torch' applies to .npz and .safetensors; {fmt} keeps Caffe's layout")
        from fillers.naming import torch_state_dict

        tensors = torch_state_dict(params, net)
        meta["fillers.naming"] = "torch"
    else:
        sep = "/" if fmt == ".npz" else "."
        tensors = {f"{layer}{sep}{i}": blob for layer, blobs in params.items() for i, blob in enumerate(blobs)}
    if fmt == ".caffemodel":
        _write_caffemodel(params, path, net, phase)
    elif fmt == ".npz":
        if meta:  # first, as fill_net(out=...) streams it
            tensors = {_NPZ_METADATA: np.array(json.dumps(meta)), **tensors}
        with atomic_write(path) as handle:
            np.savez(handle, **tensors)
    elif fmt == ".h5":
        h5py = _optional("h5py", "h5")
        check_h5_names(params)
        with atomic_write(path) as handle, h5py.File(handle, "w", track_order=True) as h5:
            h5.attrs.update(meta)
            data = h5.create_group("data", track_order=True)
            for layer, blobs in params.items():
                group = data.create_group(layer, track_order=True)
                for i, blob in enumerate(blobs):
                    group.create_dataset(str(i), data=blob)
    else:
        safetensors = _optional("safetensors.numpy", "safetensors")
        tensors = {key: np.require(blob, requirements="C") for key, blob in tensors.items()}
        with atomic_write(path) as handle:
            # safetensors sorts its keys; the layer order travels in the metadata.
            meta[_ORDER_KEY] = json.dumps(list(params))
            safetensors.save_file(tensors, handle.name, metadata=meta)  # by path, synced through handle


def read_metadata(path: PathLike) -> dict[str, str]:
    """The metadata :func:`save` recorded in a file (``{}`` for a ``.caffemodel``, or a file without any).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to str
        For a file written from :func:`fillers.fill_net`: ``fillers.seed``, ``fillers.rng``, ``fillers.dtype``,
        ``fillers.version`` ... (a safetensors file also has ``fillers.layers``, its layer order).
    """
    fmt = _format(path)
    if fmt == ".npz":
        with np.load(path) as npz:
            return json.loads(str(npz[_NPZ_METADATA])) if _NPZ_METADATA in npz.files else {}
    if fmt == ".h5":
        h5py = _optional("h5py", "h5")
        with h5py.File(path, "r") as h5:
            return {key: str(value) for key, value in h5.attrs.items()}
    if fmt == ".safetensors":
        safetensors = _optional("safetensors", "safetensors")
        with safetensors.safe_open(os.fspath(path), "np") as handle:
            return dict(handle.metadata() or {})
    return {}


def _nested(flat: Mapping[str, np.ndarray], sep: str) -> dict[str, list[np.ndarray]]:
    layers: dict[str, dict[int, np.ndarray]] = {}
    for key, value in flat.items():
        layer, _, index = key.rpartition(sep)
        if not layer or not index.isdigit():
            raise ValueError(f"unexpected key {key!r}: expected '<layer>{sep}<index>'")
        layers.setdefault(layer, {})[int(index)] = value
    return {layer: [blobs[i] for i in sorted(blobs)] for layer, blobs in layers.items()}


def load(path: PathLike) -> dict[str, list[np.ndarray]]:
    """Read parameters written by :func:`save` (or by Caffe: ``.caffemodel`` and ``.caffemodel.h5``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to list of numpy.ndarray
        Layer name to its blobs, in the file's order.
    """
    fmt = _format(path)
    if fmt == ".caffemodel":
        return read_caffemodel(path)
    if fmt == ".npz":
        with np.load(path) as npz:
            return _nested({key: npz[key] for key in npz.files if key != _NPZ_METADATA}, "/")
    if fmt == ".h5":
        h5py = _optional("h5py", "h5")
        with h5py.File(path, "r") as h5:  # data/<layer>/<i>, layers in creation order where the file tracks it
            # [...] keeps a 0-axis blob a 0-d array ([()] would make it a numpy scalar)
            return {layer: [group[i][...] for i in sorted(group, key=int)] for layer, group in h5["data"].items()}
    safetensors = _optional("safetensors", "safetensors")
    with safetensors.safe_open(os.fspath(path), "np") as handle:
        order = json.loads((handle.metadata() or {}).get(_ORDER_KEY, "[]"))
        layers = _nested({key: handle.get_tensor(key) for key in handle.keys()}, ".")
    rank = {layer: i for i, layer in enumerate(order)}
    return dict(sorted(layers.items(), key=lambda item: rank.get(item[0], len(rank))))
