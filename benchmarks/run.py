"""fillers benchmark suite: throughput of every filler against numpy and torch, measured in one run.

Usage::

    python benchmarks/run.py [--quick] [--out benchmarks/results.json] [--readme README.md]

Every filler fills 64 Mi elements (float32, then float64) with all cores and is compared with numpy's
nearest equivalent (``Generator(PCG64)``, single-threaded as numpy is) and, when torch is importable, with
``torch.nn.init`` on the same memory (all cores), each timed best-of-k after a warm-up in this same run.
Also: thread scaling 1 -> all cores, peak RSS while filling a 1 GiB blob (in a subprocess), ``fill_net`` of
VGG-19 against a torch script creating the same tensors, the Caffe-exact stream's section from
``benchmarks/bench_caffe.py``, the busy-neighbour section from ``benchmarks/bench_busy.py`` (all cores
against one thread while another process spins on one core) and the I/O section (``benchmarks/bench_io.py``:
load/save of VGG-19 in four formats, streaming fills, Dask; ``--io-only`` runs just that one).  Prints a
table and the issue's targets, writes
``benchmarks/results.json`` (with the machine: CPU model, cores, versions, SIMD path) and, with
``--readme``, rewrites the table between the README's benchmark-table markers.  ``--quick`` uses 4 Mi
elements (a smoke test, not a measurement).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from google.protobuf import text_format

import fillers
from fillers import _kernels

HERE = Path(__file__).resolve().parent
VGG19 = "davidgengenbach__vgg-caffe__model__VGG_ILSVRC_19_layers_deploy.prototxt"
CORPUS = Path(os.environ.get("FILLERS_SHARED", HERE.parents[1] / "shared")) / "corpus" / "prototxt"

# issue 6's targets: (filler, baseline) -> minimum ratio (float32, 64 Mi elements, all cores)
TARGETS = {
    ("constant", "numpy"): 0.9,
    ("uniform", "numpy"): 6, ("uniform", "torch"): 8,
    ("xavier", "numpy"): 6, ("xavier", "torch"): 8,
    ("gaussian", "numpy"): 10, ("gaussian", "torch"): 4,
    ("msra", "numpy"): 10, ("msra", "torch"): 4,
    ("positive_unitball", "numpy"): 4,
    ("gaussian+sparse", "numpy"): 4,
}
SCALING_TARGET = 1.8      # uniform and gaussian, 1 -> 2 threads
RSS_TARGET_MIB = 32       # peak RSS above the 1 GiB blob
FILL_NET_TARGET = 5       # fill_net VGG-19 vs torch


def best_interleaved(fns: dict[str, Callable[[], Any]], k: int) -> dict[str, float]:
    """Best wall time of each function over ``k`` rounds that call every function once, after a warm-up.

    Interleaving spreads each function's samples over the whole measurement, so a burst of load from another
    process (this machine's cores are shared) hits every side alike instead of one side's whole sample."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(k):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


# ------------------------------------------------------------------------------------------------------
# The cases: our filler, numpy's nearest equivalent, torch.nn.init's.

@dataclass
class Case:
    name: str
    filler: str
    shape: tuple[int, ...] | None = None   # fans / rows / sparse / bilinear need a shape; else 1-D
    numpy: str | None = None                # key into the numpy baselines
    torch: str | None = None                # torch.nn.init function
    torch_args: tuple = ()
    params: dict = field(default_factory=dict)


def cases(n: int) -> list[Case]:
    rows = 4096 if n >= 4096 * 64 else 64
    cols = n // rows
    k = 4  # bilinear: (n / (c k k), c, k, k)
    return [
        Case("constant", 'type: "constant" value: 0.5', None, "fill", "constant_", (0.5,), {"value": 0.5}),
        Case("uniform", 'type: "uniform" min: -0.1 max: 0.1', None, "uniform", "uniform_", (-0.1, 0.1),
             {"lo": -0.1, "hi": 0.1}),
        Case("xavier", 'type: "xavier"', (rows, cols), "uniform", "xavier_uniform_", (),
             {"lo": -math.sqrt(3 / cols), "hi": math.sqrt(3 / cols)}),
        Case("gaussian", 'type: "gaussian" std: 0.01', None, "normal", "normal_", (0.0, 0.01), {"std": 0.01}),
        Case("msra", 'type: "msra"', (rows, cols), "normal", "kaiming_normal_", (), {"std": math.sqrt(2 / cols)}),
        Case("positive_unitball", 'type: "positive_unitball"', (rows, cols), "unitball"),
        Case("gaussian+sparse", f'type: "gaussian" std: 0.01 sparse: {rows // 10}', (rows, cols), "sparse", None, (),
             {"std": 0.01, "p": (rows // 10) / rows}),
        Case("bilinear", 'type: "bilinear"', (n // (64 * k * k), 64, k, k), "bilinear", None, (), {"k": k}),
    ]


class NumpyBaselines:
    """numpy's nearest equivalents, filling ``a`` in place (buffers they need are allocated up front)."""

    def __init__(self, n: int, dtype: np.dtype):
        self.g = np.random.Generator(np.random.PCG64(12345))
        self.dtype = dtype
        self.scratch = np.empty(n, dtype)
        self.mask = np.empty(n, bool)

    def run(self, key: str, a: np.ndarray, case: Case) -> None:
        p, g, dt = case.params, self.g, self.dtype
        if key == "fill":
            a.fill(p["value"])
        elif key == "uniform":
            g.random(out=a, dtype=dt)
            a *= dt.type(p["hi"] - p["lo"])
            a += dt.type(p["lo"])
        elif key == "normal":
            g.standard_normal(out=a, dtype=dt)
            a *= dt.type(p["std"])
        elif key == "unitball":
            rows = a.reshape(case.shape)
            g.random(out=rows, dtype=dt)
            rows /= rows.sum(axis=1, keepdims=True)
        elif key == "sparse":
            g.standard_normal(out=a, dtype=dt)
            a *= dt.type(p["std"])
            g.random(out=self.scratch, dtype=dt)
            np.less(self.scratch, dt.type(p["p"]), out=self.mask)
            a *= self.mask
        elif key == "bilinear":
            kk = p["k"]
            f = dt.type(math.ceil(kk / 2))
            c = dt.type((kk - 1) / (2.0 * float(f)))
            w = 1 - np.abs(np.arange(kk, dtype=dt) / f - c)
            a.reshape(-1, kk * kk)[...] = np.outer(w, w).reshape(-1)
        else:  # pragma: no cover
            raise KeyError(key)


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------------------------------------------------
# Sections

def bench_fillers(n: int, dtype: np.dtype, k: int, torch, threads: int) -> list[dict]:
    a = np.empty(n, dtype)
    a.fill(0)  # fault the pages in once: no timing below includes first-touch page faults
    npb = NumpyBaselines(n, dtype)
    t = torch.from_numpy(a) if torch is not None else None
    rows = []
    for case in cases(n):
        view = a.reshape(case.shape) if case.shape else a
        fns = {
            "ours": lambda: fillers.fill(view, case.filler, seed=1, threads=threads),
            "ours_1thread": lambda: fillers.fill(view, case.filler, seed=1, threads=1),
            "numpy": lambda: npb.run(case.numpy, a, case),
        }
        if t is not None and case.torch:
            tv = t.view(case.shape) if case.shape else t
            init = getattr(torch.nn.init, case.torch)
            fns["torch"] = lambda: init(tv, *case.torch_args)
        best = best_interleaved(fns, k)
        ours, t_torch = best["ours"], best.get("torch")
        rows.append({
            "filler": case.name, "dtype": np.dtype(dtype).name, "n": n,
            "seconds": ours, "mfloat_s": n / ours / 1e6,
            "numpy_seconds": best["numpy"], "ratio_numpy": best["numpy"] / ours,
            "torch_seconds": t_torch, "ratio_torch": (t_torch / ours) if t_torch else None,
            "seconds_1thread": best["ours_1thread"], "thread_scaling": best["ours_1thread"] / ours,
        })
        print_row(rows[-1])
    return rows


_RSS_SCRIPT = r"""
import json, sys, numpy as np, fillers
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
n = (1 << 30) // 4
out = {}
for filler in sys.argv[1:]:
    blob = np.empty((4096, n // 4096), np.float32)   # not touched yet: no pages
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM (the peak) to the current RSS
        f.write("5")
    fillers.fill(blob, filler, seed=1)
    out[filler] = status("VmHWM") - before - blob.nbytes
    del blob
print(json.dumps(out))
"""


def bench_rss() -> dict:
    """Peak RSS above the blob while filling a 1 GiB float32 blob, per filler (fresh interpreter)."""
    fillers_ = ['type: "gaussian" std: 0.01 sparse: 100', 'type: "xavier"', 'type: "positive_unitball"']
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, *fillers_], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    over = json.loads(proc.stdout)
    worst = max(over.values())
    print(f"\npeak RSS above a 1 GiB blob: {worst / 2**10:.0f} KiB (max over "
          + ", ".join(f"{k.split()[1]} {v / 2**10:.0f}" for k, v in over.items()) + ")")
    return {"over_blob_bytes": over, "max_over_blob_mib": worst / 2**20}


def vgg19(weight_filler: str | None = None):
    """The corpus VGG-19 deploy net, or None when the corpus is absent; with ``weight_filler`` (FillerParameter
    text) every convolution and inner product weight gets that filler instead of the deploy file's none."""
    path = CORPUS / VGG19
    if not path.exists():
        return None
    net = fillers.load_net(str(path))
    if weight_filler is not None:
        for layer in net.layer:
            if layer.type == "Convolution":
                text_format.Parse(weight_filler, layer.convolution_param.weight_filler)
            elif layer.type == "InnerProduct":
                text_format.Parse(weight_filler, layer.inner_product_param.weight_filler)
    return net


def bench_fill_net(torch, k: int, net, label: str) -> dict:
    """fill_net of VGG-19 (float32, all cores) against torch creating the same tensors with torch.nn.init.

    Both sides allocate fresh arrays every time (what a user pays, page faults included)."""
    if net is None:
        print(f"\nfill_net {label}: skipped ({CORPUS / VGG19} not found)")
        return {"skipped": f"{CORPUS / VGG19} not found"}
    blobs = [b for layer in fillers.infer_shapes(net) for b in layer.blobs if b.share_owner is None]
    n_params = sum(math.prod(b.shape) for b in blobs)
    kinds = sorted({b.filler.type for b in blobs})
    fns = {"ours": lambda: fillers.fill_net(net, seed=1)}
    if torch is not None:
        fns["torch"] = lambda: torch_create(torch, blobs)
    best = best_interleaved(fns, k)
    ours = best["ours"]
    result = {"label": label, "parameters": n_params, "fillers": kinds, "seconds": ours}
    line = (f"\nfill_net {label} float32 ({n_params / 1e6:.1f} M parameters, fillers: {', '.join(kinds)}): "
            f"{ours * 1e3:.0f} ms")
    if torch is not None:
        t_torch = best["torch"]
        result.update(torch_seconds=t_torch, ratio_torch=t_torch / ours)
        line += f"; torch.nn.init {t_torch * 1e3:.0f} ms; ratio {t_torch / ours:.2f}x"
    print(line)
    return result


def torch_create(torch, blobs) -> list:
    """What a torch user writes: an empty tensor per blob, then the torch.nn.init call for its filler."""
    init = torch.nn.init
    out = []
    for blob in blobs:
        t = torch.empty(blob.shape, dtype=torch.float32)
        f = blob.filler
        if f.type == "constant":
            init.constant_(t, f.value)
        elif f.type == "uniform":
            init.uniform_(t, f.min, f.max)
        elif f.type == "gaussian":
            init.normal_(t, f.mean, f.std)
        elif f.type == "xavier":
            init.xavier_uniform_(t) if t.dim() >= 2 else init.uniform_(t, -1, 1)
        elif f.type == "msra":
            init.kaiming_normal_(t) if t.dim() >= 2 else init.normal_(t, 0, 1)
        else:  # positive_unitball, bilinear: no torch.nn.init equivalent; the closest cost
            init.uniform_(t)
        out.append(t)
    return out


def bench_section(name: str, **kwargs) -> dict | None:
    """The section in ``benchmarks/<name>.py`` (its ``run(**kwargs)``, printed with its ``report``), when
    present: bench_caffe (the Caffe-exact stream), bench_busy (all cores with one core busy), bench_report (the
    HTML report's statistics, histograms and VGG-19 page), bench_torch (fillers.torch against torch.nn.init)."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.run(**kwargs)
    print("\n" + module.report(results))
    return results


# ------------------------------------------------------------------------------------------------------
# Output

HEADER = f"{'filler':<18} {'dtype':<8} {'Mfloat/s':>9} {'x numpy':>8} {'x torch':>8} {'1->' + str(len(os.sched_getaffinity(0))) + ' thr':>8}"


def print_row(r: dict) -> None:
    torch_ratio = f"{r['ratio_torch']:.2f}" if r["ratio_torch"] else "-"
    print(f"{r['filler']:<18} {r['dtype']:<8} {r['mfloat_s']:>9.0f} {r['ratio_numpy']:>8.2f} {torch_ratio:>8} "
          f"{r['thread_scaling']:>8.2f}", flush=True)


def machine(torch) -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "simd_path": _kernels.simd_path(),
        "simd_paths": _kernels.simd_paths(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "fillers": fillers.__version__,
        "platform": platform.platform(),
    }


def check_targets(rows: list[dict], rss: dict, fill_net: dict) -> list[str]:
    lines = []
    f32 = {r["filler"]: r for r in rows if r["dtype"] == "float32"}
    for (name, base), target in TARGETS.items():
        got = f32[name][f"ratio_{base}"]
        if got is None:
            lines.append(f"  {name} vs {base}: not measured (no {base})")
        else:
            lines.append(f"  {'ok  ' if got >= target else 'MISS'} {name} vs {base}: {got:.2f}x (target >= {target}x)")
    for name in ("uniform", "gaussian"):
        got = f32[name]["thread_scaling"]
        lines.append(f"  {'ok  ' if got >= SCALING_TARGET else 'MISS'} {name} threads 1 -> all: {got:.2f}x "
                     f"(target >= {SCALING_TARGET}x)")
    if "max_over_blob_mib" in rss:
        got = rss["max_over_blob_mib"]
        lines.append(f"  {'ok  ' if got <= RSS_TARGET_MIB else 'MISS'} peak RSS above 1 GiB blob: {got:.1f} MiB "
                     f"(target <= {RSS_TARGET_MIB} MiB)")
    if "ratio_torch" in fill_net:
        got = fill_net["ratio_torch"]
        lines.append(f"  {'ok  ' if got >= FILL_NET_TARGET else 'MISS'} fill_net VGG-19 vs torch: {got:.2f}x "
                     f"(target >= {FILL_NET_TARGET}x)")
    else:
        lines.append(f"  fill_net VGG-19: {fill_net.get('skipped', 'not measured')}")
    return lines


def markdown(results: dict) -> str:
    """The README's table: the machine, one row per filler and dtype, then the other measurements."""
    m = results["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, SIMD path {m['simd_path']}; numpy {m['numpy']}, "
             f"torch {m['torch'] or '-'}; {results['elements'] >> 20} Mi elements, {results['date'][:10]}.", "",
             f"| filler | dtype | Mfloat/s | x numpy | x torch | threads 1 -> {m['cores']} |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results["fillers"]:
        torch_ratio = f"{r['ratio_torch']:.2f}" if r["ratio_torch"] else "-"
        lines.append(f"| {r['filler']} | {r['dtype']} | {r['mfloat_s']:.0f} | {r['ratio_numpy']:.2f} | "
                     f"{torch_ratio} | {r['thread_scaling']:.2f} |")
    lines.append("")
    if "max_over_blob_mib" in results["rss"]:
        lines.append(f"Peak RSS while filling a 1 GiB blob: {results['rss']['max_over_blob_mib'] * 1024:.0f} KiB above "
                     "the blob.")
    for key in ("fill_net_vgg19", "fill_net_vgg19_gaussian"):
        net = results.get(key, {})
        if "seconds" in net:
            lines.append(f"`fill_net` {net['label']} float32 ({net['parameters'] / 1e6:.1f} M parameters, "
                         f"fillers: {', '.join(net['fillers'])}): {net['seconds'] * 1e3:.0f} ms"
                         + (f", {net['ratio_torch']:.2f}x torch.nn.init." if "ratio_torch" in net else "."))
    caffe = results.get("caffe")
    if caffe and "kinds" in caffe:
        lines.append("Caffe-exact stream vs numpy MT19937: "
                     + ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in caffe["kinds"].items()) + ".")
    busy = results.get("busy_neighbour")
    if busy:
        lines.append(f"One core kept busy by another process: all {busy['threads']} threads vs one thread (median "
                     f"time ratio, >= 1 is not slower) "
                     + ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in busy["fillers"].items()) + ".")
    if results.get("torch_init"):
        from bench_torch import markdown as torch_markdown

        lines += ["", torch_markdown(results["torch_init"])]
    return "\n".join(lines)


def update_readme(path: Path, table: str, marker: str = "benchmark-table") -> None:
    """Replace what lies between the README's ``<!-- marker -->`` and ``<!-- /marker -->``."""
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    path.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")


def io_section(quick: bool) -> dict:
    """The I/O section (benchmarks/bench_io.py): its results, targets and README text."""
    import bench_io

    results = bench_io.run(quick=quick)
    results["targets"] = bench_io.targets(results)
    results["markdown"] = bench_io.markdown(results)
    print("\n" + results["markdown"])
    print("\ntargets (issue 13):")
    print("\n".join(results["targets"]))
    return results


def write_results(path: Path, results: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def main_io(args: argparse.Namespace) -> int:
    """Only the I/O section: its key of the results file and its README table are replaced."""
    io = io_section(args.quick)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["io"] = dict(io, machine=machine(torch_module()), date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_results(args.out, results)
    if args.readme:
        update_readme(args.readme, io["markdown"], "io-table")
        print(f"updated {args.readme}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 Mi elements, fewer repeats (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--readme", type=Path, help="also rewrite the table in this README")
    parser.add_argument("--io-only", action="store_true",
                        help="run only the I/O section (benchmarks/bench_io.py) and update its part of the results")
    args = parser.parse_args(argv)
    if args.io_only:
        return main_io(args)

    n = (4 if args.quick else 64) << 20
    k = 2 if args.quick else 5
    torch = torch_module()
    threads = fillers.default_threads()
    info = machine(torch)
    print(f"{info['cpu']}, {info['cores']} cores, SIMD path {info['simd_path']}; numpy {info['numpy']}, "
          f"torch {info['torch'] or 'not installed'}; {n >> 20} Mi elements, best of {k}\n")
    print(HEADER)
    started = time.perf_counter()
    rows = bench_fillers(n, np.dtype(np.float32), k, torch, threads)
    rows += bench_fillers(n, np.dtype(np.float64), max(2, k - 2), torch, threads)
    rss = bench_rss() if not args.quick else {}
    fill_net = bench_fill_net(torch, 3 if not args.quick else 1, vgg19(), "VGG-19 (deploy: constant fillers)")
    fill_net_gaussian = bench_fill_net(torch, 3 if not args.quick else 1, vgg19('type: "gaussian" std: 0.01'),
                                       "VGG-19 (weights gaussian std 0.01)")
    caffe = bench_section("bench_caffe", size=n, repeat=max(2, k - 2))
    busy = bench_section("bench_busy", size=n, repeat=2 * k - 1)
    io = io_section(args.quick)
    html_report = bench_section("bench_report", size=n, repeat=max(2, k - 2))
    torch_init = bench_section("bench_torch", size=n // 2, repeat=k)
    elapsed = time.perf_counter() - started

    summary = check_targets(rows, rss, fill_net) if not args.quick else []
    if summary:
        print("\ntargets (issue 6):")
        print("\n".join(summary))
    print(f"\n{elapsed:.0f} s")

    results = {"machine": info, "elements": n, "best_of": k, "threads": threads, "fillers": rows,
               "rss": rss, "fill_net_vgg19": fill_net, "fill_net_vgg19_gaussian": fill_net_gaussian,
               "caffe": caffe, "busy_neighbour": busy, "io": io, "report": html_report, "torch_init": torch_init,
               "targets": summary,
               "seconds": elapsed, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_results(args.out, results)
    if args.readme:
        update_readme(args.readme, markdown(results))
        update_readme(args.readme, io["markdown"], "io-table")
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
