#include "cli/commands.h"

#include <unistd.h>

#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/local_cluster.h"
#include "protocol/any.h"
#include "protocol/p2m.h"

namespace lego::cli {

using json = nlohmann::json;

Result<std::unique_ptr<msg::Messenger>> MakeCliMessenger() {
  msg::MessengerOptions o;
  o.name = "lego-cli";
  o.spin_us = 20;
  auto m = msg::Messenger::Create(o);
  if (!m.ok()) return m.status();
  LEGO_RETURN_IF_ERROR(m.value()->Start());
  return m;
}

Result<std::vector<proto::MemberRecord>> ListMembers(msg::Channel& gm, int timeout_ms) {
  auto r = gm.Call(proto::kListMembers, {}, msg::Millis(timeout_ms));
  if (!r.ok()) return r.status();
  return proto::DecodeMemberList(r.value());
}

Result<std::vector<proto::MemberRecord>> ListMembers(msg::Messenger& m, const HostPort& gm, int timeout_ms) {
  auto ch = m.Connect(gm, msg::Millis(timeout_ms));
  if (!ch.ok()) return ch.status();
  return ListMembers(**ch, timeout_ms);
}

// Finds the gm address (flag, else state dir) and explains failures in the user's terms.
Result<HostPort> ResolveGm(const QueryOptions& o, const char* cmd, ClusterState* state_out) {
  std::string addr = o.gm;
  if (addr.empty()) {
    auto s = ReadState(o.state_dir);
    if (!s.ok()) {
      if (s.status().code() == StatusCode::kNotFound)
        return NotFound(
            fmt::format("no cluster is up (state dir {}). Start one with `lego up`, or pass --gm HOST:PORT",
                        o.state_dir));
      return s.status();
    }
    addr = s->gm_addr;
    if (state_out) *state_out = s.value();
  }
  auto hp = ParseHostPort(addr);
  if (!hp.ok()) return InvalidArgument(fmt::format("bad gm address '{}': {}", addr, hp.status().message()));
  return hp.value();
}

Result<std::vector<proto::MemberRecord>> AliveMembers(msg::Messenger& m, const QueryOptions& o,
                                                      proto::ComponentKind kind, const char* cmd,
                                                      std::vector<proto::MemberRecord>* dead) {
  auto gm = ResolveGm(o, cmd, nullptr);
  if (!gm.ok()) return gm.status();
  auto members = ListMembers(m, *gm, o.timeout_ms);
  if (!members.ok())
    return Status(members.status().code(), fmt::format("cannot reach the global manager at {}: {}",
                                                       gm->ToString(), members.status().ToString()));
  std::vector<proto::MemberRecord> out;
  for (auto& mem : *members) {
    if (mem.fixed.kind != static_cast<uint8_t>(kind)) continue;
    if (mem.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive))
      out.push_back(std::move(mem));
    else if (dead && mem.fixed.state == static_cast<uint8_t>(proto::MemberState::kDead))
      dead->push_back(std::move(mem));
  }
  return out;
}

namespace {

std::string Unreachable(const ClusterState& s, const HostPort& gm, const Status& st) {
  std::string msg = fmt::format("cannot reach the global manager at {}: {}", gm.ToString(), st.ToString());
  for (const auto& d : s.daemons)
    if (d.kind == "gm" && !DaemonAlive(d))
      msg += fmt::format(
          "\nlego-gm (pid {}) is not running; `lego down` cleans up, then `lego up` starts afresh", d.pid);
  return msg;
}

std::string Age(int64_t ms) {
  if (ms < 0) return "-";
  if (ms < 10000) return fmt::format("{:.1f}s ago", ms / 1000.0);
  if (ms < 3600000) return fmt::format("{}s ago", ms / 1000);
  return fmt::format("{}h ago", ms / 3600000);
}

}  // namespace

