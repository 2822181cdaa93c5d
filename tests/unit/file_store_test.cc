// FileStore: the storage monitor's vNode namespaces (every FS op, errnos, escapes, quota, restart).
#include "smon/file_store.h"
#include "smon/duplicate_request_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace lego::smon {
namespace {

namespace fs = std::filesystem;
using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

// A fresh directory under /tmp, removed (without following symlinks) on every path out of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lego-file-store-test.XXXXXX";
    char* p = mkdtemp(tmpl);
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() + "/store";
    outside_ = tmp_.path() + "/outside";
    fs::create_directories(outside_);
    WriteFile(outside_ + "/secret", "SECRET");
    Reopen();
    ASSERT_TRUE(store_->CreateVnode(1).ok());
    ASSERT_TRUE(store_->CreateVnode(2).ok());
  }

  void Reopen(uint64_t capacity = 64 << 20, FileStore::Options options = {}) {
    store_.reset();
    auto s = FileStore::Open(root_, capacity, options);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::string VnodeDir(uint32_t id) const { return root_ + "/vnodes/" + std::to_string(id); }

  FsReply Do(FsOp op, std::string path, uint32_t vnode = 1) {
    FsRequest r;
    r.op = op;
    r.f.vnode = vnode;
    r.path = std::move(path);
    return store_->Execute(r);
  }
  FsReply Create(const std::string& path, uint32_t mode = 0644, bool excl = false, uint32_t vnode = 1) {
    FsRequest r;
    r.op = FsOp::kCreate;
    r.f.vnode = vnode;
    r.f.mode = mode;
    r.f.flags = excl ? proto::kFsExclusive : 0;
    r.path = path;
    return store_->Execute(r);
  }
  FsReply Write(const std::string& path, uint64_t offset, const std::string& data, uint32_t vnode = 1) {
    FsRequest r;
    r.op = FsOp::kWrite;
    r.f.vnode = vnode;
    r.f.offset = offset;
    r.path = path;
    r.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    return store_->Execute(r);
  }
  FsReply Read(const std::string& path, uint64_t offset, uint64_t length, uint32_t vnode = 1) {
    FsRequest r;
    r.op = FsOp::kRead;
    r.f.vnode = vnode;
    r.f.offset = offset;
    r.f.length = length;
    r.path = path;
    return store_->Execute(r);
  }
  std::string ReadAll(const std::string& path, uint32_t vnode = 1) {
    FsReply r = Read(path, 0, proto::kFsMaxIo, vnode);
    EXPECT_EQ(r.err(), 0) << path;
    return std::string(r.data.begin(), r.data.end());
  }
  FsReply Mkdir(const std::string& path, uint32_t mode = 0755) {
    FsRequest r;
    r.op = FsOp::kMkdir;
    r.f.vnode = 1;
    r.f.mode = mode;
    r.path = path;
    return store_->Execute(r);
  }
  FsReply Rename(const std::string& from, const std::string& to, uint32_t flags = 0) {
    FsRequest r;
    r.op = FsOp::kRename;
    r.f.vnode = 1;
    r.f.flags = flags;
    r.path = from;
    r.path2 = to;
    return store_->Execute(r);
  }
  FsReply Setattr(const std::string& path, uint32_t valid, uint32_t mode = 0, uint64_t size = 0) {
    FsRequest r;
    r.op = FsOp::kSetattr;
    r.f.vnode = 1;
    r.f.valid = valid;
    r.f.mode = mode;
    r.f.length = size;
    r.path = path;
    return store_->Execute(r);
  }
  FsReply Readdir(const std::string& path, uint64_t cookie, uint32_t vnode = 1) {
    FsRequest r;
    r.op = FsOp::kReaddir;
    r.f.vnode = vnode;
    r.f.offset = cookie;
    r.path = path;
    return store_->Execute(r);
  }
  // Every name in a directory, page by page; fails the test if one is returned twice.
  std::set<std::string> ListAll(const std::string& path, uint32_t vnode = 1, int* pages = nullptr) {
    std::set<std::string> names;
    uint64_t cookie = 0;
    for (int i = 0; i < 100000; ++i) {
      FsReply r = Readdir(path, cookie, vnode);
      EXPECT_EQ(r.err(), 0);
      if (r.err()) break;
      for (const auto& e : r.entries) EXPECT_TRUE(names.insert(e.name).second) << "twice: " << e.name;
      if (pages) ++*pages;
      if (r.f.flags & proto::kFsReplyEof) break;
      EXPECT_FALSE(r.entries.empty()) << "a page with no entries and no EOF";
      cookie = r.f.value;
    }
    return names;
  }

  TempDir tmp_;
  std::string root_;
  std::string outside_;
  std::unique_ptr<FileStore> store_;
};

