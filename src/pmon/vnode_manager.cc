#include "pmon/vnode_manager.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/vnode.h"

namespace lego::pmon {
namespace {
// How long a thread's owner is remembered before /proc is read again (a process can exec, but never moves
// to another vNode: the job, and so the vNode, is fixed at `lego run`).
constexpr int64_t kOwnerCacheMs = 2000;
constexpr size_t kOwnerCacheMax = 8192;
constexpr int kMaxAncestors = 32;
}  // namespace

VnodeManager::VnodeManager(msg::Messenger& messenger, HostPort gm, std::string mount_root,
                           msg::Millis storage_timeout, VnodeOfProcess vnode_of)
    : remote_(messenger, std::move(gm),
              msg::RemoteFsOptions{msg::RemoteFsOptions::Target::kCacheMmon, storage_timeout}),
      mount_root_(std::move(mount_root)),
      vnode_of_(std::move(vnode_of)) {}

VnodeManager::~VnodeManager() { UnmountAll(); }

Result<proto::AttachVnodeResp> VnodeManager::Attach(const std::string& name) {
  const std::string want = name.empty() ? std::string(proto::kDefaultVnodeName) : name;
  LEGO_RETURN_IF_ERROR(proto::ValidateVnodeName(want));
  // Look up by name through the gm (the record also tells whether storage is reachable now).
  proto::VnodeLookupReq lq{0, want == proto::kDefaultVnodeName ? proto::kVnodeLookupCreateDefault : 0u, want};
  auto v = remote_.Lookup(lq);
  if (!v.ok()) return v.status();
  if (!v->fixed.smon_alive)
    return Status(StatusCode::kPeerUnreachable, fmt::format("vNode '{}': its smon is not alive", want));
  if (v->mmon_addr.empty() || !v->fixed.mmon_alive)
    return Status(StatusCode::kPeerUnreachable,
                  fmt::format("vNode '{}': no mmon is alive to serve it", want));
  std::lock_guard lk(mu_);
  auto& m = mounts_[want];
  if (m && (m->vnode_id() != v->fixed.id || !m->mounted())) {
    // The name now means another vNode (removed and created again), or the mount died: mount afresh.
    LEGO_LOG_INFO("vnode_remount name={} old_id={} new_id={}", want, m->vnode_id(), v->fixed.id);
    m->Unmount();
    m.reset();
  }
  if (!m) {
    std::string mp = (std::filesystem::path(mount_root_) / want).string();
    const uint32_t id = v->fixed.id;
    MountOptions mo;
    mo.fsname = fmt::format("lego-vnode-{}", want);
    auto mounted = VnodeMount::Mount(
        mp, id, &remote_, [this, id](pid_t tid) { return Allowed(id, tid); }, mo);
    if (!mounted.ok()) {
      mounts_.erase(want);
      return mounted.status();
    }
    m = std::move(mounted.value());
    LEGO_LOG_INFO("vnode_mounted name={} id={} mountpoint={} smon={} cache_mmon={}", want, id, mp,
                  v->smon_addr, v->mmon_addr);
  }
  return proto::AttachVnodeResp{v->fixed.id, want, m->mountpoint()};
}

void VnodeManager::Detach(uint32_t vnode) {
  std::lock_guard lk(mu_);
  for (auto it = mounts_.begin(); it != mounts_.end();) {
    if (it->second && it->second->vnode_id() == vnode) {
      it->second->Unmount();
      LEGO_LOG_INFO("vnode_detached name={} id={}", it->first, vnode);
      it = mounts_.erase(it);
    } else {
      ++it;
    }
  }
}

void VnodeManager::UnmountAll() {
  std::lock_guard lk(mu_);
  for (auto& [name, m] : mounts_) {
    if (!m) continue;
    m->Unmount();
    LEGO_LOG_INFO("vnode_unmounted name={} mountpoint={}", name, m->mountpoint());
  }
  mounts_.clear();
}

bool VnodeManager::ReadProcStatus(pid_t tid, pid_t* tgid, pid_t* ppid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(tid));
  FILE* f = std::fopen(path, "re");
  if (!f) return false;
  char line[256];
  int found = 0;
  while (found < 2 && std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "Tgid:", 5) == 0) {
      *tgid = static_cast<pid_t>(std::atoi(line + 5));
      ++found;
    } else if (std::strncmp(line, "PPid:", 5) == 0) {
      *ppid = static_cast<pid_t>(std::atoi(line + 5));
      ++found;
    }
  }
  std::fclose(f);
  return found == 2;
}

bool VnodeManager::Allowed(uint32_t vnode, pid_t tid) {
  const int64_t now = MonoMillis();
  {
    std::lock_guard lk(cache_mu_);
    if (auto it = owner_cache_.find(tid); it != owner_cache_.end() && it->second.expires_ms > now)
      return it->second.vnode == 0 || it->second.vnode == vnode;
  }
  // The thread's process, then its ancestors: the nearest Lego process decides.
  uint32_t owner = vnode_of_(tid);
  pid_t p = tid;
  for (int i = 0; owner == 0 && i < kMaxAncestors; ++i) {
    pid_t tgid = 0, ppid = 0;
    if (!ReadProcStatus(p, &tgid, &ppid)) break;
    if (tgid != p) {
      owner = vnode_of_(tgid);
      if (owner) break;
    }
    if (ppid <= 1) break;
    p = ppid;
    owner = vnode_of_(p);
  }
  {
    std::lock_guard lk(cache_mu_);
    if (owner_cache_.size() >= kOwnerCacheMax) owner_cache_.clear();
    owner_cache_[tid] = {owner, now + kOwnerCacheMs};
  }
  if (owner != 0 && owner != vnode)
    LEGO_LOG_RATELIMITED("vnode_access_denied tid={} owner_vnode={} mount_vnode={}", tid, owner, vnode);
  return owner == 0 || owner == vnode;
}

std::vector<proto::StatsEntry> VnodeManager::Stats() const {
  // Runs inline on the messenger's worker (any.get_stats), so it must not wait for mu_: Attach and Detach
  // hold it across a FUSE mount or unmount, and an unmount waits for FUSE requests that need the worker.
  // Busy: the mounts' figures of the last call (RemoteFs's counters are read live either way).
  MountFigures f;
  if (std::unique_lock lk(mu_, std::try_to_lock); lk.owns_lock()) {
    f.mounted = mounts_.size();
    for (const auto& [name, m] : mounts_) {
      if (!m) continue;
      auto c = m->counters();
      for (auto r : c.requests) f.requests += r;
      f.errors += c.errors;
      f.denied += c.denied;
    }
    std::lock_guard c(stats_mu_);
    last_figures_ = f;
  } else {
    std::lock_guard c(stats_mu_);
    f = last_figures_;
  }
  return {{"lego_pmon_vnodes_mounted", static_cast<double>(f.mounted)},
          {"lego_pmon_fs_requests_total", static_cast<double>(f.requests)},
          {"lego_pmon_fs_errors_total", static_cast<double>(f.errors)},
          {"lego_pmon_fs_denied_total", static_cast<double>(f.denied)},
          {"lego_pmon_fs_transport_errors_total", static_cast<double>(remote_.transport_errors())},
          {"lego_pmon_fs_retried_total", static_cast<double>(remote_.retried())},
          {"lego_pmon_fs_busy_retried_total", static_cast<double>(remote_.busy_retried())}};
}

}  // namespace lego::pmon