int StatusCommand(const QueryOptions& o) {
  ClusterState state;
  auto gm = ResolveGm(o, "status", &state);
  if (!gm.ok()) {
    fmt::print(stderr, "lego status: {}\n", gm.status().message());
    return 1;
  }
  auto m = MakeCliMessenger();
  if (!m.ok()) {
    fmt::print(stderr, "lego status: {}\n", m.status().ToString());
    return 1;
  }
  auto members = ListMembers(*m.value(), gm.value(), o.timeout_ms);
  m.value()->Shutdown();
  if (!members.ok()) {
    fmt::print(stderr, "lego status: {}\n", Unreachable(state, gm.value(), members.status()));
    return 1;
  }
  if (o.json) {
    json arr = json::array();
    for (const auto& r : members.value()) {
      arr.push_back({{"id", r.fixed.id},
                     {"kind", proto::ComponentKindName(static_cast<proto::ComponentKind>(r.fixed.kind))},
                     {"name", r.name},
                     {"address", r.listen_addr},
                     {"state", proto::MemberStateName(static_cast<proto::MemberState>(r.fixed.state))},
                     {"pid", r.fixed.pid},
                     {"incarnation", r.fixed.incarnation},
                     {"capacity_bytes", r.fixed.capacity_bytes},
                     {"used_bytes", r.fixed.used_bytes},
                     {"metrics_port", r.fixed.metrics_port},
                     {"last_heartbeat_age_ms", r.fixed.kind == uint8_t(proto::ComponentKind::kGm)
                                                   ? json(nullptr)
                                                   : json(r.fixed.last_heartbeat_age_ms)}});
    }
    std::cout << arr.dump(2) << "\n";
    return 0;
  }
  fmt::print("{:<4} {:<5} {:<16} {:<6} {:<22} {:<8} {:>10} {:>10} {:>8}  {}\n", "ID", "KIND", "NAME", "STATE",
             "ADDRESS", "PID", "CAPACITY", "USED", "METRICS", "LAST HEARD");
  int alive = 0, dead = 0;
  for (const auto& r : members.value()) {
    auto kind = static_cast<proto::ComponentKind>(r.fixed.kind);
    auto state = static_cast<proto::MemberState>(r.fixed.state);
    alive += state == proto::MemberState::kAlive;
    dead += state == proto::MemberState::kDead;
    bool is_gm = kind == proto::ComponentKind::kGm;
    fmt::print("{:<4} {:<5} {:<16} {:<6} {:<22} {:<8} {:>10} {:>10} {:>8}  {}\n", r.fixed.id,
               proto::ComponentKindName(kind), r.name, proto::MemberStateName(state), r.listen_addr,
               r.fixed.pid, r.fixed.capacity_bytes ? FormatBytes(r.fixed.capacity_bytes) : "-",
               is_gm ? "-" : FormatBytes(r.fixed.used_bytes),
               r.fixed.metrics_port ? std::to_string(r.fixed.metrics_port) : "-",
               is_gm ? "-" : Age(r.fixed.last_heartbeat_age_ms));
  }
  fmt::print("{} members: {} alive, {} dead\n", members->size(), alive, dead);
  return 0;
}

