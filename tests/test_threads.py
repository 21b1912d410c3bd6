"""The native thread pool: any thread count (capped, never an abort), concurrent callers, and fork safety.

The values themselves are checked against the serial fill; that the thread count never changes them for
every filler is in test_fill.py and test_dispatch.py."""
import multiprocessing
import os
import threading

import numpy as np
import pytest

import fillers
from fillers import _kernels

SHAPE = (64, 3, 33, 33)  # about 6.4 chunks of 32 Ki elements: several pieces to share out
CHILD_TIMEOUT_S = 120     # a hung child fails the test instead of hanging the run
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"  # Python >= 3.12 on fork


def _gaussian(threads, dtype=np.float32):
    return fillers.fill(np.empty(SHAPE, dtype), "gaussian", seed=9, stream=4, threads=threads)


def test_max_threads_is_four_per_cpu_at_most_256():
    assert _kernels.max_threads() == min(4 * (os.cpu_count() or 1), 256)


@pytest.mark.parametrize("threads", [600, 10**12])
def test_threads_far_above_the_cores_are_capped_not_fatal(threads):
    assert _gaussian(threads).tobytes() == _gaussian(1).tobytes()


def test_positive_unitball_with_more_threads_than_rows():
    serial = fillers.fill(np.empty((3, 100_000), np.float64), "positive_unitball", seed=1, threads=1)
    many = fillers.fill(np.empty((3, 100_000), np.float64), "positive_unitball", seed=1, threads=600)
    assert many.tobytes() == serial.tobytes()


def test_concurrent_fills_from_python_threads_give_the_serial_bytes():
    """Several Python threads fill at once: one uses the pool's workers, the others run their chunks on
    their own thread; every result is the serial one."""
    expected = _gaussian(1).tobytes()
    results = [None] * 6
    start = threading.Barrier(len(results))

    def work(i):
        start.wait()
        for _ in range(3):
            results[i] = _gaussian(3).tobytes()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(r == expected for r in results)


def _os_threads():
    """Threads of this process (Linux), else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _fill_in_child(conn, threads):
    conn.send_bytes(_gaussian(threads, np.float64).tobytes())
    conn.send(_os_threads())
    conn.close()


def _run_forked_child(threads):
    """The bytes a forked child's fill gives; the child must have run it on pool workers of its own."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_fill_in_child, args=(sender, threads))
    child.start()
    sender.close()
    try:
        if not receiver.poll(CHILD_TIMEOUT_S):
            pytest.fail(f"a forked child filling with {threads} threads did not finish in {CHILD_TIMEOUT_S} s")
        values = receiver.recv_bytes()
        child_threads = receiver.recv()
        assert child_threads is None or child_threads > 1, "the forked child filled on one thread only"
        return values
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()


needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="no fork start method on this platform")


@needs_fork
@pytest.mark.filterwarnings(FORK_WARNING)
def test_forked_child_fills_with_threads_after_the_parent_did():
    expected = _gaussian(1, np.float64).tobytes()
    assert _gaussian(2, np.float64).tobytes() == expected  # the parent's workers exist now
    assert _run_forked_child(2) == expected
    assert _run_forked_child(8) == expected  # the child may need more workers than the parent made
    assert _gaussian(2, np.float64).tobytes() == expected  # the parent's pool is unaffected


@needs_fork
@pytest.mark.filterwarnings(FORK_WARNING)
def test_fork_while_another_thread_fills():
    """A fork taken while a parent thread holds the workers mid-fill: the child gets a free, empty pool."""
    expected = _gaussian(1, np.float64).tobytes()
    stop = threading.Event()
    seen = []

    def keep_filling():
        while not stop.is_set():
            seen.append(_gaussian(2, np.float64).tobytes() == expected)

    filler_thread = threading.Thread(target=keep_filling)
    filler_thread.start()
    try:
        for _ in range(3):
            assert _run_forked_child(2) == expected
    finally:
        stop.set()
        filler_thread.join()
    assert seen and all(seen)
