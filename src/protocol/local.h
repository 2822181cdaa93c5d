/* The local protocol between a program running under Lego (its preloaded liblego_preload.so) and the
 * process monitor (lego-pmon) on the same host. See docs/protocol.md, "Local: program <-> pmon".
 *
 * Transport: one AF_UNIX SOCK_SEQPACKET connection per process to the pmon's socket, whose path the
 * program finds in the environment variable LEGO_PMON_SOCKET. Every message is one packet: a
 * lego_local_hdr followed by a type-specific body. Host byte order (both ends are on one host).
 *
 * This header is C so that the preload (C, no libstdc++) and the pmon (C++) share it.
 */
#ifndef LEGO_PROTOCOL_LOCAL_H_
#define LEGO_PROTOCOL_LOCAL_H_

#include <stdint.h>

#define LEGO_LOCAL_MAGIC 0x504F474CU /* "LGOP" little-endian */
#define LEGO_LOCAL_VERSION 1U

/* Environment the program (and its children) inherits from `lego run`. */
#define LEGO_ENV_SOCKET "LEGO_PMON_SOCKET"    /* path of the pmon's local socket */
#define LEGO_ENV_EXCACHE "LEGO_EXCACHE"       /* optional per-process ExCache cap in bytes (decimal) */
#define LEGO_ENV_JOB "LEGO_JOB"               /* job id chosen by `lego run`, shared by the job's processes */
#define LEGO_ENV_DEBUG "LEGO_PRELOAD_DEBUG"   /* "1": the preload writes diagnostics to stderr */
#define LEGO_ENV_DROP_BATCH "LEGO_DROP_BATCH" /* "0": the helper drops with madvise per run (tests, A/B) */

/* Largest number of pages in one kLegoDrop message (one packet stays below 4 KiB + header). */
#define LEGO_LOCAL_MAX_DROP 480U

enum lego_local_type {
  /* program -> pmon, first message, carries the userfaultfd in SCM_RIGHTS (exactly one fd). */
  LEGO_LOCAL_HELLO = 1,
  /* pmon -> program, reply to HELLO. status 0: the pmon serves faults on the fd from now on, so the
   * program may register ranges. Otherwise a positive errno and the program must not register anything.
   * The ACK to a fork child's HELLO (LEGO_HELLO_FORK_CHILD) carries, in SCM_RIGHTS, the child's own uffd
   * (the pmon received it in UFFD_EVENT_FORK); the child registers its new ranges on that fd. */
  LEGO_LOCAL_HELLO_ACK = 2,
  /* pmon -> program's helper thread: MADV_DONTNEED these pages (the pmon has written back their data
   * and write-protected them first). */
  LEGO_LOCAL_DROP = 3,
  /* program's helper thread -> pmon: the DROP with the same seq is done. */
  LEGO_LOCAL_DROP_ACK = 4,
  /* program -> pmon: a range was registered with the uffd (informational; lets the pmon zero-fill in
   * blocks without crossing a range's end). */
  LEGO_LOCAL_RANGE_ADDED = 5,
  /* pmon -> program's helper thread: the memory monitors have no room for this process's memory (full = 1),
   * or have room again (full = 0). While full, new allocations fail: malloc returns NULL and anonymous mmap
   * ENOMEM, as a program expects when memory runs out. Pages already allocated keep working. */
  LEGO_LOCAL_REMOTE_FULL = 6,
};

struct lego_local_hdr {
  uint32_t magic;   /* LEGO_LOCAL_MAGIC */
  uint16_t version; /* LEGO_LOCAL_VERSION */
  uint16_t type;    /* enum lego_local_type */
};

/* HELLO body. */
struct lego_local_hello {
  uint32_t pid;
  uint32_t ppid;
  uint64_t uffd_features; /* the features the program got from UFFDIO_API */
  uint64_t excache_cap;   /* per-process ExCache cap in bytes, 0 = only the pmon-wide budget */
  uint64_t region_start;  /* the preload's reserved heap region (jemalloc + brk) */
  uint64_t region_length;
  uint32_t flags; /* LEGO_HELLO_* */
  uint32_t reserved;
  char job[32];  /* NUL-terminated LEGO_JOB, or empty */
  char comm[64]; /* NUL-terminated argv[0] basename, for `lego ps` */
};
#define LEGO_HELLO_FORK_CHILD                                               \
  1U /* sent by a fork child: its uffd came to the pmon in UFFD_EVENT_FORK, \
        so this HELLO carries no fd */

struct lego_local_hello_ack {
  int32_t status; /* 0 or a positive errno */
  uint32_t reserved;
};

struct lego_local_drop {
  uint64_t seq;
  uint32_t count; /* <= LEGO_LOCAL_MAX_DROP */
  uint32_t reserved;
  /* followed by count x uint64_t page addresses */
};

struct lego_local_drop_ack {
  uint64_t seq;
  int32_t status; /* 0 or the errno of the first madvise that failed */
  uint32_t reserved;
};

struct lego_local_range {
  uint64_t start;
  uint64_t length;
};

struct lego_local_remote_full {
  int32_t full;
  uint32_t reserved;
};

#ifdef __cplusplus
static_assert(sizeof(struct lego_local_hdr) == 8, "layout");
static_assert(sizeof(struct lego_local_hello) == 144, "layout");
static_assert(sizeof(struct lego_local_hello_ack) == 8, "layout");
static_assert(sizeof(struct lego_local_drop) == 16, "layout");
static_assert(sizeof(struct lego_local_drop_ack) == 16, "layout");
static_assert(sizeof(struct lego_local_range) == 16, "layout");
static_assert(sizeof(struct lego_local_remote_full) == 8, "layout");
#else
_Static_assert(sizeof(struct lego_local_hdr) == 8, "layout");
_Static_assert(sizeof(struct lego_local_hello) == 144, "layout");
_Static_assert(sizeof(struct lego_local_drop) == 16, "layout");
#endif

#endif /* LEGO_PROTOCOL_LOCAL_H_ */
