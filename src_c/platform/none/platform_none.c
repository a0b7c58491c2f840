/*
 * platform_none.c - the "none" backend: no raw frames (hb_eth_open says
 * ENOSYS, so IP takeover announcements are unavailable), and the portable
 * POSIX loop, notifier and datagram I/O from core/portable.c.
 */
#define HB_FORWARD_LOOP
#define HB_FORWARD_NOTIFY
#define HB_FORWARD_DGRAM
#include "portable_forward.h"

#include <errno.h>

const char *hb_platform_name(void)
{
    return "none";
}

void hb_platform_thread_setup(void)
{
    hb_portable_thread_setup();
}

/* ---- raw frames: none ---- */

struct hb_eth {
    int unused;
};

int hb_eth_open(const char *ifname, hb_eth **out)
{
    hb_eth_set_failed_call("hb_eth_open (the none backend has no raw frames)");
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
