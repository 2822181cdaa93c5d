// fault_lat: the latency of a remote 4 KB page fault as the program sees it.
//   fault_lat MB [seed]
// Mallocs MB megabytes and writes every page (under Lego, with a small ExCache, most of it is pushed out to
// the memory monitors), then reads one word per page in a random order (untimed: afterwards the ExCache is
// full of CLEAN pages), then reads one word per page in another random order, timing every access with
// clock_gettime. Accesses over 1 us are counted as faults; prints their count, p50, p99 and mean (ns), the
// p50 of all accesses and a checksum that is the same under Lego and locally. Exits 1 on a wrong value.
#include <stdio.h>
#include <string.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fault_lat MB [seed]\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10);
  const uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  const size_t pages = mb * 256, words = 512;
  uint64_t* mem = malloc(pages * 4096);
  size_t* perm = random_perm(pages, seed);
  uint64_t* lat = malloc(pages * sizeof *lat);
  uint64_t* flat = malloc(pages * sizeof *flat);
  if (!mem || !perm || !lat || !flat) {
    printf("malloc failed\n");
    return 2;
  }
  for (size_t p = 0; p < pages; ++p) {
    memset(mem + p * words, (int)(p & 0xff), 4096);
    mem[p * words] = mix64(p);
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < pages; ++i) sum += mem[perm[i] * words + 7];  // read-only pass
  free(perm);
  perm = random_perm(pages, seed + 1000);
  if (!perm) return 2;
  for (size_t i = 0; i < pages; ++i) {
    const size_t p = perm[i];
    volatile uint64_t* w = mem + p * words;
    const uint64_t t0 = now_ns();
    const uint64_t v = *w;
    const uint64_t t1 = now_ns();
    lat[i] = t1 - t0;
    if (v != mix64(p)) {
      printf("MISMATCH page %zu\n", p);
      return 1;
    }
    sum += v;
  }
  size_t nf = 0;
  double total = 0;
  for (size_t i = 0; i < pages; ++i)
    if (lat[i] > 1000) {
      flat[nf++] = lat[i];
      total += (double)lat[i];
    }
  const uint64_t p50 = percentile(flat, nf, 50), p99 = percentile(flat, nf, 99);
  const uint64_t all50 = percentile(lat, pages, 50);
  printf("fault_lat mb=%zu accesses=%zu faults=%zu fault_p50_ns=%llu fault_p99_ns=%llu fault_mean_ns=%.0f "
         "all_p50_ns=%llu checksum=%016llx\n",
         mb, pages, nf, (unsigned long long)p50, (unsigned long long)p99, nf ? total / (double)nf : 0.0,
         (unsigned long long)all50, (unsigned long long)sum);
  return 0;
}
