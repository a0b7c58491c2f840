/*
 * interop.c - do two hosts of different byte order speak the same wire?
 *
 *   interop seal        print a fixed set of sealed packets, one per line:
 *                       "<index> <hex bytes>"
 *   interop open FILE   open every packet of FILE (written by `interop seal`,
 *                       possibly on another host), check the header fields
 *                       and the payload against the set, and print a verdict
 *
 * The set covers both algorithms (HMAC-SHA256, AES-256-GCM), every message
 * type and payload lengths 0 .. HB_PAYLOAD_MAX; every multi-byte header
 * field holds distinct bytes, so a swapped or misplaced byte shows.  Sealing
 * is deterministic (GCM nonces come from (generation, seq)), so the output of
 * `seal` must be byte-identical on every host; tools/bigendian/run.sh
 * compares the little-endian and the big-endian output and opens each host's
 * packets on the other.
 *
 * Not part of libheart or its test suite: built only by run.sh.
 */
#include "heart/heart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IO_CLUSTER 0x01020304u
#define IO_KEY_HMAC 0x11
#define IO_KEY_GCM 0x22

static const uint8_t io_key_hmac[HB_KEY_LEN] = {
    0x6b, 0x65, 0x79, 0x2d, 0x68, 0x6d, 0x61, 0x63, 0x00, 0xff, 0x01,
    0xfe, 0x02, 0xfd, 0x03, 0xfc, 0x80, 0x7f, 0x81, 0x7e, 0x10, 0x20,
    0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0};
static const uint8_t io_key_gcm[HB_KEY_LEN] = {
    0x6b, 0x65, 0x79, 0x2d, 0x67, 0x63, 0x6d, 0x00, 0x0f, 0x1e, 0x2d,
    0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
    0xe1, 0xf0, 0x13, 0x57, 0x9b, 0xdf, 0x24, 0x68, 0xac, 0xe0};

static const size_t io_lens[] = {0, 1, 15, 16, 17, 100, HB_HEARTBEAT_PAYLOAD_MAX,
                                 HB_PAYLOAD_MAX};
#define IO_NLENS (sizeof io_lens / sizeof io_lens[0])
#define IO_NTYPES 3
#define IO_NALGS 2
#define IO_SLOTS (IO_NALGS * IO_NTYPES * IO_NLENS)

struct io_vec {
    int alg;
    hb_header hdr; /* what the receiver must see */
    size_t len;
    uint8_t payload[HB_PAYLOAD_MAX];
};

/* Vector number i of the set (0 .. IO_SLOTS-1); 0 when the slot is unused
 * (a heartbeat longer than a heartbeat may be). */
static int io_vector(unsigned i, struct io_vec *v)
{
    unsigned a = i / (IO_NTYPES * IO_NLENS);
    unsigned t = (i / IO_NLENS) % IO_NTYPES;
    unsigned l = i % IO_NLENS;

    memset(v, 0, sizeof *v);
    v->alg = a == 0 ? HB_AUTH_HMAC_SHA256 : HB_AUTH_AES256_GCM;
    v->hdr.version = HB_WIRE_VERSION;
    v->hdr.type = (uint8_t)(HB_MSG_HEARTBEAT + t);
    v->hdr.alg = (uint8_t)v->alg;
    v->hdr.key_id = a == 0 ? IO_KEY_HMAC : IO_KEY_GCM;
    v->hdr.cluster_id = IO_CLUSTER;
    v->hdr.node_id = 0x0a0b0c0du + i;
    v->hdr.generation = 0x1112131415161718ull + ((uint64_t)i << 40);
    v->hdr.seq = 0x2122232425262728ull + i;
    v->hdr.interval_us = 0x31323334u + i;
    v->len = io_lens[l];
    if (v->hdr.type == HB_MSG_HEARTBEAT && v->len > HB_HEARTBEAT_PAYLOAD_MAX)
        return 0;
    v->hdr.payload_len = (uint16_t)v->len;
    for (size_t j = 0; j < v->len; j++)
        v->payload[j] = (uint8_t)(i * 31u + j * 7u + 1u);
    return 1;
}

