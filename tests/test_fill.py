"""fill(): the in-place contract, filler coercion, Caffe's parameter semantics and every error path."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fillers
from fillers import FillerParameter, _kernels

ALL_TYPES = ["constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra", "bilinear"]
DTYPES = [np.float32, np.float64]


def filled(shape, filler, dtype=np.float32, **kwargs):
    return fillers.fill(np.empty(shape, dtype), filler, **kwargs)


# --- the in-place contract ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_fills_in_place_and_returns_the_same_object(kind, dtype):
    blob = np.full((4, 3, 5, 5), np.nan, dtype)
    assert fillers.fill(blob, kind, seed=3) is blob
    assert np.all(np.isfinite(blob))


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_same_seed_same_bytes_other_seed_other_bytes(kind):
    a = filled((8, 4, 3, 3), kind, seed=11)
    b = filled((8, 4, 3, 3), kind, seed=11)
    assert a.tobytes() == b.tobytes()
    if kind not in ("constant", "bilinear"):
        assert a.tobytes() != filled((8, 4, 3, 3), kind, seed=12).tobytes()
        assert a.tobytes() != filled((8, 4, 3, 3), kind, seed=11, stream=1).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["uniform", "gaussian", "xavier", "positive_unitball", "bilinear"])
def test_non_contiguous_view_gets_contiguous_values_and_nothing_else_is_touched(kind, dtype):
    base = np.full((6, 4, 5, 10), -7.0, dtype)
    view = base[::2, :, :, 3:8]  # shape (3, 4, 5, 5), non-contiguous
    fillers.fill(view, kind, seed=5)
    expected = filled(view.shape, kind, dtype, seed=5)
    assert view.tobytes() == expected.tobytes()
    untouched = np.ones(base.shape, bool)
    untouched[::2, :, :, 3:8] = False
    assert np.all(base[untouched] == -7.0)


def test_fortran_order_and_transposed_views_follow_c_order_of_the_view():
    blob = np.asfortranarray(np.zeros((5, 7), np.float64))
    fillers.fill(blob, "gaussian", seed=2)
    assert blob.tobytes(order="C") == filled((5, 7), "gaussian", np.float64, seed=2).tobytes()


def test_unaligned_array_is_filled_correctly():
    raw = np.zeros(4 * 101 + 1, np.uint8)
    blob = raw[1:].view(np.float32)
    assert not blob.flags.aligned
    fillers.fill(blob, "uniform", seed=9)
    assert blob.tobytes() == filled(101, "uniform", seed=9).tobytes()


@pytest.mark.parametrize("shape", [(0,), (0, 3, 3, 3), (5, 0)])
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_zero_size_arrays_are_fine(shape, kind):
    if kind == "bilinear" and len(shape) != 4:
        shape = (0, 1, 3, 3)
    blob = np.empty(shape, np.float32)
    assert fillers.fill(blob, kind) is blob


def test_zero_dimensional_array():
    blob = np.zeros((), np.float64)
    fillers.fill(blob, {"type": "constant", "value": 0.25})
    assert blob == 0.25
    fillers.fill(blob, "uniform", seed=1)
    assert 0 <= blob <= 1


# --- pieces, threads and chunking give the same bytes -------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["uniform", "gaussian", "xavier", "msra", "bilinear", "sparse"]),
    dtype=st.sampled_from(DTYPES),
    n=st.integers(1, 3000),
    cuts=st.lists(st.integers(0, 3000), max_size=5),
    seed=st.integers(0, 2**64 - 1),
    stream=st.integers(0, 2**64 - 1),
)
def test_any_chunking_gives_the_same_bytes(kind, dtype, n, cuts, seed, stream):
    shape = (n, 1, 1, 1) if kind == "bilinear" else (n,)
    if kind == "bilinear":
        shape = (n, 3, 2, 2)
    filler = 'type: "gaussian" std: 0.5 sparse: 1' if kind == "sparse" else kind
    whole = filled(shape, filler, dtype, seed=seed, stream=stream)
    flat = whole.reshape(-1)
    pieces = np.empty_like(flat)
    bounds = sorted({0, flat.size, *(c % (flat.size + 1) for c in cuts)})
    for lo, hi in zip(bounds, bounds[1:]):
        fillers.fill(pieces[lo:hi], filler, seed=seed, stream=stream, offset=lo, blob_shape=shape, threads=1)
    assert pieces.tobytes() == flat.tobytes()


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "msra", "constant", "bilinear", "positive_unitball"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_never_changes_the_bytes(kind, dtype):
    shape = (64, 3, 33, 33)  # several chunks, a ragged last one
    serial = filled(shape, kind, dtype, seed=21, threads=1)
    for threads in (2, 3, 7):
        assert filled(shape, kind, dtype, seed=21, threads=threads).tobytes() == serial.tobytes()


def test_threads_default_from_environment(monkeypatch):
    monkeypatch.setenv("FILLERS_NUM_THREADS", "3")
    assert fillers.default_threads() == 3
    monkeypatch.setenv("FILLERS_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="FILLERS_NUM_THREADS"):
        fillers.default_threads()


def test_positive_unitball_in_whole_row_pieces():
    shape = (6, 10)
    whole = filled(shape, "positive_unitball", np.float64, seed=4)
    part = np.empty((2, 10))
    fillers.fill(part, "positive_unitball", seed=4, offset=20, blob_shape=shape)
    assert part.tobytes() == whole[2:4].tobytes()
    with pytest.raises(ValueError, match="row boundary"):
        fillers.fill(np.empty(15), "positive_unitball", seed=4, offset=5, blob_shape=shape)


# --- filler coercion ------------------------------------------------------------------------------------

def test_filler_forms_are_equivalent():
    message = FillerParameter(type="xavier", variance_norm=FillerParameter.AVERAGE)
    forms = [
        message,
        {"type": "xavier", "variance_norm": "AVERAGE"},
        {"type": "xavier", "variance_norm": 2},
        'type: "xavier" variance_norm: AVERAGE',
    ]
    results = {filled((16, 8, 3), form, seed=1).tobytes() for form in forms}
    assert len(results) == 1
    assert filled((4, 4), "xavier", seed=0).tobytes() == filled((4, 4), FillerParameter(type="xavier"), seed=0).tobytes()


def test_default_filler_parameter_is_constant_zero():
    blob = np.ones((3, 3), np.float32)
    fillers.fill(blob, FillerParameter())
    assert np.all(blob == 0)


# --- Caffe's parameter semantics -------------------------------------------------------------------------

def test_parameters_are_proto_floats():
    blob = filled(5, {"type": "constant", "value": 0.1}, np.float64)
    assert np.all(blob == float(np.float32(0.1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_min_equal_max_is_a_constant(dtype):
    assert np.all(filled(100, {"type": "uniform", "min": 0.5, "max": 0.5}, dtype) == 0.5)


@pytest.mark.parametrize(
    "shape, norm, n",
    [
        ((64, 3, 7, 7), "FAN_IN", 3 * 49),
        ((64, 3, 7, 7), "FAN_OUT", 64 * 49),
        ((64, 3, 7, 7), "AVERAGE", (3 * 49 + 64 * 49) / 2),
        ((10,), "FAN_IN", 1),
        ((10,), "FAN_OUT", 10),
        ((10,), "AVERAGE", 5.5),
        ((20, 30), "FAN_OUT", 20),
    ],
)
def test_xavier_and_msra_fans(shape, norm, n):
    xavier = filled(shape, {"type": "xavier", "variance_norm": norm}, np.float64, seed=1)
    bound = math.sqrt(3 / n)
    assert np.abs(xavier).max() <= np.float64(np.float32(bound)) * (1 + 1e-6)
    assert np.abs(xavier).max() > 0.8 * bound  # the bound is reached, not a smaller one
    # msra draws N(0, sqrt(2 / n)) from the same n: its standardised values are the unit gaussian's.
    msra = filled(shape, {"type": "msra", "variance_norm": norm}, np.float64, seed=2)
    unit = filled(shape, "gaussian", np.float64, seed=2)
    np.testing.assert_allclose(msra, unit * np.float32(math.sqrt(2 / n)), rtol=1e-6)


def test_bilinear_formula():
    k = 5
    blob = filled((2, 3, k, k), "bilinear", np.float64)
    f = math.ceil(k / 2)
    c = (k - 1) / (2 * f)
    expected = np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(k)] for y in range(k)])
    np.testing.assert_allclose(blob[1, 2], expected, rtol=1e-6)
    assert np.all(blob == blob[0, 0])


def test_sparse_gaussian_zeroes_are_signed_like_caffe():
    blob = filled((1000, 50), 'type: "gaussian" std: 1 sparse: 100', np.float32, seed=8)
    zeros = blob[blob == 0]
    assert np.any(np.signbit(zeros)) and np.any(~np.signbit(zeros))


# --- errors: clear, early, nothing written ----------------------------------------------------------------

@pytest.mark.parametrize(
    "filler, shape, message",
    [
        ("nonsense", (3,), "unknown filler type 'nonsense'; valid types: constant, gaussian"),
        ({"type": "uniform", "min": 2, "max": 1}, (3,), "min must be <= max"),
        ({"type": "uniform", "min": float("nan")}, (3,), "min must be finite, got nan"),
        ({"type": "uniform", "max": float("inf")}, (3,), "max must be finite, got inf"),
        ({"type": "constant", "value": float("-inf")}, (3,), "value must be finite"),
        ({"type": "gaussian", "std": 0}, (3,), "std must be > 0, got 0"),
        ({"type": "gaussian", "std": -1}, (3,), "std must be > 0, got -1"),
        ({"type": "gaussian", "mean": float("nan")}, (3,), "mean must be finite"),
        ({"type": "gaussian", "sparse": 4}, (3, 2), "sparse must be <= shape\\[0\\]"),
        ({"type": "gaussian", "sparse": -2}, (3, 2), "sparse must be >= -1, got -2"),
        ({"type": "xavier", "sparse": 1}, (3, 2), "sparse is only supported by the gaussian filler"),
        ({"type": "constant", "sparse": 0}, (3, 2), "sparse is only supported"),
        ("bilinear", (3, 3, 3), "4-D blob"),
        ("bilinear", (1, 1, 3, 4), "square kernel"),
        ("xavier", (), "at least one axis"),
        ("msra", (), "at least one axis"),
        ({"type": "uniform", "min": -3e38, "max": 3e38}, (3,), "overflows float32"),
        ({"bogus": 1}, (3,), "invalid filler"),
        ({"type": "xavier", "scale": 2}, (3,), "scale=2.0 \\(Intel Caffe's FillerParameter field 9\\)"),
        ('type: "gaussian" std: ', (3,), "invalid FillerParameter text"),
        ({"type": "xavier", "variance_norm": "SIDEWAYS"}, (3,), "invalid filler"),
    ],
)
def test_invalid_parameters_name_the_field_and_write_nothing(filler, shape, message):
    blob = np.full(shape, 42.0, np.float32)
    with pytest.raises(ValueError, match=message):
        fillers.fill(blob, filler)
    assert np.all(blob == 42.0)


@pytest.mark.parametrize(
    "blob, error, message",
    [
        (np.zeros(4, np.int32), TypeError, "float32, float64, float16, bfloat16"),
        (np.zeros(4, object), TypeError, "float32, float64, float16, bfloat16"),
        (np.zeros(4, np.complex64), TypeError, "float32, float64, float16, bfloat16"),
        (np.zeros(4, np.longdouble), TypeError, "float32, float64, float16, bfloat16"),
        ([0.0, 1.0], TypeError, "numpy.ndarray, an object with __dlpack__"),
        (bytearray(16), TypeError, "not uint8"),
        (memoryview(np.zeros(4, np.float32).tobytes()).cast("f"), ValueError, "read-only"),
        (np.zeros(4, ">f4" if np.little_endian else "<f4"), ValueError, "byte order"),
        (np.broadcast_to(np.zeros(1, np.float32), (5,)), ValueError, "read-only"),
        (np.lib.stride_tricks.as_strided(np.zeros(4), (3, 3), (8, 8)), ValueError, "share memory"),
    ],
)
def test_impossible_arrays_are_rejected(blob, error, message):
    with pytest.raises(error, match=message):
        fillers.fill(blob, "uniform")


def test_read_only_array_is_rejected_untouched():
    blob = np.zeros(4, np.float32)
    blob.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fillers.fill(blob, "uniform")
    assert np.all(blob == 0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"seed": 2**64}, ValueError, "seed must be in"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"stream": "1"}, TypeError, "stream must be an int"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
        ({"threads": 1.5}, TypeError, "threads must be an int"),
        ({"offset": 7, "blob_shape": (10,)}, ValueError, "exceeds"),
        ({"blob_shape": (2, -5)}, ValueError, "negative"),
        ({"blob_shape": (2.5,)}, TypeError, "sequence of ints"),
        ({"blob_shape": (2**40, 2**40)}, ValueError, "2\\*\\*63"),
        ({"rng": "caffe"}, TypeError, "CaffeRNG"),
        ({"filler": 3.5}, TypeError, "filler must be"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    filler = kwargs.pop("filler", "uniform")
    with pytest.raises(error, match=message):
        fillers.fill(np.zeros(4, np.float32), filler, **kwargs)


def test_uniform_range_wider_than_the_dtype_needs_the_caffe_stream():
    huge = {"type": "uniform", "min": -3e38, "max": 3e38}
    with pytest.raises(ValueError, match="overflows float32 with the philox stream"):
        filled(8, huge)
    blob = fillers.fill(np.empty(1000, np.float32), huge, rng=fillers.CaffeRNG(1))
    assert np.all(np.isfinite(blob)) and blob.min() < -1e38 and blob.max() > 1e38


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["type", "value", "min", "max", "mean", "std", "sparse", "variance_norm", "bogus"]),
        st.one_of(st.sampled_from(ALL_TYPES + ["Xavier", ""]), st.floats(), st.integers(-5, 2**40),
                  st.sampled_from(["FAN_IN", "AVERAGE", "UP"]), st.none()),
        max_size=5,
    ),
    shape=st.lists(st.integers(0, 6), max_size=5).map(tuple),
    dtype=st.sampled_from(DTYPES),
)
def test_any_filler_dict_fills_or_fails_cleanly(fields, shape, dtype):
    blob = np.full(shape, 42.0, dtype)
    try:
        fillers.fill(blob, fields, seed=1)
    except (ValueError, TypeError):
        assert np.all(blob == 42.0)  # nothing written
    else:
        assert np.all(np.isfinite(blob))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("value", [0.75, 0.0, -0.0])
def test_streamed_constant_and_diagonal_write_every_element(dtype, value):
    # Blobs of >= _kernels.STREAM_BYTES are written with non-temporal stores over their 16-byte-aligned body:
    # a start one element past the alignment and an odd length exercise the head and the tail; the elements
    # around the view stay untouched, and -0.0 keeps its sign (it is not the memset zero).
    n = _kernels.STREAM_BYTES // np.dtype(dtype).itemsize + 3
    base = np.full(n + 2, 9.0, dtype)
    view = base[1:-1]
    assert view.ctypes.data % 16 and view.nbytes >= _kernels.STREAM_BYTES
    fillers.fill(view, {"type": "constant", "value": value})
    assert base[0] == base[-1] == 9.0
    assert (view == value).all() and (np.signbit(view) == np.signbit(value)).all()
    side = int(math.sqrt(n))
    eye = np.full((side, side + 1), 9.0, dtype)
    fillers.fill(eye, {"type": "eye", "gain": 0.75}, threads=2)
    np.testing.assert_array_equal(eye, 0.75 * np.eye(side, side + 1, dtype=dtype))
    assert eye.nbytes >= _kernels.STREAM_BYTES
