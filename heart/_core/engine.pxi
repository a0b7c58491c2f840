# The heartbeat engine: configuration and control from Python, the loop in C.

LINK_KINDS = {"unicast": HB_LINK_UNICAST, "multicast": HB_LINK_MULTICAST,
              "broadcast": HB_LINK_BROADCAST}
DETECTORS = {"fixed": HB_DETECTOR_FIXED, "phi": HB_DETECTOR_PHI}

EVENT_NAMES = {
    HB_EV_PEER_UP: "peer_up", HB_EV_PEER_LATE: "peer_late",
    HB_EV_PEER_DOWN: "peer_down", HB_EV_PEER_RESTART: "peer_restart",
    HB_EV_LINK_UP: "link_up", HB_EV_LINK_DOWN: "link_down",
    HB_EV_PAYLOAD: "payload", HB_EV_STATE: "state", HB_EV_STALL: "stall",
    HB_EV_REJECT: "reject", HB_EV_WARNING: "warning",
    HB_EV_OVERFLOW: "overflow",
}
DOWN_REASONS = {HB_DOWN_TIMEOUT: "timeout", HB_DOWN_LEAVE: "leave",
                HB_DOWN_INITDEAD: "initdead"}
PEER_STATES = {HB_PEER_UNKNOWN: "unknown", HB_PEER_UP: "up",
               HB_PEER_LATE: "late", HB_PEER_DOWN: "down"}
WARNINGS = {HB_WARN_REALTIME: "realtime", HB_WARN_MLOCK: "mlock",
            HB_WARN_SEND: "send", HB_WARN_RECV: "recv"}

# What each warning needs, for messages a user can act on.
_WARNING_TEXT = {
    HB_WARN_REALTIME: "pthread_setschedparam(SCHED_FIFO) failed: realtime"
                      " scheduling needs CAP_SYS_NICE or RLIMIT_RTPRIO;"
                      " the engine runs at normal priority",
    HB_WARN_MLOCK: "mlockall(MCL_CURRENT|MCL_FUTURE) failed: locking memory"
                   " needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK;"
                   " the engine may be paged out",
    HB_WARN_SEND: "sending on a link failed",
    HB_WARN_RECV: "receiving on a link failed",
}

DEF DRAIN_BATCH = 256


cdef class Event:
    """One event from the engine thread."""

    cdef readonly int kind
    cdef readonly str name
    cdef readonly uint32_t node
    cdef readonly int link
    cdef readonly uint64_t time_ns
    cdef readonly uint64_t value
    cdef readonly int reason
    cdef readonly bytes data

    @property
    def reason_name(self):
        if self.kind == HB_EV_PEER_DOWN:
            return DOWN_REASONS.get(self.reason, str(self.reason))
        if self.kind == HB_EV_REJECT:
            return hb_reject_name(self.reason).decode()
        if self.kind == HB_EV_WARNING:
            return WARNINGS.get(self.reason, str(self.reason))
        if self.kind == HB_EV_PEER_UP:
            return PEER_STATES.get(self.reason, str(self.reason))
        return None

    @property
    def message(self):
        """A sentence for logs."""
        if self.kind == HB_EV_WARNING:
            text = _WARNING_TEXT.get(self.reason, "warning")
            err = os.strerror(<int>self.value) if self.value else ""
            where = f" on link {self.link}" if self.link >= 0 else ""
            return f"{text}{where}: {err}" if err else text
        if self.kind == HB_EV_PEER_DOWN:
            return (f"node {self.node} is down ({self.reason_name}, silent for "
                    f"{self.value / 1000:.1f} ms)")
        if self.kind == HB_EV_PEER_LATE:
            return f"node {self.node} is late: silent for {self.value / 1000:.1f} ms"
        if self.kind == HB_EV_LINK_DOWN:
            return (f"link {self.link} to node {self.node} is down: silent for "
                    f"{self.value / 1000:.1f} ms")
        if self.kind == HB_EV_LINK_UP:
            return f"link {self.link} to node {self.node} is up"
        if self.kind == HB_EV_STALL:
            return (f"the engine thread was not scheduled for {self.value / 1000:.1f}"
                    f" ms past its deadline")
        if self.kind == HB_EV_REJECT:
            return (f"rejected a packet ({self.reason_name}) claiming node "
                    f"{self.node} on link {self.link}; {self.value} so far")
        return f"{self.name} node={self.node} link={self.link} value={self.value}"

    def __repr__(self):
        extra = f" reason={self.reason_name}" if self.reason_name else ""
        data = f" data={self.data!r}" if self.data else ""
        return (f"<Event {self.name} node={self.node} link={self.link} "
                f"value={self.value}{extra}{data}>")


