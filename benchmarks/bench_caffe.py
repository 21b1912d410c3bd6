"""Caffe-exact stream throughput: ``fill(..., rng=CaffeRNG)`` against numpy's MT19937 in the same run.

Caffe-exact uniform and gaussian float32 fills of 64 Mi elements against numpy
``Generator(MT19937).random(out=, dtype=float32)`` and ``.standard_normal(out=, dtype=float32)``; prints
the ratios (numpy time / our time: > 1 means faster than numpy) and writes them to a JSON file.
Targets (issue 3): >= 1.5x numpy for uniform, >= 3x for gaussian.

Usage: ``python benchmarks/bench_caffe.py [--size N] [--repeat R] [--out PATH]``; ``run()`` returns the
same results for a suite runner.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import fillers

TARGETS = {"uniform": 1.5, "gaussian": 3.0}


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call (pages touched, caches warm)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(size: int = 64 << 20, repeat: int = 5) -> dict:
    """Time both sides for each kind; return seconds, ns per element and ratios."""
    out = np.empty(size, np.float32)
    numpy_gen = np.random.Generator(np.random.MT19937(1701))
    rng = fillers.CaffeRNG(1701)
    cases = {
        "uniform": (lambda: numpy_gen.random(out=out, dtype=np.float32),
                    lambda: fillers.fill(out, {"type": "uniform", "min": -1, "max": 1}, rng=rng)),
        "gaussian": (lambda: numpy_gen.standard_normal(out=out, dtype=np.float32),
                     lambda: fillers.fill(out, "gaussian", rng=rng)),
    }
    results = {"size": size, "dtype": "float32", "repeat": repeat, "numpy": np.__version__,
               "machine": platform.processor() or platform.machine(), "kinds": {}}
    for kind, (numpy_fn, caffe_fn) in cases.items():
        t_numpy, t_caffe = best_time(numpy_fn, repeat), best_time(caffe_fn, repeat)
        results["kinds"][kind] = {
            "numpy_s": t_numpy,
            "caffe_exact_s": t_caffe,
            "numpy_ns_per_elem": t_numpy / size * 1e9,
            "caffe_exact_ns_per_elem": t_caffe / size * 1e9,
            "ratio": t_numpy / t_caffe,
            "target": TARGETS[kind],
        }
    return results


def report(results: dict) -> str:
    lines = [f"Caffe-exact vs numpy Generator(MT19937), {results['size']} float32, best of {results['repeat']}:"]
    for kind, r in results["kinds"].items():
        verdict = "meets" if r["ratio"] >= r["target"] else "BELOW"
        lines.append(
            f"  {kind:8s} numpy {r['numpy_ns_per_elem']:6.2f} ns/elem   caffe-exact "
            f"{r['caffe_exact_ns_per_elem']:6.2f} ns/elem   ratio {r['ratio']:5.2f}x "
            f"({verdict} target {r['target']}x)"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64 << 20, help="elements per fill (default 64 Mi)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per case (best is kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_caffe.json"))
    args = parser.parse_args(argv)
    results = run(args.size, args.repeat)
    print(report(results))
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
