#include "mmon/buffer_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/log.h"

namespace lego::mmon {
namespace {

using proto::Bytes;
using proto::FsOp;
using proto::FsReply;
using proto::FsRequest;

constexpr uint64_t kBs = kCacheBlockSize;
constexpr uint64_t kMaxRunBlocks = proto::kFsMaxIo / kBs;                // blocks in one flush WRITE
constexpr uint64_t kMaxFetchBlocks = BufferCache::kMaxReadAround / kBs;  // blocks in one READ miss fetch
constexpr size_t kMaxIdleFiles = 4096;  // blockless file states kept before a sweep
constexpr uint64_t kMaxFileSize = uint64_t{1} << 62;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

FsRequest MakeReq(FsOp op, uint32_t vnode, const std::string& path) {
  FsRequest r;
  r.op = op;
  r.f.vnode = vnode;
  r.path = path;
  return r;
}

bool UnderPath(const std::string& p, const std::string& dir_prefix) {
  return p.size() >= dir_prefix.size() && p.compare(0, dir_prefix.size(), dir_prefix) == 0;
}

}  // namespace

BufferCache::BufferCache(const BufferCacheOptions& opts, proto::FsService* downstream)
    : downstream_(downstream),
      enabled_(opts.capacity_bytes / kBs > 0),
      max_dirty_(opts.max_dirty),
      flush_interval_(opts.flush_interval),
      target_blocks_(opts.capacity_bytes / kBs),
      applied_blocks_(opts.capacity_bytes / kBs) {
  MutexLock l(mu_);
  ApplyCapacity();
}

void BufferCache::SetCapacity(uint64_t bytes) {
  if (!enabled_) return;
  if (target_blocks_.exchange(bytes / kBs, std::memory_order_relaxed) == bytes / kBs) return;  // no change
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    resized_ = true;
  }
  thread_cv_.notify_all();
}

void BufferCache::ApplyCapacity() {
  const uint64_t blocks = target_blocks_.load(std::memory_order_relaxed);
  if (blocks == max_blocks_ && resident_.load(std::memory_order_relaxed) <= blocks) return;
  // Still over after a shrink whose dirty victims could not be flushed: try again at most once a second,
  // not before every request.
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  if (blocks == max_blocks_ && now < shrink_retry_ns_) return;
  max_blocks_ = blocks;
  max_dirty_blocks_ =
      blocks == 0 ? 0 : std::clamp<uint64_t>(static_cast<uint64_t>(max_dirty_ * double(blocks)), 1, blocks);
  readaround_blocks_ = std::clamp<uint64_t>(blocks / 2, 1, kMaxReadAround / kBs);
  applied_blocks_.store(blocks, std::memory_order_relaxed);
  // Down to the new size: least recently used first, clean before dirty (a dirty victim's file is flushed
  // first; if that fails the blocks stay, over the size, until a later try).
  if (MakeRoom(0, nullptr, 1, 0) != 0) shrink_retry_ns_ = now + 1'000'000'000;
}

BufferCache::~BufferCache() { Stop(); }

void BufferCache::Start() {
  std::lock_guard<std::mutex> l(thread_mu_);
  if (started_ || !enabled()) return;
  stop_ = false;
  started_ = true;
  flusher_ = std::thread([this] { FlusherLoop(); });
}

void BufferCache::Stop() {
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    stop_ = true;
  }
  thread_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    started_ = false;
  }
  if (!enabled()) return;
  Status st = FlushAll();
  if (!st.ok()) LEGO_LOG_WARN("buffer_cache_stop_flush_failed status=\"{}\"", st.ToString());
}

void BufferCache::FlusherLoop() {
  std::unique_lock<std::mutex> lk(thread_mu_);
  // Flushes every flush_interval_ on a fixed schedule; a resize (SetCapacity) is applied at once in between
  // without moving the schedule.
  auto next_flush = std::chrono::steady_clock::now() + flush_interval_;
  while (!stop_) {
    thread_cv_.wait_until(lk, next_flush, [this] { return stop_ || resized_; });
    if (stop_) break;
    resized_ = false;
    const bool flush_due = std::chrono::steady_clock::now() >= next_flush;
    lk.unlock();
    {
      MutexLock l(mu_);
      ApplyCapacity();
      if (flush_due) {
        (void)FlushAllLocked();  // errors are logged and counted by FlushFile; the blocks stay dirty
        SweepIdleFiles();
      }
    }
    if (flush_due) next_flush = std::chrono::steady_clock::now() + flush_interval_;
    lk.lock();
  }
}

