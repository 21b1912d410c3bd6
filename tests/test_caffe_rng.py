"""CaffeRNG: real Caffe's outputs bit for bit, the raw MT19937 stream, state handling, statistics, errors."""
import copy
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fillers
from fillers import CaffeRNG

SEEDS = [0, 1, 1701, 2**31, 2**32 - 1]


def legacy_mt19937(seed):
    bitgen = np.random.MT19937()
    bitgen._legacy_seeding(seed)
    return bitgen


def caffe_fill(shape, filler, rng, dtype=np.float32):
    return fillers.fill(np.empty(shape, dtype), filler, rng=rng)


# --- ground truth: real Caffe 1.0 (CPU, Boost 1.74) ------------------------------------------------------

def test_every_known_case_from_real_caffe(shared_dir):
    """Each case: `fills` blobs filled one after another from one seeded stream, compared byte for byte."""
    folder = shared_dir / "caffe_vectors"
    cases = json.loads((folder / "cases.json").read_text())
    assert cases
    mismatched = []
    for case in cases:
        dtype = {"float": np.float32, "double": np.float64}[case["dtype"]]
        expected = np.load(folder / case["file"])
        rng = CaffeRNG(case["seed"])
        got = np.empty((case["fills"], *case["shape"]), dtype)
        for block in got:
            fillers.fill(block, case["filler"], rng=rng)
        if got.dtype != expected.dtype or got.shape != expected.shape or got.tobytes() != expected.tobytes():
            mismatched.append(f"case {case['id']}: {case['filler']} {case['shape']} {case['dtype']}")
    assert not mismatched, f"{len(mismatched)}/{len(cases)} cases differ from Caffe:\n" + "\n".join(mismatched)


# --- the raw stream ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_raw_equals_numpy_mt19937_legacy_seeding(seed):
    expected = legacy_mt19937(seed).random_raw(3 * 624 + 5).astype(np.uint32)
    assert np.array_equal(CaffeRNG(seed).raw(3 * 624 + 5), expected)


@pytest.mark.parametrize("seed", [0, 5489, 2**32 - 1])
def test_state_has_numpys_layout_and_round_trips_through_numpy(seed):
    rng, bitgen = CaffeRNG(seed), legacy_mt19937(seed)
    for n in (0, 1, 623, 700):
        rng.raw(n)
        bitgen.random_raw(n)
        ours, theirs = rng.state, bitgen.state
        assert ours["bit_generator"] == theirs["bit_generator"] == "MT19937"
        assert np.array_equal(ours["state"]["key"], theirs["state"]["key"])
        assert ours["state"]["pos"] == theirs["state"]["pos"]
    numpy_copy = np.random.MT19937()
    numpy_copy.state = rng.state
    assert np.array_equal(numpy_copy.random_raw(1000).astype(np.uint32), rng.raw(1000))
    restored = CaffeRNG(0)
    restored.state = bitgen.state  # a bare numpy state: seed and words drawn unknown
    assert restored.seed is None and restored.drawn is None
    assert np.array_equal(restored.raw(50), bitgen.random_raw(50).astype(np.uint32))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1500), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_raw_in_pieces_equals_raw_at_once(pieces, seed):
    rng = CaffeRNG(seed)
    got = np.concatenate([rng.raw(n) for n in pieces])
    assert np.array_equal(got, CaffeRNG(seed).raw(sum(pieces)))
    assert rng.drawn == sum(pieces)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["uniform", "gaussian", "xavier"]), st.sampled_from([np.float32, np.float64]),
       st.lists(st.integers(1, 1400), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_consecutive_1d_fills_continue_one_sequence(kind, dtype, sizes, seed):
    """No distribution keeps state between samples: n then m samples are the first n + m samples."""
    if kind == "xavier":  # the scale depends on the size; compare with the same scale
        kind = {"type": "uniform", "min": -0.5, "max": 0.5}
    rng = CaffeRNG(seed)
    pieces = [caffe_fill((n,), kind, rng, dtype) for n in sizes]
    whole = caffe_fill((sum(sizes),), kind, CaffeRNG(seed), dtype)
    assert np.concatenate(pieces).tobytes() == whole.tobytes()


def test_words_per_sample_match_boost():
    """uniform: one word per sample; gaussian: ~1.04 (float) and ~2.05 (double) words per sample."""
    n = 200_000
    rng = CaffeRNG(3)
    caffe_fill((n,), {"type": "uniform", "min": -1, "max": 1}, rng)
    assert rng.drawn == n
    for dtype, low, high in [(np.float32, 1.02, 1.06), (np.float64, 2.03, 2.07)]:
        rng = CaffeRNG(3)
        caffe_fill((n,), "gaussian", rng, dtype)
        assert low * n < rng.drawn < high * n
    rng = CaffeRNG(3)
    caffe_fill((100, 20), {"type": "gaussian", "sparse": 0}, rng, np.float64)  # p == 0: no Bernoulli draw
    dense = CaffeRNG(3)
    caffe_fill((100, 20), "gaussian", dense, np.float64)
    assert rng == dense


# --- state: copy, pickle, equality, repr -------------------------------------------------------------------

@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda r: pickle.loads(pickle.dumps(r))])
def test_clones_continue_identically_and_independently(clone):
    rng = CaffeRNG(1701)
    caffe_fill((64, 3, 7, 7), "xavier", rng)
    twin = clone(rng)
    assert twin == rng and twin is not rng
    assert twin.seed == 1701 and twin.drawn == rng.drawn
    a = caffe_fill((10, 300), {"type": "gaussian", "std": 0.01, "sparse": 3}, rng, np.float64)
    assert twin != rng
    b = caffe_fill((10, 300), {"type": "gaussian", "std": 0.01, "sparse": 3}, twin, np.float64)
    assert a.tobytes() == b.tobytes() and twin == rng


