/*
 * platform.h - what every backend in src_c/platform/<backend>/ provides to
 * the core.  The core never includes an OS-specific header for these jobs.
 *
 * Portable implementations (poll(2), a pipe, one recvfrom per datagram) live
 * in core/portable.c under the hb_portable_ prefix; a backend either
 * forwards to them (core/portable_forward.h: none, sunos; bsd for the
 * notifier and datagrams) or does better (linux: epoll + timerfd, eventfd,
 * recvmmsg/sendmmsg; bsd: kqueue).  Keeping the portable code always compiled means the
 * Linux CI tests it too.
 */
#ifndef HEART_PLATFORM_H
#define HEART_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"

/* Name of the backend this libheart was built with ("linux", "bsd", "sunos",
 * "none"). */
HB_HIDDEN const char *hb_platform_name(void);

/* Called first in the engine thread: name it, tighten timer slack, ... */
HB_HIDDEN void hb_platform_thread_setup(void);

/* ---- the engine's event loop: readable fds + one monotonic deadline ---- */

typedef struct hb_loop hb_loop;

HB_HIDDEN int hb_loop_open(hb_loop **out);
HB_HIDDEN void hb_loop_close(hb_loop *l);
/* Watch fd for readability; tag comes back from hb_loop_wait.  At most
 * HB_LOOP_MAX_FDS fds. */
#define HB_LOOP_MAX_FDS (HB_MAX_LINKS + 2)
HB_HIDDEN int hb_loop_add(hb_loop *l, int fd, int tag);
/* Block until a watched fd is readable or CLOCK_MONOTONIC reaches
 * deadline_ns.  Writes the tags of readable fds to tags (at most max) and
 * returns their number: 0 means the deadline passed.  -errno on failure
 * (EINTR is handled inside). */
HB_HIDDEN int hb_loop_wait(hb_loop *l, uint64_t deadline_ns, int *tags, int max);

/* ---- a wake-up fd: readable after signal until clear ---- */

typedef struct hb_notify {
    int rfd;
    int wfd; /* == rfd for an eventfd */
} hb_notify;

HB_HIDDEN int hb_notify_open(hb_notify *n);
HB_HIDDEN void hb_notify_close(hb_notify *n);
HB_HIDDEN void hb_notify_signal(hb_notify *n);
HB_HIDDEN void hb_notify_clear(hb_notify *n);

/* ---- datagrams in batches ---- */

typedef struct hb_dgram {
    uint8_t *buf;
    size_t cap;  /* receive: buffer size */
    size_t len;  /* receive: bytes read; send: bytes to send */
    struct sockaddr_storage addr; /* receive: source; send: destination */
    socklen_t addrlen;
    int confirm; /* send: the destination is known to be reachable (we hear it):
                  * MSG_CONFIRM where it exists, so the kernel keeps its
                  * neighbour entry fresh instead of probing it */
} hb_dgram;

/* Read up to n datagrams without blocking.  Returns how many (0: none
 * waiting), or -errno. */
HB_HIDDEN int hb_recv_batch(int fd, hb_dgram *d, int n);
/* Send n datagrams without blocking.  Returns how many went out, or -errno
 * when the first one failed. */
HB_HIDDEN int hb_send_batch(int fd, hb_dgram *d, int n);

/* ---- raw Ethernet frames (IP takeover) ----
 *
 * Each backend defines struct hb_eth and the hb_eth_* functions declared in
 * heart/heart.h (libdnet's eth_open / eth_send / eth_close is the model):
 *
 *   hb_eth_open(ifname, &h)     -ENODEV unknown interface, -EPERM without
 *                               the privilege, -ENOTSUP not Ethernet;
 *                               hb_eth_open_failed_call() names the call
 *   hb_eth_send(h, frame, len)  one whole Ethernet II frame, no FCS
 *   hb_eth_recv(h, buf, cap, &len)  non-blocking (-EAGAIN); only ARP and
 *                               ICMPv6 neighbour advertisements received on
 *                               the interface, none of our own, no VLAN tags
 *   hb_eth_fd(h)                pollable for hb_eth_recv
 *   hb_eth_hwaddr, hb_eth_ifindex, hb_eth_close (NULL is fine)
 *
 * Shared by the backends (core/eth_common.c): hb_eth_open_failed_call()
 * itself, hb_eth_set_failed_call() to record the call that failed (the text
 * must outlive the call: a literal, or a thread-local buffer), and
 * hb_eth_lookup(), the first step of hb_eth_open: NULL / empty name ->
 * -EINVAL, a name of namsiz or more or no such interface -> -ENODEV, else 0
 * and the index (*out is set to NULL).
 *
 * Frames are built and parsed by the core (frames.c); the announcer
 * (announce.c) is core code on top of these.  A backend without raw frames
 * answers -ENOSYS from hb_eth_open (platform/none). */

HB_HIDDEN void hb_eth_set_failed_call(const char *call);
HB_HIDDEN int hb_eth_lookup(const char *ifname, hb_eth **out, size_t namsiz,
                            unsigned *ifindex);

/* ---- portable implementations (core/portable.c) ---- */

typedef struct hb_ploop hb_ploop; /* the poll(2) loop */
HB_HIDDEN int hb_portable_loop_open(hb_ploop **out);
HB_HIDDEN void hb_portable_loop_close(hb_ploop *l);
HB_HIDDEN int hb_portable_loop_add(hb_ploop *l, int fd, int tag);
HB_HIDDEN int hb_portable_loop_wait(hb_ploop *l, uint64_t deadline_ns, int *tags, int max);
HB_HIDDEN int hb_portable_notify_open(hb_notify *n);
HB_HIDDEN void hb_portable_notify_close(hb_notify *n);
HB_HIDDEN void hb_portable_notify_signal(hb_notify *n);
HB_HIDDEN void hb_portable_notify_clear(hb_notify *n);
HB_HIDDEN void hb_portable_thread_setup(void);
HB_HIDDEN int hb_portable_recv_batch(int fd, hb_dgram *d, int n);
HB_HIDDEN int hb_portable_send_batch(int fd, hb_dgram *d, int n);

#endif /* HEART_PLATFORM_H */
