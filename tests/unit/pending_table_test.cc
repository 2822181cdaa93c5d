// PendingTable: the messenger's table of calls awaiting replies (src/messaging/pending_table.h).
#include "messaging/pending_table.h"

#include <gtest/gtest.h>

#include <vector>

namespace lego::msg {
namespace {

struct FakeCall {
  uint64_t conn = 0;
};

using Table = PendingTable<FakeCall>;
constexpr uint64_t kSalt = 0xABCD'1234'0000'0000ull;

TEST(PendingTable, TakeReturnsTheCallOnceAndOnlyForItsId) {
  Table t;
  auto a = std::make_shared<FakeCall>();
  t.Insert(kSalt | 1, a);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_TRUE(t.Contains(kSalt | 1));
  EXPECT_FALSE(t.Contains(1));  // same slot, other salt: another connection's id
  EXPECT_EQ(t.Take(1), nullptr);
  EXPECT_EQ(t.Take(kSalt | 1), a);
  EXPECT_EQ(t.Take(kSalt | 1), nullptr);
  EXPECT_EQ(t.size(), 0u);
}

TEST(PendingTable, ACallStillPendingAfterAFullTurnSendsTheNextOneToOverflow) {
  Table t;
  auto old_call = std::make_shared<FakeCall>();
  auto newer = std::make_shared<FakeCall>();
  t.Insert(kSalt | 5, old_call);
  t.Insert(kSalt | (5 + Table::kSlots), newer);  // same slot
  EXPECT_EQ(t.overflow_size(), 1u);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.Contains(kSalt | (5 + Table::kSlots)));
  EXPECT_EQ(t.Take(kSalt | (5 + Table::kSlots)), newer);
  EXPECT_EQ(t.Take(kSalt | 5), old_call);
  EXPECT_EQ(t.size(), 0u);
  // The slot is free again: the next call of that slot does not overflow.
  t.Insert(kSalt | (5 + 2 * Table::kSlots), newer);
  EXPECT_EQ(t.overflow_size(), 0u);
}

TEST(PendingTable, TakeIfRemovesExactlyTheMatchingCallsFromSlotsAndOverflow) {
  Table t;
  std::vector<std::shared_ptr<FakeCall>> calls;
  for (uint64_t i = 0; i < 3 * Table::kSlots; ++i) {
    calls.push_back(std::make_shared<FakeCall>(FakeCall{i % 3}));
    t.Insert(kSalt | i, calls.back());
  }
  EXPECT_EQ(t.overflow_size(), 2 * Table::kSlots);
  std::vector<std::shared_ptr<FakeCall>> taken;
  t.TakeIf([](const FakeCall& c) { return c.conn == 1; },
           [&](std::shared_ptr<FakeCall> c) { taken.push_back(std::move(c)); });
  EXPECT_EQ(taken.size(), Table::kSlots);
  for (auto& c : taken) EXPECT_EQ(c->conn, 1u);
  EXPECT_EQ(t.size(), 2 * Table::kSlots);
  for (uint64_t i = 0; i < 3 * Table::kSlots; ++i) EXPECT_EQ(t.Contains(kSalt | i), i % 3 != 1) << i;
}

TEST(PendingTable, HoldsNonOwningPointersToo) {
  // The messenger enters a thread's reusable call object through an aliasing shared_ptr that owns nothing.
  FakeCall on_stack;
  Table t;
  t.Insert(kSalt | 9, std::shared_ptr<FakeCall>(std::shared_ptr<void>(), &on_stack));
  auto got = t.Take(kSalt | 9);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got.get(), &on_stack);
  EXPECT_EQ(got.use_count(), 0);
}

}  // namespace
}  // namespace lego::msg
