#include "common/status.h"

#include <cstring>

#include <fmt/format.h>

namespace lego {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case StatusCode::kNotFound:
      return "NotFound";
    case StatusCode::kAlreadyExists:
      return "AlreadyExists";
    case StatusCode::kTimeout:
      return "Timeout";
    case StatusCode::kPeerUnreachable:
      return "PeerUnreachable";
    case StatusCode::kBadMessage:
      return "BadMessage";
    case StatusCode::kVersionMismatch:
      return "VersionMismatch";
    case StatusCode::kUnknownOpcode:
      return "UnknownOpcode";
    case StatusCode::kUnknownMember:
      return "UnknownMember";
    case StatusCode::kOutOfMemory:
      return "OutOfMemory";
    case StatusCode::kShuttingDown:
      return "ShuttingDown";
    case StatusCode::kIoError:
      return "IoError";
    case StatusCode::kInternal:
      return "Internal";
    case StatusCode::kBusy:
      return "Busy";
  }
  return "UnknownStatus";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return fmt::format("{}: {}", StatusCodeName(code_), message_);
}

Status ErrnoError(std::string_view what, int err) {
  return IoError(fmt::format("{}: {}", what, std::strerror(err)));
}

}  // namespace lego
