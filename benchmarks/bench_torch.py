"""fillers.torch against torch.nn.init: the same job on the same tensor, timed in one run.

Usage::

    python benchmarks/bench_torch.py [--quick] [--out benchmarks/results_torch.json] [--readme README.md]

Every initializer of :mod:`fillers.torch` fills a 32 Mi-element torch tensor in place (orthogonal_: a
1024 x 4096 matrix, whose cost is the QR decomposition) in float32, float16 and bfloat16, and
``torch.nn.init``'s function with the same arguments fills the same tensor; each side is timed best-of-k,
interleaved (see ``run.best_interleaved``), both on all cores.  Prints the table and the issue's targets
(>= 4x torch on float32, >= 2x on float16), writes the results file and, with ``--readme``, the table
between the README's torch-benchmark-table markers.  ``--quick`` uses 2 Mi elements (a smoke test).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from run import HERE, best_interleaved, machine, update_readme

import fillers.torch as ours

TARGETS = {"float32": 4.0, "float16": 2.0}
MARKER = "torch-benchmark-table"


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


def bench(torch, n: int, dtype: str, k: int) -> list[dict]:
    rows = []
    for name, shape, kwargs in jobs(n):
        t = torch.zeros(shape, dtype=getattr(torch, dtype))  # pages faulted in once, outside the timing
        mine, theirs = getattr(ours, name), getattr(torch.nn.init, name)
        best = best_interleaved({"ours": lambda: mine(t, **kwargs), "torch": lambda: theirs(t, **kwargs)}, k)
        count = t.numel()
        row = {"function": name, "dtype": dtype, "shape": list(shape), "n": count, "seconds": best["ours"],
               "torch_seconds": best["torch"], "mfloat_s": count / best["ours"] / 1e6,
               "ratio_torch": best["torch"] / best["ours"]}
        print(f"{name:<18} {dtype:<9} {row['mfloat_s']:>9.0f} {row['torch_seconds'] * 1e3:>9.1f} "
              f"{row['seconds'] * 1e3:>9.1f} {row['ratio_torch']:>8.2f}", flush=True)
        rows.append(row)
    return rows


def check_targets(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        target = TARGETS.get(row["dtype"])
        if target is not None:
            ok = "ok  " if row["ratio_torch"] >= target else "MISS"
            lines.append(f"  {ok} {row['function']} {row['dtype']}: {row['ratio_torch']:.2f}x (target >= {target}x)")
    return lines


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, SIMD path {m['simd_path']}; torch {m['torch']} "
             f"({m['torch_threads']} threads); {results['elements'] >> 20} Mi elements "
             f"(orthogonal_: {results['orthogonal_shape'][0]} x {results['orthogonal_shape'][1]}), best of "
             f"{results['best_of']}, {results['date'][:10]}.", "",
             "| function | dtype | Mfloat/s | torch.nn.init ms | fillers.torch ms | x torch |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| `{r['function']}` | {r['dtype']} | {r['mfloat_s']:.0f} | {r['torch_seconds'] * 1e3:.1f} | "
                     f"{r['seconds'] * 1e3:.1f} | {r['ratio_torch']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 Mi elements, fewer repeats (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results_torch.json", help="where to write the results")
    parser.add_argument("--readme", type=Path, help="also rewrite the table in this README")
    args = parser.parse_args(argv)
    import torch

    n = (2 if args.quick else 32) << 20
    k = 2 if args.quick else 5
    info = machine(torch)
    print(f"{info['cpu']}, {info['cores']} cores, SIMD path {info['simd_path']}; torch {info['torch']}; "
          f"{n >> 20} Mi elements, best of {k}\n")
    print(f"{'function':<18} {'dtype':<9} {'Mfloat/s':>9} {'torch ms':>9} {'ours ms':>9} {'x torch':>8}")
    started = time.perf_counter()
    rows = []
    for dtype in ("float32", "float16", "bfloat16"):
        rows += bench(torch, n, dtype, k)
    summary = check_targets(rows)
    print("\ntargets (issue 12):\n" + "\n".join(summary))
    results = {"machine": info, "elements": n, "orthogonal_shape": dict((j[0], j[1]) for j in jobs(n))["orthogonal_"],
               "best_of": k, "rows": rows, "targets": summary, "seconds": time.perf_counter() - started,
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    if args.readme:
        update_readme(args.readme, markdown(results), MARKER)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
