// CheckWireLengths: a pass over untrusted protobuf bytes before they are
// parsed, checking that every length-delimited field fits inside what
// encloses it — at every level where the schema says the field is a
// message. protobuf 3.21 reserves up to 50 MB for a string or bytes field
// whose claimed length runs past the end of the input before it notices:
// without this check a 12-byte link frame costs the hub a 50 MB allocation
// (found by link_envelope_fuzz). Also refuses groups (not used by proto3),
// truncated varints and fixed fields, and nesting deeper than 64.
//
// Errors: kDataLoss naming the field number and what is wrong.
// Thread-safety: thread-safe (no state).
#pragma once

#include <google/protobuf/descriptor.h>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry::snapshot {

Status CheckWireLengths(ByteView bytes, const google::protobuf::Descriptor& type);

}  // namespace ferry::snapshot
