/*
 * engine_loop.c - the engine thread.
 *
 * One iteration: wait (mutex released) until a socket is readable or the
 * next deadline (send tick or detector deadline) passes; then, holding the
 * mutex: note a stall if we woke later than warntime after the deadline,
 * send the heartbeat if it is due (deadlines are start + k * interval on
 * CLOCK_MONOTONIC, so sends never drift), read every readable socket in
 * batches, run the detectors, and signal Python once if events were queued.
 * After a stall every socket is read before the detectors run, so what
 * arrived while we were not scheduled counts as heard.
 */
#include "engine.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define NEVER UINT64_MAX

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void setup_thread(hb_engine *e)
{
    uint64_t now = hb_now_ns();
    hb_platform_thread_setup();
    if (e->cfg.realtime_priority > 0) {
        struct sched_param sp;
        memset(&sp, 0, sizeof sp);
        sp.sched_priority = e->cfg.realtime_priority;
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (err)
            hb_event_emit(e, HB_EV_WARNING, 0, -1, now, HB_WARN_REALTIME,
                          (uint64_t)err);
    }
    if (e->cfg.lock_memory) {
        if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
            hb_event_emit(e, HB_EV_WARNING, 0, -1, now, HB_WARN_MLOCK,
                          (uint64_t)errno);
    }
}

static void reject(hb_engine *e, int cause, uint32_t node, int link, uint64_t now)
{
    e->c.rejected[cause]++;
    /* One event per cause per 100 ms at most: a flood of forged packets
     * must not flood Python too.  The counters are always exact. */
    if (!e->rej_event_ns[cause] || now - e->rej_event_ns[cause] >= 100000000ull) {
        e->rej_event_ns[cause] = now;
        hb_event_emit(e, HB_EV_REJECT, node, link, now, cause, e->c.rejected[cause]);
    }
}

static void peer_set_up(hb_engine *e, struct hb_peer *p, uint64_t now)
{
    if (p->state == HB_PEER_UP)
        return;
    int prev = p->state;
    p->state = HB_PEER_UP;
    hb_event_emit(e, HB_EV_PEER_UP, p->node_id, -1, now, prev, p->replay.generation);
}

static void peer_set_down(hb_engine *e, struct hb_peer *p, uint64_t now, int reason)
{
    uint64_t silence = p->det.last_ns ? (now - p->det.last_ns) / HB_NS_PER_US : 0;
    p->state = HB_PEER_DOWN;
    hb_event_emit(e, HB_EV_PEER_DOWN, p->node_id, -1, now, reason, silence);
}

/* An event carrying a message's payload (value = its sequence). */
static void emit_data(hb_engine *e, int kind, const struct hb_peer *p, int li,
                      const hb_header *h, const uint8_t *payload, uint64_t now)
{
    hb_event *ev = hb_event_begin(e, kind, p->node_id, li, now);
    if (!ev)
        return;
    ev->value = h->seq;
    ev->data_len = h->payload_len;
    memcpy(ev->data, payload, h->payload_len);
    hb_event_commit(e);
}

/* A message that passed parse, cluster, peer, replay and tag checks. */
static void accept_msg(hb_engine *e, struct hb_peer *p, int li, const hb_header *h,
                       const uint8_t *payload, int dup, uint64_t now)
{
    struct hb_peer_link *pl = &p->link[li];
    e->c.accepted++;

    if (!dup) {
        if (hb_replay_update(&p->replay, h->generation, h->seq)) {
            /* A new incarnation: its history says nothing about this one. */
            hb_detector_init(&p->det, &e->cfg.timing);
            hb_event_emit(e, HB_EV_PEER_RESTART, p->node_id, li, now, 0,
                          h->generation);
            p->have_payload = 0;
        }
        p->received++;
        p->interval_us = h->interval_us;
    }

    /* Per-link view: arrivals, gaps, up/down. */
    if (pl->generation != h->generation) {
        pl->generation = h->generation;
        pl->last_seq = 0;
    }
    if (pl->last_seq && h->seq > pl->last_seq + 1)
        pl->lost += h->seq - pl->last_seq - 1;
    if (h->seq > pl->last_seq)
        pl->last_seq = h->seq;
    pl->received++;
    pl->last_ns = now;
    if (!pl->up) {
        pl->up = 1;
        hb_event_emit(e, HB_EV_LINK_UP, p->node_id, li, now, 0, 0);
        e->next_check_ns = min_u64(e->next_check_ns,
                                   now + (uint64_t)e->cfg.timing.deadtime_us * HB_NS_PER_US);
    }
    if (dup)
        return;

    switch (h->type) {
    case HB_MSG_HEARTBEAT:
        if (p->left_generation == h->generation)
            return; /* a late copy from before its leave message */
        if (p->state == HB_PEER_DOWN) {
            /* Back after an outage: the silence is not an inter-arrival
             * time, and would blunt the phi detector for a whole window. */
            hb_detector_init(&p->det, &e->cfg.timing);
        }
        hb_detector_heartbeat(&p->det, now);
        e->next_check_ns = min_u64(e->next_check_ns, hb_detector_late_at(&p->det));
        peer_set_up(e, p, now);
        if (!p->have_payload || p->payload_len != h->payload_len ||
            memcmp(p->payload, payload, h->payload_len) != 0) {
            p->have_payload = 1;
            p->payload_len = h->payload_len;
            memcpy(p->payload, payload, h->payload_len);
            emit_data(e, HB_EV_PAYLOAD, p, li, h, payload, now);
        }
        break;
    case HB_MSG_STATE:
        emit_data(e, HB_EV_STATE, p, li, h, payload, now);
        break;
    case HB_MSG_LEAVE:
        p->left_generation = h->generation;
        peer_set_down(e, p, now, HB_DOWN_LEAVE);
        break;
    }
}

