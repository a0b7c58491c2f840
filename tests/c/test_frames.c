/*
 * test_frames.c - the raw frames of IP takeover (src_c/core/frames.c):
 * byte-exact gratuitous ARP, ARP probes, neighbour advertisements and
 * solicitations (the expected bytes are written out here by hand; the ICMPv6
 * checksums were computed by a separate implementation and agree with
 * tshark), parsing of built, truncated, corrupted and random frames, and the
 * argument checks of the raw-frame handle and the announcer (whose real
 * sends are tested in tests/test_announce_netns.py).  No root needed; runs
 * under tools/bigendian too (with the none backend).
 */
#include "hbtest.h"

#include "heart/heart.h"

#include <errno.h>
#include <sys/socket.h>

static const uint8_t MAC[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
static const uint8_t IP4[4] = {192, 0, 2, 10};
static const uint8_t IP4_ZERO[4] = {0, 0, 0, 0};
static const uint8_t IP6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                0, 0, 0, 0, 0, 0, 0, 0x10};
static const uint8_t IP6_SRC[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 0x01};
static const uint8_t IP6_ZERO[16];

static const uint8_t GARP_REQUEST[60] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 10,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 10,
    /* padding to 60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static const uint8_t GARP_REPLY[60] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 10,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 10,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static const uint8_t ARP_PROBE[60] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 10,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static const uint8_t NA[86] = {
    0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x86, 0xdd,
    /* IPv6: version 6, payload 32, next header 58, hop limit 255 */
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    /* NA, code 0, checksum, flags O, target */
    0x88, 0x00, 0xf9, 0x0c, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    /* target link-layer address */
    0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

static const uint8_t NS_DAD[78] = {
    0x33, 0x33, 0xff, 0x00, 0x00, 0x10, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x86, 0xdd,
    0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0xff,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x10,
    0x87, 0x00, 0x4c, 0xcf, 0x00, 0x00, 0x00, 0x00,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};

static const uint8_t NS_SRC[86] = {
    0x33, 0x33, 0xff, 0x00, 0x00, 0x10, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x86, 0xdd,
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x10,
    0x87, 0x00, 0x1c, 0x0b, 0x00, 0x00, 0x00, 0x00,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

/* ------------------------------------------------------------------ */
/* An ICMPv6 checksum of our own, to re-seal frames the tests change   */
/* ------------------------------------------------------------------ */

static void reseal_icmp6(uint8_t *f)
{
    size_t n = ((size_t)f[18] << 8) | f[19];
    uint32_t s = 0;
    f[56] = f[57] = 0;
    for (size_t i = 22; i < 54; i += 2) /* addresses */
        s += (uint32_t)(f[i] << 8 | f[i + 1]);
    s += (uint32_t)n + 58;
    for (size_t i = 0; i < n; i++)
        s += (i & 1) ? f[54 + i] : (uint32_t)f[54 + i] << 8;
    while (s > 0xffff)
        s = (s & 0xffff) + (s >> 16);
    f[56] = (uint8_t)(~s >> 8);
    f[57] = (uint8_t)~s;
}

/* Parse an exact-size heap copy, so that ASan sees any read past len. */
static int parse_copy(const uint8_t *f, size_t len, hb_claim *c)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, f, len);
    int rc = hb_frame_parse_claim(len ? copy : NULL, len, c);
    free(copy);
    return rc;
}

static int claim_untouched(const hb_claim *c)
{
    const uint8_t *p = (const uint8_t *)c;
    for (size_t i = 0; i < sizeof *c; i++) {
        if (p[i] != 0xa5)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ */

static void test_garp_bytes(void)
{
    uint8_t buf[HB_FRAME_MAX];
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, IP4, 0), 60);
    CHECK(memcmp(buf, GARP_REQUEST, 60) == 0);
    CHECK(buf[60] == 0xee); /* nothing past the frame */
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, IP4, 1), 60);
    CHECK(memcmp(buf, GARP_REPLY, 60) == 0);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, IP4, 7), 60); /* any nonzero */
    CHECK(memcmp(buf, GARP_REPLY, 60) == 0);
    CHECK_EQ(hb_frame_arp_probe(buf, sizeof buf, MAC, IP4_ZERO, IP4), 60);
    CHECK(memcmp(buf, ARP_PROBE, 60) == 0);
    /* a plain who-has from 192.0.2.1 */
    const uint8_t me[4] = {192, 0, 2, 1};
    CHECK_EQ(hb_frame_arp_probe(buf, sizeof buf, MAC, me, IP4), 60);
    CHECK(memcmp(buf + 28, me, 4) == 0 && memcmp(buf + 38, IP4, 4) == 0);
}

