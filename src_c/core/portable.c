/*
 * portable.c - POSIX implementations of the platform interface (platform.h):
 * a poll(2) loop on CLOCK_MONOTONIC deadlines, a self-pipe notifier and one
 * recvfrom/sendto per datagram.  Backends without something better forward
 * to these; they are always compiled so that Linux CI exercises them too.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct hb_ploop {
    int n;
    struct pollfd fds[HB_LOOP_MAX_FDS];
    int tags[HB_LOOP_MAX_FDS];
};

int hb_portable_loop_open(hb_ploop **out)
{
    hb_ploop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    *out = l;
    return 0;
}

void hb_portable_loop_close(hb_ploop *l)
{
    free(l);
}

int hb_portable_loop_add(hb_ploop *l, int fd, int tag)
{
    if (l->n >= HB_LOOP_MAX_FDS)
        return -ENOSPC;
    l->fds[l->n].fd = fd;
    l->fds[l->n].events = POLLIN;
    l->tags[l->n] = tag;
    l->n++;
    return 0;
}

int hb_portable_loop_wait(hb_ploop *l, uint64_t deadline_ns, int *tags, int max)
{
    for (;;) {
        uint64_t now = hb_now_ns();
        int timeout_ms = 0;
        if (deadline_ns > now) {
            /* poll has millisecond resolution: round up so that we never
             * wake early and spin; the caller checks deadlines itself. */
            uint64_t ms = (deadline_ns - now + 999999) / 1000000;
            timeout_ms = ms > 60000 ? 60000 : (int)ms;
        }
        int rc = poll(l->fds, (nfds_t)l->n, timeout_ms);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (rc == 0) {
            if (hb_now_ns() >= deadline_ns)
                return 0;
            continue;
        }
        int k = 0;
        for (int i = 0; i < l->n && k < max; i++)
            if (l->fds[i].revents & (POLLIN | POLLERR | POLLHUP))
                tags[k++] = l->tags[i];
        return k;
    }
}

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int hb_portable_notify_open(hb_notify *n)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    int rc = set_nonblock_cloexec(p[0]);
    if (rc == 0)
        rc = set_nonblock_cloexec(p[1]);
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    n->rfd = p[0];
    n->wfd = p[1];
    return 0;
}

void hb_portable_notify_close(hb_notify *n)
{
    if (n->rfd >= 0)
        close(n->rfd);
    if (n->wfd >= 0 && n->wfd != n->rfd)
        close(n->wfd);
    n->rfd = n->wfd = -1;
}

void hb_portable_notify_signal(hb_notify *n)
{
    char c = 1;
    /* A full pipe already means "readable": EAGAIN is success here. */
    while (write(n->wfd, &c, 1) < 0 && errno == EINTR)
        ;
}

void hb_portable_notify_clear(hb_notify *n)
{
    char buf[64];
    for (;;) {
        ssize_t r = read(n->rfd, buf, sizeof buf);
        if (r > 0)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
}

int hb_portable_recv_batch(int fd, hb_dgram *d, int n)
{
    int k = 0;
    while (k < n) {
        d[k].addrlen = sizeof d[k].addr;
        ssize_t r = recvfrom(fd, d[k].buf, d[k].cap, MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&d[k].addr, &d[k].addrlen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return k ? k : -errno;
        }
        d[k].len = (size_t)r; /* > cap when truncated: the codec rejects it */
        k++;
    }
    return k;
}

int hb_portable_send_batch(int fd, hb_dgram *d, int n)
{
    int k = 0;
    while (k < n) {
        int flags = MSG_DONTWAIT;
#ifdef MSG_CONFIRM
        if (d[k].confirm)
            flags |= MSG_CONFIRM;
#endif
        ssize_t r = sendto(fd, d[k].buf, d[k].len, flags,
                           (struct sockaddr *)&d[k].addr, d[k].addrlen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return k ? k : -errno;
        }
        k++;
    }
    return k;
}

void hb_portable_thread_setup(void)
{
    /* Nothing portable to do: POSIX has no thread names or timer slack. */
}
