/*
 * eth_common.c - what every raw-frame backend's hb_eth_open shares: the
 * thread-local name of the call that failed (hb_eth_open_failed_call), and
 * the first step, checking the name and finding the interface's index, so
 * that an unknown interface is -ENODEV before anything needs a privilege.
 */
#include "platform.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>

static _Thread_local const char *failed_call = "";

const char *hb_eth_open_failed_call(void)
{
    return failed_call;
}

void hb_eth_set_failed_call(const char *call)
{
    failed_call = call != NULL ? call : "";
}

int hb_eth_lookup(const char *ifname, hb_eth **out, size_t namsiz, unsigned *ifindex)
{
    hb_eth_set_failed_call("");
    if (out == NULL || ifname == NULL || ifname[0] == '\0') {
        hb_eth_set_failed_call("hb_eth_open");
        return -EINVAL;
    }
    *out = NULL;
    if (strnlen(ifname, namsiz) >= namsiz) {
        hb_eth_set_failed_call("if_nametoindex");
        return -ENODEV; /* no interface has a name that long */
    }
    unsigned i = if_nametoindex(ifname);
    if (i == 0) {
        int err = errno;
        hb_eth_set_failed_call("if_nametoindex");
        return -(err == 0 || err == ENXIO ? ENODEV : err);
    }
    *ifindex = i;
    return 0;
}
