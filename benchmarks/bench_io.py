"""The I/O section of the benchmarks: reading and writing VGG-19, streaming fills, Dask.

Measured in one run, each side against its baseline in the same run:

- ``load``/``save`` of VGG-19 (``benchmarks/vgg19.prototxt``, 548 MiB of float32) in the four formats, against
  protobuf's own parse of the ``.caffemodel`` (and that parse turned into numpy arrays, what ``load`` did
  before), h5py, numpy and safetensors reading the same files.  Every load is followed by a read of one value
  per 4 KiB page of every array, so lazily mapped data is paid for too (files in the page cache: the
  figures are CPU and memory costs, not the disk's).
- Peak RSS of loading the ``.caffemodel`` (views of a mapped file) against protobuf's parse, in fresh
  interpreters; and of a 4 GiB streaming fill (``fill_net(..., out=x.safetensors)``).
- The main job on VGG-19 to ``.caffemodel`` / ``.safetensors``, fsync included, against numpy writing the same
  number of bytes: ``fill_net(net, out=...)`` against ``tofile`` in one warm process, and the ``fillers fill``
  command against a numpy program, fresh processes (see :func:`bench_end_to_end`).
- A fresh process's first ``fill_net`` of VGG-19 against refilling its arrays in place.
- ``fillers.dask.filled`` of one blob on Dask's threaded scheduler and on a local cluster of 2 worker
  processes, against ``fillers.fill`` on all cores (when dask is installed).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fillers
from bench_caffe import best_time

HERE = Path(__file__).resolve().parent
VGG19 = HERE / "vgg19.prototxt"
FORMATS = (".caffemodel", ".h5", ".npz", ".safetensors")

# issue 13's targets
LOAD_VS_PROTOBUF = 10  # caffemodel load at least 10x faster than protobuf's parse
LOAD_RSS_OVER_FILE_MIB = 64  # peak RSS of a caffemodel load <= file size + 64 MiB
STREAM_RSS_MIB = 256  # a streaming fill: <= 256 MiB above the interpreter
END_TO_END_VS_TOFILE = 1.2  # fillers fill -o x.caffemodel within 1.2x of numpy tofile
FRESH_VS_WARM = 1.5  # first fill of a fresh process within 1.5x of refilling warm memory


def touch(params: dict) -> float:
    """Read one value per 4 KiB page of every float array (the pages of a mapped file are read from it; a
    file's metadata entry, such as the npz's ``__metadata__`` string, is not a blob)."""
    return sum(float(np.add.reduce(blob.reshape(-1)[::512])) for blobs in params.values() for blob in blobs
               if blob.dtype.kind == "f")


def _baseline_load(path: Path) -> Callable[[], dict]:
    suffix = path.suffix
    if suffix == ".caffemodel":
        from fillers import caffe_pb2

        def parse() -> dict:  # every value is read by the parse itself: nothing left to touch
            caffe_pb2.NetParameter.FromString(path.read_bytes())
            return {}
        return parse
    if suffix == ".h5":
        import h5py

        def h5() -> dict:
            with h5py.File(path, "r") as f:
                return {layer: [group[i][...] for i in group] for layer, group in f["data"].items()}
        return h5
    if suffix == ".npz":
        def npz() -> dict:
            with np.load(path) as f:
                return {key: [f[key]] for key in f.files}
        return npz
    from safetensors.numpy import load_file

    return lambda: {key: [value] for key, value in load_file(str(path)).items()}


def _protobuf_to_numpy(path: Path) -> dict:
    """What fillers.load did before the streaming reader: protobuf's parse, then numpy arrays."""
    from fillers import caffe_pb2
    from fillers.caffemodel import blob_array

    net = caffe_pb2.NetParameter.FromString(path.read_bytes())
    return {layer.name: [blob_array(b) for b in layer.blobs] for layer in net.layer if len(layer.blobs)}


