/*
 * test_engine.c - two engines on loopback, driven through the public API
 * only.  CMake runs it against the platform backend and against the
 * portable (none) backend, so both loops pass the same contract.
 */
#include "hbtest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "heart/heart.h"

#define CLUSTER 77
#define INTERVAL_US 10000
#define DEADTIME_US 50000

static const uint8_t KEY1[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t KEY2[32] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                                 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static hb_engine *make(uint32_t node, uint64_t gen, int alg)
{
    hb_engine_config c;
    hb_engine *e = NULL;
    hb_engine_config_defaults(&c);
    c.cluster_id = CLUSTER;
    c.node_id = node;
    c.generation = gen;
    hb_timing_defaults(&c.timing, INTERVAL_US);
    c.timing.warntime_us = 25000;
    c.timing.deadtime_us = DEADTIME_US;
    c.timing.initdead_us = 200000;
    CHECK_EQ(hb_engine_new(&c, &e), 0);
    CHECK_EQ(hb_engine_add_key(e, 1, alg, KEY1, sizeof KEY1), 0);
    CHECK_EQ(hb_engine_set_send_key(e, 1), 0);
    hb_link_config lc = {HB_LINK_UNICAST, "127.0.0.1", 0, NULL, NULL, 0, 0};
    int id = -1;
    CHECK_EQ(hb_engine_add_link(e, &lc, &id), 0);
    CHECK_EQ(id, 0);
    return e;
}

static void pair(hb_engine *a, uint32_t na, hb_engine *b, uint32_t nb)
{
    CHECK_EQ(hb_engine_add_peer(a, nb), 0);
    CHECK_EQ(hb_engine_add_peer(b, na), 0);
    CHECK_EQ(hb_engine_set_peer_addr(a, nb, 0, "127.0.0.1",
                                     (uint16_t)hb_engine_link_port(b, 0)), 0);
    CHECK_EQ(hb_engine_set_peer_addr(b, na, 0, "127.0.0.1",
                                     (uint16_t)hb_engine_link_port(a, 0)), 0);
}

static hb_event evs[512];

/* Drain until an event of kind for node shows up or ms pass; returns the
 * monotonic time of the event, 0 if none. */
static uint64_t wait_event(hb_engine *e, int kind, uint32_t node, int ms, hb_event *out)
{
    uint64_t end = hb_now_ns() + (uint64_t)ms * 1000000ull;
    while (hb_now_ns() < end) {
        struct pollfd p = {hb_engine_event_fd(e), POLLIN, 0};
        (void)poll(&p, 1, 5);
        int n = hb_engine_drain(e, evs, 512);
        for (int i = 0; i < n; i++) {
            if (evs[i].kind == kind && (!node || evs[i].node_id == node)) {
                if (out)
                    *out = evs[i];
                return evs[i].time_ns;
            }
        }
    }
    return 0;
}

/* Start a (node 1) and b (node 2); b must hear a within a second. */
static void start_both(hb_engine *a, hb_engine *b)
{
    CHECK_EQ(hb_engine_start(a), 0);
    CHECK_EQ(hb_engine_start(b), 0);
    CHECK(wait_event(b, HB_EV_PEER_UP, 1, 1000, NULL) != 0);
}

static void test_find_each_other_and_down(void)
{
    hb_engine *a = make(1, 1, HB_AUTH_HMAC_SHA256);
    hb_engine *b = make(2, 1, HB_AUTH_HMAC_SHA256);
    pair(a, 1, b, 2);
    static const uint8_t digest[] = "digest-a";
    CHECK_EQ(hb_engine_set_payload(a, digest, sizeof digest), 0);
    CHECK_EQ(hb_engine_start(a), 0);
    CHECK_EQ(hb_engine_start(b), 0);
    hb_event ev;
    CHECK(wait_event(b, HB_EV_PEER_UP, 1, 1000, NULL) != 0);
    CHECK(wait_event(a, HB_EV_PEER_UP, 2, 1000, NULL) != 0);
    sleep_ms(100);
    hb_peer_stats st;
    CHECK_EQ(hb_engine_peer_stats_by_node(b, 1, &st), 0);
    CHECK_EQ(st.state, HB_PEER_UP);
    CHECK(st.received >= 5);
    CHECK_EQ(st.interval_us, INTERVAL_US);
    CHECK(st.link[0].up);
    /* The payload reached b. */
    CHECK_EQ(hb_engine_peer_stats_by_node(b, 1, &st), 0);

    /* Stop a without a leave message: b must see it down within
     * deadtime + one interval of a's last heartbeat. */
    CHECK_EQ(hb_engine_stop(a, 0), 0);
    uint64_t stopped = hb_now_ns();
    uint64_t down = wait_event(b, HB_EV_PEER_DOWN, 1, 1000, &ev);
    CHECK(down != 0);
    CHECK_EQ(ev.reason, HB_DOWN_TIMEOUT);
    CHECK(down - stopped <= (uint64_t)(DEADTIME_US + INTERVAL_US) * 1000ull);
    CHECK(ev.value >= DEADTIME_US && ev.value <= DEADTIME_US + INTERVAL_US + 5000);
    hb_engine_free(a);
    hb_engine_free(b);
}

static void test_leave_and_restart(void)
{
    hb_engine *a = make(1, 5, HB_AUTH_AES256_GCM);
    hb_engine *b = make(2, 1, HB_AUTH_AES256_GCM);
    pair(a, 1, b, 2);
    start_both(a, b);
    uint64_t t0 = hb_now_ns();
    CHECK_EQ(hb_engine_stop(a, 1), 0);
    hb_event ev;
    uint64_t down = wait_event(b, HB_EV_PEER_DOWN, 1, 1000, &ev);
    CHECK(down != 0);
    CHECK_EQ(ev.reason, HB_DOWN_LEAVE);
    CHECK(down - t0 < (uint64_t)INTERVAL_US * 1000ull); /* no waiting for deadtime */
    uint16_t port_b = (uint16_t)hb_engine_link_port(b, 0);
    hb_engine_free(a);

    /* The node restarts with a higher generation: its sequence starts
     * again from 1 and must not be taken for a replay. */
    hb_engine *a2 = make(1, 6, HB_AUTH_AES256_GCM);
    CHECK_EQ(hb_engine_add_peer(a2, 2), 0);
    CHECK_EQ(hb_engine_set_peer_addr(a2, 2, 0, "127.0.0.1", port_b), 0);
    CHECK_EQ(hb_engine_start(a2), 0);
    CHECK(wait_event(b, HB_EV_PEER_RESTART, 1, 1000, &ev) != 0);
    CHECK_EQ(ev.value, 6);
    hb_peer_stats st;
    sleep_ms(50);
    CHECK_EQ(hb_engine_peer_stats_by_node(b, 1, &st), 0);
    CHECK_EQ(st.state, HB_PEER_UP);
    CHECK_EQ(st.generation, 6);
    hb_engine_free(a2);
    hb_engine_free(b);
}

static int udp_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

static void test_rejections_counted(void)
{
    hb_engine *b = make(2, 1, HB_AUTH_HMAC_SHA256);
    CHECK_EQ(hb_engine_add_peer(b, 1), 0);
    CHECK_EQ(hb_engine_set_peer_addr(b, 1, 0, "127.0.0.1", 9), 0); /* discard */
    CHECK_EQ(hb_engine_start(b), 0);
    int fd = udp_to((uint16_t)hb_engine_link_port(b, 0));

    hb_keyring *kr, *other;
    CHECK_EQ(hb_keyring_new(&kr), 0);
    CHECK_EQ(hb_keyring_add(kr, 1, HB_AUTH_HMAC_SHA256, KEY1, 32), 0);
    CHECK_EQ(hb_keyring_set_send(kr, 1), 0);
    CHECK_EQ(hb_keyring_new(&other), 0);
    CHECK_EQ(hb_keyring_add(other, 1, HB_AUTH_HMAC_SHA256, KEY2, 32), 0);
    CHECK_EQ(hb_keyring_set_send(other, 1), 0);

    uint8_t pkt[HB_PACKET_MAX];
    hb_header h = {HB_WIRE_VERSION, HB_MSG_HEARTBEAT, 0, 0, CLUSTER, 1, 1, 1,
                   INTERVAL_US, 0};
    int n = hb_wire_seal(kr, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    CHECK(n > 0);
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* accepted */
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* replay */
    CHECK_EQ(send(fd, pkt, (size_t)n - 1, 0), n - 1); /* truncated */
    h.seq = 2;
    n = hb_wire_seal(kr, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    pkt[HB_WIRE_HEADER_LEN] ^= 0x01; /* tampered payload */
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);
    h.seq = 3;
    n = hb_wire_seal(other, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* forged: wrong key */
    h.seq = 4;
    h.cluster_id = CLUSTER + 1;
    n = hb_wire_seal(kr, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* wrong cluster */
    h.cluster_id = CLUSTER;
    h.node_id = 99;
    n = hb_wire_seal(kr, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* unknown node */
    CHECK_EQ(send(fd, "garbage", 7, 0), 7);       /* malformed */
    h.node_id = 1;
    h.seq = 5;
    n = hb_wire_seal(kr, &h, (const uint8_t *)"x", 1, pkt, sizeof pkt);
    CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);     /* accepted after all that */

    hb_counters c;
    uint64_t end = hb_now_ns() + 1000000000ull;
    do {
        sleep_ms(10);
        hb_engine_counters(b, &c);
    } while (c.received < 9 && hb_now_ns() < end);
    CHECK_EQ(c.received, 9);
    CHECK_EQ(c.accepted, 2);
    CHECK_EQ(c.rejected[HB_REJ_REPLAY], 1);
    CHECK_EQ(c.rejected[HB_REJ_MALFORMED], 2);
    CHECK_EQ(c.rejected[HB_REJ_BAD_TAG], 2);
    CHECK_EQ(c.rejected[HB_REJ_WRONG_CLUSTER], 1);
    CHECK_EQ(c.rejected[HB_REJ_UNKNOWN_NODE], 1);
    hb_peer_stats st;
    CHECK_EQ(hb_engine_peer_stats_by_node(b, 1, &st), 0);
    CHECK_EQ(st.last_seq, 5);
    CHECK_EQ(st.received, 2);
    /* A reject event was queued for Python, naming the cause. */
    hb_event ev;
    CHECK(wait_event(b, HB_EV_REJECT, 0, 200, &ev) != 0);
    close(fd);
    hb_keyring_free(kr);
    hb_keyring_free(other);
    hb_engine_free(b);
}

static void test_event_overflow_is_counted_and_reported(void)
{
    /* A Python side that does not drain: 64 payload changes into a queue of
     * 16 events.  The engine drops what does not fit, counts it, and says so
     * with an overflow event as soon as there is room again. */
    hb_engine_config c;
    hb_engine *b = NULL;
    hb_engine_config_defaults(&c);
    c.cluster_id = CLUSTER;
    c.node_id = 2;
    c.event_capacity = 16;
    hb_timing_defaults(&c.timing, 100000);
    CHECK_EQ(hb_engine_new(&c, &b), 0);
    CHECK_EQ(hb_engine_add_key(b, 1, HB_AUTH_HMAC_SHA256, KEY1, 32), 0);
    CHECK_EQ(hb_engine_set_send_key(b, 1), 0);
    hb_link_config lc = {HB_LINK_UNICAST, "127.0.0.1", 0, NULL, NULL, 0, 0};
    CHECK_EQ(hb_engine_add_link(b, &lc, NULL), 0);
    CHECK_EQ(hb_engine_add_peer(b, 1), 0);
    CHECK_EQ(hb_engine_set_peer_addr(b, 1, 0, "127.0.0.1", 9), 0);
    CHECK_EQ(hb_engine_start(b), 0);
    int fd = udp_to((uint16_t)hb_engine_link_port(b, 0));
    hb_keyring *kr;
    CHECK_EQ(hb_keyring_new(&kr), 0);
    CHECK_EQ(hb_keyring_add(kr, 1, HB_AUTH_HMAC_SHA256, KEY1, 32), 0);
    CHECK_EQ(hb_keyring_set_send(kr, 1), 0);
    uint8_t pkt[HB_PACKET_MAX];
    for (int i = 1; i <= 64; i++) {
        hb_header h = {HB_WIRE_VERSION, HB_MSG_HEARTBEAT, 0, 0, CLUSTER, 1, 1,
                       (uint64_t)i, 100000, 0};
        uint8_t digest = (uint8_t)i;
        int n = hb_wire_seal(kr, &h, &digest, 1, pkt, sizeof pkt);
        CHECK_EQ(send(fd, pkt, (size_t)n, 0), n);
    }
    hb_counters cn;
    uint64_t end = hb_now_ns() + 1000000000ull;
    do {
        sleep_ms(10);
        hb_engine_counters(b, &cn);
    } while (cn.accepted < 64 && hb_now_ns() < end);
    CHECK_EQ(cn.accepted, 64);
    CHECK(cn.events_dropped > 0);
    int n = hb_engine_drain(b, evs, 512);
    CHECK_EQ(n, 16);
    /* Room again: the next event is preceded by the overflow notice. */
    hb_header h = {HB_WIRE_VERSION, HB_MSG_HEARTBEAT, 0, 0, CLUSTER, 1, 1, 65,
                   100000, 0};
    uint8_t digest = 0xee;
    int len = hb_wire_seal(kr, &h, &digest, 1, pkt, sizeof pkt);
    CHECK_EQ(send(fd, pkt, (size_t)len, 0), len);
    hb_event ev;
    CHECK(wait_event(b, HB_EV_OVERFLOW, 0, 1000, &ev) != 0);
    hb_engine_counters(b, &cn);
    CHECK_EQ(ev.value, cn.events_dropped);
    close(fd);
    hb_keyring_free(kr);
    hb_engine_free(b);
}

static void test_key_rotation_without_downtime(void)
{
    hb_engine *a = make(1, 1, HB_AUTH_HMAC_SHA256);
    hb_engine *b = make(2, 1, HB_AUTH_HMAC_SHA256);
    pair(a, 1, b, 2);
    start_both(a, b);
    /* Step 1: install key 2 (GCM) everywhere.  Step 2: send with it.
     * Step 3: remove key 1.  Nobody goes down at any step. */
    CHECK_EQ(hb_engine_add_key(a, 2, HB_AUTH_AES256_GCM, KEY2, 32), 0);
    CHECK_EQ(hb_engine_add_key(b, 2, HB_AUTH_AES256_GCM, KEY2, 32), 0);
    CHECK_EQ(hb_engine_set_send_key(a, 2), 0);
    sleep_ms(50);
    CHECK_EQ(hb_engine_set_send_key(b, 2), 0);
    CHECK_EQ(hb_engine_remove_key(a, 1), 0);
    CHECK_EQ(hb_engine_remove_key(b, 1), 0);
    CHECK_EQ(wait_event(b, HB_EV_PEER_DOWN, 0, 200, NULL), 0);
    CHECK_EQ(wait_event(a, HB_EV_PEER_LATE, 0, 1, NULL), 0);
    hb_counters c;
    hb_engine_counters(b, &c);
    CHECK_EQ(c.rejected[HB_REJ_UNKNOWN_KEY] + c.rejected[HB_REJ_BAD_TAG], 0);
    hb_engine_free(a);
    hb_engine_free(b);
}

static void test_stall_reported(void)
{
    hb_engine *a = make(1, 1, HB_AUTH_HMAC_SHA256);
    CHECK_EQ(hb_engine_add_peer(a, 2), 0);
    CHECK_EQ(hb_engine_set_peer_addr(a, 2, 0, "127.0.0.1", 9), 0);
    CHECK_EQ(hb_engine_start(a), 0);
    sleep_ms(30);
    CHECK_EQ(hb_engine_debug_stall(a, 80000), 0);
    hb_event ev;
    CHECK(wait_event(a, HB_EV_STALL, 0, 1000, &ev) != 0);
    CHECK(ev.value >= 25000); /* longer than warntime */
    hb_counters c;
    hb_engine_counters(a, &c);
    CHECK(c.stalls >= 1);
    CHECK(c.missed_ticks >= 5);
    hb_engine_free(a);
}

static void test_state_message(void)
{
    hb_engine *a = make(1, 1, HB_AUTH_AES256_GCM);
    hb_engine *b = make(2, 1, HB_AUTH_AES256_GCM);
    pair(a, 1, b, 2);
    start_both(a, b);
    uint8_t rec[1000];
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 7);
    CHECK_EQ(hb_engine_send_state(a, 2, rec, sizeof rec), 0);
    hb_event ev;
    CHECK(wait_event(b, HB_EV_STATE, 1, 1000, &ev) != 0);
    CHECK_EQ(ev.data_len, sizeof rec);
    CHECK(memcmp(ev.data, rec, sizeof rec) == 0);
    CHECK_EQ(hb_engine_send_state(a, 2, rec, HB_PAYLOAD_MAX + 1), -EMSGSIZE);
    CHECK_EQ(hb_engine_send_state(a, 42, rec, 10), -ENOENT);
    CHECK(strstr(hb_engine_last_error(a), "42") != NULL);
    hb_engine_free(a);
    hb_engine_free(b);
}

static void test_api_errors(void)
{
    hb_engine_config c;
    hb_engine *e = NULL;
    hb_engine_config_defaults(&c);
    c.node_id = 0;
    CHECK_EQ(hb_engine_new(&c, &e), -EINVAL);
    c.node_id = 1;
    c.timing.warntime_us = c.timing.deadtime_us + 1;
    CHECK_EQ(hb_engine_new(&c, &e), -EINVAL);
    hb_engine_config_defaults(&c);
    CHECK_EQ(hb_engine_new(&c, &e), 0);
    CHECK_EQ(hb_engine_start(e), -EINVAL); /* no links */
    hb_link_config bad = {HB_LINK_UNICAST, "not-an-address", 0, NULL, NULL, 0, 0};
    CHECK(hb_engine_add_link(e, &bad, NULL) == -EINVAL);
    CHECK(strstr(hb_engine_last_error(e), "not-an-address") != NULL);
    hb_link_config mc = {HB_LINK_MULTICAST, "0.0.0.0", 0, "192.0.2.1", NULL, 0, 0};
    CHECK(hb_engine_add_link(e, &mc, NULL) == -EINVAL); /* not a group */
    hb_link_config bc6 = {HB_LINK_BROADCAST, "::", 0, "ff02::1", NULL, 0, 0};
    CHECK(hb_engine_add_link(e, &bc6, NULL) == -EAFNOSUPPORT);
    hb_link_config ok = {HB_LINK_UNICAST, "127.0.0.1", 0, NULL, NULL, 0, 0};
    CHECK_EQ(hb_engine_add_link(e, &ok, NULL), 0);
    CHECK_EQ(hb_engine_start(e), -ENOKEY);
    CHECK(strstr(hb_engine_last_error(e), "send key") != NULL);
    CHECK_EQ(hb_engine_add_peer(e, 1), -EINVAL); /* own id */
    CHECK_EQ(hb_engine_add_peer(e, 5), 0);
    CHECK_EQ(hb_engine_add_peer(e, 5), -EEXIST);
    CHECK_EQ(hb_engine_set_peer_addr(e, 5, 0, "::1", 0), -EAFNOSUPPORT);
    CHECK_EQ(hb_engine_set_peer_addr(e, 6, 0, "127.0.0.1", 0), -ENOENT);
    CHECK_EQ(hb_engine_remove_peer(e, 5), 0);
    uint8_t big[HB_HEARTBEAT_PAYLOAD_MAX + 1] = {0};
    CHECK_EQ(hb_engine_set_payload(e, big, sizeof big), -EMSGSIZE);
    hb_engine_free(e);
}

static void test_ipv6_unicast(void)
{
    /* IPv6 unicast on ::1 (multicast and broadcast are tested in network
     * namespaces by the Python suite). */
    hb_engine_config c;
    hb_engine *a = NULL, *b = NULL;
    hb_engine_config_defaults(&c);
    c.cluster_id = CLUSTER;
    hb_timing_defaults(&c.timing, INTERVAL_US);
    c.node_id = 1;
    CHECK_EQ(hb_engine_new(&c, &a), 0);
    c.node_id = 2;
    CHECK_EQ(hb_engine_new(&c, &b), 0);
    hb_engine *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(hb_engine_add_key(both[i], 1, HB_AUTH_HMAC_SHA256, KEY1, 32), 0);
        CHECK_EQ(hb_engine_set_send_key(both[i], 1), 0);
    }
    hb_link_config l6 = {HB_LINK_UNICAST, "::1", 0, NULL, NULL, 0, 0};
    int v6_ok = hb_engine_add_link(a, &l6, NULL) == 0 && hb_engine_add_link(b, &l6, NULL) == 0;
    if (!v6_ok) {
        printf("skip: no IPv6 loopback here (%s)\n", hb_engine_last_error(a));
        hb_engine_free(a);
        hb_engine_free(b);
        return;
    }
    CHECK_EQ(hb_engine_add_peer(a, 2), 0);
    CHECK_EQ(hb_engine_add_peer(b, 1), 0);
    CHECK_EQ(hb_engine_set_peer_addr(a, 2, 0, "::1", (uint16_t)hb_engine_link_port(b, 0)), 0);
    CHECK_EQ(hb_engine_set_peer_addr(b, 1, 0, "::1", (uint16_t)hb_engine_link_port(a, 0)), 0);
    start_both(a, b);
    CHECK(wait_event(a, HB_EV_PEER_UP, 2, 1000, NULL) != 0);
    hb_engine_free(a);
    hb_engine_free(b);
}

HB_TEST_MAIN(test_find_each_other_and_down, test_leave_and_restart,
             test_rejections_counted, test_event_overflow_is_counted_and_reported,
             test_key_rotation_without_downtime,
             test_stall_reported, test_state_message, test_api_errors,
             test_ipv6_unicast)
