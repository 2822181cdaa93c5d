/* liblego_preload.so: the interposed mmap/mmap64/munmap/mremap/brk/sbrk, and pvalloc (jemalloc lacks it).
 *
 * Anonymous private mappings are registered with the userfaultfd right after they are created (or recorded
 * until the pmon acknowledges the fd). The kernel is called with syscall(), never through dlsym. Nothing
 * here mallocs: jemalloc itself maps its bootstrap chunks through these wrappers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "preload.h"

#define EXPORT __attribute__((visibility("default")))

static bool active(void) { return lego_state != LEGO_INERT; }

static bool capturable(int flags) {
  return (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE && !(flags & (MAP_GROWSDOWN | MAP_HUGETLB));
}

EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (!active()) return lego_raw_mmap(addr, len, prot, flags, fd, off);
  if (lego_remote_full && capturable(flags) && !(flags & MAP_FIXED)) {
    errno = ENOMEM; /* no room on the memory monitors */
    return MAP_FAILED;
  }
  if (flags & MAP_FIXED) {
    /* It replaces whatever was there; unmapping a registered range waits for the pmon to read
     * UFFD_EVENT_UNMAP, so the table is updated first and the lock is not held across the call (the helper
     * thread needs it to carry out a DROP the pmon may be waiting for). */
    lego_ranges_lock();
    lego_ranges_remove((uintptr_t)addr, len);
    lego_ranges_unlock();
    void* p = lego_raw_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && capturable(flags)) {
      lego_ranges_lock();
      lego_ranges_add((uintptr_t)p, len);
      lego_ranges_unlock();
    }
    return p;
  }
  lego_ranges_lock();
  void* p = lego_raw_mmap(addr, len, prot, flags, fd, off);
  if (p != MAP_FAILED && capturable(flags)) lego_ranges_add((uintptr_t)p, len);
  lego_ranges_unlock();
  return p;
}

EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) {
  return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void* addr, size_t len) {
  if (!active()) return lego_raw_munmap(addr, len);
  /* Forget the range first, then unmap without the lock: munmap of a registered range waits for the pmon
   * to read UFFD_EVENT_UNMAP, and the pmon may be waiting for a DROP that the helper needs the lock for. */
  lego_ranges_lock();
  lego_ranges_remove((uintptr_t)addr, len);
  lego_ranges_unlock();
  return lego_raw_munmap(addr, len);
}

/* ---- mremap ---- */

/* The protection of the mapping holding addr, from /proc/self/maps (stack buffer, no stdio). */
static int prot_of(uintptr_t addr) {
  int prot = PROT_READ | PROT_WRITE;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return prot;
  char buf[8192];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = 0;
    char* line = buf;
    char* nl;
    while ((nl = strchr(line, '\n'))) {
      char* p;
      uintptr_t lo = strtoul(line, &p, 16), hi = strtoul(p + 1, &p, 16);
      if (addr >= lo && addr < hi) {
        prot = (p[1] == 'r' ? PROT_READ : 0) | (p[2] == 'w' ? PROT_WRITE : 0) | (p[3] == 'x' ? PROT_EXEC : 0);
        close(fd);
        return prot;
      }
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
  }
  close(fd);
  return prot;
}

/* Moving a registered VMA without UFFD_EVENT_REMAP would drop its registration and turn evicted pages
 * into zeros. So: a new registered mapping, a copy, and the old one unmapped. Caller holds the lock; it is
 * released during the copy. */
