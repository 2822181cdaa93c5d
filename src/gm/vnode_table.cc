#include "gm/vnode_table.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/util.h"

namespace lego::gm {

using json = nlohmann::json;

Result<std::unique_ptr<VnodeTable>> VnodeTable::Open(std::string path) {
  std::unique_ptr<VnodeTable> t(new VnodeTable(path));
  std::ifstream in(path);
  if (!in) return t;  // no file yet: no vNodes
  std::stringstream ss;
  ss << in.rdbuf();
  MutexLock lk(t->mu_);
  try {
    json j = json::parse(ss.str());
    if (j.value("version", 0) != 1) return IoError(fmt::format("{}: unknown version", path));
    t->next_id_ = j.at("next_id").get<uint32_t>();
    for (const auto& v : j.at("vnodes")) {
      VnodeEntry e;
      e.id = v.at("id").get<uint32_t>();
      e.name = v.at("name").get<std::string>();
      e.smon_name = v.at("smon").get<std::string>();
      e.cache_mmon_name = v.value("cache_mmon", "");
      e.created_unix_ms = v.value("created_unix_ms", int64_t{0});
      if (e.id == 0 || e.id >= t->next_id_) return IoError(fmt::format("{}: bad id {}", path, e.id));
      t->entries_.push_back(std::move(e));
    }
  } catch (const std::exception& ex) {
    return IoError(
        fmt::format("{}: cannot parse the vNode table ({}); fix or move the file", path, ex.what()));
  }
  LEGO_LOG_INFO("vnodes_loaded path={} count={}", path, t->entries_.size());
  return t;
}

Status VnodeTable::SaveLocked() {
  json list = json::array();
  for (const auto& e : entries_)
    list.push_back({{"id", e.id},
                    {"name", e.name},
                    {"smon", e.smon_name},
                    {"cache_mmon", e.cache_mmon_name},
                    {"created_unix_ms", e.created_unix_ms}});
  json j = {{"version", 1}, {"next_id", next_id_}, {"vnodes", list}};
  return WriteFileAtomic(path_, j.dump(2) + "\n");
}

Result<VnodeEntry> VnodeTable::Add(const std::string& name, const std::string& smon_name,
                                   const std::string& mmon_name, int64_t now_unix_ms) {
  MutexLock lk(mu_);
  for (const auto& e : entries_)
    if (e.name == name) return Status(StatusCode::kAlreadyExists, fmt::format("vNode '{}' exists", name));
  VnodeEntry e{next_id_, name, smon_name, mmon_name, now_unix_ms};
  entries_.push_back(e);
  ++next_id_;
  if (Status st = SaveLocked(); !st.ok()) {
    entries_.pop_back();
    --next_id_;
    return st;
  }
  return e;
}

Status VnodeTable::Remove(const std::string& name) {
  MutexLock lk(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.name == name; });
  if (it == entries_.end()) return NotFound(fmt::format("no vNode named '{}'", name));
  VnodeEntry saved = *it;
  entries_.erase(it);
  if (Status st = SaveLocked(); !st.ok()) {
    entries_.push_back(saved);
    std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return st;
  }
  return Status::Ok();
}

Status VnodeTable::SetCacheMmon(uint32_t id, const std::string& mmon_name) {
  MutexLock lk(mu_);
  for (auto& e : entries_) {
    if (e.id != id) continue;
    std::string old = e.cache_mmon_name;
    e.cache_mmon_name = mmon_name;
    if (Status st = SaveLocked(); !st.ok()) {
      e.cache_mmon_name = old;
      return st;
    }
    return Status::Ok();
  }
  return NotFound(fmt::format("no vNode with id {}", id));
}

std::optional<VnodeEntry> VnodeTable::FindName(const std::string& name) const {
  MutexLock lk(mu_);
  for (const auto& e : entries_)
    if (e.name == name) return e;
  return std::nullopt;
}

std::optional<VnodeEntry> VnodeTable::FindId(uint32_t id) const {
  MutexLock lk(mu_);
  for (const auto& e : entries_)
    if (e.id == id) return e;
  return std::nullopt;
}

std::vector<VnodeEntry> VnodeTable::List() const {
  MutexLock lk(mu_);
  return entries_;
}

size_t VnodeTable::CountOnSmon(const std::string& smon_name) const {
  MutexLock lk(mu_);
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(),
                                           [&](const auto& e) { return e.smon_name == smon_name; }));
}

}  // namespace lego::gm
