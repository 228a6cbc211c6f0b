// ferryctl stream: read an agent's stream from a hub (sealed batches over
// HTTP, checked and decrypted here: the hub never sees keys) and list the
// streams a hub holds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/secret_bytes.h"
#include "ctl/hub_commands.h"
#include "snapshot/keyset.h"
#include "snapshot/stream_log.h"

namespace ferry::ctl {

// Reads one stream of one agent from a hub, in order. Every batch must be
// signed by the agent's signing key as the hub enrolled it, name the stream,
// and continue exactly where the previous one ended; otherwise kDataLoss.
// Thread-compatible.
class HubStreamReader {
 public:
  // `client` and `keyset` (unlocked) must outlive the reader.
  HubStreamReader(HubClient& client, std::string tenant, std::string agent, std::string stream,
                  const snapshot::Keyset& keyset);
  // Looks up the agent's signing key (kNotFound for an unknown agent).
  Status Init();
  // The records from `from` on that the next batches hold (about
  // `max_bytes` of batches); empty when `from` is the stream's end.
  // kOutOfRange when `from` is below the hub's first offset or past its end.
  Result<std::vector<snapshot::StreamRecord>> Read(uint64_t from, size_t max_bytes = 4u << 20);

 private:
  HubClient& client_;
  const std::string tenant_, agent_, stream_;
  const snapshot::Keyset& keyset_;
  sodium::PublicKey signer_{};
  std::map<snapshot::KeyId, SecretBytes> keys_;  // unwrapped data keys
};

// One record as a JSON line (no newline): {"offset": N, "text": "..."}, or
// "base64" instead of "text" for bytes that are not UTF-8.
std::string StreamRecordJson(const snapshot::StreamRecord& record);

struct StreamReadArgs {
  HubArgs hub;
  std::string target;  // AGENT/STREAM
  std::string keyset;
  std::string passphrase_file;
  uint64_t from = 0;
  uint64_t end = UINT64_MAX;  // stop before this offset
  uint64_t max = 0;           // stop after this many records; 0 = no limit
  bool follow = false;        // wait for new records at the end
  uint32_t poll_ms = 500;     // --follow: how often to ask the hub at the end
};
int StreamRead(const StreamReadArgs& args);

int StreamList(const HubArgs& args, const std::string& agent);

}  // namespace ferry::ctl
