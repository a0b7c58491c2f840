/*
 * test_wire.c - the wire codec and the keyring (format v1, docs/protocol.md).
 *
 * The HMAC tag and the GCM subkey/nonce/AAD are re-computed here with
 * libcrypto calls of their own (one-shot HMAC(), EVP_PKEY HKDF, a fresh
 * EVP_CIPHER_CTX), so a mistake in crypto.c cannot hide behind itself.
 */
#include "heart/heart.h"

#include <errno.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "hbtest.h"

static const uint8_t key_a[HB_KEY_LEN] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t key_b[HB_KEY_LEN] = {
    0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a,
    0x4b, 0x3c, 0x2d, 0x1e, 0x0f, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23,
    0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x55, 0xaa, 0x55, 0xaa};

#define CLUSTER 0x00c10005u

static const int algs[2] = {HB_AUTH_HMAC_SHA256, HB_AUTH_AES256_GCM};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* A keyring holding one key, which is also the send key. */
static hb_keyring *ring1(uint8_t id, int alg, const uint8_t *key)
{
    hb_keyring *kr = NULL;
    CHECK_EQ(hb_keyring_new(&kr), 0);
    if (kr == NULL)
        abort();
    CHECK_EQ(hb_keyring_add(kr, id, alg, key, HB_KEY_LEN), 0);
    CHECK_EQ(hb_keyring_set_send(kr, id), 0);
    return kr;
}

static hb_header mkhdr(int type, uint32_t node, uint64_t gen, uint64_t seq)
{
    hb_header h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.cluster_id = CLUSTER;
    h.node_id = node;
    h.generation = gen;
    h.seq = seq;
    h.interval_us = 100000;
    return h;
}

static int is_rejection(int rc)
{
    return rc == -HB_REJ_MALFORMED || rc == -HB_REJ_WRONG_CLUSTER ||
           rc == -HB_REJ_UNKNOWN_KEY || rc == -HB_REJ_BAD_TAG;
}

/* ------------------------------------------------------------------ */

static void roundtrip(int alg)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 100, HB_HEARTBEAT_PAYLOAD_MAX};
    hb_keyring *tx = ring1(3, alg, key_a);
    hb_keyring *rx = ring1(3, alg, key_a);
    uint8_t pkt[HB_PACKET_MAX], in[HB_PAYLOAD_MAX], out[HB_PAYLOAD_MAX];

    for (int t = HB_MSG_HEARTBEAT; t <= HB_MSG_LEAVE; t++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0] + 1; i++) {
            size_t n = i < sizeof lens / sizeof lens[0] ? lens[i] : HB_PAYLOAD_MAX;
            if (t == HB_MSG_HEARTBEAT && n > HB_HEARTBEAT_PAYLOAD_MAX)
                continue;
            fill(in, n);
            hb_header h = mkhdr(t, 17, 0x0102030405060708ull, 1000 + i);
            int len = hb_wire_seal(tx, &h, in, n, pkt, sizeof pkt);
            CHECK_EQ(len, (int)(HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN));
            CHECK_EQ(h.alg, alg);
            CHECK_EQ(h.key_id, 3);
            CHECK_EQ(h.version, HB_WIRE_VERSION);
            CHECK_EQ(h.payload_len, n);

            hb_header g;
            memset(out, 0xee, sizeof out);
            CHECK_EQ(hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out,
                                    sizeof out), 0);
            CHECK(memcmp(&g, &h, sizeof g) == 0);
            CHECK(memcmp(out, in, n) == 0);
            CHECK(n == sizeof out || out[n] == 0xee);

            /* parse + open separately, with an exact-size payload buffer */
            hb_header p;
            CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &p), 0);
            CHECK_EQ(hb_wire_open(rx, &p, pkt, (size_t)len, out, n), 0);
            CHECK(memcmp(out, in, n) == 0);
        }
    }
    hb_keyring_free(tx);
    hb_keyring_free(rx);
}

static void test_roundtrip_hmac(void)
{
    roundtrip(HB_AUTH_HMAC_SHA256);
}

static void test_roundtrip_gcm(void)
{
    roundtrip(HB_AUTH_AES256_GCM);
}

static void test_payload_in_place(void)
{
    for (int a = 0; a < 2; a++) {
        hb_keyring *kr = ring1(1, algs[a], key_a);
        uint8_t pkt[HB_PACKET_MAX], msg[64], out[64];
        fill(msg, sizeof msg);
        memcpy(pkt + HB_WIRE_HEADER_LEN, msg, sizeof msg);
        hb_header h = mkhdr(HB_MSG_STATE, 2, 1, 1);
        int len = hb_wire_seal(kr, &h, pkt + HB_WIRE_HEADER_LEN, sizeof msg,
                               pkt, sizeof pkt);
        CHECK_EQ(len, HB_WIRE_HEADER_LEN + 64 + HB_WIRE_TAG_LEN);
        hb_header g;
        CHECK_EQ(hb_wire_decode(kr, CLUSTER, pkt, (size_t)len, &g, out, sizeof out), 0);
        CHECK(memcmp(out, msg, sizeof msg) == 0);
        hb_keyring_free(kr);
    }
}

