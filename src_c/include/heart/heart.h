/*
 * heart.h - the one public C header of libheart.
 *
 * libheart is Heart's C core: the wire codec (wire format v1, see
 * docs/protocol.md), the keyring (HMAC-SHA256 and AES-256-GCM through
 * OpenSSL's libcrypto), and the heartbeat engine, which runs in a thread of
 * its own and never touches Python.
 *
 * Conventions:
 *   - every name is prefixed hb_ / HB_;
 *   - handles are opaque;
 *   - functions that can fail return 0 (or a count) on success and -errno on
 *     failure; the engine keeps a short text naming the failing call
 *     (hb_engine_last_error) so that a user sees "setsockopt(IP_ADD_MEMBERSHIP)"
 *     and not just "EINVAL";
 *   - times are CLOCK_MONOTONIC nanoseconds (hb_now_ns) unless a name says _us;
 *   - nothing here includes Python.h.
 */
#ifndef HEART_HEART_H
#define HEART_HEART_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(HB_STATIC)
#define HB_API __attribute__((visibility("default")))
#else
#define HB_API
#endif

/* ------------------------------------------------------------------ */
/* Version and limits                                                 */
/* ------------------------------------------------------------------ */

#define HB_VERSION_MAJOR 0
#define HB_VERSION_MINOR 1
#define HB_VERSION_PATCH 0

#define HB_WIRE_VERSION 1
#define HB_WIRE_MAGIC 0x48525442u /* "HRTB" */
#define HB_WIRE_HEADER_LEN 40     /* fixed header, see docs/protocol.md */
#define HB_WIRE_TAG_LEN 16        /* HMAC-SHA256 truncated to 128 bits, or GCM tag */
#define HB_PAYLOAD_MAX 1176 /* state messages: 1176 + 56 + 8 (UDP) + 40 (IPv6) = 1280, the IPv6 minimum MTU */
#define HB_HEARTBEAT_PAYLOAD_MAX 128 /* the digest a heartbeat carries */
#define HB_PACKET_MAX (HB_WIRE_HEADER_LEN + HB_PAYLOAD_MAX + HB_WIRE_TAG_LEN)
#define HB_KEY_LEN 32 /* both algorithms take 256-bit keys */
#define HB_MAX_KEYS 8 /* keys installed at once in one keyring */
#define HB_MAX_LINKS 8
#define HB_MAX_PEERS 256
#define HB_IFNAME_MAX 16
#define HB_ERRMSG_MAX 256

/* Message types (wire byte 5). */
enum hb_msg_type {
    HB_MSG_HEARTBEAT = 1,
    HB_MSG_STATE = 2,
    HB_MSG_LEAVE = 3,
};

/* Authentication algorithms (wire byte 6); chosen per key. */
enum hb_auth_alg {
    HB_AUTH_HMAC_SHA256 = 1, /* payload in clear, tag = HMAC-SHA256[0:16] */
    HB_AUTH_AES256_GCM = 2,  /* payload encrypted, tag = GCM tag */
};

/* Why a packet was rejected.  Codec functions return -HB_REJ_x (these are not
 * errno values; they are small positive numbers distinct from 0). */
enum hb_reject {
    HB_REJ_MALFORMED = 1,     /* too short, bad magic/version/type/length */
    HB_REJ_WRONG_CLUSTER = 2, /* cluster id is not ours */
    HB_REJ_UNKNOWN_NODE = 3,  /* sender id is not a configured peer */
    HB_REJ_UNKNOWN_KEY = 4,   /* key id not installed (or wrong algorithm) */
    HB_REJ_BAD_TAG = 5,       /* authentication failed */
    HB_REJ_REPLAY = 6,        /* old generation, or sequence already seen */
    HB_REJ_COUNT = 7          /* number of slots in counter arrays (0 unused) */
};

/* Name of a rejection cause: "malformed", "bad_tag", ... ("?" if unknown). */
HB_API const char *hb_reject_name(int cause);

/* The raw-frame backend libheart was built with: "linux", "none", ... */
HB_API const char *hb_backend(void);

