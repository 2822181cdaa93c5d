// LatencyHistogram (src/pmon/stats.h): the fault-latency histogram behind `lego stats`, `lego ps` and the
// Prometheus fault-latency buckets.
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "pmon/stats.h"

namespace lego::pmon {
namespace {

using H = LatencyHistogram;

// Every value lies in its bucket, and a bucket above 16 ns is at most 1/16 of its lower bound wide.
TEST(LatencyHistogram, EveryValueLiesInANarrowBucket) {
  std::vector<uint64_t> values = {0, 1, 2, 15, 16, 17, 31, 32, 33, 1000, 1023, 1024, 1025, 11585, 65535};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) values.push_back(rng() >> (20 + rng() % 44));  // spread over the octaves
  for (int o = 5; o < H::kMaxOctave; ++o)
    for (uint64_t d : {uint64_t{0}, uint64_t{1}}) values.push_back((uint64_t{1} << o) - d);
  for (uint64_t v : values) {
    if (v >= (uint64_t{1} << H::kMaxOctave)) continue;
    const int i = H::Index(v);
    ASSERT_GE(i, 0) << v;
    ASSERT_LT(i, H::kBuckets) << v;
    EXPECT_LE(H::Lower(i), v) << v;
    EXPECT_LT(v, H::Lower(i + 1)) << v;
    if (v >= 16) {
      EXPECT_LE(H::Lower(i + 1) - H::Lower(i), H::Lower(i) / 16) << v;
    }
  }
  EXPECT_EQ(H::Index(UINT64_MAX), H::kBuckets - 1);  // too large: the last bucket, not out of range
  EXPECT_EQ(H::Index(uint64_t{1} << H::kMaxOctave), H::kBuckets - 1);
}

// Quantiles are within the bucket resolution of the true ones (the old quarter-octave histogram reported a
// bucket's upper bound: up to 19% high).
TEST(LatencyHistogram, QuantilesAreWithinSixPercent) {
  H h;
  EXPECT_EQ(h.Quantile(0.5), 0u);  // empty
  std::vector<uint64_t> samples;
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> d(std::log(12000.0), 0.6);  // fault times: ~12 us, long tail
  for (int i = 0; i < 200000; ++i) samples.push_back(static_cast<uint64_t>(d(rng)));
  for (uint64_t s : samples) h.Record(s);
  std::sort(samples.begin(), samples.end());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    const double want = static_cast<double>(samples[static_cast<size_t>(std::ceil(q * samples.size())) - 1]);
    const double got = static_cast<double>(h.Quantile(q));
    EXPECT_NEAR(got, want, want / 16) << "q=" << q;
  }
  // One value many times: its quantiles stay in its bucket.
  H one;
  for (int i = 0; i < 1000; ++i) one.Record(11000);
  const int b = H::Index(11000);
  EXPECT_GE(one.Quantile(0.5), H::Lower(b));
  EXPECT_LT(one.Quantile(0.5), H::Lower(b + 1));
  EXPECT_LT(one.Quantile(1.0), H::Lower(b + 1));
  H five;  // below 16 ns every value has a bucket of its own: exact
  for (int i = 0; i < 10; ++i) five.Record(5);
  EXPECT_EQ(five.Quantile(0.5), 5u);
  EXPECT_EQ(five.Quantile(1.0), 5u);
}

TEST(LatencyHistogram, CountsBelowPowersOfTwoAndMergesWithTheSum) {
  H h;
  for (int i = 0; i < 100; ++i) h.Record(1000);
  for (int i = 0; i < 50; ++i) h.Record(5000);
  h.Record(4096);  // a power of two counts as above it: below 2^12 it is not
  EXPECT_EQ(h.CountBelowPow2(9), 0u);
  EXPECT_EQ(h.CountBelowPow2(10), 100u);
  EXPECT_EQ(h.CountBelowPow2(12), 100u);
  EXPECT_EQ(h.CountBelowPow2(13), 151u);
  EXPECT_EQ(h.Count(), 151u);
  H total;
  h.MergeInto(total);
  h.MergeInto(total);
  EXPECT_EQ(total.Count(), 302u);
  EXPECT_EQ(total.Quantile(0.5), h.Quantile(0.5));
  // The sum is exact, not read off the buckets (lego_pmon_fault_service_seconds_total).
  EXPECT_EQ(h.Sum(), 100u * 1000 + 50u * 5000 + 4096);
  EXPECT_EQ(total.Sum(), 2 * h.Sum());
  H huge;  // past the last bucket: still summed exactly
  huge.Record(uint64_t{1} << 50);
  EXPECT_EQ(huge.Sum(), uint64_t{1} << 50);
}

}  // namespace
}  // namespace lego::pmon
