/* fake_pmon: a small, test-only process monitor for liblego_preload.so (tests/preload).
 *
 * It speaks the local protocol (src/protocol/local.h) and serves real userfaultfds, single-threaded:
 *   - HELLO: takes the program's uffd, ACKs. A fork child's HELLO gets back the uffd that arrived in
 *     UFFD_EVENT_FORK on its parent's uffd.
 *   - MISSING fault: UFFDIO_COPY of the kept copy of an evicted page, else of a zero page.
 *   - WP fault: unprotect and wake, unless the page is being evicted (then it waits for the DROP_ACK).
 *   - UNMAP: forget the pages.
 *   - Eviction, whenever a process has more than --cap pages installed by us: write-protect a batch of pages,
 *     read them with process_vm_readv, keep the copies, send DROP, and on DROP_ACK mark them evicted.
 * On a program's exit (its socket closes) it prints one stats line to stderr:
 *   fake_pmon: pid P exit: zero=Z restored=R evicted=E drops=D wpfaults=W ranges=N
 *
 * usage: fake_pmon SOCKET_PATH [--cap PAGES] [--child-cap PAGES]     (runs until killed)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "protocol/local.h"

#define PAGE 4096UL
#define MAX_PROCS 64

/* ---- per-process page map: open addressing, linear probing, backward-shift deletion ---- */

/* P_GONE: unmapped while its DROP was in flight. Until the DROP_ACK, the helper might still drop whatever
 * new page is mapped there, so a MISSING fault on it waits for the ACK. */
enum { P_PRESENT = 1, P_INFLIGHT, P_EVICTED, P_GONE };

struct page {
  uint64_t addr; /* 0 = empty slot */
  int state;
  char* copy;    /* INFLIGHT/EVICTED: the data */
};

struct map {
  struct page* slots;
  size_t cap, used, present;
};

static size_t hash(uint64_t a, size_t cap) { return (size_t)((a >> 12) * 0x9E3779B97F4A7C15ULL) & (cap - 1); }

static struct page* map_find(struct map* m, uint64_t a) {
  if (!m->cap) return NULL;
  for (size_t i = hash(a, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->slots[i].addr == a) return &m->slots[i];
    if (m->slots[i].addr == 0) return NULL;
  }
}

static struct page* map_insert_raw(struct map* m, uint64_t a) {
  size_t i = hash(a, m->cap);
  while (m->slots[i].addr != 0) i = (i + 1) & (m->cap - 1);
  m->slots[i] = (struct page){.addr = a};
  m->used++;
  return &m->slots[i];
}

static void map_grow(struct map* m) {
  struct map n = {.cap = m->cap ? m->cap * 2 : 1024};
  n.slots = calloc(n.cap, sizeof *n.slots);
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].addr) *map_insert_raw(&n, m->slots[i].addr) = m->slots[i];
  n.present = m->present;
  free(m->slots);
  *m = n;
}

static struct page* map_get(struct map* m, uint64_t a) {
  struct page* p = map_find(m, a);
  if (p) return p;
  if ((m->used + 1) * 2 > m->cap) map_grow(m);
  return map_insert_raw(m, a);
}

static void map_erase(struct map* m, struct page* p) {
  if (p->state == P_PRESENT) m->present--;
  free(p->copy);
  size_t i = (size_t)(p - m->slots);
  m->slots[i] = (struct page){0};
  m->used--;
  for (size_t j = (i + 1) & (m->cap - 1); m->slots[j].addr; j = (j + 1) & (m->cap - 1)) {
    struct page e = m->slots[j];
    m->slots[j] = (struct page){0};
    *map_insert_raw(m, e.addr) = e;
    m->used--;
  }
}

static void map_clone(struct map* dst, const struct map* src) {
  dst->cap = src->cap;
  dst->used = src->used;
  dst->present = src->present;
  dst->slots = calloc(dst->cap ? dst->cap : 1, sizeof *dst->slots);
  for (size_t i = 0; i < src->cap; i++) {
    dst->slots[i] = src->slots[i];
    if (src->slots[i].addr && src->slots[i].copy) {
      dst->slots[i].copy = malloc(PAGE);
      memcpy(dst->slots[i].copy, src->slots[i].copy, PAGE);
      if (dst->slots[i].state == P_INFLIGHT) dst->slots[i].state = P_EVICTED;
    }
    if (dst->slots[i].state == P_GONE) dst->slots[i].state = P_EVICTED; /* no copy: zeros */
  }
}

static void map_free(struct map* m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].copy);
  free(m->slots);
  memset(m, 0, sizeof *m);
}

