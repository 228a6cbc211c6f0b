// libFuzzer target: trees (snapshot/tree.cc: DecodeTree, ValidateNode,
// TreeWriter). The input is a serialized Tree. Checks, beyond "no crash, no
// UB":
//  - errors are DATA_LOSS naming the tree ("tree fuzz: ...");
//  - no allocation is larger than 16 times the input plus 64 KiB (protobuf
//    grows a repeated field by doubling): the wire-length check
//    (snapshot/wire_check.h) keeps protobuf from reserving a string's
//    claimed length (up to 50 MB) before it sees the input is short;
//  - an accepted tree keeps its promises: names valid, strictly sorted,
//    every node valid (ValidateNode);
//  - TreeWriter round-trips: the nodes written one at a time decode to an
//    equal tree, and that encoding is stable (written again, the same bytes).
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <optional>
#include <string>

#include "snapshot/tree.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace pb = snapshot::pb;

Bytes Write(const pb::Tree& tree) {
  Bytes out;
  for (const pb::Node& node : tree.nodes()) snapshot::TreeWriter::AppendNode(node, out);
  return out;
}

void Run(ByteView in) {
  std::optional<Result<pb::Tree>> tree;
  const size_t largest =
      LargestAllocation::During([&] { tree.emplace(snapshot::DecodeTree(in, "fuzz")); });
  FUZZ_CHECK(largest <= 16 * in.size() + (64 << 10));
  if (!tree->ok()) {
    FUZZ_CHECK(tree->status().code() == StatusCode::kDataLoss);
    FUZZ_CHECK(tree->status().message().rfind("tree fuzz", 0) == 0);
    return;
  }
  const std::string* prev = nullptr;
  for (const pb::Node& node : (*tree)->nodes()) {
    FUZZ_CHECK(snapshot::ValidateName(AsBytes(node.name())).ok());
    FUZZ_CHECK(prev == nullptr || *prev < node.name());
    FUZZ_CHECK(snapshot::ValidateNode(node).ok());
    prev = &node.name();
  }
  const Bytes written = Write(**tree);
  Result<pb::Tree> again = snapshot::DecodeTree(written, "rewritten");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->nodes_size() == (*tree)->nodes_size());
  for (int i = 0; i < again->nodes_size(); ++i) {
    FUZZ_CHECK(
        google::protobuf::util::MessageDifferencer::Equals(again->nodes(i), (*tree)->nodes(i)));
  }
  FUZZ_CHECK(Write(*again) == written);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferry::fuzz::Run(ferry::ByteView(data, size));
  return 0;
}
