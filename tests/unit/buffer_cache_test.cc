// BufferCache: the memory monitor's write-back cache of file blocks, tested over an in-memory FsService.
#include "mmon/buffer_cache.h"
#include "mmon/buffer_cache_set.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace lego::mmon {
namespace {

using proto::Bytes;
using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

constexpr uint32_t kVnode = 1;

// A file system in maps: the downstream (the smon's role). Counts calls per op; can be told to fail.
class FakeFs : public proto::FsService {
 public:
  FakeFs() = default;

  FsReply Execute(const FsRequest& req) override {
    std::lock_guard<std::mutex> l(mu_);
    calls_[req.op]++;
    if (req.op == FsOp::kWrite && (req.f.flags & proto::kFsWriteSync)) synced_writes_++;
    if (fail_all_ || (fail_writes_ && req.op == FsOp::kWrite)) return FsReply::Errno(EIO);
    const std::string& p = req.path;
    switch (req.op) {
      case FsOp::kGetattr:
        return AttrReply(p);
      case FsOp::kCreate: {
        if (dirs_.count(p)) return FsReply::Errno((req.f.flags & proto::kFsExclusive) ? EEXIST : EISDIR);
        if (files_.count(p))
          return (req.f.flags & proto::kFsExclusive) ? FsReply::Errno(EEXIST) : AttrReply(p);
        if (!dirs_.count(Parent(p))) return FsReply::Errno(ENOENT);
        files_[p].ino = next_ino_++;
        return AttrReply(p);
      }
      case FsOp::kRead: {
        if (dirs_.count(p)) return FsReply::Errno(EISDIR);
        auto it = files_.find(p);
        if (it == files_.end()) return FsReply::Errno(ENOENT);
        FsReply r;
        const Bytes& d = it->second.data;
        if (req.f.offset < d.size()) {
          uint64_t n = std::min<uint64_t>(req.f.length, d.size() - req.f.offset);
          r.data.assign(d.begin() + req.f.offset, d.begin() + req.f.offset + n);
        }
        return r;
      }
      case FsOp::kWrite: {
        if (dirs_.count(p)) return FsReply::Errno(EISDIR);
        auto it = files_.find(p);
        if (it == files_.end()) return FsReply::Errno(ENOENT);
        Bytes& d = it->second.data;
        if (d.size() < req.f.offset + req.data.size()) d.resize(req.f.offset + req.data.size(), 0);
        std::copy(req.data.begin(), req.data.end(), d.begin() + req.f.offset);
        it->second.mtime_ns = ++clock_;
        FsReply r = AttrReply(p);
        r.f.value = req.data.size();
        return r;
      }
      case FsOp::kSetattr: {
        if (!Exists(p)) return FsReply::Errno(ENOENT);
        if (req.f.valid & proto::kFsSetSize) {
          if (dirs_.count(p)) return FsReply::Errno(EISDIR);
          files_[p].data.resize(req.f.length, 0);
          files_[p].mtime_ns = ++clock_;
        }
        if ((req.f.valid & proto::kFsSetMtime) && files_.count(p)) files_[p].mtime_ns = req.f.mtime_ns;
        return AttrReply(p);
      }
      case FsOp::kReaddir: {
        if (!dirs_.count(p)) return FsReply::Errno(files_.count(p) ? ENOTDIR : ENOENT);
        FsReply r;
        for (const auto& [name, f] : files_) {
          if (Parent(name) == p)
            r.entries.push_back({f.ino, S_IFREG, name.substr(p.empty() ? 0 : p.size() + 1)});
        }
        r.f.count = r.entries.size();
        r.f.flags = proto::kFsReplyEof;
        return r;
      }
      case FsOp::kMkdir:
        if (Exists(p)) return FsReply::Errno(EEXIST);
        if (!dirs_.count(Parent(p))) return FsReply::Errno(ENOENT);
        dirs_.insert(p);
        return AttrReply(p);
      case FsOp::kRmdir:
        if (!dirs_.count(p)) return FsReply::Errno(files_.count(p) ? ENOTDIR : ENOENT);
        if (HasChildren(p)) return FsReply::Errno(ENOTEMPTY);
        dirs_.erase(p);
        return FsReply{};
      case FsOp::kUnlink:
        if (dirs_.count(p)) return FsReply::Errno(EISDIR);
        if (!files_.erase(p)) return FsReply::Errno(ENOENT);
        return FsReply{};
      case FsOp::kRename:
        return Rename(p, req.path2, req.f.flags);
      case FsOp::kFsync:
        return Exists(p) ? FsReply{} : FsReply::Errno(ENOENT);
      case FsOp::kStatfs: {
        FsReply r;
        r.statfs.bsize = 4096;
        return r;
      }
    }
    return FsReply::Errno(ENOSYS);
  }

  // Test access.
  void Put(const std::string& p, Bytes data) {
    std::lock_guard<std::mutex> l(mu_);
    files_[p].data = std::move(data);
    files_[p].ino = next_ino_++;
  }
  void AddDir(const std::string& p) {
    std::lock_guard<std::mutex> l(mu_);
    dirs_.insert(p);
  }
  std::optional<Bytes> Contents(const std::string& p) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = files_.find(p);
    if (it == files_.end()) return std::nullopt;
    return it->second.data;
  }
  std::map<std::string, Bytes> AllFiles() {
    std::lock_guard<std::mutex> l(mu_);
    std::map<std::string, Bytes> out;
    for (const auto& [p, f] : files_) out[p] = f.data;
    return out;
  }
  std::set<std::string> AllDirs() {
    std::lock_guard<std::mutex> l(mu_);
    return dirs_;
  }
  uint64_t synced_writes() {
    std::lock_guard<std::mutex> l(mu_);
    return synced_writes_;
  }
  uint64_t calls(FsOp op) {
    std::lock_guard<std::mutex> l(mu_);
    return calls_[op];
  }
  void set_fail_writes(bool v) {
    std::lock_guard<std::mutex> l(mu_);
    fail_writes_ = v;
  }

