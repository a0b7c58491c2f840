/*
 * announce.c - the announcer: a raw-frame handle of the platform backend
 * (hb_eth_*) plus one preallocated frame buffer.  Tells a segment that an
 * address moved here (gratuitous ARP, unsolicited neighbour advertisements)
 * and asks who has an address (ARP probe, neighbour solicitation).
 *
 * The frames come from frames.c; only open / send / receive / close are the
 * backend's.  A burst is paced on CLOCK_MONOTONIC absolute deadlines: frame
 * i goes out at start + i * interval, however long each send took.
 */
#include "platform.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct hb_announcer {
    hb_eth *eth;
    uint8_t mac[HB_ETH_ALEN];
    /* Guards frame: held to build one frame and send it, never while a burst
     * waits, so that calls from several threads interleave. */
    pthread_mutex_t mu;
    uint8_t frame[HB_FRAME_MAX];
};

int hb_announcer_open(const char *ifname, hb_announcer **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    hb_announcer *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    int rc = hb_eth_open(ifname, &a->eth);
    if (rc == 0)
        rc = hb_eth_hwaddr(a->eth, a->mac);
    if (rc == 0)
        rc = -pthread_mutex_init(&a->mu, NULL);
    if (rc < 0) {
        hb_eth_close(a->eth);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void hb_announcer_close(hb_announcer *a)
{
    if (a == NULL)
        return;
    hb_eth_close(a->eth);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

hb_eth *hb_announcer_eth(hb_announcer *a)
{
    return a != NULL ? a->eth : NULL;
}

/* Sleep until CLOCK_MONOTONIC reaches deadline_ns; signals do not cut it
 * short. */
static void sleep_until(uint64_t deadline_ns)
{
#if defined(TIMER_ABSTIME)
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / HB_NS_PER_SEC);
    ts.tv_nsec = (long)(deadline_ns % HB_NS_PER_SEC);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
#else
    /* no clock_nanosleep (macOS): relative sleeps towards the deadline */
    for (uint64_t now = hb_now_ns(); now < deadline_ns; now = hb_now_ns()) {
        struct timespec ts;
        uint64_t left = deadline_ns - now;
        ts.tv_sec = (time_t)(left / HB_NS_PER_SEC);
        ts.tv_nsec = (long)(left % HB_NS_PER_SEC);
        (void)nanosleep(&ts, NULL);
    }
#endif
}

/* Build the announcement for (family, addr, flags) into a->frame. */
static int build_announcement(hb_announcer *a, int family, const uint8_t *addr,
                              int flags)
{
    if (family == AF_INET)
        return hb_frame_garp(a->frame, sizeof a->frame, a->mac, addr,
                             flags & HB_ANNOUNCE_REPLY);
    return hb_frame_na(a->frame, sizeof a->frame, a->mac, addr,
                       flags & HB_ANNOUNCE_ROUTER);
}

/* Build and send one frame under the lock. */
static int send_one(hb_announcer *a, int family, const uint8_t *addr,
                    int flags, int probe)
{
    static const uint8_t zero[16];
    int rc;

    pthread_mutex_lock(&a->mu);
    if (!probe)
        rc = build_announcement(a, family, addr, flags);
    else if (family == AF_INET)
        rc = hb_frame_arp_probe(a->frame, sizeof a->frame, a->mac, zero, addr);
    else
        rc = hb_frame_ns(a->frame, sizeof a->frame, a->mac, zero, addr);
    if (rc >= 0)
        rc = hb_eth_send(a->eth, a->frame, (size_t)rc);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int hb_announce(hb_announcer *a, int family, const uint8_t *addr, int count,
                uint32_t interval_us, int flags)
{
    if (a == NULL || addr == NULL || count < 1 ||
        (flags & ~(HB_ANNOUNCE_REPLY | HB_ANNOUNCE_ROUTER)) != 0)
        return -EINVAL;
    if (family == AF_INET) {
        if (flags & HB_ANNOUNCE_ROUTER)
            return -EINVAL;
    } else if (family == AF_INET6) {
        if (flags & HB_ANNOUNCE_REPLY)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    /* a burst of more than a century would wrap the deadlines */
    if ((uint64_t)(count - 1) * interval_us > UINT64_MAX / HB_NS_PER_US / 2)
        return -EINVAL;
    uint64_t start = hb_now_ns();
    for (int i = 0; i < count; i++) {
        if (i > 0)
            sleep_until(start + (uint64_t)i * interval_us * HB_NS_PER_US);
        int rc = send_one(a, family, addr, flags, 0);
        if (rc < 0)
            return rc;
    }
    return count;
}

int hb_announcer_probe(hb_announcer *a, int family, const uint8_t *addr)
{
    if (a == NULL || addr == NULL || (family != AF_INET && family != AF_INET6))
        return -EINVAL;
    return send_one(a, family, addr, 0, 1);
}
