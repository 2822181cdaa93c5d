// VnodeMount: FUSE callbacks that turn each file operation into stateless FS requests.
#define FUSE_USE_VERSION 312

#include "pmon/vnode_mount.h"

#include <fcntl.h>
#include <fuse.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/log.h"

namespace lego::pmon {
namespace {

using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

constexpr uint64_t kUnknownIno = 0xffffffff;  // libfuse's FUSE_UNKNOWN_INO, for "." and ".."
constexpr int kMaxStaleLayers = 8;            // stale mounts stacked on one mountpoint that Mount detaches

VnodeMount* Self() { return static_cast<VnodeMount*>(fuse_get_context()->private_data); }

// FUSE path ("/a/b", "/") -> wire path ("a/b", ""): 0, or the negative errno ValidateFsPath gives.
int WirePath(const char* fuse_path, std::string* out) {
  if (fuse_path == nullptr || fuse_path[0] != '/') return -EINVAL;
  out->assign(fuse_path + 1);
  int err = 0;
  if (!proto::ValidateFsPath(*out, &err).ok()) return -(err != 0 ? err : EINVAL);
  return 0;
}

int64_t TimespecToNs(const timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

void AttrToStat(const proto::FsAttr& a, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = a.ino;
  st->st_mode = a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_size = static_cast<off_t>(a.size);
  st->st_blocks = static_cast<blkcnt_t>(a.blocks);
  st->st_blksize = 4096;
  st->st_atim = proto::FsTimespec(a.atime_ns);
  st->st_mtim = proto::FsTimespec(a.mtime_ns);
  st->st_ctim = proto::FsTimespec(a.ctime_ns);
}

bool ValidEntryName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= proto::kFsMaxName &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

// Unescapes a /proc/self/mounts field ("\040" is a space).
std::string UnescapeMountField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool IsMountPoint(const std::string& path) {
  FILE* f = std::fopen("/proc/self/mounts", "re");
  if (f == nullptr) return false;
  char* line = nullptr;
  size_t cap = 0;
  bool found = false;
  while (!found && getline(&line, &cap, f) > 0) {
    std::string_view l(line);
    size_t a = l.find(' ');
    if (a == std::string_view::npos) continue;
    size_t b = l.find(' ', a + 1);
    if (b == std::string_view::npos) continue;
    found = UnescapeMountField(l.substr(a + 1, b - a - 1)) == path;
  }
  std::free(line);
  std::fclose(f);
  return found;
}

}  // namespace

// The libfuse callbacks. Each runs on a libfuse worker thread: access check, path check, request(s).
struct FuseOps {
  // Runs the access check and translates the path: 0 or a negative errno.
  static int Begin(VnodeMount* self, const char* path, std::string* wire) {
    if (int e = self->CheckAccess(); e != 0) return e;
    if (int e = WirePath(path, wire); e != 0) {
      self->CountBadPath();
      return e;
    }
    return 0;
  }

  static FsRequest Req(FsOp op, std::string path) {
    FsRequest r;
    r.op = op;
    r.path = std::move(path);
    return r;
  }

  // A request whose reply carries nothing but its errno.
  static int Simple(VnodeMount* self, FsRequest req) { return -self->Call(req).err(); }

  static int Setattr(const char* path, uint32_t valid, const FsRequest& fields) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = fields;
    req.op = FsOp::kSetattr;
    req.path = std::move(wire);
    req.f.valid = valid;
    return Simple(self, std::move(req));
  }