 private:
  struct File {
    Bytes data;
    uint64_t ino = 0;
    int64_t mtime_ns = 0;
  };

  static std::string Parent(const std::string& p) {
    size_t slash = p.rfind('/');
    return slash == std::string::npos ? "" : p.substr(0, slash);
  }
  bool Exists(const std::string& p) const { return files_.count(p) || dirs_.count(p); }
  bool HasChildren(const std::string& d) const {
    for (const auto& [p, f] : files_) {
      if (Parent(p) == d) return true;
    }
    for (const auto& p : dirs_) {
      if (!p.empty() && Parent(p) == d) return true;
    }
    return false;
  }
  FsReply AttrReply(const std::string& p) {
    FsReply r;
    if (dirs_.count(p)) {
      r.f.attr.mode = S_IFDIR | 0755;
    } else if (auto it = files_.find(p); it != files_.end()) {
      r.f.attr.mode = S_IFREG | 0644;
      r.f.attr.size = it->second.data.size();
      r.f.attr.ino = it->second.ino;
      r.f.attr.mtime_ns = it->second.mtime_ns;
    } else {
      return FsReply::Errno(ENOENT);
    }
    r.f.attr.nlink = 1;
    r.f.flags = proto::kFsReplyAttr;
    return r;
  }
  FsReply Rename(const std::string& a, const std::string& b, uint32_t flags) {
    if (!Exists(a)) return FsReply::Errno(ENOENT);
    if (!dirs_.count(Parent(b))) return FsReply::Errno(ENOENT);
    if (a == b) return FsReply{};
    if ((flags & 1) && Exists(b)) return FsReply::Errno(EEXIST);
    if (files_.count(a)) {
      if (dirs_.count(b)) return FsReply::Errno(EISDIR);
      files_[b] = files_[a];
      files_.erase(a);
      return FsReply{};
    }
    if (files_.count(b)) return FsReply::Errno(ENOTDIR);
    if (b.compare(0, a.size() + 1, a + "/") == 0) return FsReply::Errno(EINVAL);
    if (dirs_.count(b) && HasChildren(b)) return FsReply::Errno(ENOTEMPTY);
    auto move_prefix = [&](auto& container, auto get_key, auto put) {
      std::vector<std::string> keys;
      for (const auto& e : container) {
        const std::string& k = get_key(e);
        if (k == a || k.compare(0, a.size() + 1, a + "/") == 0) keys.push_back(k);
      }
      for (const auto& k : keys) put(k, b + k.substr(a.size()));
    };
    move_prefix(
        files_, [](const auto& e) -> const std::string& { return e.first; },
        [&](const std::string& from, const std::string& to) {
          files_[to] = files_[from];
          files_.erase(from);
        });
    move_prefix(
        dirs_, [](const std::string& e) -> const std::string& { return e; },
        [&](const std::string& from, const std::string& to) {
          dirs_.erase(from);
          dirs_.insert(to);
        });
    return FsReply{};
  }

  std::mutex mu_;
  std::map<std::string, File> files_;
  std::set<std::string> dirs_{""};
  std::map<FsOp, uint64_t> calls_;
  uint64_t synced_writes_ = 0;  // WRITEs with kFsWriteSync
  bool fail_writes_ = false;
  bool fail_all_ = false;
  uint64_t next_ino_ = 2;
  int64_t clock_ = 1000;
};

FsRequest Req(FsOp op, const std::string& path) {
  FsRequest r;
  r.op = op;
  r.f.vnode = kVnode;
  r.path = path;
  return r;
}
FsReply Write(proto::FsService& s, const std::string& path, uint64_t off, const Bytes& data) {
  FsRequest r = Req(FsOp::kWrite, path);
  r.f.offset = off;
  r.data = data;
  return s.Execute(r);
}
FsReply Read(proto::FsService& s, const std::string& path, uint64_t off, uint64_t len) {
  FsRequest r = Req(FsOp::kRead, path);
  r.f.offset = off;
  r.f.length = len;
  return s.Execute(r);
}
FsReply Truncate(proto::FsService& s, const std::string& path, uint64_t size) {
  FsRequest r = Req(FsOp::kSetattr, path);
  r.f.valid = proto::kFsSetSize;
  r.f.length = size;
  return s.Execute(r);
}
FsReply Simple(proto::FsService& s, FsOp op, const std::string& path) { return s.Execute(Req(op, path)); }
FsReply Rename(proto::FsService& s, const std::string& a, const std::string& b) {
  FsRequest r = Req(FsOp::kRename, a);
  r.path2 = b;
  return s.Execute(r);
}

Bytes Pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : b) {
    x = x * 1103515245u + 12345u;
    c = static_cast<uint8_t>(x >> 16);
  }
  return b;
}

BufferCacheOptions Opts(uint64_t capacity, std::chrono::milliseconds interval = std::chrono::hours(1)) {
  BufferCacheOptions o;
  o.capacity_bytes = capacity;
  o.flush_interval = interval;
  return o;
}