cdef Event _make_event(const hb_event *ev):
    cdef Event o = Event.__new__(Event)
    o.kind = ev.kind
    o.name = EVENT_NAMES.get(ev.kind, "unknown")
    o.node = ev.node_id
    o.link = ev.link
    o.time_ns = ev.time_ns
    o.value = ev.value
    o.reason = ev.reason
    o.data = ev.data[:ev.data_len] if ev.data_len else b""
    return o


cdef class Engine:
    """The C heartbeat engine: one thread that sends and receives
    heartbeats on every link, authenticates, rejects replays, runs the
    failure detector and queues events; it never takes the GIL.

    Times are integers in microseconds.  Missing timing values take
    libheart's defaults for the interval (warntime 2x, deadtime 4x,
    initdead 2x deadtime).

    generation must grow at every start of the node and be persisted
    (written and fsynced) before start(): peers reject a lower generation
    as a replay, and AES-256-GCM nonces derive from (generation, sequence),
    so a reused generation would reuse nonces.
    """

    cdef hb_engine *e
    cdef hb_event *evbuf
    cdef readonly uint32_t node_id
    cdef readonly uint32_t cluster_id
    cdef readonly uint64_t generation

    def __cinit__(self):
        self.e = NULL
        self.evbuf = NULL

    def __init__(self, *, uint32_t cluster_id, uint32_t node_id,
                 uint64_t generation, uint32_t interval_us,
                 warntime_us=None, deadtime_us=None, initdead_us=None,
                 detector="fixed", double phi_threshold=8.0,
                 phi_min_std_us=None, uint32_t phi_acceptable_pause_us=0,
                 uint32_t phi_window=256, uint32_t phi_min_samples=16,
                 int realtime_priority=0, bint lock_memory=False,
                 uint32_t event_capacity=4096, uint32_t spin_us=0):
        cdef hb_engine_config cfg
        if self.e is not NULL:
            raise RuntimeError("Engine.__init__ called twice")
        if interval_us == 0:
            raise ValueError("interval_us must be positive")
        if generation == 0:
            raise ValueError("generation must be positive")
        hb_engine_config_defaults(&cfg)
        cfg.cluster_id = cluster_id
        cfg.node_id = node_id
        cfg.generation = generation
        hb_timing_defaults(&cfg.timing, interval_us)
        if deadtime_us is not None:
            cfg.timing.deadtime_us = deadtime_us
            if initdead_us is None:
                cfg.timing.initdead_us = 2 * <uint32_t>deadtime_us
        if warntime_us is not None:
            cfg.timing.warntime_us = warntime_us
        elif deadtime_us is not None:
            cfg.timing.warntime_us = min(cfg.timing.warntime_us,
                                         <uint32_t>deadtime_us // 2)
        if initdead_us is not None:
            cfg.timing.initdead_us = initdead_us
        try:
            cfg.timing.detector = DETECTORS[detector]
        except KeyError:
            raise ValueError(f"unknown detector {detector!r}: expected 'fixed' "
                             f"or 'phi'") from None
        cfg.timing.phi_threshold = phi_threshold
        if phi_min_std_us is not None:
            cfg.timing.phi_min_std_us = phi_min_std_us
        cfg.timing.phi_acceptable_pause_us = phi_acceptable_pause_us
        cfg.timing.phi_window = phi_window
        cfg.timing.phi_min_samples = phi_min_samples
        if hb_timing_validate(&cfg.timing) < 0:
            t = cfg.timing
            raise ValueError(
                f"invalid timing: interval={t.interval_us}us warntime="
                f"{t.warntime_us}us deadtime={t.deadtime_us}us initdead="
                f"{t.initdead_us}us (need 0 < warntime < deadtime, deadtime >="
                f" interval, initdead >= deadtime; phi: threshold > 0, "
                f"0 < window <= 1024, min_samples <= window)")
        if not 0 <= realtime_priority <= 99:
            raise ValueError(f"realtime_priority {realtime_priority}: expected 0..99")
        cfg.realtime_priority = realtime_priority
        cfg.lock_memory = lock_memory
        cfg.event_capacity = event_capacity
        if spin_us > interval_us // 2:
            raise ValueError(f"spin_us {spin_us}: at most half the interval "
                             f"({interval_us // 2})")
        cfg.spin_us = spin_us
        if node_id == 0:
            raise ValueError("node_id 0 is reserved")
        _check(hb_engine_new(&cfg, &self.e), "hb_engine_new")
        self.evbuf = <hb_event *>malloc(DRAIN_BATCH * sizeof(hb_event))
        if self.evbuf is NULL:
            raise MemoryError()
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.generation = generation

    def __dealloc__(self):
        if self.e is not NULL:
            with nogil:
                hb_engine_free(self.e)
            self.e = NULL
        free(self.evbuf)
        self.evbuf = NULL

    cdef int _ok(self, int rc) except -1:
        if rc < 0:
            raise OSError(-rc, hb_engine_last_error(self.e).decode(errors="replace"))
        return rc

    cdef inline hb_engine *_h(self) except NULL:
        if self.e is NULL:
            raise ValueError("the engine is closed")
        return self.e

    def close(self, leave=True):
        """Stop (sending a leave message unless leave=False) and free."""
        cdef hb_engine *e = self.e
        if e is NULL:
            return
        self.e = NULL
        cdef int lv = 1 if leave else 0
        with nogil:
            if hb_engine_running(e):
                hb_engine_stop(e, lv)
            hb_engine_free(e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- keys ------------------------------------------------------------
    def add_key(self, int key_id, bytes key, alg="hmac-sha256"):
        cdef hb_engine *e = self._h()
        if not 0 <= key_id <= 255:
            raise ValueError(f"key id {key_id} out of range 0..255")
        if len(key) != HB_KEY_LEN:
            raise ValueError(f"key {key_id}: {len(key)} bytes, expected {HB_KEY_LEN}")
        cdef int a = _alg_code(alg)
        cdef const uint8_t *k = key
        cdef int rc
        with nogil:
            rc = hb_engine_add_key(e, key_id, a, k, HB_KEY_LEN)
        self._ok(rc)

    def remove_key(self, int key_id):
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_remove_key(e, <uint8_t>key_id)
        self._ok(rc)

    def set_send_key(self, int key_id):
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_set_send_key(e, <uint8_t>key_id)
        self._ok(rc)

    # -- links and peers -------------------------------------------------
    def add_link(self, kind="unicast", *, bind="0.0.0.0", int port=0,
                 dest=None, ifname=None, int ttl=1, bint loop=False):
        """Add a UDP link (before start) and return its id."""
        cdef hb_engine *e = self._h()
        cdef hb_link_config lc
        cdef int link_id = -1
        try:
            lc.kind = LINK_KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown link kind {kind!r}: expected unicast, "
                             f"multicast or broadcast") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        if kind != "unicast" and not dest:
            raise ValueError(f"a {kind} link needs dest (the group or broadcast "
                             f"address)")
        b_bind = bind.encode()
        b_dest = dest.encode() if dest else None
        b_if = ifname.encode() if ifname else None
        lc.bind_addr = b_bind
        lc.port = port
        lc.dest_addr = <const char *>b_dest if b_dest is not None else NULL
        lc.ifname = <const char *>b_if if b_if is not None else NULL
        lc.ttl = ttl
        lc.loop = loop
        self._ok(hb_engine_add_link(e, &lc, &link_id))
        return link_id

    def link_port(self, int link_id):
        return self._ok(hb_engine_link_port(self._h(), link_id))

    def add_peer(self, uint32_t node_id):
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_add_peer(e, node_id)
        self._ok(rc)

    def remove_peer(self, uint32_t node_id):
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_remove_peer(e, node_id)
        self._ok(rc)

    def set_peer_addr(self, uint32_t node_id, int link_id, str addr, int port=0):
        cdef hb_engine *e = self._h()
        b = addr.encode()
        cdef const char *a = b
        cdef int rc
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        with nogil:
            rc = hb_engine_set_peer_addr(e, node_id, link_id, a, <uint16_t>port)
        self._ok(rc)

    # -- payload and state messages -------------------------------------
    def set_payload(self, const uint8_t[::1] payload not None):
        cdef hb_engine *e = self._h()
        cdef size_t n = payload.shape[0]
        cdef int rc
        with nogil:
            rc = hb_engine_set_payload(e, &payload[0] if n else NULL, n)
        self._ok(rc)

    def send_state(self, const uint8_t[::1] payload not None, uint32_t to_node=0):
        cdef hb_engine *e = self._h()
        cdef size_t n = payload.shape[0]
        cdef int rc
        with nogil:
            rc = hb_engine_send_state(e, to_node, &payload[0] if n else NULL, n)
        self._ok(rc)

    # -- lifecycle -------------------------------------------------------
    def start(self):
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_start(e)
        self._ok(rc)

    def stop(self, leave=True):
        cdef hb_engine *e = self._h()
        cdef int rc
        cdef int lv = 1 if leave else 0
        with nogil:
            rc = hb_engine_stop(e, lv)
        self._ok(rc)

    @property
    def running(self):
        return self.e is not NULL and hb_engine_running(self.e) != 0

    def debug_stall(self, uint32_t usec):
        """Test hook: the engine thread sleeps usec, as if not scheduled."""
        hb_engine_debug_stall(self._h(), usec)

    # -- events ----------------------------------------------------------
    def fileno(self):
        """An fd that is readable while events are queued."""
        return hb_engine_event_fd(self._h())

    def drain(self, int max_events=DRAIN_BATCH):
        """Take up to max_events queued events (a list, maybe empty)."""
        cdef hb_engine *e = self._h()
        cdef list out = []
        cdef int n, i, want
        while max_events > 0:
            want = min(max_events, DRAIN_BATCH)
            # With the GIL held: evbuf belongs to this object, and draining
            # is a short copy under a lock the engine thread never takes.
            n = hb_engine_drain(e, self.evbuf, want)
            for i in range(n):
                out.append(_make_event(&self.evbuf[i]))
            max_events -= n
            if n < want:
                break
        return out

    # -- statistics ------------------------------------------------------
    cdef dict _peer_dict(self, hb_peer_stats *s):
        links = []
        for i in range(s.n_links):
            links.append({"up": bool(s.link[i].up),
                          "last_arrival_ns": s.link[i].last_arrival_ns,
                          "received": s.link[i].received,
                          "lost": s.link[i].lost})
        return {"node_id": s.node_id, "state": PEER_STATES.get(s.state, "?"),
                "generation": s.generation, "last_seq": s.last_seq,
                "last_arrival_ns": s.last_arrival_ns, "received": s.received,
                "interval_us": s.interval_us, "phi": s.phi,
                "mean_us": s.mean_us, "std_us": s.std_us, "links": links}

    def peer(self, uint32_t node_id):
        """Statistics of one peer as a dict."""
        cdef hb_peer_stats s
        cdef hb_engine *e = self._h()
        cdef int rc
        with nogil:
            rc = hb_engine_peer_stats_by_node(e, node_id, &s)
        if rc < 0:
            raise KeyError(node_id)
        return self._peer_dict(&s)

    def peers(self):
        """Statistics of every peer, a list of dicts."""
        cdef hb_peer_stats s
        cdef hb_engine *e = self._h()
        cdef int i, n, rc
        out = []
        with nogil:
            n = hb_engine_peer_count(e)
        for i in range(n):
            with nogil:
                rc = hb_engine_peer_stats(e, i, &s)
            if rc == 0:
                out.append(self._peer_dict(&s))
        return out

    def counters(self):
        cdef hb_counters c
        cdef hb_engine *e = self._h()
        # The engine lock may be held for one batch of reads: wait without
        # the GIL so other Python threads go on meanwhile.
        with nogil:
            hb_engine_counters(e, &c)
        rejected = {hb_reject_name(i).decode(): c.rejected[i]
                    for i in range(1, HB_REJ_COUNT)}
        return {"sent": c.sent, "send_errors": c.send_errors,
                "heartbeats_sent": c.heartbeats_sent, "received": c.received,
                "accepted": c.accepted, "own": c.own, "rejected": rejected,
                "stalls": c.stalls, "max_stall_us": c.max_stall_us,
                "missed_ticks": c.missed_ticks,
                "events_dropped": c.events_dropped,
                "loop_iterations": c.loop_iterations}

    def send_lateness(self):
        """Lateness of recent sends in microseconds, oldest first."""
        cdef uint32_t *buf = <uint32_t *>malloc(HB_LATENESS_RING * sizeof(uint32_t))
        if buf is NULL:
            raise MemoryError()
        cdef hb_engine *e
        cdef int n
        try:
            e = self._h()
            with nogil:
                n = hb_engine_send_lateness(e, buf, HB_LATENESS_RING)
            return [buf[i] for i in range(n)]
        finally:
            free(buf)