Status BufferCache::FlushAll() {
  if (!enabled()) return Status::Ok();
  MutexLock l(mu_);
  int err = FlushAllLocked();
  if (err != 0)
    return IoError("buffer cache flush failed: errno " + std::to_string(err) + " " + std::strerror(err));
  return Status::Ok();
}

BufferCacheStats BufferCache::stats() const {
  BufferCacheStats s;
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.hits = get(hits_);
  s.misses = get(misses_);
  s.readaround_blocks = get(readaround_);
  s.write_blocks = get(write_blocks_);
  s.dirty_bytes = get(dirty_) * kBs;
  s.resident_bytes = get(resident_) * kBs;
  s.flushes = get(flushes_);
  s.flushed_bytes = get(flushed_bytes_);
  s.evictions = get(evictions_);
  s.write_throughs = get(write_throughs_);
  s.flush_errors = get(flush_errors_);
  return s;
}

FsReply BufferCache::Execute(const FsRequest& req) {
  if (!enabled()) return downstream_->Execute(req);
  last_used_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  MutexLock l(mu_);
  ApplyCapacity();
  if (files_.size() > kMaxIdleFiles) SweepIdleFiles();
  return ExecuteLocked(req);
}

bool BufferCache::TryServeRead(const FsRequest& req, FsReply* out) {
  if (!enabled() || req.op != FsOp::kRead || req.f.length > proto::kFsMaxIo) return false;
  last_used_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  if (!mu_.try_lock()) return false;
  MutexLock l(mu_, std::adopt_lock);
  FileState* f = Find(req.f.vnode, req.path);
  if (f == nullptr) return false;
  const uint64_t off = req.f.offset;
  FsReply r;
  if (req.f.length == 0 || off >= f->size) {
    f->read_end = off;
    *out = std::move(r);
    return true;
  }
  const uint64_t end = std::min(off + req.f.length, f->size);
  const uint64_t first = off / kBs, last = (end - 1) / kBs;
  for (uint64_t idx = first; idx <= last; ++idx)
    if (Lookup(f, idx) == nullptr) return false;
  r.data.resize(end - off);
  for (uint64_t idx = first; idx <= last; ++idx) {
    Block* b = Lookup(f, idx);
    uint64_t b0 = std::max(idx * kBs, off), b1 = std::min(idx * kBs + kBs, end);
    std::memcpy(r.data.data() + (b0 - off), b->data + (b0 - idx * kBs), b1 - b0);
    Touch(b);
  }
  hits_.fetch_add(last - first + 1, std::memory_order_relaxed);
  f->read_end = end;
  *out = std::move(r);
  return true;
}

