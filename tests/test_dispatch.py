"""Dispatch paths (scalar / AVX2 / AVX-512) and threads never change the bytes; the stream is pinned.

Every SIMD path the machine supports must give the scalar path's bytes for every filler kind and dtype,
for any piece (starting mid-block or mid-Box-Muller pair) and any thread count.  The gaussian is checked
against the exact Box-Muller values (ulp) and by a KS test at 10^7 samples; sha256 digests of fixed fills
pin the stream so it cannot change silently (``python tests/test_dispatch.py`` prints them).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fillers
from fillers import _kernels

PATHS = _kernels.simd_paths()
SIMD_PATHS = [p for p in PATHS if p != "scalar"]
DTYPES = [np.float32, np.float64]

# Shapes cross several CHUNKs, so thread counts > 1 really split the work.
SHAPE = (10, 3, 49, 49)  # 72030 elements; bilinear K = 49 (whole planes copied)
FILLERS = {
    "constant": 'type: "constant" value: 0.3',
    "uniform": 'type: "uniform" min: -2 max: 3',
    "gaussian": 'type: "gaussian" mean: 1 std: 2',
    "sparse": 'type: "gaussian" std: 0.5 sparse: 4',
    "xavier": 'type: "xavier"',
    "msra": 'type: "msra" variance_norm: FAN_OUT',
    "positive_unitball": 'type: "positive_unitball"',
    "bilinear": 'type: "bilinear"',
    "truncated_gaussian": 'type: "truncated_gaussian" mean: 0.5 std: 2 lower: -1 upper: 6',
    "dirac": 'type: "dirac" gain: 2',
}
# Pieces (offset, length): mid-block, mid-pair, odd lengths, across a chunk boundary, the tail.
PIECES = [(0, 1), (1, 2), (3, 5), (5, 33), (6, 31), (37, 1000), (32767, 70), (65531, 72030 - 65531)]


@pytest.fixture
def simd_path():
    """Set the dispatch path for one test and restore the default afterwards."""
    yield _kernels.set_simd_path
    _kernels.set_simd_path("auto")


def _fill(shape, filler, dtype, *, threads=1, offset=0, length=None, seed=7, stream=3):
    size = int(np.prod(shape))
    length = size - offset if length is None else length
    out = np.empty(length, dtype)
    return fillers.fill(out, filler, seed=seed, stream=stream, offset=offset, blob_shape=shape, threads=threads)


def _reference(shape, filler, dtype):
    _kernels.set_simd_path("scalar")
    try:
        return _fill(shape, filler, dtype)
    finally:
        _kernels.set_simd_path("auto")


def test_paths_listed():
    assert PATHS[0] == "scalar"
    assert set(PATHS) <= {"scalar", "avx2", "avx512"}
    _kernels.set_simd_path("auto")
    assert _kernels.simd_path() == PATHS[-1]  # the best


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", FILLERS)
@pytest.mark.parametrize("path", PATHS)
def test_path_and_threads_give_scalar_bytes(simd_path, path, kind, dtype):
    ref = _reference(SHAPE, FILLERS[kind], dtype)
    simd_path(path)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(_fill(SHAPE, FILLERS[kind], dtype, threads=threads).view(np.uint8),
                                      ref.view(np.uint8), err_msg=f"{path} threads={threads}")
    row = ref.size // SHAPE[0]
    pieces = [(row, row), (3 * row, 5 * row)] if kind == "positive_unitball" else PIECES
    for offset, length in pieces:
        got = _fill(SHAPE, FILLERS[kind], dtype, threads=2, offset=offset, length=length)
        assert got.tobytes() == ref[offset:offset + length].tobytes(), f"{path} piece {offset}+{length}"


@pytest.mark.parametrize("rows", [3, 8, 21])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_unitball_is_uniform_over_sequential_row_sums(rows, dtype):
    """positive_unitball = the uniform [0, 1) draws, each row divided by its sequential (Caffe) sum."""
    shape = (rows, 1237)
    u = fillers.fill(np.empty(shape, dtype), 'type: "uniform" min: 0 max: 1', seed=5, stream=2)
    expected = u / np.cumsum(u, axis=1, dtype=dtype)[:, -1:]
    for threads in (1, 2):
        got = fillers.fill(np.empty(shape, dtype), "positive_unitball", seed=5, stream=2, threads=threads)
        assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("k", [1, 2, 4, 5, 64, 65, 70])  # planes up to 4096 elements are built once
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bilinear_is_caffes_formula(k, dtype):
    """Every step in the blob's dtype, as Caffe's BilinearFiller<Dtype>."""
    shape = (2, 3, k, k)
    dt = np.dtype(dtype).type
    f = dt(np.ceil(k / 2.0))
    c = dt((k - 1) / (2.0 * float(f)))
    i = np.arange(np.prod(shape))
    x, y = (i % k).astype(dtype), ((i // k) % k).astype(dtype)
    expected = (dt(1) - np.abs(x / f - c)) * (dt(1) - np.abs(y / f - c))
    assert _fill(shape, "bilinear", dtype).tobytes() == expected.tobytes()
    offset = 3 * k + 1
    assert _fill(shape, "bilinear", dtype, offset=offset, length=2 * k * k).tobytes() == \
        expected[offset:offset + 2 * k * k].tobytes()


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_large_bilinear_and_long_rows(simd_path, path):
    """Bilinear planes too large to build once (row by row), unitball rows longer than a chunk."""
    for shape, kind in [((2, 3, 70, 70), "bilinear"), ((3, 40000), "positive_unitball"),
                        ((1, 70001), "positive_unitball")]:
        for dtype in DTYPES:
            ref = _reference(shape, FILLERS[kind], dtype)
            simd_path(path)
            for threads in (1, 2):
                assert _fill(shape, FILLERS[kind], dtype, threads=threads).tobytes() == ref.tobytes()


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(0, 3000), length=st.integers(0, 300), seed=st.integers(0, 2**64 - 1),
       kind=st.sampled_from(["uniform", "gaussian", "sparse"]), dtype=st.sampled_from(DTYPES))
def test_any_piece_any_path(offset, length, seed, kind, dtype):
    shape = (8, 420)
    try:
        _kernels.set_simd_path("scalar")
        ref = _fill(shape, FILLERS[kind], dtype, seed=seed, offset=offset, length=length)
        for path in SIMD_PATHS:
            _kernels.set_simd_path(path)
            got = _fill(shape, FILLERS[kind], dtype, seed=seed, offset=offset, length=length)
            assert got.tobytes() == ref.tobytes(), path
    finally:
        _kernels.set_simd_path("auto")


@pytest.mark.parametrize("where", ["block 2^32", "end of 2^63"])
def test_extreme_indices(simd_path, where):
    """Around block 2^32 the block counter's high word changes mid-group; the last elements of a blob of
    2^63 - 1 elements end inside a group."""
    for kind in ("uniform", "gaussian", "sparse"):
        for dtype in DTYPES:
            if where == "block 2^32":
                shape, offset = (2**35,), (2**34 if dtype == np.float32 else 2**33) - 37
            else:
                shape, offset = (2**63 - 1,), 2**63 - 1 - 77
            simd_path("scalar")
            ref = _fill(shape, FILLERS[kind], dtype, offset=offset, length=77)
            assert np.isfinite(ref).all()
            for path in SIMD_PATHS:
                simd_path(path)
                assert _fill(shape, FILLERS[kind], dtype, offset=offset, length=77).tobytes() == ref.tobytes()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sparse_extremes(simd_path, path, dtype):
    """sparse = shape[0] keeps everything (p = 1: the dense values); sparse = 0 keeps nothing (signed 0)."""
    simd_path(path)
    shape = (10, 1001)
    dense = _fill(shape, 'type: "gaussian" std: 2', dtype, offset=3)
    assert _fill(shape, 'type: "gaussian" std: 2 sparse: 10', dtype, offset=3).tobytes() == dense.tobytes()
    none = _fill(shape, 'type: "gaussian" std: 2 sparse: 0', dtype, offset=3)
    assert not none.any() and (np.signbit(none) == np.signbit(dense)).all()


def test_set_simd_path_errors():
    before = _kernels.simd_path()
    with pytest.raises(ValueError, match="unknown SIMD path 'sse9'"):
        _kernels.set_simd_path("sse9")
    assert _kernels.simd_path() == before


_SUBPROCESS = """
import hashlib, numpy as np, fillers, fillers._kernels as k
out = np.empty(4099, np.float32)
fillers.fill(out, 'type: "gaussian" std: 2 sparse: 3', seed=11, stream=5, offset=3, blob_shape=(7, 600))
print(k.simd_path(), hashlib.sha256(out.tobytes()).hexdigest())
"""


def _run_with_env(value: str, cwd) -> subprocess.CompletedProcess:
    """A fresh interpreter (outside the source tree, which has no compiled extension) with $FILLERS_SIMD."""
    env = dict(os.environ, **{_kernels.SIMD_ENV: value})
    return subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, capture_output=True, text=True,
                          cwd=cwd, check=False)


def test_environment_variable_forces_each_path(tmp_path):
    digests = set()
    for path in PATHS:
        proc = _run_with_env(path, tmp_path)
        assert proc.returncode == 0, proc.stderr
        name, digest = proc.stdout.split()
        assert name == path
        digests.add(digest)
    assert len(digests) == 1


def test_environment_variable_rejects_unknown_path(tmp_path):
    proc = _run_with_env("neon9", tmp_path)
    assert proc.returncode != 0
    assert "FILLERS_SIMD" in proc.stderr and "neon9" in proc.stderr


# ------------------------------------------------------------------------------------------------------
# The gaussian transform: accuracy against exact Box-Muller, and its distribution.

def _exact_box_muller(words: np.ndarray, dtype) -> np.ndarray:
    """z[2k], z[2k+1] of philox_fill.h's contract in extended precision (exact reduction in turns)."""
    w = words.astype(np.uint64)
    one = np.longdouble(1)
    if dtype == np.float32:
        k1, k2, bits = (w[0::2] >> np.uint64(8)) + np.uint64(1), w[1::2] >> np.uint64(8), 24
    else:
        a = (w[1::4] << np.uint64(32)) | w[0::4]
        b = (w[3::4] << np.uint64(32)) | w[2::4]
        k1, k2, bits = (a >> np.uint64(11)) + np.uint64(1), b >> np.uint64(11), 53
    u1 = k1.astype(np.longdouble) * np.ldexp(one, -bits)
    t = k2.astype(np.longdouble) * np.ldexp(one, -bits)
    q = np.round(4 * t)
    angle = 2 * np.longdouble("3.14159265358979323846264338327950288") * (t - q / 4)
    c, s = np.cos(angle), np.sin(angle)
    quadrant = q.astype(np.int64) % 4
    cos = np.choose(quadrant, [c, -s, -c, s])
    sin = np.choose(quadrant, [s, c, -s, -c])
    r = np.sqrt(-2 * np.log(u1))
    z = np.empty(2 * r.size, np.longdouble)
    z[0::2], z[1::2] = r * cos, r * sin
    return z


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs 80-bit long double for the reference")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gaussian_within_a_few_ulp(dtype):
    n = 200_000
    z = np.empty(n, dtype)
    fillers.fill(z, "gaussian", seed=3, stream=1)
    words = fillers.philox_raw(n if dtype == np.float32 else 2 * n, seed=3, stream=1)
    exact = _exact_box_muller(words, dtype)
    ulps = np.abs(z.astype(np.longdouble) - exact) / np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    assert ulps.max() <= 4, f"max error {float(ulps.max()):.2f} ulp at {float(exact[ulps.argmax()])}"
    assert ulps.mean() < 0.6


