/*
 * fuzz_wire.c - fuzz target for libheart's parsers of untrusted bytes: the
 * wire codec (hb_wire_parse, hb_wire_open, hb_wire_decode) and the replay
 * window (hb_replay_check, hb_replay_update).  One input drives four parts,
 * each reading the same bytes its own way:
 *
 *   A. raw      the whole input is a datagram off the network: parse it and
 *               decode it; both are checked against an independent parse
 *               written here, and an accepted input must re-seal to itself.
 *   B. seal     a packet is sealed from fields read from the input's prefix,
 *               checked, then mutated by the rest of the input and decoded
 *               again: unchanged it must be accepted with the same header and
 *               payload, changed it must be rejected with a known cause.
 *   C. replay   (generation, seq) pairs read from the input are run through a
 *               window and through a model of it kept here (every accepted
 *               sequence of the generation in a list, no bitmap).
 *   D. rotation (when part B asks) a key is removed and re-added with other
 *               material: the receive-side GCM subkey cache must not let the
 *               old key's packets through.
 *
 * A broken invariant prints what broke and calls abort(), which libFuzzer and
 * the sanitizers report as a crash with the input saved.  Nothing here
 * depends on anything but the input and the two fixed keyrings, so a saved
 * input replays the same way (the GCM receive cache only changes speed).
 *
 * Layout of part B (bytes past the end of the input read as 0):
 *
 *   ctl      1  bit 0: key 2 (GCM) instead of key 1 (HMAC)
 *               bits 1-2: type 1, 2, 3; or 3: a raw type byte follows
 *               bit 3: a cluster id follows (else FUZZ_CLUSTER)
 *               bit 4: seal in place (payload already at out + 40), or
 *                      with a NULL payload when it is empty
 *               bit 5: run part D on the sealed packet
 *               bit 6: payload length as read (may exceed the type's
 *                      limit: seal must say -EMSGSIZE) instead of modulo it
 *               bit 7: give seal an output buffer 1..8 bytes too small
 *   [type    1]            [slack 1]  (bit 7: how many bytes too small - 1)
 *   [cluster 4]
 *   node 4, generation 8, seq 8, interval_us 4, payload length 2
 *   payload  (payload length bytes)
 *   tweak    1 + 8: header field and xor mask for the wrong-header open
 *   count    1: mutations (count % 9), each: op 1, position 2, value 1
 */
#include "fuzz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fuzz_wire_stats fuzz_wire_stats;

#define FUZZ_KEY_HMAC 1
#define FUZZ_KEY_GCM 2
#define CANARY 0xa5
#define PAYLOAD_BUF (HB_PAYLOAD_MAX + 64)   /* room for "too large" payloads */
#define PACKET_BUF (HB_PACKET_MAX + 128)    /* room for in-place "too large" */
#define MAX_MUTATIONS 8
#define MAX_REPLAY_OPS 256

static const uint8_t key_hmac[HB_KEY_LEN] = {
    0x6b, 0x65, 0x79, 0x2d, 0x31, 0x2d, 0x68, 0x6d, 0x61, 0x63, 0x9c,
    0x41, 0x07, 0xd2, 0x5e, 0x13, 0xaa, 0x80, 0x3f, 0xc4, 0x27, 0x6e,
    0x91, 0x08, 0xb5, 0x4d, 0xe2, 0x19, 0x70, 0xfb, 0x36, 0xc8};
static const uint8_t key_gcm[HB_KEY_LEN] = {
    0x6b, 0x65, 0x79, 0x2d, 0x32, 0x2d, 0x67, 0x63, 0x6d, 0x21, 0x5a,
    0xe7, 0x0c, 0x93, 0x48, 0xb1, 0x2f, 0xd6, 0x64, 0x8a, 0x1d, 0xf0,
    0x37, 0xc2, 0x59, 0x05, 0xae, 0x7b, 0xe4, 0x12, 0x9f, 0x60};

static hb_keyring *ring; /* the receiver: both keys, never changed */
static hb_keyring *rot;  /* part D: the same keys, rotated and restored */

