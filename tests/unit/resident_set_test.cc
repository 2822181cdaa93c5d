// ResidentSet: the ExCache's eviction order (FIFO, and CLOCK as an LRU approximation).
#include "pmon/resident_set.h"

#include <gtest/gtest.h>

namespace lego::pmon {
namespace {

TEST(ResidentSetTest, FifoEvictsInArrivalOrderAndIgnoresReferences) {
  ResidentSet s(EvictionPolicy::kFifo);
  for (uint64_t p = 1; p <= 5; ++p) s.Insert(p);
  s.Touch(1);
  int rearmed = 0;
  auto v = s.PickVictims(2, [&](uint64_t) { ++rearmed; });
  EXPECT_EQ(v, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(rearmed, 0);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_FALSE(s.Contains(1));
}

TEST(ResidentSetTest, ClockGivesReferencedPagesASecondChance) {
  ResidentSet s(EvictionPolicy::kClock);
  for (uint64_t p = 1; p <= 4; ++p) s.Insert(p);
  s.Touch(1);
  s.Touch(3);
  std::vector<uint64_t> rearmed;
  auto v = s.PickVictims(2, [&](uint64_t p) { rearmed.push_back(p); });
  EXPECT_EQ(v, (std::vector<uint64_t>{2, 4}));
  EXPECT_EQ(rearmed, (std::vector<uint64_t>{1, 3}));
  // Their bits are cleared: next time they go, oldest second chance first.
  v = s.PickVictims(2, nullptr);
  EXPECT_EQ(v, (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(s.size(), 0u);
}

TEST(ResidentSetTest, ClockWithEveryPageReferencedStillFindsVictims) {
  ResidentSet s(EvictionPolicy::kClock);
  for (uint64_t p = 0; p < 100; ++p) {
    s.Insert(p);
    s.Touch(p);
  }
  auto v = s.PickVictims(10, nullptr);
  EXPECT_EQ(v.size(), 10u);
}

TEST(ResidentSetTest, ErasedAndReinsertedPagesAreNotPickedTwice) {
  ResidentSet s(EvictionPolicy::kFifo);
  s.Insert(7);
  s.Insert(8);
  s.Erase(7);
  s.Insert(7);  // back later: its old queue entry is stale
  auto v = s.PickVictims(3, nullptr);
  EXPECT_EQ(v, (std::vector<uint64_t>{8, 7}));
}

TEST(ResidentSetTest, ChurnDoesNotGrowTheQueueWithoutBound) {
  ResidentSet s(EvictionPolicy::kFifo);
  for (uint64_t round = 0; round < 100000; ++round) {
    s.Insert(round % 10);
    s.Erase(round % 10);
  }
  EXPECT_EQ(s.size(), 0u);
  EXPECT_TRUE(s.PickVictims(1, nullptr).empty());
}

TEST(ResidentSetTest, ParsesPolicyNames) {
  EXPECT_EQ(ParseEvictionPolicy("fifo").value(), EvictionPolicy::kFifo);
  EXPECT_EQ(ParseEvictionPolicy("clock").value(), EvictionPolicy::kClock);
  EXPECT_EQ(ParseEvictionPolicy("lru").value(), EvictionPolicy::kClock);
  EXPECT_FALSE(ParseEvictionPolicy("random").ok());
}

}  // namespace
}  // namespace lego::pmon
