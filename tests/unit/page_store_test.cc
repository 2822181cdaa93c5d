// PageStore: the memory monitor's page pool.
#include "mmon/page_store.h"

#include <algorithm>

#include <gtest/gtest.h>

namespace lego::mmon {
namespace {

std::vector<uint8_t> Page(uint8_t fill) { return std::vector<uint8_t>(kPageSize, fill); }

TEST(PageStore, WritesReadBackAndAbsentPagesAreReported) {
  auto s = PageStore::Create(16 * kPageSize).value();
  auto a = Page(1), b = Page(2);
  PageStore::PageRef pages[] = {{0x1000, a}, {0x7000, b}};
  ASSERT_TRUE(s->Write(7, pages).ok());
  std::vector<uint8_t> out(kPageSize);
  ASSERT_TRUE(s->Read(7, 0x1000, out.data()));
  EXPECT_EQ(out, a);
  ASSERT_TRUE(s->Read(7, 0x7000, out.data()));
  EXPECT_EQ(out, b);
  EXPECT_FALSE(s->Read(7, 0x2000, out.data()));
  EXPECT_FALSE(s->Read(8, 0x1000, out.data()));  // spaces are separate
  EXPECT_EQ(s->used_bytes(), 2 * kPageSize);
  // Overwrite does not take a new frame.
  auto c = Page(3);
  PageStore::PageRef again[] = {{0x1000, c}};
  ASSERT_TRUE(s->Write(7, again).ok());
  ASSERT_TRUE(s->Read(7, 0x1000, out.data()));
  EXPECT_EQ(out, c);
  EXPECT_EQ(s->used_bytes(), 2 * kPageSize);
}

TEST(PageStore, AppendPagesGivesPresenceBytesThenPresentPagesInRequestOrder) {
  auto s = PageStore::Create(16 * kPageSize).value();
  auto a = Page(1), b = Page(2);
  PageStore::PageRef pages[] = {{0x1000, a}, {0x7000, b}};
  ASSERT_TRUE(s->Write(7, pages).ok());
  std::vector<uint8_t> out = {0xee, 0xee};  // a header already there stays
  const uint64_t want[] = {0x7000, 0x2000, 0x1000};
  EXPECT_EQ(s->AppendPages(7, want, &out), 2u);
  ASSERT_EQ(out.size(), 2 + 3 + 2 * kPageSize);
  EXPECT_EQ(out[0], 0xee);
  EXPECT_EQ(out[2], 1);
  EXPECT_EQ(out[3], 0);
  EXPECT_EQ(out[4], 1);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), out.begin() + 5));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin() + 5 + kPageSize));
  // An unknown space: every presence byte 0, no pages.
  std::vector<uint8_t> none;
  EXPECT_EQ(s->AppendPages(8, want, &none), 0u);
  EXPECT_EQ(none, std::vector<uint8_t>(3, 0));
}

TEST(PageStore, FullPoolRefusesWholeBatchAndFreeingMakesRoom) {
  auto s = PageStore::Create(4 * kPageSize).value();
  auto p = Page(9);
  std::vector<PageStore::PageRef> three = {{0, p}, {kPageSize, p}, {2 * kPageSize, p}};
  ASSERT_TRUE(s->Write(1, three).ok());
  std::vector<PageStore::PageRef> two = {{3 * kPageSize, p}, {4 * kPageSize, p}};
  Status st = s->Write(1, two);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << st.ToString();
  std::vector<uint8_t> out(kPageSize);
  EXPECT_FALSE(s->Read(1, 3 * kPageSize, out.data()));  // all or nothing
  EXPECT_EQ(s->FreeRange(1, kPageSize, 2 * kPageSize), 2u);
  EXPECT_TRUE(s->Write(1, two).ok());
  EXPECT_EQ(s->used_bytes(), 3 * kPageSize);
  EXPECT_EQ(s->DestroySpace(1), 3u);
  EXPECT_EQ(s->used_bytes(), 0u);
  EXPECT_EQ(s->space_count(), 0u);
  EXPECT_EQ(s->DestroySpace(1), 0u);
}

