// workload: a working set touched in sequential or random page order, timed, for comparing Lego with
// all-local memory and with Linux swap under the same local-memory limit.
//   workload MB PASSES seq|random|runs
// Pass 0 writes every page (64 words of each); passes 1..PASSES-1 visit every page once, in order, in a
// fresh random permutation, or (runs) in runs of 32 pages visited in order, the runs in a random order (a
// scan of random extents: each run starts a stream that the next run breaks), verify 8 words of it and add
// to one word (so the page is dirtied). Prints the
// time of the first pass and of the later passes, and a checksum that is the same under Lego and locally.
// Exits 1 on a wrong value.
#include <stdio.h>
#include <string.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: workload MB PASSES seq|random|runs\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10);
  const int passes = atoi(argv[2]);
  const int random = strcmp(argv[3], "random") == 0, runs = strcmp(argv[3], "runs") == 0;
  if (!random && !runs && strcmp(argv[3], "seq") != 0) {
    fprintf(stderr, "workload: order must be seq, random or runs, not %s\n", argv[3]);
    return 2;
  }
  const size_t pages = mb * 256, words = 512, run_pages = 32;
  // Page-aligned: under Lego, jemalloc (cache-oblivious large allocations) starts a plain malloc of this
  // size at a random cache-line offset inside its first page, so every "page" visited below would straddle
  // two real pages and a random pass would touch (and miss on) about twice as many pages as intended.
  uint64_t* mem = aligned_alloc(4096, pages * 4096);
  if (!mem) {
    printf("malloc failed\n");
    return 2;
  }
  const uint64_t t0 = now_ns();
  for (size_t p = 0; p < pages; ++p)
    for (size_t w = 0; w < words; w += 8) mem[p * words + w] = mix64(p * words + w);
  const uint64_t t1 = now_ns();
  uint64_t sum = 0;
  for (int pass = 1; pass < passes; ++pass) {
    size_t* perm = random ? random_perm(pages, (uint64_t)pass)
                   : runs ? random_perm(pages / run_pages, (uint64_t)pass)
                          : NULL;
    if ((random || runs) && !perm) {
      printf("malloc failed\n");
      return 2;
    }
    const size_t visits = runs ? pages / run_pages * run_pages : pages;
    for (size_t i = 0; i < visits; ++i) {
      const size_t p = random ? perm[i] : runs ? perm[i / run_pages] * run_pages + i % run_pages : i;
      for (size_t w = 64; w < words; w += 64)
        if (mem[p * words + w] != mix64(p * words + w)) {
          printf("MISMATCH page %zu word %zu\n", p, w);
          return 1;
        }
      sum += mem[p * words] += (uint64_t)pass;
    }
    free(perm);
  }
  const uint64_t t2 = now_ns();
  printf("workload mb=%zu passes=%d order=%s init_ns=%llu access_ns=%llu checksum=%016llx\n", mb, passes,
         argv[3], (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
         (unsigned long long)sum);
  return 0;
}
