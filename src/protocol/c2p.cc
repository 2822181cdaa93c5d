#include "protocol/c2p.h"

#include <fmt/format.h>

namespace lego::proto {

Bytes EncodeProcessList(const std::vector<ProcessRecord>& procs) {
  Writer w;
  w.Put(static_cast<uint32_t>(procs.size()));
  for (const auto& p : procs) {
    w.Put(p.fixed);
    w.PutString(p.comm);
    w.PutString(p.job);
    w.PutString(std::string_view(p.killed_why).substr(0, kMaxKilledWhy));
  }
  return w.Take();
}

Result<std::vector<ProcessRecord>> DecodeProcessList(std::span<const uint8_t> payload) {
  Reader r(payload, "c2p.list_processes reply");
  uint32_t n = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&n, "count"));
  if (n > kMaxProcesses || n > r.remaining() / (sizeof(ProcessFixed) + 6))
    return Status(StatusCode::kBadMessage, fmt::format("c2p.list_processes reply: count {} too large", n));
  std::vector<ProcessRecord> out(n);
  for (auto& p : out) {
    LEGO_RETURN_IF_ERROR(r.Get(&p.fixed, "process"));
    LEGO_RETURN_IF_ERROR(r.GetString(&p.comm, "comm", 256));
    LEGO_RETURN_IF_ERROR(r.GetString(&p.job, "job", 256));
    LEGO_RETURN_IF_ERROR(r.GetString(&p.killed_why, "killed_why", kMaxKilledWhy));
  }
  LEGO_RETURN_IF_ERROR(r.Finish());
  return out;
}

Bytes EncodeAttachVnodeReq(const AttachVnodeReq& m) {
  Writer w;
  w.Put(m.pid);
  w.Put(uint32_t{0});
  w.PutString(m.job);
  w.PutString(m.vnode);
  return w.Take();
}

Result<AttachVnodeReq> DecodeAttachVnodeReq(std::span<const uint8_t> payload) {
  Reader r(payload, "c2p.attach_vnode");
  AttachVnodeReq m;
  uint32_t reserved = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&m.pid, "pid"));
  LEGO_RETURN_IF_ERROR(r.Get(&reserved, "reserved"));
  if (reserved != 0) return BadMessage("c2p.attach_vnode: reserved is not 0");
  LEGO_RETURN_IF_ERROR(r.GetString(&m.job, "job", 31));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.vnode, "vnode", 64));
  LEGO_RETURN_IF_ERROR(r.Finish());
  if (m.job.empty()) return BadMessage("c2p.attach_vnode: empty job");
  return m;
}

Bytes EncodeAttachVnodeResp(const AttachVnodeResp& m) {
  Writer w;
  w.Put(AttachVnodeFixed{m.vnode, 0});
  w.PutString(m.name);
  w.PutString(m.mountpoint);
  return w.Take();
}

Result<AttachVnodeResp> DecodeAttachVnodeResp(std::span<const uint8_t> payload) {
  Reader r(payload, "c2p.attach_vnode reply");
  AttachVnodeFixed f{};
  AttachVnodeResp m;
  LEGO_RETURN_IF_ERROR(r.Get(&f, "fixed"));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.name, "name", 64));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.mountpoint, "mountpoint"));
  LEGO_RETURN_IF_ERROR(r.Finish());
  if (f.reserved != 0) return BadMessage("c2p.attach_vnode reply: reserved is not 0");
  if (f.vnode == 0 || m.mountpoint.empty() || m.mountpoint.front() != '/')
    return BadMessage("c2p.attach_vnode reply: no vnode or mountpoint");
  m.vnode = f.vnode;
  return m;
}

}  // namespace lego::proto
