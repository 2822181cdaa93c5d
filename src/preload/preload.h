/* liblego_preload.so: internal declarations shared by the preload's C files.
 *
 * The library captures a program's anonymous memory for Lego (docs/decisions/005): jemalloc over one
 * reserved region, interposed mmap/munmap/mremap/brk/sbrk, every anonymous private range registered with a
 * userfaultfd that the process monitor (lego-pmon) serves. Nothing here may call malloc: the wrappers run
 * inside jemalloc and the helper thread must never touch registered memory.
 */
#ifndef LEGO_PRELOAD_H_
#define LEGO_PRELOAD_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEGO_PAGE 4096UL
#define LEGO_REGION_SIZE (64UL << 30) /* the reserved region: brk heap + jemalloc extents */
#define LEGO_BRK_SIZE (1UL << 30)     /* its first part: the emulated brk/sbrk heap */

/* Where the library is in its life. Wrappers consult it to decide whether to register, record or pass. */
enum lego_state {
  LEGO_BOOT = 0, /* before the constructor decided: record anonymous ranges */
  LEGO_INERT,    /* LEGO_PMON_SOCKET unset: plain jemalloc, wrappers pass through */
  LEGO_PENDING,  /* uffd exists but the pmon has not acknowledged it yet: record, never register */
  LEGO_LIVE,     /* the pmon serves the uffd: register new ranges right away */
};

/* preload.c: global state. */
extern volatile int lego_state;
extern int lego_uffd;                 /* the userfaultfd ranges are registered on, -1 if none */
extern int lego_sock;                 /* the connection to the pmon, -1 if none */
extern bool lego_wp_mode;             /* UFFDIO_REGISTER_MODE_WP accepted */
extern bool lego_debug;               /* LEGO_PRELOAD_DEBUG=1 */
extern volatile int lego_remote_full; /* the pmon said remote memory is full: new allocations fail */

/* log.c: diagnostics through write(2), no stdio. */
void lego_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));           /* only if lego_debug */
void lego_say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));           /* always */
_Noreturn void lego_die(const char* fmt, ...) __attribute__((format(printf, 1, 2))); /* say + _exit(127) */

/* raw.c: the kernel's calls, bypassing the wrappers. */
void* lego_raw_mmap(void* addr, size_t len, int prot, int flags, int fd, long off);
int lego_raw_munmap(void* addr, size_t len);
void* lego_raw_mremap(void* old, size_t old_len, size_t new_len, int flags, void* new_addr);

/* ranges.c: the table of anonymous ranges (registered, or recorded for registration later). */
void lego_ranges_lock(void);
void lego_ranges_unlock(void);
void lego_ranges_add(uintptr_t start, size_t len);      /* registers now if LIVE, else records */
void lego_ranges_remove(uintptr_t start, size_t len);   /* forget [start, start+len) */
bool lego_ranges_contains(uintptr_t start, size_t len); /* is the range inside one tracked range? */
size_t lego_ranges_count(void);
int lego_ranges_register_pending(void); /* register every recorded range; caller locks */

/* uffd.c */
int lego_uffd_create(uint64_t* features_out); /* fd (O_CLOEXEC|O_NONBLOCK) with the API done, or -errno */
int lego_uffd_register(uintptr_t start, size_t len); /* 0 or errno */
bool lego_uffd_probe_wp(void);                       /* may ranges carry MODE_WP? (uses lego_uffd) */

/* region.c: the reserved region, jemalloc's extent hooks, the emulated brk. */
int lego_region_reserve(void); /* 0 or errno */
uintptr_t lego_region_start(void);
void lego_region_install_hooks(void);
void* lego_brk_set(void* addr); /* new break, or the current one on failure (like the kernel) */
void* lego_sbrk(intptr_t inc);  /* old break, or (void*)-1 with ENOMEM */

/* pmon.c: the connection to the pmon and the helper thread. */
void lego_pmon_hello(const char* path, uint64_t features, bool fork_child); /* dies on failure */
/* Starts the helper thread, which serves DROPs once lego_pmon_hello has the HELLO_ACK.
 * REQUIRES: called before lego_pmon_hello (the pmon may send a DROP right after its ACK). Dies on failure. */
void lego_pmon_start_helper(void);

#endif /* LEGO_PRELOAD_H_ */
