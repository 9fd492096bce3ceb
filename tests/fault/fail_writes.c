/* An LD_PRELOAD seam for tests/crash_test.sh: makes one system call fail on the temporary file of a
 * checkpoint save (a path containing ".tmp."), as a full disk, a broken device or a quota would.
 *   SEQGEN_FAIL=write   write() fails with EIO
 *   SEQGEN_FAIL=fsync   fsync() fails with EIO
 *   SEQGEN_FAIL=close   close() fails with EIO (after closing)
 * Other files and calls pass through untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int is_checkpoint_temp(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  return strstr(path, ".tmp.") != NULL;
}

static int failing(const char* call, int fd) {
  const char* which = getenv("SEQGEN_FAIL");
  return which && strcmp(which, call) == 0 && is_checkpoint_temp(fd);
}

ssize_t write(int fd, const void* buf, size_t count) {
  static ssize_t (*real)(int, const void*, size_t);
  if (!real) real = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (failing("write", fd)) {
    errno = EIO;
    return -1;
  }
  return real(fd, buf, count);
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (failing("fsync", fd)) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int close(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "close");
  const int fail = failing("close", fd);
  const int r = real(fd);
  if (fail) {
    errno = EIO;
    return -1;
  }
  return r;
}
