// PageStore: a memory monitor's pool of 4 KiB pages, keyed by (address space, page-aligned virtual address).
//
// The pool is one reservation of `capacity` bytes (MAP_NORESERVE, transparent huge pages requested where the
// host has them), carved into frames handed out from a free list: a full store refuses new pages with
// kOutOfMemory and never grows past its capacity. Writes are all-or-nothing per batch. A space is an
// opaque 64-bit id chosen by the process monitor (LegoOS: pid+tgid); destroying it frees all its pages.
//
// Forked spaces share frames copy-on-write: a frame has a reference count, and a write to a shared frame
// takes a new one (so a write can need room even for a page that exists).
//
// Thread safety: every method may be called from any thread (one mutex; page copies happen under it, which
// is fine at 4 KiB and keeps the contract simple).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace lego::mmon {

inline constexpr size_t kPageSize = 4096;

class PageStore {
 public:
  static Result<std::unique_ptr<PageStore>> Create(uint64_t capacity_bytes);
  ~PageStore();
  PageStore(const PageStore&) = delete;
  PageStore& operator=(const PageStore&) = delete;

  struct PageRef {
    uint64_t vaddr;                 // page aligned
    std::span<const uint8_t> data;  // exactly kPageSize bytes
  };
  // Stores every page, or none (kOutOfMemory if the new ones do not fit; kInvalidArgument if a vaddr is
  // not page aligned or a page is not kPageSize bytes).
  Status Write(uint64_t space, std::span<const PageRef> pages);
  // Copies the page into out (kPageSize bytes) and returns true, or returns false if it was never written.
  bool Read(uint64_t space, uint64_t vaddr, uint8_t* out) const;
  // The batch form, under one lock, in p2m.read_pages's reply layout: appends vaddrs.size() presence bytes
  // (1: written) to out, then each written page, packed in request order. Returns how many were present.
  // Appending (into reserved capacity) instead of filling a sized buffer spares zeroing the pages first.
  size_t AppendPages(uint64_t space, std::span<const uint64_t> vaddrs, std::vector<uint8_t>* out) const;
  // Frees the pages of [start, start+len); returns how many were stored.
  uint64_t FreeRange(uint64_t space, uint64_t start, uint64_t len);
  uint64_t DestroySpace(uint64_t space);
  // The spaces holding pages whose id carries `tag` (proto::SpaceTag).
  std::vector<uint64_t> SpacesTagged(uint32_t tag) const;
  // Copy-on-write fork: `child` gets every page of `parent`, sharing frames until either side writes one.
  // kAlreadyExists if child has pages. Returns how many pages the child got.
  Result<uint64_t> ForkSpace(uint64_t parent, uint64_t child);

  uint64_t capacity_bytes() const { return frames_ * kPageSize; }
  uint64_t used_bytes() const;
  uint64_t space_count() const;

 private:
  PageStore(uint8_t* pool, uint64_t frames);
  uint8_t* Frame(uint32_t f) const { return pool_ + uint64_t{f} * kPageSize; }
  // Drops a reference to each frame in *frames (which it reorders and trims); frames no space uses any more
  // go back to the host (one madvise per run of adjacent ones) and to the free list.
  void ReleaseAll(std::vector<uint32_t>* frames) REQUIRES(mu_);
  uint32_t Allocate() REQUIRES(mu_);

  uint8_t* const pool_;
  const uint64_t frames_;
  mutable Mutex mu_;
  std::vector<uint32_t> free_ GUARDED_BY(mu_);
  uint64_t next_untouched_ GUARDED_BY(mu_) = 0;  // frames never used yet (not in free_), from here up
  std::unordered_map<uint64_t, std::unordered_map<uint64_t, uint32_t>> spaces_ GUARDED_BY(mu_);
  uint64_t used_frames_ GUARDED_BY(mu_) = 0;
  std::vector<uint32_t> refs_ GUARDED_BY(mu_);  // spaces sharing each frame (copy-on-write after a fork)
};

}  // namespace lego::mmon
