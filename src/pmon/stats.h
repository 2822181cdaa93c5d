// Per-process and per-pmon statistics: counters and a fault-latency histogram. Lock-free to update (the
// fault path), read by `lego ps`, `lego stats` and `lego top`.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>

namespace lego::pmon {

// Latency histogram of nanoseconds with log-linear buckets (as HdrHistogram's): values below 16 have a
// bucket each, and every power of two above is split into 16 equal sub-buckets, so a bucket is at most 1/16
// (6.25%) of its lower bound wide; 0 ns .. 2^44 ns (about 4.9 hours), larger values in the last bucket.
// Recording is two atomic-free integer operations and two relaxed adds (the bucket and the sum; the fault
// path).
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr int kSub = 1 << kSubBits;  // sub-buckets per power of two
  static constexpr int kMaxOctave = 44;       // values up to 2^kMaxOctave - 1 get their own bucket
  static constexpr int kBuckets = (kMaxOctave - kSubBits + 1) * kSub;

  void Record(uint64_t ns) {
    buckets_[Index(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
  }

  // Bucket of a value, and a bucket's range [Lower(i), Lower(i + 1)).
  static int Index(uint64_t ns) {
    if (ns < kSub) return static_cast<int>(ns);
    const int octave = 63 - std::countl_zero(ns);  // >= kSubBits
    if (octave >= kMaxOctave) return kBuckets - 1;
    const int sub = static_cast<int>((ns >> (octave - kSubBits)) & (kSub - 1));
    return (octave - kSubBits + 1) * kSub + sub;
  }
  static uint64_t Lower(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    const int octave = i / kSub + kSubBits - 1;
    return (uint64_t{kSub} + static_cast<uint64_t>(i % kSub)) << (octave - kSubBits);
  }

  // The value at quantile q (0 < q <= 1), in ns, interpolated linearly within its bucket (as Prometheus's
  // histogram_quantile does); 0 if empty. Within 6.25% of the true quantile.
  uint64_t Quantile(double q) const {
    uint64_t counts[kBuckets];
    uint64_t total = 0;
    for (int i = 0; i < kBuckets; ++i) total += counts[i] = buckets_[i].load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const double rank = std::max(1.0, std::ceil(q * static_cast<double>(total)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      if (counts[i] == 0 || static_cast<double>(seen + counts[i]) < rank) {
        seen += counts[i];
        continue;
      }
      // The rank-th sample, the bucket's counts[i] samples taken as spread evenly over [lo, hi), each at the
      // middle of its share (so that a bucket of one value, below 16 ns, gives that value).
      const double lo = static_cast<double>(Lower(i)), hi = static_cast<double>(Lower(i + 1));
      const double frac = (rank - static_cast<double>(seen) - 0.5) / static_cast<double>(counts[i]);
      return static_cast<uint64_t>(lo + (hi - lo) * frac);
    }
    return Lower(kBuckets - 1);
  }
  // How many samples were below 2^octave ns (cumulative, as a Prometheus histogram's `le` buckets; a power
  // of two is always a bucket boundary).
  uint64_t CountBelowPow2(int octave) const {
    const int end = octave >= kMaxOctave ? kBuckets : Index(uint64_t{1} << octave);
    uint64_t n = 0;
    for (int i = 0; i < end; ++i) n += buckets_[i].load(std::memory_order_relaxed);
    return n;
  }
  uint64_t Count() const { return CountBelowPow2(kMaxOctave); }
  // The sum of every value recorded, in ns (exact: not from the buckets).
  uint64_t Sum() const { return sum_.load(std::memory_order_relaxed); }
  void MergeInto(LatencyHistogram& to) const {
    for (int i = 0; i < kBuckets; ++i)
      to.buckets_[i].fetch_add(buckets_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    to.sum_.fetch_add(Sum(), std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_{0};
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
  std::atomic<uint64_t> fork_refetched{0};      // fork child's pages the parent dropped as it forked
  std::atomic<uint64_t> evict_batches{0};       // eviction batches run
  std::atomic<uint64_t> evict_ns{0};            // time spent in them
  std::atomic<uint64_t> room_wait_ns{0};        // time faults waited for the evictor to make room
  LatencyHistogram fault_latency;               // pmon-side service time of each fault, and their sum
};

}  // namespace lego::pmon
