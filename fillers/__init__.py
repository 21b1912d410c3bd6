"""fillers: Caffe's parameter fillers for numpy, in C kernels.

The public API:

- :func:`fill` fills an array in place with a Caffe filler (constant, uniform, gaussian with ``sparse``,
  positive_unitball, xavier, msra, bilinear) from the counter-based Philox stream or, with
  ``rng=CaffeRNG(seed)``, bit-identically to Caffe 1.0.
- :func:`philox_raw` exposes the raw Philox4x32-10 words.
- :class:`Philox` is a generator that gives each ``fill(..., rng=gen)`` its own stream of one seed
  (``fill`` without a seed draws fresh entropy; a ``numpy.random.SeedSequence`` is a seed too).
- :class:`CaffeRNG` is Caffe's seeded CPU stream (boost::mt19937), for ``fill(..., rng=CaffeRNG(seed))``.
- :class:`FillerParameter` and :class:`NetParameter` are the generated Caffe schema messages.
- :func:`load_net`, :func:`load_solver` read prototxt/binary definitions of any Caffe vintage;
  :func:`upgrade_net` is Caffe's format upgrade on its own.
- :func:`infer_shapes` lists every learnable blob of a net with its shape and filler, as Caffe's ``Net::Init``
  would set it up (:class:`LayerBlobs`, :class:`BlobSpec`; :class:`ShapeError` when a shape cannot be known);
  :func:`register_layer` teaches it a layer type (:class:`LayerContext` is what a rule gets);
  :func:`fill_net` fills them all, from Philox streams keyed by layer name or bit-identically to Caffe,
  optionally copying pretrained ``weights`` and with per-layer filler ``overrides`` (a :class:`FilledNet`
  with its seed, :class:`FillReport` and metadata); :func:`fill_solver` gives the weights ``caffe train``
  starts from.
- :func:`save` and :func:`load` write and read filled parameters: ``.caffemodel``, ``.h5``, ``.npz``,
  ``.safetensors`` and ``.npy`` folders (atomic writes; with the fill's seed, rng, dtype and version as metadata,
  :func:`read_metadata`; ``naming="torch"`` for PyTorch's ``conv1.weight`` names); ``fill_net(..., out=path)``
  fills straight into such a file in bounded memory.  :mod:`fillers.caffemodel` is the streaming
  ``.caffemodel`` reader and writer (mapped views of the weights; :class:`~fillers.caffemodel.CaffemodelWriter`
  layer by layer); :mod:`fillers.dask` (optional) gives blobs as Dask arrays filled chunk by chunk.
- Bad input raises a :class:`FillersError` (a ``ValueError``): :class:`PrototxtError` (``file:line:column``),
  :class:`ShapeError` (layer, blob), :class:`FileFormatError` (path, byte offset), :class:`FillerError`
  (field and value), :class:`ArrayError`, :class:`BudgetError` (a fill over ``fill_net``'s ``max_bytes``).
"""
from fillers._caffe import CaffeRNG
from fillers._fill import default_threads, fill, philox_raw
from fillers._params import CAFFE_TYPES, FILLER_TYPES, MODERN_TYPES, nonlinearity_gain
from fillers.caffe_pb2 import FillerParameter, NetParameter
from fillers.errors import (
    ArrayError,
    BudgetError,
    FileFormatError,
    FillerError,
    FillersError,
    PrototxtError,
    PrototxtWarning,
    ShapeError,
    ShapeWarning,
)
from fillers.io import load, read_metadata, save
from fillers.net import FilledNet, FillReport, fill_net, fill_solver, philox_stream, solver_train_net
from fillers.prototxt import load_net, load_solver
from fillers.seeds import Philox
from fillers.shapes import BlobSpec, FillCycle, FillStep, LayerBlobs, LayerContext, infer_shapes, register_layer
from fillers.upgrade import upgrade_net

__all__ = [
    "ArrayError",
    "BudgetError",
    "BlobSpec",
    "CAFFE_TYPES",
    "CaffeRNG",
    "default_threads",
    "FileFormatError",
    "fill",
    "fill_net",
    "fill_solver",
    "FilledNet",
    "FillReport",
    "FILLER_TYPES",
    "FillerError",
    "FillersError",
    "FillerParameter",
    "FillCycle",
    "FillStep",
    "infer_shapes",
    "load",
    "LayerBlobs",
    "LayerContext",
    "MODERN_TYPES",
    "nonlinearity_gain",
    "load_net",
    "load_solver",
    "NetParameter",
    "Philox",
    "philox_raw",
    "philox_stream",
    "PrototxtError",
    "PrototxtWarning",
    "read_metadata",
    "register_layer",
    "save",
    "ShapeError",
    "ShapeWarning",
    "solver_train_net",
    "upgrade_net",
]

__version__ = "0.1.0"
