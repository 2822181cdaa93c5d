// WorkQueue: jobs with a key run at most max_per_key at a time, and jobs of other keys pass those waiting.
#include "common/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace lego {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueue, AKeyAtItsLimitDoesNotHoldUpOthers) {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int running1 = 0, max_running1 = 0, done1 = 0;
  WorkQueue q(4, 2);  // last: destroyed (its threads joined) before what its jobs use
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(q.Submit(1, [&] {
      std::unique_lock l(mu);
      max_running1 = std::max(max_running1, ++running1);
      cv.notify_all();
      cv.wait(l, [&] { return open; });
      --running1;
      ++done1;
      cv.notify_all();
    }));
  std::atomic<int> done2{0}, done0{0};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.Submit(2, [&] { ++done2; }));
  ASSERT_TRUE(q.Submit([&] { ++done0; }));  // no key: never limited
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((done2 < 3 || done0 < 1) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(done2.load(), 3);  // ran although six jobs of key 1 came first and block
  EXPECT_EQ(done0.load(), 1);
  {
    std::unique_lock l(mu);
    EXPECT_TRUE(cv.wait_for(l, 5s, [&] { return running1 == 2; }));
    open = true;
    cv.notify_all();
    EXPECT_TRUE(cv.wait_for(l, 5s, [&] { return done1 == 6; }));
    EXPECT_EQ(max_running1, 2);
  }
}

TEST(WorkQueue, WithoutALimitKeysDoNotMatter) {
  WorkQueue q(2);
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(q.Submit(static_cast<uint64_t>(i % 3), [&] { ++done; }));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (done < 100 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(done.load(), 100);
  q.Stop();
  EXPECT_FALSE(q.Submit([] {}));
}

}  // namespace
}  // namespace lego
