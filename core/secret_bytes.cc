#include "core/secret_bytes.h"

#include <sodium.h>

#include <cstring>

namespace ferry {

SecretBytes::SecretBytes(size_t size) : data_(new uint8_t[size]()), size_(size) {}

SecretBytes::SecretBytes(const uint8_t* data, size_t size) : data_(new uint8_t[size]), size_(size) {
  if (size > 0) std::memcpy(data_.get(), data, size);
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

void SecretBytes::Wipe() {
  if (data_ && size_ > 0) sodium_memzero(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

}  // namespace ferry