TEST(BufferCache, ReadAfterWriteBeforeFlushAndDownstreamSeesItOnlyAfterFsync) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20), &fs);
  Bytes data = Pattern(10000, 1);
  FsReply w = Write(c, "a", 0, data);
  ASSERT_EQ(w.err(), 0);
  EXPECT_EQ(w.f.value, data.size());
  EXPECT_TRUE(w.f.flags & proto::kFsReplyAttr);
  EXPECT_EQ(w.f.attr.size, data.size());
  FsReply r = Read(c, "a", 0, 20000);
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(r.data, data);
  EXPECT_EQ(fs.calls(FsOp::kWrite), 0u);
  EXPECT_EQ(fs.Contents("a")->size(), 0u);
  EXPECT_EQ(c.stats().dirty_bytes, 3 * kCacheBlockSize);

  ASSERT_EQ(Simple(c, FsOp::kFsync, "a").err(), 0);
  EXPECT_EQ(*fs.Contents("a"), data);
  EXPECT_EQ(fs.calls(FsOp::kWrite), 1u);  // three adjacent blocks, one coalesced WRITE
  EXPECT_EQ(fs.synced_writes(), 1u);      // which carried the sync: no separate FSYNC
  EXPECT_EQ(fs.calls(FsOp::kFsync), 0u);
  EXPECT_EQ(c.stats().dirty_bytes, 0u);
  EXPECT_EQ(c.stats().flushed_bytes, data.size());
  // Nothing dirty: the FSYNC itself goes down.
  ASSERT_EQ(Simple(c, FsOp::kFsync, "a").err(), 0);
  EXPECT_EQ(fs.calls(FsOp::kFsync), 1u);
  EXPECT_EQ(fs.synced_writes(), 1u);
}

TEST(BufferCache, FsyncOfScatteredDirtyBlocksSyncsWithTheLastWriteOnly) {
  FakeFs fs;
  fs.Put("a", Bytes(10 * kCacheBlockSize, 0));
  BufferCache c(Opts(1 << 20), &fs);
  for (uint64_t blk : {1, 5, 8}) ASSERT_EQ(Write(c, "a", blk * kCacheBlockSize, Pattern(100, blk)).err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kFsync, "a").err(), 0);
  EXPECT_EQ(fs.calls(FsOp::kWrite), 3u);  // three runs
  EXPECT_EQ(fs.synced_writes(), 1u);
  EXPECT_EQ(fs.calls(FsOp::kFsync), 0u);
  // The timer's flush does not sync.
  ASSERT_EQ(Write(c, "a", 0, Pattern(100, 9)).err(), 0);
  ASSERT_TRUE(c.FlushAll().ok());
  EXPECT_EQ(fs.calls(FsOp::kWrite), 4u);
  EXPECT_EQ(fs.synced_writes(), 1u);
}

TEST(BufferCache, FlusherTickWritesBack) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20, std::chrono::milliseconds(20)), &fs);
  c.Start();
  Bytes data = Pattern(5000, 2);
  ASSERT_EQ(Write(c, "a", 100, data).err(), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fs.Contents("a")->size() != 5100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Bytes want(100, 0);
  want.insert(want.end(), data.begin(), data.end());
  EXPECT_EQ(*fs.Contents("a"), want);
  // Stop flushes what is still dirty.
  ASSERT_EQ(Write(c, "a", 0, Pattern(10, 3)).err(), 0);
  c.Stop();
  EXPECT_EQ(fs.Contents("a")->at(0), Pattern(10, 3)[0]);
}

// Resizes (SetCapacity, which BufferCacheSet calls about once a second) are applied between flushes and
// never postpone the timed flush: here a resize every 20 ms, a flush interval of 200 ms.
TEST(BufferCache, ResizesDoNotPostponeTheTimedFlush) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20, std::chrono::milliseconds(200)), &fs);
  c.Start();
  Bytes data = Pattern(5000, 7);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (int i = 0; fs.Contents("a")->size() != data.size() && std::chrono::steady_clock::now() < deadline;
       ++i) {
    c.SetCapacity(i % 2 ? (1 << 20) : (512 << 10));  // both hold the 2 blocks
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(*fs.Contents("a"), data);
  EXPECT_EQ(Read(c, "a", 0, 5000).data, data);
  c.Stop();
}

// Shrinking evicts down to the new size (dirty blocks flushed first); nothing is lost.
TEST(BufferCache, ShrinkingEvictsDownToTheNewSize) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(64 * kCacheBlockSize), &fs);
  const Bytes data = Pattern(24 * kCacheBlockSize, 8);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  EXPECT_EQ(c.stats().resident_bytes, data.size());
  c.SetCapacity(8 * kCacheBlockSize);
  EXPECT_EQ(Read(c, "a", 0, 10).err(), 0);  // applied at the next request
  EXPECT_LE(c.stats().resident_bytes, 8 * kCacheBlockSize);
  EXPECT_EQ(c.capacity_blocks(), 8u);
  EXPECT_EQ(*fs.Contents("a"), data);  // the dirty victims were written back
  EXPECT_EQ(Read(c, "a", 0, data.size()).data, data);
  c.SetCapacity(0);  // holds nothing: reads go uncached, writes through
  EXPECT_EQ(Read(c, "a", 0, data.size()).data, data);
  EXPECT_EQ(c.stats().resident_bytes, 0u);
  ASSERT_EQ(Write(c, "a", 5, Pattern(3, 9)).err(), 0);
  EXPECT_EQ(fs.Contents("a")->at(5), Pattern(3, 9)[0]);
}

