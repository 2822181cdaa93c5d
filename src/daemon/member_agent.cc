#include "daemon/member_agent.h"

#include <unistd.h>

#include "common/log.h"

namespace lego::daemon {

MemberAgent::MemberAgent(msg::Messenger& messenger, HostPort gm, MemberInfo info,
                         std::function<uint64_t()> used_bytes)
    : messenger_(messenger),
      gm_(messenger.ChannelTo(gm, std::chrono::milliseconds(2000))),
      info_(std::move(info)),
      used_bytes_(std::move(used_bytes)) {}

MemberAgent::~MemberAgent() { Stop(); }

void MemberAgent::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void MemberAgent::Stop() {
  {
    std::lock_guard lk(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (registered_.load()) {
    proto::DeregisterReq req{id_.load(), incarnation_};
    auto r = gm_->Call(proto::kDeregister, proto::EncodeFixed(req), std::chrono::milliseconds(1000));
    if (r.ok())
      LEGO_LOG_INFO("deregistered id={}", req.id);
    else
      LEGO_LOG_WARN("deregister_failed id={} error=\"{}\"", req.id, r.status().ToString());
    registered_.store(false);
  }
}

bool MemberAgent::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  return !cv_.wait_for(lk, d, [this] { return stop_; });
}

void MemberAgent::HeartbeatSoon() {
  {
    std::lock_guard lk(mu_);
    soon_ = true;
  }
  cv_.notify_all();
}

bool MemberAgent::WaitForHeartbeat(bool allow_early) {
  constexpr std::chrono::milliseconds kMinHeartbeatGap{20};
  const std::chrono::milliseconds interval(interval_ms_);
  std::unique_lock lk(mu_);
  if (cv_.wait_for(lk, std::min(kMinHeartbeatGap, interval), [this] { return stop_; })) return false;
  if (interval > kMinHeartbeatGap)
    cv_.wait_for(lk, interval - kMinHeartbeatGap, [&] { return stop_ || (allow_early && soon_); });
  soon_ = false;
  return !stop_;
}

bool MemberAgent::Register() {
  proto::RegisterReq req;
  req.fixed.kind = static_cast<uint8_t>(info_.kind);
  req.fixed.metrics_port = info_.metrics_port;
  req.fixed.pid = static_cast<uint32_t>(getpid());
  req.fixed.capacity_bytes = info_.capacity_bytes;
  req.fixed.used_bytes = used_bytes_();
  req.listen_addr = info_.listen_addr;
  req.name = info_.name;
  auto r = gm_->Call(proto::kRegister, proto::EncodeRegisterReq(req), std::chrono::milliseconds(2000));
  if (!r.ok()) {
    LEGO_LOG_RATELIMITED("register_failed gm={} error=\"{}\"", gm_->address().ToString(),
                         r.status().ToString());
    gm_->Reset();  // see the heartbeat path below
    return false;
  }
  auto resp = proto::DecodeFixed<proto::RegisterResp>(r.value(), "x2g.register reply");
  if (!resp.ok()) {
    LEGO_LOG_ERROR("register_bad_reply error=\"{}\"", resp.status().ToString());
    return false;
  }
  id_.store(resp->id);
  incarnation_ = resp->incarnation;
  interval_ms_ = std::clamp<uint32_t>(resp->heartbeat_interval_ms, 10, 60000);
  registered_.store(true);
  LEGO_LOG_INFO("registered id={} incarnation={} gm={} heartbeat_ms={}", resp->id, resp->incarnation,
                gm_->address().ToString(), interval_ms_);
  return true;
}

void MemberAgent::Loop() {
  int failures = 0;
  while (true) {
    if (!registered_.load()) {
      if (Register()) continue;
      if (!SleepFor(std::chrono::milliseconds(500))) return;
      continue;
    }
    // While the gm does not answer, only at the interval: each failure resets the connection.
    if (!WaitForHeartbeat(/*allow_early=*/failures == 0)) return;
    proto::HeartbeatReq hb{id_.load(), incarnation_, info_.capacity_bytes, used_bytes_()};
    auto r = gm_->Call(proto::kHeartbeat, proto::EncodeFixed(hb), std::chrono::milliseconds(interval_ms_));
    if (r.ok()) {
      if (failures)
        LEGO_LOG_INFO("gm_reachable_again gm={} after_failures={}", gm_->address().ToString(), failures);
      failures = 0;
    } else if (r.status().code() == StatusCode::kUnknownMember) {
      LEGO_LOG_WARN("gm_forgot_us id={} (re-registering)", id_.load());
      registered_.store(false);
    } else {
      if (failures++ == 0)
        LEGO_LOG_WARN("heartbeat_failed gm={} error=\"{}\"", gm_->address().ToString(),
                      r.status().ToString());
      // A gm that died may only show up as timeouts (on loopback UCX cannot report peer failure): start a
      // fresh connection, so that a restarted gm is reached and tells us to register again.
      gm_->Reset();
    }
  }
}

}  // namespace lego::daemon