TEST_F(FileStoreTest, CreateWriteReadGetattr) {
  FsReply c = Create("f", 0640);
  ASSERT_EQ(c.err(), 0);
  EXPECT_TRUE(c.f.flags & proto::kFsReplyAttr);
  EXPECT_EQ(c.f.attr.mode, S_IFREG | 0640u);  // exact, whatever the umask
  EXPECT_EQ(c.f.attr.size, 0u);

  FsReply w = Write("f", 0, "hello");
  ASSERT_EQ(w.err(), 0);
  EXPECT_EQ(w.f.value, 5u);
  EXPECT_EQ(w.f.attr.size, 5u);
  EXPECT_EQ(ReadAll("f"), "hello");
  FsReply r = Read("f", 3, 100);
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(std::string(r.data.begin(), r.data.end()), "lo");
  EXPECT_TRUE(Read("f", 10, 100).data.empty());  // past EOF: empty, not an error
  EXPECT_EQ(Read("f", 1, 2).data.size(), 2u);
  ASSERT_EQ(Write("f", 10, "x").err(), 0);  // leaves a hole
  EXPECT_EQ(ReadAll("f"), std::string("hello\0\0\0\0\0x", 11));

  FsReply g = Do(FsOp::kGetattr, "f");
  ASSERT_EQ(g.err(), 0);
  EXPECT_EQ(g.f.attr.size, 11u);
  EXPECT_EQ(g.f.attr.nlink, 1u);
  EXPECT_EQ(ReadFile(VnodeDir(1) + "/f"), std::string("hello\0\0\0\0\0x", 11));  // really on disk

  EXPECT_EQ(Create("f", 0644, /*excl=*/true).err(), EEXIST);
  FsReply again = Create("f", 0600);  // not exclusive: the existing file, untouched
  ASSERT_EQ(again.err(), 0);
  EXPECT_EQ(again.f.attr.size, 11u);
  EXPECT_EQ(again.f.attr.mode, S_IFREG | 0640u);

  EXPECT_EQ(Do(FsOp::kGetattr, "missing").err(), ENOENT);
  EXPECT_EQ(Read("missing", 0, 1).err(), ENOENT);
  EXPECT_EQ(Write("missing", 0, "x").err(), ENOENT);
  EXPECT_EQ(Do(FsOp::kGetattr, "f/x").err(), ENOTDIR);
  EXPECT_EQ(Create("nodir/f").err(), ENOENT);
  EXPECT_EQ(Create("f/x").err(), ENOTDIR);
  EXPECT_EQ(Do(FsOp::kGetattr, "f", /*vnode=*/3).err(), ENOENT);  // no such vNode

  ASSERT_EQ(Mkdir("d").err(), 0);
  EXPECT_EQ(Read("d", 0, 10).err(), EISDIR);
  EXPECT_EQ(Write("d", 0, "x").err(), EISDIR);
  EXPECT_EQ(Create("d").err(), EISDIR);
  EXPECT_EQ(Create("d", 0644, true).err(), EEXIST);
  EXPECT_EQ(Read("", 0, 10).err(), EISDIR);
  EXPECT_EQ(Write("", 0, "x").err(), EISDIR);

  FsReply root = Do(FsOp::kGetattr, "");
  ASSERT_EQ(root.err(), 0);
  EXPECT_TRUE(S_ISDIR(root.f.attr.mode));
}

