/* nettool: the small static helper the Linux-guest network test (and
 * bench-net) runs on both sides, since busybox's nc cannot half-close and
 * busybox has no ethtool.
 *
 *   nettool send HOST PORT MIB SEED   connect, send MIB MiB of a stream
 *                                     seeded by SEED, half-close, wait for
 *                                     the peer to close
 *   nettool sink PORT                 accept one connection, read to EOF
 *   nettool source PORT MIB SEED      accept one connection, send MIB MiB,
 *                                     close
 *   nettool fetch HOST PORT           connect, read to EOF
 *   nettool rr-server PORT            accept one, echo 1-byte messages
 *   nettool rr HOST PORT N            N 1-byte round trips: p50/p99 in us
 *   nettool channels IFACE [N]        ETHTOOL_GCHANNELS (and SCHANNELS
 *                                     combined=N first): prints combined
 *
 * Every transfer prints one line: "bytes=N fnv=HEX secs=S mbit=M": the
 * same stream gives the same FNV-1a on both sides. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static uint8_t buf[CHUNK];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "nettool: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The stream: xorshift64 from the seed, 8 bytes at a time. */
static void fill(uint64_t *st, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = *st;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *st = x;
        memcpy(p + i, &x, 8);
    }
}

static int listen_one(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), c;
    if (s < 0)
        die("socket");
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0)
        die("bind/listen");
    c = accept(s, NULL, NULL);
    if (c < 0)
        die("accept");
    close(s);
    return c;
}

static int connect_to(const char *host, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int s;
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "nettool: bad address %s\n", host);
        exit(2);
    }
    /* The peer may not listen yet: retry for a while. */
    for (int i = 0; i < 600; i++) {
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            die("socket");
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
            return s;
        close(s);
        usleep(100000);
    }
    die("connect");
    return -1;
}

static void report(uint64_t bytes, uint64_t h, double t0)
{
    double secs = now() - t0;
    printf("bytes=%llu fnv=%016llx secs=%.3f mbit=%.1f\n", (unsigned long long)bytes,
           (unsigned long long)h, secs, secs > 0 ? bytes * 8 / secs / 1e6 : 0.0);
    fflush(stdout);
}

static void do_send(int s, uint64_t mib, uint64_t seed, int half_close)
{
    uint64_t st = seed | 1, h = 0xcbf29ce484222325ULL, left = mib << 20, total = 0;
    double t0 = now();
    while (left) {
        size_t n = left < CHUNK ? left : CHUNK;
        fill(&st, buf, n);
        h = fnv(h, buf, n);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(s, buf + off, n - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                die("write");
            }
            off += w;
        }
        left -= n;
        total += n;
    }
    if (half_close) {
        shutdown(s, SHUT_WR);
        while (read(s, buf, sizeof(buf)) > 0)
            ;
    }
    report(total, h, t0);
    close(s);
}

static void do_recv(int s)
{
    uint64_t h = 0xcbf29ce484222325ULL, total = 0;
    double t0 = now();
    for (;;) {
        ssize_t r = read(s, buf, sizeof(buf));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (r == 0)
            break;
        h = fnv(h, buf, r);
        total += r;
    }
    report(total, h, t0);
    close(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int channels(const char *ifname, int set)
{
    struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    ifr.ifr_data = (void *)&ch;
    if (ioctl(s, SIOCETHTOOL, &ifr) < 0)
        die("ETHTOOL_GCHANNELS");
    if (set > 0) {
        ch.cmd = ETHTOOL_SCHANNELS;
        ch.combined_count = set;
        if (ioctl(s, SIOCETHTOOL, &ifr) < 0)
            die("ETHTOOL_SCHANNELS");
        ch.cmd = ETHTOOL_GCHANNELS;
        if (ioctl(s, SIOCETHTOOL, &ifr) < 0)
            die("ETHTOOL_GCHANNELS");
    }
    printf("combined=%u max_combined=%u\n", ch.combined_count, ch.max_combined);
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(c, "send") && argc == 6) {
        do_send(connect_to(argv[2], atoi(argv[3])), strtoull(argv[4], 0, 0),
                strtoull(argv[5], 0, 0), 1);
    } else if (!strcmp(c, "sink") && argc == 3) {
        do_recv(listen_one(atoi(argv[2])));
    } else if (!strcmp(c, "source") && argc == 5) {
        do_send(listen_one(atoi(argv[2])), strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0), 0);
    } else if (!strcmp(c, "fetch") && argc == 4) {
        do_recv(connect_to(argv[2], atoi(argv[3])));
    } else if (!strcmp(c, "rr-server") && argc == 3) {
        int s = listen_one(atoi(argv[2])), one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while (read(s, buf, 1) == 1)
            if (write(s, buf, 1) != 1)
                break;
        close(s);
    } else if (!strcmp(c, "rr") && argc == 5) {
        int s = connect_to(argv[2], atoi(argv[3])), one = 1, n = atoi(argv[4]);
        double *t = calloc(n, sizeof(*t));
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        for (int i = 0; i < n; i++) {
            double t0 = now();
            if (write(s, "x", 1) != 1 || read(s, buf, 1) != 1)
                die("round trip");
            t[i] = (now() - t0) * 1e6;
        }
        qsort(t, n, sizeof(*t), cmp_double);
        printf("rr n=%d p50_us=%.1f p99_us=%.1f\n", n, t[n / 2], t[n * 99 / 100]);
        close(s);
    } else if (!strcmp(c, "channels") && (argc == 3 || argc == 4)) {
        return channels(argv[2], argc == 4 ? atoi(argv[3]) : 0);
    } else {
        fprintf(stderr, "usage: see the head of tests/linux/nettool.c\n");
        return 2;
    }
    return 0;
}
