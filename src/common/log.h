// Structured logging. Every line is `TIME level=LEVEL comp=NAME event=WHAT key=value ...` so that logs can
// be grepped and parsed (FoundationDB TraceEvent style). Use LEGO_LOG_* with an event name first:
//   LEGO_LOG_INFO("member_dead id={} kind={} silent_ms={}", id, kind, ms);
// Hot paths use LEGO_LOG_RATELIMITED so that a flood of bad input cannot flood the disk.
// Thread safety: all functions are safe from any thread after InitLogging.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace lego {

// Sets the process-wide logger: to stderr, with `comp=component`. level: trace|debug|info|warn|error.
void InitLogging(std::string_view component, std::string_view level = "info");

// Allows at most `burst` events per `period`; counts what it suppressed (LegoOS DEFINE_RATELIMIT_STATE).
class RateLimit {
 public:
  RateLimit(int burst, std::chrono::milliseconds period) : burst_(burst), period_ms_(period.count()) {}
  // True if this event may be logged now.
  bool Allow();
  uint64_t suppressed() const { return suppressed_.load(std::memory_order_relaxed); }

 private:
  const int burst_;
  const int64_t period_ms_;
  std::atomic<uint64_t> state_{0};  // (window number mod 2^24) << 40 | events in that window
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace lego

#define LEGO_LOG_TRACE(...) SPDLOG_TRACE("event=" __VA_ARGS__)
#define LEGO_LOG_DEBUG(...) spdlog::debug("event=" __VA_ARGS__)
#define LEGO_LOG_INFO(...) spdlog::info("event=" __VA_ARGS__)
#define LEGO_LOG_WARN(...) spdlog::warn("event=" __VA_ARGS__)
#define LEGO_LOG_ERROR(...) spdlog::error("event=" __VA_ARGS__)
// Logs at warn level at most 10 times per second per call site.
#define LEGO_LOG_RATELIMITED(...)                                           \
  do {                                                                      \
    static ::lego::RateLimit _lego_rl(10, std::chrono::milliseconds(1000)); \
    if (_lego_rl.Allow()) spdlog::warn("event=" __VA_ARGS__);               \
  } while (0)