TEST_F(FileStoreTest, SetattrModeOwnerSizeAndTimes) {
  ASSERT_EQ(Create("f", 0644).err(), 0);
  ASSERT_EQ(Write("f", 0, "0123456789").err(), 0);

  FsReply m = Setattr("f", proto::kFsSetMode, 0600 | S_IFDIR);  // only permission bits are taken
  ASSERT_EQ(m.err(), 0);
  EXPECT_EQ(m.f.attr.mode, S_IFREG | 0600u);

  FsReply s = Setattr("f", proto::kFsSetSize, 0, 4);
  ASSERT_EQ(s.err(), 0);
  EXPECT_EQ(s.f.attr.size, 4u);
  EXPECT_EQ(ReadAll("f"), "0123");
  ASSERT_EQ(Setattr("f", proto::kFsSetSize, 0, 8).err(), 0);
  EXPECT_EQ(ReadAll("f"), std::string("0123\0\0\0\0", 8));

  FsRequest r;
  r.op = FsOp::kSetattr;
  r.f.vnode = 1;
  r.path = "f";
  r.f.valid = proto::kFsSetUid | proto::kFsSetGid;
  r.f.uid = getuid();
  r.f.gid = getgid();
  FsReply o = store_->Execute(r);
  ASSERT_EQ(o.err(), 0);
  EXPECT_EQ(o.f.attr.uid, getuid());
  EXPECT_EQ(o.f.attr.gid, getgid());

  r.f.valid = proto::kFsSetAtime | proto::kFsSetMtime;
  r.f.atime_ns = 1'000'000'000'123;
  r.f.mtime_ns = 2'000'000'000'456;
  FsReply t = store_->Execute(r);
  ASSERT_EQ(t.err(), 0);
  EXPECT_EQ(t.f.attr.atime_ns, 1'000'000'000'123);
  EXPECT_EQ(t.f.attr.mtime_ns, 2'000'000'000'456);
  r.f.valid = proto::kFsSetMtimeNow;
  FsReply now = store_->Execute(r);
  ASSERT_EQ(now.err(), 0);
  EXPECT_EQ(now.f.attr.atime_ns, 1'000'000'000'123);  // untouched
  EXPECT_GT(now.f.attr.mtime_ns, 1'600'000'000'000'000'000);

  ASSERT_EQ(Mkdir("d", 0755).err(), 0);
  EXPECT_EQ(Setattr("d", proto::kFsSetSize, 0, 0).err(), EISDIR);
  FsReply dm = Setattr("d", proto::kFsSetMode, 0700);
  ASSERT_EQ(dm.err(), 0);
  EXPECT_EQ(dm.f.attr.mode, S_IFDIR | 0700u);
  EXPECT_EQ(Setattr("f", 256).err(), EINVAL);  // unknown valid bit
  EXPECT_EQ(Setattr("missing", proto::kFsSetMode, 0600).err(), ENOENT);
  EXPECT_EQ(Setattr("", proto::kFsSetMode, 0755).err(), 0);  // the root's own attributes
}

TEST_F(FileStoreTest, MkdirRmdirUnlinkAndTheRoot) {
  FsReply d = Mkdir("d", 0750);
  ASSERT_EQ(d.err(), 0);
  EXPECT_EQ(d.f.attr.mode, S_IFDIR | 0750u);
  EXPECT_EQ(Mkdir("d").err(), EEXIST);
  EXPECT_EQ(Mkdir("").err(), EEXIST);
  EXPECT_EQ(Mkdir("x/y").err(), ENOENT);
  ASSERT_EQ(Mkdir("d/e").err(), 0);
  ASSERT_EQ(Create("d/e/f").err(), 0);

  EXPECT_EQ(Do(FsOp::kRmdir, "d").err(), ENOTEMPTY);
  EXPECT_EQ(Do(FsOp::kUnlink, "d").err(), EISDIR);
  EXPECT_EQ(Do(FsOp::kRmdir, "d/e/f").err(), ENOTDIR);
  ASSERT_EQ(Do(FsOp::kUnlink, "d/e/f").err(), 0);
  EXPECT_EQ(Do(FsOp::kUnlink, "d/e/f").err(), ENOENT);
  ASSERT_EQ(Do(FsOp::kRmdir, "d/e").err(), 0);
  ASSERT_EQ(Do(FsOp::kRmdir, "d").err(), 0);
  EXPECT_EQ(Do(FsOp::kRmdir, "d").err(), ENOENT);

  EXPECT_EQ(Do(FsOp::kRmdir, "").err(), EBUSY);
  EXPECT_EQ(Do(FsOp::kUnlink, "").err(), EBUSY);
  ASSERT_EQ(Create("f").err(), 0);
  EXPECT_EQ(Rename("", "x").err(), EBUSY);
  EXPECT_EQ(Rename("f", "").err(), EBUSY);
  EXPECT_TRUE(fs::is_directory(VnodeDir(1)));
}