static void test_nd_bytes(void)
{
    uint8_t buf[HB_FRAME_MAX];
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(hb_frame_unsolicited_na(buf, sizeof buf, MAC, IP6), HB_FRAME_NA_LEN);
    CHECK(memcmp(buf, NA, sizeof NA) == 0);
    CHECK(buf[HB_FRAME_NA_LEN] == 0xee);
    CHECK_EQ(hb_frame_na(buf, sizeof buf, MAC, IP6, 0), HB_FRAME_NA_LEN);
    CHECK(memcmp(buf, NA, sizeof NA) == 0);
    /* router flag: 0x20 -> 0xa0, the high byte of its 16-bit word, so the
     * checksum is 0x8000 less */
    CHECK_EQ(hb_frame_na(buf, sizeof buf, MAC, IP6, 1), HB_FRAME_NA_LEN);
    CHECK(buf[58] == 0xa0 && buf[56] == 0x79 && buf[57] == 0x0c);
    CHECK(memcmp(buf + 59, NA + 59, sizeof NA - 59) == 0);

    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(hb_frame_ns(buf, sizeof buf, MAC, IP6_ZERO, IP6), 78);
    CHECK(memcmp(buf, NS_DAD, sizeof NS_DAD) == 0);
    CHECK(buf[78] == 0xee);
    CHECK_EQ(hb_frame_ns(buf, sizeof buf, MAC, IP6_SRC, IP6), HB_FRAME_NS_LEN);
    CHECK(memcmp(buf, NS_SRC, sizeof NS_SRC) == 0);
}

static void test_builder_errors(void)
{
    uint8_t buf[HB_FRAME_MAX];
    const uint8_t zero_mac[6] = {0};
    const uint8_t group_mac[6] = {0x01, 0x00, 0x5e, 0, 0, 1};
    const uint8_t bcast4[4] = {255, 255, 255, 255};
    const uint8_t mcast4[4] = {224, 0, 0, 1};
    const uint8_t mcast6[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                0, 0, 0, 0, 0, 0, 0, 1};

    /* too small by one byte: -ENOSPC, nothing written */
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(hb_frame_garp(buf, 59, MAC, IP4, 0), -ENOSPC);
    CHECK_EQ(hb_frame_arp_probe(buf, 59, MAC, IP4_ZERO, IP4), -ENOSPC);
    CHECK_EQ(hb_frame_unsolicited_na(buf, 85, MAC, IP6), -ENOSPC);
    CHECK_EQ(hb_frame_ns(buf, 77, MAC, IP6_ZERO, IP6), -ENOSPC);
    CHECK_EQ(hb_frame_ns(buf, 85, MAC, IP6_SRC, IP6), -ENOSPC);
    CHECK_EQ(hb_frame_ns(buf, 78, MAC, IP6_ZERO, IP6), 78);
    CHECK_EQ(hb_frame_garp(buf, 60, MAC, IP4, 0), 60);
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(hb_frame_garp(buf, 0, MAC, IP4, 0), -ENOSPC);
    CHECK(buf[0] == 0xee);

    CHECK_EQ(hb_frame_garp(NULL, 60, MAC, IP4, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, NULL, IP4, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, NULL, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, zero_mac, IP4, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, group_mac, IP4, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, IP4_ZERO, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, bcast4, 0), -EINVAL);
    CHECK_EQ(hb_frame_garp(buf, sizeof buf, MAC, mcast4, 1), -EINVAL);
    CHECK_EQ(hb_frame_arp_probe(buf, sizeof buf, MAC, IP4_ZERO, IP4_ZERO), -EINVAL);
    CHECK_EQ(hb_frame_arp_probe(buf, sizeof buf, MAC, mcast4, IP4), -EINVAL);
    CHECK_EQ(hb_frame_arp_probe(buf, sizeof buf, MAC, NULL, IP4), -EINVAL);
    CHECK_EQ(hb_frame_unsolicited_na(buf, sizeof buf, MAC, IP6_ZERO), -EINVAL);
    CHECK_EQ(hb_frame_unsolicited_na(buf, sizeof buf, MAC, mcast6), -EINVAL);
    CHECK_EQ(hb_frame_unsolicited_na(buf, sizeof buf, group_mac, IP6), -EINVAL);
    CHECK_EQ(hb_frame_unsolicited_na(buf, sizeof buf, MAC, NULL), -EINVAL);
    CHECK_EQ(hb_frame_ns(buf, sizeof buf, MAC, IP6_ZERO, mcast6), -EINVAL);
    CHECK_EQ(hb_frame_ns(buf, sizeof buf, MAC, mcast6, IP6), -EINVAL);
    CHECK_EQ(hb_frame_ns(buf, sizeof buf, MAC, NULL, IP6), -EINVAL);
}

