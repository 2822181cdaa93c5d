#include "cli/vnode.h"

#include <unistd.h>

#include <charconv>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/run.h"
#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/vnode.h"

namespace lego::cli {
namespace {

using json = nlohmann::json;
constexpr msg::Millis kVnodeOpTimeout{30000};  // the gm waits up to 10 s for the smon

// Connects to the gm; prints the problem and returns nullptr on failure.
std::shared_ptr<msg::Channel> GmChannel(msg::Messenger& m, const QueryOptions& o, const char* cmd) {
  auto gm = ResolveGm(o, cmd, nullptr);
  if (!gm.ok()) {
    fmt::print(stderr, "lego {}: {}\n", cmd, gm.status().message());
    return nullptr;
  }
  auto ch = m.Connect(*gm, msg::Millis(o.timeout_ms));
  if (!ch.ok()) {
    fmt::print(stderr, "lego {}: cannot reach the global manager at {}: {}\n", cmd, gm->ToString(),
               ch.status().ToString());
    return nullptr;
  }
  return ch.value();
}

// The member id `smon` names: an id as written, or the id of the smon of that name (asked of the gm); 0 for
// "". Prints the problem and returns nullopt if there is none.
std::optional<uint32_t> SmonId(msg::Channel& gm, const QueryOptions& o, const std::string& smon) {
  if (smon.empty()) return 0;
  if (smon.find_first_not_of("0123456789") == std::string::npos) {  // all digits: an id
    uint32_t id = 0;
    auto [end, ec] = std::from_chars(smon.data(), smon.data() + smon.size(), id);
    if (ec != std::errc() || id == 0) {
      fmt::print(stderr, "lego vnode create: --smon {}: not a member id\n", smon);
      return std::nullopt;
    }
    return id;
  }
  auto members = ListMembers(gm, o.timeout_ms);
  if (!members.ok()) {
    fmt::print(stderr, "lego vnode create: cannot list the members: {}\n", members.status().message());
    return std::nullopt;
  }
  std::vector<std::string> smons;
  for (const auto& mem : *members) {
    if (mem.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kSmon)) continue;
    if (mem.name == smon) return mem.fixed.id;
    smons.push_back(mem.name.empty() ? fmt::format("id {}", mem.fixed.id) : mem.name);
  }
  fmt::print(stderr, "lego vnode create: --smon {}: no storage monitor of that name ({})\n", smon,
             smons.empty() ? "the gm lists none" : fmt::format("there are: {}", fmt::join(smons, ", ")));
  return std::nullopt;
}

}  // namespace

int VnodeCreateCommand(const QueryOptions& o, const std::string& name, const std::string& smon) {
  if (Status st = proto::ValidateVnodeName(name); !st.ok()) {
    fmt::print(stderr, "lego vnode create: {}\n", st.message());
    return 2;
  }
  auto m = MakeCliMessenger();
  if (!m.ok()) return fmt::print(stderr, "lego vnode create: {}\n", m.status().ToString()), 1;
  auto gm = GmChannel(**m, o, "vnode create");
  if (!gm) return 1;
  const std::optional<uint32_t> smon_id = SmonId(*gm, o, smon);
  if (!smon_id) return 1;
  auto r = gm->Call(proto::kVnodeCreate, proto::EncodeVnodeCreateReq({*smon_id, name}), kVnodeOpTimeout);
  if (!r.ok()) return fmt::print(stderr, "lego vnode create: {}\n", r.status().message()), 1;
  auto v = proto::DecodeVnodeRecord(*r);
  if (!v.ok()) return fmt::print(stderr, "lego vnode create: {}\n", v.status().message()), 1;
  fmt::print("lego vnode create: vNode '{}' (id {}) on smon {} ({}), buffer cache on mmon {}\n", v->name,
             v->fixed.id, v->fixed.smon_id, v->smon_addr, v->fixed.cache_mmon_id);
  return 0;
}

