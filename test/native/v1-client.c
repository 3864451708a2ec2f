/*
 * Test-only: a VFIO migration v1 client driven line by line on stdin, one JSON answer line per
 * command on stdout. It runs with the interposer (and the fake device) in LD_PRELOAD and does
 * what QEMU 7.2 does to a device fd, plus the fd juggling the interposer must survive.
 *
 * Every answer carries "r" (the call's return value), "errno" (errno after the call; it is
 * set to EXDEV before each call, so a successful call must leave 18 there) and "ms".
 *
 * The "mig*" commands follow QEMU 7.2's hw/vfio: migsetup = vfio_get_device's GET_INFO +
 * vfio_get_region_info over every index (32-byte first ask, then the argsz it is told) +
 * vfio_region_setup/vfio_region_mmap of the sparse areas; migread/migwrite = vfio_mig_read/
 * vfio_mig_write at native width; save/load = vfio_save_buffer/vfio_load_buffer (window through
 * the mapping when a sparse area covers it, else vfio_mig_rw's 8/4/2/1-byte accesses);
 * setstate = vfio_migration_set_state, reporting whether QEMU would have called hw_error().
 * savesetup/iterate/vmstop/complete and resume/vmstart play a whole migration to and from a
 * file (see "a whole QEMU 7.2 migration" below). Each device keeps its own migration state, as
 * QEMU's VFIODevice does: migsetup makes its device the current one, "use FD" switches back.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include VFIO_H
#include "fake-vfio.h"

/* struct vfio_device_migration_info (v1, removed from the 6.12 headers) */
#define MIG_DEVICE_STATE 0
#define MIG_PENDING_BYTES 8
#define MIG_DATA_OFFSET 16
#define MIG_DATA_SIZE 24
#define STATE_RUNNING 1
#define STATE_SAVING 2
#define STATE_RESUMING 4
#define STATE_VALID(s) (((s) & STATE_RESUMING) ? ((s) & 7) == STATE_RESUMING : 1)
#define STATE_IS_ERROR(s) (((s) & 7) == (STATE_SAVING | STATE_RESUMING))

extern ssize_t __pread_chk(int, void *, size_t, off_t, size_t);
extern ssize_t __pread64_chk(int, void *, size_t, off64_t, size_t);

static FILE *out;
static char line_buf[1 << 20];
static struct timespec started;

/* ---------------------------------------------------------------- output */

static void begin(long long r)
{
    int e = errno;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - started.tv_sec) * 1e3 + (double)(now.tv_nsec - started.tv_nsec) / 1e6;
    fprintf(out, "{\"r\":%lld,\"errno\":%d,\"ms\":%.3f", r, e, ms);
}
static void end(void) { fputs("}\n", out); fflush(out); }
static void answer(long long r) { begin(r); end(); }
static void hex_field(const char *name, const unsigned char *p, size_t n)
{
    fprintf(out, ",\"%s\":\"", name);
    for (size_t i = 0; i < n; i++) fprintf(out, "%02x", p[i]);
    fputc('"', out);
}
static size_t unhex(const char *s, unsigned char *p, size_t max)
{
    size_t n = 0;
    while (s[0] && s[1] && n < max) {
        unsigned v;
        sscanf(s, "%2x", &v);
        p[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}
static void call_start(void) { errno = EXDEV; clock_gettime(CLOCK_MONOTONIC, &started); }

/* ---------------------------------------------------------------- QEMU 7.2's migration path */

/* One device's migration state, as QEMU keeps it per VFIODevice (VFIOMigration). */
struct mig_device {
    int fd, index;
    uint64_t offset, size;
    uint32_t nr_areas;
    struct { uint64_t offset, size; void *map; } areas[4];
    FILE *stream;               /* the migration file being written (savesetup .. complete) */
    uint64_t pending_bytes;     /* migration->pending_bytes, QEMU's cached copy */
};
#define MIG_DEVICES 8
static struct mig_device migs[MIG_DEVICES];
static struct mig_device *mig = &migs[0];

/* hw/vfio/common.c vfio_get_region_info: 32 bytes first, then whatever argsz it is told. */
static struct vfio_region_info *get_region_info(int fd, uint32_t index, uint32_t *first_argsz)
{
    size_t argsz = sizeof(struct vfio_region_info);
    struct vfio_region_info *info = calloc(1, argsz);
    info->index = index;
    *first_argsz = 0;
    for (;;) {
        info->argsz = (uint32_t)argsz;
        if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, info)) { free(info); return NULL; }
        if (!*first_argsz) *first_argsz = info->argsz;
        if (info->argsz <= argsz) return info;
        argsz = info->argsz;
        info = realloc(info, argsz);
    }
}

