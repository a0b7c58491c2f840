/*
 * ifaddrs.c - getifaddrs(3) as the BSDs answer it: Linux's list, with an
 * AF_LINK entry (struct sockaddr_dl: index, type, name, link-level address)
 * in front for each interface Linux lists with an AF_PACKET address.  As
 * on the BSDs, loopback has no link-level address (Linux gives it six zero
 * bytes).  freeifaddrs releases both parts.
 */
#include "shim_int.h"

#include <errno.h>
#include <linux/if_packet.h>
#include <net/if_arp.h>
#include <net/if_dl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct link_entry {
    struct ifaddrs ifa;
    struct sockaddr_dl sdl;
};

/* One getifaddrs answer: our entries, then Linux's list. */
struct block {
    struct block *next; /* every block given out and not yet freed */
    struct ifaddrs *real;
    size_t n;
    struct link_entry e[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *blocks;

int hb_shim_getifaddrs(struct ifaddrs **out)
{
    struct ifaddrs *real;
    if (getifaddrs(&real) < 0)
        return -1;
    size_t n = 0;
    for (struct ifaddrs *i = real; i != NULL; i = i->ifa_next)
        if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_PACKET)
            n++;
    if (n == 0) {
        *out = real;
        return 0;
    }
    struct block *b = calloc(1, sizeof *b + n * sizeof b->e[0]);
    if (b == NULL) {
        freeifaddrs(real);
        errno = ENOMEM;
        return -1;
    }
    b->real = real;
    b->n = n;
    size_t k = 0;
    for (struct ifaddrs *i = real; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_PACKET)
            continue;
        struct sockaddr_ll sll;
        memcpy(&sll, i->ifa_addr, sizeof sll);
        struct link_entry *e = &b->e[k];
        size_t nlen = strnlen(i->ifa_name, sizeof e->sdl.sdl_data);
        size_t alen = sll.sll_hatype == ARPHRD_LOOPBACK ? 0 : sll.sll_halen;
        if (alen > sizeof sll.sll_addr)
            alen = sizeof sll.sll_addr;
        if (nlen + alen > sizeof e->sdl.sdl_data)
            alen = 0;
        e->sdl.sdl_family = AF_LINK;
        e->sdl.sdl_len = (unsigned char)sizeof e->sdl;
        e->sdl.sdl_index = (unsigned short)sll.sll_ifindex;
        e->sdl.sdl_type = sll.sll_hatype == ARPHRD_ETHER ? IFT_ETHER
                        : sll.sll_hatype == ARPHRD_LOOPBACK ? IFT_LOOP : IFT_OTHER;
        e->sdl.sdl_nlen = (unsigned char)nlen;
        e->sdl.sdl_alen = (unsigned char)alen;
        memcpy(e->sdl.sdl_data, i->ifa_name, nlen);
        memcpy(e->sdl.sdl_data + nlen, sll.sll_addr, alen);
        e->ifa.ifa_name = i->ifa_name; /* lives as long as real */
        e->ifa.ifa_flags = i->ifa_flags;
        e->ifa.ifa_addr = (struct sockaddr *)(void *)&e->sdl;
        e->ifa.ifa_next = k + 1 < n ? &b->e[k + 1].ifa : real;
        k++;
    }
    pthread_mutex_lock(&lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&lock);
    *out = &b->e[0].ifa;
    return 0;
}

void hb_shim_freeifaddrs(struct ifaddrs *ifa)
{
    if (ifa == NULL)
        return;
    struct block *found = NULL;
    pthread_mutex_lock(&lock);
    for (struct block **p = &blocks; *p != NULL; p = &(*p)->next) {
        if (&(*p)->e[0].ifa == ifa) {
            found = *p;
            *p = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (found == NULL) {
        freeifaddrs(ifa);
        return;
    }
    freeifaddrs(found->real);
    free(found);
}
