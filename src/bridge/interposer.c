/*
 * vfio-mig interposer: the LD_PRELOAD half of `vfio-mig bridge`.
 *
 * Build: cc -shared -fPIC -O2 -Wall -Wextra -Werror -o vfio-mig-interposer.so interposer.c -ldl -lpthread
 *
 * What it does. Loaded into a program that speaks VFIO migration v1 (QEMU <= 7.2), it makes
 * every VFIO device fd that the bridge accepts look like a device with a v1 migration region:
 *   - on the first VFIO_DEVICE_GET_INFO of an fd it does not know, it connects to the bridge
 *     (VFIO_MIG_BRIDGE_SOCKET) and sends REGISTER with the fd number; the bridge takes its own
 *     copy of the fd with pidfd_getfd(2) and answers whether the device is bridged and where
 *     the region is;
 *   - for a bridged fd it adds one region (index = the real num_regions, type 3 / subtype 1)
 *     to GET_INFO and GET_REGION_INFO, forwards header accesses (pread/pwrite) and
 *     VFIO_DEVICE_RESET to the bridge, and serves the data window from a file that the bridge
 *     shares (memcpy for trapped accesses, a mapping of that file for mmap);
 *   - it tracks which fd numbers name a bridged device across dup/dup2/dup3/fcntl(F_DUPFD*),
 *     close/close_range and fork.
 * Everything else passes straight to libc; with VFIO_MIG_BRIDGE_SOCKET unset it does nothing.
 *
 * What it does not do. It decides nothing about migration: device_state arcs, pending_bytes,
 * data_offset/data_size, width and alignment rules all live in the bridge (LegacyRegionOverV2).
 * It keeps the layout the bridge answered, one status bit (is the window writable) and the last
 * device_state value the bridge reported. readv/writev-style calls, read/write+lseek and raw
 * syscall() on the region are not interposed: QEMU uses pread64/pwrite64/mmap64/ioctl (the
 * others in the list are covered because QEMU 7.2 imports them too).
 *
 * Why the odd rules:
 *   - GET_REGION_INFO answers exactly as vfio-pci's vfio_pci_ioctl_get_region_info
 *     (drivers/vfio/pci/vfio_pci_core.c): argsz < 32 is EINVAL; when argsz cannot hold the
 *     capability chain it only raises argsz and zeroes cap_offset, because QEMU's
 *     vfio_get_region_info (hw/vfio/common.c) asks with 32 bytes and retries with that argsz.
 *   - With MMAP the chain carries a sparse-mmap capability that covers the window only: QEMU's
 *     vfio_region_setup maps the WHOLE region when MMAP is set without one, and header
 *     accesses would then be plain memory that never reaches the bridge.
 *   - When the bridge is gone every forwarded access fails with EIO, except a 4-byte read of
 *     device_state, which returns the last value the bridge reported: QEMU 7.2's
 *     vfio_migration_set_state re-reads device_state after a failed write and calls hw_error()
 *     (aborting the VM) if that read fails. With the cached value it fails the migration and
 *     the VM keeps running.
 *   - VFIO_DEVICE_FEATURE MIGRATION / MIG_DEVICE_STATE / MIG_DATA_SIZE on a bridged fd answer
 *     ENOTTY like a driver without mig_ops (vfio_ioctl_device_feature, drivers/vfio/vfio_main.c):
 *     the bridge owns the device's v2 state machine; a second v2 user would desynchronise it.
 *     VFIO_IOMMU_DIRTY_PAGES has the same number; only fds of bridged devices are looked at.
 *   - vCPU threads call pread64/pwrite64/ioctl on BARs of the same fd all the time: that path is
 *     one lock-free table lookup and a range compare, never a lock or an allocation. Only one
 *     thread at a time talks to the bridge per device (a mutex held around one exchange).
 *   - Device records are never freed (a few hundred bytes and one window mapping per device
 *     per process lifetime), so a lookup racing with close never touches freed memory.
 *   - After fork() the child drops every connection and tracks nothing: QEMU's `exec:`
 *     migration forks `sh -c cat` with LD_PRELOAD still set.
 */
#undef _FORTIFY_SOURCE          /* we define pread & co. ourselves */
#undef _FILE_OFFSET_BITS        /* keep pread and pread64 (fcntl and fcntl64) distinct */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The few uapi values used (include/uapi/linux/vfio.h, linux/close_range.h), spelled out so
 * that building needs no kernel headers. */
