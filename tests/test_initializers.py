"""The modern initializers (torch.nn.init's and Keras'): their formulas, distributions and errors.

Each type is checked against the reference formula written out here (torch.nn.init's and Keras' documented
arithmetic) with a one-sample KS test against scipy's distribution, and, where torch is installed, against
torch.nn.init itself (the same std/bound, and a two-sample KS test between torch's draw and ours).  Seeds
are fixed, so nothing fails by chance; the thresholds are those of tests/test_statistics.py (p < 1e-6
rejects: a wrong scale or a wrong fan gives p far below 1e-30 at these sizes).
"""
import math

import numpy as np
import pytest
from google.protobuf import text_format
from scipy import special, stats

import fillers
from fillers import _kernels, _orthogonal
from fillers._params import resolve

P_MIN = 1e-6
DTYPES = [np.float32, np.float64]
SHAPE = (256, 96, 3, 3)  # fan_in 864, fan_out 2304
FAN_IN, FAN_OUT = 96 * 9, 256 * 9


def filled(filler, shape=SHAPE, dtype=np.float32, seed=11):
    return fillers.fill(np.empty(shape, dtype), filler, seed=seed).astype(np.float64).ravel()


def ks(x, dist):
    return stats.kstest(x, dist.cdf).pvalue


# ------------------------------------------------------------------------------------------------------
# Reference formulas (torch.nn.init and Keras) and the filler that must match each.

GAIN_RELU = math.sqrt(2.0)
KERAS_TRUNC = 0.87962566103423978


def _uniform(bound):
    return stats.uniform(-bound, 2 * bound)


def _keras_truncated(variance):
    std = math.sqrt(variance) / KERAS_TRUNC
    return stats.truncnorm(-2, 2, scale=std)


REFERENCES = {
    # torch xavier_uniform_(gain=g): U(-a, a), a = g sqrt(6 / (fan_in + fan_out))
    "xavier AVERAGE gain": ({"type": "xavier", "variance_norm": "AVERAGE", "gain": 1.5},
                            _uniform(1.5 * math.sqrt(6 / (FAN_IN + FAN_OUT)))),
    # torch xavier_normal_(gain=g): N(0, g sqrt(2 / (fan_in + fan_out)))
    "xavier_normal": ({"type": "xavier_normal", "gain": 0.5},
                      stats.norm(scale=0.5 * math.sqrt(2 / (FAN_IN + FAN_OUT)))),
    # torch kaiming_uniform_ defaults (a=0, fan_in, leaky_relu): bound = sqrt(2) sqrt(3 / fan_in)
    "kaiming_uniform": ({"type": "kaiming_uniform"}, _uniform(GAIN_RELU * math.sqrt(3 / FAN_IN))),
    # torch kaiming_uniform_(a=sqrt(5)) (nn.Linear/Conv default): gain sqrt(2 / 6)
    "kaiming_uniform a=sqrt5": ({"type": "kaiming_uniform", "negative_slope": math.sqrt(5)},
                                _uniform(math.sqrt(2 / 6) * math.sqrt(3 / FAN_IN))),
    # torch kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, sqrt(2) / sqrt(fan_out))
    "kaiming_normal fan_out relu": ({"type": "kaiming_normal", "variance_norm": "FAN_OUT",
                                     "nonlinearity": "relu"}, stats.norm(scale=GAIN_RELU / math.sqrt(FAN_OUT))),
    "kaiming_normal tanh": ({"type": "kaiming_normal", "nonlinearity": "tanh"},
                            stats.norm(scale=(5 / 3) / math.sqrt(FAN_IN))),
    # Keras LecunUniform: U(-sqrt(3 / fan_in), +); LecunNormal: truncated normal, variance 1 / fan_in
    "lecun_uniform": ({"type": "lecun_uniform"}, _uniform(math.sqrt(3 / FAN_IN))),
    "lecun_normal": ({"type": "lecun_normal"}, _keras_truncated(1 / FAN_IN)),
    # Keras VarianceScaling(scale, mode, distribution)
    "variance_scaling he_normal": ({"type": "variance_scaling", "scale": 2}, _keras_truncated(2 / FAN_IN)),
    "variance_scaling fan_avg uniform": (
        {"type": "variance_scaling", "scale": 1, "variance_norm": "AVERAGE", "distribution": "UNIFORM"},
        _uniform(math.sqrt(3 / ((FAN_IN + FAN_OUT) / 2)))),
    "variance_scaling fan_out untruncated": (
        {"type": "variance_scaling", "scale": 0.5, "variance_norm": "FAN_OUT", "distribution": "UNTRUNCATED_NORMAL"},
        stats.norm(scale=math.sqrt(0.5 / FAN_OUT))),
    # Caffe's msra with a gain, and the torch fan rule (the same fans for a 4-D blob)
    "msra TORCH rule": ({"type": "msra", "fan_rule": "TORCH"}, stats.norm(scale=math.sqrt(2 / FAN_IN))),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(REFERENCES))
