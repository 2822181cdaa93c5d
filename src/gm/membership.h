// MembershipTable: the global manager's view of which monitors exist and which are alive.
//
// A monitor registers (x2g.register) and then heartbeats every interval; after `misses` intervals without
// hearing from it the table marks it dead. A member that registers again with the same identity (its name,
// or its kind and address when it has no name) gets its old id back with a new incarnation, so a restarted
// mmon is the same member in `lego status`. A named member keeps its id across restarts of the gm too
// (MembershipOptions::ids_path). Time is passed in by the caller, so the logic is tested
// without sleeping (tests/unit/membership_test.cc).
//
// Thread safety: every method may be called from any thread (one internal mutex).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "protocol/membership.h"

namespace lego::gm {

struct MembershipOptions {
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t heartbeat_misses = 3;  // dead after interval * misses ms of silence
  // Incarnations of this gm's members start after this value. Unset: a random one, so that a member of a
  // previous gm (same id, by chance, as a new member of this one) cannot heartbeat as that new member.
  std::optional<uint32_t> incarnation_base;
  // Where the ids of named members are kept, so that a restarted gm gives every monitor the id it had
  // before (`lego status`, `lego vnode create --smon ID`); "" keeps them in memory only. `known_ids` is the
  // file's content at start (LoadMemberIds).
  std::string ids_path;
  struct KnownIds {
    std::map<std::string, uint32_t> by_identity;  // IdentityKey -> id
    uint32_t next_id = 1;
  } known_ids;
};

// Reads the ids file; a missing file is an empty table; one that cannot be parsed is an error that names it.
Result<MembershipOptions::KnownIds> LoadMemberIds(const std::string& path);

struct Member {
  uint32_t id = 0;
  proto::ComponentKind kind = proto::ComponentKind::kUnknown;
  std::string name;
  std::string listen_addr;
  uint32_t pid = 0;
  uint16_t metrics_port = 0;
  uint32_t incarnation = 0;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  proto::MemberState state = proto::MemberState::kAlive;
  int64_t joined_wall_ms = 0;
  int64_t last_heard_mono_ms = 0;
};

// Writes the newest content it was given to a file (WriteFileAtomic: fsync'ed), on a thread of its own, so
// that the gm's message handlers never wait for the disk; what is pending when it is destroyed is written
// first. A failed write is logged.
class IdsWriter {
 public:
  explicit IdsWriter(std::string path);
  ~IdsWriter();
  IdsWriter(const IdsWriter&) = delete;
  IdsWriter& operator=(const IdsWriter&) = delete;
  void Save(std::string content);

 private:
  void Loop();
  const std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::string> pending_;  // guarded by mu_
  bool stop_ = false;                   // guarded by mu_
  std::thread thread_;
};

class MembershipTable {
 public:
  explicit MembershipTable(MembershipOptions options);

  proto::RegisterResp Register(const proto::RegisterReq& req, int64_t now_mono_ms, int64_t now_wall_ms);
  // kUnknownMember if the id or incarnation is not current (the member must register again).
  Status Heartbeat(const proto::HeartbeatReq& req, int64_t now_mono_ms);
  Status Deregister(const proto::DeregisterReq& req);
  // Marks silent members dead; returns those that just died.
  std::vector<Member> CheckLiveness(int64_t now_mono_ms);
  std::vector<proto::MemberRecord> List(int64_t now_mono_ms) const;
  size_t CountAlive() const;
  const MembershipOptions& options() const { return options_; }

 private:
  const MembershipOptions options_;
  mutable Mutex mu_;
  // Hands known_ids_ to ids_writer_ (a failure to write is logged: ids stay unique, only not kept).
  void SaveIdsLocked() REQUIRES(mu_);

  std::map<uint32_t, Member> members_ GUARDED_BY(mu_);
  MembershipOptions::KnownIds known_ids_ GUARDED_BY(mu_);
  const uint32_t incarnation_base_;
  std::unique_ptr<IdsWriter> ids_writer_;  // null without options_.ids_path; destroyed first (flushes)
};

}  // namespace lego::gm