#define VFIO_GROUP_GET_DEVICE_FD    _IO(';', 100 + 6)
#define VFIO_DEVICE_GET_INFO        _IO(';', 100 + 7)
#define VFIO_DEVICE_GET_REGION_INFO _IO(';', 100 + 8)
#define VFIO_DEVICE_RESET           _IO(';', 100 + 11)
#define VFIO_DEVICE_FEATURE         _IO(';', 100 + 17)
#define VFIO_REGION_INFO_FLAG_MMAP  (1u << 2)
#define VFIO_REGION_INFO_FLAG_CAPS  (1u << 3)
#define VFIO_REGION_INFO_CAP_SPARSE_MMAP 1
#define VFIO_REGION_INFO_CAP_TYPE   2
#define VFIO_REGION_TYPE_MIGRATION  3
#define VFIO_REGION_SUBTYPE_MIGRATION 1
#define VFIO_DEVICE_FEATURE_MASK    0xffffu
#define VFIO_DEVICE_FEATURE_GET     (1u << 16)
#define VFIO_DEVICE_FEATURE_SET     (1u << 17)
#define VFIO_DEVICE_FEATURE_PROBE   (1u << 18)
#define FEATURE_MIGRATION           1
#define FEATURE_MIG_DEVICE_STATE    2
#define FEATURE_MIG_DATA_SIZE       9
#define REGION_INFO_SIZE            32   /* sizeof(struct vfio_region_info) */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1u << 2)
#endif

/* Wire protocol (docs/bridge.md): little-endian frames on one AF_UNIX stream per device. */
#define MAGIC 0x31424d56u               /* "VMB1" */
enum { OP_REGISTER = 1, OP_READ = 2, OP_WRITE = 3, OP_RESET = 4 };
#define REQUEST_SIZE 24
#define ANSWER_SIZE 16
#define REGISTER_SIZE 88
#define REGISTER_ANSWER_SIZE 304
#define NAME_SIZE 64
#define PATH_SIZE 256
#define MAX_FORWARD 4096                /* largest READ/WRITE the bridge accepts */
#define STATUS_WINDOW_WRITABLE 1u
#define DEFAULT_TIMEOUT_MS 60000

struct device {
    struct device *next;        /* every record ever made; immutable once published */
    pthread_mutex_t lock;       /* held only around one request/answer exchange */
    atomic_int sock;            /* connection to the bridge; -1 once it is gone */
    atomic_int sock_clobbered;  /* the program closed or replaced our socket's number */
    atomic_int names;           /* fd numbers naming this device (changed under table_lock) */
    atomic_uint status;         /* status bits of the last answer */
    int64_t device_state;       /* last device_state the bridge reported; -1: none (under lock) */
    uint32_t index, flags;
    uint64_t offset, size, window_offset, window_size;
    unsigned char *window;      /* our MAP_SHARED mapping of the window file */
    char window_path[PATH_SIZE];
};

/* fd number -> bridged device, two levels so that lookups need no lock: chunks are allocated
 * under table_lock and never freed. fds at or above MAX_FDS are never bridged. */
#define CHUNK_BITS 10
#define CHUNK (1 << CHUNK_BITS)
#define MAX_FDS (1 << 20)
typedef _Atomic(struct device *) slot_t;
static _Atomic(slot_t *) chunks[MAX_FDS / CHUNK];
static _Atomic(struct device *) devices;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;

/* Names given to VFIO_GROUP_GET_DEVICE_FD, kept until that fd registers (under table_lock). */
#define PENDING_NAMES 16
static struct { atomic_int fd; char name[NAME_SIZE]; } pending[PENDING_NAMES];
static unsigned pending_next;

static struct {
    int (*ioctl)(int, unsigned long, ...);
    ssize_t (*pread)(int, void *, size_t, off_t);
    ssize_t (*pread64)(int, void *, size_t, off64_t);
    ssize_t (*pread_chk)(int, void *, size_t, off_t, size_t);
    ssize_t (*pread64_chk)(int, void *, size_t, off64_t, size_t);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off64_t);
    int (*close)(int);
    int (*close_range)(unsigned, unsigned, int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
} real;
static int active;                      /* VFIO_MIG_BRIDGE_SOCKET is set */
static struct sockaddr_un bridge_addr;
static int timeout_ms = DEFAULT_TIMEOUT_MS;

extern void __chk_fail(void) __attribute__((noreturn));

/* ---------------------------------------------------------------- small helpers */

