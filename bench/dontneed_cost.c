// dontneed_cost: what dropping one resident page costs the thread that drops it (the preload library's
// helper thread does this for every page the pmon evicts).
//   dontneed_cost MB
// Populates MB megabytes, then MADV_DONTNEEDs single pages in random order (a) with no other thread of
// the process running, (b) while another thread of the process spins on the other CPU (every drop then
// needs a TLB-shootdown IPI to it), and (c) as (b) but 256 pages per process_madvise(2) call on our own
// pidfd. Prints ns per page for each.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_common.h"

static atomic_int stop_spin;
static volatile char* spin_mem;

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  sched_setaffinity(0, sizeof s, &s);
}

static void* spinner(void* arg) {
  (void)arg;
  pin(1);
  uint64_t x = 0;
  while (!atomic_load(&stop_spin)) x += spin_mem[(x * 4096) % (1 << 20)];
  return (void*)(uintptr_t)x;
}

int main(int argc, char** argv) {
  const size_t mb = argc > 1 ? strtoull(argv[1], NULL, 10) : 64, pages = mb * 256;
  char* mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  spin_mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  size_t* perm = random_perm(pages, 3);
  if (mem == MAP_FAILED || !perm) return 2;
  madvise(mem, pages * 4096, MADV_NOHUGEPAGE);
  pin(0);
  const int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  double res[3] = {0, 0, 0};
  pthread_t th;
  for (int mode = 0; mode < 3; ++mode) {
    memset(mem, 1, pages * 4096);
    if (mode == 1) pthread_create(&th, NULL, spinner, NULL);
    usleep(10000);
    const uint64_t t0 = now_ns();
    if (mode < 2) {
      for (size_t i = 0; i < pages; ++i) madvise(mem + perm[i] * 4096, 4096, MADV_DONTNEED);
    } else {
      struct iovec iov[256];
      for (size_t i = 0; i < pages; i += 256) {
        size_t n = pages - i < 256 ? pages - i : 256;
        for (size_t j = 0; j < n; ++j) iov[j] = (struct iovec){mem + perm[i + j] * 4096, 4096};
        if (syscall(SYS_process_madvise, pidfd, iov, n, MADV_DONTNEED, 0) < 0) {
          res[2] = -1;
          break;
        }
      }
    }
    const uint64_t t1 = now_ns();
    if (res[mode] == 0) res[mode] = (double)(t1 - t0) / (double)pages;
  }
  atomic_store(&stop_spin, 1);
  pthread_join(th, NULL);
  printf("dontneed_cost mb=%zu alone_ns_per_page=%.0f other_cpu_busy_ns_per_page=%.0f "
         "process_madvise256_ns_per_page=%.0f\n",
         mb, res[0], res[1], res[2]);
  return 0;
}
