"""Seeds numpy's way: fresh entropy by default, SeedSequence seeds, the Philox generator, recorded metadata."""
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import fillers
from fillers.seeds import key_of

LENET = Path(__file__).resolve().parents[1] / "examples" / "lenet.prototxt"


def gauss(n=4096, **kwargs):
    return fillers.fill(np.empty(n, np.float32), "gaussian", **kwargs)


# --------------------------------------------------------------------------- seeds of fill


def test_an_int_seed_is_the_key_and_keeps_its_bytes():
    # The first words of key 1701, stream 0 through the documented float32 uniform transform.
    words = fillers.philox_raw(8, seed=1701)
    expected = ((words >> 8).astype(np.float64) * 2.0**-24).astype(np.float32)
    assert (fillers.fill(np.empty(8, np.float32), "uniform", seed=1701) == expected).all()


def test_no_seed_draws_fresh_entropy():
    a, b = gauss(), gauss()
    assert not np.array_equal(a, b)
    # ... and the fills are uncorrelated (as for any two independent draws: |r| sqrt(n) is ~ N(0, 1)).
    assert abs(np.corrcoef(a, b)[0, 1]) * np.sqrt(a.size) < 5


def test_a_seed_sequence_is_hashed_to_a_key():
    seq = np.random.SeedSequence(20261129)
    w = seq.generate_state(2, np.uint32)
    key = int(w[0]) | int(w[1]) << 32
    assert key_of(seq) == key and key_of(seq, bits=32) == int(w[0])
    assert np.array_equal(gauss(seed=seq, stream=3), gauss(seed=key, stream=3))
    assert key_of(np.random.SeedSequence(20261129)) == key  # reproducible


@pytest.mark.parametrize("seed, error", [
    (True, TypeError), (1.5, TypeError), ("7", TypeError), (-1, ValueError), (2**64, ValueError),
])
def test_bad_seeds(seed, error):
    with pytest.raises(error, match="seed"):
        gauss(seed=seed)


# --------------------------------------------------------------------------- the Philox generator


def test_the_kth_fill_of_a_generator_is_stream_k_of_its_key():
    gen = fillers.Philox(1701)
    fills = [gauss(rng=gen) for _ in range(3)]
    assert gen.fills == 3 and gen.key == 1701
    for k, values in enumerate(fills):
        assert np.array_equal(values, gauss(seed=1701, stream=k))
    seq_gen = fillers.Philox(np.random.SeedSequence(5))
    assert np.array_equal(gauss(rng=seq_gen), gauss(seed=key_of(np.random.SeedSequence(5)), stream=0))


def test_a_generator_sequence_is_reproducible_from_its_seed():
    def run(gen):
        return [fillers.fill(np.empty(shape, np.float32), "msra", rng=gen).copy() for shape in
                [(64, 3, 7, 7), (64, 3, 7, 7), (10, 20), (5,)]]

    for first, second in zip(run(fillers.Philox(42)), run(fillers.Philox(42))):
        assert np.array_equal(first, second)


def test_a_failed_fill_takes_no_stream():
    gen = fillers.Philox(3)
    with pytest.raises(ValueError):
        fillers.fill(np.empty((4, 4), np.float32), {"type": "gaussian", "std": -1}, rng=gen)
    with pytest.raises(ValueError, match="pieces"):
        fillers.fill(np.empty(4, np.float32), "gaussian", rng=gen, offset=4, blob_shape=(8,))
    assert gen.fills == 0


def test_generator_and_seed_do_not_mix():
    with pytest.raises(ValueError, match="leave seed and stream unset"):
        gauss(rng=fillers.Philox(1), seed=1)
    with pytest.raises(ValueError, match="leave seed and stream unset"):
        gauss(rng=fillers.Philox(1), stream=2)
    with pytest.raises(TypeError, match="rng must be"):
        gauss(rng=np.random.default_rng(1))


