/*
 * loop_linux.c - the engine loop on Linux: epoll for the sockets, one
 * timerfd on CLOCK_MONOTONIC armed with absolute deadlines (so a wake-up is
 * never pushed later by the time spent computing it), an eventfd notifier,
 * and thread setup (name, 1 ns timer slack).
 */
#include "platform.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define TIMER_TAG (-1000)

struct hb_loop {
    int epfd;
    int tfd;
    uint64_t armed; /* deadline the timerfd is armed for; 0: none */
};

const char *hb_platform_name(void)
{
    return "linux";
}

void hb_platform_thread_setup(void)
{
    /* The default 50 us timer slack would show up directly as send
     * lateness; realtime threads get 0 anyway, normal ones ask for it. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    (void)pthread_setname_np(pthread_self(), "heart-engine");
}

int hb_loop_open(hb_loop **out)
{
    hb_loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int err = errno;
        free(l);
        return -err;
    }
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->tfd < 0) {
        int err = errno;
        close(l->epfd);
        free(l);
        return -err;
    }
    int rc = hb_loop_add(l, l->tfd, TIMER_TAG);
    if (rc < 0) {
        close(l->tfd);
        close(l->epfd);
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
    close(l->tfd);
    close(l->epfd);
    free(l);
}

int hb_loop_add(hb_loop *l, int fd, int tag)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t)(int64_t)tag;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

static int arm(hb_loop *l, uint64_t deadline_ns)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(deadline_ns / HB_NS_PER_SEC);
    its.it_value.tv_nsec = (long)(deadline_ns % HB_NS_PER_SEC);
    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return -errno;
    l->armed = deadline_ns;
    return 0;
}

int hb_loop_wait(hb_loop *l, uint64_t deadline_ns, int *tags, int max)
{
    struct epoll_event evs[HB_LOOP_MAX_FDS + 1];
    if (deadline_ns <= hb_now_ns())
        return 0;
    if (l->armed != deadline_ns) {
        int rc = arm(l, deadline_ns);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        int n = epoll_wait(l->epfd, evs, HB_LOOP_MAX_FDS + 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int k = 0;
        for (int i = 0; i < n; i++) {
            int tag = (int)(int64_t)evs[i].data.u64;
            if (tag == TIMER_TAG) {
                uint64_t expirations;
                (void)!read(l->tfd, &expirations, sizeof expirations);
                l->armed = 0; /* fired: re-arm next time, even if equal */
            } else if (k < max) {
                tags[k++] = tag;
            }
        }
        if (k > 0 || hb_now_ns() >= deadline_ns)
            return k;
    }
}

int hb_notify_open(hb_notify *n)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    n->rfd = n->wfd = fd;
    return 0;
}

void hb_notify_close(hb_notify *n)
{
    if (n->rfd >= 0)
        close(n->rfd);
    n->rfd = n->wfd = -1;
}

void hb_notify_signal(hb_notify *n)
{
    uint64_t one = 1;
    while (write(n->wfd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void hb_notify_clear(hb_notify *n)
{
    uint64_t v;
    while (read(n->rfd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}