  static void* Init(fuse_conn_info* conn, fuse_config* cfg) {
    VnodeMount* self = Self();
    cfg->use_ino = 1;
    cfg->readdir_ino = 0;
    cfg->attr_timeout = self->opts_.attr_timeout_s;
    cfg->entry_timeout = self->opts_.entry_timeout_s;
    cfg->negative_timeout = 0;
    cfg->kernel_cache = 0;  // drop the page cache at open (close-to-open). Not auto_cache: it keeps the cache
    cfg->auto_cache = 0;  // when size and mtime look unchanged, and a coarse mtime can hide a same-size write
    cfg->direct_io = 0;   // page cache used between opens, so that mmap works
    cfg->hard_remove = 1;  // stateless: no ".fuse_hidden" renames of open files
    cfg->nullpath_ok = 0;
    cfg->set_mode = cfg->set_uid = cfg->set_gid = 0;
    cfg->remember = 0;
    cfg->intr = 0;
    conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
    // Writes land in the kernel's page cache and reach the mmon in large batches: on fsync, on close (the
    // kernel writes a file's dirty pages back before FLUSH, so close-to-open holds across pmons), under
    // memory pressure and by periodic writeback. Off: every write() waits for a round trip.
    if (self->opts_.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    else
      conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    conn->max_write = proto::kFsMaxIo;
    conn->max_read = proto::kFsMaxIo;
    conn->max_readahead = proto::kFsMaxIo;
    return self;
  }

  static int Getattr(const char* path, struct stat* st, fuse_file_info* /*fi*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = Req(FsOp::kGetattr, std::move(wire));
    FsReply r = self->Call(req);
    if (r.err() != 0) return -r.err();
    if ((r.f.flags & proto::kFsReplyAttr) == 0) return -EIO;
    AttrToStat(r.f.attr, st);
    return 0;
  }

  static int Readdir(const char* path, void* buf, fuse_fill_dir_t filler, off_t /*off*/,
                     fuse_file_info* /*fi*/, fuse_readdir_flags /*flags*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    struct stat st {};
    st.st_mode = S_IFDIR;
    st.st_ino = kUnknownIno;
    // Offset 0 everywhere: libfuse collects the whole listing and serves the kernel from it.
    if (filler(buf, ".", &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0 ||
        filler(buf, "..", &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) {
      return -ENOMEM;
    }
    uint64_t cookie = 0;
    for (;;) {
      FsRequest req = Req(FsOp::kReaddir, wire);
      req.f.offset = cookie;
      FsReply r = self->Call(req);
      if (r.err() != 0) return -r.err();
      for (const proto::FsDirEntry& e : r.entries) {
        if (!ValidEntryName(e.name)) {
          LEGO_LOG_RATELIMITED("vnode_bad_dirent vnode={} dir={} name_len={}", self->vnode_id_, wire,
                               e.name.size());
          continue;
        }
        std::memset(&st, 0, sizeof(st));
        st.st_ino = e.ino;
        st.st_mode = e.mode & S_IFMT;
        if (filler(buf, e.name.c_str(), &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) return -ENOMEM;
      }
      if ((r.f.flags & proto::kFsReplyEof) != 0) return 0;
      if (r.entries.empty() && r.f.value == cookie) {  // no progress: a broken backend, not an endless loop
        LEGO_LOG_RATELIMITED("vnode_readdir_stuck vnode={} dir={} cookie={}", self->vnode_id_, wire, cookie);
        return -EIO;
      }
      cookie = r.f.value;
    }
  }

  static int Create(const char* path, mode_t mode, fuse_file_info* fi) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    const bool exclusive = (fi->flags & O_EXCL) != 0;
    FsRequest req = Req(FsOp::kCreate, wire);
    req.f.mode = mode & 07777;
    req.f.flags = exclusive ? proto::kFsExclusive : 0;
    FsReply r = self->Call(req);
    if (r.err() != 0) return -r.err();
    // Without O_EXCL the file may have existed (created meanwhile by another pmon): honour O_TRUNC.
    if (!exclusive && (fi->flags & O_TRUNC) != 0 &&
        ((r.f.flags & proto::kFsReplyAttr) == 0 || r.f.attr.size != 0)) {
      FsRequest t = Req(FsOp::kSetattr, std::move(wire));
      t.f.valid = proto::kFsSetSize;
      t.f.length = 0;
      if (int e = Simple(self, std::move(t)); e != 0) return e;
    }
    fi->keep_cache = 0;
    fi->direct_io = 0;
    return 0;
  }

  static int Open(const char* path, fuse_file_info* fi) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = Req(FsOp::kGetattr, wire);
    FsReply r = self->Call(req);
    if (r.err() != 0) return -r.err();
    if ((r.f.flags & proto::kFsReplyAttr) == 0) return -EIO;
    const bool is_dir = S_ISDIR(r.f.attr.mode);
    if (is_dir && (fi->flags & O_ACCMODE) != O_RDONLY) return -EISDIR;
    if (!is_dir && !S_ISREG(r.f.attr.mode)) return -EPERM;  // Lego serves regular files and directories only
    if ((fi->flags & O_TRUNC) != 0 && !is_dir) {
      FsRequest t = Req(FsOp::kSetattr, std::move(wire));
      t.f.valid = proto::kFsSetSize;
      t.f.length = 0;
      if (int e = Simple(self, std::move(t)); e != 0) return e;
    }
    fi->keep_cache = 0;
    fi->direct_io = 0;
    return 0;
  }

  static int Read(const char* path, char* buf, size_t size, off_t off, fuse_file_info* /*fi*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    if (off < 0) return -EINVAL;
    size = std::min<size_t>(size, INT_MAX);
    size_t done = 0;
    while (done < size) {
      const size_t want = std::min<size_t>(size - done, proto::kFsMaxIo);
      FsRequest req = Req(FsOp::kRead, wire);
      req.f.offset = static_cast<uint64_t>(off) + done;
      req.f.length = want;
      size_t got = 0;  // the reply's data lands in libfuse's buffer directly
      FsReply r = self->CallRead(req, std::span(reinterpret_cast<uint8_t*>(buf) + done, want), &got);
      if (r.err() != 0) return done > 0 ? static_cast<int>(done) : -r.err();
      done += got;
      if (got < want) break;  // end of file
    }
    return static_cast<int>(done);
  }

  static int Write(const char* path, const char* buf, size_t size, off_t off, fuse_file_info* /*fi*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    if (off < 0) return -EINVAL;
    size = std::min<size_t>(size, INT_MAX);
    size_t done = 0;
    while (done < size) {
      const size_t want = std::min<size_t>(size - done, proto::kFsMaxIo);
      FsRequest req = Req(FsOp::kWrite, wire);
      req.f.offset = static_cast<uint64_t>(off) + done;
      req.f.length = want;
      req.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf) + done, want);
      FsReply r = self->Call(req);
      if (r.err() != 0) return done > 0 ? static_cast<int>(done) : -r.err();
      const size_t wrote = std::min<uint64_t>(r.f.value, want);
      done += wrote;
      if (wrote < want) break;  // short write (the backend decides); the kernel reports it as such
    }
    return static_cast<int>(done);
  }

  static int Truncate(const char* path, off_t size, fuse_file_info* /*fi*/) {
    if (size < 0) return -EINVAL;
    FsRequest f;
    f.f.length = static_cast<uint64_t>(size);
    return Setattr(path, proto::kFsSetSize, f);
  }

  static int Chmod(const char* path, mode_t mode, fuse_file_info* /*fi*/) {
    FsRequest f;
    f.f.mode = mode & 07777;
    return Setattr(path, proto::kFsSetMode, f);
  }

  static int Chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* /*fi*/) {
    FsRequest f;
    uint32_t valid = 0;
    if (uid != static_cast<uid_t>(-1)) {
      valid |= proto::kFsSetUid;
      f.f.uid = uid;
    }
    if (gid != static_cast<gid_t>(-1)) {
      valid |= proto::kFsSetGid;
      f.f.gid = gid;
    }
    return Setattr(path, valid, f);
  }

