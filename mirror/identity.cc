#include "mirror/identity.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/log.h"

namespace ferry::mirror {
namespace {

// Key file layout, docs/format/link-transport.md ("Identity key file").
constexpr char kMagic[4] = {'F', 'I', 'D', 'K'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kKeyTypeX25519 = 1;
constexpr size_t kPrivateKeyOffset = 8;
constexpr size_t kPublicKeyOffset = 40;
constexpr size_t kChecksumOffset = 72;
constexpr size_t kFileSize = 104;
constexpr uint64_t kMaxFileSize = 4096;

constexpr std::string_view kFingerprintPrefix = "fry1:";
constexpr std::string_view kFingerprintDomain = "ferry fingerprint v1";
constexpr size_t kFingerprintChars = 32;  // 160 bits / 5

// The key file must not be reachable by group or others. Env has no mode
// query, so this asks the filesystem directly (the path is a real file for
// every Env a daemon uses).
Status CheckPrivateMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return FailedPreconditionError("identity key file " + path + " has mode " + mode +
                                   ": it must not be accessible by group or others (chmod 600 " +
                                   path + ")");
  }
  return OkStatus();
}

int Base32Value(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

}  // namespace

StaticIdentity StaticIdentity::Generate() {
  sodium::BoxKeyPair kp = sodium::GenerateBoxKeyPair();
  return StaticIdentity(kp.public_key, std::move(kp.secret_key));
}

Result<StaticIdentity> StaticIdentity::FromPrivateKey(ByteView private_key) {
  if (private_key.size() != sodium::kX25519KeySize) {
    return InvalidArgumentError("an X25519 private key is 32 bytes, not " +
                                std::to_string(private_key.size()));
  }
  SecretBytes sk(private_key);
  sodium::PublicKey pk = sodium::X25519PublicKey(sk);
  return StaticIdentity(pk, std::move(sk));
}

StaticIdentity StaticIdentity::Clone() const {
  return StaticIdentity(public_key_, private_key_.Clone());
}

std::string StaticIdentity::fingerprint() const { return Fingerprint(public_key_); }

Bytes StaticIdentity::Serialize() const {
  Bytes out;
  out.reserve(kFileSize);
  PutBytes(out, AsBytes(std::string_view(kMagic, sizeof(kMagic))));
  PutU8(out, kVersion);
  PutU8(out, kKeyTypeX25519);
  PutU16(out, 0);  // reserved
  PutBytes(out, private_key_.view());
  PutBytes(out, public_key_);
  sodium::Hash256 checksum = sodium::Blake2b256(out);
  PutBytes(out, checksum);
  return out;
}

Result<StaticIdentity> StaticIdentity::Parse(ByteView file_bytes, const std::string& origin) {
  if (file_bytes.size() < 8 || std::memcmp(file_bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return InvalidArgumentError(origin + " is not a Ferry identity key file (bad magic)");
  }
  if (file_bytes[4] != kVersion) {
    return InvalidArgumentError(origin + ": unsupported identity key file version " +
                                std::to_string(file_bytes[4]));
  }
  if (file_bytes[5] != kKeyTypeX25519) {
    return InvalidArgumentError(origin + ": unknown identity key type " +
                                std::to_string(file_bytes[5]));
  }
  if (file_bytes.size() != kFileSize) {
    return DataLossError(origin + ": identity key file is " + std::to_string(file_bytes.size()) +
                         " bytes, expected " + std::to_string(kFileSize));
  }
  if (file_bytes[6] != 0 || file_bytes[7] != 0) {
    return DataLossError(origin + ": reserved bytes 6..8 of the identity key file are not zero");
  }
  sodium::Hash256 checksum = sodium::Blake2b256(file_bytes.first(kChecksumOffset));
  if (!sodium::ConstantTimeEqual(checksum, file_bytes.subspan(kChecksumOffset, 32))) {
    return DataLossError(origin + ": identity key file checksum mismatch (damaged file)");
  }
  SecretBytes sk(file_bytes.subspan(kPrivateKeyOffset, sodium::kX25519KeySize));
  sodium::PublicKey pk = sodium::X25519PublicKey(sk);
  if (!sodium::ConstantTimeEqual(pk, file_bytes.subspan(kPublicKeyOffset, 32))) {
    return DataLossError(
        origin + ": the public key in the identity key file does not match its private key");
  }
  return StaticIdentity(pk, std::move(sk));
}

Result<StaticIdentity> StaticIdentity::Load(Env& env, const std::string& path) {
  ASSIGN_OR_RETURN(bool exists, env.FileExists(path));
  if (!exists) return NotFoundError("identity key file " + path + " does not exist");
  RETURN_IF_ERROR(CheckPrivateMode(path));
  ASSIGN_OR_RETURN(Bytes bytes, env.ReadFile(path, kMaxFileSize));
  return Parse(bytes, path);
}

Result<StaticIdentity> StaticIdentity::LoadOrCreate(Env& env, const std::string& path) {
  ASSIGN_OR_RETURN(bool exists, env.FileExists(path));
  if (exists) return Load(env, path);
  StaticIdentity identity = Generate();
  RETURN_IF_ERROR(identity.Save(env, path));
  log::Info("created identity key {} ({})", path, identity.fingerprint());
  return identity;
}

Status StaticIdentity::Save(Env& env, const std::string& path) const {
  return WriteFileAtomic(env, path, Serialize(), 0600);
}

FingerprintDigest FingerprintDigestOf(const sodium::PublicKey& public_key) {
  Bytes input = ToBytes(kFingerprintDomain);
  PutBytes(input, public_key);
  sodium::Hash256 hash = sodium::Blake2b256(input);
  FingerprintDigest digest;
  std::memcpy(digest.data(), hash.data(), digest.size());
  return digest;
}

std::string FormatFingerprint(const FingerprintDigest& digest) {
  // 160 bits are exactly 32 base32 digits: no padding.
  const std::string chars = Base32Encode(digest);
  std::string out(kFingerprintPrefix);
  for (size_t i = 0; i < chars.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.push_back('-');
    out.push_back(chars[i]);
  }
  return out;
}

Result<FingerprintDigest> ParseFingerprint(std::string_view text) {
  std::string_view rest = text;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.size() < kFingerprintPrefix.size()) {
    return InvalidArgumentError("'" + std::string(text) + "' is not a Ferry key fingerprint " +
                                "(expected fry1:xxxx-xxxx-...)");
  }
  for (size_t i = 0; i < kFingerprintPrefix.size(); ++i) {
    char c = rest[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kFingerprintPrefix[i]) {
      return InvalidArgumentError("'" + std::string(text) + "' is not a Ferry key fingerprint " +
                                  "(it must start with fry1:)");
    }
  }
  rest.remove_prefix(kFingerprintPrefix.size());
  FingerprintDigest digest{};
  size_t digits = 0;
  uint32_t buffer = 0;
  int bits = 0;
  size_t out = 0;
  for (char c : rest) {
    if (c == '-' || c == ' ') continue;
    int v = Base32Value(c);
    if (v < 0) {
      return InvalidArgumentError("fingerprint '" + std::string(text) + "' contains '" +
                                  std::string(1, c) + "', which is not a base32 digit (a-z, 2-7)");
    }
    if (++digits > kFingerprintChars) break;
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      digest[out++] = static_cast<uint8_t>(buffer >> (bits - 8));
      bits -= 8;
    }
  }
  if (digits != kFingerprintChars) {
    return InvalidArgumentError(
        "fingerprint '" + std::string(text) + "' has " +
        (digits > kFingerprintChars ? std::string("more than ") : std::string()) +
        std::to_string(std::min(digits, kFingerprintChars)) + " base32 digits, expected " +
        std::to_string(kFingerprintChars));
  }
  return digest;
}

bool FingerprintMatches(const FingerprintDigest& pinned, const sodium::PublicKey& public_key) {
  FingerprintDigest actual = FingerprintDigestOf(public_key);
  return sodium::ConstantTimeEqual(pinned, actual);
}

}  // namespace ferry::mirror
