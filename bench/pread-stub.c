/*
 * Bench-only: a pread64 that never enters the kernel, preloaded last so that what the bench
 * measures is the interposer's own cost per call (table lookup, range compare, one indirect
 * call) instead of syscall noise.
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

ssize_t pread64(int fd, void *buf, size_t count, off64_t off)
{
    (void)fd;
    (void)off;
    memset(buf, 0, count);
    return (ssize_t)count;
}
