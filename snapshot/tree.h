// Trees: directory listings as protobuf (ferry.snapshot.v1.Tree), validated
// on decode because they come from storage or a peer and may be hostile.
// Format: docs/format/tree.md.
//
// Thread-safety: functions are thread-safe; TreeWriter is thread-compatible.
#pragma once

#include <string>

#include "core/bytes.h"
#include "core/status.h"
#include "proto/snapshot.pb.h"

namespace ferry::snapshot {

namespace pb = ::ferry::snapshot::v1;

inline constexpr size_t kMaxNameSize = 255;
inline constexpr size_t kMaxSymlinkTargetSize = 4096;
inline constexpr size_t kMaxXattrNameSize = 255;
inline constexpr size_t kMaxXattrValueSize = 64 * 1024;
// Directories nested deeper than this are not captured and not restored.
inline constexpr size_t kMaxTreeDepth = 2048;
// A serialized tree (one directory) is refused beyond this size.
inline constexpr size_t kMaxTreeSize = 256u << 20;

// kInvalidArgument unless `name` is 1..255 bytes, has no '/' or NUL, and is
// not "." or "..".
Status ValidateName(ByteView name);

// Checks one node's fields (not its name's place in the tree).
Status ValidateNode(const pb::Node& node);

// Parses and validates a tree: names valid, strictly sorted (so unique),
// every node valid. kDataLoss with the offending name otherwise.
Result<pb::Tree> DecodeTree(ByteView bytes, const std::string& where);

// Serializes nodes one at a time (they must arrive sorted by name); the output
// is a valid Tree encoding: repeated field 1 records.
class TreeWriter {
 public:
  // Appends the node's record to `out`.
  static void AppendNode(const pb::Node& node, Bytes& out);
};

// A printable form of a byte-string name for messages: printable ASCII kept,
// everything else as \xNN.
std::string PrintableName(ByteView name);

}  // namespace ferry::snapshot