/* ------------------------------------------------------------------ */
/* Failing                                                            */
/* ------------------------------------------------------------------ */

static void fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: fuzz_wire invariant broken: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

#define FAIL(...) fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define REQUIRE(cond, ...)                                                    \
    do {                                                                      \
        if (!(cond))                                                          \
            FAIL(__VA_ARGS__);                                                \
    } while (0)

/* ------------------------------------------------------------------ */
/* Keyrings                                                           */
/* ------------------------------------------------------------------ */

static const uint8_t *key_of(uint8_t id)
{
    return id == FUZZ_KEY_HMAC ? key_hmac : key_gcm;
}

static int alg_of(uint8_t id)
{
    return id == FUZZ_KEY_HMAC ? HB_AUTH_HMAC_SHA256 : HB_AUTH_AES256_GCM;
}

static hb_keyring *new_ring(void)
{
    hb_keyring *kr = NULL;
    REQUIRE(hb_keyring_new(&kr) == 0 && kr != NULL, "hb_keyring_new failed");
    REQUIRE(hb_keyring_add(kr, FUZZ_KEY_HMAC, HB_AUTH_HMAC_SHA256, key_hmac,
                           HB_KEY_LEN) == 0, "adding the HMAC key failed");
    REQUIRE(hb_keyring_add(kr, FUZZ_KEY_GCM, HB_AUTH_AES256_GCM, key_gcm,
                           HB_KEY_LEN) == 0, "adding the GCM key failed");
    return kr;
}

hb_keyring *fuzz_wire_keyring(void)
{
    if (ring == NULL) {
        ring = new_ring();
        rot = new_ring();
    }
    return ring;
}

void fuzz_wire_cleanup(void)
{
    hb_keyring_free(ring);
    hb_keyring_free(rot);
    ring = rot = NULL;
}

/* ------------------------------------------------------------------ */
/* Reading the input                                                  */
/* ------------------------------------------------------------------ */

struct reader {
    const uint8_t *p;
    size_t n, off;
};

static uint8_t rd_u8(struct reader *r)
{
    return r->off < r->n ? r->p[r->off++] : 0;
}

static uint16_t rd_u16(struct reader *r)
{
    uint16_t hi = rd_u8(r);
    return (uint16_t)((hi << 8) | rd_u8(r));
}

static uint32_t rd_u32(struct reader *r)
{
    uint32_t hi = rd_u16(r);
    return (hi << 16) | rd_u16(r);
}

static uint64_t rd_u64(struct reader *r)
{
    uint64_t hi = rd_u32(r);
    return (hi << 32) | rd_u32(r);
}

static void rd_bytes(struct reader *r, uint8_t *out, size_t n)
{
    size_t have = r->n - r->off < n ? r->n - r->off : n;
    if (have > 0)
        memcpy(out, r->p + r->off, have);
    memset(out + have, 0, n - have);
    r->off += have;
}

/* ------------------------------------------------------------------ */
/* Independent oracles                                                */
/* ------------------------------------------------------------------ */

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static size_t type_limit(unsigned type)
{
    if (type == HB_MSG_HEARTBEAT)
        return HB_HEARTBEAT_PAYLOAD_MAX;
    if (type == HB_MSG_STATE || type == HB_MSG_LEAVE)
        return HB_PAYLOAD_MAX;
    return 0;
}

static int type_valid(unsigned type)
{
    return type >= HB_MSG_HEARTBEAT && type <= HB_MSG_LEAVE;
}

/* docs/protocol.md's header rules, written again from the table in wire.c's
 * comment: 0 and *h filled, or -1. */