/* ---- processes ---- */

struct addrs {
  uint64_t* v;
  size_t n, cap;
};

static void addrs_push(struct addrs* a, uint64_t x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->v = realloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = x;
}

struct proc {
  bool used;
  int sock, uffd;     /* -1 if none yet */
  pid_t pid;
  int parent;         /* index of the parent, for a fork child waiting for its HELLO */
  bool awaiting_hello;
  bool wp;
  struct map pages;
  uint64_t seq;
  bool drop_inflight;
  struct timespec drop_sent; /* when the DROP in flight was sent (for the overdue warning) */
  bool drop_overdue_said;
  uint64_t batch[LEGO_LOCAL_MAX_DROP];
  uint32_t batch_n;
  struct addrs deferred; /* WP faults waiting for the DROP_ACK */
  struct addrs retry;    /* MISSING faults to serve later (COPY said EAGAIN, or the page is P_GONE) */
  size_t scan;            /* eviction cursor in pages.slots */
  unsigned long zero, restored, evicted, drops, wpfaults, ranges;
};

static struct proc procs[MAX_PROCS];
static size_t cap_pages = 1UL << 40;
static long child_cap = -1; /* --child-cap: the cap of fork children (-1: --cap) */

/* Over its cap: time to evict. A fork child starts with its parent's page table, so with --child-cap 0 it
 * is evicted from at its first fault after its HELLO (regression test: its helper must be running). */
static bool over_cap(const struct proc* p) {
  size_t cap = p->parent >= 0 && child_cap >= 0 ? (size_t)child_cap : cap_pages;
  return p->pages.present > cap;
}
static char zeros[PAGE] __attribute__((aligned(4096)));

static struct proc* new_proc(void) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (!procs[i].used) {
      procs[i] = (struct proc){.used = true, .sock = -1, .uffd = -1, .parent = -1};
      return &procs[i];
    }
  fprintf(stderr, "fake_pmon: too many processes\n");
  exit(2);
}

static void end_proc(struct proc* p) {
  fprintf(stderr, "fake_pmon: pid %d exit: zero=%lu restored=%lu evicted=%lu drops=%lu wpfaults=%lu ranges=%lu\n",
          (int)p->pid, p->zero, p->restored, p->evicted, p->drops, p->wpfaults, p->ranges);
  if (p->sock >= 0) close(p->sock);
  if (p->uffd >= 0) close(p->uffd);
  map_free(&p->pages);
  free(p->deferred.v);
  free(p->retry.v);
  p->used = false;
}

/* ---- userfaultfd operations ---- */

static int uffd_copy(struct proc* p, uint64_t addr, const void* src) {
  struct uffdio_copy c = {.dst = addr, .src = (uintptr_t)src, .len = PAGE};
  if (ioctl(p->uffd, UFFDIO_COPY, &c) == 0) return 0;
  return errno;
}

static void uffd_wake(struct proc* p, uint64_t addr) {
  struct uffdio_range r = {.start = addr, .len = PAGE};
  ioctl(p->uffd, UFFDIO_WAKE, &r);
}