  static int Utimens(const char* path, const timespec tv[2], fuse_file_info* /*fi*/) {
    FsRequest f;
    uint32_t valid = 0;
    if (tv == nullptr) {
      valid = proto::kFsSetAtimeNow | proto::kFsSetMtimeNow;
    } else {
      if (tv[0].tv_nsec == UTIME_NOW) {
        valid |= proto::kFsSetAtimeNow;
      } else if (tv[0].tv_nsec != UTIME_OMIT) {
        valid |= proto::kFsSetAtime;
        f.f.atime_ns = TimespecToNs(tv[0]);
      }
      if (tv[1].tv_nsec == UTIME_NOW) {
        valid |= proto::kFsSetMtimeNow;
      } else if (tv[1].tv_nsec != UTIME_OMIT) {
        valid |= proto::kFsSetMtime;
        f.f.mtime_ns = TimespecToNs(tv[1]);
      }
    }
    return Setattr(path, valid, f);
  }

  static int Mkdir(const char* path, mode_t mode) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = Req(FsOp::kMkdir, std::move(wire));
    req.f.mode = mode & 07777;
    return Simple(self, std::move(req));
  }

  static int Mknod(const char* path, mode_t mode, dev_t /*rdev*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    if (!S_ISREG(mode)) return -EPERM;
    FsRequest req = Req(FsOp::kCreate, std::move(wire));
    req.f.mode = mode & 07777;
    req.f.flags = proto::kFsExclusive;
    return Simple(self, std::move(req));
  }

  static int PathOnly(const char* path, FsOp op) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    return Simple(self, Req(op, std::move(wire)));
  }
  static int Rmdir(const char* path) { return PathOnly(path, FsOp::kRmdir); }
  static int Unlink(const char* path) { return PathOnly(path, FsOp::kUnlink); }

  static int Rename(const char* from, const char* to, unsigned int flags) {
    VnodeMount* self = Self();
    std::string wire_from, wire_to;
    if (int e = Begin(self, from, &wire_from); e != 0) return e;
    if (int e = WirePath(to, &wire_to); e != 0) {
      self->CountBadPath();
      return e;
    }
    FsRequest req = Req(FsOp::kRename, std::move(wire_from));
    req.path2 = std::move(wire_to);
    req.f.flags = flags;  // RENAME_NOREPLACE, RENAME_EXCHANGE: the wire uses Linux's values
    return Simple(self, std::move(req));
  }

  static int Fsync(const char* path, int datasync, fuse_file_info* /*fi*/) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = Req(FsOp::kFsync, std::move(wire));
    req.f.flags = datasync != 0 ? proto::kFsDataSync : 0;
    return Simple(self, std::move(req));
  }

  static int Statfs(const char* path, struct statvfs* out) {
    VnodeMount* self = Self();
    std::string wire;
    if (int e = Begin(self, path, &wire); e != 0) return e;
    FsRequest req = Req(FsOp::kStatfs, std::move(wire));
    FsReply r = self->Call(req);
    if (r.err() != 0) return -r.err();
    std::memset(out, 0, sizeof(*out));
    out->f_bsize = r.statfs.bsize;
    out->f_frsize = r.statfs.bsize;
    out->f_blocks = r.statfs.blocks;
    out->f_bfree = r.statfs.bfree;
    out->f_bavail = r.statfs.bavail;
    out->f_files = r.statfs.files;
    out->f_ffree = r.statfs.ffree;
    out->f_favail = r.statfs.ffree;
    out->f_namemax = r.statfs.namemax;
    return 0;
  }

  // Stateless: nothing to flush or release.
  static int Flush(const char* /*path*/, fuse_file_info* /*fi*/) { return Self()->CheckAccess(); }
  static int Release(const char* /*path*/, fuse_file_info* /*fi*/) { return 0; }

  // Lego serves regular files and directories only.
  static int Symlink(const char* /*target*/, const char* /*path*/) { return Unsupported(); }
  static int Link(const char* /*from*/, const char* /*to*/) { return Unsupported(); }
  static int Readlink(const char* /*path*/, char* /*buf*/, size_t /*size*/) { return Unsupported(); }
  static int Unsupported() {
    if (int e = Self()->CheckAccess(); e != 0) return e;
    return -EPERM;
  }

  static fuse_operations Operations() {
    fuse_operations ops{};
    ops.init = Init;
    ops.getattr = Getattr;
    ops.readdir = Readdir;
    ops.create = Create;
    ops.open = Open;
    ops.read = Read;
    ops.write = Write;
    ops.truncate = Truncate;
    ops.chmod = Chmod;
    ops.chown = Chown;
    ops.utimens = Utimens;
    ops.mkdir = Mkdir;
    ops.mknod = Mknod;
    ops.rmdir = Rmdir;
    ops.unlink = Unlink;
    ops.rename = Rename;
    ops.fsync = Fsync;
    ops.fsyncdir = Fsync;
    ops.statfs = Statfs;
    ops.flush = Flush;
    ops.release = Release;
    ops.symlink = Symlink;
    ops.link = Link;
    ops.readlink = Readlink;
    return ops;
  }
};