FsReply BufferCache::ExecuteLocked(const FsRequest& req) {
  const uint32_t vnode = req.f.vnode;
  switch (req.op) {
    case FsOp::kRead:
      return Read(req);
    case FsOp::kWrite:
      return Write(req);
    case FsOp::kSetattr:
      return Setattr(req);
    case FsOp::kRename:
      return Rename(req);
    case FsOp::kGetattr: {
      FsReply rep = downstream_->Execute(req);
      FileState* f = Find(vnode, req.path);
      if (f == nullptr) return rep;
      if (rep.err() == ENOENT || (rep.err() == 0 && !S_ISREG(rep.f.attr.mode))) {
        DropFile(f->key);
      } else if (rep.err() == 0 && (rep.f.flags & proto::kFsReplyAttr)) {
        f->attr = rep.f.attr;
        if (f->dirty_blocks.empty() && rep.f.attr.size != f->size) {
          // Downstream changed behind our back: its size wins and the clean blocks are suspect.
          while (!f->blocks.empty()) DropBlock(f->blocks.begin()->second.get());
          f->size = rep.f.attr.size;
        }
        PatchAttr(*f, &rep.f.attr);
      }
      return rep;
    }
    case FsOp::kCreate: {
      FsReply rep = downstream_->Execute(req);
      FileState* f = Find(vnode, req.path);
      // A replayed answer (the create ran before, through another mmon) says nothing about what is cached
      // now: data written since must stay.
      if (f != nullptr && rep.err() == 0 && !(rep.f.flags & proto::kFsReplyReplayed)) {
        if (req.f.flags & proto::kFsExclusive) {
          DropFile(f->key);  // a new file: whatever we held for the path is stale
        } else if (rep.f.flags & proto::kFsReplyAttr) {
          PatchAttr(*f, &rep.f.attr);
        }
      }
      return rep;
    }
    case FsOp::kFsync: {
      if (FileState* f = Find(vnode, req.path)) {
        // Dirty data goes down with the sync in its last WRITE: one downstream round trip, not two.
        bool synced = false;
        const uint32_t sync = proto::kFsWriteSync | (req.f.flags & proto::kFsDataSync);
        if (int err = FlushFile(f, sync, &synced); err != 0) return FsReply::Errno(err);
        if (synced) return FsReply{};
      }
      return downstream_->Execute(req);
    }
    case FsOp::kUnlink: {
      FsReply rep = downstream_->Execute(req);
      if ((rep.err() == 0 || rep.err() == ENOENT) && !(rep.f.flags & proto::kFsReplyReplayed)) {
        if (FileState* f = Find(vnode, req.path)) DropFile(f->key);  // the file is gone: so is its dirty data
      }
      return rep;
    }
    case FsOp::kRmdir: {
      FsReply rep = downstream_->Execute(req);
      if (rep.err() == 0 && !(rep.f.flags & proto::kFsReplyReplayed)) DropTree(vnode, req.path);
      return rep;
    }
    default:  // kReaddir, kMkdir, kStatfs
      return downstream_->Execute(req);
  }
}

FsReply BufferCache::Read(const FsRequest& req) {
  if (req.f.length > proto::kFsMaxIo) return FsReply::Errno(EINVAL);
  int err = 0;
  FileState* f = EnsureFile(req.f.vnode, req.path, &err);
  if (f == nullptr) return err != 0 ? FsReply::Errno(err) : downstream_->Execute(req);
  FsReply r;
  const uint64_t off = req.f.offset;
  if (req.f.length == 0 || off >= f->size) return r;
  const uint64_t end = std::min(off + req.f.length, f->size);
  const uint64_t first = off / kBs, last = (end - 1) / kBs;
  const uint64_t file_last = (f->size - 1) / kBs;
  const bool sequential = off == 0 || off == f->read_end;
  const uint64_t around = sequential ? readaround_blocks_ : 1;
  f->read_end = end;
  r.data.resize(end - off);
  // Copies the part of block `idx` (whose bytes are `src`) that the request covers.
  auto copy_out = [&](uint64_t idx, const uint8_t* src) {
    uint64_t b0 = std::max(idx * kBs, off), b1 = std::min(idx * kBs + kBs, end);
    std::memcpy(r.data.data() + (b0 - off), src + (b0 - idx * kBs), b1 - b0);
  };

  uint64_t idx = first;
  while (idx <= last) {
    if (Block* b = Lookup(f, idx)) {
      copy_out(idx, b->data);
      Touch(b);
      hits_.fetch_add(1, std::memory_order_relaxed);
      ++idx;
      continue;
    }
    // The run of missing blocks the request needs, then read-around past it up to the window.
    uint64_t j = idx;
    while (j < last && j + 1 - idx < kMaxFetchBlocks && Lookup(f, j + 1) == nullptr) ++j;
    uint64_t win_end = j;
    uint64_t want = std::min(std::max(idx + around - 1, j), idx + kMaxFetchBlocks - 1);
    want = std::min(want, file_last);
    while (win_end < want && Lookup(f, win_end + 1) == nullptr) ++win_end;
    const uint64_t n = win_end - idx + 1;

    FsRequest rr = MakeReq(FsOp::kRead, req.f.vnode, req.path);
    rr.f.offset = idx * kBs;
    rr.f.length = n * kBs;
    FsReply fetched = downstream_->Execute(rr);
    if (fetched.err() != 0) return FsReply::Errno(fetched.err());
    // The window's bytes, in place in the reply: zeros past what downstream returned (a short read at its
    // end of file) and past the size we know, whatever downstream holds there.
    Bytes& buf = fetched.data;
    buf.resize(n * kBs);
    if (idx * kBs + buf.size() > f->size) std::fill(buf.begin() + (f->size - idx * kBs), buf.end(), 0);
    for (uint64_t k = idx; k <= j; ++k) copy_out(k, buf.data() + (k - idx) * kBs);
    misses_.fetch_add(j - idx + 1, std::memory_order_relaxed);
    readaround_.fetch_add(win_end - j, std::memory_order_relaxed);
    // Cache the window if room can be made without touching what this request still needs.
    if (MakeRoom(n, f, first, last) == 0) {
      for (uint64_t k = idx; k <= win_end; ++k) Insert(f, k, buf.data() + (k - idx) * kBs);
    }
    idx = j + 1;
  }
  return r;
}