static int uffd_wp(struct proc* p, uint64_t addr, bool protect) {
  struct uffdio_writeprotect w = {.range = {.start = addr, .len = PAGE},
                                  .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
  return ioctl(p->uffd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : errno;
}

static void start_eviction(struct proc* p);

/* MISSING: the kept copy if the page was evicted, else zeros. Returns false on EAGAIN (retry later). */
static bool serve_missing(struct proc* p, uint64_t addr) {
  struct page* pg = map_find(&p->pages, addr);
  if (pg && pg->state == P_GONE) return false; /* retried after the DROP_ACK */
  bool from_copy = pg && pg->copy;
  int err = uffd_copy(p, addr, from_copy ? pg->copy : zeros);
  if (err == EAGAIN) return false;
  if (err == EEXIST) {
    uffd_wake(p, addr);
    return true;
  }
  if (err != 0) {
    if (err != ENOENT && err != ESRCH) fprintf(stderr, "fake_pmon: UFFDIO_COPY %#lx: %s\n", (unsigned long)addr, strerror(err));
    uffd_wake(p, addr);
    return true;
  }
  pg = map_get(&p->pages, addr); /* may move slots: look up again */
  if (pg->state != P_PRESENT) p->pages.present++;
  free(pg->copy);
  pg->copy = NULL;
  pg->state = P_PRESENT;
  if (from_copy) p->restored++; else p->zero++;
  if (over_cap(p)) start_eviction(p);
  return true;
}

static void serve_wp(struct proc* p, uint64_t addr) {
  p->wpfaults++;
  struct page* pg = map_find(&p->pages, addr);
  if (pg && pg->state == P_INFLIGHT && p->drop_inflight) {
    addrs_push(&p->deferred, addr);
    return;
  }
  int err = uffd_wp(p, addr, false);
  if (err) { /* only a successful unprotect wakes: after EAGAIN (an event not read yet) it faults again */
    if (err != ENOENT && err != EAGAIN) fprintf(stderr, "fake_pmon: unprotect %#lx: %s\n", (unsigned long)addr, strerror(err));
    uffd_wake(p, addr);
  }
}

/* Returns true if the page was erased (its slot may now hold another page). */
static bool forget_page(struct proc* p, struct page* pg) {
  if (pg->state == P_INFLIGHT && p->drop_inflight) {
    free(pg->copy);
    pg->copy = NULL;
    pg->state = P_GONE;
    return false;
  }
  if (pg->state == P_GONE) return false;
  map_erase(&p->pages, pg);
  return true;
}

static void forget_range(struct proc* p, uint64_t start, uint64_t end) {
  if ((end - start) / PAGE < p->pages.cap) {
    for (uint64_t a = start; a < end; a += PAGE) {
      struct page* pg = map_find(&p->pages, a);
      if (pg) forget_page(p, pg);
    }
    return;
  }
  for (size_t i = 0; i < p->pages.cap;) {
    struct page* pg = &p->pages.slots[i];
    if (pg->addr >= start && pg->addr < end && pg->state != P_GONE) {
      if (forget_page(p, pg)) continue; /* slot i refilled: recheck */
    }
    i++;
  }
}

static struct proc* on_fork(struct proc* parent, int ufd) {
  struct proc* c = new_proc();
  c->uffd = ufd;
  c->parent = (int)(parent - procs);
  c->awaiting_hello = true;
  c->wp = parent->wp;
  map_clone(&c->pages, &parent->pages);
  return c;
}

static void read_uffd(struct proc* p) {
  struct uffd_msg msgs[16];
  for (;;) {
    ssize_t n = read(p->uffd, msgs, sizeof msgs);
    if (n <= 0) return;
    for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
      struct uffd_msg* m = &msgs[i];
      if (m->event == UFFD_EVENT_PAGEFAULT) {
        uint64_t addr = m->arg.pagefault.address & ~(PAGE - 1);
        if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) serve_wp(p, addr);
        else if (!serve_missing(p, addr)) addrs_push(&p->retry, addr);
      } else if (m->event == UFFD_EVENT_FORK) {
        struct proc* c = on_fork(p, (int)m->arg.fork.ufd);
        fprintf(stderr, "fake_pmon: fork of pid %d: slot %d uffd %d\n", p->pid, (int)(c - procs), c->uffd);
      } else if (m->event == UFFD_EVENT_UNMAP || m->event == UFFD_EVENT_REMOVE) {
        forget_range(p, m->arg.remove.start, m->arg.remove.end);
      }
    }
  }
}

static void retry_faults(struct proc* p) {
  size_t n = p->retry.n;
  p->retry.n = 0;
  for (size_t i = 0; i < n; i++)
    if (!serve_missing(p, p->retry.v[i])) p->retry.v[p->retry.n++] = p->retry.v[i];
}

/* ---- eviction ---- */

/* Is the page present in the process? (process_vm_readv of a missing page would wait for us: deadlock.) */
static bool page_present(int pagemap, uint64_t addr) {
  uint64_t e = 0;
  return pread(pagemap, &e, sizeof e, (off_t)(addr / PAGE * 8)) == sizeof e && (e >> 63);
}

static void send_drop(struct proc* p) {
  struct {
    struct lego_local_hdr h;
    struct lego_local_drop d;
    uint64_t pages[LEGO_LOCAL_MAX_DROP];
  } m = {.h = {LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_DROP}, .d = {.seq = ++p->seq, .count = p->batch_n}};
  memcpy(m.pages, p->batch, p->batch_n * sizeof(uint64_t));
  size_t len = sizeof m.h + sizeof m.d + p->batch_n * sizeof(uint64_t);
  if (send(p->sock, &m, len, MSG_NOSIGNAL) != (ssize_t)len) {
    fprintf(stderr, "fake_pmon: send DROP: %s\n", strerror(errno));
    return;
  }
  p->drop_inflight = true;
  clock_gettime(CLOCK_MONOTONIC, &p->drop_sent);
  p->drop_overdue_said = false;
  p->drops++;
}

