/* liblego_preload.so: the reserved 64 GiB region, jemalloc's extent hooks over it, and the emulated brk.
 *
 * [0, 1 GiB) of the region is the brk/sbrk heap; the rest is handed to jemalloc's arenas by a bump
 * allocator. jemalloc never gives memory back (dalloc opts out, purges are refused), so the pmon never sees
 * a program-side MADV_DONTNEED: the region's pages only disappear through the pmon's own DROPs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <jemalloc/jemalloc.h>

#include "preload.h"

static uintptr_t region;                        /* start of the region, 0 if none */
static _Atomic uintptr_t bump = LEGO_BRK_SIZE;  /* next free offset for jemalloc extents */

int lego_region_reserve(void) {
  void* p = lego_raw_mmap(NULL, LEGO_REGION_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno;
  region = (uintptr_t)p;
  return 0;
}

uintptr_t lego_region_start(void) { return region; }

/* ---- jemalloc extent hooks ---- */

static void* take(uintptr_t off_wanted, size_t size, size_t align) {
  uintptr_t cur = atomic_load(&bump);
  for (;;) {
    uintptr_t start = (region + cur + align - 1) & ~(uintptr_t)(align - 1);
    if (off_wanted && start != region + off_wanted) return NULL;
    uintptr_t next = start - region + size;
    if (next > LEGO_REGION_SIZE || next < cur) return NULL; /* exhausted: malloc returns NULL */
    if (atomic_compare_exchange_weak(&bump, &cur, next)) return (void*)start;
  }
}

static void* h_alloc(extent_hooks_t* h, void* new_addr, size_t size, size_t align, bool* zero, bool* commit,
                     unsigned arena) {
  if (lego_remote_full) return NULL; /* no room on the memory monitors: malloc returns NULL */
  if (align < LEGO_PAGE) align = LEGO_PAGE;
  uintptr_t want = 0;
  if (new_addr) { /* only an extension at the bump pointer can be honoured */
    if ((uintptr_t)new_addr < region + LEGO_BRK_SIZE || (uintptr_t)new_addr >= region + LEGO_REGION_SIZE)
      return NULL;
    want = (uintptr_t)new_addr - region;
  }
  void* p = take(want, size, align);
  if (p) {
    *zero = true; /* fresh addresses: never handed out before, never touched */
    *commit = true;
  }
  return p;
}

static bool h_dalloc(extent_hooks_t* h, void* a, size_t s, bool c, unsigned i) { return true; }
static void h_destroy(extent_hooks_t* h, void* a, size_t s, bool c, unsigned i) {}
static bool h_commit(extent_hooks_t* h, void* a, size_t s, size_t o, size_t l, unsigned i) { return false; }
static bool h_decommit(extent_hooks_t* h, void* a, size_t s, size_t o, size_t l, unsigned i) { return true; }
static bool h_purge(extent_hooks_t* h, void* a, size_t s, size_t o, size_t l, unsigned i) { return true; }
static bool h_split(extent_hooks_t* h, void* a, size_t s, size_t sa, size_t sb, bool c, unsigned i) {
  return false;
}
static bool h_merge(extent_hooks_t* h, void* a, size_t sa, void* b, size_t sb, bool c, unsigned i) {
  return false;
}

static extent_hooks_t hooks = {
    .alloc = h_alloc,
    .dalloc = h_dalloc,
    .destroy = h_destroy,
    .commit = h_commit,
    .decommit = h_decommit,
    .purge_lazy = h_purge,
    .purge_forced = h_purge,
    .split = h_split,
    .merge = h_merge,
};

/* Every automatic arena gets the hooks; an arena not created yet is created with them. */
void lego_region_install_hooks(void) {
  unsigned narenas = 0;
  size_t sz = sizeof narenas;
  if (mallctl("opt.narenas", &narenas, &sz, NULL, 0) != 0) lego_die("jemalloc: cannot read opt.narenas");
  extent_hooks_t* hp = &hooks;
  for (unsigned i = 0; i < narenas; i++) {
    char name[64];
    snprintf(name, sizeof name, "arena.%u.extent_hooks", i);
    int err = mallctl(name, NULL, NULL, &hp, sizeof hp);
    if (err != 0) lego_die("jemalloc: cannot set %s: %s", name, strerror(err));
  }
  lego_log("extent hooks installed on %u arenas", narenas);
}

/* ---- emulated brk/sbrk in [region, region + 1 GiB) ---- */

static pthread_mutex_t brk_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t brk_cur, brk_high; /* the break, and the highest break so far */

/* Memory below the break that a shrink released must read as zeros when the break grows over it again. */
static void* set_break(uintptr_t want) {
  if (brk_cur == 0) brk_cur = brk_high = region;
  if (want < region || want > region + LEGO_BRK_SIZE) return (void*)brk_cur;
  if (want > brk_cur && brk_cur < brk_high) {
    uintptr_t zero_end = want < brk_high ? want : brk_high;
    memset((void*)brk_cur, 0, zero_end - brk_cur);
  }
  brk_cur = want;
  if (want > brk_high) brk_high = want;
  return (void*)brk_cur;
}

void* lego_brk_set(void* addr) {
  pthread_mutex_lock(&brk_lock);
  void* r = set_break((uintptr_t)addr);
  pthread_mutex_unlock(&brk_lock);
  return r;
}

void* lego_sbrk(intptr_t inc) {
  pthread_mutex_lock(&brk_lock);
  void* old = set_break(0); /* 0 is below the region: just reads (and initialises) the break */
  uintptr_t want = (uintptr_t)old + (uintptr_t)inc;
  void* r = (void*)-1;
  if ((inc >= 0 || want <= (uintptr_t)old) && set_break(want) == (void*)want) r = old;
  pthread_mutex_unlock(&brk_lock);
  if (r == (void*)-1) errno = ENOMEM;
  return r;
}
