// Prefetcher: detects sequential and strided miss streams of one process and says which pages to fetch
// with a miss, adapting its depth to how much of what it fetched was used (LegoOS has none).
//
// A stream is confirmed when three misses in a row are `stride` pages apart (|stride| <= kMaxStride). The
// window then covers the next `depth` pages of the stream. The next miss of the stream is expected just past
// the window: if it comes there, the program walked through the whole window (counted as used) and the
// depth doubles, up to kMaxDepth; if the stream breaks instead, the window counts as unused and the depth
// halves. Pages of a window are not individually observable once installed (reads raise no fault), so
// "used" is inferred from the stream continuing. Not thread safe: its ProcessSession serialises calls.
#pragma once

#include <cstdint>
#include <vector>

namespace lego::pmon {

class Prefetcher {
 public:
  static constexpr int64_t kMaxStride = 64;
  static constexpr uint32_t kMinDepth = 4;
  static constexpr uint32_t kMaxDepth = 128;

  explicit Prefetcher(bool enabled = true) : enabled_(enabled) {}

  // Called on each miss (page number, i.e. vaddr / 4096). Returns the page numbers to fetch with it,
  // nearest first (may be empty). The caller fetches those it can (not resident, same vRegion).
  std::vector<uint64_t> OnMiss(uint64_t page);
  // The caller issued `n` of the pages OnMiss proposed (the rest were resident or out of range).
  void Issued(uint64_t n) {
    issued_ += n;
    window_pages_ = n;
  }

  // While a stream is confirmed, the page where its next miss is expected (the start of the next window);
  // else 0. The pmon fetches that window ahead by calling OnMiss(NextWindowStart()) before the program
  // gets there.
  uint64_t NextWindowStart() const { return streaming_ && stride_ == 1 ? expect_ : 0; }
  uint64_t issued() const { return issued_; }
  uint64_t used() const { return used_; }
  uint32_t depth() const { return depth_; }

 private:
  bool enabled_;
  bool have_last_ = false;
  uint64_t last_ = 0;
  int64_t stride_ = 0;
  bool streaming_ = false;
  uint64_t expect_ = 0;        // where the stream's next miss lands if the window was used
  uint64_t window_pages_ = 0;  // pages issued for the current window
  uint32_t depth_ = kMinDepth * 2;
  uint64_t issued_ = 0;
  uint64_t used_ = 0;
};

}  // namespace lego::pmon
