"""The ``fillers`` command: ``fill``, ``inspect`` and ``upgrade`` Caffe nets.

Exit codes: 0 success, 2 usage error (argparse), 1 any other error, reported as one line on stderr
(``--debug`` shows the traceback instead), 130 when interrupted. ``-o -`` is standard output where the output
is text (``upgrade``); ``fill`` writes binary formats only, so it is a usage error there.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from fillers import __version__

#: Output suffixes that get the binary NetParameter encoding from ``fillers upgrade``.
BINARY_SUFFIXES = (".caffemodel", ".binaryproto")
#: The output name that means standard output.
STDOUT = "-"


def _input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=D0,D1,...`` (argparse type)."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
    except ValueError:
        shape = None
    if not sep or not name or shape is None or any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,... with non-negative integers, got {text!r}")
    return name, shape


def _like(text: str) -> tuple[str, str]:
    """Parse ``TYPE=KNOWN`` (argparse type)."""
    name, sep, known = text.partition("=")
    if not sep or not name.strip() or not known.strip():
        raise argparse.ArgumentTypeError(f"expected TYPE=KNOWN_TYPE, got {text!r}")
    return name.strip(), known.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**64), got {text!r}")
    return value


def _override(text: str) -> tuple[str, str]:
    """Parse ``LAYER=FILLER`` or ``LAYER/INDEX=FILLER`` (argparse type)."""
    name, sep, filler = text.partition("=")
    if not sep or not name or not filler.strip():
        raise argparse.ArgumentTypeError(
            f"expected LAYER=FILLER or LAYER/INDEX=FILLER (a type name or FillerParameter text), got {text!r}")
    return name, filler


_BYTE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _byte_count(text: str) -> int:
    """A byte count such as ``4096``, ``512M`` or ``4G`` (argparse type)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", text.strip(), re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a byte count such as 4096, 512M or 4G, got {text!r}")
    return int(match.group(1)) * _BYTE_UNITS[match.group(2).upper()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fillers`` command."""
    parser = argparse.ArgumentParser(
        prog="fillers", description="Fill the learnable blobs of Caffe nets with Caffe's fillers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def net_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("net", metavar="NET", help="net definition: .prototxt (any Caffe format) or .caffemodel; "
                         "or a solver: its train net (phase TRAIN with its train_state)")
        sub.add_argument("--input", metavar="NAME=D0,D1,...", type=_input_shape, action="append", default=[],
                         help="shape of a top (overrides the net; repeatable)")
        sub.add_argument("--phase", choices=("TEST", "TRAIN"), default=None,
                         help="net phase (default TEST; a solver's net is TRAIN)")
        sub.add_argument("--filler", metavar="LAYER[/INDEX]=FILLER", type=_override, action="append", default=[],
                         help="replace the filler of a layer's blobs (or of one blob) by a type name or "
                              "FillerParameter text (repeatable)")
        sub.add_argument("--like", metavar="TYPE=KNOWN", type=_like, action="append", default=[],
                         help="read layers of type TYPE as layers of the known type KNOWN (repeatable)")
        sub.add_argument("--plugin", metavar="FILE.py", action="append", default=[],
                         help="a Python file whose fillers.register_layer calls teach layer types (repeatable)")
        sub.add_argument("--strict", action="store_true",
                         help="a layer of an unknown type is an error (default: passed over with a warning)")

    fill = commands.add_parser("fill", help="fill every learnable blob and write them to a file")
    net_options(fill)
    fill.add_argument("-o", "--output", required=True, metavar="OUT",
                      help="output file: .caffemodel, .h5/.caffemodel.h5, .npz or .safetensors, or a folder "
                           "NAME.npy of .npy files (not -: binary)")
    fill.add_argument("--seed", type=_seed, default=None,
                      help="random seed (default: a solver's random_seed, else fresh entropy; printed)")
    fill.add_argument("--rng", choices=("philox", "caffe"), default=None,
                      help="philox: counter-based, multithreaded (default for nets); caffe: bit-identical to "
                           "Caffe 1.0 (default for solvers)")
    fill.add_argument("--weights", metavar="W[,W2...]", default=None,
                      help="copy the blobs of layers found by name with equal shapes from these weights "
                           "(.caffemodel, .h5, .npz, .safetensors, .npy folder; later files win), fill the rest; "
                           "replaces a solver's weights")
    fill.add_argument("--allow-mismatch", action="store_true",
                      help="fill blobs whose shape differs in --weights instead of stopping with an error")
    fill.add_argument("--naming", choices=("caffe", "torch"), default="caffe",
                      help="blob names in .npz/.safetensors: caffe (conv1/0) or torch (conv1.weight)")
    fill.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"), default="float32",
                      help="element type; float16/bfloat16: the float32 values rounded to nearest even (not for "
                           ".caffemodel; bfloat16 needs ml_dtypes and is not for .h5)")
    fill.add_argument("--threads", type=_positive_int, default=None, help="worker threads (default: all cores)")
    fill.add_argument("--quiet", action="store_true", help="no progress bar, seed or summary")
    fill.add_argument("--max-bytes", type=_byte_count, default=None, metavar="N",
                      help="refuse a fill needing more memory than N bytes (suffixes K, M, G, T: powers of 1024; "
                           "default: the memory available now)")
    fill.add_argument("--report", metavar="HTML",
                      help="also write the HTML report: the layer table and a histogram of every blob")

    inspect = commands.add_parser("inspect", help="list every learnable blob: shape, filler, parameter count")
    net_options(inspect)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--html", metavar="HTML",
                         help="write the HTML report (layer table; with --weights, a histogram per blob)")
    inspect.add_argument("--weights", metavar="W",
                         help="blobs to plot in the --html report: .caffemodel, .h5, .npz, .safetensors or .npy folder")

    upgrade = commands.add_parser("upgrade", help="rewrite a net in the current Caffe format")
    upgrade.add_argument("input", metavar="IN", help="net definition in any Caffe format")
    upgrade.add_argument("-o", "--output", metavar="OUT",
                         help="output file (default or -: stdout); binary for .caffemodel/.binaryproto")
    upgrade.add_argument("--strict", action="store_true",
                         help="unknown fields or enum values are errors instead of warnings")
    return parser


def describe_filler(filler) -> str:
    """A short description of a FillerParameter: its type and the fields set, e.g. ``gaussian std=0.01``
    (``None``, values the layer's setup writes itself: ``set by the layer``)."""
    if filler is None:
        return "set by the layer"
    parts = [filler.type]
    for field, value in filler.ListFields():
        if field.name == "type":
            continue
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name
        elif isinstance(value, float):
            value = f"{value:.7g}"
        parts.append(f"{field.name}={value}")
    return " ".join(parts)


def filler_dict(filler) -> dict | None:
    """A FillerParameter as a JSON-ready dict of its type and the fields set (``None`` stays ``None``)."""
    if filler is None:
        return None
    from google.protobuf import json_format  # here: ~20 ms of imports that `fill` never needs

    return {"type": filler.type, **json_format.MessageToDict(filler, preserving_proto_field_name=True)}


@contextlib.contextmanager
def _layer_types(args: argparse.Namespace) -> Iterator[None]:
    """The layer types ``--plugin`` files and ``--like`` options teach, registered for this command only."""
    from fillers.shapes.context import LEARNABLE, RULES, register_layer

    rules, learnable = dict(RULES), set(LEARNABLE)
    try:
        for number, path in enumerate(args.plugin):
            _run_plugin(path, number)
        for name, known in args.like:
            try:
                register_layer(name, like=known, replace=True)
            except ValueError as err:
                raise ValueError(f"--like {name}={known}: {err}") from None
        yield
    finally:
        RULES.clear()
        RULES.update(rules)
        LEARNABLE.clear()
        LEARNABLE.update(learnable)


def _run_plugin(path: str, number: int) -> None:
    """Execute a plugin file as a module (its register_layer calls teach fillers its layer types)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "plugin file not found", path)
    spec = importlib.util.spec_from_file_location(f"fillers_plugin_{number}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--plugin {path}: not a Python file")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _type_name(layer) -> str:
    return f"{layer.type} ({layer.variant})" if layer.variant else layer.type


_LAYER_BLOCK = re.compile(r"^\s*layers?\s*:?\s*\{", re.MULTILINE)


def _is_solver(path: str) -> bool:
    """A solver file: text that reads as a SolverParameter naming a net; or, where it does not (a syntax error,
    no net), a file named like a solver (``*solver*``) without ``layer`` blocks, so that the solver's own error
    is reported."""
    from fillers import FillersError, load_solver

    name = Path(path).name.lower()
    if name.endswith(BINARY_SUFFIXES):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a net's fields are unknown to SolverParameter
            solver = load_solver(path)
        if any(solver.HasField(f) for f in ("net", "net_param", "train_net", "train_net_param")):
            return True
    except (FillersError, UnicodeDecodeError):
        pass
    if "solver" not in name:
        return False
    with open(path, "rb") as handle:
        return not _LAYER_BLOCK.search(handle.read().decode("utf-8", "replace"))


def _net_and_phase(args: argparse.Namespace):
    """The net to fill and its phase: a solver's train net (phase from its state), or the net."""
    from fillers import load_net, solver_train_net

    if _is_solver(args.net):
        if args.phase is not None:
            raise ValueError(f"{args.net} is a solver: its net is built in phase TRAIN with its train_state "
                             "(leave out --phase)")
        net, solver = solver_train_net(args.net)
        return net, None, solver
    return load_net(args.net), args.phase or "TEST", None


def _inspect(args: argparse.Namespace) -> int:
    from fillers import infer_shapes
    from fillers.net import apply_overrides, layer_keys

    net, phase, _ = _net_and_phase(args)
    with _layer_types(args):
        if args.html is not None:
            from fillers import load
            from fillers.report import write_report

            weights = load(args.weights) if args.weights is not None else None
            write_report(args.html, net, weights=weights, inputs=dict(args.input), phase=phase,
                         overrides=dict(args.filler))
            return 0
        layers = infer_shapes(net, inputs=dict(args.input), phase=phase, strict=args.strict)
    overridden: list[str] = []
    if args.filler:
        layers, overridden = apply_overrides(layers, dict(args.filler))
    keys = layer_keys(layers)
    blobs = [(layer, i, blob, f"{key}/{i}" in overridden) for key, layer in zip(keys, layers)
             for i, blob in enumerate(layer.blobs)]
    total = sum(math.prod(blob.shape) for *_, blob, _ in blobs)
    if args.json:
        rows = [{"layer": layer.name, "type": layer.type, "variant": layer.variant, "blob": i, "shape": list(blob.shape),
                 "filler": filler_dict(blob.filler), "override": mine, "count": math.prod(blob.shape)}
                for layer, i, blob, mine in blobs]
        json.dump({"layers": len(layers), "blobs": rows, "parameters": total}, sys.stdout, indent=1)
        print()
        return 0
    table = [("layer", "type", "blob", "shape", "filler", "params")]
    table += [(layer.name, _type_name(layer), str(i), "x".join(map(str, blob.shape)) or "()",
               describe_filler(blob.filler) + (" (override)" if mine else ""), f"{math.prod(blob.shape):,}")
              for layer, i, blob, mine in blobs]
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    for row in table:
        cells = [cell.rjust(w) if c == len(row) - 1 else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    print(f"total: {len(layers)} layers, {len(blobs)} blobs, {total:,} parameters")
    return 0


def _fill(args: argparse.Namespace) -> int:
    from fillers import fill_net, fill_solver, load, save

    start = time.perf_counter()
    net, phase, solver = _net_and_phase(args)
    # PyTorch names are made from whole arrays (BatchNorm's statistics are rescaled): fill in memory, then save.
    in_memory = args.naming == "torch"
    with _layer_types(args):  # the report reads the net again: the same layer types
        with _progress_bar(enabled=not args.quiet and sys.stderr.isatty()) as progress:
            options = dict(dtype=args.dtype, inputs=dict(args.input), strict=args.strict,
                           threads=args.threads, out=None if in_memory else args.output, progress=progress,
                           weights=[path.strip() for path in args.weights.split(",")] if args.weights else None,
                           allow_mismatch=args.allow_mismatch, overrides=dict(args.filler),
                           max_bytes=args.max_bytes)
            if solver is not None:
                filled = fill_solver(args.net, seed=args.seed, rng=args.rng or "caffe", **options)
            else:
                filled = fill_net(net, seed=args.seed, rng=args.rng or "philox", phase=phase, **options)
        if in_memory:
            save(filled, args.output, naming=args.naming)
        if args.report is not None:  # the blobs as written (read back: a .caffemodel is mapped, not copied)
            from fillers.report import write_report

            write_report(args.report, filled.net, weights=filled if in_memory else load(args.output),
                         inputs=dict(args.input), phase=filled.phase, overrides=dict(args.filler),
                         copied=filled.report.copied)
    if not args.quiet:
        count = sum(math.prod(blob.shape if isinstance(blob, np.ndarray) else blob)  # arrays, or shapes written
                    for blobs in filled.values() for blob in blobs)
        nbytes = count * filled.dtype.itemsize
        if "fillers.weights" in filled.metadata:
            print(f"weights: {filled.report.summary()}", file=sys.stderr)
            for blob, source, target in filled.report.mismatched:
                print(f"  {blob}: filled, the weights have {source or 'another number of blobs'}, the net "
                      f"{target}", file=sys.stderr)
        print(f"filled {len(filled)} layers, {count:,} parameters ({nbytes / 2**20:,.1f} MiB), seed "
              f"{filled.seed} ({filled.rng}), in {time.perf_counter() - start:.2f} s -> {args.output}",
              file=sys.stderr)
    return 0


@contextlib.contextmanager
def _progress_bar(enabled: bool):
    """A tqdm bar by bytes on stderr (filled and written), for :func:`fillers.fill_net`'s ``progress``; None
    when disabled."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc="filling",
              leave=False, delay=0.5) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def _upgrade(args: argparse.Namespace) -> int:
    from fillers import load_net
    from fillers.io import atomic_write
    from fillers.prototxt import to_text

    net = load_net(args.input, strict=args.strict)
    if args.output in (None, STDOUT):
        sys.stdout.write(to_text(net))
    elif args.output.lower().endswith(BINARY_SUFFIXES):
        with atomic_write(args.output, "wb") as handle:
            handle.write(net.SerializeToString())
    else:
        with atomic_write(args.output, "w") as handle:
            handle.write(to_text(net))
    return 0


COMMANDS = {"fill": _fill, "inspect": _inspect, "upgrade": _upgrade}


def _warning_printer(net_path: str | None):
    """``warnings.showwarning`` for the command line: one line per warning; a layer that shape inference
    passed over is located at its ``file:line`` in the net file (read again only then)."""
    lines: list[int | None] | None = None

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        nonlocal lines
        from fillers import FillersError, ShapeWarning
        from fillers.prototxt import layer_lines

        where = ""
        if isinstance(message, ShapeWarning) and message.index is not None and net_path is not None:
            if lines is None:
                try:
                    lines = layer_lines(net_path)
                except (FillersError, OSError, UnicodeDecodeError):
                    lines = []
            if message.index < len(lines) and lines[message.index] is not None:
                where = f"{net_path}:{lines[message.index]}: "
        print(f"fillers: warning: {where}{message}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fillers`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fill" and args.output == STDOUT:
        parser.error("fill -o -: the weight formats are binary and are written to files only; give a file name")
    if args.command == "inspect" and args.weights is not None and args.html is None:
        parser.error("inspect --weights needs --html")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(getattr(args, "net", None))
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("fillers: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users; the traceback with --debug
        if args.debug:
            raise
        message = str(err).strip().splitlines()
        print(f"fillers: error: {message[0] if message else type(err).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
