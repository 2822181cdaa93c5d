// WorkQueue: a few threads that run submitted jobs in FIFO order. Daemons use it to move request handlers
// that block (disk I/O, calls to other daemons) off the messenger's progress thread, which must not block.
//
// Jobs may carry a key (the mmon uses the smon of a file request's vNode): with max_per_key > 0, at most that
// many jobs of one key run at once, and a job whose key is at its limit waits while later jobs of other keys
// run. So jobs that block for long (those for a stopped smon) hold at most max_per_key threads, and the
// others keep serving the other keys. Key 0 is no key (never limited).
//
// Thread safety: Submit may be called from any thread. Stop() drops jobs not yet started (their Responders
// are destroyed, so their callers get an error reply) and joins the threads; Submit after Stop returns false.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace lego {

class WorkQueue {
 public:
  explicit WorkQueue(int threads, int max_per_key = 0) : max_per_key_(max_per_key) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~WorkQueue() { Stop(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  bool Submit(std::function<void()> job) { return Submit(0, std::move(job)); }
  bool Submit(uint64_t key, std::function<void()> job) {
    {
      std::lock_guard lk(mu_);
      if (stop_) return false;
      jobs_.push_back({key, std::move(job)});
    }
    cv_.notify_one();
    return true;
  }

  void Stop() {
    std::deque<Job> dropped;
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
  struct Job {
    uint64_t key;
    std::function<void()> fn;
  };

  // The first job whose key is not at its limit, or end().
  std::deque<Job>::iterator Runnable() {
    if (max_per_key_ <= 0) return jobs_.begin();
    return std::find_if(jobs_.begin(), jobs_.end(), [this](const Job& j) {
      if (j.key == 0) return true;
      auto it = running_.find(j.key);
      return it == running_.end() || it->second < max_per_key_;
    });
  }

  void Loop() {
    std::unique_lock lk(mu_);
    while (true) {
      std::deque<Job>::iterator it;
      cv_.wait(lk, [&] { return stop_ || (it = Runnable()) != jobs_.end(); });
      if (stop_) return;
      Job job = std::move(*it);
      jobs_.erase(it);
      if (job.key != 0 && max_per_key_ > 0) ++running_[job.key];
      lk.unlock();
      job.fn();
      job.fn = nullptr;
      lk.lock();
      if (job.key != 0 && max_per_key_ > 0 && --running_[job.key] == 0) running_.erase(job.key);
      if (max_per_key_ > 0) cv_.notify_all();  // a job waiting for this key may run now
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  const int max_per_key_;
  std::deque<Job> jobs_;
  std::unordered_map<uint64_t, int> running_;  // jobs running per key (only with max_per_key_ > 0)
  std::vector<std::thread> threads_;
};

}  // namespace lego
