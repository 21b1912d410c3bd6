"""fillers.torch against torch.nn.init: the same job on the same tensor, timed in one run.

Every initializer of :mod:`fillers.torch` fills a torch tensor in place (orthogonal_: a 1024 x 4096 matrix,
whose cost is the QR decomposition) in float32, float16 and bfloat16, and ``torch.nn.init``'s function with
the same arguments fills the same tensor; each side is timed best-of-k, interleaved round by round (see
``run.best_interleaved``), both on all cores.  The issue's targets: >= 4x torch on float32, >= 2x on float16.

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


def run(size: int = 32 << 20, repeat: int = 5) -> dict | None:
    """Time every job in every dtype; None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    import fillers.torch as ours

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for dtype in DTYPES:
        for name, shape, kwargs in jobs(size):
            t = torch.zeros(shape, dtype=getattr(torch, dtype))  # pages faulted in once, outside the timing
            mine, theirs = getattr(ours, name), getattr(torch.nn.init, name)
            fns = {"ours": lambda: mine(t, **kwargs), "torch": lambda: theirs(t, **kwargs)}
            try:
                theirs(t, **kwargs)
            except (NotImplementedError, RuntimeError):  # torch's orthogonal_ has no half-precision QR
                del fns["torch"]
            best = best_interleaved(fns, repeat)
            t_torch = best.get("torch")
            rows.append({"function": name, "dtype": dtype, "shape": list(shape), "n": t.numel(),
                         "seconds": best["ours"], "torch_seconds": t_torch,
                         "mfloat_s": t.numel() / best["ours"] / 1e6,
                         "ratio_torch": t_torch / best["ours"] if t_torch else None})
    return {"elements": size, "best_of": repeat, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_1min": load, "rows": rows}


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
    """The README's table of this section."""
    lines = [f"`fillers.torch` vs `torch.nn.init` {results['torch']} ({results['torch_threads']} threads) on the "
             f"same tensor, {results['elements'] >> 20} Mi elements (orthogonal_: 1024 x 4096), best of "
             f"{results['best_of']}:", "",
             "| function | dtype | Mfloat/s | torch.nn.init ms | fillers.torch ms | x torch |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        torch_ms, ratio = ("unsupported", "-") if r["ratio_torch"] is None else (
            f"{r['torch_seconds'] * 1e3:.1f}", f"{r['ratio_torch']:.2f}")
        lines.append(f"| `{r['function']}` | {r['dtype']} | {r['mfloat_s']:.0f} | {torch_ms} | "
                     f"{r['seconds'] * 1e3:.1f} | {ratio} |")
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