static void test_parse_built(void)
{
    uint8_t buf[HB_FRAME_MAX];
    hb_claim c;

    CHECK_EQ(parse_copy(GARP_REQUEST, sizeof GARP_REQUEST, &c), 0);
    CHECK_EQ(c.family, AF_INET);
    CHECK_EQ(c.kind, HB_CLAIM_ARP_REQUEST);
    CHECK(memcmp(c.addr, IP4, 4) == 0 && memcmp(c.mac, MAC, 6) == 0 &&
          memcmp(c.eth_src, MAC, 6) == 0);
    CHECK_EQ(c.flags, 0);
    CHECK_EQ(parse_copy(GARP_REPLY, sizeof GARP_REPLY, &c), 0);
    CHECK_EQ(c.kind, HB_CLAIM_ARP_REPLY);
    /* without the padding (42 bytes, as Linux's packet sockets deliver
     * frames a sender did not pad) */
    CHECK_EQ(parse_copy(GARP_REPLY, 42, &c), 0);
    /* a probe claims nothing (sender 0.0.0.0) */
    CHECK_EQ(parse_copy(ARP_PROBE, sizeof ARP_PROBE, &c), -EINVAL);

    CHECK_EQ(parse_copy(NA, sizeof NA, &c), 0);
    CHECK_EQ(c.family, AF_INET6);
    CHECK_EQ(c.kind, HB_CLAIM_NA);
    CHECK(memcmp(c.addr, IP6, 16) == 0 && memcmp(c.mac, MAC, 6) == 0);
    CHECK_EQ(c.flags, 0x20);
    /* with trailing bytes (padding) */
    memcpy(buf, NA, sizeof NA);
    memset(buf + sizeof NA, 0, 20);
    CHECK_EQ(parse_copy(buf, sizeof NA + 20, &c), 0);
    /* a solicitation is not a claim */
    CHECK_EQ(parse_copy(NS_SRC, sizeof NS_SRC, &c), -EINVAL);
    CHECK_EQ(parse_copy(NS_DAD, sizeof NS_DAD, &c), -EINVAL);

    /* the claim's MAC is the ARP sender hw, not the Ethernet source */
    memcpy(buf, GARP_REQUEST, 60);
    buf[6 + 5] = 0x99;
    CHECK_EQ(parse_copy(buf, 60, &c), 0);
    CHECK(memcmp(c.mac, MAC, 6) == 0 && c.eth_src[5] == 0x99);
}

static void test_parse_truncated(void)
{
    hb_claim c;
    for (size_t n = 0; n < sizeof NA; n++) {
        memset(&c, 0xa5, sizeof c);
        CHECK_EQ(parse_copy(NA, n, &c), -EINVAL);
        CHECK(claim_untouched(&c));
    }
    for (size_t n = 0; n < 42; n++)
        CHECK_EQ(parse_copy(GARP_REQUEST, n, &c), -EINVAL);
    for (size_t n = 42; n <= 60; n++)
        CHECK_EQ(parse_copy(GARP_REQUEST, n, &c), 0);
    CHECK_EQ(hb_frame_parse_claim(NULL, 0, &c), -EINVAL);
    CHECK_EQ(hb_frame_parse_claim(NA, sizeof NA, NULL), -EINVAL);
}

/* Every byte the ICMPv6 checksum or a validity rule covers is noticed. */
static void test_parse_corrupted_na(void)
{
    uint8_t f[sizeof NA];
    hb_claim c;
    for (size_t i = 0; i < sizeof NA; i++) {
        for (int m = 0; m < 2; m++) {
            memcpy(f, NA, sizeof NA);
            f[i] ^= m ? 0xff : 0x01;
            int rc = parse_copy(f, sizeof f, &c);
            /* not covered: the Ethernet addresses, the traffic class and
             * flow label (all but the version nibble) */
            int free_byte = i < 12 || (i == 14 && !m) || (i >= 15 && i <= 17);
            if (free_byte) {
                CHECK_EQ(rc, 0);
            } else if (rc != -EINVAL) {
                CHECK_EQ(rc, -EINVAL);
                fprintf(stderr, "  byte %zu xor %s accepted\n", i, m ? "ff" : "01");
            }
        }
    }
}

