/*
 * platform_none.c - the "none" backend: no raw frames (hb_eth_open says
 * ENOSYS, so IP takeover announcements are unavailable), and the portable
 * POSIX loop, notifier and datagram I/O from core/portable.c.
 */
#include "platform.h"

#include <errno.h>
#include <stdlib.h>

struct hb_loop {
    hb_ploop *p;
};

const char *hb_platform_name(void)
{
    return "none";
}

int hb_loop_open(hb_loop **out)
{
    hb_loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int rc = hb_portable_loop_open(&l->p);
    if (rc < 0) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void hb_loop_close(hb_loop *l)
{
    if (!l)
        return;
    hb_portable_loop_close(l->p);
    free(l);
}

int hb_loop_add(hb_loop *l, int fd, int tag)
{
    return hb_portable_loop_add(l->p, fd, tag);
}

int hb_loop_wait(hb_loop *l, uint64_t deadline_ns, int *tags, int max)
{
    return hb_portable_loop_wait(l->p, deadline_ns, tags, max);
}

int hb_notify_open(hb_notify *n)
{
    return hb_portable_notify_open(n);
}

void hb_notify_close(hb_notify *n)
{
    hb_portable_notify_close(n);
}

void hb_notify_signal(hb_notify *n)
{
    hb_portable_notify_signal(n);
}

void hb_notify_clear(hb_notify *n)
{
    hb_portable_notify_clear(n);
}

int hb_recv_batch(int fd, hb_dgram *d, int n)
{
    return hb_portable_recv_batch(fd, d, n);
}

int hb_send_batch(int fd, hb_dgram *d, int n)
{
    return hb_portable_send_batch(fd, d, n);
}

void hb_platform_thread_setup(void)
{
    hb_portable_thread_setup();
}

/* ---- raw frames: none ---- */

struct hb_eth {
    int unused;
};

const char *hb_eth_open_failed_call(void)
{
    return "hb_eth_open (the none backend has no raw frames)";
}

int hb_eth_open(const char *ifname, hb_eth **out)
{
    if (out != NULL)
        *out = NULL;
    return -ENOSYS;
}

int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len)
{
    return -ENOSYS;
}

int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len)
{
    return -ENOSYS;
}

int hb_eth_fd(const hb_eth *h)
{
    return -ENOSYS;
}

int hb_eth_hwaddr(const hb_eth *h, uint8_t mac[6])
{
    return -ENOSYS;
}

int hb_eth_ifindex(const hb_eth *h)
{
    return -ENOSYS;
}

void hb_eth_close(hb_eth *h)
{
    (void)h;
}
