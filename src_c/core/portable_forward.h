/*
 * portable_forward.h - for backends that use core/portable.c as it is:
 * defines the platform.h functions as calls to their hb_portable_*
 * versions.  Include it from exactly one .c file of the backend, after
 * defining which groups to forward:
 *
 *   HB_FORWARD_LOOP     struct hb_loop and hb_loop_* (the poll(2) loop)
 *   HB_FORWARD_NOTIFY   hb_notify_* (a self-pipe)
 *   HB_FORWARD_DGRAM    hb_recv_batch / hb_send_batch (one call per datagram)
 *
 * A backend replaces a group by not defining its macro and writing the
 * functions itself (platform/bsd has its own kqueue loop, for example).
 */
#ifndef HEART_PORTABLE_FORWARD_H
#define HEART_PORTABLE_FORWARD_H

#include <errno.h>
#include <stdlib.h>

#include "platform.h"

#ifdef HB_FORWARD_LOOP
struct hb_loop {
    hb_ploop *p;
};

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
#endif /* HB_FORWARD_LOOP */

#ifdef HB_FORWARD_NOTIFY
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
#endif /* HB_FORWARD_NOTIFY */

#ifdef HB_FORWARD_DGRAM
int hb_recv_batch(int fd, hb_dgram *d, int n)
{
    return hb_portable_recv_batch(fd, d, n);
}

int hb_send_batch(int fd, hb_dgram *d, int n)
{
    return hb_portable_send_batch(fd, d, n);
}
#endif /* HB_FORWARD_DGRAM */

#endif /* HEART_PORTABLE_FORWARD_H */