def test_state_restores_a_saved_point():
    rng = CaffeRNG(42)
    rng.raw(1000)
    saved = rng.state
    first = caffe_fill((50, 7), "msra", rng, np.float64)
    rng.state = saved
    assert rng.drawn == 1000
    assert caffe_fill((50, 7), "msra", rng, np.float64).tobytes() == first.tobytes()


def test_equality_and_repr():
    assert CaffeRNG(5) == CaffeRNG(5) and CaffeRNG(5) != CaffeRNG(6)
    assert CaffeRNG(5) != "CaffeRNG(5)"
    with pytest.raises(TypeError):
        hash(CaffeRNG(5))
    rng = CaffeRNG(7)
    rng.raw(3)
    assert repr(rng) == "CaffeRNG(seed=7)  # 3 words drawn"
    rng.state = legacy_mt19937(7).state
    assert "restored" in repr(rng)


# --- statistics (fixed seeds, thresholds that a correct stream never crosses) -------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_is_standard_normal(dtype):
    x = caffe_fill((1_000_000,), "gaussian", CaffeRNG(20240601), dtype).astype(np.float64)
    assert stats.kstest(x, "norm").pvalue > 1e-4
    # The ziggurat's tail (|x| beyond Boost's x1 = 3.4426...) has its normal share: 6-sigma binomial bound.
    p = 2 * stats.norm.sf(3.4426198558966521)
    tail = np.count_nonzero(np.abs(x) > 3.4426198558966521)
    assert abs(tail - p * x.size) < 6 * np.sqrt(p * x.size)
    assert np.abs(x).max() > 4.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_is_uniform(dtype):
    x = caffe_fill((1_000_000,), {"type": "uniform", "min": -2, "max": 3}, CaffeRNG(99), dtype)
    assert x.min() >= -2 and x.max() <= 3
    assert stats.kstest(x.astype(np.float64), "uniform", args=(-2, 5)).pvalue > 1e-4


