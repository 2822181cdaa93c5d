// ANY (0x00xx) messages: served by every Lego endpoint. See docs/protocol.md, "ANY".
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "protocol/codec.h"

namespace lego::proto {

// kHello request and reply: the first exchange on every connection.
struct HelloMsg {
  uint8_t version;      // sender's kProtocolVersion
  uint8_t sender_kind;  // ComponentKind of the sender (kUnknown for CLI and tests)
  uint16_t reserved;    // 0
  uint32_t sender_pid;  // for logs
  // Reply: the route the server gave this connection, for the client's later requests to carry in
  // MsgHeader.status (protocol.md, "Routes"); 0: none, keep sending with UCX's reply endpoint. Request: 0.
  uint32_t route;
  uint32_t reserved2;  // 0
};
static_assert(sizeof(HelloMsg) == 16);

// kEchoSized request: the reply carries reply_bytes bytes (<= the receiver's max payload).
struct EchoSizedReq {
  uint32_t reply_bytes;
  uint32_t reserved;
};
static_assert(sizeof(EchoSizedReq) == 8);

// kGetStats reply: u32 count, then count x { string name, f64 value }.
struct StatsEntry {
  std::string name;
  double value = 0;
};
Bytes EncodeStats(const std::vector<StatsEntry>& stats);
Result<std::vector<StatsEntry>> DecodeStats(std::span<const uint8_t> payload);

// Fixed-layout messages encode as their bytes and decode only if the size is exact.
template <typename T>
Bytes EncodeFixed(const T& msg) {
  Writer w;
  w.Put(msg);
  return w.Take();
}
template <typename T>
Result<T> DecodeFixed(std::span<const uint8_t> payload, const char* what) {
  Reader r(payload, what);
  T msg{};
  LEGO_RETURN_IF_ERROR(r.Get(&msg, what));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return msg;
}

}  // namespace lego::proto