TEST(BufferCache, GetattrSeesExtendingWrite) {
  FakeFs fs;
  fs.Put("a", Pattern(100, 4));
  BufferCache c(Opts(1 << 20), &fs);
  FsReply before = Simple(c, FsOp::kGetattr, "a");
  ASSERT_EQ(before.err(), 0);
  EXPECT_EQ(before.f.attr.size, 100u);
  ASSERT_EQ(Write(c, "a", 50000, Pattern(10, 5)).err(), 0);
  FsReply after = Simple(c, FsOp::kGetattr, "a");
  ASSERT_EQ(after.err(), 0);
  EXPECT_EQ(after.f.attr.size, 50010u);
  EXPECT_GT(after.f.attr.mtime_ns, before.f.attr.mtime_ns);
  EXPECT_EQ(fs.Contents("a")->size(), 100u);  // not flushed yet
  ASSERT_TRUE(c.FlushAll().ok());
  EXPECT_EQ(Simple(c, FsOp::kGetattr, "a").f.attr.size, 50010u);
  EXPECT_EQ(fs.Contents("a")->size(), 50010u);
}

TEST(BufferCache, PartialWritesFetchExistingBlocksAndZeroFillHoles) {
  FakeFs fs;
  Bytes want = Pattern(20000, 6);
  fs.Put("a", want);
  BufferCache c(Opts(1 << 20), &fs);
  Bytes patch = Pattern(10, 7);
  ASSERT_EQ(Write(c, "a", 5000, patch).err(), 0);  // inside block 1, uncached: fetched first
  std::copy(patch.begin(), patch.end(), want.begin() + 5000);
  EXPECT_EQ(fs.calls(FsOp::kRead), 1u);
  EXPECT_EQ(Read(c, "a", 0, 30000).data, want);

  // A partial write past the size into a new block: zeros, no fetch.
  uint64_t reads = fs.calls(FsOp::kRead);
  Bytes tail = Pattern(3, 8);
  ASSERT_EQ(Write(c, "a", 30001, tail).err(), 0);
  want.resize(30001, 0);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(Read(c, "a", 0, 40000).data, want);
  EXPECT_GE(fs.calls(FsOp::kRead), reads);  // the hole blocks (20000..28671) come from downstream as zeros
  ASSERT_TRUE(c.FlushAll().ok());
  EXPECT_EQ(*fs.Contents("a"), want);
}

TEST(BufferCache, ReadsStopAtEndOfFile) {
  FakeFs fs;
  Bytes data = Pattern(5000, 9);
  fs.Put("a", data);
  BufferCache c(Opts(1 << 20), &fs);
  FsReply r = Read(c, "a", 4000, 4096);
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(r.data, Bytes(data.begin() + 4000, data.end()));
  EXPECT_TRUE(Read(c, "a", 5000, 10).data.empty());
  EXPECT_TRUE(Read(c, "a", 6000, 10).data.empty());
  EXPECT_EQ(Read(c, "missing", 0, 10).err(), ENOENT);
  // A directory is not cached: the request goes to downstream, which refuses it.
  fs.AddDir("d");
  EXPECT_EQ(Read(c, "d", 0, 10).err(), EISDIR);
  // Read-around: a second read of the same region is a hit.
  uint64_t reads = fs.calls(FsOp::kRead);
  EXPECT_EQ(Read(c, "a", 0, 100).data, Bytes(data.begin(), data.begin() + 100));
  EXPECT_EQ(fs.calls(FsOp::kRead), reads);
  EXPECT_GT(c.stats().hits, 0u);
}

TEST(BufferCache, TruncateDownThenExtendGivesZeros) {
  FakeFs fs;
  fs.Put("dirty", {});
  fs.Put("clean", Pattern(10000, 10));
  BufferCache c(Opts(1 << 20), &fs);
  Bytes data = Pattern(10000, 10);
  ASSERT_EQ(Write(c, "dirty", 0, data).err(), 0);
  ASSERT_EQ(Read(c, "clean", 0, 10000).data, data);  // cached clean
  for (const char* p : {"dirty", "clean"}) {
    SCOPED_TRACE(p);
    FsReply t = Truncate(c, p, 3000);
    ASSERT_EQ(t.err(), 0);
    EXPECT_EQ(t.f.attr.size, 3000u);
    ASSERT_EQ(Truncate(c, p, 9000).err(), 0);
    Bytes want(data.begin(), data.begin() + 3000);
    want.resize(9000, 0);
    EXPECT_EQ(Read(c, p, 0, 20000).data, want);
    EXPECT_EQ(Simple(c, FsOp::kGetattr, p).f.attr.size, 9000u);
    ASSERT_TRUE(c.FlushAll().ok());
    EXPECT_EQ(*fs.Contents(p), want);
  }
}

TEST(BufferCache, RenameFileWithDirtyData) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20), &fs);
  Bytes data = Pattern(9000, 11);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  ASSERT_EQ(Rename(c, "a", "b").err(), 0);
  EXPECT_EQ(*fs.Contents("b"), data);
  EXPECT_FALSE(fs.Contents("a"));
  EXPECT_EQ(Read(c, "a", 0, 10).err(), ENOENT);
  EXPECT_EQ(Read(c, "b", 0, 20000).data, data);
}

