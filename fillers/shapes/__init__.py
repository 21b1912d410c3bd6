"""Whole-net shape inference: every learnable blob of a net, with the filler Caffe would run on it.

- :mod:`fillers.shapes.walk`: :func:`infer_shapes` and :func:`net_layers` (every layer with its bottom and top
  shapes), the walk of Caffe's ``Net::Init`` over a net's layers.
- :mod:`fillers.shapes.context`: the :class:`LayerContext` handed to every layer rule, the records the walk
  produces (:class:`LayerBlobs`, :class:`BlobSpec`, :class:`FillStep`) and :func:`register_layer`, the
  public registry of layer rules.
- One module per family of layers, each rule beside its kin: :mod:`~fillers.shapes.data`,
  :mod:`~fillers.shapes.vision`, :mod:`~fillers.shapes.dense`, :mod:`~fillers.shapes.recurrent`,
  :mod:`~fillers.shapes.tensor`, :mod:`~fillers.shapes.detection`.
"""
from fillers.errors import ShapeError
from fillers.shapes import data, dense, detection, recurrent, tensor, vision  # noqa: F401  (they register rules)
from fillers.shapes.context import BlobSpec, FillStep, LayerBlobs, LayerContext, NetLayer, register_layer
from fillers.shapes.walk import built_net, infer_shapes, net_layers

__all__ = ["BlobSpec", "built_net", "FillStep", "LayerBlobs", "LayerContext", "NetLayer", "ShapeError", "infer_shapes", "net_layers",
           "register_layer"]