/* The cryptographic library libheart runs with, as that library reports it
 * at run time: OpenSSL_version(OPENSSL_VERSION), e.g. "OpenSSL 3.0.11 19 Sep
 * 2023".  A static string; never NULL. */
HB_API const char *hb_crypto_library(void);

/* CLOCK_MONOTONIC in nanoseconds. */
HB_API uint64_t hb_now_ns(void);

/* ------------------------------------------------------------------ */
/* Keyring                                                            */
/* ------------------------------------------------------------------ */

/* A set of keys, each with an id (0..255) and an algorithm.  Any installed key
 * is accepted on receive; one of them (the send key) is used to seal.  Keys
 * rotate without downtime: add the new key everywhere, switch the send key
 * everywhere, then remove the old one.  Not thread-safe by itself; the engine
 * serialises access to its own keyring. */
typedef struct hb_keyring hb_keyring;

HB_API int hb_keyring_new(hb_keyring **out);
HB_API void hb_keyring_free(hb_keyring *kr);
/* key must be HB_KEY_LEN bytes.  -EINVAL: bad alg/len; -EEXIST: id in use;
 * -ENOSPC: HB_MAX_KEYS installed; -EIO: libcrypto refused. */
HB_API int hb_keyring_add(hb_keyring *kr, uint8_t key_id, int alg,
                          const uint8_t *key, size_t key_len);
HB_API int hb_keyring_remove(hb_keyring *kr, uint8_t key_id); /* -ENOENT */
HB_API int hb_keyring_set_send(hb_keyring *kr, uint8_t key_id); /* -ENOENT */
/* The send key id, or -ENOENT when no send key is set. */
HB_API int hb_keyring_send_id(const hb_keyring *kr);
HB_API int hb_keyring_count(const hb_keyring *kr);

/* ------------------------------------------------------------------ */
/* Wire codec (format v1)                                             */
/* ------------------------------------------------------------------ */

typedef struct hb_header {
    uint8_t version;     /* HB_WIRE_VERSION */
    uint8_t type;        /* enum hb_msg_type */
    uint8_t alg;         /* enum hb_auth_alg (filled by seal from the key) */
    uint8_t key_id;      /* filled by seal from the send key */
    uint32_t cluster_id;
    uint32_t node_id;    /* sender */
    uint64_t generation; /* grows at every start of the sender (persisted) */
    uint64_t seq;        /* grows with every message of one generation */
    uint32_t interval_us;/* the sender's heartbeat interval */
    uint16_t payload_len;
} hb_header;

/* Seal: write header + payload (encrypted under GCM) + tag into out using the
 * keyring's send key.  hdr->alg and hdr->key_id are set from the key.
 * Returns the packet length, -ENOENT (no send key), -EMSGSIZE (payload too
 * large or out too small), -EINVAL (bad type, node id 0 or seq 0), -EIO
 * (libcrypto).  payload may be out + HB_WIRE_HEADER_LEN (sealing in place).
 * AES-256-GCM nonces are derived from (generation, seq): a sender must never
 * reuse a generation, so the caller persists it (fsync) before starting. */
HB_API int hb_wire_seal(hb_keyring *kr, hb_header *hdr, const uint8_t *payload,
                        size_t payload_len, uint8_t *out, size_t out_cap);

/* Parse the clear header only (no authentication): structural checks.
 * Returns 0 or -HB_REJ_MALFORMED. */
HB_API int hb_wire_parse(const uint8_t *pkt, size_t len, hb_header *hdr);

/* Open: authenticate a packet whose header was parsed by hb_wire_parse, and
 * copy (GCM: decrypt) the payload into payload_out (capacity payload_cap,
 * at least hdr->payload_len).  Returns 0, -HB_REJ_UNKNOWN_KEY,
 * -HB_REJ_BAD_TAG, -HB_REJ_MALFORMED (payload_cap too small, or *hdr is not
 * the packet's own header).  Nothing is written to payload_out unless the tag
 * is good.  Not thread-safe on one keyring (it keeps a cache). */
