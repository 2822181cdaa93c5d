#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace lego {

void InitLogging(std::string_view component, std::string_view level) {
  auto logger = spdlog::stderr_logger_mt(std::string(component));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ level=%l comp=%n pid=%P %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool RateLimit::Allow() {
  // One 64-bit word holds (window number << 24 | count in window), so that opening a new window and counting
  // in it cannot race (a separate reset of the count could wipe increments of other threads).
  const uint64_t now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now().time_since_epoch())
                                                 .count());
  const uint64_t window = now / static_cast<uint64_t>(period_ms_);
  uint64_t cur = state_.load(std::memory_order_relaxed);
  while (true) {
    uint64_t count = (cur >> 40) == (window & 0xffffff) ? (cur & 0xffffffffffull) : 0;
    if (count >= static_cast<uint64_t>(burst_)) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    uint64_t next = ((window & 0xffffff) << 40) | (count + 1);
    if (state_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return true;
  }
}

}  // namespace lego
