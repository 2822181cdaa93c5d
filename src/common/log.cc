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
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  int64_t start = window_start_ms_.load(std::memory_order_relaxed);
  if (now - start >= period_ms_) {
    if (window_start_ms_.compare_exchange_strong(start, now)) count_.store(0);
  }
  if (count_.fetch_add(1, std::memory_order_relaxed) < burst_) return true;
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace lego