static int oracle_parse(const uint8_t *p, size_t len, hb_header *h)
{
    if (len < HB_WIRE_HEADER_LEN + HB_WIRE_TAG_LEN)
        return -1;
    memset(h, 0, sizeof *h);
    h->version = p[4];
    h->type = p[5];
    h->alg = p[6];
    h->key_id = p[7];
    h->cluster_id = (uint32_t)be(p + 8, 4);
    h->node_id = (uint32_t)be(p + 12, 4);
    h->generation = be(p + 16, 8);
    h->seq = be(p + 24, 8);
    h->interval_us = (uint32_t)be(p + 32, 4);
    h->payload_len = (uint16_t)be(p + 36, 2);
    if (memcmp(p, "HRTB", 4) != 0 || be(p + 38, 2) != 0 ||
        h->version != HB_WIRE_VERSION || !type_valid(h->type) ||
        (h->alg != HB_AUTH_HMAC_SHA256 && h->alg != HB_AUTH_AES256_GCM) ||
        h->node_id == 0 || h->seq == 0 || h->payload_len > type_limit(h->type) ||
        len != (size_t)HB_WIRE_HEADER_LEN + h->payload_len + HB_WIRE_TAG_LEN)
        return -1;
    return 0;
}

static int hdr_equal(const hb_header *a, const hb_header *b)
{
    return a->version == b->version && a->type == b->type &&
           a->alg == b->alg && a->key_id == b->key_id &&
           a->cluster_id == b->cluster_id && a->node_id == b->node_id &&
           a->generation == b->generation && a->seq == b->seq &&
           a->interval_us == b->interval_us &&
           a->payload_len == b->payload_len;
}

/* What hb_wire_decode may answer (it never says UNKNOWN_NODE or REPLAY:
 * those are the engine's). */
static int decode_rc_known(int rc)
{
    return rc == 0 || rc == -HB_REJ_MALFORMED || rc == -HB_REJ_WRONG_CLUSTER ||
           rc == -HB_REJ_UNKNOWN_KEY || rc == -HB_REJ_BAD_TAG;
}

static void canary_fill(uint8_t *p, size_t n)
{
    memset(p, CANARY, n);
}

static int canary_intact(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != CANARY)
            return 0;
    }
    return 1;
}

/* An accepted packet is exactly what sealing its header and payload gives:
 * HMAC and GCM (nonce from seq, subkey from the header) are deterministic. */
static void require_reseals(const hb_header *h, const uint8_t *payload,
                            const uint8_t *pkt, size_t len)
{
    static uint8_t again[PACKET_BUF];
    hb_header h2 = *h;
    REQUIRE(hb_keyring_set_send(ring, h->key_id) == 0,
            "accepted key id %u is not in the keyring", h->key_id);
    int n = hb_wire_seal(ring, &h2, payload, h->payload_len, again,
                         sizeof again);
    REQUIRE(n >= 0 && (size_t)n == len,
            "re-sealing an accepted packet gave %d, not its length %zu", n, len);
    REQUIRE(memcmp(again, pkt, len) == 0,
            "an accepted packet does not re-seal to the same bytes");
    REQUIRE(hdr_equal(&h2, h), "re-sealing changed the decoded header");
}

/* ------------------------------------------------------------------ */
/* A. The input as a datagram                                         */
/* ------------------------------------------------------------------ */

