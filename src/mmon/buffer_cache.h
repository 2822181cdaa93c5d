// BufferCache: a memory monitor's write-back cache of file blocks for the vNodes it is the home of (LegoOS's
// storage buffer cache in the mComponent). Every FS request of a vNode passes through this one cache on its
// way from the process monitors' FUSE mounts to the vNode's storage monitor (`downstream`), so the cache can
// answer reads and absorb writes and still stay coherent with the metadata operations that pass through it.
//
// What it promises:
//   - A READ sees every byte written before it through this cache, flushed or not, and never a byte beyond
//     the file's size (as this cache knows it: unflushed writes extend it, truncation shrinks it).
//   - A READ miss fetches a read-around window: the run of missing blocks of the request, extended to at
//     least 32 KiB (half the cache if that is smaller), at most 128 KiB per downstream READ, never past the
//     size; the blocks are inserted clean. The first READ/WRITE of a file not cached costs one GETATTR
//     (to learn its size and type; anything but a regular file is forwarded uncached).
//   - A WRITE lands in 4 KiB blocks keyed by (vNode, path, block index) and is marked dirty; nothing
//     reaches downstream until a flush: the flusher thread (every flush_interval), FSYNC of the file,
//     FlushAll/Stop, eviction of a dirty block, the dirty limit (max_dirty of the capacity: the writer
//     flushes the least recently used dirty files synchronously before its own blocks are applied), or a
//     rename under the file's path. A write larger than the dirty limit goes straight through (after the
//     file's dirty blocks are flushed).
//   - Flushes send WRITEs of runs of adjacent dirty blocks (at most kFsMaxIo each), clipped to the size.
//   - FSYNC returns the first flush error (the blocks stay dirty and are retried) and forwards FSYNC only
//     when every dirty block of the file reached downstream.
//   - GETATTR/SETATTR/CREATE replies for a file with dirty blocks carry the cached size and the time of the
//     last write as mtime; a WRITE reply carries the last known attr with those two overridden.
//   - SETATTR(size) is forwarded first; on success the cached blocks past the new size are dropped and the
//     tail of the last partial block is zeroed. SETATTR setting a time flushes the file first (so a later
//     flush cannot overwrite an explicit utimes). UNLINK drops the file (dirty data included) once downstream
//     confirms. RENAME flushes both paths (as files and as directories), forwards, and drops both.
//   - The blocks held never exceed the capacity in force (capacity_bytes rounded down to whole blocks, or
//     the last SetCapacity once applied), except after a shrink whose dirty victims could not be flushed
//     (retried at most once a second until it succeeds). Eviction is LRU, clean
//     blocks first; a dirty victim's file is flushed before the victim is dropped. If no victim can be
//     flushed, a READ is answered without caching; a WRITE that finds no room or cannot get under the dirty
//     limit fails with the flush error (EIO, ENOSPC...) and none of it is applied.
//   - capacity_bytes < 4096 turns the cache off: Execute forwards every request unchanged.
//
// What may be lost: dirty blocks not yet flushed are lost if the mmon dies (the bound is flush_interval plus
// the time a failing downstream keeps them dirty). A failed background flush is logged (rate-limited),
// counted, and retried on the next tick; FSYNC is the caller's way to learn about it. A background flush or
// FlushAll that finds the file gone (ENOENT) discards that file's dirty blocks.
//
// Thread safety: Execute, FlushAll, stats and Start/Stop may be called from any thread. One mutex guards the
// cache and is HELD ACROSS DOWNSTREAM CALLS: the traffic through one cache is serialized (correctness first:
// no request can observe a half-applied flush, rename or truncation), which is why the mmon keeps one cache
// per vNode (buffer_cache_set.h): a vNode whose smon is stuck holds up only itself. The flusher thread takes
// the same mutex. stats() does not take it (counters are atomics).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "protocol/fs.h"

namespace lego::mmon {

inline constexpr uint64_t kCacheBlockSize = 4096;

struct BufferCacheOptions {
  uint64_t capacity_bytes = 0;  // 0 (or < one block): off, every request passes straight through
  std::chrono::milliseconds flush_interval{5000};
  double max_dirty = 0.5;  // fraction of the capacity that may be dirty before writers flush synchronously
};

// Counters since construction (monotonic), plus two gauges (dirty_bytes, resident_bytes).
struct BufferCacheStats {
  uint64_t hits = 0;               // blocks of READs served from the cache
  uint64_t misses = 0;             // blocks of READs fetched from downstream
  uint64_t readaround_blocks = 0;  // blocks fetched beyond what a READ asked for
  uint64_t write_blocks = 0;       // blocks written into by WRITEs
  uint64_t dirty_bytes = 0;        // gauge
  uint64_t resident_bytes = 0;     // gauge
  uint64_t flushes = 0;            // WRITE requests sent downstream by flushes
  uint64_t flushed_bytes = 0;      // bytes they carried
  uint64_t evictions = 0;          // blocks dropped to make room
  uint64_t write_throughs = 0;     // WRITEs forwarded uncached (larger than the dirty limit)
  uint64_t flush_errors = 0;       // flush WRITEs that failed