FsReply BufferCache::Write(const FsRequest& req) {
  const uint64_t len = req.data.size();
  if (len > proto::kFsMaxIo) return FsReply::Errno(EINVAL);
  const uint64_t off = req.f.offset;
  if (off > kMaxFileSize || off + len > kMaxFileSize) return FsReply::Errno(EFBIG);
  int err = 0;
  FileState* f = EnsureFile(req.f.vnode, req.path, &err);
  if (f == nullptr) return err != 0 ? FsReply::Errno(err) : downstream_->Execute(req);
  FsReply r;
  if (len == 0) {
    r.f.flags = proto::kFsReplyAttr;
    r.f.attr = f->attr;
    PatchAttr(*f, &r.f.attr);
    return r;
  }
  const uint64_t end = off + len;
  const uint64_t first = off / kBs, last = (end - 1) / kBs;
  const uint64_t n = last - first + 1;
  if (n > max_dirty_blocks_) return WriteThrough(f, req);

  if ((err = ThrottleDirty(n)) != 0) return FsReply::Errno(err);
  uint64_t uncached = 0;
  for (uint64_t k = first; k <= last; ++k) uncached += Lookup(f, k) == nullptr;
  if ((err = MakeRoom(uncached, f, first, last)) != 0) return FsReply::Errno(err);

  // A partial write into an uncached block that holds file data first fetches it; past the size it is zeros.
  for (uint64_t k : {first, last}) {
    bool partial = (k == first && off % kBs != 0) || (k == last && end % kBs != 0);
    if (!partial || k * kBs >= f->size || Lookup(f, k) != nullptr) continue;
    FsRequest rr = MakeReq(FsOp::kRead, req.f.vnode, req.path);
    rr.f.offset = k * kBs;
    rr.f.length = kBs;
    FsReply fetched = downstream_->Execute(rr);
    if (fetched.err() != 0) return FsReply::Errno(fetched.err());
    Block* b = Insert(f, k);
    if (!fetched.data.empty())
      std::memcpy(b->data, fetched.data.data(), std::min<size_t>(fetched.data.size(), kBs));
    if (k * kBs + kBs > f->size) std::memset(b->data + (f->size - k * kBs), 0, k * kBs + kBs - f->size);
  }
  for (uint64_t k = first; k <= last; ++k) {
    Block* b = Lookup(f, k);
    if (b == nullptr) b = Insert(f, k);
    uint64_t b0 = std::max(k * kBs, off), b1 = std::min(k * kBs + kBs, end);
    std::memcpy(b->data + (b0 - k * kBs), req.data.data() + (b0 - off), b1 - b0);
    MarkDirty(b);
    Touch(b);
  }
  write_blocks_.fetch_add(n, std::memory_order_relaxed);
  f->size = std::max(f->size, end);
  f->last_write_ns = NowNs();
  r.f.value = len;
  r.f.flags = proto::kFsReplyAttr;
  r.f.attr = f->attr;
  PatchAttr(*f, &r.f.attr);
  return r;
}

