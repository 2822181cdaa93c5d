/* liblego_preload.so: the connection to the process monitor (src/protocol/local.h) and the helper thread.
 *
 * HELLO carries the userfaultfd to the pmon; nothing is registered before its HELLO_ACK. The helper thread
 * serves the pmon's DROP requests (MADV_DONTNEED of pages the pmon has written back). It blocks all
 * signals, never mallocs and only uses its stack, which glibc maps outside the registered ranges.
 *
 * The helper is started before HELLO and waits for the HELLO_ACK (lego_pmon_hello releases it): the pmon may
 * send a DROP, and write-protect its pages, right after the ACK, and a fault on such a page waits for the
 * DROP_ACK. Started after the ACK, the helper could never come: pthread_create writes to the heap (reusing a
 * cached stack clears its DTV, which jemalloc allocated), so the starting thread could be that fault.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"
#include "protocol/local.h"

#define ACK_TIMEOUT_MS 10000

static const char* sock_path;
static sem_t helper_go; /* posted once the HELLO_ACK is in: the helper may read lego_sock */

static struct lego_local_hdr header(uint16_t type) {
  return (struct lego_local_hdr){.magic = LEGO_LOCAL_MAGIC, .version = LEGO_LOCAL_VERSION, .type = type};
}

static _Noreturn void unreachable(const char* why) {
  lego_die("cannot reach the process monitor at %s: %s", sock_path, why);
}

static int connect_pmon(void) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof sa.sun_path) unreachable("socket path too long");
  strcpy(sa.sun_path, sock_path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) unreachable(strerror(errno));
  if (connect(fd, (struct sockaddr*)&sa, sizeof sa) != 0) unreachable(strerror(errno));
  return fd;
}

/* The program's name for `lego ps`: argv[0]'s basename, else /proc/self/exe's. */
static void fill_comm(char* out, size_t cap) {
  const char* name = program_invocation_short_name;
  char exe[PATH_MAX];
  if (!name || !*name) {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    const char* slash = strrchr(exe, '/');
    name = slash ? slash + 1 : exe;
  }
  size_t i = 0;
  for (; name[i] && i + 1 < cap; i++) out[i] = name[i];
  out[i] = 0;
}

static uint64_t excache_cap(void) {
  const char* s = getenv(LEGO_ENV_EXCACHE);
  if (!s || !*s) return 0;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || *s == '-') lego_die("%s=%s is not a number of bytes", LEGO_ENV_EXCACHE, s);
  return v;
}

static void send_hello(int fd, uint64_t features, bool fork_child) {
  struct lego_local_hdr h = header(LEGO_LOCAL_HELLO);
  struct lego_local_hello body = {
      .pid = (uint32_t)getpid(),
      .ppid = (uint32_t)getppid(),
      .uffd_features = features,
      .excache_cap = excache_cap(),
      .region_start = lego_region_start(),
      .region_length = LEGO_REGION_SIZE,
      .flags = fork_child ? LEGO_HELLO_FORK_CHILD : 0,
  };
  const char* job = getenv(LEGO_ENV_JOB);
  if (job) strncpy(body.job, job, sizeof body.job - 1);
  fill_comm(body.comm, sizeof body.comm);

  struct iovec iov[2] = {{&h, sizeof h}, {&body, sizeof body}};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
  if (!fork_child) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &lego_uffd, sizeof(int));
  }
  if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) unreachable(strerror(errno));
}

/* Waits for HELLO_ACK; returns the fd it carried, or -1. */
static int wait_ack(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do r = poll(&p, 1, ACK_TIMEOUT_MS); while (r < 0 && errno == EINTR);
  if (r == 0) unreachable("no HELLO_ACK within 10 s");
  if (r < 0) unreachable(strerror(errno));

  struct { struct lego_local_hdr h; struct lego_local_hello_ack a; } m;
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct iovec iov = {&m, sizeof m};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
  ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) unreachable(strerror(errno));
  if (n == 0) unreachable("connection closed before HELLO_ACK");
  int passed = -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&passed, CMSG_DATA(c), sizeof(int));
  if (n != sizeof m || m.h.magic != LEGO_LOCAL_MAGIC || m.h.version != LEGO_LOCAL_VERSION ||
      m.h.type != LEGO_LOCAL_HELLO_ACK)
    unreachable("malformed HELLO_ACK");
  if (m.a.status != 0)
    lego_die("the process monitor at %s refused this process: %s", sock_path, strerror(m.a.status));
  return passed;
}

