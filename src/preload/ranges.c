/* liblego_preload.so: the table of anonymous ranges the library captured.
 *
 * A static, sorted, malloc-free array of [start, end) ranges. An entry is either registered with the
 * userfaultfd or recorded for registration once the pmon has acknowledged the fd (registering earlier
 * deadlocks: nobody would serve the faults). Callers hold the lock (lego_ranges_lock) around a syscall and
 * the matching table update, so that the table follows the kernel's view.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "preload.h"

#define MAX_RANGES 65536

struct range {
  uintptr_t start, end;
  bool registered;
};

static struct range table[MAX_RANGES];
static size_t count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool warned_full;

void lego_ranges_lock(void) { pthread_mutex_lock(&lock); }
void lego_ranges_unlock(void) { pthread_mutex_unlock(&lock); }

static uintptr_t page_up(uintptr_t x) { return (x + LEGO_PAGE - 1) & ~(LEGO_PAGE - 1); }

/* Index of the first entry whose end is above addr. */
static size_t first_after(uintptr_t addr) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (table[mid].end <= addr) lo = mid + 1; else hi = mid;
  }
  return lo;
}

static bool insert_at(size_t i, uintptr_t start, uintptr_t end, bool registered) {
  if (count == MAX_RANGES) {
    if (!warned_full) lego_say("range table full (%d entries): later ranges are not tracked", MAX_RANGES);
    warned_full = true;
    return false;
  }
  memmove(&table[i + 1], &table[i], (count - i) * sizeof table[0]);
  table[i] = (struct range){start, end, registered};
  count++;
  return true;
}

static void erase_at(size_t i) {
  memmove(&table[i], &table[i + 1], (count - i - 1) * sizeof table[0]);
  count--;
}

void lego_ranges_remove(uintptr_t start, size_t len) {
  uintptr_t end = page_up(start + len);
  size_t i = first_after(start);
  while (i < count && table[i].start < end) {
    struct range* r = &table[i];
    if (r->start < start && r->end > end) { /* a hole in the middle: split */
      uintptr_t old_end = r->end;
      r->end = start;
      insert_at(i + 1, end, old_end, r->registered);
      return;
    }
    if (r->start < start) { r->end = start; i++; continue; }
    if (r->end > end) { r->start = end; return; }
    erase_at(i);
  }
}

static void register_entry(size_t i) {
  struct range* r = &table[i];
  int err = lego_uffd_register(r->start, r->end - r->start);
  if (err == 0) {
    r->registered = true;
  } else {
    lego_log("cannot register %#lx+%#lx: %s", (unsigned long)r->start,
             (unsigned long)(r->end - r->start), strerror(err));
  }
}

void lego_ranges_add(uintptr_t start, size_t len) {
  uintptr_t end = page_up(start + len);
  lego_ranges_remove(start, end - start);
  size_t i = first_after(start);
  bool tracked = insert_at(i, start, end, false);
  if (lego_state != LEGO_LIVE) return;
  if (tracked) {
    register_entry(i);
    if (!table[i].registered) erase_at(i);
  } else {
    lego_uffd_register(start, end - start);
  }
}

bool lego_ranges_contains(uintptr_t start, size_t len) {
  uintptr_t end = page_up(start + len);
  size_t i = first_after(start);
  if (i == count || table[i].start > start) return false;
  /* The kernel merges adjacent registered VMAs, so walk over contiguous entries. */
  while (table[i].end < end) {
    if (i + 1 == count || table[i + 1].start != table[i].end) return false;
    i++;
  }
  return true;
}

int lego_ranges_register_pending(void) {
  int n = 0;
  for (size_t i = 0; i < count; i++) {
    if (table[i].registered) continue;
    register_entry(i);
    if (table[i].registered) {
      n++;
    } else {
      erase_at(i);
      i--;
    }
  }
  return n;
}

size_t lego_ranges_count(void) { return count; }
