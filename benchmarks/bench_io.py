"""The I/O section of the benchmarks: reading and writing VGG-19, streaming fills, Dask.

Measured in one run, each side against its baseline in the same run:

- ``load``/``save`` of VGG-19 (``benchmarks/vgg19.prototxt``, 548 MiB of float32) in the four formats, against
  protobuf's own parse of the ``.caffemodel`` (and that parse turned into numpy arrays, what ``load`` did
  before), h5py, numpy and safetensors reading the same files.  Every load is followed by a read of one value
  per 4 KiB page of every array, so lazily mapped data is paid for too (files in the page cache: the
  figures are CPU and memory costs, not the disk's).
- Peak RSS of loading the ``.caffemodel`` (views of a mapped file) against protobuf's parse, in fresh
  interpreters; and of a 4 GiB streaming fill (``fill_net(..., out=x.safetensors)``).
- ``fillers fill VGG-19 -o x.caffemodel`` / ``.safetensors`` end to end (a fresh process, fsync included)
  against numpy's ``tofile`` + fsync of the same number of bytes.
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


_TOFILE = """
import os, sys, time
import numpy as np
a = np.random.default_rng(0).random(int(sys.argv[1]) // 4, dtype=np.float32)
with open(sys.argv[2], "wb") as f:
    t0 = time.perf_counter()
    a.tofile(f)
    f.flush()
    os.fsync(f.fileno())
    print(time.perf_counter() - t0)
"""


def bench_end_to_end(workdir: Path, nbytes: int, k: int) -> dict:
    """``fillers fill VGG-19 -o OUT`` (a fresh process, wall time) against numpy tofile + fsync."""
    out: dict[str, Any] = {}
    tofile = []
    for _ in range(k):
        proc = subprocess.run([sys.executable, "-c", _TOFILE, str(nbytes), str(workdir / "tofile.bin")],
                              capture_output=True, text=True, check=True)
        tofile.append(float(proc.stdout))
    out["tofile_s"] = min(tofile)
    for suffix in (".caffemodel", ".safetensors"):
        target = workdir / f"cli{suffix}"

        def cli() -> None:
            subprocess.run([sys.executable, "-m", "fillers.cli", "fill", str(VGG19), "-o", str(target), "--quiet"],
                           check=True)
        out[suffix] = best_time(cli, k)
        target.unlink()
    (workdir / "tofile.bin").unlink()
    # The interpreter and imports alone, the floor of any command.
    out["startup_s"] = best_time(lambda: subprocess.run([sys.executable, "-c", "import fillers.cli, fillers.net"],
                                                   check=True), k)
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
print(fresh, min(warm))
"""


def bench_fresh_vs_warm() -> dict:
    proc = subprocess.run([sys.executable, "-c", _FRESH, str(VGG19)], capture_output=True, text=True, check=True)
    fresh, warm = map(float, proc.stdout.split())
    return {"fresh_s": fresh, "warm_s": warm}


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
        results["end_to_end"] = bench_end_to_end(workdir, nbytes, k)
    results["fresh_vs_warm"] = bench_fresh_vs_warm()
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
        ratio = e2e[suffix] / e2e["tofile_s"]
        line(ratio <= END_TO_END_VS_TOFILE, f"fillers fill VGG-19 -o x{suffix} vs numpy tofile: {ratio:.2f}x "
                                            f"(target <= {END_TO_END_VS_TOFILE}x)")
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
    lines.append(f"`fillers fill VGG-19 -o x.caffemodel`: {e['.caffemodel']:.2f} s, `.safetensors`: "
                 f"{e['.safetensors']:.2f} s, end to end in a fresh process (interpreter and imports alone: "
                 f"{e['startup_s']:.2f} s); numpy `tofile` + fsync of the same bytes: {e['tofile_s']:.2f} s.")
    fw = r["fresh_vs_warm"]
    lines.append(f"A fresh process's first VGG-19 `fill_net`: {fw['fresh_s'] * 1e3:.0f} ms; refilling the same "
                 f"arrays: {fw['warm_s'] * 1e3:.0f} ms ({fw['fresh_s'] / fw['warm_s']:.2f}x).")
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
