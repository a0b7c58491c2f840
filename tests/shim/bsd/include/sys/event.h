/*
 * sys/event.h - the shim's kqueue(2) header (tests/shim/bsd), written from
 * the manual page; struct layout and constant values follow FreeBSD.
 * kqueue() and kevent() are provided by tests/shim/bsd/kqueue.c on top of
 * epoll and timerfd (shim.h renames the calls of the backend to them).
 */
#ifndef HEART_SHIM_SYS_EVENT_H
#define HEART_SHIM_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;      /* identifier: a descriptor, a timer number */
    short filter;         /* EVFILT_* */
    unsigned short flags; /* EV_* */
    unsigned int fflags;  /* filter flags (NOTE_*) */
    int64_t data;         /* filter data (timer: its period; out: count) */
    void *udata;          /* opaque, returned as given */
    uint64_t ext[4];
};

#define EV_SET(kevp, a, b, c, d, e, f) do {              \
        struct kevent *hb_shim_kevp_ = (kevp);           \
        hb_shim_kevp_->ident = (a);                      \
        hb_shim_kevp_->filter = (short)(b);              \
        hb_shim_kevp_->flags = (unsigned short)(c);      \
        hb_shim_kevp_->fflags = (unsigned int)(d);       \
        hb_shim_kevp_->data = (e);                       \
        hb_shim_kevp_->udata = (f);                      \
        hb_shim_kevp_->ext[0] = hb_shim_kevp_->ext[1] = 0; \
        hb_shim_kevp_->ext[2] = hb_shim_kevp_->ext[3] = 0; \
    } while (0)

/* filters */
#define EVFILT_READ  (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_TIMER (-7)

/* actions and flags */
#define EV_ADD     0x0001
#define EV_DELETE  0x0002
#define EV_ENABLE  0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010 /* delete after the first event */
#define EV_CLEAR   0x0020 /* reset the state after it is retrieved */
#define EV_RECEIPT 0x0040
/* returned */
#define EV_EOF     0x8000
#define EV_ERROR   0x4000 /* a change failed: data holds the errno */

/* EVFILT_TIMER units (default: milliseconds) */
#define NOTE_SECONDS  0x00000001
#define NOTE_MSECONDS 0x00000002
#define NOTE_USECONDS 0x00000004
#define NOTE_NSECONDS 0x00000008

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout);

#endif /* HEART_SHIM_SYS_EVENT_H */
