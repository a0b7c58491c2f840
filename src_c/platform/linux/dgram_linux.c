/*
 * dgram_linux.c - batched datagram I/O with recvmmsg(2) / sendmmsg(2): one
 * system call moves up to a batch of heartbeats.
 */
#include "platform.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BATCH_MAX 64

/* Point m[i] at d[i]: its buffer (len bytes of it) and its address. */
static int prepare(struct mmsghdr *m, struct iovec *iov, hb_dgram *d, int n,
                   int receiving)
{
    if (n > BATCH_MAX)
        n = BATCH_MAX;
    memset(m, 0, sizeof(m[0]) * (size_t)n);
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = d[i].buf;
        iov[i].iov_len = receiving ? d[i].cap : d[i].len;
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &d[i].addr;
        m[i].msg_hdr.msg_namelen = receiving ? sizeof d[i].addr : d[i].addrlen;
    }
    return n;
}

int hb_recv_batch(int fd, hb_dgram *d, int n)
{
    struct mmsghdr m[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    n = prepare(m, iov, d, n, 1);
    int r;
    do {
        r = recvmmsg(fd, m, (unsigned)n, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < r; i++) {
        d[i].len = m[i].msg_len;
        if (m[i].msg_hdr.msg_flags & MSG_TRUNC)
            d[i].len = d[i].cap + 1; /* the engine rejects it as malformed */
        d[i].addrlen = m[i].msg_hdr.msg_namelen;
    }
    return r;
}

int hb_send_batch(int fd, hb_dgram *d, int n)
{
    struct mmsghdr m[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    n = prepare(m, iov, d, n, 0);
    /* One call per run of datagrams with the same confirm flag (sendmmsg
     * takes one flags argument for the batch); the caller sends the rest. */
    int run = 1;
    while (run < n && d[run].confirm == d[0].confirm)
        run++;
    int flags = MSG_DONTWAIT | (d[0].confirm ? MSG_CONFIRM : 0);
    int r;
    do {
        r = sendmmsg(fd, m, (unsigned)run, flags);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return r;
}