HB_API int hb_wire_open(hb_keyring *kr, const hb_header *hdr,
                        const uint8_t *pkt, size_t len, uint8_t *payload_out,
                        size_t payload_cap);

/* Parse + cluster check + open.  Returns 0 or -HB_REJ_x.  After a successful
 * parse *hdr holds the claimed header even when a later check fails. */
HB_API int hb_wire_decode(hb_keyring *kr, uint32_t cluster_id,
                          const uint8_t *pkt, size_t len, hb_header *hdr,
                          uint8_t *payload_out, size_t payload_cap);

/* ------------------------------------------------------------------ */
/* Replay window (per peer; exposed for tests and the Python reference)  */
/* ------------------------------------------------------------------ */

#define HB_REPLAY_WINDOW 64

typedef struct hb_replay {
    uint64_t generation;
    uint64_t max_seq;   /* highest accepted sequence of this generation */
    uint64_t seen;      /* bit i set: max_seq - i was accepted */
    int valid;          /* 0 until the first accepted packet */
} hb_replay;

/* Would (generation, seq) be accepted?  0 yes, -HB_REJ_REPLAY no.  Does not
 * change the window: call after parse, before the (costly) tag check. */
HB_API int hb_replay_check(const hb_replay *r, uint64_t generation, uint64_t seq);
/* Record an authenticated (generation, seq).  Returns 1 when an established
 * window moves to a newer generation (a restart of the peer); 0 otherwise,
 * including the peer's first packet. */
HB_API int hb_replay_update(hb_replay *r, uint64_t generation, uint64_t seq);

/* ------------------------------------------------------------------ */
/* Failure detector (per peer; exposed for tests and bench)           */
/* ------------------------------------------------------------------ */

enum hb_detector_kind {
    HB_DETECTOR_FIXED = 0, /* heartbeat's warntime / deadtime */
    HB_DETECTOR_PHI = 1,   /* phi accrual (Hayashibara et al.) */
};

typedef struct hb_timing {
    uint32_t interval_us;  /* send period */
    uint32_t warntime_us;  /* silence after which a peer is "late" */
    uint32_t deadtime_us;  /* silence after which a peer is "down" (fixed) */
    uint32_t initdead_us;  /* after start: a never-heard peer is down after this */
    int detector;          /* enum hb_detector_kind */
    double phi_threshold;  /* phi: down when phi exceeds this (e.g. 8) */
    uint32_t phi_min_std_us;       /* phi: floor of the std deviation */
    uint32_t phi_acceptable_pause_us; /* phi: added to the mean */
    uint32_t phi_window;   /* phi: inter-arrival samples kept (<= 1024) */
    uint32_t phi_min_samples; /* phi: fixed deadtime rules until this many */
} hb_timing;

/* Fill t with defaults for a given interval: warntime 2x, deadtime 4x,
 * initdead 2x deadtime, fixed detector; for phi: threshold 8, min std
 * interval/4 (at least 100 us), window 256, min samples 16. */
HB_API void hb_timing_defaults(hb_timing *t, uint32_t interval_us);
/* 0 or -EINVAL (interval 0, warntime >= deadtime, deadtime < interval, ...). */
HB_API int hb_timing_validate(const hb_timing *t);

#define HB_DETECTOR_WINDOW_MAX 1024

typedef struct hb_detector {
    hb_timing t;
    double phi_z;           /* z-score at which phi == threshold */
    uint64_t last_ns;       /* last arrival (0: never) */
    uint32_t n;             /* samples in the window */
    uint32_t head;
    double sum, sumsq;      /* over the window, in microseconds */
    uint32_t samples[HB_DETECTOR_WINDOW_MAX]; /* inter-arrivals, us */
} hb_detector;

HB_API int hb_detector_init(hb_detector *d, const hb_timing *t);
/* A heartbeat arrived at now_ns (first copy of a sequence only). */
HB_API void hb_detector_heartbeat(hb_detector *d, uint64_t now_ns);
/* Current suspicion: phi (0 when no history; +inf allowed).  For
 * information: decisions use hb_detector_down_at, which follows deadtime
 * until phi_min_samples samples exist. */