static void fuzz_raw(const uint8_t *data, size_t size)
{
    static uint8_t payload[PAYLOAD_BUF];
    hb_header hp, ho, hd;

    memset(&hp, 0, sizeof hp);
    int prc = hb_wire_parse(data, size, &hp);
    int orc = oracle_parse(data, size, &ho);
    REQUIRE(prc == 0 || prc == -HB_REJ_MALFORMED, "hb_wire_parse returned %d",
            prc);
    REQUIRE((prc == 0) == (orc == 0),
            "hb_wire_parse says %d where the header rules say %s", prc,
            orc == 0 ? "well-formed" : "malformed");
    if (prc == 0) {
        REQUIRE(hdr_equal(&hp, &ho), "hb_wire_parse misread a header field");
        fuzz_wire_stats.raw_parsed++;
    }

    /* Decode with the packet's own cluster id when it has one, so that the
     * authentication is reached; then with another one. */
    uint32_t cluster = prc == 0 ? hp.cluster_id : FUZZ_CLUSTER;
    canary_fill(payload, sizeof payload);
    memset(&hd, 0, sizeof hd);
    int drc = hb_wire_decode(ring, cluster, data, size, &hd, payload,
                             sizeof payload);
    REQUIRE(decode_rc_known(drc), "hb_wire_decode returned %d", drc);
    REQUIRE((drc == -HB_REJ_MALFORMED) == (prc != 0),
            "decode says %d but parse says %d", drc, prc);
    if (prc == 0)
        REQUIRE(hdr_equal(&hd, &hp), "decode's claimed header is not parse's");
    if (drc != 0) {
        REQUIRE(canary_intact(payload, sizeof payload),
                "a rejected packet (%d) wrote to payload_out", drc);
        if (prc == 0) {
            int installed = (hp.key_id == FUZZ_KEY_HMAC ||
                             hp.key_id == FUZZ_KEY_GCM) &&
                            alg_of(hp.key_id) == hp.alg;
            REQUIRE((drc == -HB_REJ_UNKNOWN_KEY) == !installed,
                    "key %u alg %u (%s) gave %d", hp.key_id, hp.alg,
                    installed ? "installed" : "not installed", drc);
        }
    } else {
        REQUIRE(canary_intact(payload + hd.payload_len,
                              sizeof payload - hd.payload_len),
                "decode wrote past payload_len");
        require_reseals(&hd, payload, data, size);
        fuzz_wire_stats.raw_accepted++;
    }
    if (prc != 0)
        return;

    int wrc = hb_wire_decode(ring, cluster ^ 0x80000001u, data, size, &hd,
                             payload, sizeof payload);
    REQUIRE(wrc == -HB_REJ_WRONG_CLUSTER,
            "another cluster's packet gave %d, not wrong_cluster", wrc);

    /* An empty payload needs no buffer; a buffer one byte short is
     * malformed use, never a write. */
    if (hp.payload_len == 0) {
        int erc = hb_wire_open(ring, &hp, data, size, NULL, 0);
        REQUIRE(erc == drc, "open with no payload buffer gave %d, not %d",
                erc, drc);
    } else {
        canary_fill(payload, sizeof payload);
        int short_rc = hb_wire_open(ring, &hp, data, size, payload,
                               (size_t)hp.payload_len - 1);
        REQUIRE(short_rc == -HB_REJ_MALFORMED,
                "open with a short payload buffer gave %d", short_rc);
        REQUIRE(canary_intact(payload, sizeof payload),
                "open with a short payload buffer wrote to it");
    }
}

/* ------------------------------------------------------------------ */
/* D. Key rotation against the GCM receive cache                      */
/* ------------------------------------------------------------------ */

static int rot_decode(const hb_header *h, const uint8_t *pkt, size_t len,
                      uint8_t *payload)
{
    hb_header hd;
    canary_fill(payload, PAYLOAD_BUF);
    int rc = hb_wire_decode(rot, h->cluster_id, pkt, len, &hd, payload,
                            PAYLOAD_BUF);
    if (rc != 0)
        REQUIRE(canary_intact(payload, PAYLOAD_BUF),
                "rotation: a rejected packet wrote to payload_out");
    return rc;
}

static void rot_replace(uint8_t id, int alg, const uint8_t *key)
{
    REQUIRE(hb_keyring_remove(rot, id) == 0, "rotation: remove %u failed", id);
    REQUIRE(hb_keyring_add(rot, id, alg, key, HB_KEY_LEN) == 0,
            "rotation: add %u failed", id);
}