def bench_formats(params: dict, net, workdir: Path, k: int) -> dict:
    nbytes = sum(b.nbytes for blobs in params.values() for b in blobs)
    out: dict[str, Any] = {"bytes": nbytes}
    for suffix in FORMATS:
        path = workdir / f"vgg19{suffix}"
        save = best_time(lambda: fillers.save(params, path, net=net), max(1, k - 1))
        ours = best_time(lambda: touch(fillers.load(path)), k)
        baseline = _baseline_load(path)
        theirs = best_time(lambda: touch(baseline()), k)
        row = {"save_s": save, "load_s": ours, "baseline_load_s": theirs, "file_bytes": path.stat().st_size}
        if suffix == ".caffemodel":
            row["protobuf_to_numpy_s"] = best_time(lambda: touch(_protobuf_to_numpy(path)), max(1, k - 1))
        out[suffix] = row
    return out


# Peak RSS of this process (Linux), for the scripts run in fresh interpreters.
_HWM = """
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
"""

_LOAD_RSS = _HWM + """
import sys
import numpy as np, fillers
from fillers import caffe_pb2
from fillers.caffemodel import blob_array
path = sys.argv[2]
before = hwm()
if sys.argv[1] == "fillers":
    params = fillers.load(path)
else:
    net = caffe_pb2.NetParameter.FromString(open(path, "rb").read())
    params = {l.name: [blob_array(b) for b in l.blobs] for l in net.layer if len(l.blobs)}
total = sum(float(np.add.reduce(b.reshape(-1)[::512])) for bs in params.values() for b in bs)
print(hwm() - before)
"""


def bench_load_rss(path: Path) -> dict:
    """Peak RSS growth of loading (and touching) the .caffemodel, fresh interpreters."""
    out = {"file_bytes": path.stat().st_size}
    for side in ("fillers", "protobuf"):
        proc = subprocess.run([sys.executable, "-c", _LOAD_RSS, side, str(path)], capture_output=True, text=True,
                              check=True)
        out[f"{side}_bytes"] = int(proc.stdout)
    return out


_STREAM_RSS = _HWM + """
import sys, time
import fillers
net = fillers.load_net(sys.argv[1])
before = hwm()
t0 = time.perf_counter()
fillers.fill_net(net, seed=1, out=sys.argv[2])
print(hwm() - before, time.perf_counter() - t0)
"""


def bench_stream_rss(workdir: Path, gib: float) -> dict:
    """Peak RSS growth of a streaming fill of one inner product of ``gib`` GiB (float32) to .safetensors."""
    side = int(math.sqrt(gib * 2**30 / 4))
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: %d } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: %d '
            'weight_filler { type: "gaussian" std: 0.01 } } }\n') % (side, side)
    proto = workdir / "big.prototxt"
    proto.write_text(text)
    out = workdir / "big.safetensors"
    proc = subprocess.run([sys.executable, "-c", _STREAM_RSS, str(proto), str(out)], capture_output=True, text=True,
                          check=True)
    grown, seconds = proc.stdout.split()
    result = {"blob_bytes": side * side * 4, "file_bytes": out.stat().st_size, "rss_growth_bytes": int(grown),
              "seconds": float(seconds)}
    out.unlink()
    return result


_JOB = """
import os, sys, time
import numpy as np
import fillers
net = fillers.load_net(sys.argv[1])
out, raw, nbytes, k = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = np.ones(nbytes // 4, np.float32)
fillers.fill_net(net, seed=1, out=out)  # warm: imports, the thread pool
os.unlink(out)
job, tofile = [], []
for _ in range(k):  # alternately, so that both see the same machine
    t0 = time.perf_counter()
    fillers.fill_net(net, seed=1, out=out)
    job.append(time.perf_counter() - t0)
    os.unlink(out)
    t0 = time.perf_counter()
    with open(raw, "wb") as f:
        data.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    tofile.append(time.perf_counter() - t0)
    os.unlink(raw)
print(min(job), min(tofile))
"""

_NUMPY_COMMAND = """
import os, sys
import numpy as np
with open(sys.argv[2], "wb") as f:
    np.ones(int(sys.argv[1]) // 4, np.float32).tofile(f)
    f.flush()
    os.fsync(f.fileno())
"""


def _timed_run(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env)
    return time.perf_counter() - t0


