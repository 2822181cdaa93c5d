/* liblego_preload.so: diagnostics to stderr through write(2). No stdio: stdio may malloc and lock. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "preload.h"

static void vsay(const char* fmt, va_list ap) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "lego: ");
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  if (m < 0) m = 0;
  n += m;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t unused = write(2, buf, (size_t)n);
  (void)unused;
}

void lego_log(const char* fmt, ...) {
  if (!lego_debug) return;
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
}

void lego_say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
}

void lego_die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
  _exit(127);
}
