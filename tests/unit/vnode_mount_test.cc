// VnodeMount: a real FUSE mount over a fake FsService that passes requests through to a temp directory.
// Programs' view (syscalls on the mountpoint) is checked against the backing directory and the fake's counts.
#include "pmon/vnode_mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace lego::pmon {
namespace {

using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

// Passes every request through to a local directory with *at syscalls. Thread-safe. Magic names: a path
// containing "fail-eio" fails every request with EIO; writes to a path containing "fail-enospc" fail with
// ENOSPC. Readdir answers 500 entries at a time, so a listing takes several requests.
class PassthroughFs : public proto::FsService {
 public:
  static constexpr size_t kDirBatch = 500;

  explicit PassthroughFs(const std::string& root)
      : root_(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)) {}
  ~PassthroughFs() override { ::close(root_); }

  FsReply Execute(const FsRequest& req) override {
    calls_[static_cast<uint16_t>(req.op)].fetch_add(1);
    if (req.path.find("fail-eio") != std::string::npos) return FsReply::Errno(EIO);
    const std::string p = req.path.empty() ? "." : req.path;
    FsReply r;
    switch (req.op) {
      case FsOp::kGetattr:
        return Attr(p);
      case FsOp::kCreate: {
        int fd = ::openat(root_, p.c_str(),
                          O_CREAT | O_WRONLY | O_CLOEXEC | (req.f.flags & proto::kFsExclusive ? O_EXCL : 0),
                          req.f.mode);
        if (fd < 0) return FsReply::Errno(errno);
        ::close(fd);
        return Attr(p);
      }
      case FsOp::kRead: {
        UpdateMax(max_read_, req.f.length);
        int fd = ::openat(root_, p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return FsReply::Errno(errno);
        r.data.resize(req.f.length);
        ssize_t n = ::pread(fd, r.data.data(), r.data.size(), static_cast<off_t>(req.f.offset));
        int err = errno;
        ::close(fd);
        if (n < 0) return FsReply::Errno(err);
        r.data.resize(static_cast<size_t>(n));
        return r;
      }
      case FsOp::kWrite: {
        UpdateMax(max_write_, req.data.size());
        if (req.path.find("fail-enospc") != std::string::npos) return FsReply::Errno(ENOSPC);
        int fd = ::openat(root_, p.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return FsReply::Errno(errno);
        ssize_t n = ::pwrite(fd, req.data.data(), req.data.size(), static_cast<off_t>(req.f.offset));
        int err = errno;
        ::close(fd);
        if (n < 0) return FsReply::Errno(err);
        r = Attr(p);
        r.f.value = static_cast<uint64_t>(n);
        return r;
      }
      case FsOp::kSetattr:
        return Setattr(p, req);
      case FsOp::kReaddir:
        return Readdir(p, req.f.offset);
      case FsOp::kMkdir:
        if (::mkdirat(root_, p.c_str(), req.f.mode) != 0) return FsReply::Errno(errno);
        return Attr(p);
      case FsOp::kRmdir:
        return Status(::unlinkat(root_, p.c_str(), AT_REMOVEDIR));
      case FsOp::kUnlink:
        return Status(::unlinkat(root_, p.c_str(), 0));
      case FsOp::kRename:
        return Status(static_cast<int>(::syscall(SYS_renameat2, root_, p.c_str(), root_, req.path2.c_str(),
                                                 static_cast<unsigned>(req.f.flags))));
      case FsOp::kFsync: {
        last_fsync_flags_.store(req.f.flags);
        int fd = ::openat(root_, p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return FsReply::Errno(errno);
        int rc = (req.f.flags & proto::kFsDataSync) ? ::fdatasync(fd) : ::fsync(fd);
        int err = errno;
        ::close(fd);
        return rc == 0 ? r : FsReply::Errno(err);
      }
      case FsOp::kStatfs: {
        struct statvfs sv {};
        if (::fstatvfs(root_, &sv) != 0) return FsReply::Errno(errno);
        r.statfs = {sv.f_blocks,
                    sv.f_bfree,
                    sv.f_bavail,
                    sv.f_files,
                    sv.f_ffree,
                    static_cast<uint32_t>(sv.f_frsize),
                    static_cast<uint32_t>(sv.f_namemax)};
        return r;
      }
    }
    return FsReply::Errno(ENOSYS);
  }

  uint64_t calls(FsOp op) const { return calls_[static_cast<uint16_t>(op)].load(); }
  uint64_t total_calls() const {
    uint64_t n = 0;
    for (const auto& c : calls_) n += c.load();
    return n;
  }
  uint32_t last_fsync_flags() const { return last_fsync_flags_.load(); }
  uint64_t max_read() const { return max_read_.load(); }
  uint64_t max_write() const { return max_write_.load(); }

 private:
  static FsReply Status(int rc) { return rc == 0 ? FsReply{} : FsReply::Errno(errno); }
  static void UpdateMax(std::atomic<uint64_t>& m, uint64_t v) {
    uint64_t cur = m.load();
    while (v > cur && !m.compare_exchange_weak(cur, v)) {
    }
  }

  FsReply Attr(const std::string& p) {
    struct stat st {};
    if (::fstatat(root_, p.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(errno);
    FsReply r;
    r.f.flags = proto::kFsReplyAttr;
    auto ns = [](const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; };
    r.f.attr = {static_cast<uint64_t>(st.st_ino),
                static_cast<uint64_t>(st.st_size),
                static_cast<uint64_t>(st.st_blocks),
                st.st_mode,
                static_cast<uint32_t>(st.st_nlink),
                st.st_uid,
                st.st_gid,
                ns(st.st_atim),
                ns(st.st_mtim),
                ns(st.st_ctim)};
    return r;
  }

  FsReply Setattr(const std::string& p, const FsRequest& req) {
    const uint32_t v = req.f.valid;
    if ((v & proto::kFsSetMode) && ::fchmodat(root_, p.c_str(), req.f.mode, 0) != 0)
      return FsReply::Errno(errno);
    if (v & (proto::kFsSetUid | proto::kFsSetGid)) {
      uid_t uid = (v & proto::kFsSetUid) ? req.f.uid : static_cast<uid_t>(-1);
      gid_t gid = (v & proto::kFsSetGid) ? req.f.gid : static_cast<gid_t>(-1);
      if (::fchownat(root_, p.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(errno);
    }
    if (v & proto::kFsSetSize) {
      int fd = ::openat(root_, p.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return FsReply::Errno(errno);
      int rc = ::ftruncate(fd, static_cast<off_t>(req.f.length));
      int err = errno;
      ::close(fd);
      if (rc != 0) return FsReply::Errno(err);
    }
    if (v & (proto::kFsSetAtime | proto::kFsSetMtime | proto::kFsSetAtimeNow | proto::kFsSetMtimeNow)) {
      timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
      auto set = [](timespec& t, uint32_t valid, uint32_t now_bit, uint32_t set_bit, int64_t ns) {
        if (valid & now_bit) {
          t.tv_nsec = UTIME_NOW;
        } else if (valid & set_bit) {
          t = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
        }
      };
      set(ts[0], v, proto::kFsSetAtimeNow, proto::kFsSetAtime, req.f.atime_ns);
      set(ts[1], v, proto::kFsSetMtimeNow, proto::kFsSetMtime, req.f.mtime_ns);
      if (::utimensat(root_, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) return FsReply::Errno(errno);
    }
    return Attr(p);
  }

  FsReply Readdir(const std::string& p, uint64_t cookie) {
    int fd = ::openat(root_, p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return FsReply::Errno(errno);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return FsReply::Errno(ENOTDIR);
    }
    std::vector<proto::FsDirEntry> all;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      all.push_back({e->d_ino, static_cast<uint32_t>(DTTOIF(e->d_type)), name});
    }
    ::closedir(d);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    FsReply r;
    const size_t end = std::min<size_t>(all.size(), cookie + kDirBatch);
    for (size_t i = cookie; i < end; ++i) r.entries.push_back(all[i]);
    r.f.count = static_cast<uint32_t>(r.entries.size());
    r.f.value = end;
    if (end >= all.size()) r.f.flags = proto::kFsReplyEof;
    return r;
  }

  const int root_;
  std::array<std::atomic<uint64_t>, proto::kFsOpCount + 1> calls_{};
  std::atomic<uint32_t> last_fsync_flags_{~0u};
  std::atomic<uint64_t> max_read_{0};
  std::atomic<uint64_t> max_write_{0};
};

// Entries for `path` in /proc/self/mounts.
int MountCount(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string src, dir;
    fields >> src >> dir;
    if (dir == path) ++n;
  }
  return n;
}

std::string MountLine(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string src, dir;
    fields >> src >> dir;
    if (dir == path) return line;
  }
  return "";
}

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

class VnodeMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lego-vnode-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    data_ = dir_ + "/data";
    mnt_ = dir_ + "/mnt";  // Mount creates it
    ASSERT_EQ(::mkdir(data_.c_str(), 0755), 0);
    fs_ = std::make_unique<PassthroughFs>(data_);
  }

  void TearDown() override {
    mount_.reset();
    for (int i = 0; i < 8 && MountCount(mnt_) > 0; ++i) ::umount2(mnt_.c_str(), MNT_DETACH);
    EXPECT_EQ(MountCount(mnt_), 0);
    fs_.reset();
    std::error_code ec;
    if (!dir_.empty() && MountCount(mnt_) == 0) std::filesystem::remove_all(dir_, ec);
  }

  void DoMount(AccessCheck check = {}, MountOptions opts = {}) {
    auto r = VnodeMount::Mount(mnt_, 7, fs_.get(), std::move(check), opts);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    mount_ = std::move(r).value();
  }

  std::string M(const std::string& name) const { return mnt_ + "/" + name; }   // through the mount
  std::string D(const std::string& name) const { return data_ + "/" + name; }  // the backing directory

  std::string dir_, data_, mnt_;
  std::unique_ptr<PassthroughFs> fs_;
  std::unique_ptr<VnodeMount> mount_;
};

TEST_F(VnodeMountTest, MountsWithFsnameAndSubtypeAndUnmountsCleanly) {
  DoMount();
  EXPECT_EQ(mount_->mountpoint(), mnt_);
  EXPECT_EQ(mount_->vnode_id(), 7u);
  EXPECT_TRUE(mount_->mounted());
  const std::string line = MountLine(mnt_);
  EXPECT_EQ(line.rfind("lego-vnode-7 " + mnt_ + " fuse.lego ", 0), 0u) << line;
  EXPECT_NE(line.find("default_permissions"), std::string::npos) << line;
  EXPECT_NE(line.find("allow_other"), std::string::npos) << line;
  struct stat st {};
  ASSERT_EQ(::stat(mnt_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  mount_->Unmount();
  mount_->Unmount();  // idempotent
  EXPECT_FALSE(mount_->mounted());
  EXPECT_EQ(MountCount(mnt_), 0);
}

TEST_F(VnodeMountTest, WritesAndReadsLargeFilesAndUnalignedRanges) {
  DoMount();
  const size_t kSize = 3 << 20;
  std::vector<uint8_t> model = Pattern(kSize, 1);
  int fd = ::open(M("big").c_str(), O_CREAT | O_RDWR | O_EXCL, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, model.data(), model.size()), static_cast<ssize_t>(kSize));
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kSize));
  EXPECT_EQ(st.st_blksize, 4096);

  std::vector<uint8_t> got(kSize);
  ASSERT_EQ(::pread(fd, got.data(), got.size(), 0), static_cast<ssize_t>(kSize));
  EXPECT_TRUE(got == model);

  // Unaligned overwrite and read across it, and a read past the end.
  std::vector<uint8_t> patch = Pattern(10000, 2);
  ASSERT_EQ(::pwrite(fd, patch.data(), patch.size(), 12345), 10000);
  std::copy(patch.begin(), patch.end(), model.begin() + 12345);
  std::vector<uint8_t> part(20001);
  ASSERT_EQ(::pread(fd, part.data(), part.size(), 12000), 20001);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), model.begin() + 12000));
  ASSERT_EQ(::pread(fd, part.data(), 100, kSize - 7), 7);
  ::close(fd);