static void test_parse_na_rules(void)
{
    uint8_t f[HB_FRAME_MAX];
    hb_claim c;

    /* no target link-layer option: the MAC is the Ethernet source */
    memcpy(f, NA, sizeof NA);
    f[19] = 24;
    f[6] = 0x0a;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, 78, &c), 0);
    CHECK(c.mac[0] == 0x0a && memcmp(c.mac + 1, MAC + 1, 5) == 0);

    /* our re-seal agrees with the builder's checksum */
    memcpy(f, NA, sizeof NA);
    reseal_icmp6(f);
    CHECK(memcmp(f, NA, sizeof NA) == 0);

    /* solicited to a multicast destination: invalid; to a unicast one: fine */
    memcpy(f, NA, sizeof NA);
    f[58] = 0x60;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    memcpy(f + 38, IP6_SRC, 16);
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), 0);
    CHECK_EQ(c.flags, 0x60);

    /* hop limit 254 (not in the checksum) */
    memcpy(f, NA, sizeof NA);
    f[21] = 254;
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);

    /* multicast target */
    memcpy(f, NA, sizeof NA);
    f[62] = 0xff;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);

    /* option of length 0; option running past the message; a target
     * link-layer option of 16 bytes */
    memcpy(f, NA, sizeof NA);
    f[79] = 0;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    memcpy(f, NA, sizeof NA);
    f[79] = 2;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    memcpy(f, NA, sizeof NA);
    memset(f + 86, 0, 8);
    f[19] = 40;
    f[79] = 2;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, 94, &c), -EINVAL);

    /* an unknown option before the target link-layer option: skipped */
    memcpy(f, NA, 78);
    f[19] = 40;
    f[78] = 14; /* nonce */
    f[79] = 1;
    memset(f + 80, 0x77, 6);
    memcpy(f + 86, NA + 78, 8);
    f[86 + 2] = 0x06;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, 94, &c), 0);
    CHECK(c.mac[0] == 0x06);

    /* the length field says more than arrived */
    memcpy(f, NA, sizeof NA);
    f[19] = 33;
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    /* less than an NA */
    memcpy(f, NA, sizeof NA);
    f[19] = 23;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    /* an extension header (next header 0: hop-by-hop) */
    memcpy(f, NA, sizeof NA);
    f[20] = 0;
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    /* code 1 */
    memcpy(f, NA, sizeof NA);
    f[55] = 1;
    reseal_icmp6(f);
    CHECK_EQ(parse_copy(f, sizeof NA, &c), -EINVAL);
    /* a VLAN tag in front */
    memcpy(f, NA, 12);
    f[12] = 0x81;
    f[13] = 0x00;
    f[14] = 0x00;
    f[15] = 0x0a;
    memcpy(f + 16, NA + 12, sizeof NA - 12);
    CHECK_EQ(parse_copy(f, sizeof NA + 4, &c), -EINVAL);
}