static void handle_packet(hb_engine *e, int li, const uint8_t *buf, size_t len,
                          size_t cap, uint64_t now)
{
    hb_header h;
    e->c.received++;
    if (len > cap || hb_wire_parse(buf, len, &h) < 0) {
        reject(e, HB_REJ_MALFORMED, 0, li, now);
        return;
    }
    if (h.cluster_id != e->cfg.cluster_id) {
        reject(e, HB_REJ_WRONG_CLUSTER, h.node_id, li, now);
        return;
    }
    if (h.node_id == e->cfg.node_id) {
        e->c.own++; /* our own multicast/broadcast looped back */
        return;
    }
    struct hb_peer *p = hb_engine_find_peer(e, h.node_id);
    if (!p) {
        reject(e, HB_REJ_UNKNOWN_NODE, h.node_id, li, now);
        return;
    }
    /* Replay check before the (costlier) tag check.  A sequence the peer
     * window has seen may still be new on this link: the same packet goes
     * out on every link, and each copy is evidence that its link works. */
    int dup = 0;
    if (hb_replay_check(&p->replay, h.generation, h.seq) < 0) {
        struct hb_peer_link *pl = &p->link[li];
        uint64_t link_last = pl->generation == h.generation ? pl->last_seq : 0;
        int in_window = h.seq + HB_REPLAY_WINDOW > p->replay.max_seq;
        if (!(p->replay.valid && h.generation == p->replay.generation &&
              in_window && h.seq > link_last)) {
            reject(e, HB_REJ_REPLAY, h.node_id, li, now);
            return;
        }
        dup = 1;
    }
    int rc = hb_wire_open(e->kr, &h, buf, len, e->plbuf, sizeof e->plbuf);
    if (rc < 0) {
        reject(e, -rc, h.node_id, li, now);
        return;
    }
    accept_msg(e, p, li, &h, e->plbuf, dup, now);
}

static void read_link(hb_engine *e, int li, uint64_t now)
{
    struct hb_link *l = &e->links[li];
    int budget = HB_RX_BUDGET;
    while (budget > 0) {
        int n = hb_recv_batch(l->fd, e->rxd, HB_RX_BATCH);
        if (n < 0) {
            if (now - l->last_warn_ns >= HB_NS_PER_SEC || !l->last_warn_ns) {
                l->last_warn_ns = now;
                hb_event_emit(e, HB_EV_WARNING, 0, li, now, HB_WARN_RECV,
                              (uint64_t)-n);
            }
            return;
        }
        for (int i = 0; i < n; i++)
            handle_packet(e, li, e->rxd[i].buf, e->rxd[i].len, HB_PACKET_MAX, now);
        if (n < HB_RX_BATCH)
            return;
        budget -= n;
    }
}

/* Run the detectors at now; returns the next time they need to look. */
static uint64_t check_peers(hb_engine *e, uint64_t now)
{
    const hb_timing *t = &e->cfg.timing;
    uint64_t dead = (uint64_t)t->deadtime_us * HB_NS_PER_US;
    uint64_t next = NEVER;
    for (int i = 0; i < e->n_peers; i++) {
        struct hb_peer *p = e->peers[i];
        for (int li = 0; li < e->n_links; li++) {
            struct hb_peer_link *pl = &p->link[li];
            if (!pl->up)
                continue;
            if (now >= pl->last_ns + dead) {
                pl->up = 0;
                hb_event_emit(e, HB_EV_LINK_DOWN, p->node_id, li, now, 0,
                              (now - pl->last_ns) / HB_NS_PER_US);
            } else {
                next = min_u64(next, pl->last_ns + dead);
            }
        }
        if (p->state == HB_PEER_UNKNOWN) {
            uint64_t base = p->added_ns > e->start_ns ? p->added_ns : e->start_ns;
            uint64_t at = base + (uint64_t)t->initdead_us * HB_NS_PER_US;
            if (now >= at)
                peer_set_down(e, p, now, HB_DOWN_INITDEAD);
            else
                next = min_u64(next, at);
        } else if (p->state == HB_PEER_UP || p->state == HB_PEER_LATE) {
            uint64_t down_at = hb_detector_down_at(&p->det);
            uint64_t late_at = hb_detector_late_at(&p->det);
            if (now >= down_at) {
                peer_set_down(e, p, now, HB_DOWN_TIMEOUT);
                continue;
            }
            if (p->state == HB_PEER_UP && now >= late_at) {
                p->state = HB_PEER_LATE;
                hb_event_emit(e, HB_EV_PEER_LATE, p->node_id, -1, now, 0,
                              (now - p->det.last_ns) / HB_NS_PER_US);
            }
            next = min_u64(next, p->state == HB_PEER_UP ? late_at : down_at);
        }
    }
    return next;
}

