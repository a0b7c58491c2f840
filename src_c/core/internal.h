/*
 * internal.h - shared by libheart's own sources; never installed.
 *
 * Byte order: the wire is big-endian (network order).  These helpers write
 * and read it byte by byte, so the codec is right on any host order and on
 * hosts that trap on unaligned access (SPARC).
 */
#ifndef HEART_INTERNAL_H
#define HEART_INTERNAL_H

#include "heart/heart.h"

#include <stdint.h>

#define HB_HIDDEN __attribute__((visibility("hidden")))

/* Ethernet types of the frames IP takeover sends and listens for */
#define HB_ETHERTYPE_ARP 0x0806
#define HB_ETHERTYPE_IPV6 0x86dd

static inline void hb_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void hb_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void hb_put_be64(uint8_t *p, uint64_t v)
{
    hb_put_be32(p, (uint32_t)(v >> 32));
    hb_put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t hb_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t hb_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t hb_get_be64(const uint8_t *p)
{
    return ((uint64_t)hb_get_be32(p) << 32) | hb_get_be32(p + 4);
}

#define HB_NS_PER_US 1000ull
#define HB_NS_PER_SEC 1000000000ull

#endif /* HEART_INTERNAL_H */