static void test_gcm_payload_not_in_clear(void)
{
    hb_keyring *kr = ring1(9, HB_AUTH_AES256_GCM, key_a);
    uint8_t msg[200], pkt[HB_PACKET_MAX];
    /* a recognisable payload: any 8 consecutive bytes of it in the packet
     * would be a leak */
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)('A' + i % 26);
    hb_header h = mkhdr(HB_MSG_STATE, 5, 1, 1);
    int len = hb_wire_seal(kr, &h, msg, sizeof msg, pkt, sizeof pkt);
    CHECK(len > 0);
    int leaks = 0;
    for (size_t i = 0; i + 8 <= sizeof msg; i++) {
        if (memmem(pkt, (size_t)len, msg + i, 8) != NULL)
            leaks++;
    }
    CHECK_EQ(leaks, 0);
    /* and under HMAC the payload is exactly where the layout says */
    hb_keyring *hm = ring1(9, HB_AUTH_HMAC_SHA256, key_a);
    len = hb_wire_seal(hm, &h, msg, sizeof msg, pkt, sizeof pkt);
    CHECK(len > 0);
    CHECK(memcmp(pkt + HB_WIRE_HEADER_LEN, msg, sizeof msg) == 0);
    hb_keyring_free(kr);
    hb_keyring_free(hm);
}

static void test_gcm_nonce_separation(void)
{
    /* Same key, same sequence, same payload: different senders or
     * generations must produce unrelated ciphertexts (different subkeys);
     * the same (sender, generation, seq) produces identical bytes. */
    hb_keyring *kr = ring1(1, HB_AUTH_AES256_GCM, key_a);
    uint8_t msg[32], p1[HB_PACKET_MAX], p2[HB_PACKET_MAX], p3[HB_PACKET_MAX],
        p4[HB_PACKET_MAX];
    memset(msg, 0, sizeof msg);
    hb_header h1 = mkhdr(HB_MSG_STATE, 1, 1, 7);
    hb_header h2 = mkhdr(HB_MSG_STATE, 2, 1, 7);
    hb_header h3 = mkhdr(HB_MSG_STATE, 1, 2, 7);
    hb_header h4 = mkhdr(HB_MSG_STATE, 1, 1, 7);
    int n1 = hb_wire_seal(kr, &h1, msg, sizeof msg, p1, sizeof p1);
    int n2 = hb_wire_seal(kr, &h2, msg, sizeof msg, p2, sizeof p2);
    int n3 = hb_wire_seal(kr, &h3, msg, sizeof msg, p3, sizeof p3);
    int n4 = hb_wire_seal(kr, &h4, msg, sizeof msg, p4, sizeof p4);
    CHECK(n1 > 0 && n1 == n2 && n2 == n3 && n3 == n4);
    const size_t body = sizeof msg + HB_WIRE_TAG_LEN;
    CHECK(memcmp(p1 + HB_WIRE_HEADER_LEN, p2 + HB_WIRE_HEADER_LEN, body) != 0);
    CHECK(memcmp(p1 + HB_WIRE_HEADER_LEN, p3 + HB_WIRE_HEADER_LEN, body) != 0);
    CHECK(memcmp(p2 + HB_WIRE_HEADER_LEN, p3 + HB_WIRE_HEADER_LEN, body) != 0);
    CHECK(memcmp(p1, p4, (size_t)n1) == 0);
    hb_keyring_free(kr);
}

/* Flip every bit of a sealed packet: each must be rejected, with a known
 * cause, and the payload buffer must stay untouched. */