@pytest.mark.parametrize("shape", [(4000,), (40, 100), (8, 5, 100), (4, 2, 5, 100), (2, 2, 2, 5, 100)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nd_fillers_at_other_seeds(shape, dtype):
    count = int(np.prod(shape))
    fan_in = count // shape[0]
    rng = CaffeRNG(123457)
    w = caffe_fill(shape, "xavier", rng, dtype)
    scale = np.sqrt(3 / fan_in)
    assert np.abs(w).max() <= scale * (1 + 1e-6)
    assert abs(w.std() / (scale / np.sqrt(3)) - 1) < 6 / np.sqrt(count)  # sd of the estimate: 0.45 / sqrt(n)
    m = caffe_fill(shape, "msra", rng, dtype)
    std = np.sqrt(2 / fan_in)
    assert abs(m.std() / std - 1) < 6 / np.sqrt(2 * count)
    u = caffe_fill(shape, "positive_unitball", rng, dtype)
    assert np.all(u >= 0)
    assert np.allclose(u.reshape(shape[0], -1).sum(axis=1), 1, rtol=1e-5)
    sparse = 2
    g = caffe_fill(shape, {"type": "gaussian", "sparse": sparse}, rng, dtype)
    p = min(sparse / shape[0], 1.0)
    kept = np.count_nonzero(g)
    assert abs(kept - p * count) <= 6 * np.sqrt(count * p * (1 - p)) + 1


def test_sparse_mask_turns_negative_values_into_negative_zero():
    g = caffe_fill((100, 50), {"type": "gaussian", "sparse": 10}, CaffeRNG(8))
    zeros = g[g == 0]
    assert np.signbit(zeros).any() and (~np.signbit(zeros)).any()


# --- layouts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_view_gets_the_contiguous_values(dtype):
    big = np.zeros((20, 3, 14, 7), dtype)
    view = big[:, :, ::2, :]
    fillers.fill(view, "msra", rng=CaffeRNG(11))
    expected = caffe_fill(view.shape, "msra", CaffeRNG(11), dtype)
    assert view.tobytes() == expected.tobytes()
    assert np.all(big[:, :, 1::2, :] == 0)


def test_draw_free_fillers_do_not_touch_the_stream():
    rng = CaffeRNG(1)
    caffe_fill((3, 3, 4, 4), "bilinear", rng)
    caffe_fill((10,), {"type": "constant", "value": 2}, rng)
    assert rng == CaffeRNG(1)


# --- errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1.0, "1", None, True, np.float32(3)])
def test_seed_must_be_an_int(seed):
    with pytest.raises(TypeError, match="seed"):
        CaffeRNG(seed)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seed_must_fit_32_bits(seed):
    with pytest.raises(ValueError, match="seed"):
        CaffeRNG(seed)


def test_numpy_integer_seed_is_accepted():
    assert CaffeRNG(np.uint32(2**32 - 1)) == CaffeRNG(2**32 - 1)


@pytest.mark.parametrize("kwargs, match", [({"offset": 5}, "offset"), ({"blob_shape": (20, 10)}, "blob_shape"),
                                           ({"threads": 2}, "threads")])
def test_pieces_and_threads_are_refused(kwargs, match):
    rng = CaffeRNG(1)
    blob = np.zeros((10, 10), np.float32)
    with pytest.raises(ValueError, match=match):
        fillers.fill(blob, "gaussian", rng=rng, **kwargs)
    assert rng == CaffeRNG(1) and not blob.any()


def test_rng_must_be_a_caffe_rng():
    with pytest.raises(TypeError, match="CaffeRNG"):
        fillers.fill(np.zeros(3, np.float32), "gaussian", rng=np.random.default_rng(1))


@pytest.mark.parametrize("n, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError)])
def test_raw_count_errors(n, error):
    with pytest.raises(error):
        CaffeRNG(1).raw(n)


@pytest.mark.parametrize("state", [
    {"bit_generator": "PCG64", "state": {}},
    {"bit_generator": "MT19937", "state": {"key": np.zeros(10, np.uint32), "pos": 0}},
    {"bit_generator": "MT19937", "state": {"key": np.zeros(624, np.uint32), "pos": 625}},
    {"bit_generator": "MT19937", "state": {"key": np.full(624, -1), "pos": 0}},
    {"bit_generator": "MT19937", "state": {"key": np.zeros(624, np.uint32), "pos": 3}, "seed": 1, "drawn": 5},
    "not a dict",
])
def test_bad_states_are_refused(state):
    rng = CaffeRNG(1)
    with pytest.raises(ValueError):
        rng.state = state
    assert rng == CaffeRNG(1)


def test_private_fill_checks_its_buffer():
    plan = fillers._params.resolve(fillers.FillerParameter(type="gaussian"), (8,), np.dtype(np.float32))
    rng = CaffeRNG(1)
    with pytest.raises(TypeError):
        rng._fill(plan, np.zeros(8, np.float64))
    with pytest.raises(ValueError):
        rng._fill(plan, np.zeros(16, np.float32)[::2])
    read_only = np.zeros(8, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        rng._fill(plan, read_only)
    assert rng == CaffeRNG(1)


def test_concurrent_use_is_detected_not_interleaved():
    """A second thread using the generator mid-fill gets RuntimeError; the fill itself is unaffected."""
    n = 4_000_000
    expected = caffe_fill((n,), "gaussian", CaffeRNG(5))
    for _ in range(5):
        rng = CaffeRNG(5)
        blob = np.empty(n, np.float32)
        worker = threading.Thread(target=fillers.fill, args=(blob, "gaussian"), kwargs={"rng": rng})
        refused = False
        worker.start()
        while worker.is_alive() and not refused:
            try:
                rng.raw(0)
            except RuntimeError as err:
                refused = "another thread" in str(err)
        worker.join()
        assert blob.tobytes() == expected.tobytes()
        if refused:
            return
    pytest.fail("a concurrent call during a 4M-sample fill was never refused")


# --- generated tables ---------------------------------------------------------------------------------------

def test_ziggurat_tables_are_current():
    pytest.importorskip("mpmath")
    script = Path(__file__).resolve().parents[1] / "tools" / "gen_caffe_tables.py"
    if not script.exists():
        pytest.skip(f"{script} not found (tests run outside the source tree)")
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_is_caffes_formula_in_dtype_arithmetic(dtype):
    """BilinearFiller<Dtype>: f = ceil(K / 2.), c = Dtype((K - 1) / (2. * f)), every later step in Dtype."""
    T = np.dtype(dtype).type
    for k in range(1, 33):
        f = T(np.ceil(k / 2.0))
        c = T((k - 1) / (2.0 * float(f)))
        i = np.arange(2 * 3 * k * k)
        x, y = (i % k).astype(dtype), ((i // k) % k).astype(dtype)
        expected = (T(1) - np.abs(x / f - c)) * (T(1) - np.abs(y / f - c))
        got = fillers.fill(np.empty((2, 3, k, k), dtype), "bilinear", rng=CaffeRNG(1))
        assert got.tobytes() == expected.astype(dtype).tobytes(), f"K={k}"
