#include "protocol/vnode.h"

#include <fmt/format.h>

namespace lego::proto {
namespace {

Status GetRecord(Reader& r, VnodeRecord* v) {
  LEGO_RETURN_IF_ERROR(r.Get(&v->fixed, "fixed"));
  LEGO_RETURN_IF_ERROR(r.GetString(&v->name, "name", kMaxVnodeName));
  LEGO_RETURN_IF_ERROR(r.GetString(&v->smon_addr, "smon_addr", 256));
  LEGO_RETURN_IF_ERROR(r.GetString(&v->mmon_addr, "mmon_addr", 256));
  if (v->fixed.id == 0) return BadMessage("vnode record: id 0");
  if (Status st = ValidateVnodeName(v->name); !st.ok()) return BadMessage("vnode record: " + st.message());
  return Status::Ok();
}

void PutRecord(Writer& w, const VnodeRecord& v) {
  w.Put(v.fixed);
  w.PutString(v.name);
  w.PutString(v.smon_addr);
  w.PutString(v.mmon_addr);
}

}  // namespace

Status ValidateVnodeName(std::string_view name) {
  if (name.empty() || name.size() > kMaxVnodeName)
    return InvalidArgument(fmt::format("vNode name must be 1 to {} characters", kMaxVnodeName));
  if (name.front() == '.' || name.front() == '-')
    return InvalidArgument(fmt::format("vNode name '{}' must not start with '.' or '-'", name));
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok)
      return InvalidArgument(fmt::format("vNode name may contain only letters, digits, '.', '_' and '-'"));
  }
  return Status::Ok();
}

Bytes EncodeVnodeRecord(const VnodeRecord& v) {
  Writer w;
  PutRecord(w, v);
  return w.Take();
}

Result<VnodeRecord> DecodeVnodeRecord(std::span<const uint8_t> payload) {
  Reader r(payload, "vnode record");
  VnodeRecord v;
  LEGO_RETURN_IF_ERROR(GetRecord(r, &v));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return v;
}

Bytes EncodeVnodeCreateReq(const VnodeCreateReq& m) {
  Writer w;
  w.Put(m.smon_id);
  w.Put(uint32_t{0});
  w.PutString(m.name);
  return w.Take();
}

Result<VnodeCreateReq> DecodeVnodeCreateReq(std::span<const uint8_t> payload) {
  Reader r(payload, "c2g.vnode_create");
  VnodeCreateReq m;
  uint32_t reserved = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&m.smon_id, "smon_id"));
  LEGO_RETURN_IF_ERROR(r.Get(&reserved, "reserved"));
  if (reserved != 0) return BadMessage("c2g.vnode_create: reserved is not 0");
  LEGO_RETURN_IF_ERROR(r.GetString(&m.name, "name", kMaxVnodeName));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return m;
}

Bytes EncodeVnodeList(const std::vector<VnodeRecord>& list) {
  Writer w;
  w.Put(static_cast<uint32_t>(list.size()));
  for (const auto& v : list) PutRecord(w, v);
  return w.Take();
}

Result<std::vector<VnodeRecord>> DecodeVnodeList(std::span<const uint8_t> payload) {
  Reader r(payload, "c2g.vnode_list reply");
  uint32_t count = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&count, "count"));
  // A record takes at least sizeof(VnodeFixed) + 3 length prefixes.
  if (count > kMaxVnodes || count > r.remaining() / (sizeof(VnodeFixed) + 6))
    return BadMessage(fmt::format("c2g.vnode_list reply: count {} does not fit", count));
  std::vector<VnodeRecord> out(count);
  for (auto& v : out) LEGO_RETURN_IF_ERROR(GetRecord(r, &v));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return out;
}

Bytes EncodeVnodeLookupReq(const VnodeLookupReq& m) {
  Writer w;
  w.Put(m.id);
  w.Put(m.flags);
  w.PutString(m.name);
  return w.Take();
}

Result<VnodeLookupReq> DecodeVnodeLookupReq(std::span<const uint8_t> payload) {
  Reader r(payload, "c2g.vnode_lookup");
  VnodeLookupReq m;
  LEGO_RETURN_IF_ERROR(r.Get(&m.id, "id"));
  LEGO_RETURN_IF_ERROR(r.Get(&m.flags, "flags"));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.name, "name", kMaxVnodeName));
  LEGO_RETURN_IF_ERROR(r.Finish());
  if (m.id == 0 && m.name.empty()) return BadMessage("c2g.vnode_lookup: neither id nor name");
  return m;
}

}  // namespace lego::proto