def test_matches_reference_formula(name, dtype):
    filler, dist = REFERENCES[name]
    x = filled(filler, dtype=dtype)
    assert ks(x, dist) > P_MIN
    lo, hi = dist.support()
    assert lo * (1 + 1e-6) <= x.min() and x.max() <= hi * (1 + 1e-6)


def test_a_wrong_scale_fails_the_reference_test():
    # The test above can fail: xavier FAN_IN is not torch's xavier (fan_avg).
    x = filled({"type": "xavier"})
    assert ks(x, _uniform(math.sqrt(6 / (FAN_IN + FAN_OUT)))) < 1e-30


@pytest.mark.parametrize("name, gain", [("linear", 1), ("conv3d", 1), ("conv_transpose2d", 1), ("sigmoid", 1),
                                        ("tanh", 5 / 3), ("relu", math.sqrt(2)), ("selu", 0.75)])
def test_nonlinearity_gains(name, gain):
    assert fillers.nonlinearity_gain(name) == pytest.approx(gain, rel=1e-15)


def test_leaky_relu_gain_and_errors():
    assert fillers.nonlinearity_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04), rel=1e-15)
    with pytest.raises(fillers.FillerError, match="unknown nonlinearity 'gelu'.*leaky_relu"):
        fillers.nonlinearity_gain("gelu")
    with pytest.raises(fillers.FillerError, match="leaky_relu only"):
        fillers.nonlinearity_gain("relu", 0.1)


# ------------------------------------------------------------------------------------------------------
# Fan rules

@pytest.mark.parametrize("shape, rule, fans", [
    ((30, 20), "CAFFE", (20, 30)), ((30, 20), "TORCH", (20, 30)), ((30, 20), "KERAS", (30, 20)),
    ((3, 3, 16, 32), "KERAS", (144, 288)), ((32, 16, 3, 3), "TORCH", (144, 288)), ((32, 16, 3, 3), "CAFFE", (144, 288)),
    ((50,), "CAFFE", (1, 50)), ((50,), "KERAS", (50, 50)),
])
def test_fan_rules(shape, rule, fans):
    for norm, n in (("FAN_IN", fans[0]), ("FAN_OUT", fans[1]), ("AVERAGE", sum(fans) / 2)):
        param = fillers.FillerParameter(type="kaiming_normal", nonlinearity="linear", fan_rule=rule, variance_norm=norm)
        assert resolve(param, shape, np.float64).b == pytest.approx(1 / math.sqrt(n), rel=1e-15)


def test_torch_rule_needs_two_axes():
    with pytest.raises(fillers.FillerError, match="fan_rule TORCH needs a blob with at least 2 axes"):
        fillers.fill(np.empty(10, np.float32), {"type": "kaiming_uniform", "fan_rule": "TORCH"})


# ------------------------------------------------------------------------------------------------------
# truncated_gaussian: the inverse CDF, its tails, its bounds

