#include "smon/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "common/log.h"

// Debian 12's glibc has no openat2 wrapper and may lack linux/openat2.h; fchmodat2 is newer still.
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

namespace lego::smon {

using proto::FsAttr;
using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

namespace {

struct OpenHow {  // struct open_how
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
constexpr uint64_t kResolveNoXdev = 0x01;
constexpr uint64_t kResolveNoMagiclinks = 0x02;
constexpr uint64_t kResolveNoSymlinks = 0x04;
constexpr uint64_t kResolveBeneath = 0x08;
constexpr uint64_t kResolveSafe =
    kResolveBeneath | kResolveNoSymlinks | kResolveNoMagiclinks | kResolveNoXdev;

constexpr uint32_t kRenameNoreplace = 1;
constexpr uint32_t kRenameExchange = 2;
constexpr uint64_t kBlock = 4096;
constexpr int kMaxTreeDepth = 512;  // RemoveTree/TreeBytes hold one fd per level
constexpr const char* kRemovingPrefix = ".removing-";

int Errno() { return errno != 0 ? errno : EIO; }

long OpenAt2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  OpenHow how{flags, 0, resolve};
  for (int attempt = 0;; ++attempt) {
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    if (fd >= 0 || errno != EAGAIN || attempt == 3) return fd;  // EAGAIN: a concurrent rename; retry
  }
}

int64_t Nanos(const timespec& ts) {
  int64_t ns;
  if (__builtin_mul_overflow(static_cast<int64_t>(ts.tv_sec), int64_t{1000000000}, &ns) ||
      __builtin_add_overflow(ns, static_cast<int64_t>(ts.tv_nsec), &ns))
    return ts.tv_sec < 0 ? INT64_MIN : INT64_MAX;
  return ns;
}

FsAttr ToAttr(const struct stat& st) {
  FsAttr a{};
  a.ino = st.st_ino;
  a.size = static_cast<uint64_t>(st.st_size);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.atime_ns = Nanos(st.st_atim);
  a.mtime_ns = Nanos(st.st_mtim);
  a.ctime_ns = Nanos(st.st_ctim);
  return a;
}

FsReply AttrReply(const struct stat& st) {
  FsReply r;
  r.f.flags = proto::kFsReplyAttr;
  r.f.attr = ToAttr(st);
  return r;
}

uint64_t Allocated(const struct stat& st) { return static_cast<uint64_t>(st.st_blocks) * 512; }

// Bytes the blocks of [start, end) span.
uint64_t SpanBytes(uint64_t start, uint64_t end) {
  if (end <= start) return 0;
  return (end + kBlock - 1) / kBlock * kBlock - start / kBlock * kBlock;
}

// What writing [offset, end) to a file of `size` bytes may newly allocate: the part past EOF, and the
// part inside the file from its first hole on (SEEK_HOLE; all of it if that fails).
uint64_t GrowthEstimate(int fd, uint64_t size, uint64_t offset, uint64_t end) {
  uint64_t grow = end > size ? SpanBytes(std::max(offset, size), end) : 0;
  uint64_t inside_end = std::min(end, size);
  if (offset < inside_end) {
    off_t hole = lseek(fd, static_cast<off_t>(offset), SEEK_HOLE);
    if (hole < 0) {
      grow += SpanBytes(offset, inside_end);
    } else if (static_cast<uint64_t>(hole) < inside_end) {
      grow += SpanBytes(static_cast<uint64_t>(hole), inside_end);
    }
  }
  return grow;
}

bool ParseVnodeId(std::string_view name, uint32_t* id) {
  if (name.empty() || name[0] == '0') return false;  // canonical decimal, nonzero
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), *id);
  return ec == std::errc() && p == name.data() + name.size();
}

struct DirEntry {
  std::string name;
  unsigned char type;
};

// Every entry of an open directory but "." and "..". Returns 0 or an errno.
int ListDir(int fd, std::vector<DirEntry>* out) {
  if (lseek(fd, 0, SEEK_SET) < 0) return Errno();
  alignas(8) char buf[16384];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (n < 0) return Errno();
    if (n == 0) return 0;
    for (long pos = 0; pos < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + pos);
      pos += d->d_reclen;
      std::string_view name(d->d_name);
      if (name == "." || name == "..") continue;
      out->push_back({std::string(name), d->d_type});
    }
  }
}