FsReply BufferCache::WriteThrough(FileState* f, const FsRequest& req) {
  if (int err = FlushFile(f); err != 0) return FsReply::Errno(err);
  const uint64_t first = req.f.offset / kBs, last = (req.f.offset + req.data.size() - 1) / kBs;
  for (auto it = f->blocks.lower_bound(first); it != f->blocks.end() && it->first <= last;) {
    Block* b = (it++)->second.get();
    DropBlock(b);
  }
  write_throughs_.fetch_add(1, std::memory_order_relaxed);
  FsReply rep = downstream_->Execute(req);
  if (rep.err() != 0) {
    DropFile(f->key);  // nothing dirty (just flushed); the size downstream is now uncertain
    return rep;
  }
  if (rep.f.flags & proto::kFsReplyAttr) {
    f->attr = rep.f.attr;
    f->size = rep.f.attr.size;
  } else {
    f->size = std::max(f->size, req.f.offset + rep.f.value);
  }
  return rep;
}

FsReply BufferCache::Setattr(const FsRequest& req) {
  FileState* f = Find(req.f.vnode, req.path);
  if (f == nullptr) return downstream_->Execute(req);
  constexpr uint32_t kTimes =
      proto::kFsSetAtime | proto::kFsSetMtime | proto::kFsSetAtimeNow | proto::kFsSetMtimeNow;
  if (req.f.valid & kTimes) {
    // Flush first, so that a later flush cannot overwrite the times set here.
    if (int err = FlushFile(f); err != 0) return FsReply::Errno(err);
  }
  FsReply rep = downstream_->Execute(req);
  if (rep.err() != 0) {
    if (rep.err() == ENOENT || (rep.err() == EIO && f->dirty_blocks.empty())) DropFile(f->key);
    return rep;
  }
  if (req.f.valid & proto::kFsSetSize) {
    const uint64_t size = req.f.length;
    const uint64_t keep = (size + kBs - 1) / kBs;  // blocks [0, keep) hold data
    for (auto it = f->blocks.lower_bound(keep); it != f->blocks.end();) {
      Block* b = (it++)->second.get();
      DropBlock(b);
    }
    if (size % kBs != 0) {
      if (Block* b = Lookup(f, size / kBs)) std::memset(b->data + size % kBs, 0, kBs - size % kBs);
    }
    f->size = size;
  }
  if (rep.f.flags & proto::kFsReplyAttr) {
    f->attr = rep.f.attr;
    PatchAttr(*f, &rep.f.attr);
  }
  return rep;
}

FsReply BufferCache::Rename(const FsRequest& req) {
  if (int err = FlushTree(req.f.vnode, req.path); err != 0) return FsReply::Errno(err);
  if (int err = FlushTree(req.f.vnode, req.path2); err != 0) return FsReply::Errno(err);
  FsReply rep = downstream_->Execute(req);
  // Clean now; dropped whatever the outcome (an exchange or a replaced target changes what both names hold).
  DropTree(req.f.vnode, req.path);
  DropTree(req.f.vnode, req.path2);
  return rep;
}

BufferCache::FileState* BufferCache::Find(uint32_t vnode, const std::string& path) {
  auto it = files_.find(FileKey(vnode, path));
  return it == files_.end() ? nullptr : it->second.get();
}

BufferCache::FileState* BufferCache::EnsureFile(uint32_t vnode, const std::string& path, int* err) {
  *err = 0;
  if (FileState* f = Find(vnode, path)) return f;
  FsReply rep = downstream_->Execute(MakeReq(FsOp::kGetattr, vnode, path));
  if (rep.err() != 0) {
    *err = rep.err();
    return nullptr;
  }
  if (!(rep.f.flags & proto::kFsReplyAttr) || !S_ISREG(rep.f.attr.mode)) return nullptr;
  auto f = std::make_unique<FileState>();
  f->key = FileKey(vnode, path);
  f->attr = rep.f.attr;
  f->size = rep.f.attr.size;
  FileState* p = f.get();
  files_.emplace(p->key, std::move(f));
  return p;
}

