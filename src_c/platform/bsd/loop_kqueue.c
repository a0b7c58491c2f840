/*
 * loop_kqueue.c - the engine loop on the BSDs and macOS: one kqueue(2) with
 * an EVFILT_READ filter per watched descriptor (its tag in udata) and a
 * one-shot EVFILT_TIMER for the deadline.
 *
 * kqueue timers are relative, so every wait re-arms the timer for the time
 * left until the CLOCK_MONOTONIC deadline, in the same kevent(2) call that
 * waits (EV_ADD on an existing timer replaces it).  The timer only wakes
 * us: the deadline is decided by hb_now_ns(), so a timer that fires late,
 * or a stale one from an earlier wait, costs at most a spurious wake-up.
 * Units: nanoseconds with NOTE_NSECONDS (FreeBSD 12+, NetBSD 10+, macOS,
 * OpenBSD 7.3+), else milliseconds rounded up (never early).
 */
#include "platform.h"

#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMER_IDENT 1 /* timers have their own ident space */
/* Longest single timer: the loop re-arms after it (keeps any 32-bit data
 * field and millisecond conversion far from overflow). */
#define MAX_SLEEP_NS (60ull * HB_NS_PER_SEC)

struct hb_loop {
    int kq;
    int nfds;
};

int hb_loop_open(hb_loop **out)
{
    hb_loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->kq = kqueue();
    if (l->kq < 0) {
        int err = errno;
        free(l);
        return -err;
    }
    /* a kqueue is not inherited by fork anyway; keep it from exec too */
    (void)fcntl(l->kq, F_SETFD, FD_CLOEXEC);
    *out = l;
    return 0;
}

void hb_loop_close(hb_loop *l)
{
    if (!l)
        return;
    close(l->kq);
    free(l);
}

int hb_loop_add(hb_loop *l, int fd, int tag)
{
    struct kevent ch;
    if (l->nfds >= HB_LOOP_MAX_FDS)
        return -ENOSPC;
    /* udata is void * (FreeBSD, OpenBSD, macOS, NetBSD 10) or intptr_t
     * (NetBSD before 10; its EV_SET casts): go through intptr_t */
    EV_SET(&ch, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0,
           (void *)(intptr_t)tag);
    int r;
    do {
        r = kevent(l->kq, &ch, 1, NULL, 0, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    l->nfds++;
    return 0;
}

/* The one-shot timer change for ns from now. */
static void timer_change(struct kevent *ch, uint64_t ns)
{
    if (ns > MAX_SLEEP_NS)
        ns = MAX_SLEEP_NS;
#ifdef NOTE_NSECONDS
    EV_SET(ch, TIMER_IDENT, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_NSECONDS,
           (int64_t)ns, NULL);
#else
    /* the default unit is milliseconds: round up, never wake early */
    EV_SET(ch, TIMER_IDENT, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0,
           (int64_t)((ns + 999999) / 1000000), NULL);
#endif
}

int hb_loop_wait(hb_loop *l, uint64_t deadline_ns, int *tags, int max)
{
    struct kevent ch;
    struct kevent evs[HB_LOOP_MAX_FDS + 1];
    for (;;) {
        uint64_t now = hb_now_ns();
        if (deadline_ns <= now)
            return 0;
        timer_change(&ch, deadline_ns - now);
        int n = kevent(l->kq, &ch, 1, evs, HB_LOOP_MAX_FDS + 1, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].flags & EV_ERROR) {
                /* a change that failed (the timer): data is the errno */
                if (evs[i].data != 0)
                    return -(int)evs[i].data;
                continue;
            }
            if (evs[i].filter == EVFILT_TIMER)
                continue; /* only a wake-up: the deadline is checked below */
            if (k < max)
                tags[k++] = (int)(intptr_t)evs[i].udata;
        }
        if (k > 0 || hb_now_ns() >= deadline_ns)
            return k;
    }
}