static int fail(int error) { errno = error; return -1; }

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static void warn(const char *fmt, ...)
{
    int saved = errno;
    char line[512];
    int n = snprintf(line, sizeof line, "vfio-mig interposer[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(2, line, (size_t)n) < 0) { /* nothing better to do */ }
    errno = saved;
}

/* ---------------------------------------------------------------- fd table */

static struct device *lookup(int fd)
{
    if (fd < 0 || fd >= MAX_FDS) return NULL;
    slot_t *chunk = atomic_load_explicit(&chunks[fd >> CHUNK_BITS], memory_order_acquire);
    return chunk ? atomic_load_explicit(&chunk[fd & (CHUNK - 1)], memory_order_acquire) : NULL;
}

/* Make fd name d (or nothing); table_lock held. Returns 1 when a device lost its last name. */
static int set_slot_locked(int fd, struct device *d)
{
    slot_t *chunk = atomic_load_explicit(&chunks[fd >> CHUNK_BITS], memory_order_acquire);
    if (!chunk) {
        if (!d) return 0;
        chunk = calloc(CHUNK, sizeof *chunk);
        if (!chunk) { warn("out of memory: fd %d is not tracked", fd); return 0; }
        atomic_store_explicit(&chunks[fd >> CHUNK_BITS], chunk, memory_order_release);
    }
    struct device *old = atomic_load_explicit(&chunk[fd & (CHUNK - 1)], memory_order_relaxed);
    if (old == d) return 0;
    if (d) atomic_fetch_add(&d->names, 1);
    atomic_store_explicit(&chunk[fd & (CHUNK - 1)], d, memory_order_release);
    return old && atomic_fetch_sub(&old->names, 1) == 1;
}

/* Close the connection of every device that no fd names any more. */
static void drop_unnamed(void)
{
    for (struct device *d = atomic_load(&devices); d; d = d->next) {
        if (atomic_load(&d->names) != 0 || atomic_load(&d->sock) < 0) continue;
        pthread_mutex_lock(&d->lock);
        int s = atomic_exchange(&d->sock, -1);
        if (s >= 0 && !atomic_load(&d->sock_clobbered)) real.close(s);
        pthread_mutex_unlock(&d->lock);
    }
}

/* The fd `to` is now a duplicate of `from` (dup family). */
static void track_dup(int from, int to)
{
    struct device *d = lookup(from);
    if (!d && !lookup(to)) return;
    if (to >= MAX_FDS) { warn("fd %d is past the table: its device is not bridged there", to); return; }
    int saved = errno;
    pthread_mutex_lock(&table_lock);
    int dropped = set_slot_locked(to, d);
    pthread_mutex_unlock(&table_lock);
    if (dropped) drop_unnamed();
    errno = saved;
}

/* The program closed (or replaced) fds first..last: they no longer name devices or pending
 * names; if one of them was a bridge socket, that connection is lost. */
static void forget_fds(unsigned first, unsigned last)
{
    int saved = errno, dropped = 0;
    pthread_mutex_lock(&table_lock);
    if (first < MAX_FDS) {
        unsigned end = last < MAX_FDS - 1 ? last : MAX_FDS - 1;
        for (unsigned fd = first; fd <= end; fd++) {
            if (!atomic_load_explicit(&chunks[fd >> CHUNK_BITS], memory_order_relaxed)) {
                fd |= CHUNK - 1;        /* skip the whole unallocated chunk */
                continue;
            }
            dropped |= set_slot_locked((int)fd, NULL);
        }
    }
    for (int i = 0; i < PENDING_NAMES; i++) {
        int fd = pending[i].fd;
        if (fd >= 0 && (unsigned)fd >= first && (unsigned)fd <= last) pending[i].fd = -1;
    }
    pthread_mutex_unlock(&table_lock);
    for (struct device *d = atomic_load(&devices); d; d = d->next) {
        int s = atomic_load(&d->sock);
        if (s >= 0 && (unsigned)s >= first && (unsigned)s <= last) atomic_store(&d->sock_clobbered, 1);
    }
    if (dropped) drop_unnamed();
    errno = saved;
}

/* Cheap test before forget_fds(fd, fd): does closing fd concern us at all? */
static int fd_concerns_us(int fd)
{
    if (lookup(fd)) return 1;
    for (struct device *d = atomic_load(&devices); d; d = d->next)
        if (atomic_load(&d->sock) == fd) return 1;
    for (int i = 0; i < PENDING_NAMES; i++)
        if (atomic_load_explicit(&pending[i].fd, memory_order_relaxed) == fd) return 1;
    return 0;
}

static void remember_name(int fd, const char *name)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < PENDING_NAMES; i++)
        if (pending[i].fd == fd) pending[i].fd = -1;
    unsigned i = pending_next++ % PENDING_NAMES;
    pending[i].fd = fd;
    size_t n = strnlen(name, NAME_SIZE - 1);
    memset(pending[i].name, 0, NAME_SIZE);
    memcpy(pending[i].name, name, n);
    pthread_mutex_unlock(&table_lock);
}

