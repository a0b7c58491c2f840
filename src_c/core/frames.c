/*
 * frames.c - the raw frames of IP takeover, built and parsed without any
 * platform code: gratuitous ARP (request and reply form), ARP probes, IPv6
 * neighbour advertisements and solicitations (docs/announce.md).
 *
 * Ethernet II, no FCS:
 *   off size
 *     0    6 destination
 *     6    6 source
 *    12    2 ethertype: 0x0806 ARP, 0x86dd IPv6
 *
 * ARP for IPv4 over Ethernet (RFC 826), from offset 14:
 *     0    2 htype 1        2  2 ptype 0x0800   4  1 hlen 6   5  1 plen 4
 *     6    2 op (1 request, 2 reply)
 *     8    6 sender hw     14  4 sender ip     18  6 target hw   24  4 target ip
 *   then zeros up to HB_ETH_ZLEN (60 bytes in all).
 *
 * IPv6 (RFC 8200), from offset 14: version 6 / class 0 / flow 0 (4 bytes),
 * payload length 2, next header 58 (ICMPv6), hop limit 255, source 16,
 * destination 16.  Neighbour discovery (RFC 4861), from offset 54:
 *     0    1 type (135 NS, 136 NA)   1 1 code 0   2 2 checksum
 *     4    4 NA: flags R 0x80 S 0x40 O 0x20 in the first byte; NS: reserved
 *     8   16 target
 *    24    options: type 1, length in 8-byte units, value (1: source and 2:
 *          target link-layer address, 1 unit = type, length, MAC)
 *
 * Every multi-byte field is written and read byte by byte in network order,
 * so the frames are the same on any host.  hb_frame_parse_claim reads
 * untrusted bytes: every offset is checked against len before it is read.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define ARP_LEN 28
#define IP6_HLEN 40
#define ICMP6_PROTO 58
#define ND_HOP_LIMIT 255
#define ND_NS 135
#define ND_NA 136
#define ND_HLEN 24            /* type .. target */
#define ND_OPT_SLLA 1
#define ND_OPT_TLLA 2
#define ND_OPT_LLA_LEN 8      /* type, length, 6-byte MAC */
#define NA_ROUTER 0x80
#define NA_SOLICITED 0x40
#define NA_OVERRIDE 0x20

#define OFF_L3 HB_ETH_HLEN                /* ARP / IPv6 header */
#define OFF_ND (HB_ETH_HLEN + IP6_HLEN)   /* ICMPv6 message */

_Static_assert(HB_ETH_HLEN + ARP_LEN <= HB_FRAME_ARP_LEN, "ARP fits");
_Static_assert(HB_FRAME_ARP_LEN == HB_ETH_ZLEN, "ARP frames are padded to 60");
_Static_assert(OFF_ND + ND_HLEN + ND_OPT_LLA_LEN == HB_FRAME_NA_LEN, "NA length");
_Static_assert(OFF_ND + ND_HLEN + ND_OPT_LLA_LEN == HB_FRAME_NS_LEN, "NS length");
_Static_assert(HB_FRAME_NA_LEN <= HB_FRAME_MAX, "HB_FRAME_MAX holds all");

static const uint8_t bcast_mac[HB_ETH_ALEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 0, 0, 0, 0, 0x01};

/* ------------------------------------------------------------------ */
/* What may be claimed                                                */
/* ------------------------------------------------------------------ */

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return 0;
    }
    return 1;
}

/* A MAC a frame may come from: not zero, not a group address. */
static int mac_ok(const uint8_t *mac)
{
    return mac != NULL && !(mac[0] & 0x01) && !is_zero(mac, HB_ETH_ALEN);
}

/* An IPv4 address a host can own: not 0.0.0.0, not 255.255.255.255, not
 * multicast (224.0.0.0/4). */
static int ip4_unicast(const uint8_t *ip)
{
    if (ip == NULL || is_zero(ip, 4) || (ip[0] & 0xf0) == 0xe0)
        return 0;
    return !(ip[0] == 0xff && ip[1] == 0xff && ip[2] == 0xff && ip[3] == 0xff);
}

