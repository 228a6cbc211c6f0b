#include "snapshot/tree.h"
#include "snapshot/wire_check.h"

#include <algorithm>
#include <cstring>

#include "snapshot/types.h"

namespace ferry::snapshot {

std::string PrintableName(ByteView name) {
  std::string out;
  for (uint8_t c : name) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Status ValidateName(ByteView name) {
  if (name.empty()) return InvalidArgumentError("empty name");
  if (name.size() > kMaxNameSize) {
    return InvalidArgumentError("name longer than 255 bytes: " + PrintableName(name.first(40)) +
                                "...");
  }
  if (std::find(name.begin(), name.end(), '/') != name.end()) {
    return InvalidArgumentError("name contains '/': " + PrintableName(name));
  }
  if (std::find(name.begin(), name.end(), '\0') != name.end()) {
    return InvalidArgumentError("name contains NUL: " + PrintableName(name));
  }
  if ((name.size() == 1 && name[0] == '.') ||
      (name.size() == 2 && name[0] == '.' && name[1] == '.')) {
    return InvalidArgumentError("name is '" + PrintableName(name) + "'");
  }
  return OkStatus();
}

Status ValidateNode(const pb::Node& node) {
  const std::string name = PrintableName(AsBytes(node.name()));
  auto bad = [&](const std::string& what) {
    return InvalidArgumentError("'" + name + "': " + what);
  };
  if (node.mode() > 07777) return bad("mode has bits beyond 07777");
  for (const pb::ChunkRef& r : node.content()) {
    if (r.id().size() != 32) return bad("chunk id is not 32 bytes");
    if (r.size() > kMaxChunkSize) return bad("chunk larger than the limit");
  }
  if (node.xattrs_size() > 1024) return bad("too many xattrs");
  for (const pb::Xattr& x : node.xattrs()) {
    if (x.name().empty() || x.name().size() > kMaxXattrNameSize ||
        x.name().find('\0') != std::string::npos) {
      return bad("invalid xattr name");
    }
    if (x.value().size() > kMaxXattrValueSize) return bad("xattr value too large");
  }
  switch (node.type()) {
    case pb::NODE_TYPE_FILE: {
      if (!node.symlink_target().empty()) return bad("file with a symlink target");
      uint64_t content = 0;
      for (const pb::ChunkRef& r : node.content()) content += r.size();
      if (node.extents_size() == 0) {
        if (content != node.size()) return bad("content size differs from file size");
      } else {
        uint64_t end = 0, total = 0;
        for (const pb::Extent& e : node.extents()) {
          if (e.length() == 0 || e.offset() < end || e.offset() > node.size() ||
              e.length() > node.size() - e.offset()) {
            return bad("extents overlap, are unsorted or run past the end");
          }
          end = e.offset() + e.length();
          total += e.length();
        }
        if (total != content) return bad("extent lengths differ from content size");
      }
      return OkStatus();
    }
    case pb::NODE_TYPE_DIRECTORY:
      if (node.extents_size() != 0 || !node.symlink_target().empty() || node.hardlink_id() != 0) {
        return bad("directory with file or symlink fields");
      }
      return OkStatus();
    case pb::NODE_TYPE_SYMLINK:
      if (node.symlink_target().empty() || node.symlink_target().size() > kMaxSymlinkTargetSize ||
          node.symlink_target().find('\0') != std::string::npos) {
        return bad("invalid symlink target");
      }
      if (node.content_size() != 0 || node.extents_size() != 0 || node.hardlink_id() != 0) {
        return bad("symlink with content");
      }
      return OkStatus();
    default:
      return bad("unknown node type " + std::to_string(node.type()));
  }
}

Result<pb::Tree> DecodeTree(ByteView bytes, const std::string& where) {
  if (bytes.size() > kMaxTreeSize) return DataLossError("tree " + where + " is too large");
  if (Status s = CheckWireLengths(bytes, *pb::Tree::descriptor()); !s.ok()) {
    return DataLossError("tree " + where + " is not a valid protobuf Tree: " + s.message());
  }
  pb::Tree tree;
  if (!tree.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLossError("tree " + where + " is not a valid protobuf Tree");
  }
  const std::string* prev = nullptr;
  for (const pb::Node& node : tree.nodes()) {
    if (Status s = ValidateName(AsBytes(node.name())); !s.ok()) {
      return DataLossError("tree " + where + ": " + s.message());
    }
    if (prev != nullptr && !(*prev < node.name())) {
      return DataLossError("tree " + where + ": names not sorted or duplicated at '" +
                           PrintableName(AsBytes(node.name())) + "'");
    }
    prev = &node.name();
    if (Status s = ValidateNode(node); !s.ok()) {
      return DataLossError("tree " + where + ": " + s.message());
    }
  }
  return tree;
}

void TreeWriter::AppendNode(const pb::Node& node, Bytes& out) {
  const size_t len = node.ByteSizeLong();
  out.push_back(0x0a);  // field 1, wire type 2 (length-delimited)
  size_t v = len;
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
  const size_t start = out.size();
  out.resize(start + len);
  node.SerializeWithCachedSizesToArray(out.data() + start);
}

}  // namespace ferry::snapshot
