/*
 * fuzz_claim.c - fuzz target for hb_frame_parse_claim, the parser of the raw
 * frames (ARP, ICMPv6 neighbour advertisements) a node reads off its
 * segment, and for the frame builders.  One input drives two parts:
 *
 *   A. raw     the whole input is a frame off the wire: hb_frame_parse_claim
 *              must answer 0 or -EINVAL, leave *out alone on -EINVAL, and
 *              agree with an independent oracle written here from RFC 826 /
 *              RFC 4861 7.1.2 (differential: both ways, field by field).
 *   B. build   a frame is built from fields read from the input (kind, MAC,
 *              address, flag), checked against the builders' rules, parsed
 *              back (announcements must round-trip, probes and solicitations
 *              must not claim anything), then edited by the rest of the input
 *              and put through part A's checks again.
 *
 * Layout of part B (bytes past the end of the input read as 0):
 *   ctl 1     bits 0-2: 0 GARP request, 1 GARP reply, 2 ARP probe, 3 NA,
 *             4 NA with router flag, 5 NS from ::, 6 NS from an address,
 *             7 who-has from an address; bit 3: capacity one byte short
 *   mac 6, addr 16 (IPv4: the first 4), src 16
 *   count 1   edits (count % 9), each: position 1, xor 1; position 255
 *             cuts the frame to the xor value's length instead
 *
 * A broken invariant prints what broke and abort()s: libFuzzer and the
 * sanitizers report it with the input saved.
 *
 * Two runners: libFuzzer (clang, HEART_LIBFUZZER=ON: fuzz_claim_lf), or the
 * small main() at the end (FUZZ_CLAIM_MAIN, the gcc build ctest runs under
 * ASan + UBSan): corpus files first, then random edits of them for
 * --seconds S.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "heart/heart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    uint64_t inputs, raw_claims, raw_arp, raw_na, built, edited_claims;
} stats;

static void fail_at(int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_claim.c:%d: fuzz_claim invariant broken: ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

#define REQUIRE(cond, ...)                                                    \
    do {                                                                      \
        if (!(cond))                                                          \
            fail_at(__LINE__, __VA_ARGS__);                                   \
    } while (0)

/* ------------------------------------------------------------------ */
/* The oracle: a second reading of the rules, in another style        */
/* ------------------------------------------------------------------ */

/* Byte i of the frame, or -1 past its end. */
static int at(const uint8_t *f, size_t n, size_t i)
{
    return i < n ? f[i] : -1;
}

