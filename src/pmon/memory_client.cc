#include "pmon/memory_client.h"

#include <cstring>

#include "common/log.h"
#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/p2m.h"
#include "protocol/wire.h"

namespace lego::pmon {

MemoryClient::MemoryClient(msg::Messenger& messenger, HostPort gm, Millis timeout)
    : messenger_(messenger), gm_(messenger.ChannelTo(gm, timeout)), timeout_(timeout) {}

std::shared_ptr<msg::Channel> MemoryClient::KnownOwner(uint64_t space, uint64_t region) {
  std::lock_guard lock(mu_);
  auto it = owners_.find({space, region});
  return it == owners_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<msg::Channel>> MemoryClient::Owner(uint64_t space, uint64_t region) {
  if (auto ch = KnownOwner(space, region)) return ch;
  auto r =
      gm_->Call(proto::kAssignRegion, proto::EncodeFixed(proto::AssignRegionReq{space, region}), timeout_);
  if (!r.ok()) return r.status();
  auto resp = proto::DecodeAssignRegionResp(*r);
  if (!resp.ok()) return resp.status();
  auto addr = ParseHostPort(resp->mmon_addr);
  if (!addr.ok()) return addr.status();
  std::lock_guard lock(mu_);
  auto& ch = channels_[resp->mmon_addr];
  if (!ch) ch = messenger_.ChannelTo(*addr, timeout_);
  owners_[{space, region}] = ch;
  LEGO_LOG_DEBUG("region_assigned space={:#x} region={} mmon={}", space, region, resp->mmon_addr);
  return ch;
}

Result<std::shared_ptr<msg::PendingCall>> MemoryClient::ReadStart(uint64_t space,
                                                                  std::span<const uint64_t> vaddrs,
                                                                  proto::Bytes&& reply_buffer) {
  auto ch = Owner(space, vaddrs[0] >> kRegionShift);
  if (!ch.ok()) return ch.status();
  return (*ch)->CallAsync(proto::kReadPages, proto::EncodeReadPages(space, vaddrs), timeout_,
                          std::move(reply_buffer), msg::Channel::Receive::kInPlace);
}

Status MemoryClient::ReadFinish(msg::PendingCall& call, size_t n, uint8_t* present, msg::ReplyView* reply,
                                const uint8_t** pages) {
  *pages = nullptr;
  auto r = call.WaitView();
  if (!r.ok()) return r.status();
  *reply = std::move(*r);
  auto resp = proto::DecodeReadPagesResp(reply->bytes());
  if (!resp.ok()) return resp.status();
  if (resp->present.size() != n)
    return Status(StatusCode::kInternal, "read_pages reply has the wrong page count");
  std::memcpy(present, resp->present.data(), n);
  *pages = resp->data.data();
  return Status::Ok();
}

Status MemoryClient::Write(uint64_t space, std::span<const uint64_t> vaddrs, const uint8_t* data,
                           bool* owner_lost) {
  if (owner_lost) *owner_lost = false;
  size_t i = 0;
  while (i < vaddrs.size()) {
    // One request per run of pages in the same vRegion, at most kMaxPagesPerRequest pages.
    const uint64_t region = vaddrs[i] >> kRegionShift;
    size_t j = i + 1;
    while (j < vaddrs.size() && j - i < proto::kMaxPagesPerRequest && (vaddrs[j] >> kRegionShift) == region)
      ++j;
    auto ch = Owner(space, region);
    if (!ch.ok()) return ch.status();
    auto r = (*ch)->Call(proto::kWritePages,
                         proto::EncodeWritePages(space, vaddrs.subspan(i, j - i),
                                                 std::span(data + i * kPage, (j - i) * kPage)),
                         timeout_);
    std::lock_guard lock(mu_);
    if (!r.ok()) {
      const bool unreachable = r.status().code() == StatusCode::kPeerUnreachable;
      const bool holds = holding_.contains({space, region});
      if (unreachable && holds && owner_lost) *owner_lost = true;
      if (unreachable && !holds && owners_.erase({space, region}))
        LEGO_LOG_RATELIMITED(
            "region_owner_unreachable space={:#x} region={} why=\"{}\": it holds none of the "
            "region's pages, so the gm is asked again",
            space, region, r.status().ToString());
      return r.status();
    }
    holding_.insert({space, region});
    i = j;
  }
  return Status::Ok();
}

Status MemoryClient::FreeRange(uint64_t space, uint64_t start, uint64_t len, uint64_t* freed) {
  const uint64_t end = start + len;
  for (uint64_t region = start >> kRegionShift; region <= (end - 1) >> kRegionShift; ++region) {
    auto ch = KnownOwner(space, region);
    if (!ch) continue;  // never assigned: nothing was written there
    const uint64_t lo = std::max(start, region << kRegionShift);
    const uint64_t hi = std::min(end, (region + 1) << kRegionShift);
    auto r =
        ch->Call(proto::kFreeRange, proto::EncodeFixed(proto::FreeRangeReq{space, lo, hi - lo}), timeout_);
    if (!r.ok()) return r.status();
    auto resp = proto::DecodeFixed<proto::FreedResp>(*r, "p2m.freed");
    if (resp.ok() && freed) *freed += resp->pages_freed;
  }
  return Status::Ok();
}

Status MemoryClient::ForkSpace(uint64_t parent, uint64_t child, uint64_t* pages) {
  auto r = gm_->Call(proto::kForkSpace, proto::EncodeFixed(proto::ForkSpaceReq{parent, child}), timeout_);
  if (!r.ok()) return r.status();
  std::set<std::shared_ptr<msg::Channel>> holders;
  {
    std::lock_guard lock(mu_);
    std::vector<std::pair<uint64_t, std::shared_ptr<msg::Channel>>> copy;
    for (auto it = owners_.lower_bound({parent, 0}); it != owners_.end() && it->first.first == parent; ++it) {
      holders.insert(it->second);
      copy.emplace_back(it->first.second, it->second);
    }
    for (auto& [region, ch] : copy) {
      owners_[{child, region}] = ch;
      if (holding_.contains({parent, region})) holding_.insert({child, region});
    }
  }
  for (auto& ch : holders) {
    auto c = ch->Call(proto::kCopySpace, proto::EncodeFixed(proto::CopySpaceReq{parent, child}), timeout_);
    if (!c.ok()) return c.status();
    auto resp = proto::DecodeFixed<proto::FreedResp>(*c, "p2m.copy_space reply");
    if (resp.ok() && pages) *pages += resp->pages_freed;
  }
  return Status::Ok();
}

Status MemoryClient::DestroySpace(uint64_t space, uint64_t* freed) {
  std::set<std::shared_ptr<msg::Channel>> holders;
  {
    std::lock_guard lock(mu_);
    for (auto it = owners_.lower_bound({space, 0}); it != owners_.end() && it->first.first == space;) {
      holders.insert(it->second);
      it = owners_.erase(it);
    }
    for (auto it = holding_.lower_bound({space, 0}); it != holding_.end() && it->first == space;)
      it = holding_.erase(it);
  }
  Status first = Status::Ok();
  for (auto& ch : holders) {
    auto r = ch->Call(proto::kDestroySpace, proto::EncodeFixed(proto::DestroySpaceReq{space}), timeout_);
    if (!r.ok()) {
      if (first.ok()) first = r.status();
      continue;
    }
    auto resp = proto::DecodeFixed<proto::FreedResp>(*r, "p2m.freed");
    if (resp.ok() && freed) *freed += resp->pages_freed;
  }
  auto r = gm_->Call(proto::kReleaseSpace, proto::EncodeFixed(proto::ReleaseSpaceReq{space}), timeout_);
  if (!r.ok() && first.ok()) first = r.status();
  return first;
}

Status MemoryClient::DestroySpaceEverywhere(uint64_t space, uint64_t* freed) {
  auto list = gm_->Call(proto::kListMembers, {}, timeout_);
  if (!list.ok()) return list.status();
  auto members = proto::DecodeMemberList(*list);
  if (!members.ok()) return members.status();
  // An mmon the gm thinks dead may only be stopped, its pool intact: the space is not gone until it answers.
  std::string dead;
  size_t mmons = 0;
  for (const auto& m : *members) {
    if (m.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kMmon) ||
        m.fixed.state == static_cast<uint8_t>(proto::MemberState::kLeft))
      continue;  // an mmon that left cleanly took its pool with it
    ++mmons;
    if (m.fixed.state != static_cast<uint8_t>(proto::MemberState::kAlive)) {
      dead = fmt::format("{} ({})", m.name, m.listen_addr);
      continue;
    }
    auto addr = ParseHostPort(m.listen_addr);
    if (!addr.ok()) return addr.status();
    std::shared_ptr<msg::Channel> ch;
    {
      std::lock_guard lock(mu_);
      auto& c = channels_[m.listen_addr];
      if (!c) c = messenger_.ChannelTo(*addr, timeout_);
      ch = c;
    }
    auto r = ch->Call(proto::kDestroySpace, proto::EncodeFixed(proto::DestroySpaceReq{space}), timeout_);
    if (!r.ok()) return r.status();
    auto resp = proto::DecodeFixed<proto::FreedResp>(*r, "p2m.freed");
    if (resp.ok() && freed) *freed += resp->pages_freed;
  }
  if (!dead.empty())
    return Status(StatusCode::kPeerUnreachable,
                  fmt::format("memory monitor {} is dead, perhaps only stopped: waiting for it", dead));
  // A gm that has just restarted knows no member until they register again (within a heartbeat).
  if (mmons == 0) return Status(StatusCode::kPeerUnreachable, "the gm lists no memory monitor (yet)");
  auto r = gm_->Call(proto::kReleaseSpace, proto::EncodeFixed(proto::ReleaseSpaceReq{space}), timeout_);
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace lego::pmon
