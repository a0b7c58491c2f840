/*
 * engine.h - the engine's private structures, shared by engine.c (the API
 * and its locking), engine_loop.c (the thread), link.c (sockets) and
 * events.c (the queue to Python).
 *
 * Locking: e->mu protects everything except the event ring.  The engine
 * thread holds it while it works and releases it while it waits, so API
 * calls from Python block for at most one iteration.  The mutex uses
 * priority inheritance where the platform has it, so a realtime engine
 * thread is never held up behind a preempted normal-priority caller.
 * The event ring is single-producer (engine thread, under mu) and
 * single-consumer (hb_engine_drain, under drain_mu), lock-free between them.
 */
#ifndef HEART_ENGINE_H
#define HEART_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"
#include "platform.h"

#define HB_RX_BATCH 64
#define HB_RX_BUDGET 512 /* datagrams per link per iteration */

struct hb_link {
    int kind;
    int fd;
    int family;
    uint16_t port;
    struct sockaddr_storage dest; /* multicast group / broadcast address */
    socklen_t destlen;
    char desc[96];                /* "link 0 (multicast 239.0.0.1:694)" */
    uint64_t last_warn_ns;
};

struct hb_peer_link {
    int up;
    int has_addr;
    uint64_t generation; /* generation last_seq belongs to */
    uint64_t last_seq;
    uint64_t last_ns;
    uint64_t received;
    uint64_t lost;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

struct hb_peer {
    uint32_t node_id;
    int state;
    uint64_t added_ns;
    uint64_t left_generation; /* a leave was accepted for this generation */
    uint64_t received;
    uint32_t interval_us;
    hb_replay replay;
    hb_detector det;
    uint16_t payload_len;
    int have_payload;
    uint8_t payload[HB_HEARTBEAT_PAYLOAD_MAX];
    struct hb_peer_link link[HB_MAX_LINKS];
};

struct hb_engine {
    hb_engine_config cfg;
    pthread_mutex_t mu;
    hb_keyring *kr;

    struct hb_link links[HB_MAX_LINKS];
    int n_links;

    struct hb_peer *peers[HB_MAX_PEERS];
    uint32_t peer_ids[HB_MAX_PEERS]; /* parallel to peers, for a quick scan */
    int n_peers;

    uint8_t payload[HB_HEARTBEAT_PAYLOAD_MAX];
    size_t payload_len;
    uint64_t seq; /* last sequence used */

    /* thread */
    pthread_t thread;
    int running;
    int left; /* a leave message went out: this generation is over */
    atomic_int stop_req; /* 0 run, 1 stop + leave, 2 stop quietly */
    atomic_uint debug_stall_us;
    hb_notify wake;
    hb_loop *loop;
    uint64_t start_ns;
    uint64_t next_send_ns;
    uint64_t next_check_ns; /* earliest detector deadline (lower bound) */

    /* events */
    hb_event *ring;
    uint32_t ring_cap;
    atomic_uint_fast64_t ev_head; /* consumer */
    atomic_uint_fast64_t ev_tail; /* producer */
    uint64_t ev_dropped_pending;
    int ev_pushed; /* this iteration: signal the fd */
    hb_notify evfd;
    pthread_mutex_t drain_mu;
    uint64_t rej_event_ns[HB_REJ_COUNT];

    hb_counters c;
    uint32_t lateness[HB_LATENESS_RING];
    uint64_t lateness_n;

    char err[HB_ERRMSG_MAX];

    /* buffers (engine thread only) */
    uint8_t tx[HB_PACKET_MAX];
    hb_dgram txd[HB_MAX_PEERS];
    hb_dgram rxd[HB_RX_BATCH];
    uint8_t rxbuf[HB_RX_BATCH][HB_PACKET_MAX + 1];
    uint8_t plbuf[HB_PAYLOAD_MAX];
};

/* engine.c */
HB_HIDDEN int hb_engine_fail(hb_engine *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
HB_HIDDEN struct hb_peer *hb_engine_find_peer(hb_engine *e, uint32_t node_id);

/* link.c */
HB_HIDDEN int hb_link_open(hb_engine *e, struct hb_link *l, int id,
                           const hb_link_config *lc);
HB_HIDDEN void hb_link_close(struct hb_link *l);
HB_HIDDEN int hb_addr_parse(const char *host, uint16_t port,
                            struct sockaddr_storage *ss, socklen_t *len);
/* Seal and send one message on every link (to_node 0: every peer). */
HB_HIDDEN int hb_link_send_all(hb_engine *e, int type, uint32_t to_node,
                               const uint8_t *p, size_t len, uint64_t now);

/* events.c */
HB_HIDDEN int hb_events_init(hb_engine *e);
HB_HIDDEN void hb_events_free(hb_engine *e);
HB_HIDDEN hb_event *hb_event_begin(hb_engine *e, int kind, uint32_t node,
                                   int link, uint64_t now);
HB_HIDDEN void hb_event_commit(hb_engine *e);
HB_HIDDEN void hb_event_emit(hb_engine *e, int kind, uint32_t node, int link,
                             uint64_t now, int reason, uint64_t value);
HB_HIDDEN void hb_events_flush(hb_engine *e);

/* engine_loop.c */
HB_HIDDEN void *hb_engine_thread(void *arg);

#endif /* HEART_ENGINE_H */