HB_API double hb_detector_phi(const hb_detector *d, uint64_t now_ns);
/* Monotonic time at which the peer becomes late / down if nothing more
 * arrives (never heard: 0). */
HB_API uint64_t hb_detector_late_at(const hb_detector *d);
HB_API uint64_t hb_detector_down_at(const hb_detector *d);
/* Mean and standard deviation of the inter-arrival window, microseconds. */
HB_API void hb_detector_stats(const hb_detector *d, double *mean_us, double *std_us);

/* ------------------------------------------------------------------ */
/* Engine                                                             */
/* ------------------------------------------------------------------ */

typedef struct hb_engine hb_engine;

typedef struct hb_engine_config {
    uint32_t cluster_id;
    uint32_t node_id;      /* nonzero */
    uint64_t generation;   /* caller persists it and grows it at every start */
    hb_timing timing;
    int realtime_priority; /* 0: normal scheduling; 1..99: SCHED_FIFO */
    int lock_memory;       /* nonzero: mlockall(MCL_CURRENT|MCL_FUTURE) */
    uint32_t event_capacity; /* events queued for Python; 0: 4096 */
    uint32_t spin_us;      /* wake this early before a send tick and spin to
                              it: trades CPU for on-time sends when the
                              platform's timer wake-ups are late; 0: off;
                              at most interval / 2 */
} hb_engine_config;

HB_API void hb_engine_config_defaults(hb_engine_config *c);

enum hb_link_kind {
    HB_LINK_UNICAST = 0,   /* to each peer's address on this link */
    HB_LINK_MULTICAST = 1, /* to a group (IPv4 or IPv6) */
    HB_LINK_BROADCAST = 2, /* to an IPv4 broadcast address */
};

typedef struct hb_link_config {
    int kind;               /* enum hb_link_kind */
    const char *bind_addr;  /* numeric local address ("0.0.0.0", "::", "192.0.2.1") */
    uint16_t port;          /* UDP port to bind and to send to */
    const char *dest_addr;  /* multicast group / broadcast address; NULL for unicast */
    const char *ifname;     /* interface (multicast, SO_BINDTODEVICE); NULL: any */
    int ttl;                /* multicast TTL / hop limit; 0: 1 */
    int loop;               /* multicast loopback (tests on one host) */
} hb_link_config;

HB_API int hb_engine_new(const hb_engine_config *cfg, hb_engine **out);
/* Stops the thread if running (sending a leave message), frees everything. */
HB_API void hb_engine_free(hb_engine *e);
/* Text naming the last failing call, e.g. "link 0 (unicast 192.0.2.1 port
 * 694): bind(): Address already in use".  Valid until the next call on e. */
HB_API const char *hb_engine_last_error(const hb_engine *e);

/* Key management while running (serialised with the engine thread). */
HB_API int hb_engine_add_key(hb_engine *e, uint8_t key_id, int alg,
                             const uint8_t *key, size_t key_len);
HB_API int hb_engine_remove_key(hb_engine *e, uint8_t key_id);
HB_API int hb_engine_set_send_key(hb_engine *e, uint8_t key_id);

/* Links: before start only (-EBUSY after).  *link_id gets 0, 1, ... */
HB_API int hb_engine_add_link(hb_engine *e, const hb_link_config *lc, int *link_id);
/* The UDP port a link is bound to (useful after binding port 0). */
HB_API int hb_engine_link_port(hb_engine *e, int link_id);

/* Peers: any time.  -EEXIST, -ENOSPC, -EINVAL (node 0 or our own id). */
HB_API int hb_engine_add_peer(hb_engine *e, uint32_t node_id);
HB_API int hb_engine_remove_peer(hb_engine *e, uint32_t node_id);
/* A peer's address on a unicast link (numeric host; port 0: the link's). */
HB_API int hb_engine_set_peer_addr(hb_engine *e, uint32_t node_id, int link_id,
                                   const char *addr, uint16_t port);

