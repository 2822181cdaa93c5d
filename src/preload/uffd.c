/* liblego_preload.so: creating the userfaultfd and registering ranges on it. */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* A fresh userfaultfd: the syscall, or /dev/userfaultfd when the syscall is not allowed to us. */
static int open_uffd(void) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) return fd;
  int err = errno;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) return -err;
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  err = errno;
  close(dev);
  return fd >= 0 ? fd : -err;
}

static int api(int fd, uint64_t features) {
  struct uffdio_api a = {.api = UFFD_API, .features = features};
  return ioctl(fd, UFFDIO_API, &a) == 0 ? 0 : errno;
}

/* EVENT_FORK needs CAP_SYS_PTRACE: without it, UFFDIO_API fails and the fd is spent, so start over. */
int lego_uffd_create(uint64_t* features_out) {
  uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID;
  int fd = open_uffd();
  if (fd < 0) return fd;
  int err = api(fd, want);
  if (err != 0) {
    lego_log("UFFDIO_API with EVENT_FORK: %s; retrying without (fork() unsupported)", strerror(err));
    close(fd);
    want = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID;
    fd = open_uffd();
    if (fd < 0) return fd;
    err = api(fd, want);
    if (err != 0) {
      close(fd);
      return -err;
    }
  }
  *features_out = want;
  return fd;
}

static int register_mode(uintptr_t start, size_t len, uint64_t mode) {
  struct uffdio_register r = {.range = {.start = start, .len = len}, .mode = mode};
  return ioctl(lego_uffd, UFFDIO_REGISTER, &r) == 0 ? 0 : errno;
}

int lego_uffd_register(uintptr_t start, size_t len) {
  uint64_t mode = UFFDIO_REGISTER_MODE_MISSING | (lego_wp_mode ? UFFDIO_REGISTER_MODE_WP : 0);
  return register_mode(start, len, mode);
}

/* Can ranges be registered with MODE_WP? Tried on a scratch page that nobody touches, then unregistered
 * before the unmap (an unmap of a registered range would wait for the pmon to read the UNMAP event). */
bool lego_uffd_probe_wp(void) {
  void* p = lego_raw_mmap(NULL, LEGO_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  int err = register_mode((uintptr_t)p, LEGO_PAGE, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
  if (err == 0) {
    struct uffdio_range r = {.start = (uintptr_t)p, .len = LEGO_PAGE};
    ioctl(lego_uffd, UFFDIO_UNREGISTER, &r);
  } else {
    lego_say("userfaultfd write-protect mode refused (%s): registering MISSING only", strerror(err));
  }
  lego_raw_munmap(p, LEGO_PAGE);
  return err == 0;
}
