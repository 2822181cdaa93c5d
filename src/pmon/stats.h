// Per-process and per-pmon statistics: counters and a fault-latency histogram. Lock-free to update (the
// fault path), read by `lego ps`, `lego stats` and `lego top`.
#pragma once

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>

namespace lego::pmon {

// Latency histogram over quarter-octave buckets of nanoseconds (about 19% resolution), 1 ns .. ~1 s.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 128;
  void Record(uint64_t ns) {
    const int b =
        ns <= 1 ? 0 : std::min(kBuckets - 1, static_cast<int>(std::log2(static_cast<double>(ns)) * 4));
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
  }
  // The upper bound of the bucket holding quantile q (0 < q <= 1), in ns; 0 if empty.
  uint64_t Quantile(double q) const {
    uint64_t total = 0;
    for (auto& b : buckets_) total += b.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= rank) return static_cast<uint64_t>(std::exp2((i + 1) / 4.0));
    }
    return 0;
  }
  // How many samples were at most 2^octave ns (cumulative, as a Prometheus histogram's `le` buckets).
  uint64_t CountAtMostPow2(int octave) const {
    uint64_t n = 0;
    for (int i = 0; i < kBuckets && i + 1 <= 4 * octave; ++i)
      n += buckets_[i].load(std::memory_order_relaxed);
    return n;
  }
  uint64_t Count() const { return CountAtMostPow2(kBuckets); }
  void MergeInto(LatencyHistogram& to) const {
    for (int i = 0; i < kBuckets; ++i)
      to.buckets_[i].fetch_add(buckets_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

// What happened to one process's memory. The same struct, summed, is the pmon's total.
struct MemStats {
  std::atomic<uint64_t> faults{0};           // userfaultfd faults handled (missing + write-protect)
  std::atomic<uint64_t> misses{0};           // faults that fetched from a memory monitor
  std::atomic<uint64_t> hits{0};             // faults resolved locally: first-touch zero fill, write-protect
  std::atomic<uint64_t> zero_filled{0};      // pages zero-filled on first touch (no network trip)
  std::atomic<uint64_t> fetched_pages{0};    // pages read from memory monitors (misses + prefetch)
  std::atomic<uint64_t> prefetch_issued{0};  // pages fetched ahead of a miss
  std::atomic<uint64_t> prefetch_used{0};    // of those, pages the program went on to use
  std::atomic<uint64_t> evicted_clean{0};    // victims dropped without a write-back
  std::atomic<uint64_t> evicted_dirty{0};    // victims written back to a memory monitor
  std::atomic<uint64_t> writeback_pages{0};  // pages written to memory monitors
  std::atomic<uint64_t> freed_remote_pages{0};  // pages freed on memory monitors (munmap, exit)
  std::atomic<uint64_t> overcommit_pages{0};    // pages installed past the budget because eviction stalled
  std::atomic<uint64_t> evict_batches{0};       // eviction batches run
  std::atomic<uint64_t> evict_ns{0};            // time spent in them
  std::atomic<uint64_t> room_wait_ns{0};        // time faults waited for the evictor to make room
  LatencyHistogram fault_latency;               // pmon-side service time of each fault
};

}  // namespace lego::pmon