/* The payload every heartbeat carries (<= HB_HEARTBEAT_PAYLOAD_MAX). */
HB_API int hb_engine_set_payload(hb_engine *e, const uint8_t *p, size_t len);
/* Send a state message now, on every link; to_node 0 = all peers, else only
 * that peer on unicast links.  len <= HB_PAYLOAD_MAX. */
HB_API int hb_engine_send_state(hb_engine *e, uint32_t to_node,
                                const uint8_t *p, size_t len);

/* -EINVAL after a stop with leave: peers ignore that generation from then
 * on, so a new start needs a new engine with a new generation. */
HB_API int hb_engine_start(hb_engine *e);
/* Sends a leave message on every link (if leave != 0), joins the thread;
 * without leave, the engine may be started again. */
HB_API int hb_engine_stop(hb_engine *e, int leave);
HB_API int hb_engine_running(const hb_engine *e);

/* Debug hook for tests and the stall self-check: the engine thread sleeps
 * usec before its next iteration, as if it had not been scheduled. */
HB_API int hb_engine_debug_stall(hb_engine *e, uint32_t usec);

/* ---- events ---- */

enum hb_event_kind {
    HB_EV_PEER_UP = 1,      /* node; value = generation */
    HB_EV_PEER_LATE = 2,    /* node; value = silence so far, us */
    HB_EV_PEER_DOWN = 3,    /* node; value = silence, us; reason */
    HB_EV_PEER_RESTART = 4, /* node; value = new generation */
    HB_EV_LINK_UP = 5,      /* node, link */
    HB_EV_LINK_DOWN = 6,    /* node, link; value = silence, us */
    HB_EV_PAYLOAD = 7,      /* node; data = new heartbeat payload */
    HB_EV_STATE = 8,        /* node, link; data = state message */
    HB_EV_STALL = 9,        /* value = how late the engine woke, us */
    HB_EV_REJECT = 10,      /* reason = cause; node = claimed sender; link;
                               value = total rejected for this cause */
    HB_EV_WARNING = 11,     /* reason = enum hb_warning; value = errno */
    HB_EV_OVERFLOW = 12,    /* value = events dropped since the last one */
};

enum hb_down_reason {
    HB_DOWN_TIMEOUT = 1,   /* deadtime / phi threshold */
    HB_DOWN_LEAVE = 2,     /* leave message */
    HB_DOWN_INITDEAD = 3,  /* never heard within initdead */
};

enum hb_warning {
    HB_WARN_REALTIME = 1,  /* could not set SCHED_FIFO */
    HB_WARN_MLOCK = 2,     /* could not mlockall */
    HB_WARN_SEND = 3,      /* a send failed on a link (rate-limited) */
    HB_WARN_RECV = 4,      /* a receive failed on a link (rate-limited) */
};

typedef struct hb_event {
    uint16_t kind;       /* enum hb_event_kind */
    uint16_t reason;
    int16_t link;        /* -1 when not about one link */
    uint16_t data_len;
    uint32_t node_id;
    uint64_t time_ns;    /* CLOCK_MONOTONIC when it happened */
    uint64_t value;
    uint8_t data[HB_PAYLOAD_MAX];
} hb_event;

/* A file descriptor that is readable while events are queued (eventfd on
 * Linux, a pipe elsewhere).  Owned by the engine. */
HB_API int hb_engine_event_fd(const hb_engine *e);
/* Move up to max queued events into out; returns how many.  Also clears the
 * fd's readiness when the queue is empty. */
HB_API int hb_engine_drain(hb_engine *e, hb_event *out, int max);

/* ---- statistics ---- */

enum hb_peer_state {
    HB_PEER_UNKNOWN = 0,   /* not heard yet, initdead not over */
    HB_PEER_UP = 1,
    HB_PEER_LATE = 2,
    HB_PEER_DOWN = 3,
};