static void send_heartbeat(hb_engine *e, uint64_t now)
{
    uint64_t interval = (uint64_t)e->cfg.timing.interval_us * HB_NS_PER_US;
    uint64_t late = now - e->next_send_ns;
    e->lateness[e->lateness_n % HB_LATENESS_RING] =
        late / HB_NS_PER_US > UINT32_MAX ? UINT32_MAX : (uint32_t)(late / HB_NS_PER_US);
    e->lateness_n++;
    int rc = hb_link_send_all(e, HB_MSG_HEARTBEAT, 0, e->payload, e->payload_len, now);
    if (rc == 0)
        e->c.heartbeats_sent++;
    /* Next deadline on the original grid; ticks that passed while we were
     * not running are skipped (and counted), never sent in a burst. */
    e->next_send_ns += interval;
    if (e->next_send_ns <= now) {
        uint64_t skipped = (now - e->next_send_ns) / interval + 1;
        e->c.missed_ticks += skipped;
        e->next_send_ns += skipped * interval;
    }
}

static void debug_stall(hb_engine *e)
{
    unsigned us = atomic_exchange(&e->debug_stall_us, 0);
    if (!us)
        return;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void *hb_engine_thread(void *arg)
{
    hb_engine *e = arg;
    int ready[HB_LOOP_MAX_FDS];
    uint64_t warn = (uint64_t)e->cfg.timing.warntime_us * HB_NS_PER_US;

    pthread_mutex_lock(&e->mu);
    setup_thread(e);
    /* The schedule starts now, not at hb_engine_start: thread creation and
     * mlockall of a large process can take tens of milliseconds, which
     * must not count as send lateness, missed ticks or a stall. */
    e->start_ns = e->next_send_ns = hb_now_ns();
    hb_events_flush(e);
    uint64_t spin = (uint64_t)e->cfg.spin_us * HB_NS_PER_US;
    for (;;) {
        uint64_t deadline = min_u64(e->next_send_ns - spin, e->next_check_ns);
        uint64_t send_at = e->next_send_ns; /* only this thread changes it */
        pthread_mutex_unlock(&e->mu);

        int n = hb_loop_wait(e->loop, deadline, ready, HB_LOOP_MAX_FDS);
        debug_stall(e);
        if (spin) {
            /* Woken inside the spin window: burn the rest of it, without
             * the lock, so the heartbeat goes out on its deadline even when
             * timer wake-ups come late. */
            uint64_t t = hb_now_ns();
            if (t < send_at && send_at - t <= spin)
                while (hb_now_ns() < send_at)
                    ;
        }

        pthread_mutex_lock(&e->mu);
        uint64_t now = hb_now_ns();
        e->c.loop_iterations++;
        if (atomic_load(&e->stop_req))
            break;
        /* The send tick is always at most one interval ahead, so waking
         * more than warntime after it means we were not scheduled. */
        int stalled = 0;
        if (now > e->next_send_ns && now - e->next_send_ns > warn) {
            uint64_t us = (now - e->next_send_ns) / HB_NS_PER_US;
            stalled = 1;
            e->c.stalls++;
            if (us > e->c.max_stall_us)
                e->c.max_stall_us = us;
            hb_event_emit(e, HB_EV_STALL, 0, -1, now, 0, us);
        }
        if (n < 0) {
            hb_event_emit(e, HB_EV_WARNING, 0, -1, now, HB_WARN_RECV, (uint64_t)-n);
            n = 0;
        }
        if (now >= e->next_send_ns)
            send_heartbeat(e, now);
        if (stalled) {
            for (int li = 0; li < e->n_links; li++)
                read_link(e, li, now);
            hb_notify_clear(&e->wake);
        } else {
            for (int i = 0; i < n; i++) {
                if (ready[i] == HB_MAX_LINKS)
                    hb_notify_clear(&e->wake);
                else if (ready[i] >= 0 && ready[i] < e->n_links)
                    read_link(e, ready[i], now);
            }
        }
        if (now >= e->next_check_ns)
            e->next_check_ns = check_peers(e, now);
        hb_events_flush(e);
    }
    if (atomic_load(&e->stop_req) == 1) {
        (void)hb_link_send_all(e, HB_MSG_LEAVE, 0, NULL, 0, hb_now_ns());
        e->left = 1;
    }
    hb_notify_clear(&e->wake);
    hb_events_flush(e);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