  BufferCacheStats& operator+=(const BufferCacheStats& o) {
    for (auto [mine, theirs] : {std::pair{&hits, o.hits},
                                {&misses, o.misses},
                                {&readaround_blocks, o.readaround_blocks},
                                {&write_blocks, o.write_blocks},
                                {&dirty_bytes, o.dirty_bytes},
                                {&resident_bytes, o.resident_bytes},
                                {&flushes, o.flushes},
                                {&flushed_bytes, o.flushed_bytes},
                                {&evictions, o.evictions},
                                {&write_throughs, o.write_throughs},
                                {&flush_errors, o.flush_errors}})
      *mine += theirs;
    return *this;
  }
};

class BufferCache : public proto::FsService {
 public:
  // A READ that continues the file's previous READ (or starts at 0) is sequential: a miss then fetches up to
  // kMaxReadAround (clipped to half the cache). Any other READ fetches just the blocks it needs: read-around
  // on random access only reads data nobody asked for (a 4 KB random read would cost a 32 KB one).
  static constexpr uint64_t kMaxReadAround = proto::kFsMaxIo;

  // downstream must outlive the cache. The flusher runs only between Start and Stop.
  BufferCache(const BufferCacheOptions& opts, proto::FsService* downstream);
  ~BufferCache() override;  // calls Stop
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;

  void Start();
  // Stops the flusher thread, then flushes everything once more (errors are logged). Idempotent.
  void Stop();

  proto::FsReply Execute(const proto::FsRequest& req) override EXCLUDES(mu_);
  // A READ whose every block is cached, answered without waiting for anything: false (and nothing done) if
  // the cache is busy (another thread holds it), the file is not cached or a block is missing. The mmon
  // calls it on its messenger's progress thread, so a hit costs no thread hand-off.
  bool TryServeRead(const proto::FsRequest& req, proto::FsReply* out) EXCLUDES(mu_);

  // Writes every dirty block back. kIoError naming the first errno if any flush failed (those blocks stay
  // dirty).
  Status FlushAll() EXCLUDES(mu_);

  BufferCacheStats stats() const;
  bool enabled() const { return enabled_; }
  // The capacity in force (blocks): changed only between requests, under the cache's lock.
  uint64_t capacity_blocks() const { return applied_blocks_.load(std::memory_order_relaxed); }

  // A new capacity for an enabled cache (0 allowed: it then keeps nothing, reads go uncached and writes
  // through). Applied at the start of the next request or flusher tick (the flusher is woken), never in the
  // middle of one; shrinking evicts least recently used blocks, flushing dirty ones first. For
  // BufferCacheSet, which shares one budget among the vNodes' caches.
  void SetCapacity(uint64_t bytes);
  // When the cache last served a request (steady clock, ns), for BufferCacheSet's sharing.
  int64_t last_used_ns() const { return last_used_ns_.load(std::memory_order_relaxed); }

 private:
  struct FileState;
  struct Block {
    FileState* file = nullptr;
    uint64_t index = 0;
    bool dirty = false;
    std::list<Block*>::iterator lru;  // in clean_lru_ or dirty_lru_ (by `dirty`)
    uint8_t data[kCacheBlockSize];    // bytes past the file's size are zero
  };
  using FileKey = std::pair<uint32_t, std::string>;  // (vnode, path)
  struct FileState {
    FileKey key;
    uint64_t size = 0;  // authoritative while cached (downstream's plus unflushed writes)
    proto::FsAttr attr{};
    int64_t last_write_ns = 0;
    uint64_t read_end = 0;  // where the last READ ended: the next one is sequential if it starts here
    std::map<uint64_t, std::unique_ptr<Block>> blocks;
    // The dirty ones among `blocks`, by index: a flush walks these, not every cached block of the file
    // (an fsync of one dirty block in a file with 16k cached ones walked all 16k).
    std::map<uint64_t, Block*> dirty_blocks;
  };

  proto::FsReply ExecuteLocked(const proto::FsRequest& req) REQUIRES(mu_);
  proto::FsReply Read(const proto::FsRequest& req) REQUIRES(mu_);
  proto::FsReply Write(const proto::FsRequest& req) REQUIRES(mu_);
  proto::FsReply WriteThrough(FileState* f, const proto::FsRequest& req) REQUIRES(mu_);
  proto::FsReply Setattr(const proto::FsRequest& req) REQUIRES(mu_);
  proto::FsReply Rename(const proto::FsRequest& req) REQUIRES(mu_);