typedef struct hb_link_stats {
    int up;
    uint64_t last_arrival_ns;  /* 0: never */
    uint64_t received;         /* accepted on this link */
    uint64_t lost;             /* sequence gaps seen on this link */
} hb_link_stats;

typedef struct hb_peer_stats {
    uint32_t node_id;
    int state;                 /* enum hb_peer_state */
    uint64_t generation;
    uint64_t last_seq;
    uint64_t last_arrival_ns;  /* 0: never */
    uint64_t received;         /* distinct sequences accepted */
    uint32_t interval_us;      /* as the peer announced it */
    double phi;
    double mean_us, std_us;    /* inter-arrival window */
    int n_links;
    hb_link_stats link[HB_MAX_LINKS];
} hb_peer_stats;

HB_API int hb_engine_peer_count(hb_engine *e);
/* Stats of the index-th peer (0..count-1), or of node_id via _by_node. */
HB_API int hb_engine_peer_stats(hb_engine *e, int index, hb_peer_stats *out);
HB_API int hb_engine_peer_stats_by_node(hb_engine *e, uint32_t node_id,
                                        hb_peer_stats *out);

typedef struct hb_counters {
    uint64_t sent;            /* packets sent (all links) */
    uint64_t send_errors;
    uint64_t heartbeats_sent; /* ticks on which a heartbeat went out */
    uint64_t received;        /* datagrams read */
    uint64_t accepted;        /* authenticated and fresh */
    uint64_t own;             /* our own packets looped back (ignored) */
    uint64_t rejected[HB_REJ_COUNT]; /* by cause; [0] unused */
    uint64_t stalls;
    uint64_t max_stall_us;
    uint64_t missed_ticks;    /* send deadlines skipped after a stall */
    uint64_t events_dropped;
    uint64_t loop_iterations;
} hb_counters;

HB_API int hb_engine_counters(hb_engine *e, hb_counters *out);

/* Lateness of recent sends (how long after its CLOCK_MONOTONIC deadline each
 * heartbeat went out), oldest first, in microseconds.  Copies up to max of
 * the last HB_LATENESS_RING; returns how many. */
#define HB_LATENESS_RING 16384
HB_API int hb_engine_send_lateness(hb_engine *e, uint32_t *out_us, int max);

/* ------------------------------------------------------------------ */
/* Raw frames: gratuitous ARP, neighbour advertisements (IP takeover)  */
/* ------------------------------------------------------------------ */

/* Ethernet II frames without FCS.  Every field is written byte by byte in
 * network order, so the builders give the same bytes on any host.  Frames
 * shorter than HB_ETH_ZLEN (ARP: 42 bytes) are padded with zeros to it, the
 * shortest frame Ethernet carries.  docs/announce.md has the layouts. */
#define HB_ETH_ALEN 6
#define HB_ETH_HLEN 14
#define HB_ETH_ZLEN 60
#define HB_FRAME_ARP_LEN 60   /* ARP over Ethernet, padded */
#define HB_FRAME_NA_LEN 86    /* 14 + 40 (IPv6) + 24 (NA) + 8 (target ll option) */
#define HB_FRAME_NS_LEN 86    /* 78 when the source is :: (no source ll option) */
#define HB_FRAME_MAX 128      /* room for every frame the builders make */

/* Frame builders: platform-neutral, into the caller's buffer; return the
 * frame length, -ENOSPC (cap too small) or -EINVAL (a NULL pointer, a MAC
 * that is zero or a group address, an address that cannot be claimed or
 * asked for: IPv4 0.0.0.0, 255.255.255.255 or multicast; IPv6 :: or
 * multicast). */

/* Gratuitous ARP for ip.  Request form (reply == 0, what arping -U and
 * keepalived send; an RFC 5227 ARP announcement): op 1, sender = target = ip,
 * sender hw = mac, target hw 00:00:00:00:00:00.  Reply form (reply != 0):
 * op 2, sender = target = ip, target hw = mac (the sender's own: Linux counts
 * an ARP reply as gratuitous only when target hw equals sender hw, and only
 * then lets it override a neighbour entry younger than locktime).  Both go to
 * ff:ff:ff:ff:ff:ff from mac. */