static void bitflips(int alg, int type, size_t n)
{
    hb_keyring *kr = ring1(4, alg, key_a);
    uint8_t pkt[HB_PACKET_MAX], msg[HB_PAYLOAD_MAX], out[HB_PAYLOAD_MAX];
    fill(msg, n);
    hb_header h = mkhdr(type, 33, 77, 12345);
    int len = hb_wire_seal(kr, &h, msg, n, pkt, sizeof pkt);
    CHECK(len > 0);
    if (len <= 0)
        return;
    int accepted = 0, unknown_cause = 0, touched = 0;
    for (int bit = 0; bit < len * 8; bit++) {
        pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        hb_header g;
        memset(out, 0x5a, sizeof out);
        int rc = hb_wire_decode(kr, CLUSTER, pkt, (size_t)len, &g, out, sizeof out);
        if (rc == 0)
            accepted++;
        else if (!is_rejection(rc))
            unknown_cause++;
        for (size_t i = 0; i < sizeof out; i++) {
            if (out[i] != 0x5a) {
                touched++;
                break;
            }
        }
        pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    CHECK_EQ(accepted, 0);
    CHECK_EQ(unknown_cause, 0);
    CHECK_EQ(touched, 0);
    /* and the unmodified packet still opens */
    hb_header g;
    CHECK_EQ(hb_wire_decode(kr, CLUSTER, pkt, (size_t)len, &g, out, sizeof out), 0);
    hb_keyring_free(kr);
}

static void test_bitflips_hmac(void)
{
    bitflips(HB_AUTH_HMAC_SHA256, HB_MSG_HEARTBEAT, 16);
    bitflips(HB_AUTH_HMAC_SHA256, HB_MSG_HEARTBEAT, 0);
    bitflips(HB_AUTH_HMAC_SHA256, HB_MSG_STATE, 300);
}

static void test_bitflips_gcm(void)
{
    bitflips(HB_AUTH_AES256_GCM, HB_MSG_HEARTBEAT, 16);
    bitflips(HB_AUTH_AES256_GCM, HB_MSG_HEARTBEAT, 0);
    bitflips(HB_AUTH_AES256_GCM, HB_MSG_STATE, 300);
}

static void test_truncation(void)
{
    for (int a = 0; a < 2; a++) {
        hb_keyring *kr = ring1(4, algs[a], key_a);
        uint8_t pkt[HB_PACKET_MAX + 1], msg[40], out[HB_PAYLOAD_MAX];
        fill(msg, sizeof msg);
        hb_header h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
        int len = hb_wire_seal(kr, &h, msg, sizeof msg, pkt, sizeof pkt);
        CHECK(len > 0);
        int wrong = 0;
        for (int cut = 0; cut < len; cut++) {
            /* copy into an exact-size heap buffer so ASan sees any read
             * past the end */
            uint8_t *t = malloc(cut > 0 ? (size_t)cut : 1);
            if (t == NULL)
                abort();
            memcpy(t, pkt, (size_t)cut);
            hb_header g;
            if (hb_wire_parse(t, (size_t)cut, &g) != -HB_REJ_MALFORMED)
                wrong++;
            if (hb_wire_decode(kr, CLUSTER, t, (size_t)cut, &g, out, sizeof out) !=
                -HB_REJ_MALFORMED)
                wrong++;
            /* open with a header parsed from the full packet */
            hb_header full;
            CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &full), 0);
            if (hb_wire_open(kr, &full, t, (size_t)cut, out, sizeof out) !=
                -HB_REJ_MALFORMED)
                wrong++;
            free(t);
        }
        CHECK_EQ(wrong, 0);
        /* one byte too many is malformed too */
        pkt[len] = 0;
        hb_header g;
        CHECK_EQ(hb_wire_decode(kr, CLUSTER, pkt, (size_t)len + 1, &g, out,
                                sizeof out), -HB_REJ_MALFORMED);
        CHECK_EQ(hb_wire_parse(NULL, 0, &g), -HB_REJ_MALFORMED);
        hb_keyring_free(kr);
    }
}

static void test_wrong_cluster(void)
{
    for (int a = 0; a < 2; a++) {
        hb_keyring *kr = ring1(4, algs[a], key_a);
        uint8_t pkt[HB_PACKET_MAX], out[16];
        hb_header h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
        int len = hb_wire_seal(kr, &h, (const uint8_t *)"digest", 6, pkt, sizeof pkt);
        hb_header g;
        memset(&g, 0, sizeof g);
        CHECK_EQ(hb_wire_decode(kr, CLUSTER + 1, pkt, (size_t)len, &g, out,
                                sizeof out), -HB_REJ_WRONG_CLUSTER);
        /* the claimed header is available for the rejection report */
        CHECK_EQ(g.node_id, 8);
        CHECK_EQ(g.cluster_id, CLUSTER);
        CHECK_EQ(hb_wire_decode(kr, CLUSTER, pkt, (size_t)len, &g, out, sizeof out), 0);
        hb_keyring_free(kr);
    }
}

static void test_unknown_key(void)
{
    for (int a = 0; a < 2; a++) {
        hb_keyring *tx = ring1(4, algs[a], key_a);
        uint8_t pkt[HB_PACKET_MAX], out[16];
        hb_header h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
        int len = hb_wire_seal(tx, &h, (const uint8_t *)"digest", 6, pkt, sizeof pkt);
        hb_header g;

        /* receiver has other ids only */
        hb_keyring *rx = ring1(5, algs[a], key_a);
        CHECK_EQ(hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out),
                 -HB_REJ_UNKNOWN_KEY);
        hb_keyring_free(rx);

        /* same id, same bytes, other algorithm */
        rx = ring1(4, algs[1 - a], key_a);
        CHECK_EQ(hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out),
                 -HB_REJ_UNKNOWN_KEY);
        hb_keyring_free(rx);

        /* same id, other bytes: a bad tag */
        rx = ring1(4, algs[a], key_b);
        CHECK_EQ(hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out),
                 -HB_REJ_BAD_TAG);
        hb_keyring_free(rx);

        /* an empty keyring */
        CHECK_EQ(hb_keyring_new(&rx), 0);
        CHECK_EQ(hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out),
                 -HB_REJ_UNKNOWN_KEY);
        hb_keyring_free(rx);
        hb_keyring_free(tx);
    }
}