/* Write-protect, read and keep a batch of present pages, then ask the helper to drop them. */
static void start_eviction(struct proc* p) {
  if (p->drop_inflight || p->sock < 0 || p->pid == 0 || !p->wp || p->pages.cap == 0) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", (int)p->pid);
  int pagemap = open(path, O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return;
  p->batch_n = 0;
  for (size_t seen = 0; seen < p->pages.cap && p->batch_n < LEGO_LOCAL_MAX_DROP; seen++) {
    p->scan = (p->scan + 1) & (p->pages.cap - 1);
    struct page* pg = &p->pages.slots[p->scan];
    if (!pg->addr || pg->state != P_PRESENT) continue;
    if (uffd_wp(p, pg->addr, true) != 0) continue;
    if (!page_present(pagemap, pg->addr)) { /* the program dropped it itself: it reads as zeros now */
      uffd_wp(p, pg->addr, false);
      map_erase(&p->pages, pg);
      continue;
    }
    char* copy = malloc(PAGE);
    struct iovec local = {copy, PAGE}, remote = {(void*)(uintptr_t)pg->addr, PAGE};
    if (process_vm_readv(p->pid, &local, 1, &remote, 1, 0) != (ssize_t)PAGE) {
      free(copy);
      uffd_wp(p, pg->addr, false);
      continue;
    }
    pg->copy = copy;
    pg->state = P_INFLIGHT;
    p->pages.present--;
    p->batch[p->batch_n++] = pg->addr;
  }
  close(pagemap);
  if (p->batch_n) send_drop(p);
}

static void on_drop_ack(struct proc* p, const struct lego_local_drop_ack* a) {
  if (!p->drop_inflight || a->seq != p->seq) return;
  p->drop_inflight = false;
  if (a->status != 0) fprintf(stderr, "fake_pmon: pid %d DROP failed: %s\n", (int)p->pid, strerror(a->status));
  for (uint32_t i = 0; i < p->batch_n; i++) {
    struct page* pg = map_find(&p->pages, p->batch[i]);
    if (pg && pg->state == P_INFLIGHT) {
      pg->state = P_EVICTED;
      p->evicted++;
    } else if (pg && pg->state == P_GONE) {
      map_erase(&p->pages, pg); /* a fault waiting in p->retry now gets zeros */
    }
  }
  for (size_t i = 0; i < p->deferred.n; i++) uffd_wake(p, p->deferred.v[i]); /* they refault: MISSING */
  p->deferred.n = 0;
  if (over_cap(p)) start_eviction(p);
}

/* No timeout on a DROP_ACK (the real pmon gives up after 10 s): its faults stay parked. Say so once, so
 * that a hang shows its cause in the log (the helper thread is not answering). */
static void warn_overdue_drops(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc* p = &procs[i];
    if (!p->used || !p->drop_inflight || p->drop_overdue_said || now.tv_sec - p->drop_sent.tv_sec < 10) continue;
    fprintf(stderr, "fake_pmon: pid %d: DROP seq %llu unanswered for 10 s (%zu WP faults wait for it)\n",
            (int)p->pid, (unsigned long long)p->seq, p->deferred.n);
    p->drop_overdue_said = true;
  }
}

/* ---- the socket side ---- */

static void send_ack(int sock, int32_t status, int fd) {
  struct { struct lego_local_hdr h; struct lego_local_hello_ack a; } m = {
      {LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_HELLO_ACK}, {.status = status}};
  struct iovec iov = {&m, sizeof m};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) fprintf(stderr, "fake_pmon: send ACK: %s\n", strerror(errno));
}

static struct proc* fork_child_of(pid_t ppid) {
  for (int i = 0; i < MAX_PROCS; i++) {
    struct proc* c = &procs[i];
    if (c->used && c->awaiting_hello && c->parent >= 0 && procs[c->parent].used && procs[c->parent].pid == ppid)
      return c;
  }
  return NULL;
}

