// VnodeMount: the process monitor's FUSE mount of one vNode's file system. Programs the pmon runs see the
// vNode's files under a local directory; every file operation they make becomes one stateless FS request
// (src/protocol/fs.h) sent to a backend (in production a client of the vNode's buffer-cache home, an
// mmon). No file handle and no state live here: open, flush and release keep nothing, and read and write
// name the file by path and offset, as LegoOS does.
//
// Threads: the mount owns one loop thread, which runs libfuse's multi-threaded loop (a few worker threads,
// MountOptions::max_threads at most). Those workers call the backend and the AccessCheck concurrently, so
// both must be thread-safe. Mount, Unmount and the accessors may be called from any thread; Unmount must
// not be called from a FUSE callback (it waits for the workers).
// Lifetime: the backend and whatever the AccessCheck captures must outlive the mount (until Unmount returns
// or the object is destroyed).
// Signals: libfuse's signal handlers are not installed; the daemon owns signals.
//
// Semantics (what a program sees):
// - Access: every request first runs the AccessCheck with the requesting thread's id (the kernel's view of
//   it, fuse_get_context()->pid); false fails the request with EACCES. This keeps vNode A's processes out
//   of vNode B's mount. Mode bits are checked by the kernel (default_permissions); when the pmon runs as
//   root the mount is allow_other, so programs of other users can use it.
// - Caching: attributes and names are cached by the kernel for attr/entry_timeout seconds. With the
//   writeback cache (MountOptions::writeback_cache) write() lands in the page cache and the
//   kernel sends the dirty pages on fsync, on close (before FLUSH), under memory pressure and periodically;
//   off (the default: see decision 007), every write() reaches the backend before it returns. The page
//   cache of a file is dropped at each open, so data written by another pmon is seen after a reopen, as
//   with NFS's close-to-open consistency (a size changed elsewhere may be seen up to attr_timeout late).
// - Unlink of an open file removes it at once (no ".fuse_hidden" files): a later read through a still-open
//   descriptor fails with ENOENT, as a stateless NFS client gives ESTALE.
// - Lego supports regular files and directories only: symlink, link, readlink and mknod of anything other
//   than a regular file fail with EPERM. Extended attributes and locks across pmons are not supported
//   (locks are local to this kernel).
// - Errors: a backend errno in [1, kFsMaxErrno] is returned as is; anything else becomes EIO. A path the
//   wire cannot carry (a name over 255 bytes, a path over 4095) fails with ValidateFsPath's errno
//   (ENAMETOOLONG) without a request.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "common/status.h"
#include "protocol/fs.h"

struct fuse;

namespace lego::pmon {

// Whether the thread `requester_tid` may use the mount. Empty: everyone may.
using AccessCheck = std::function<bool(pid_t requester_tid)>;

struct MountOptions {
  double attr_timeout_s = 1.0;   // how long the kernel caches attributes
  double entry_timeout_s = 1.0;  // how long the kernel caches name lookups (negative lookups: not at all)
  std::string fsname;            // /proc/mounts source; empty: "lego-vnode-<id>"
  std::string subtype = "lego";  // /proc/mounts type is "fuse.<subtype>"
  unsigned max_threads = 8;      // libfuse worker threads at most
  unsigned max_idle_threads = 4;
  bool writeback_cache = false;  // the kernel caches writes and sends them back in batches (decision 007)
};

class VnodeMount {
 public:
  // Requests sent to the backend, by FsOp (index = FsOp value; 0 unused), and failures.
  struct Counters {
    std::array<uint64_t, proto::kFsOpCount + 1> requests{};
    uint64_t errors = 0;    // backend replies with an errno, or invalid replies
    uint64_t denied = 0;    // requests refused by the AccessCheck (EACCES)
    uint64_t bad_path = 0;  // paths the wire cannot carry (answered without a request)
  };

  // Mounts the vNode's file system on `mountpoint` (created if missing; a stale FUSE mount left there by a
  // killed pmon is detached first) and starts serving it. kIoError if the mount fails.
  static Result<std::unique_ptr<VnodeMount>> Mount(const std::string& mountpoint, uint32_t vnode_id,
                                                   proto::FsService* backend, AccessCheck check,
                                                   const MountOptions& opts = {});
  ~VnodeMount();  // Unmount()
  VnodeMount(const VnodeMount&) = delete;
  VnodeMount& operator=(const VnodeMount&) = delete;

  // Stops serving and removes the mount. Idempotent. Does not hang if programs still have files open or a
  // cwd inside, or hold /dev/fuse through a fork: the connection is aborted (a forced umount; needs root,
  // else a lazy fusermount) and the mount detached lazily, so their further requests fail with ENOTCONN
  // and dirty pages of shared writable mappings not yet written back are lost. Waits for backend calls in
  // progress. Afterwards /proc/self/mounts has no entry for the mountpoint.
  void Unmount();

  const std::string& mountpoint() const { return mountpoint_; }
  uint32_t vnode_id() const { return vnode_id_; }
  bool mounted() const;
  Counters counters() const;

 private:
  friend struct FuseOps;  // the libfuse callbacks (vnode_mount.cc)

  VnodeMount(std::string mountpoint, uint32_t vnode_id, proto::FsService* backend, AccessCheck check,
             const MountOptions& opts);
  // The backend's reply to req, counted; a reply with an errno out of range becomes EIO.
  proto::FsReply Call(proto::FsRequest& req);
  // The same for a kRead whose data goes into dst (*n: bytes); with n == nullptr, Call.
  proto::FsReply CallRead(proto::FsRequest& req, std::span<uint8_t> dst, size_t* n);
  // 0 if the calling FUSE request may proceed, else -EACCES.
  int CheckAccess();
  void CountBadPath() { bad_path_.fetch_add(1, std::memory_order_relaxed); }

  const std::string mountpoint_;
  const uint32_t vnode_id_;
  proto::FsService* const backend_;
  const AccessCheck check_;
  const MountOptions opts_;

  mutable std::mutex mu_;  // serializes Mount's setup and Unmount
  struct fuse* fuse_ = nullptr;
  int root_fd_ = -1;  // O_PATH fd of the mount's root: Unmount reaches our mount even if shadowed
  std::thread loop_;

  std::array<std::atomic<uint64_t>, proto::kFsOpCount + 1> requests_{};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> denied_{0};
  std::atomic<uint64_t> bad_path_{0};
};

}  // namespace lego::pmon