/* An IPv6 address a host can own: not ::, not multicast (ff00::/8). */
static int ip6_unicast(const uint8_t *ip6)
{
    return ip6 != NULL && ip6[0] != 0xff && !is_zero(ip6, 16);
}

/* ------------------------------------------------------------------ */
/* Building                                                           */
/* ------------------------------------------------------------------ */

static void put_eth(uint8_t *f, const uint8_t *dst, const uint8_t *src,
                    uint16_t type)
{
    memcpy(f, dst, HB_ETH_ALEN);
    memcpy(f + HB_ETH_ALEN, src, HB_ETH_ALEN);
    hb_put_be16(f + 2 * HB_ETH_ALEN, type);
}

/* One ARP packet for IPv4 over Ethernet, padded to HB_ETH_ZLEN. */
static int build_arp(uint8_t *buf, size_t cap, uint16_t op,
                     const uint8_t *eth_dst, const uint8_t *sha,
                     const uint8_t *spa, const uint8_t *tha,
                     const uint8_t *tpa)
{
    if (cap < HB_FRAME_ARP_LEN)
        return -ENOSPC;
    memset(buf, 0, HB_FRAME_ARP_LEN);
    put_eth(buf, eth_dst, sha, HB_ETHERTYPE_ARP);
    uint8_t *a = buf + OFF_L3;
    hb_put_be16(a, 1);          /* Ethernet */
    hb_put_be16(a + 2, 0x0800); /* IPv4 */
    a[4] = HB_ETH_ALEN;
    a[5] = 4;
    hb_put_be16(a + 6, op);
    memcpy(a + 8, sha, HB_ETH_ALEN);
    memcpy(a + 14, spa, 4);
    memcpy(a + 18, tha, HB_ETH_ALEN);
    memcpy(a + 24, tpa, 4);
    return HB_FRAME_ARP_LEN;
}

int hb_frame_garp(uint8_t *buf, size_t cap, const uint8_t mac[6],
                  const uint8_t ip[4], int reply)
{
    static const uint8_t zero_mac[HB_ETH_ALEN];
    if (buf == NULL || !mac_ok(mac) || !ip4_unicast(ip))
        return -EINVAL;
    return build_arp(buf, cap, reply ? 2 : 1, bcast_mac, mac, ip,
                     reply ? mac : zero_mac, ip);
}

int hb_frame_arp_probe(uint8_t *buf, size_t cap, const uint8_t mac[6],
                       const uint8_t sender_ip[4], const uint8_t target_ip[4])
{
    static const uint8_t zero_mac[HB_ETH_ALEN];
    if (buf == NULL || !mac_ok(mac) || sender_ip == NULL ||
        !ip4_unicast(target_ip))
        return -EINVAL;
    if (!is_zero(sender_ip, 4) && !ip4_unicast(sender_ip))
        return -EINVAL;
    return build_arp(buf, cap, 1, bcast_mac, mac, sender_ip, zero_mac,
                     target_ip);
}

/* One's complement sum of n bytes as big-endian 16-bit words (an odd last
 * byte is the high half of a word), added to acc. */
static uint64_t sum16(uint64_t acc, const uint8_t *p, size_t n)
{
    for (; n >= 2; p += 2, n -= 2)
        acc += ((uint32_t)p[0] << 8) | p[1];
    if (n)
        acc += (uint32_t)p[0] << 8;
    return acc;
}