static int send_one(hb_keyring *kr, uint64_t seq, uint8_t *pkt)
{
    hb_header h = mkhdr(HB_MSG_HEARTBEAT, 21, 3, seq);
    return hb_wire_seal(kr, &h, (const uint8_t *)"load=0.1", 8, pkt, HB_PACKET_MAX);
}

static int recv_one(hb_keyring *kr, const uint8_t *pkt, int len)
{
    hb_header g;
    uint8_t out[HB_HEARTBEAT_PAYLOAD_MAX];
    return hb_wire_decode(kr, CLUSTER, pkt, (size_t)len, &g, out, sizeof out);
}

static void test_key_rotation(void)
{
    /* node A sends, node B receives; old key 1 (HMAC), new key 2 (GCM) */
    hb_keyring *a = ring1(1, HB_AUTH_HMAC_SHA256, key_a);
    hb_keyring *b = ring1(1, HB_AUTH_HMAC_SHA256, key_a);
    uint8_t old_pkt[HB_PACKET_MAX], new_pkt[HB_PACKET_MAX], pkt[HB_PACKET_MAX];
    int old_len = send_one(a, 1, old_pkt);
    CHECK_EQ(recv_one(b, old_pkt, old_len), 0);

    /* step 1: add the new key everywhere; sending still uses the old one */
    CHECK_EQ(hb_keyring_add(a, 2, HB_AUTH_AES256_GCM, key_b, HB_KEY_LEN), 0);
    CHECK_EQ(hb_keyring_add(b, 2, HB_AUTH_AES256_GCM, key_b, HB_KEY_LEN), 0);
    CHECK_EQ(hb_keyring_count(a), 2);
    CHECK_EQ(hb_keyring_send_id(a), 1);
    int len = send_one(a, 2, pkt);
    CHECK_EQ(pkt[7], 1);
    CHECK_EQ(recv_one(b, pkt, len), 0);

    /* step 2: switch the send key; both old and new packets are accepted */
    CHECK_EQ(hb_keyring_set_send(a, 2), 0);
    CHECK_EQ(hb_keyring_send_id(a), 2);
    int new_len = send_one(a, 3, new_pkt);
    CHECK_EQ(new_pkt[6], HB_AUTH_AES256_GCM);
    CHECK_EQ(new_pkt[7], 2);
    CHECK_EQ(recv_one(b, new_pkt, new_len), 0);
    CHECK_EQ(recv_one(b, old_pkt, old_len), 0);

    /* step 3: remove the old key; its packets are rejected, new ones not */
    CHECK_EQ(hb_keyring_remove(b, 1), 0);
    CHECK_EQ(hb_keyring_remove(a, 1), 0);
    CHECK_EQ(hb_keyring_count(b), 1);
    CHECK_EQ(recv_one(b, old_pkt, old_len), -HB_REJ_UNKNOWN_KEY);
    CHECK_EQ(recv_one(b, new_pkt, new_len), 0);
    len = send_one(a, 4, pkt);
    CHECK_EQ(recv_one(b, pkt, len), 0);

    /* removing the send key leaves no send key */
    CHECK_EQ(hb_keyring_remove(a, 2), 0);
    CHECK_EQ(hb_keyring_send_id(a), -ENOENT);
    CHECK_EQ(send_one(a, 5, pkt), -ENOENT);
    hb_keyring_free(a);
    hb_keyring_free(b);
}

static void test_gcm_key_replaced_same_id(void)
{
    /* A GCM key id removed and re-added with other bytes must not be served
     * from the subkey cache. */
    hb_keyring *tx_old = ring1(6, HB_AUTH_AES256_GCM, key_a);
    hb_keyring *tx_new = ring1(6, HB_AUTH_AES256_GCM, key_b);
    hb_keyring *rx = ring1(6, HB_AUTH_AES256_GCM, key_a);
    uint8_t p_old[HB_PACKET_MAX], p_new[HB_PACKET_MAX];
    int n_old = send_one(tx_old, 9, p_old);
    int n_new = send_one(tx_new, 9, p_new);
    CHECK_EQ(recv_one(rx, p_old, n_old), 0); /* cached now */
    CHECK_EQ(recv_one(rx, p_new, n_new), -HB_REJ_BAD_TAG);
    CHECK_EQ(hb_keyring_remove(rx, 6), 0);
    CHECK_EQ(hb_keyring_add(rx, 6, HB_AUTH_AES256_GCM, key_b, HB_KEY_LEN), 0);
    CHECK_EQ(recv_one(rx, p_old, n_old), -HB_REJ_BAD_TAG);
    CHECK_EQ(recv_one(rx, p_new, n_new), 0);
    hb_keyring_free(tx_old);
    hb_keyring_free(tx_new);
    hb_keyring_free(rx);
}

