"""The optional Prometheus endpoint (``[metrics] listen``).

One exporter per daemon, with a private registry (nothing from the process's
global prometheus_client registry leaks in) and its own small HTTP server on
a daemon thread.  Two kinds of metric:

* what the daemon learns from events (a peer declared down, an action's
  result, an acquire completing) is counted or observed when it happens, by
  the daemon's loop, into ordinary prometheus_client objects;
* what the engine and the daemon *are* (counters of libheart, peers and links
  up, quorum) is read at scrape time, as a snapshot that the daemon builds on
  its own event-loop thread: the engine and the daemon's state are only ever
  touched from that thread, never from the HTTP thread.  When the loop does
  not answer within SNAPSHOT_TIMEOUT_S (its Python side is blocked), the last
  snapshot is served and ``heart_scrape_stale`` says so.

docs/metrics.md lists every metric.
"""
from __future__ import annotations

import concurrent.futures
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

SNAPSHOT_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.1     # how soon the HTTP thread notices close()

# Failover is milliseconds-scale: fine buckets from 5 ms, up to 10 s.
BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
           1.0, 2.5, 5.0, 10.0)

Snapshot = dict[str, Any]


class Monotonic:
    """Raw counts read from the engine, as counter values that never go down:
    should a raw count ever restart from zero (a peer's statistics reset),
    what was counted before is kept as a base."""

    def __init__(self) -> None:
        self._last: dict[tuple, int] = {}
        self._base: dict[tuple, int] = {}

    def __call__(self, key: tuple, raw: int) -> int:
        last = self._last.get(key)
        if last is not None and raw < last:
            self._base[key] = self._base.get(key, 0) + last
        self._last[key] = raw
        return self._base.get(key, 0) + raw