def bench_end_to_end(workdir: Path, nbytes: int, k: int) -> dict:
    """The main job on VGG-19, fsync included, against numpy writing the same number of bytes:

    - ``job``: ``fill_net(net, out=OUT)`` against ``tofile`` + fsync of an array of the same bytes, in one warm
      process, alternately;
    - ``command``: ``fillers fill VGG-19 -o OUT`` against a numpy program that writes as many bytes
      (``np.ones(...).tofile`` + fsync), each a fresh process timed from its start, alternately.

    Bytecode is cached as on a user's machine (an installed package's is; this environment may set
    PYTHONDONTWRITEBYTECODE, which would make every start compile every module)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, Any] = {"job": {}, "command": {}}
    raw = workdir / "tofile.bin"
    for suffix in (".caffemodel", ".safetensors"):
        target = workdir / f"e2e{suffix}"
        proc = subprocess.run([sys.executable, "-c", _JOB, str(VGG19), str(target), str(raw), str(nbytes), str(k)],
                              capture_output=True, text=True, check=True, env=env)
        job, tofile = map(float, proc.stdout.split())
        out["job"][suffix] = {"fillers_s": job, "tofile_s": tofile}
        cli = [sys.executable, "-m", "fillers", "fill", str(VGG19), "-o", str(target), "--quiet", "--seed", "1"]
        numpy_cmd = [sys.executable, "-c", _NUMPY_COMMAND, str(nbytes), str(raw)]
        _timed_run(cli, env)  # warm: the bytecode cache, the file's directory
        times: dict[str, list[float]] = {"fillers_s": [], "numpy_s": []}
        for _ in range(k):
            times["fillers_s"].append(_timed_run(cli, env))
            target.unlink()
            times["numpy_s"].append(_timed_run(numpy_cmd, env))
            raw.unlink()
        out["command"][suffix] = {key: min(values) for key, values in times.items()}
    # The interpreter and imports alone, the floor of any command.
    out["startup_s"] = min(_timed_run([sys.executable, "-c", "import fillers.cli"], env) for _ in range(k + 1))
    out["numpy_startup_s"] = min(_timed_run([sys.executable, "-c", "import numpy"], env) for _ in range(k + 1))
    return out


_FRESH = """
import sys, time
import fillers
from fillers import fill, infer_shapes, philox_stream
net = fillers.load_net(sys.argv[1])
fillers.fill_net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 8 } } }', seed=1)
t0 = time.perf_counter()
params = fillers.fill_net(net, seed=1)
fresh = time.perf_counter() - t0
layers = infer_shapes(net)
warm = []
for _ in range(3):
    t0 = time.perf_counter()
    for layer in layers:
        for i, blob in enumerate(layer.blobs):
            fill(params[layer.name][i], blob.filler, seed=1, stream=philox_stream(layer.name, i))
    warm.append(time.perf_counter() - t0)
