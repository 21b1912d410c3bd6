"""fillers.dask: chunks filled independently equal the in-memory fill bit for bit, on threads and on a local
cluster of worker processes."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="dask is not installed (pip install 'fillers[dask]')")

import dask  # noqa: E402

import fillers  # noqa: E402
import fillers.dask as fd  # noqa: E402
from fillers import FillerError  # noqa: E402

LENET = Path(__file__).resolve().parents[1] / "examples" / "lenet.prototxt"

CASES = [
    # shape, chunks, filler: multi-dimensional boxes strided in the flat index, every axis cut or not
    ((37, 5, 11), (8, 2, 3), "xavier"),
    ((37, 5, 11), (8, 5, 4), 'type: "gaussian" std: 0.1 sparse: 7'),
    ((37, 5, 11), (37, 2, 11), "msra"),
    ((9, 13), (4, 13), "positive_unitball"),
    ((6, 1, 4, 4), (2, 1, 3, 3), "bilinear"),
    ((1000,), 64, 'type: "uniform" min: -2 max: 3'),
    ((), (), "gaussian"),
    ((0, 3), "auto", "xavier"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, chunks, filler", CASES)
def test_chunks_equal_the_whole_fill(shape, chunks, filler, dtype):
    x = fd.filled(shape, filler, seed=3, stream=9, dtype=dtype, chunks=chunks)
    want = fillers.fill(np.empty(shape, dtype), filler, seed=3, stream=9)
    with dask.config.set(scheduler="threads"):
        got = x.compute()
    assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def test_positive_unitball_keeps_rows_whole():
    assert fd.filled((10, 3, 4), "positive_unitball").chunks[1:] == ((3,), (4,))
    with pytest.raises(FillerError, match=r"whole rows of 12 elements.*chunks=\(n, -1, -1\)"):
        fd.filled((10, 3, 4), "positive_unitball", chunks=(5, 3, 2))


def test_caffe_stream_cannot_be_chunked():
    with pytest.raises(ValueError, match="sequential"):
        fd.filled((4, 4), "xavier", rng="caffe")
    with pytest.raises(ValueError, match="sequential"):
        fd.fill_net(str(LENET), rng="caffe")


def test_same_arguments_same_graph_keys():
    assert fd.filled((8, 8), "xavier", seed=1).name == fd.filled((8, 8), "xavier", seed=1).name
    assert fd.filled((8, 8), "xavier", seed=1).name != fd.filled((8, 8), "xavier", seed=2).name


def test_fill_net_equals_the_in_memory_fill_net():
    net = fillers.load_net(str(LENET))
    lazy = fd.fill_net(net, seed=4, chunks=4096)
    want = fillers.fill_net(net, seed=4)
    assert list(lazy) == list(want)
    computed = dask.compute(lazy, scheduler="threads")[0]
    for key in want:
        for got, ref in zip(computed[key], want[key]):
            assert isinstance(got, np.ndarray) and got.tobytes() == ref.tobytes() and got.shape == ref.shape


def test_local_cluster_fills_a_blob_larger_than_a_worker_memory_limit():
    """Two worker processes on loopback with 192 MiB each fill a 256 MiB blob; each chunk's sha256 is taken
    on the worker (the blob never travels) and compared with the same slice of the in-memory fill."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    shape, chunks, filler = (8192, 8192), (1024, 4096), 'type: "gaussian" std: 0.02'
    x = fd.filled(shape, filler, seed=7, stream=1, chunks=chunks)

    def block_digest(block: np.ndarray) -> np.ndarray:
        # A local function: distributed sends it by value (cloudpickle), so the workers need not import this
        # test module (they cannot when the tests run from an installed package).
        digest = hashlib.sha256(np.ascontiguousarray(block).tobytes()).hexdigest()
        return np.array([digest], dtype=object).reshape((1,) * block.ndim)

    digests = x.map_blocks(block_digest, dtype=object)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, memory_limit="192MiB") as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        got = client.compute(digests).result(timeout=600)  # a worker failure fails the test, never hangs it
    assert x.nbytes > 192 << 20
    want = fillers.fill(np.empty(shape, np.float32), filler, seed=7, stream=1)
    for i in range(shape[0] // chunks[0]):
        for j in range(shape[1] // chunks[1]):
            block = want[i * chunks[0]:(i + 1) * chunks[0], j * chunks[1]:(j + 1) * chunks[1]]
            assert got[i, j] == block_digest(block)[0, 0], (i, j)