static long be16_at(const uint8_t *f, size_t n, size_t i)
{
    int hi = at(f, n, i), lo = at(f, n, i + 1);
    return hi < 0 || lo < 0 ? -1 : (long)hi * 256 + lo;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* 0 / -1 like the parser, and what it should fill in. */
static int oracle(const uint8_t *f, size_t n, hb_claim *want)
{
    memset(want, 0, sizeof *want);
    long type = be16_at(f, n, 12);
    if (type == 0x0806) {
        if (n < 42 || be16_at(f, n, 14) != 1 || be16_at(f, n, 16) != 0x0800 ||
            f[18] != 6 || f[19] != 4)
            return -1;
        long op = be16_at(f, n, 20);
        if ((op != 1 && op != 2) || all_zero(f + 28, 4))
            return -1;
        want->family = AF_INET;
        want->kind = op == 1 ? HB_CLAIM_ARP_REQUEST : HB_CLAIM_ARP_REPLY;
        memcpy(want->addr, f + 28, 4);
        memcpy(want->mac, f + 22, 6);
        memcpy(want->eth_src, f + 6, 6);
        return 0;
    }
    if (type != 0x86dd || n < 78)
        return -1;
    long plen = be16_at(f, n, 18);
    if ((f[14] & 0xf0) != 0x60 || f[20] != 58 || f[21] != 255 || plen < 24 ||
        (size_t)plen + 54 > n || f[54] != 136 || f[55] != 0)
        return -1;
    /* checksum: 32-bit accumulator over pseudo-header + message */
    uint32_t sum = 58 + (uint32_t)plen;
    for (size_t i = 22; i < 54; i += 2)
        sum += (uint32_t)be16_at(f, n, i);
    for (size_t i = 0; i < (size_t)plen; i++)
        sum += i % 2 == 0 ? (uint32_t)f[54 + i] << 8 : f[54 + i];
    while (sum >> 16)
        sum = (sum >> 16) + (sum & 0xffff);
    if (sum != 0xffff)
        return -1;
    if (f[62] == 0xff || (f[38] == 0xff && (f[58] & 0x40)))
        return -1;
    const uint8_t *lla = NULL;
    size_t end = 54 + (size_t)plen;
    size_t o = 78;
    while (o < end) {
        if (o + 1 >= end || f[o + 1] == 0 || o + 8u * f[o + 1] > end)
            return -1;
        if (f[o] == 2 && lla == NULL) {
            if (f[o + 1] != 1)
                return -1;
            lla = f + o + 2;
        }
        o += 8u * f[o + 1];
    }
    want->family = AF_INET6;
    want->kind = HB_CLAIM_NA;
    want->flags = f[58] & 0xe0;
    memcpy(want->addr, f + 62, 16);
    memcpy(want->mac, lla ? lla : f + 6, 6);
    memcpy(want->eth_src, f + 6, 6);
    return 0;
}

static int claims_equal(const hb_claim *a, const hb_claim *b)
{
    return a->family == b->family && a->kind == b->kind &&
           a->flags == b->flags && memcmp(a->addr, b->addr, 16) == 0 &&
           memcmp(a->mac, b->mac, 6) == 0 &&
           memcmp(a->eth_src, b->eth_src, 6) == 0;
}

/* Part A's checks on one frame; returns the parser's answer. */
static int check_frame(const uint8_t *f, size_t n)
{
    hb_claim got, want;
    memset(&got, 0xa5, sizeof got);
    int rc = hb_frame_parse_claim(n ? f : NULL, n, &got);
    REQUIRE(rc == 0 || rc == -EINVAL, "hb_frame_parse_claim returned %d", rc);
    int orc = oracle(f, n, &want);
    REQUIRE((rc == 0) == (orc == 0), "the parser says %d, the oracle %s", rc,
            orc == 0 ? "claim" : "no claim");
    if (rc == 0) {
        /* unused address bytes of an IPv4 claim are zero in both */
        REQUIRE(claims_equal(&got, &want),
                "the claim differs from the oracle's reading");
        return 0;
    }
    const uint8_t *p = (const uint8_t *)&got;
    for (size_t i = 0; i < sizeof got; i++)
        REQUIRE(p[i] == 0xa5, "a rejected frame wrote to *out");
    return rc;
}

/* ------------------------------------------------------------------ */
/* Part B                                                             */
/* ------------------------------------------------------------------ */

struct reader {
    const uint8_t *p;
    size_t n, off;
};

static uint8_t rd(struct reader *r)
{
    return r->off < r->n ? r->p[r->off++] : 0;
}

static void rd_bytes(struct reader *r, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = rd(r);
}

static int mac_valid(const uint8_t *m)
{
    return !(m[0] & 1) && !all_zero(m, 6);
}

static int ip4_valid(const uint8_t *a)
{
    static const uint8_t bc[4] = {255, 255, 255, 255};
    return !all_zero(a, 4) && (a[0] & 0xf0) != 0xe0 && memcmp(a, bc, 4) != 0;
}

static int ip6_valid(const uint8_t *a)
{
    return a[0] != 0xff && !all_zero(a, 16);
}

static void fuzz_build(const uint8_t *data, size_t size)
{
    struct reader r = {data, size, 0};
    uint8_t mac[6], addr[16], src[16], f[HB_FRAME_MAX];
    uint8_t ctl = rd(&r);
    rd_bytes(&r, mac, 6);
    rd_bytes(&r, addr, 16);
    rd_bytes(&r, src, 16);
    unsigned kind = ctl & 7;
    int v4 = kind <= 2 || kind == 7;
    /* 5 asks from ::, 6 and 7 from an address (a zero one would make a DAD
     * solicitation / an ARP probe) */
    if (kind == 5)
        memset(src, 0, 16);
    else if (kind == 6 && all_zero(src, 16))
        src[15] = 1;
    else if (kind == 7 && all_zero(src, 4))
        src[3] = 1;
    size_t want_len = v4 ? HB_FRAME_ARP_LEN : kind == 5 ? 78 : HB_FRAME_NA_LEN;
    size_t cap = (ctl & 8) ? want_len - 1 : sizeof f;
    int valid = mac_valid(mac) && (v4 ? ip4_valid(addr) : ip6_valid(addr));
    if (kind == 6)
        valid = valid && ip6_valid(src);
    if (kind == 7)
        valid = valid && ip4_valid(src);

    int n;
    switch (kind) {
    case 0: n = hb_frame_garp(f, cap, mac, addr, 0); break;
    case 1: n = hb_frame_garp(f, cap, mac, addr, 1); break;
    case 2: n = hb_frame_arp_probe(f, cap, mac, (const uint8_t[4]){0}, addr); break;
    case 3: n = hb_frame_unsolicited_na(f, cap, mac, addr); break;
    case 4: n = hb_frame_na(f, cap, mac, addr, 1); break;
    case 7: n = hb_frame_arp_probe(f, cap, mac, src, addr); break;
    default: n = hb_frame_ns(f, cap, mac, src, addr); break;
    }
    if (!valid) {
        REQUIRE(n == -EINVAL, "builder %u accepted invalid fields: %d", kind, n);
        return;
    }
    if (ctl & 8) {
        REQUIRE(n == -ENOSPC, "builder %u with %zu bytes of room: %d", kind,
                cap, n);
        return;
    }
    REQUIRE(n >= 0 && (size_t)n == want_len, "builder %u made %d bytes, not %zu",
            kind, n, want_len);
    stats.built++;

    hb_claim c;
    int rc = check_frame(f, (size_t)n);
    if (kind == 2 || kind == 5 || kind == 6) {
        REQUIRE(rc == -EINVAL, "probe/solicitation %u parsed as a claim", kind);
    } else {
        REQUIRE(rc == 0, "announcement %u does not parse back", kind);
        hb_frame_parse_claim(f, (size_t)n, &c);
        const uint8_t *claimed = kind == 7 ? src : addr;
        REQUIRE(memcmp(c.addr, claimed, v4 ? 4 : 16) == 0 &&
                    memcmp(c.mac, mac, 6) == 0 && memcmp(c.eth_src, mac, 6) == 0,
                "announcement %u parses to another address or MAC", kind);
        REQUIRE(c.kind == (kind == 1 ? HB_CLAIM_ARP_REPLY
                           : v4      ? HB_CLAIM_ARP_REQUEST
                                     : HB_CLAIM_NA),
                "announcement %u parses to kind %d", kind, c.kind);
        if (!v4)
            REQUIRE(c.flags == (kind == 4 ? 0xa0 : 0x20), "NA flags %#x", c.flags);
    }

    /* edits */
    size_t len = (size_t)n;
    unsigned count = rd(&r) % 9;
    for (unsigned i = 0; i < count; i++) {
        uint8_t pos = rd(&r), x = rd(&r);
        if (pos == 255)
            len = x < len ? x : len;
        else if (pos < len)
            f[pos] ^= x;
    }
    /* an exact-size copy, so that ASan sees a read past len */
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, f, len);
    if (check_frame(copy, len) == 0)
        stats.edited_claims++;
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stats.inputs++;
    if (check_frame(data, size) == 0) {
        stats.raw_claims++;
        if (size > 13 && data[12] == 0x08)
            stats.raw_arp++;
        else
            stats.raw_na++;
    }
    fuzz_build(data, size);
    return 0;
}

