// PmonService: the process monitor's body. It listens on a local socket (DATA_DIR/pmon.sock) for programs
// started by `lego run` (their preload says HELLO and hands over its userfaultfd), runs one ProcessSession
// per program, owns the ExCache and the MemoryClient, and answers the CLI (c2p.list_processes) and the
// metrics endpoint.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/work_queue.h"
#include "messaging/messenger.h"
#include "pmon/excache.h"
#include "pmon/memory_client.h"
#include "pmon/process_session.h"
#include "pmon/space_journal.h"
#include "pmon/stats.h"
#include "pmon/vnode_manager.h"
#include "protocol/c2p.h"
#include "protocol/local.h"

namespace lego::pmon {

struct PmonOptions {
  std::string socket_path;
  uint64_t excache_bytes = 256ull << 20;
  SessionOptions session;
  HostPort gm;
  Millis rpc_timeout{5000};
  std::string vnode_root;        // vNode mounts go under it (DATA_DIR/vnodes)
  Millis storage_timeout{7000};  // an FS request whose mmon stays silent this long fails with EIO
  std::string space_journal;     // DATA_DIR/spaces (SpaceJournal); empty: none (unit tests)
  Millis reap_interval{5000};    // how often spaces whose free failed are tried again
  // Carried in the ids of the address spaces it creates (proto::MakeSpaceId): proto::PmonTag of its name,
  // so that `lego reclaim NAME` can find them if the pmon never comes back.
  uint32_t space_tag = 0;
};

class PmonService {
 public:
  PmonService(const PmonOptions& options, msg::Messenger& messenger, Metrics& metrics);
  ~PmonService();

  void InstallHandlers(msg::Messenger& messenger);
  Status Start();  // binds the local socket, starts the listener and the evictor
  void Stop();     // ends every session (freeing remote memory) and stops

  uint64_t resident_bytes() const { return excache_.resident_pages() * kPage; }
  std::vector<proto::StatsEntry> ExtraStats() const;

 private:
  void InstallDetachHandler(msg::Messenger& messenger);
  void ListenLoop();
  void Accept(int conn);
  void SessionEnded(ProcessSession* s);
  void OnFork(ProcessSession* parent, int child_uffd);
  void AttachForkChild(int conn, const lego_local_hello& hello);
  void StartSession(const std::shared_ptr<ProcessSession>& s);
  std::vector<std::shared_ptr<ProcessSession>> Sessions() const;
  static proto::ProcessRecord Record(const ProcessSession& s, bool ended, uint32_t vnode);
  uint32_t VnodeOfJobLocked(const std::string& job) const;  // REQUIRES: mu_ held
  static uint64_t ProcStartTime(pid_t pid);                 // 0 if the process is gone
  // The vNode of the running Lego process `pid` (0: not one of ours).
  uint32_t VnodeOfProcess(pid_t pid) const;
  static constexpr size_t kRecentEnded = 256;
  void Created(uint64_t space);  // journals a new space
  // Frees the spaces a previous life of this pmon left on the memory monitors, and those whose free failed
  // at their process's exit, retrying every reap_interval until each is gone.
  void ReapLoop();

  PmonOptions options_;
  Metrics& metrics_;
  ExCache excache_;
  MemoryClient memory_;
  MemStats totals_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::thread listener_;
  mutable std::mutex mu_;
  std::map<ProcessSession*, std::shared_ptr<ProcessSession>> sessions_;
  std::vector<std::shared_ptr<ProcessSession>> ended_;  // reaped by the listener thread
  std::deque<proto::ProcessRecord> recent_;             // the last kRecentEnded processes that ended
  struct PendingChild {
    ProcessSession* parent;
    std::shared_ptr<ProcessSession> child;
    bool broken;  // its memory could not be copied: its HELLO is refused
  };
  std::vector<PendingChild> pending_children_;  // fork children waiting for their HELLO
  std::condition_variable pending_cv_;
  std::atomic<uint64_t> processes_started_{0}, processes_ended_{0}, hellos_refused_{0};
  struct Job {
    uint32_t vnode = 0;
    pid_t root = 0;           // the `lego run` that started it: it and its descendants are the vNode's
    uint64_t root_start = 0;  // /proc/PID/stat field 22 of root: tells a reused pid apart
  };
  std::map<std::string, Job> jobs_;  // by `lego run` job id; guarded by mu_
  std::unique_ptr<VnodeManager> vnodes_;
  WorkQueue attach_queue_{1};  // c2p.attach_vnode blocks (gm lookup, FUSE mount)
  std::unique_ptr<SpaceJournal> journal_;
  std::set<uint64_t> unfreed_;  // guarded by mu_: spaces to free again (ReapLoop)
  std::condition_variable reap_cv_;
  bool reap_stop_ = false;  // guarded by mu_
  std::thread reaper_;
};

}  // namespace lego::pmon