TEST(BufferCache, RenameDirectoryWithDirtyFiles) {
  FakeFs fs;
  BufferCache c(Opts(1 << 20), &fs);
  ASSERT_EQ(Simple(c, FsOp::kMkdir, "d").err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kMkdir, "d/sub").err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kCreate, "d/x").err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kCreate, "d/sub/y").err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kCreate, "dz").err(), 0);  // not under d/: keeps its cache
  Bytes x = Pattern(7000, 12), y = Pattern(100, 13), z = Pattern(50, 14);
  ASSERT_EQ(Write(c, "d/x", 0, x).err(), 0);
  ASSERT_EQ(Write(c, "d/sub/y", 0, y).err(), 0);
  ASSERT_EQ(Write(c, "dz", 0, z).err(), 0);
  ASSERT_EQ(Rename(c, "d", "e").err(), 0);
  EXPECT_EQ(*fs.Contents("e/x"), x);
  EXPECT_EQ(*fs.Contents("e/sub/y"), y);
  EXPECT_EQ(fs.Contents("dz")->size(), 0u);  // still dirty in the cache
  EXPECT_EQ(Read(c, "d/x", 0, 10).err(), ENOENT);
  EXPECT_EQ(Read(c, "d/sub/y", 0, 10).err(), ENOENT);
  EXPECT_EQ(Read(c, "e/x", 0, 10000).data, x);
  EXPECT_EQ(Read(c, "e/sub/y", 0, 10000).data, y);
  EXPECT_EQ(Read(c, "dz", 0, 10000).data, z);
}

TEST(BufferCache, UnlinkDiscardsDirtyData) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20), &fs);
  ASSERT_EQ(Write(c, "a", 0, Pattern(8192, 15)).err(), 0);
  ASSERT_EQ(Simple(c, FsOp::kUnlink, "a").err(), 0);
  EXPECT_EQ(c.stats().dirty_bytes, 0u);
  EXPECT_EQ(c.stats().resident_bytes, 0u);
  ASSERT_TRUE(c.FlushAll().ok());
  EXPECT_EQ(fs.calls(FsOp::kWrite), 0u);
  EXPECT_FALSE(fs.Contents("a"));
  ASSERT_EQ(Simple(c, FsOp::kCreate, "a").err(), 0);
  EXPECT_TRUE(Read(c, "a", 0, 100).data.empty());
  EXPECT_EQ(Simple(c, FsOp::kGetattr, "a").f.attr.size, 0u);
}

TEST(BufferCache, CapacityIsNeverExceededAndEvictedDataIsIntact) {
  FakeFs fs;
  constexpr uint64_t kCap = 16 * kCacheBlockSize;  // 64 KiB; 32 KiB may be dirty
  BufferCache c(Opts(kCap), &fs);
  std::map<std::string, Bytes> want;
  for (int i = 0; i < 4; ++i) {
    std::string p = "f" + std::to_string(i);
    fs.Put(p, {});
    want[p] = Pattern(40000, 20 + i);
    // In 8 KiB writes, so that each stays under the dirty limit and the cache must flush and evict.
    for (uint64_t off = 0; off < 40000; off += 8192) {
      Bytes part(want[p].begin() + off, want[p].begin() + std::min<uint64_t>(off + 8192, 40000));
      ASSERT_EQ(Write(c, p, off, part).err(), 0);
      ASSERT_LE(c.stats().resident_bytes, kCap);
      ASSERT_LE(c.stats().dirty_bytes, kCap / 2);
    }
  }
  BufferCacheStats s = c.stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_GT(s.flushes, 0u);  // dirty victims and the dirty limit flushed
  EXPECT_EQ(s.write_throughs, 0u);
  for (const auto& [p, d] : want) {
    EXPECT_EQ(Read(c, p, 0, 100000).data, d) << p;
    ASSERT_LE(c.stats().resident_bytes, kCap);
  }
  ASSERT_TRUE(c.FlushAll().ok());
  for (const auto& [p, d] : want) EXPECT_EQ(*fs.Contents(p), d) << p;

  // A write larger than the dirty limit goes straight through.
  Bytes big = Pattern(100000, 30);
  uint64_t writes = fs.calls(FsOp::kWrite);
  ASSERT_EQ(Write(c, "f0", 0, big).err(), 0);
  EXPECT_EQ(c.stats().write_throughs, 1u);
  EXPECT_EQ(fs.calls(FsOp::kWrite), writes + 1);
  EXPECT_EQ(*fs.Contents("f0"), big);
  EXPECT_EQ(Read(c, "f0", 0, 200000).data, big);
}

TEST(BufferCache, CapacityZeroPassesEverythingThrough) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(0), &fs);
  EXPECT_FALSE(c.enabled());
  c.Start();
  Bytes data = Pattern(5000, 31);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  EXPECT_EQ(fs.calls(FsOp::kWrite), 1u);
  EXPECT_EQ(*fs.Contents("a"), data);
  EXPECT_EQ(Read(c, "a", 0, 5000).data, data);
  EXPECT_EQ(Read(c, "a", 0, 5000).data, data);
  EXPECT_EQ(fs.calls(FsOp::kRead), 2u);
  EXPECT_EQ(fs.calls(FsOp::kGetattr), 0u);
  ASSERT_EQ(Truncate(c, "a", 10).err(), 0);
  EXPECT_EQ(fs.Contents("a")->size(), 10u);
  EXPECT_EQ(c.stats().resident_bytes, 0u);
  c.Stop();
}

