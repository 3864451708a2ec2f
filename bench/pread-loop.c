/*
 * Bench-only timing loop for bench/interposer-passthrough.mjs: ns per 8-byte pread64 at offset 0
 * (the shape of a trapped BAR access from a vCPU thread) on a VFIO device fd and on a plain file
 * fd. The device comes from $FAKE_VFIO_DIR: through the fake's group when the fake is preloaded,
 * else the file itself. Times are this thread's CPU time (user + system), so that other load on
 * the machine does not count. Prints one JSON line.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define VFIO_GROUP_GET_DEVICE_FD _IO(';', 106)
#define VFIO_DEVICE_GET_INFO _IO(';', 107)

static double ns_per_pread(int fd, long n)
{
    uint64_t v;
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++) pread64(fd, &v, 8, 0);     /* warm up */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (long i = 0; i < n; i++)
        if (pread64(fd, &v, 8, 0) != 8) { perror("pread64"); exit(1); }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *dir = getenv("FAKE_VFIO_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/group", dir);
    int group = open(path, O_RDWR | O_CLOEXEC);
    int dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "dev-a");
    close(group);
    if (dev < 0) {
        snprintf(path, sizeof path, "%s/dev-a", dir);
        dev = open(path, O_RDWR | O_CLOEXEC);
    }
    uint32_t info[6] = { sizeof info };
    int bridged = ioctl(dev, VFIO_DEVICE_GET_INFO, info) == 0 && info[2] == 10;
    snprintf(path, sizeof path, "%s/plain", dir);
    int plain = open(path, O_RDWR | O_CLOEXEC);
    double tracked = ns_per_pread(dev, n), untracked = ns_per_pread(plain, n);
    printf("{\"bridged\":%s,\"deviceFdNs\":%.1f,\"plainFdNs\":%.1f}\n", bridged ? "true" : "false", tracked, untracked);
    return 0;
}
