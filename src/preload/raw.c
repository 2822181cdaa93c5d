/* liblego_preload.so: the kernel's mmap/munmap/mremap called with syscall(), bypassing our own wrappers.
 * syscall() returns -1 and sets errno on failure, which is what the libc functions do too. */
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

void* lego_raw_mmap(void* addr, size_t len, int prot, int flags, int fd, long off) {
  return (void*)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int lego_raw_munmap(void* addr, size_t len) {
  return (int)syscall(SYS_munmap, addr, len);
}

void* lego_raw_mremap(void* old, size_t old_len, size_t new_len, int flags, void* new_addr) {
  return (void*)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}
