// Reference tool (ours): read a NetParameter text with C++ TextFormat::Parse as Caffe does,
// run Caffe's UpgradeNetAsNeeded when NetNeedsUpgrade says so, print the result with
// TextFormat. Exit 2: the text does not parse; 3: Caffe reported upgrade problems.
#include <fcntl.h>
#include <unistd.h>
#include <fstream>
#include <iostream>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/text_format.h>
#include "caffe/common.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/upgrade_proto.hpp"
namespace caffe {
bool ReadProtoFromTextFile(const std::string& filename, google::protobuf::Message* proto) {
  int fd = open(filename.c_str(), O_RDONLY);
  if (fd < 0) return false;
  google::protobuf::io::FileInputStream input(fd);
  bool ok = google::protobuf::TextFormat::Parse(&input, proto);
  close(fd);
  return ok;
}
bool ReadProtoFromBinaryFile(const std::string&, google::protobuf::Message*) { return false; }
void WriteProtoToTextFile(const google::protobuf::Message& proto, const std::string& filename) {
  std::string s;
  CHECK(google::protobuf::TextFormat::PrintToString(proto, &s));
  std::ofstream(filename) << s;
}
}
using namespace caffe;
int main(int argc, char** argv) {
  ::google::InitGoogleLogging(argv[0]);
  if (argc != 3) { std::cerr << "usage: in out\n"; return 1; }
  NetParameter net;
  if (!ReadProtoFromTextFile(argv[1], &net)) { std::cerr << "parse failed\n"; return 2; }
  bool ok = true;
  if (NetNeedsUpgrade(net)) ok = UpgradeNetAsNeeded(argv[1], &net);
  WriteProtoToTextFile(net, argv[2]);
  return ok ? 0 : 3;
}