static void* move_by_copy(void* old, size_t old_len, size_t new_len, int flags, void* new_addr) {
  if ((flags & MREMAP_FIXED) && (uintptr_t)new_addr < (uintptr_t)old + old_len &&
      (uintptr_t)old < (uintptr_t)new_addr + new_len) {
    errno = EINVAL;
    return MAP_FAILED;
  }
  int prot = prot_of((uintptr_t)old);
  int mflags = MAP_PRIVATE | MAP_ANONYMOUS | ((flags & MREMAP_FIXED) ? MAP_FIXED : 0);
  void* dst = lego_raw_mmap((flags & MREMAP_FIXED) ? new_addr : NULL, new_len, PROT_READ | PROT_WRITE, mflags,
                            -1, 0);
  if (dst == MAP_FAILED) return MAP_FAILED;
  lego_ranges_add((uintptr_t)dst, new_len);
  if (!(prot & PROT_READ)) mprotect(old, old_len, PROT_READ);
  /* The copy faults (pages of either range may be evicted). Never fault while holding the range lock: the
   * helper thread takes it to carry out a DROP, and the pmon may be waiting for that DROP before it
   * resolves faults on those pages. */
  lego_ranges_unlock();
  memcpy(dst, old, old_len < new_len ? old_len : new_len);
  lego_ranges_lock();
  if (flags & MREMAP_DONTUNMAP) { /* the old range stays mapped, empty */
    lego_raw_mmap(old, old_len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    lego_ranges_add((uintptr_t)old, old_len);
  } else {
    lego_raw_munmap(old, old_len);
    lego_ranges_remove((uintptr_t)old, old_len);
  }
  if (prot != (PROT_READ | PROT_WRITE)) mprotect(dst, new_len, prot);
  lego_log("mremap %p+%#zx moved by copy to %p+%#zx", old, old_len, dst, new_len);
  return dst;
}

static void* mremap_tracked(void* old, size_t old_len, size_t new_len, int flags, void* new_addr) {
  if (!(flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))) {
    void* p = lego_raw_mremap(old, old_len, new_len, 0, NULL); /* in place: the VMA keeps its registration */
    if (p != MAP_FAILED) {
      lego_ranges_remove((uintptr_t)old, old_len);
      lego_ranges_add((uintptr_t)old, new_len);
      return p;
    }
    if (!(flags & MREMAP_MAYMOVE)) return MAP_FAILED;
  }
  if (old_len == 0) { /* duplicating a shared mapping: not ours to emulate */
    errno = EINVAL;
    return MAP_FAILED;
  }
  return move_by_copy(old, old_len, new_len, flags, new_addr);
}

EXPORT void* mremap(void* old, size_t old_len, size_t new_len, int flags, ...) {
  void* new_addr = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    new_addr = va_arg(ap, void*);
    va_end(ap);
  }
  if (!active()) return lego_raw_mremap(old, old_len, new_len, flags, new_addr);
  lego_ranges_lock();
  void* p;
  if (old_len > 0 && lego_ranges_contains((uintptr_t)old, old_len)) {
    p = mremap_tracked(old, old_len, new_len, flags, new_addr);
  } else {
    p = lego_raw_mremap(old, old_len, new_len, flags, new_addr);
    if (p != MAP_FAILED && (flags & MREMAP_FIXED)) lego_ranges_remove((uintptr_t)p, new_len);
  }
  lego_ranges_unlock();
  return p;
}

/* ---- brk/sbrk: emulated in the region's first GiB once the region exists ---- */

static bool emulated_brk(void) { return lego_state == LEGO_PENDING || lego_state == LEGO_LIVE; }

EXPORT int brk(void* addr) {
  void* r = emulated_brk() ? lego_brk_set(addr) : (void*)syscall(SYS_brk, addr);
  if (r != addr) {
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

EXPORT void* sbrk(intptr_t inc) {
  if (emulated_brk()) return lego_sbrk(inc);
  uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
  if (inc == 0) return (void*)cur;
  uintptr_t want = cur + (uintptr_t)inc;
  if ((uintptr_t)syscall(SYS_brk, want) != want) {
    errno = ENOMEM;
    return (void*)-1;
  }
  return (void*)cur;
}

/* ---- pvalloc: glibc's would hand a glibc pointer to jemalloc's free ---- */

EXPORT void* pvalloc(size_t size) {
  size_t rounded = (size + LEGO_PAGE - 1) & ~(LEGO_PAGE - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return NULL;
  }
  return memalign(LEGO_PAGE, rounded ? rounded : LEGO_PAGE);
}
