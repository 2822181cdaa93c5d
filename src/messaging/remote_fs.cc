#include "messaging/remote_fs.h"

#include <algorithm>
#include <cerrno>
#include <random>
#include <thread>

#include "common/log.h"

namespace lego::msg {

RemoteFs::RemoteFs(Messenger& messenger, HostPort gm, RemoteFsOptions options)
    : messenger_(messenger),
      options_(options),
      gm_(messenger.ChannelTo(gm, Millis(2000))),
      // Random, so that ids of two pmons (or of one pmon's two lives) never meet at a smon; the top bit set,
      // so that counting up from it never reaches 0.
      request_ids_((uint64_t{std::random_device()()} << 32 | std::random_device()()) | (uint64_t{1} << 63)) {}

Result<proto::VnodeRecord> RemoteFs::Lookup(const proto::VnodeLookupReq& req, Millis timeout) {
  auto reply = gm_->Call(proto::kVnodeLookup, proto::EncodeVnodeLookupReq(req), timeout);
  if (!reply.ok()) {
    if (reply.status().code() == StatusCode::kTimeout) gm_->Reset();
    return reply.status();
  }
  return proto::DecodeVnodeRecord(reply.value());
}

Result<std::shared_ptr<Channel>> RemoteFs::ChannelFor(uint32_t vnode) {
  {
    std::lock_guard lk(mu_);
    if (auto it = routes_.find(vnode); it != routes_.end()) return it->second;
  }
  auto v = Lookup({vnode, 0, ""}, options_.timeout);  // on a file request's path: within its deadline
  if (!v.ok()) return v.status();
  return Route(vnode, *v);
}

Result<std::shared_ptr<Channel>> RemoteFs::Route(uint32_t vnode, const proto::VnodeRecord& v) {
  const bool smon = options_.target == RemoteFsOptions::Target::kSmon;
  const std::string& addr_text = smon ? v.smon_addr : v.mmon_addr;
  if (addr_text.empty() || (smon ? !v.fixed.smon_alive : !v.fixed.mmon_alive))
    return Status(StatusCode::kPeerUnreachable, fmt::format("vNode {} ({}): its {} is not alive", vnode,
                                                            v.name, smon ? "smon" : "cache mmon"));
  auto addr = ParseHostPort(addr_text);
  if (!addr.ok()) return addr.status();
  std::lock_guard lk(mu_);
  auto& ch = by_addr_[addr_text];
  if (!ch) ch = messenger_.ChannelTo(addr.value(), options_.timeout);
  routes_[vnode] = ch;
  peer_keys_[vnode] = std::hash<std::string>()(addr_text) | (uint64_t{1} << 63);
  return ch;
}

std::optional<uint64_t> RemoteFs::PeerKey(uint32_t vnode) {
  std::lock_guard lk(mu_);
  auto it = peer_keys_.find(vnode);
  if (it == peer_keys_.end()) return std::nullopt;
  return it->second;
}

std::optional<proto::FsReply> RemoteFs::Resolve(const proto::FsRequest& req) {
  const uint32_t vnode = req.f.vnode;
  if (PeerKey(vnode)) return std::nullopt;
  auto v = Lookup({vnode, 0, ""}, options_.timeout);
  if (!v.ok()) {
    const StatusCode code = v.status().code();
    // The gm did not answer: so would it again for the request itself, a whole timeout later.
    if (code == StatusCode::kTimeout || code == StatusCode::kPeerUnreachable) return Fail(req, v.status());
    return std::nullopt;  // it answered (no such vNode...): the request finds out itself
  }
  (void)Route(vnode, *v);  // no route to a peer the gm lists as dead: the request finds out itself
  return std::nullopt;
}

void RemoteFs::Forget(uint32_t vnode) {
  std::lock_guard lk(mu_);
  routes_.erase(vnode);
}

proto::FsReply RemoteFs::Fail(const proto::FsRequest& req, const Status& st) {
  transport_errors_.fetch_add(1);
  LEGO_LOG_RATELIMITED("fs_request_failed op={} vnode={} path=\"{}\" why=\"{}\"", proto::FsOpName(req.op),
                       req.f.vnode, req.path, st.ToString());
  return proto::FsReply::Errno(EIO);
}

bool RemoteFs::MayResend(const proto::FsRequest& req) const {
  if (proto::FsOpIdempotent(req.op)) return true;
  // The smon runs a request with an id once (its duplicate-request cache) as long as it stays up. Past a dead
  // cache mmon the smon is the same, so the copy sent again is answered, not run twice; but a dead peer
  // that is the smon itself may have restarted and forgotten the id, so the mmon never resends.
  return req.f.request_id != 0 && options_.target == RemoteFsOptions::Target::kCacheMmon;
}

Result<Bytes> RemoteFs::Exchange(const proto::FsRequest& in) {
  const proto::FsRequest* req = &in;
  proto::FsRequest stamped;
  if (!proto::FsOpIdempotent(in.op) && in.f.request_id == 0) {
    stamped = in;
    stamped.f.request_id = request_ids_.fetch_add(1);
    req = &stamped;
  }
  const Bytes payload = proto::EncodeFsRequest(*req);
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  // A request whose peer was found gone is sent again along a fresh route, if that is safe (MayResend): at
  // once (a restarted peer may be up again on another port), then every kRetryPause until the request's
  // deadline, so that a vNode whose cache mmon died is served by the mmon the gm moves it to once it notices
  // (its detection time), rather than failing meanwhile. The route is looked up again each time; a peer the
  // gm lists as dead fails the request at once (ChannelFor). Never after a timeout: the program must get EIO
  // within it, and the first copy may still be running.
  //
  // A non-idempotent request goes again only to another peer: "gone" may also mean this side reset the
  // connection (another call on it timed out) while the peer, alive, still has the first copy queued. Sent to
  // the new cache mmon, the smon answers it from its duplicate-request cache, flagged so that the new mmon's
  // cache does not act on it again.
  std::shared_ptr<Channel> first_peer;  // non-idempotent: where the first copy went
  Result<Bytes> first_failure = Status(StatusCode::kPeerUnreachable, "unreachable");
  bool noted = false;
  int busy_retries = 0;
  auto note_retry = [&](const Status& why) {
    if (noted) return;
    noted = true;
    retried_.fetch_add(1);
    LEGO_LOG_RATELIMITED("fs_peer_gone op={} vnode={} why=\"{}\": retrying until the deadline",
                         proto::FsOpName(req->op), req->f.vnode, why.ToString());
  };
  for (int attempt = 0;; ++attempt) {
    auto ch = ChannelFor(req->f.vnode);
    if (!ch.ok()) return ch.status();
    if (first_peer != nullptr && ch.value() == first_peer) {
      Forget(req->f.vnode);  // look the route up again next time
      if (std::chrono::steady_clock::now() + kRetryPause >= deadline) return first_failure;
      note_retry(first_failure.status());
      std::this_thread::sleep_for(kRetryPause);
      continue;
    }
    // A READ of up to 64 KiB has a small reply: its wait may take the one-wake-up path (decision 007).
    const auto size = req->op == proto::FsOp::kRead && req->f.length <= 64 * 1024 ? Channel::Reply::kSmall
                                                                                  : Channel::Reply::kAnySize;
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto reply = ch.value()->Call(proto::FsOpcode(req->op), payload, std::max(left, Millis(1)), size);
    if (!reply.ok() && reply.status().code() == StatusCode::kBusy) {
      // Refused unread (too much waits for order on that connection): any request may go again, after a
      // pause that grows to kRetryPause, until its deadline.
      const Millis pause = std::min(kRetryPause, Millis(int64_t{1} << std::min(busy_retries, 7)));
      if (std::chrono::steady_clock::now() + pause >= deadline) return reply;
      if (busy_retries++ == 0) {
        busy_.fetch_add(1);
        LEGO_LOG_RATELIMITED("fs_peer_busy op={} vnode={} why=\"{}\": retrying until the deadline",
                             proto::FsOpName(req->op), req->f.vnode, reply.status().ToString());
      }
      std::this_thread::sleep_for(pause);
      continue;
    }
    if (!reply.ok()) {
      StatusCode c = reply.status().code();
      if (c == StatusCode::kTimeout || c == StatusCode::kPeerUnreachable || c == StatusCode::kShuttingDown)
        ch.value()->Reset();
      Forget(req->f.vnode);
    }
    if (reply.ok() || reply.status().code() != StatusCode::kPeerUnreachable || !MayResend(*req)) return reply;
    if (!proto::FsOpIdempotent(req->op)) {
      if (first_peer != nullptr) return reply;  // the second peer failed too
      first_peer = ch.value();
      first_failure = reply;
      continue;
    }
    if (attempt == 0) continue;  // at once
    if (std::chrono::steady_clock::now() + kRetryPause >= deadline) return reply;
    note_retry(reply.status());
    std::this_thread::sleep_for(kRetryPause);
  }
}

proto::FsReply RemoteFs::Execute(const proto::FsRequest& req) {
  auto reply = Exchange(req);
  if (!reply.ok()) return Fail(req, reply.status());
  auto decoded = proto::DecodeFsReply(req.op, reply.value());
  if (!decoded.ok()) return Fail(req, decoded.status());
  return std::move(decoded.value());
}

proto::FsReply RemoteFs::ReadInto(const proto::FsRequest& req, std::span<uint8_t> dst, size_t* n) {
  *n = 0;
  if (req.op != proto::FsOp::kRead) return FsService::ReadInto(req, dst, n);
  auto reply = Exchange(req);
  if (!reply.ok()) return Fail(req, reply.status());
  auto decoded = proto::DecodeFsReadReplyInto(reply.value(), dst, n);
  if (!decoded.ok()) return Fail(req, decoded.status());
  return std::move(decoded.value());
}

void ServeFs(Messenger& messenger, WorkQueue& queue, proto::FsService& service, FsFastPath try_inline,
             FsQueueKeys keys) {
  for (uint16_t i = 1; i <= proto::kFsOpCount; ++i) {
    const uint16_t opcode = proto::FsOpcode(static_cast<proto::FsOp>(i));
    messenger.Handle(opcode, [&queue, &service, opcode, try_inline, keys](const Incoming& in, Responder r) {
      auto check = proto::DecodeFsRequest(opcode, in.payload);
      if (!check.ok()) {
        LEGO_LOG_RATELIMITED("bad_fs_request conn={} why=\"{}\"", in.conn_id, check.status().message());
        return r.Error(check.status());
      }
      proto::FsReply fast;
      if (try_inline && try_inline(check.value(), &fast))
        return r.Reply(proto::EncodeFsReply(check->op, fast));
      // The payload lives only during this call: the job keeps the decoded request and the write data (the
      // only field that points into the payload): the payload's own buffer when the messenger hands it over
      // (a large WRITE: moving a vector keeps its bytes where they are, so req.data stays valid), else a
      // copy.
      struct Pending {
        proto::FsRequest req;
        Bytes data;
        Responder r;
      };
      auto p = std::make_shared<Pending>(Pending{std::move(check.value()), {}, std::move(r)});
      if (in.owned != nullptr && !p->req.data.empty()) {
        p->data = std::move(*in.owned);
      } else {
        p->data.assign(p->req.data.begin(), p->req.data.end());
        p->req.data = p->data;
      }
      auto job = [&service, p] {
        proto::FsReply reply = service.Execute(p->req);
        p->r.Reply(proto::EncodeFsReply(p->req.op, reply));
      };
      // The key for WorkQueue's per-key limit (FsQueueKeys).
      bool submitted;
      if (!keys.known) {
        submitted = queue.Submit(p->req.f.vnode, std::move(job));
      } else if (auto key = keys.known(p->req)) {
        submitted = queue.Submit(*key, std::move(job));
      } else {
        submitted = queue.Submit(FsQueueKeys::kResolving, [&queue, keys, p, job = std::move(job)]() mutable {
          if (auto failed = keys.resolve ? keys.resolve(p->req) : std::nullopt)
            return p->r.Reply(proto::EncodeFsReply(p->req.op, *failed));
          // Not resolved (the gm names no live peer, or no such vNode): run it here, where it fails the
          // same way at once (or the buffer cache answers it).
          if (auto key = keys.known(p->req); !key)
            job();
          else if (!queue.Submit(*key, std::move(job)))
            LEGO_LOG_DEBUG("fs_request_dropped (stopping)");
        });
      }
      if (!submitted) LEGO_LOG_DEBUG("fs_request_dropped opcode={:#06x} (stopping)", opcode);
    });
  }
}

}  // namespace lego::msg