TEST_F(FileStoreTest, ReaddirPagesOver2000EntriesEachNameOnce) {
  Reopen(64 << 20, FileStore::Options{.readdir_reply_bytes = 300});  // a handful of entries per page
  ASSERT_EQ(Mkdir("big").err(), 0);
  std::set<std::string> want;
  for (int i = 0; i < 2000; ++i) {
    std::string name = "file-" + std::to_string(i);
    ASSERT_EQ(Create("big/" + name).err(), 0);
    want.insert(name);
  }
  ASSERT_EQ(Mkdir("big/sub").err(), 0);
  want.insert("sub");
  int pages = 0;
  EXPECT_EQ(ListAll("big", 1, &pages), want);
  EXPECT_GT(pages, 50);

  FsReply first = Readdir("big", 0);
  ASSERT_EQ(first.err(), 0);
  size_t bytes = 0;
  for (const auto& e : first.entries) {
    bytes += 14 + e.name.size();
    EXPECT_EQ(e.mode, e.name == "sub" ? S_IFDIR : S_IFREG) << e.name;
    EXPECT_NE(e.ino, 0u);
  }
  EXPECT_LE(bytes, 300u);
  EXPECT_EQ(first.f.count, first.entries.size());

  Reopen();  // default budget: one reply well under 64 KiB
  FsReply all = Readdir("big", 0);
  ASSERT_EQ(all.err(), 0);
  EXPECT_LT(proto::EncodeFsReply(FsOp::kReaddir, all).size(), 64u << 10);

  EXPECT_EQ(ListAll("").count("big"), 1u);  // the root
  std::set<std::string> none = ListAll("big/sub");
  EXPECT_TRUE(none.empty());
  ASSERT_EQ(Create("f").err(), 0);
  EXPECT_EQ(Readdir("f", 0).err(), ENOTDIR);
  EXPECT_EQ(Readdir("missing", 0).err(), ENOENT);
  EXPECT_EQ(Readdir("big", uint64_t{1} << 63).err(), EINVAL);
}

TEST_F(FileStoreTest, RenamePlainNoreplaceExchangeAndBadFlags) {
  ASSERT_EQ(Create("a").err(), 0);
  ASSERT_EQ(Write("a", 0, "AAAA").err(), 0);
  ASSERT_EQ(Create("b").err(), 0);
  ASSERT_EQ(Write("b", 0, "BB").err(), 0);
  ASSERT_EQ(Mkdir("d").err(), 0);

  EXPECT_EQ(Rename("a", "b", 1).err(), EEXIST);  // RENAME_NOREPLACE
  ASSERT_EQ(Rename("a", "b", 2).err(), 0);       // RENAME_EXCHANGE
  EXPECT_EQ(ReadAll("a"), "BB");
  EXPECT_EQ(ReadAll("b"), "AAAA");
  EXPECT_EQ(Rename("a", "b", 3).err(), EINVAL);
  EXPECT_EQ(Rename("a", "b", 4).err(), EINVAL);
  EXPECT_EQ(Rename("a", "nope", 2).err(), ENOENT);

  ASSERT_EQ(Rename("a", "d/c").err(), 0);
  EXPECT_EQ(ReadAll("d/c"), "BB");
  EXPECT_EQ(Do(FsOp::kGetattr, "a").err(), ENOENT);
  EXPECT_EQ(Rename("missing", "x").err(), ENOENT);
  EXPECT_EQ(Rename("b", "nodir/x").err(), ENOENT);
  EXPECT_EQ(Rename("d", "d/sub").err(), EINVAL);  // a directory into itself

  uint64_t before = store_->used_bytes();
  ASSERT_EQ(Rename("b", "d/c").err(), 0);  // replaces d/c: its blocks are freed
  EXPECT_EQ(ReadAll("d/c"), "AAAA");
  EXPECT_LT(store_->used_bytes(), before);
}

TEST_F(FileStoreTest, FsyncFileDirAndRoot) {
  ASSERT_EQ(Mkdir("d").err(), 0);
  ASSERT_EQ(Create("d/f").err(), 0);
  ASSERT_EQ(Write("d/f", 0, "durable").err(), 0);
  EXPECT_EQ(Do(FsOp::kFsync, "d/f").err(), 0);
  FsRequest r;
  r.op = FsOp::kFsync;
  r.f.vnode = 1;
  r.f.flags = proto::kFsDataSync;
  r.path = "d/f";
  EXPECT_EQ(store_->Execute(r).err(), 0);
  EXPECT_EQ(Do(FsOp::kFsync, "d").err(), 0);
  EXPECT_EQ(Do(FsOp::kFsync, "").err(), 0);
  EXPECT_EQ(Do(FsOp::kFsync, "missing").err(), ENOENT);
  // A WRITE that syncs (what the buffer cache sends for an fsync with dirty data) writes and answers as a
  // plain one does, and fails as one for a missing file. That the data reached the disk is not observable
  // short of losing the host; the buffer cache's tests check that the flag is sent instead of an FSYNC.
  const std::string more = "and synced";
  FsRequest w;
  w.op = FsOp::kWrite;
  w.f.vnode = 1;
  w.f.offset = 7;
  w.f.flags = proto::kFsWriteSync | proto::kFsDataSync;
  w.path = "d/f";
  w.data = std::span(reinterpret_cast<const uint8_t*>(more.data()), more.size());
  FsReply wr = store_->Execute(w);
  ASSERT_EQ(wr.err(), 0);
  EXPECT_EQ(wr.f.value, more.size());
  EXPECT_EQ(wr.f.attr.size, 7 + more.size());
  w.path = "missing";
  EXPECT_EQ(store_->Execute(w).err(), ENOENT);
}

