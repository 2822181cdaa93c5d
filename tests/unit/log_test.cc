// Tests for common/log.h: RateLimit (burst, suppression count, window reset) and the rate-limited macro.
#include "common/log.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace lego {
namespace {

using std::chrono::milliseconds;

TEST(RateLimitTest, AllowsBurstThenSuppressesAndCounts) {
  RateLimit rl(3, std::chrono::hours(1));
  EXPECT_TRUE(rl.Allow());
  EXPECT_TRUE(rl.Allow());
  EXPECT_TRUE(rl.Allow());
  EXPECT_EQ(rl.suppressed(), 0u);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(rl.Allow()) << i;
  EXPECT_EQ(rl.suppressed(), 10u);
}

TEST(RateLimitTest, ZeroBurstSuppressesEverything) {
  RateLimit rl(0, std::chrono::hours(1));
  EXPECT_FALSE(rl.Allow());
  EXPECT_FALSE(rl.Allow());
  EXPECT_EQ(rl.suppressed(), 2u);
}

TEST(RateLimitTest, NewWindowAllowsAnotherBurst) {
  RateLimit rl(2, milliseconds(50));
  EXPECT_TRUE(rl.Allow());
  EXPECT_TRUE(rl.Allow());
  EXPECT_FALSE(rl.Allow());
  std::this_thread::sleep_for(milliseconds(80));
  EXPECT_TRUE(rl.Allow());
  EXPECT_TRUE(rl.Allow());
  EXPECT_FALSE(rl.Allow());
  // The suppressed count is cumulative: it is not reset with the window.
  EXPECT_EQ(rl.suppressed(), 2u);
}

TEST(RateLimitTest, ConcurrentCallersNeverExceedBurstInOneWindow) {
  RateLimit rl(100, std::chrono::hours(1));
  // Open the window from one thread first: the window reset itself is not exact under contention.
  ASSERT_TRUE(rl.Allow());
  std::atomic<int> allowed{1};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (rl.Allow()) allowed.fetch_add(1);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 100);
  EXPECT_EQ(rl.suppressed(), 4001u - 100u);
}

TEST(RateLimitTest, MacroCompilesAndDoesNotThrow) {
  InitLogging("log_test", "error");  // warn lines from the macro are filtered out
  for (int i = 0; i < 50; ++i) LEGO_LOG_RATELIMITED("test_event i={}", i);
  SUCCEED();
}

}  // namespace
}  // namespace lego