HB_API int hb_frame_garp(uint8_t *buf, size_t cap, const uint8_t mac[6],
                         const uint8_t ip[4], int reply);

/* ARP request "who has target_ip" from mac, to broadcast.  sender_ip
 * 0.0.0.0 makes an RFC 5227 ARP probe (Linux answers it for an address it
 * has configured, with a unicast reply to mac). */
HB_API int hb_frame_arp_probe(uint8_t *buf, size_t cap, const uint8_t mac[6],
                              const uint8_t sender_ip[4],
                              const uint8_t target_ip[4]);

/* Unsolicited neighbour advertisement (RFC 4861 4.4): ICMPv6 type 136,
 * override set, solicited 0, router 0, target ip6, option 2 (target
 * link-layer address) = mac; IPv6 source ip6, destination ff02::1 (Ethernet
 * 33:33:00:00:00:01), hop limit 255, ICMPv6 checksum over the pseudo-header. */
HB_API int hb_frame_unsolicited_na(uint8_t *buf, size_t cap, const uint8_t mac[6],
                                   const uint8_t ip6[16]);
/* The same with the router flag set when router != 0 (a node that forwards). */
HB_API int hb_frame_na(uint8_t *buf, size_t cap, const uint8_t mac[6],
                       const uint8_t ip6[16], int router);

/* Neighbour solicitation (RFC 4861 4.3) for target6, to its solicited-node
 * multicast group ff02::1:ffXX:XXXX (Ethernet 33:33:ff:XX:XX:XX), hop limit
 * 255.  src6 may be :: (as in duplicate address detection): then there is no
 * source link-layer option, and an owner of target6 answers with an NA to
 * all nodes; otherwise option 1 = mac is included. */
HB_API int hb_frame_ns(uint8_t *buf, size_t cap, const uint8_t mac[6],
                       const uint8_t src6[16], const uint8_t target6[16]);

enum hb_claim_kind {
    HB_CLAIM_ARP_REQUEST = 1,
    HB_CLAIM_ARP_REPLY = 2,
    HB_CLAIM_NA = 3,
};

/* What a frame says about who has an address. */
typedef struct hb_claim {
    int family;          /* AF_INET or AF_INET6 (<sys/socket.h>) */
    uint8_t addr[16];    /* the address claimed (4 bytes used for IPv4) */
    uint8_t mac[6];      /* the MAC that claims it: ARP sender hw / NA target
                            link-layer option, else the Ethernet source */
    uint8_t eth_src[6];
    int kind;            /* enum hb_claim_kind */
    int flags;           /* NA: its R/S/O bits (0x80 router, 0x40 solicited,
                            0x20 override); ARP: 0 */
} hb_claim;

/* Untrusted bytes (a frame off the wire, Ethernet II, trailing padding
 * allowed; no VLAN tag).  0 and *out filled for: an ARP packet for IPv4 over
 * Ethernet (htype 1, ptype 0x0800, lengths 6 and 4), op request or reply,
 * with a sender address other than 0.0.0.0; or an ICMPv6 neighbour
 * advertisement with IPv6 next header 58 (no extension headers), hop limit
 * 255, code 0, a correct checksum, at least 24 bytes, a target that is not
 * multicast, solicited 0 when sent to a multicast address, options of
 * nonzero length that fit, and a target link-layer option (if any) of
 * exactly 8 bytes.  -EINVAL otherwise (*out untouched); never reads past
 * len; frame may be NULL when len is 0. */
HB_API int hb_frame_parse_claim(const uint8_t *frame, size_t len, hb_claim *out);

/* The raw-frame handle of the platform backend (libdnet's eth_open /
 * eth_send / eth_close is the model): src_c/platform/linux/ uses an AF_PACKET
 * socket; platform/none answers -ENOSYS.  One handle may send from several
 * threads at once; receive from one thread at a time. */
typedef struct hb_eth hb_eth;

