/* fork_test: under liblego_preload.so and fake_pmon with a small --cap. The child of fork() reads its
 * parent's (partly evicted) memory, writes its own copy and allocates more; the parent must still see its
 * own data afterwards (copy-on-write held). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define N ((16UL << 20) / 8)

static int verify(const char* who, const uint64_t* p, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v + i) {
      fprintf(stderr, "fork_test: %s: word %zu is %llu, want %llu\n", who, i, (unsigned long long)p[i],
              (unsigned long long)(v + i));
      return 1;
    }
  return 0;
}

static void fill(uint64_t* p, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; i++) p[i] = v + i;
}

int main(void) {
  uint64_t* a = malloc(N * 8);
  fill(a, N, 1);
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 1; }
  if (pid == 0) {
    int bad = verify("child reads parent data", a, N, 1);
    fill(a, N, 99);
    uint64_t* more = malloc(N * 8);
    fill(more, N, 7);
    bad |= verify("child's new memory", more, N, 7);
    bad |= verify("child's own copy", a, N, 99);
    _exit(bad);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  int bad = verify("parent after the child", a, N, 1);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "fork_test: child status %#x\n", status);
    bad = 1;
  }
  printf(bad ? "FAILED\n" : "ok\n");
  return bad;
}
