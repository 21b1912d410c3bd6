"""fillers.torch: torch.nn.init's signatures, distributions and in-place semantics (torch is optional)."""
import inspect

import pytest
from scipy import stats

torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
import fillers.torch as init  # noqa: E402  (needs torch)

P_MIN = 1e-6
SHAPE = (128, 64, 3, 3)
RANDOM = {
    "uniform_": {"a": -0.5, "b": 2.0},
    "normal_": {"mean": 1.0, "std": 0.25},
    "trunc_normal_": {"mean": 0.0, "std": 0.02, "a": -0.03, "b": 0.05},
    "xavier_uniform_": {"gain": 2.0},
    "xavier_normal_": {"gain": 0.5},
    "kaiming_uniform_": {"a": 5**0.5},
    "kaiming_normal_": {"mode": "fan_out", "nonlinearity": "relu"},
    "orthogonal_": {"gain": 1.5},
}
FIXED = {"constant_": {"val": 0.3}, "ones_": {}, "zeros_": {}, "eye_": {}, "dirac_": {"groups": 2}}


@pytest.mark.parametrize("name", init.__all__)
def test_signature_is_torchs(name):
    ours = inspect.signature(getattr(init, name)).parameters
    theirs = inspect.signature(getattr(torch.nn.init, name)).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]


@pytest.mark.parametrize("name", RANDOM)
def test_same_distribution_as_torch_nn_init(name):
    torch.manual_seed(0)
    ours = getattr(init, name)(torch.empty(SHAPE), **RANDOM[name]).numpy().ravel()
    ref = getattr(torch.nn.init, name)(torch.empty(SHAPE), **RANDOM[name]).numpy().ravel()
    assert stats.ks_2samp(ours, ref).pvalue > P_MIN
    assert ours.min() >= ref.min() - 0.05 * ref.std() and ours.max() <= ref.max() + 0.05 * ref.std()


@pytest.mark.parametrize("name", FIXED)
def test_draw_free_ones_equal_torch(name):
    shape = (3, 5) if name == "eye_" else (8, 4, 3, 3)
    ours = getattr(init, name)(torch.empty(shape), **FIXED[name])
    assert torch.equal(ours, getattr(torch.nn.init, name)(torch.empty(shape), **FIXED[name]))


def test_reproducible_under_manual_seed_and_generator():
    torch.manual_seed(7)
    a, b = init.normal_(torch.empty(100)), init.normal_(torch.empty(100))
    assert not torch.equal(a, b)  # successive calls draw new keys
    torch.manual_seed(7)
    assert torch.equal(init.normal_(torch.empty(100)), a)
    g = torch.Generator().manual_seed(3)
    c = init.kaiming_uniform_(torch.empty(10, 10), generator=g)
    assert torch.equal(init.kaiming_uniform_(torch.empty(10, 10), generator=torch.Generator().manual_seed(3)), c)


def test_parameters_filled_in_place():
    layer = torch.nn.Conv2d(16, 32, 3)
    weight = layer.weight
    pointer = weight.data_ptr()
    assert init.kaiming_normal_(weight, nonlinearity="relu") is weight
    assert weight.data_ptr() == pointer and weight.requires_grad
    assert weight.detach().std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.05)


def test_errors_as_torch():
    with pytest.raises(ValueError, match="mode 'fan_avg' not supported"):
        init.kaiming_uniform_(torch.empty(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.xavier_uniform_(torch.empty(5))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("name", ["uniform_", "trunc_normal_", "orthogonal_", "constant_", "dirac_"])
def test_fast_path_equals_fill(name, dtype):
    # Contiguous CPU tensors skip fill()'s generic checks (numpy view, cached plan); the values must be
    # fill()'s, and a non-contiguous view (the generic path) gets the same values as a contiguous tensor.
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes (pip install ml_dtypes)")
    import fillers

    kwargs = {**RANDOM, **FIXED}[name]
    t = getattr(torch, dtype)
    torch.manual_seed(5)
    fast = getattr(init, name)(torch.empty(SHAPE, dtype=t), **kwargs)
    torch.manual_seed(5)
    strided = getattr(init, name)(torch.empty(tuple(reversed(SHAPE)), dtype=t).permute(3, 2, 1, 0), **kwargs)
    assert not strided.is_contiguous() and torch.equal(fast, strided)
    torch.manual_seed(5)
    seed = int(torch.randint(-(2**63), 2**63 - 1, (1,)).item()) & (2**64 - 1) if name in RANDOM else 0
    generic = fillers.fill(torch.empty(SHAPE, dtype=t), init._parameter(tuple(_filler_of(name, kwargs).items())),
                           seed=seed)
    assert torch.equal(fast, generic)


def _filler_of(name, kwargs):
    """The filler dict fillers.torch builds for these calls (what _fill receives)."""
    return {"uniform_": {"type": "uniform", "min": kwargs.get("a"), "max": kwargs.get("b")},
            "trunc_normal_": {"type": "truncated_gaussian", "mean": kwargs.get("mean"), "std": kwargs.get("std"),
                              "lower": kwargs.get("a"), "upper": kwargs.get("b")},
            "orthogonal_": {"type": "orthogonal", "gain": kwargs.get("gain")},
            "constant_": {"type": "constant", "value": kwargs.get("val")},
            "dirac_": {"type": "dirac", "groups": kwargs.get("groups")}}[name]


def test_misaligned_tensor_filled_like_an_aligned_one():
    memory = bytearray(4 * 1001)
    torch.manual_seed(2)
    odd = init.uniform_(torch.frombuffer(memory, dtype=torch.float32, offset=1, count=1000))
    torch.manual_seed(2)
    assert torch.equal(odd, init.uniform_(torch.empty(1000)))


def test_fast_path_keeps_the_errors():
    import fillers

    with pytest.raises(fillers.FillerError, match="std"):
        init.normal_(torch.empty(4, 4), std=-1.0)
    with pytest.raises(fillers.FillerError, match="std"):  # a cached plan for another std does not hide it
        init.normal_(torch.empty(4, 4), std=1.0)
        init.normal_(torch.empty(4, 4), std=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        init.uniform_(torch.empty(4, 4, dtype=torch.int32))
    with pytest.raises(fillers.FillerError, match="groups"):
        init.dirac_(torch.empty(6, 4, 3), groups=4)