def _u53(seed, n):
    w = fillers.philox_raw(2 * n, seed=seed).astype(np.uint64)
    return ((w[1::2] << np.uint64(32) | w[0::2]) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def test_inverse_cdf_within_a_few_ulp_of_scipy():
    # p_lo = 2^-1022, p_span = 1: the kernel returns ndtri(p) for p = u (+ 2^-1022), unclipped.
    n = 1 << 18
    got = np.empty(n)
    _kernels.truncated(got, 5, 0, 0, 2.0**-1022, 1.0, 0.0, 1.0, -40.0, 40.0, 1)
    ref = special.ndtri(np.minimum(_u53(5, n) + 2.0**-1022, 1 - 2.0**-53))
    assert (np.abs(got - ref) <= 8 * np.spacing(np.abs(ref))).all()
    tails = np.array([1e-300, 1e-100, 1e-20, 1e-9, 0.02, 0.075, 0.4, 0.925, 1 - 1e-12])
    for p in tails:
        one = np.empty(1)
        _kernels.truncated(one, 0, 0, 0, p, 0.0, 0.0, 1.0, -40.0, 40.0, 1)
        assert abs(one[0] - special.ndtri(p)) <= 8 * np.spacing(abs(special.ndtri(p))), p


TRUNCATIONS = [(0.0, 1.0, None, None), (1.0, 0.5, -0.5, 3.0), (0.0, 1.0, 2.5, 3.5), (0.0, 1.0, -6.0, -4.5),
               (0.0, 2.0, 7.0, 12.0), (-1.0, 0.1, -1.05, -1.04)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mean, std, lower, upper", TRUNCATIONS)
def test_truncated_gaussian_ks(mean, std, lower, upper, dtype):
    filler = {"type": "truncated_gaussian", "mean": mean, "std": std}
    if lower is not None:
        filler.update(lower=lower, upper=upper)
    dt = np.dtype(dtype).type
    m, s = float(np.float32(mean)), float(np.float32(std))  # proto floats
    lo = float(np.float32(lower)) if lower is not None else float(dt(m - 2 * s))
    hi = float(np.float32(upper)) if upper is not None else float(dt(m + 2 * s))
    x = filled(filler, shape=(1 << 18,), dtype=dtype, seed=21)
    assert lo <= x.min() and x.max() <= hi
    dist = stats.truncnorm((lo - m) / s, (hi - m) / s, loc=m, scale=s)
    assert ks(x, dist) > P_MIN
    # the tail mass beyond the interval's 99.9 % point (a truncated tail drawn wrong fails this)
    q = dist.ppf(0.999)
    assert stats.binomtest(int((x > q).sum()), x.size, 0.001).pvalue > P_MIN


def test_truncated_float32_is_the_float64_value_rounded():
    filler = 'type: "truncated_gaussian" mean: 0.25 std: 0.5 lower: -1 upper: 0.75'
    x32 = fillers.fill(np.empty(100_003, np.float32), filler, seed=3)
    x64 = fillers.fill(np.empty(100_003, np.float64), filler, seed=3)
    np.testing.assert_array_equal(x32, x64.astype(np.float32))


@pytest.mark.parametrize("filler, message", [
    ({"type": "truncated_gaussian", "lower": 1, "upper": 1}, "lower must be < upper"),
    ({"type": "truncated_gaussian", "std": 0}, "std must be > 0"),
    ({"type": "truncated_gaussian", "lower": 40, "upper": 41}, "too far in the tail"),
    ({"type": "truncated_gaussian", "upper": float("inf")}, "upper must be finite"),
])
def test_truncated_gaussian_errors(filler, message):
    with pytest.raises(fillers.FillerError, match=message):
        fillers.fill(np.empty(10, np.float32), filler)


# ------------------------------------------------------------------------------------------------------
# orthogonal, eye, dirac, identity

@pytest.mark.parametrize("shape", [(64, 64), (32, 200), (300, 40), (16, 8, 3, 3), (64, 512), (700, 96)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_orthogonal_is_orthogonal_to_dtype_precision(shape, dtype):
    w = fillers.fill(np.empty(shape, dtype), {"type": "orthogonal", "gain": 2}, seed=4)
    m = w.reshape(shape[0], -1).astype(np.float64) / 2
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    eps = np.finfo(dtype).eps
    assert np.abs(small - np.eye(small.shape[0])).max() < 4 * math.sqrt(max(m.shape)) * eps


def test_orthogonal_is_haar_distributed():
    # The entries of a Haar orthogonal n x n matrix are distributed as the first coordinate of a uniform point
    # on the sphere: sqrt(n) x ~ t-like with density (1 - x^2)^((n-3)/2); x^2 ~ Beta(1/2, (n-1)/2).
    n = 200
    w = fillers.fill(np.empty((n, n)), "orthogonal", seed=8)
    assert ks(w.ravel() ** 2, stats.beta(0.5, (n - 1) / 2)) > P_MIN
    # sign-corrected QR: without it, the diagonal of R would be all positive but Q's sign pattern biased
    assert abs(np.mean(np.sign(np.diagonal(w)))) < 6 / math.sqrt(n)


@pytest.mark.parametrize("shape", [(96, 400), (400, 96)])
def test_orthogonal_cholesky_path_is_the_sign_corrected_qr_factor(shape, monkeypatch):
    # float32, m >= 2n, n >= 32: mixed-precision CholeskyQR.  R's diagonal is positive, so Q must equal the
    # sign-corrected Householder factor of the same draw (elements 0 .. count - 1 of the float32 gaussian),
    # up to float32 rounding: Q's entries are ~1/sqrt(400) = 0.05, so 1e-6 absolute is ~20 ulps of them.
    w = fillers.fill(np.empty(shape, np.float32), {"type": "orthogonal", "gain": 1.5}, seed=6)
    draw = np.empty(shape, np.float32)
    _kernels.gaussian(draw.reshape(-1), 6, 0, 0, 0.0, 1.0, -1.0, 1)
    tall = draw.T if shape[0] < shape[1] else draw
    q = _orthogonal.householder_q(tall)
    np.testing.assert_allclose(w, 1.5 * (q.T if shape[0] < shape[1] else q), rtol=0, atol=1.5e-6)
    monkeypatch.setattr(_orthogonal, "CHOLESKY_KAPPA_MAX", 0.0)  # every draw falls back to Householder
    householder = fillers.fill(np.empty(shape, np.float32), {"type": "orthogonal", "gain": 1.5}, seed=6)
    np.testing.assert_allclose(w, householder, rtol=0, atol=1.5e-6)


def test_orthogonal_cholesky_refuses_ill_conditioned_draws():
    b = np.random.default_rng(0).standard_normal((400, 100))
    assert _orthogonal.cholesky_inverse_factor(b.astype(np.float32)) is not None  # kappa(b) about 3
    b[:, 5] = b[:, 4] + 1e-4 * b[:, 5]  # kappa(b) about 2e4
    assert _orthogonal.cholesky_inverse_factor(b.astype(np.float32)) is None
    b[:, 5] = b[:, 4]  # singular: Cholesky itself fails
    assert _orthogonal.cholesky_inverse_factor(b) is None


def test_orthogonal_wide_float32_is_haar_distributed():
    # The rows of a Haar (k x m) frame are uniform on the sphere of R^m: x^2 ~ Beta(1/2, (m - 1)/2) for
    # every entry (the CholeskyQR path).
    k, m = 64, 400
    w = fillers.fill(np.empty((k, m), np.float32), "orthogonal", seed=9).astype(np.float64)
    assert ks(w.ravel() ** 2, stats.beta(0.5, (m - 1) / 2)) > P_MIN
    assert abs(np.mean(np.sign(w))) < 6 / math.sqrt(w.size)


def test_orthogonal_keras_layout_and_pieces():
    w = fillers.fill(np.empty((3, 3, 8, 16)), {"type": "orthogonal", "fan_rule": "KERAS"}, seed=2)
    m = w.reshape(-1, 16)  # Keras: (prod(shape[:-1]), shape[-1])
    np.testing.assert_allclose(m.T @ m, np.eye(16), atol=1e-13)
    with pytest.raises(ValueError, match="orthogonalises the whole blob"):
        fillers.fill(np.empty(10), "orthogonal", offset=10, blob_shape=(4, 5))


def test_eye_dirac_identity():
    np.testing.assert_array_equal(fillers.fill(np.empty((3, 5), np.float32), "eye"), np.eye(3, 5))
    np.testing.assert_array_equal(fillers.fill(np.empty((5, 3)), {"type": "identity", "gain": 2}), 2 * np.eye(5, 3))
    w = fillers.fill(np.empty((6, 2, 3, 5)), {"type": "dirac", "groups": 3})
    expected = np.zeros((6, 2, 3, 5))
    for g in range(3):
        for d in range(2):
            expected[g * 2 + d, d, 1, 2] = 1
    np.testing.assert_array_equal(w, expected)
    np.testing.assert_array_equal(fillers.fill(np.empty((6, 2, 3, 5)), {"type": "identity", "groups": 3}), expected)
    with pytest.raises(fillers.FillerError, match="groups must be >= 1 and divide shape"):
        fillers.fill(np.empty((6, 2, 3)), {"type": "dirac", "groups": 4})
    with pytest.raises(fillers.FillerError, match="'eye' needs a 2-D blob"):
        fillers.fill(np.empty((6, 2, 3)), "eye")


# ------------------------------------------------------------------------------------------------------
# Schema and errors

def test_prototxt_fields():
    text = ('type: "kaiming_normal" nonlinearity: "leaky_relu" negative_slope: 0.1 variance_norm: FAN_OUT '
            'fan_rule: KERAS')
    param = text_format.Parse(text, fillers.FillerParameter())
    assert (param.negative_slope, param.fan_rule) == (pytest.approx(0.1), fillers.FillerParameter.KERAS)
    assert [f.number for f in param.DESCRIPTOR.fields if f.name in
            ("gain", "negative_slope", "nonlinearity", "lower", "upper", "fan_rule", "distribution", "groups")] \
        == list(range(1000, 1008))


@pytest.mark.parametrize("filler, message", [
    ({"type": "kaiming_normal", "std": 0.1}, "std is not one of its parameters"),
    ({"type": "kaiming_normal", "nonlinearity": "swish"}, "unknown nonlinearity 'swish'"),
    ({"type": "gaussian", "gain": 2}, "gain is not a parameter of Caffe's gaussian filler"),
    ({"type": "xavier_normal", "gain": 0}, "gain must be > 0"),
    ({"type": "variance_scaling", "scale": -1}, "scale must be > 0"),
    ({"type": "orthogonal"}, "at least 2 axes"),
])
def test_parameter_errors(filler, message):
    with pytest.raises(fillers.FillerError, match=message):
        fillers.fill(np.empty(8, np.float32), filler)


def test_caffe_stream_refuses_modern_types():
    with pytest.raises(fillers.FillerError, match="not one of Caffe's.*rng=CaffeRNG"):
        fillers.fill(np.empty((4, 4), np.float32), "kaiming_normal", rng=fillers.CaffeRNG(1))


def test_caffe_types_keep_their_values_with_default_new_fields():
    base = fillers.fill(np.empty((64, 27), np.float32), "xavier", seed=9)
    same = fillers.fill(np.empty((64, 27), np.float32), {"type": "xavier", "gain": 1, "fan_rule": "CAFFE"}, seed=9)
    assert base.tobytes() == same.tobytes()


# ------------------------------------------------------------------------------------------------------
# Against torch.nn.init itself (optional)

TORCH_CASES = {
    "xavier_uniform_": ({"type": "xavier", "variance_norm": "AVERAGE", "gain": 1.5}, {"gain": 1.5}),
    "xavier_normal_": ({"type": "xavier_normal", "gain": 1.5}, {"gain": 1.5}),
    "kaiming_uniform_": ({"type": "kaiming_uniform", "negative_slope": 0.2}, {"a": 0.2}),
    "kaiming_normal_": ({"type": "kaiming_normal", "variance_norm": "FAN_OUT", "nonlinearity": "relu"},
                        {"mode": "fan_out", "nonlinearity": "relu"}),
    "trunc_normal_": ({"type": "truncated_gaussian", "mean": 0.1, "std": 0.5, "lower": -0.5, "upper": 1.0},
                      {"mean": 0.1, "std": 0.5, "a": -0.5, "b": 1.0}),
    "orthogonal_": ({"type": "orthogonal", "gain": 3}, {"gain": 3}),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_same_distribution_as_torch(name):
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    filler, kwargs = TORCH_CASES[name]
    torch.manual_seed(0)
    ref = getattr(torch.nn.init, name)(torch.empty(SHAPE), **kwargs).numpy().ravel().astype(np.float64)
    x = filled(filler)
    assert stats.ks_2samp(x, ref).pvalue > P_MIN
    assert x.std() == pytest.approx(ref.std(), rel=0.01)


def test_dirac_and_eye_equal_torch():
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    for shape, groups in (((8, 4, 3, 3), 2), ((6, 6, 3), 1), ((4, 2, 3, 3, 3), 1)):
        ref = torch.nn.init.dirac_(torch.empty(shape), groups=groups).numpy()
        np.testing.assert_array_equal(fillers.fill(np.empty(shape, np.float32), {"type": "dirac", "groups": groups}), ref)
    np.testing.assert_array_equal(fillers.fill(np.empty((3, 7), np.float32), "eye"),
                                  torch.nn.init.eye_(torch.empty(3, 7)).numpy())


NET = '''name: "modern" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 16 kernel_size: 3
  weight_filler { type: "kaiming_normal" nonlinearity: "relu" } bias_filler { type: "truncated_gaussian" std: 0.1 } } }'''


def test_fill_net_with_modern_fillers():
    net = fillers.load_net(NET)
    params = fillers.fill_net(net, seed=1)
    weight, bias = params["conv1"]
    assert weight.shape == (16, 3, 3, 3) and np.abs(bias).max() <= np.float32(0.2)
    expected = fillers.fill(np.empty((16, 3, 3, 3), np.float32), "kaiming_normal",
                            seed=1, stream=fillers.philox_stream("conv1", 0))
    np.testing.assert_array_equal(weight, expected)
    with pytest.raises(fillers.FillerError, match="layer 'conv1'.*blob 0.*not one of Caffe's"):
        fillers.fill_net(net, seed=1, rng="caffe")
