/* evict_test: run under liblego_preload.so and tests/preload/fake_pmon with a small --cap. Writes patterns
 * into malloc'd, mmap'd, mremap-moved and sbrk'd memory, checks that each range is registered with the
 * userfaultfd (VmFlags "um" in /proc/self/smaps), and verifies the data after the monitor evicted it. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures;

static void fill(uint64_t* p, size_t bytes, uint64_t seed) {
  for (size_t i = 0; i < bytes / 8; i++) p[i] = (i * 0x9E3779B97F4A7C15ULL) ^ seed;
}

static void check(const char* what, const uint64_t* p, size_t bytes, uint64_t seed) {
  for (size_t i = 0; i < bytes / 8; i++)
    if (p[i] != ((i * 0x9E3779B97F4A7C15ULL) ^ seed)) {
      fprintf(stderr, "evict_test: %s: word %zu is %#llx\n", what, i, (unsigned long long)p[i]);
      failures++;
      return;
    }
}

/* Is addr in a VMA registered with a userfaultfd in MISSING mode? */
static void check_registered(const char* what, const void* addr) {
  FILE* f = fopen("/proc/self/smaps", "r");
  char line[512];
  bool in = false;
  uintptr_t a = (uintptr_t)addr;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      if (!strstr(line, " um")) {
        fprintf(stderr, "evict_test: %s at %p is not registered: %s", what, addr, line);
        failures++;
      }
      fclose(f);
      return;
    }
  }
  if (f) fclose(f);
  fprintf(stderr, "evict_test: %s at %p: no VMA found\n", what, addr);
  failures++;
}

int main(void) {
  const size_t big = 64UL << 20, mid = 16UL << 20;

  uint64_t* heap = malloc(big);
  if (!heap) return 1;
  fill(heap, big, 1);
  check_registered("malloc", heap);
  for (int pass = 0; pass < 2; pass++) check("malloc", heap, big, 1);

  uint64_t* m = mmap(NULL, mid, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fill(m, mid, 2);
  check_registered("mmap", m);
  check("mmap", m, mid, 2);

  /* Move it to a fixed place: the preload emulates the move so the new range stays registered. */
  void* target = mmap(NULL, 2 * mid, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint64_t* moved = mremap(m, mid, 2 * mid, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  if (moved == MAP_FAILED) { perror("mremap"); return 1; }
  check_registered("mremap", moved);
  check("mremap (old part)", moved, mid, 2);
  fill(moved + mid / 8, mid, 3);
  check("mremap (old part, again)", moved, mid, 2);
  check("mremap (new part)", moved + mid / 8, mid, 3);
  munmap(moved, 2 * mid);

  uint64_t* b = sbrk(4UL << 20);
  if (b == (void*)-1) { perror("sbrk"); return 1; }
  fill(b, 4UL << 20, 4);
  check_registered("sbrk", b);
  check("sbrk", b, 4UL << 20, 4);
  if (sbrk(0) != (char*)b + (4UL << 20)) { fprintf(stderr, "evict_test: sbrk(0) wrong\n"); failures++; }

  check("malloc (final)", heap, big, 1);
  uint64_t* grown = realloc(heap, 2 * big);
  check("realloc", grown, big, 1);
  free(grown);

  void* pv = pvalloc(100);
  if (!pv || ((uintptr_t)pv & 4095)) { fprintf(stderr, "evict_test: pvalloc\n"); failures++; }
  free(pv);

  printf(failures ? "FAILED\n" : "ok\n");
  return failures ? 1 : 0;
}