int VnodeListCommand(const QueryOptions& o) {
  auto m = MakeCliMessenger();
  if (!m.ok()) return fmt::print(stderr, "lego vnode ls: {}\n", m.status().ToString()), 1;
  auto gm = GmChannel(**m, o, "vnode ls");
  if (!gm) return 1;
  auto r = gm->Call(proto::kVnodeList, {}, msg::Millis(o.timeout_ms));
  if (!r.ok()) return fmt::print(stderr, "lego vnode ls: {}\n", r.status().message()), 1;
  auto list = proto::DecodeVnodeList(*r);
  if (!list.ok()) return fmt::print(stderr, "lego vnode ls: {}\n", list.status().message()), 1;
  // Processes per vNode, from the process monitors (best effort: a dead pmon runs nothing).
  std::map<uint32_t, int> procs;
  std::vector<PmonFailure> failures;
  if (auto ps = ListProcesses(**m, o, false, &failures); ps.ok())
    for (const auto& p : *ps) procs[p.fixed.vnode]++;
  for (const auto& f : failures)
    fmt::print(stderr, "lego vnode ls: {}: its processes are not counted\n", f.Describe());
  if (o.json) {
    json j = json::array();
    for (const auto& v : *list)
      j.push_back({{"id", v.fixed.id},
                   {"name", v.name},
                   {"smon_id", v.fixed.smon_id},
                   {"smon_addr", v.smon_addr},
                   {"smon_alive", v.fixed.smon_alive != 0},
                   {"cache_mmon_id", v.fixed.cache_mmon_id},
                   {"cache_mmon_alive", v.fixed.mmon_alive != 0},
                   {"processes", procs[v.fixed.id]},
                   {"created_unix_ms", v.fixed.created_unix_ms}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  if (list->empty()) {
    fmt::print("no vNodes (`lego vnode create NAME` makes one; `lego run` uses 'default')\n");
    return 0;
  }
  fmt::print("{:<4} {:<20} {:<24} {:<16} {}\n", "ID", "NAME", "SMON", "CACHE MMON", "PROCESSES");
  for (const auto& v : *list) {
    std::string smon = v.fixed.smon_id ? fmt::format("{} {}{}", v.fixed.smon_id, v.smon_addr,
                                                     v.fixed.smon_alive ? "" : " (dead)")
                                       : "(unknown)";
    std::string mmon = v.fixed.cache_mmon_id
                           ? fmt::format("{}{}", v.fixed.cache_mmon_id, v.fixed.mmon_alive ? "" : " (dead)")
                           : "-";
    fmt::print("{:<4} {:<20} {:<24} {:<16} {}\n", v.fixed.id, v.name, smon, mmon, procs[v.fixed.id]);
  }
  return 0;
}

int VnodeRemoveCommand(const QueryOptions& o, const std::string& name, bool force) {
  auto m = MakeCliMessenger();
  if (!m.ok()) return fmt::print(stderr, "lego vnode rm: {}\n", m.status().ToString()), 1;
  auto gm = GmChannel(**m, o, "vnode rm");
  if (!gm) return 1;
  auto look = gm->Call(proto::kVnodeLookup, proto::EncodeVnodeLookupReq({0, 0, name}), kVnodeOpTimeout);
  if (!look.ok()) return fmt::print(stderr, "lego vnode rm: {}\n", look.status().message()), 1;
  auto v = proto::DecodeVnodeRecord(*look);
  if (!v.ok()) return fmt::print(stderr, "lego vnode rm: {}\n", v.status().message()), 1;
  std::vector<PmonFailure> failures;
  auto ps = ListProcesses(**m, o, false, &failures);
  if (ps.ok() && !failures.empty()) {
    // A pmon that cannot be asked may run processes in the vNode: not knowing is not "none".
    for (const auto& f : failures) fmt::print(stderr, "lego vnode rm: {}\n", f.Describe());
    ps = Status(StatusCode::kPeerUnreachable,
                fmt::format("{} process monitor(s) could not be asked{}", failures.size(),
                            force ? "" : " (--force removes the vNode anyway)"));
  }
  if (!ps.ok()) {
    fmt::print(stderr, "lego vnode rm: cannot list the processes running in '{}': {}\n", name,
               ps.status().message());
    if (!force) return 1;
  } else {
    std::vector<std::string> running;
    for (const auto& p : *ps)
      if (p.fixed.vnode == v->fixed.id) running.push_back(fmt::format("{} ({})", p.fixed.pid, p.comm));
    if (!running.empty() && !force) {
      fmt::print(stderr,
                 "lego vnode rm: {} process(es) run in vNode '{}': {}. Stop them, or pass --force (their "
                 "files disappear under them)\n",
                 running.size(), name, fmt::join(running, ", "));
      return 1;
    }
  }
  auto r = gm->Call(
      proto::kVnodeRemove,
      [&] {
        proto::Writer w;
        w.PutString(name);
        return w.Take();
      }(),
      kVnodeOpTimeout);
  if (!r.ok()) return fmt::print(stderr, "lego vnode rm: {}\n", r.status().message()), 1;
  // The pmons that mounted it unmount it (best effort: a dead pmon has no mount to worry about).
  if (auto pmons = AliveMembers(**m, o, proto::ComponentKind::kPmon, "vnode rm"); pmons.ok()) {
    for (const auto& p : *pmons) {
      auto hp = ParseHostPort(p.listen_addr);
      if (!hp.ok()) continue;
      auto ch = (*m)->Connect(*hp, msg::Millis(o.timeout_ms));
      if (!ch.ok()) continue;
      auto d = (*ch)->Call(proto::kDetachVnode, proto::EncodeFixed(proto::DetachVnodeReq{v->fixed.id, 0}),
                           kVnodeOpTimeout);
      if (!d.ok())
        fmt::print(stderr, "lego vnode rm: pmon {} did not unmount it: {}\n", p.name, d.status().message());
    }
  }
  fmt::print("lego vnode rm: removed vNode '{}' (id {}) and its files\n", name, v->fixed.id);
  return 0;
}

Result<proto::AttachVnodeResp> AttachVnode(msg::Messenger& m, const QueryOptions& o, const std::string& job,
                                           const std::string& vnode, const std::string& pmon) {
  auto pmons = AliveMembers(m, o, proto::ComponentKind::kPmon, "run");
  if (!pmons.ok()) return pmons.status();
  for (const auto& mem : *pmons) {
    if (!pmon.empty() && mem.name != pmon) continue;
    auto hp = ParseHostPort(mem.listen_addr);
    if (!hp.ok()) continue;
    auto ch = m.Connect(*hp, msg::Millis(o.timeout_ms));
    if (!ch.ok()) return ch.status();
    auto r = (*ch)->Call(proto::kAttachVnode,
                         proto::EncodeAttachVnodeReq({static_cast<uint32_t>(getpid()), job, vnode}),
                         kVnodeOpTimeout);
    if (!r.ok()) return r.status();
    return proto::DecodeAttachVnodeResp(*r);
  }
  return NotFound(pmon.empty() ? std::string("no process monitor is alive")
                               : fmt::format("no alive process monitor named '{}'", pmon));
}

}  // namespace lego::cli
