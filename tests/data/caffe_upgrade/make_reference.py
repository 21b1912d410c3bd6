"""Regenerate reference.json: what Caffe's own upgrade makes of each net file.

For every net file of the shared corpus (../shared/corpus/MANIFEST.tsv, formats
v0, v1, v2, mixed) and our examples/tiny_v*.prototxt, run the reference tool built by
build_reference_tool.sh and record the sha256 of its text output and of the
deterministic binary serialization of that output (the message itself), or the
tool's exit code when Caffe rejects the file. Only these hashes are committed.

Usage: python make_reference.py TOOL [SHARED_DIR]
"""
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import text_format

from fillers import caffe_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NET_FORMATS = {"v0", "v1", "v2", "mixed"}


def reference(tool: str, path: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.prototxt"
        rc = subprocess.run([tool, str(path), str(out)], capture_output=True).returncode
        if rc != 0:
            return {"caffe_exit": rc}
        text = out.read_bytes()
    net = caffe_pb2.NetParameter()
    text_format.Parse(text.decode("utf-8"), net)
    return {
        "text_sha256": hashlib.sha256(text).hexdigest(),
        "binary_sha256": hashlib.sha256(net.SerializeToString(deterministic=True)).hexdigest(),
    }


def main() -> None:
    tool = sys.argv[1]
    shared = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT.parent / "shared"
    result = {"corpus": {}, "examples": {}}
    with open(shared / "corpus" / "MANIFEST.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["format"] in NET_FORMATS:
                name = Path(row["file"]).name
                entry = {"format": row["format"], **reference(tool, shared / "corpus" / row["file"])}
                result["corpus"][name] = entry
    for path in sorted((ROOT / "examples").glob("tiny_v*.prototxt")):
        result["examples"][path.name] = reference(tool, path)
    (HERE / "reference.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