/* HELLO/HELLO_ACK. A fork child connects anew and receives its own uffd (from UFFD_EVENT_FORK) in the
 * ACK; it replaces the inherited fd, which is the parent's. */
void lego_pmon_hello(const char* path, uint64_t features, bool fork_child) {
  sock_path = path;
  if (lego_sock >= 0) close(lego_sock);
  lego_sock = connect_pmon();
  send_hello(lego_sock, features, fork_child);
  int fd = wait_ack(lego_sock);
  if (fork_child) {
    if (fd < 0) unreachable("the fork child's HELLO_ACK carried no userfaultfd");
    if (dup3(fd, lego_uffd, O_CLOEXEC) < 0) lego_die("dup3 of the child's userfaultfd: %s", strerror(errno));
    close(fd);
  } else if (fd >= 0) {
    close(fd);
  }
  sem_post(&helper_go); /* lego_sock is the pmon's now: DROPs may follow the ACK at once */
  lego_log("pmon acknowledged pid %d%s", (int)getpid(), fork_child ? " (fork child)" : "");
}


/* ---- the helper thread ---- */

/* Linux >= 6.14 (include/uapi/linux/fcntl.h): "this process" for pidfd calls, without an fd. */
#ifndef PIDFD_SELF_THREAD_GROUP
#define PIDFD_SELF_THREAD_GROUP -10001
#endif

/* MADV_DONTNEED one run of pages (all in our table: drop_pages keeps only those). ENOMEM (part of the run
 * unmapped meanwhile) is not an error: whatever is there now is not the pmon's to drop. */
static int drop_run(uintptr_t start, size_t n) {
  if (madvise((void*)start, n * LEGO_PAGE, MADV_DONTNEED) != 0 && errno != ENOMEM) return errno;
  return 0;
}

/* Whether process_madvise(PIDFD_SELF, MADV_DONTNEED) works here (Linux >= 6.14); LEGO_DROP_BATCH=0 turns
 * it off. Set before the helper starts, then the helper's only. */
static int batch_drop_ok = 1;

/* Drops runs with as few TLB shoot-downs as possible. One madvise per run costs one shoot-down each, an
 * interprocessor interrupt to every CPU this process runs on: 11-14 us per scattered page while another of
 * its threads runs (decision 006). process_madvise takes the whole vector and flushes once at the end
 * (0.7-0.9 us per page). A run it stops at (ENOMEM across a hole, EINVAL on a locked range) goes through
 * drop_run, which tells those apart as before; the vector resumes after it. */
static int drop_runs(const struct iovec* iov, uint32_t n) {
  int status = 0;
  uint32_t i = 0;
  while (i < n) {
    int err = 0;
    if (batch_drop_ok) {
      long rc =
          syscall(SYS_process_madvise, PIDFD_SELF_THREAD_GROUP, iov + i, (size_t)(n - i), MADV_DONTNEED, 0U);
      err = rc < 0 ? errno : 0;
      size_t done = rc > 0 ? (size_t)rc : 0;
      static int batched_logged = 0; /* helper thread only */
      if (done > 0 && !batched_logged) {
        batched_logged = 1;
        lego_log("helper: drops batched with process_madvise");
      }
      while (i < n && done >= iov[i].iov_len) done -= iov[i++].iov_len;
      if (i == n) break;
      if (err == EBADF || err == ENOSYS || err == EPERM) batch_drop_ok = 0; /* an older kernel: one by one */
    }
    int e = drop_run((uintptr_t)iov[i].iov_base, iov[i].iov_len / LEGO_PAGE);
    /* EINVAL from the vector but not from madvise of the same run: the kernel refuses MADV_DONTNEED in
     * process_madvise, whatever the range. */
    if (err == EINVAL && e == 0) batch_drop_ok = 0;
    if (e && !status) status = e;
    i++;
  }
  return status;
}

/* Drops the pages of a DROP that are still in our table. A page that left the table was unmapped or replaced
 * after the pmon chose it (the pmon got UFFD_EVENT_UNMAP for it): whatever is there now is not the pmon's to
 * drop. The table lock is held throughout, so no wrapper changes the mappings meanwhile. */
