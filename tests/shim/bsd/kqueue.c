/*
 * kqueue.c - kqueue(2) and kevent(2) on epoll and timerfd.
 *
 * A kqueue is an epoll descriptor with a table of its registrations
 * (ident, filter, flags, udata).  EVFILT_READ watches the descriptor
 * itself (EPOLLIN; EV_CLEAR: edge-triggered); EVFILT_TIMER gets a timerfd
 * per ident, armed relative to now in the unit fflags names (NOTE_SECONDS,
 * NOTE_MSECONDS (the default), NOTE_USECONDS, NOTE_NSECONDS), periodic
 * unless EV_ONESHOT.  kevent() applies the changelist (an error goes to the
 * eventlist with EV_ERROR when there is room, and then kevent returns
 * without waiting, as FreeBSD does; else -1), then waits for up to the
 * timeout and returns events with ident, filter, flags, data and udata.
 * Not emulated: EVFILT_WRITE and the other filters (EINVAL), EV_DISABLE /
 * EV_ENABLE, EV_RECEIPT, EV_EOF, NOTE_ABSTIME.
 */
#include "shim_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/event.h>
#include <sys/timerfd.h>

#define MAX_REGS 256
#define MAX_EVENTS 64

struct reg {
    int used;
    uintptr_t ident;
    short filter;
    unsigned short flags;
    void *udata;
    int tfd; /* EVFILT_TIMER: its timerfd */
};

