// Clang thread-safety annotations (leveldb port/thread_annotations.h). With clang and -Wthread-safety the
// compiler checks that GUARDED_BY members are only touched under their mutex; with gcc they vanish.
#pragma once

#include <mutex>

#if defined(__clang__)
#define LEGO_TSA(x) __attribute__((x))
#else
#define LEGO_TSA(x)
#endif

#define GUARDED_BY(x) LEGO_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) LEGO_TSA(pt_guarded_by(x))
#define REQUIRES(...) LEGO_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) LEGO_TSA(locks_excluded(__VA_ARGS__))
#define CAPABILITY(x) LEGO_TSA(capability(x))
#define ACQUIRE(...) LEGO_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) LEGO_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) LEGO_TSA(try_acquire_capability(__VA_ARGS__))
#define SCOPED_CAPABILITY LEGO_TSA(scoped_lockable)
#define NO_THREAD_SAFETY_ANALYSIS LEGO_TSA(no_thread_safety_analysis)

namespace lego {

// std::mutex with capability annotations so -Wthread-safety can check users.
class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  // Takes over a lock the caller already holds (after a successful try_lock).
  MutexLock(Mutex& mu, std::adopt_lock_t) REQUIRES(mu) : mu_(mu) {}
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace lego
