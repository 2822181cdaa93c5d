// VnodeManager: the vNodes whose storage this pmon has mounted (one FUSE mount per vNode, under
// DATA_DIR/vnodes/NAME), and the rule that keeps each vNode's processes out of every other vNode's mount.
//
// Attach looks a vNode up at lego-gm (creating "default" on first use), mounts it if needed and returns its
// mountpoint. Every FS request of a mount goes through one RemoteFs to the vNode's buffer-cache mmon.
//
// Isolation: a mount serves a requesting thread only if its process is not a Lego process of another vNode.
// The thread's process, or the nearest ancestor that is a Lego process, decides (children that Lego could
// not capture, such as static binaries, count as their Lego parent's). Processes that are not Lego's at
// all (the host's own) are allowed: the host administrator owns the machine anyway.
//
// Thread safety: every method may be called from any thread. Attach blocks (gm lookup, mount).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "messaging/remote_fs.h"
#include "pmon/vnode_mount.h"
#include "protocol/any.h"
#include "protocol/c2p.h"

namespace lego::pmon {

class VnodeManager {
 public:
  // The vNode of the Lego process `pid`: 0 if pid is not a Lego process of this pmon.
  using VnodeOfProcess = std::function<uint32_t(pid_t pid)>;

  VnodeManager(msg::Messenger& messenger, HostPort gm, std::string mount_root, msg::Millis storage_timeout,
               VnodeOfProcess vnode_of);
  ~VnodeManager();

  // REQUIRES: name is empty (the default vNode) or a valid vNode name.
  Result<proto::AttachVnodeResp> Attach(const std::string& name);
  // Unmounts the vNode with this id if it is mounted here (it was removed). Blocks until unmounted.
  void Detach(uint32_t vnode);
  void UnmountAll();
  std::vector<proto::StatsEntry> Stats() const;

 private:
  bool Allowed(uint32_t vnode, pid_t tid);
  // Tgid and parent of a thread from /proc; false if it is gone.
  static bool ReadProcStatus(pid_t tid, pid_t* tgid, pid_t* ppid);

  msg::RemoteFs remote_;
  const std::string mount_root_;
  const VnodeOfProcess vnode_of_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<VnodeMount>> mounts_;  // by vNode name; guarded by mu_
  struct MountFigures {
    uint64_t mounted = 0, requests = 0, errors = 0, denied = 0;
  };
  mutable std::mutex stats_mu_;
  mutable MountFigures last_figures_;  // what Stats() last read from the mounts; guarded by stats_mu_
  struct Verdict {
    uint32_t vnode;  // the vNode that owns the requesting process (0: not a Lego process)
    int64_t expires_ms;
  };
  std::mutex cache_mu_;
  std::unordered_map<pid_t, Verdict> owner_cache_;  // by tid; guarded by cache_mu_
};

}  // namespace lego::pmon
