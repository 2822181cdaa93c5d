// fork_writer: a program whose forked children write their memory, for the memory tests. The parent fills
// MB megabytes, forks CHILDREN children; each child checks it sees the parent's data, overwrites all of it
// with its own pattern, checks that, and exits 0. The parent then checks that its own data is unchanged
// (copy-on-write) and prints one line. Exit 1 on any mismatch.
//   fork_writer MB CHILDREN
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int check(const uint64_t* m, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; i += 64)
    if (m[i] != i * 2654435761u + tag) return 0;
  return 1;
}

static void fill(uint64_t* m, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; i += 64) m[i] = i * 2654435761u + tag;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fork_writer MB CHILDREN\n");
    return 2;
  }
  const size_t n = strtoull(argv[1], NULL, 10) * (1u << 20) / 8;
  const int children = atoi(argv[2]);
  uint64_t* m = malloc(n * 8);
  if (!m) return 2;
  fill(m, n, 7);
  for (int c = 0; c < children; ++c) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      if (!check(m, n, 7)) _exit(10);
      fill(m, n, 1000 + (uint64_t)c);
      uint64_t* extra = malloc(n * 4);  // the child's own new memory
      if (!extra) _exit(12);
      fill(extra, n / 2, 5);
      if (!check(m, n, 1000 + (uint64_t)c) || !check(extra, n / 2, 5)) _exit(11);
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("child %d failed: status %d\n", c, st);
      return 1;
    }
  }
  if (!check(m, n, 7)) {
    printf("parent data changed by a child\n");
    return 1;
  }
  printf("fork_writer %s MB, %d children: all children saw the parent's data and wrote their own; parent intact\n",
         argv[1], children);
  return 0;
}
