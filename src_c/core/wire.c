/*
 * wire.c - the wire codec, format v1 (docs/protocol.md).
 *
 *   off size field
 *     0    4 magic "HRTB" (0x48 0x52 0x54 0x42)
 *     4    1 version (1)
 *     5    1 type (1 heartbeat, 2 state, 3 leave)
 *     6    1 alg (1 HMAC-SHA256, 2 AES-256-GCM)
 *     7    1 key id
 *     8    4 cluster id
 *    12    4 sender node id (nonzero)
 *    16    8 generation
 *    24    8 sequence (nonzero)
 *    32    4 sender's heartbeat interval, us
 *    36    2 payload length
 *    38    2 reserved (0)
 *    40    n payload (ciphertext under GCM)
 *  40+n   16 tag
 *
 * Every multi-byte field is big-endian and written/read byte by byte
 * (internal.h), so the codec is the same on any host byte order and never
 * does an unaligned load.  hb_wire_parse reads untrusted bytes: it checks the
 * length before touching anything and the total length must be exact.
 */
#include "crypto.h"

#include <errno.h>
#include <string.h>

#define HB_OFF_MAGIC 0
#define HB_OFF_VERSION 4
#define HB_OFF_TYPE 5
#define HB_OFF_ALG 6
#define HB_OFF_KEY_ID 7
#define HB_OFF_CLUSTER 8
#define HB_OFF_NODE 12
#define HB_OFF_GENERATION 16
#define HB_OFF_SEQ 24
#define HB_OFF_INTERVAL 32
#define HB_OFF_PAYLOAD_LEN 36
#define HB_OFF_RESERVED 38

_Static_assert(HB_OFF_RESERVED + 2 == HB_WIRE_HEADER_LEN, "header is 40 bytes");
_Static_assert(HB_PACKET_MAX <= 65535, "lengths fit the u16 field");

/* Largest payload a message type may carry; 0 for an unknown type. */
static size_t payload_max(unsigned type)
{
    switch (type) {
    case HB_MSG_HEARTBEAT:
        return HB_HEARTBEAT_PAYLOAD_MAX;
    case HB_MSG_STATE:
    case HB_MSG_LEAVE:
        return HB_PAYLOAD_MAX;
    default:
        return 0;
    }
}

static int type_ok(unsigned type)
{
    return type == HB_MSG_HEARTBEAT || type == HB_MSG_STATE ||
           type == HB_MSG_LEAVE;
}

static int alg_ok(unsigned alg)
{
    return alg == HB_AUTH_HMAC_SHA256 || alg == HB_AUTH_AES256_GCM;
}

/* The rules a header obeys on the wire, whatever its source. */
static int header_ok(const hb_header *h)
{
    return h->version == HB_WIRE_VERSION && type_ok(h->type) &&
           alg_ok(h->alg) && h->node_id != 0 && h->seq != 0 &&
           h->payload_len <= payload_max(h->type);
}

static void encode_header(const hb_header *h, uint8_t *p)
{
    hb_put_be32(p + HB_OFF_MAGIC, HB_WIRE_MAGIC);
    p[HB_OFF_VERSION] = h->version;
    p[HB_OFF_TYPE] = h->type;
    p[HB_OFF_ALG] = h->alg;
    p[HB_OFF_KEY_ID] = h->key_id;
    hb_put_be32(p + HB_OFF_CLUSTER, h->cluster_id);
    hb_put_be32(p + HB_OFF_NODE, h->node_id);
    hb_put_be64(p + HB_OFF_GENERATION, h->generation);
    hb_put_be64(p + HB_OFF_SEQ, h->seq);
    hb_put_be32(p + HB_OFF_INTERVAL, h->interval_us);
    hb_put_be16(p + HB_OFF_PAYLOAD_LEN, h->payload_len);
    hb_put_be16(p + HB_OFF_RESERVED, 0);
}

