#include "gm/gm_service.h"

#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/any.h"
#include "protocol/p2m.h"

namespace lego::gm {

GmService::GmService(msg::Messenger& messenger, Metrics& metrics, MembershipOptions options, GmSelf self,
                     PlacementPolicy placement, std::unique_ptr<VnodeTable> vnodes)
    : messenger_(messenger),
      table_(options),
      regions_(placement),
      self_(std::move(self)),
      started_wall_ms_(WallMillis()),
      started_mono_ms_(MonoMillis()),
      settle_ms_(int64_t{options.heartbeat_interval_ms} * (options.heartbeat_misses + 1)),
      g_alive_(metrics.Gauge("lego_gm_members_alive", "Members currently alive")),
      c_deaths_(
          metrics.Counter("lego_gm_member_deaths_total", "Members marked dead after missed heartbeats")),
      c_registrations_(metrics.Counter("lego_gm_registrations_total", "Registrations, including rejoins")),
      c_regions_assigned_(metrics.Counter("lego_gm_region_lookups_total", "vRegion owner lookups (GMM)")),
      c_regions_reassigned_(metrics.Counter("lego_gm_regions_reassigned_total",
                                            "vRegions moved off a dead mmon that held none of their pages")),
      c_region_refusals_(
          metrics.Counter("lego_gm_region_refusals_total", "vRegions refused: every mmon full")),
      vnodes_(std::move(vnodes)) {}

GmService::~GmService() { Stop(); }

void GmService::InstallHandlers() {
  messenger_.Handle(proto::kRegister, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeRegisterReq(in.payload);
    if (!req.ok()) {
      LEGO_LOG_RATELIMITED("bad_register conn={} why=\"{}\"", in.conn_id, req.status().message());
      return r.Error(req.status());
    }
    auto resp = table_.Register(req.value(), MonoMillis(), WallMillis());
    c_registrations_.Increment();
    g_alive_.Set(static_cast<double>(table_.CountAlive()));
    r.Reply(proto::EncodeFixed(resp));
  });
  messenger_.Handle(proto::kHeartbeat, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::HeartbeatReq>(in.payload, "x2g.heartbeat");
    if (!req.ok()) return r.Error(req.status());
    Status st = table_.Heartbeat(req.value(), MonoMillis());
    if (!st.ok()) return r.Error(st);
    r.Reply();
  });
  messenger_.Handle(proto::kDeregister, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::DeregisterReq>(in.payload, "x2g.deregister");
    if (!req.ok()) return r.Error(req.status());
    Status st = table_.Deregister(req.value());
    if (!st.ok()) return r.Error(st);
    g_alive_.Set(static_cast<double>(table_.CountAlive()));
    r.Reply();
  });
  messenger_.Handle(proto::kListMembers, [this](const msg::Incoming& in, msg::Responder r) {
    if (!in.payload.empty()) return r.Error(BadMessage("c2g.list_members takes no payload"));
    // The gm lists itself first, as member 0.
    std::vector<proto::MemberRecord> list;
    proto::MemberRecord self;
    self.fixed.id = 0;
    self.fixed.kind = static_cast<uint8_t>(proto::ComponentKind::kGm);
    self.fixed.state = static_cast<uint8_t>(proto::MemberState::kAlive);
    self.fixed.metrics_port = self_.metrics_port;
    self.fixed.pid = static_cast<uint32_t>(getpid());
    self.fixed.incarnation = self_.incarnation;
    self.fixed.joined_unix_ms = started_wall_ms_;
    self.listen_addr = self_.listen_addr;
    self.name = "gm";
    list.push_back(std::move(self));
    auto members = table_.List(MonoMillis());
    list.insert(list.end(), members.begin(), members.end());
    r.Reply(proto::EncodeMemberList(list));
  });
  InstallMemoryHandlers();
  if (vnodes_) InstallVnodeHandlers();
}