void BufferCache::PatchAttr(const FileState& f, proto::FsAttr* attr) {
  if (f.dirty_blocks.empty()) return;
  attr->size = f.size;
  attr->mtime_ns = std::max(attr->mtime_ns, f.last_write_ns);
  attr->ctime_ns = std::max(attr->ctime_ns, f.last_write_ns);
}

void BufferCache::DropFile(const FileKey& key) {
  auto it = files_.find(key);
  if (it == files_.end()) return;
  FileState* f = it->second.get();
  while (!f->blocks.empty()) DropBlock(f->blocks.begin()->second.get());
  files_.erase(it);
}

void BufferCache::DropTree(uint32_t vnode, const std::string& path) {
  std::vector<FileKey> keys;
  if (Find(vnode, path) != nullptr) keys.emplace_back(vnode, path);
  const std::string prefix = path.empty() ? path : path + "/";
  for (auto it = files_.lower_bound(FileKey(vnode, prefix));
       it != files_.end() && it->first.first == vnode && UnderPath(it->first.second, prefix); ++it) {
    if (it->first.second != path) keys.push_back(it->first);
  }
  for (const FileKey& k : keys) DropFile(k);
}

int BufferCache::FlushTree(uint32_t vnode, const std::string& path) {
  int first_err = 0;
  if (FileState* f = Find(vnode, path)) first_err = FlushFile(f);
  const std::string prefix = path.empty() ? path : path + "/";
  for (auto it = files_.lower_bound(FileKey(vnode, prefix));
       it != files_.end() && it->first.first == vnode && UnderPath(it->first.second, prefix); ++it) {
    if (it->first.second == path) continue;
    int err = FlushFile(it->second.get());
    if (first_err == 0) first_err = err;
  }
  return first_err;
}

int BufferCache::FlushFile(FileState* f, uint32_t sync_flags, bool* synced) {
  if (synced) *synced = false;
  if (f->dirty_blocks.empty()) return 0;
  std::vector<Block*> dirty;
  dirty.reserve(f->dirty_blocks.size());
  for (auto& [idx, b] : f->dirty_blocks) dirty.push_back(b);
  size_t i = 0;
  while (i < dirty.size()) {
    size_t j = i + 1;  // the run is dirty[i, j)
    while (j < dirty.size() && dirty[j]->index == dirty[j - 1]->index + 1 && j - i < kMaxRunBlocks) ++j;
    const uint64_t start = dirty[i]->index * kBs;
    if (start >= f->size) {  // cannot happen (truncation drops such blocks); nothing to write
      for (size_t k = i; k < j; ++k) MarkClean(dirty[k]);
      i = j;
      continue;
    }
    const uint64_t len = std::min<uint64_t>((j - i) * kBs, f->size - start);
    Bytes data;  // appended block by block: no zero fill first
    data.reserve(len);
    for (size_t k = i; k < j; ++k) {
      uint64_t o = (k - i) * kBs;
      if (o < len) data.insert(data.end(), dirty[k]->data, dirty[k]->data + std::min(kBs, len - o));
    }
    FsRequest w = MakeReq(FsOp::kWrite, f->key.first, f->key.second);
    w.f.offset = start;
    w.data = data;
    const bool last = j == dirty.size();
    if (last) w.f.flags = sync_flags;
    FsReply rep = downstream_->Execute(w);
    if (rep.err() != 0 || rep.f.value != len) {
      int err = rep.err() != 0 ? rep.err() : EIO;
      flush_errors_.fetch_add(1, std::memory_order_relaxed);
      LEGO_LOG_RATELIMITED(
          "buffer_cache_flush_failed vnode={} path=\"{}\" offset={} bytes={} written={} err={}", f->key.first,
          f->key.second, start, len, rep.f.value, err);
      return err;
    }
    flushes_.fetch_add(1, std::memory_order_relaxed);
    flushed_bytes_.fetch_add(len, std::memory_order_relaxed);
    for (size_t k = i; k < j; ++k) MarkClean(dirty[k]);
    if (rep.f.flags & proto::kFsReplyAttr) f->attr = rep.f.attr;
    if (last && synced) *synced = (sync_flags & proto::kFsWriteSync) != 0;
    i = j;
  }
  return 0;
}