VnodeMount::VnodeMount(std::string mountpoint, uint32_t vnode_id, proto::FsService* backend,
                       AccessCheck check, const MountOptions& opts)
    : mountpoint_(std::move(mountpoint)),
      vnode_id_(vnode_id),
      backend_(backend),
      check_(std::move(check)),
      opts_(opts) {}

VnodeMount::~VnodeMount() { Unmount(); }

Result<std::unique_ptr<VnodeMount>> VnodeMount::Mount(const std::string& mountpoint, uint32_t vnode_id,
                                                      proto::FsService* backend, AccessCheck check,
                                                      const MountOptions& opts) {
  if (mountpoint.empty()) return InvalidArgument("vnode mount: empty mountpoint");
  if (backend == nullptr) return InvalidArgument("vnode mount: no backend");
  if (opts.max_threads == 0) return InvalidArgument("vnode mount: max_threads is 0");

  // A pmon killed while serving leaves a dead FUSE mount (ENOTCONN): detach it (and any stacked below).
  struct stat st {};
  for (int layer = 0; layer < kMaxStaleLayers && ::stat(mountpoint.c_str(), &st) != 0 && errno == ENOTCONN;
       ++layer) {
    LEGO_LOG_WARN("vnode_stale_mount_detached vnode={} mountpoint={}", vnode_id, mountpoint);
    if (::umount2(mountpoint.c_str(), MNT_DETACH) != 0) return ErrnoError("umount2 " + mountpoint, errno);
  }
  if (::stat(mountpoint.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoError("stat " + mountpoint, errno);
    std::error_code ec;
    std::filesystem::create_directories(mountpoint, ec);
    if (ec) return IoError(fmt::format("create mountpoint {}: {}", mountpoint, ec.message()));
  } else if (!S_ISDIR(st.st_mode)) {
    return InvalidArgument(fmt::format("vnode mount: {} is not a directory", mountpoint));
  }
  char resolved[PATH_MAX];
  if (::realpath(mountpoint.c_str(), resolved) == nullptr) return ErrnoError("realpath " + mountpoint, errno);

  std::unique_ptr<VnodeMount> m(new VnodeMount(resolved, vnode_id, backend, std::move(check), opts));
  const std::string fsname = opts.fsname.empty() ? fmt::format("lego-vnode-{}", vnode_id) : opts.fsname;
  if (fsname.find_first_of(",\\ ") != std::string::npos ||
      opts.subtype.find_first_of(",\\ ") != std::string::npos) {
    return InvalidArgument("vnode mount: fsname and subtype may not contain ',', '\\' or spaces");
  }
  std::string mount_opts = fmt::format("fsname={},subtype={},default_permissions,max_read={}", fsname,
                                       opts.subtype, proto::kFsMaxIo);
  if (::geteuid() == 0) mount_opts += ",allow_other";

  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  const fuse_operations ops = FuseOps::Operations();
  if (fuse_opt_add_arg(&args, "lego-pmon") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
      fuse_opt_add_arg(&args, mount_opts.c_str()) != 0) {
    fuse_opt_free_args(&args);
    return Internal("vnode mount: fuse_opt_add_arg failed");
  }
  m->fuse_ = fuse_new(&args, &ops, sizeof(ops), m.get());
  fuse_opt_free_args(&args);
  if (m->fuse_ == nullptr)
    return Internal(fmt::format("vnode mount: fuse_new failed (options {})", mount_opts));
  if (fuse_mount(m->fuse_, m->mountpoint_.c_str()) != 0) {
    fuse_destroy(m->fuse_);
    m->fuse_ = nullptr;
    return IoError(fmt::format("vnode mount: mounting {} failed (see stderr)", m->mountpoint_));
  }
  // Opening the mount's root asks nothing of the file system; the fd lets Unmount wake the loop.
  m->root_fd_ = ::open(m->mountpoint_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (m->root_fd_ < 0) {
    int err = errno;
    fuse_unmount(m->fuse_);
    fuse_destroy(m->fuse_);
    m->fuse_ = nullptr;
    return ErrnoError("open " + m->mountpoint_, err);
  }

  const unsigned max_threads = opts.max_threads;
  const unsigned idle = std::min(opts.max_idle_threads, opts.max_threads);
  struct fuse* f = m->fuse_;
  const uint32_t id = vnode_id;
  m->loop_ = std::thread([f, max_threads, idle, id] {
    // Workers inherit this mask: process-directed signals go to the daemon's own threads.
    sigset_t all;
    sigfillset(&all);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP}) sigdelset(&all, sig);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, idle);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int res = fuse_loop_mt(f, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (res != 0) LEGO_LOG_WARN("vnode_fuse_loop_ended vnode={} res={}", id, res);
  });
  LEGO_LOG_INFO("vnode_mounted vnode={} mountpoint={} fsname={}", vnode_id, m->mountpoint_, fsname);
  return m;
}