static void take_name(int fd, char name[NAME_SIZE])
{
    memset(name, 0, NAME_SIZE);
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < PENDING_NAMES; i++)
        if (pending[i].fd == fd) { memcpy(name, pending[i].name, NAME_SIZE); pending[i].fd = -1; }
    pthread_mutex_unlock(&table_lock);
}

/* ---------------------------------------------------------------- talking to the bridge */

/* Wait until fd is ready, at most until the deadline. 0: timed out or failed. */
static int wait_ready(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec + 999999) / 1000000;
        if (ms <= 0) return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, (int)ms);
        if (n > 0) return 1;
        if (n == 0 || errno != EINTR) return 0;
    }
}

static int send_all(int fd, const unsigned char *p, size_t len, const struct timespec *deadline)
{
    while (len) {
        if (!wait_ready(fd, POLLOUT, deadline)) return 0;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

static int recv_all(int fd, unsigned char *p, size_t len, const struct timespec *deadline)
{
    while (len) {
        if (!wait_ready(fd, POLLIN, deadline)) return 0;
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return 0;   /* EOF: the bridge is gone */
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* One request and its answer on d's connection; d->lock held (or d not yet published).
 * Returns 1 with *result set (READ: that many bytes stored in `in`; REGISTER: 304), or 0 when
 * the bridge is gone (EOF, error, timeout, or an answer that breaks the protocol): the
 * connection is then closed for good. */
static int exchange(struct device *d, uint16_t op, uint64_t offset, const void *out, uint32_t length,
                    uint32_t count, void *in, int32_t *result)
{
    int s = atomic_load(&d->sock);
    if (s >= 0 && atomic_load(&d->sock_clobbered)) {
        atomic_store(&d->sock, -1);             /* that number is someone else's file now */
        return 0;
    }
    if (s < 0) return 0;
    unsigned char h[REQUEST_SIZE] = { 0 }, a[ANSWER_SIZE];
    put32(h, MAGIC);
    h[4] = (unsigned char)op;
    put32(h + 8, length);
    put32(h + 12, count);
    put64(h + 16, offset);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    if (!send_all(s, h, sizeof h, &deadline) || !send_all(s, out, length, &deadline)
        || !recv_all(s, a, sizeof a, &deadline))
        goto gone;
    int32_t r = (int32_t)get32(a + 4);
    uint32_t payload = get32(a + 8);
    uint32_t limit = op == OP_READ ? count : op == OP_WRITE ? length : INT32_MAX;
    uint32_t want = r < 0 ? 0 : op == OP_READ ? (uint32_t)r : op == OP_REGISTER ? REGISTER_ANSWER_SIZE : 0;
    if (get32(a) != MAGIC || r < -4095 || (r >= 0 && (uint32_t)r > limit) || payload != want)
        goto gone;
    if (!recv_all(s, in, payload, &deadline)) goto gone;
    atomic_store(&d->status, get32(a + 12));
    *result = r;
    return 1;
gone:
    atomic_store(&d->sock, -1);
    if (!atomic_load(&d->sock_clobbered)) real.close(s);
    return 0;
}

/* A READ, WRITE or RESET forwarded to the bridge; returns the result or -errno. */
static int32_t forward(struct device *d, uint16_t op, uint64_t offset, void *buf, uint32_t count)
{
    int32_t r;
    int is_state = offset == 0 && count >= 4 && op != OP_RESET;
    pthread_mutex_lock(&d->lock);
    if (!exchange(d, op, offset, op == OP_WRITE ? buf : NULL, op == OP_WRITE ? count : 0,
                  op == OP_READ ? count : 0, buf, &r)) {
        /* vfio_migration_set_state must be able to re-read device_state (see the top) */
        if (op == OP_READ && offset == 0 && count == 4 && d->device_state >= 0) {
            put32(buf, (uint32_t)d->device_state);
            r = 4;
        } else {
            r = -EIO;
        }
    } else if (is_state && r >= 4) {
        d->device_state = get32(buf);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

/* ---------------------------------------------------------------- registration */

static int connect_bridge(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    if (connect(s, (const struct sockaddr *)&bridge_addr, sizeof bridge_addr) == 0) return s;
    int saved = errno;
    real.close(s);
    errno = saved;
    return -1;
}

/* End of the device's highest real region, asked the way QEMU asks (32-byte info). */
static int regions_end(int fd, uint32_t num_regions, uint64_t *end)
{
    *end = 0;
    for (uint32_t i = 0; i < num_regions; i++) {
        unsigned char info[REGION_INFO_SIZE] = { 0 };
        put32(info, REGION_INFO_SIZE);
        put32(info + 8, i);
        if (real.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, info) != 0) continue;   /* e.g. vfio-pci's absent VGA */
        uint64_t size = get64(info + 16), offset = get64(info + 24);
        if (size > UINT64_MAX - offset) return 0;
        if (offset + size > *end) *end = offset + size;
    }
    return 1;
}

/* The bridge's layout must be usable as is: a region past the real ones, header before a
 * page-aligned window, nothing that overflows an off_t. */
static int layout_ok(const struct device *d, uint32_t num_regions, uint64_t end)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    return d->index == num_regions && d->offset >= end && d->offset % page == 0
        && d->offset <= INT64_MAX && d->size <= INT64_MAX - d->offset
        && d->window_offset >= REGION_INFO_SIZE && d->window_offset % page == 0
        && d->window_offset < d->size && d->window_size == d->size - d->window_offset
        && memchr(d->window_path, 0, PATH_SIZE);
}

static int map_window(struct device *d)
{
    int wfd = open(d->window_path, O_RDWR | O_CLOEXEC);
    if (wfd < 0) return 0;
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(wfd, &st) == 0 && (uint64_t)st.st_size >= d->window_size)   /* shorter: SIGBUS on access */
        p = real.mmap64(NULL, d->window_size, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
    real.close(wfd);
    if (p == MAP_FAILED) return 0;
    d->window = p;
    return 1;
}

/* Ask the bridge about fd (an unknown fd just answered GET_INFO). Returns the published
 * record, or NULL when the fd stays a plain passthrough fd. */
static struct device *register_device(int fd, uint32_t num_regions)
{
    uint64_t end;
    if (fd >= MAX_FDS || !regions_end(fd, num_regions, &end)) return NULL;
    struct device *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    pthread_mutex_init(&d->lock, NULL);
    d->device_state = -1;
    atomic_init(&d->sock, connect_bridge());
    if (atomic_load(&d->sock) < 0) {
        warn("fd %d: cannot reach the bridge at %s: %s; device not bridged", fd, bridge_addr.sun_path, strerror(errno));
        goto not_bridged;
    }
    unsigned char req[REGISTER_SIZE] = { 0 }, ans[REGISTER_ANSWER_SIZE];
    put32(req, 1);
    put32(req + 4, (uint32_t)getpid());
    put32(req + 8, (uint32_t)fd);
    put32(req + 12, num_regions);
    put64(req + 16, end);
    take_name(fd, (char *)req + 24);
    int32_t r;
    if (!exchange(d, OP_REGISTER, 0, req, sizeof req, 0, ans, &r)) {
        warn("fd %d: the bridge did not answer REGISTER; device not bridged", fd);
        goto not_bridged;
    }
    if (r < 0 || get32(ans) != 1) goto not_bridged;    /* refused: the bridge says why */
    d->index = get32(ans + 4);
    d->flags = get32(ans + 8);
    d->offset = get64(ans + 16);
    d->size = get64(ans + 24);
    d->window_offset = get64(ans + 32);
    d->window_size = get64(ans + 40);
    memcpy(d->window_path, ans + 48, PATH_SIZE);
    if (!layout_ok(d, num_regions, end) || !map_window(d)) {
        warn("fd %d: unusable region layout or window file from the bridge; device not bridged", fd);
        goto not_bridged;
    }
    pthread_mutex_lock(&table_lock);
    d->next = atomic_load(&devices);
    atomic_store(&devices, d);
    set_slot_locked(fd, d);
    pthread_mutex_unlock(&table_lock);
    return d;
not_bridged:
    if (d->window) munmap(d->window, d->window_size);
    if (atomic_load(&d->sock) >= 0) real.close(atomic_load(&d->sock));
    pthread_mutex_destroy(&d->lock);
    free(d);
    return NULL;
}

/* ---------------------------------------------------------------- region accesses */

static int in_region(const struct device *d, int64_t off)
{
    return off >= 0 && (uint64_t)off >= d->offset && (uint64_t)off - d->offset < d->size;
}

/* pread/pwrite at off, which is inside d's region. */
static ssize_t region_access(struct device *d, void *buf, size_t count, int64_t off, int writing)
{
    uint64_t rel = (uint64_t)off - d->offset;
    if (count == 0) return 0;                                   /* vfio_pci_core_read/write */
    if (count > d->size - rel) return fail(EINVAL);             /* runs past the region */
    if (rel >= d->window_offset) {
        unsigned char *w = d->window + (rel - d->window_offset);
        if (!writing) memcpy(buf, w, count);
        else if (atomic_load(&d->status) & STATUS_WINDOW_WRITABLE) memcpy(w, buf, count);
        else return fail(EINVAL);                               /* only while RESUMING */
        return (ssize_t)count;
    }
    if (count > MAX_FORWARD) return fail(EINVAL);
    int saved = errno;
    int32_t r = forward(d, writing ? OP_WRITE : OP_READ, rel, buf, (uint32_t)count);
    if (r < 0) return fail(-r);
    errno = saved;
    return r;
}

static void *region_mmap(struct device *d, void *addr, size_t len, int prot, int flags, int64_t off)
{
    uint64_t rel = (uint64_t)off - d->offset;
    if (!(d->flags & VFIO_REGION_INFO_FLAG_MMAP) || rel < d->window_offset || len == 0
        || len > d->size - rel || !(flags & MAP_SHARED)) {   /* vfio_pci_core_mmap wants VM_SHARED */
        errno = EINVAL;
        return MAP_FAILED;
    }
    int saved = errno;
    int wfd = open(d->window_path, O_RDWR | O_CLOEXEC);
    if (wfd < 0) { errno = EIO; return MAP_FAILED; }            /* the bridge is gone */
    void *p = real.mmap64(addr, len, prot, flags, wfd, (off64_t)(rel - d->window_offset));
    int error = errno;
    real.close(wfd);
    errno = p == MAP_FAILED ? error : saved;
    return p;
}

/* ---------------------------------------------------------------- ioctls */

/* VFIO_DEVICE_GET_REGION_INFO for a bridged device: real indices pass through, the added one
 * is answered as vfio_pci_ioctl_get_region_info would. */
static int region_info(struct device *d, int fd, unsigned char *arg)
{
    if (!arg) return fail(EFAULT);
    uint32_t argsz = get32(arg), index = get32(arg + 8);
    if (index < d->index) return real.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, arg);
    if (argsz < REGION_INFO_SIZE || index > d->index) return fail(EINVAL);
    int mmap_on = (d->flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
    unsigned char caps[48] = { 0 };
    uint32_t caps_size = mmap_on ? 48 : 16;
    /* type capability; `next` counts from the start of the info, as after vfio_info_cap_shift */
    caps[0] = VFIO_REGION_INFO_CAP_TYPE;
    caps[2] = 1;
    put32(caps + 4, mmap_on ? REGION_INFO_SIZE + 16 : 0);
    put32(caps + 8, VFIO_REGION_TYPE_MIGRATION);
    put32(caps + 12, VFIO_REGION_SUBTYPE_MIGRATION);
    if (mmap_on) {      /* sparse mmap: one area, the window; the header page stays trapped */
        caps[16] = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
        caps[18] = 1;
        put32(caps + 24, 1);
        put64(caps + 32, d->window_offset);
        put64(caps + 40, d->window_size);
    }
    uint32_t cap_offset = 0;
    if (argsz < REGION_INFO_SIZE + caps_size) {
        argsz = REGION_INFO_SIZE + caps_size;   /* the caller retries with this */
    } else {
        memcpy(arg + REGION_INFO_SIZE, caps, caps_size);
        cap_offset = REGION_INFO_SIZE;
    }
    put32(arg, argsz);
    put32(arg + 4, d->flags | VFIO_REGION_INFO_FLAG_CAPS);
    put32(arg + 12, cap_offset);
    put64(arg + 16, d->size);
    put64(arg + 24, d->offset);
    return 0;
}

/* VFIO_DEVICE_FEATURE: the migration features answer like a driver without mig_ops, after the
 * generic checks of vfio_ioctl_device_feature. */
static int device_feature(int fd, unsigned char *arg)
{
    if (!arg) return real.ioctl(fd, VFIO_DEVICE_FEATURE, arg);
    uint32_t argsz = get32(arg), flags = get32(arg + 4), feature = flags & VFIO_DEVICE_FEATURE_MASK;
    if (feature != FEATURE_MIGRATION && feature != FEATURE_MIG_DEVICE_STATE && feature != FEATURE_MIG_DATA_SIZE)
        return real.ioctl(fd, VFIO_DEVICE_FEATURE, arg);
    if (argsz < 8) return fail(EINVAL);
    if (flags & ~(VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE))
        return fail(EINVAL);
    if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && (flags & VFIO_DEVICE_FEATURE_GET) && (flags & VFIO_DEVICE_FEATURE_SET))
        return fail(EINVAL);
    return fail(ENOTTY);
}

static int device_ioctl(struct device *d, int fd, unsigned long request, unsigned char *arg)
{
    switch (request) {
    case VFIO_DEVICE_GET_INFO: {
        int r = real.ioctl(fd, request, arg);
        if (r == 0) put32(arg + 8, d->index + 1);
        return r;
    }
    case VFIO_DEVICE_GET_REGION_INFO:
        return region_info(d, fd, arg);
    case VFIO_DEVICE_RESET: {
        int saved = errno;
        int32_t r = forward(d, OP_RESET, 0, NULL, 0);
        if (r < 0) return fail(-r);
        errno = saved;
        return 0;
    }
    case VFIO_DEVICE_FEATURE:
        return device_feature(fd, arg);
    default:
        return real.ioctl(fd, request, arg);
    }
}

/* GET_INFO on an fd we do not track yet: the moment a device is offered to the bridge. */
static int unknown_get_info(int fd, unsigned char *arg)
{
    int r = real.ioctl(fd, VFIO_DEVICE_GET_INFO, arg);
    if (r != 0) return r;
    int saved = errno;
    pthread_mutex_lock(&register_lock);
    struct device *d = lookup(fd);          /* another thread may have registered it meanwhile */
    if (!d) d = register_device(fd, get32(arg + 8));
    pthread_mutex_unlock(&register_lock);
    if (d) put32(arg + 8, d->index + 1);
    errno = saved;
    return 0;
}

/* ---------------------------------------------------------------- set-up and fork */

static void before_fork(void) { pthread_mutex_lock(&table_lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&table_lock); }

/* The child shares no connection and tracks nothing. A thread of the parent may have held
 * register_lock or a device lock at fork time; the child never touches an old record's lock
 * again (their sockets are -1) and gets a fresh register_lock. */
static void after_fork_child(void)
{
    pthread_mutex_init(&register_lock, NULL);
    for (struct device *d = atomic_load(&devices); d; d = d->next) {
        int s = atomic_exchange(&d->sock, -1);
        if (s >= 0 && !atomic_load(&d->sock_clobbered)) real.close(s);
        atomic_store(&d->names, 0);
    }
    for (int c = 0; c < MAX_FDS / CHUNK; c++) {
        slot_t *chunk = atomic_load(&chunks[c]);
        for (int i = 0; chunk && i < CHUNK; i++) atomic_store(&chunk[i], NULL);
    }
    pthread_mutex_unlock(&table_lock);
}

/* Resolve the next definitions of every interposed symbol. Also called by the first interposed
 * call when that comes before our constructor (ASan's start-up mmaps through us, for one). */
static void resolve(void)
{
/* the POSIX way to store dlsym's void * into a function pointer (see dlsym(3)) */
#define RESOLVE(field, symbol) *(void **)&real.field = dlsym(RTLD_NEXT, symbol)
    RESOLVE(pread, "pread");
    RESOLVE(pread64, "pread64");
    RESOLVE(pread_chk, "__pread_chk");
    RESOLVE(pread64_chk, "__pread64_chk");
    RESOLVE(pwrite, "pwrite");
    RESOLVE(pwrite64, "pwrite64");
    RESOLVE(mmap, "mmap");
    RESOLVE(mmap64, "mmap64");
    RESOLVE(close, "close");
    RESOLVE(close_range, "close_range");
    RESOLVE(dup, "dup");
    RESOLVE(dup2, "dup2");
    RESOLVE(dup3, "dup3");
    RESOLVE(fcntl, "fcntl");
    RESOLVE(fcntl64, "fcntl64");
    RESOLVE(ioctl, "ioctl");            /* last: a non-NULL ioctl means "resolved" */
#undef RESOLVE
}

/* Read the environment once. Only here: that early call above may come before the
 * environment is set up (getenv then answers NULL). */
__attribute__((constructor)) static void init(void)
{
    if (!real.ioctl) resolve();
    for (int i = 0; i < PENDING_NAMES; i++) pending[i].fd = -1;
    const char *path = getenv("VFIO_MIG_BRIDGE_SOCKET");
    if (!path || !*path) return;
    if (strlen(path) >= sizeof bridge_addr.sun_path) {
        warn("VFIO_MIG_BRIDGE_SOCKET is longer than a socket path can be; nothing is bridged");
        return;
    }
    bridge_addr.sun_family = AF_UNIX;
    strcpy(bridge_addr.sun_path, path);
    const char *t = getenv("VFIO_MIG_BRIDGE_TIMEOUT_MS");
    if (t && *t) {
        char *end;
        long ms = strtol(t, &end, 10);
        if (*end || ms <= 0 || ms > INT32_MAX / 2) warn("VFIO_MIG_BRIDGE_TIMEOUT_MS=%s is not a positive number of ms; using %d", t, DEFAULT_TIMEOUT_MS);
        else timeout_ms = (int)ms;
    }
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    active = 1;
}

#define READY() do { if (__builtin_expect(!real.ioctl, 0)) resolve(); } while (0)

/* ---------------------------------------------------------------- the interposed symbols */

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);     /* as glibc does: the third argument, whatever it is */
    va_end(ap);
    READY();
    struct device *d = lookup(fd);
    if (d) return device_ioctl(d, fd, request, arg);
    if (active && request == VFIO_DEVICE_GET_INFO && arg) return unknown_get_info(fd, arg);
    int r = real.ioctl(fd, request, arg);
    if (active && request == VFIO_GROUP_GET_DEVICE_FD && r >= 0 && arg) remember_name(r, arg);
    return r;
}

/* The bridged device whose region holds `off`, or NULL: the passthrough test of the hot path. */
static struct device *region_at(int fd, int64_t off)
{
    READY();
    struct device *d = lookup(fd);
    return d && in_region(d, off) ? d : NULL;
}

ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_access(d, buf, count, off, 0) : real.pread(fd, buf, count, off);
}

