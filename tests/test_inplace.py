"""Filling other libraries' memory in place: DLPack objects (torch tensors) and Python buffers."""
import array

import numpy as np
import pytest

import fillers


def test_buffer_filled_in_place():
    buf = array.array("f", [0.0] * 1000)
    assert fillers.fill(buf, "gaussian", seed=3) is buf
    np.testing.assert_array_equal(np.frombuffer(buf, np.float32),
                                  fillers.fill(np.empty(1000, np.float32), "gaussian", seed=3))
    mv = memoryview(bytearray(8 * 60)).cast("d", (6, 10))
    fillers.fill(mv, "xavier", seed=1)
    np.testing.assert_array_equal(np.asarray(mv), fillers.fill(np.empty((6, 10)), "xavier", seed=1))


class _DeviceArray:
    """A DLPack producer on a GPU (what a CuPy or CUDA JAX array reports)."""

    def __dlpack__(self, **kwargs):  # pragma: no cover - never reached
        raise AssertionError("fill() must check the device first")

    def __dlpack_device__(self):
        return (2, 1)


def test_dlpack_on_another_device_says_copy_to_host():
    with pytest.raises(fillers.ArrayError, match="device cuda:1.*CPU memory only: copy it to host"):
        fillers.fill(_DeviceArray(), "uniform")


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_tensor_filled_in_place(torch, dtype):
    t = torch.zeros(64, 3, 7, 7, dtype=getattr(torch, dtype))
    pointer = t.data_ptr()
    assert fillers.fill(t, "msra", seed=5) is t
    assert t.data_ptr() == pointer
    np.testing.assert_array_equal(t.numpy(), fillers.fill(np.empty((64, 3, 7, 7), dtype), "msra", seed=5))


def test_torch_strided_view_touches_nothing_else(torch):
    base = torch.full((10, 12), 42.0)
    view = base[2:8, ::3]
    fillers.fill(view, "uniform", seed=2)
    np.testing.assert_array_equal(view.numpy(), fillers.fill(np.empty((6, 4), np.float32), "uniform", seed=2))
    mask = np.ones((10, 12), bool)
    mask[2:8, ::3] = False
    assert (base.numpy()[mask] == 42).all()


def test_torch_tensor_requiring_grad_is_refused_by_dlpack(torch):
    # torch refuses to export a tensor that requires grad; fillers.torch detaches it (as torch.nn.init's no_grad).
    with pytest.raises(fillers.ArrayError, match="cannot be filled through DLPack.*detach"):
        fillers.fill(torch.zeros(3, requires_grad=True), "uniform")