Status GmService::SettleRefusal(const char* what) const {
  const int64_t age = MonoMillis() - started_mono_ms_;
  if (self_.incarnation <= 1 || age >= settle_ms_) return Status::Ok();
  return Status(StatusCode::kBusy, fmt::format("the gm restarted {} ms ago and may not know every memory "
                                               "monitor yet: {} in {} ms",
                                               age, what, settle_ms_ - age));
}

void GmService::InstallMemoryHandlers() {
  messenger_.Handle(proto::kAssignRegion, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::AssignRegionReq>(in.payload, "x2g.assign_region");
    if (!req.ok()) return r.Error(req.status());
    std::vector<MmonView> mmons;
    std::map<uint32_t, std::string> addrs;
    for (const auto& m : table_.List(MonoMillis())) {
      if (m.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kMmon)) continue;
      mmons.push_back({m.fixed.id, m.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive),
                       m.fixed.capacity_bytes, m.fixed.used_bytes});
      addrs[m.fixed.id] = m.listen_addr;
    }
    bool replaced = false;
    auto owner = regions_.Assign(req->space, req->region, mmons, &replaced);
    if (replaced) c_regions_reassigned_.Increment();
    if (!owner.ok()) {
      c_region_refusals_.Increment();
      LEGO_LOG_RATELIMITED("region_refused space={:#x} region={} why=\"{}\"", req->space, req->region,
                           owner.status().message());
      return r.Error(owner.status());
    }
    c_regions_assigned_.Increment();
    r.Reply(proto::EncodeAssignRegionResp({owner.value(), 0, addrs[owner.value()]}));
  });
  messenger_.Handle(proto::kReleaseSpace, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::ReleaseSpaceReq>(in.payload, "x2g.release_space");
    if (!req.ok()) return r.Error(req.status());
    if (Status busy = SettleRefusal("release the space again"); !busy.ok()) {
      LEGO_LOG_INFO("release_space_deferred space={:#x}: {}", req->space, busy.message());
      return r.Error(busy);
    }
    regions_.ReleaseSpace(req->space);
    r.Reply();
  });
  messenger_.Handle(proto::kReleaseTaggedSpaces, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::TaggedSpacesReq>(in.payload, "c2g.release_tagged_spaces");
    if (!req.ok()) return r.Error(req.status());
    if (Status st = proto::CheckTaggedSpacesReq(*req, "c2g.release_tagged_spaces"); !st.ok())
      return r.Error(st);
    // As for x2g.release_space: the caller is about to free on the mmons this gm lists.
    if (Status busy = SettleRefusal("try again"); !busy.ok()) return r.Error(busy);
    // The CLI checks too, before and after; the mmons trust their caller (as for p2m.destroy_space).
    for (const auto& m : table_.List(MonoMillis()))
      if (m.fixed.kind == static_cast<uint8_t>(proto::ComponentKind::kPmon) &&
          m.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive) &&
          proto::PmonTag(m.name) == req->tag)
        return r.Error(InvalidArgument(
            fmt::format("process monitor {} is alive and its address spaces carry tag {:#x}: they are in use",
                        m.name, req->tag)));
    const size_t regions = regions_.ReleaseTaggedSpaces(req->tag);
    LEGO_LOG_INFO("tagged_spaces_released tag={:#x} regions={}", req->tag, regions);
    r.Reply();
  });
  messenger_.Handle(proto::kForkSpace, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::ForkSpaceReq>(in.payload, "x2g.fork_space");
    if (!req.ok()) return r.Error(req.status());
    regions_.ForkSpace(req->parent, req->child);
    r.Reply();
  });
}

void GmService::Start() {
  checker_ = std::thread([this] { CheckerLoop(); });
}

void GmService::Stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (checker_.joinable()) checker_.join();
  ops_.Stop();
}

void GmService::CheckerLoop() {
  const auto period =
      std::chrono::milliseconds(std::max<uint32_t>(table_.options().heartbeat_interval_ms / 2, 10));
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
    auto died = table_.CheckLiveness(MonoMillis());
    if (!died.empty()) {
      c_deaths_.Increment(static_cast<double>(died.size()));
      g_alive_.Set(static_cast<double>(table_.CountAlive()));
    }
  }
}

}  // namespace lego::gm
