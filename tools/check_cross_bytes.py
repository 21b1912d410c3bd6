"""Check that the C kernels give the same bytes on other machines and compilers: x86-64 (every SIMD path, 1 and
4 threads, GCC and clang), aarch64 and 32-bit x86 (SSE2), the last two cross-compiled and run under qemu-user.

Builds tools/cross_bytes.c with the kernels for each target whose compiler (and emulator) is installed —
on Debian: ``apt-get install clang gcc-aarch64-linux-gnu gcc-i686-linux-gnu libc6-dev-i386-cross qemu-user`` —
and compares every target's hashes with x86-64's scalar path.  Not part of the test suite (it needs cross
toolchains); ``python tools/check_cross_bytes.py``, exit status 1 when a target differs.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "fillers" / "src"
KERNELS = ["philox_fill.c", "common.c", "pool.c", "caffe_rng.c", "half.c"]
# The flags setup.py gives GCC (the 32-bit x86 ones too).
FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c11", "-pthread"]
# name: (compiler, extra flags, emulator or None, arguments: threads [simd path])
TARGETS = {
    "x86-64 scalar, 1 thread": ("gcc", [], None, ["1", "0"]),
    "x86-64 scalar, 4 threads": ("gcc", [], None, ["4", "0"]),
    "x86-64 best SIMD path, 4 threads": ("gcc", [], None, ["4"]),
    "x86-64 clang, best SIMD path, 4 threads": ("clang", [], None, ["4"]),
    "aarch64, 4 threads": ("aarch64-linux-gnu-gcc", ["-static"], "qemu-aarch64", ["4"]),
    "i686 (SSE2), 4 threads": ("i686-linux-gnu-gcc", ["-static", "-msse2", "-mfpmath=sse"], "qemu-i386", ["4"]),
}
REFERENCE = "x86-64 scalar, 1 thread"


def run_target(compiler: str, extra: list[str], emulator: str | None, args: list[str], tmp: Path) -> str:
    exe = tmp / "_".join(["cross_bytes", compiler, *extra])  # one build per compiler and flags
    if not exe.exists():
        subprocess.run([compiler, *FLAGS, *extra, f"-I{SRC}", str(ROOT / "tools" / "cross_bytes.c"),
                        *(str(SRC / k) for k in KERNELS), "-lm", "-o", str(exe)], check=True)
    return subprocess.run([*([emulator] if emulator else []), str(exe), *args], check=True,
                          capture_output=True, text=True).stdout


def main() -> int:
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (compiler, extra, emulator, args) in TARGETS.items():
            missing = [tool for tool in (compiler, emulator) if tool and shutil.which(tool) is None]
            if missing:
                print(f"skipped  {name}: {', '.join(missing)} not installed")
                continue
            outputs[name] = run_target(compiler, extra, emulator, args, Path(tmp))
    reference = outputs.get(REFERENCE)
    if reference is None:
        print("no native gcc: nothing to compare")
        return 1
    print(reference, end="")
    differ = [name for name, out in outputs.items() if out != reference]
    for name in outputs:
        print(f"{'DIFFERS' if name in differ else 'same   '}  {name}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