static hb_keyring *io_ring(int send_alg)
{
    hb_keyring *kr = NULL;
    if (hb_keyring_new(&kr) != 0 ||
        hb_keyring_add(kr, IO_KEY_HMAC, HB_AUTH_HMAC_SHA256, io_key_hmac,
                       HB_KEY_LEN) != 0 ||
        hb_keyring_add(kr, IO_KEY_GCM, HB_AUTH_AES256_GCM, io_key_gcm,
                       HB_KEY_LEN) != 0 ||
        (send_alg != 0 &&
         hb_keyring_set_send(kr, send_alg == HB_AUTH_HMAC_SHA256 ? IO_KEY_HMAC
                                                                  : IO_KEY_GCM) != 0)) {
        fprintf(stderr, "interop: keyring setup failed\n");
        exit(2);
    }
    return kr;
}

static int io_seal(void)
{
    hb_keyring *kr[IO_NALGS] = {io_ring(HB_AUTH_HMAC_SHA256),
                                io_ring(HB_AUTH_AES256_GCM)};
    uint8_t pkt[HB_PACKET_MAX];
    static struct io_vec v;
    int n = 0;

    for (unsigned i = 0; i < IO_SLOTS; i++) {
        if (!io_vector(i, &v))
            continue;
        hb_header h = v.hdr;
        h.version = 0; /* seal fills these in */
        h.alg = 0;
        h.key_id = 0;
        h.payload_len = 0;
        int len = hb_wire_seal(kr[v.alg == HB_AUTH_HMAC_SHA256 ? 0 : 1], &h,
                               v.payload, v.len, pkt, sizeof pkt);
        if (len < 0) {
            fprintf(stderr, "interop: seal of vector %u failed: %d\n", i, len);
            return 1;
        }
        printf("%u ", i);
        for (int j = 0; j < len; j++)
            printf("%02x", pkt[j]);
        printf("\n");
        n++;
    }
    hb_keyring_free(kr[0]);
    hb_keyring_free(kr[1]);
    return n > 0 ? 0 : 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int io_open(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 2;
    }
    hb_keyring *kr = io_ring(0);
    static char line[2 * HB_PACKET_MAX + 64];
    static struct io_vec v;
    uint8_t pkt[HB_PACKET_MAX], out[HB_PAYLOAD_MAX];
    int expected = 0, passed = 0, failed = 0;
    unsigned char seen[IO_SLOTS] = {0};

    for (unsigned i = 0; i < IO_SLOTS; i++)
        expected += io_vector(i, &v);

    while (fgets(line, sizeof line, f) != NULL) {
        char *sp = strchr(line, ' ');
        char *end = NULL;
        unsigned long idx = strtoul(line, &end, 10);
        if (sp == NULL || end != sp || idx >= IO_SLOTS || !io_vector((unsigned)idx, &v) ||
            seen[idx]) {
            fprintf(stderr, "interop: %s: bad line: %.40s\n", path, line);
            failed++;
            continue;
        }
        seen[idx] = 1;
        size_t len = 0;
        const char *h = sp + 1;
        while (hexval(h[0]) >= 0 && hexval(h[1]) >= 0 && len < sizeof pkt) {
            pkt[len++] = (uint8_t)(hexval(h[0]) << 4 | hexval(h[1]));
            h += 2;
        }
        hb_header g;
        memset(out, 0, sizeof out);
        int rc = hb_wire_decode(kr, IO_CLUSTER, pkt, len, &g, out, sizeof out);
        const char *why = NULL;
        if (rc != 0)
            why = hb_reject_name(-rc);
        else if (g.version != v.hdr.version || g.type != v.hdr.type ||
                 g.alg != v.hdr.alg || g.key_id != v.hdr.key_id ||
                 g.cluster_id != v.hdr.cluster_id || g.node_id != v.hdr.node_id ||
                 g.generation != v.hdr.generation || g.seq != v.hdr.seq ||
                 g.interval_us != v.hdr.interval_us ||
                 g.payload_len != v.hdr.payload_len)
            why = "header fields differ";
        else if (memcmp(out, v.payload, v.len) != 0)
            why = "payload differs";
        if (why != NULL) {
            fprintf(stderr, "interop: packet %lu (alg %d, type %d, %zu bytes): %s\n",
                    idx, v.alg, v.hdr.type, v.len, why);
            failed++;
        } else {
            passed++;
        }
    }
    fclose(f);
    hb_keyring_free(kr);
    if (passed + failed != expected) {
        fprintf(stderr, "interop: %s holds %d packets, the set has %d\n", path,
                passed + failed, expected);
        failed += expected > passed + failed ? expected - passed - failed : 0;
    }
    printf("interop: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "seal") == 0)
        return io_seal();
    if (argc == 3 && strcmp(argv[1], "open") == 0)
        return io_open(argv[2]);
    fprintf(stderr, "usage: interop seal | interop open FILE\n");
    return 2;
}