struct kq {
    int epfd;
    struct reg regs[MAX_REGS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kq *kqs[HB_SHIM_MAX_FD];

int hb_shim_kqueue(void)
{
    struct kq *q = calloc(1, sizeof *q);
    if (q == NULL) {
        errno = ENOMEM;
        return -1;
    }
    q->epfd = epoll_create1(0);
    if (q->epfd < 0) {
        int err = errno;
        free(q);
        errno = err;
        return -1;
    }
    if (q->epfd >= HB_SHIM_MAX_FD) {
        close(q->epfd);
        free(q);
        errno = EMFILE;
        return -1;
    }
    pthread_mutex_lock(&lock);
    kqs[q->epfd] = q;
    pthread_mutex_unlock(&lock);
    return q->epfd;
}

static void drop_reg(struct kq *q, struct reg *r)
{
    if (r->filter == EVFILT_TIMER)
        close(r->tfd); /* leaves the epoll set with it */
    else
        (void)epoll_ctl(q->epfd, EPOLL_CTL_DEL, (int)r->ident, NULL);
    memset(r, 0, sizeof *r);
}

void hb_shim_kq_forget(int fd)
{
    if (fd < 0 || fd >= HB_SHIM_MAX_FD)
        return;
    pthread_mutex_lock(&lock);
    struct kq *q = kqs[fd];
    kqs[fd] = NULL;
    pthread_mutex_unlock(&lock);
    if (q == NULL)
        return;
    for (int i = 0; i < MAX_REGS; i++)
        if (q->regs[i].used && q->regs[i].filter == EVFILT_TIMER)
            close(q->regs[i].tfd);
    free(q); /* the caller closes the epoll descriptor */
}

static struct reg *find(struct kq *q, uintptr_t ident, short filter)
{
    for (int i = 0; i < MAX_REGS; i++)
        if (q->regs[i].used && q->regs[i].ident == ident && q->regs[i].filter == filter)
            return &q->regs[i];
    return NULL;
}

/* Arm a timerfd for data units of fflags from now (0: at once). */
static int arm_timer(int tfd, int64_t data, unsigned fflags, int oneshot)
{
    uint64_t ns;
    uint64_t v = data > 0 ? (uint64_t)data : 0;
    if (fflags & NOTE_NSECONDS)
        ns = v;
    else if (fflags & NOTE_USECONDS)
        ns = v * 1000ull;
    else if (fflags & NOTE_SECONDS)
        ns = v * 1000000000ull;
    else
        ns = v * 1000000ull; /* NOTE_MSECONDS, the default */
    if (ns == 0)
        ns = 1; /* a zero it_value would disarm the timerfd */
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(ns % 1000000000ull);
    if (!oneshot)
        its.it_interval = its.it_value;
    return timerfd_settime(tfd, 0, &its, NULL);
}

/* Apply one change; 0 or an errno. */
static int apply(struct kq *q, const struct kevent *c)
{
    struct reg *r = find(q, c->ident, c->filter);
    if (c->filter != EVFILT_READ && c->filter != EVFILT_TIMER)
        return EINVAL;
    if (c->flags & EV_DELETE) {
        if (r == NULL)
            return ENOENT;
        drop_reg(q, r);
        return 0;
    }
    if (!(c->flags & EV_ADD)) {
        if (r == NULL)
            return ENOENT;
        r->udata = c->udata; /* flags only: nothing else to change */
        return 0;
    }
    int isnew = r == NULL;
    if (isnew) {
        for (int i = 0; i < MAX_REGS && r == NULL; i++)
            if (!q->regs[i].used)
                r = &q->regs[i];
        if (r == NULL)
            return ENOMEM;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (c->flags & EV_CLEAR ? EPOLLET : 0);
    ev.data.u64 = (uint64_t)(r - q->regs);
    if (c->filter == EVFILT_READ) {
        if (epoll_ctl(q->epfd, isnew ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, (int)c->ident, &ev) < 0)
            return errno;
    } else {
        if (isnew) {
            r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
            if (r->tfd < 0)
                return errno;
            if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, r->tfd, &ev) < 0) {
                int err = errno;
                close(r->tfd);
                return err;
            }
        }
        if (arm_timer(r->tfd, c->data, c->fflags, c->flags & EV_ONESHOT) < 0) {
            int err = errno;
            if (isnew)
                close(r->tfd);
            return err;
        }
    }
    r->used = 1;
    r->ident = c->ident;
    r->filter = c->filter;
    r->flags = c->flags & (EV_ONESHOT | EV_CLEAR);
    r->udata = c->udata;
    return 0;
}

/* Milliseconds for epoll_wait from an absolute CLOCK_MONOTONIC deadline
 * (ns; 0: none), rounded up. */
static int timeout_ms(uint64_t deadline)
{
    if (deadline == 0)
        return -1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t t = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    if (t >= deadline)
        return 0;
    uint64_t ms = (deadline - t + 999999) / 1000000;
    return ms > 3600000 ? 3600000 : (int)ms;
}

int hb_shim_kevent(int kqfd, const struct kevent *changelist, int nchanges,
                   struct kevent *eventlist, int nevents,
                   const struct timespec *timeout)
{
    struct epoll_event evs[MAX_EVENTS];
    int nout = 0;

    pthread_mutex_lock(&lock);
    struct kq *q = kqfd >= 0 && kqfd < HB_SHIM_MAX_FD ? kqs[kqfd] : NULL;
    if (q == NULL) {
        pthread_mutex_unlock(&lock);
        errno = EBADF;
        return -1;
    }
    for (int i = 0; i < nchanges; i++) {
        int err = apply(q, &changelist[i]);
        if (err == 0)
            continue;
        if (nout < nevents) {
            eventlist[nout] = changelist[i];
            eventlist[nout].flags = EV_ERROR;
            eventlist[nout].data = err;
            nout++;
        } else {
            pthread_mutex_unlock(&lock);
            errno = err;
            return -1;
        }
    }
    pthread_mutex_unlock(&lock);
    if (nout > 0 || nevents <= 0)
        return nout;

    uint64_t deadline = 0;
    if (timeout != NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        deadline = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec +
                   (uint64_t)timeout->tv_sec * 1000000000ull + (uint64_t)timeout->tv_nsec;
    }
    for (;;) {
        int n = epoll_wait(kqfd, evs, nevents < MAX_EVENTS ? nevents : MAX_EVENTS,
                           timeout_ms(deadline));
        if (n < 0)
            return -1; /* EINTR too, as kevent does */
        if (n == 0)
            return 0;
        pthread_mutex_lock(&lock);
        if (kqs[kqfd] != q) { /* closed meanwhile */
            pthread_mutex_unlock(&lock);
            errno = EBADF;
            return -1;
        }
        for (int i = 0; i < n; i++) {
            struct reg *r = &q->regs[evs[i].data.u64 % MAX_REGS];
            if (!r->used)
                continue; /* deleted since */
            int64_t data = 0;
            if (r->filter == EVFILT_TIMER) {
                uint64_t expirations;
                if (read(r->tfd, &expirations, sizeof expirations) != sizeof expirations)
                    continue; /* re-armed since it fired */
                data = (int64_t)expirations;
            } else {
                int avail = 0;
                if (ioctl((int)r->ident, FIONREAD, &avail) == 0)
                    data = avail;
            }
            struct kevent *e = &eventlist[nout++];
            memset(e, 0, sizeof *e);
            e->ident = r->ident;
            e->filter = r->filter;
            e->flags = r->flags;
            e->data = data;
            e->udata = r->udata;
            if (r->flags & EV_ONESHOT)
                drop_reg(q, r);
        }
        pthread_mutex_unlock(&lock);
        if (nout > 0 || (deadline != 0 && timeout_ms(deadline) == 0))
            return nout;
    }
}
