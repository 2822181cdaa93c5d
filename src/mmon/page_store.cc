#include "mmon/page_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "protocol/p2m.h"

namespace lego::mmon {

Result<std::unique_ptr<PageStore>> PageStore::Create(uint64_t capacity_bytes) {
  uint64_t frames = capacity_bytes / kPageSize;
  if (frames == 0) return InvalidArgument(fmt::format("capacity {} is less than one page", capacity_bytes));
  if (frames > UINT32_MAX) return InvalidArgument(fmt::format("capacity {} exceeds 16 TiB", capacity_bytes));
  void* p = mmap(nullptr, frames * kPageSize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return ErrnoError(fmt::format("reserving a {} byte page pool", capacity_bytes), errno);
  // No transparent huge pages: frames are allocated and given back (MADV_DONTNEED) 4 KiB at a time, and a
  // huge page's first touch zeroes 2 MiB inside Write, under the store's mutex, while page reads wait. With
  // them, a fresh cluster's first sequential scan ran at 0.55-0.83 GB/s (mean 0.66, 5 runs); without, at
  // 0.73-0.96 (mean 0.82); later runs the same either way (about 0.9).
  madvise(p, frames * kPageSize, MADV_NOHUGEPAGE);
  return std::unique_ptr<PageStore>(new PageStore(static_cast<uint8_t*>(p), frames));
}

PageStore::PageStore(uint8_t* pool, uint64_t frames) : pool_(pool), frames_(frames) {
  MutexLock lk(mu_);
  refs_.assign(frames, 0);
}

uint32_t PageStore::Allocate() {
  uint32_t f;
  if (!free_.empty()) {
    f = free_.back();
    free_.pop_back();
  } else {
    f = static_cast<uint32_t>(next_untouched_++);
  }
  refs_[f] = 1;
  ++used_frames_;
  return f;
}

PageStore::~PageStore() { munmap(pool_, frames_ * kPageSize); }

Status PageStore::Write(uint64_t space, std::span<const PageRef> pages) {
  for (const auto& p : pages) {
    if (p.vaddr % kPageSize != 0)
      return InvalidArgument(fmt::format("vaddr {:#x} is not page aligned", p.vaddr));
    if (p.data.size() != kPageSize) return InvalidArgument(fmt::format("page of {} bytes", p.data.size()));
  }
  MutexLock lk(mu_);
  auto& index = spaces_[space];
  uint64_t fresh = 0;
  for (const auto& p : pages) {
    auto it = index.find(p.vaddr);
    fresh += it == index.end() || refs_[it->second] > 1;  // new, or shared with a fork: needs a frame
  }
  // Pages repeated within the batch are counted twice above: harmless (it only makes the check stricter).
  uint64_t available = free_.size() + (frames_ - next_untouched_);
  if (fresh > available) {
    if (index.empty()) spaces_.erase(space);
    return Status(StatusCode::kOutOfMemory,
                  fmt::format("memory pool full: {} new pages, {} free of {}", fresh, available, frames_));
  }
  for (const auto& p : pages) {
    auto [it, inserted] = index.try_emplace(p.vaddr, 0);
    if (inserted) {
      it->second = Allocate();
    } else if (refs_[it->second] > 1) {
      --refs_[it->second];  // break the sharing: this space gets its own frame
      it->second = Allocate();
    }
    std::memcpy(Frame(it->second), p.data.data(), kPageSize);
  }
  return Status::Ok();
}

bool PageStore::Read(uint64_t space, uint64_t vaddr, uint8_t* out) const {
  std::vector<uint8_t> buf;
  if (AppendPages(space, std::span(&vaddr, 1), &buf) != 1) return false;
  std::memcpy(out, buf.data() + 1, kPageSize);
  return true;
}

size_t PageStore::AppendPages(uint64_t space, std::span<const uint64_t> vaddrs,
                              std::vector<uint8_t>* out) const {
  MutexLock lk(mu_);
  const size_t flags_at = out->size();
  out->resize(flags_at + vaddrs.size(), 0);
  auto s = spaces_.find(space);
  if (s == spaces_.end()) return 0;
  size_t n = 0;
  for (size_t i = 0; i < vaddrs.size(); ++i) {
    auto it = s->second.find(vaddrs[i]);
    if (it == s->second.end()) continue;
    (*out)[flags_at + i] = 1;  // by index: the insert below may move the buffer
    const uint8_t* frame = Frame(it->second);
    out->insert(out->end(), frame, frame + kPageSize);
    ++n;
  }
  return n;
}

void PageStore::ReleaseAll(std::vector<uint32_t>* frames) {
  // Frames no space uses any more, given back to the host one run of adjacent frames per madvise: a call per
  // page costs 1.6 us here, one per run 0.3 us a page (256 MiB: 0.107 s against 0.019 s), and a large
  // process's frames are mostly adjacent (taken in order from the untouched part of the pool).
  auto last = std::remove_if(frames->begin(), frames->end(), [this](uint32_t f) { return --refs_[f] > 0; });
  frames->erase(last, frames->end());
  std::sort(frames->begin(), frames->end());
  for (size_t i = 0; i < frames->size();) {
    size_t j = i + 1;
    while (j < frames->size() && (*frames)[j] == (*frames)[j - 1] + 1) ++j;
    madvise(Frame((*frames)[i]), (j - i) * kPageSize, MADV_DONTNEED);
    i = j;
  }
  free_.insert(free_.end(), frames->begin(), frames->end());
  used_frames_ -= frames->size();
}

uint64_t PageStore::FreeRange(uint64_t space, uint64_t start, uint64_t len) {
  MutexLock lk(mu_);
  auto s = spaces_.find(space);
  if (s == spaces_.end()) return 0;
  uint64_t freed = 0;
  const uint64_t end = start + len < start ? UINT64_MAX : start + len;
  auto& index = s->second;
  std::vector<uint32_t> frames;
  if (len / kPageSize < index.size()) {
    for (uint64_t v = start & ~(kPageSize - 1); v < end; v += kPageSize) {
      auto it = index.find(v);
      if (it != index.end()) {
        frames.push_back(it->second);
        index.erase(it);
        ++freed;
      }
      if (v > UINT64_MAX - kPageSize) break;
    }
  } else {
    for (auto it = index.begin(); it != index.end();) {
      if (it->first + (kPageSize - 1) >= start && it->first < end) {  // overlaps; cannot overflow
        frames.push_back(it->second);
        it = index.erase(it);
        ++freed;
      } else {
        ++it;
      }
    }
  }
  ReleaseAll(&frames);
  if (index.empty()) spaces_.erase(s);
  return freed;
}

uint64_t PageStore::DestroySpace(uint64_t space) {
  MutexLock lk(mu_);
  auto s = spaces_.find(space);
  if (s == spaces_.end()) return 0;
  uint64_t freed = s->second.size();
  std::vector<uint32_t> frames;
  frames.reserve(s->second.size());
  for (auto& [v, f] : s->second) frames.push_back(f);
  spaces_.erase(s);
  ReleaseAll(&frames);
  return freed;
}

std::vector<uint64_t> PageStore::SpacesTagged(uint32_t tag) const {
  MutexLock lk(mu_);
  std::vector<uint64_t> out;
  for (const auto& [space, pages] : spaces_)
    if (proto::SpaceTag(space) == tag) out.push_back(space);
  return out;
}

Result<uint64_t> PageStore::ForkSpace(uint64_t parent, uint64_t child) {
  MutexLock lk(mu_);
  if (spaces_.count(child))
    return Status(StatusCode::kAlreadyExists, fmt::format("space {:#x} exists", child));
  auto p = spaces_.find(parent);
  if (p == spaces_.end()) return uint64_t{0};
  auto copy = p->second;  // copy first: spaces_[child] may rehash and move the parent's map
  for (auto& [v, f] : copy) ++refs_[f];
  const uint64_t n = copy.size();
  spaces_.emplace(child, std::move(copy));
  return n;
}

uint64_t PageStore::used_bytes() const {
  MutexLock lk(mu_);
  return used_frames_ * kPageSize;
}

uint64_t PageStore::space_count() const {
  MutexLock lk(mu_);
  return spaces_.size();
}

}  // namespace lego::mmon