static void test_gcm_many_senders(void)
{
    /* More senders than the receive cache holds, several rounds: misses
     * and evictions must never change a verdict. */
    enum { SENDERS = 300 };
    hb_keyring *tx = ring1(1, HB_AUTH_AES256_GCM, key_a);
    hb_keyring *rx = ring1(1, HB_AUTH_AES256_GCM, key_a);
    uint8_t pkt[HB_PACKET_MAX], msg[24], out[24];
    int bad = 0;
    for (int round = 1; round <= 3; round++) {
        for (uint32_t node = 1; node <= SENDERS; node++) {
            hb_header h = mkhdr(HB_MSG_HEARTBEAT, node, 1000 + node, (uint64_t)round);
            fill(msg, sizeof msg);
            int len = hb_wire_seal(tx, &h, msg, sizeof msg, pkt, sizeof pkt);
            hb_header g;
            if (hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out) != 0 ||
                memcmp(out, msg, sizeof msg) != 0)
                bad++;
            /* a forgery with a made-up generation: header edited, tag kept */
            pkt[16] ^= 0x80;
            if (hb_wire_decode(rx, CLUSTER, pkt, (size_t)len, &g, out, sizeof out) !=
                -HB_REJ_BAD_TAG)
                bad++;
        }
    }
    CHECK_EQ(bad, 0);
    hb_keyring_free(tx);
    hb_keyring_free(rx);
}

static void test_header_layout(void)
{
    hb_keyring *kr = ring1(0xa7, HB_AUTH_HMAC_SHA256, key_a);
    hb_header h;
    memset(&h, 0, sizeof h);
    h.version = 99; /* seal writes the version itself */
    h.type = HB_MSG_STATE;
    h.cluster_id = 0x01020304u;
    h.node_id = 0x0a0b0c0du;
    h.generation = 0x1112131415161718ull;
    h.seq = 0x2122232425262728ull;
    h.interval_us = 0x31323334u;
    uint8_t pkt[HB_PACKET_MAX];
    int len = hb_wire_seal(kr, &h, (const uint8_t *)"abc", 3, pkt, sizeof pkt);
    CHECK_EQ(len, 40 + 3 + 16);
    static const uint8_t want[43] = {
        0x48, 0x52, 0x54, 0x42,                         /* 0 magic "HRTB" */
        0x01,                                           /* 4 version */
        0x02,                                           /* 5 type: state */
        0x01,                                           /* 6 alg: HMAC */
        0xa7,                                           /* 7 key id */
        0x01, 0x02, 0x03, 0x04,                         /* 8 cluster */
        0x0a, 0x0b, 0x0c, 0x0d,                         /* 12 node */
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, /* 16 generation */
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, /* 24 sequence */
        0x31, 0x32, 0x33, 0x34,                         /* 32 interval */
        0x00, 0x03,                                     /* 36 payload len */
        0x00, 0x00,                                     /* 38 reserved */
        'a', 'b', 'c'};                                 /* 40 payload */
    for (size_t i = 0; i < sizeof want; i++) {
        if (pkt[i] != want[i]) {
            fprintf(stderr, "  byte %zu: got 0x%02x want 0x%02x\n", i, pkt[i], want[i]);
            CHECK(pkt[i] == want[i]);
        }
    }
    CHECK_EQ(h.version, 1);
    CHECK_EQ(h.payload_len, 3);

    /* and parse reads the same fields back */
    hb_header g;
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), 0);
    CHECK_EQ(g.cluster_id, 0x01020304u);
    CHECK_EQ(g.node_id, 0x0a0b0c0du);
    CHECK(g.generation == 0x1112131415161718ull);
    CHECK(g.seq == 0x2122232425262728ull);
    CHECK_EQ(g.interval_us, 0x31323334u);
    CHECK_EQ(g.key_id, 0xa7);
    CHECK_EQ(g.alg, HB_AUTH_HMAC_SHA256);
    CHECK_EQ(g.type, HB_MSG_STATE);

    /* HMAC tag = HMAC-SHA256(key, header || payload)[0:16], computed here
     * with OpenSSL's one-shot HMAC() */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    CHECK(HMAC(EVP_sha256(), key_a, HB_KEY_LEN, pkt, 43, md, &md_len) != NULL);
    CHECK_EQ(md_len, 32);
    CHECK(memcmp(pkt + 43, md, HB_WIRE_TAG_LEN) == 0);
    hb_keyring_free(kr);
}

