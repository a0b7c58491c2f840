/*
 * engine.c - the engine's API: creation, configuration, peers, keys,
 * start/stop and statistics.  Every call here takes e->mu; the thread itself
 * lives in engine_loop.c.
 */
#include "engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK(e) pthread_mutex_lock(&(e)->mu)
#define UNLOCK(e) pthread_mutex_unlock(&(e)->mu)

int hb_engine_fail(hb_engine *e, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof e->err, fmt, ap);
    va_end(ap);
    return rc;
}

const char *hb_engine_last_error(const hb_engine *e)
{
    return e->err;
}

void hb_engine_config_defaults(hb_engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->cluster_id = 1;
    c->node_id = 1;
    c->generation = 1;
    hb_timing_defaults(&c->timing, 100000);
}

static int init_mutex(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return -ENOMEM;
#if defined(_POSIX_THREAD_PRIO_INHERIT) && _POSIX_THREAD_PRIO_INHERIT > 0
    (void)pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
#endif
    int rc = pthread_mutex_init(mu, &a);
    pthread_mutexattr_destroy(&a);
    return rc ? -rc : 0;
}

int hb_engine_new(const hb_engine_config *cfg, hb_engine **out)
{
    *out = NULL;
    if (!cfg || cfg->node_id == 0)
        return -EINVAL;
    if (hb_timing_validate(&cfg->timing) < 0)
        return -EINVAL;
    if (cfg->realtime_priority < 0 || cfg->realtime_priority > 99)
        return -EINVAL;
    if (cfg->spin_us > cfg->timing.interval_us / 2)
        return -EINVAL;
    hb_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->cfg = *cfg;
    /* Every fd starts closed, so a failure half-way frees cleanly. */
    e->wake.rfd = e->wake.wfd = -1;
    e->evfd.rfd = e->evfd.wfd = -1;
    for (int i = 0; i < HB_RX_BATCH; i++) {
        e->rxd[i].buf = e->rxbuf[i];
        e->rxd[i].cap = sizeof e->rxbuf[i];
    }
    int rc = init_mutex(&e->mu);
    if (rc < 0) {
        free(e);
        return rc;
    }
    pthread_mutex_init(&e->drain_mu, NULL);
    rc = hb_keyring_new(&e->kr);
    if (rc == 0)
        rc = hb_events_init(e);
    if (rc == 0)
        rc = hb_notify_open(&e->wake);
    if (rc < 0) {
        hb_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void hb_engine_free(hb_engine *e)
{
    if (!e)
        return;
    if (e->running)
        hb_engine_stop(e, 1);
    for (int i = 0; i < e->n_links; i++)
        hb_link_close(&e->links[i]);
    for (int i = 0; i < e->n_peers; i++)
        free(e->peers[i]);
    hb_loop_close(e->loop);
    hb_notify_close(&e->wake);
    hb_events_free(e);
    if (e->kr)
        hb_keyring_free(e->kr);
    pthread_mutex_destroy(&e->drain_mu);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int hb_engine_add_key(hb_engine *e, uint8_t key_id, int alg, const uint8_t *key,
                      size_t key_len)
{
    LOCK(e);
    int rc = hb_keyring_add(e->kr, key_id, alg, key, key_len);
    if (rc < 0)
        hb_engine_fail(e, rc, "add key %u: %s", (unsigned)key_id,
                       rc == -EEXIST   ? "a key with this id is installed"
                       : rc == -ENOSPC ? "too many keys installed"
                       : rc == -EINVAL ? "needs a 32-byte key and algorithm"
                                         " hmac-sha256 or aes-256-gcm"
                                       : "libcrypto refused the key");
    UNLOCK(e);
    return rc;
}

int hb_engine_remove_key(hb_engine *e, uint8_t key_id)
{
    LOCK(e);
    int rc = hb_keyring_remove(e->kr, key_id);
    if (rc < 0)
        hb_engine_fail(e, rc, "remove key %u: no such key", (unsigned)key_id);
    UNLOCK(e);
    return rc;
}

int hb_engine_set_send_key(hb_engine *e, uint8_t key_id)
{
    LOCK(e);
    int rc = hb_keyring_set_send(e->kr, key_id);
    if (rc < 0)
        hb_engine_fail(e, rc, "set send key %u: no such key", (unsigned)key_id);
    UNLOCK(e);
    return rc;
}

int hb_engine_add_link(hb_engine *e, const hb_link_config *lc, int *link_id)
{
    LOCK(e);
    int rc;
    if (e->running) {
        rc = hb_engine_fail(e, -EBUSY, "add link: the engine is running;"
                            " links are added before start");
    } else if (e->n_links >= HB_MAX_LINKS) {
        rc = hb_engine_fail(e, -ENOSPC, "add link: at most %d links", HB_MAX_LINKS);
    } else {
        int id = e->n_links;
        rc = hb_link_open(e, &e->links[id], id, lc);
        if (rc == 0) {
            e->n_links++;
            if (link_id)
                *link_id = id;
        }
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_link_port(hb_engine *e, int link_id)
{
    LOCK(e);
    int rc = (link_id < 0 || link_id >= e->n_links) ? -ENOENT
                                                    : e->links[link_id].port;
    UNLOCK(e);
    return rc;
}

struct hb_peer *hb_engine_find_peer(hb_engine *e, uint32_t node_id)
{
    for (int i = 0; i < e->n_peers; i++)
        if (e->peer_ids[i] == node_id)
            return e->peers[i];
    return NULL;
}

int hb_engine_add_peer(hb_engine *e, uint32_t node_id)
{
    LOCK(e);
    int rc = 0;
    if (node_id == 0 || node_id == e->cfg.node_id) {
        rc = hb_engine_fail(e, -EINVAL, "add peer %u: %s", node_id,
                            node_id ? "that is this node's own id"
                                    : "node id 0 is reserved");
    } else if (hb_engine_find_peer(e, node_id)) {
        rc = hb_engine_fail(e, -EEXIST, "add peer %u: already a peer", node_id);
    } else if (e->n_peers >= HB_MAX_PEERS) {
        rc = hb_engine_fail(e, -ENOSPC, "add peer %u: at most %d peers", node_id,
                            HB_MAX_PEERS);
    } else {
        struct hb_peer *p = calloc(1, sizeof *p);
        if (!p) {
            rc = -ENOMEM;
        } else {
            p->node_id = node_id;
            p->state = HB_PEER_UNKNOWN;
            p->added_ns = hb_now_ns();
            hb_detector_init(&p->det, &e->cfg.timing);
            e->peers[e->n_peers] = p;
            e->peer_ids[e->n_peers] = node_id;
            e->n_peers++;
            /* The thread must look at the initdead deadline of this peer. */
            e->next_check_ns = 0;
            if (e->running)
                hb_notify_signal(&e->wake);
        }
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_remove_peer(hb_engine *e, uint32_t node_id)
{
    LOCK(e);
    int rc = hb_engine_fail(e, -ENOENT, "remove peer %u: no such peer", node_id);
    for (int i = 0; i < e->n_peers; i++) {
        if (e->peer_ids[i] != node_id)
            continue;
        free(e->peers[i]);
        e->n_peers--;
        e->peers[i] = e->peers[e->n_peers];
        e->peer_ids[i] = e->peer_ids[e->n_peers];
        rc = 0;
        break;
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_set_peer_addr(hb_engine *e, uint32_t node_id, int link_id,
                            const char *addr, uint16_t port)
{
    LOCK(e);
    int rc = 0;
    struct hb_peer *p = hb_engine_find_peer(e, node_id);
    if (!p) {
        rc = hb_engine_fail(e, -ENOENT, "peer %u: no such peer", node_id);
    } else if (link_id < 0 || link_id >= e->n_links) {
        rc = hb_engine_fail(e, -ENOENT, "peer %u: no link %d", node_id, link_id);
    } else if (e->links[link_id].kind != HB_LINK_UNICAST) {
        rc = hb_engine_fail(e, -EINVAL, "peer %u: %s is not a unicast link; peers"
                            " are reached through its group or broadcast address",
                            node_id, e->links[link_id].desc);
    } else {
        struct hb_peer_link *pl = &p->link[link_id];
        struct sockaddr_storage ss;
        socklen_t len;
        uint16_t prt = port ? port : e->links[link_id].port;
        if (hb_addr_parse(addr, prt, &ss, &len) < 0) {
            rc = hb_engine_fail(e, -EINVAL, "peer %u on link %d: %s is not a"
                                " numeric IPv4 or IPv6 address", node_id, link_id,
                                addr ? addr : "(none)");
        } else if (ss.ss_family != e->links[link_id].family) {
            rc = hb_engine_fail(e, -EAFNOSUPPORT, "peer %u on link %d: address %s"
                                " is not of the link's family", node_id, link_id,
                                addr);
        } else {
            pl->addr = ss;
            pl->addrlen = len;
            pl->has_addr = 1;
        }
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_set_payload(hb_engine *e, const uint8_t *p, size_t len)
{
    if (len > HB_HEARTBEAT_PAYLOAD_MAX)
        return hb_engine_fail(e, -EMSGSIZE, "heartbeat payload of %zu bytes:"
                              " at most %d", len, HB_HEARTBEAT_PAYLOAD_MAX);
    LOCK(e);
    if (len)
        memcpy(e->payload, p, len);
    e->payload_len = len;
    UNLOCK(e);
    return 0;
}

int hb_engine_send_state(hb_engine *e, uint32_t to_node, const uint8_t *p,
                         size_t len)
{
    if (len > HB_PAYLOAD_MAX)
        return hb_engine_fail(e, -EMSGSIZE, "state message of %zu bytes: at most %d",
                              len, HB_PAYLOAD_MAX);
    LOCK(e);
    int rc;
    if (to_node && !hb_engine_find_peer(e, to_node)) {
        rc = hb_engine_fail(e, -ENOENT, "send state to %u: no such peer", to_node);
    } else {
        rc = hb_link_send_all(e, HB_MSG_STATE, to_node, p, len, hb_now_ns());
        if (rc < 0)
            hb_engine_fail(e, rc, "send state message: %s",
                           rc == -ENOENT ? "no send key is set" : strerror(-rc));
        hb_events_flush(e);
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_start(hb_engine *e)
{
    LOCK(e);
    int rc = 0;
    if (e->running) {
        rc = hb_engine_fail(e, -EBUSY, "start: already running");
    } else if (e->left) {
        rc = hb_engine_fail(e, -EINVAL, "start: this engine sent a leave message"
                            " for generation %llu, which peers now ignore; start"
                            " a new engine with a new generation",
                            (unsigned long long)e->cfg.generation);
    } else if (e->n_links == 0) {
        rc = hb_engine_fail(e, -EINVAL, "start: no links configured");
    } else if (hb_keyring_send_id(e->kr) < 0) {
        rc = hb_engine_fail(e, -ENOKEY, "start: no send key (add a key and make"
                            " it the send key)");
    }
    if (rc == 0 && !e->loop) {
        rc = hb_loop_open(&e->loop);
        for (int i = 0; rc == 0 && i < e->n_links; i++)
            rc = hb_loop_add(e->loop, e->links[i].fd, i);
        if (rc == 0)
            rc = hb_loop_add(e->loop, e->wake.rfd, HB_MAX_LINKS);
        if (rc < 0) {
            hb_loop_close(e->loop);
            e->loop = NULL;
            hb_engine_fail(e, rc, "start: event loop setup failed: %s", strerror(-rc));
        }
    }
    if (rc == 0) {
        atomic_store(&e->stop_req, 0);
        e->start_ns = hb_now_ns();
        e->next_send_ns = e->start_ns;
        e->next_check_ns = 0;
        int err = pthread_create(&e->thread, NULL, hb_engine_thread, e);
        if (err)
            rc = hb_engine_fail(e, -err, "start: pthread_create(): %s", strerror(err));
        else
            e->running = 1;
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_stop(hb_engine *e, int leave)
{
    LOCK(e);
    if (!e->running) {
        UNLOCK(e);
        return hb_engine_fail(e, -EINVAL, "stop: not running");
    }
    atomic_store(&e->stop_req, leave ? 1 : 2);
    hb_notify_signal(&e->wake);
    UNLOCK(e);
    pthread_join(e->thread, NULL);
    LOCK(e);
    e->running = 0;
    UNLOCK(e);
    return 0;
}

int hb_engine_running(const hb_engine *e)
{
    return e->running;
}

int hb_engine_debug_stall(hb_engine *e, uint32_t usec)
{
    atomic_store(&e->debug_stall_us, usec);
    hb_notify_signal(&e->wake);
    return 0;
}

int hb_engine_peer_count(hb_engine *e)
{
    LOCK(e);
    int n = e->n_peers;
    UNLOCK(e);
    return n;
}

static void fill_stats(hb_engine *e, const struct hb_peer *p, hb_peer_stats *o)
{
    uint64_t now = hb_now_ns();
    memset(o, 0, sizeof *o);
    o->node_id = p->node_id;
    o->state = p->state;
    o->generation = p->replay.valid ? p->replay.generation : 0;
    o->last_seq = p->replay.valid ? p->replay.max_seq : 0;
    o->last_arrival_ns = p->det.last_ns;
    o->received = p->received;
    o->interval_us = p->interval_us;
    o->phi = hb_detector_phi(&p->det, now);
    hb_detector_stats(&p->det, &o->mean_us, &o->std_us);
    o->n_links = e->n_links;
    for (int i = 0; i < e->n_links; i++) {
        o->link[i].up = p->link[i].up;
        o->link[i].last_arrival_ns = p->link[i].last_ns;
        o->link[i].received = p->link[i].received;
        o->link[i].lost = p->link[i].lost;
    }
}

int hb_engine_peer_stats(hb_engine *e, int index, hb_peer_stats *out)
{
    LOCK(e);
    int rc = -ENOENT;
    if (index >= 0 && index < e->n_peers) {
        fill_stats(e, e->peers[index], out);
        rc = 0;
    }
    UNLOCK(e);
    return rc;
}

int hb_engine_peer_stats_by_node(hb_engine *e, uint32_t node_id, hb_peer_stats *out)
{
    LOCK(e);
    struct hb_peer *p = hb_engine_find_peer(e, node_id);
    if (p)
        fill_stats(e, p, out);
    UNLOCK(e);
    return p ? 0 : -ENOENT;
}

int hb_engine_counters(hb_engine *e, hb_counters *out)
{
    LOCK(e);
    *out = e->c;
    UNLOCK(e);
    return 0;
}

int hb_engine_send_lateness(hb_engine *e, uint32_t *out_us, int max)
{
    LOCK(e);
    uint64_t n = e->lateness_n < HB_LATENESS_RING ? e->lateness_n : HB_LATENESS_RING;
    if ((uint64_t)max < n)
        n = (uint64_t)max;
    uint64_t first = e->lateness_n - n;
    for (uint64_t i = 0; i < n; i++)
        out_us[i] = e->lateness[(first + i) % HB_LATENESS_RING];
    UNLOCK(e);
    return (int)n;
}

const char *hb_backend(void)
{
    return hb_platform_name();
}