// Sum of st_blocks * 512 of the regular files below the open directory `fd` (symlinks never followed).
int TreeBytes(int fd, int depth, uint64_t* bytes) {
  if (depth > kMaxTreeDepth) return ELOOP;
  std::vector<DirEntry> entries;
  if (int e = ListDir(fd, &entries)) return e;
  int first_err = 0;
  for (const auto& e : entries) {
    struct stat st;
    if (fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced with an unlink
    if (S_ISREG(st.st_mode)) {
      *bytes += Allocated(st);
    } else if (S_ISDIR(st.st_mode)) {
      int child = openat(fd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        if (!first_err) first_err = Errno();
        continue;
      }
      int err = TreeBytes(child, depth + 1, bytes);
      close(child);
      if (err && !first_err) first_err = err;
    }
  }
  return first_err;
}

// Deletes parent/name and everything below it, never following a symlink. Adds the bytes of the regular
// files it unlinked (those with no other link) to *bytes. Returns 0 or the first errno.
int RemoveTree(int parent, const char* name, int depth, uint64_t* bytes) {
  if (depth > kMaxTreeDepth) return ELOOP;
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Errno();
  std::vector<DirEntry> entries;
  int first_err = ListDir(fd, &entries);
  for (const auto& e : entries) {
    struct stat st;
    if (fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      int err = RemoveTree(fd, e.name.c_str(), depth + 1, bytes);
      if (err && !first_err) first_err = err;
      continue;
    }
    if (unlinkat(fd, e.name.c_str(), 0) != 0) {
      if (!first_err) first_err = Errno();
    } else if (S_ISREG(st.st_mode) && st.st_nlink <= 1) {
      *bytes += Allocated(st);
    }
  }
  close(fd);
  if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && !first_err) first_err = Errno();
  return first_err;
}

std::string VnodeName(uint32_t id) { return std::to_string(id); }

}  // namespace

// An owned file descriptor.
class FileStore::Fd {
 public:
  Fd() = default;
  explicit Fd(long fd) : fd_(static_cast<int>(fd)) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct FileStore::Vnode {
  uint32_t id;
  Fd root;  // O_PATH|O_DIRECTORY of root_dir/vnodes/<id>
};

// A request's path, resolved: the directory that holds the last component, and that component.
struct FileStore::Target {
  int dir = -1;  // parent directory (O_PATH): owned.get() or the vNode's root
  Fd owned;
  std::string name;  // last component; empty for the vNode root
  bool is_root() const { return name.empty(); }
  // The component for *at() calls: "." names the root itself.
  const char* leaf() const { return name.empty() ? "." : name.c_str(); }
};

namespace {

// Resolves `path` (already validated) in the vNode whose root is `root`. Returns 0 or an errno.
template <typename TargetT>
int Resolve(int root, std::string_view path, TargetT* t) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    t->dir = root;
    t->name = std::string(path);
    return 0;
  }
  std::string parent(path.substr(0, slash));
  long fd = OpenAt2(root, parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, kResolveSafe);
  if (fd < 0) {
    int e = Errno();
    if (e == EXDEV) LEGO_LOG_RATELIMITED("fs_path_escape_refused path_len={}", path.size());
    return e;
  }
  t->owned = decltype(t->owned)(fd);
  t->dir = t->owned.get();
  t->name = std::string(path.substr(slash + 1));
  return 0;
}

// Opens dir/name for I/O, never following a symlink (ELOOP) and never opening anything but a regular file
// or a directory (EACCES: FIFOs and devices planted by hand stay shut). A directory is opened O_RDONLY;
// asking to write one is EISDIR. Fills *st from the opened fd. Returns the fd or -errno.
long OpenNode(int dir, const char* name, int access, struct stat* st) {
  if (fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW) != 0) return -Errno();
  if (S_ISLNK(st->st_mode)) return -ELOOP;
  int flags;
  if (S_ISDIR(st->st_mode)) {
    if (access != O_RDONLY) return -EISDIR;
    flags = O_RDONLY | O_DIRECTORY;
  } else if (S_ISREG(st->st_mode)) {
    flags = access;
  } else {
    return -EACCES;
  }
  int fd = openat(dir, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return -Errno();
  if (fstat(fd, st) != 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
    close(fd);
    return -EACCES;  // swapped for something else between the two calls
  }
  return fd;
}

// chmod of an O_PATH fd: fchmodat2(AT_EMPTY_PATH) (Linux 6.6), else through /proc/self/fd.
int ChmodPath(int fd, mode_t mode) {
  if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return Errno();
  std::string proc = fmt::format("/proc/self/fd/{}", fd);
  return fchmodat(AT_FDCWD, proc.c_str(), mode, 0) == 0 ? 0 : Errno();
}

