"""Reading and writing filled parameters: ``.caffemodel``, ``.h5``, ``.npz``, ``.safetensors`` and ``.npy``
folders.

Every writer goes through :func:`atomic_write`: the data goes to a temporary file in the target's directory,
is flushed and synced, and only then renamed over the target, so an error or Ctrl-C leaves the old file
untouched and no partial file behind. A new file gets the mode ``open`` would give it (0666 less the umask); a
replaced file keeps its mode.  A ``.npy`` folder goes through :func:`atomic_folder`, the same for a directory.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import stat
import struct
import threading
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from fillers import caffe_pb2
from fillers.errors import FileFormatError
from fillers.caffemodel import CaffemodelWriter, check_caffemodel_size, read_caffemodel
from fillers.errors import ShapeError

PathLike = Union[str, "os.PathLike[str]"]
Params = Mapping[str, Sequence[np.ndarray]]

#: Suffixes :func:`save` and :func:`load` understand, longest first (``.npy``: a folder of ``.npy`` files).
FORMATS = (".caffemodel.h5", ".caffemodel", ".h5", ".hdf5", ".npz", ".safetensors", ".npy")

_ORDER_KEY = "fillers.layers"  # safetensors metadata: the layer order
_UNSET: Any = object()  # save's phase when the caller gives none
_NPZ_METADATA = "__metadata__"  # npz entry: the metadata as a JSON object


#: Signals that end a run the way Ctrl-C does (a timeout, a batch scheduler, a closed terminal): while an
#: atomic write is open they remove its temporary file, then take their usual course.
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Terminated(BaseException):
    """A cleanup signal arrived during an atomic write."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Where SIGTERM and SIGHUP have their default action (end the process at once), make them raise
    :class:`_Terminated` instead, so that the write cleans up; then the default action is restored and the
    signal delivered again: the process ends by it, as it would have.  A signal the program ignores (``nohup``)
    or handles itself is left alone, and so are threads other than the main one (they cannot handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    caught = [signum for signum in CLEANUP_SIGNALS if signal.getsignal(signum) == signal.SIG_DFL]
    for signum in caught:
        signal.signal(signum, handler)
    try:
        yield
    except _Terminated as stop:
        for signum in caught:
            signal.signal(signum, signal.SIG_DFL)
        caught = []
        os.kill(os.getpid(), stop.signum)  # the default action: the process ends here
        raise SystemExit(128 + stop.signum) from None  # (reached only if the signal is blocked)
    finally:
        for signum in caught:
            signal.signal(signum, signal.SIG_DFL)


def _temp_prefix(path: Path) -> str:
    """The temporary-file prefix of ``path``: ``.<name>.`` cut to leave room for the pid and a random part
    within the file system's name limit (a hash of the whole name keeps cut names apart)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    room = max(8, limit - 40)  # 40: "." + "." + 8 hash + "." + up to 10 pid digits + "." + 16 random + ".tmp"
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:8]
    stem = path.name
    while len(os.fsencode(stem)) > room:  # the limit counts bytes
        stem = stem[:-1]
    return f".{stem}.{digest}."


def _remove_stale_temps(path: Path, prefix: str) -> None:
    """Remove the temporary files (and folders) of ``path`` left by runs that died without cleaning up
    (SIGKILL, a power cut): those whose process no longer exists."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            pid = entry.name[len(prefix):].split(".", 1)[0]
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp") and pid.isdigit()):
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                if entry.is_dir(follow_symlinks=False):  # an atomic_folder's
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
            except OSError:  # alive, another user's: leave it
                pass


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` only when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.  A symbolic link is written through: its target is replaced and the
        link stays.
    mode : str
        ``"wb"`` or ``"w"``.

    Yields
    ------
    file object
        The temporary file; its ``name`` is its path (for libraries that want a path: they may reopen it).

    Notes
    -----
    On any exception, ``KeyboardInterrupt`` included, and on SIGTERM or SIGHUP, the temporary file is removed
    and ``path`` is left as it was (a signal with its default action then ends the process as it would have;
    one the program ignores or handles itself is left to it).  The temporary file is named
    ``.<name>.<hash>.<pid>.<random>.tmp``, within the file system's name limit; a completed write also removes
    the temporary files of ``path`` whose process is gone (left by a SIGKILL).  The file is created with mode
    0666, which the system reduces by the umask, as for ``open``; when it replaces a file, it gets that file's
    permission bits before anything is written. Text is written as UTF-8.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        kept_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        kept_mode = None
    prefix = _temp_prefix(path)
    tmp = path.parent / f"{prefix}{os.getpid()}.{secrets.token_hex(8)}.tmp"
    with _signals_raise():
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
    _remove_stale_temps(path, prefix)


#: Bytes written between two :class:`Writeback` kicks.
WRITEBACK_BYTES = 64 << 20


class Writeback:
    """Counts the bytes written to a file and, every :data:`WRITEBACK_BYTES`, has the OS start writing them to
    disk, from a thread of its own (where it can: ``posix_fadvise(POSIX_FADV_DONTNEED)``, which on Linux starts
    the writeback of the file's dirty pages without waiting for the disk and lets the pages already on it go).

    A large output is otherwise held dirty in memory until :func:`atomic_write`'s final ``fsync``, which then
    waits for all of it while nothing else happens, and the machine's free memory fills with it.  Kicked as the
    writing goes on, the disk works while the next pieces are filled, the final ``fsync`` finds little left, and
    the page cache holds no more than a few pieces of the file (an out-of-core fill stays out of core).  The
    kick itself costs the kernel time (it hands the pages to the disk), so it runs beside the writing; a kick
    still running when the next is due takes the bytes of both.  The kicks are advice: where the file system
    refuses one (``OSError``), the kicking stops and the file is written as without it (a failed write shows in
    ``write`` or the final ``fsync``, not here).

    Parameters
    ----------
    handle : binary file object
        The file being written (its ``flush`` and ``fileno`` are used).  Call the object with the number of
        bytes after each write, from one thread (a buffered file orders its ``flush`` with writes from another
        thread), and close it (or use it as a context manager) before the file is synced.

    Examples
    --------
    >>> with atomic_write(path) as handle, Writeback(handle) as written:  # doctest: +SKIP
    ...     for piece in pieces:
    ...         handle.write(piece)
    ...         written(piece.nbytes)
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._pending = 0
        self._kick: Future | None = None
        self._thread = (ThreadPoolExecutor(1, thread_name_prefix="fillers-writeback")
                        if hasattr(os, "posix_fadvise") else None)

    def __call__(self, nbytes: int) -> None:
        self._pending += nbytes
        if self._thread is None or self._pending < WRITEBACK_BYTES or (self._kick and not self._kick.done()):
            return
        if self._kick is not None and self._kick.exception() is not None:
            self.close()  # refused: no more kicks
            return
        self._pending = 0
        self._handle.flush()
        self._kick = self._thread.submit(os.posix_fadvise, self._handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        """Wait for the last kick; no more kicks after it."""
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    def __enter__(self) -> "Writeback":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _format(path: PathLike) -> str:
    name = os.fspath(path).rstrip("/" + os.sep).lower()  # "model.npy/": the folder
    for suffix in FORMATS:
        if name.endswith(suffix):
            return {".hdf5": ".h5", ".caffemodel.h5": ".h5"}.get(suffix, suffix)
    raise ValueError(f"cannot tell the format of {os.fspath(path)!r}: use one of {', '.join(FORMATS)} (.npy: a "
                     "folder of .npy files)")


def _check_params(params: Params) -> None:
    from fillers._fill import DTYPE_NAMES  # the element types fill writes (check_dtype: which format holds which)

    for layer, blobs in params.items():
        if not isinstance(layer, str):
            raise TypeError(f"layer names must be strings, got {layer!r}")
        for i, blob in enumerate(blobs):
            if not isinstance(blob, np.ndarray) or blob.dtype.name not in DTYPE_NAMES:
                raise TypeError(f"{layer}/{i} must be a numpy array of {', '.join(DTYPE_NAMES)}")


def check_dtype(path: PathLike, fmt: str, dtype: np.dtype) -> None:
    """Refuse an element type a format cannot hold (:class:`FileFormatError`), before anything is written: half
    precision in a ``.caffemodel`` (a ``BlobProto`` holds float32 ``data`` or float64 ``double_data`` only),
    bfloat16 in ``.h5`` (HDF5 has no bfloat16 type: h5py would store opaque 2-byte records)."""
    name = np.dtype(dtype).name
    if fmt == ".caffemodel" and name in ("float16", "bfloat16"):
        raise FileFormatError(os.fspath(path), "caffemodel", f"no place for {name} values: a BlobProto holds float32 "
                              "(data) or float64 (double_data) only; use .safetensors, .npz, .npy or .h5, or float32")
    if fmt == ".h5" and name == "bfloat16":
        raise FileFormatError(os.fspath(path), "h5", "no place for bfloat16 values: HDF5 has no bfloat16 type (h5py "
                              "would store opaque 2-byte records); use .safetensors, .npz or .npy, or float16")


def _half_from_storage(array: np.ndarray) -> np.ndarray:
    """An array as a ``.npy`` (or an npz member) returns it, with a bfloat16 blob's element type back: numpy
    stores ``ml_dtypes.bfloat16`` arrays as raw 2-byte records (descr ``'<V2'``), which fillers writes for
    bfloat16 only."""
    if array.dtype.kind != "V" or array.dtype.itemsize != 2 or array.dtype.names is not None:
        return array
    from fillers._fill import element_dtype

    return array.view(element_dtype("bfloat16"))


def _optional(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(
            f"this format needs the optional package {module.split('.')[0]!r}: pip install 'fillers[{extra}]'"
        ) from None


#: The longest name of a zip entry (a 16-bit length): an npz key ``<layer>/<i>.npy`` must fit.
_ZIP_NAME_MAX = 65535


def check_layer_names(path: PathLike, fmt: str, layers: Iterable[str]) -> None:
    """Refuse layer names a format cannot hold, before anything is written (:class:`FileFormatError`): an empty
    name outside ``.caffemodel`` (its keys ``/0``, ``.0`` would read back as no layer), a name longer than a zip
    entry's in ``.npz``, and in Caffe's HDF5
    layout a '/' (it would nest groups, which Caffe's ``CopyTrainedLayersFromHDF5`` does not look into) or a
    name HDF5 reserves (``.``)."""
    for layer in layers:
        if fmt == ".caffemodel":
            return
        why = "an empty layer name" if not layer else None
        if fmt == ".h5" and "/" in layer:
            why = f"layer name {layer!r} contains '/', which Caffe's HDF5 layout cannot hold (Caffe would skip or " \
                  "reject it)"
        elif fmt == ".h5" and layer == ".":
            why = "layer name '.' is HDF5's name of the group itself"
        elif fmt == ".npz" and len(layer.encode("utf-8", "surrogatepass")) > _ZIP_NAME_MAX - 32:
            why = f"a layer name of {len(layer):,} characters, longer than a zip entry name can be"
        if why is not None:
            raise FileFormatError(os.fspath(path), fmt.lstrip("."), f"{why}; use .caffemodel")


# ------------------------------------------------------------------------------------------------------
# .npy folders

#: The file of a ``.npy`` folder that lists its layers (name, folder, blob count, in order) and its metadata.
FOLDER_INDEX = "fillers.json"
_FOLDER_FORMAT = "fillers .npy folder"  # the index's "format": only a folder that says so is ever replaced
#: Characters a layer's folder name keeps; any other is written ``%XX`` (its UTF-8 bytes).
_FOLDER_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+=,@#")
_FOLDER_NAME_MAX = 200  # bytes of a folder name before it is cut (and told apart by a hash)


def npy_folder_names(layers: Iterable[str]) -> dict[str, str]:
    """The folder of each layer in a ``.npy`` folder: its name with every character other than letters,
    digits and ``_-.+=,@#`` written ``%XX`` (so a ``/`` nests nothing, and ``.``/``..`` name no special
    folder: a leading ``.`` is ``%2E``).  A name longer than 200 bytes is cut and gets ``~`` and 16 hex digits
    of its sha256; so does a name equal to an earlier one but for letter case (case-insensitive file
    systems).  The index (:data:`FOLDER_INDEX`) records each layer's folder, so they need not be decoded."""
    names: dict[str, str] = {}
    taken: set[str] = {FOLDER_INDEX.casefold()}
    for layer in layers:
        name = "".join(c if c in _FOLDER_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                       for c in layer)
        name = "%2E" + name[1:] if name.startswith(".") else name
        if len(name) > _FOLDER_NAME_MAX or name.casefold() in taken:
            digest = hashlib.sha256(layer.encode("utf-8", "surrogatepass")).hexdigest()
            name = f"{name[:_FOLDER_NAME_MAX]}~{digest[:16]}"
        taken.add(name.casefold())
        names[layer] = name
    return names


def _read_folder_index(path: Path) -> dict[str, Any]:
    """The index of a ``.npy`` folder, checked: its layers' folders are single names inside the folder."""
    where = os.fspath(path / FOLDER_INDEX)
    with open(where, "rb") as handle:  # the operating system's errors stay OSError
        text = handle.read()
    try:
        index = json.loads(text)
        if not isinstance(index, dict) or index.get("format") != _FOLDER_FORMAT:
            raise ValueError(f"not a fillers .npy folder index (its \"format\" is not {_FOLDER_FORMAT!r})")
        layers, metadata = index["layers"], index["metadata"]
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("\"metadata\" must map str to str")
        for entry in layers:
            name, folder, count = entry["name"], entry["folder"], entry["blobs"]
            if not (isinstance(name, str) and isinstance(folder, str) and isinstance(count, int) and count >= 0):
                raise ValueError(f"bad layer entry {entry!r}")
            if folder in ("", ".", "..") or "/" in folder or os.sep in folder or "\0" in folder:
                raise ValueError(f"layer {name!r}: folder {folder!r} is not a name inside the folder")
    except (ValueError, KeyError, TypeError) as err:
        raise FileFormatError(where, "npy", f"{type(err).__name__}: {err}") from None
    return index


def _check_replaceable(path: Path) -> None:
    """Refuse (``FileExistsError``) to replace anything at ``path`` but a ``.npy`` folder fillers wrote that
    holds only what its index lists: never a file, nor a folder with anything of the user's in it."""
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a folder; a .npy output is a folder of .npy "
                              "files: not replaced")
    try:
        index = _read_folder_index(path)
    except (FileFormatError, OSError):
        raise FileExistsError(errno.EEXIST, f"{path} is a folder fillers did not write (no valid {FOLDER_INDEX}): "
                              "not replaced") from None
    expected: dict[str, set[str]] = {entry["folder"]: {f"{i}.npy" for i in range(entry["blobs"])}
                                     for entry in index["layers"]}
    for entry in os.scandir(path):
        inside = None if entry.name == FOLDER_INDEX else expected.get(entry.name)
        strays = [entry.name] if entry.name != FOLDER_INDEX and inside is None else \
            [] if inside is None else [f"{entry.name}/{name}" for name in os.listdir(entry.path) if name not in inside]
        if strays:
            raise FileExistsError(errno.EEXIST, f"{path} holds {strays[0]!r}, which fillers did not write: not "
                                  "replaced")


def _fsync(path: str | Path, folder: bool = False) -> None:
    """Sync a file, or a folder's entries (where the file system can sync a folder)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if not folder or err.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Sync every file and folder under ``root`` and ``root`` itself."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync(folder, folder=True)


@contextlib.contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """Make a temporary folder beside ``path`` and move it to ``path`` only when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        The folder to create, or to replace if it is a ``.npy`` folder fillers wrote holding nothing else (a
        symbolic link is written through).

    Yields
    ------
    pathlib.Path
        The temporary folder, named as :func:`atomic_write`'s temporary files.

    Raises
    ------
    FileExistsError
        ``path`` is a file, or a folder fillers did not write, or one holding anything its index does not list
        (checked before the block runs, and again before the move).

    Notes
    -----
    On any exception, Ctrl-C, SIGTERM or SIGHUP the temporary folder is removed and ``path`` is left as it
    was.  At the end everything in the folder is synced; an old folder at ``path`` is renamed aside, the new
    one renamed to ``path`` and the old one removed (between the two renames ``path`` is briefly absent).  The
    folder gets the mode ``mkdir`` gives (0777 less the umask), or the replaced folder's.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(os.fspath(path).rstrip("/" + os.sep))
    _check_replaceable(path)
    prefix = _temp_prefix(path)
    tmp = path.parent / f"{prefix}{os.getpid()}.{secrets.token_hex(8)}.tmp"
    with _signals_raise():
        os.mkdir(tmp)
        try:
            if path.is_dir():
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            yield tmp
            _fsync_tree(tmp)
            _check_replaceable(path)
            if os.path.lexists(path):
                old = path.parent / f"{prefix}{os.getpid()}.{secrets.token_hex(8)}.tmp"
                os.rename(path, old)
                try:
                    os.rename(tmp, path)
                except BaseException:
                    os.rename(old, path)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
            _fsync(path.parent, folder=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _remove_stale_temps(path, prefix)


@contextlib.contextmanager
def npy_folder(path: PathLike, blobs: Mapping[str, int],
               metadata: Mapping[str, str]) -> Iterator[Callable[[str, int], str]]:
    """Write a ``.npy`` folder atomically (:func:`atomic_folder`): ``<layer folder>/<i>.npy`` per blob and the
    index :data:`FOLDER_INDEX` (``{"format", "metadata", "layers": [{"name", "folder", "blobs"}, ...]}``,
    layers in order).

    Parameters
    ----------
    path : str or os.PathLike
    blobs : mapping of str to int
        Every layer key and its number of blobs, in order.
    metadata : mapping of str to str
        Recorded in the index (:func:`read_metadata` reads it back).

    Yields
    ------
    callable
        ``blob_file(layer, i)``: the path of the ``.npy`` file to write for blob ``i`` of ``layer`` (its
        layer's folder exists).
    """
    names = npy_folder_names(blobs)
    with atomic_folder(path) as folder:
        for key in blobs:
            os.mkdir(folder / names[key])
        yield lambda key, i: os.fspath(folder / names[key] / f"{i}.npy")
        index = {"format": _FOLDER_FORMAT, "metadata": dict(metadata),
                 "layers": [{"name": key, "folder": names[key], "blobs": count} for key, count in blobs.items()]}
        with open(folder / FOLDER_INDEX, "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=1, ensure_ascii=False)


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
#: Blobs of a ``.npy`` folder from this size on are mapped, smaller ones read: each mapping keeps a file
#: descriptor open (Python's mmap), and a net of thousands of small blobs must not run out of them.
_MAP_BYTES = 16 << 20


def _load_npy(where: str) -> np.ndarray:
    """One ``.npy`` of a folder, its size checked: mapped copy-on-write (writes never reach the file) from
    :data:`_MAP_BYTES` on, else read."""
    with open(where, "rb") as handle, _format_errors(where, "npy"):
        version = np.lib.format.read_magic(handle)
        if version not in _NPY_HEADERS:
            raise FileFormatError(where, "npy", f"npy format version {version} (fillers writes 1.0 and 2.0)", 6)
        shape, fortran, dtype = _NPY_HEADERS[version](handle)
        offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    if dtype.hasobject:
        raise FileFormatError(where, "npy", f"an array of Python objects ({dtype}), not numbers", offset)
    end = offset + math.prod(shape) * dtype.itemsize
    if end != size:
        raise FileFormatError(where, "npy", f"{size - end} bytes after the end of the array" if size > end else
                              f"truncated: {end - size} bytes of the array missing", min(size, end))
    order = "F" if fortran else "C"
    if end - offset >= _MAP_BYTES:
        array = np.memmap(where, dtype, "c", offset, shape, order).view(np.ndarray)
    else:
        with open(where, "rb") as handle:
            handle.seek(offset)
            array = np.empty(shape, dtype, order)
            if handle.readinto(array.reshape(-1, order="A").view(np.uint8)) != end - offset:
                raise FileFormatError(where, "npy", "the file changed while it was read", offset)
    return _half_from_storage(array)


def _npy_folder_index(folder: Path) -> dict[str, Any]:
    """The index of the ``.npy`` folder ``folder``, for reading (a missing path stays ``FileNotFoundError``)."""
    if folder.exists() and not folder.is_dir():
        raise FileFormatError(os.fspath(folder), "npy", "a file: fillers' .npy format is a folder of .npy files "
                              f"with an index, {FOLDER_INDEX} (read one .npy file with numpy.load)")
    if folder.is_dir() and not (folder / FOLDER_INDEX).is_file():
        raise FileFormatError(os.fspath(folder), "npy", f"a folder without {FOLDER_INDEX}: not a .npy folder fillers "
                              "wrote")
    return _read_folder_index(folder)


def _read_npy_folder(path: PathLike) -> dict[str, list[np.ndarray]]:
    folder = Path(path)
    index = _npy_folder_index(folder)
    out = {}
    for entry in index["layers"]:
        files = [os.fspath(folder / entry["folder"] / f"{i}.npy") for i in range(entry["blobs"])]
        for where in files:
            if not os.path.isfile(where):
                raise FileFormatError(where, "npy", f"layer {entry['name']!r}: its blob file is missing")
        out[entry["name"]] = [_load_npy(where) for where in files]
    return out


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
    with atomic_write(path) as handle, Writeback(handle) as written:
        writer = CaffemodelWriter(handle, head)
        for layer, blobs in layers:
            writer.add_layer(layer, blobs, progress=written)


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
        ``.npz`` (keys ``<layer>/<i>``), ``.safetensors`` (keys ``<layer>.<i>``; needs safetensors) or
        ``.npy`` (optionally ending in ``/``): a folder of ``<layer folder>/<i>.npy`` files and an index,
        ``fillers.json`` (the layer order and the metadata; folder names: :func:`npy_folder_names`).  An
        existing ``.npy`` folder is replaced only if fillers wrote it and it holds nothing else.
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
    FileFormatError
        A dtype the format cannot hold (float16/bfloat16 in a ``.caffemodel``, bfloat16 in ``.h5``).
    FileExistsError
        A ``.npy`` path that is a file, or a folder fillers did not write (see :func:`atomic_folder`).
    TypeError
        A blob that is not a float32, float64, float16 or bfloat16 array, or metadata that is not str to str.
    ImportError
        h5py or safetensors missing for their formats (the message names the extra to install).

    Notes
    -----
    The write is atomic: on error or interruption ``path`` is unchanged and no partial file remains.
    """
    fmt = _format(path)
    _check_params(params)
    check_layer_names(path, fmt, params)
    for dtype in {blob.dtype for blobs in params.values() for blob in blobs}:
        check_dtype(path, fmt, dtype)
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
    elif fmt == ".npy":
        with npy_folder(path, {layer: len(blobs) for layer, blobs in params.items()}, meta) as blob_file:
            for layer, blobs in params.items():
                for i, blob in enumerate(blobs):
                    np.save(blob_file(layer, i), blob)
    elif fmt == ".npz":
        if meta:  # first, as fill_net(out=...) streams it
            tensors = {_NPZ_METADATA: np.array(json.dumps(meta)), **tensors}
        with atomic_write(path) as handle:
            np.savez(handle, **tensors)
    elif fmt == ".h5":
        h5py = _optional("h5py", "h5")
        check_layer_names(path, fmt, params)
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
    if fmt == ".npy":
        return dict(_npy_folder_index(Path(path))["metadata"])
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


#: The end-of-central-directory record of a zip file: its signature and its size without the comment.
_ZIP_END, _ZIP_END_SIZE = b"PK\x05\x06", 22
#: HDF5's format signature, and where a superblock of each version keeps the end-of-file address (after
#: the fields before it; O is the size of offsets).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_zip_end(path: str, data_tail: bytes, size: int) -> None:
    """A zip file must end with its end-of-central-directory record (and its comment): anything after it is
    garbage zipfile would ignore."""
    at = data_tail.rfind(_ZIP_END)
    if at < 0 or at + _ZIP_END_SIZE > len(data_tail):
        raise FileFormatError(path, "npz", "no zip end-of-central-directory record (truncated?)", size)
    comment = int.from_bytes(data_tail[at + 20:at + 22], "little")
    end = size - len(data_tail) + at + _ZIP_END_SIZE + comment
    if end != size:
        raise FileFormatError(path, "npz", f"{size - end} bytes after the end of the zip archive", end)


def _hdf5_end(head: bytes) -> int | None:
    """The end-of-file address an HDF5 superblock at byte 0 records (None when there is none to read)."""
    if not head.startswith(_HDF5_SIGNATURE) or len(head) < 16:
        return None
    version = head[8]
    if version in (0, 1):
        offsets, fixed = head[13], 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        offsets, fixed = head[9], 12
    else:
        return None
    base, eof = fixed, fixed + 2 * offsets
    if offsets not in (2, 4, 8) or len(head) < eof + offsets:
        return None
    return int.from_bytes(head[base:base + offsets], "little") + int.from_bytes(head[eof:eof + offsets], "little")


@contextlib.contextmanager
def _format_errors(path: str, fmt: str) -> Iterator[None]:
    """Turn whatever a format's library raises for a corrupt file into :class:`FileFormatError`."""
    try:
        yield
    except FileFormatError:
        raise
    except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile, struct.error) as err:
        raise FileFormatError(path, fmt, f"{type(err).__name__}: {err}") from None
    except Exception as err:
        if type(err).__name__ == "SafetensorError":  # safetensors' own exception class
            raise FileFormatError(path, fmt, str(err)) from None
        raise


def load(path: PathLike) -> dict[str, list[np.ndarray]]:
    """Read parameters written by :func:`save` (or by Caffe: ``.caffemodel`` and ``.caffemodel.h5``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to list of numpy.ndarray
        Layer name to its blobs, in the file's order.  A ``.caffemodel`` with a repeated layer name keeps
        every layer, the later ones keyed ``name#2``, ``name#3``, ... (as :func:`fillers.fill_net` keys them).
        A ``.npy`` folder's blobs of 16 MiB or more are mapped copy-on-write (writes never reach the files),
        smaller ones read; bfloat16 blobs of ``.npz`` and ``.npy`` (stored by numpy as 2-byte records) come
        back as ``ml_dtypes.bfloat16``.

    Raises
    ------
    FileFormatError
        An empty, truncated or corrupt file, or one with bytes after its end (every format), or keys that
        are not ``<layer><sep><index>``.
    OSError
        The file cannot be opened or read.
    """
    fmt = _format(path)
    if fmt == ".npy":
        return _read_npy_folder(path)
    name = os.fspath(path)
    kind = fmt.lstrip(".")
    with open(name, "rb") as handle:  # the operating system's errors stay OSError
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(256)
        handle.seek(max(0, size - (1 << 16) - _ZIP_END_SIZE))
        tail = handle.read()
    if size == 0:
        raise FileFormatError(name, kind, "the file is empty", 0)
    if fmt == ".caffemodel":
        return read_caffemodel(path)
    with _format_errors(name, kind):
        if fmt == ".npz":
            _check_zip_end(name, tail, size)
            with np.load(name) as npz:
                return _nested({key: _half_from_storage(npz[key]) for key in npz.files if key != _NPZ_METADATA}, "/")
        if fmt == ".h5":
            h5py = _optional("h5py", "h5")
            end = _hdf5_end(head)
            if end is not None and end < size:
                raise FileFormatError(name, kind, f"{size - end} bytes after the end the HDF5 superblock records",
                                      end)
            with h5py.File(name, "r") as h5:  # data/<layer>/<i>, layers in creation order where the file tracks it
                # [...] keeps a 0-axis blob a 0-d array ([()] would make it a numpy scalar)
                return {layer: [group[i][...] for i in sorted(group, key=int)] for layer, group in h5["data"].items()}
        safetensors = _optional("safetensors", "safetensors")
        with safetensors.safe_open(name, "np") as handle:
            order = json.loads((handle.metadata() or {}).get(_ORDER_KEY, "[]"))
            layers = _nested({key: handle.get_tensor(key) for key in handle.keys()}, ".")
    rank = {layer: i for i, layer in enumerate(order)}
    return dict(sorted(layers.items(), key=lambda item: rank.get(item[0], len(rank))))