static void test_hmac_independent(void)
{
    hb_keyring *kr = ring1(2, HB_AUTH_HMAC_SHA256, key_b);
    uint8_t pkt[HB_PACKET_MAX], msg[HB_PAYLOAD_MAX];
    int bad = 0;
    for (int i = 0; i < 50; i++) {
        size_t n = (size_t)(rnd() % (HB_PAYLOAD_MAX + 1));
        fill(msg, n);
        hb_header h = mkhdr(HB_MSG_STATE, (uint32_t)(rnd() | 1), rnd(), rnd() | 1);
        int len = hb_wire_seal(kr, &h, msg, n, pkt, sizeof pkt);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        HMAC(EVP_sha256(), key_b, HB_KEY_LEN, pkt, HB_WIRE_HEADER_LEN + n, md, &md_len);
        if (len != (int)(HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN) ||
            memcmp(pkt + HB_WIRE_HEADER_LEN + n, md, HB_WIRE_TAG_LEN) != 0)
            bad++;
    }
    CHECK_EQ(bad, 0);
    hb_keyring_free(kr);
}

/* Decrypt a GCM packet with a subkey derived here through the EVP_PKEY HKDF
 * interface (crypto.c uses EVP_KDF) and a fresh cipher context. */
static int gcm_reference_open(const uint8_t *key, const uint8_t *pkt, size_t len,
                              uint8_t *plain)
{
    uint8_t info[16], subkey[32], nonce[12];
    size_t n = len - HB_WIRE_HEADER_LEN - HB_WIRE_TAG_LEN;
    memcpy(info, pkt + 8, 8);      /* cluster id, node id (big-endian) */
    memcpy(info + 8, pkt + 16, 8); /* generation */
    memset(nonce, 0, 4);
    memcpy(nonce + 4, pkt + 24, 8); /* sequence */

    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t sk_len = sizeof subkey;
    int ok = pc != NULL && EVP_PKEY_derive_init(pc) == 1 &&
             EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_salt(pc, (const unsigned char *)"heart-v1-gcm", 12) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_key(pc, key, HB_KEY_LEN) == 1 &&
             EVP_PKEY_CTX_add1_hkdf_info(pc, info, sizeof info) == 1 &&
             EVP_PKEY_derive(pc, subkey, &sk_len) == 1 && sk_len == 32;
    EVP_PKEY_CTX_free(pc);
    if (!ok)
        return 0;

    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, fin = 0;
    ok = c != NULL &&
         EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, subkey, nonce) == 1 &&
         EVP_DecryptUpdate(c, NULL, &outl, pkt, HB_WIRE_HEADER_LEN) == 1 &&
         EVP_DecryptUpdate(c, plain, &outl, pkt + HB_WIRE_HEADER_LEN, (int)n) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
                             (void *)(pkt + HB_WIRE_HEADER_LEN + n)) == 1 &&
         EVP_DecryptFinal_ex(c, plain + outl, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

static void test_gcm_independent(void)
{
    hb_keyring *kr = ring1(2, HB_AUTH_AES256_GCM, key_b);
    uint8_t pkt[HB_PACKET_MAX], msg[HB_PAYLOAD_MAX], plain[HB_PAYLOAD_MAX + 16];
    int bad = 0;
    for (int i = 0; i < 50; i++) {
        size_t n = (size_t)(rnd() % (HB_PAYLOAD_MAX + 1));
        fill(msg, n);
        /* a few senders and generations, so the tx subkey cache switches */
        hb_header h = mkhdr(HB_MSG_STATE, (uint32_t)(rnd() % 3 + 1), rnd() % 2,
                            rnd() | 1);
        int len = hb_wire_seal(kr, &h, msg, n, pkt, sizeof pkt);
        if (len != (int)(HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN) ||
            !gcm_reference_open(key_b, pkt, (size_t)len, plain) ||
            memcmp(plain, msg, n) != 0)
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* and the reference rejects a changed AAD byte (the header is covered) */
    hb_header h = mkhdr(HB_MSG_STATE, 1, 1, 1);
    int len = hb_wire_seal(kr, &h, msg, 10, pkt, sizeof pkt);
    pkt[33] ^= 1; /* interval */
    CHECK(!gcm_reference_open(key_b, pkt, (size_t)len, plain));
    hb_keyring_free(kr);
}

static void test_parse_rejects(void)
{
    hb_keyring *kr = ring1(1, HB_AUTH_HMAC_SHA256, key_a);
    uint8_t good[HB_PACKET_MAX], pkt[HB_PACKET_MAX];
    hb_header h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
    uint8_t msg[8] = {0};
    int len = hb_wire_seal(kr, &h, msg, sizeof msg, good, sizeof good);
    hb_header g;
    CHECK_EQ(hb_wire_parse(good, (size_t)len, &g), 0);

    struct {
        int off;
        uint8_t val;
    } cases[] = {
        {0, 'h'},  /* magic */
        {3, 'C'},  /* magic */
        {4, 0},    /* version */
        {4, 2},    /* version */
        {5, 0},    /* type */
        {5, 4},    /* type */
        {6, 0},    /* alg */
        {6, 3},    /* alg */
        {38, 1},   /* reserved */
        {39, 1},   /* reserved */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(pkt, good, (size_t)len);
        pkt[cases[i].off] = cases[i].val;
        if (hb_wire_parse(pkt, (size_t)len, &g) != -HB_REJ_MALFORMED) {
            fprintf(stderr, "  case offset %d value %d accepted\n", cases[i].off,
                    cases[i].val);
            CHECK(0);
        }
    }
    /* node id 0 */
    memcpy(pkt, good, (size_t)len);
    memset(pkt + 12, 0, 4);
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), -HB_REJ_MALFORMED);
    /* sequence 0 */
    memcpy(pkt, good, (size_t)len);
    memset(pkt + 24, 0, 8);
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), -HB_REJ_MALFORMED);
    /* payload length that disagrees with the datagram length */
    memcpy(pkt, good, (size_t)len);
    pkt[37] = 9;
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), -HB_REJ_MALFORMED);
    pkt[36] = 0xff;
    pkt[37] = 0xff;
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), -HB_REJ_MALFORMED);

    /* a heartbeat whose (self-consistent) payload exceeds the heartbeat
     * limit is malformed; the same length as a state message is fine */
    static uint8_t big[HB_PACKET_MAX];
    size_t n = HB_HEARTBEAT_PAYLOAD_MAX + 1;
    memcpy(big, good, HB_WIRE_HEADER_LEN);
    big[36] = (uint8_t)(n >> 8);
    big[37] = (uint8_t)n;
    CHECK_EQ(hb_wire_parse(big, HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN, &g),
             -HB_REJ_MALFORMED);
    big[5] = HB_MSG_STATE;
    CHECK_EQ(hb_wire_parse(big, HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN, &g), 0);
    n = HB_PAYLOAD_MAX + 1;
    big[36] = (uint8_t)(n >> 8);
    big[37] = (uint8_t)n;
    uint8_t *huge = calloc(1, HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN);
    if (huge == NULL)
        abort();
    memcpy(huge, big, HB_WIRE_HEADER_LEN);
    CHECK_EQ(hb_wire_parse(huge, HB_WIRE_HEADER_LEN + n + HB_WIRE_TAG_LEN, &g),
             -HB_REJ_MALFORMED);
    free(huge);

    /* random garbage of every length never crashes and never parses */
    int parsed = 0;
    for (int i = 0; i < 20000; i++) {
        size_t glen = (size_t)(rnd() % 200);
        uint8_t *gb = malloc(glen ? glen : 1);
        if (gb == NULL)
            abort();
        fill(gb, glen);
        if (glen >= 4 && (rnd() & 1))
            memcpy(gb, "HRTB", 4);
        if (hb_wire_decode(kr, CLUSTER, gb, glen, &g, pkt, sizeof pkt) == 0)
            parsed++;
        free(gb);
    }
    CHECK_EQ(parsed, 0);
    hb_keyring_free(kr);
}

