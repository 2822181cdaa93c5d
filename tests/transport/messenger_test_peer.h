// MessengerTestPeer: reaches into a Messenger to send raw, possibly malformed, messages (STYLE.md: a test
// peer class rather than `#define private public`).
#pragma once

#include <cstring>

#include "messaging/messenger.h"

namespace lego::msg {

class MessengerTestPeer {
 public:
  // Sends header_len bytes of hdr (a prefix if < 24) and payload on the channel's connection, as a request
  // whose reply (if any) completes the returned call. hdr.request_id is overwritten.
  static std::shared_ptr<PendingCall> CallRaw(Messenger& m, Channel& ch, proto::MsgHeader hdr,
                                              size_t header_len, std::span<const uint8_t> payload,
                                              Millis timeout) {
    auto call = std::make_shared<PendingCall>();
    call->m_ = &m;
    call->request_id_ = m.next_request_id_.fetch_add(1);
    call->conn_id_ = ch.conn_id();
    call->opcode_ = hdr.opcode;
    call->SetTimeout(timeout);
    hdr.request_id = call->request_id_;
    {
      MutexLock pl(m.pending_mu_);
      m.pending_.Insert(call->request_id_, call);
    }
    std::lock_guard wl(m.worker_mu_);
    auto it = m.conns_.find(ch.conn_id());
    if (it == m.conns_.end()) {
      call->status_ = Status(StatusCode::kPeerUnreachable, "no connection");
      call->done_.store(true);
      return call;
    }
    Status st = m.SendRawLocked(it->second.ep, hdr, header_len, payload);
    if (!st.ok()) {
      call->status_ = st;
      call->done_.store(true);
    }
    return call;
  }

  // Sends a reply with any request id on connection conn_id of m (a peer forging replies).
  static Status SendReply(Messenger& m, uint64_t conn_id, uint16_t opcode, uint64_t request_id,
                          std::span<const uint8_t> payload) {
    return m.SendMsg(conn_id, proto::MsgKind::kReply, opcode, request_id, 0, payload);
  }

  // Whether a reply view points into a UCX receive buffer (read in place) rather than a copy.
  static bool InPlace(const ReplyView& v) { return v.held_ != nullptr; }
  // UCX receive buffers m keeps for replies read in place, not yet given back.
  static size_t HeldReplies(Messenger& m) {
    std::lock_guard wl(m.worker_mu_);
    return m.held_replies_;
  }

  // The route of connection conn_id of m (0 if it has none or is gone), and how many routes m gave out.
  static uint32_t Route(Messenger& m, uint64_t conn_id) {
    std::lock_guard wl(m.worker_mu_);
    auto it = m.conns_.find(conn_id);
    return it == m.conns_.end() ? 0 : it->second.route;
  }
  static size_t RoutesGiven(Messenger& m) {
    std::lock_guard wl(m.worker_mu_);
    return m.route_conn_.size();
  }

  static size_t PendingCalls(Messenger& m) {
    MutexLock pl(m.pending_mu_);
    return m.pending_.size();
  }

  static proto::MsgHeader RequestHeader(uint16_t opcode, size_t payload_len) {
    return proto::MsgHeader{proto::kMagic,
                            proto::kProtocolVersion,
                            static_cast<uint8_t>(proto::MsgKind::kRequest),
                            opcode,
                            0,
                            static_cast<uint32_t>(payload_len),
                            0};
  }
};

}  // namespace lego::msg
