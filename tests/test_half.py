"""float16 and bfloat16 fills: every element is the float32 fill's value rounded to nearest even."""
import numpy as np
import pytest

import fillers
from fillers import _kernels
from fillers._params import FILLER_TYPES

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes (pip install ml_dtypes)")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALVES = [np.dtype(np.float16), BF16]
SHAPES = {"bilinear": (4, 3, 6, 6), "eye": (30, 40), "orthogonal": (48, 80)}
EXTRA = ['type: "gaussian" std: 0.5 sparse: 10', 'type: "uniform" min: -70000 max: 70000',
         'type: "gaussian" std: 1e-6', 'type: "constant" value: 65520']


def _bits(a):
    return a.view(np.uint16)


@pytest.mark.parametrize("path", _kernels.simd_paths())
def test_rounding_of_every_float32_class(path):
    # A sweep of float32 bit patterns (every exponent, ties and near-ties in the low bits) plus the edges:
    # float16 subnormals, the largest finite float16 and the overflow threshold 65520.
    sweep = np.arange(0, 2**32, 2**32 // (1 << 14), dtype=np.uint64).astype(np.uint32)
    low = np.arange(-64, 64, dtype=np.int64).astype(np.uint32)  # wraps: patterns just below each sweep point
    edges = np.array([0x38800000, 0x387fffff, 0x33800000, 0x33000000, 0x33000001, 0x477fe000, 0x477fdfff,
                      0x477fefff, 0x477ff000, 0x7f7fffff, 0x00000001, 0x7f800000], np.uint32)
    bits = np.concatenate([(sweep[:, None] + low).ravel(), edges, edges | 0x80000000,
                           (0x38800000 - np.arange(1 << 16)).astype(np.uint32)])  # all float16 subnormals' sources
    values = bits.view(np.float32)
    values = values[~np.isnan(values)]
    for dtype, bf16 in ((np.float16, False), (BF16, True)):
        out = np.empty(values.size, np.uint16)
        _kernels.set_simd_path(path)
        try:
            _kernels.round_half(values, out, bf16)
        finally:
            _kernels.set_simd_path("auto")
        with np.errstate(over="ignore"):  # numpy warns when it rounds to infinity, as it should
            expected = _bits(values.astype(dtype))
        np.testing.assert_array_equal(out, expected, err_msg=str(dtype))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("filler", list(FILLER_TYPES) + EXTRA)
def test_every_filler_is_the_float32_fill_rounded(filler, dtype):
    shape = SHAPES.get(filler, (64, 32, 3, 3))
    f32 = fillers.fill(np.empty(shape, np.float32), filler, seed=13, stream=2)
    half = fillers.fill(np.empty(shape, dtype), filler, seed=13, stream=2)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_bits(half), _bits(f32.astype(dtype)))


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_pieces_threads_and_paths(dtype):
    shape = (7, 40000)  # positive_unitball rows longer than a tile; chunks split across threads
    for filler in ("positive_unitball", 'type: "gaussian" std: 2 sparse: 3', "truncated_gaussian"):
        whole = fillers.fill(np.empty(shape, dtype), filler, seed=5, threads=1)
        for path in _kernels.simd_paths():
            _kernels.set_simd_path(path)
            try:
                got = fillers.fill(np.empty(shape, dtype), filler, seed=5, threads=2)
            finally:
                _kernels.set_simd_path("auto")
            assert got.tobytes() == whole.tobytes(), (filler, path)
        piece = fillers.fill(np.empty((2, 40000), dtype), filler, seed=5, offset=3 * 40000, blob_shape=shape)
        assert piece.tobytes() == whole[3:5].tobytes(), filler
        view = np.zeros((14, 40000), dtype)[::2]
        assert fillers.fill(view, filler, seed=5).tobytes() == whole.tobytes()


def test_caffe_stream_refuses_half():
    with pytest.raises(TypeError, match="float32 or float64.*not float16"):
        fillers.fill(np.empty(10, np.float16), "uniform", rng=fillers.CaffeRNG(1))


def test_torch_half_tensors_in_place():
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    for tdtype, dtype in ((torch.float16, np.float16), (torch.bfloat16, BF16)):
        t = torch.zeros(64, 3, 5, 5, dtype=tdtype)
        pointer = t.data_ptr()
        assert fillers.fill(t, "msra", seed=9) is t and t.data_ptr() == pointer
        ref = fillers.fill(np.empty((64, 3, 5, 5), dtype), "msra", seed=9)
        np.testing.assert_array_equal(t.view(torch.int16).numpy().view(np.uint16), _bits(ref))
        strided = torch.zeros(10, 8, dtype=tdtype)[:, ::2].t()  # non-contiguous, transposed
        fillers.fill(strided, "uniform", seed=1)
        ref = fillers.fill(np.empty((4, 10), dtype), "uniform", seed=1)
        np.testing.assert_array_equal(strided.contiguous().view(torch.int16).numpy().view(np.uint16), _bits(ref))
