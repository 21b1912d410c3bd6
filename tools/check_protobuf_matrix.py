"""Check fillers on a range of protobuf runtimes, each in a throwaway virtual environment.

Usage::

    python tools/check_protobuf_matrix.py [--python PYTHON] [--wheel WHEEL] [--out benchmarks/protobuf_matrix.json]
                                          [--readme README.md] [SPEC ...]

Builds a wheel of this checkout once (or takes ``--wheel``), then for every protobuf requirement ``SPEC``
(default: the declared floor 3.8, 4.21, 4.25, 5.29, 6.33 and the newest 7.x) creates a virtual environment in a
temporary directory outside the repository, installs the wheel with that protobuf through pip (so the
package's declared ``protobuf`` bound must admit it), and runs a smoke test in it: load a V1 example (upgraded),
``fillers upgrade -o -``, ``infer_shapes``, ``fill_net`` with both streams, save and load a ``.caffemodel``, parse
FillerParameter text, and read text and binary nets with fields the schema does not know. The smoke test
reports digests of everything it produced, and every runtime must give the digests of the first one: files
and values do not depend on the protobuf runtime.

Prints a table, writes the results as JSON and, with ``--readme``, rewrites the table between the README's
protobuf-matrix markers. Not part of CI: it downloads packages and takes a few minutes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = ["protobuf==3.8.0", "protobuf==4.21.12", "protobuf==4.25.9", "protobuf==5.29.6",
                 "protobuf==6.33.6", "protobuf>=7,<8"]

# Runs inside each environment, from a temporary directory (never the checkout): prints one JSON line.
SMOKE = r'''
import contextlib, hashlib, io, json, sys, warnings
from pathlib import Path

import numpy as np
import google.protobuf
from google.protobuf.internal import api_implementation  # diagnostics only

import fillers
from fillers import caffe_pb2
from fillers.cli import main
from fillers.prototxt import to_text

examples = Path(sys.argv[1])
digests = {}

def digest(name, data):
    digests[name] = hashlib.sha256(data).hexdigest()[:16]

def arrays(params):
    return b"".join(name.encode() + a.tobytes() for name, blobs in params.items() for a in blobs)

v1 = fillers.load_net(examples / "tiny_v1.prototxt")
assert v1.layer[0].type == "Data" and not len(v1.layers), v1
digest("upgrade_v1", to_text(v1).encode())
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["upgrade", str(examples / "tiny_v0.prototxt"), "-o", "-"]) == 0
digest("cli_upgrade_v0", out.getvalue().encode())

lenet = fillers.load_net(examples / "lenet.prototxt")
shapes = [(layer.name, [b.shape for b in layer.blobs]) for layer in fillers.infer_shapes(lenet)]
digest("infer_shapes", repr(shapes).encode())
caffe = fillers.fill_net(lenet, seed=1701, rng="caffe")
philox = fillers.fill_net(lenet, seed=1701)
digest("fill_net_caffe", arrays(caffe))
digest("fill_net_philox", arrays(philox))

fillers.save(philox, "lenet.caffemodel", net=lenet)
digest("caffemodel", Path("lenet.caffemodel").read_bytes())
back = fillers.load("lenet.caffemodel")
assert arrays(back) == arrays(philox)
assert [layer.name for layer in fillers.load_net(Path("lenet.caffemodel")).layer] == list(philox)

w = fillers.fill(np.empty((64, 3, 3, 3), np.float32), 'type: "gaussian" std: 0.01 sparse: 15', seed=3)
digest("fill_filler_text", w.tobytes())
w = fillers.fill(np.empty((64, 3, 3, 3), np.float32), {"type": "msra", "variance_norm": "FAN_OUT"}, seed=3)
digest("fill_filler_dict", w.tobytes())
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["inspect", str(examples / "lenet.prototxt"), "--json"]) == 0
digest("cli_inspect_json", out.getvalue().encode())

with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    net = fillers.load_net('name: "u"\nlayer { name: "a" type: "Input" top: "a" up_param { x: 1 }\n'
                           '  input_param { shape { dim: 1 } } }')
    binary = net.SerializeToString() + b"\xf8\x07\x01"  # field 127 (unknown), varint 1
    fillers.load_net(binary)
warned = [str(w.message) for w in seen]
assert any("<string>:2:42: unknown field \"up_param\" in caffe.LayerParameter" in m for m in warned), warned
assert any("NetParameter.#127" in m for m in warned), warned

print(json.dumps({"protobuf": google.protobuf.__version__, "implementation": api_implementation.Type(),
                  "numpy": np.__version__, "digests": digests}))
'''


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def build_wheel(python: str, into: Path) -> Path:
    done = run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into), str(ROOT)])
    if done.returncode != 0:
        sys.exit(f"building the wheel failed:\n{done.stderr}")
    (wheel,) = into.glob("fillers-*.whl")
    return wheel


def check(python: str, wheel: Path, spec: str, work: Path) -> dict:
    """Install ``wheel`` with ``spec`` into a fresh environment under ``work`` and run the smoke test there."""
    env_dir = work / "venv"
    result: dict = {"spec": spec}
    made = run([python, "-m", "venv", str(env_dir)])
    if made.returncode != 0:
        return {**result, "status": "venv failed", "detail": made.stderr.strip()[-500:]}
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env_python = str(bin_dir / "python")
    install = run([env_python, "-m", "pip", "install", "-q", str(wheel), spec])
    if install.returncode != 0:
        return {**result, "status": "install failed", "detail": install.stderr.strip()[-1500:]}
    smoke_dir = work / "smoke"
    smoke_dir.mkdir()
    smoke = run([env_python, "-c", SMOKE, str(ROOT / "examples")], cwd=smoke_dir)
    if smoke.returncode != 0:
        return {**result, "status": "smoke test failed", "detail": smoke.stderr.strip()[-1500:]}
    return {**result, "status": "ok", **json.loads(smoke.stdout.strip().splitlines()[-1])}


def markdown(results: list[dict], python_version: str) -> str:
    reference = next((r["digests"] for r in results if r["status"] == "ok"), None)
    lines = [f"Python {python_version}, {platform.machine()}, {datetime.date.today().isoformat()}; "
             "outputs compared with the first row's.", "",
             "| requirement | protobuf | implementation | smoke test | same outputs |", "|---|---|---|---|---|"]
    for r in results:
        same = "-" if r["status"] != "ok" else ("yes" if r["digests"] == reference else "**no**")
        lines.append(f"| `{r['spec']}` | {r.get('protobuf', '-')} | {r.get('implementation', '-')} | "
                     f"{r['status']} | {same} |")
    return "\n".join(lines)


def update_readme(path: Path, table: str) -> None:
    """Replace what lies between the README's protobuf-matrix markers."""
    begin, end = "<!-- protobuf-matrix -->", "<!-- /protobuf-matrix -->"
    text = path.read_text()
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        sys.exit(f"{path} has no {begin} ... {end} markers")
    path.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", metavar="SPEC", default=DEFAULT_SPECS,
                        help="protobuf requirements to check (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the environments")
    parser.add_argument("--wheel", type=Path, help="a built fillers wheel (default: build this checkout)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "protobuf_matrix.json")
    parser.add_argument("--readme", type=Path, help="also rewrite the table in this README")
    args = parser.parse_args()

    python_version = run([args.python, "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fillers-protobuf-matrix-") as tmp:
        work = Path(tmp)
        wheel = args.wheel or build_wheel(args.python, work / "wheel")
        results = []
        for i, spec in enumerate(args.specs):
            results.append(check(args.python, wheel, spec, work / f"env{i}"))
            shutil.rmtree(work / f"env{i}", ignore_errors=True)
            print(f"{spec}: {results[-1]['status']} {results[-1].get('protobuf', '')}", flush=True)
    table = markdown(results, python_version)
    print(table)
    args.out.write_text(json.dumps({"python": python_version, "machine": platform.machine(), "wheel": wheel.name,
                                    "date": datetime.date.today().isoformat(), "results": results}, indent=1)
                        + "\n")
    print(f"wrote {args.out}")
    if args.readme:
        update_readme(args.readme, table)
        print(f"updated {args.readme}")
    failed = [r["spec"] for r in results if r["status"] != "ok"]
    reference = next((r["digests"] for r in results if r["status"] == "ok"), None)
    differ = [r["spec"] for r in results if r["status"] == "ok" and r["digests"] != reference]
    if failed or differ:
        sys.exit(f"failed: {failed}; outputs differ: {differ}")


if __name__ == "__main__":
    main()
