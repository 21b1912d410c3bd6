"""Statistics of the counter-based stream at fixed seeds.

Every test here is deterministic (fixed seeds), so none can fail by chance; the thresholds are still set
as if the samples were fresh, so that a real defect (a wrong scale, a biased transform, a lost bit) fails:

- KS and chi-square tests reject at p < 1e-6: a correct generator passes such a test with probability
  1 - 1e-6 per seed, while the defects above give p-values far below 1e-30 at these sample sizes.
- Moments are compared within 6 standard errors of the estimator (normal approximation).
"""
import json
import math

import numpy as np
import pytest
from google.protobuf import text_format
from scipy import stats

import fillers
from fillers._params import resolve

P_MIN = 1e-6
N = 1_000_000
DTYPES = [np.float32, np.float64]


def filled(shape, filler, dtype, seed):
    return fillers.fill(np.empty(shape, dtype), filler, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (-0.1, 0.3), (-5.0, -2.0)])
def test_uniform_ks_and_chi_square(lo, hi, dtype):
    x = filled(N, {"type": "uniform", "min": lo, "max": hi}, dtype, seed=101).astype(np.float64)
    lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
    assert x.min() >= lo32 and x.max() <= hi32
    assert stats.kstest(x, stats.uniform(lo32, hi32 - lo32).cdf).pvalue > P_MIN
    counts, _ = np.histogram(x, bins=1000, range=(lo32, hi32))
    assert stats.chisquare(counts).pvalue > P_MIN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (1.0, 2.0), (0.0, 0.01)])
def test_gaussian_ks_and_moments(mean, std, dtype):
    x = filled(N, {"type": "gaussian", "mean": mean, "std": std}, dtype, seed=202).astype(np.float64)
    z = (x - mean) / std
    assert stats.kstest(z, "norm").pvalue > P_MIN
    assert abs(z.mean()) < 6 / math.sqrt(N)
    assert abs(z.var() - 1) < 6 * math.sqrt(2 / N)
    assert abs(stats.skew(z)) < 6 * math.sqrt(6 / N)
    assert abs(stats.kurtosis(z)) < 6 * math.sqrt(24 / N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_pairs_are_independent(dtype):
    # Box-Muller pairs (elements 2k, 2k+1) must be uncorrelated, also in their squares.
    z = filled(N, "gaussian", dtype, seed=303).astype(np.float64).reshape(-1, 2)
    for a, b in ((z[:, 0], z[:, 1]), (z[:, 0] ** 2, z[:, 1] ** 2)):
        assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(len(a))


def test_gaussian_tails():
    # 2-sided tail mass beyond 3 and 4 sigma: binomial tests.
    z = filled(4 * N, "gaussian", np.float32, seed=404).astype(np.float64)
    for k in (3.0, 4.0):
        p = 2 * stats.norm.sf(k)
        assert stats.binomtest(int(np.sum(np.abs(z) > k)), z.size, p).pvalue > P_MIN


# A (256, 64, 3, 3) weight: fan_in = 64 * 9, fan_out = 256 * 9, and Caffe's n for each variance_norm.
FAN_SHAPE = (256, 64, 3, 3)
FAN_N = {"FAN_IN": 64 * 9, "FAN_OUT": 256 * 9, "AVERAGE": (64 * 9 + 256 * 9) / 2}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", list(FAN_N))
def test_xavier_is_uniform_with_caffe_scale(norm, dtype):
    scale = math.sqrt(3 / FAN_N[norm])
    x = filled(FAN_SHAPE, {"type": "xavier", "variance_norm": norm}, dtype, seed=505).ravel().astype(np.float64)
    assert np.abs(x).max() <= scale * (1 + 1e-6)
    assert stats.kstest(x, stats.uniform(-scale, 2 * scale).cdf).pvalue > P_MIN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", list(FAN_N))
def test_msra_is_normal_with_caffe_std(norm, dtype):
    std = math.sqrt(2 / FAN_N[norm])
    x = filled(FAN_SHAPE, {"type": "msra", "variance_norm": norm}, dtype, seed=606).ravel().astype(np.float64)
    assert stats.kstest(x / std, "norm").pvalue > P_MIN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparse, rows", [(1, 100), (15, 100), (50, 64)])
def test_sparse_keeps_each_element_with_probability_sparse_over_rows(sparse, rows, dtype):
    shape = (rows, 10_000)
    x = filled(shape, {"type": "gaussian", "std": 1, "sparse": sparse}, dtype, seed=707)
    p = sparse / rows
    kept = x != 0
    assert stats.binomtest(int(kept.sum()), x.size, p).pvalue > P_MIN
    # The kept values are the dense gaussian's values: same seed, same positions.
    dense = filled(shape, {"type": "gaussian", "std": 1}, dtype, seed=707)
    np.testing.assert_array_equal(x[kept], dense[kept])
    assert stats.kstest(x[kept].astype(np.float64), "norm").pvalue > P_MIN


@pytest.mark.parametrize("dtype", DTYPES)
def test_positive_unitball_rows_sum_to_one(dtype):
    x = filled((500, 3, 5, 5), "positive_unitball", dtype, seed=808)
    rows = x.reshape(500, -1).astype(np.float64)
    assert np.all(rows >= 0)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=100 * eps)
    # Before normalisation each element is U[0, 1): scaled back by the row sum it is uniform.
    # Before normalisation each element is U[0, 1): 75 of them sum to about 37.5, so 37.5 * x is close to
    # uniform (the row sum's relative spread is 1 / sqrt(3 * 75) = 6.7 %, hence the loose KS statistic).
    assert stats.kstest(rows.ravel() * 75 / 2, "uniform").statistic < 0.05


# --- agreement with real Caffe's statistics -------------------------------------------------------------

def caffe_cases(shared_dir):
    return json.loads((shared_dir / "caffe_vectors" / "cases.json").read_text())


def test_statistics_agree_with_real_caffe(shared_dir):
    """This stream is not Caffe's, but distributions, fans, bilinear and unitball must agree."""
    checked = 0
    for case in caffe_cases(shared_dir):
        caffe = np.load(shared_dir / "caffe_vectors" / case["file"])
        dtype = np.float32 if case["dtype"] == "float" else np.float64
        assert caffe.dtype == dtype
        ours = np.stack([filled(case["shape"], case["filler"], dtype, seed=s) for s in range(len(caffe))])
        kind = text_format.Parse(case["filler"], fillers.FillerParameter())
        label = f"case {case['id']} ({case['filler']}, {case['shape']}, {case['dtype']})"
        if kind.type in ("constant", "bilinear"):
            assert ours.tobytes() == caffe.tobytes(), label  # no randomness: identical
        elif kind.type == "positive_unitball":
            axes = tuple(range(2, caffe.ndim))
            np.testing.assert_allclose(ours.sum(axis=axes), caffe.sum(axis=axes), rtol=1e-4, err_msg=label)
        else:
            assert stats.ks_2samp(ours.ravel(), caffe.ravel(), method="asymp").pvalue > P_MIN, label
            if kind.type in ("uniform", "xavier"):
                # Our bounds (fans, scale) hold Caffe's values, and ours reach most of them.
                plan = resolve(kind, tuple(case["shape"]), dtype)
                for values in (ours, caffe):
                    assert plan.a <= values.min() and values.max() <= plan.b, label
                if ours.size > 1000:
                    assert ours.min() < plan.a + 0.01 * (plan.b - plan.a), label
            if kind.sparse >= 0:
                assert stats.ks_2samp(ours.ravel() == 0, caffe.ravel() == 0, method="asymp").pvalue > P_MIN, label
        checked += 1
    assert checked == 84