static void test_parse_arp_rules(void)
{
    uint8_t f[60];
    hb_claim c;
    struct {
        size_t off;
        uint8_t val;
    } bad[] = {
        {15, 6},    /* htype 6 */
        {16, 0x86}, /* ptype */
        {18, 8},    /* hlen */
        {19, 16},   /* plen */
        {21, 3},    /* op 3 (RARP) */
        {21, 0},
        {20, 1},    /* op 0x0101 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(f, GARP_REQUEST, 60);
        f[bad[i].off] = bad[i].val;
        memset(&c, 0xa5, sizeof c);
        CHECK_EQ(parse_copy(f, 60, &c), -EINVAL);
        CHECK(claim_untouched(&c));
    }
    /* garbage in the padding is fine; another ethertype is not */
    memcpy(f, GARP_REQUEST, 60);
    memset(f + 42, 0x5a, 18);
    CHECK_EQ(parse_copy(f, 60, &c), 0);
    f[13] = 0x00; /* IPv4 */
    CHECK_EQ(parse_copy(f, 60, &c), -EINVAL);
    /* a regular who-has from 192.0.2.1 claims 192.0.2.1 */
    const uint8_t me[4] = {192, 0, 2, 1};
    CHECK_EQ(hb_frame_arp_probe(f, 60, MAC, me, IP4), 60);
    CHECK_EQ(parse_copy(f, 60, &c), 0);
    CHECK(memcmp(c.addr, me, 4) == 0 && c.kind == HB_CLAIM_ARP_REQUEST);
}

/* Random bytes and random edits of good frames: 0 or -EINVAL, *out only
 * written on 0, and (under ASan) no read past len.  tests/fuzz/fuzz_claim.c
 * does this with coverage feedback. */
static void test_parse_random(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    uint8_t f[128];
    hb_claim c;
    int accepted = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (size_t)(x % sizeof f);
        const uint8_t *seed = (x >> 8) % 3 == 0 ? NA : (x >> 8) % 3 == 1
                                                             ? GARP_REPLY
                                                             : NULL;
        if (seed != NULL) {
            size_t sl = seed == NA ? sizeof NA : 60;
            memcpy(f, seed, sl);
            n = (x >> 16) % 4 == 0 ? (size_t)((x >> 20) % (sl + 1)) : sl;
            f[(x >> 24) % sl] ^= (uint8_t)(x >> 32);
        } else {
            for (size_t k = 0; k < n; k++)
                f[k] = (uint8_t)(x >> ((k % 8) * 8)) ^ (uint8_t)k;
        }
        memset(&c, 0xa5, sizeof c);
        int rc = parse_copy(f, n, &c);
        CHECK(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            accepted++;
            CHECK(c.family == AF_INET || c.family == AF_INET6);
        } else {
            CHECK(claim_untouched(&c));
        }
    }
    CHECK(accepted > 1000);
}

/* Argument checks of the raw-frame handle and the announcer; a real open
 * needs an Ethernet interface and CAP_NET_RAW (the netns tests). */
static void test_eth_and_announcer_args(void)
{
    hb_eth *h = (hb_eth *)&h;
    hb_announcer *a = (hb_announcer *)&a;
    int rc = hb_eth_open("hb-no-such0", &h);
    CHECK(h == NULL);
    if (strcmp(hb_backend(), "none") == 0) {
        /* the none backend, and only it: no raw frames at all */
        CHECK_EQ(rc, -ENOSYS);
        CHECK_EQ(hb_announcer_open("lo", &a), -ENOSYS);
        CHECK(a == NULL);
        CHECK(strlen(hb_eth_open_failed_call()) > 0);
    } else {
        CHECK_EQ(rc, -ENODEV);
        CHECK(strcmp(hb_eth_open_failed_call(), "if_nametoindex") == 0);
        CHECK_EQ(hb_announcer_open("hb-no-such0", &a), -ENODEV);
        CHECK(a == NULL);
        CHECK_EQ(hb_eth_open("a-name-longer-than-ifnamsiz", &h), -ENODEV);
        CHECK_EQ(hb_eth_open("", &h), -EINVAL);
        CHECK_EQ(hb_eth_open(NULL, &h), -EINVAL);
        /* loopback is no Ethernet; without CAP_NET_RAW the socket fails */
        rc = hb_eth_open("lo", &h);
        CHECK(rc == -ENOTSUP || rc == -EPERM || rc == -EACCES);
        CHECK(h == NULL);
        CHECK(strlen(hb_eth_open_failed_call()) > 0);
    }
    uint8_t mac[6], buf[64];
    size_t n;
    CHECK(hb_eth_send(NULL, buf, 60) < 0);
    CHECK(hb_eth_recv(NULL, buf, sizeof buf, &n) < 0);
    CHECK(hb_eth_fd(NULL) < 0);
    CHECK(hb_eth_hwaddr(NULL, mac) < 0);
    CHECK(hb_eth_ifindex(NULL) < 0);
    hb_eth_close(NULL);
    CHECK_EQ(hb_announcer_open("lo", NULL), -EINVAL);
    CHECK_EQ(hb_announce(NULL, AF_INET, IP4, 1, 0, 0), -EINVAL);
    CHECK_EQ(hb_announcer_probe(NULL, AF_INET6, IP6), -EINVAL);
    CHECK(hb_announcer_eth(NULL) == NULL);
    hb_announcer_close(NULL);
}

HB_TEST_MAIN(test_garp_bytes, test_nd_bytes, test_builder_errors,
             test_parse_built, test_parse_truncated, test_parse_corrupted_na,
             test_parse_na_rules, test_parse_arp_rules, test_parse_random,
             test_eth_and_announcer_args)
