// GmService's vNode half (LegoOS's GSM): vNode records, placement of their storage on smons and of their
// buffer cache on mmons. The table is durable (gm/vnode_table.h); smons are told to make or delete a
// vNode's namespace (G2S) before the table changes, so a failure leaves the table as it was.
#include <unistd.h>

#include <fmt/format.h>

#include "common/log.h"
#include "common/util.h"
#include "gm/gm_service.h"
#include "protocol/any.h"

namespace lego::gm {
namespace {

bool IsAlive(const proto::MemberRecord& m) {
  return m.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive);
}
bool IsKind(const proto::MemberRecord& m, proto::ComponentKind k) {
  return m.fixed.kind == static_cast<uint8_t>(k);
}
const proto::MemberRecord* FindByName(const std::vector<proto::MemberRecord>& members, proto::ComponentKind k,
                                      const std::string& name) {
  for (const auto& m : members)
    if (IsKind(m, k) && m.name == name) return &m;
  return nullptr;
}

}  // namespace

const proto::MemberRecord* GmService::PickCacheMmon(const std::vector<proto::MemberRecord>& members) {
  const proto::MemberRecord* best = nullptr;
  for (const auto& m : members) {
    if (!IsKind(m, proto::ComponentKind::kMmon) || !IsAlive(m)) continue;
    auto free_of = [](const proto::MemberRecord& x) {
      return x.fixed.capacity_bytes > x.fixed.used_bytes ? x.fixed.capacity_bytes - x.fixed.used_bytes : 0;
    };
    if (!best || free_of(m) > free_of(*best)) best = &m;
  }
  return best;
}

proto::VnodeRecord GmService::ToRecord(const VnodeEntry& e,
                                       const std::vector<proto::MemberRecord>& members) const {
  proto::VnodeRecord v;
  v.fixed.id = e.id;
  v.fixed.created_unix_ms = e.created_unix_ms;
  v.name = e.name;
  if (auto* s = FindByName(members, proto::ComponentKind::kSmon, e.smon_name)) {
    v.fixed.smon_id = s->fixed.id;
    v.fixed.smon_alive = IsAlive(*s) ? 1 : 0;
    v.smon_addr = s->listen_addr;
  }
  if (auto* m = FindByName(members, proto::ComponentKind::kMmon, e.cache_mmon_name)) {
    v.fixed.cache_mmon_id = m->fixed.id;
    v.fixed.mmon_alive = IsAlive(*m) ? 1 : 0;
    v.mmon_addr = m->listen_addr;
  }
  return v;
}

Status GmService::CallSmon(const proto::MemberRecord& smon, uint16_t opcode, uint32_t vnode) {
  auto& ch = smon_channels_[smon.listen_addr];
  if (!ch) {
    auto addr = ParseHostPort(smon.listen_addr);
    if (!addr.ok()) return addr.status();
    ch = messenger_.ChannelTo(addr.value(), kSmonCallTimeout);
  }
  auto reply = ch->Call(opcode, proto::EncodeFixed(proto::SmonVnodeReq{vnode, 0}), kSmonCallTimeout);
  if (!reply.ok()) {
    ch->Reset();
    return Status(reply.status().code(),
                  fmt::format("smon {} ({}): {}", smon.name, smon.listen_addr, reply.status().message()));
  }
  return Status::Ok();
}

Result<proto::VnodeRecord> GmService::CreateVnode(const proto::VnodeCreateReq& req) {
  LEGO_RETURN_IF_ERROR(proto::ValidateVnodeName(req.name));
  if (vnodes_->FindName(req.name))
    return Status(StatusCode::kAlreadyExists, fmt::format("vNode '{}' exists", req.name));
  auto members = table_.List(MonoMillis());
  const proto::MemberRecord* smon = nullptr;
  for (const auto& m : members) {
    if (!IsKind(m, proto::ComponentKind::kSmon)) continue;
    if (req.smon_id != 0) {
      if (m.fixed.id == req.smon_id) smon = &m;
      continue;
    }
    if (!IsAlive(m)) continue;
    if (!smon || vnodes_->CountOnSmon(m.name) < vnodes_->CountOnSmon(smon->name)) smon = &m;
  }
  if (!smon)
    return NotFound(req.smon_id ? fmt::format("no smon with id {}", req.smon_id)
                                : std::string("no storage monitor is alive"));
  if (!IsAlive(*smon)) return NotFound(fmt::format("smon {} is not alive", smon->fixed.id));
  const proto::MemberRecord* mmon = PickCacheMmon(members);
  // The id comes from the table, so the record is added first and taken back if the smon refuses (a gm
  // that dies in between keeps a vNode whose namespace the smon lacks; its requests get ENOENT until it is
  // removed). Ids are never reused, so a namespace an smon made for a failed create can never be taken for
  // another vNode's.
  auto entry = vnodes_->Add(req.name, smon->name, mmon ? mmon->name : "", WallMillis());
  if (!entry.ok()) return entry.status();
  if (Status st = CallSmon(*smon, proto::kSmonVnodeCreate, entry->id); !st.ok()) {
    (void)vnodes_->Remove(req.name);
    return st;
  }
  LEGO_LOG_INFO("vnode_created name={} id={} smon={} cache_mmon={}", req.name, entry->id, smon->name,
                mmon ? mmon->name : "none");
  return ToRecord(entry.value(), members);
}

