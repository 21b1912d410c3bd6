"""Fuzz the whole pipeline: mutated nets through load_net -> upgrade -> infer_shapes -> fill_net -> save -> load.

Each input ``i`` is ``tests/fuzzing.mutate`` of a seed file chosen by ``random.Random(seed * 10**9 + i)`` (the
shared prototxt corpus, the examples, a few hand-written nets; see ``tests/fuzzing.py``), so a run is
reproducible input by input.  Inputs run in worker processes (one fill thread each) with a CPU-time limit per
input (``--limit``, 2 s): an input interrupted by it counts as ``over the limit``; a worker that dies (a
crash) is found by re-running its inputs one process each.  The counts by outcome go to
``benchmarks/fuzz_results.json`` and, with ``--readme README.md``, into the table between the
``fuzz-table`` markers there.

Outcomes: ``ok`` (the file went through the whole pipeline and read back equal), a documented error class
(``PrototxtError``, ``ShapeError``, ``FileFormatError``, ``BudgetError`` ...), ``UNDOCUMENTED <type>: ...``
(anything else: a bug), ``over the limit`` and ``crash`` (bugs too).

    python benchmarks/fuzz.py --count 100000 --workers 2 --readme README.md
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import random
import re
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fuzzing  # noqa: E402 (tests/fuzzing.py, the harness the tests use too)

CHUNK = 100
OVER = "over the limit"
CRASH = "crash"

_SEEDS: list[bytes] = []


class _Timeout(BaseException):
    """The per-input CPU-time limit expired."""


def _on_timer(signum, frame):
    raise _Timeout


def _init() -> None:
    os.environ["FILLERS_NUM_THREADS"] = "1"
    _SEEDS.extend(fuzzing.seeds())
    signal.signal(signal.SIGPROF, _on_timer)


def make_input(seed: int, index: int, seeds: list[bytes]) -> bytes:
    """Input ``index`` of a run with ``seed``."""
    rnd = random.Random(seed * 10**9 + index)
    return fuzzing.mutate(rnd.choice(seeds), rnd)


def run_one(seed: int, index: int, limit: float) -> tuple[str, float, float]:
    """(outcome, CPU seconds, wall seconds) of input ``index``."""
    data = make_input(seed, index, _SEEDS)
    cpu, wall = time.process_time(), time.perf_counter()
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        outcome = fuzzing.run_pipeline(data, index)
    except _Timeout:
        outcome = OVER
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return outcome, time.process_time() - cpu, time.perf_counter() - wall


def run_chunk(seed: int, indexes: range, limit: float) -> list[tuple[int, str, float, float]]:
    return [(i, *run_one(seed, i, limit)) for i in indexes]


def fuzz(count: int, workers: int, seed: int, limit: float, progress: bool = True,
         checkpoint: Path | None = None) -> dict:
    """Run ``count`` inputs; the counts by outcome, an example input index of each, and the times (written to
    ``checkpoint`` every 5,000 inputs too, so a long run can be read while it goes)."""
    counts: collections.Counter = collections.Counter()
    examples: dict[str, int] = {}
    slowest = (0.0, -1)
    walls: list[float] = []
    pending = [range(i, min(i + CHUNK, count)) for i in range(0, count, CHUNK)]
    start = time.perf_counter()
    done = 0
    while pending:
        retry: list[range] = []
        with ProcessPoolExecutor(workers, initializer=_init) as pool:
            futures = {pool.submit(run_chunk, seed, chunk, limit): chunk for chunk in pending}
            for future in as_completed(futures):
                chunk = futures[future]
                try:
                    results = future.result()
                except BrokenProcessPool:
                    if len(chunk) == 1:  # alone in its process and it died: a crash
                        results = [(chunk[0], CRASH, 0.0, 0.0)]
                    else:  # some input of the chunk (or of another one) killed the pool: isolate them
                        retry += [range(i, i + 1) for i in chunk]
                        continue
                for index, outcome, cpu, wall in results:
                    key = outcome if not outcome.startswith("UNDOCUMENTED") else outcome[:120]
                    counts[key] += 1
                    examples.setdefault(key, index)
                    slowest = max(slowest, (cpu, index))
                    walls.append(wall)
                done += len(results)
                if progress and done % 5000 < CHUNK:
                    print(f"{done:,}/{count:,} in {time.perf_counter() - start:,.0f} s: {dict(counts)}",
                          file=sys.stderr, flush=True)
                    if checkpoint is not None:
                        checkpoint.write_text(json.dumps({"done": done, "counts": dict(counts), "examples": examples,
                                                          "max_cpu_s": slowest[0]}, indent=1) + "\n")
        pending = retry
    walls.sort()
    return {
        "count": count, "seed": seed, "workers": workers, "limit_cpu_s": limit,
        "seeds": len(fuzzing.seeds()), "counts": dict(counts.most_common()), "examples": examples,
        "max_cpu_s": round(slowest[0], 3), "slowest_input": slowest[1],
        "median_wall_ms": round(1000 * walls[len(walls) // 2], 2) if walls else 0.0,
        "p99_wall_ms": round(1000 * walls[int(len(walls) * 0.99)], 2) if walls else 0.0,
        "elapsed_s": round(time.perf_counter() - start, 1),
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def table(result: dict) -> str:
    """The README block: what ran and the counts by outcome."""
    documented = sum(n for k, n in result["counts"].items() if not k.startswith(("UNDOCUMENTED", OVER, CRASH)))
    lines = [
        f"{result['count']:,} inputs (seed {result['seed']}, {result['seeds']} seed files, {result['workers']} "
        f"workers, {result['date']}, {result['elapsed_s']:,.0f} s): median {result['median_wall_ms']} ms, "
        f"99th percentile {result['p99_wall_ms']} ms, slowest {result['max_cpu_s']} s CPU "
        f"(limit {result['limit_cpu_s']:g} s).",
        "",
        "| outcome | inputs |",
        "|---|---:|",
        *(f"| {k.replace('|', '/')} | {n:,} |" for k, n in result["counts"].items()),
        "",
        f"Documented errors {documented:,}, ok {result['counts'].get('ok', 0):,}; undocumented exceptions "
        f"{sum(n for k, n in result['counts'].items() if k.startswith('UNDOCUMENTED')):,}, crashes "
        f"{result['counts'].get(CRASH, 0):,}, inputs over the limit {result['counts'].get(OVER, 0):,}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=2.0, help="CPU seconds per input")
    parser.add_argument("--out", default=str(HERE / "fuzz_results.json"))
    parser.add_argument("--readme", help="rewrite the fuzz-table block of this README")
    parser.add_argument("--show", type=int, metavar="INDEX", help="print input INDEX and its outcome, then stop")
    args = parser.parse_args(argv)
    if args.show is not None:
        _init()
        data = make_input(args.seed, args.show, _SEEDS)
        sys.stdout.buffer.write(data[:4000] + b"\n")
        print(run_one(args.seed, args.show, args.limit))
        return 0
    result = fuzz(args.count, args.workers, args.seed, args.limit, checkpoint=Path(args.out + ".partial"))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        block = f"<!-- fuzz-table -->\n{table(result)}\n<!-- /fuzz-table -->"
        text, n = re.subn(r"<!-- fuzz-table -->.*?<!-- /fuzz-table -->", lambda _: block, text, flags=re.S)
        if n:
            readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
