/*
 * platform_sunos.c - the Solaris/illumos backend's loop, notifier and
 * datagram I/O (its raw frames are DLPI: eth_dlpi.c).
 *
 * Everything here forwards to the portable implementations in
 * core/portable.c: a poll(2) loop on CLOCK_MONOTONIC deadlines, a
 * self-pipe, one recvfrom/sendto per datagram.  That is correct on Solaris
 * 10, 11 and illumos as it stands.  The upgrade path is event ports
 * (port_create(3C)): port_associate(PORT_SOURCE_FD, fd, POLLIN) per watched
 * fd, re-associated after each event (ports are one-shot), and
 * port_getn(port, ev, max, &nget, &timeout) with a relative timespec
 * computed from the monotonic deadline (gethrtime() is monotonic and has
 * nanosecond resolution, against poll's milliseconds); port_send(3C) or
 * port_alert(3C) would then replace the self-pipe of the notifier.  No
 * sendmmsg/recvmmsg batching exists on Solaris 10/11 (illumos has neither
 * either), so one datagram per call it stays.
 */
#define HB_FORWARD_LOOP
#define HB_FORWARD_NOTIFY
#define HB_FORWARD_DGRAM
#include "portable_forward.h"

#include <pthread.h>

const char *hb_platform_name(void)
{
    return "sunos";
}

/* pthread_setname_np(3C) exists on illumos and on Solaris 11.3 and later,
 * not on Solaris 10 or early 11: a weak reference (null where libc lacks
 * it) lets one binary serve all of them.  Compilers without weak symbols
 * name nothing. */
#if defined(__GNUC__)
extern int pthread_setname_np(pthread_t thread, const char *name)
    __attribute__((weak));
#endif

void hb_platform_thread_setup(void)
{
    hb_portable_thread_setup();
#if defined(__GNUC__)
    if (pthread_setname_np != NULL)
        (void)pthread_setname_np(pthread_self(), "heart-engine");
#endif
}
