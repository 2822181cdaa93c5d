// VnodeTable: the global storage manager's record of vNodes (LegoOS's GSM): each vNode's id, name, the smon
// that keeps its files and the mmon whose buffer cache serves them.
//
// Durability: every change is written to `path` (JSON, docs/architecture.md "vNodes") with WriteFileAtomic
// before the method returns, so a restarted gm forgets no vNode. Components are recorded by their stable
// member *names* (kept in each monitor's data dir), never by member ids, which a restarted gm hands out anew.
// A file that cannot be parsed is an error at Open: the gm refuses to start rather than lose vNodes.
//
// Thread safety: every method may be called from any thread (one internal mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace lego::gm {

struct VnodeEntry {
  uint32_t id = 0;
  std::string name;
  std::string smon_name;        // member name of the smon keeping the files
  std::string cache_mmon_name;  // member name of the buffer-cache mmon; may be empty
  int64_t created_unix_ms = 0;
};

class VnodeTable {
 public:
  // Loads `path` if it exists; an empty table otherwise.
  static Result<std::unique_ptr<VnodeTable>> Open(std::string path);

  // kAlreadyExists if the name is taken. Ids are never reused.
  Result<VnodeEntry> Add(const std::string& name, const std::string& smon_name, const std::string& mmon_name,
                         int64_t now_unix_ms);
  Status Remove(const std::string& name);  // kNotFound
  Status SetCacheMmon(uint32_t id, const std::string& mmon_name);
  std::optional<VnodeEntry> FindName(const std::string& name) const;
  std::optional<VnodeEntry> FindId(uint32_t id) const;
  std::vector<VnodeEntry> List() const;  // by id
  size_t CountOnSmon(const std::string& smon_name) const;

 private:
  explicit VnodeTable(std::string path) : path_(std::move(path)) {}
  Status SaveLocked() REQUIRES(mu_);

  const std::string path_;
  mutable Mutex mu_;
  std::vector<VnodeEntry> entries_ GUARDED_BY(mu_);
  uint32_t next_id_ GUARDED_BY(mu_) = 1;
};

}  // namespace lego::gm