TEST_F(FileStoreTest, StatfsReportsTheQuota) {
  Reopen(1 << 20);
  FsReply s = Do(FsOp::kStatfs, "");
  ASSERT_EQ(s.err(), 0);
  EXPECT_EQ(s.statfs.bsize, 4096u);
  EXPECT_EQ(s.statfs.namemax, 255u);
  EXPECT_EQ(s.statfs.blocks, 256u);
  EXPECT_EQ(s.statfs.bfree, 256u);
  EXPECT_EQ(s.statfs.bavail, 256u);
  EXPECT_GT(s.statfs.files, 0u);
  ASSERT_EQ(Create("f").err(), 0);
  ASSERT_EQ(Write("f", 0, std::string(40960, 'x')).err(), 0);
  FsReply after = Do(FsOp::kStatfs, "");
  ASSERT_EQ(after.err(), 0);
  EXPECT_LE(after.statfs.bfree, 246u);
  EXPECT_EQ(Do(FsOp::kStatfs, "", 9).err(), ENOENT);
}

TEST_F(FileStoreTest, BadPathsAreRefused) {
  const std::string long_name(256, 'n');
  std::string long_path;
  while (long_path.size() < 4096) long_path += "abcdefg/";
  long_path.resize(4096);
  struct Case {
    std::string path;
    int err;
  };
  const Case cases[] = {{"..", EINVAL},
                        {"a/../..", EINVAL},
                        {"/etc/passwd", EINVAL},
                        {"./x", EINVAL},
                        {"a//b", EINVAL},
                        {"a/", EINVAL},
                        {std::string("a\0b", 3), EINVAL},
                        {long_name, ENAMETOOLONG},
                        {"d/" + long_name, ENAMETOOLONG},
                        {long_path, ENAMETOOLONG}};
  for (const auto& c : cases) {
    for (uint16_t op = 1; op <= proto::kFsOpCount; ++op) {
      FsRequest r;
      r.op = static_cast<FsOp>(op);
      r.f.vnode = 1;
      r.path = c.path;
      EXPECT_EQ(store_->Execute(r).err(), c.err) << "op " << op << " path size " << c.path.size();
    }
    EXPECT_EQ(Rename("x", c.path).err(), c.err);  // path2 is checked too
  }
  EXPECT_FALSE(fs::exists(VnodeDir(1) + "/x"));
  EXPECT_EQ(ReadFile(outside_ + "/secret"), "SECRET");
}

