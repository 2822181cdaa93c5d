// remap_stream: replaces a region with a fresh mapping while another thread streams through it.
//
// Usage: remap_stream REGION_MB PUSH_MB ITERATIONS
//
// Each iteration fills REGION with a non-zero pattern, then writes PUSH_MB of other memory so that, under a
// small ExCache, REGION's pages are evicted to the memory monitors. A reader thread then scans REGION
// sequentially (remote faults with fetch-ahead in flight) while the main thread, after a short random
// delay, maps fresh anonymous memory over it with MAP_FIXED (the kernel unmaps the old range first: a
// userfaultfd UNMAP event). The fresh mapping must read as zeros in every byte: a page of the old mapping
// that the pager installs after the unmap (a fault queued before the UNMAP event, or a window fetched
// ahead) would show the old pattern. Prints one summary line and exits 0, or names the first stale page
// and exits 1. The reader reads either memory (old or new), so it never faults on an unmapped address.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul

static volatile uint64_t* g_region;
static size_t g_words;
static atomic_int g_stop;
static atomic_int g_started;
static uint64_t g_sink;

static void* reader(void* arg) {
  (void)arg;
  uint64_t s = 0;
  atomic_store(&g_started, 1);
  for (size_t i = 0; i < g_words && !atomic_load_explicit(&g_stop, memory_order_relaxed); i += PAGE / 8)
    s += g_region[i];
  g_sink += s;
  return NULL;
}

static void fill(volatile uint64_t* p, size_t bytes, uint64_t seed) {
  for (size_t i = 0; i < bytes / 8; i += PAGE / 8) p[i] = seed ^ (i | 1);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: remap_stream REGION_MB PUSH_MB ITERATIONS\n");
    return 2;
  }
  const size_t region = strtoull(argv[1], NULL, 10) << 20, push = strtoull(argv[2], NULL, 10) << 20;
  const int iterations = atoi(argv[3]);
  if (region == 0 || push == 0 || iterations <= 0) {
    fprintf(stderr, "remap_stream: sizes and iterations must be positive\n");
    return 2;
  }
  void* r = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* b = mmap(NULL, push, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED || b == MAP_FAILED) {
    perror("remap_stream: mmap");
    return 2;
  }
  g_region = r;
  g_words = region / 8;
  srand(42);
  size_t stale_pages = 0;
  for (int it = 0; it < iterations; ++it) {
    fill(g_region, region, 0x5a5a5a5a00000000ull + (uint64_t)it);
    fill((volatile uint64_t*)b, push, 0x3c3c3c3c00000000ull + (uint64_t)it);
    atomic_store(&g_stop, 0);
    atomic_store(&g_started, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, reader, NULL) != 0) {
      fprintf(stderr, "remap_stream: pthread_create failed\n");
      return 2;
    }
    while (!atomic_load(&g_started)) sched_yield();
    struct timespec d = {0, (long)(rand() % 3000) * 1000};  // 0-3 ms into the stream
    nanosleep(&d, NULL);
    if (mmap(r, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != r) {
      perror("remap_stream: mmap MAP_FIXED");
      return 2;
    }
    atomic_store(&g_stop, 1);
    pthread_join(t, NULL);
    usleep(2000);  // give a late install time to land before checking
    for (size_t i = 0; i < g_words; ++i) {
      if (g_region[i] != 0) {
        if (stale_pages++ == 0)
          fprintf(stderr, "remap_stream: iteration %d: page %zu of the fresh mapping holds %#llx\n", it,
                  i * 8 / PAGE, (unsigned long long)g_region[i]);
        i = (i * 8 / PAGE + 1) * PAGE / 8 - 1;  // next page
      }
    }
  }
  if (stale_pages != 0) {
    fprintf(stderr, "remap_stream: %zu stale pages in fresh mappings\n", stale_pages);
    return 1;
  }
  printf("remap_stream %zu MB x %d: fresh mappings read as zeros\n", region >> 20, iterations);
  return 0;
}
