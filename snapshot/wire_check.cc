#include "snapshot/wire_check.h"

#include <string>

namespace ferry::snapshot {

namespace {

constexpr int kMaxDepth = 64;

bool ReadVarint(ByteReader& r, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = 0;
    if (!r.ReadU8(b)) return false;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;  // more than 10 bytes
}

Status Check(ByteView bytes, const google::protobuf::Descriptor* type, int depth) {
  if (depth > kMaxDepth) return DataLossError("protobuf nesting deeper than 64");
  ByteReader r(bytes);
  while (!r.empty()) {
    uint64_t tag = 0;
    if (!ReadVarint(r, tag)) return DataLossError("truncated protobuf field tag");
    const uint64_t number = tag >> 3;
    const auto where = [&] { return "protobuf field " + std::to_string(number); };
    ByteView skipped;
    uint64_t value = 0;
    switch (tag & 7) {
      case 0:
        if (!ReadVarint(r, value)) return DataLossError(where() + ": truncated varint");
        break;
      case 1:
        if (!r.ReadView(8, skipped)) return DataLossError(where() + ": truncated fixed64");
        break;
      case 5:
        if (!r.ReadView(4, skipped)) return DataLossError(where() + ": truncated fixed32");
        break;
      case 2: {
        uint64_t len = 0;
        if (!ReadVarint(r, len)) return DataLossError(where() + ": truncated length");
        if (len > r.remaining()) {
          return DataLossError(where() + " claims " + std::to_string(len) + " bytes; " +
                               std::to_string(r.remaining()) + " are left");
        }
        ByteView field;
        r.ReadView(static_cast<size_t>(len), field);
        const google::protobuf::FieldDescriptor* f =
            type != nullptr && number <= INT32_MAX
                ? type->FindFieldByNumber(static_cast<int>(number))
                : nullptr;
        if (f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
          RETURN_IF_ERROR(Check(field, f->message_type(), depth + 1));
        }
        break;
      }
      default:
        return DataLossError(where() + ": wire type " + std::to_string(tag & 7) +
                             " is not used by this format");
    }
  }
  return OkStatus();
}

}  // namespace

Status CheckWireLengths(ByteView bytes, const google::protobuf::Descriptor& type) {
  return Check(bytes, &type, 0);
}

}  // namespace ferry::snapshot
