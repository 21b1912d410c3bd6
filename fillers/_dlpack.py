"""Arrays over the memory of other libraries' tensors (DLPack) and of Python buffers, for filling in place.

numpy's own :func:`numpy.from_dlpack` serves every dtype it knows; bfloat16 (DLPack type code 4), which numpy
does not know, is read from the DLPack capsule here and viewed as ``ml_dtypes.bfloat16``.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from fillers.errors import ArrayError

_KDL_CPU = 1
_KDL_CUDA_HOST = 3  # pinned host memory: CPU-addressable
_KDL_BFLOAT = 4
_CPU_DEVICES = (_KDL_CPU, _KDL_CUDA_HOST)
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi", 10: "rocm",
                 13: "cuda_managed", 14: "oneapi"}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def check_cpu(obj: Any) -> None:
    """Raise :class:`~fillers.ArrayError` unless ``obj.__dlpack_device__()`` is CPU memory."""
    device_type, device_id = obj.__dlpack_device__()
    if int(device_type) not in _CPU_DEVICES:
        name = _DEVICE_NAMES.get(int(device_type), f"DLPack device type {int(device_type)}")
        raise ArrayError(f"blob is on device {name}:{device_id}; fill() writes CPU memory only: copy it to host "
                         "memory (e.g. tensor.cpu()), fill that, and copy it back")


def from_dlpack(obj: Any) -> tuple[np.ndarray, Any]:
    """A writable numpy view of a CPU ``__dlpack__`` object, and what keeps its memory alive.

    Parameters
    ----------
    obj
        An object with ``__dlpack__`` and ``__dlpack_device__`` (a torch tensor, a JAX or CuPy array ...).

    Returns
    -------
    (numpy.ndarray, object)
        The view, and an object (the DLPack capsule, or None) to keep referenced while the view is used.

    Raises
    ------
    ArrayError
        ``obj`` is not in CPU memory (the message says to copy it to the host), or its producer refuses to
        export it (torch: a tensor that requires grad; fill its ``detach()``).
    TypeError
        A dtype neither numpy nor this module can view (bfloat16 needs ``ml_dtypes``).
    """
    check_cpu(obj)
    try:
        return np.from_dlpack(obj), None
    except BufferError as err:
        raise ArrayError(f"blob cannot be filled through DLPack: {err}") from None
    except RuntimeError:  # numpy: "Unsupported dtype in DLTensor" (bfloat16)
        capsule = obj.__dlpack__()
        tensor = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
        dtype = tensor.dtype
        if (dtype.code, dtype.bits, dtype.lanes) != (_KDL_BFLOAT, 16, 1):
            raise TypeError(f"blob's DLPack dtype (code {dtype.code}, {dtype.bits} bits, {dtype.lanes} lanes) "
                            "is not a float type fill() supports") from None
        return _bfloat16_view(tensor), capsule


def _bfloat16_view(tensor: _DLTensor) -> np.ndarray:
    """The DLTensor's memory as an ``ml_dtypes.bfloat16`` array (its strides are in elements)."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("filling a bfloat16 tensor needs ml_dtypes (pip install ml_dtypes)") from None
    ndim = tensor.ndim
    shape = tuple(tensor.shape[i] for i in range(ndim))
    if tensor.strides:
        strides = tuple(2 * tensor.strides[i] for i in range(ndim))
    else:  # NULL strides: C-contiguous
        strides = tuple(2 * int(np.prod(shape[i + 1:])) for i in range(ndim))
    if 0 in shape:
        return np.empty(shape, ml_dtypes.bfloat16)
    low = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + 2
    start = tensor.data + tensor.byte_offset
    memory = (ctypes.c_char * (high - low)).from_address(start + low)
    return np.ndarray(shape, ml_dtypes.bfloat16, buffer=memory, offset=-low, strides=strides)