# The OS's page supply alone: a first write of as many bytes (a constant, with the same threads), then again.
import numpy as np
pages = np.empty(sum(b.size for blobs in params.values() for b in blobs), np.float32)
del params
t0 = time.perf_counter()
fill(pages, "constant")
first_write = time.perf_counter() - t0
t0 = time.perf_counter()
fill(pages, "constant")
print(fresh, min(warm), first_write, time.perf_counter() - t0)
"""


def bench_fresh_vs_warm(k: int) -> dict:
    """A fresh process's first ``fill_net`` of VGG-19 (its memory supplied by the OS as it is first written)
    against refilling the same arrays, best of ``k`` processes: how fast the OS supplies fresh pages varies
    from one process to the next (transparent huge pages when 2 MiB runs are free, small pages otherwise)."""
    runs = []
    for _ in range(k):
        proc = subprocess.run([sys.executable, "-c", _FRESH, str(VGG19)], capture_output=True, text=True,
                              check=True)
        runs.append(tuple(map(float, proc.stdout.split())))
    return {"fresh_s": min(run[0] for run in runs), "warm_s": min(run[1] for run in runs),
            "fresh_runs_s": [run[0] for run in runs], "first_write_s": min(run[2] for run in runs),
            "rewrite_s": min(run[3] for run in runs)}


def bench_dask(mib: int, k: int) -> dict:
    try:
        import dask
        import distributed

        import fillers.dask as fd
    except ImportError as err:
        return {"skipped": f"dask not installed ({err})"}
    shape = (mib << 18,)  # float32
    filler = 'type: "gaussian" std: 0.01'
    out: dict[str, Any] = {"bytes": mib << 20}
    out["fill_s"] = best_time(lambda: fillers.fill(np.empty(shape, np.float32), filler, seed=1), k)
    x = fd.filled(shape, filler, seed=1, chunks=16 << 18)
    with dask.config.set(scheduler="threads"):
        out["dask_threads_s"] = best_time(lambda: x.compute(), k)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        out["dask_cluster_s"] = best_time(lambda: x.compute(), k)
        out["dask_cluster_sum_s"] = best_time(lambda: x.sum().compute(), k)
    return out


def run(quick: bool = False) -> dict:
    k = 1 if quick else 2
    net = fillers.load_net(str(VGG19))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("FILLERS_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        params = fillers.fill_net(net, seed=1)
        nbytes = sum(b.nbytes for blobs in params.values() for b in blobs)
        results["formats"] = bench_formats(params, net, workdir, k)
        del params
        results["load_rss"] = bench_load_rss(workdir / "vgg19.caffemodel")
        for suffix in FORMATS:
            (workdir / f"vgg19{suffix}").unlink()
        results["stream_rss"] = bench_stream_rss(workdir, 0.25 if quick else 4)
        results["end_to_end"] = bench_end_to_end(workdir, nbytes, 2 if quick else 5)
    results["fresh_vs_warm"] = bench_fresh_vs_warm(2 if quick else 5)
    results["dask"] = bench_dask(64 if quick else 512, k)
    results["load_average"] = os.getloadavg()  # the cores are often shared: read the figures with it
    return results


def targets(r: dict) -> list[str]:
    lines = []

    def line(ok: bool, text: str) -> None:
        lines.append(f"  {'ok  ' if ok else 'MISS'} {text}")

    cm = r["formats"][".caffemodel"]
    ratio = cm["baseline_load_s"] / cm["load_s"]
    line(ratio >= LOAD_VS_PROTOBUF, f"caffemodel load vs protobuf parse: {ratio:.1f}x (target >= {LOAD_VS_PROTOBUF}x)")
    over = (r["load_rss"]["fillers_bytes"] - r["load_rss"]["file_bytes"]) / 2**20
    line(over <= LOAD_RSS_OVER_FILE_MIB, f"caffemodel load peak RSS - file size: {over:+.0f} MiB "
                                         f"(target <= {LOAD_RSS_OVER_FILE_MIB} MiB)")
    grown = r["stream_rss"]["rss_growth_bytes"] / 2**20
    line(grown <= STREAM_RSS_MIB, f"streaming fill of {r['stream_rss']['blob_bytes'] / 2**30:.2f} GiB: peak RSS "
                                  f"+{grown:.0f} MiB (target <= {STREAM_RSS_MIB} MiB)")
    e2e = r["end_to_end"]
    for suffix in (".caffemodel", ".safetensors"):
        job = e2e["job"][suffix]
        ratio = job["fillers_s"] / job["tofile_s"]
        line(ratio <= END_TO_END_VS_TOFILE, f"fill_net(VGG-19, out=x{suffix}) vs numpy tofile of the same bytes: "
                                            f"{ratio:.2f}x (target <= {END_TO_END_VS_TOFILE}x)")
        cmd = e2e["command"][suffix]
        ratio = cmd["fillers_s"] / cmd["numpy_s"]
        line(ratio <= END_TO_END_VS_TOFILE, f"`fillers fill VGG-19 -o x{suffix}` vs a numpy program writing the "
                                            f"same bytes, fresh processes: {ratio:.2f}x (target <= "
                                            f"{END_TO_END_VS_TOFILE}x)")
    fw = r["fresh_vs_warm"]
    ratio = fw["fresh_s"] / fw["warm_s"]
    line(ratio <= FRESH_VS_WARM, f"fresh-process VGG-19 fill vs warm refill: {ratio:.2f}x (target <= {FRESH_VS_WARM}x)")
    return lines


def markdown(r: dict) -> str:
    f = r["formats"]
    mib = f["bytes"] / 2**20
    names = {".caffemodel": "protobuf parse", ".h5": "h5py", ".npz": "numpy.load", ".safetensors": "safetensors"}
    load = r.get("load_average")
    shared = f" Load average at the end of the run: {load[0]:.1f} / {load[2]:.1f} (1 / 15 min)." if load else ""
    lines = [f"VGG-19, {mib:.0f} MiB of float32 (files in the page cache; every load then reads one value per "
             f"4 KiB page).{shared}", "",
             "| format | save s | load s | baseline | baseline load s | x baseline |", "|---|---:|---:|---|---:|---:|"]
    for suffix in FORMATS:
        row = f[suffix]
        lines.append(f"| {suffix} | {row['save_s']:.2f} | {row['load_s']:.3f} | {names[suffix]} | "
                     f"{row['baseline_load_s']:.3f} | {row['baseline_load_s'] / row['load_s']:.1f} |")
    cm = f[".caffemodel"]
    lr = r["load_rss"]
    lines += ["", f"Before this reader, `load` was protobuf's parse then numpy: {cm['protobuf_to_numpy_s']:.2f} s "
              f"({cm['protobuf_to_numpy_s'] / cm['load_s']:.0f}x the streaming reader).  Peak RSS of a `.caffemodel` "
              f"load: {lr['fillers_bytes'] / 2**20:.0f} MiB for a {lr['file_bytes'] / 2**20:.0f} MiB file "
              f"(protobuf: {lr['protobuf_bytes'] / 2**20:.0f} MiB)."]
    s = r["stream_rss"]
    lines.append(f"Streaming fill of a {s['blob_bytes'] / 2**30:.2f} GiB blob to `.safetensors`: peak RSS "
                 f"+{s['rss_growth_bytes'] / 2**20:.0f} MiB, {s['seconds']:.1f} s.")
    e = r["end_to_end"]
    lines += ["", "The main job, fsync included, against numpy writing the same bytes (best of the run, alternately):",
              "", "| output | `fill_net(out=)` s | `tofile` s | x | `fillers fill` s | numpy program s | x |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for suffix in (".caffemodel", ".safetensors"):
        job, cmd = e["job"][suffix], e["command"][suffix]
        lines.append(f"| {suffix} | {job['fillers_s']:.2f} | {job['tofile_s']:.2f} | "
                     f"{job['fillers_s'] / job['tofile_s']:.2f} | {cmd['fillers_s']:.2f} | {cmd['numpy_s']:.2f} | "
                     f"{cmd['fillers_s'] / cmd['numpy_s']:.2f} |")
    lines += ["", f"`fill_net` and `tofile` run in one warm process; the commands are fresh processes timed from "
              f"their start (the interpreter with fillers' imports alone takes {e['startup_s']:.2f} s, with "
              f"numpy's alone {e['numpy_startup_s']:.2f} s).  The numpy program is `np.ones(n).tofile(f)` + fsync."]
    fw = r["fresh_vs_warm"]
    lines.append("")
    lines.append(f"A fresh process's first VGG-19 `fill_net`: {fw['fresh_s'] * 1e3:.0f} ms (best of "
                 f"{len(fw['fresh_runs_s'])} processes; all: "
                 f"{', '.join(f'{t * 1e3:.0f}' for t in fw['fresh_runs_s'])} ms); refilling the same "
                 f"arrays: {fw['warm_s'] * 1e3:.0f} ms ({fw['fresh_s'] / fw['warm_s']:.2f}x).  The OS's page supply "
                 f"alone: a first write of as many bytes of fresh memory (`fill` constant, the same threads) "
                 f"takes {fw['first_write_s'] * 1e3:.0f} ms, writing them again {fw['rewrite_s'] * 1e3:.0f} ms.")
    d = r["dask"]
    if "skipped" not in d:
        lines.append(f"One {d['bytes'] >> 20} MiB blob (gaussian): `fillers.fill` on all cores {d['fill_s']:.2f} s; "
                     f"`fillers.dask.filled(...).compute()` on Dask threads {d['dask_threads_s']:.2f} s, on a local "
                     f"cluster of 2 worker processes {d['dask_cluster_s']:.2f} s ({d['dask_cluster_sum_s']:.2f} s "
                     "for its sum, the blob never leaving the workers).")
    return "\n".join(lines)


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    print(json.dumps(results, indent=1))
    print(markdown(results))
    print("\n".join(targets(results)))