static void fuzz_rotation(const hb_header *h, const uint8_t *sent,
                          const uint8_t *pkt, size_t len)
{
    static uint8_t payload[PAYLOAD_BUF];
    uint8_t id = h->key_id, other[HB_KEY_LEN];
    int alg = alg_of(id);
    int other_alg = alg == HB_AUTH_HMAC_SHA256 ? HB_AUTH_AES256_GCM
                                               : HB_AUTH_HMAC_SHA256;
    int rc;

    fuzz_wire_stats.rotations++;
    for (size_t i = 0; i < HB_KEY_LEN; i++)
        other[i] = (uint8_t)(key_of(id)[i] ^ 0x3c);

    /* accepted, which puts a GCM subkey in the receive cache */
    rc = rot_decode(h, pkt, len, payload);
    REQUIRE(rc == 0 && memcmp(payload, sent, h->payload_len) == 0,
            "rotation: a good packet gave %d", rc);
    REQUIRE(hb_keyring_remove(rot, id) == 0, "rotation: remove %u failed", id);
    rc = rot_decode(h, pkt, len, payload);
    REQUIRE(rc == -HB_REJ_UNKNOWN_KEY, "rotation: removed key gave %d", rc);
    REQUIRE(hb_keyring_add(rot, id, alg, other, HB_KEY_LEN) == 0,
            "rotation: add %u failed", id);
    rc = rot_decode(h, pkt, len, payload);
    REQUIRE(rc == -HB_REJ_BAD_TAG,
            "rotation: id %u re-added with other key material gave %d "
            "(a stale cached subkey?)", id, rc);
    rot_replace(id, other_alg, key_of(id));
    rc = rot_decode(h, pkt, len, payload);
    REQUIRE(rc == -HB_REJ_UNKNOWN_KEY,
            "rotation: id %u re-added with the other algorithm gave %d", id, rc);
    rot_replace(id, alg, key_of(id));
    rc = rot_decode(h, pkt, len, payload);
    REQUIRE(rc == 0 && memcmp(payload, sent, h->payload_len) == 0,
            "rotation: the restored key gave %d", rc);

    /* rot never has a send key */
    hb_header h2 = *h;
    uint8_t out[HB_PACKET_MAX];
    rc = hb_wire_seal(rot, &h2, sent, h->payload_len, out, sizeof out);
    REQUIRE(rc == -ENOENT, "seal without a send key gave %d", rc);
}

/* ------------------------------------------------------------------ */
/* B. Seal, check, mutate, decode                                     */
/* ------------------------------------------------------------------ */

/* Flip bits of one header field chosen by sel; mask is made nonzero. */
static void tweak_header(hb_header *h, uint8_t sel, uint64_t mask)
{
    uint8_t m8 = (uint8_t)(mask | 1u);
    switch (sel % 10) {
    case 0: h->version ^= m8; break;
    case 1: h->type ^= m8; break;
    case 2: h->alg ^= m8; break;
    case 3: h->key_id ^= m8; break;
    case 4: h->cluster_id ^= (uint32_t)mask | 1u; break;
    case 5: h->node_id ^= (uint32_t)mask | 1u; break;
    case 6: h->generation ^= mask | 1u; break;
    case 7: h->seq ^= mask | 1u; break;
    case 8: h->interval_us ^= (uint32_t)mask | 1u; break;
    default: h->payload_len ^= (uint16_t)(mask | 1u); break;
    }
}

/* Apply one mutation to pkt[0 .. *len) (capacity cap). */
static void mutate(uint8_t *pkt, size_t *len, size_t cap, uint8_t op,
                   uint16_t pos, uint8_t val)
{
    size_t n = *len;
    switch (op % 6) {
    case 0: /* xor a byte (val 0: no change) */
        if (n > 0)
            pkt[pos % n] ^= val;
        break;
    case 1: /* set a byte (maybe to what it was) */
        if (n > 0)
            pkt[pos % n] = val;
        break;
    case 2: /* flip one bit */
        if (n > 0)
            pkt[pos % n] ^= (uint8_t)(1u << (val & 7));
        break;
    case 3: /* truncate */
        if (n > 0)
            *len = pos % n;
        break;
    case 4: /* append a byte */
        if (n < cap)
            pkt[(*len)++] = val;
        break;
    default: /* flip bits in the header */
        if (n > 0)
            pkt[(pos % HB_WIRE_HEADER_LEN) % n] ^= (uint8_t)(val | 1u);
        break;
    }
}