TEST(BufferCache, FlushErrorKeepsDataDirtyUntilDownstreamRecovers) {
  FakeFs fs;
  fs.Put("a", {});
  BufferCache c(Opts(1 << 20), &fs);
  Bytes data = Pattern(6000, 32);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  fs.set_fail_writes(true);
  EXPECT_EQ(Simple(c, FsOp::kFsync, "a").err(), EIO);
  EXPECT_EQ(fs.calls(FsOp::kFsync), 0u);  // not forwarded: the data is not durable
  EXPECT_EQ(c.FlushAll().code(), StatusCode::kIoError);
  BufferCacheStats s = c.stats();
  EXPECT_GE(s.flush_errors, 2u);
  EXPECT_EQ(s.dirty_bytes, 2 * kCacheBlockSize);
  EXPECT_EQ(Read(c, "a", 0, 10000).data, data);
  EXPECT_EQ(Simple(c, FsOp::kGetattr, "a").f.attr.size, 6000u);
  fs.set_fail_writes(false);
  EXPECT_EQ(Simple(c, FsOp::kFsync, "a").err(), 0);
  EXPECT_EQ(*fs.Contents("a"), data);
  EXPECT_EQ(c.stats().dirty_bytes, 0u);
}

TEST(BufferCache, WriteFailsWhenDirtyLimitCannotBeFlushed) {
  FakeFs fs;
  fs.Put("a", {});
  fs.Put("b", {});
  BufferCache c(Opts(16 * kCacheBlockSize), &fs);  // 8 blocks may be dirty
  Bytes data = Pattern(8 * kCacheBlockSize, 33);
  ASSERT_EQ(Write(c, "a", 0, data).err(), 0);
  fs.set_fail_writes(true);
  EXPECT_EQ(Write(c, "b", 0, Pattern(100, 34)).err(), EIO);
  EXPECT_EQ(Read(c, "a", 0, data.size()).data, data);
  EXPECT_TRUE(Read(c, "b", 0, 100).data.empty());  // nothing of the failed write was applied
  fs.set_fail_writes(false);
  ASSERT_EQ(Write(c, "b", 0, Pattern(100, 34)).err(), 0);
  EXPECT_EQ(*fs.Contents("a"), data);  // flushed to make room under the limit
  EXPECT_EQ(Read(c, "b", 0, 100).data, Pattern(100, 34));
}

// Thousands of random operations through a 64 KiB cache and straight to a reference file system: every
// reply must match, and so must the final contents.
void RunModel(uint64_t seed) {
  FakeFs cached_fs, ref;
  constexpr uint64_t kCap = 64 * 1024;
  BufferCache c(Opts(kCap), &cached_fs);
  const std::vector<std::string> names = {"f0", "f1", "f2", "d/g0", "d/g1", "e/g0"};
  for (auto* fs : {&cached_fs, &ref}) {
    fs->AddDir("d");
    fs->AddDir("e");
    for (const auto& n : names) fs->Put(n, {});
  }
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto size = [&] { return pick(4) == 0 ? 1 + pick(200 * 1024) : 1 + pick(12 * 1024); };
  auto offset = [&] { return pick(4) == 0 ? pick(300 * 1024) : pick(40 * 1024); };
  for (int op = 0; op < 4000; ++op) {
    SCOPED_TRACE("op " + std::to_string(op));
    const std::string& p = names[pick(names.size())];
    FsReply a, b;
    switch (pick(20)) {
      case 0:
      case 1:
      case 2:
      case 3:
      case 4:
      case 5: {
        uint64_t off = offset();
        Bytes data = Pattern(size(), op);
        a = Write(c, p, off, data);
        b = Write(ref, p, off, data);
        ASSERT_EQ(a.f.value, b.f.value);
        if (a.err() == 0) {
          ASSERT_EQ(a.f.attr.size, b.f.attr.size);
        }
        break;
      }
      case 6:
      case 7:
      case 8:
      case 9:
      case 10:
      case 11: {
        uint64_t off = offset(), len = size();
        a = Read(c, p, off, len);
        b = Read(ref, p, off, len);
        ASSERT_EQ(a.data, b.data);
        break;
      }
      case 12:
      case 13: {
        uint64_t n = pick(4) == 0 ? pick(300 * 1024) : pick(40 * 1024);
        a = Truncate(c, p, n);
        b = Truncate(ref, p, n);
        break;
      }
      case 14:
        a = Simple(c, FsOp::kFsync, p);
        b = Simple(ref, FsOp::kFsync, p);
        break;
      case 15: {
        const std::string& to = names[pick(names.size())];
        a = Rename(c, p, to);
        b = Rename(ref, p, to);
        break;
      }
      case 16:
        if (pick(4) == 0) {
          a = Simple(c, FsOp::kUnlink, p);
          b = Simple(ref, FsOp::kUnlink, p);
        } else {
          a = Simple(c, FsOp::kCreate, p);
          b = Simple(ref, FsOp::kCreate, p);
        }
        break;
      case 17: {
        // Directory renames: d <-> e (fails with ENOTEMPTY unless the target is empty).
        const char* from = pick(2) ? "d" : "e";
        const char* to = from[0] == 'd' ? "e" : "d";
        a = Rename(c, from, to);
        b = Rename(ref, from, to);
        if (a.err() == ENOENT) {  // keep both directories around
          Simple(c, FsOp::kMkdir, from);
          Simple(ref, FsOp::kMkdir, from);
        }
        if (a.err() == 0) {
          Simple(c, FsOp::kMkdir, from);
          Simple(ref, FsOp::kMkdir, from);
        }
        break;
      }
      case 18:
        a = Simple(c, FsOp::kGetattr, p);
        b = Simple(ref, FsOp::kGetattr, p);
        if (a.err() == 0) {
          ASSERT_EQ(a.f.attr.size, b.f.attr.size);
        }
        break;
      default:
        ASSERT_TRUE(c.FlushAll().ok());
        a = b = FsReply{};
        break;
    }
    ASSERT_EQ(a.err(), b.err());
    ASSERT_LE(c.stats().resident_bytes, kCap);
  }
  ASSERT_TRUE(c.FlushAll().ok());
  EXPECT_EQ(cached_fs.AllFiles(), ref.AllFiles());
  EXPECT_EQ(cached_fs.AllDirs(), ref.AllDirs());
  BufferCacheStats s = c.stats();
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_GT(s.write_throughs, 0u);
}

