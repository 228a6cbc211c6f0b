// Tests for mirror/noise/: the published Noise test vectors (two independent
// implementations' sets, tests/data/noise/), HMAC/HKDF and the nonce layout
// against independent references, and the handshake's behaviour under
// damage, truncation, replay and misuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/bytes.h"
#include "core/sodium.h"
#include "core/status.h"
#include "mirror/noise/cipher_state.h"
#include "mirror/noise/handshake_state.h"
#include "mirror/noise/symmetric_state.h"
#include "tests/testing/test_util.h"

namespace ferry::mirror::noise {
namespace {

Bytes Hex(std::string_view hex) {
  Result<Bytes> r = HexDecode(hex);
  EXPECT_TRUE(r.ok()) << "bad hex in test: " << hex;
  return r.ok() ? *r : Bytes{};
}

Bytes Payload(size_t size, uint8_t seed) {
  Bytes b(size);
  for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(seed + i * 31);
  return b;
}

KeyPair Clone(const KeyPair& kp) { return KeyPair{kp.public_key, kp.private_key.Clone()}; }

// ------------------------------------------------------------ vector loading

// A minimal JSON reader for the vector files: objects, arrays and strings
// without escapes (numbers, booleans, null and escapes do not occur there
// and are refused). Boost.JSON is not linked into mirror_tests.
struct Json {
  enum class Kind { kString, kArray, kObject };
  Kind kind = Kind::kString;
  std::string str;
  std::vector<Json> items;        // array elements, or object values
  std::vector<std::string> keys;  // object keys, parallel to items
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}
  bool Parse(Json& out) {
    if (!Value(out, 0)) return false;
    SkipSpace();
    return pos_ == text_.size();
  }
  size_t position() const { return pos_; }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool Eat(char c) {
    if (!Peek(c)) return false;
    ++pos_;
    return true;
  }
  bool String(std::string& out) {
    if (!Eat('"')) return false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (c == '\\') return false;
      out.push_back(c);
    }
    return false;
  }
  bool Value(Json& out, int depth) {
    if (depth > 8) return false;
    if (Peek('"')) {
      out.kind = Json::Kind::kString;
      return String(out.str);
    }
    if (Eat('[')) {
      out.kind = Json::Kind::kArray;
      if (Eat(']')) return true;
      do {
        out.items.emplace_back();
        if (!Value(out.items.back(), depth + 1)) return false;
      } while (Eat(','));
      return Eat(']');
    }
    if (Eat('{')) {
      out.kind = Json::Kind::kObject;
      if (Eat('}')) return true;
      do {
        out.keys.emplace_back();
        SkipSpace();
        if (!String(out.keys.back()) || !Eat(':')) return false;
        out.items.emplace_back();
        if (!Value(out.items.back(), depth + 1)) return false;
      } while (Eat(','));
      return Eat('}');
    }
    return false;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

struct NoiseVector {
  std::string source;  // "cacophony" or "snow"
  std::string protocol_name;
  Bytes init_prologue, resp_prologue;
  std::optional<Bytes> init_static, init_ephemeral, init_remote_static;
  std::optional<Bytes> resp_static, resp_ephemeral, resp_remote_static;
  std::optional<Bytes> handshake_hash;  // the snow set does not record it
  bool uses_psk = false;
  struct Message {
    Bytes payload, ciphertext;
  };
  std::vector<Message> messages;
};

// tests/data/noise/vectors-25519-ChaChaPoly-BLAKE2b.json under
// $FERRY_SOURCE_DIR, or next to this source file when it is not set (the
// golden tests do the same: CTest does not always export it).
std::string VectorFilePath() {
  const char* root = std::getenv("FERRY_SOURCE_DIR");
  if (root != nullptr && *root != '\0') {
    return std::string(root) + "/tests/data/noise/vectors-25519-ChaChaPoly-BLAKE2b.json";
  }
  const std::string here = __FILE__;  // tests/mirror/noise_test.cc
  return here.substr(0, here.rfind('/')) + "/../data/noise/vectors-25519-ChaChaPoly-BLAKE2b.json";
}

// Reads the vector file; an empty result with `error` set on any problem (an
// unknown field included: a vector with a feature we do not model must not
// pass silently).
std::vector<NoiseVector> LoadVectors(std::string& error) {
  const std::string path = VectorFilePath();
  const Bytes text = testing::ReadFileOrDie(path);
  Json doc;
  JsonReader reader(AsStringView(text));
  if (!reader.Parse(doc) || doc.kind != Json::Kind::kObject || doc.keys.size() != 1 ||
      doc.keys[0] != "vectors" || doc.items[0].kind != Json::Kind::kArray) {
    error = path + ": not the expected JSON (stopped at byte " + std::to_string(reader.position()) +
            ")";
    return {};
  }
  std::vector<NoiseVector> out;
  for (const Json& v : doc.items[0].items) {
    if (v.kind != Json::Kind::kObject) {
      error = "a vector is not an object";
      return {};
    }
    NoiseVector nv;
    std::map<std::string, std::optional<Bytes>*> optional_hex = {
        {"init_static", &nv.init_static},
        {"init_ephemeral", &nv.init_ephemeral},
        {"init_remote_static", &nv.init_remote_static},
        {"resp_static", &nv.resp_static},
        {"resp_ephemeral", &nv.resp_ephemeral},
        {"resp_remote_static", &nv.resp_remote_static},
        {"handshake_hash", &nv.handshake_hash}};
    for (size_t i = 0; i < v.keys.size(); ++i) {
      const std::string& key = v.keys[i];
      const Json& val = v.items[i];
      const bool is_string = val.kind == Json::Kind::kString;
      if (key == "_source" && is_string) {
        nv.source = val.str;
      } else if (key == "protocol_name" && is_string) {
        nv.protocol_name = val.str;
      } else if (key == "init_prologue" && is_string) {
        nv.init_prologue = Hex(val.str);
      } else if (key == "resp_prologue" && is_string) {
        nv.resp_prologue = Hex(val.str);
      } else if (optional_hex.count(key) && is_string) {
        *optional_hex[key] = Hex(val.str);
      } else if ((key == "init_psks" || key == "resp_psks") && val.kind == Json::Kind::kArray) {
        nv.uses_psk = nv.uses_psk || !val.items.empty();
      } else if (key == "messages" && val.kind == Json::Kind::kArray) {
        for (const Json& m : val.items) {
          if (m.kind != Json::Kind::kObject || m.keys.size() != 2 || m.keys[0] != "payload" ||
              m.keys[1] != "ciphertext") {
            error = "a message is not {payload, ciphertext}";
            return {};
          }
          nv.messages.push_back({Hex(m.items[0].str), Hex(m.items[1].str)});
        }
      } else {
        error = "unexpected field \"" + key + "\" in a vector";
        return {};
      }
    }
    out.push_back(std::move(nv));
  }
  return out;
}

std::optional<KeyPair> KeyPairFromHex(const std::optional<Bytes>& priv) {
  if (!priv) return std::nullopt;
  Result<KeyPair> kp = KeyPairFromPrivate(*priv);
  EXPECT_TRUE(kp.ok()) << kp.status().ToString();
  return kp.ok() ? std::optional<KeyPair>(std::move(*kp)) : std::nullopt;
}

std::optional<sodium::PublicKey> PublicKeyFromHex(const std::optional<Bytes>& pub) {
  if (!pub) return std::nullopt;
  EXPECT_EQ(pub->size(), 32u);
  sodium::PublicKey pk{};
  std::copy_n(pub->begin(), std::min<size_t>(pub->size(), 32), pk.begin());
  return pk;
}

size_t HandshakeLength(Pattern p) { return p == Pattern::kXX ? 3 : 2; }

// ------------------------------------------------------------ test vectors

struct VectorCase {
  std::string source;
  Pattern pattern;
  std::string label;
};

void PrintTo(const VectorCase& c, std::ostream* os) { *os << c.label; }

class NoiseVectorTest : public ::testing::TestWithParam<VectorCase> {};

// Runs initiator and responder in lockstep from the vector's keys, prologue
// and ephemerals; every handshake and transport message must match byte for
// byte and decrypt on the other side.
TEST_P(NoiseVectorTest, ReproducesEveryMessage) {
  const VectorCase& c = GetParam();
  std::string error;
  std::vector<NoiseVector> vectors = LoadVectors(error);
  ASSERT_TRUE(error.empty()) << error;

  const std::string name = ProtocolName(c.pattern);
  const NoiseVector* found = nullptr;
  for (const NoiseVector& v : vectors) {
    if (v.source == c.source && v.protocol_name == name) {
      ASSERT_EQ(found, nullptr) << "two " << c.source << " vectors for " << name;
      found = &v;
    }
  }
  ASSERT_NE(found, nullptr) << "no " << c.source << " vector for " << name;
  const NoiseVector& v = *found;
  ASSERT_FALSE(v.uses_psk);
  const size_t handshake_len = HandshakeLength(c.pattern);
  ASSERT_GT(v.messages.size(), handshake_len) << "the vector has no transport messages";

  HandshakeConfig ic;
  ic.pattern = c.pattern;
  ic.initiator = true;
  ic.prologue = v.init_prologue;
  ic.local_static = KeyPairFromHex(v.init_static);
  ic.remote_static = PublicKeyFromHex(v.init_remote_static);
  ic.local_ephemeral_for_test = KeyPairFromHex(v.init_ephemeral);
  HandshakeConfig rc;
  rc.pattern = c.pattern;
  rc.initiator = false;
  rc.prologue = v.resp_prologue;
  rc.local_static = KeyPairFromHex(v.resp_static);
  rc.remote_static = PublicKeyFromHex(v.resp_remote_static);
  rc.local_ephemeral_for_test = KeyPairFromHex(v.resp_ephemeral);
  const std::optional<sodium::PublicKey> init_static_pub =
      ic.local_static ? std::optional(ic.local_static->public_key) : std::nullopt;
  const std::optional<sodium::PublicKey> resp_static_pub =
      rc.local_static ? std::optional(rc.local_static->public_key) : std::nullopt;

  auto init = HandshakeState::Create(std::move(ic));
  ASSERT_TRUE(init.ok()) << init.status().ToString();
  auto resp = HandshakeState::Create(std::move(rc));
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();

  for (size_t i = 0; i < handshake_len; ++i) {
    SCOPED_TRACE("handshake message " + std::to_string(i));
    HandshakeState& writer = i % 2 == 0 ? **init : **resp;
    HandshakeState& reader = i % 2 == 0 ? **resp : **init;
    ASSERT_TRUE(writer.IsMyTurn());
    ASSERT_FALSE(reader.IsMyTurn());
    Bytes message;
    ASSERT_TRUE(writer.WriteMessage(v.messages[i].payload, message).ok());
    EXPECT_EQ(HexEncode(message), HexEncode(v.messages[i].ciphertext));
    Bytes payload;
    Status st = reader.ReadMessage(v.messages[i].ciphertext, payload);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(payload, v.messages[i].payload);
  }
  ASSERT_TRUE((*init)->IsFinished());
  ASSERT_TRUE((*resp)->IsFinished());
  EXPECT_EQ((*init)->handshake_hash(), (*resp)->handshake_hash());
  if (v.handshake_hash) {
    EXPECT_EQ(HexEncode((*init)->handshake_hash()), HexEncode(*v.handshake_hash));
  }
  EXPECT_EQ((*init)->remote_static(), resp_static_pub);
  EXPECT_EQ((*resp)->remote_static(), init_static_pub);

  auto init_tc = (*init)->Split();
  auto resp_tc = (*resp)->Split();
  ASSERT_TRUE(init_tc.ok() && resp_tc.ok());
  EXPECT_EQ(init_tc->handshake_hash, (*init)->handshake_hash());
  // After the handshake the vector format keeps alternating by message index
  // (even: initiator → responder, odd: responder → initiator), for the
  // three-message XX as well as the two-message patterns; only one-way
  // patterns (none here) send everything from the initiator.
  for (size_t i = handshake_len; i < v.messages.size(); ++i) {
    SCOPED_TRACE("transport message " + std::to_string(i));
    CipherState& send = i % 2 == 0 ? init_tc->send : resp_tc->send;
    CipherState& receive = i % 2 == 0 ? resp_tc->receive : init_tc->receive;
    Bytes ciphertext;
    ASSERT_TRUE(send.EncryptWithAd({}, v.messages[i].payload, ciphertext).ok());
    EXPECT_EQ(HexEncode(ciphertext), HexEncode(v.messages[i].ciphertext));
    Bytes plaintext;
    ASSERT_TRUE(receive.DecryptWithAd({}, v.messages[i].ciphertext, plaintext).ok());
    EXPECT_EQ(plaintext, v.messages[i].payload);
  }
}

INSTANTIATE_TEST_SUITE_P(Noise, NoiseVectorTest,
                         ::testing::Values(VectorCase{"cacophony", Pattern::kNN, "cacophony_NN"},
                                           VectorCase{"cacophony", Pattern::kKK, "cacophony_KK"},
                                           VectorCase{"cacophony", Pattern::kIK, "cacophony_IK"},
                                           VectorCase{"cacophony", Pattern::kXX, "cacophony_XX"},
                                           VectorCase{"snow", Pattern::kNN, "snow_NN"},
                                           VectorCase{"snow", Pattern::kKK, "snow_KK"},
                                           VectorCase{"snow", Pattern::kIK, "snow_IK"},
                                           VectorCase{"snow", Pattern::kXX, "snow_XX"}),
                         [](const ::testing::TestParamInfo<VectorCase>& vector_case) {
                           return vector_case.param.label;
                         });

// The data file holds exactly the vectors above: psk vectors (XXpsk3) were
// left out when copying because psk modifiers are not implemented.
TEST(NoiseVectorFile, HoldsExactlyTheVectorsTested) {
  std::string error;
  std::vector<NoiseVector> vectors = LoadVectors(error);
  ASSERT_TRUE(error.empty()) << error;
  std::map<std::string, int> count;
  for (const NoiseVector& v : vectors) {
    EXPECT_FALSE(v.uses_psk) << v.protocol_name;
    ++count[v.source + " " + v.protocol_name];
  }
  EXPECT_EQ(vectors.size(), 8u);
  for (const char* source : {"cacophony", "snow"}) {
    for (Pattern p : {Pattern::kNN, Pattern::kKK, Pattern::kIK, Pattern::kXX}) {
      EXPECT_EQ((count[std::string(source) + " " + ProtocolName(p)]), 1)
          << source << " " << ProtocolName(p);
    }
  }
}

// The worked example of docs/format/link-handshake.md: Ferry's prologue,
// fixed keys, empty payloads. Also computed by an independent Python
// implementation of the spec (see that page).
TEST(NoiseLinkHandshake, WorkedExampleMatchesFormatPage) {
  auto key = [](uint8_t first) {
    Bytes b(32);
    for (size_t i = 0; i < 32; ++i) b[i] = static_cast<uint8_t>(first + i);
    Result<KeyPair> kp = KeyPairFromPrivate(b);
    EXPECT_TRUE(kp.ok());
    return std::move(*kp);
  };
  HandshakeConfig ic;
  ic.prologue = ToBytes("ferry-link-v1");
  ic.local_static = key(0x00);
  ic.local_ephemeral_for_test = key(0x40);
  HandshakeConfig rc;
  rc.initiator = false;
  rc.prologue = ToBytes("ferry-link-v1");
  rc.local_static = key(0x20);
  rc.local_ephemeral_for_test = key(0x60);
  EXPECT_EQ(HexEncode(ic.local_static->public_key),
            "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f");
  EXPECT_EQ(HexEncode(rc.local_static->public_key),
            "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254");
  auto init = HandshakeState::Create(std::move(ic));
  auto resp = HandshakeState::Create(std::move(rc));
  ASSERT_TRUE(init.ok() && resp.ok());
  EXPECT_EQ(ProtocolName(Pattern::kXX), "Noise_XX_25519_ChaChaPoly_BLAKE2b");

  const char* want[] = {
      "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a",
      "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
      "4dd8912b935d3c40761704108c8cd2781a52531a142457fc1c12e161f23c48e1"
      "503174a017680b0b2f4c790591439da7d485e0395fd05e6d38370a4831e68c8c",
      "9f479613244745c2f0731a255c6fbe6cc54ab67ea874c0fa9ac756a6948a4205"
      "7d8e8bff9f0d1fc68aa619f337037e3b37df2166af7f8cba95a99b6dc0549ad8",
  };
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("message " + std::to_string(i + 1));
    HandshakeState& writer = i % 2 == 0 ? **init : **resp;
    HandshakeState& reader = i % 2 == 0 ? **resp : **init;
    Bytes message, payload;
    ASSERT_TRUE(writer.WriteMessage({}, message).ok());
    EXPECT_EQ(HexEncode(message), want[i]);
    ASSERT_TRUE(reader.ReadMessage(message, payload).ok());
    EXPECT_TRUE(payload.empty());
  }
  EXPECT_EQ(HexEncode((*init)->handshake_hash()),
            "b89c95f992316a623a71ca84b7a0e0094a2336ad009cd108384fbc618445be3c"
            "d1939bdcf3111e401ae07a51a239ffa149e97dac334197b4841ce2b8a525fd5d");
  auto tc = (*init)->Split();
  ASSERT_TRUE(tc.ok());
  Bytes ping;
  ASSERT_TRUE(tc->send.EncryptWithAd({}, ToBytes("ping"), ping).ok());
  EXPECT_EQ(HexEncode(ping), "c16f27f54278d19b8fa5a1eb973bb743bd218ea5");
}

// ------------------------------------------------------------ primitives

// References: Python's hmac.new(key, msg, hashlib.blake2b) (RFC 2104 with a
// 128-byte block), which is not BLAKE2b's keyed mode (that gives a64c1a2a…).
TEST(NoiseHmacBlake2b, MatchesRfc2104Reference) {
  const Bytes message = ToBytes("Ferry HMAC-BLAKE2b known answer");
  Bytes key64(64);
  for (size_t i = 0; i < 64; ++i) key64[i] = static_cast<uint8_t>(i);
  Bytes key200(200);
  for (size_t i = 0; i < 200; ++i) key200[i] = static_cast<uint8_t>(i * 7);
  struct Case {
    const char* name;
    Bytes key, data;
    const char* want;
  } cases[] = {
      {"64-byte key (the chaining key's size)", key64, message,
       "3ee26380b09a053c3930402fc81e1628c051192801e0f53f2872b0a0017c3bc5"
       "fc80e5292772a29c6133d478a23ee1f5c481af1b8a64eadbe983caeb564ca63e"},
      {"key longer than a block is hashed first", key200, message,
       "3f4159b554bdda57489ed8f5505db84c75281116fea2c82f82308bb5d5ae9e02"
       "db95294c29878be872c2fd93cc7b8b95e89ccb1ca450ad251e223cf14bd2f098"},
      {"empty key and data",
       {},
       {},
       "198cd2006f66ff83fbbd913f78aca2251caf4f19fe9475aade8cf2091b99a684"
       "66775177424f58286886cbae8229644cec747237d4b721735485e17372fdf59c"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes out(64);
    HmacBlake2b(c.key, c.data, out);
    EXPECT_EQ(HexEncode(out), c.want);
  }
}

TEST(NoiseHkdf, ChainsHmacAsSpecSection4_3) {
  const Bytes ck = Payload(64, 1);
  const Bytes ikm = Payload(32, 2);
  HkdfOutputs out = Hkdf(ck, ikm, 3);
  Bytes temp_key(64), o1(64), o2(64), o3(64);
  HmacBlake2b(ck, ikm, temp_key);
  HmacBlake2b(temp_key, Bytes{0x01}, o1);
  Bytes in2 = o1;
  in2.push_back(0x02);
  HmacBlake2b(temp_key, in2, o2);
  Bytes in3 = o2;
  in3.push_back(0x03);
  HmacBlake2b(temp_key, in3, o3);
  EXPECT_EQ(HexEncode(out.out1.view()), HexEncode(o1));
  EXPECT_EQ(HexEncode(out.out2.view()), HexEncode(o2));
  EXPECT_EQ(HexEncode(out.out3.view()), HexEncode(o3));
  EXPECT_TRUE(Hkdf(ck, ikm, 2).out3.empty());
}

// Reference: Python cryptography's ChaCha20Poly1305 with the nonce
// 00000000 || 0807060504030201 (32 zero bits, then the counter little-endian).
TEST(NoiseCipherState, NonceIsZeroPaddedLittleEndianCounter) {
  Bytes key(32);
  for (size_t i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(i);
  CipherState cs{SecretBytes(key)};
  cs.SetNonceForTest(0x0102030405060708);
  Bytes out;
  ASSERT_TRUE(cs.EncryptWithAd(ToBytes("ad"), ToBytes("noise nonce layout"), out).ok());
  EXPECT_EQ(HexEncode(out), "9e26c497ce1984770ac84fec1f1918d7957273ed1091b6e2b24cc73037fe7a5a970f");
  EXPECT_EQ(cs.nonce(), 0x0102030405060709u);
}

TEST(NoiseCipherState, WithoutKeyPassesBytesThrough) {
  CipherState cs;
  EXPECT_FALSE(cs.has_key());
  Bytes out = {9};
  ASSERT_TRUE(cs.EncryptWithAd({}, ToBytes("abc"), out).ok());
  EXPECT_EQ(out, (Bytes{9, 'a', 'b', 'c'}));
  Bytes plain;
  ASSERT_TRUE(cs.DecryptWithAd({}, ToBytes("xyz"), plain).ok());
  EXPECT_EQ(plain, ToBytes("xyz"));
  EXPECT_EQ(cs.nonce(), 0u);
}

TEST(NoiseCipherState, FailedDecryptClearsOutputAndKeepsNonce) {
  const Bytes key = Payload(32, 3);
  CipherState send{SecretBytes(key)};
  CipherState receive{SecretBytes(key)};
  Bytes m0, m1;
  ASSERT_TRUE(send.EncryptWithAd(ToBytes("ad"), ToBytes("zero"), m0).ok());
  ASSERT_TRUE(send.EncryptWithAd(ToBytes("ad"), ToBytes("one"), m1).ok());

  Bytes plain = ToBytes("stale");
  Bytes damaged = m0;
  damaged[0] ^= 0x01;
  struct Case {
    const char* name;
    Bytes message;
    Bytes ad;
  } cases[] = {
      {"flipped bit", damaged, ToBytes("ad")},
      {"wrong ad", m0, ToBytes("AD")},
      {"next nonce's message", m1, ToBytes("ad")},
      {"shorter than a tag", Bytes(15, 0), ToBytes("ad")},
      {"empty", {}, ToBytes("ad")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    plain = ToBytes("stale");
    Status st = receive.DecryptWithAd(c.ad, c.message, plain);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
    EXPECT_TRUE(plain.empty());
    EXPECT_EQ(receive.nonce(), 0u);
  }
  ASSERT_TRUE(receive.DecryptWithAd(ToBytes("ad"), m0, plain).ok());
  EXPECT_EQ(plain, ToBytes("zero"));
  ASSERT_TRUE(receive.DecryptWithAd(ToBytes("ad"), m1, plain).ok());
  EXPECT_EQ(plain, ToBytes("one"));
}

TEST(NoiseCipherState, ReservedNonceIsNeverUsed) {
  const Bytes key = Payload(32, 4);
  CipherState cs{SecretBytes(key)};
  cs.SetNonceForTest(std::numeric_limits<uint64_t>::max() - 1);
  Bytes out;
  ASSERT_TRUE(cs.EncryptWithAd({}, ToBytes("last"), out).ok());
  const Bytes last = out;
  EXPECT_EQ(cs.nonce(), std::numeric_limits<uint64_t>::max());
  out.clear();
  EXPECT_EQ(cs.EncryptWithAd({}, ToBytes("one too many"), out).code(),
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(out.empty());

  CipherState receive{SecretBytes(key)};
  receive.SetNonceForTest(std::numeric_limits<uint64_t>::max() - 1);
  Bytes plain;
  ASSERT_TRUE(receive.DecryptWithAd({}, last, plain).ok());
  EXPECT_EQ(receive.DecryptWithAd({}, last, plain).code(), StatusCode::kResourceExhausted);
}

TEST(NoiseCipherState, RekeyMatchesSpecAndKeepsTheStreamReadable) {
  const Bytes key = Payload(32, 5);
  CipherState send{SecretBytes(key)};
  CipherState receive{SecretBytes(key)};
  CipherState stale{SecretBytes(key)};
  ASSERT_TRUE(send.Rekey().ok());
  ASSERT_TRUE(receive.Rekey().ok());
  Bytes m, plain;
  ASSERT_TRUE(send.EncryptWithAd({}, ToBytes("after rekey"), m).ok());
  // Reference: Python cryptography, k' = first 32 bytes of
  // ChaCha20Poly1305(k).encrypt(00000000 || ffffffffffffffff, 32 zero bytes, "").
  EXPECT_EQ(HexEncode(m), "7390b0588158e774c043cc0c02509b7d934abd0305583c57074dd6");
  EXPECT_EQ(stale.DecryptWithAd({}, m, plain).code(), StatusCode::kDataLoss);
  ASSERT_TRUE(receive.DecryptWithAd({}, m, plain).ok());
  EXPECT_EQ(plain, ToBytes("after rekey"));
  CipherState no_key;
  EXPECT_EQ(no_key.Rekey().code(), StatusCode::kFailedPrecondition);
}

// ------------------------------------------------------------ handshakes

// Static keys for a fresh handshake: a = initiator, b = responder.
struct Parties {
  KeyPair a = GenerateKeyPair();
  KeyPair b = GenerateKeyPair();
  Bytes prologue = ToBytes("ferry-link-v1");

  HandshakeConfig Config(Pattern p, bool initiator) const {
    HandshakeConfig c;
    c.pattern = p;
    c.initiator = initiator;
    c.prologue = prologue;
    const KeyPair& self = initiator ? a : b;
    const KeyPair& peer = initiator ? b : a;
    if (p != Pattern::kNN) c.local_static = Clone(self);
    if (p == Pattern::kKK || (p == Pattern::kIK && initiator)) c.remote_static = peer.public_key;
    return c;
  }
  std::unique_ptr<HandshakeState> Make(Pattern p, bool initiator) const {
    auto hs = HandshakeState::Create(Config(p, initiator));
    EXPECT_TRUE(hs.ok()) << hs.status().ToString();
    return hs.ok() ? std::move(*hs) : nullptr;
  }
};

struct Outcome {
  Status status;         // the first error, or OK when both sides finished
  size_t message = 0;    // the message index it happened at
  bool reading = false;  // in ReadMessage (else WriteMessage)
  HandshakeState* failed_side = nullptr;
};

// Runs a handshake; `tamper` may change each message between the two sides.
Outcome RunHandshake(HandshakeState& init, HandshakeState& resp,
                     const std::function<void(size_t, Bytes&)>& tamper = nullptr,
                     size_t payload_size = 4) {
  size_t k = 0;
  for (; init.IsMyTurn() || resp.IsMyTurn(); ++k) {
    HandshakeState& writer = init.IsMyTurn() ? init : resp;
    HandshakeState& reader = init.IsMyTurn() ? resp : init;
    const Bytes payload = Payload(payload_size, static_cast<uint8_t>(k));
    Bytes message;
    Status st = writer.WriteMessage(payload, message);
    if (!st.ok()) return {st, k, false, &writer};
    if (tamper) tamper(k, message);
    Bytes got;
    st = reader.ReadMessage(message, got);
    if (!st.ok()) return {st, k, true, &reader};
    if (!tamper) {
      EXPECT_EQ(got, payload);
    }
  }
  return {OkStatus(), k, false, nullptr};
}

// Whether message k's payload is encrypted (so its reader detects damage).
bool PayloadIsAuthenticated(Pattern p, size_t k) {
  return !((p == Pattern::kNN || p == Pattern::kXX) && k == 0);
}

constexpr Pattern kPatterns[] = {Pattern::kNN, Pattern::kKK, Pattern::kIK, Pattern::kXX};

void ExpectTransportWorks(HandshakeState& init, HandshakeState& resp) {
  auto i = init.Split();
  auto r = resp.Split();
  ASSERT_TRUE(i.ok() && r.ok());
  EXPECT_EQ(i->handshake_hash, r->handshake_hash);
  for (int round = 0; round < 3; ++round) {
    Bytes m, plain;
    ASSERT_TRUE(i->send.EncryptWithAd({}, ToBytes("to responder"), m).ok());
    ASSERT_TRUE(r->receive.DecryptWithAd({}, m, plain).ok());
    EXPECT_EQ(plain, ToBytes("to responder"));
    m.clear();
    ASSERT_TRUE(r->send.EncryptWithAd({}, ToBytes("to initiator"), m).ok());
    ASSERT_TRUE(i->receive.DecryptWithAd({}, m, plain).ok());
    EXPECT_EQ(plain, ToBytes("to initiator"));
  }
}

TEST(NoiseHandshake, EveryPatternCompletesWithFreshKeys) {
  for (Pattern p : kPatterns) {
    SCOPED_TRACE(ProtocolName(p));
    Parties parties;
    auto init = parties.Make(p, true);
    auto resp = parties.Make(p, false);
    ASSERT_TRUE(init && resp);
    Outcome o = RunHandshake(*init, *resp);
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    EXPECT_EQ(o.message, HandshakeLength(p));
    EXPECT_TRUE(init->IsFinished());
    EXPECT_TRUE(resp->IsFinished());
    EXPECT_EQ(init->handshake_hash(), resp->handshake_hash());
    ExpectTransportWorks(*init, *resp);
  }
}

TEST(NoiseHandshake, XxEachSideLearnsTheOthersStaticKey) {
  Parties parties;
  auto init = parties.Make(Pattern::kXX, true);
  auto resp = parties.Make(Pattern::kXX, false);
  Bytes m1, m2, m3, payload;
  ASSERT_TRUE(init->WriteMessage(ToBytes("hello"), m1).ok());
  EXPECT_EQ(m1.size(), 32u + 5);
  ASSERT_TRUE(resp->ReadMessage(m1, payload).ok());
  EXPECT_EQ(payload, ToBytes("hello"));
  EXPECT_FALSE(resp->remote_static());
  ASSERT_TRUE(resp->WriteMessage(ToBytes("hub"), m2).ok());
  EXPECT_EQ(m2.size(), 32u + 48 + 3 + 16);
  EXPECT_FALSE(init->remote_static());
  ASSERT_TRUE(init->ReadMessage(m2, payload).ok());
  EXPECT_EQ(payload, ToBytes("hub"));
  EXPECT_EQ(init->remote_static(), parties.b.public_key);  // after message 2
  EXPECT_FALSE(init->IsFinished());
  ASSERT_TRUE(init->WriteMessage(ToBytes("agent"), m3).ok());
  EXPECT_EQ(m3.size(), 48u + 5 + 16);
  EXPECT_TRUE(init->IsFinished());
  EXPECT_FALSE(resp->remote_static());
  ASSERT_TRUE(resp->ReadMessage(m3, payload).ok());
  EXPECT_EQ(payload, ToBytes("agent"));
  EXPECT_EQ(resp->remote_static(), parties.a.public_key);  // after message 3
  EXPECT_TRUE(resp->IsFinished());
  ExpectTransportWorks(*init, *resp);
}

TEST(NoiseHandshake, IkWithKnownResponderKeyAuthenticatesBothSides) {
  Parties parties;
  auto init = parties.Make(Pattern::kIK, true);
  auto resp = parties.Make(Pattern::kIK, false);
  EXPECT_EQ(init->remote_static(), parties.b.public_key);  // known in advance
  Bytes m1, payload;
  ASSERT_TRUE(init->WriteMessage(ToBytes("reconnect"), m1).ok());
  EXPECT_EQ(m1.size(), 32u + 48 + 9 + 16);
  ASSERT_TRUE(resp->ReadMessage(m1, payload).ok());
  EXPECT_EQ(resp->remote_static(), parties.a.public_key);  // after message 1
  Bytes m2;
  ASSERT_TRUE(resp->WriteMessage({}, m2).ok());
  EXPECT_EQ(m2.size(), 32u + 16);
  ASSERT_TRUE(init->ReadMessage(m2, payload).ok());
  EXPECT_TRUE(payload.empty());
  ExpectTransportWorks(*init, *resp);
}

TEST(NoiseHandshake, IkWithWrongResponderKeyFailsAtTheResponder) {
  Parties parties;
  HandshakeConfig ic = parties.Config(Pattern::kIK, true);
  ic.remote_static = GenerateKeyPair().public_key;  // not the responder's key
  auto init = HandshakeState::Create(std::move(ic));
  ASSERT_TRUE(init.ok());
  auto resp = parties.Make(Pattern::kIK, false);
  Outcome o = RunHandshake(**init, *resp);
  EXPECT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
  EXPECT_EQ(o.message, 0u);
  EXPECT_TRUE(o.reading);
  EXPECT_EQ(o.failed_side, resp.get());
  EXPECT_FALSE(resp->remote_static());
  EXPECT_FALSE(resp->IsFinished());
}

TEST(NoiseHandshake, KkWithWrongPeerKeyFails) {
  for (bool wrong_on_initiator : {true, false}) {
    SCOPED_TRACE(wrong_on_initiator ? "initiator expects another key" : "responder does");
    Parties parties;
    HandshakeConfig ic = parties.Config(Pattern::kKK, true);
    HandshakeConfig rc = parties.Config(Pattern::kKK, false);
    (wrong_on_initiator ? ic : rc).remote_static = GenerateKeyPair().public_key;
    auto init = HandshakeState::Create(std::move(ic));
    auto resp = HandshakeState::Create(std::move(rc));
    ASSERT_TRUE(init.ok() && resp.ok());
    Outcome o = RunHandshake(**init, **resp);
    EXPECT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
    EXPECT_TRUE(o.reading);
  }
}

TEST(NoiseHandshake, DifferentProloguesFail) {
  for (Pattern p : kPatterns) {
    SCOPED_TRACE(ProtocolName(p));
    Parties parties;
    auto init = parties.Make(p, true);
    HandshakeConfig rc = parties.Config(p, false);
    rc.prologue = ToBytes("ferry-link-v2");
    auto resp = HandshakeState::Create(std::move(rc));
    ASSERT_TRUE(resp.ok());
    Outcome o = RunHandshake(*init, **resp);
    EXPECT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
    EXPECT_EQ(o.message, PayloadIsAuthenticated(p, 0) ? 0u : 1u);
  }
}

// Every bit of every handshake message, flipped in transit, fails the
// handshake with kDataLoss: at that message when its payload is encrypted,
// otherwise (message 1 of NN and XX) at the next one, which authenticates
// the hash of everything before it. The failed side then refuses all calls.
TEST(NoiseHandshake, FlippedBitInAnyMessageIsDataLoss) {
  for (Pattern p : kPatterns) {
    for (size_t k = 0; k < HandshakeLength(p); ++k) {
      for (size_t bit = 0;; ++bit) {
        SCOPED_TRACE(ProtocolName(p) + " message " + std::to_string(k) + " bit " +
                     std::to_string(bit));
        Parties parties;
        auto init = parties.Make(p, true);
        auto resp = parties.Make(p, false);
        bool flipped = false;
        Outcome o = RunHandshake(*init, *resp, [&](size_t index, Bytes& message) {
          if (index != k || bit >= message.size() * 8) return;
          message[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
          flipped = true;
        });
        if (!flipped) break;  // past the message's last bit
        ASSERT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
        if (PayloadIsAuthenticated(p, k)) {
          EXPECT_EQ(o.message, k);
          EXPECT_TRUE(o.reading);
        } else {
          EXPECT_LE(o.message, k + 1);
        }
        Bytes out;
        EXPECT_TRUE(o.failed_side->HasFailed());
        EXPECT_EQ(o.failed_side->WriteMessage({}, out).code(), StatusCode::kFailedPrecondition);
        EXPECT_EQ(o.failed_side->ReadMessage(Bytes(100), out).code(),
                  StatusCode::kFailedPrecondition);
        EXPECT_EQ(o.failed_side->Split().status().code(), StatusCode::kFailedPrecondition);
        EXPECT_FALSE(o.failed_side->remote_static());
      }
    }
  }
}

// Each handshake message cut at every length (0 .. size-1), and with a byte
// appended: an error, never a crash, and never a finished handshake.
TEST(NoiseHandshake, TruncatedOrExtendedMessagesFail) {
  for (Pattern p : kPatterns) {
    for (size_t k = 0; k < HandshakeLength(p); ++k) {
      for (size_t len = 0;; ++len) {
        SCOPED_TRACE(ProtocolName(p) + " message " + std::to_string(k) + " length " +
                     std::to_string(len));
        Parties parties;
        auto init = parties.Make(p, true);
        auto resp = parties.Make(p, false);
        bool changed = false;
        bool extended = false;
        Outcome o = RunHandshake(*init, *resp, [&](size_t index, Bytes& message) {
          if (index != k) return;
          if (len < message.size()) {
            message.resize(len);
          } else {
            message.push_back(0x5a);
            extended = true;
          }
          changed = true;
        });
        ASSERT_TRUE(changed);
        ASSERT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
        if (PayloadIsAuthenticated(p, k)) {
          EXPECT_EQ(o.message, k);
        } else {
          EXPECT_LE(o.message, k + 1);
        }
        if (extended) break;
      }
    }
  }
}

TEST(NoiseHandshake, SmallOrderEphemeralIsDataLoss) {
  // NN: the initiator's DH with a zero ephemeral from the responder fails on reading.
  {
    Parties parties;
    auto init = parties.Make(Pattern::kNN, true);
    auto resp = parties.Make(Pattern::kNN, false);
    Outcome o = RunHandshake(*init, *resp, [](size_t index, Bytes& message) {
      if (index == 1) std::fill_n(message.begin(), 32, 0);
    });
    EXPECT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
    EXPECT_EQ(o.message, 1u);
    EXPECT_TRUE(o.reading);
  }
  // XX: message 1 carries the key unauthenticated; the responder's own
  // message 2 (ee) is where the DH fails.
  {
    Parties parties;
    auto init = parties.Make(Pattern::kXX, true);
    auto resp = parties.Make(Pattern::kXX, false);
    Outcome o = RunHandshake(*init, *resp, [](size_t index, Bytes& message) {
      if (index == 0) std::fill_n(message.begin(), 32, 0);
    });
    EXPECT_EQ(o.status.code(), StatusCode::kDataLoss) << o.status.ToString();
    EXPECT_EQ(o.message, 1u);
    EXPECT_FALSE(o.reading);
    EXPECT_EQ(o.failed_side, resp.get());
    EXPECT_TRUE(resp->HasFailed());
  }
}

TEST(NoiseHandshake, CallsOutOfTurnAreFailedPrecondition) {
  Parties parties;
  auto init = parties.Make(Pattern::kXX, true);
  auto resp = parties.Make(Pattern::kXX, false);
  Bytes out, payload;
  // Writing out of turn changes nothing.
  EXPECT_EQ(resp->WriteMessage({}, out).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(resp->HasFailed());
  EXPECT_EQ(init->Split().status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(RunHandshake(*init, *resp).status.ok());
  EXPECT_EQ(init->WriteMessage({}, out).code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(init->IsMyTurn());
  ASSERT_TRUE(init->Split().ok());
  EXPECT_EQ(init->Split().status().code(), StatusCode::kFailedPrecondition);
  // Reading when it is not the peer's turn ends the handshake.
  auto init2 = parties.Make(Pattern::kXX, true);
  EXPECT_EQ(init2->ReadMessage(Bytes(32), payload).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(init2->HasFailed());
  EXPECT_EQ(init2->WriteMessage({}, out).code(), StatusCode::kFailedPrecondition);
}

TEST(NoiseHandshake, MessageSizeLimit) {
  Parties parties;
  auto init = parties.Make(Pattern::kXX, true);
  auto resp = parties.Make(Pattern::kXX, false);
  // XX message 1 is 32 + payload bytes: 65503 is the largest payload.
  Bytes out = {7};
  Status st = init->WriteMessage(Bytes(kMaxMessageSize - 32 + 1), out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_EQ(out, Bytes{7});
  EXPECT_FALSE(init->HasFailed());  // refused before anything changed
  out.clear();
  ASSERT_TRUE(init->WriteMessage(Bytes(kMaxMessageSize - 32), out).ok());
  EXPECT_EQ(out.size(), kMaxMessageSize);
  Bytes payload;
  ASSERT_TRUE(resp->ReadMessage(out, payload).ok());
  EXPECT_EQ(payload.size(), kMaxMessageSize - 32);
  // Message 2 carries 32 + 48 + 16 bytes of overhead.
  out.clear();
  EXPECT_EQ(resp->WriteMessage(Bytes(kMaxMessageSize - 96 + 1), out).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(resp->WriteMessage(Bytes(kMaxMessageSize - 96), out).ok());
  EXPECT_EQ(out.size(), kMaxMessageSize);
  // A reader refuses anything larger before looking at it.
  Bytes oversized = out;
  oversized.push_back(0);
  Status read = init->ReadMessage(oversized, payload);
  EXPECT_EQ(read.code(), StatusCode::kInvalidArgument) << read.ToString();
  EXPECT_TRUE(init->HasFailed());
}

// Connected transport ciphers from a fresh XX handshake.
struct Transport {
  HandshakeState::TransportCiphers init, resp;
};
Transport MakeTransport() {
  Parties parties;
  auto init = parties.Make(Pattern::kXX, true);
  auto resp = parties.Make(Pattern::kXX, false);
  EXPECT_TRUE(RunHandshake(*init, *resp).status.ok());
  auto i = init->Split();
  auto r = resp->Split();
  EXPECT_TRUE(i.ok() && r.ok());
  return Transport{std::move(*i), std::move(*r)};
}

TEST(NoiseTransport, ReplayedOrReorderedMessageIsDataLossAndNonceStays) {
  Transport t = MakeTransport();
  Bytes m0, m1, m2, plain;
  ASSERT_TRUE(t.init.send.EncryptWithAd({}, ToBytes("m0"), m0).ok());
  ASSERT_TRUE(t.init.send.EncryptWithAd({}, ToBytes("m1"), m1).ok());
  ASSERT_TRUE(t.init.send.EncryptWithAd({}, ToBytes("m2"), m2).ok());
  CipherState& rx = t.resp.receive;
  ASSERT_TRUE(rx.DecryptWithAd({}, m0, plain).ok());
  EXPECT_EQ(rx.nonce(), 1u);

  EXPECT_EQ(rx.DecryptWithAd({}, m0, plain).code(), StatusCode::kDataLoss);  // replay
  EXPECT_TRUE(plain.empty());
  EXPECT_EQ(rx.nonce(), 1u);
  EXPECT_EQ(rx.DecryptWithAd({}, m2, plain).code(), StatusCode::kDataLoss);  // reordered
  EXPECT_EQ(rx.nonce(), 1u);
  // A message sent the other way, or reflected back to its sender, does not open either.
  EXPECT_EQ(t.init.receive.DecryptWithAd({}, m0, plain).code(), StatusCode::kDataLoss);
  EXPECT_EQ(t.init.receive.nonce(), 0u);

  ASSERT_TRUE(rx.DecryptWithAd({}, m1, plain).ok());
  EXPECT_EQ(plain, ToBytes("m1"));
  ASSERT_TRUE(rx.DecryptWithAd({}, m2, plain).ok());
  EXPECT_EQ(plain, ToBytes("m2"));
  EXPECT_EQ(rx.nonce(), 3u);
}

TEST(NoiseTransport, LargestPayloadRoundTripsAndOneMoreIsRefused) {
  Transport t = MakeTransport();
  ASSERT_EQ(kMaxPayloadSize, 65519u);
  const Bytes largest = Payload(65519, 9);
  Bytes m, plain;
  ASSERT_TRUE(t.resp.send.EncryptWithAd({}, largest, m).ok());
  EXPECT_EQ(m.size(), kMaxMessageSize);
  ASSERT_TRUE(t.init.receive.DecryptWithAd({}, m, plain).ok());
  EXPECT_EQ(plain, largest);

  Bytes refused;
  Status st = t.resp.send.EncryptWithAd({}, Payload(65520, 9), refused);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_TRUE(refused.empty());
  EXPECT_EQ(t.resp.send.nonce(), 1u);

  m.push_back(0);  // 65536 bytes
  st = t.init.receive.DecryptWithAd({}, m, plain);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_EQ(t.init.receive.nonce(), 1u);
}

// ------------------------------------------------------------ configuration

TEST(NoiseHandshakeConfig, MissingOrUnusedKeysAreInvalidArgument) {
  Parties parties;
  struct Case {
    const char* name;
    Pattern pattern;
    bool initiator;
    std::function<void(HandshakeConfig&)> edit;
  };
  const Case cases[] = {
      {"XX initiator without static", Pattern::kXX, true,
       [](HandshakeConfig& c) { c.local_static.reset(); }},
      {"XX responder without static", Pattern::kXX, false,
       [](HandshakeConfig& c) { c.local_static.reset(); }},
      {"XX with a remote key (would look pinned but is not)", Pattern::kXX, true,
       [&](HandshakeConfig& c) { c.remote_static = parties.b.public_key; }},
      {"IK initiator without the responder's key", Pattern::kIK, true,
       [](HandshakeConfig& c) { c.remote_static.reset(); }},
      {"IK initiator without static", Pattern::kIK, true,
       [](HandshakeConfig& c) { c.local_static.reset(); }},
      {"IK responder without static", Pattern::kIK, false,
       [](HandshakeConfig& c) { c.local_static.reset(); }},
      {"IK responder with a remote key", Pattern::kIK, false,
       [&](HandshakeConfig& c) { c.remote_static = parties.a.public_key; }},
      {"KK responder without the initiator's key", Pattern::kKK, false,
       [](HandshakeConfig& c) { c.remote_static.reset(); }},
      {"KK initiator without static", Pattern::kKK, true,
       [](HandshakeConfig& c) { c.local_static.reset(); }},
      {"NN with a static key", Pattern::kNN, true,
       [&](HandshakeConfig& c) { c.local_static = Clone(parties.a); }},
      {"private key of the wrong size", Pattern::kXX, true,
       [](HandshakeConfig& c) { c.local_static->private_key = SecretBytes(31); }},
      {"public key that does not match", Pattern::kXX, true,
       [&](HandshakeConfig& c) { c.local_static->public_key = parties.b.public_key; }},
      {"ephemeral that does not match", Pattern::kXX, true,
       [&](HandshakeConfig& c) {
         c.local_ephemeral_for_test = Clone(parties.a);
         c.local_ephemeral_for_test->public_key[0] ^= 1;
       }},
      {"small-order remote key", Pattern::kIK, true,
       [](HandshakeConfig& c) { c.remote_static = sodium::PublicKey{}; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HandshakeConfig config = parties.Config(c.pattern, c.initiator);
    ASSERT_TRUE(HandshakeState::Create(parties.Config(c.pattern, c.initiator)).ok());
    c.edit(config);
    auto hs = HandshakeState::Create(std::move(config));
    EXPECT_EQ(hs.status().code(), StatusCode::kInvalidArgument) << hs.status().ToString();
  }
}

TEST(NoiseKeyPair, FromPrivateDerivesThePublicKey) {
  KeyPair fresh = GenerateKeyPair();
  auto again = KeyPairFromPrivate(fresh.private_key.view());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key, fresh.public_key);
  EXPECT_EQ(KeyPairFromPrivate(Bytes(31)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(GenerateKeyPair().public_key, fresh.public_key);
  EXPECT_EQ(ProtocolName(Pattern::kXX), "Noise_XX_25519_ChaChaPoly_BLAKE2b");
  EXPECT_EQ(ProtocolName(Pattern::kIK), "Noise_IK_25519_ChaChaPoly_BLAKE2b");
  EXPECT_EQ(ProtocolName(Pattern::kKK), "Noise_KK_25519_ChaChaPoly_BLAKE2b");
  EXPECT_EQ(ProtocolName(Pattern::kNN), "Noise_NN_25519_ChaChaPoly_BLAKE2b");
}

}  // namespace
}  // namespace ferry::mirror::noise
