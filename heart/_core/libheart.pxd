# The C API of libheart, declared once (src_c/include/heart/heart.h).
from libc.stdint cimport uint8_t, uint16_t, int16_t, uint32_t, uint64_t


cdef extern from "heart/heart.h" nogil:
    enum:
        HB_WIRE_VERSION
        HB_WIRE_HEADER_LEN
        HB_WIRE_TAG_LEN
        HB_PAYLOAD_MAX
        HB_HEARTBEAT_PAYLOAD_MAX
        HB_PACKET_MAX
        HB_KEY_LEN
        HB_MAX_KEYS
        HB_MAX_LINKS
        HB_MAX_PEERS
        HB_LATENESS_RING
        HB_REPLAY_WINDOW

    enum:
        HB_MSG_HEARTBEAT
        HB_MSG_STATE
        HB_MSG_LEAVE

    enum:
        HB_AUTH_HMAC_SHA256
        HB_AUTH_AES256_GCM

    enum:
        HB_REJ_MALFORMED
        HB_REJ_WRONG_CLUSTER
        HB_REJ_UNKNOWN_NODE
        HB_REJ_UNKNOWN_KEY
        HB_REJ_BAD_TAG
        HB_REJ_REPLAY
        HB_REJ_COUNT

    const char *hb_reject_name(int cause)
    const char *hb_backend()
    const char *hb_crypto_library()
    uint64_t hb_now_ns()

    ctypedef struct hb_keyring:
        pass

    int hb_keyring_new(hb_keyring **out)
    void hb_keyring_free(hb_keyring *kr)
    int hb_keyring_add(hb_keyring *kr, uint8_t key_id, int alg,
                       const uint8_t *key, size_t key_len)
    int hb_keyring_remove(hb_keyring *kr, uint8_t key_id)
    int hb_keyring_set_send(hb_keyring *kr, uint8_t key_id)
    int hb_keyring_send_id(const hb_keyring *kr)
    int hb_keyring_count(const hb_keyring *kr)

    ctypedef struct hb_header:
        uint8_t version
        uint8_t type
        uint8_t alg
        uint8_t key_id
        uint32_t cluster_id
        uint32_t node_id
        uint64_t generation
        uint64_t seq
        uint32_t interval_us
        uint16_t payload_len

    int hb_wire_seal(hb_keyring *kr, hb_header *hdr, const uint8_t *payload,
                     size_t payload_len, uint8_t *out, size_t out_cap)
    int hb_wire_parse(const uint8_t *pkt, size_t len, hb_header *hdr)
    int hb_wire_open(hb_keyring *kr, const hb_header *hdr, const uint8_t *pkt,
                     size_t len, uint8_t *payload_out, size_t payload_cap)
    int hb_wire_decode(hb_keyring *kr, uint32_t cluster_id, const uint8_t *pkt,
                       size_t len, hb_header *hdr, uint8_t *payload_out,
                       size_t payload_cap)

    enum:
        HB_DETECTOR_FIXED
        HB_DETECTOR_PHI

    ctypedef struct hb_timing:
        uint32_t interval_us
        uint32_t warntime_us
        uint32_t deadtime_us
        uint32_t initdead_us
        int detector
        double phi_threshold
        uint32_t phi_min_std_us
        uint32_t phi_acceptable_pause_us
        uint32_t phi_window
        uint32_t phi_min_samples

    void hb_timing_defaults(hb_timing *t, uint32_t interval_us)
    int hb_timing_validate(const hb_timing *t)

    ctypedef struct hb_engine:
        pass

    ctypedef struct hb_engine_config:
        uint32_t cluster_id
        uint32_t node_id
        uint64_t generation
        hb_timing timing
        int realtime_priority
        int lock_memory
        uint32_t event_capacity
        uint32_t spin_us

    void hb_engine_config_defaults(hb_engine_config *c)

    enum:
        HB_LINK_UNICAST
        HB_LINK_MULTICAST
        HB_LINK_BROADCAST

    ctypedef struct hb_link_config:
        int kind
        const char *bind_addr
        uint16_t port
        const char *dest_addr
        const char *ifname
        int ttl
        int loop

    int hb_engine_new(const hb_engine_config *cfg, hb_engine **out)
    void hb_engine_free(hb_engine *e)
    const char *hb_engine_last_error(const hb_engine *e)
    int hb_engine_add_key(hb_engine *e, uint8_t key_id, int alg,
                          const uint8_t *key, size_t key_len)
    int hb_engine_remove_key(hb_engine *e, uint8_t key_id)
    int hb_engine_set_send_key(hb_engine *e, uint8_t key_id)
    int hb_engine_add_link(hb_engine *e, const hb_link_config *lc, int *link_id)
    int hb_engine_link_port(hb_engine *e, int link_id)
    int hb_engine_add_peer(hb_engine *e, uint32_t node_id)
    int hb_engine_remove_peer(hb_engine *e, uint32_t node_id)
    int hb_engine_set_peer_addr(hb_engine *e, uint32_t node_id, int link_id,
                                const char *addr, uint16_t port)
    int hb_engine_set_payload(hb_engine *e, const uint8_t *p, size_t len)
    int hb_engine_send_state(hb_engine *e, uint32_t to_node, const uint8_t *p,
                             size_t len)
    int hb_engine_start(hb_engine *e)
    int hb_engine_stop(hb_engine *e, int leave)
    int hb_engine_running(const hb_engine *e)
    int hb_engine_debug_stall(hb_engine *e, uint32_t usec)

    enum:
        HB_EV_PEER_UP
        HB_EV_PEER_LATE
        HB_EV_PEER_DOWN
        HB_EV_PEER_RESTART
        HB_EV_LINK_UP
        HB_EV_LINK_DOWN
        HB_EV_PAYLOAD
        HB_EV_STATE
        HB_EV_STALL
        HB_EV_REJECT
        HB_EV_WARNING
        HB_EV_OVERFLOW

    enum:
        HB_DOWN_TIMEOUT
        HB_DOWN_LEAVE
        HB_DOWN_INITDEAD

    enum:
        HB_WARN_REALTIME
        HB_WARN_MLOCK
        HB_WARN_SEND
        HB_WARN_RECV

    ctypedef struct hb_event:
        uint16_t kind
        uint16_t reason
        int16_t link
        uint16_t data_len
        uint32_t node_id
        uint64_t time_ns
        uint64_t value
        uint8_t data[1176]

    int hb_engine_event_fd(const hb_engine *e)
    int hb_engine_drain(hb_engine *e, hb_event *out, int max)

    enum:
        HB_PEER_UNKNOWN
        HB_PEER_UP
        HB_PEER_LATE
        HB_PEER_DOWN

    ctypedef struct hb_link_stats:
        int up
        uint64_t last_arrival_ns
        uint64_t received
        uint64_t lost

    ctypedef struct hb_peer_stats:
        uint32_t node_id
        int state
        uint64_t generation
        uint64_t last_seq
        uint64_t last_arrival_ns
        uint64_t received
        uint32_t interval_us
        double phi
        double mean_us
        double std_us
        int n_links
        hb_link_stats link[8]

    int hb_engine_peer_count(hb_engine *e)
    int hb_engine_peer_stats(hb_engine *e, int index, hb_peer_stats *out)
    int hb_engine_peer_stats_by_node(hb_engine *e, uint32_t node_id,
                                     hb_peer_stats *out)

    ctypedef struct hb_counters:
        uint64_t sent
        uint64_t send_errors
        uint64_t heartbeats_sent
        uint64_t received
        uint64_t accepted
        uint64_t own
        uint64_t rejected[7]
        uint64_t stalls
        uint64_t max_stall_us
        uint64_t missed_ticks
        uint64_t events_dropped
        uint64_t loop_iterations

    int hb_engine_counters(hb_engine *e, hb_counters *out)
    int hb_engine_send_lateness(hb_engine *e, uint32_t *out_us, int max)

    # ---- raw frames and the announcer (IP takeover) ----
    enum:
        HB_ETH_ALEN
        HB_ETH_HLEN
        HB_ETH_ZLEN
        HB_FRAME_ARP_LEN
        HB_FRAME_NA_LEN
        HB_FRAME_NS_LEN
        HB_FRAME_MAX

    enum:
        HB_CLAIM_ARP_REQUEST
        HB_CLAIM_ARP_REPLY
        HB_CLAIM_NA

    enum:
        HB_ANNOUNCE_REPLY
        HB_ANNOUNCE_ROUTER

    int hb_frame_garp(uint8_t *buf, size_t cap, const uint8_t *mac,
                      const uint8_t *ip, int reply)
    int hb_frame_arp_probe(uint8_t *buf, size_t cap, const uint8_t *mac,
                           const uint8_t *sender_ip, const uint8_t *target_ip)
    int hb_frame_unsolicited_na(uint8_t *buf, size_t cap, const uint8_t *mac,
                                const uint8_t *ip6)
    int hb_frame_na(uint8_t *buf, size_t cap, const uint8_t *mac,
                    const uint8_t *ip6, int router)
    int hb_frame_ns(uint8_t *buf, size_t cap, const uint8_t *mac,
                    const uint8_t *src6, const uint8_t *target6)

    ctypedef struct hb_claim:
        int family
        uint8_t addr[16]
        uint8_t mac[6]
        uint8_t eth_src[6]
        int kind
        int flags

    int hb_frame_parse_claim(const uint8_t *frame, size_t len, hb_claim *out)

    ctypedef struct hb_eth:
        pass

    int hb_eth_open(const char *ifname, hb_eth **out)
    const char *hb_eth_open_failed_call()
    int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len)
    int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len)
    int hb_eth_fd(const hb_eth *h)
    int hb_eth_hwaddr(const hb_eth *h, uint8_t *mac)
    int hb_eth_ifindex(const hb_eth *h)
    void hb_eth_close(hb_eth *h)

    ctypedef struct hb_announcer:
        pass

    int hb_announcer_open(const char *ifname, hb_announcer **out)
    void hb_announcer_close(hb_announcer *a)
    int hb_announce(hb_announcer *a, int family, const uint8_t *addr, int count,
                    uint32_t interval_us, int flags)
    int hb_announcer_probe(hb_announcer *a, int family, const uint8_t *addr)
    hb_eth *hb_announcer_eth(hb_announcer *a)
