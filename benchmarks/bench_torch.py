"""fillers.torch against torch.nn.init: the same job on the same tensor, timed in one run.

Every initializer of :mod:`fillers.torch` fills a torch tensor in place (orthogonal_: a 1024 x 4096 matrix,
whose cost is the QR decomposition) in float32, float16 and bfloat16, and ``torch.nn.init``'s function with
the same arguments fills the same tensor; each side is timed best-of-k, interleaved round by round (see
``run.best_interleaved``), both on the same number of threads (fillers' default; torch is set to it).  The
draw-free rows also give the bandwidth each side writes at; then every function is timed on a small tensor
(64 x 64), where the per-call overhead is the cost.  The issue's targets: >= 4x torch on float32, >= 2x on float16.

A section of ``benchmarks/run.py`` (its results and README table include it); alone:
``python benchmarks/bench_torch.py`` prints the table and writes ``benchmarks/results_torch.json``.
"""
from __future__ import annotations

import os
import sys
import time

from run import HERE, best_interleaved, write_results

TARGETS = {"float32": 4.0, "float16": 2.0}
DTYPES = ("float32", "float16", "bfloat16")


def jobs(n: int) -> list[tuple[str, tuple[int, ...], dict]]:
    """(function, shape, keyword arguments): the same call on both sides."""
    conv = (n // (256 * 9), 256, 3, 3)
    side = int(n**0.5)
    return [
        ("uniform_", (n,), {"a": -0.1, "b": 0.1}),
        ("normal_", (n,), {"std": 0.02}),
        ("trunc_normal_", (n,), {"std": 0.02, "a": -0.04, "b": 0.04}),
        ("xavier_uniform_", conv, {}),
        ("xavier_normal_", conv, {}),
        ("kaiming_uniform_", conv, {"a": 5**0.5}),
        ("kaiming_normal_", conv, {"mode": "fan_out", "nonlinearity": "relu"}),
        ("orthogonal_", (1024, 4096) if n >= 1 << 22 else (256, 1024), {}),
        ("constant_", (n,), {"val": 0.5}),
        ("zeros_", (n,), {}),
        ("ones_", (n,), {}),
        ("eye_", (side, n // side), {}),
        ("dirac_", conv, {}),
    ]


#: Draw-free initializers: they only write memory, so their rows also give GB/s.
WRITE_ONLY = ("constant_", "zeros_", "ones_", "eye_", "dirac_")
#: Their calls take a few milliseconds, over which this machine's memory bandwidth moves by tens of percent:
#: they are timed this many times more often than the others (best of 25 for the default 5).
WRITE_ONLY_REPEAT = 5
#: The small-tensor rows (per-call overhead): a 64 x 64 matrix (dirac_: a 16 x 4 x 3 x 3 convolution).
SMALL_SHAPE, SMALL_CONV = (64, 64), (16, 4, 3, 3)


def _time_both(torch, ours, name: str, tensor, kwargs: dict, repeat: int, calls: int = 1) -> dict:
    """Best-of-``repeat`` seconds per call of fillers.torch's and torch.nn.init's ``name`` on ``tensor``
    (``calls`` calls per sample, for calls too short to time one at a time); no torch entry where torch
    cannot do it."""
    mine, theirs = getattr(ours, name), getattr(torch.nn.init, name)

    def many(fn):
        def call():
            for _ in range(calls):
                fn(tensor, **kwargs)
        return call

    fns = {"ours": many(mine), "torch": many(theirs)}
    try:
        theirs(tensor, **kwargs)
    except (NotImplementedError, RuntimeError):  # torch's orthogonal_ has no half-precision QR
        del fns["torch"]
    return {side: seconds / calls for side, seconds in best_interleaved(fns, repeat).items()}


def run(size: int = 32 << 20, repeat: int = 5) -> dict | None:
    """Time every job in every dtype, then the small-tensor calls; None when torch is not installed.  Both
    sides use the same number of threads (fillers' default, which torch is set to)."""
    try:
        import torch
    except ImportError:
        return None
    import fillers.torch as ours
    from fillers._fill import default_threads

    threads = default_threads()
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for dtype in DTYPES:
        for name, shape, kwargs in jobs(size):
            t = torch.zeros(shape, dtype=getattr(torch, dtype))  # pages faulted in once, outside the timing
            best = _time_both(torch, ours, name, t, kwargs, repeat * (WRITE_ONLY_REPEAT if name in WRITE_ONLY else 1))
            t_torch = best.get("torch")
            row = {"function": name, "dtype": dtype, "shape": list(shape), "n": t.numel(),
                   "seconds": best["ours"], "torch_seconds": t_torch,
                   "mfloat_s": t.numel() / best["ours"] / 1e6,
                   "ratio_torch": t_torch / best["ours"] if t_torch else None}
            if name in WRITE_ONLY:
                nbytes = t.numel() * t.element_size()
                row["gbytes_s"], row["torch_gbytes_s"] = nbytes / best["ours"] / 1e9, nbytes / t_torch / 1e9
            rows.append(row)
    small = []
    for name, _, kwargs in jobs(size):
        t = torch.zeros(SMALL_CONV if name == "dirac_" else SMALL_SHAPE)
        best = _time_both(torch, ours, name, t, kwargs, repeat, calls=50)
        small.append({"function": name, "dtype": "float32", "shape": list(t.shape), "microseconds": best["ours"] * 1e6,
                      "torch_microseconds": best["torch"] * 1e6, "ratio_torch": best["torch"] / best["ours"]})
    return {"elements": size, "best_of": repeat, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "fillers_threads": threads, "load_average_1min": load, "rows": rows, "small": small}


def targets(results: dict) -> list[str]:
    """The issue's targets, one line per (function, dtype) that has one."""
    lines = []
    for r in results["rows"]:
        target = TARGETS.get(r["dtype"])
        if target is not None and r["ratio_torch"] is not None:
            ok = "ok  " if r["ratio_torch"] >= target else "MISS"
            lines.append(f"  {ok} {r['function']} {r['dtype']}: {r['ratio_torch']:.2f}x (target >= {target}x)")
    return lines


def markdown(results: dict) -> str:
    """The README's tables of this section."""
    lines = [f"`fillers.torch` vs `torch.nn.init` {results['torch']} (both {results['torch_threads']} threads) on the "
             f"same tensor, {results['elements'] >> 20} Mi elements (orthogonal_: 1024 x 4096), best of "
             f"{results['best_of']} (the initializers that only write memory: best of "
             f"{results['best_of'] * WRITE_ONLY_REPEAT}, with GB/s):", "",
             "| function | dtype | Mfloat/s | GB/s (torch) | torch.nn.init ms | fillers.torch ms | x torch |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        torch_ms, ratio = ("unsupported", "-") if r["ratio_torch"] is None else (
            f"{r['torch_seconds'] * 1e3:.1f}", f"{r['ratio_torch']:.2f}")
        bandwidth = f"{r['gbytes_s']:.1f} ({r['torch_gbytes_s']:.1f})" if "gbytes_s" in r else ""
        lines.append(f"| `{r['function']}` | {r['dtype']} | {r['mfloat_s']:.0f} | {bandwidth} | {torch_ms} | "
                     f"{r['seconds'] * 1e3:.1f} | {ratio} |")
    if results.get("small"):
        lines += ["", "One call on a small float32 tensor (64 x 64; dirac_: 16 x 4 x 3 x 3), the per-call overhead:", "",
                  "| function | torch.nn.init µs | fillers.torch µs | x torch |", "|---|---:|---:|---:|"]
        lines += [f"| `{r['function']}` | {r['torch_microseconds']:.1f} | {r['microseconds']:.1f} | "
                  f"{r['ratio_torch']:.2f} |" for r in results["small"]]
    return "\n".join(lines)


def report(results: dict | None) -> str:
    if results is None:
        return "fillers.torch vs torch.nn.init: skipped (torch not installed)"
    load = results["load_average_1min"]
    return (markdown(results) + (f"\n\nload average before: {load:.1f}" if load is not None else "")
            + "\n\ntargets (issue 12):\n" + "\n".join(targets(results)))


if __name__ == "__main__":
    started = time.perf_counter()
    section = run()
    print(report(section))
    if section is not None:
        section["seconds"] = time.perf_counter() - started
        write_results(HERE / "results_torch.json", section)
    sys.exit(0 if section is not None else 1)
