#!/bin/sh
# Build Caffe's own net upgrade as a small command-line tool, outside this
# repository, to regenerate reference.json (see make_reference.py).
#
# Usage: build_reference_tool.sh CAFFE_CHECKOUT OUT_DIR
#   CAFFE_CHECKOUT  a clone of https://github.com/BVLC/caffe (master; the data here
#                   came from commit 9b891540183ddc834a02b2bd81b31afae71b2153)
#   OUT_DIR         where the tool (OUT_DIR/upgrade_net_proto_text) is built
# Needs: g++, protoc + libprotobuf (3.21 was used), libgoogle-glog, libboost-filesystem.
#
# Only Caffe's src/caffe/util/upgrade_proto.cpp and its header are compiled,
# against two one-line shims for the headers it includes and reference_tool.cpp
# (ours), which does what tools/upgrade_net_proto_text.cpp does: parse the text
# with TextFormat::Parse, run UpgradeNetAsNeeded when NetNeedsUpgrade, print.
set -eu
CAFFE=$1
OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/include/caffe/util" "$OUT/include/caffe/proto"
cp "$CAFFE/src/caffe/proto/caffe.proto" "$OUT/caffe.proto"
cp "$CAFFE/include/caffe/util/upgrade_proto.hpp" "$OUT/include/caffe/util/"
(cd "$OUT" && protoc --cpp_out=include/caffe/proto caffe.proto)
cat > "$OUT/include/caffe/common.hpp" <<'H'
#pragma once
#include <glog/logging.h>
#include <map>
#include <string>
#include <vector>
namespace caffe { using std::string; using std::map; using std::vector; }
H
cat > "$OUT/include/caffe/util/io.hpp" <<'H'
#pragma once
#include <string>
#include <google/protobuf/message.h>
namespace caffe {
bool ReadProtoFromTextFile(const std::string& filename, google::protobuf::Message* proto);
bool ReadProtoFromBinaryFile(const std::string& filename, google::protobuf::Message* proto);
void WriteProtoToTextFile(const google::protobuf::Message& proto, const std::string& filename);
}
H
g++ -O1 -std=c++17 -I"$OUT/include" -o "$OUT/upgrade_net_proto_text" \
  "$HERE/reference_tool.cpp" "$CAFFE/src/caffe/util/upgrade_proto.cpp" \
  "$OUT/include/caffe/proto/caffe.pb.cc" -lprotobuf -lglog -lboost_filesystem -lpthread
echo "built $OUT/upgrade_net_proto_text"
