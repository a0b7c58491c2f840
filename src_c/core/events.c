/*
 * events.c - the queue of events from the engine thread to Python.
 *
 * A ring of fixed-size hb_event slots: the engine thread writes a slot in
 * place (hb_event_begin / hb_event_commit) and publishes it with a release
 * store of the tail; hb_engine_drain copies slots out and releases them
 * with a store of the head.  One fd (eventfd / pipe) is signalled once per
 * loop iteration that produced events, so an asyncio loop wakes once per
 * batch.  When the ring is full, events are counted as dropped and an
 * HB_EV_OVERFLOW event carrying the count goes out as soon as there is room.
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int hb_events_init(hb_engine *e)
{
    uint32_t cap = e->cfg.event_capacity ? e->cfg.event_capacity : 4096;
    if (cap < 16)
        cap = 16;
    e->ring = calloc(cap, sizeof *e->ring);
    if (!e->ring)
        return -ENOMEM;
    e->ring_cap = cap;
    atomic_init(&e->ev_head, 0);
    atomic_init(&e->ev_tail, 0);
    int rc = hb_notify_open(&e->evfd);
    if (rc < 0) {
        free(e->ring);
        e->ring = NULL;
        return rc;
    }
    return 0;
}

void hb_events_free(hb_engine *e)
{
    hb_notify_close(&e->evfd);
    free(e->ring);
    e->ring = NULL;
}

static hb_event *slot(hb_engine *e, int kind, uint32_t node, int link,
                      uint64_t now)
{
    uint64_t tail = atomic_load_explicit(&e->ev_tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&e->ev_head, memory_order_acquire);
    if (tail - head >= e->ring_cap)
        return NULL;
    hb_event *ev = &e->ring[tail % e->ring_cap];
    ev->kind = (uint16_t)kind;
    ev->reason = 0;
    ev->link = (int16_t)link;
    ev->data_len = 0;
    ev->node_id = node;
    ev->time_ns = now;
    ev->value = 0;
    return ev;
}

static void publish(hb_engine *e)
{
    uint64_t tail = atomic_load_explicit(&e->ev_tail, memory_order_relaxed);
    atomic_store_explicit(&e->ev_tail, tail + 1, memory_order_release);
    e->ev_pushed = 1;
}

hb_event *hb_event_begin(hb_engine *e, int kind, uint32_t node, int link,
                         uint64_t now)
{
    if (e->ev_dropped_pending) {
        /* Room for the overflow notice and this event? */
        uint64_t tail = atomic_load_explicit(&e->ev_tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&e->ev_head, memory_order_acquire);
        if (e->ring_cap - (tail - head) >= 2) {
            hb_event *ov = slot(e, HB_EV_OVERFLOW, 0, -1, now);
            ov->value = e->ev_dropped_pending;
            e->ev_dropped_pending = 0;
            publish(e);
        }
    }
    hb_event *ev = e->ev_dropped_pending ? NULL : slot(e, kind, node, link, now);
    if (!ev) {
        e->ev_dropped_pending++;
        e->c.events_dropped++;
    }
    return ev;
}

void hb_event_commit(hb_engine *e)
{
    publish(e);
}

void hb_event_emit(hb_engine *e, int kind, uint32_t node, int link,
                   uint64_t now, int reason, uint64_t value)
{
    hb_event *ev = hb_event_begin(e, kind, node, link, now);
    if (!ev)
        return;
    ev->reason = (uint16_t)reason;
    ev->value = value;
    hb_event_commit(e);
}

void hb_events_flush(hb_engine *e)
{
    if (e->ev_pushed) {
        e->ev_pushed = 0;
        hb_notify_signal(&e->evfd);
    }
}

int hb_engine_event_fd(const hb_engine *e)
{
    return e->evfd.rfd;
}

int hb_engine_drain(hb_engine *e, hb_event *out, int max)
{
    if (max <= 0)
        return 0;
    pthread_mutex_lock(&e->drain_mu);
    /* Clear first: anything published after this signals again. */
    hb_notify_clear(&e->evfd);
    uint64_t head = atomic_load_explicit(&e->ev_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&e->ev_tail, memory_order_acquire);
    uint64_t avail = tail - head;
    int n = avail < (uint64_t)max ? (int)avail : max;
    for (int i = 0; i < n; i++) {
        const hb_event *src = &e->ring[(head + (uint64_t)i) % e->ring_cap];
        /* Copy only the used part of the data. */
        memcpy(&out[i], src, offsetof(hb_event, data) + src->data_len);
    }
    atomic_store_explicit(&e->ev_head, head + (uint64_t)n, memory_order_release);
    if ((uint64_t)n < avail)
        hb_notify_signal(&e->evfd); /* more left: stay readable */
    pthread_mutex_unlock(&e->drain_mu);
    return n;
}
