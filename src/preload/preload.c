/* liblego_preload.so: global state, the constructor, and fork handling.
 *
 * Without LEGO_PMON_SOCKET the library is plain jemalloc. With it, the constructor reserves the region,
 * points jemalloc at it, creates the userfaultfd, hands it to the pmon (HELLO), and only after the pmon's
 * HELLO_ACK registers the region and every anonymous range recorded so far. Any failure on the way ends
 * the program with exit code 127: it must never run silently with local memory when Lego was asked for.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"
#include "protocol/local.h"

/* jemalloc's options, read at its first use (decision 005): no lazily created huge arena with default
 * hooks, no background purging thread. */
__attribute__((visibility("default"))) const char* malloc_conf = "oversize_threshold:0,background_thread:false";

volatile int lego_state = LEGO_BOOT;
int lego_uffd = -1;
int lego_sock = -1;
bool lego_wp_mode = true;
bool lego_debug;

static char pmon_path[108];
static uint64_t features; /* sent in HELLO: enabled events, plus PAGEFAULT_FLAG_WP if ranges carry MODE_WP */

/* Registers the recorded ranges and goes live, atomically with respect to the wrappers. */
static void go_live(void) {
  lego_ranges_lock();
  int n = lego_ranges_register_pending();
  lego_state = LEGO_LIVE;
  lego_ranges_unlock();
  lego_log("live: %d ranges registered (wp %s)", n, lego_wp_mode ? "on" : "off");
}

/* ---- fork ----
 *
 * Two sets of handlers, registered around jemalloc's (which it registers when it initialises):
 *   ours (atfork_prepare, atfork_parent, atfork_child_unlock), jemalloc's, ours (atfork_child).
 * prepare runs in reverse order: jemalloc's locks, then the range lock (a thread inside jemalloc may hold
 * its locks while it maps through our wrapper). In the child, atfork_child runs last, after jemalloc's
 * handler has released its locks: it starts a thread, which mallocs. Until its HELLO, the child's faults
 * are served on the uffd the pmon got in UFFD_EVENT_FORK, and the pmon does not evict from it. */

static void atfork_prepare(void) {
  if (lego_state != LEGO_INERT) lego_ranges_lock();
}

static void atfork_parent(void) {
  if (lego_state != LEGO_INERT) lego_ranges_unlock();
}

static void atfork_child_unlock(void) {
  if (lego_state == LEGO_INERT) return;
  lego_state = LEGO_PENDING;
  lego_ranges_unlock();
}

/* The child inherited its ranges registered with a new uffd that the pmon got in UFFD_EVENT_FORK. It says
 * HELLO on a connection of its own and gets that uffd back in the ACK. Its helper thread is started first:
 * the pmon may evict from the child as soon as it has sent the ACK. */
static void atfork_child(void) {
  if (lego_state == LEGO_INERT) return;
  if (!(features & UFFD_FEATURE_EVENT_FORK)) lego_die("fork() needs CAP_SYS_PTRACE under Lego");
  lego_pmon_start_helper();
  lego_pmon_hello(pmon_path, features, true);
  go_live();
}

/* ---- start ---- */

static void create_uffd(void) {
  uint64_t enabled = 0;
  int fd = lego_uffd_create(&enabled);
  if (fd < 0) lego_die("cannot create a userfaultfd: %s", strerror(-fd));
  lego_uffd = fd;
  lego_wp_mode = lego_uffd_probe_wp();
  features = enabled | (lego_wp_mode ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0);
}

__attribute__((constructor(101))) static void lego_preload_init(void) {
  const char* dbg = getenv(LEGO_ENV_DEBUG);
  lego_debug = dbg && strcmp(dbg, "1") == 0;
  const char* path = getenv(LEGO_ENV_SOCKET);
  if (!path || !*path) {
    lego_state = LEGO_INERT;
    return;
  }
  if (strlen(path) >= sizeof pmon_path) lego_die("cannot reach the process monitor at %s: path too long", path);
  strcpy(pmon_path, path);
  lego_log("pid %d: %zu anonymous ranges mapped before the constructor", (int)getpid(), lego_ranges_count());
  /* Registered before jemalloc's own handlers if possible (see "fork" above). */
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child_unlock);

  int err = lego_region_reserve();
  if (err) lego_die("cannot reserve the %lu GiB heap region: %s", LEGO_REGION_SIZE >> 30, strerror(err));
  lego_ranges_lock();
  lego_state = LEGO_PENDING;
  lego_ranges_add(lego_region_start(), LEGO_REGION_SIZE);
  lego_ranges_unlock();

  lego_region_install_hooks(); /* mallctl: jemalloc is initialised and its atfork handlers registered */
  pthread_atfork(NULL, NULL, atfork_child);
  create_uffd();
  lego_pmon_start_helper();
  lego_pmon_hello(pmon_path, features, false);
  go_live();
}