static void fuzz_seal(const uint8_t *data, size_t size)
{
    static uint8_t payload[PAYLOAD_BUF], got[PAYLOAD_BUF];
    static uint8_t out[PACKET_BUF], again[PACKET_BUF], mut[PACKET_BUF];
    struct reader r = {data, size, 0};
    hb_header h, hd;

    uint8_t ctl = rd_u8(&r);
    uint8_t key_id = (ctl & 1) ? FUZZ_KEY_GCM : FUZZ_KEY_HMAC;
    unsigned tsel = (ctl >> 1) & 3;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)(tsel < 3 ? tsel + 1 : rd_u8(&r));
    size_t slack = (ctl & 0x80) ? 1 + rd_u8(&r) % 8 : 0;
    h.cluster_id = (ctl & 0x08) ? rd_u32(&r) : FUZZ_CLUSTER;
    h.node_id = rd_u32(&r);
    h.generation = rd_u64(&r);
    h.seq = rd_u64(&r);
    h.interval_us = rd_u32(&r);
    size_t plen = rd_u16(&r);
    plen = (ctl & 0x40) ? plen % PAYLOAD_BUF : plen % (type_limit(h.type) + 1);
    rd_bytes(&r, payload, plen);

    /* what seal must answer */
    size_t total = HB_WIRE_HEADER_LEN + plen + HB_WIRE_TAG_LEN;
    size_t cap = sizeof out;
    if (slack > 0)
        cap = total > slack ? total - slack : 0;
    int want;
    if (!type_valid(h.type) || h.node_id == 0 || h.seq == 0)
        want = -EINVAL;
    else if (plen > type_limit(h.type) || cap < total)
        want = -EMSGSIZE;
    else
        want = (int)total;

    REQUIRE(hb_keyring_set_send(ring, key_id) == 0, "set_send %u", key_id);
    const uint8_t *src = payload;
    if ((ctl & 0x10) && plen == 0) { /* no payload: no pointer needed */
        src = NULL;
    } else if (ctl & 0x10) { /* in place */
        memcpy(out + HB_WIRE_HEADER_LEN, payload, plen);
        src = out + HB_WIRE_HEADER_LEN;
    }
    hb_header hs = h;
    int n = hb_wire_seal(ring, &hs, src, plen, out, cap);
    REQUIRE(n == want, "hb_wire_seal gave %d, expected %d (type %u node %u "
            "seq %llu len %zu cap %zu)", n, want, h.type, h.node_id,
            (unsigned long long)h.seq, plen, cap);
    if (n < 0)
        return;
    fuzz_wire_stats.sealed++;
    size_t len = (size_t)n;
    h.version = HB_WIRE_VERSION;
    h.alg = (uint8_t)alg_of(key_id);
    h.key_id = key_id;
    h.payload_len = (uint16_t)plen;
    REQUIRE(hdr_equal(&hs, &h), "seal filled the header wrongly");

    /* the sealed packet: well-formed, deterministic, and accepted as is */
    hb_header hp;
    REQUIRE(hb_wire_parse(out, len, &hp) == 0 && hdr_equal(&hp, &h),
            "a sealed packet does not parse to its header");
    if (key_id == FUZZ_KEY_HMAC)
        REQUIRE(memcmp(out + HB_WIRE_HEADER_LEN, payload, plen) == 0,
                "HMAC payload is not in clear");
    hb_header h2 = h;
    REQUIRE(hb_wire_seal(ring, &h2, payload, plen, again, sizeof again) == n &&
            memcmp(again, out, len) == 0, "sealing twice differs");
    canary_fill(got, sizeof got);
    int rc = hb_wire_decode(ring, h.cluster_id, out, len, &hd, got, sizeof got);
    REQUIRE(rc == 0, "a freshly sealed packet was rejected: %d", rc);
    REQUIRE(hdr_equal(&hd, &h), "decoded header differs from the sealed one");
    REQUIRE(memcmp(got, payload, plen) == 0 &&
            canary_intact(got + plen, sizeof got - plen),
            "decoded payload differs from the sealed one");

    /* open with a header that is not the packet's own: malformed use */
    uint8_t sel = rd_u8(&r);
    uint64_t mask = rd_u64(&r);
    hb_header ht = h;
    tweak_header(&ht, sel, mask);
    canary_fill(got, sizeof got);
    rc = hb_wire_open(ring, &ht, out, len, got, sizeof got);
    REQUIRE(rc == -HB_REJ_MALFORMED,
            "open with header field %u changed gave %d", sel % 10, rc);
    REQUIRE(canary_intact(got, sizeof got), "a refused open wrote");

    if (ctl & 0x20)
        fuzz_rotation(&h, payload, out, len);

    /* mutate a copy with the rest of the input */
    memcpy(mut, out, len);
    size_t mlen = len;
    unsigned count = rd_u8(&r) % (MAX_MUTATIONS + 1);
    for (unsigned i = 0; i < count; i++) {
        uint8_t op = rd_u8(&r);
        uint16_t pos = rd_u16(&r);
        mutate(mut, &mlen, sizeof mut, op, pos, rd_u8(&r));
    }
    int changed = mlen != len || memcmp(mut, out, len) != 0;

    hb_header hm;
    int prc = hb_wire_parse(mut, mlen, &hm);
    canary_fill(got, sizeof got);
    rc = hb_wire_decode(ring, h.cluster_id, mut, mlen, &hd, got, sizeof got);
    REQUIRE(decode_rc_known(rc), "decode of a mutated packet returned %d", rc);
    REQUIRE((rc == -HB_REJ_MALFORMED) == (prc != 0),
            "decode says %d but parse says %d", rc, prc);
    if (!changed) {
        REQUIRE(rc == 0 && hdr_equal(&hd, &h) &&
                memcmp(got, payload, plen) == 0,
                "an unchanged packet was not accepted as sealed: %d", rc);
        fuzz_wire_stats.mutated_same++;
    } else {
        /* Any accepted change would be a forgery (or a field the tag does
         * not cover). */
        REQUIRE(rc != 0, "a changed packet was accepted");
        REQUIRE(canary_intact(got, sizeof got),
                "a rejected packet (%d) wrote to payload_out", rc);
        fuzz_wire_stats.mutated_rejected[-rc]++;
    }
    if (rc == 0)
        require_reseals(&hd, got, mut, mlen);
}