  // The backend holds the same bytes; no request exceeded kFsMaxIo.
  const std::string backing = ReadFile(D("big"));
  ASSERT_EQ(backing.size(), kSize);
  EXPECT_EQ(std::memcmp(backing.data(), model.data(), kSize), 0);
  EXPECT_GE(fs_->calls(FsOp::kWrite), 3u);
  EXPECT_LE(fs_->max_write(), proto::kFsMaxIo);
  EXPECT_LE(fs_->max_read(), proto::kFsMaxIo);
  EXPECT_GE(mount_->counters().requests[static_cast<int>(FsOp::kWrite)], 3u);
}

TEST_F(VnodeMountTest, TruncateExtendsShrinksAndOTruncEmpties) {
  DoMount();
  WriteFile(D("f"), std::string(1000, 'x'));
  int fd = ::open(M("f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, 100), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 100);
  EXPECT_EQ(ReadFile(D("f")).size(), 100u);
  ASSERT_EQ(::ftruncate(fd, 5000), 0);
  ASSERT_EQ(::stat(D("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5000);
  ::close(fd);
  ASSERT_EQ(::truncate(M("f").c_str(), 42), 0);
  EXPECT_EQ(ReadFile(D("f")).size(), 42u);

  fd = ::open(M("f").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(ReadFile(D("f")).size(), 0u);
  ASSERT_EQ(::stat(M("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST_F(VnodeMountTest, ReaddirListsThousandsOfEntriesOverManyRequests) {
  const int kFiles = 3000;
  for (int i = 0; i < kFiles; ++i) {
    int fd = ::open(D("file-" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  ASSERT_EQ(::mkdir(D("sub").c_str(), 0755), 0);
  DoMount();
  DIR* d = ::opendir(mnt_.c_str());
  ASSERT_NE(d, nullptr) << std::strerror(errno);
  std::vector<std::string> names;
  bool sub_is_dir = false;
  while (dirent* e = ::readdir(d)) {
    names.emplace_back(e->d_name);
    if (names.back() == "sub") sub_is_dir = e->d_type == DT_DIR;
  }
  ::closedir(d);
  EXPECT_EQ(names.size(), static_cast<size_t>(kFiles + 3));  // + sub, ".", ".."
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
  EXPECT_TRUE(std::binary_search(names.begin(), names.end(), "."));
  EXPECT_TRUE(std::binary_search(names.begin(), names.end(), ".."));
  EXPECT_TRUE(std::binary_search(names.begin(), names.end(), "file-2999"));
  EXPECT_TRUE(sub_is_dir);
  EXPECT_GE(fs_->calls(FsOp::kReaddir), static_cast<uint64_t>(kFiles / PassthroughFs::kDirBatch));
}

TEST_F(VnodeMountTest, MkdirRmdirAndUnlink) {
  DoMount();
  ASSERT_EQ(::mkdir(M("a").c_str(), 0750), 0) << std::strerror(errno);
  struct stat st {};
  ASSERT_EQ(::stat(D("a").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  int fd = ::open(M("a/f").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(::rmdir(M("a").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(::mkdir(M("a").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(::unlink(M("a/f").c_str()), 0) << std::strerror(errno);
  EXPECT_NE(::access(D("a/f").c_str(), F_OK), 0);
  ASSERT_EQ(::rmdir(M("a").c_str()), 0) << std::strerror(errno);
  EXPECT_NE(::access(D("a").c_str(), F_OK), 0);
  EXPECT_EQ(::unlink(M("a").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(VnodeMountTest, RenamePassesNoreplaceAndExchange) {
  DoMount();
  WriteFile(D("x"), "xx");
  WriteFile(D("y"), "yyy");
  EXPECT_EQ(::syscall(SYS_renameat2, AT_FDCWD, M("x").c_str(), AT_FDCWD, M("y").c_str(), RENAME_NOREPLACE),
            -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(::syscall(SYS_renameat2, AT_FDCWD, M("x").c_str(), AT_FDCWD, M("z").c_str(), RENAME_NOREPLACE), 0)
      << std::strerror(errno);
  EXPECT_EQ(ReadFile(D("z")), "xx");
  EXPECT_NE(::access(D("x").c_str(), F_OK), 0);
  ASSERT_EQ(::syscall(SYS_renameat2, AT_FDCWD, M("y").c_str(), AT_FDCWD, M("z").c_str(), RENAME_EXCHANGE), 0)
      << std::strerror(errno);
  EXPECT_EQ(ReadFile(D("z")), "yyy");
  EXPECT_EQ(ReadFile(D("y")), "xx");
  ASSERT_EQ(::rename(M("y").c_str(), M("z").c_str()), 0);  // plain rename replaces
  EXPECT_EQ(ReadFile(D("z")), "xx");
  EXPECT_GE(fs_->calls(FsOp::kRename), 3u);  // the kernel refuses NOREPLACE over an existing name itself
}

TEST_F(VnodeMountTest, ChmodAndUtimensReachTheBackend) {
  DoMount();
  WriteFile(D("f"), "data");
  ASSERT_EQ(::chmod(M("f").c_str(), 0600), 0) << std::strerror(errno);
  struct stat st {};
  ASSERT_EQ(::stat(D("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  timespec ts[2] = {{1000000, 111}, {2000000, 222}};
  ASSERT_EQ(::utimensat(AT_FDCWD, M("f").c_str(), ts, 0), 0) << std::strerror(errno);
  ASSERT_EQ(::stat(D("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 222);
  // Through the mount too (the kernel's cached attributes were refreshed by the setattr reply).
  ASSERT_EQ(::stat(M("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000000);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ASSERT_EQ(::utimensat(AT_FDCWD, M("f").c_str(), now_omit, 0), 0) << std::strerror(errno);
  ASSERT_EQ(::stat(D("f").c_str(), &st), 0);
  EXPECT_GT(st.st_atim.tv_sec, ::time(nullptr) - 60);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000000);  // omitted: unchanged

  ASSERT_EQ(::chown(M("f").c_str(), static_cast<uid_t>(-1), 12345), 0) << std::strerror(errno);
  ASSERT_EQ(::stat(D("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 12345u);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(VnodeMountTest, FsyncAndFdatasyncReachTheBackendAsFsync) {
  DoMount();
  int fd = ::open(M("f").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  const uint64_t before = fs_->calls(FsOp::kFsync);
  ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(fs_->calls(FsOp::kFsync), before + 1);
  EXPECT_EQ(fs_->last_fsync_flags(), 0u);
  ASSERT_EQ(::fdatasync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(fs_->calls(FsOp::kFsync), before + 2);
  EXPECT_EQ(fs_->last_fsync_flags(), proto::kFsDataSync);
  ::close(fd);
  int dfd = ::open(mnt_.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dfd, 0);
  ASSERT_EQ(::fsync(dfd), 0) << std::strerror(errno);
  EXPECT_EQ(fs_->calls(FsOp::kFsync), before + 3);
  ::close(dfd);
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(mnt_.c_str(), &sv), 0);
  EXPECT_GT(sv.f_blocks, 0u);
  EXPECT_EQ(sv.f_namemax, 255u);
}

TEST_F(VnodeMountTest, MmapReadsThroughTheMapping) {
  const std::vector<uint8_t> data = Pattern(3 * 4096 + 123, 3);
  WriteFile(D("m"), std::string(data.begin(), data.end()));
  DoMount();
  int fd = ::open(M("m").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* p = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::memcmp(p, data.data(), data.size()), 0);
  ::munmap(p, data.size());
  ::close(fd);
}

TEST_F(VnodeMountTest, ReopenSeesAnotherWritersData) {
  WriteFile(D("shared"), "hello world");
  DoMount();
  EXPECT_EQ(ReadFile(M("shared")), "hello world");
  WriteFile(D("shared"), "HELLO WORLD");  // another pmon's write, same size
  EXPECT_EQ(ReadFile(M("shared")), "HELLO WORLD");
}

TEST_F(VnodeMountTest, BackendAndPathErrorsBecomeErrno) {
  DoMount();
  EXPECT_EQ(::open(M("fail-eio").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EIO);
  int fd = ::open(M("fail-enospc").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(::write(fd, "abc", 3), -1);
  EXPECT_EQ(errno, ENOSPC);
  ::close(fd);
  EXPECT_EQ(::open(M("missing").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  struct stat st {};
  EXPECT_EQ(::stat(M("missing/deeper").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);

  // A 300-byte name is refused before any request.
  const uint64_t calls = fs_->total_calls();
  const std::string long_name(300, 'n');
  EXPECT_EQ(::open(M(long_name).c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(fs_->total_calls(), calls);
  EXPECT_GE(mount_->counters().bad_path, 1u);
  EXPECT_GE(mount_->counters().errors, 2u);

  // Only regular files and directories.
  EXPECT_EQ(::symlink("target", M("link").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::mkfifo(M("fifo").c_str(), 0644), -1);
  EXPECT_EQ(errno, EPERM);
  WriteFile(D("reg"), "r");
  EXPECT_EQ(::link(M("reg").c_str(), M("hard").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  ASSERT_EQ(::mknod(M("node").c_str(), S_IFREG | 0600, 0), 0) << std::strerror(errno);
  EXPECT_EQ(::access(D("node").c_str(), F_OK), 0);
}

TEST_F(VnodeMountTest, AccessCheckDeniesWithEacces) {
  std::atomic<bool> deny{false};
  std::atomic<pid_t> last{0};
  DoMount([&](pid_t tid) {
    last.store(tid);
    return !deny.load();
  });
  int fd = ::open(M("mine").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(last.load(), static_cast<pid_t>(::syscall(SYS_gettid)));

  deny.store(true);
  const uint64_t calls = fs_->total_calls();
  EXPECT_EQ(::open(M("other").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EACCES);
  struct statvfs sv {};
  EXPECT_EQ(::statvfs(mnt_.c_str(), &sv), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_EQ(::mkdir(M("dir").c_str(), 0755), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_EQ(fs_->total_calls(), calls);
  EXPECT_GE(mount_->counters().denied, 3u);
  deny.store(false);
}

TEST_F(VnodeMountTest, UnmountWithAnOpenFdCompletes) {
  DoMount();
  int fd = ::open(M("open").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  mount_->Unmount();
  EXPECT_EQ(MountCount(mnt_), 0);
  char buf[3];
  EXPECT_EQ(::pwrite(fd, buf, 3, 0), -1);  // the connection is gone
  ::close(fd);
  EXPECT_EQ(ReadFile(D("open")), "abc");
}

TEST_F(VnodeMountTest, UnmountWithAProcessCwdInsideCompletes) {
  DoMount();
  ASSERT_EQ(::mkdir(M("d").c_str(), 0755), 0);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    char ok = ::chdir(M("d").c_str()) == 0 ? 'y' : 'n';
    (void)::write(pipefd[1], &ok, 1);
    ::pause();
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char ok = 0;
  ASSERT_EQ(::read(pipefd[0], &ok, 1), 1);
  ::close(pipefd[0]);
  EXPECT_EQ(ok, 'y');
  mount_->Unmount();
  EXPECT_EQ(MountCount(mnt_), 0);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
}

TEST_F(VnodeMountTest, RemountsOverAStaleMountOfAKilledPmon) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();  // this process has no other threads here
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    auto r = VnodeMount::Mount(mnt_, 7, fs_.get(), {}, {});
    char ok = r.ok() ? 'y' : 'n';
    (void)::write(pipefd[1], &ok, 1);
    ::_exit(0);  // killed pmon: no unmount
  }
  ::close(pipefd[1]);
  char ok = 0;
  ASSERT_EQ(::read(pipefd[0], &ok, 1), 1);
  ::close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_EQ(ok, 'y');
  ASSERT_EQ(MountCount(mnt_), 1);
  struct stat st {};
  EXPECT_EQ(::stat(mnt_.c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTCONN);

  DoMount();
  EXPECT_EQ(MountCount(mnt_), 1);
  WriteFile(M("after"), "ok");
  EXPECT_EQ(ReadFile(D("after")), "ok");
  mount_->Unmount();
  EXPECT_EQ(MountCount(mnt_), 0);
}

}  // namespace
}  // namespace lego::pmon
