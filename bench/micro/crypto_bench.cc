// Bulk crypto speed per core: Ferry's chunk id (HMAC-SHA-256 through EVP) and
// chunk AEADs (ferry::evp::AeadSeal) beside the raw OpenSSL and libsodium
// primitives. Run: build/bin/ferry_micro_bench --benchmark_filter='Hash|Hmac|Seal'
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <array>
#include <cstdint>
#include <random>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/sodium.h"

namespace ferry {
namespace {

Bytes RandomData(size_t size) {
  std::mt19937_64 rng(44);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

constexpr std::array<uint8_t, 32> kKey = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                          12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                          23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

void SetBytes(benchmark::State& state, size_t size) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

// --- Hashes: Ferry's chunk id and the raw primitives -----------------------

void BM_FerryHmacSha256ChunkId(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  const evp::HmacSha256 hmac(kKey);
  for (auto _ : state) benchmark::DoNotOptimize(hmac.Compute(data));
  SetBytes(state, data.size());
}
BENCHMARK(BM_FerryHmacSha256ChunkId)->Arg(64 << 10)->Arg(1 << 20);

void BM_RawOpenSslSha256(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::array<uint8_t, 32> out;
  for (auto _ : state) {
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
      state.SkipWithError("EVP_Digest failed");
      break;
    }
    benchmark::DoNotOptimize(out);
  }
  EVP_MD_free(md);
  SetBytes(state, data.size());
}
BENCHMARK(BM_RawOpenSslSha256)->Arg(64 << 10)->Arg(1 << 20);

void BM_RawSodiumBlake2b256(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  sodium::InitSodium();
  std::array<uint8_t, 32> out;
  for (auto _ : state) {
    crypto_generichash(out.data(), out.size(), data.data(), data.size(), nullptr, 0);
    benchmark::DoNotOptimize(out);
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_RawSodiumBlake2b256)->Arg(64 << 10)->Arg(1 << 20);

// --- AEAD: Ferry's sealing primitive and the raw libsodium ones -------------

void FerryAeadSeal(benchmark::State& state, evp::AeadSuite suite) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  const std::array<uint8_t, evp::kAeadNonceSize> nonce{};
  const std::array<uint8_t, 32> aad{};  // a chunk id
  Bytes out;
  out.reserve(data.size() + evp::kAeadTagSize);
  for (auto _ : state) {
    out.clear();
    if (!evp::AeadSeal(suite, kKey, nonce, aad, data, out).ok()) {
      state.SkipWithError("AeadSeal failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, data.size());
}

void BM_FerryAeadSealAes256Gcm(benchmark::State& state) {
  FerryAeadSeal(state, evp::AeadSuite::kAes256Gcm);
}
BENCHMARK(BM_FerryAeadSealAes256Gcm)->Arg(64 << 10)->Arg(1 << 20);

void BM_FerryAeadSealChaCha20Poly1305(benchmark::State& state) {
  FerryAeadSeal(state, evp::AeadSuite::kChaCha20Poly1305);
}
BENCHMARK(BM_FerryAeadSealChaCha20Poly1305)->Arg(64 << 10)->Arg(1 << 20);

void BM_RawSodiumXChaCha20Poly1305(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  sodium::InitSodium();
  const std::array<uint8_t, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce{};
  const std::array<uint8_t, 32> aad{};
  Bytes out(data.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  for (auto _ : state) {
    unsigned long long out_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &out_len, data.data(), data.size(),
                                               aad.data(), aad.size(), nullptr, nonce.data(),
                                               kKey.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_RawSodiumXChaCha20Poly1305)->Arg(64 << 10)->Arg(1 << 20);

// The link's Noise transport cipher (mirror/transport): IETF ChaCha20-Poly1305
// with a 12-byte nonce, over messages of at most 65,535 bytes, i.e. 65,519
// bytes of plaintext + the 16-byte tag, no associated data. The single-core
// reference for bench/link-throughput.sh.
void BM_RawSodiumChaCha20Poly1305Ietf(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  sodium::InitSodium();
  std::array<uint8_t, crypto_aead_chacha20poly1305_ietf_NPUBBYTES> nonce{};
  Bytes out(data.size() + crypto_aead_chacha20poly1305_ietf_ABYTES);
  uint64_t counter = 0;
  for (auto _ : state) {
    // A fresh nonce per message, as the transport does (little-endian
    // counter in the last 8 bytes).
    ++counter;
    for (size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
    unsigned long long out_len = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &out_len, data.data(), data.size(),
                                              nullptr, 0, nullptr, nonce.data(), kKey.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_RawSodiumChaCha20Poly1305Ietf)->Arg(65519)->Arg(1 << 20);

void BM_RawSodiumAes256Gcm(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  sodium::InitSodium();
  if (crypto_aead_aes256gcm_is_available() == 0) {
    state.SkipWithError("libsodium AES-256-GCM needs AES-NI and PCLMUL; not available here");
    return;
  }
  const std::array<uint8_t, crypto_aead_aes256gcm_NPUBBYTES> nonce{};
  const std::array<uint8_t, 32> aad{};
  Bytes out(data.size() + crypto_aead_aes256gcm_ABYTES);
  for (auto _ : state) {
    unsigned long long out_len = 0;
    crypto_aead_aes256gcm_encrypt(out.data(), &out_len, data.data(), data.size(), aad.data(),
                                  aad.size(), nullptr, nonce.data(), kKey.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_RawSodiumAes256Gcm)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace
}  // namespace ferry
