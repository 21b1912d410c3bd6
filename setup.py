"""Build: the protobuf schema and the Cython/C kernels (all metadata lives in pyproject.toml)."""
import os
import platform
import struct
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
SOURCES = ["fillers/src/philox_fill.c", "fillers/src/common.c", "fillers/src/pool.c", "fillers/src/half.c"]
# Strict IEEE arithmetic (no FMA contraction: -ffp-contract=off; MSVC's /fp:precise without /arch:AVX2 has no
# FMA) keeps every dispatch path and platform byte-identical; no -march flags: SIMD variants are chosen at
# run time (fillers/src/platform.h).
GCC_LIKE_ARGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c11", "-pthread"]
MSVC_ARGS = ["/O2", "/fp:precise", "/std:c11"]
# 32-bit x86 (a 32-bit interpreter, also on a 64-bit kernel): SSE2 arithmetic, as x87 gives other values.
X86_32_ARGS = ["-msse2", "-mfpmath=sse"]
X86_32 = struct.calcsize("P") == 4 and platform.machine().lower() in {"i386", "i486", "i586", "i686", "x86",
                                                                      "x86_64", "amd64"}
DEBUG = os.environ.get("FILLERS_DEBUG") == "1"  # bounds checks back on for a debug build
# FILLERS_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer (GCC/clang), any error fatal, frame
# pointers kept and Cython's bounds checks on.  Python itself is not instrumented: run it with the ASan
# runtime preloaded, e.g. LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
# python -m pytest tests/test_fill.py (see the README's "Bad input" section).
SANITIZE = os.environ.get("FILLERS_SANITIZE") == "1"
SANITIZE_ARGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


class BuildPyWithProto(build_py):
    """Write fillers/_caffe_descriptor.py, the compiled schema, before the package is collected.

    The module holds the serialized ``FileDescriptorProto`` of proto/fillers/caffe.proto; fillers/caffe_pb2.py
    builds the message classes from it at import. Unlike protoc's generated ``_pb2`` code, which requires a
    protobuf runtime at least as new as the protoc that wrote it, this works with any runtime the package
    supports, whichever grpcio-tools compiled it.
    """

    def run(self):
        from google.protobuf import descriptor_pb2
        from grpc_tools import protoc

        with tempfile.TemporaryDirectory() as tmp:
            descriptor_set = Path(tmp, "caffe.pb")
            argv = ["protoc", "-Iproto", f"--descriptor_set_out={descriptor_set}", "proto/fillers/caffe.proto"]
            if protoc.main(argv) != 0:
                raise RuntimeError("protoc failed on proto/fillers/caffe.proto")
            (schema,) = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
        Path("fillers/_caffe_descriptor.py").write_text(
            '"""The serialized FileDescriptorProto of proto/fillers/caffe.proto, written by setup.py."""\n'
            f"FILE_DESCRIPTOR = {schema.SerializeToString()!r}\n"
        )
        super().run()


class BuildExtWithFlags(build_ext):
    """Compile and link flags for the compiler actually used: MSVC, or GCC/clang (any other name)."""

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        for ext in self.extensions:
            ext.extra_compile_args = MSVC_ARGS if msvc else GCC_LIKE_ARGS + (X86_32_ARGS if X86_32 else [])
            ext.extra_link_args = [] if msvc else ["-pthread"]
            if SANITIZE and not msvc:
                ext.extra_compile_args = ext.extra_compile_args + SANITIZE_ARGS
                ext.extra_link_args = ext.extra_link_args + SANITIZE_ARGS
        super().build_extensions()


def extension(name, sources):
    return Extension(
        f"fillers.{name}",
        [f"fillers/{name}.pyx", *sources],
        # the kernels include templates and headers: any change must rebuild (setuptools only sees .c files)
        depends=sorted(str(p) for p in Path("fillers/src").glob("*.h")),
    )


setup(
    ext_modules=cythonize(
        [
            extension("_kernels", SOURCES),
            extension("_caffe", ["fillers/src/caffe_rng.c", "fillers/src/common.c"]),
        ],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG or SANITIZE,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG or SANITIZE,
        },
    ),
    cmdclass={"build_py": BuildPyWithProto, "build_ext": BuildExtWithFlags},
)