TEST(BufferCache, RandomizedAgainstReferenceModel) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RunModel(seed);
    if (HasFatalFailure()) return;
  }
}

TEST(BufferCache, ConcurrentWritersAndReadersOnDifferentFiles) {
  FakeFs fs;
  constexpr uint64_t kCap = 128 * 1024;
  BufferCache c(Opts(kCap, std::chrono::milliseconds(2)), &fs);
  c.Start();
  constexpr int kThreads = 4;
  std::vector<Bytes> models(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) fs.Put("t" + std::to_string(t), {});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      const std::string p = "t" + std::to_string(t);
      Bytes& model = models[t];
      for (int i = 0; i < 800; ++i) {
        uint64_t off = rng() % (96 * 1024), len = 1 + rng() % (rng() % 8 == 0 ? 40000 : 6000);
        if (rng() % 2) {
          Bytes data = Pattern(len, t * 100000 + i);
          if (Write(c, p, off, data).err() != 0) failures++;
          if (model.size() < off + len) model.resize(off + len, 0);
          std::copy(data.begin(), data.end(), model.begin() + off);
        } else {
          FsReply r = Read(c, p, off, len);
          Bytes want;
          if (off < model.size())
            want.assign(model.begin() + off, model.begin() + std::min(model.size(), off + len));
          if (r.err() != 0 || r.data != want) failures++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(c.stats().resident_bytes, kCap);
  c.Stop();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(*fs.Contents("t" + std::to_string(t)), models[t]) << t;
}

}  // namespace
}  // namespace lego::mmon