TEST_F(FileStoreTest, PlantedSymlinksAreNeverFollowed) {
  const std::string secret = outside_ + "/secret";
  ASSERT_EQ(symlink(secret.c_str(), (VnodeDir(1) + "/link").c_str()), 0);
  ASSERT_EQ(symlink(outside_.c_str(), (VnodeDir(1) + "/dlink").c_str()), 0);
  ASSERT_EQ(symlink("../../../outside", (VnodeDir(1) + "/rel").c_str()), 0);
  struct stat before;
  ASSERT_EQ(stat(secret.c_str(), &before), 0);
  ASSERT_EQ(Create("plain").err(), 0);

  // As the last component: the link itself at most, never its target.
  FsReply g = Do(FsOp::kGetattr, "link");
  ASSERT_EQ(g.err(), 0);
  EXPECT_TRUE(S_ISLNK(g.f.attr.mode));
  EXPECT_EQ(Read("link", 0, 100).err(), ELOOP);
  EXPECT_EQ(Write("link", 0, "pwned").err(), ELOOP);
  EXPECT_EQ(Create("link").err(), ELOOP);
  EXPECT_EQ(Create("link", 0644, true).err(), EEXIST);
  EXPECT_EQ(Setattr("link", proto::kFsSetMode, 0777).err(), ELOOP);
  EXPECT_EQ(Setattr("link", proto::kFsSetSize, 0, 0).err(), ELOOP);
  EXPECT_EQ(Mkdir("link").err(), EEXIST);
  EXPECT_EQ(Readdir("dlink", 0).err(), ELOOP);
  EXPECT_EQ(Do(FsOp::kFsync, "link").err(), ELOOP);

  // As a middle component: refused while resolving.
  for (const std::string dir : {"dlink", "rel"}) {
    SCOPED_TRACE(dir);
    EXPECT_EQ(Do(FsOp::kGetattr, dir + "/secret").err(), ELOOP);
    EXPECT_EQ(Read(dir + "/secret", 0, 100).err(), ELOOP);
    EXPECT_EQ(Write(dir + "/secret", 0, "pwned").err(), ELOOP);
    EXPECT_EQ(Create(dir + "/new").err(), ELOOP);
    EXPECT_EQ(Create(dir + "/secret").err(), ELOOP);
    EXPECT_EQ(Setattr(dir + "/secret", proto::kFsSetSize, 0, 0).err(), ELOOP);
    EXPECT_EQ(Setattr(dir + "/secret", proto::kFsSetMode, 0777).err(), ELOOP);
    EXPECT_EQ(Mkdir(dir + "/newdir").err(), ELOOP);
    EXPECT_EQ(Do(FsOp::kUnlink, dir + "/secret").err(), ELOOP);
    EXPECT_EQ(Do(FsOp::kRmdir, dir + "/x").err(), ELOOP);
    EXPECT_EQ(Rename(dir + "/secret", "stolen").err(), ELOOP);
    EXPECT_EQ(Rename("plain", dir + "/planted").err(), ELOOP);
    EXPECT_EQ(Readdir(dir, 0).err(), ELOOP);
    EXPECT_EQ(Do(FsOp::kFsync, dir + "/secret").err(), ELOOP);
  }

  // Removing or renaming the link acts on the link only.
  ASSERT_EQ(Rename("link", "link2").err(), 0);
  ASSERT_EQ(Do(FsOp::kUnlink, "link2").err(), 0);
  ASSERT_EQ(Do(FsOp::kUnlink, "dlink").err(), 0);

  struct stat after;
  ASSERT_EQ(stat(secret.c_str(), &after), 0);
  EXPECT_EQ(ReadFile(secret), "SECRET");
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  std::set<std::string> outside_names;
  for (const auto& e : fs::directory_iterator(outside_)) outside_names.insert(e.path().filename());
  EXPECT_EQ(outside_names, std::set<std::string>{"secret"});
}

TEST_F(FileStoreTest, PlantedFifoIsNeverOpened) {
  ASSERT_EQ(mkfifo((VnodeDir(1) + "/fifo").c_str(), 0644), 0);
  EXPECT_EQ(Read("fifo", 0, 10).err(), EACCES);  // would block forever if opened
  EXPECT_EQ(Write("fifo", 0, "x").err(), EACCES);
  EXPECT_EQ(Setattr("fifo", proto::kFsSetMode, 0600).err(), EACCES);
  EXPECT_EQ(Create("fifo").err(), EACCES);
  EXPECT_EQ(Do(FsOp::kFsync, "fifo").err(), EACCES);
  EXPECT_EQ(Do(FsOp::kUnlink, "fifo").err(), 0);
}