void VnodeMount::Unmount() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fuse_ == nullptr) return;
  fuse_exit(fuse_);
  // Abort the connection with a forced umount of our own mount (reached through root_fd_, so even if
  // something is mounted over it): FUSE's umount_begin fails every queued and future request with ENOTCONN
  // and wakes the workers blocked on /dev/fuse. It works although other processes may hold /dev/fuse
  // (inherited across fork), which closing our fd would not. The forced umount itself fails with EBUSY
  // (root_fd_ is open; maybe programs too), so the mount is then detached lazily.
  const std::string self_root = fmt::format("/proc/self/fd/{}", root_fd_);
  bool aborted = false;
  if (root_fd_ >= 0) {
    if (::umount2(self_root.c_str(), MNT_FORCE) == 0 || errno == EBUSY) {
      aborted = true;
      if (::umount2(self_root.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
        LEGO_LOG_WARN("vnode_detach_failed vnode={} mountpoint={} errno={}", vnode_id_, mountpoint_, errno);
      }
    } else {
      LEGO_LOG_WARN("vnode_force_umount_failed vnode={} mountpoint={} errno={}", vnode_id_, mountpoint_,
                    errno);
    }
  }
  // Not root, or the mount was detached by someone else: a worker blocked on /dev/fuse sees the exit only
  // after its next request, so send one (statfs is never cached). If the loop has already stopped, the
  // request waits until fuse_unmount closes /dev/fuse.
  std::thread waker;
  if (!aborted && root_fd_ >= 0) {
    waker = std::thread([fd = root_fd_] {
      struct statfs s;
      (void)::fstatfs(fd, &s);
    });
  }
  if (loop_.joinable()) loop_.join();
  // Closes /dev/fuse; unless the connection is already aborted, it also detaches the mount lazily.
  fuse_unmount(fuse_);
  if (waker.joinable()) waker.join();
  if (root_fd_ >= 0) ::close(root_fd_);
  root_fd_ = -1;
  fuse_destroy(fuse_);
  fuse_ = nullptr;
  // Fallback: a dead mount left on the path (the connection died before Unmount) is detached too.
  if (IsMountPoint(mountpoint_)) {
    struct stat st {};
    if (::stat(mountpoint_.c_str(), &st) != 0 && errno == ENOTCONN)
      (void)::umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  LEGO_LOG_INFO("vnode_unmounted vnode={} mountpoint={}", vnode_id_, mountpoint_);
}

bool VnodeMount::mounted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fuse_ != nullptr;
}