/* ------------------------------------------------------------------ */
/* A main() for builds without libFuzzer                              */
/* ------------------------------------------------------------------ */

#ifdef FUZZ_CLAIM_MAIN
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_MAX_INPUT 512
#define MAX_SEEDS 256

static uint8_t seeds[MAX_SEEDS][CLAIM_MAX_INPUT];
static size_t seed_len[MAX_SEEDS], n_seeds;
static uint8_t *volatile current;
static volatile size_t current_len;

/* Async-signal-safe: write the input that broke something to ./crash-claim. */
static void save_current(void)
{
    uint8_t *p = current;
    if (p == NULL)
        return;
    current = NULL;
    int fd = open("crash-claim", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, p, current_len);
        close(fd);
        (void)w;
    }
    static const char msg[] = "fuzz_claim: input saved as crash-claim\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

static void on_abort(int sig)
{
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

extern void __sanitizer_set_death_callback(void (*callback)(void))
    __attribute__((weak));

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "abort_on_error=1";
}

static void run(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, p, n);
    current_len = n;
    current = copy;
    LLVMFuzzerTestOneInput(copy, n);
    current = NULL;
    free(copy);
}

static int load(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n_seeds < MAX_SEEDS) {
        char path[4096];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        seed_len[n_seeds] = fread(seeds[n_seeds], 1, CLAIM_MAX_INPUT, f);
        fclose(f);
        run(seeds[n_seeds], seed_len[n_seeds]);
        n_seeds++;
    }
    closedir(d);
    return 0;
}