int StatsCommand(const QueryOptions& o, int member_id) {
  ClusterState state;
  auto gm = ResolveGm(o, "stats", &state);
  if (!gm.ok()) {
    fmt::print(stderr, "lego stats: {}\n", gm.status().message());
    return 1;
  }
  auto m = MakeCliMessenger();
  if (!m.ok()) {
    fmt::print(stderr, "lego stats: {}\n", m.status().ToString());
    return 1;
  }
  auto members = ListMembers(*m.value(), gm.value(), o.timeout_ms);
  if (!members.ok()) {
    fmt::print(stderr, "lego stats: {}\n", Unreachable(state, gm.value(), members.status()));
    return 1;
  }
  json out = json::array();
  bool found = member_id < 0;
  int errors = 0;
  for (const auto& r : members.value()) {
    if (member_id >= 0 && r.fixed.id != uint32_t(member_id)) continue;
    found = true;
    auto kind = proto::ComponentKindName(static_cast<proto::ComponentKind>(r.fixed.kind));
    json entry = {{"id", r.fixed.id}, {"kind", kind}, {"name", r.name}, {"address", r.listen_addr}};
    auto state = static_cast<proto::MemberState>(r.fixed.state);
    Result<std::vector<proto::StatsEntry>> stats =
        Status(StatusCode::kPeerUnreachable, "member is not alive");
    if (state == proto::MemberState::kAlive) {
      auto hp = ParseHostPort(r.listen_addr);
      if (hp.ok()) {
        auto ch = m.value()->Connect(hp.value(), msg::Millis(o.timeout_ms));
        if (ch.ok()) {
          auto rep = ch.value()->Call(proto::kGetStats, {}, msg::Millis(o.timeout_ms));
          stats = rep.ok() ? proto::DecodeStats(rep.value())
                           : Result<std::vector<proto::StatsEntry>>(rep.status());
        } else {
          stats = ch.status();
        }
      }
    }
    if (o.json) {
      if (stats.ok()) {
        json counters = json::object();
        for (const auto& e : stats.value()) counters[e.name] = e.value;
        entry["stats"] = counters;
      } else {
        entry["error"] = stats.status().ToString();
      }
      out.push_back(entry);
      continue;
    }
    fmt::print("{} {} (id {}, {})\n", kind, r.name, r.fixed.id, r.listen_addr);
    if (!stats.ok()) {
      ++errors;
      fmt::print("  unavailable: {}\n", stats.status().ToString());
      continue;
    }
    for (const auto& e : stats.value()) fmt::print("  {:<48} {}\n", e.name, e.value);
  }
  m.value()->Shutdown();
  if (!found) {
    fmt::print(stderr, "lego stats: no member with id {} (see `lego status`)\n", member_id);
    return 1;
  }
  if (o.json) std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace lego::cli

namespace lego::cli {

// `lego reclaim NAME`: frees, on every mmon, the address spaces a pmon that is gone for good created (their
// ids carry proto::PmonTag(NAME), protocol/p2m.h), and has the gm forget their vRegions. A pmon restarted
// with its data dir does this itself from its journal (decision 008); this is for one that never comes back.
int ReclaimCommand(const QueryOptions& o, const std::string& name, bool force) {
  auto fail = [](const std::string& why) {
    fmt::print(stderr, "lego reclaim: {}\n", why);
    return 1;
  };
  auto m = MakeCliMessenger();
  if (!m.ok()) return fail(m.status().ToString());
  auto gm = ResolveGm(o, "reclaim", nullptr);
  if (!gm.ok()) return fail(std::string(gm.status().message()));
  auto list = [&]() -> Result<std::vector<proto::MemberRecord>> {
    auto members = ListMembers(**m, *gm, o.timeout_ms);
    if (!members.ok())
      return Status(members.status().code(), fmt::format("cannot reach the global manager at {}: {}",
                                                         gm->ToString(), members.status().ToString()));
    return members;
  };
  auto members = list();
  if (!members.ok()) return fail(std::string(members.status().message()));
  const uint32_t tag = proto::PmonTag(name);
  const auto alive = static_cast<uint8_t>(proto::MemberState::kAlive);
  bool listed = false;
  std::vector<std::string> pmons;
  // Refuses (returns a message) if an alive pmon's spaces carry the tag.
  auto in_use = [&](const std::vector<proto::MemberRecord>& list) -> std::optional<std::string> {
    for (const auto& mem : list) {
      if (mem.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kPmon) || mem.fixed.state != alive ||
          proto::PmonTag(mem.name) != tag)
        continue;
      if (mem.name == name)
        return fmt::format(
            "{} is alive: the memory of its programs is in use. `lego reclaim` is for a process monitor "
            "that is gone for good; one restarted with its data dir frees what its dead programs left by "
            "itself",
            name);
      return fmt::format(
          "{} is alive and its address spaces carry the same tag as {}'s ({:#x}): they cannot be told "
          "apart, so nothing is freed",
          mem.name, name, tag);
    }
    return std::nullopt;
  };
  for (const auto& mem : *members) {
    if (mem.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kPmon)) continue;
    pmons.push_back(fmt::format("{} ({})", mem.name,
                                proto::MemberStateName(static_cast<proto::MemberState>(mem.fixed.state))));
    listed = listed || mem.name == name;
  }
  if (auto why = in_use(*members)) return fail(*why);
  // A name the gm does not list may be a misspelling, or a live pmon that has not registered again with a gm
  // that lost its list (a fresh data dir does not make the gm hold back): freed only when asked for.
  if (!listed && !force)
    return fail(fmt::format(
        "the gm lists no process monitor named '{}' ({}). If it is gone for good and the "
        "gm has forgotten it, run `lego reclaim {} --force` once every live process "
        "monitor shows in `lego status`",
        name, pmons.empty() ? "it lists none" : fmt::format("it lists {}", fmt::join(pmons, ", ")), name));
  const auto payload = proto::EncodeFixed(proto::TaggedSpacesReq{tag, 0});
  // Freeing many GiB takes a while on an mmon: more than the CLI's usual query timeout.
  const msg::Millis timeout(std::max(o.timeout_ms, 30000));
  {
    auto ch = (*m)->Connect(*gm, msg::Millis(o.timeout_ms));
    if (!ch.ok())
      return fail(
          fmt::format("cannot reach the global manager at {}: {}", gm->ToString(), ch.status().ToString()));
    auto r = (*ch)->Call(proto::kReleaseTaggedSpaces, payload, timeout);
    if (!r.ok()) return fail(fmt::format("the global manager refused: {}", r.status().message()));
  }
  // Listed again: a gm that has just finished settling may list mmons (or an alive pmon) the first list
  // lacked.
  members = list();
  if (!members.ok()) return fail(std::string(members.status().message()));
  if (auto why = in_use(*members)) return fail(*why);
  uint64_t pages = 0;
  std::vector<std::string> freed_on, missed;
  for (const auto& mem : *members) {
    if (mem.fixed.kind != static_cast<uint8_t>(proto::ComponentKind::kMmon) ||
        mem.fixed.state == static_cast<uint8_t>(proto::MemberState::kLeft))
      continue;  // an mmon that left cleanly took its pool with it
    if (mem.fixed.state != alive) {
      missed.push_back(fmt::format("{} is dead", mem.name));
      continue;
    }
    auto addr = ParseHostPort(mem.listen_addr);
    auto ch = addr.ok() ? (*m)->Connect(*addr, msg::Millis(o.timeout_ms))
                        : Result<std::shared_ptr<msg::Channel>>(addr.status());
    auto r = ch.ok() ? (*ch)->Call(proto::kDestroyTaggedSpaces, payload, timeout)
                     : Result<proto::Bytes>(ch.status());
    auto resp = r.ok() ? proto::DecodeFixed<proto::FreedResp>(*r, "p2m.destroy_tagged_spaces reply")
                       : Result<proto::FreedResp>(r.status());
    if (!resp.ok()) {
      missed.push_back(fmt::format("{}: {}", mem.name, resp.status().ToString()));
      continue;
    }
    pages += resp->pages_freed;
    freed_on.push_back(fmt::format("{} {}", mem.name, FormatBytes(resp->pages_freed * proto::kPageBytes)));
  }
  fmt::print("lego reclaim: freed {} of {}'s address spaces ({})\n", FormatBytes(pages * proto::kPageBytes),
             name,
             freed_on.empty() ? "no memory monitor answered" : fmt::format("{}", fmt::join(freed_on, ", ")));
  if (!missed.empty())
    return fail(fmt::format("not freed on: {}. Run `lego reclaim {}` again once they are back",
                            fmt::join(missed, "; "), name));
  return 0;
}

}  // namespace lego::cli