/* vfio_get_region_info_cap */
static struct vfio_info_cap_header *find_cap(struct vfio_region_info *info, uint16_t id)
{
    if (!(info->flags & VFIO_REGION_INFO_FLAG_CAPS)) return NULL;
    for (uint32_t off = info->cap_offset; off && off + 8 <= info->argsz;) {
        struct vfio_info_cap_header *h = (void *)((char *)info + off);
        if (h->id == id) return h;
        if (h->next <= off) return NULL;
        off = h->next;
    }
    return NULL;
}

static void migsetup(int fd, int use_mmap)
{
    struct vfio_device_info dinfo = { .argsz = sizeof dinfo };
    if (ioctl(fd, VFIO_DEVICE_GET_INFO, &dinfo)) { answer(-1); return; }
    struct mig_device *slot = NULL;
    for (int i = 0; i < MIG_DEVICES && !slot; i++) if (migs[i].fd == fd) slot = &migs[i];
    for (int i = 0; i < MIG_DEVICES && !slot; i++) if (migs[i].fd < 0) slot = &migs[i];
    if (!slot) { errno = ENOSPC; answer(-1); return; }
    mig = slot;
    for (int i = 0; i < 4; i++) if (mig->areas[i].map) munmap(mig->areas[i].map, mig->areas[i].size);
    if (mig->stream) fclose(mig->stream);
    memset(mig, 0, sizeof *mig);
    mig->fd = fd;
    mig->index = -1;
    char regions[4096] = "";
    size_t used = 0;
    for (uint32_t i = 0; i < dinfo.num_regions; i++) {
        uint32_t first;
        struct vfio_region_info *info = get_region_info(fd, i, &first);
        if (!info) {
            used += (size_t)snprintf(regions + used, sizeof regions - used, "%s{\"index\":%u,\"errno\":%d}", i ? "," : "", i, errno);
            continue;
        }
        struct vfio_region_info_cap_type *type = (void *)find_cap(info, VFIO_REGION_INFO_CAP_TYPE);
        used += (size_t)snprintf(regions + used, sizeof regions - used,
            "%s{\"index\":%u,\"firstArgsz\":%u,\"argsz\":%u,\"flags\":%u,\"size\":\"%llu\",\"offset\":\"%llu\",\"type\":%d,\"subtype\":%d}",
            i ? "," : "", i, first, info->argsz, info->flags, (unsigned long long)info->size, (unsigned long long)info->offset,
            type ? (int)type->type : -1, type ? (int)type->subtype : -1);
        if (type && type->type == 3 && type->subtype == 1 && mig->index < 0) {
            mig->index = (int)i;
            mig->offset = info->offset;
            mig->size = info->size;
            struct vfio_region_info_cap_sparse_mmap *sparse = (void *)find_cap(info, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
            /* vfio_region_setup + vfio_region_mmap: map each sparse area once */
            if ((info->flags & VFIO_REGION_INFO_FLAG_MMAP) && sparse && use_mmap) {
                mig->nr_areas = sparse->nr_areas < 4 ? sparse->nr_areas : 4;
                for (uint32_t a = 0; a < mig->nr_areas; a++) {
                    mig->areas[a].offset = sparse->areas[a].offset;
                    mig->areas[a].size = sparse->areas[a].size;
                    mig->areas[a].map = mmap64(NULL, sparse->areas[a].size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                                              (off64_t)(info->offset + sparse->areas[a].offset));
                    if (mig->areas[a].map == MAP_FAILED) { mig->areas[a].map = NULL; answer(-2); free(info); return; }
                }
            }
        }
        free(info);
    }
    call_start();
    begin(0);
    fprintf(out, ",\"numRegions\":%u,\"migration\":%d,\"offset\":\"%llu\",\"size\":\"%llu\",\"areas\":[",
            dinfo.num_regions, mig->index, (unsigned long long)mig->offset, (unsigned long long)mig->size);
    for (uint32_t a = 0; a < mig->nr_areas; a++)
        fprintf(out, "%s{\"offset\":%llu,\"size\":%llu}", a ? "," : "", (unsigned long long)mig->areas[a].offset,
                (unsigned long long)mig->areas[a].size);
    fprintf(out, "],\"regions\":[%s]", regions);
    end();
}

/* vfio_mig_rw: 8/4/2/1-byte accesses by alignment. Returns 0 or -1 (errno set). */
static int mig_rw(void *buf, size_t count, uint64_t off, int writing, unsigned *calls)
{
    unsigned char *p = buf;
    while (count) {
        size_t n = count >= 8 && !(off % 8) ? 8 : count >= 4 && !(off % 4) ? 4 : count >= 2 && !(off % 2) ? 2 : 1;
        off64_t at = (off64_t)(mig->offset + off);     /* QEMU is built with _FILE_OFFSET_BITS=64 */
        ssize_t r = writing ? pwrite64(mig->fd, p, n, at) : pread64(mig->fd, p, n, at);
        (*calls)++;
        if (r != (ssize_t)n) { if (r >= 0) errno = EINVAL; return -1; }
        count -= n; off += n; p += n;
    }
    return 0;
}

/* get_data_section_size: the mapping of the sparse area holding data_offset, if any. */
static unsigned char *mapped(uint64_t data_offset, uint64_t size)
{
    for (uint32_t a = 0; a < mig->nr_areas; a++)
        if (mig->areas[a].map && data_offset >= mig->areas[a].offset && data_offset + size <= mig->areas[a].offset + mig->areas[a].size)
            return (unsigned char *)mig->areas[a].map + (data_offset - mig->areas[a].offset);
    return NULL;
}

/* What moved through the window: chunks (records with data), device bytes, and how. */
struct transfer { unsigned chunks, window_calls; uint64_t bytes; int mapped, trapped; };

/* The window part of a chunk: memcpy through the sparse mapping when it covers it
 * (get_data_section_size), else vfio_mig_rw's <= 8-byte accesses. */
static int window_rw(unsigned char *buf, uint64_t size, uint64_t data_offset, int writing, struct transfer *t)
{
    unsigned char *m = mapped(data_offset, size);
    if (m) {
        if (writing) memcpy(m, buf, size);
        else memcpy(buf, m, size);
        t->mapped = 1;
        return 0;
    }
    t->trapped = 1;
    return mig_rw(buf, size, data_offset, writing, &t->window_calls);
}

static void save_chunk(void)
{
    uint64_t data_offset = 0, data_size = 0;
    unsigned calls = 0;
    struct transfer t = { 0 };
    if (mig_rw(&data_offset, 8, MIG_DATA_OFFSET, 0, &calls) || mig_rw(&data_size, 8, MIG_DATA_SIZE, 0, &calls)) { answer(-1); return; }
    unsigned char *data = malloc(data_size ? data_size : 1);
    int r = window_rw(data, data_size, data_offset, 0, &t);
    begin(r);
    fprintf(out, ",\"via\":\"%s\",\"accesses\":%u,\"dataOffset\":%llu", t.mapped ? "mmap" : "pread", t.window_calls,
            (unsigned long long)data_offset);
    hex_field("data", data, r ? 0 : data_size);
    end();
    free(data);
}

static void load_chunk(const char *hex)
{
    static unsigned char data[1 << 19];
    uint64_t size = unhex(hex, data, sizeof data), data_offset = 0;
    unsigned calls = 0;
    struct transfer t = { 0 };
    if (mig_rw(&data_offset, 8, MIG_DATA_OFFSET, 0, &calls)) { answer(-1); return; }
    int r = window_rw(data, size, data_offset, 1, &t);
    if (!r) r = mig_rw(&size, 8, MIG_DATA_SIZE, 1, &calls);
    begin(r);
    fprintf(out, ",\"via\":\"%s\",\"accesses\":%u", t.mapped ? "mmap" : "pwrite", t.window_calls);
    end();
}

/* hw/vfio/migration.c vfio_migration_set_state (QEMU 7.2). Returns 0 or -1 (errno: the failed
 * write's); *state is the value written, or the one re-read after a failed write. */
static int set_state_qemu(uint32_t mask, uint32_t value, uint32_t *state, int *hw_error)
{
    unsigned calls = 0;
    *hw_error = 0;
    if (mig_rw(state, 4, MIG_DEVICE_STATE, 0, &calls)) return -1;
    *state = (*state & mask) | value;
    if (!STATE_VALID(*state)) { errno = EINVAL; return -1; }
    if (mig_rw(state, 4, MIG_DEVICE_STATE, 1, &calls)) {
        int saved = errno;
        int rret = mig_rw(state, 4, MIG_DEVICE_STATE, 0, &calls);
        *hw_error = rret < 0 || STATE_IS_ERROR(*state);
        errno = saved;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- a whole QEMU 7.2 migration
 *
 * The register sequence of QEMU 7.2's hw/vfio/migration.c for one device, writing and reading
 * the project's migration file (src/v2/stream-format.ts: "VFIOMIG1", then the savevm section
 * payload QEMU writes: be64 markers, be64 sizes, the device bytes):
 *   savesetup FILE  vfio_save_setup: DEV_SETUP_STATE, MASK/SAVING (001 -> 011), END_OF_STATE
 *   iterate N       N rounds of vfio_save_pending (pending_bytes) + vfio_save_iterate (one chunk)
 *   vmstop          vfio_vmstate_change(running=false): ~RUNNING/0 (011 -> 010)
 *   complete        vfio_save_complete_precopy: ~RUNNING/SAVING, pending / chunk until pending
 *                   is 0, END_OF_STATE, ~SAVING/0 (010 -> 000); then vfio_save_state's (empty)
 *                   config section ends the file
 *   resume FILE     vfio_load_setup (~MASK/RESUMING: -> 100), vfio_load_state per section,
 *                   vfio_load_buffer per record (data_offset, window, data_size)
 *   vmstart         vfio_vmstate_change(running=true): ~MASK/RUNNING (100 -> 001)
 *   migfailed       vfio_migration_state_notifier on FAILED: ~(SAVING|RESUMING)/RUNNING
 * Answers count chunks (records with data), device bytes, and window syscalls (0 via mmap). */
#define MIG_FLAG_END_OF_STATE 0xffffffffef100001ULL
#define MIG_FLAG_DEV_CONFIG_STATE 0xffffffffef100002ULL
#define MIG_FLAG_DEV_SETUP_STATE 0xffffffffef100003ULL
#define MIG_FLAG_DEV_DATA_STATE 0xffffffffef100004ULL
#define MIG_STREAM_MAGIC 0x5646494f4d494731ULL      /* "VFIOMIG1" */
#define STATE_MASK (STATE_RUNNING | STATE_SAVING | STATE_RESUMING)

static void put_be64(FILE *f, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (56 - 8 * i));
    fwrite(b, 1, 8, f);
}

static int get_be64(FILE *f, uint64_t *v)
{
    unsigned char b[8];
    if (fread(b, 1, 8, f) != 8) { errno = EIO; return -1; }     /* qemu_file: a short read is EIO */
    *v = 0;
    for (int i = 0; i < 8; i++) *v = *v << 8 | b[i];
    return 0;
}

static void transfer_fields(const struct transfer *t)
{
    fprintf(out, ",\"chunks\":%u,\"bytes\":%llu,\"windowCalls\":%u,\"via\":\"%s\"", t->chunks, (unsigned long long)t->bytes,
            t->window_calls, t->mapped && t->trapped ? "both" : t->mapped ? "mmap" : t->trapped ? "pread/pwrite" : "none");
}

/* vfio_update_pending: one 8-byte read; a failed read leaves 0 */
static int update_pending(void)
{
    unsigned calls = 0;
    if (mig_rw(&mig->pending_bytes, 8, MIG_PENDING_BYTES, 0, &calls)) { mig->pending_bytes = 0; return -1; }
    return 0;
}

/* vfio_save_buffer: data_offset (the trigger), data_size, be64 data_size, the window bytes. */
static int save_buffer(uint64_t *data_size, struct transfer *t)
{
    uint64_t data_offset = 0;
    unsigned calls = 0;
    *data_size = 0;
    if (mig_rw(&data_offset, 8, MIG_DATA_OFFSET, 0, &calls) || mig_rw(data_size, 8, MIG_DATA_SIZE, 0, &calls)) return -1;
    if (data_offset < 32 || data_offset > mig->size || *data_size > mig->size - data_offset) { errno = EINVAL; return -1; }
    put_be64(mig->stream, *data_size);
    unsigned char *buf = malloc(*data_size ? *data_size : 1);
    int r = window_rw(buf, *data_size, data_offset, 0, t);
    if (!r) fwrite(buf, 1, *data_size, mig->stream);
    free(buf);
    if (r) return -1;
    if (*data_size) t->chunks++;
    t->bytes += *data_size;
    return 0;
}

static void state_answer(int r, uint32_t state, int hw_error, const struct transfer *t, const char *extra)
{
    begin(r);
    fprintf(out, ",\"hwError\":%s,\"state\":%u", hw_error ? "true" : "false", state);
    if (t) transfer_fields(t);
    if (extra) fputs(extra, out);
    end();
}

static void save_setup(const char *path)
{
    uint32_t state = 0;
    int hw_error = 0, r = -1;
    if (mig->stream) fclose(mig->stream);
    mig->stream = fopen(path, "w");
    if (mig->stream) {
        put_be64(mig->stream, MIG_STREAM_MAGIC);
        put_be64(mig->stream, MIG_FLAG_DEV_SETUP_STATE);
        r = set_state_qemu(STATE_MASK, STATE_SAVING, &state, &hw_error);
        if (!r) put_be64(mig->stream, MIG_FLAG_END_OF_STATE);
    }
    errno = r ? errno : EXDEV;             /* success leaves errno as the command found it */
    state_answer(r, state, hw_error, NULL, NULL);
}

static void save_iterate(unsigned rounds)
{
    struct transfer t = { 0 };
    unsigned done = 0, round = 0;
    int r = 0;
    if (!mig->stream) { errno = EBADF; answer(-1); return; }
    while (round < rounds) {
        round++;
        update_pending();                               /* vfio_save_pending: a failure only skips the estimate */
        put_be64(mig->stream, MIG_FLAG_DEV_DATA_STATE);  /* vfio_save_iterate */
        if (mig->pending_bytes == 0) {
            if ((r = update_pending())) break;
            if (mig->pending_bytes == 0) {
                put_be64(mig->stream, 0);
                put_be64(mig->stream, MIG_FLAG_END_OF_STATE);
                done = 1;
                break;
            }
        }
        uint64_t size;
        if ((r = save_buffer(&size, &t))) break;
        put_be64(mig->stream, MIG_FLAG_END_OF_STATE);
        mig->pending_bytes = 0;
    }
    errno = r ? errno : EXDEV;
    begin(r);
    transfer_fields(&t);
    fprintf(out, ",\"rounds\":%u,\"done\":%s", round, done ? "true" : "false");
    end();
}

static void save_complete(void)
{
    struct transfer t = { 0 };
    uint32_t state = 0;
    int hw_error = 0, r;
    if (!mig->stream) { errno = EBADF; answer(-1); return; }
    r = set_state_qemu((uint32_t)~STATE_RUNNING, STATE_SAVING, &state, &hw_error);
    if (!r) r = update_pending();
    while (!r && mig->pending_bytes > 0) {
        uint64_t size;
        put_be64(mig->stream, MIG_FLAG_DEV_DATA_STATE);
        if ((r = save_buffer(&size, &t)) || size == 0) break;
        r = update_pending();
    }
    if (!r) {
        put_be64(mig->stream, MIG_FLAG_END_OF_STATE);
        r = set_state_qemu((uint32_t)~STATE_SAVING, 0, &state, &hw_error);
    }
    if (!r) {                                            /* vfio_save_state: no config payload here */
        put_be64(mig->stream, MIG_FLAG_DEV_CONFIG_STATE);
        put_be64(mig->stream, MIG_FLAG_END_OF_STATE);
    }
    int e = errno;
    fclose(mig->stream);
    mig->stream = NULL;
    errno = r ? e : EXDEV;
    state_answer(r, state, hw_error, &t, NULL);
}

/* vfio_load_buffer: the record split to the window (region size - data_offset), each part
 * written to the window and reported with a data_size write. */
static int load_buffer(FILE *in, uint64_t data_size, struct transfer *t)
{
    do {
        uint64_t data_offset = 0, size;
        unsigned calls = 0;
        if (mig_rw(&data_offset, 8, MIG_DATA_OFFSET, 0, &calls)) return -1;
        if (data_offset < 32 || data_offset >= mig->size) { errno = EINVAL; return -1; }
        if (data_offset + data_size > mig->size) {
            size = mig->size - data_offset;
            data_size -= size;
        } else {
            size = data_size;
            data_size = 0;
        }
        unsigned char *buf = malloc(size);
        int r = fread(buf, 1, size, in) == size ? window_rw(buf, size, data_offset, 1, t) : (errno = EIO, -1);
        free(buf);
        if (r || mig_rw(&size, 8, MIG_DATA_SIZE, 1, &calls)) return -1;
        t->chunks++;
        t->bytes += size;
    } while (data_size);
    return 0;
}

/* vfio_load_state for one section: records until END_OF_STATE; 1 at the config section (the end). */
static int load_section(FILE *in, struct transfer *t)
{
    uint64_t tag;
    if (get_be64(in, &tag)) return -1;
    while (tag != MIG_FLAG_END_OF_STATE) {
        if (tag == MIG_FLAG_DEV_CONFIG_STATE) return get_be64(in, &tag) ? -1 : tag == MIG_FLAG_END_OF_STATE ? 1 : (errno = EINVAL, -1);
        if (tag == MIG_FLAG_DEV_SETUP_STATE) return get_be64(in, &tag) ? -1 : tag == MIG_FLAG_END_OF_STATE ? 0 : (errno = EINVAL, -1);
        if (tag != MIG_FLAG_DEV_DATA_STATE) { errno = EINVAL; return -1; }
        uint64_t data_size;
        if (get_be64(in, &data_size) || (data_size && load_buffer(in, data_size, t))) return -1;
        if (get_be64(in, &tag)) return -1;
    }
    return 0;
}

static void resume(const char *path)
{
    struct transfer t = { 0 };
    uint32_t state = 0;
    int hw_error = 0, r = -1;
    FILE *in = fopen(path, "r");
    uint64_t magic;
    if (in && !get_be64(in, &magic)) {
        if (magic != MIG_STREAM_MAGIC) errno = EINVAL;
        else r = set_state_qemu((uint32_t)~STATE_MASK, STATE_RESUMING, &state, &hw_error);
    }
    int sections = 0;
    while (!r) {
        int s = load_section(in, &t);
        if (s < 0) r = -1;
        else sections++;
        if (s) break;
    }
    int e = errno;
    if (in) fclose(in);
    errno = r ? e : EXDEV;
    char extra[32];
    snprintf(extra, sizeof extra, ",\"sections\":%d", sections);
    state_answer(r, state, hw_error, &t, extra);
}

/* setstate MASK VALUE, and the named calls above */
static void set_state(uint32_t mask, uint32_t value)
{
    uint32_t state = 0;
    int hw_error = 0;
    int r = set_state_qemu(mask, value, &state, &hw_error);
    state_answer(r, state, hw_error, NULL, NULL);
}

/* ---------------------------------------------------------------- the rest */

static void print_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    begin(0);
    fputs(",\"fds\":[", out);
    struct dirent *e;
    int first = 1, self = dirfd(dir);
    while ((e = readdir(dir))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self) continue;
        char link[64], target[512] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        fprintf(out, "%s{\"fd\":%d,\"target\":\"%s\",\"cloexec\":%s}", first ? "" : ",", fd, target,
                (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false");
        first = 0;
    }
    fputs("]", out);
    end();
    closedir(dir);
}

static struct { void *p; size_t len; } maps[16];

static atomic_int header_started, header_done;
struct stall { int fd; off_t header, bar; long r; int e; };
static void *header_reader(void *arg)
{
    struct stall *s = arg;
    uint32_t v;
    atomic_store(&header_started, 1);
    s->r = pread(s->fd, &v, 4, s->header);
    s->e = errno;
    atomic_store(&header_done, 1);
    return NULL;
}

/* While one thread waits for the bridge inside a header read, another thread's BAR reads on
 * the same fd must complete (QEMU's vCPU threads). */
static void stall_check(int fd, off_t header, off_t bar, int n)
{
    struct stall s = { fd, header, bar, 0, 0 };
    pthread_t t;
    atomic_store(&header_started, 0);
    atomic_store(&header_done, 0);
    pthread_create(&t, NULL, header_reader, &s);
    while (!atomic_load(&header_started)) usleep(1000);
    usleep(100 * 1000);                 /* let it get into the exchange */
    int ok = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v;
        if (pread(fd, &v, 8, bar) == 8) ok++;
    }
    int header_still_blocked = !atomic_load(&header_done);
    pthread_join(t, NULL);
    errno = s.e;
    begin(s.r);
    fprintf(out, ",\"barReads\":%d,\"headerStillBlocked\":%s", ok, header_still_blocked ? "true" : "false");
    end();
}