static uint64_t rng = 0x636c61696d5eedull;

static uint64_t next(void) /* xorshift64 */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    double seconds = 5;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--seconds") == 0) {
        seconds = atof(argv[2]);
        i = 3;
    }
    signal(SIGABRT, on_abort);
    if (__sanitizer_set_death_callback != NULL)
        __sanitizer_set_death_callback(save_current);
    for (; i < argc; i++) {
        if (load(argv[i]) != 0)
            return 1;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint8_t buf[CLAIM_MAX_INPUT];
    for (uint64_t made = 0;; made++) {
        if ((made & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) +
                    (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
                break;
        }
        size_t n;
        if (n_seeds > 0 && next() % 8 != 0) {
            size_t s = next() % n_seeds;
            n = seed_len[s];
            memcpy(buf, seeds[s], n);
            for (int k = 1 + (int)(next() % 4); k > 0; k--) {
                uint64_t x = next();
                switch (x % 5) {
                case 0: if (n) buf[(x >> 8) % n] ^= (uint8_t)(1u << ((x >> 40) % 8)); break;
                case 1: if (n) buf[(x >> 8) % n] = (uint8_t)(x >> 40); break;
                case 2: n = (x >> 8) % (n + 1); break;                 /* cut */
                case 3: if (n < CLAIM_MAX_INPUT) buf[n++] = (uint8_t)(x >> 8); break;
                default: if (n > 1) buf[(x >> 8) % n] = buf[(x >> 24) % n]; break;
                }
            }
        } else {
            n = next() % CLAIM_MAX_INPUT;
            for (size_t k = 0; k < n; k++)
                buf[k] = (uint8_t)next();
        }
        run(buf, n);
    }
    printf("fuzz_claim: %zu seeds, %llu inputs in all: %llu frames claimed "
           "(%llu ARP, %llu NA), %llu built and parsed back, %llu claims "
           "after edits\n",
           n_seeds, (unsigned long long)stats.inputs,
           (unsigned long long)stats.raw_claims,
           (unsigned long long)stats.raw_arp, (unsigned long long)stats.raw_na,
           (unsigned long long)stats.built,
           (unsigned long long)stats.edited_claims);
    return 0;
}
#endif