static int drop_pages(const uint64_t* pages, uint32_t count) {
  struct iovec iov[LEGO_LOCAL_MAX_DROP];
  uint32_t n = 0;
  lego_ranges_lock();
  for (uint32_t i = 0; i < count;) {
    uint32_t j = i + 1;
    while (j < count && pages[j] == pages[j - 1] + LEGO_PAGE) j++; /* coalesce a run */
    uintptr_t start = (uintptr_t)pages[i];
    if (lego_ranges_contains(start, (j - i) * LEGO_PAGE)) {
      iov[n++] = (struct iovec){(void*)start, (j - i) * LEGO_PAGE};
    } else {
      for (uint32_t k = i; k < j; k++) { /* only the pages still in the table */
        uintptr_t a = (uintptr_t)pages[k];
        if (!lego_ranges_contains(a, LEGO_PAGE)) continue;
        if (n > 0 && (uintptr_t)iov[n - 1].iov_base + iov[n - 1].iov_len == a)
          iov[n - 1].iov_len += LEGO_PAGE;
        else
          iov[n++] = (struct iovec){(void*)a, LEGO_PAGE};
      }
    }
    i = j;
  }
  int status = drop_runs(iov, n);
  lego_ranges_unlock();
  return status;
}

static void handle_drop(const char* buf, size_t n) {
  const struct lego_local_drop* d = (const void*)(buf + sizeof(struct lego_local_hdr));
  if (n < sizeof(struct lego_local_hdr) + sizeof *d) return;
  uint32_t cnt = d->count;
  int status = 0;
  if (cnt > LEGO_LOCAL_MAX_DROP || n < sizeof(struct lego_local_hdr) + sizeof *d + cnt * sizeof(uint64_t))
    status = EINVAL;
  else
    status = drop_pages((const uint64_t*)(d + 1), cnt);
  struct { struct lego_local_hdr h; struct lego_local_drop_ack a; } ack = {
      header(LEGO_LOCAL_DROP_ACK), {.seq = d->seq, .status = status}};
  if (send(lego_sock, &ack, sizeof ack, MSG_NOSIGNAL) < 0) lego_log("DROP_ACK: %s", strerror(errno));
}

volatile int lego_remote_full = 0;

static _Noreturn void lost_pmon(void) {
  lego_say("lost the process monitor; this process's memory is unreachable");
  kill(getpid(), SIGKILL);
  _exit(137);
}

static void* helper(void* arg) {
  char buf[sizeof(struct lego_local_hdr) + sizeof(struct lego_local_drop) + LEGO_LOCAL_MAX_DROP * 8 + 64];
  while (sem_wait(&helper_go) != 0) {
  }
  if (!batch_drop_ok) lego_log("helper: drops with madvise per run (%s=0)", LEGO_ENV_DROP_BATCH);
  for (;;) {
    ssize_t n = recv(lego_sock, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) lost_pmon();
    const struct lego_local_hdr* h = (const void*)buf;
    if ((size_t)n < sizeof *h || h->magic != LEGO_LOCAL_MAGIC) {
      lego_log("helper: malformed packet of %zd bytes", n);
      continue;
    }
    if (h->type == LEGO_LOCAL_DROP) {
      handle_drop(buf, (size_t)n);
    } else if (h->type == LEGO_LOCAL_REMOTE_FULL && (size_t)n >= sizeof *h + sizeof(struct lego_local_remote_full)) {
      struct lego_local_remote_full f;
      memcpy(&f, buf + sizeof *h, sizeof f);
      lego_remote_full = f.full != 0;
      lego_log("remote memory %s", f.full ? "full: new allocations fail" : "has room again");
    } else
      lego_log("helper: ignoring message type %u", h->type);
  }
  return NULL;
}

void lego_pmon_start_helper(void) {
  const char* batch = getenv(LEGO_ENV_DROP_BATCH);
  if (batch && strcmp(batch, "0") == 0) batch_drop_ok = 0;
  sem_init(&helper_go, 0, 0); /* a fork child's copy may hold the parent's state: no thread waits on it here */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits the full mask from its first instruction */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  int err = pthread_create(&t, &attr, helper, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) lego_die("cannot start the helper thread: %s", strerror(err));
  pthread_setname_np(t, "lego-helper");
}