int hb_wire_seal(hb_keyring *kr, hb_header *hdr, const uint8_t *payload,
                 size_t payload_len, uint8_t *out, size_t out_cap)
{
    if (kr == NULL || hdr == NULL || out == NULL ||
        (payload_len > 0 && payload == NULL))
        return -EINVAL;
    /* Sequence 0 is never accepted by a receiver (replay rules): refuse to
     * produce a packet nobody would take. */
    if (!type_ok(hdr->type) || hdr->node_id == 0 || hdr->seq == 0)
        return -EINVAL;
    if (payload_len > payload_max(hdr->type))
        return -EMSGSIZE;
    size_t total = HB_WIRE_HEADER_LEN + payload_len + HB_WIRE_TAG_LEN;
    if (out_cap < total)
        return -EMSGSIZE;

    uint8_t key_id = 0, alg = 0;
    int rc = hb_crypto_send_key(kr, &key_id, &alg);
    if (rc != 0)
        return rc;
    hdr->version = HB_WIRE_VERSION;
    hdr->key_id = key_id;
    hdr->alg = alg;
    hdr->payload_len = (uint16_t)payload_len;

    encode_header(hdr, out);
    rc = hb_crypto_seal(kr, hdr, out, payload, payload_len);
    if (rc != 0)
        return rc;
    return (int)total;
}

int hb_wire_parse(const uint8_t *pkt, size_t len, hb_header *hdr)
{
    if (pkt == NULL || hdr == NULL ||
        len < HB_WIRE_HEADER_LEN + HB_WIRE_TAG_LEN)
        return -HB_REJ_MALFORMED;
    if (hb_get_be32(pkt + HB_OFF_MAGIC) != HB_WIRE_MAGIC ||
        hb_get_be16(pkt + HB_OFF_RESERVED) != 0)
        return -HB_REJ_MALFORMED;

    hb_header h;
    memset(&h, 0, sizeof h);
    h.version = pkt[HB_OFF_VERSION];
    h.type = pkt[HB_OFF_TYPE];
    h.alg = pkt[HB_OFF_ALG];
    h.key_id = pkt[HB_OFF_KEY_ID];
    h.cluster_id = hb_get_be32(pkt + HB_OFF_CLUSTER);
    h.node_id = hb_get_be32(pkt + HB_OFF_NODE);
    h.generation = hb_get_be64(pkt + HB_OFF_GENERATION);
    h.seq = hb_get_be64(pkt + HB_OFF_SEQ);
    h.interval_us = hb_get_be32(pkt + HB_OFF_INTERVAL);
    h.payload_len = hb_get_be16(pkt + HB_OFF_PAYLOAD_LEN);
    if (!header_ok(&h) ||
        len != (size_t)HB_WIRE_HEADER_LEN + h.payload_len + HB_WIRE_TAG_LEN)
        return -HB_REJ_MALFORMED;
    *hdr = h;
    return 0;
}

int hb_wire_open(hb_keyring *kr, const hb_header *hdr, const uint8_t *pkt,
                 size_t len, uint8_t *payload_out, size_t payload_cap)
{
    if (hdr == NULL || pkt == NULL || !header_ok(hdr) ||
        len != (size_t)HB_WIRE_HEADER_LEN + hdr->payload_len + HB_WIRE_TAG_LEN)
        return -HB_REJ_MALFORMED;
    /* The caller will trust *hdr once this returns 0, so *hdr must be what
     * the tag covers: the header bytes of this very packet. */
    uint8_t mine[HB_WIRE_HEADER_LEN];
    encode_header(hdr, mine);
    if (memcmp(mine, pkt, HB_WIRE_HEADER_LEN) != 0)
        return -HB_REJ_MALFORMED;
    if (hdr->payload_len > payload_cap ||
        (hdr->payload_len > 0 && payload_out == NULL))
        return -HB_REJ_MALFORMED;
    return hb_crypto_open(kr, hdr, pkt, payload_out);
}

int hb_wire_decode(hb_keyring *kr, uint32_t cluster_id, const uint8_t *pkt,
                   size_t len, hb_header *hdr, uint8_t *payload_out,
                   size_t payload_cap)
{
    int rc = hb_wire_parse(pkt, len, hdr);
    if (rc != 0)
        return rc;
    /* From here on *hdr holds the (unauthenticated) claimed header, which
     * the caller may use to name the claimed sender of a rejected packet. */
    if (hdr->cluster_id != cluster_id)
        return -HB_REJ_WRONG_CLUSTER;
    return hb_wire_open(kr, hdr, pkt, len, payload_out, payload_cap);
}
