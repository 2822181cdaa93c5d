// ptr_chase: dependent random loads (pointer chasing) over a working set, the access pattern of linked
// structures and the worst case for any paging system: every step is a miss that nothing can prefetch.
//   ptr_chase MB STEPS
// Lays MB megabytes out as 64-byte nodes linked into one random cycle (Sattolo's algorithm, fixed seed),
// then follows STEPS links, adding each node's payload. Prints the chase time and a checksum that is the
// same under Lego, under Linux swap and locally.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"

struct node {
  struct node* next;
  uint64_t payload[7];
};

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ptr_chase MB STEPS\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10);
  const size_t steps = strtoull(argv[2], NULL, 10);
  const size_t n = (mb << 20) / sizeof(struct node);
  if (n < 2) {
    fprintf(stderr, "ptr_chase: MB must be at least 1\n");
    return 2;
  }
  struct node* nodes = malloc(n * sizeof(struct node));
  uint32_t* order = malloc(n * sizeof(uint32_t));
  if (!nodes || !order) {
    printf("malloc failed\n");
    return 2;
  }
  // Sattolo: a uniformly random permutation with a single cycle, so the chase visits every node.
  for (size_t i = 0; i < n; ++i) order[i] = (uint32_t)i;
  uint64_t r = 42;
  for (size_t i = n - 1; i > 0; --i) {
    r = mix64(r + i);
    const size_t j = r % i;
    const uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (size_t i = 0; i < n; ++i) {
    nodes[i].next = &nodes[order[i]];
    for (int w = 0; w < 7; ++w) nodes[i].payload[w] = mix64(i * 8 + (size_t)w);
  }
  free(order);
  const uint64_t t0 = now_ns();
  uint64_t sum = 0;
  const struct node* p = &nodes[0];
  for (size_t s = 0; s < steps; ++s) {
    sum += p->payload[s % 7];
    p = p->next;
  }
  const uint64_t t1 = now_ns();
  printf("ptr_chase mb=%zu nodes=%zu steps=%zu chase_ns=%llu checksum=%016llx\n", mb, n, steps,
         (unsigned long long)(t1 - t0), (unsigned long long)sum);
  return 0;
}