TEST_F(FileStoreTest, VnodesAreIsolated) {
  ASSERT_EQ(Create("only2", 0644, false, 2).err(), 0);
  ASSERT_EQ(Write("only2", 0, "two", 2).err(), 0);
  EXPECT_EQ(Do(FsOp::kGetattr, "only2", 1).err(), ENOENT);
  EXPECT_EQ(Read("only2", 0, 10, 1).err(), ENOENT);
  EXPECT_EQ(Read("../2/only2", 0, 10, 1).err(), EINVAL);
  EXPECT_EQ(ListAll("", 1).count("only2"), 0u);
  EXPECT_EQ(ListAll("", 2), std::set<std::string>{"only2"});
  EXPECT_EQ(ReadAll("only2", 2), "two");
  EXPECT_EQ(store_->Vnodes(), (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(store_->HasVnode(2));
  EXPECT_FALSE(store_->HasVnode(3));
  EXPECT_EQ(store_->CreateVnode(0).code(), StatusCode::kInvalidArgument);
}

TEST_F(FileStoreTest, QuotaRefusesGrowthWithEnospcAndUnlinkMakesRoom) {
  Reopen(64 << 10);  // 64 KiB
  ASSERT_EQ(Create("a").err(), 0);
  ASSERT_EQ(Create("b").err(), 0);
  ASSERT_EQ(Write("a", 0, std::string(48 << 10, 'a')).err(), 0);
  EXPECT_GE(store_->used_bytes(), 48u << 10);
  EXPECT_EQ(Write("b", 0, std::string(32 << 10, 'b')).err(), ENOSPC);
  EXPECT_EQ(Do(FsOp::kGetattr, "b").f.attr.size, 0u);  // refused before writing anything
  EXPECT_EQ(Setattr("b", proto::kFsSetSize, 0, 1 << 20).err(), ENOSPC);
  ASSERT_EQ(Write("b", 0, std::string(16 << 10, 'b')).err(), 0);  // exactly fills it
  EXPECT_LE(store_->used_bytes(), 64u << 10);
  EXPECT_EQ(Write("b", 16 << 10, "x").err(), ENOSPC);
  ASSERT_EQ(Write("a", 100, "overwrite").err(), 0);  // rewriting allocated blocks needs no room

  ASSERT_EQ(Do(FsOp::kUnlink, "a").err(), 0);
  EXPECT_LE(store_->used_bytes(), 16u << 10);
  ASSERT_EQ(Write("b", 16 << 10, std::string(32 << 10, 'c')).err(), 0);
  ASSERT_EQ(Setattr("b", proto::kFsSetSize, 0, 4096).err(), 0);  // shrinking frees
  EXPECT_LE(store_->used_bytes(), 8u << 10);
}

TEST_F(FileStoreTest, RestartKeepsVnodesFilesAndUsedBytes) {
  ASSERT_EQ(Mkdir("d").err(), 0);
  ASSERT_EQ(Create("d/f").err(), 0);
  ASSERT_EQ(Write("d/f", 0, std::string(10000, 'z')).err(), 0);
  ASSERT_EQ(Create("g", 0644, false, 2).err(), 0);
  ASSERT_EQ(Write("g", 0, std::string(5000, 'g'), 2).err(), 0);
  uint64_t used = store_->used_bytes();
  EXPECT_GE(used, 15000u);
  fs::create_directories(root_ + "/vnodes/not-a-vnode");                // ignored
  fs::create_directories(root_ + "/vnodes/.removing-7-1-0/deep/tree");  // an interrupted removal

  Reopen();
  EXPECT_EQ(store_->Vnodes(), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(store_->used_bytes(), used);
  EXPECT_EQ(ReadAll("d/f"), std::string(10000, 'z'));
  EXPECT_EQ(ReadAll("g", 2), std::string(5000, 'g'));
  EXPECT_FALSE(fs::exists(root_ + "/vnodes/.removing-7-1-0"));
  ASSERT_TRUE(store_->CreateVnode(1).ok());  // idempotent: the namespace is kept
  EXPECT_EQ(ReadAll("d/f"), std::string(10000, 'z'));
}

TEST_F(FileStoreTest, RemoveVnodeDeletesTheTreeButNotWhatSymlinksPointTo) {
  ASSERT_EQ(Mkdir("a").err(), 0);
  ASSERT_EQ(Mkdir("a/b").err(), 0);
  ASSERT_EQ(Mkdir("a/b/c").err(), 0);
  ASSERT_EQ(Create("a/b/c/f").err(), 0);
  ASSERT_EQ(Write("a/b/c/f", 0, std::string(8192, 'f')).err(), 0);
  ASSERT_EQ(symlink(outside_.c_str(), (VnodeDir(1) + "/a/b/out").c_str()), 0);
  ASSERT_EQ(symlink((outside_ + "/secret").c_str(), (VnodeDir(1) + "/a/secret").c_str()), 0);
  ASSERT_EQ(Create("keep", 0644, false, 2).err(), 0);
  ASSERT_EQ(Write("keep", 0, "2", 2).err(), 0);
  uint64_t used_with = store_->used_bytes();

  ASSERT_TRUE(store_->RemoveVnode(1).ok());
  EXPECT_FALSE(store_->HasVnode(1));
  EXPECT_FALSE(fs::exists(VnodeDir(1)));
  EXPECT_EQ(ReadFile(outside_ + "/secret"), "SECRET");
  EXPECT_LE(store_->used_bytes(), used_with - 8192);
  EXPECT_EQ(Do(FsOp::kGetattr, "a").err(), ENOENT);  // an unknown vNode
  EXPECT_EQ(store_->RemoveVnode(1).code(), StatusCode::kNotFound);
  EXPECT_EQ(ReadAll("keep", 2), "2");
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root_ + "/vnodes")) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"2"});

  ASSERT_TRUE(store_->CreateVnode(1).ok());  // a fresh, empty namespace
  EXPECT_TRUE(ListAll("").empty());
}