ssize_t pread64(int fd, void *buf, size_t count, off64_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_access(d, buf, count, off, 0) : real.pread64(fd, buf, count, off);
}

ssize_t __pread_chk(int fd, void *buf, size_t count, off_t off, size_t buflen)
{
    struct device *d = region_at(fd, off);
    if (!d) return real.pread_chk(fd, buf, count, off, buflen);
    if (count > buflen) __chk_fail();
    return region_access(d, buf, count, off, 0);
}

ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t off, size_t buflen)
{
    struct device *d = region_at(fd, off);
    if (!d) return real.pread64_chk(fd, buf, count, off, buflen);
    if (count > buflen) __chk_fail();
    return region_access(d, buf, count, off, 0);
}

/* region_access only reads buf when writing */
ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_access(d, (void *)buf, count, off, 1) : real.pwrite(fd, buf, count, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_access(d, (void *)buf, count, off, 1) : real.pwrite64(fd, buf, count, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_mmap(d, addr, len, prot, flags, off) : real.mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    struct device *d = region_at(fd, off);
    return d ? region_mmap(d, addr, len, prot, flags, off) : real.mmap64(addr, len, prot, flags, fd, off);
}

int close(int fd)
{
    READY();
    if (active && fd >= 0 && fd_concerns_us(fd)) forget_fds((unsigned)fd, (unsigned)fd);
    return real.close(fd);
}

int close_range(unsigned first, unsigned last, int flags)
{
    READY();
    if (!real.close_range) return fail(ENOSYS);
    int r = real.close_range(first, last, flags);
    if (r == 0 && active && !(flags & CLOSE_RANGE_CLOEXEC)) forget_fds(first, last);
    return r;
}

int dup(int fd)
{
    READY();
    int r = real.dup(fd);
    if (r >= 0 && active) track_dup(fd, r);
    return r;
}

int dup2(int from, int to)
{
    READY();
    int r = real.dup2(from, to);
    if (r >= 0 && active && from != to) {
        forget_fds((unsigned)to, (unsigned)to);     /* whatever `to` was is closed */
        track_dup(from, to);
    }
    return r;
}

int dup3(int from, int to, int flags)
{
    READY();
    int r = real.dup3(from, to, flags);
    if (r >= 0 && active) {                         /* dup3 refuses from == to */
        forget_fds((unsigned)to, (unsigned)to);
        track_dup(from, to);
    }
    return r;
}

static int fcntl_via(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
    if (!fn) return fail(ENOSYS);
    int r = fn(fd, cmd, arg);
    if (r >= 0 && active && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) track_dup(fd, r);
    return r;
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);     /* as glibc does: the third argument, whatever it is */
    va_end(ap);
    READY();
    return fcntl_via(real.fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    READY();
    return fcntl_via(real.fcntl64, fd, cmd, arg);
}
