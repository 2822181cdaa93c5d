// Decoding of the local program <-> pmon messages (src/protocol/local.h) received by the pmon. Pure and
// bounds-checked: a packet that is short, not Lego's, of another version or type is rejected with the
// errno the pmon answers (fuzzed in tests/fuzz).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "protocol/local.h"

namespace lego::proto {

struct LocalHello {
  lego_local_hello body{};  // job and comm are NUL-terminated
  int error = 0;            // 0, or the errno to refuse with
  std::string why;          // for the log line
};

inline LocalHello DecodeLocalHello(std::span<const uint8_t> packet) {
  LocalHello out;
  lego_local_hdr h;
  if (packet.size() < sizeof h + sizeof out.body) {
    out.error = EPROTO;
    out.why = "short HELLO (" + std::to_string(packet.size()) + " bytes)";
    return out;
  }
  std::memcpy(&h, packet.data(), sizeof h);
  std::memcpy(&out.body, packet.data() + sizeof h, sizeof out.body);
  if (h.magic != LEGO_LOCAL_MAGIC || h.type != LEGO_LOCAL_HELLO) {
    out.error = EPROTO;
    out.why = "not a Lego HELLO";
  } else if (h.version != LEGO_LOCAL_VERSION) {
    out.error = EPROTONOSUPPORT;
    out.why = "preload speaks local protocol v" + std::to_string(h.version) + ", pmon v" +
              std::to_string(LEGO_LOCAL_VERSION);
  }
  out.body.job[sizeof out.body.job - 1] = 0;
  out.body.comm[sizeof out.body.comm - 1] = 0;
  return out;
}

// A DROP_ACK for `seq`: returns true and its status, or false if the packet is something else.
inline bool DecodeDropAck(std::span<const uint8_t> packet, uint64_t seq, int32_t* status) {
  lego_local_hdr h;
  lego_local_drop_ack ack;
  if (packet.size() < sizeof h + sizeof ack) return false;
  std::memcpy(&h, packet.data(), sizeof h);
  std::memcpy(&ack, packet.data() + sizeof h, sizeof ack);
  if (h.magic != LEGO_LOCAL_MAGIC || h.type != LEGO_LOCAL_DROP_ACK || ack.seq != seq) return false;
  *status = ack.status;
  return true;
}

}  // namespace lego::proto
