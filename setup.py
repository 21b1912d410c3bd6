"""Build: the protobuf schema and the Cython/C kernels (all metadata lives in pyproject.toml)."""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
SOURCES = ["fillers/src/philox_fill.c", "fillers/src/common.c", "fillers/src/pool.c"]
# Strict IEEE arithmetic (no FMA contraction) keeps every dispatch path byte-identical; no -march flags:
# SIMD variants are chosen at run time.
COMPILE_ARGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-pthread", "-std=c11"]
DEBUG = os.environ.get("FILLERS_DEBUG") == "1"  # bounds checks back on for a debug build


class BuildPyWithProto(build_py):
    """Generate fillers/caffe_pb2.py from proto/caffe.proto before the package is collected."""

    def run(self):
        from grpc_tools import protoc

        if protoc.main(["protoc", "-Iproto", "--python_out=fillers", "proto/caffe.proto"]) != 0:
            raise RuntimeError("protoc failed on proto/caffe.proto")
        super().run()


def extension(name, sources):
    return Extension(
        f"fillers.{name}",
        [f"fillers/{name}.pyx", *sources],
        # the kernels include templates and headers: any change must rebuild (setuptools only sees .c files)
        depends=sorted(str(p) for p in Path("fillers/src").glob("*.h")),
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=["-pthread"],
    )


setup(
    ext_modules=cythonize(
        [
            extension("_kernels", SOURCES),
            extension("_caffe", ["fillers/src/caffe_rng.c", "fillers/src/common.c"]),
        ],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
        },
    ),
    cmdclass={"build_py": BuildPyWithProto},
)
