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
#include "platform.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct hb_loop {
    hb_ploop *p;
};

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
