// working_set: touches a working set of MB megabytes (malloc'd) and checks it, for the memory tests and
// benchmarks. Prints one checksum line that is the same under Lego and locally.
//   working_set MB [passes] [seq|random]
// Pass 0 writes every page with a pattern derived from its index; later passes read (and verify) in
// sequential or pseudo-random page order and rewrite one word per page. Exits 1 on a mismatch, 2 if
// malloc fails (prints "malloc failed").
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: working_set MB [passes] [seq|random]\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10);
  const int passes = argc > 2 ? atoi(argv[2]) : 2;
  const int random = argc > 3 && strcmp(argv[3], "random") == 0;
  const size_t pages = mb * 256;
  uint64_t* mem = malloc(pages * 4096);
  if (!mem) {
    printf("malloc failed\n");
    return 2;
  }
  const size_t words = 512;  // per page
  for (size_t p = 0; p < pages; ++p)
    for (size_t w = 0; w < words; w += 8) mem[p * words + w] = mix(p * words + w);
  uint64_t sum = 0;
  for (int pass = 1; pass < passes; ++pass) {
    for (size_t i = 0; i < pages; ++i) {
      const size_t p = random ? mix(i + (uint64_t)pass * pages) % pages : i;
      for (size_t w = 8; w < words; w += 8) {
        if (mem[p * words + w] != mix(p * words + w)) {
          printf("MISMATCH page %zu word %zu\n", p, w);
          return 1;
        }
      }
      sum += mem[p * words] += (uint64_t)pass;
    }
  }
  printf("working_set %zu MB passes %d %s: checksum %016llx\n", mb, passes, random ? "random" : "seq",
         (unsigned long long)sum);
  return 0;
}
