// uffd_floor: the floor under a userfaultfd-based remote fault, without any network: a handler thread in
// the same process resolves MISSING faults with UFFDIO_COPY from a local buffer while the main thread
// touches pages in random order, timing each touch with clock_gettime.
//   uffd_floor MB [any|same|other]
// any: threads where the scheduler puts them; same: both pinned to CPU 0 (what LEGO_FOLLOW_CPU aims
// for); other: main on CPU 0, handler on CPU 1. Prints p50/p99 per fault (ns, faulting side), the p50 of
// the UFFDIO_COPY ioctl alone (handler side) and a checksum. Exits 1 on a wrong value.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench_common.h"

static int uffd;
static char* src;
static uint64_t* copy_ns;
static uint64_t* wake_ns;
static size_t n_copies;
static int handler_cpu = -1;

static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  sched_setaffinity(0, sizeof s, &s);
}

static void* handler(void* arg) {
  size_t max = (size_t)arg;
  pin(handler_cpu);
  for (;;) {
    struct uffd_msg m;
    ssize_t r = read(uffd, &m, sizeof m);
    if (r != sizeof m) return NULL;
    if (m.event != UFFD_EVENT_PAGEFAULT) continue;
    const uint64_t addr = m.arg.pagefault.address & ~4095ull;
    // The page's content: its own address in the first word (checked by the toucher).
    *(uint64_t*)src = addr;
    // Copy without waking, then wake: the two costs separately.
    struct uffdio_copy c = {.dst = addr, .src = (uint64_t)src, .len = 4096, .mode = UFFDIO_COPY_MODE_DONTWAKE};
    struct uffdio_range w = {.start = addr, .len = 4096};
    const uint64_t t0 = now_ns();
    if (ioctl(uffd, UFFDIO_COPY, &c) != 0) perror("UFFDIO_COPY");
    const uint64_t t1 = now_ns();
    if (ioctl(uffd, UFFDIO_WAKE, &w) != 0) perror("UFFDIO_WAKE");
    const uint64_t t2 = now_ns();
    if (n_copies < max) {
      copy_ns[n_copies] = t1 - t0;
      wake_ns[n_copies++] = t2 - t1;
    }
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: uffd_floor MB [any|same|other]\n");
    return 2;
  }
  const size_t mb = strtoull(argv[1], NULL, 10), pages = mb * 256;
  const char* mode = argc > 2 ? argv[2] : "any";
  int main_cpu = -1;
  if (strcmp(mode, "same") == 0) main_cpu = handler_cpu = 0;
  if (strcmp(mode, "other") == 0) main_cpu = 0, handler_cpu = 1;
  uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
  if (uffd < 0) {
    perror("userfaultfd");
    return 2;
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    perror("UFFDIO_API");
    return 2;
  }
  char* mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  src = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  uint64_t* lat = malloc(pages * sizeof *lat);
  copy_ns = malloc(pages * sizeof *copy_ns);
  wake_ns = malloc(pages * sizeof *wake_ns);
  size_t* perm = random_perm(pages, 7);
  if (mem == MAP_FAILED || src == MAP_FAILED || !lat || !copy_ns || !wake_ns || !perm) {
    printf("alloc failed\n");
    return 2;
  }
  madvise(mem, pages * 4096, MADV_NOHUGEPAGE);
  memset(lat, 0, pages * sizeof *lat);  // touch our own arrays before timing
  memset(copy_ns, 0, pages * sizeof *copy_ns);
  memset(wake_ns, 0, pages * sizeof *wake_ns);
  struct uffdio_register reg = {.range = {.start = (uint64_t)mem, .len = pages * 4096},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
    perror("UFFDIO_REGISTER");
    return 2;
  }
  pin(main_cpu);
  pthread_t th;
  pthread_create(&th, NULL, handler, (void*)pages);
  uint64_t sum = 0;
  for (size_t i = 0; i < pages; ++i) {
    volatile uint64_t* w = (volatile uint64_t*)(mem + perm[i] * 4096);
    const uint64_t t0 = now_ns();
    const uint64_t v = *w;
    const uint64_t t1 = now_ns();
    lat[i] = t1 - t0;
    if (v != (uint64_t)(uintptr_t)w) {
      printf("MISMATCH page %zu\n", perm[i]);
      return 1;
    }
    sum += v - (uint64_t)(uintptr_t)mem;
  }
  const size_t nc = n_copies;
  const uint64_t p50 = percentile(lat, pages, 50), p99 = percentile(lat, pages, 99);
  const uint64_t c50 = percentile(copy_ns, nc, 50), w50 = percentile(wake_ns, nc, 50);
  printf("uffd_floor mb=%zu mode=%s faults=%zu fault_p50_ns=%llu fault_p99_ns=%llu copy_p50_ns=%llu "
         "wake_p50_ns=%llu checksum=%016llx\n",
         mb, mode, pages, (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)c50, (unsigned long long)w50,
         (unsigned long long)sum);
  return 0;
}
