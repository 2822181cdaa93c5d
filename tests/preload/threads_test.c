/* threads_test: under liblego_preload.so and fake_pmon: four threads malloc, mmap, write and munmap
 * while the main thread forks twenty children that allocate and write; checks nothing deadlocks or breaks. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void* worker(void* arg) {
  unsigned s = (unsigned)(uintptr_t)arg;
  while (!stop) {
    size_t n = (rand_r(&s) % 4096) * 64 + 1;
    char* p = malloc(n);
    memset(p, 1, n);
    char* m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(m, 2, 1 << 20);
    if (p[n - 1] != 1 || m[(1 << 20) - 1] != 2) abort();
    munmap(m, 1 << 20);
    free(p);
  }
  return NULL;
}
int main(void) {
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  for (int k = 0; k < 20; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      char* p = malloc(8 << 20);
      memset(p, 3, 8 << 20);
      _exit(p[12345] == 3 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    if (st) {
      printf("child failed %#x\n", st);
      return 1;
    }
  }
  stop = 1;
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  printf("ok\n");
  return 0;
}