class Exporter:
    """The metrics of one daemon.  ``snapshot`` is called on ``loop``'s thread
    (directly when loop is None, as the unit tests do); it returns a dict:

    ``{"peers": [{"peer", "up", "last_heard_s", "links": [{"link", "up",
    "received", "lost"}]}], "counters": engine.counters() (rejected causes
    included), "quorum": {"quorate", "votes", "expected", "members",
    "at_risk"}, "resources": {name: supervisor state}}``; any part may be
    missing (the daemon is starting or stopping)."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, node: str, cluster: str,
                 version: str, backend: str,
                 loop: Any = None, timeout: float = SNAPSHOT_TIMEOUT_S) -> None:
        self._snapshot_fn = snapshot
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._mono = Monotonic()
        self._last: Snapshot = {}
        self._last_at = 0.0
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

        reg = self.registry = CollectorRegistry(auto_describe=False)
        Info("heart", "This daemon: version, engine backend, node and cluster names.",
             registry=reg).info({"version": version, "backend": backend, "node": node,
                                 "cluster": cluster})
        self.detection = Histogram(
            "heart_detection_seconds",
            "Silence of a peer (since its last heartbeat) when it was declared down "
            "by timeout.", buckets=BUCKETS, registry=reg)
        self.takeover = Histogram(
            "heart_takeover_seconds",
            "From the decision to acquire a unit here to the last of its resources "
            "started.", ["unit"], buckets=BUCKETS, registry=reg)
        self.actions = Counter(
            "heart_actions", "Results of resource actions run here (start, stop, failed "
            "monitor).", ["resource", "action", "result"], registry=reg)
        self.handlers = Counter(
            "heart_handlers", "Results of handler runs, by event.", ["event", "result"],
            registry=reg)
        self.peer_downs = Counter(
            "heart_peer_down", "Peers declared down, by reason (timeout, leave, initdead).",
            ["peer", "reason"], registry=reg)
        reg.register(self)

    # ------------------------------------------------------------ event hooks
    def observe_detection(self, seconds: float) -> None:
        self.detection.observe(seconds)

    def observe_takeover(self, unit: str, seconds: float) -> None:
        self.takeover.labels(unit).observe(seconds)

    def action(self, resource: str, action: str, result: str) -> None:
        self.actions.labels(resource, action, result).inc()

    def handler(self, event: str, result: str) -> None:
        self.handlers.labels(event, result).inc()

    def peer_down(self, peer: str, reason: str) -> None:
        self.peer_downs.labels(peer, reason).inc()

    # -------------------------------------------------------- the HTTP server
    def start(self, host: str, port: int) -> None:
        """Listen on host:port (raises OSError; nothing is left open then)."""
        cls = _Server6 if ":" in host else _Server
        server = cls((host, port), _QuietHandler)
        server.set_app(make_wsgi_app(self.registry))
        self._server = server
        self.address = server.server_address[:2]
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": POLL_INTERVAL_S},
                                        name="heart-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the listening socket.  Idempotent; blocks
        for at most about POLL_INTERVAL_S."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -------------------------------------------------------------- scraping
    def describe(self) -> Iterable[Metric]:
        return []

    def _take_snapshot(self) -> tuple[Snapshot, bool]:
        """(snapshot, stale)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return self._snapshot_fn(), False
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def take() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(self._snapshot_fn())
                except Exception as exc:  # noqa: BLE001 - reported to the scrape, not the loop
                    fut.set_exception(exc)
        try:
            loop.call_soon_threadsafe(take)
            return fut.result(timeout=self._timeout), False
        except concurrent.futures.TimeoutError:
            fut.cancel()
        except RuntimeError:
            pass        # the loop is closed: the daemon is exiting
        return self._last, True

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snap, stale = self._take_snapshot()
            now = time.monotonic()
            if not stale:
                self._last, self._last_at = snap, now
            return self._families(snap, stale, now - self._last_at if self._last_at else 0.0)

    def _families(self, snap: Snapshot, stale: bool, age: float) -> list[Metric]:
        m = self._mono
        out: list[Metric] = []

        def gauge(name: str, doc: str, value: float | None = None,
                  labels: Iterable[str] = ()) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, value=value, labels=None if value is not None
                                  else list(labels))
            out.append(g)
            return g

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=list(labels))
            out.append(c)
            return c

        gauge("heart_scrape_stale", "1: the daemon's loop did not answer in time; the "
              "values are from its last answer.", 1 if stale else 0)
        gauge("heart_scrape_age_seconds", "Age of the values served.", round(age, 3))

        peers = snap.get("peers")
        if peers is not None:
            gauge("heart_peers_up", "Peers this node sees up (itself not counted).",
                  sum(1 for p in peers if p["up"]))
            up = gauge("heart_peer_up", "1 while this node sees the peer up (late "
                       "included), else 0.", labels=["peer"])
            heard = gauge("heart_peer_last_heard_seconds", "Time since the last packet "
                          "accepted from the peer (on any link).", labels=["peer"])
            lk_up = gauge("heart_link_up", "1 while heartbeats from the peer arrive on "
                          "the link, else 0.", labels=["peer", "link"])
            recv = counter("heart_heartbeats_received", "Packets (heartbeats and state "
                           "messages) accepted from the peer on the link.",
                           labels=["peer", "link"])
            lost = counter("heart_heartbeats_lost", "Sequence gaps seen from the peer on "
                           "the link.", labels=["peer", "link"])
            for p in peers:
                up.add_metric([p["peer"]], 1 if p["up"] else 0)
                if p.get("last_heard_s") is not None:
                    heard.add_metric([p["peer"]], p["last_heard_s"])
                for lk in p.get("links", ()):
                    key = [p["peer"], lk["link"]]
                    lk_up.add_metric(key, 1 if lk["up"] else 0)
                    recv.add_metric(key, m(("recv", *key), lk["received"]))
                    lost.add_metric(key, m(("lost", *key), lk["lost"]))

        c = snap.get("counters")
        if c is not None:
            for key, name, doc in (
                    ("heartbeats_sent", "heart_heartbeats_sent",
                     ("Heartbeat ticks: each sends one heartbeat on every link (to every "
                      "peer on unicast links).")),
                    ("sent", "heart_packets_sent", "Packets sent, all links."),
                    ("send_errors", "heart_send_errors", "Sends that failed."),
                    ("received", "heart_packets_received", "Datagrams read, all links."),
                    ("accepted", "heart_packets_accepted",
                     "Packets authenticated and fresh."),
                    ("stalls", "heart_stalls", ("Times the engine thread was not "
                                                "scheduled for longer than the warn time.")),
                    ("missed_ticks", "heart_missed_ticks",
                     "Heartbeat deadlines skipped after a stall."),
                    ("events_dropped", "heart_events_dropped",
                     ("Engine events dropped because the daemon did not drain them in "
                      "time."))):
                cm = counter(name, doc)
                cm.add_metric([], m((key,), c.get(key, 0)))
            gauge("heart_stall_max_seconds", "Longest stall of the engine thread since "
                  "start.", c.get("max_stall_us", 0) / 1e6)
            rej = counter("heart_heartbeats_rejected", "Packets rejected, by cause.",
                          labels=["cause"])
            for cause, n in sorted(c.get("rejected", {}).items()):
                rej.add_metric([cause], m(("rejected", cause), n))
            reqs = counter("heart_record_requests", "State messages asking a peer for its "
                           "record (sent: this node asked; received: a peer asked it).",
                           labels=["direction"])
            for direction, n in sorted(c.get("record_requests", {}).items()):
                reqs.add_metric([direction], m(("record_requests", direction), n))

        q = snap.get("quorum")
        if q is not None:
            gauge("heart_quorum", "1 while this node has quorum, else 0.",
                  1 if q["quorate"] else 0)
            gauge("heart_quorum_votes", "Votes this node counts (nodes it sees up, "
                  "itself included, plus the ping vote).", q["votes"])
            gauge("heart_quorum_expected_votes", "Votes of the whole cluster.",
                  q["expected"])
            gauge("heart_quorum_members", "Nodes in this node's quorum view, itself "
                  "included.", q["members"])
            gauge("heart_quorum_at_risk", "1 while quorum rests on peers silent for most "
                  "of the dead time.", 1 if q.get("at_risk") else 0)

        res = snap.get("resources")
        if res is not None:
            run = gauge("heart_resource_started", "1 while the resource is started on "
                        "this node, else 0.", labels=["resource"])
            for name, state in sorted(res.items()):
                run.add_metric([name], 1 if state == "started" else 0)
        return out


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass        # one line per scrape would flood the daemon's log


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: it resolves the address's name, and
        # nothing here may wait for DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6
