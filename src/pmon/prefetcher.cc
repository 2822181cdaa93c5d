#include "pmon/prefetcher.h"

#include <algorithm>

namespace lego::pmon {

std::vector<uint64_t> Prefetcher::OnMiss(uint64_t page) {
  std::vector<uint64_t> out;
  if (!enabled_) return out;
  if (streaming_ && page == expect_) {
    used_ += window_pages_;  // the program walked through the whole window
    depth_ = std::min(depth_ * 2, kMaxDepth);
  } else if (streaming_) {
    streaming_ = false;  // the stream broke: the window (or its rest) went unused
    depth_ = std::max(depth_ / 2, kMinDepth);
  }
  window_pages_ = 0;
  const int64_t d = have_last_ ? static_cast<int64_t>(page - last_) : 0;
  if (!streaming_) {
    streaming_ = have_last_ && d != 0 && d == stride_ && std::abs(d) <= kMaxStride;
    stride_ = d;
  }
  have_last_ = true;
  last_ = page;
  if (!streaming_) return out;
  for (uint32_t i = 1; i <= depth_; ++i) {
    const int64_t p = static_cast<int64_t>(page) + stride_ * static_cast<int64_t>(i);
    if (p < 0) break;
    out.push_back(static_cast<uint64_t>(p));
  }
  expect_ = static_cast<uint64_t>(static_cast<int64_t>(page) + stride_ * (static_cast<int64_t>(depth_) + 1));
  last_ = expect_ - stride_;  // the window's last page: the next miss continues from there
  return out;
}

}  // namespace lego::pmon