  FileState* Find(uint32_t vnode, const std::string& path) REQUIRES(mu_);
  // The file's state, fetched with a GETATTR if not cached. nullptr with *err = 0: not a regular file (the
  // caller forwards the request); nullptr with *err != 0: the GETATTR failed.
  FileState* EnsureFile(uint32_t vnode, const std::string& path, int* err) REQUIRES(mu_);
  void DropFile(const FileKey& key) REQUIRES(mu_);
  // Drops every file at `path` or under `path/`.
  void DropTree(uint32_t vnode, const std::string& path) REQUIRES(mu_);
  // Flushes every file at `path` or under `path/`; the first errno or 0.
  int FlushTree(uint32_t vnode, const std::string& path) REQUIRES(mu_);
  // sync_flags (kFsWriteSync, with kFsDataSync if wanted): the last WRITE of the flush also makes the file
  // durable, and *synced says whether it did (it cannot when nothing was written).
  int FlushFile(FileState* f, uint32_t sync_flags = 0, bool* synced = nullptr) REQUIRES(mu_);
  int FlushAllLocked() REQUIRES(mu_);
  void SweepIdleFiles() REQUIRES(mu_);
  // Sets attr's size (and mtime, ctime) to the cache's if f has dirty blocks.
  static void PatchAttr(const FileState& f, proto::FsAttr* attr);

  Block* Lookup(FileState* f, uint64_t index);
  void Touch(Block* b) REQUIRES(mu_);
  // A new clean block holding src's kCacheBlockSize bytes, or zeros. REQUIRES: room (resident < max).
  Block* Insert(FileState* f, uint64_t index, const uint8_t* src = nullptr) REQUIRES(mu_);
  void MarkDirty(Block* b) REQUIRES(mu_);
  void MarkClean(Block* b) REQUIRES(mu_);
  void DropBlock(Block* b) REQUIRES(mu_);
  // Makes room for `need` more blocks, never evicting blocks [lo, hi] of `keep`. 0, or the errno of the
  // flush of a dirty victim, or ENOBUFS if no victim is left.
  int MakeRoom(uint64_t need, const FileState* keep, uint64_t lo, uint64_t hi) REQUIRES(mu_);
  // Flushes least recently used dirty files until `incoming` more dirty blocks fit under the limit.
  int ThrottleDirty(uint64_t incoming) REQUIRES(mu_);

  void FlusherLoop();

  // Makes a capacity set by SetCapacity the one in force, evicting down to it.
  void ApplyCapacity() REQUIRES(mu_);

  proto::FsService* const downstream_;
  const bool enabled_;
  const double max_dirty_;
  const std::chrono::milliseconds flush_interval_;
  std::atomic<uint64_t> target_blocks_;  // set by SetCapacity
  // In force (all GUARDED_BY(mu_) for writing): the capacity, the dirty limit (max_dirty of it, at least one
  // block unless the capacity is 0), and the blocks a sequential READ miss fetches (kMaxReadAround, clipped
  // to half the cache).
  std::atomic<uint64_t> applied_blocks_;
  uint64_t max_blocks_ GUARDED_BY(mu_) = 0;
  uint64_t max_dirty_blocks_ GUARDED_BY(mu_) = 0;
  uint64_t readaround_blocks_ GUARDED_BY(mu_) = 1;
  int64_t shrink_retry_ns_ GUARDED_BY(mu_) = 0;  // after a failed shrink: not again before this (steady ns)
  std::atomic<int64_t> last_used_ns_{0};

  Mutex mu_;
  std::map<FileKey, std::unique_ptr<FileState>> files_ GUARDED_BY(mu_);
  std::list<Block*> clean_lru_ GUARDED_BY(mu_);  // front: most recently used
  std::list<Block*> dirty_lru_ GUARDED_BY(mu_);

  // Counters; written under mu_, read anywhere.
  std::atomic<uint64_t> resident_{0};
  std::atomic<uint64_t> dirty_{0};
  std::atomic<uint64_t> hits_{0}, misses_{0}, readaround_{0}, write_blocks_{0}, flushes_{0},
      flushed_bytes_{0}, evictions_{0}, write_throughs_{0}, flush_errors_{0};

  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stop_ = false;     // GUARDED_BY(thread_mu_)
  bool resized_ = false;  // GUARDED_BY(thread_mu_): SetCapacity since the flusher last looked
  bool started_ = false;
  std::thread flusher_;
};

}  // namespace lego::mmon