static void test_open_checks(void)
{
    hb_keyring *kr = ring1(1, HB_AUTH_AES256_GCM, key_a);
    uint8_t pkt[HB_PACKET_MAX], msg[50], out[HB_PAYLOAD_MAX];
    fill(msg, sizeof msg);
    hb_header h = mkhdr(HB_MSG_STATE, 8, 1, 2);
    int len = hb_wire_seal(kr, &h, msg, sizeof msg, pkt, sizeof pkt);
    hb_header g;
    CHECK_EQ(hb_wire_parse(pkt, (size_t)len, &g), 0);

    /* payload buffer too small: malformed, nothing written */
    memset(out, 0x77, sizeof out);
    CHECK_EQ(hb_wire_open(kr, &g, pkt, (size_t)len, out, sizeof msg - 1),
             -HB_REJ_MALFORMED);
    CHECK(out[0] == 0x77);
    CHECK_EQ(hb_wire_open(kr, &g, pkt, (size_t)len, NULL, 0), -HB_REJ_MALFORMED);

    /* a header that is not the packet's own: the caller would trust
     * unauthenticated fields, so it is refused */
    hb_header x = g;
    x.interval_us++;
    CHECK_EQ(hb_wire_open(kr, &x, pkt, (size_t)len, out, sizeof out), -HB_REJ_MALFORMED);
    x = g;
    x.seq++;
    CHECK_EQ(hb_wire_open(kr, &x, pkt, (size_t)len, out, sizeof out), -HB_REJ_MALFORMED);
    CHECK(out[0] == 0x77);
    CHECK_EQ(hb_wire_open(kr, &g, pkt, (size_t)len, out, sizeof out), 0);
    CHECK(memcmp(out, msg, sizeof msg) == 0);
    hb_keyring_free(kr);
}

