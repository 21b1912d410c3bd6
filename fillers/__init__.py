"""fillers: Caffe's parameter fillers for numpy, in C kernels.

The public API:

- :func:`fill` fills an array in place with a Caffe filler (constant, uniform, gaussian with ``sparse``,
  positive_unitball, xavier, msra, bilinear) from the counter-based Philox stream or, with
  ``rng=CaffeRNG(seed)``, bit-identically to Caffe 1.0.
- :func:`philox_raw` exposes the raw Philox4x32-10 words.
- :class:`CaffeRNG` is Caffe's seeded CPU stream (boost::mt19937), for ``fill(..., rng=CaffeRNG(seed))``.
- :class:`FillerParameter` and :class:`NetParameter` are the generated Caffe schema messages.
"""
from fillers._caffe import CaffeRNG
from fillers._fill import default_threads, fill, philox_raw
from fillers._params import FILLER_TYPES
from fillers.caffe_pb2 import FillerParameter, NetParameter
from fillers.shapes import BlobSpec, FillStep, LayerBlobs, ShapeError, infer_shapes

__all__ = [
    "BlobSpec",
    "CaffeRNG",
    "default_threads",
    "fill",
    "FILLER_TYPES",
    "FillerParameter",
    "FillStep",
    "infer_shapes",
    "LayerBlobs",
    "NetParameter",
    "philox_raw",
    "ShapeError",
]

__version__ = "0.1.0"