VnodeMount::Counters VnodeMount::counters() const {
  Counters c;
  for (size_t i = 0; i < requests_.size(); ++i) c.requests[i] = requests_[i].load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  c.denied = denied_.load(std::memory_order_relaxed);
  c.bad_path = bad_path_.load(std::memory_order_relaxed);
  return c;
}

int VnodeMount::CheckAccess() {
  if (!check_) return 0;
  if (check_(fuse_get_context()->pid)) return 0;
  denied_.fetch_add(1, std::memory_order_relaxed);
  return -EACCES;
}

proto::FsReply VnodeMount::Call(proto::FsRequest& req) { return CallRead(req, {}, nullptr); }

proto::FsReply VnodeMount::CallRead(proto::FsRequest& req, std::span<uint8_t> dst, size_t* n) {
  req.f.vnode = vnode_id_;
  const auto op = static_cast<uint16_t>(req.op);
  if (op >= 1 && op <= proto::kFsOpCount) requests_[op].fetch_add(1, std::memory_order_relaxed);
  proto::FsReply r = n != nullptr ? backend_->ReadInto(req, dst, n) : backend_->Execute(req);
  if (r.err() != 0) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (r.err() < 0 || r.err() > static_cast<int>(proto::kFsMaxErrno)) {
      LEGO_LOG_RATELIMITED("vnode_bad_errno vnode={} op={} err={}", vnode_id_, proto::FsOpName(req.op),
                           r.err());
      r.f.err = EIO;
    }
  }
  return r;
}

}  // namespace lego::pmon