def test_consecutive_fills_are_statistically_independent():
    # 48 consecutive same-shape fills of one generator (the case that used to repeat one stream).  For
    # independent normal samples of n elements, z = r * sqrt(n) of each pair's correlation r is N(0, 1) to
    # O(1/n); the 1128 pairwise z must pass a KS test against N(0, 1) (pairs sharing a blob are still
    # uncorrelated: E[r_ab r_ac] = 0 for independent samples) and none may exceed 5.5 (p = 4e-8 per pair,
    # 4e-5 for all of them).
    gen = fillers.Philox(20261129)
    n = 8192
    blobs = np.stack([gauss(n, rng=gen) for _ in range(48)])
    r = np.corrcoef(blobs)[np.triu_indices(len(blobs), 1)]
    z = r * np.sqrt(n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert np.abs(z).max() < 5.5
    # The same for xavier fills of different shapes (whose common prefix once came from the same words).
    shapes = [(64, 3, 3, 3), (128, 64), (32, 54), (1728,)]
    values = [fillers.fill(np.empty(s, np.float32), "xavier", rng=gen).ravel()[:1728] for s in shapes]
    for a, b in itertools.combinations(values, 2):
        assert abs(np.corrcoef(a, b)[0, 1]) * np.sqrt(1728) < 5.5


def test_spawned_children_are_reproducible_and_independent():
    parent = fillers.Philox(7)
    children = parent.spawn(3)
    again = fillers.Philox(7).spawn(3)
    assert [c.key for c in children] == [c.key for c in again]
    assert len({parent.key, *(c.key for c in children)}) == 4
    assert [c.key for c in parent.spawn(2)] != [c.key for c in children[:2]]  # a second spawn: new children
    # Children's keys are SeedSequence.spawn's, independent of the parent's stream position.
    assert children[0].key == key_of(np.random.SeedSequence(7, spawn_key=(0,)))
    draws = np.stack([gauss(8192, rng=g) for g in (parent, *children)])
    z = np.corrcoef(draws)[np.triu_indices(4, 1)] * np.sqrt(8192)
    assert np.abs(z).max() < 5.5


def test_a_generator_pickles_with_its_position_and_spawn_count():
    for seed in (1701, np.random.SeedSequence(99), None):
        gen = fillers.Philox(seed)
        gauss(rng=gen)
        gen.spawn(2)
        copy = pickle.loads(pickle.dumps(gen))
        assert repr(copy) == repr(gen) and copy.key == gen.key and copy.fills == 1
        assert np.array_equal(gauss(rng=copy), gauss(rng=gen))
        assert [c.key for c in copy.spawn(1)] == [c.key for c in gen.spawn(1)]  # the third child of both


def test_repr():
    gen = fillers.Philox(1701)
    gauss(rng=gen)
    assert repr(gen) == "Philox(seed=1701, fills=1)"
    child = gen.spawn(1)[0]
    assert repr(child) == "Philox(seed=SeedSequence(entropy=1701, spawn_key=(0,)), fills=0)"
    fresh = fillers.Philox()
    assert repr(fresh) == f"Philox(seed=SeedSequence(entropy={fresh.seed_seq.entropy}), fills=0)"
    assert fillers.Philox(fresh.seed_seq).key == fresh.key  # the repr's entropy reproduces it


# --------------------------------------------------------------------------- fill_net and files


def test_fill_net_draws_a_seed_and_reproduces_from_it():
    first, second = fillers.fill_net(LENET), fillers.fill_net(LENET)
    assert first.seed != second.seed
    again = fillers.fill_net(LENET, seed=first.seed)
    for layer in first:
        for a, b in zip(first[layer], again[layer]):
            assert np.array_equal(a, b)
    caffe = fillers.fill_net(LENET, rng="caffe")
    assert 0 <= caffe.seed < 2**32


def test_fill_net_seed_sequence_stands_for_its_key():
    seq = np.random.SeedSequence(11)
    for rng, bits in (("philox", 64), ("caffe", 32)):
        params = fillers.fill_net(LENET, seed=seq, rng=rng)
        assert params.seed == key_of(seq, bits=bits)
        assert np.array_equal(params["conv1"][0], fillers.fill_net(LENET, seed=params.seed, rng=rng)["conv1"][0])


def test_fill_net_streams_are_unchanged_by_the_seed_api():
    params = fillers.fill_net(LENET, seed=1701)
    expected = fillers.fill(np.empty((20, 1, 5, 5), np.float32), "xavier", seed=1701,
                            stream=fillers.philox_stream("conv1", 0))
    assert np.array_equal(params["conv1"][0], expected)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".safetensors"])
def test_files_record_how_they_were_filled(tmp_path, suffix):
    params = fillers.fill_net(LENET, rng="caffe", dtype=np.float64)
    path = tmp_path / f"w{suffix}"
    fillers.save(params, path, metadata={"note": "run 3"})
    meta = fillers.read_metadata(path)
    assert meta["fillers.seed"] == str(params.seed) and meta["fillers.rng"] == "caffe"
    assert meta["fillers.dtype"] == "float64" and meta["fillers.version"] == fillers.__version__
    assert meta["note"] == "run 3"
    assert list(fillers.load(path)) == list(params)  # the metadata is not a layer
    again = fillers.fill_net(LENET, seed=int(meta["fillers.seed"]), rng=meta["fillers.rng"],
                             dtype=meta["fillers.dtype"])
    assert np.array_equal(fillers.load(path)["ip2"][0], again["ip2"][0])


def test_a_caffemodel_keeps_the_net_name(tmp_path):
    params = fillers.fill_net(LENET, seed=1)
    fillers.save(params, tmp_path / "w.caffemodel")
    stored = fillers.NetParameter.FromString((tmp_path / "w.caffemodel").read_bytes())
    assert stored.name == fillers.load_net(LENET).name != ""
    assert fillers.read_metadata(tmp_path / "w.caffemodel") == {}


def test_metadata_must_be_text(tmp_path):
    with pytest.raises(TypeError, match="metadata"):
        fillers.save({"a": [np.zeros(2, np.float32)]}, tmp_path / "w.npz", metadata={"seed": 1})


def test_filled_net_is_a_dict_that_pickles():
    params = fillers.fill_net(LENET, seed=5)
    copy = pickle.loads(pickle.dumps(params))
    assert isinstance(copy, dict) and copy.seed == 5 and copy.metadata == params.metadata
    assert copy.net == params.net and np.array_equal(copy["ip1"][0], params["ip1"][0])


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".safetensors"])
def test_streamed_files_record_how_they_were_filled(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    written = fillers.fill_net(LENET, out=path)  # the blobs go straight into the file
    meta = fillers.read_metadata(path)
    assert meta["fillers.seed"] == str(written.seed) and meta["fillers.rng"] == "philox"
    again = fillers.fill_net(LENET, seed=int(meta["fillers.seed"]))
    assert np.array_equal(fillers.load(path)["conv2"][0], again["conv2"][0])