static uint16_t fold16(uint64_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* The sum over the ICMPv6 pseudo-header (RFC 8200 8.1) and the message of
 * icmp_len bytes at ip6 + IP6_HLEN, checksum field included as it is.  A
 * message with a right checksum sums to 0xffff. */
static uint16_t icmp6_sum(const uint8_t *ip6, size_t icmp_len)
{
    uint8_t tail[8];
    hb_put_be32(tail, (uint32_t)icmp_len);
    tail[4] = tail[5] = tail[6] = 0;
    tail[7] = ICMP6_PROTO;
    uint64_t acc = sum16(0, ip6 + 8, 32); /* source, destination */
    acc = sum16(acc, tail, sizeof tail);
    acc = sum16(acc, ip6 + IP6_HLEN, icmp_len);
    return fold16(acc);
}

/* IPv6 + ICMPv6 neighbour discovery message: header fields, target, an
 * optional link-layer option (opt_type 0: none), then the checksum.
 * Returns the frame length. */
static int build_nd(uint8_t *buf, size_t cap, const uint8_t *eth_dst,
                    const uint8_t *mac, const uint8_t *src6,
                    const uint8_t *dst6, uint8_t type, uint8_t flags,
                    const uint8_t *target, uint8_t opt_type)
{
    size_t icmp_len = ND_HLEN + (opt_type ? ND_OPT_LLA_LEN : 0);
    size_t len = OFF_ND + icmp_len;
    if (cap < len)
        return -ENOSPC;
    memset(buf, 0, len);
    put_eth(buf, eth_dst, mac, HB_ETHERTYPE_IPV6);
    uint8_t *ip = buf + OFF_L3;
    ip[0] = 0x60; /* version 6, traffic class 0, flow label 0 */
    hb_put_be16(ip + 4, (uint16_t)icmp_len);
    ip[6] = ICMP6_PROTO;
    ip[7] = ND_HOP_LIMIT;
    memcpy(ip + 8, src6, 16);
    memcpy(ip + 24, dst6, 16);
    uint8_t *m = buf + OFF_ND;
    m[0] = type;
    m[4] = flags; /* code, checksum and the rest of the word stay 0 */
    memcpy(m + 8, target, 16);
    if (opt_type) {
        m[ND_HLEN] = opt_type;
        m[ND_HLEN + 1] = 1; /* 8 bytes */
        memcpy(m + ND_HLEN + 2, mac, HB_ETH_ALEN);
    }
    hb_put_be16(m + 2, (uint16_t)~icmp6_sum(ip, icmp_len));
    return (int)len;
}

int hb_frame_na(uint8_t *buf, size_t cap, const uint8_t mac[6],
                const uint8_t ip6[16], int router)
{
    static const uint8_t all_nodes_mac[HB_ETH_ALEN] = {0x33, 0x33, 0, 0, 0, 1};
    if (buf == NULL || !mac_ok(mac) || !ip6_unicast(ip6))
        return -EINVAL;
    uint8_t flags = NA_OVERRIDE | (router ? NA_ROUTER : 0);
    return build_nd(buf, cap, all_nodes_mac, mac, ip6, all_nodes, ND_NA,
                    flags, ip6, ND_OPT_TLLA);
}

int hb_frame_unsolicited_na(uint8_t *buf, size_t cap, const uint8_t mac[6],
                            const uint8_t ip6[16])
{
    return hb_frame_na(buf, cap, mac, ip6, 0);
}

int hb_frame_ns(uint8_t *buf, size_t cap, const uint8_t mac[6],
                const uint8_t src6[16], const uint8_t target6[16])
{
    if (buf == NULL || !mac_ok(mac) || src6 == NULL || !ip6_unicast(target6))
        return -EINVAL;
    int dad = is_zero(src6, 16);
    if (!dad && !ip6_unicast(src6))
        return -EINVAL;
    /* solicited-node group ff02::1:ff00:0/104 + the target's low 24 bits,
     * and its Ethernet group 33:33 + the group's low 32 bits */
    uint8_t group[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                         0, 0, 0, 0x01, 0xff, 0, 0, 0};
    memcpy(group + 13, target6 + 13, 3);
    uint8_t group_mac[HB_ETH_ALEN] = {0x33, 0x33, 0xff, 0, 0, 0};
    memcpy(group_mac + 3, target6 + 13, 3);
    return build_nd(buf, cap, group_mac, mac, src6, group, ND_NS, 0, target6,
                    dad ? 0 : ND_OPT_SLLA);
}

/* ------------------------------------------------------------------ */
/* Parsing untrusted frames                                           */
/* ------------------------------------------------------------------ */

static int parse_arp(const uint8_t *f, size_t len, hb_claim *c)
{
    if (len < OFF_L3 + ARP_LEN)
        return -EINVAL;
    const uint8_t *a = f + OFF_L3;
    if (hb_get_be16(a) != 1 || hb_get_be16(a + 2) != 0x0800 ||
        a[4] != HB_ETH_ALEN || a[5] != 4)
        return -EINVAL;
    uint16_t op = hb_get_be16(a + 6);
    if ((op != 1 && op != 2) || is_zero(a + 14, 4))
        return -EINVAL;
    c->family = AF_INET;
    memcpy(c->addr, a + 14, 4);
    memcpy(c->mac, a + 8, HB_ETH_ALEN);
    c->kind = op == 1 ? HB_CLAIM_ARP_REQUEST : HB_CLAIM_ARP_REPLY;
    c->flags = 0;
    return 0;
}

/* RFC 4861 7.1.2's validity checks, as Linux's ndisc code applies them. */
static int parse_na(const uint8_t *f, size_t len, hb_claim *c)
{
    if (len < OFF_ND + ND_HLEN)
        return -EINVAL;
    const uint8_t *ip = f + OFF_L3;
    size_t icmp_len = hb_get_be16(ip + 4);
    if ((ip[0] >> 4) != 6 || ip[6] != ICMP6_PROTO || ip[7] != ND_HOP_LIMIT ||
        icmp_len < ND_HLEN || icmp_len > len - OFF_ND)
        return -EINVAL;
    const uint8_t *m = f + OFF_ND;
    if (m[0] != ND_NA || m[1] != 0)
        return -EINVAL;
    if (icmp6_sum(ip, icmp_len) != 0xffff)
        return -EINVAL;
    const uint8_t *target = m + 8;
    if (target[0] == 0xff)
        return -EINVAL;                   /* multicast target */
    if (ip[24] == 0xff && (m[4] & NA_SOLICITED))
        return -EINVAL;                   /* solicited, to a group */
    const uint8_t *lla = NULL;
    for (size_t off = ND_HLEN; off < icmp_len;) {
        if (icmp_len - off < 2 || m[off + 1] == 0)
            return -EINVAL;
        size_t olen = (size_t)m[off + 1] * 8;
        if (olen > icmp_len - off)
            return -EINVAL;
        if (m[off] == ND_OPT_TLLA && lla == NULL) {
            if (olen != ND_OPT_LLA_LEN)
                return -EINVAL;           /* not an Ethernet address */
            lla = m + off + 2;
        }
        off += olen;
    }
    c->family = AF_INET6;
    memcpy(c->addr, target, 16);
    memcpy(c->mac, lla != NULL ? lla : f + HB_ETH_ALEN, HB_ETH_ALEN);
    c->kind = HB_CLAIM_NA;
    c->flags = m[4] & (NA_ROUTER | NA_SOLICITED | NA_OVERRIDE);
    return 0;
}

int hb_frame_parse_claim(const uint8_t *frame, size_t len, hb_claim *out)
{
    hb_claim c;
    int rc;

    if (out == NULL || frame == NULL || len < HB_ETH_HLEN)
        return -EINVAL;
    memset(&c, 0, sizeof c);
    switch (hb_get_be16(frame + 2 * HB_ETH_ALEN)) {
    case HB_ETHERTYPE_ARP:
        rc = parse_arp(frame, len, &c);
        break;
    case HB_ETHERTYPE_IPV6:
        rc = parse_na(frame, len, &c);
        break;
    default:
        rc = -EINVAL;
        break;
    }
    if (rc < 0)
        return rc;
    memcpy(c.eth_src, frame + HB_ETH_ALEN, HB_ETH_ALEN);
    *out = c;
    return 0;
}
