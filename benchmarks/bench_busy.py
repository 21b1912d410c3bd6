"""Busy neighbour: an all-cores fill against a one-thread fill while another process keeps one core busy.

A spinning child process is pinned to one of this process's cores (Linux ``sched_setaffinity``; elsewhere
it is left to the scheduler).  Then float32 fills are timed with ``threads=1`` and ``threads=<all cores>``,
interleaved round by round, and the ratio of the median times is reported (one-thread time / all-cores
time: >= 1 means all cores are not slower, the issue's requirement; a static split of the work would
wait for the thread that shares the busy core).

Usage: ``python benchmarks/bench_busy.py [--size N] [--repeat R] [--out PATH]``; ``run()`` returns the
same results for ``benchmarks/run.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fillers

FILLERS = {"gaussian": 'type: "gaussian" std: 0.01', "uniform": 'type: "uniform" min: -0.1 max: 0.1'}
_SPIN = "import os, sys\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass\n"


def median_interleaved(fns: dict, rounds: int) -> dict[str, float]:
    """Median wall time of each function over ``rounds`` rounds that call every function once, after a
    warm-up (the median, not the best: a slowed thread is the point of this measurement)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def run(size: int = 16 << 20, repeat: int = 9) -> dict:
    """Time one thread against all cores for each filler with one core kept busy; return the ratios."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    threads = len(cores)
    out = np.empty(size, np.float32)
    out.fill(0)  # pages faulted in before any timing
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other load on the machine, for the record
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN, str(cores[-1])])
    try:
        time.sleep(0.2)  # the spinner is running before the first sample
        results = {}
        for name, filler in FILLERS.items():
            t = median_interleaved({
                "one_thread": lambda: fillers.fill(out, filler, seed=1, threads=1),
                "all_cores": lambda: fillers.fill(out, filler, seed=1, threads=threads),
            }, repeat)
            results[name] = {"one_thread_s": t["one_thread"], "all_cores_s": t["all_cores"],
                             "ratio": t["one_thread"] / t["all_cores"]}
    finally:
        spinner.kill()
        spinner.wait()
    return {"elements": size, "rounds": repeat, "threads": threads, "busy_core": cores[-1],
            "load_average_1min": load, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "fillers": results}


def report(results: dict) -> str:
    """One line: the ratio per filler (one-thread median / all-cores median)."""
    return (f"busy neighbour (one of {results['threads']} cores spinning in another process), float32 "
            f"{results['elements'] >> 20} Mi, median of {results['rounds']}: all cores vs one thread "
            + ", ".join(f"{name} {r['ratio']:.2f}x" for name, r in results["fillers"].items())
            + " (>= 1: not slower)"
            + (f"; load average before {results['load_average_1min']:.1f}" if results["load_average_1min"] else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=16 << 20, help="elements per fill")
    parser.add_argument("--repeat", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    results = run(args.size, args.repeat)
    print(report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
