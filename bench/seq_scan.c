// seq_scan: sequential read bandwidth over a region larger than the ExCache.
//   seq_scan MB
// Mallocs MB megabytes, writes every word, then reads every word front to back (timed) and prints the
// bandwidth in GB/s (10^9 bytes) and a checksum that is the same under Lego and locally.
#include <stdio.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: seq_scan MB\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10);
  const size_t bytes = mb << 20, n = bytes / 8;
  uint64_t* mem = malloc(bytes);
  if (!mem) {
    printf("malloc failed\n");
    return 2;
  }
  for (size_t i = 0; i < n; ++i) mem[i] = i * 0x9e3779b97f4a7c15ULL;
  const uint64_t t0 = now_ns();
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += mem[i] ^ (i >> 9);
  const uint64_t t1 = now_ns();
  printf("seq_scan mb=%zu scan_ns=%llu gbps=%.3f checksum=%016llx\n", mb, (unsigned long long)(t1 - t0),
         (double)bytes / (double)(t1 - t0), (unsigned long long)sum);
  return 0;
}