namespace lego::mmon {
namespace {

TEST(BufferCache, TryServeReadAnswersOnlyFullHitsAndNeverWaits) {
  FakeFs fs;
  fs.Put("a", Pattern(20000, 9));
  BufferCache c(Opts(1 << 20), &fs);
  FsRequest r = Req(FsOp::kRead, "a");
  r.f.offset = 4196;
  r.f.length = 5000;
  FsReply out;
  EXPECT_FALSE(c.TryServeRead(r, &out));  // the file is not cached yet
  // A random (not sequential) READ caches just blocks 1 and 2.
  ASSERT_EQ(Read(c, "a", 4096, 8192).data.size(), 8192u);
  ASSERT_TRUE(c.TryServeRead(r, &out));
  const Bytes a = *fs.Contents("a");
  EXPECT_EQ(out.data, Bytes(a.begin() + 4196, a.begin() + 9196));
  r.f.offset = 100;  // block 0 is not cached
  EXPECT_FALSE(c.TryServeRead(r, &out));
  Bytes patch = Pattern(10, 3);
  ASSERT_EQ(Write(c, "a", 5000, patch).err(), 0);  // dirty data is served too
  r.f.offset = 5000;
  r.f.length = 10;
  ASSERT_TRUE(c.TryServeRead(r, &out));
  EXPECT_EQ(out.data, patch);
  r.f.offset = 30000;  // past the end: empty, like a READ
  ASSERT_TRUE(c.TryServeRead(r, &out));
  EXPECT_TRUE(out.data.empty());
  EXPECT_FALSE(c.TryServeRead(Req(FsOp::kGetattr, "a"), &out));
}

// The downstream of two vNodes (1 and 2, each a FakeFs); requests of vNode 1 can be held at a gate, as if
// its smon were stopped.
class TwoVnodes : public proto::FsService {
 public:
  FsReply Execute(const FsRequest& req) override {
    if (req.f.vnode == 1) {
      std::unique_lock l(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait(l, [&] { return open_; });
      --waiting_;
    }
    return (req.f.vnode == 1 ? one : two).Execute(req);
  }
  void Close() {
    std::lock_guard l(mu_);
    open_ = false;
  }
  void Open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool WaitForHeld() {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(5), [&] { return waiting_ > 0; });
  }
  FakeFs one, two;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
};

FsRequest VReq(uint32_t vnode, FsOp op, const std::string& path, uint64_t off = 0, uint64_t len = 0) {
  FsRequest r = Req(op, path);
  r.f.vnode = vnode;
  r.f.offset = off;
  r.f.length = len;
  return r;
}

// One vNode's requests stuck downstream (its smon stopped) do not hold up another vNode's: each vNode has a
// cache, and lock, of its own. With one cache for both, the second thread below waited for the first.
TEST(BufferCacheSet, AStuckVnodeDoesNotHoldUpAnother) {
  TwoVnodes down;
  down.one.Put("x", Pattern(20000, 1));
  down.two.Put("y", Pattern(20000, 2));
  BufferCacheSet set(Opts(64 * kCacheBlockSize), &down);
  down.Close();
  FsReply stuck;
  std::thread t([&] { stuck = set.Execute(VReq(1, FsOp::kRead, "x", 0, 20000)); });
  if (!down.WaitForHeld()) {
    down.Open();
    t.join();
    FAIL() << "vNode 1's request never reached downstream";
  }
  Bytes data = Pattern(5000, 3);
  auto other = std::async(std::launch::async, [&] {
    FsRequest w = VReq(2, FsOp::kWrite, "y", 100);
    w.data = data;
    EXPECT_EQ(set.Execute(w).err(), 0);
    return set.Execute(VReq(2, FsOp::kRead, "y", 0, 20000));
  });
  // vNode 2 is served while vNode 1's request is still held (one shared cache would wait for the gate).
  EXPECT_EQ(other.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  down.Open();
  FsReply r = other.get();
  t.join();
  Bytes want = Pattern(20000, 2);
  std::copy(data.begin(), data.end(), want.begin() + 100);
  EXPECT_EQ(r.data, want);
  EXPECT_EQ(stuck.data, Pattern(20000, 1));
  ASSERT_TRUE(set.FlushAll().ok());
  EXPECT_EQ(*down.two.Contents("y"), want);
}

// The budget is split among the active vNodes: a second vNode's first request halves the first one's
// share, which its cache shrinks to by its next request; together they never keep more than the budget
// once each has had a request since. Nothing is lost by the shrinking.
TEST(BufferCacheSet, ActiveVnodesShareTheBudget) {
  TwoVnodes down;
  constexpr uint64_t kCap = 64 * kCacheBlockSize;
  down.one.Put("x", {});
  down.two.Put("y", {});
  BufferCacheSet set(Opts(kCap), &down);
  EXPECT_EQ(set.share_bytes(), 0u);
  const Bytes one = Pattern(60 * kCacheBlockSize, 4), two = Pattern(30 * kCacheBlockSize, 5);
  for (uint64_t off = 0; off < one.size(); off += 8 * kCacheBlockSize) {
    FsRequest w = VReq(1, FsOp::kWrite, "x", off);
    w.data = std::span(one).subspan(off, std::min<uint64_t>(8 * kCacheBlockSize, one.size() - off));
    ASSERT_EQ(set.Execute(w).err(), 0);
  }
  EXPECT_EQ(set.share_bytes(), kCap);
  EXPECT_EQ(set.stats().resident_bytes, one.size());  // all of it cached (part flushed: the dirty limit)
  FsRequest w = VReq(2, FsOp::kWrite, "y", 0);
  w.data = two;  // 30 blocks: more than half of the new 32-block share, so it goes straight through
  ASSERT_EQ(set.Execute(w).err(), 0);
  EXPECT_EQ(set.share_bytes(), kCap / 2);
  EXPECT_EQ(set.Execute(VReq(1, FsOp::kRead, "x", 0, 4096)).err(), 0);  // vNode 1 applies its new share
  EXPECT_LE(set.stats().resident_bytes, kCap / 2);
  EXPECT_EQ(set.Execute(VReq(1, FsOp::kRead, "x", 0, one.size())).data, one);
  EXPECT_EQ(set.Execute(VReq(2, FsOp::kRead, "y", 0, two.size())).data, two);
  EXPECT_LE(set.stats().resident_bytes, kCap);
  ASSERT_TRUE(set.FlushAll().ok());
  EXPECT_EQ(*down.one.Contents("x"), one);
  EXPECT_EQ(*down.two.Contents("y"), two);
}

// An idle vNode's cache, once shrunk to nothing (its dirty blocks flushed first), is retired with its flusher
// thread at a later rebalance; its counters stay in the totals, and the vNode's files are intact when it
// comes back to a new cache.
TEST(BufferCacheSet, IdleVnodesCachesAreRetired) {
  TwoVnodes down;
  down.one.Put("x", {});
  down.two.Put("y", Pattern(8 * kCacheBlockSize, 7));
  BufferCacheSet set(Opts(64 * kCacheBlockSize), &down, std::chrono::milliseconds(200));
  set.Start();
  const Bytes x = Pattern(10 * kCacheBlockSize, 8);
  FsRequest w = VReq(1, FsOp::kWrite, "x", 0);
  w.data = x;
  ASSERT_EQ(set.Execute(w).err(), 0);
  EXPECT_EQ(set.cache_count(), 1u);
  EXPECT_GT(set.stats().dirty_bytes, 0u);  // in vNode 1's cache only
  const uint64_t written = set.stats().write_blocks;
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // vNode 1 goes idle
  // vNode 2's requests: its first makes vNode 1's cache shrink to nothing; a rebalance (at most one a second)
  // after that retires it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    ASSERT_EQ(set.Execute(VReq(2, FsOp::kRead, "y", 0, 4096)).err(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (set.cache_count() > 1 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(set.cache_count(), 1u);
  EXPECT_EQ(*down.one.Contents("x"), x);         // flushed before it was dropped
  EXPECT_GE(set.stats().write_blocks, written);  // its counters are kept
  EXPECT_EQ(set.stats().dirty_bytes, 0u);
  // vNode 1 comes back: a new cache, the same file.
  EXPECT_EQ(set.Execute(VReq(1, FsOp::kRead, "x", 0, x.size())).data, x);
  EXPECT_EQ(set.cache_count(), 2u);
  set.Stop();
}

// Off (capacity 0): every request passes straight through, whatever its vNode.
TEST(BufferCacheSet, OffPassesThrough) {
  TwoVnodes down;
  down.two.Put("y", Pattern(100, 6));
  BufferCacheSet set(Opts(0), &down);
  EXPECT_FALSE(set.enabled());
  EXPECT_EQ(set.Execute(VReq(2, FsOp::kRead, "y", 0, 100)).data, Pattern(100, 6));
  FsReply out;
  EXPECT_FALSE(set.TryServeRead(VReq(2, FsOp::kRead, "y", 0, 100), &out));
  EXPECT_EQ(set.stats().resident_bytes, 0u);
}

}  // namespace
}  // namespace lego::mmon
