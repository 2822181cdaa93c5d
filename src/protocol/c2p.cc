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
  }
  return w.Take();
}

Result<std::vector<ProcessRecord>> DecodeProcessList(std::span<const uint8_t> payload) {
  Reader r(payload, "c2p.list_processes reply");
  uint32_t n = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&n, "count"));
  if (n > kMaxProcesses || n > r.remaining() / (sizeof(ProcessFixed) + 4))
    return Status(StatusCode::kBadMessage, fmt::format("c2p.list_processes reply: count {} too large", n));
  std::vector<ProcessRecord> out(n);
  for (auto& p : out) {
    LEGO_RETURN_IF_ERROR(r.Get(&p.fixed, "process"));
    LEGO_RETURN_IF_ERROR(r.GetString(&p.comm, "comm", 256));
    LEGO_RETURN_IF_ERROR(r.GetString(&p.job, "job", 256));
  }
  LEGO_RETURN_IF_ERROR(r.Finish());
  return out;
}

}  // namespace lego::proto
