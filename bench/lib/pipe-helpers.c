/*
 * The other end of the real-fd bench's kernel pipe (bench/real-fd.mjs):
 *   pipe-helpers feed  FIFO BYTES   writes BYTES of the stream pattern (lib/pattern.mjs) into FIFO
 *   pipe-helpers drain FIFO BYTES   reads BYTES from FIFO and checks every byte against the pattern
 * Both raise the pipe's capacity to 1 MiB (or /proc/sys/fs/pipe-max-size) and
 * print "<bytes moved> <0 ok | 1 mismatch> <pipe capacity>" when done.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PERIOD (1 << 16)
#define CHUNK (1 << 20)

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "feed") && strcmp(argv[1], "drain"))) {
        fprintf(stderr, "usage: pipe-helpers feed|drain FIFO BYTES\n");
        return 2;
    }
    int feed = !strcmp(argv[1], "feed");
    long long total = atoll(argv[3]), moved = 0;
    static unsigned char pattern[CHUNK + PERIOD], buf[CHUNK];
    for (int i = 0; i < CHUNK + PERIOD; i++)
        pattern[i] = (unsigned char)(((uint32_t)(i % PERIOD) * 2654435761u) >> 24);
    int fd = open(argv[2], feed ? O_WRONLY : O_RDONLY);
    if (fd < 0) { perror(argv[2]); return 1; }
    fcntl(fd, F_SETPIPE_SZ, CHUNK); /* fails above pipe-max-size: the default stays */
    int capacity = fcntl(fd, F_GETPIPE_SZ);
    int bad = 0;
    while (moved < total) {
        size_t want = total - moved < CHUNK ? (size_t)(total - moved) : CHUNK;
        ssize_t n = feed ? write(fd, pattern + moved % PERIOD, want) : read(fd, buf, want);
        if (n < 0) { perror(argv[1]); return 1; }
        if (n == 0) break;
        if (!feed && memcmp(buf, pattern + moved % PERIOD, n)) bad = 1;
        moved += n;
    }
    printf("%lld %d %d\n", moved, bad, capacity);
    return 0;
}
