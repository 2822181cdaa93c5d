#include "gm/membership.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/util.h"

namespace lego::gm {

using proto::MemberState;

namespace {

// A member's identity in the ids file: its kind and name. Unnamed members (started by hand without --name,
// known by their address, which may be an ephemeral port) are not kept.
std::string IdentityKey(proto::ComponentKind kind, const std::string& name) {
  return fmt::format("{}:{}", proto::ComponentKindName(kind), name);
}

}  // namespace

Result<MembershipOptions::KnownIds> LoadMemberIds(const std::string& path) {
  MembershipOptions::KnownIds ids;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return ids;  // none yet
  std::ifstream in(path);
  if (!in) return IoError(fmt::format("{}: cannot read the member ids: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    auto j = nlohmann::json::parse(ss.str());
    if (j.value("version", 0) != 1) return IoError(fmt::format("{}: unknown version", path));
    // 0 is the gm's own id; a bound far above any cluster keeps next_id++ from wrapping.
    const uint64_t next = j.at("next_id").get<uint64_t>();
    if (next == 0 || next > (uint64_t{1} << 30))
      return IoError(fmt::format("{}: bad next_id {}", path, next));
    ids.next_id = static_cast<uint32_t>(next);
    std::set<uint32_t> seen;
    for (const auto& m : j.at("members")) {
      const uint64_t id = m.at("id").get<uint64_t>();
      if (id == 0 || id >= ids.next_id || !seen.insert(static_cast<uint32_t>(id)).second)
        return IoError(fmt::format("{}: bad or repeated id {}", path, id));
      if (!ids.by_identity.emplace(m.at("identity").get<std::string>(), static_cast<uint32_t>(id)).second)
        return IoError(fmt::format("{}: identity {} listed twice", path, m.at("identity").dump()));
    }
  } catch (const std::exception& ex) {
    return IoError(
        fmt::format("{}: cannot parse the member ids ({}); fix or move the file", path, ex.what()));
  }
  return ids;
}

MembershipTable::MembershipTable(MembershipOptions options)
    : options_(options),
      known_ids_(options.known_ids),
      incarnation_base_(options.incarnation_base ? *options.incarnation_base : std::random_device{}()),
      ids_writer_(options.ids_path.empty() ? nullptr : std::make_unique<IdsWriter>(options.ids_path)) {}

IdsWriter::IdsWriter(std::string path) : path_(std::move(path)), thread_([this] { Loop(); }) {}

IdsWriter::~IdsWriter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void IdsWriter::Save(std::string content) {
  {
    std::lock_guard lk(mu_);
    pending_ = std::move(content);  // an older content not yet written is superseded
  }
  cv_.notify_one();
}

void IdsWriter::Loop() {
  std::unique_lock lk(mu_);
  while (true) {
    cv_.wait(lk, [this] { return stop_ || pending_; });
    if (!pending_) return;  // stopping, nothing left to write
    std::string content = std::move(*pending_);
    pending_.reset();
    lk.unlock();
    if (Status st = WriteFileAtomic(path_, content); !st.ok())
      LEGO_LOG_WARN("member_ids_not_saved path={} why=\"{}\": a restarted gm may number members anew", path_,
                    st.ToString());
    lk.lock();
  }
}

void MembershipTable::SaveIdsLocked() {
  if (!ids_writer_) return;
  auto list = nlohmann::json::array();
  for (const auto& [identity, id] : known_ids_.by_identity)
    list.push_back({{"identity", identity}, {"id", id}});
  nlohmann::json j = {{"version", 1}, {"next_id", known_ids_.next_id}, {"members", list}};
  ids_writer_->Save(j.dump(2) + "\n");
}

proto::RegisterResp MembershipTable::Register(const proto::RegisterReq& req, int64_t now_mono_ms,
                                              int64_t now_wall_ms) {
  MutexLock lk(mu_);
  auto kind = static_cast<proto::ComponentKind>(req.fixed.kind);
  Member* m = nullptr;
  for (auto& [id, cand] : members_) {
    bool same =
        cand.kind == kind &&
        (req.name.empty() ? cand.name.empty() && cand.listen_addr == req.listen_addr : cand.name == req.name);
    if (same) {
      m = &cand;
      break;
    }
  }
  bool rejoin = m != nullptr;
  if (!m) {
    // The id this identity had (in this gm's life or an earlier one), else a new one, kept for next time.
    // No member holds either: ids in the file are unique (LoadMemberIds), new ones come from next_id, above
    // all of them, and a member of this identity would have been found above.
    const std::string key = req.name.empty() ? "" : IdentityKey(kind, req.name);
    auto known = key.empty() ? known_ids_.by_identity.end() : known_ids_.by_identity.find(key);
    uint32_t id;
    if (known != known_ids_.by_identity.end()) {
      id = known->second;
    } else {
      id = known_ids_.next_id++;
      if (!key.empty()) {  // an unnamed member (known by a possibly ephemeral address) is not kept
        known_ids_.by_identity[key] = id;
        SaveIdsLocked();
      }
    }
    m = &members_[id];
    m->id = id;
    m->incarnation = incarnation_base_;
  }
  m->kind = kind;
  m->name = req.name;
  m->listen_addr = req.listen_addr;
  m->pid = req.fixed.pid;
  m->metrics_port = req.fixed.metrics_port;
  m->capacity_bytes = req.fixed.capacity_bytes;
  m->used_bytes = req.fixed.used_bytes;
  m->incarnation++;
  m->state = MemberState::kAlive;
  m->joined_wall_ms = now_wall_ms;
  m->last_heard_mono_ms = now_mono_ms;
  LEGO_LOG_INFO("member_{} id={} kind={} name={} addr={} pid={} incarnation={} capacity={}",
                rejoin ? "rejoined" : "registered", m->id, proto::ComponentKindName(kind), m->name,
                m->listen_addr, m->pid, m->incarnation, m->capacity_bytes);
  return proto::RegisterResp{m->id, m->incarnation, options_.heartbeat_interval_ms, 0};
}

Status MembershipTable::Heartbeat(const proto::HeartbeatReq& req, int64_t now_mono_ms) {
  MutexLock lk(mu_);
  auto it = members_.find(req.id);
  if (it == members_.end() || it->second.incarnation != req.incarnation ||
      it->second.state == MemberState::kLeft)
    return Status(
        StatusCode::kUnknownMember,
        fmt::format("member {} incarnation {} is not known; register again", req.id, req.incarnation));
  Member& m = it->second;
  if (m.state == MemberState::kDead)
    LEGO_LOG_INFO("member_revived id={} kind={} silent_ms={}", m.id, proto::ComponentKindName(m.kind),
                  now_mono_ms - m.last_heard_mono_ms);
  m.state = MemberState::kAlive;
  m.last_heard_mono_ms = now_mono_ms;
  m.capacity_bytes = req.capacity_bytes;
  m.used_bytes = req.used_bytes;
  return Status::Ok();
}

Status MembershipTable::Deregister(const proto::DeregisterReq& req) {
  MutexLock lk(mu_);
  auto it = members_.find(req.id);
  if (it == members_.end() || it->second.incarnation != req.incarnation)
    return Status(StatusCode::kUnknownMember,
                  fmt::format("member {} incarnation {} is not known", req.id, req.incarnation));
  it->second.state = MemberState::kLeft;
  LEGO_LOG_INFO("member_left id={} kind={} addr={}", req.id, proto::ComponentKindName(it->second.kind),
                it->second.listen_addr);
  return Status::Ok();
}

std::vector<Member> MembershipTable::CheckLiveness(int64_t now_mono_ms) {
  MutexLock lk(mu_);
  std::vector<Member> died;
  const int64_t limit = int64_t{options_.heartbeat_interval_ms} * options_.heartbeat_misses;
  for (auto& [id, m] : members_) {
    if (m.state == MemberState::kAlive && now_mono_ms - m.last_heard_mono_ms > limit) {
      m.state = MemberState::kDead;
      LEGO_LOG_WARN("member_dead id={} kind={} addr={} pid={} silent_ms={}", m.id,
                    proto::ComponentKindName(m.kind), m.listen_addr, m.pid,
                    now_mono_ms - m.last_heard_mono_ms);
      died.push_back(m);
    }
  }
  return died;
}

std::vector<proto::MemberRecord> MembershipTable::List(int64_t now_mono_ms) const {
  MutexLock lk(mu_);
  std::vector<proto::MemberRecord> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) {
    proto::MemberRecord r;
    r.fixed.id = m.id;
    r.fixed.kind = static_cast<uint8_t>(m.kind);
    r.fixed.state = static_cast<uint8_t>(m.state);
    r.fixed.metrics_port = m.metrics_port;
    r.fixed.pid = m.pid;
    r.fixed.incarnation = m.incarnation;
    r.fixed.capacity_bytes = m.capacity_bytes;
    r.fixed.used_bytes = m.used_bytes;
    r.fixed.joined_unix_ms = m.joined_wall_ms;
    r.fixed.last_heartbeat_age_ms = now_mono_ms - m.last_heard_mono_ms;
    r.listen_addr = m.listen_addr;
    r.name = m.name;
    out.push_back(std::move(r));
  }
  return out;
}

size_t MembershipTable::CountAlive() const {
  MutexLock lk(mu_);
  size_t n = 0;
  for (const auto& [id, m] : members_) n += m.state == MemberState::kAlive;
  return n;
}

}  // namespace lego::gm
