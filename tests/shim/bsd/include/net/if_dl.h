/*
 * net/if_dl.h - the shim's link-level socket address (tests/shim/bsd),
 * written from the BSD manual pages: getifaddrs(3) lists one AF_LINK entry
 * per interface whose address is a struct sockaddr_dl.
 *
 * Difference from the BSDs: Linux's struct sockaddr has no length byte and
 * a 16-bit family first, so here sdl_family comes first (where
 * ifa_addr->sa_family reads it) and sdl_len second.  AF_LINK is a value
 * no Linux address family uses.
 */
#ifndef HEART_SHIM_NET_IF_DL_H
#define HEART_SHIM_NET_IF_DL_H

#include <sys/types.h>
#include <sys/socket.h>

#define AF_LINK 0x4c4b /* outside Linux's AF_* (< AF_MAX) */

struct sockaddr_dl {
    sa_family_t sdl_family;   /* AF_LINK */
    unsigned char sdl_len;    /* total length */
    unsigned char sdl_type;   /* interface type (IFT_*) */
    unsigned short sdl_index; /* interface index; 0 if none */
    unsigned char sdl_nlen;   /* name length, the name first in sdl_data */
    unsigned char sdl_alen;   /* link-level address length, after the name */
    unsigned char sdl_slen;   /* link-layer selector length */
    char sdl_data[46];        /* name, then address */
};

#define LLADDR(s) ((caddr_t)((s)->sdl_data + (s)->sdl_nlen))

/* interface types (<net/if_types.h> on the BSDs) used by the shim */
#define IFT_OTHER 0x01
#define IFT_ETHER 0x06
#define IFT_LOOP  0x18

#endif /* HEART_SHIM_NET_IF_DL_H */
