#include <cstring>

#include <fmt/format.h>

#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/wire.h"

namespace lego::proto {

std::string_view OpcodeName(uint16_t opcode) {
  switch (opcode) {
    case kHello:
      return "any.hello";
    case kPing:
      return "any.ping";
    case kGetStats:
      return "any.get_stats";
    case kEcho:
      return "any.echo";
    case kEchoSized:
      return "any.echo_sized";
    case kRegister:
      return "x2g.register";
    case kHeartbeat:
      return "x2g.heartbeat";
    case kDeregister:
      return "x2g.deregister";
    case kForkSpace:
      return "x2g.fork_space";
    case kCopySpace:
      return "p2m.copy_space";
    case kListMembers:
      return "c2g.list_members";
    case kWritePages:
      return "p2m.write_pages";
    case kReadPages:
      return "p2m.read_pages";
    case kFreeRange:
      return "p2m.free_range";
    case kDestroySpace:
      return "p2m.destroy_space";
    case kListProcesses:
      return "c2p.list_processes";
    case kAttachVnode:
      return "c2p.attach_vnode";
    case kDetachVnode:
      return "c2p.detach_vnode";
    case kVnodeCreate:
      return "c2g.vnode_create";
    case kVnodeList:
      return "c2g.vnode_list";
    case kVnodeRemove:
      return "c2g.vnode_remove";
    case kVnodeLookup:
      return "c2g.vnode_lookup";
    case kSmonVnodeCreate:
      return "g2s.vnode_create";
    case kSmonVnodeRemove:
      return "g2s.vnode_remove";
    case kAssignRegion:
      return "x2g.assign_region";
    case kReleaseSpace:
      return "x2g.release_space";
    case kReleaseTaggedSpaces:
      return "c2g.release_tagged_spaces";
    case kDestroyTaggedSpaces:
      return "p2m.destroy_tagged_spaces";
  }
  if (opcode >= kFsGetattr && opcode < kFsGetattr + 12) {
    static constexpr std::string_view kFsNames[] = {"fs.getattr", "fs.create",  "fs.read",  "fs.write",
                                                    "fs.setattr", "fs.readdir", "fs.mkdir", "fs.rmdir",
                                                    "fs.unlink",  "fs.rename",  "fs.fsync", "fs.statfs"};
    return kFsNames[opcode - kFsGetattr];
  }
  return "unknown";
}

std::string_view ComponentKindName(ComponentKind k) {
  switch (k) {
    case ComponentKind::kGm:
      return "gm";
    case ComponentKind::kPmon:
      return "pmon";
    case ComponentKind::kMmon:
      return "mmon";
    case ComponentKind::kSmon:
      return "smon";
    case ComponentKind::kUnknown:
      break;
  }
  return "unknown";
}

bool ParseComponentKind(std::string_view s, ComponentKind* out) {
  for (auto k : {ComponentKind::kGm, ComponentKind::kPmon, ComponentKind::kMmon, ComponentKind::kSmon}) {
    if (s == ComponentKindName(k)) {
      *out = k;
      return true;
    }
  }
  return false;
}

std::string_view MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return "alive";
    case MemberState::kDead:
      return "dead";
    case MemberState::kLeft:
      return "left";
  }
  return "unknown";
}

Bytes EncodeStats(const std::vector<StatsEntry>& stats) {
  Writer w;
  w.Put(static_cast<uint32_t>(stats.size()));
  for (const auto& s : stats) {
    w.PutString(s.name);
    w.Put(s.value);
  }
  return w.Take();
}

Result<std::vector<StatsEntry>> DecodeStats(std::span<const uint8_t> payload) {
  Reader r(payload, "any.get_stats reply");
  uint32_t n = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&n, "count"));
  // Each entry is at least 2 + 8 bytes: a count larger than that is a lie, refuse before allocating.
  if (n > r.remaining() / 10) return BadMessage(fmt::format("any.get_stats reply: count {} too large", n));
  std::vector<StatsEntry> out(n);
  for (auto& e : out) {
    LEGO_RETURN_IF_ERROR(r.GetString(&e.name, "name"));
    LEGO_RETURN_IF_ERROR(r.Get(&e.value, "value"));
  }
  LEGO_RETURN_IF_ERROR(r.Finish());
  return out;
}

Bytes EncodeRegisterReq(const RegisterReq& m) {
  Writer w;
  w.Put(m.fixed);
  w.PutString(m.listen_addr);
  w.PutString(m.name);
  return w.Take();
}