Status GmService::RemoveVnode(const std::string& name) {
  auto e = vnodes_->FindName(name);
  if (!e) return NotFound(fmt::format("no vNode named '{}'", name));
  auto members = table_.List(MonoMillis());
  const auto* smon = FindByName(members, proto::ComponentKind::kSmon, e->smon_name);
  if (!smon || !IsAlive(*smon))
    return Status(
        StatusCode::kPeerUnreachable,
        fmt::format("smon '{}' keeping vNode '{}' is not alive; the vNode is kept", e->smon_name, name));
  LEGO_RETURN_IF_ERROR(CallSmon(*smon, proto::kSmonVnodeRemove, e->id));
  LEGO_RETURN_IF_ERROR(vnodes_->Remove(name));
  LEGO_LOG_INFO("vnode_removed name={} id={} smon={}", name, e->id, e->smon_name);
  return Status::Ok();
}

Result<proto::VnodeRecord> GmService::LookupVnode(const proto::VnodeLookupReq& req) {
  std::optional<VnodeEntry> e = req.id ? vnodes_->FindId(req.id) : vnodes_->FindName(req.name);
  if (!e && req.id == 0 && req.name == proto::kDefaultVnodeName &&
      (req.flags & proto::kVnodeLookupCreateDefault)) {
    auto created = CreateVnode({0, req.name});
    if (!created.ok()) return created.status();
    e = vnodes_->FindName(req.name);
  }
  if (!e)
    return NotFound(req.id ? fmt::format("no vNode with id {}", req.id)
                           : fmt::format("no vNode named '{}' (create it with `lego vnode create {}`)",
                                         req.name, req.name));
  auto members = table_.List(MonoMillis());
  // The buffer-cache home moves only when its mmon is gone: every pmon must use the same one.
  const auto* home = FindByName(members, proto::ComponentKind::kMmon, e->cache_mmon_name);
  if (!home || !IsAlive(*home)) {
    if (const auto* m = PickCacheMmon(members)) {
      LEGO_LOG_WARN("vnode_cache_moved name={} from={} to={}", e->name,
                    e->cache_mmon_name.empty() ? "none" : e->cache_mmon_name, m->name);
      LEGO_RETURN_IF_ERROR(vnodes_->SetCacheMmon(e->id, m->name));
      e->cache_mmon_name = m->name;
    }
  }
  return ToRecord(*e, members);
}

void GmService::InstallVnodeHandlers() {
  messenger_.Handle(proto::kVnodeCreate, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeVnodeCreateReq(in.payload);
    if (!req.ok()) return r.Error(req.status());
    ops_.Submit([this, req = std::move(req.value()), r = std::make_shared<msg::Responder>(std::move(r))] {
      auto v = CreateVnode(req);
      if (!v.ok()) {
        LEGO_LOG_INFO("vnode_create_refused name={} why=\"{}\"", req.name, v.status().message());
        return r->Error(v.status());
      }
      r->Reply(proto::EncodeVnodeRecord(v.value()));
    });
  });
  messenger_.Handle(proto::kVnodeList, [this](const msg::Incoming& in, msg::Responder r) {
    if (!in.payload.empty()) return r.Error(BadMessage("c2g.vnode_list takes no payload"));
    auto members = table_.List(MonoMillis());
    std::vector<proto::VnodeRecord> out;
    for (const auto& e : vnodes_->List()) out.push_back(ToRecord(e, members));
    r.Reply(proto::EncodeVnodeList(out));
  });
  messenger_.Handle(proto::kVnodeRemove, [this](const msg::Incoming& in, msg::Responder r) {
    proto::Reader rd(in.payload, "c2g.vnode_remove");
    std::string name;
    Status st = rd.GetString(&name, "name", proto::kMaxVnodeName);
    if (st.ok()) st = rd.Finish();
    if (!st.ok()) return r.Error(st);
    ops_.Submit([this, name, r = std::make_shared<msg::Responder>(std::move(r))] {
      Status st = RemoveVnode(name);
      if (!st.ok()) return r->Error(st);
      r->Reply();
    });
  });
  messenger_.Handle(proto::kVnodeLookup, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeVnodeLookupReq(in.payload);
    if (!req.ok()) return r.Error(req.status());
    ops_.Submit([this, req = std::move(req.value()), r = std::make_shared<msg::Responder>(std::move(r))] {
      auto v = LookupVnode(req);
      if (!v.ok()) return r->Error(v.status());
      r->Reply(proto::EncodeVnodeRecord(v.value()));
    });
  });
}

}  // namespace lego::gm
