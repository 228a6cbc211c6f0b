// Constants of the keyset file format. Spec: docs/format/keyset.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::snapshot::keyset_format {

inline constexpr uint8_t kMagic[4] = {'F', 'K', 'E', 'Y'};
inline constexpr uint8_t kVersion = 1;
inline constexpr uint8_t kKindTenant = 1;
inline constexpr uint8_t kKindAgent = 2;

inline constexpr size_t kOffMagic = 0;
inline constexpr size_t kOffVersion = 4;
inline constexpr size_t kOffKind = 5;
inline constexpr size_t kOffReserved = 6;
inline constexpr size_t kOffTenantPublicKey = 8;
inline constexpr size_t kOffChunkIdKey = 40;
inline constexpr size_t kOffSigningSeed = 72;
inline constexpr size_t kCommonSize = 104;
// Tenant keysets only:
inline constexpr size_t kOffOpsLimit = 104;
inline constexpr size_t kOffMemLimit = 112;
inline constexpr size_t kOffSalt = 120;
inline constexpr size_t kOffNonce = 136;
inline constexpr size_t kOffSealedPrivateKey = 160;
inline constexpr size_t kSealedPrivateKeySize = 48;
inline constexpr size_t kTenantBodySize = 208;

inline constexpr size_t kChecksumSize = 32;
inline constexpr size_t kAgentFileSize = kCommonSize + kChecksumSize;       // 136
inline constexpr size_t kTenantFileSize = kTenantBodySize + kChecksumSize;  // 240

}  // namespace ferry::snapshot::keyset_format
