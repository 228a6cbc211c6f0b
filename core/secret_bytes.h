// SecretBytes: owning buffer for key material. Never copied implicitly; wiped
// with sodium_memzero when destroyed or moved from.
//
// Thread-safety: thread-compatible (like std::vector).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace ferry {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled
  SecretBytes(const uint8_t* data, size_t size);
  explicit SecretBytes(std::span<const uint8_t> data) : SecretBytes(data.data(), data.size()) {}
  ~SecretBytes() { Wipe(); }

  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;

  // An explicit copy, for the rare place that needs two owners.
  SecretBytes Clone() const { return SecretBytes(data(), size()); }

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> view() const { return {data(), size()}; }
  std::span<uint8_t> mutable_view() { return {data(), size()}; }

 private:
  void Wipe();
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

}  // namespace ferry
