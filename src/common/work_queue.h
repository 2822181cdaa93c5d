// WorkQueue: a few threads that run submitted jobs in FIFO order. Daemons use it to move request handlers
// that block (disk I/O, calls to other daemons) off the messenger's progress thread, which must not block.
//
// Thread safety: Submit may be called from any thread. Stop() drops jobs not yet started (their Responders
// are destroyed, so their callers get an error reply) and joins the threads; Submit after Stop returns false.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lego {

class WorkQueue {
 public:
  explicit WorkQueue(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~WorkQueue() { Stop(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  bool Submit(std::function<void()> job) {
    {
      std::lock_guard lk(mu_);
      if (stop_) return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  void Stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      dropped.swap(jobs_);
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    // `dropped` is destroyed here, outside the lock and after the threads are gone.
  }

 private:
  void Loop() {
    std::unique_lock lk(mu_);
    while (true) {
      cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      job();
      job = nullptr;
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
};

}  // namespace lego