/* ------------------------------------------------------------------ */
/* C. The replay window against a model                               */
/* ------------------------------------------------------------------ */

/* The model: the accepted sequences of the current generation, in a list.
 * A (generation, seq) is fresh when seq != 0 and: nothing was accepted yet,
 * or the generation is newer, or it is the current generation, less than 64
 * behind the highest accepted and not in the list. */
struct model {
    int valid;
    uint64_t gen, max;
    size_t n;
    uint64_t seqs[MAX_REPLAY_OPS];
};

static int model_fresh(const struct model *m, uint64_t gen, uint64_t seq)
{
    if (seq == 0)
        return 0;
    if (!m->valid || gen > m->gen)
        return 1;
    if (gen < m->gen)
        return 0;
    if (seq > m->max)
        return 1;
    if (m->max - seq >= HB_REPLAY_WINDOW)
        return 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->seqs[i] == seq)
            return 0;
    }
    return 1;
}

/* Record (gen, seq) when fresh; 1 when a newer generation replaced one. */
static int model_accept(struct model *m, uint64_t gen, uint64_t seq)
{
    if (!model_fresh(m, gen, seq))
        return 0;
    if (!m->valid || gen > m->gen) {
        int restarted = m->valid;
        m->valid = 1;
        m->gen = gen;
        m->max = seq;
        m->n = 0;
        m->seqs[m->n++] = seq;
        return restarted;
    }
    if (seq > m->max)
        m->max = seq;
    m->seqs[m->n++] = seq; /* at most one per op: never overflows */
    return 0;
}

static void require_window_matches(const hb_replay *w, const struct model *m)
{
    REQUIRE(!!w->valid == m->valid, "window valid %d, model %d", w->valid,
            m->valid);
    if (!m->valid)
        return;
    REQUIRE(w->generation == m->gen && w->max_seq == m->max,
            "window at (%llu, %llu), model at (%llu, %llu)",
            (unsigned long long)w->generation, (unsigned long long)w->max_seq,
            (unsigned long long)m->gen, (unsigned long long)m->max);
    /* bit i <=> max - i was accepted */
    uint64_t want = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->max - m->seqs[i] < HB_REPLAY_WINDOW)
            want |= (uint64_t)1 << (m->max - m->seqs[i]);
    }
    REQUIRE(w->seen == want, "window bitmap %#llx, the model says %#llx",
            (unsigned long long)w->seen, (unsigned long long)want);
}

