// Prefetcher: stream detection and depth adaptation.
#include "pmon/prefetcher.h"

#include <gtest/gtest.h>

namespace lego::pmon {
namespace {

TEST(PrefetcherTest, RandomMissesProposeNothing) {
  Prefetcher p;
  for (uint64_t page : {100, 7, 5000, 42, 999, 12}) EXPECT_TRUE(p.OnMiss(page).empty());
  EXPECT_EQ(p.issued(), 0u);
}

TEST(PrefetcherTest, SequentialStreamIsDetectedAndDepthGrowsWhileUsed) {
  Prefetcher p;
  EXPECT_TRUE(p.OnMiss(10).empty());
  EXPECT_TRUE(p.OnMiss(11).empty());
  auto w = p.OnMiss(12);  // third miss one page apart: a stream
  ASSERT_EQ(w.size(), p.depth());
  EXPECT_EQ(w.front(), 13u);
  p.Issued(w.size());
  const uint32_t d0 = p.depth();
  // The program walks through the window: its next miss is just past it.
  uint64_t next = w.back() + 1;
  auto w2 = p.OnMiss(next);
  p.Issued(w2.size());
  EXPECT_EQ(p.used(), w.size());
  EXPECT_EQ(p.depth(), d0 * 2);
  EXPECT_EQ(w2.front(), next + 1);
  // Depth is capped.
  for (int i = 0; i < 20; ++i) {
    next = w2.back() + 1;
    w2 = p.OnMiss(next);
    p.Issued(w2.size());
  }
  EXPECT_EQ(p.depth(), Prefetcher::kMaxDepth);
}

TEST(PrefetcherTest, StridedAndBackwardStreams) {
  Prefetcher p;
  p.OnMiss(1000);
  p.OnMiss(1004);
  auto w = p.OnMiss(1008);
  ASSERT_FALSE(w.empty());
  EXPECT_EQ(w[0], 1012u);
  EXPECT_EQ(w[1], 1016u);
  Prefetcher b;
  b.OnMiss(500);
  b.OnMiss(499);
  auto wb = b.OnMiss(498);
  ASSERT_FALSE(wb.empty());
  EXPECT_EQ(wb[0], 497u);
}

TEST(PrefetcherTest, BrokenStreamHalvesTheDepth) {
  Prefetcher p;
  p.OnMiss(10);
  p.OnMiss(11);
  auto w = p.OnMiss(12);
  p.Issued(w.size());
  const uint32_t d0 = p.depth();
  EXPECT_TRUE(p.OnMiss(90000).empty());  // elsewhere: the window went unused
  EXPECT_EQ(p.depth(), std::max(d0 / 2, Prefetcher::kMinDepth));
  EXPECT_EQ(p.used(), 0u);
}

TEST(PrefetcherTest, NextWindowStartPlansTheWindowAheadOfAForwardStream) {
  Prefetcher p;
  EXPECT_EQ(p.NextWindowStart(), 0u);  // no stream yet
  p.OnMiss(10);
  p.OnMiss(11);
  auto w = p.OnMiss(12);
  p.Issued(w.size());
  const uint64_t start = p.NextWindowStart();
  EXPECT_EQ(start, w.back() + 1);  // where the program's next miss is expected
  // The pmon plans the window after it at once, as if the program had got there.
  auto ahead = p.OnMiss(start);
  ASSERT_FALSE(ahead.empty());
  EXPECT_EQ(ahead.front(), start + 1);
  EXPECT_EQ(p.NextWindowStart(), ahead.back() + 1);
  // Backward and strided streams are not fetched ahead.
  Prefetcher b;
  b.OnMiss(500);
  b.OnMiss(499);
  b.OnMiss(498);
  EXPECT_EQ(b.NextWindowStart(), 0u);
}

TEST(PrefetcherTest, DisabledProposesNothing) {
  Prefetcher p(false);
  for (uint64_t i = 0; i < 10; ++i) EXPECT_TRUE(p.OnMiss(i).empty());
}

}  // namespace
}  // namespace lego::pmon
