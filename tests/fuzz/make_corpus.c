/*
 * make_corpus.c - writes the seed inputs of tests/fuzz/corpus/.
 *
 *   make_corpus DIR
 *
 * Linked with fuzz_wire.c, it seals with the target's own keyring, so the
 * packet seeds are accepted as they are by part A of the target (a change of
 * the keys or of the wire format shows up as "0 authenticated as is" in the
 * driver's summary: run this again and commit the files).  The other seeds
 * follow part B's layout (see fuzz_wire.c) and part C's op bytes.  Output is
 * the same at every run: HMAC and GCM under fixed (generation, seq) are
 * deterministic.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *out_dir;
static int failures;

static void write_seed(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        failures++;
        return;
    }
    printf("%s: %zu bytes\n", path, n);
}

static void pattern(uint8_t *p, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(start + 7 * i);
}

static void packet(const char *name, uint8_t key_id, int type, size_t plen,
                   uint64_t seq)
{
    hb_keyring *kr = fuzz_wire_keyring();
    uint8_t payload[HB_PAYLOAD_MAX], pkt[HB_PACKET_MAX];
    hb_header h;

    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.cluster_id = FUZZ_CLUSTER;
    h.node_id = 3;
    h.generation = 1700000000;
    h.seq = seq;
    h.interval_us = 100000;
    pattern(payload, plen, (uint8_t)seq);
    int n = hb_keyring_set_send(kr, key_id);
    if (n == 0)
        n = hb_wire_seal(kr, &h, payload, plen, pkt, sizeof pkt);
    if (n < 0) {
        fprintf(stderr, "%s: sealing failed: %d\n", name, n);
        failures++;
        return;
    }
    write_seed(name, pkt, (size_t)n);
}

/* Part B's layout, big-endian like the reader in fuzz_wire.c. */
struct writer {
    uint8_t p[2048];
    size_t n;
};

static void w_be(struct writer *w, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        w->p[w->n++] = (uint8_t)(v >> (8 * i));
}

static void seal_seed(const char *name, uint8_t ctl, size_t plen,
                      const uint8_t *muts, size_t n_muts)
{
    struct writer w = {{0}, 0};
    w_be(&w, ctl, 1);
    w_be(&w, 0x00000011, 4);         /* node */
    w_be(&w, 0x0000000100000002, 8); /* generation */
    w_be(&w, 0x2a, 8);               /* seq */
    w_be(&w, 250000, 4);             /* interval */
    w_be(&w, plen, 2);
    pattern(w.p + w.n, plen, 0x41);
    w.n += plen;
    w_be(&w, 7, 1);                  /* tweak: seq */
    w_be(&w, 0x0100, 8);
    w_be(&w, n_muts / 4, 1);
    memcpy(w.p + w.n, muts, n_muts);
    w.n += n_muts;
    write_seed(name, w.p, w.n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];

    /* part A: packets accepted as they are */
    packet("hmac-heartbeat", 1, HB_MSG_HEARTBEAT, 24, 1);
    packet("gcm-heartbeat", 2, HB_MSG_HEARTBEAT, 24, 2);
    packet("hmac-heartbeat-max", 1, HB_MSG_HEARTBEAT, HB_HEARTBEAT_PAYLOAD_MAX, 3);
    packet("hmac-state", 1, HB_MSG_STATE, 300, 4);
    packet("gcm-state-max", 2, HB_MSG_STATE, HB_PAYLOAD_MAX, 5);
    packet("hmac-leave-empty", 1, HB_MSG_LEAVE, 0, 6);
    packet("gcm-leave-empty", 2, HB_MSG_LEAVE, 0, 7);

    /* part B: seal, then mutate (op, position, value) */
    static const uint8_t none[1];
    static const uint8_t tag_flip[] = {2, 0x00, 56, 3}; /* a bit of the tag */
    static const uint8_t hdr_and_body[] = {5, 0x00, 24, 0x10,  /* seq byte */
                                           0, 0x00, 41, 0xff}; /* payload */
    static const uint8_t set_same[] = {1, 0x00, 4, 1};         /* no change */
    static const uint8_t cut[] = {3, 0x00, 55, 0};             /* truncate */
    seal_seed("seal-hmac-heartbeat-tagflip", 0x00, 16, tag_flip, sizeof tag_flip);
    seal_seed("seal-gcm-state-rotate", 0x01 | 0x02 | 0x20, 200, hdr_and_body,
              sizeof hdr_and_body);
    seal_seed("seal-gcm-leave-inplace-same", 0x01 | 0x04 | 0x10, 64, set_same,
              sizeof set_same);
    seal_seed("seal-hmac-cut", 0x00, 8, cut, sizeof cut);
    seal_seed("seal-heartbeat-too-long", 0x40, HB_HEARTBEAT_PAYLOAD_MAX + 1,
              none, 0);

    /* part C: replay ops (generation choice bits 0-2, seq choice bits 3-5,
     * bit 6 update even when rejected, bit 7 check only) */
    static const uint8_t replay[] = {
        0x00, 0x00, 0x00, 0x08, 0x00,      /* in order, then max again */
        0x10, 3, 0x10, 3, 0x10, 70,        /* behind, twice; too old */
        0x38, 2, 0x38, 0,                  /* jump by 64 + x */
        0x04, 0x00, 0x05, 0x45,            /* restart; an older generation */
        0x28, 0x68, 0x80, 0x30, 9,         /* seq 0; misuse; check only */
        0x07, 0, 0, 0, 0, 0, 0, 0, 9, 0x20, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xfe, 0x30, 1,   /* near UINT64_MAX */
    };
    write_seed("replay-ops", replay, sizeof replay);

    fuzz_wire_cleanup();
    return failures ? 1 : 0;
}
