/*
 * Test-only LD_PRELOAD library: a fake VFIO device without a kernel.
 *
 * Files in $FAKE_VFIO_DIR play the device:
 *   - "$FAKE_VFIO_DIR/group": VFIO_GROUP_GET_DEVICE_FD(name) opens "$FAKE_VFIO_DIR/name";
 *   - "$FAKE_VFIO_DIR/dev-*": device fds. ioctl answers VFIO_DEVICE_GET_INFO (9 regions),
 *     VFIO_DEVICE_GET_REGION_INFO (the layout below), VFIO_DEVICE_RESET and
 *     VFIO_DEVICE_FEATURE (MIGRATION: STOP_COPY | P2P), and FAKE_VFIO_COUNTERS.
 * The BARs' bytes are the file's own bytes at the region offsets: pread/pwrite/mmap are NOT
 * interposed here, so whatever reaches the file went through the interposer untouched.
 *
 * The interposer sits before this library in LD_PRELOAD; its dlsym(RTLD_NEXT, "ioctl") finds
 * ours, exactly as it finds the kernel's in production.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include VFIO_H
#include "fake-vfio.h"

/* vfio-pci's index << 40 layout, except BAR5, which sits past every other region: the
 * interposer must compute "past the real regions" (11 << 40), not assume 9 << 40. */
static const struct { uint64_t offset, size; uint32_t flags; } regions[FAKE_NUM_REGIONS] = {
    { 0, 0x1000, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP },
    { 1ull << 40, 0, 0 },
    { 2ull << 40, 0x4000, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE },
    { 3ull << 40, 0, 0 },
    { 4ull << 40, 0, 0 },
    { FAKE_BAR5_OFFSET, FAKE_BAR5_SIZE, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE },
    { 6ull << 40, 0, 0 },
    { 7ull << 40, 256, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE },
    { 0, 0, 0 },        /* VGA: absent, EINVAL like vfio-pci without VGA */
};

static int (*real_ioctl)(int, unsigned long, ...);
static struct fake_counters counters;

/* "dev" or "group" when fd is one of the fake's files, else NULL. */
static const char *kind_of(int fd)
{
    const char *dir = getenv("FAKE_VFIO_DIR");
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (!dir || n <= 0) return NULL;
    path[n] = 0;
    size_t d = strlen(dir);
    if (strncmp(path, dir, d) != 0 || path[d] != '/') return NULL;
    if (strcmp(path + d + 1, "group") == 0) return "group";
    return strncmp(path + d + 1, "dev-", 4) == 0 ? "dev" : NULL;
}

static int fail(int e) { errno = e; return -1; }

static int device_ioctl(unsigned long request, void *arg)
{
    switch (request) {
    case VFIO_DEVICE_GET_INFO: {
        struct vfio_device_info info;
        memcpy(&info, arg, 16);
        if (info.argsz < 16) return fail(EINVAL);
        info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
        info.num_regions = FAKE_NUM_REGIONS;
        info.num_irqs = 5;
        memcpy(arg, &info, 16);
        counters.infos++;
        return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO: {
        struct vfio_region_info info;
        memcpy(&info, arg, sizeof info);
        if (info.argsz < sizeof info) return fail(EINVAL);
        if (info.index >= FAKE_NUM_REGIONS || info.index == VFIO_PCI_VGA_REGION_INDEX) return fail(EINVAL);
        info.offset = regions[info.index].offset;
        info.size = regions[info.index].size;
        info.flags = regions[info.index].flags;
        info.cap_offset = 0;
        memcpy(arg, &info, sizeof info);
        return 0;
    }
    case VFIO_DEVICE_RESET:
        counters.resets++;
        return 0;
    case VFIO_DEVICE_FEATURE: {
        struct vfio_device_feature f;
        memcpy(&f, arg, sizeof f);
        counters.features++;
        if (f.argsz < sizeof f) return fail(EINVAL);
        if ((f.flags & VFIO_DEVICE_FEATURE_MASK) != VFIO_DEVICE_FEATURE_MIGRATION) return fail(ENOTTY);
        if (f.flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
        if (f.argsz < sizeof f + 8) return fail(EINVAL);
        uint64_t flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
        memcpy((char *)arg + sizeof f, &flags, 8);
        return 0;
    }
    case FAKE_VFIO_COUNTERS:
        memcpy(arg, &counters, sizeof counters);
        return 0;
    default:
        return fail(ENOTTY);
    }
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl) *(void **)&real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    const char *kind = kind_of(fd);
    if (kind && strcmp(kind, "dev") == 0) return device_ioctl(request, arg);
    if (kind && request == VFIO_GROUP_GET_DEVICE_FD) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", getenv("FAKE_VFIO_DIR"), (const char *)arg);
        return open(path, O_RDWR | O_CLOEXEC);
    }
    return real_ioctl(fd, request, arg);
}
