// alloc_until_fail: allocates and fills 1 MB chunks until malloc returns NULL or MAX_MB is reached, then
// checks every chunk and frees them. For the full-memory test: under Lego with full memory monitors,
// malloc must return NULL (the program handles it) rather than the program or a daemon crashing.
//   alloc_until_fail MAX_MB
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  const size_t max_mb = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
  char** chunks = calloc(max_mb, sizeof(char*));
  size_t n = 0;
  while (n < max_mb) {
    char* c = malloc(1 << 20);
    if (!c) break;
    memset(c, (int)(n % 251) + 1, 1 << 20);
    chunks[n++] = c;
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < (1 << 20); j += 4096)
      if (chunks[i][j] != (char)((i % 251) + 1)) {
        printf("MISMATCH in chunk %zu\n", i);
        return 1;
      }
  for (size_t i = 0; i < n; ++i) free(chunks[i]);
  if (n < max_mb)
    printf("malloc returned NULL after %zu MB; all data intact\n", n);
  else
    printf("allocated %zu MB; all data intact\n", n);
  return 0;
}
