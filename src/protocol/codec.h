// Bounds-checked encoding and decoding of message payloads.
//
// Writer appends fixed-layout structs and length-prefixed strings. Reader never reads past its span: every
// accessor returns a Status, and a short, oversized or trailing-garbage payload is a kBadMessage error that
// names the field. Decoders of untrusted input use only Reader (fuzzed by tests/fuzz/protocol_fuzz.cc).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "common/status.h"
#include "protocol/wire.h"

namespace lego::proto {

using Bytes = std::vector<uint8_t>;

class Writer {
 public:
  template <typename T>
  void Put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf_.insert(buf_.end(), p, p + sizeof(T));
  }
  // u16 length, then the bytes (no terminator). REQUIRES: s.size() <= kMaxStringLen.
  void PutString(std::string_view s) {
    uint16_t n = static_cast<uint16_t>(s.size() > kMaxStringLen ? kMaxStringLen : s.size());
    Put(n);
    buf_.insert(buf_.end(), s.begin(), s.begin() + n);
  }
  void PutBytes(std::span<const uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  Bytes Take() { return std::move(buf_); }
  size_t size() const { return buf_.size(); }

 private:
  Bytes buf_;
};

class Reader {
 public:
  Reader(std::span<const uint8_t> data, const char* what) : data_(data), what_(what) {}

  template <typename T>
  Status Get(T* out, const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (data_.size() - pos_ < sizeof(T))
      return BadMessage(fmt::format("{}: truncated at {} (need {} bytes at offset {}, have {})", what_, field,
                                    sizeof(T), pos_, data_.size() - pos_));
    std::memcpy(out, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* out, const char* field, size_t max_len = kMaxStringLen) {
    uint16_t n = 0;
    LEGO_RETURN_IF_ERROR(Get(&n, field));
    if (n > max_len)
      return BadMessage(fmt::format("{}: {} length {} exceeds limit {}", what_, field, n, max_len));
    if (data_.size() - pos_ < n)
      return BadMessage(
          fmt::format("{}: {} truncated (length {}, have {})", what_, field, n, data_.size() - pos_));
    out->assign(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    return Status::Ok();
  }
  // The whole payload must be consumed: trailing bytes mean the peer and we disagree on the layout.
  Status Finish() const {
    if (pos_ != data_.size())
      return BadMessage(
          fmt::format("{}: {} trailing bytes after offset {}", what_, data_.size() - pos_, pos_));
    return Status::Ok();
  }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  const char* what_;
};

}  // namespace lego::proto
