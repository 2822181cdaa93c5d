// FileStore: a storage monitor's files, one namespace per vNode, answering FS requests (protocol/fs.h).
//
// Layout: vNode <id> lives in `root_dir/vnodes/<id>/` (decimal id); a request's path is relative to it.
// Open finds the vNodes already there, so a restarted smon keeps them, and recomputes the bytes in use.
//
// Promises:
//   - Nothing escapes a namespace. A path's parent is resolved with openat2(RESOLVE_BENEATH |
//     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) from the vNode's root, and the last
//     component is used only through *at() calls that never follow a symlink. Lego never creates
//     symlinks; one planted by hand is never followed (ELOOP), though GETATTR, READDIR, UNLINK and RENAME
//     see and act on the link itself, never its target. Only regular files and directories are opened
//     (anything else planted by hand: EACCES). Execute re-validates every path (ValidateFsPath).
//   - Capacity quota: `capacity_bytes` bounds the bytes that regular files occupy (st_blocks * 512).
//     A WRITE or a SETATTR that grows a file fails with ENOSPC before touching it if its estimated growth
//     (new allocation rounded up to 4 KiB) does not fit; afterwards used_bytes follows the file's real
//     st_blocks. used_bytes is approximate (hard links, directory blocks and file-system metadata are not
//     exact) but never goes negative and is recomputed by Open, so it survives a restart.
//   - Errors are positive Linux errno values in FsReply::f.err (ENOENT for an unknown vNode). Execute
//     never throws and never crashes on any request; bad things are logged, rate limited.
//   - The vNode root (path "") may be read (GETATTR, READDIR, STATFS, FSYNC, SETATTR); RMDIR, UNLINK and
//     RENAME of it fail with EBUSY, READ/WRITE/CREATE with EISDIR, MKDIR with EEXIST.
//   - FSYNC makes the file's data (fdatasync with kFsDataSync) and its directory entry durable; so does a
//     WRITE with kFsWriteSync, once it has written all of its data.
//   - READDIR is stateless: the cookie is the directory offset (d_off) after the last entry returned, and
//     one reply carries at most Options::readdir_reply_bytes of encoded entries ("." and ".." skipped).
//
// Thread safety: every method may be called from any thread. Requests run in parallel; vNode creation and
// removal are serialized with each other. A request that raced with RemoveVnode of its vNode may finish on
// the detached tree (its effects are then discarded with it).
//
// Not atomic: RemoveVnode first renames the vNode's directory away (atomic), then deletes the tree; a crash
// in between leaves a `.removing-*` directory that the next Open deletes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "protocol/fs.h"

namespace lego::smon {

class FileStore : public proto::FsService {
 public:
  struct Options {
    // Upper bound on the encoded entries (14 bytes + name each) of one READDIR reply.
    size_t readdir_reply_bytes = 60 << 10;
  };

  // Opens (creating if missing) root_dir and root_dir/vnodes. kIoError if they cannot be used or the
  // kernel lacks openat2 (Linux >= 5.6); kInvalidArgument if capacity_bytes is 0.
  static Result<std::unique_ptr<FileStore>> Open(std::string root_dir, uint64_t capacity_bytes);
  static Result<std::unique_ptr<FileStore>> Open(std::string root_dir, uint64_t capacity_bytes,
                                                 Options options);
  ~FileStore() override;
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  // Idempotent: an existing namespace (in memory or on disk) is kept. kInvalidArgument for id 0.
  Status CreateVnode(uint32_t id);
  // Deletes the vNode's whole tree (never following a symlink). kNotFound if there is no such vNode.
  Status RemoveVnode(uint32_t id);
  bool HasVnode(uint32_t id) const;
  std::vector<uint32_t> Vnodes() const;  // ascending

  uint64_t used_bytes() const;
  uint64_t capacity_bytes() const { return capacity_; }
  const std::string& root_dir() const { return root_dir_; }

  proto::FsReply Execute(const proto::FsRequest& req) override;

 private:
  struct Vnode;
  class Fd;
  struct Target;

  FileStore(std::string root_dir, uint64_t capacity, Options options, int vnodes_fd);
  std::shared_ptr<const Vnode> FindVnode(uint32_t id) const;
  Result<std::shared_ptr<const Vnode>> OpenVnode(uint32_t id) const;

  // Quota accounting. Reserve adds `bytes` if they fit under capacity; Settle replaces a reservation by
  // the real change in allocation (both in bytes, never driving used below 0).
  bool Reserve(uint64_t bytes);
  void Settle(uint64_t reserved, int64_t delta);
  void Release(uint64_t bytes);
  Mutex& InodeLock(uint64_t dev, uint64_t ino) const;

  proto::FsReply Getattr(const Target& t);
  proto::FsReply Create(const Target& t, const proto::FsRequest& req);
  proto::FsReply Read(const Target& t, const proto::FsRequest& req);
  proto::FsReply Write(const Target& t, const proto::FsRequest& req);
  proto::FsReply Setattr(const Target& t, const proto::FsRequest& req);
  proto::FsReply Readdir(const Target& t, const proto::FsRequest& req);
  proto::FsReply Mkdir(const Target& t, const proto::FsRequest& req);
  proto::FsReply Rmdir(const Target& t);
  proto::FsReply Unlink(const Target& t);
  proto::FsReply Rename(const Vnode& v, const Target& from, const proto::FsRequest& req);
  proto::FsReply Fsync(const Target& t, const proto::FsRequest& req);
  // fsync (fdatasync if data_only) of an open file of t, then of its directory if an entry changed: 0 or
  // errno.
  int SyncOpenFile(const Target& t, int fd, bool data_only);
  proto::FsReply Statfs(const Vnode& v);

  // Directory durability without an fsync of the directory on every file fsync: each directory carries a
  // generation, bumped AFTER every change of its entries (create, mkdir, rmdir, unlink, rename); FSYNC
  // reads the generation BEFORE it syncs the directory and records it as synced afterwards, and skips the
  // directory when nothing changed since. A directory never seen (e.g. since a restart) counts as changed.
  void DirChanged(int dirfd);
  bool DirNeedsSync(int dirfd, std::pair<uint64_t, uint64_t>* key, uint64_t* gen);
  void DirSynced(std::pair<uint64_t, uint64_t> key, uint64_t gen);

  const std::string root_dir_;
  const uint64_t capacity_;
  const Options options_;
  const int vnodes_fd_;  // O_PATH|O_DIRECTORY of root_dir/vnodes, owned

  mutable Mutex mu_;
  std::map<uint32_t, std::shared_ptr<const Vnode>> vnodes_ GUARDED_BY(mu_);
  Mutex admin_mu_;  // serializes CreateVnode/RemoveVnode; taken before mu_

  mutable Mutex usage_mu_;
  uint64_t used_ GUARDED_BY(usage_mu_) = 0;

  // Serializes the size-changing requests on one inode (WRITE, SETATTR size, UNLINK) so that their
  // before/after st_blocks deltas do not overlap. Striped by inode number.
  mutable std::array<Mutex, 64> inode_locks_;

  struct DirGen {
    uint64_t gen = 1;     // bumped on every change of the directory's entries
    uint64_t synced = 0;  // the generation the last directory fsync covered
  };
  Mutex dirs_mu_;
  std::map<std::pair<uint64_t, uint64_t>, DirGen> dirs_ GUARDED_BY(dirs_mu_);  // by (dev, ino)
};

}  // namespace lego::smon
