// Status and Result<T>: how every fallible Lego call reports failure.
//
// Contract: no exception crosses a module, thread or wire boundary; functions that can fail return Status
// or Result<T>. A StatusCode exists only if some caller reacts to it specifically (FoundationDB's rule).
// The numeric values are also the wire status codes (docs/protocol.md), so never renumber them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace lego {

enum class StatusCode : int32_t {
  kOk = 0,
  kInvalidArgument = 1,  // caller's input is wrong (bad flag, bad size); fix the input
  kNotFound = 2,         // named thing does not exist
  kAlreadyExists = 3,    // named thing exists (e.g. a cluster already up)
  kTimeout = 4,          // no reply within the deadline; the request may or may not have run
  kPeerUnreachable = 5,  // peer failed or could not be reached; the request may or may not have run
  kBadMessage = 6,       // malformed, truncated or oversized message; never retried
  kVersionMismatch = 7,  // peer speaks another protocol version
  kUnknownOpcode = 8,    // peer does not serve this opcode
  kUnknownMember = 9,    // gm does not know this component id (it restarted): register again
  kOutOfMemory = 10,     // capacity exhausted
  kShuttingDown = 11,    // the local endpoint or peer is stopping
  kIoError = 12,         // local OS call failed
  kInternal = 13,        // a bug: logged with detail
  kBusy = 14,            // the peer cannot take this request now (a bounded queue is full): retry later
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Timeout: call gm.list_members to 127.0.0.1:4000 timed out after 2000 ms"
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status BadMessage(std::string m) { return {StatusCode::kBadMessage, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
// IoError carrying strerror(errno) of the failed call.
Status ErrnoError(std::string_view what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design; REQUIRES: !status.ok()

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  // By value, so that `for (auto& x : F().value())` does not dangle.
  T value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace lego

#define LEGO_RETURN_IF_ERROR(expr) \
  do {                             \
    ::lego::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)
