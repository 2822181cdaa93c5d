// RegionMap: vRegion placement (GMM) with explicit views of the memory monitors.
#include "gm/region_map.h"

#include <gtest/gtest.h>

#include "protocol/p2m.h"

namespace lego::gm {
namespace {

constexpr uint64_t GiB = 1ull << 30;

TEST(RegionMap, MostFreeSpreadsALargeProcessOverBothMmons) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, GiB, 0}, {2, true, GiB, 0}};
  auto r0 = m.Assign(7, 0, mmons).value();
  auto r1 = m.Assign(7, 1, mmons).value();
  EXPECT_NE(r0, r1);                             // a >1 GiB process spans both
  EXPECT_EQ(m.Assign(7, 0, mmons).value(), r0);  // stable once assigned
  EXPECT_EQ(m.RegionCount(), 2u);
}

TEST(RegionMap, MostFreePrefersTheEmptierMmon) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, 4 * GiB, 3 * GiB}, {2, true, 2 * GiB, 0}};
  EXPECT_EQ(m.Assign(1, 0, mmons).value(), 2u);
}

TEST(RegionMap, FullOrDeadMmonIsNeverChosenWhileAnotherHasRoom) {
  for (auto policy : {PlacementPolicy::kMostFree, PlacementPolicy::kRoundRobin}) {
    RegionMap m(policy);
    std::vector<MmonView> mmons = {
        {1, true, GiB, GiB}, {2, false, GiB, 0}, {3, true, GiB, GiB - 4096}, {4, true, 64 << 20, 0}};
    for (uint64_t r = 0; r < 20; ++r) EXPECT_EQ(m.Assign(1, r, mmons).value(), 4u);
  }
}

// A region whose owner died (or left the table) is moved when asked again; one whose owner lives is not.
TEST(RegionMap, AskedAgainARegionOfADeadMmonMovesToALiveOne) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, GiB, 0}, {2, true, GiB, GiB / 2}};
  bool replaced = false;
  ASSERT_EQ(m.Assign(5, 0, mmons, &replaced).value(), 1u);
  EXPECT_FALSE(replaced);
  mmons[0].alive = false;
  EXPECT_EQ(m.Assign(5, 0, mmons, &replaced).value(), 2u);
  EXPECT_TRUE(replaced);
  replaced = false;
  mmons[0].alive = true;  // back: the region stays where it went
  EXPECT_EQ(m.Assign(5, 0, mmons, &replaced).value(), 2u);
  EXPECT_FALSE(replaced);
  EXPECT_EQ(m.Assign(5, 0, {{1, true, GiB, 0}}, &replaced).value(), 1u);  // mmon 2 gone from the table
  EXPECT_TRUE(replaced);
  // Nobody alive with room: the old owner stays recorded and the caller gets OutOfMemory.
  EXPECT_EQ(m.Assign(5, 0, {{1, false, GiB, 0}}).status().code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(m.RegionCount(), 1u);
}

TEST(RegionMap, EveryMmonFullIsOutOfMemory) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, GiB, GiB}, {2, false, GiB, 0}};
  auto r = m.Assign(1, 0, mmons);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfMemory);
  EXPECT_FALSE(m.Assign(1, 0, {}).ok());
}

TEST(RegionMap, RoundRobinRotatesInIdOrder) {
  RegionMap m(PlacementPolicy::kRoundRobin);
  std::vector<MmonView> mmons = {{3, true, GiB, 0}, {1, true, GiB, 0}, {2, true, GiB, 0}};
  std::vector<uint32_t> got;
  for (uint64_t r = 0; r < 6; ++r) got.push_back(m.Assign(9, r, mmons).value());
  EXPECT_EQ(got, (std::vector<uint32_t>{1, 2, 3, 1, 2, 3}));
}

TEST(RegionMap, ReleaseSpaceForgetsOnlyThatSpace) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, GiB, 0}};
  for (uint64_t r = 0; r < 3; ++r) (void)m.Assign(5, r, mmons);
  (void)m.Assign(6, 0, mmons);
  EXPECT_EQ(m.ReleaseSpace(5), 3u);
  EXPECT_EQ(m.RegionCount(), 1u);
  EXPECT_EQ(m.ReleaseSpace(5), 0u);
}

TEST(RegionMap, ReleaseTaggedSpacesForgetsEverySpaceOfThatPmonOnly) {
  RegionMap m(PlacementPolicy::kMostFree);
  std::vector<MmonView> mmons = {{1, true, 8 * GiB, 0}, {2, true, 8 * GiB, 0}};
  const uint64_t a = proto::MakeSpaceId(3, 0x11), b = proto::MakeSpaceId(3, 0xFF'FFFF'FFFF);
  const uint64_t other = proto::MakeSpaceId(4, 0x11), lower = proto::MakeSpaceId(2, 0xFF'FFFF'FFFF);
  for (uint64_t space : {a, b, other, lower})
    for (uint64_t region : {0, 1}) ASSERT_TRUE(m.Assign(space, region, mmons).ok());
  EXPECT_EQ(m.ReleaseTaggedSpaces(3), 4u);
  EXPECT_EQ(m.RegionCount(), 4u);
  EXPECT_EQ(m.ReleaseSpace(other), 2u);
  EXPECT_EQ(m.ReleaseSpace(lower), 2u);
  EXPECT_EQ(m.ReleaseTaggedSpaces(3), 0u);
}

TEST(RegionMap, PolicyNames) {
  PlacementPolicy p;
  EXPECT_TRUE(ParsePlacementPolicy("most-free", &p));
  EXPECT_EQ(p, PlacementPolicy::kMostFree);
  EXPECT_TRUE(ParsePlacementPolicy("round-robin", &p));
  EXPECT_EQ(p, PlacementPolicy::kRoundRobin);
  EXPECT_FALSE(ParsePlacementPolicy("random", &p));
}

}  // namespace
}  // namespace lego::gm