static void run(char *line);

static void fork_run(char *rest)
{
    int p[2];
    if (pipe(p)) { answer(-1); return; }
    fflush(out);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        out = fdopen(p[1], "w");
        for (char *cmd = strtok(rest, ";"); cmd; cmd = strtok(NULL, ";")) run(cmd);
        fflush(out);
        _exit(0);
    }
    close(p[1]);
    static char child[1 << 16];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], child + n, sizeof child - 1 - n)) > 0) n += (size_t)r;
    close(p[0]);
    child[n] = 0;
    for (size_t i = 0; i + 1 < n; i++) if (child[i] == '\n') child[i] = ',';
    if (n && child[n - 1] == '\n') child[n - 1] = 0;
    int status;
    waitpid(pid, &status, 0);
    call_start();
    begin(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    fprintf(out, ",\"child\":[%s]", child);
    end();
}

static unsigned long long num(const char *s) { return s ? strtoull(s, NULL, 0) : 0; }

static void run(char *line)
{
    char *argv[8] = { 0 };
    char *rest = NULL;
    int argc = 0;
    for (char *save = NULL, *tok = strtok_r(line, " \t\n", &save); tok && argc < 8; tok = strtok_r(NULL, " \t\n", &save)) {
        argv[argc++] = tok;
        if (strcmp(argv[0], "fork") == 0) { rest = save; break; }
    }
    if (!argc) return;
    const char *c = argv[0];
    int fd = (int)num(argv[1]);
    call_start();
    if (!strcmp(c, "getpid")) answer(getpid());
    else if (!strcmp(c, "open")) answer(open(argv[1], O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    else if (!strcmp(c, "group")) {
        char path[4096];
        snprintf(path, sizeof path, "%s/group", getenv("FAKE_VFIO_DIR"));
        int g = open(path, O_RDWR | O_CLOEXEC);
        call_start();
        int r = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, argv[1]);
        int e = errno;
        close(g);
        errno = e;
        answer(r);
    } else if (!strcmp(c, "info")) {
        unsigned char buf[64];
        memset(buf, 0, sizeof buf);
        struct vfio_device_info info = { .argsz = argv[2] ? (uint32_t)num(argv[2]) : sizeof info };
        memcpy(buf, &info, sizeof info);
        int r = ioctl(fd, VFIO_DEVICE_GET_INFO, buf);
        memcpy(&info, buf, sizeof info);
        begin(r);
        fprintf(out, ",\"numRegions\":%u,\"flags\":%u", info.num_regions, info.flags);
        end();
    } else if (!strcmp(c, "rinfo")) {   /* rinfo FD INDEX ARGSZ: one raw GET_REGION_INFO */
        unsigned char buf[256];
        memset(buf, 0xaa, sizeof buf);
        uint32_t argsz = (uint32_t)num(argv[3]), index = (uint32_t)num(argv[2]);
        memcpy(buf, &argsz, 4);
        memcpy(buf + 8, &index, 4);
        int r = ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf);
        struct vfio_region_info info;
        memcpy(&info, buf, sizeof info);
        size_t shown = argsz > sizeof info && argsz < sizeof buf ? argsz : sizeof info;
        int beyond = 0;
        for (size_t i = shown; i < sizeof buf; i++) beyond |= buf[i] != 0xaa;
        begin(r);
        fprintf(out, ",\"argsz\":%u,\"flags\":%u,\"index\":%u,\"capOffset\":%u,\"size\":\"%llu\",\"offset\":\"%llu\",\"wroteBeyondArgsz\":%s",
                info.argsz, info.flags, info.index, info.cap_offset, (unsigned long long)info.size,
                (unsigned long long)info.offset, beyond ? "true" : "false");
        hex_field("caps", buf + sizeof info, shown - sizeof info);
        end();
    } else if (!strcmp(c, "pread")) {   /* pread FD OFF COUNT [pread|pread64|chk|chk64] */
        size_t count = num(argv[3]);
        unsigned char *buf = malloc(count + 1);
        off_t off = (off_t)num(argv[2]);
        const char *via = argv[4] ? argv[4] : "pread64";
        call_start();
        ssize_t r = !strcmp(via, "pread") ? pread(fd, buf, count, off)
                  : !strcmp(via, "chk") ? __pread_chk(fd, buf, count, off, count)
                  : !strcmp(via, "chk64") ? __pread64_chk(fd, buf, count, off, count)
                  : pread64(fd, buf, count, off);
        begin(r);
        hex_field("hex", buf, r > 0 ? (size_t)r : 0);
        end();
        free(buf);
    } else if (!strcmp(c, "pwrite")) {  /* pwrite FD OFF HEX [pwrite|pwrite64] */
        static unsigned char buf[1 << 19];
        size_t n = argv[3] && strcmp(argv[3], "-") ? unhex(argv[3], buf, sizeof buf) : 0;
        off_t off = (off_t)num(argv[2]);
        call_start();
        answer(argv[4] && !strcmp(argv[4], "pwrite") ? pwrite(fd, buf, n, off) : pwrite64(fd, buf, n, off));
    } else if (!strcmp(c, "mmap")) {    /* mmap FD OFF LEN [shared|private] [mmap|mmap64] */
        int slot = 0;
        while (slot < 16 && maps[slot].p) slot++;
        size_t len = num(argv[3]);
        int flags = argv[4] && !strcmp(argv[4], "private") ? MAP_PRIVATE : MAP_SHARED;
        void *p = argv[5] && !strcmp(argv[5], "mmap") ? mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, (off_t)num(argv[2]))
                                                      : mmap64(NULL, len, PROT_READ | PROT_WRITE, flags, fd, (off64_t)num(argv[2]));
        if (p != MAP_FAILED) { maps[slot].p = p; maps[slot].len = len; }
        answer(p == MAP_FAILED ? -1 : slot);
    } else if (!strcmp(c, "mread")) {   /* mread SLOT OFF LEN */
        begin(0);
        hex_field("hex", (unsigned char *)maps[fd].p + num(argv[2]), num(argv[3]));
        end();
    } else if (!strcmp(c, "mwrite")) {  /* mwrite SLOT OFF HEX */
        answer((long long)unhex(argv[3], (unsigned char *)maps[fd].p + num(argv[2]), maps[fd].len - num(argv[2])));
    } else if (!strcmp(c, "munmap")) {
        answer(munmap(maps[fd].p, maps[fd].len));
        maps[fd].p = NULL;
    } else if (!strcmp(c, "dup")) answer(dup(fd));
    else if (!strcmp(c, "dup2")) answer(dup2(fd, (int)num(argv[2])));
    else if (!strcmp(c, "dup3")) answer(dup3(fd, (int)num(argv[2]), O_CLOEXEC));
    else if (!strcmp(c, "fcntl")) {     /* fcntl FD dupfd|dupfd_cloexec MIN [fcntl|fcntl64] */
        int cmd = !strcmp(argv[2], "dupfd") ? F_DUPFD : F_DUPFD_CLOEXEC;
        answer(argv[4] && !strcmp(argv[4], "fcntl64") ? fcntl64(fd, cmd, (int)num(argv[3])) : fcntl(fd, cmd, (int)num(argv[3])));
    } else if (!strcmp(c, "close")) answer(close(fd));
    else if (!strcmp(c, "close_range")) answer(close_range((unsigned)num(argv[1]), (unsigned)num(argv[2]), (int)num(argv[3])));
    else if (!strcmp(c, "reset")) answer(ioctl(fd, VFIO_DEVICE_RESET));
    else if (!strcmp(c, "socketpair")) {
        int sv[2];
        int r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        begin(r ? r : sv[0]);
        fprintf(out, ",\"peer\":%d", sv[1]);
        end();
    } else if (!strcmp(c, "unread")) {  /* bytes waiting to be read on a socket */
        int n = 0;
        int r = ioctl(fd, FIONREAD, &n);
        answer(r ? r : n);
    }
    else if (!strcmp(c, "feature")) {   /* feature FD FLAGS [ARGSZ] */
        unsigned char buf[32] = { 0 };
        struct vfio_device_feature f = { .argsz = argv[3] ? (uint32_t)num(argv[3]) : 16, .flags = (uint32_t)num(argv[2]) };
        memcpy(buf, &f, sizeof f);
        int r = ioctl(fd, VFIO_DEVICE_FEATURE, buf);
        begin(r);
        hex_field("data", buf + sizeof f, 8);
        end();
    } else if (!strcmp(c, "counters")) {
        struct fake_counters k = { 0 };
        int r = ioctl(fd, FAKE_VFIO_COUNTERS, &k);
        begin(r);
        fprintf(out, ",\"infos\":%u,\"resets\":%u,\"features\":%u", k.infos, k.resets, k.features);
        end();
    } else if (!strcmp(c, "migsetup")) migsetup(fd, !(argv[2] && !strcmp(argv[2], "nommap")));
    else if (!strcmp(c, "migread")) {   /* migread OFF WIDTH */
        uint64_t v = 0;
        unsigned calls = 0;
        int r = mig_rw(&v, num(argv[2]), num(argv[1]), 0, &calls);
        begin(r);
        fprintf(out, ",\"value\":\"%llu\"", (unsigned long long)v);
        end();
    } else if (!strcmp(c, "migwrite")) { /* migwrite OFF WIDTH VALUE */
        uint64_t v = num(argv[3]);
        unsigned calls = 0;
        answer(mig_rw(&v, num(argv[2]), num(argv[1]), 1, &calls));
    } else if (!strcmp(c, "save")) save_chunk();
    else if (!strcmp(c, "load")) load_chunk(argv[1] ? argv[1] : "");
    else if (!strcmp(c, "setstate")) set_state((uint32_t)num(argv[1]), (uint32_t)num(argv[2]));
    else if (!strcmp(c, "use")) {       /* use FD: the device set up on FD becomes the current one */
        int found = -1;
        for (int i = 0; i < MIG_DEVICES; i++) if (migs[i].fd == fd) { mig = &migs[i]; found = i; }
        if (found < 0) errno = EINVAL;
        answer(found < 0 ? -1 : 0);
    }
    else if (!strcmp(c, "savesetup")) save_setup(argv[1] ? argv[1] : "");
    else if (!strcmp(c, "iterate")) save_iterate((unsigned)num(argv[1]));
    else if (!strcmp(c, "vmstop")) set_state((uint32_t)~STATE_RUNNING, 0);
    else if (!strcmp(c, "complete")) save_complete();
    else if (!strcmp(c, "resume")) resume(argv[1] ? argv[1] : "");
    else if (!strcmp(c, "vmstart")) set_state((uint32_t)~STATE_MASK, STATE_RUNNING);
    else if (!strcmp(c, "migfailed")) set_state((uint32_t)~(STATE_SAVING | STATE_RESUMING), STATE_RUNNING);
    else if (!strcmp(c, "fds")) print_fds();
    else if (!strcmp(c, "stall")) stall_check(fd, (off_t)num(argv[2]), (off_t)num(argv[3]), (int)num(argv[4]));
    else if (!strcmp(c, "fork")) fork_run(rest ? rest : (char *)"");
    else if (!strcmp(c, "sleep")) { usleep((useconds_t)num(argv[1]) * 1000); answer(0); }
    else { errno = EINVAL; answer(-1); }
}

int main(void)
{
    out = stdout;
    for (int i = 0; i < MIG_DEVICES; i++) migs[i].fd = migs[i].index = -1;
    while (fgets(line_buf, sizeof line_buf, stdin)) {
        if (!strncmp(line_buf, "exit", 4)) break;
        run(line_buf);
    }
    for (int d = 0; d < MIG_DEVICES; d++) {
        for (int i = 0; i < 4; i++) if (migs[d].areas[i].map) munmap(migs[d].areas[i].map, migs[d].areas[i].size);
        if (migs[d].stream) fclose(migs[d].stream);
    }
    return 0;
}