static void test_seal_errors(void)
{
    hb_keyring *kr = NULL;
    CHECK_EQ(hb_keyring_new(&kr), 0);
    uint8_t pkt[HB_PACKET_MAX + 8], msg[HB_PAYLOAD_MAX + 1];
    memset(msg, 1, sizeof msg);
    hb_header h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -ENOENT);
    CHECK_EQ(hb_keyring_add(kr, 1, HB_AUTH_HMAC_SHA256, key_a, HB_KEY_LEN), 0);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -ENOENT);
    CHECK_EQ(hb_keyring_set_send(kr, 1), 0);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), 60);

    /* too large for the type, or for the buffer */
    CHECK_EQ(hb_wire_seal(kr, &h, msg, HB_HEARTBEAT_PAYLOAD_MAX + 1, pkt, sizeof pkt),
             -EMSGSIZE);
    h.type = HB_MSG_STATE;
    CHECK_EQ(hb_wire_seal(kr, &h, msg, HB_PAYLOAD_MAX, pkt, sizeof pkt),
             (int)HB_PACKET_MAX);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, HB_PAYLOAD_MAX + 1, pkt, sizeof pkt), -EMSGSIZE);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, 59), -EMSGSIZE);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, 60), 60);

    /* bad type, node 0, sequence 0, NULL payload with a length */
    h.type = 0;
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -EINVAL);
    h.type = 4;
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -EINVAL);
    h = mkhdr(HB_MSG_HEARTBEAT, 0, 1, 2);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -EINVAL);
    h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 0);
    CHECK_EQ(hb_wire_seal(kr, &h, msg, 4, pkt, sizeof pkt), -EINVAL);
    h = mkhdr(HB_MSG_HEARTBEAT, 8, 1, 2);
    CHECK_EQ(hb_wire_seal(kr, &h, NULL, 4, pkt, sizeof pkt), -EINVAL);
    CHECK_EQ(hb_wire_seal(kr, &h, NULL, 0, pkt, sizeof pkt), 56);
    hb_keyring_free(kr);
}

static void test_keyring_api(void)
{
    hb_keyring *kr = NULL;
    CHECK_EQ(hb_keyring_new(&kr), 0);
    CHECK_EQ(hb_keyring_count(kr), 0);
    CHECK_EQ(hb_keyring_send_id(kr), -ENOENT);
    CHECK_EQ(hb_keyring_add(kr, 1, 0, key_a, HB_KEY_LEN), -EINVAL);
    CHECK_EQ(hb_keyring_add(kr, 1, 3, key_a, HB_KEY_LEN), -EINVAL);
    CHECK_EQ(hb_keyring_add(kr, 1, HB_AUTH_HMAC_SHA256, key_a, 16), -EINVAL);
    CHECK_EQ(hb_keyring_add(kr, 1, HB_AUTH_HMAC_SHA256, NULL, HB_KEY_LEN), -EINVAL);
    for (int i = 0; i < HB_MAX_KEYS; i++)
        CHECK_EQ(hb_keyring_add(kr, (uint8_t)(240 + i), algs[i % 2], key_a,
                                HB_KEY_LEN), 0);
    CHECK_EQ(hb_keyring_count(kr), HB_MAX_KEYS);
    CHECK_EQ(hb_keyring_add(kr, 240, HB_AUTH_HMAC_SHA256, key_a, HB_KEY_LEN), -EEXIST);
    CHECK_EQ(hb_keyring_add(kr, 0, HB_AUTH_HMAC_SHA256, key_a, HB_KEY_LEN), -ENOSPC);
    CHECK_EQ(hb_keyring_set_send(kr, 0), -ENOENT);
    CHECK_EQ(hb_keyring_set_send(kr, 247), 0);
    CHECK_EQ(hb_keyring_send_id(kr), 247);
    CHECK_EQ(hb_keyring_remove(kr, 0), -ENOENT);
    CHECK_EQ(hb_keyring_remove(kr, 240), 0);
    CHECK_EQ(hb_keyring_remove(kr, 240), -ENOENT);
    CHECK_EQ(hb_keyring_add(kr, 0, HB_AUTH_AES256_GCM, key_b, HB_KEY_LEN), 0);
    CHECK_EQ(hb_keyring_count(kr), HB_MAX_KEYS);
    CHECK_EQ(hb_keyring_send_id(kr), 247);
    hb_keyring_free(kr);
    hb_keyring_free(NULL);
}

HB_TEST_MAIN(test_roundtrip_hmac, test_roundtrip_gcm, test_payload_in_place,
             test_gcm_payload_not_in_clear, test_gcm_nonce_separation,
             test_bitflips_hmac, test_bitflips_gcm, test_truncation,
             test_wrong_cluster, test_unknown_key, test_key_rotation,
             test_gcm_key_replaced_same_id, test_gcm_many_senders,
             test_header_layout, test_hmac_independent, test_gcm_independent,
             test_parse_rejects, test_open_checks, test_seal_errors,
             test_keyring_api)