TEST(PageStore, RejectsUnalignedAndWrongSizedPages) {
  auto s = PageStore::Create(4 * kPageSize).value();
  auto p = Page(1);
  PageStore::PageRef bad[] = {{0x1001, p}};
  EXPECT_EQ(s->Write(1, bad).code(), StatusCode::kInvalidArgument);
  std::vector<uint8_t> small(100);
  PageStore::PageRef bad2[] = {{0x1000, small}};
  EXPECT_EQ(s->Write(1, bad2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->used_bytes(), 0u);
}

TEST(PageStore, FreeRangeHandlesHugeAndOverflowingRanges) {
  auto s = PageStore::Create(8 * kPageSize).value();
  auto p = Page(1);
  std::vector<PageStore::PageRef> pages = {{0, p}, {1ull << 40, p}, {UINT64_MAX - kPageSize + 1, p}};
  ASSERT_TRUE(s->Write(2, pages).ok());
  EXPECT_EQ(s->FreeRange(2, kPageSize, UINT64_MAX), 2u);  // wraps: everything from one page up
  EXPECT_EQ(s->FreeRange(2, 0, kPageSize), 1u);
  EXPECT_EQ(s->used_bytes(), 0u);
}

TEST(PageStore, ForkSharesFramesCopyOnWrite) {
  auto s = PageStore::Create(4 * kPageSize).value();
  auto a = Page(1), b = Page(2), c = Page(3);
  PageStore::PageRef pages[] = {{0x1000, a}, {0x2000, b}};
  ASSERT_TRUE(s->Write(1, pages).ok());
  ASSERT_EQ(s->ForkSpace(1, 2).value(), 2u);
  EXPECT_EQ(s->used_bytes(), 2 * kPageSize);  // shared, not copied
  EXPECT_EQ(s->ForkSpace(1, 2).status().code(), StatusCode::kAlreadyExists);
  // The child writes one page: it gets its own frame; the parent still reads its data.
  PageStore::PageRef child_write[] = {{0x1000, c}};
  ASSERT_TRUE(s->Write(2, child_write).ok());
  EXPECT_EQ(s->used_bytes(), 3 * kPageSize);
  std::vector<uint8_t> out(kPageSize);
  ASSERT_TRUE(s->Read(1, 0x1000, out.data()));
  EXPECT_EQ(out, a);
  ASSERT_TRUE(s->Read(2, 0x1000, out.data()));
  EXPECT_EQ(out, c);
  ASSERT_TRUE(s->Read(2, 0x2000, out.data()));
  EXPECT_EQ(out, b);
  // A shared frame survives the parent's exit and is freed with the last space.
  EXPECT_EQ(s->DestroySpace(1), 2u);
  EXPECT_EQ(s->used_bytes(), 2 * kPageSize);
  ASSERT_TRUE(s->Read(2, 0x2000, out.data()));
  EXPECT_EQ(out, b);
  EXPECT_EQ(s->DestroySpace(2), 2u);
  EXPECT_EQ(s->used_bytes(), 0u);
}

// Frees give frames back in runs (one madvise each): every frame comes back, exactly once, whatever the
// order.
TEST(PageStore, FreedRunsOfFramesAreAllReusable) {
  auto s = PageStore::Create(8 * kPageSize).value();
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 8; ++i) data.push_back(Page(static_cast<uint8_t>(10 + i)));
  std::vector<PageStore::PageRef> all;
  for (int i = 0; i < 8; ++i) all.push_back({0x10000 + uint64_t(i) * kPageSize, data[i]});
  ASSERT_TRUE(s->Write(1, all).ok());
  // Pages 1, 2, 5 and 6: two runs.
  EXPECT_EQ(s->FreeRange(1, 0x10000 + kPageSize, 2 * kPageSize), 2u);
  EXPECT_EQ(s->FreeRange(1, 0x10000 + 5 * kPageSize, 2 * kPageSize), 2u);
  EXPECT_EQ(s->used_bytes(), 4 * kPageSize);
  std::vector<PageStore::PageRef> four(all.begin(), all.begin() + 4);
  ASSERT_TRUE(s->Write(2, four).ok());  // exactly the four freed frames
  EXPECT_EQ(s->used_bytes(), 8 * kPageSize);
  std::vector<uint8_t> out(kPageSize);
  for (int i : {0, 3, 4, 7}) {  // space 1's remaining pages were not touched
    ASSERT_TRUE(s->Read(1, 0x10000 + uint64_t(i) * kPageSize, out.data()));
    EXPECT_EQ(out, data[i]) << i;
  }
  EXPECT_EQ(s->DestroySpace(1), 4u);
  EXPECT_EQ(s->DestroySpace(2), 4u);
  EXPECT_EQ(s->used_bytes(), 0u);
  ASSERT_TRUE(s->Write(3, all).ok());  // all eight again
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(s->Read(3, 0x10000 + uint64_t(i) * kPageSize, out.data()));
    EXPECT_EQ(out, data[i]) << i;
  }
  EXPECT_FALSE(s->Write(4, four).ok());  // and no frame twice in the free list
}

TEST(PageStore, WriteToSharedFrameNeedsRoom) {
  auto s = PageStore::Create(2 * kPageSize).value();
  auto a = Page(1), b = Page(2);
  PageStore::PageRef pages[] = {{0x1000, a}, {0x2000, a}};
  ASSERT_TRUE(s->Write(1, pages).ok());
  ASSERT_TRUE(s->ForkSpace(1, 2).ok());
  PageStore::PageRef w[] = {{0x1000, b}};
  EXPECT_EQ(s->Write(2, w).code(), StatusCode::kOutOfMemory);  // copy-on-write needs a frame: none left
  std::vector<uint8_t> out(kPageSize);
  ASSERT_TRUE(s->Read(2, 0x1000, out.data()));
  EXPECT_EQ(out, a);  // nothing changed
}

TEST(PageStore, CapacityValidation) {
  EXPECT_EQ(PageStore::Create(100).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(PageStore::Create(1ull << 30).ok());  // reserved, not touched
}

}  // namespace
}  // namespace lego::mmon