Result<RegisterReq> DecodeRegisterReq(std::span<const uint8_t> payload) {
  Reader r(payload, "x2g.register");
  RegisterReq m;
  LEGO_RETURN_IF_ERROR(r.Get(&m.fixed, "fixed"));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.listen_addr, "listen_addr", 256));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.name, "name", 256));
  LEGO_RETURN_IF_ERROR(r.Finish());
  auto kind = static_cast<ComponentKind>(m.fixed.kind);
  if (kind != ComponentKind::kPmon && kind != ComponentKind::kMmon && kind != ComponentKind::kSmon)
    return BadMessage(fmt::format("x2g.register: kind {} cannot register", m.fixed.kind));
  if (m.listen_addr.empty()) return BadMessage("x2g.register: empty listen_addr");
  return m;
}

Bytes EncodeMemberList(const std::vector<MemberRecord>& members) {
  Writer w;
  w.Put(static_cast<uint32_t>(members.size()));
  for (const auto& m : members) {
    w.Put(m.fixed);
    w.PutString(m.listen_addr);
    w.PutString(m.name);
  }
  return w.Take();
}

Result<std::vector<MemberRecord>> DecodeMemberList(std::span<const uint8_t> payload) {
  Reader r(payload, "c2g.list_members reply");
  uint32_t n = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&n, "count"));
  if (n > kMaxMembers || n > r.remaining() / (sizeof(MemberFixed) + 4))
    return BadMessage(fmt::format("c2g.list_members reply: count {} too large", n));
  std::vector<MemberRecord> out(n);
  for (auto& m : out) {
    LEGO_RETURN_IF_ERROR(r.Get(&m.fixed, "member"));
    LEGO_RETURN_IF_ERROR(r.GetString(&m.listen_addr, "listen_addr", 256));
    LEGO_RETURN_IF_ERROR(r.GetString(&m.name, "name", 256));
  }
  LEGO_RETURN_IF_ERROR(r.Finish());
  return out;
}

Bytes EncodeAssignRegionResp(const AssignRegionResp& m) {
  Writer w;
  w.Put(m.mmon_id);
  w.Put(m.reserved);
  w.PutString(m.mmon_addr);
  return w.Take();
}

Result<AssignRegionResp> DecodeAssignRegionResp(std::span<const uint8_t> payload) {
  Reader r(payload, "x2g.assign_region reply");
  AssignRegionResp m;
  LEGO_RETURN_IF_ERROR(r.Get(&m.mmon_id, "mmon_id"));
  LEGO_RETURN_IF_ERROR(r.Get(&m.reserved, "reserved"));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.mmon_addr, "mmon_addr", 256));
  LEGO_RETURN_IF_ERROR(r.Finish());
  if (m.mmon_addr.empty()) return BadMessage("x2g.assign_region reply: empty mmon_addr");
  return m;
}

HeaderCheck ValidateHeader(std::span<const uint8_t> am_header, size_t payload_arrived, uint32_t max_payload) {
  HeaderCheck c;
  if (am_header.size() != sizeof(MsgHeader)) {
    c.problem = fmt::format("header of {} bytes, want {}", am_header.size(), sizeof(MsgHeader));
    return c;
  }
  std::memcpy(&c.hdr, am_header.data(), sizeof(MsgHeader));
  if (c.hdr.magic != kMagic) {
    c.problem = fmt::format("bad magic {:#x}", c.hdr.magic);
    return c;
  }
  c.verdict = HeaderVerdict::kReject;
  auto kind = static_cast<MsgKind>(c.hdr.kind);
  if (c.hdr.version != kProtocolVersion) {
    c.code = StatusCode::kVersionMismatch;
    c.problem =
        fmt::format("message of protocol v{}, this endpoint speaks v{}", c.hdr.version, kProtocolVersion);
  } else if (kind != MsgKind::kRequest && kind != MsgKind::kReply && kind != MsgKind::kOneWay) {
    c.problem = fmt::format("unknown message kind {}", c.hdr.kind);
  } else if (payload_arrived > max_payload) {
    c.problem = fmt::format("payload of {} bytes exceeds the {} byte limit", payload_arrived, max_payload);
  } else if (c.hdr.payload_len != payload_arrived) {
    c.problem = fmt::format("header says {} payload bytes, {} arrived", c.hdr.payload_len, payload_arrived);
  } else if (kind == MsgKind::kOneWay && c.hdr.request_id != 0) {
    c.problem = "one-way message carries a request id";
  } else {
    c.verdict = HeaderVerdict::kAccept;
    c.code = StatusCode::kOk;
  }
  return c;
}

StatusCode ReplyStatus(int32_t wire_status) {
  if (wire_status < 0 || wire_status > static_cast<int32_t>(StatusCode::kBusy))
    return StatusCode::kBadMessage;
  return static_cast<StatusCode>(wire_status);
}

}  // namespace lego::proto