int UtimesPath(int fd, const timespec ts[2]) {
  if (utimensat(fd, "", ts, AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOENT && errno != EINVAL) return Errno();
  std::string proc = fmt::format("/proc/self/fd/{}", fd);
  return utimensat(AT_FDCWD, proc.c_str(), ts, 0) == 0 ? 0 : Errno();
}

}  // namespace

Result<std::unique_ptr<FileStore>> FileStore::Open(std::string root_dir, uint64_t capacity_bytes) {
  return Open(std::move(root_dir), capacity_bytes, Options{});
}

Result<std::unique_ptr<FileStore>> FileStore::Open(std::string root_dir, uint64_t capacity_bytes,
                                                   Options options) {
  if (capacity_bytes == 0) return InvalidArgument("file store capacity is 0");
  if (root_dir.empty()) return InvalidArgument("file store root dir is empty");
  if (mkdir(root_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return ErrnoError(fmt::format("creating {}", root_dir), errno);
  Fd root(open(root_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.ok()) return ErrnoError(fmt::format("opening {}", root_dir), errno);
  if (mkdirat(root.get(), "vnodes", 0700) != 0 && errno != EEXIST)
    return ErrnoError(fmt::format("creating {}/vnodes", root_dir), errno);
  long vfd = openat(root.get(), "vnodes", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (vfd < 0) return ErrnoError(fmt::format("opening {}/vnodes", root_dir), errno);
  Fd probe(OpenAt2(static_cast<int>(vfd), ".", O_PATH | O_DIRECTORY | O_CLOEXEC, kResolveSafe));
  if (!probe.ok()) {
    int e = errno;
    close(static_cast<int>(vfd));
    return ErrnoError("openat2 (needs Linux >= 5.6)", e);
  }
  std::unique_ptr<FileStore> store(
      new FileStore(std::move(root_dir), capacity_bytes, options, static_cast<int>(vfd)));

  Fd list(openat(store->vnodes_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::vector<DirEntry> entries;
  if (!list.ok() || ListDir(list.get(), &entries) != 0)
    return ErrnoError(fmt::format("listing {}/vnodes", store->root_dir_), errno);
  uint64_t used = 0;
  for (const auto& e : entries) {
    uint32_t id = 0;
    if (e.name.starts_with(kRemovingPrefix)) {
      uint64_t freed = 0;
      int err = RemoveTree(store->vnodes_fd_, e.name.c_str(), 0, &freed);
      LEGO_LOG_INFO("vnode_removal_finished dir={} err={}", e.name, err ? std::strerror(err) : "none");
      continue;
    }
    if (!ParseVnodeId(e.name, &id)) {
      LEGO_LOG_WARN("vnode_dir_ignored dir={}/vnodes/{} reason=not_a_vnode_id", store->root_dir_, e.name);
      continue;
    }
    auto v = store->OpenVnode(id);
    if (!v.ok()) {
      LEGO_LOG_WARN("vnode_dir_ignored vnode={} error=\"{}\"", id, v.status().ToString());
      continue;
    }
    Fd rd(openat((*v)->root.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!rd.ok() || TreeBytes(rd.get(), 0, &used) != 0)
      LEGO_LOG_WARN("vnode_usage_incomplete vnode={} (used bytes may be low)", id);
    MutexLock lk(store->mu_);
    store->vnodes_[id] = std::move(v).value();
  }
  {
    MutexLock lk(store->usage_mu_);
    store->used_ = used;
  }
  LEGO_LOG_INFO("file_store_opened root={} vnodes={} used_bytes={} capacity_bytes={}", store->root_dir_,
                store->Vnodes().size(), used, capacity_bytes);
  return store;
}

FileStore::FileStore(std::string root_dir, uint64_t capacity, Options options, int vnodes_fd)
    : root_dir_(std::move(root_dir)), capacity_(capacity), options_(options), vnodes_fd_(vnodes_fd) {}

FileStore::~FileStore() { close(vnodes_fd_); }

Result<std::shared_ptr<const FileStore::Vnode>> FileStore::OpenVnode(uint32_t id) const {
  std::string name = VnodeName(id);
  Fd fd(openat(vnodes_fd_, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.ok()) return ErrnoError(fmt::format("opening vnode dir {}", name), errno);
  auto v = std::make_shared<Vnode>();
  v->id = id;
  v->root = std::move(fd);
  return std::shared_ptr<const Vnode>(std::move(v));
}

std::shared_ptr<const FileStore::Vnode> FileStore::FindVnode(uint32_t id) const {
  MutexLock lk(mu_);
  auto it = vnodes_.find(id);
  return it == vnodes_.end() ? nullptr : it->second;
}

Status FileStore::CreateVnode(uint32_t id) {
  if (id == 0) return InvalidArgument("vnode id 0");
  MutexLock admin(admin_mu_);
  if (HasVnode(id)) return Status::Ok();
  std::string name = VnodeName(id);
  bool existed = false;
  if (mkdirat(vnodes_fd_, name.c_str(), 0700) != 0) {
    if (errno != EEXIST) return ErrnoError(fmt::format("creating vnode dir {}", name), errno);
    existed = true;
  } else if (fchmodat(vnodes_fd_, name.c_str(), 01777, 0) != 0) {
    // The vNode's root is what its programs see as their mount's root: like /tmp, any user may create
    // files there (the smon's own vnodes/ directory stays 0700 on the smon's host).
    return ErrnoError(fmt::format("chmod vnode dir {}", name), errno);
  }
  auto v = OpenVnode(id);
  if (!v.ok()) return v.status();
  if (existed) {  // made by hand since Open: count what it holds
    uint64_t bytes = 0;
    Fd rd(openat((*v)->root.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (rd.ok()) (void)TreeBytes(rd.get(), 0, &bytes);
    MutexLock lk(usage_mu_);
    used_ += bytes;
  }
  MutexLock lk(mu_);
  vnodes_[id] = std::move(v).value();
  LEGO_LOG_INFO("vnode_created vnode={} existed={}", id, existed);
  return Status::Ok();
}

Status FileStore::RemoveVnode(uint32_t id) {
  MutexLock admin(admin_mu_);
  {
    MutexLock lk(mu_);
    if (vnodes_.erase(id) == 0) return NotFound(fmt::format("vnode {}", id));
  }
  static std::atomic<uint64_t> seq{0};
  std::string name = VnodeName(id);
  std::string doomed = fmt::format("{}{}-{}-{}", kRemovingPrefix, id, getpid(), seq.fetch_add(1));
  const char* victim = doomed.c_str();
  if (renameat(vnodes_fd_, name.c_str(), vnodes_fd_, victim) != 0) {
    LEGO_LOG_WARN("vnode_rename_failed vnode={} error=\"{}\" (deleting in place)", id, std::strerror(errno));
    victim = name.c_str();
  }
  uint64_t freed = 0;
  int err = RemoveTree(vnodes_fd_, victim, 0, &freed);
  Release(freed);
  if (err) {
    LEGO_LOG_ERROR("vnode_remove_failed vnode={} error=\"{}\"", id, std::strerror(err));
    return ErrnoError(fmt::format("removing vnode {}", id), err);
  }
  LEGO_LOG_INFO("vnode_removed vnode={} freed_bytes={}", id, freed);
  return Status::Ok();
}

bool FileStore::HasVnode(uint32_t id) const {
  MutexLock lk(mu_);
  return vnodes_.contains(id);
}

std::vector<uint32_t> FileStore::Vnodes() const {
  MutexLock lk(mu_);
  std::vector<uint32_t> out;
  out.reserve(vnodes_.size());
  for (const auto& [id, v] : vnodes_) out.push_back(id);
  return out;
}

uint64_t FileStore::used_bytes() const {
  MutexLock lk(usage_mu_);
  return used_;
}

bool FileStore::Reserve(uint64_t bytes) {
  if (bytes == 0)
    return true;  // rewriting allocated blocks: allowed even if metadata pushed us past capacity
  MutexLock lk(usage_mu_);
  if (bytes > capacity_ || used_ > capacity_ - bytes) return false;
  used_ += bytes;
  return true;
}

void FileStore::Settle(uint64_t reserved, int64_t delta) {
  MutexLock lk(usage_mu_);
  uint64_t base = used_ >= reserved ? used_ - reserved : 0;
  if (delta >= 0) {
    used_ = base + static_cast<uint64_t>(delta);
  } else {
    uint64_t down = static_cast<uint64_t>(-(delta + 1)) + 1;
    used_ = base >= down ? base - down : 0;
  }
}

void FileStore::Release(uint64_t bytes) { Settle(bytes, 0); }

Mutex& FileStore::InodeLock(uint64_t dev, uint64_t ino) const {
  return inode_locks_[(ino * 0x9E3779B97F4A7C15ull ^ dev) % inode_locks_.size()];
}

FsReply FileStore::Execute(const FsRequest& req) {
  try {
    int e = 0;
    if (!proto::ValidateFsPath(req.path, &e).ok()) return FsReply::Errno(e ? e : EINVAL);
    if (req.op == FsOp::kRename && !proto::ValidateFsPath(req.path2, &e).ok())
      return FsReply::Errno(e ? e : EINVAL);
    auto v = FindVnode(req.f.vnode);
    if (!v) return FsReply::Errno(ENOENT);
    if (req.op == FsOp::kStatfs) return Statfs(*v);
    Target t;
    if (int err = Resolve(v->root.get(), req.path, &t)) return FsReply::Errno(err);
    switch (req.op) {
      case FsOp::kGetattr:
        return Getattr(t);
      case FsOp::kCreate: {
        FsReply r = Create(t, req);
        if (r.err() == 0) DirChanged(t.dir);
        return r;
      }
      case FsOp::kRead:
        return Read(t, req);
      case FsOp::kWrite:
        return Write(t, req);
      case FsOp::kSetattr:
        return Setattr(t, req);
      case FsOp::kReaddir:
        return Readdir(t, req);
      case FsOp::kMkdir:
      case FsOp::kRmdir:
      case FsOp::kUnlink: {
        FsReply r = req.op == FsOp::kMkdir ? Mkdir(t, req) : req.op == FsOp::kRmdir ? Rmdir(t) : Unlink(t);
        if (r.err() == 0) DirChanged(t.dir);
        return r;
      }
      case FsOp::kRename:
        return Rename(*v, t, req);
      case FsOp::kFsync:
        return Fsync(t, req);
      case FsOp::kStatfs:
        break;
    }
    return FsReply::Errno(ENOSYS);
  } catch (const std::exception& ex) {  // bad_alloc and friends: never cross the service boundary
    LEGO_LOG_RATELIMITED("fs_request_failed op={} error=\"{}\"", proto::FsOpName(req.op), ex.what());
    return FsReply::Errno(EIO);
  }
}

FsReply FileStore::Getattr(const Target& t) {
  struct stat st;
  if (fstatat(t.dir, t.leaf(), &st, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(Errno());
  return AttrReply(st);
}

FsReply FileStore::Create(const Target& t, const FsRequest& req) {
  if (t.is_root()) return FsReply::Errno((req.f.flags & proto::kFsExclusive) ? EEXIST : EISDIR);
  mode_t mode = req.f.mode & 07777;
  Fd fd(openat(t.dir, t.leaf(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
               mode));
  struct stat st;
  if (fd.ok()) {
    if (fchmod(fd.get(), mode) != 0) return FsReply::Errno(Errno());  // exact bits, whatever the umask
    if (fstat(fd.get(), &st) != 0) return FsReply::Errno(Errno());
    return AttrReply(st);
  }
  if (errno != EEXIST || (req.f.flags & proto::kFsExclusive)) return FsReply::Errno(Errno());
  if (fstatat(t.dir, t.leaf(), &st, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(Errno());
  if (S_ISDIR(st.st_mode)) return FsReply::Errno(EISDIR);
  if (S_ISLNK(st.st_mode)) return FsReply::Errno(ELOOP);
  if (!S_ISREG(st.st_mode)) return FsReply::Errno(EACCES);
  return AttrReply(st);
}

FsReply FileStore::Read(const Target& t, const FsRequest& req) {
  if (t.is_root()) return FsReply::Errno(EISDIR);
  if (req.f.offset > static_cast<uint64_t>(INT64_MAX)) return FsReply::Errno(EINVAL);
  struct stat st;
  long rc = OpenNode(t.dir, t.leaf(), O_RDONLY, &st);
  if (rc < 0) return FsReply::Errno(static_cast<int>(-rc));
  Fd fd(rc);
  if (S_ISDIR(st.st_mode)) return FsReply::Errno(EISDIR);
  FsReply r = AttrReply(st);
  size_t want = static_cast<size_t>(std::min<uint64_t>(req.f.length, proto::kFsMaxIo));
  r.data.resize(want);
  size_t got = 0;
  while (got < want) {
    uint64_t off = req.f.offset + got;
    if (off > static_cast<uint64_t>(INT64_MAX)) break;
    ssize_t n = pread(fd.get(), r.data.data() + got, want - got, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (got == 0) return FsReply::Errno(Errno());
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  r.data.resize(got);
  return r;
}

FsReply FileStore::Write(const Target& t, const FsRequest& req) {
  if (t.is_root()) return FsReply::Errno(EISDIR);
  uint64_t offset = req.f.offset;
  uint64_t len = req.data.size();
  if (offset > static_cast<uint64_t>(INT64_MAX) || len > static_cast<uint64_t>(INT64_MAX) - offset)
    return FsReply::Errno(EFBIG);
  struct stat st;
  long rc = OpenNode(t.dir, t.leaf(), O_WRONLY, &st);
  if (rc < 0) return FsReply::Errno(static_cast<int>(-rc));
  Fd fd(rc);
  MutexLock lk(InodeLock(st.st_dev, st.st_ino));
  if (fstat(fd.get(), &st) != 0) return FsReply::Errno(Errno());
  uint64_t estimate = GrowthEstimate(fd.get(), static_cast<uint64_t>(st.st_size), offset, offset + len);
  if (!Reserve(estimate)) {
    LEGO_LOG_RATELIMITED("fs_quota_full op=write need_bytes={} used_bytes={} capacity_bytes={}", estimate,
                         used_bytes(), capacity_);
    return FsReply::Errno(ENOSPC);
  }
  const uint64_t before = Allocated(st);
  size_t done = 0;
  int err = 0;
  while (done < len) {
    ssize_t n = pwrite(fd.get(), req.data.data() + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = Errno();
      break;
    }
    if (n == 0) {
      err = EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  bool have_after = fstat(fd.get(), &st) == 0;
  Settle(estimate, have_after ? static_cast<int64_t>(Allocated(st)) - static_cast<int64_t>(before) : 0);
  if (done == 0 && err) return FsReply::Errno(err);
  if (!have_after) return FsReply::Errno(Errno());
  if ((req.f.flags & proto::kFsWriteSync) && done == len) {
    // A short write reports its count unsynced: the writer retries the rest, and syncs with that.
    if (int serr = SyncOpenFile(t, fd.get(), req.f.flags & proto::kFsDataSync); serr != 0)
      return FsReply::Errno(serr);
  }
  FsReply r = AttrReply(st);
  r.f.value = done;
  return r;
}

FsReply FileStore::Setattr(const Target& t, const FsRequest& req) {
  const uint32_t valid = req.f.valid;
  if (valid & ~proto::kFsSetAll) return FsReply::Errno(EINVAL);
  Fd node(openat(t.dir, t.leaf(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!node.ok()) return FsReply::Errno(Errno());
  struct stat st;
  if (fstat(node.get(), &st) != 0) return FsReply::Errno(Errno());
  if (S_ISLNK(st.st_mode)) return FsReply::Errno(ELOOP);
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return FsReply::Errno(EACCES);

  if (valid & proto::kFsSetSize) {
    if (S_ISDIR(st.st_mode)) return FsReply::Errno(EISDIR);
    if (req.f.length > static_cast<uint64_t>(INT64_MAX)) return FsReply::Errno(EFBIG);
    struct stat wst;
    long wrc = OpenNode(t.dir, t.leaf(), O_WRONLY, &wst);
    if (wrc < 0) return FsReply::Errno(static_cast<int>(-wrc));
    Fd wfd(wrc);
    if (wst.st_ino != st.st_ino || wst.st_dev != st.st_dev) return FsReply::Errno(ESTALE);  // raced
    MutexLock lk(InodeLock(wst.st_dev, wst.st_ino));
    if (fstat(wfd.get(), &wst) != 0) return FsReply::Errno(Errno());
    uint64_t size = static_cast<uint64_t>(wst.st_size);
    uint64_t estimate = req.f.length > size ? SpanBytes(size, req.f.length) : 0;
    if (!Reserve(estimate)) {
      LEGO_LOG_RATELIMITED("fs_quota_full op=truncate need_bytes={} used_bytes={} capacity_bytes={}",
                           estimate, used_bytes(), capacity_);
      return FsReply::Errno(ENOSPC);
    }
    const uint64_t before = Allocated(wst);
    int err = ftruncate(wfd.get(), static_cast<off_t>(req.f.length)) == 0 ? 0 : Errno();
    bool have_after = fstat(wfd.get(), &wst) == 0;
    Settle(estimate, have_after ? static_cast<int64_t>(Allocated(wst)) - static_cast<int64_t>(before) : 0);
    if (err) return FsReply::Errno(err);
  }
  if (valid & (proto::kFsSetUid | proto::kFsSetGid)) {
    uid_t uid = (valid & proto::kFsSetUid) ? req.f.uid : static_cast<uid_t>(-1);
    gid_t gid = (valid & proto::kFsSetGid) ? req.f.gid : static_cast<gid_t>(-1);
    if (fchownat(node.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
      return FsReply::Errno(Errno());
  }
  if (valid & proto::kFsSetMode) {
    if (int err = ChmodPath(node.get(), req.f.mode & 07777)) return FsReply::Errno(err);
  }
  if (valid & (proto::kFsSetAtime | proto::kFsSetMtime | proto::kFsSetAtimeNow | proto::kFsSetMtimeNow)) {
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = 0;
    ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
    if (valid & proto::kFsSetAtimeNow) {
      ts[0].tv_nsec = UTIME_NOW;
    } else if (valid & proto::kFsSetAtime) {
      ts[0] = proto::FsTimespec(req.f.atime_ns);
    }
    if (valid & proto::kFsSetMtimeNow) {
      ts[1].tv_nsec = UTIME_NOW;
    } else if (valid & proto::kFsSetMtime) {
      ts[1] = proto::FsTimespec(req.f.mtime_ns);
    }
    if (int err = UtimesPath(node.get(), ts)) return FsReply::Errno(err);
  }
  if (fstat(node.get(), &st) != 0) return FsReply::Errno(Errno());
  return AttrReply(st);
}

FsReply FileStore::Readdir(const Target& t, const FsRequest& req) {
  if (req.f.offset > static_cast<uint64_t>(INT64_MAX)) return FsReply::Errno(EINVAL);
  struct stat st;
  long rc = OpenNode(t.dir, t.leaf(), O_RDONLY, &st);
  if (rc < 0) return FsReply::Errno(static_cast<int>(-rc));
  Fd fd(rc);
  if (!S_ISDIR(st.st_mode)) return FsReply::Errno(ENOTDIR);
  if (lseek(fd.get(), static_cast<off_t>(req.f.offset), SEEK_SET) < 0) return FsReply::Errno(Errno());

  FsReply r;
  uint64_t cookie = req.f.offset;
  size_t bytes = 0;
  alignas(8) char buf[32768];
  for (bool full = false; !full;) {
    long n = syscall(SYS_getdents64, fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (r.entries.empty()) return FsReply::Errno(Errno());
      break;  // send what we have; the next request resumes from the cookie
    }
    if (n == 0) {
      r.f.flags |= proto::kFsReplyEof;
      break;
    }
    for (long pos = 0; pos < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + pos);
      pos += d->d_reclen;
      std::string_view name(d->d_name);
      if (name == "." || name == "..") {
        cookie = static_cast<uint64_t>(d->d_off);
        continue;
      }
      if (name.size() > proto::kFsMaxName) continue;  // cannot be sent; no Linux file system makes one
      size_t cost = 14 + name.size();
      if (!r.entries.empty() && bytes + cost > options_.readdir_reply_bytes) {
        full = true;
        break;
      }
      uint32_t mode = DTTOIF(d->d_type);
      if (d->d_type == DT_UNKNOWN) {
        struct stat est;
        mode = fstatat(fd.get(), d->d_name, &est, AT_SYMLINK_NOFOLLOW) == 0 ? (est.st_mode & S_IFMT) : 0;
      }
      r.entries.push_back({d->d_ino, mode, std::string(name)});
      bytes += cost;
      cookie = static_cast<uint64_t>(d->d_off);
    }
  }
  r.f.value = cookie;
  r.f.count = static_cast<uint32_t>(r.entries.size());
  return r;
}

FsReply FileStore::Mkdir(const Target& t, const FsRequest& req) {
  if (t.is_root()) return FsReply::Errno(EEXIST);
  if (mkdirat(t.dir, t.leaf(), 0700) != 0) return FsReply::Errno(Errno());
  Fd node(openat(t.dir, t.leaf(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!node.ok()) return FsReply::Errno(Errno());
  if (int err = ChmodPath(node.get(), req.f.mode & 07777)) return FsReply::Errno(err);
  struct stat st;
  if (fstat(node.get(), &st) != 0) return FsReply::Errno(Errno());
  return AttrReply(st);
}

FsReply FileStore::Rmdir(const Target& t) {
  if (t.is_root()) return FsReply::Errno(EBUSY);
  if (unlinkat(t.dir, t.leaf(), AT_REMOVEDIR) != 0) return FsReply::Errno(Errno());
  return FsReply{};
}

FsReply FileStore::Unlink(const Target& t) {
  if (t.is_root()) return FsReply::Errno(EBUSY);
  struct stat st;
  if (fstatat(t.dir, t.leaf(), &st, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(Errno());
  if (!S_ISREG(st.st_mode)) {
    if (unlinkat(t.dir, t.leaf(), 0) != 0) return FsReply::Errno(Errno());
    return FsReply{};
  }
  MutexLock lk(InodeLock(st.st_dev, st.st_ino));
  if (fstatat(t.dir, t.leaf(), &st, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(Errno());
  if (unlinkat(t.dir, t.leaf(), 0) != 0) return FsReply::Errno(Errno());
  if (S_ISREG(st.st_mode) && st.st_nlink <= 1) Release(Allocated(st));
  return FsReply{};
}

FsReply FileStore::Rename(const Vnode& v, const Target& from, const FsRequest& req) {
  const uint32_t flags = req.f.flags;
  if ((flags & ~(kRenameNoreplace | kRenameExchange)) || flags == (kRenameNoreplace | kRenameExchange))
    return FsReply::Errno(EINVAL);
  Target to;
  if (int err = Resolve(v.root.get(), req.path2, &to)) return FsReply::Errno(err);
  if (from.is_root() || to.is_root()) return FsReply::Errno(EBUSY);
  // A regular file replaced by the rename frees its blocks (unless it is the source itself or linked
  // elsewhere).
  uint64_t freed = 0;
  struct stat dst, src;
  if (!(flags & kRenameExchange) && fstatat(to.dir, to.leaf(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISREG(dst.st_mode) && dst.st_nlink <= 1 &&
      !(fstatat(from.dir, from.leaf(), &src, AT_SYMLINK_NOFOLLOW) == 0 && src.st_ino == dst.st_ino &&
        src.st_dev == dst.st_dev))
    freed = Allocated(dst);
  if (syscall(SYS_renameat2, from.dir, from.leaf(), to.dir, to.leaf(), flags) != 0)
    return FsReply::Errno(Errno());
  DirChanged(from.dir);
  DirChanged(to.dir);
  Release(freed);
  return FsReply{};
}

FsReply FileStore::Fsync(const Target& t, const FsRequest& req) {
  const bool data_only = req.f.flags & proto::kFsDataSync;
  struct stat st {};
  long rc = OpenNode(t.dir, t.leaf(), O_RDONLY, &st);
  if (rc < 0) {
    int err = static_cast<int>(-rc);
    if (err != EACCES || !S_ISREG(st.st_mode)) return FsReply::Errno(err);
    // A file we may not open (mode 0, not root): make the whole file system durable instead.
    Fd dir(openat(t.dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.ok() || syncfs(dir.get()) != 0) return FsReply::Errno(Errno());
    return FsReply{};
  }
  Fd fd(rc);
  if (int err = SyncOpenFile(t, fd.get(), data_only); err != 0) return FsReply::Errno(err);
  return FsReply{};
}

int FileStore::SyncOpenFile(const Target& t, int fd, bool data_only) {
  if ((data_only ? fdatasync(fd) : fsync(fd)) != 0) {
    int err = Errno();
    LEGO_LOG_RATELIMITED("fs_fsync_failed error=\"{}\"", std::strerror(err));
    return err;
  }
  std::pair<uint64_t, uint64_t> key;
  uint64_t gen = 0;
  if (!t.is_root() && DirNeedsSync(t.dir, &key, &gen)) {  // the directory entry too, if it changed
    Fd dir(openat(t.dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.ok() || fsync(dir.get()) != 0) {
      int err = Errno();
      LEGO_LOG_RATELIMITED("fs_fsync_failed what=parent_dir error=\"{}\"", std::strerror(err));
      return err;
    }
    DirSynced(key, gen);
  }
  return 0;
}

void FileStore::DirChanged(int dirfd) {
  struct stat st;
  if (fstat(dirfd, &st) != 0) return;  // unknown directories count as changed anyway
  MutexLock lk(dirs_mu_);
  if (dirs_.size() > 65536) dirs_.clear();  // forgetting is safe: a forgotten directory is synced again
  dirs_[{st.st_dev, st.st_ino}].gen++;
}

bool FileStore::DirNeedsSync(int dirfd, std::pair<uint64_t, uint64_t>* key, uint64_t* gen) {
  struct stat st;
  if (fstat(dirfd, &st) != 0) return true;
  *key = {st.st_dev, st.st_ino};
  MutexLock lk(dirs_mu_);
  DirGen& d = dirs_[*key];
  *gen = d.gen;
  return d.synced != d.gen;
}

void FileStore::DirSynced(std::pair<uint64_t, uint64_t> key, uint64_t gen) {
  MutexLock lk(dirs_mu_);
  DirGen& d = dirs_[key];
  d.synced = std::max(d.synced, gen);
}

FsReply FileStore::Statfs(const Vnode& v) {
  struct statvfs sv;
  if (fstatvfs(v.root.get(), &sv) != 0) return FsReply::Errno(Errno());
  FsReply r;
  uint64_t blocks = capacity_ / kBlock;
  uint64_t used = (used_bytes() + kBlock - 1) / kBlock;
  r.statfs.blocks = blocks;
  r.statfs.bfree = blocks > used ? blocks - used : 0;
  r.statfs.bavail = r.statfs.bfree;
  r.statfs.files = sv.f_files;
  r.statfs.ffree = sv.f_favail;
  r.statfs.bsize = kBlock;
  r.statfs.namemax = proto::kFsMaxName;
  return r;
}

}  // namespace lego::smon
