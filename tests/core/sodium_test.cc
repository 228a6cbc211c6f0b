#include "core/sodium.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "core/bytes.h"
#include "tests/testing/test_util.h"

namespace ferry::sodium {
namespace {

Bytes Hex(std::string_view hex) {
  Result<Bytes> r = HexDecode(hex);
  EXPECT_TRUE(r.ok()) << "bad hex in test: " << hex;
  return r.ok() ? *r : Bytes{};
}

Bytes Contents(const SecretBytes& s) { return Bytes(s.view().begin(), s.view().end()); }

// Small Argon2id parameters so the tests stay fast (8 MiB, 2 passes).
constexpr Argon2Params kFastArgon2{2, 8ull << 20};

// ------------------------------------------------------------------ randomness

TEST(RandomTest, FillsTheBufferWithFreshBytes) {
  auto a = RandomArray<32>();
  auto b = RandomArray<32>();
  EXPECT_NE(a, b);  // 2^-256 chance of a false failure
  SecretBytes s = RandomSecret(48);
  EXPECT_EQ(s.size(), 48u);
  EXPECT_NE(Contents(s), Bytes(48, 0));
}

// -------------------------------------------------------------------- BLAKE2b

// Reference digests from Python's hashlib.blake2b(data, digest_size=32).
TEST(Base64Test, MatchesRfc4648Vectors) {
  // RFC 4648 section 10.
  EXPECT_EQ(Base64Encode(AsBytes("")), "");
  EXPECT_EQ(Base64Encode(AsBytes("f")), "Zg==");
  EXPECT_EQ(Base64Encode(AsBytes("fo")), "Zm8=");
  EXPECT_EQ(Base64Encode(AsBytes("foo")), "Zm9v");
  EXPECT_EQ(Base64Encode(AsBytes("foobar")), "Zm9vYmFy");
  const uint8_t binary[] = {0x00, 0xff, 0x10};
  EXPECT_EQ(Base64Encode(ByteView(binary, 3)), "AP8Q");
}

TEST(Blake2bTest, MatchesReferenceDigests) {
  EXPECT_EQ(HexEncode(Blake2b256(ByteView{})),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  EXPECT_EQ(HexEncode(Blake2b256(AsBytes("abc"))),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

// hashlib.blake2b(b"abc", digest_size=32, key=bytes(range(32))).
TEST(Blake2bTest, KeyedHashMatchesReferenceAndDiffersFromUnkeyed) {
  Bytes key;
  for (int i = 0; i < 32; ++i) key.push_back(static_cast<uint8_t>(i));
  const Hash256 keyed = Blake2b256(AsBytes("abc"), key);
  EXPECT_EQ(HexEncode(keyed), "d63a32d3e44738d7907f964316c241adaba0abfeabc32349677578a15a203f7f");
  EXPECT_NE(keyed, Blake2b256(AsBytes("abc")));
  key[0] ^= 1;
  EXPECT_NE(Blake2b256(AsBytes("abc"), key), keyed);
}

TEST(Blake2bTest, IncrementalEqualsOneShot) {
  const Bytes data = testing::SeededBytes(3, 5000);
  const Hash256 one_shot = Blake2b256(data);
  for (size_t piece : {size_t{1}, size_t{127}, size_t{128}, size_t{129}, size_t{5000}}) {
    SCOPED_TRACE("piece=" + std::to_string(piece));
    Blake2bHasher h;
    for (size_t off = 0; off < data.size(); off += piece) {
      h.Update(ByteView(data).subspan(off, std::min(piece, data.size() - off)));
    }
    EXPECT_EQ(h.Finish(), one_shot);
  }
  Blake2bHasher empty;
  EXPECT_EQ(empty.Finish(), Blake2b256(ByteView{}));
}

// The header allows keys of 0 or 16..64 bytes. libsodium rejects a longer key
// without writing the output, which must not turn into a "hash" made of
// uninitialised stack bytes: it is a caller bug and stops the process.
TEST(Blake2bDeathTest, KeyLongerThan64BytesAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(Blake2b256(AsBytes("abc"), Bytes(65, 1)), "fatal: BLAKE2b key");
}

// ---------------------------------------------------------------- sealed boxes

TEST(SealedBoxTest, RoundTrips) {
  BoxKeyPair kp = GenerateBoxKeyPair();
  ASSERT_EQ(kp.secret_key.size(), kX25519KeySize);
  for (size_t size : {0, 1, 32, 1000}) {
    SCOPED_TRACE("size=" + std::to_string(size));
    const Bytes plaintext = testing::SeededBytes(size, size);
    Bytes sealed = SealToPublicKey(kp.public_key, plaintext);
    EXPECT_EQ(sealed.size(), size + kSealedBoxOverhead);
    Result<SecretBytes> opened = OpenSealed(kp.public_key, kp.secret_key, sealed);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(Contents(*opened), plaintext);
  }
}

TEST(SealedBoxTest, SealingTwiceGivesDifferentBoxes) {
  BoxKeyPair kp = GenerateBoxKeyPair();
  const Bytes plaintext = ToBytes("data key");
  EXPECT_NE(SealToPublicKey(kp.public_key, plaintext), SealToPublicKey(kp.public_key, plaintext));
}

TEST(SealedBoxTest, WrongSecretKeyDoesNotOpenSealedBox) {
  BoxKeyPair kp = GenerateBoxKeyPair();
  BoxKeyPair other = GenerateBoxKeyPair();
  Bytes sealed = SealToPublicKey(kp.public_key, ToBytes("data key"));
  Result<SecretBytes> r = OpenSealed(kp.public_key, other.secret_key, sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  r = OpenSealed(other.public_key, other.secret_key, sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

TEST(SealedBoxTest, TruncatedOrDamagedBoxIsDataLoss) {
  BoxKeyPair kp = GenerateBoxKeyPair();
  Bytes sealed = SealToPublicKey(kp.public_key, ToBytes("data key"));
  for (size_t len :
       {size_t{0}, size_t{1}, kSealedBoxOverhead - 1, kSealedBoxOverhead, sealed.size() - 1}) {
    SCOPED_TRACE("length " + std::to_string(len));
    Result<SecretBytes> r = OpenSealed(kp.public_key, kp.secret_key, ByteView(sealed).first(len));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  }
  for (size_t i = 0; i < sealed.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i));
    Bytes damaged = sealed;
    damaged[i] ^= 0x01;
    Result<SecretBytes> r = OpenSealed(kp.public_key, kp.secret_key, damaged);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  }
}

TEST(SealedBoxTest, WrongSizeSecretKeyIsInvalidArgument) {
  BoxKeyPair kp = GenerateBoxKeyPair();
  Bytes sealed = SealToPublicKey(kp.public_key, ToBytes("data key"));
  for (size_t size : {0, 31, 33, 64}) {
    SCOPED_TRACE("size " + std::to_string(size));
    Result<SecretBytes> r = OpenSealed(kp.public_key, SecretBytes(size), sealed);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

// -------------------------------------------------------------------- Ed25519

// RFC 8032 section 7.1, TEST 1 and TEST 2. Cross-checked with Python's
// cryptography Ed25519PrivateKey.
TEST(Ed25519Test, MatchesRfc8032Vectors) {
  struct Case {
    std::string_view name, seed, public_key, message, signature;
  };
  const Case cases[] = {
      {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
       "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
       "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
       "f9b46bd25bf5f0595bbe24655141438e7a100b"},
      {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
       "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
       "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
       "f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<SigningKeyPair> kp = SigningKeyPairFromSeed(Hex(c.seed));
    ASSERT_TRUE(kp.ok()) << kp.status().ToString();
    EXPECT_EQ(HexEncode(kp->public_key), c.public_key);
    EXPECT_EQ(HexEncode(SigningSeed(*kp).view()), c.seed);
    const Bytes message = Hex(c.message);
    const Signature sig = Sign(*kp, message);
    EXPECT_EQ(HexEncode(sig), c.signature);
    EXPECT_TRUE(VerifySignature(kp->public_key, message, sig));
  }
}

TEST(Ed25519Test, SigningKeyPairFromSeedIsDeterministic) {
  const Bytes seed = testing::SeededBytes(42, kEd25519SeedSize);
  Result<SigningKeyPair> a = SigningKeyPairFromSeed(seed);
  Result<SigningKeyPair> b = SigningKeyPairFromSeed(seed);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->public_key, b->public_key);
  EXPECT_EQ(Contents(a->secret_key), Contents(b->secret_key));
  EXPECT_EQ(Contents(SigningSeed(*a)), seed);
  // Ed25519 signatures are deterministic too.
  EXPECT_EQ(Sign(*a, AsBytes("manifest")), Sign(*b, AsBytes("manifest")));
}

TEST(Ed25519Test, GeneratedKeyPairRoundTripsThroughItsSeed) {
  SigningKeyPair kp = GenerateSigningKeyPair();
  ASSERT_EQ(kp.secret_key.size(), 64u);
  SecretBytes seed = SigningSeed(kp);
  ASSERT_EQ(seed.size(), kEd25519SeedSize);
  Result<SigningKeyPair> again = SigningKeyPairFromSeed(seed.view());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key, kp.public_key);
  EXPECT_EQ(Contents(again->secret_key), Contents(kp.secret_key));
}

TEST(Ed25519Test, TamperedMessageOrSignatureDoesNotVerify) {
  SigningKeyPair kp = GenerateSigningKeyPair();
  const Bytes message = ToBytes("snapshot manifest v1");
  const Signature sig = Sign(kp, message);
  ASSERT_TRUE(VerifySignature(kp.public_key, message, sig));
  for (size_t i = 0; i < message.size(); ++i) {
    SCOPED_TRACE("message byte " + std::to_string(i));
    Bytes damaged = message;
    damaged[i] ^= 0x20;
    EXPECT_FALSE(VerifySignature(kp.public_key, damaged, sig));
  }
  EXPECT_FALSE(VerifySignature(kp.public_key, ByteView(message).first(message.size() - 1), sig));
  for (size_t i = 0; i < sig.size(); ++i) {
    SCOPED_TRACE("signature byte " + std::to_string(i));
    Signature damaged = sig;
    damaged[i] ^= 0x01;
    EXPECT_FALSE(VerifySignature(kp.public_key, message, damaged));
  }
  SigningKeyPair other = GenerateSigningKeyPair();
  EXPECT_FALSE(VerifySignature(other.public_key, message, sig));
}

TEST(Ed25519Test, SeedOfWrongSizeIsInvalidArgument) {
  for (size_t size : {0, 31, 33, 64}) {
    SCOPED_TRACE("size " + std::to_string(size));
    Result<SigningKeyPair> r = SigningKeyPairFromSeed(Bytes(size, 1));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

// ------------------------------------------------------------------- Argon2id

// Reference output from Python's cryptography Argon2id(salt=bytes(range(16)),
// length=32, iterations=2, lanes=1, memory_cost=8192 KiB): libsodium's
// crypto_pwhash uses one lane and memlimit / 1024 KiB.
TEST(Argon2Test, MatchesReferenceImplementation) {
  Bytes salt;
  for (int i = 0; i < 16; ++i) salt.push_back(static_cast<uint8_t>(i));
  Result<SecretBytes> key =
      DeriveKeyFromPassphrase("correct horse battery staple", salt, kFastArgon2);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(HexEncode(key->view()),
            "a891dd91a3d123add6ea78ceedcc94a7f1dc1e4ca480e57e6f240a113662ea2f");
}

TEST(Argon2Test, SamePassphraseAndSaltGiveTheSameKey) {
  const Bytes salt = testing::SeededBytes(9, kArgon2SaltSize);
  Result<SecretBytes> a = DeriveKeyFromPassphrase("hunter2", salt, kFastArgon2);
  Result<SecretBytes> b = DeriveKeyFromPassphrase("hunter2", salt, kFastArgon2);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_EQ(Contents(*a), Contents(*b));
}

TEST(Argon2Test, DifferentPassphraseSaltOrParamsGiveDifferentKeys) {
  const Bytes salt = testing::SeededBytes(9, kArgon2SaltSize);
  Result<SecretBytes> base = DeriveKeyFromPassphrase("hunter2", salt, kFastArgon2);
  ASSERT_TRUE(base.ok());
  Result<SecretBytes> other_pass = DeriveKeyFromPassphrase("hunter3", salt, kFastArgon2);
  ASSERT_TRUE(other_pass.ok());
  EXPECT_NE(Contents(*other_pass), Contents(*base));
  Bytes other_salt_bytes = salt;
  other_salt_bytes[0] ^= 1;
  Result<SecretBytes> other_salt =
      DeriveKeyFromPassphrase("hunter2", other_salt_bytes, kFastArgon2);
  ASSERT_TRUE(other_salt.ok());
  EXPECT_NE(Contents(*other_salt), Contents(*base));
  Result<SecretBytes> other_ops =
      DeriveKeyFromPassphrase("hunter2", salt, Argon2Params{1, kFastArgon2.memlimit});
  ASSERT_TRUE(other_ops.ok());
  EXPECT_NE(Contents(*other_ops), Contents(*base));
}

TEST(Argon2Test, EmptyPassphraseIsAccepted) {
  Bytes salt;
  for (int i = 0; i < 16; ++i) salt.push_back(static_cast<uint8_t>(i));
  Result<SecretBytes> key = DeriveKeyFromPassphrase("", salt, kFastArgon2);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  // Same reference as above, with b"" as the passphrase.
  EXPECT_EQ(HexEncode(key->view()),
            "af8dce7b30c22c1453254704eca5545483cd51ad173e0ab13f78dee42040ff09");
}

TEST(Argon2Test, RejectsBadSaltSize) {
  for (size_t size : {0, 8, 15, 17, 32}) {
    SCOPED_TRACE("salt size " + std::to_string(size));
    Result<SecretBytes> r = DeriveKeyFromPassphrase("pw", Bytes(size, 1), kFastArgon2);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(Argon2Test, RejectsOutOfRangeParameters) {
  const Bytes salt(kArgon2SaltSize, 1);
  const Argon2Params bad[] = {
      {0, 8ull << 20},  // opslimit below the minimum of 1
      {2, 1024},        // memlimit below libsodium's minimum (8 KiB)
      {2, 8ull << 30},  // memlimit above Ferry's 4 GiB cap
  };
  for (const Argon2Params& p : bad) {
    SCOPED_TRACE("opslimit " + std::to_string(p.opslimit) + " memlimit " +
                 std::to_string(p.memlimit));
    Result<SecretBytes> r = DeriveKeyFromPassphrase("pw", salt, p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

// --------------------------------------------------------- XChaCha20-Poly1305

// draft-irtf-cfrg-xchacha-03 appendix A.3.1. Cross-checked in Python:
// HChaCha20 (checked against the draft's section 2.2.1 vector) followed by
// cryptography's ChaCha20Poly1305.
TEST(XChaChaTest, MatchesDraftIrtfCfrgXChachaVector) {
  Bytes key_bytes;
  for (int i = 0x80; i <= 0x9f; ++i) key_bytes.push_back(static_cast<uint8_t>(i));
  const SecretBytes key(key_bytes);
  Bytes nonce;
  for (int i = 0x40; i <= 0x57; ++i) nonce.push_back(static_cast<uint8_t>(i));
  const Bytes aad = Hex("50515253c0c1c2c3c4c5c6c7");
  const Bytes plaintext = ToBytes(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      "future, sunscreen would be it.");
  const std::string expected =
      "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
      "21f9664c97637da9768812f615c68b13b52e"
      "c0875924c1c7987947deafd8780acf49";  // tag
  const Bytes sealed = XChaChaSeal(key, nonce, aad, plaintext);
  EXPECT_EQ(HexEncode(sealed), expected);
  Result<SecretBytes> opened = XChaChaOpen(key, nonce, aad, sealed);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Contents(*opened), plaintext);
}

TEST(XChaChaTest, SealThenOpenRoundTrips) {
  const SecretBytes key = RandomSecret(kXChaChaKeySize);
  const auto nonce = RandomArray<kXChaChaNonceSize>();
  for (size_t size : {0, 1, 64, 1000}) {
    SCOPED_TRACE("size=" + std::to_string(size));
    const Bytes plaintext = testing::SeededBytes(size, size);
    const Bytes sealed = XChaChaSeal(key, nonce, AsBytes("tenant"), plaintext);
    EXPECT_EQ(sealed.size(), size + kXChaChaTagSize);
    Result<SecretBytes> opened = XChaChaOpen(key, nonce, AsBytes("tenant"), sealed);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(Contents(*opened), plaintext);
  }
}

TEST(XChaChaTest, WrongKeyNonceOrAadIsDataLoss) {
  const SecretBytes key = RandomSecret(kXChaChaKeySize);
  const auto nonce = RandomArray<kXChaChaNonceSize>();
  const Bytes sealed = XChaChaSeal(key, nonce, AsBytes("aad"), ToBytes("tenant private key"));

  const SecretBytes other_key = RandomSecret(kXChaChaKeySize);
  Result<SecretBytes> r = XChaChaOpen(other_key, nonce, AsBytes("aad"), sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);

  auto other_nonce = nonce;
  other_nonce[23] ^= 1;
  r = XChaChaOpen(key, other_nonce, AsBytes("aad"), sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);

  r = XChaChaOpen(key, nonce, AsBytes("aae"), sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

TEST(XChaChaTest, DamagedOrTruncatedCiphertextIsDataLoss) {
  const SecretBytes key = RandomSecret(kXChaChaKeySize);
  const auto nonce = RandomArray<kXChaChaNonceSize>();
  const Bytes sealed = XChaChaSeal(key, nonce, {}, ToBytes("tenant private key"));
  for (size_t i = 0; i < sealed.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i));
    Bytes damaged = sealed;
    damaged[i] ^= 0x80;
    Result<SecretBytes> r = XChaChaOpen(key, nonce, {}, damaged);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  }
  for (size_t len : {size_t{0}, kXChaChaTagSize - 1, kXChaChaTagSize, sealed.size() - 1}) {
    SCOPED_TRACE("length " + std::to_string(len));
    Result<SecretBytes> r = XChaChaOpen(key, nonce, {}, ByteView(sealed).first(len));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  }
}

TEST(XChaChaTest, OpenWithWrongKeyOrNonceSizeIsInvalidArgument) {
  const Bytes ciphertext(40, 0);
  Result<SecretBytes> r = XChaChaOpen(SecretBytes(16), Bytes(kXChaChaNonceSize, 0), {}, ciphertext);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = XChaChaOpen(SecretBytes(kXChaChaKeySize), Bytes(12, 0), {}, ciphertext);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

// Sealing with a key or nonce of the wrong size is a caller bug (both come
// from Ferry's own generators); it must stop the process rather than read
// past the end of the buffer.
TEST(XChaChaDeathTest, SealWithWrongKeyOrNonceSizeAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Bytes nonce(kXChaChaNonceSize, 0);
  EXPECT_DEATH(XChaChaSeal(SecretBytes(16), nonce, {}, AsBytes("x")), "fatal: XChaChaSeal");
  EXPECT_DEATH(XChaChaSeal(SecretBytes(kXChaChaKeySize), Bytes(12, 0), {}, AsBytes("x")),
               "fatal: XChaChaSeal");
}

// ---------------------------------------------------------- ConstantTimeEqual

TEST(ConstantTimeEqualTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEqual(ByteView{}, ByteView{}));
  EXPECT_TRUE(ConstantTimeEqual(AsBytes("abc"), AsBytes("abc")));
  EXPECT_FALSE(ConstantTimeEqual(AsBytes("abc"), AsBytes("abd")));
  EXPECT_FALSE(ConstantTimeEqual(AsBytes("abc"), AsBytes("xbc")));
  EXPECT_FALSE(ConstantTimeEqual(AsBytes("abc"), AsBytes("ab")));
  EXPECT_FALSE(ConstantTimeEqual(AsBytes("ab"), AsBytes("abc")));
  EXPECT_FALSE(ConstantTimeEqual(ByteView{}, AsBytes("a")));
}

}  // namespace
}  // namespace ferry::sodium
