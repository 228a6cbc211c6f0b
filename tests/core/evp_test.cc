#include "core/evp.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "tests/testing/test_util.h"

namespace ferry::evp {
namespace {

Bytes Hex(std::string_view hex) {
  Result<Bytes> r = HexDecode(hex);
  EXPECT_TRUE(r.ok()) << "bad hex in test: " << hex;
  return r.ok() ? *r : Bytes{};
}

std::string HexOf(const Digest256& d) { return HexEncode(d); }

std::string SuiteName(AeadSuite suite) {
  return suite == AeadSuite::kAes256Gcm ? "AES-256-GCM" : "ChaCha20-Poly1305";
}

constexpr AeadSuite kSuites[] = {AeadSuite::kAes256Gcm, AeadSuite::kChaCha20Poly1305};

// ---------------------------------------------------------------- HMAC-SHA-256

// RFC 4231 section 4, test cases 1-4, 6 and 7 (case 5 is a truncated output).
// Cross-checked with Python's hmac module.
TEST(HmacSha256Test, MatchesRfc4231Vectors) {
  struct Case {
    int number;
    Bytes key;
    Bytes data;
    std::string_view mac;
  };
  Bytes key4;
  for (uint8_t i = 1; i <= 25; ++i) key4.push_back(i);
  const Case cases[] = {
      {1, Bytes(20, 0x0b), ToBytes("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {2, ToBytes("Jefe"), ToBytes("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {3, Bytes(20, 0xaa), Bytes(50, 0xdd),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {4, key4, Bytes(50, 0xcd),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {6, Bytes(131, 0xaa), ToBytes("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {7, Bytes(131, 0xaa),
       ToBytes("This is a test using a larger than block-size key and a larger than block-size "
               "data. The key needs to be hashed before being used by the HMAC algorithm."),
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("RFC 4231 test case " + std::to_string(c.number));
    HmacSha256 mac(c.key);
    EXPECT_EQ(HexOf(mac.Compute(c.data)), c.mac);
  }
}

// Not an RFC vector: computed with Python's hmac.new(b"", b"abc", sha256).
TEST(HmacSha256Test, EmptyKeyIsAValidKey) {
  HmacSha256 mac(ByteView{});
  EXPECT_EQ(HexOf(mac.Compute(AsBytes("abc"))),
            "fd7adb152c05ef80dccf50a1fa4c05d5a3ec6da95575fc312ae7c5d091836351");
}

TEST(HmacSha256Test, KeyIsCopiedAtConstruction) {
  Bytes key = ToBytes("Jefe");
  HmacSha256 mac(key);
  key.assign(key.size(), 0);
  EXPECT_EQ(HexOf(mac.Compute(AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256Test, ConstComputeIsSafeFromSeveralThreads) {
  const HmacSha256 mac(Bytes(32, 0x42));
  const Bytes data = testing::SeededBytes(7, 4096);
  const Digest256 expected = mac.Compute(data);
  std::vector<Digest256> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) results[t] = mac.Compute(data);
    });
  }
  for (auto& th : threads) th.join();
  for (const Digest256& r : results) EXPECT_EQ(r, expected);
}

// --------------------------------------------------------------------- SHA-256

// FIPS 180-2 appendix B examples (also hashlib.sha256).
TEST(Sha256Test, MatchesFipsVectors) {
  EXPECT_EQ(HexOf(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexOf(Sha256(ByteView{})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexOf(Sha256(AsBytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(HexOf(Sha256(Bytes(1'000'000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  const Bytes data = testing::SeededBytes(1, 10'000);
  const Digest256 one_shot = Sha256(data);
  for (size_t piece : {size_t{1}, size_t{7}, size_t{63}, size_t{64}, size_t{65}, size_t{4096}}) {
    SCOPED_TRACE("piece=" + std::to_string(piece));
    Sha256Hasher h;
    for (size_t off = 0; off < data.size(); off += piece) {
      h.Update(ByteView(data).subspan(off, std::min(piece, data.size() - off)));
    }
    EXPECT_EQ(h.Finish(), one_shot);
  }
}

TEST(Sha256Test, EmptyUpdatesDoNotChangeTheDigest) {
  Sha256Hasher h;
  h.Update(ByteView{});
  h.Update(AsBytes("abc"));
  h.Update(ByteView{});
  EXPECT_EQ(h.Finish(), Sha256(AsBytes("abc")));
}

// ------------------------------------------------------------------------ AEAD

TEST(AeadTest, SuiteIdsAreKnownOrUnknown) {
  EXPECT_FALSE(IsKnownSuite(0));
  EXPECT_TRUE(IsKnownSuite(1));
  EXPECT_TRUE(IsKnownSuite(2));
  EXPECT_FALSE(IsKnownSuite(3));
  EXPECT_FALSE(IsKnownSuite(255));
  EXPECT_EQ(DefaultSuite(),
            CpuHasAesInstructions() ? AeadSuite::kAes256Gcm : AeadSuite::kChaCha20Poly1305);
}

// "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, test case
// 16 (256-bit key, 60-byte plaintext, 20-byte AAD, 96-bit IV). Cross-checked
// with Python's cryptography AESGCM.
TEST(AeadTest, Aes256GcmMatchesGcmSpecTestCase16) {
  const Bytes key = Hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const Bytes iv = Hex("cafebabefacedbaddecaf888");
  const Bytes aad = Hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const Bytes plaintext =
      Hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  const std::string ciphertext =
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
  const std::string tag = "76fc6ece0f4e1768cddf8853bb2d551b";

  Bytes sealed;
  ASSERT_TRUE(AeadSeal(AeadSuite::kAes256Gcm, key, iv, aad, plaintext, sealed).ok());
  EXPECT_EQ(HexEncode(sealed), ciphertext + tag);

  Bytes opened;
  Status s = AeadOpen(AeadSuite::kAes256Gcm, key, iv, aad, Hex(ciphertext + tag), opened);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(opened, plaintext);
}

// RFC 8439 section 2.8.2 (AEAD_CHACHA20_POLY1305 example). Cross-checked with
// Python's cryptography ChaCha20Poly1305.
TEST(AeadTest, ChaCha20Poly1305MatchesRfc8439Section282) {
  Bytes key;
  for (int i = 0x80; i <= 0x9f; ++i) key.push_back(static_cast<uint8_t>(i));
  const Bytes nonce = Hex("070000004041424344454647");
  const Bytes aad = Hex("50515253c0c1c2c3c4c5c6c7");
  const Bytes plaintext = ToBytes(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      "future, sunscreen would be it.");
  ASSERT_EQ(plaintext.size(), 114u);
  const std::string ciphertext =
      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
      "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
      "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
      "3ff4def08e4b7a9de576d26586cec64b6116";
  const std::string tag = "1ae10b594f09e26a7e902ecbd0600691";

  Bytes sealed;
  ASSERT_TRUE(AeadSeal(AeadSuite::kChaCha20Poly1305, key, nonce, aad, plaintext, sealed).ok());
  EXPECT_EQ(HexEncode(sealed), ciphertext + tag);

  Bytes opened;
  Status s = AeadOpen(AeadSuite::kChaCha20Poly1305, key, nonce, aad, Hex(ciphertext + tag), opened);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(opened, plaintext);
}

TEST(AeadTest, SealThenOpenRoundTripsEverySize) {
  const Bytes key = testing::SeededBytes(11, kAeadKeySize);
  const Bytes nonce = testing::SeededBytes(12, kAeadNonceSize);
  for (AeadSuite suite : kSuites) {
    for (size_t size : {0, 1, 15, 16, 17, 63, 64, 65, 1000, 65536}) {
      for (size_t aad_size : {0, 1, 13}) {
        SCOPED_TRACE(SuiteName(suite) + " size=" + std::to_string(size) +
                     " aad=" + std::to_string(aad_size));
        const Bytes plaintext = testing::SeededBytes(size, size);
        const Bytes aad = testing::SeededBytes(100 + aad_size, aad_size);
        Bytes sealed;
        ASSERT_TRUE(AeadSeal(suite, key, nonce, aad, plaintext, sealed).ok());
        ASSERT_EQ(sealed.size(), size + kAeadTagSize);
        if (size >= 16) {
          EXPECT_NE(Bytes(sealed.begin(), sealed.begin() + 16),
                    Bytes(plaintext.begin(), plaintext.begin() + 16));
        }
        Bytes opened = {0xde, 0xad};  // replaced, not appended to
        Status s = AeadOpen(suite, key, nonce, aad, sealed, opened);
        ASSERT_TRUE(s.ok()) << s.ToString();
        EXPECT_EQ(opened, plaintext);
      }
    }
  }
}

TEST(AeadTest, SealAppendsToExistingOutput) {
  const Bytes key(kAeadKeySize, 1);
  const Bytes nonce(kAeadNonceSize, 2);
  const Bytes plaintext = ToBytes("chunk payload");
  for (AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    Bytes alone;
    ASSERT_TRUE(AeadSeal(suite, key, nonce, {}, plaintext, alone).ok());
    Bytes framed = {0xf0, 0x0d};
    ASSERT_TRUE(AeadSeal(suite, key, nonce, {}, plaintext, framed).ok());
    ASSERT_EQ(framed.size(), 2 + alone.size());
    EXPECT_EQ(framed[0], 0xf0);
    EXPECT_EQ(framed[1], 0x0d);
    EXPECT_EQ(Bytes(framed.begin() + 2, framed.end()), alone);
  }
}

TEST(AeadTest, SuitesProduceDifferentCiphertexts) {
  const Bytes key(kAeadKeySize, 3);
  const Bytes nonce(kAeadNonceSize, 4);
  const Bytes plaintext = testing::SeededBytes(5, 64);
  Bytes gcm, chacha;
  ASSERT_TRUE(AeadSeal(AeadSuite::kAes256Gcm, key, nonce, {}, plaintext, gcm).ok());
  ASSERT_TRUE(AeadSeal(AeadSuite::kChaCha20Poly1305, key, nonce, {}, plaintext, chacha).ok());
  EXPECT_NE(gcm, chacha);
  // A chunk sealed with one suite does not open under the other.
  Bytes out;
  EXPECT_EQ(AeadOpen(AeadSuite::kChaCha20Poly1305, key, nonce, {}, gcm, out).code(),
            StatusCode::kDataLoss);
}

// Flipping any single bit of the ciphertext, the tag, the nonce or the AAD is
// detected, and the caller's output buffer is cleared.
TEST(AeadTest, AnyFlippedBitFailsWithDataLossAndClearsOutput) {
  const Bytes key = testing::SeededBytes(21, kAeadKeySize);
  const Bytes nonce = testing::SeededBytes(22, kAeadNonceSize);
  const Bytes aad = testing::SeededBytes(23, 9);
  const Bytes plaintext = testing::SeededBytes(24, 20);
  auto expect_rejected = [](Status s, const Bytes& out) {
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_TRUE(out.empty());
  };
  for (AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    Bytes sealed;
    ASSERT_TRUE(AeadSeal(suite, key, nonce, aad, plaintext, sealed).ok());
    for (size_t bit = 0; bit < sealed.size() * 8; ++bit) {
      SCOPED_TRACE("ciphertext||tag bit " + std::to_string(bit));
      Bytes damaged = sealed;
      damaged[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      Bytes out = {1, 2, 3};
      expect_rejected(AeadOpen(suite, key, nonce, aad, damaged, out), out);
    }
    for (size_t bit = 0; bit < nonce.size() * 8; ++bit) {
      SCOPED_TRACE("nonce bit " + std::to_string(bit));
      Bytes damaged = nonce;
      damaged[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      Bytes out = {1, 2, 3};
      expect_rejected(AeadOpen(suite, key, damaged, aad, sealed, out), out);
    }
    for (size_t bit = 0; bit < aad.size() * 8; ++bit) {
      SCOPED_TRACE("aad bit " + std::to_string(bit));
      Bytes damaged = aad;
      damaged[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      Bytes out = {1, 2, 3};
      expect_rejected(AeadOpen(suite, key, nonce, damaged, sealed, out), out);
    }
    {
      SCOPED_TRACE("AAD dropped");
      Bytes out = {1, 2, 3};
      expect_rejected(AeadOpen(suite, key, nonce, {}, sealed, out), out);
    }
    {
      SCOPED_TRACE("wrong key");
      Bytes other_key = key;
      other_key[31] ^= 0x80;
      Bytes out = {1, 2, 3};
      expect_rejected(AeadOpen(suite, other_key, nonce, aad, sealed, out), out);
    }
  }
}

TEST(AeadTest, TruncatedInputFailsWithDataLoss) {
  const Bytes key(kAeadKeySize, 5);
  const Bytes nonce(kAeadNonceSize, 6);
  for (AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    Bytes sealed;
    ASSERT_TRUE(AeadSeal(suite, key, nonce, {}, ToBytes("twenty bytes of text"), sealed).ok());
    for (size_t len : {size_t{0}, size_t{1}, kAeadTagSize - 1, kAeadTagSize, sealed.size() - 1}) {
      SCOPED_TRACE("length " + std::to_string(len));
      Bytes out = {1};
      Status s = AeadOpen(suite, key, nonce, {}, ByteView(sealed).first(len), out);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
      EXPECT_TRUE(out.empty() || len < kAeadTagSize);
    }
  }
}

TEST(AeadTest, WrongKeyOrNonceSizeIsInvalidArgument) {
  const Bytes plaintext = ToBytes("x");
  for (AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    for (size_t key_size : {0, 16, 31, 33, 64}) {
      SCOPED_TRACE("key size " + std::to_string(key_size));
      Bytes out = {7};
      EXPECT_EQ(
          AeadSeal(suite, Bytes(key_size, 1), Bytes(kAeadNonceSize, 2), {}, plaintext, out).code(),
          StatusCode::kInvalidArgument);
      EXPECT_EQ(out, Bytes{7});  // untouched
      EXPECT_EQ(AeadOpen(suite, Bytes(key_size, 1), Bytes(kAeadNonceSize, 2), {},
                         Bytes(kAeadTagSize + 1, 0), out)
                    .code(),
                StatusCode::kInvalidArgument);
    }
    for (size_t nonce_size : {0, 8, 11, 13, 16, 24}) {
      SCOPED_TRACE("nonce size " + std::to_string(nonce_size));
      Bytes out;
      EXPECT_EQ(
          AeadSeal(suite, Bytes(kAeadKeySize, 1), Bytes(nonce_size, 2), {}, plaintext, out).code(),
          StatusCode::kInvalidArgument);
      EXPECT_TRUE(out.empty());
      EXPECT_EQ(AeadOpen(suite, Bytes(kAeadKeySize, 1), Bytes(nonce_size, 2), {},
                         Bytes(kAeadTagSize + 1, 0), out)
                    .code(),
                StatusCode::kInvalidArgument);
    }
  }
}

TEST(AeadTest, UnknownSuiteIsInvalidArgument) {
  for (uint8_t id : {0, 3, 255}) {
    SCOPED_TRACE("suite " + std::to_string(id));
    const auto suite = static_cast<AeadSuite>(id);
    Bytes out;
    EXPECT_EQ(
        AeadSeal(suite, Bytes(kAeadKeySize, 1), Bytes(kAeadNonceSize, 2), {}, Bytes{1}, out).code(),
        StatusCode::kInvalidArgument);
    EXPECT_EQ(AeadOpen(suite, Bytes(kAeadKeySize, 1), Bytes(kAeadNonceSize, 2), {},
                       Bytes(kAeadTagSize + 1, 0), out)
                  .code(),
              StatusCode::kInvalidArgument);
  }
}

// The per-thread cipher context is reset between messages: interleaving the
// suites and directions on one thread gives the same bytes as fresh calls.
TEST(AeadTest, InterleavedSuitesOnOneThreadDoNotInterfere) {
  const Bytes key = testing::SeededBytes(31, kAeadKeySize);
  const Bytes nonce = testing::SeededBytes(32, kAeadNonceSize);
  const Bytes plaintext = testing::SeededBytes(33, 100);
  Bytes gcm1, chacha1, gcm2, out;
  ASSERT_TRUE(AeadSeal(AeadSuite::kAes256Gcm, key, nonce, {}, plaintext, gcm1).ok());
  ASSERT_TRUE(AeadSeal(AeadSuite::kChaCha20Poly1305, key, nonce, {}, plaintext, chacha1).ok());
  // A failed open in between must not poison the next operation.
  Bytes bad = gcm1;
  bad[0] ^= 1;
  EXPECT_FALSE(AeadOpen(AeadSuite::kAes256Gcm, key, nonce, {}, bad, out).ok());
  ASSERT_TRUE(AeadOpen(AeadSuite::kChaCha20Poly1305, key, nonce, {}, chacha1, out).ok());
  EXPECT_EQ(out, plaintext);
  ASSERT_TRUE(AeadSeal(AeadSuite::kAes256Gcm, key, nonce, {}, plaintext, gcm2).ok());
  EXPECT_EQ(gcm1, gcm2);
}

}  // namespace
}  // namespace ferry::evp
