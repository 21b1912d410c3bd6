"""Loading large nets in every format: ``load_net`` of 10,000-layer V0, V1 (with fork ``*_param`` fields) and
current-format nets, against protobuf's own ``text_format.Parse`` of the same text in the same run.

Loading is linear in the size of the file: the time per layer stays flat from 1,000 to 10,000 layers (a V1
net with fork fields took 109 s for 10,000 layers before: each fork field was parsed behind a prefix of
every line before it).  Writes ``benchmarks/results_load.json``.

    python benchmarks/bench_load.py [--layers 10000]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from pathlib import Path

from google.protobuf import text_format

import fillers
from fillers import caffe_pb2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import best_interleaved  # noqa: E402 (benchmarks/run.py: best of k rounds, interleaved)

HEAD = 'name: "big" input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n'


def v0_net(n: int) -> str:
    """A chain of ``n`` V0 ReLU layers (``layers { layer { ... } }``)."""
    return HEAD + "".join(f'layers {{ layer {{ name: "r{i}" type: "relu" }} bottom: "{"data" if i == 0 else f"r{i - 1}"}" '
                          f'top: "r{i}" }}\n' for i in range(n))


def v1_net(n: int) -> str:
    """A chain of ``n`` V1 layers, each with a fork's ``*_param`` field (Fast R-CNN's roi_pooling_param)."""
    return HEAD + "".join(f'layers {{ name: "r{i}" type: RELU bottom: "{"data" if i == 0 else f"r{i - 1}"}" '
                          f'top: "r{i}" roi_pooling_param {{ pooled_h: 2 pooled_w: 2 }} }}\n' for i in range(n))


def current_net(n: int) -> str:
    """A chain of ``n`` current-format ReLU layers."""
    return HEAD + "".join(f'layer {{ name: "r{i}" type: "ReLU" bottom: "{"data" if i == 0 else f"r{i - 1}"}" '
                          f'top: "r{i}" }}\n' for i in range(n))


def measure(layers: int) -> dict:
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in (("V0", v0_net), ("V1 with fork fields", v1_net), ("current", current_net)):
            row = {}
            for n in (layers // 10, layers):
                text = make(n)
                times = best_interleaved({
                    "load_net": lambda: fillers.load_net(text),
                    "text_format": lambda: text_format.Parse(text, caffe_pb2.NetParameter(), allow_unknown_field=True),
                }, 2)
                load, parse = times["load_net"], times["text_format"]
                row[n] = {"load_net_s": round(load, 3), "text_format_s": round(parse, 3),
                          "x_text_format": round(load / parse, 2), "us_per_layer": round(1e6 * load / n, 1)}
            out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--out", default=str(HERE / "results_load.json"))
    args = parser.parse_args(argv)
    result = {"date": datetime.date.today().isoformat(), "layers": args.layers, "nets": measure(args.layers)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, row in result["nets"].items():
        for n, r in row.items():
            print(f"{name:20s} {n:6d} layers: load_net {r['load_net_s']:7.3f} s ({r['us_per_layer']} us/layer), "
                  f"{r['x_text_format']}x protobuf's text_format.Parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