/* A new connection's first packet. */
static void on_hello(int sock, const struct lego_local_hello* h, int fd) {
  struct proc* p;
  if (h->flags & LEGO_HELLO_FORK_CHILD) {
    p = fork_child_of((pid_t)h->ppid);
    if (!p) {
      fprintf(stderr, "fake_pmon: fork child %u of %u: no UFFD_EVENT_FORK seen\n", h->pid, h->ppid);
      send_ack(sock, EPROTO, -1);
      close(sock);
      return;
    }
    p->awaiting_hello = false;
    fprintf(stderr, "fake_pmon: fork child %u pairs with slot %d uffd %d\n", h->pid, (int)(p - procs), p->uffd);
    send_ack(sock, 0, p->uffd);
  } else {
    if (fd < 0) {
      send_ack(sock, EPROTO, -1);
      close(sock);
      return;
    }
    p = new_proc();
    p->uffd = fd;
    p->wp = (h->uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0;
    send_ack(sock, 0, -1);
  }
  p->sock = sock;
  p->pid = (pid_t)h->pid;
  fprintf(stderr, "fake_pmon: hello pid %u ppid %u comm %s job '%s' features %#llx excache %llu%s\n", h->pid,
          h->ppid, h->comm, h->job, (unsigned long long)h->uffd_features, (unsigned long long)h->excache_cap,
          (h->flags & LEGO_HELLO_FORK_CHILD) ? " (fork child)" : "");
}

static void accept_one(int lsock) {
  int s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0) return;
  char buf[512];
  union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
  ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC); /* blocking: the program sends HELLO right after connect */
  int fd = -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (n > 0 && c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
  const struct lego_local_hdr* h = (const void*)buf;
  if (n != (ssize_t)(sizeof *h + sizeof(struct lego_local_hello)) || h->magic != LEGO_LOCAL_MAGIC ||
      h->type != LEGO_LOCAL_HELLO) {
    fprintf(stderr, "fake_pmon: bad HELLO (%zd bytes)\n", n);
    if (fd >= 0) close(fd);
    close(s);
    return;
  }
  on_hello(s, (const void*)(buf + sizeof *h), fd);
}

static void read_sock(struct proc* p) {
  char buf[4096];
  ssize_t n = recv(p->sock, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    end_proc(p);
    return;
  }
  const struct lego_local_hdr* h = (const void*)buf;
  if (h->type == LEGO_LOCAL_DROP_ACK && (size_t)n >= sizeof *h + sizeof(struct lego_local_drop_ack))
    on_drop_ack(p, (const void*)(buf + sizeof *h));
  else if (h->type == LEGO_LOCAL_RANGE_ADDED)
    p->ranges++;
}

/* ---- main loop ---- */

static int listen_on(const char* path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  unlink(path);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0 || bind(s, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(s, 64) != 0) {
    perror("fake_pmon: listen");
    exit(2);
  }
  return s;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fake_pmon SOCKET_PATH [--cap PAGES] [--child-cap PAGES]\n");
    return 2;
  }
  for (int i = 2; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--cap") == 0) cap_pages = strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--child-cap") == 0) child_cap = strtol(argv[i + 1], NULL, 10);
  signal(SIGPIPE, SIG_IGN);
  int lsock = listen_on(argv[1]);
  fprintf(stderr, "fake_pmon: listening on %s\n", argv[1]);
  for (;;) {
    struct pollfd fds[1 + 2 * MAX_PROCS];
    int owner[1 + 2 * MAX_PROCS];
    int n = 0;
    bool retrying = false;
    fds[n] = (struct pollfd){.fd = lsock, .events = POLLIN};
    owner[n++] = -1;
    for (int i = 0; i < MAX_PROCS; i++) {
      if (!procs[i].used) continue;
      if (procs[i].retry.n) retrying = true;
      fds[n] = (struct pollfd){.fd = procs[i].uffd, .events = POLLIN};
      owner[n++] = i;
      fds[n] = (struct pollfd){.fd = procs[i].sock, .events = POLLIN}; /* -1 is ignored by poll */
      owner[n++] = i;
    }
    if (poll(fds, (nfds_t)n, retrying ? 1 : 1000) < 0 && errno != EINTR) return 1;
    if (fds[0].revents & POLLIN) accept_one(lsock);
    for (int k = 1; k < n; k++) {
      struct proc* p = &procs[owner[k]];
      if (!p->used || !fds[k].revents) continue;
      if (fds[k].fd == p->uffd && (fds[k].revents & (POLLERR | POLLHUP))) {
        fprintf(stderr, "fake_pmon: uffd %d of pid %d (slot %d) hung up\n", p->uffd, p->pid, owner[k]);
        close(p->uffd); /* the process is gone */
        p->uffd = -1;
      } else if (fds[k].fd == p->uffd) read_uffd(p);
      else if (fds[k].fd == p->sock) read_sock(p);
    }
    for (int i = 0; i < MAX_PROCS; i++)
      if (procs[i].used && procs[i].retry.n) retry_faults(&procs[i]);
    warn_overdue_drops();
  }
}