TEST_F(FileStoreTest, ConcurrentWritersOnDifferentFiles) {
  constexpr int kThreads = 4, kChunks = 64, kChunk = 4096;
  for (int t = 0; t < kThreads; ++t) ASSERT_EQ(Create("w" + std::to_string(t)).err(), 0);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string name = "w" + std::to_string(t);
      for (int i = 0; i < kChunks; ++i) {
        std::string data(kChunk, static_cast<char>('a' + t));
        if (Write(name, uint64_t{static_cast<uint64_t>(i)} * kChunk, data).f.value != kChunk) ++failures;
        if (Read(name, 0, kChunk).err() != 0) ++failures;
        if (Do(FsOp::kGetattr, "").err() != 0) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(ReadAll("w" + std::to_string(t)), std::string(kChunks * kChunk, static_cast<char>('a' + t)));
  uint64_t used = store_->used_bytes();
  EXPECT_GE(used, uint64_t{kThreads} * kChunks * kChunk);
  Reopen();
  EXPECT_EQ(store_->used_bytes(), used);  // the running count matches a fresh walk
}

// The smon's duplicate-request cache in front of a real store: a repeated non-idempotent request (same id)
// is answered, not run again; a new id runs; idempotent requests and requests without an id pass through.
TEST_F(FileStoreTest, ARepeatedRequestIdRunsOnce) {
  DuplicateRequestCache dedup(*store_, 3);
  auto op = [&](FsOp o, const std::string& path, uint64_t id, const std::string& path2 = "") {
    FsRequest r;
    r.op = o;
    r.f.vnode = 1;
    r.f.mode = 0755;
    r.f.flags = o == FsOp::kCreate ? proto::kFsExclusive : 0;
    r.f.request_id = id;
    r.path = path;
    r.path2 = path2;
    return dedup.Execute(r);
  };
  ASSERT_EQ(op(FsOp::kMkdir, "d", 1).err(), 0);
  const FsReply again = op(FsOp::kMkdir, "d", 1);  // a resend: the first run's answer, with its attr
  EXPECT_EQ(again.err(), 0);
  EXPECT_TRUE(again.f.flags & proto::kFsReplyAttr);
  EXPECT_TRUE(again.f.flags & proto::kFsReplyReplayed);
  EXPECT_TRUE(S_ISDIR(again.f.attr.mode));
  EXPECT_EQ(op(FsOp::kMkdir, "d", 2).err(), EEXIST);  // another request: it runs
  EXPECT_EQ(op(FsOp::kMkdir, "d", 0).err(), EEXIST);  // no id: it runs
  EXPECT_EQ(dedup.replayed(), 1u);

  ASSERT_EQ(op(FsOp::kCreate, "d/f", 3).err(), 0);
  EXPECT_EQ(op(FsOp::kCreate, "d/f", 3).err(), 0);  // exclusive create sent twice: one file, no EEXIST
  ASSERT_EQ(op(FsOp::kRename, "d/f", 4, "d/g").err(), 0);
  EXPECT_EQ(op(FsOp::kRename, "d/f", 4, "d/g").err(), 0);  // not ENOENT
  EXPECT_TRUE(fs::exists(VnodeDir(1) + "/d/g"));
  EXPECT_FALSE(fs::exists(VnodeDir(1) + "/d/f"));
  ASSERT_EQ(op(FsOp::kUnlink, "d/g", 5).err(), 0);
  EXPECT_EQ(op(FsOp::kUnlink, "d/g", 5).err(), 0);
  EXPECT_EQ(dedup.replayed(), 4u);
  // An error is an answer too: the resend gets it again rather than a different one.
  EXPECT_EQ(op(FsOp::kRmdir, "nothing", 6).err(), ENOENT);
  ASSERT_EQ(op(FsOp::kMkdir, "nothing", 7).err(), 0);
  EXPECT_EQ(op(FsOp::kRmdir, "nothing", 6).err(), ENOENT);
  // Idempotent ops never enter the cache, whatever id they carry.
  FsRequest g;
  g.op = FsOp::kGetattr;
  g.f.vnode = 1;
  g.f.request_id = 99;
  g.path = "d";
  EXPECT_EQ(dedup.Execute(g).err(), 0);
  // The cache holds 3 ids: the oldest are forgotten, and a very late resend of one runs again.
  EXPECT_EQ(dedup.size(), 3u);
  EXPECT_EQ(op(FsOp::kMkdir, "d", 1).err(), EEXIST);
  // Ids are per vNode: the same id on vNode 2 is another request.
  FsRequest m2;
  m2.op = FsOp::kMkdir;
  m2.f.vnode = 2;
  m2.f.mode = 0755;
  m2.f.request_id = 7;
  m2.path = "nothing";
  EXPECT_EQ(dedup.Execute(m2).err(), 0);
  EXPECT_TRUE(fs::is_directory(VnodeDir(2) + "/nothing"));
}

}  // namespace
}  // namespace lego::smon