def _ks_normal(x: np.ndarray) -> tuple[float, float]:
    from scipy import special, stats

    s = np.sort(x).astype(np.float64)
    n = s.size
    cdf = special.ndtr(s)
    d = max(float((np.arange(1, n + 1) / n - cdf).max()), float((cdf - np.arange(n) / n).max()))
    return d, float(stats.kstwo.sf(d, n))


@pytest.mark.parametrize("dtype,n", [(np.float32, 10**7), (np.float64, 10**6)], ids=["float32", "float64"])
def test_gaussian_ks(dtype, n):
    """KS against N(0, 1) at a fixed seed (deterministic; p ~ U(0, 1) over seeds, so 1e-3 is far off)."""
    z = fillers.fill(np.empty(n, dtype), "gaussian", seed=20240607)
    d, p = _ks_normal(z)
    assert p > 1e-3, f"KS D={d:.3g} p={p:.3g}"


# ------------------------------------------------------------------------------------------------------
# Regression digests: the stream cannot change silently (see the compatibility policy, philox_fill.h).

REGRESSION = {
    # (filler, dtype, shape, seed, stream, offset, length): sha256 of the bytes
    ('type: "uniform" min: -1 max: 2', "float32", (64, 100), 1, 0, 5, 3001):
        "ac245f313ed590d98db6fcd2bb0746de6949bef3762b8f5ebad6e6c283444cb4",
    ('type: "uniform" min: -1 max: 2', "float64", (64, 100), 1, 0, 5, 3001):
        "56a35ee220c28eccb27c5a7d7ada3d91d0dc478ce044c7e37af8bad6cc8251e2",
    ('type: "gaussian" mean: 0.5 std: 3', "float32", (64, 100), 2**63 + 5, 9, 1, 4097):
        "077770bcec39825e3196edf4f0df0c5a8cec0c5b6a532212f16c23e8df54cc95",
    ('type: "gaussian" mean: 0.5 std: 3', "float64", (64, 100), 2**63 + 5, 9, 1, 4097):
        "e87b97c33ce5dd9b12b611f1bf1c61797070c7222d9867f4d8087d9654ac9c8c",
    ('type: "gaussian" std: 1 sparse: 16', "float32", (64, 100), 42, 2**40, 0, 6400):
        "0db0bea8f36402de2a7d5db76fda3660d3daa48c006811941c5071f7d8fcbea6",
    ('type: "positive_unitball"', "float64", (64, 100), 42, 1, 100, 2000):
        "45253769f157ea5284a305cb25d7a30d6ba92848ca0b76481938f809c76dafa8",
    ('type: "truncated_gaussian" mean: 0.5 std: 2 lower: -1 upper: 6', "float32", (64, 100), 3, 4, 7, 3001):
        "ac592df2f0b41eea1eadaef6654db54b62c381ba340ec1db20852344f497d29f",
    ('type: "truncated_gaussian" mean: 0.5 std: 2 lower: -1 upper: 6', "float64", (64, 100), 3, 4, 7, 3001):
        "9ddaf3e9ba7725f0935960a7d0a7d96c96d498075a0b3217ecf28f81a7c06c2b",
}


def _digest(filler, dtype, shape, seed, stream, offset, length) -> str:
    out = np.empty(length, dtype)
    fillers.fill(out, filler, seed=seed, stream=stream, offset=offset, blob_shape=shape)
    return hashlib.sha256(out.tobytes()).hexdigest()


@pytest.mark.parametrize("case", list(REGRESSION), ids=lambda c: f"{c[0].split()[1]}-{c[1]}")
def test_regression_digest(case):
    assert _digest(*case) == REGRESSION[case]


if __name__ == "__main__":  # regenerate the digests (only when the stream is meant to change)
    for case in REGRESSION:
        print(f"    {case!r}: {_digest(*case)!r},")