/* -ENODEV: no such interface; -EPERM (or -EACCES): no CAP_NET_RAW;
 * -ENOTSUP: not an Ethernet interface (loopback, tun, ...); -ENOSYS: a
 * backend without raw frames; -EINVAL: NULL or an empty name. */
HB_API int hb_eth_open(const char *ifname, hb_eth **out);
/* Text naming the call that made the last hb_eth_open() of this thread fail,
 * e.g. "socket(AF_PACKET, SOCK_RAW)"; "" after a success. */
HB_API const char *hb_eth_open_failed_call(void);
/* Send one whole frame (Ethernet header included) on the interface.  Does
 * not block on a full queue (-EAGAIN / -ENOBUFS); -ENETDOWN when the
 * interface is down; -EINVAL when len < HB_ETH_HLEN. */
HB_API int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len);
/* Non-blocking: 0 and one frame in buf (*len bytes; a longer frame is cut to
 * cap), or -EAGAIN when nothing waits.  Only ARP frames and ICMPv6 neighbour
 * advertisements that arrived on the interface come through (a kernel
 * filter on Linux): no frames this host sent, no VLAN-tagged frames. */
HB_API int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len);
/* Pollable for hb_eth_recv.  Call hb_eth_recv until -EAGAIN before polling
 * again: a backend may read several frames at once (BPF hands out a buffer
 * of them), and frames it already holds do not keep the fd readable. */
HB_API int hb_eth_fd(const hb_eth *h);
/* The interface's MAC address, as read at open. */
HB_API int hb_eth_hwaddr(const hb_eth *h, uint8_t mac[6]);
HB_API int hb_eth_ifindex(const hb_eth *h);
HB_API void hb_eth_close(hb_eth *h);

/* ---- the announcer: an hb_eth plus a preallocated frame buffer ---- */

typedef struct hb_announcer hb_announcer;

/* Errors of hb_eth_open. */
HB_API int hb_announcer_open(const char *ifname, hb_announcer **out);
HB_API void hb_announcer_close(hb_announcer *a);

#define HB_ANNOUNCE_REPLY 1   /* IPv4: the gratuitous ARP reply form */
#define HB_ANNOUNCE_ROUTER 2  /* IPv6: set the router flag of the NA */

/* Announce addr (4 bytes for AF_INET, 16 for AF_INET6) as ours: count
 * frames (gratuitous ARP, or unsolicited NA), the first at once, then one
 * every interval_us on CLOCK_MONOTONIC absolute deadlines (so the spacing
 * does not drift with the time each send takes).  Returns count, or -errno
 * from the first send that failed (the frames before it went out), or
 * -EINVAL (count < 1, unknown family or flag, REPLY with AF_INET6, ROUTER
 * with AF_INET, an address that cannot be announced).  Blocks for
 * (count - 1) * interval_us: call it without the GIL.  Thread-safe: each
 * frame is built and sent under the announcer's lock, which is not held
 * while waiting, so calls from several threads interleave. */
HB_API int hb_announce(hb_announcer *a, int family, const uint8_t *addr,
                       int count, uint32_t interval_us, int flags);

/* Ask the segment who has addr, so that its owners answer (the answers come
 * through hb_eth_recv and parse as claims).  IPv4: an RFC 5227 ARP probe
 * (sender 0.0.0.0, target addr): Linux, and RFC 5227 hosts, answer it for a
 * configured address with an ARP reply, and a sender address of 0 changes no
 * neighbour table on the segment.  A probe that carried addr as sender
 * would be a gratuitous ARP, which nobody answers.  IPv6: a neighbour
 * solicitation from :: for addr (as in duplicate address detection), which
 * owners answer with an NA (override set) to all nodes.  0 or -errno. */
HB_API int hb_announcer_probe(hb_announcer *a, int family, const uint8_t *addr);

/* The announcer's handle: its fd, MAC, ifindex, and hb_eth_recv. */
HB_API hb_eth *hb_announcer_eth(hb_announcer *a);

#ifdef __cplusplus
}
#endif
#endif /* HEART_HEART_H */