static int window_same(const hb_replay *a, const hb_replay *b)
{
    return a->generation == b->generation && a->max_seq == b->max_seq &&
           a->seen == b->seen && a->valid == b->valid;
}

static void fuzz_replay(const uint8_t *data, size_t size)
{
    static struct model m;
    hb_replay w, before;
    struct reader r = {data, size, 0};

    memset(&w, 0, sizeof w);
    memset(&m, 0, sizeof m);
    for (int ops = 0; ops < MAX_REPLAY_OPS && r.off < r.n; ops++) {
        uint8_t op = rd_u8(&r);
        uint64_t gen = m.gen, seq;
        switch (op & 7) {
        case 4: gen = m.gen + 1; break;
        case 5: gen = m.gen - 1; break; /* wraps from 0: a huge generation */
        case 6: gen = m.gen + rd_u8(&r); break;
        case 7: gen = rd_u64(&r); break;
        default: break; /* 0..3: the current generation */
        }
        switch ((op >> 3) & 7) {
        case 0: seq = m.max + 1; break;
        case 1: seq = m.max + rd_u8(&r); break; /* 0: a duplicate of max */
        case 2: seq = m.max - rd_u8(&r) % 72; break; /* around the window */
        case 3: seq = m.max - (HB_REPLAY_WINDOW - 2) - rd_u8(&r) % 4; break;
        case 4: seq = rd_u64(&r); break;
        case 5: seq = 0; break;
        case 6: seq = UINT64_MAX - rd_u8(&r); break;
        default: seq = m.max + HB_REPLAY_WINDOW - 1 + rd_u8(&r) % 4; break;
        }

        before = w;
        int crc = hb_replay_check(&w, gen, seq);
        REQUIRE(window_same(&w, &before), "hb_replay_check changed the window");
        REQUIRE(crc == 0 || crc == -HB_REJ_REPLAY, "check returned %d", crc);
        int fresh = model_fresh(&m, gen, seq);
        REQUIRE((crc == 0) == fresh,
                "check(%llu, %llu) = %d, the model says %s",
                (unsigned long long)gen, (unsigned long long)seq, crc,
                fresh ? "fresh" : "replay");
        fuzz_wire_stats.replay_ops++;
        if (op & 0x80)
            continue; /* check only */
        if (crc != 0 && !(op & 0x40))
            continue; /* the engine updates only what check accepted */
        fuzz_wire_stats.replay_accepted += crc == 0;

        int urc = hb_replay_update(&w, gen, seq);
        int mrc = model_accept(&m, gen, seq);
        REQUIRE(urc == mrc, "update(%llu, %llu) = %d, the model says %d",
                (unsigned long long)gen, (unsigned long long)seq, urc, mrc);
        if (crc != 0)
            REQUIRE(window_same(&w, &before),
                    "update of a rejected (%llu, %llu) moved the window",
                    (unsigned long long)gen, (unsigned long long)seq);
        else
            REQUIRE(hb_replay_check(&w, gen, seq) == -HB_REJ_REPLAY,
                    "(%llu, %llu) accepted twice", (unsigned long long)gen,
                    (unsigned long long)seq);
        REQUIRE(w.generation >= before.generation || !before.valid,
                "the generation went back");
        REQUIRE(w.generation != before.generation ||
                    w.max_seq >= before.max_seq || !before.valid,
                "max_seq went back within a generation");
        require_window_matches(&w, &m);
    }
}

/* ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_wire_keyring();
    fuzz_wire_stats.inputs++;
    fuzz_raw(data, size);
    fuzz_seal(data, size);
    fuzz_replay(data, size);
    return 0;
}
