// Shared helpers of the memory benchmark programs (bench/run_memory_bench.sh): clock, hash, a random
// permutation of page indices, percentiles. Header-only, C11.
#ifndef LEGO_BENCH_COMMON_H
#define LEGO_BENCH_COMMON_H
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// A pseudo-random permutation of 0..n-1 (Fisher-Yates with a seeded xorshift): every page exactly once.
static inline size_t* random_perm(size_t n, uint64_t seed) {
  size_t* p = malloc(n * sizeof *p);
  if (!p) return NULL;
  for (size_t i = 0; i < n; ++i) p[i] = i;
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = n; i > 1; --i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    size_t j = (size_t)(s % i);
    size_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
  }
  return p;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

// Percentile (0..100) of v[0..n) after sorting it in place; 0 when empty.
static inline uint64_t percentile(uint64_t* v, size_t n, double pct) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, cmp_u64);
  size_t i = (size_t)(pct / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}
#endif