int BufferCache::FlushAllLocked() {
  int first_err = 0;
  std::vector<FileKey> gone;
  for (auto& [key, f] : files_) {
    int err = FlushFile(f.get());
    if (err == ENOENT) gone.push_back(key);  // the file vanished downstream: its dirty data has no home
    if (first_err == 0) first_err = err;
  }
  for (const FileKey& k : gone) DropFile(k);
  return first_err;
}

void BufferCache::SweepIdleFiles() {
  for (auto it = files_.begin(); it != files_.end();) {
    if (it->second->blocks.empty()) {
      it = files_.erase(it);
    } else {
      ++it;
    }
  }
}

BufferCache::Block* BufferCache::Lookup(FileState* f, uint64_t index) {
  auto it = f->blocks.find(index);
  return it == f->blocks.end() ? nullptr : it->second.get();
}

void BufferCache::Touch(Block* b) {
  auto& lru = b->dirty ? dirty_lru_ : clean_lru_;
  lru.splice(lru.begin(), lru, b->lru);
}

BufferCache::Block* BufferCache::Insert(FileState* f, uint64_t index, const uint8_t* src) {
  std::unique_ptr<Block> blk(new Block);  // default-initialized: `data` is written once, below
  if (src != nullptr)
    std::memcpy(blk->data, src, kBs);
  else
    std::memset(blk->data, 0, kBs);
  Block* b = blk.get();
  b->file = f;
  b->index = index;
  clean_lru_.push_front(b);
  b->lru = clean_lru_.begin();
  f->blocks.emplace(index, std::move(blk));
  resident_.fetch_add(1, std::memory_order_relaxed);
  return b;
}

void BufferCache::MarkDirty(Block* b) {
  if (b->dirty) return;
  clean_lru_.erase(b->lru);
  dirty_lru_.push_front(b);
  b->lru = dirty_lru_.begin();
  b->dirty = true;
  b->file->dirty_blocks.emplace(b->index, b);
  dirty_.fetch_add(1, std::memory_order_relaxed);
}

void BufferCache::MarkClean(Block* b) {
  if (!b->dirty) return;
  dirty_lru_.erase(b->lru);
  clean_lru_.push_front(b);
  b->lru = clean_lru_.begin();
  b->dirty = false;
  b->file->dirty_blocks.erase(b->index);
  dirty_.fetch_sub(1, std::memory_order_relaxed);
}

void BufferCache::DropBlock(Block* b) {
  if (b->dirty) {
    dirty_lru_.erase(b->lru);
    b->file->dirty_blocks.erase(b->index);
    dirty_.fetch_sub(1, std::memory_order_relaxed);
  } else {
    clean_lru_.erase(b->lru);
  }
  resident_.fetch_sub(1, std::memory_order_relaxed);
  b->file->blocks.erase(b->index);  // frees b
}

int BufferCache::MakeRoom(uint64_t need, const FileState* keep, uint64_t lo, uint64_t hi) {
  if (need > max_blocks_) return ENOBUFS;
  auto pick = [&](std::list<Block*>& lru) -> Block* {
    for (auto it = lru.rbegin(); it != lru.rend(); ++it) {
      Block* b = *it;
      if (b->file != keep || b->index < lo || b->index > hi) return b;
    }
    return nullptr;
  };
  while (resident_.load(std::memory_order_relaxed) + need > max_blocks_) {
    Block* victim = pick(clean_lru_);
    if (victim == nullptr) victim = pick(dirty_lru_);
    if (victim == nullptr) return ENOBUFS;
    if (victim->dirty) {
      if (int err = FlushFile(victim->file); err != 0) return err;
    }
    DropBlock(victim);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

int BufferCache::ThrottleDirty(uint64_t incoming) {
  while (dirty_.load(std::memory_order_relaxed) + incoming > max_dirty_blocks_ && !dirty_lru_.empty()) {
    if (int err = FlushFile(dirty_lru_.back()->file); err != 0) return err;
  }
  return 0;
}

}  // namespace lego::mmon
