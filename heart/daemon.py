"""``heart run``: one cluster node.

The daemon is one asyncio loop in the main thread around the C engine
(heartbeats on its own thread).  Everything the node decides flows through
one path:

    engine events (fd readable, drained in batches)
        -> ClusterState (heart.state)  -> quorum (heart.quorum)
        -> placement (heart.placement: a pure function of the replicated view)
        -> unit tasks (start in order / stop in reverse, via heart.dispatch)
        -> the local record, published in heartbeats (digest) and state messages
        -> the journal (heart.journal) and the handlers

Safety rules, in the order the code applies them:

* A stall of the engine longer than the dead time, or the loss of quorum
  (policy "release"), releases every unit before anything else happens.
* A unit is acquired only when placement puts it here, the node is quorate,
  no other live node's record holds it (two-phase handover: the old owner
  stops and publishes first), the records of every live peer are current,
  the start-up grace (initdead, or everyone seen) is over, and, if a fencing
  hook is configured, a dead previous holder has been fenced.
* A unit whose stop failed stays "held" (state failed): nobody else may take
  it, because it may still be running here.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from heart import __version__, dispatch, journal, logsetup, placement, quorum, takeover
from heart import config as hconfig
from heart._core import PAYLOAD_MAX, Engine
from heart.control import ControlServer
from heart.generation import next_generation
from heart.state import ClusterState, Record, StateError, decode_message, encode_message

log = logging.getLogger("heart")

RECORD_RESEND_S = 1.0          # anti-entropy: own record to everyone this often
ASK_RETRY_MIN_S = 0.05         # a record request for the same version, at most this often
STALL_HOLDOFF_FACTOR = 2       # after a pause: no acquire for this many dead times
STOP_RETRY_S = 10.0            # a unit whose stop failed: next attempt after this
FOREIGN_PROBE_S = 0.05         # how long a first start listens for other owners


class StartupError(RuntimeError):
    """The node cannot join the cluster safely (the message says why)."""


@dataclass
class UnitRuntime:
    cfg: Any                        # hconfig.UnitConfig
    state: str = "stopped"          # stopped | starting | started | stopping | failed
    task: asyncio.Task | None = None
    owner_seen: str | None = None   # last placement decision journalled
    reason_seen: str = ""
    retry_at: float = 0.0           # a failed stop is tried again from then on


@dataclass
class PeerRuntime:
    name: str
    id: int
    needs_fence: set[str] = field(default_factory=set)  # units it held when it died
    late: bool = False
    asked_at: float = -math.inf    # monotonic time of our last record request to it
    asked_for: int = -1            # the record version that request was for


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about readiness; a no-op elsewhere."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.sendall(message.encode())


class Daemon:
    def __init__(self, cfg: hconfig.Config) -> None:
        self.cfg = cfg
        self.me = cfg.node_name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine: Engine | None = None
        self.journal: journal.Journal | None = None
        self.state: ClusterState | None = None
        self.control: ControlServer | None = None
        self.pinger: quorum.PingMonitor | None = None
        self.handlers: dispatch.HandlerRunner | None = None
        self.sups: dict[str, dispatch.ResourceSupervisor] = {}
        self.units: dict[str, UnitRuntime] = {}
        self.peers: dict[int, PeerRuntime] = {}
        self.by_name: dict[str, PeerRuntime] = {}
        self.quorum: quorum.QuorumState | None = None
        self.all_seen = False
        self.started_mono = 0.0
        self.misdirected = 0           # state messages for another node (replays)
        # Record requests: how often one may be repeated for the same version,
        # and how many went out / came in (status counters).
        self.ask_retry_s = max(ASK_RETRY_MIN_S, 2 * cfg.timing.interval_us / 1e6)
        self.record_requests = {"sent": 0, "received": 0}
        self.at_risk = False           # quorum rests on peers silent for too long
        self._misdirected_warned = -1.0
        self.hold_until = 0.0          # no acquire before this (monotonic s): pause hold-off
        self.grace_until = 0.0         # start-up grace ends here at the latest
        self.grace_over = False
        self.fenced: set[str] = set()
        self.watches: dict[str, takeover.ClaimWatch] = {}     # resource -> its watch
        self.seen_held: set[str] = set()   # units some node has held since this start
        self.confirms: dict[str, asyncio.Task] = {}
        # Created in run(): on Python < 3.10 an Event binds to the loop that
        # exists when it is made, which is not the one asyncio.run() starts.
        self._dirty: asyncio.Event = None  # type: ignore[assignment]
        self._stop: asyncio.Event = None  # type: ignore[assignment]
        self._tasks: list[asyncio.Task] = []
        self._exit_code = 0
        self.link_names = [lk.name for lk in cfg.links]
        self.metrics: Any = None           # heart.metrics.Exporter with [metrics] listen

    # ------------------------------------------------------------------ setup
    def _base_env(self) -> dict[str, str]:
        return {"HEART_CLUSTER": self.cfg.cluster_name, "HEART_LOCAL_NODE": self.me}

    def _build_engine(self, generation: int) -> Engine:
        cfg, t = self.cfg, self.cfg.timing
        e = Engine(cluster_id=cfg.cluster_id, node_id=cfg.local.id, generation=generation,
                   interval_us=t.interval_us, warntime_us=t.warntime_us,
                   deadtime_us=t.deadtime_us, initdead_us=t.initdead_us,
                   detector=t.detector, phi_threshold=t.phi_threshold,
                   phi_min_std_us=t.phi_min_std_us,
                   phi_acceptable_pause_us=t.phi_acceptable_pause_us,
                   realtime_priority=cfg.engine.realtime_priority,
                   lock_memory=cfg.engine.lock_memory, spin_us=cfg.engine.spin_us,
                   event_capacity=cfg.engine.event_capacity)
        try:
            for kid, key in cfg.auth.keys.items():
                e.add_key(kid, key, cfg.auth.algorithm)
            e.set_send_key(cfg.auth.send_key)
            me = cfg.local
            for lk in cfg.links:
                try:
                    if lk.kind == "unicast":
                        host, port = me.addresses[lk.name]
                        bind = lk.bind or host
                        e.add_link("unicast", bind=bind, port=port, ifname=lk.interface)
                    else:
                        port = me.addresses[lk.name][1] if lk.name in me.addresses \
                            else lk.port
                        bind = lk.bind or ("::" if ":" in (lk.group or "") else "0.0.0.0")
                        e.add_link(lk.kind, bind=bind, port=port, dest=lk.group,
                                   ifname=lk.interface, ttl=lk.ttl)
                except OSError as exc:
                    raise self._bind_error(lk.line, f"[[link]] {lk.name!r} of node {self.me}",
                                           exc) from None
            for n in cfg.nodes:
                if n.name == self.me:
                    continue
                e.add_peer(n.id)
                for i, lk in enumerate(cfg.links):
                    if lk.kind == "unicast":
                        host, port = n.addresses[lk.name]
                        e.set_peer_addr(n.id, i, host, port)
        except BaseException:
            e.close(leave=False)
            raise
        return e

    async def run(self) -> int:
        cfg = self.cfg
        self.loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._start_metrics()       # first: a listen address in use changes nothing
        try:
            os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
            self.journal = journal.Journal(os.path.join(cfg.state_dir, "journal.db"))
            generation = next_generation(os.path.join(cfg.state_dir, "generation"))
            self.state = ClusterState([n.name for n in cfg.nodes], self.me, generation,
                                      heart_version=__version__)
            for n in cfg.nodes:
                if n.name != self.me:
                    pr = PeerRuntime(n.name, n.id)
                    self.peers[n.id] = pr
                    self.by_name[n.name] = pr
            self._load_local_settings()
            await self._start(generation)
            await self._stop.wait()
        finally:
            await self._shutdown()
        return self._exit_code

    async def _start(self, generation: int) -> None:
        cfg = self.cfg
        self.engine = self._build_engine(generation)
        self.control = ControlServer(cfg.socket, self._on_control)
        await self.control.start()
        self.handlers = dispatch.HandlerRunner(cfg.handlers, self._base_env(),
                                               self._on_handler_result)
        for unit in cfg.units:
            self.units[unit.name] = UnitRuntime(unit)
        for res in cfg.resources.values():
            self._add_supervisor(res)
        await self._probe_leftovers()
        self.started_mono = time.monotonic()
        self.grace_until = self.started_mono + cfg.timing.initdead_us / 1e6
        self._publish(send=False)
        self.engine.start()
        self.loop.add_reader(self.engine.fileno(), self._on_engine_readable)
        if cfg.quorum.ping_nodes:
            self.pinger = quorum.PingMonitor(cfg.quorum.ping_nodes,
                                             cfg.quorum.ping_interval_us / 1e6,
                                             cfg.quorum.ping_timeout_us / 1e6,
                                             self._on_ping_change)
            try:
                await self.pinger.start()
            except PermissionError as exc:
                raise StartupError(f"quorum.ping_nodes: {exc}") from None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stop.set)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._event("daemon_start",
                    f"heart {__version__} started on {self.me} (generation {generation}, "
                    f"cluster {cfg.cluster_name} id {cfg.cluster_id}, "
                    f"{len(cfg.nodes)} nodes, {len(cfg.links)} links)",
                    node=self.me, evidence={"generation": generation, "pid": os.getpid()})
        self._tasks = [asyncio.ensure_future(self._reconciler()),
                       asyncio.ensure_future(self._periodic()),
                       asyncio.ensure_future(self._quorum_watch())]
        self._dirty.set()
        sd_notify("READY=1\nSTATUS=heartbeating")

    async def _probe_leftovers(self) -> None:
        """A daemon that crashed may have left resources running.  This node
        holds nothing yet (its record is new), so peers may start them: stop
        every one that a probe finds running, before joining the cluster."""
        for name, sup in self.sups.items():
            r = await sup.probe()
            if sup.state == "stopped":
                continue
            self._event("resource_release",
                        f"{name} was found {r.status} on {self.me} at start-up (left by an "
                        f"earlier run); stopping it before joining", node=self.me,
                        resource=name, evidence=_result_evidence(r))
            sup.request("stop")
            await sup.wait_idle()
            if sup.state != "stopped":
                raise StartupError(f"{name} is running on {self.me} and does not stop "
                                   f"({_outcome(sup.last_result)}); refusing to join the "
                                   f"cluster while it runs")

    def _start_metrics(self) -> None:
        listen = self.cfg.metrics.listen
        if listen is None:
            return
        from heart import metrics
        from heart._core import BACKEND

        exp = metrics.Exporter(self._metrics_snapshot, node=self.me,
                               cluster=self.cfg.cluster_name, version=__version__,
                               backend=BACKEND, loop=self.loop)
        host, port = listen
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            exp.start(host, port)
        except OSError as exc:
            raise self._bind_error(self.cfg.metrics.line,
                                   f"metrics.listen: cannot listen on {where}", exc) from None
        self.metrics = exp
        log.info("metrics on http://%s/metrics", where)

    def _bind_error(self, line: int | None, what: str, exc: OSError) -> StartupError:
        """A socket of this node's configuration could not be opened."""
        at = f"{self.cfg.path}:{line}: " if line else ""
        hint = ("; another program (or heart daemon) uses that port?"
                if exc.errno == errno.EADDRINUSE else "")
        return StartupError(f"{at}{what}: {exc.strerror or exc}{hint}; nothing was started")

    def _peer_stats(self, node_id: int) -> dict | None:
        """The engine's view of one peer: its state, per link up / received /
        lost, and seconds since it was last heard (None: never); None when
        the engine cannot say (not running, unknown peer)."""
        if self.engine is None or not self.engine.running:
            return None
        try:
            ps = self.engine.peer(node_id)
        except (KeyError, OSError):
            return None
        last = ps["last_arrival_ns"]
        return {"state": ps["state"],
                "links": [{"link": name, "up": ls["up"], "received": ls["received"],
                           "lost": ls["lost"]}
                          for name, ls in zip(self.link_names, ps["links"])],
                "last_heard_s": max(0, time.monotonic_ns() - last) / 1e9 if last else None}

    def _metrics_snapshot(self) -> dict:
        """What heart.metrics.Exporter reads at scrape time (on this loop)."""
        snap: dict[str, Any] = {}
        if self.state is not None:
            peers = []
            for pr in self.peers.values():
                p: dict[str, Any] = {"peer": pr.name, "up": pr.name in self.state.up,
                                     "links": []}
                ps = self._peer_stats(pr.id)
                if ps is not None:
                    p["links"] = ps["links"]
                    if ps["last_heard_s"] is not None:
                        p["last_heard_s"] = ps["last_heard_s"]
                peers.append(p)
            snap["peers"] = peers
            q = self.quorum or self._compute_quorum()
            snap["quorum"] = {"quorate": q.quorate, "votes": q.votes,
                              "expected": q.expected, "members": len(q.members),
                              "at_risk": self.at_risk}
        if self.engine is not None and self.engine.running:
            snap["counters"] = self._counters()
        snap["resources"] = {name: sup.state for name, sup in self.sups.items()}
        return snap

    def _load_local_settings(self) -> None:
        """Standby and moves survive restarts (an operator's decision is not
        forgotten because the daemon was restarted)."""
        path = os.path.join(self.cfg.state_dir, "local.json")
        try:
            with open(path) as f:
                saved = json.load(f)
            self.state.update_local(standby=bool(saved.get("standby", False)),
                                    moves={k: [str(v[0]), int(v[1])]
                                           for k, v in saved.get("moves", {}).items()
                                           if k in {u.name for u in self.cfg.units}})
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, IndexError) as exc:
            log.warning("ignoring %s: %s", path, exc)

    def _save_local_settings(self) -> None:
        path = os.path.join(self.cfg.state_dir, "local.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"standby": self.state.local.standby, "moves": self.state.local.moves}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _add_supervisor(self, res: Any) -> None:
        env = {**self._base_env(), "HEART_RESOURCE": res.name}
        agent = dispatch.make_agent(res, env=env, deadtime_us=self.cfg.timing.deadtime_us)
        self.sups[res.name] = dispatch.ResourceSupervisor(
            res, agent, self._on_action_result, env=env)

    # ---------------------------------------------------------------- journal
    def _event(self, kind: str, summary: str, *, node: str | None = None,
               resource: str | None = None, evidence: dict | None = None) -> None:
        event_id = None
        if self.journal is not None:
            try:
                event_id = self.journal.record(kind, summary, node=node, resource=resource,
                                               evidence=evidence)
            except Exception as exc:  # a full disk must not stop failover
                log.error("journal write failed: %s", exc)
        # one log line (entry) per event, with the journal's fields (heart.logsetup)
        log.info("%s %s", kind, summary,
                 extra=logsetup.event_extra(event_id, kind, summary, node, resource, evidence))

    def _fire(self, event: str, **fields: Any) -> None:
        if self.handlers is not None:
            self.handlers.fire(event, {k: v for k, v in fields.items() if v is not None})

    def _on_handler_result(self, r: dispatch.ActionResult) -> None:
        if self.metrics is not None:
            self.metrics.handler(r.action, r.outcome)
        if not r.ok:
            self._event("handler", f"handler for {r.action} failed: "
                        f"{r.error or ('timed out' if r.timed_out else f'exit {r.rc}')}",
                        evidence={"event": r.action, "ok": r.ok, "rc": r.rc,
                                  "output": r.output[-1024:], "error": r.error})

    def _on_action_result(self, r: dispatch.ActionResult) -> None:
        if self.metrics is not None and r.resource:
            self.metrics.action(r.resource, r.action, r.outcome)
        if r.action != "monitor" or r.ok:
            return
        unit = self.cfg.unit_of(r.resource)
        ur = self.units.get(unit.name)
        if ur is None or ur.state != "started":
            return
        self._event("monitor_failed",
                    f"monitor of {r.resource} on {self.me} says {r.status}"
                    f" (rc {r.rc}); giving up {unit.name} here so another node can run it",
                    node=self.me, resource=r.resource,
                    evidence={"unit": unit.name, "action": "monitor", "ok": False, "rc": r.rc,
                              "output": r.output[-1024:], "status": r.status})
        self._fire("resource_failed", resource=r.resource, node=self.me,
                   reason=f"monitor: {r.status}")
        self._mark_failed(unit.name)
        self._dirty.set()

    def _mark_failed(self, unit: str) -> None:
        failed = sorted(set(self.state.local.failed) | {unit})
        if self.state.update_local(failed=failed):
            self._publish()

    # ------------------------------------------------------------ engine I/O
    def _on_engine_readable(self) -> None:
        try:
            events = self.engine.drain()
        except OSError as exc:
            log.error("draining engine events: %s", exc)
            return
        # Pause safety first: a stall longer than the dead time releases
        # everything before any other event of the batch is looked at.
        for ev in events:
            if ev.name == "stall":
                self._on_stall(ev)
        for ev in events:
            if ev.name != "stall":
                try:
                    self._on_engine_event(ev)
                except StateError as exc:
                    # A bad packet never takes the daemon down.
                    log.warning("ignoring bad state from node %d: %s", ev.node, exc)
                except Exception:
                    log.exception("error handling %r", ev)

    def _on_stall(self, ev: Any) -> None:
        dead = self.cfg.timing.deadtime_us
        # Peers count silence from our last heartbeat before the stall, which
        # went out up to one interval earlier: a stall that long plus an
        # interval may already have made us dead to them.
        over = ev.value + self.cfg.timing.interval_us >= dead
        held = [u for u, r in self.units.items() if r.state in ("starting", "started")]
        self._event("stall",
                    f"the engine on {self.me} was not scheduled for {ev.value / 1000:.1f} ms"
                    + (f" (with the interval before it, at least the dead time "
                       f"{dead / 1000:.0f} ms: peers may have declared it dead): releasing "
                       f"{', '.join(held) or 'nothing'} before anything else" if over else ""),
                    node=self.me,
                    evidence={"stall_ms": ev.value / 1000, "deadtime_ms": dead / 1000,
                              "released": held if over else []})
        self._fire("stall", node=self.me, reason=f"{ev.value / 1000:.1f} ms")
        if over:
            self.hold_until = max(self.hold_until, time.monotonic()
                                  + STALL_HOLDOFF_FACTOR * dead / 1e6)
            for u in held:
                self._start_release(u, "pause longer than the dead time", force=True)

    def _peer(self, node_id: int) -> PeerRuntime | None:
        return self.peers.get(node_id)

    def _link_evidence(self, node_id: int) -> dict:
        try:
            st = self.engine.peer(node_id)
        except OSError:
            return {}
        now = time.monotonic_ns()
        out = {}
        for name, ls in zip(self.link_names, st["links"]):
            silent = (now - ls["last_arrival_ns"]) / 1e6 if ls["last_arrival_ns"] else None
            out[name] = {"up": ls["up"], "silent_ms": None if silent is None
                         else round(silent, 1)}
        return out

    def _on_engine_event(self, ev: Any) -> None:
        name = ev.name
        if name in ("reject", "warning", "overflow"):
            if name == "reject":
                log.info("%s", ev.message)
            else:
                self._event(name, ev.message, node=self.me)
            if name == "overflow":
                self._resync()
            return
        pr = self._peer(ev.node)
        if pr is None:
            return
        if name == "payload":
            if self.state.on_digest(pr.name, ev.data):
                self._ask_record(pr, self.state.digests.get(pr.name))
            return
        if name == "state":
            self._on_state_message(pr, ev.data)
            return
        if name == "peer_up" and pr.late:
            # Late, then heard again before the dead time: nothing changed
            # for the cluster; say so in the journal only.
            pr.late = False
            self._event("node_recovered", f"{pr.name} is on time again", node=pr.name)
            return
        if name == "peer_up":
            self.state.set_up(pr.name, True)
            self._ask_record(pr)
            self._event("node_up", f"{pr.name} is up (heard by {self.me})", node=pr.name,
                        evidence={"links": self._link_evidence(pr.id)})
            self._fire("node_up", node=pr.name)
            if len(self.state.up) == len(self.cfg.nodes) - 1:
                self.all_seen = True
        elif name == "peer_late":
            pr.late = True
            self._event("node_late", f"{pr.name} is late: silent for "
                        f"{ev.value / 1000:.1f} ms", node=pr.name,
                        evidence={"silent_ms": ev.value / 1000})
            self._fire("node_late", node=pr.name, reason=f"silent {ev.value / 1000:.1f} ms")
        elif name == "peer_down":
            pr.late = False
            rec = self.state.records.get(pr.name)
            held = set(rec.held) if rec else set()
            reason = ev.reason_name
            if self.metrics is not None:
                self.metrics.peer_down(pr.name, reason)
                if reason == "timeout":
                    self.metrics.observe_detection(ev.value / 1e6)
            self.state.set_up(pr.name, False)
            if reason != "leave" and held:
                pr.needs_fence |= held
            q = self._compute_quorum()
            what = {"leave": "left the cluster (leave message)",
                    "initdead": "never came up within initdead",
                    }.get(reason, f"is down: no heartbeat for {ev.value / 1000:.1f} ms")
            self._event("node_down", f"{pr.name} {what}", node=pr.name,
                        evidence={"reason": reason, "silent_ms": ev.value / 1000,
                                  "links": self._link_evidence(pr.id),
                                  "held": sorted(held), "quorum": q.as_dict()})
            self._fire("node_down", node=pr.name, reason=reason)
        elif name == "peer_restart":
            self.state.forget(pr.name)
            self._ask_record(pr)
            self._event("node_restart", f"{pr.name} restarted (new generation "
                        f"{ev.value})", node=pr.name, evidence={"generation": ev.value})
        elif name in ("link_up", "link_down"):
            link = self.link_names[ev.link] if 0 <= ev.link < len(self.link_names) else ev.link
            self._event(name, f"link {link} to {pr.name} is "
                        f"{'up' if name == 'link_up' else 'down'}", node=pr.name,
                        evidence={"link": link, "peer": pr.name})
            return
        # Who this node hears changed: that is in the digest, not the record
        # (a peer that came up asks for the record itself).
        self._publish(send=False)
        self._dirty.set()

    def _resync(self) -> None:
        """Events were dropped (this loop did not drain for a long time):
        take every peer's state from the engine instead of from events."""
        for pr in self.peers.values():
            try:
                up = self.engine.peer(pr.id)["state"] in ("up", "late")
            except OSError:
                continue
            if up != (pr.name in self.state.up):
                self._event("node_up" if up else "node_down",
                            f"{pr.name} is {'up' if up else 'down'} (resynchronised from the "
                            f"engine after lost events)", node=pr.name,
                            evidence={"reason": "resync"})
                if not up:
                    rec = self.state.records.get(pr.name)
                    pr.needs_fence |= set(rec.held) if rec else set()
                    if self.metrics is not None:
                        self.metrics.peer_down(pr.name, "resync")
                self.state.set_up(pr.name, up)
            if up:
                self._ask_record(pr)
        self._publish()
        self._dirty.set()

    def _ask_record(self, pr: PeerRuntime, version: int | None = None) -> None:
        """Ask pr for its record.  Prompted by a digest (``version``: the one it
        announced), at most once per ask_retry_s for the same version: every
        heartbeat carries the digest, and until the record arrives each one
        would ask again (on a saturated 64-node lab that was most of the
        traffic).  Without a version (peer up, restart, resync) always."""
        now = time.monotonic()
        if version is not None and version <= pr.asked_for \
                and now - pr.asked_at < self.ask_retry_s:
            return
        pr.asked_at = now
        pr.asked_for = version if version is not None else self.state.digests.get(pr.name, -1)
        self.record_requests["sent"] += 1
        self._send_to(pr, {"t": "req"})

    def _send(self, msg: bytes, to: int = 0) -> None:
        try:
            self.engine.send_state(msg, to)
        except OSError as exc:
            log.warning("sending a state message: %s", exc)

    def _send_to(self, pr: PeerRuntime, msg: dict) -> None:
        """A state message for one peer only.  It names its recipient inside
        the sealed payload: the sender's sequence numbers are shared by all
        its messages, so one sent to this peer alone leaves a hole in every
        other peer's replay window, and a copy replayed into that hole would
        pass the engine's checks."""
        try:
            data = encode_message({**msg, "to": pr.name}, PAYLOAD_MAX)
        except StateError as exc:
            log.error("state message for %s: %s", pr.name, exc)
            return
        self._send(data, pr.id)

    def _on_state_message(self, pr: PeerRuntime, data: bytes) -> None:
        msg = decode_message(data)
        t = msg["t"]
        to = msg.get("to")
        if to is not None and to != self.me:
            self.misdirected += 1
            self._misdirected_log(pr, to, t)
            return
        if t == "req":
            self.record_requests["received"] += 1
            self._send_to(pr, self.state.record_wire())
        elif t == "rec":
            rec = Record.from_wire(msg.get("r") or {})
            if rec.name != pr.name:
                raise StateError(f"node {pr.name} sent a record for {rec.name}")
            gen = self.engine.peer(pr.id)["generation"]
            if self.state.on_record(rec, gen):
                self.seen_held |= set(rec.held)
                self._dirty.set()
        elif t == "cmd":
            self._on_remote_command(pr, msg)
        else:
            raise StateError(f"unknown state message type {t!r}")

    def _misdirected_log(self, pr: PeerRuntime, to: Any, t: str) -> None:
        """Warn about a message for another node (a replay: nothing else
        sends one), at most once a second."""
        now = time.monotonic()
        if now - self._misdirected_warned >= 1.0:
            self._misdirected_warned = now
            log.warning("dropped a %r state message from %s that was sent to %r, not to "
                        "this node: a replayed copy (%d so far)", t, pr.name, to,
                        self.misdirected)

    def _cleanup(self, unit: str, by: str) -> None:
        if unit in self.state.local.failed:
            self.state.update_local(failed=[u for u in self.state.local.failed if u != unit])
            self._event("cleanup", f"{unit}: failure mark on {self.me} cleared ({by})",
                        node=self.me, resource=unit, evidence={"unit": unit, "by": by})
            self._publish()
            self._dirty.set()

    def _on_remote_command(self, pr: PeerRuntime, msg: dict) -> None:
        op = msg.get("op")
        if op in ("standby", "unstandby"):
            self._set_standby(op == "standby", by=f"{msg.get('by', pr.name)} via {pr.name}")
        elif op == "cleanup" and str(msg.get("unit")) in self.units:
            self._cleanup(str(msg.get("unit")), by=f"heart cleanup on {pr.name}")
        else:
            log.warning("ignoring unknown command %r from %s", op, pr.name)

    def _publish(self, send: bool = True) -> None:
        """Refresh the digest heartbeats carry; send the record if asked."""
        try:
            self.engine_payload()
            if send:
                self._send(self.state.record_message(PAYLOAD_MAX))
        except (OSError, StateError) as exc:
            log.error("publishing the local record: %s", exc)

    def engine_payload(self) -> None:
        if self.engine is not None:
            self.engine.set_payload(self.state.digest())

    def _on_ping_change(self, reachable: bool) -> None:
        self._event("ping", f"ping nodes are {'reachable' if reachable else 'unreachable'}",
                    node=self.me, evidence={"ping": reachable})
        self._dirty.set()

    # ------------------------------------------------------------- deciding
    def _compute_quorum(self, peers: Iterable[str] | None = None) -> quorum.QuorumState:
        """The quorum of this node and `peers` (default: the peers up)."""
        names = [n.name for n in self.cfg.nodes]
        members = [self.me, *sorted(self.state.up if peers is None else peers)]
        ping = None
        if self.cfg.quorum.ping_nodes:
            ping = bool(self.pinger and self.pinger.reachable)
        return quorum.compute_quorum(names, members, ping_reachable=ping,
                                     wait_for_all=self.cfg.quorum.wait_for_all,
                                     all_seen=self.all_seen)

    # ------------------------------------------------------- quorum at risk
    def early_release_us(self) -> int | None:
        """How long a quorum may rest on peers this node has not heard from
        before it gives up what it holds: the dead time less one interval
        (the peers' last heartbeat from us may be that much older than ours
        from them) and less a fifth of the dead time, the time allowed for
        noticing and stopping (an address: milliseconds; longer on a loaded
        machine, whose Python side may wake late).  The others cannot
        declare this node dead, and take over, before the dead time, so a
        node cut off from the majority has released (with the fixed
        detector) before the majority acquires.  None (no early release)
        when that leaves less than two intervals (deadtime under 3.75
        intervals): one late or lost heartbeat from the others must never
        make a holder let go.  bench/failover.py at interval 2 ms, deadtime
        6 ms (2.8 ms left) saw 4-15 ms self-inflicted outages after the
        peers' engines were not scheduled for 7 ms."""
        t = self.cfg.timing
        early = t.deadtime_us - t.interval_us - t.deadtime_us // 5
        return early if early >= 2 * t.interval_us else None

    async def _quorum_watch(self) -> None:
        while True:
            try:
                delay = self._check_quorum_risk()
            except Exception:
                log.exception("quorum watch")
                delay = 0.1
            await asyncio.sleep(delay)

    def _check_quorum_risk(self) -> float:
        """Set at_risk: quorate, but not with only the peers heard within
        early_release_us.  The seconds until it is worth checking again."""
        early_us = self.early_release_us()
        interval_s = self.cfg.timing.interval_us / 1e6
        if early_us is None or self.engine is None \
                or self.cfg.quorum.no_quorum_policy != "release":
            # Off for this configuration: look again now and then (a reload
            # may change it), not every interval.
            self._set_at_risk(False, {}, early_us or 0)
            return 1.0
        early_ns = early_us * 1000
        now = time.monotonic_ns()
        fresh, silent = [], {}
        next_ns = now + early_ns
        for pr in self.peers.values():
            if pr.name not in self.state.up:
                continue
            try:
                last = self.engine.peer(pr.id)["last_arrival_ns"]
            except OSError:
                continue
            if last and now - last < early_ns:
                fresh.append(pr.name)
                next_ns = min(next_ns, last + early_ns)
            else:
                silent[pr.name] = round((now - last) / 1e6, 1) if last else None
        q = self._compute_quorum()
        risk = q.quorate and not self._compute_quorum(fresh).quorate
        self._set_at_risk(risk, silent, early_us, quorate=q.quorate)
        if risk or silent:
            return max(interval_s / 2, 0.001)
        return max((next_ns - now) / 1e9, 0.001)

    def _set_at_risk(self, risk: bool, silent: dict, early_us: int,
                     quorate: bool = True) -> None:
        if risk == self.at_risk:
            return
        self.at_risk = risk
        if not risk and not quorate:
            # The peers were declared down: quorum_lost says the rest.
            self._dirty.set()
            return
        if risk:
            self._event("quorum_at_risk",
                        f"{self.me} has heard nothing from {', '.join(sorted(silent))} for "
                        f"{early_us / 1000:g} ms: without them it has no quorum, so it "
                        f"releases what it holds before they can declare it dead",
                        node=self.me, evidence={"silent_ms": silent,
                                                "early_release_ms": early_us / 1000})
        else:
            self._event("quorum_safe", f"{self.me} hears a quorum again", node=self.me,
                        evidence={})
        self._dirty.set()

    def _unit_specs(self) -> list[placement.UnitSpec]:
        return [placement.UnitSpec(u.name, tuple(u.nodes), u.auto_failback)
                for u in self.cfg.units]

    async def _reconciler(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self._reconcile()
            except Exception:
                log.exception("reconcile failed")
            # Coalesce bursts of events: at most one pass per millisecond.
            await asyncio.sleep(0.001)

    def _reconcile(self) -> None:
        q = self._compute_quorum()
        old = self.quorum
        self.quorum = q
        if old is None or old.quorate != q.quorate:
            if old is not None or not q.quorate:
                kind = "quorum_regained" if q.quorate else "quorum_lost"
                verb = ("has" if q.quorate else "lost") if old is not None else "has no"
                self._event(kind, f"{self.me} {verb} quorum{'' if old else ' yet'}: "
                            f"{q.reason}", node=self.me, evidence={"quorum": q.as_dict()})
                if old is not None:
                    self._fire(kind, node=self.me, reason=q.reason)
        if self.state.update_local(quorate=q.quorate):
            self._publish()
        view = self.state.view(q.quorate)
        # Quorum at risk: keep nothing and take nothing, as without quorum.
        hold_view = self.state.view(False) if self.at_risk else view
        specs = self._unit_specs()
        decisions = placement.place(specs, view)
        for name, d in decisions.items():
            ur = self.units[name]
            if d.owner != ur.owner_seen:
                self._event("placement",
                            f"placement puts {name} on {d.owner or 'no node'}: {d.reason}",
                            resource=name,
                            evidence={"unit": name, "from": ur.owner_seen, "to": d.owner,
                                      "reason": d.reason, "quorum": q.as_dict(),
                                      "nodes": {n: {"up": v.up, "standby": v.standby,
                                                    "held": sorted(v.held)}
                                                for n, v in view.nodes.items()}})
                ur.owner_seen, ur.reason_seen = d.owner, d.reason
        plan = placement.plan(specs, hold_view, self.me,
                              policy=self.cfg.quorum.no_quorum_policy)
        for name in plan.release:
            if name not in self.units:
                continue        # removed by a reload: _retire_unit stops it
            why = decisions[name].reason
            if not q.quorate:
                why = f"no quorum ({q.reason})"
            elif self.at_risk:
                why = "quorum at risk (peers silent for most of the dead time)"
            self._start_release(name, why)
        now = time.monotonic()
        gate = None
        if not self.grace_over and (now >= self.grace_until or self._everyone_known()):
            # Start-up grace ends at initdead, or as soon as every node and
            # its record is known: then nobody unheard can hold anything.
            self.grace_over = True
        if not self.grace_over:
            gate = "start-up grace (initdead)"
            self.loop.call_later(self.grace_until - now + 0.001, self._dirty.set)
        elif now < self.hold_until:
            gate = "hold-off after a pause longer than the dead time"
            self.loop.call_later(self.hold_until - now + 0.001, self._dirty.set)
        elif self.state.missing_records():
            gate = f"waiting for the records of {', '.join(self.state.missing_records())}"
        for name in plan.acquire:
            ur = self.units[name]
            if ur.task is not None or ur.state != "stopped":
                continue
            if gate:
                log.debug("not acquiring %s yet: %s", name, gate)
                continue
            self._start_acquire(name, decisions[name].reason)

    def _may_acquire(self, unit: str) -> bool:
        """Placement still gives unit to this node, with quorum, and nobody
        else holds it (re-checked after anything that awaited)."""
        q = self._compute_quorum()
        if not q.quorate or self.at_risk or self.state.missing_records() \
                or time.monotonic() < self.hold_until:
            return False
        plan = placement.plan(self._unit_specs(), self.state.view(q.quorate), self.me,
                              policy=self.cfg.quorum.no_quorum_policy)
        return unit in plan.acquire

    def _everyone_known(self) -> bool:
        return (len(self.state.up) == len(self.cfg.nodes) - 1
                and not self.state.missing_records())

    def _set_held(self, unit: str, st: str | None) -> None:
        held = dict(self.state.local.held)
        if st is None:
            held.pop(unit, None)
        else:
            held[unit] = st
            self.seen_held.add(unit)
        if self.state.update_local(held=held):
            self._publish()

    def _start_acquire(self, unit: str, reason: str) -> None:
        ur = self.units[unit]
        ur.task = asyncio.ensure_future(self._acquire(unit, reason))

    def _start_release(self, unit: str, reason: str, force: bool = False) -> None:
        ur = self.units[unit]
        if ur.state in ("stopped", "stopping"):
            return
        now = time.monotonic()
        if ur.state == "failed" and now < ur.retry_at and not force:
            # A stop that failed is tried again, but not in a tight loop.
            self.loop.call_later(ur.retry_at - now + 0.001, self._dirty.set)
            return
        if ur.task is not None:
            if not force:
                return          # it finishes first; the next pass releases it
            ur.task.cancel()
        # Public at once, before any other event is handled (a record sent
        # in the same batch must not say "started"): peers then know this
        # node is giving the unit up, and placement does not keep it here.
        ur.state = "stopping"
        self._set_held(unit, "stopping")
        ur.task = asyncio.ensure_future(self._release(unit, reason))

    async def _fence_for(self, unit: str) -> bool:
        """Run the fencing hook against every dead node that held unit."""
        fence = self.cfg.quorum.fence
        for pr in self.by_name.values():
            if unit not in pr.needs_fence:
                continue
            if not fence:
                pr.needs_fence.clear()
                continue
            r = await dispatch.run_fence(fence, pr.name, self.cfg.quorum.fence_timeout_us / 1e6,
                                         self._base_env())
            self._event("fence", f"fencing {pr.name} before taking {unit}: "
                        f"{'succeeded' if r.ok else 'FAILED'}", node=pr.name, resource=unit,
                        evidence={"ok": r.ok, "rc": r.rc, "output": r.output[-1024:],
                                  "error": r.error, "timed_out": r.timed_out})
            if not r.ok:
                return False
            pr.needs_fence.clear()
        return True

    async def _acquire(self, unit: str, reason: str) -> None:
        ur = self.units[unit]
        decided = time.monotonic()
        try:
            if not await self._fence_for(unit):
                self.loop.call_later(1.0, self._dirty.set)   # try again later
                return
            foreign = await self._foreign_claim(unit)
            if foreign:
                rname, mac, address = foreign
                self._event("resource_failed",
                            f"{address} is already answered for by {mac}, which is not a "
                            f"node of this cluster: {self.me} does not take {rname} "
                            f"(nothing was changed)", node=self.me, resource=rname,
                            evidence={"unit": unit, "address": address, "mac": mac,
                                      "ok": False, "error": "address in use"})
                self._fire("resource_failed", resource=rname, node=self.me,
                           reason=f"{address} in use by {mac}")
                self._mark_failed(unit)
                return
            if not self._may_acquire(unit):
                return      # the view changed while fencing or probing: decide again
            ur.state = "starting"
            self._set_held(unit, "starting")      # intent is public before the start
            t0 = time.monotonic()
            done: list[str] = []
            for rname in ur.cfg.resources:
                sup = self.sups[rname]
                sup.request("start")
                await sup.wait_idle()
                if sup.state != "started":
                    r = sup.last_result
                    self._event("resource_failed",
                                f"{rname} failed to start on {self.me}: {_outcome(r)}; "
                                f"giving {unit} up here", node=self.me, resource=rname,
                                evidence={"unit": unit, **_result_evidence(r)})
                    self._fire("resource_failed", resource=rname, node=self.me,
                               reason=_outcome(r))
                    # The failed one is stopped too: a start that timed out
                    # may have left it half running.
                    if await self._stop_resources([rname, *reversed(done)], unit):
                        ur.state = "stopped"
                        self._set_held(unit, None)
                    else:
                        ur.state = "failed"
                        self._set_held(unit, "failed")
                    self._mark_failed(unit)
                    return
                done.append(rname)
                self._watch_start(unit, rname)
                r = sup.last_result
                self._event("resource_acquire",
                            f"{rname} started on {self.me} ({_outcome(r)}) because {reason}",
                            node=self.me, resource=rname,
                            evidence={"unit": unit, "reason": reason, **_result_evidence(r)})
                self._fire("resource_acquire", resource=rname, node=self.me, reason=reason)
            ur.state = "started"
            self._set_held(unit, "started")
            log.info("%s acquired in %.3f s", unit, time.monotonic() - t0)
            if self.metrics is not None:
                self.metrics.observe_takeover(unit, time.monotonic() - decided)
            # A monitor that failed while later members were starting was
            # not acted on then (the unit was not started yet): look now.
            bad = [r for r in ur.cfg.resources if self.sups[r].state != "started"]
            if bad:
                self._event("monitor_failed", f"{', '.join(bad)} failed while {unit} was "
                            f"starting on {self.me}; giving {unit} up here",
                            node=self.me, resource=bad[0], evidence={"unit": unit})
                self._mark_failed(unit)
        finally:
            if ur.task is asyncio.current_task():   # not replaced by a forced release
                ur.task = None
            self._dirty.set()

    # ------------------------------------------------- addresses on the wire
    def _watch_start(self, unit: str, rname: str) -> None:
        """An address resource just came up here: confirm that only this
        node answers for it, then watch for a second owner while held."""
        agent = self.sups[rname].agent
        ann = getattr(agent, "announcer", None)
        if ann is None:
            return
        address = agent.params.address
        w = takeover.ClaimWatch(ann)
        self.watches[rname] = w
        w.add(address, lambda addr, mac, kind: self._on_duplicate(unit, rname, addr, mac,
                                                                  kind, ann.mac))
        self.confirms[rname] = asyncio.ensure_future(self._confirm(rname, w, agent))

    def _watch_stop(self, rname: str) -> None:
        task = self.confirms.pop(rname, None)
        if task is not None:
            task.cancel()
        w = self.watches.pop(rname, None)
        if w is not None:
            w.close()

    async def _confirm(self, rname: str, w: takeover.ClaimWatch, agent: Any) -> None:
        address, iface = agent.params.address, agent.params.interface
        try:
            lease = agent.params.lease_s or 0
            r = await takeover.confirm(w, address, probe=agent.probe,
                                       reannounce=lambda: agent.announce(1),
                                       max_s=max(5.0, lease + 2.0))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the address is up; only the check failed
            self._event("takeover_unconfirmed", f"{address} on {iface}: could not probe "
                        f"the segment: {exc}", node=self.me, resource=rname)
            return
        if r["converged"]:
            self._event("takeover_confirmed",
                        f"{address} on {iface}: only {self.me} answers, "
                        f"{r['converged_ms']:.1f} ms after the start ({r['rounds']} probe "
                        f"round{'s' if r['rounds'] != 1 else ''}"
                        + (f"; {', '.join(r['others'])} answered before" if r["others"]
                           else "") + ")",
                        node=self.me, resource=rname, evidence=r)
        else:
            self._event("takeover_unconfirmed",
                        f"{address} on {iface}: {', '.join(r['others'])} still answer(s) "
                        f"after {r['rounds']} rounds of probes and announcements",
                        node=self.me, resource=rname, evidence=r)

    async def _foreign_claim(self, unit: str) -> tuple[str, str, str] | None:
        """Before a unit's first start in the cluster (no node has held it
        since this daemon started), ask the segment who has each of its
        addresses: one that a host outside the cluster answers for is
        refused, and nothing is changed.  A failover or handover (some node
        held the unit, even if it has released it since) skips this, so it
        never slows a takeover down."""
        if unit in self.seen_held or any(unit in rec.held
                                         for rec in self.state.records.values()):
            return None
        known = set(_local_macs())
        for rec in self.state.records.values():
            known |= {m.lower() for m in rec.attributes.get("macs") or ()}
        for rname in self.units[unit].cfg.resources:
            agent = self.sups[rname].agent
            params = getattr(agent, "params", None)
            if self.cfg.resources[rname].type != "ipaddr" or params is None:
                continue
            try:
                with _short_announcer(params.interface) as ann:
                    ann.claims(1000)
                    ann.probe(params.address)
                    await asyncio.sleep(FOREIGN_PROBE_S)
                    want = takeover.norm_addr(params.address)
                    macs = {c.mac.lower() for c in ann.claims(1000)
                            if takeover.norm_addr(c.address) == want}
            except OSError:
                continue        # the agent's start reports what is wrong
            foreign = sorted(macs - known)
            if foreign:
                return rname, foreign[0], params.address
        return None

    def _mac_owner(self, mac: str) -> str | None:
        """The live peer whose record lists mac among its interfaces."""
        for name in sorted(self.state.up):
            rec = self.state.records.get(name)
            if rec and mac in (rec.attributes.get("macs") or ()):
                return name
        return None

    def _on_duplicate(self, unit: str, rname: str, address: str, mac: str, kind: str,
                      own_mac: str) -> None:
        """Another MAC claims an address this node holds.  The rule is
        placement's, so every node that shares a view applies the same one:
        a node that is not quorate, or that placement does not put the unit
        on, gives the address up; the node placement puts it on keeps it and
        announces again.  (Placement itself settles two live holders: the
        more preferred keeps the unit.)  A claimant that is not a live member
        (down, hung, foreign) cannot take part; its claim is out-announced."""
        # Pause safety comes first: if this loop was not running (the process
        # was stopped), the engine's stall report may be waiting behind this
        # claim.  Handle engine events now; a stall releases the unit.
        self._on_engine_readable()
        ur = self.units.get(unit)
        if ur is None or ur.state != "started" or ur.task is not None:
            return          # being released (or started) already
        q = self._compute_quorum()
        placed = placement.place(self._unit_specs(), self.state.view(q.quorate))[unit].owner
        peer = self._mac_owner(mac)
        if not q.quorate or placed != self.me:
            keep, why = False, (f"placement puts {unit} on {placed or 'no node'}"
                                if q.quorate else "this node has no quorum")
        else:
            keep, why = True, ("placement puts it here" + (
                f"; {peer} is a live member and gives it up by the same rule" if peer else
                "; the other claimant is not a live member (down, hung or foreign)"))
        self._event("duplicate_owner",
                    f"{mac}{f' ({peer})' if peer else ''} also claims {address} ({kind}); "
                    f"{self.me} {'keeps it and announces again' if keep else 'gives it up'}: "
                    f"{why}", node=self.me, resource=rname,
                    evidence={"address": address, "mac": mac, "own_mac": own_mac,
                              "kind": kind, "peer": peer, "keep": keep, "rule": why})
        self._fire("duplicate_owner", resource=rname, node=self.me, reason=why,
                   address=address, mac=mac)
        if keep:
            agent = self.sups[rname].agent
            asyncio.ensure_future(agent.announce())
        else:
            self._start_release(unit, f"duplicate owner of {address}: {why}", force=True)

    async def _stop_resources(self, names: list[str], unit: str) -> bool:
        ok = True
        for rname in names:
            self._watch_stop(rname)
            sup = self.sups[rname]
            sup.request("stop")
            await sup.wait_idle()
            r = sup.last_result
            if sup.state != "stopped":
                ok = False
                self._event("resource_failed",
                            f"{rname} failed to stop on {self.me}: {_outcome(r)}; {unit} stays "
                            f"held here so that no other node starts it twice",
                            node=self.me, resource=rname,
                            evidence={"unit": unit, **_result_evidence(r)})
                self._fire("resource_failed", resource=rname, node=self.me,
                           reason=f"stop: {_outcome(r)}")
            else:
                self._event("resource_release", f"{rname} stopped on {self.me} "
                            f"({_outcome(r)})", node=self.me, resource=rname,
                            evidence={"unit": unit, **_result_evidence(r)})
                self._fire("resource_release", resource=rname, node=self.me)
        return ok

    async def _release(self, unit: str, reason: str) -> None:
        ur = self.units[unit]
        try:
            ur.state = "stopping"
            self._set_held(unit, "stopping")      # (already so, via _start_release)
            log.info("releasing %s: %s", unit, reason)
            if await self._stop_resources(list(reversed(ur.cfg.resources)), unit):
                ur.state = "stopped"
                self._set_held(unit, None)     # published: the new owner may start
            else:
                ur.state = "failed"
                ur.retry_at = time.monotonic() + STOP_RETRY_S
                self._set_held(unit, "failed")
        finally:
            if ur.task is asyncio.current_task():   # not replaced by a forced release
                ur.task = None
            self._dirty.set()

    async def _periodic(self) -> None:
        """Attributes (psutil) and the anti-entropy resend of our record."""
        attr_every = self.cfg.attributes_interval_us / 1e6
        next_attr = 0.0
        psutil.cpu_percent(None)
        while True:
            now = time.monotonic()
            if now >= next_attr:
                next_attr = now + attr_every
                self._refresh_attributes()
            self._publish(send=True)
            await asyncio.sleep(min(RECORD_RESEND_S, attr_every))

    def _refresh_attributes(self) -> None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        vm = psutil.virtual_memory()
        attrs = {"load1": round(load, 2) if load is not None else None,
                 "mem_available_mb": int(vm.available / 2**20),
                 "mem_total_mb": int(vm.total / 2**20),
                 "cpus": psutil.cpu_count() or 1,
                 "cpu_percent": round(psutil.cpu_percent(None)),
                 "macs": _local_macs()}
        self.state.update_local(attributes=attrs)

    # ------------------------------------------------------------- commands
    def _set_standby(self, on: bool, by: str) -> None:
        if self.state.update_local(standby=on):
            self._save_local_settings()
            self._event("standby", f"{self.me} {'enters' if on else 'leaves'} standby "
                        f"(asked by {by})", node=self.me, evidence={"standby": on, "by": by})
            self._publish()
            self._dirty.set()

    async def _on_control(self, req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "status":
            return {"ok": True, **self.status()}
        if cmd in ("standby", "unstandby"):
            node = req.get("node") or self.me
            on = cmd == "standby"
            if node == self.me:
                self._set_standby(on, by="heart " + cmd)
                return {"ok": True, "message": f"{node}: standby {'on' if on else 'off'}"}
            pr = self.by_name.get(node)
            if pr is None:
                return {"ok": False, "error": f"unknown node {node!r}; nodes are "
                        f"{', '.join(n.name for n in self.cfg.nodes)}"}
            if pr.name not in self.state.up:
                return {"ok": False, "error": f"{node} is not up: it must apply its own "
                        f"standby (run the command there, or when it is back)"}
            self._send_to(pr, {"t": "cmd", "op": cmd, "by": self.me})
            return {"ok": True, "message": f"asked {node} to {cmd}; it publishes the change"}
        if cmd in ("move", "cleanup"):
            try:
                unit = self.cfg.unit_of(str(req.get("resource")))
            except KeyError:
                return {"ok": False, "error": f"unknown resource or group "
                        f"{req.get('resource')!r}"}
        if cmd == "cleanup":
            self._cleanup(unit.name, by="heart cleanup")
            self._send(encode_message({"t": "cmd", "op": "cleanup", "unit": unit.name,
                                       "by": self.me}, PAYLOAD_MAX))
            return {"ok": True, "message": f"{unit.name}: failure marks cleared on every "
                    f"live node"}
        if cmd == "move":
            node = str(req.get("node"))
            if node not in {n.name for n in self.cfg.nodes}:
                return {"ok": False, "error": f"unknown node {node!r}"}
            if node not in unit.nodes:
                return {"ok": False, "error": f"{unit.name} may run only on "
                        f"{', '.join(unit.nodes)} (its nodes list)"}
            moves = dict(self.state.local.moves)
            moves[unit.name] = [node, time.time_ns()]
            self.state.update_local(moves=moves)
            if node == self.me and unit.name in self.state.local.failed:
                self.state.update_local(failed=[u for u in self.state.local.failed
                                                if u != unit.name])
            self._save_local_settings()
            self._event("move", f"{unit.name} moved to {node} by the operator",
                        resource=unit.name, evidence={"unit": unit.name, "to": node})
            self._publish()
            self._dirty.set()
            return {"ok": True, "message": f"{unit.name} will move to {node}"}
        if cmd == "reload":
            return self.reload(plan_only=bool(req.get("plan")))
        if cmd.startswith("debug_") and os.environ.get("HEART_DEBUG_HOOKS") == "1":
            if cmd == "debug_block":
                # Blocks this event loop (the Python side) on purpose: the
                # tests prove the C engine keeps heartbeating meanwhile.
                time.sleep(float(req.get("seconds", 1.0)))
                return {"ok": True}
            if cmd == "debug_tasks":
                import io

                out = []
                for t in asyncio.all_tasks():
                    buf = io.StringIO()
                    t.print_stack(file=buf)
                    out.append(buf.getvalue())
                return {"ok": True, "tasks": out}
            if cmd == "debug_stall":
                # The engine thread sleeps, as if the machine had paused it.
                self.engine.debug_stall(int(float(req.get("seconds", 1.0)) * 1e6))
                return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def status(self) -> dict:
        cfg, st = self.cfg, self.state
        q = self.quorum or self._compute_quorum()
        nodes = []
        for n in cfg.nodes:
            rec = st.record_of(n.name)
            entry: dict[str, Any] = {"name": n.name, "id": n.id}
            if n.name == self.me:
                entry["state"] = "self"
                entry["links"] = {lk.name: "local" for lk in cfg.links}
            else:
                ps = self._peer_stats(n.id)
                if ps is None:
                    entry["state"] = "unknown"
                else:
                    entry["state"] = ps["state"]
                    entry["links"] = {lk["link"]: "up" if lk["up"] else "down"
                                      for lk in ps["links"]}
                    entry["lost"] = {lk["link"]: lk["lost"] for lk in ps["links"]}
                    entry["last_heard_ms"] = (None if ps["last_heard_s"] is None
                                              else round(ps["last_heard_s"] * 1e3, 1))
            if rec is not None:
                entry.update(rec.public())
            nodes.append(entry)
        view = st.view(q.quorate)
        decisions = placement.place(self._unit_specs(), view)
        resources = []
        for u in cfg.units:
            holders = sorted(n for n, v in view.nodes.items() if u.name in v.held)
            for rname in u.resources:
                resources.append({
                    "resource": rname, "unit": u.name,
                    "owner": holders[0] if len(holders) == 1 else (holders or None),
                    "placement": decisions[u.name].owner,
                    "reason": decisions[u.name].reason,
                    "local_state": self.sups[rname].state})
        links = []
        for i, lk in enumerate(cfg.links):
            ups = [n["name"] for n in nodes if n.get("links", {}).get(lk.name) == "up"]
            port = cfg.local.addresses.get(lk.name, (None, lk.port))[1]
            links.append({"name": lk.name, "kind": lk.kind, "port": port,
                          "peers_up": ups})
        return {"cluster": cfg.cluster_name, "cluster_id": cfg.cluster_id, "node": self.me,
                "generation": st.local.generation, "version": __version__,
                "uptime_s": round(time.monotonic() - self.started_mono, 1),
                "quorum": q.as_dict(), "nodes": nodes, "links": links,
                "resources": resources, "matrix": st.matrix(),
                "counters": self._counters()}

    def _counters(self) -> dict:
        c = self.engine.counters()
        # State messages the engine accepted but that were meant for
        # another node (see _send_to).
        c["rejected"]["misdirected"] = self.misdirected
        c["record_requests"] = dict(self.record_requests)
        return c

    # --------------------------------------------------------------- reload
    def _on_sighup(self) -> None:
        r = self.reload(plan_only=False)
        if not r["ok"]:
            log.error("reload refused: %s", r["error"])

    def reload(self, plan_only: bool) -> dict:
        try:
            new = hconfig.load(self.cfg.path, node_name=self.me)
        except hconfig.ConfigError as exc:
            return {"ok": False, "error": f"the new configuration is invalid; nothing "
                    f"changed:\n{exc}"}
        except OSError as exc:
            return {"ok": False, "error": f"cannot read {self.cfg.path}: {exc}"}
        changes, restart = self._diff(new)
        if plan_only:
            return {"ok": True, "changes": changes, "needs_restart": restart, "applied": False}
        self._apply(new)
        self._event("config_reload", f"configuration reloaded: {len(changes)} change(s)"
                    + (f"; needs a restart to apply: {', '.join(restart)}" if restart else ""),
                    node=self.me, evidence={"changes": changes, "needs_restart": restart})
        return {"ok": True, "changes": changes, "needs_restart": restart, "applied": True}

    def _diff(self, new: hconfig.Config) -> tuple[list[str], list[str]]:
        old = self.cfg
        changes: list[str] = []
        restart: list[str] = []
        for attr, label in (("cluster_name", "cluster.name"), ("cluster_id", "cluster.id"),
                            ("state_dir", "cluster.state_dir"), ("socket", "cluster.socket"),
                            ("timing", "[timing]"), ("engine", "[engine]"),
                            ("links", "[[link]]"), ("nodes", "[[node]]"),
                            ("metrics", "[metrics]")):
            if _strip(getattr(old, attr)) != _strip(getattr(new, attr)):
                restart.append(label)
        if (old.auth.keys, old.auth.send_key, old.auth.algorithm) != \
                (new.auth.keys, new.auth.send_key, new.auth.algorithm):
            if old.auth.algorithm != new.auth.algorithm:
                restart.append("auth.algorithm")
            else:
                changes.append(f"keys: ids {sorted(old.auth.keys)} -> {sorted(new.auth.keys)}, "
                               f"sending with {new.auth.send_key}")
        if _strip(old.handlers) != _strip(new.handlers):
            changes.append(f"handlers: {len(old.handlers)} -> {len(new.handlers)}")
        if _strip(old.quorum) != _strip(new.quorum):
            if old.quorum.ping_nodes != new.quorum.ping_nodes:
                restart.append("quorum.ping_nodes")
            changes.append("quorum settings")
        for name in new.resources.keys() - old.resources.keys():
            changes.append(f"add resource {name}")
        for name in old.resources.keys() - new.resources.keys():
            changes.append(f"remove resource {name}"
                           + (" (stopped here first)" if self.sups[name].state != "stopped"
                              else ""))
        for name in new.resources.keys() & old.resources.keys():
            if _strip(new.resources[name]) != _strip(old.resources[name]):
                running = self.sups[name].state in ("started", "starting")
                changes.append(f"change resource {name}"
                               + (" (restarted here: it runs on this node)" if running else ""))
        old_units = {u.name: u for u in old.units}
        new_units = {u.name: u for u in new.units}
        for name in new_units.keys() - old_units.keys():
            changes.append(f"add unit {name}")
        for name in old_units.keys() - new_units.keys():
            changes.append(f"remove unit {name}")
        q = self.quorum or self._compute_quorum()
        view = self.state.view(q.quorate)
        before = placement.place(self._unit_specs(), view)
        after = placement.place([placement.UnitSpec(u.name, tuple(u.nodes), u.auto_failback)
                                 for u in new.units], view)
        for name in new_units.keys() & old_units.keys():
            if new_units[name].resources != old_units[name].resources and \
                    self.units[name].state != "stopped":
                changes.append(f"restart unit {name} here: its resources changed "
                               f"({', '.join(old_units[name].resources)} -> "
                               f"{', '.join(new_units[name].resources)})")
            elif _strip(new_units[name]) != _strip(old_units[name]):
                b, a = before[name].owner, after[name].owner
                changes.append(f"change unit {name}: "
                               + (f"stays on {a or 'no node'}" if a == b
                                  else f"moves {b or 'nowhere'} -> {a or 'nowhere'} ({after[name].reason})"))
        return changes, restart

    def _apply(self, new: hconfig.Config) -> None:
        old = self.cfg
        if new.auth.algorithm == old.auth.algorithm:
            for kid, key in new.auth.keys.items():
                if old.auth.keys.get(kid) != key:
                    if kid in old.auth.keys:
                        self.engine.remove_key(kid)
                    self.engine.add_key(kid, key, new.auth.algorithm)
            self.engine.set_send_key(new.auth.send_key)
            for kid in old.auth.keys.keys() - new.auth.keys.keys():
                self.engine.remove_key(kid)
        keep_restart = ("cluster_name", "cluster_id", "state_dir", "socket", "timing",
                        "engine", "links", "nodes", "metrics")
        for attr in keep_restart:          # what needs a restart keeps its old value
            setattr(new, attr, getattr(old, attr))
        if _strip(old.handlers) != _strip(new.handlers):
            old_runner = self.handlers
            self.handlers = dispatch.HandlerRunner(new.handlers, self._base_env(),
                                                   self._on_handler_result)
            asyncio.ensure_future(old_runner.close())
        new.quorum.ping_nodes = old.quorum.ping_nodes
        self.cfg = new
        for name in new.resources.keys() - old.resources.keys():
            self._add_supervisor(new.resources[name])
        new_units = {u.name: u for u in new.units}
        for name in list(self.units):
            if name not in new_units:
                ur = self.units[name]
                asyncio.ensure_future(self._retire_unit(ur, old))
                del self.units[name]
        for u in new.units:
            ur = self.units.get(u.name)
            if ur is not None and ur.cfg.resources != u.resources and (
                    ur.state != "stopped" or ur.task is not None):
                # Its members changed while it runs here: stop the old
                # members (reverse order), then placement starts the new list.
                asyncio.ensure_future(self._retire_unit(ur, old))
                ur = None
            if ur is None:
                self.units[u.name] = UnitRuntime(u)
            else:
                ur.cfg = u
        for name in new.resources.keys() & old.resources.keys():
            if _strip(new.resources[name]) != _strip(old.resources[name]):
                asyncio.ensure_future(self._replace_supervisor(name, new.resources[name]))
        self._dirty.set()

    async def _retire_unit(self, ur: UnitRuntime, old: hconfig.Config) -> None:
        if ur.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await ur.task
        if ur.state != "stopped":
            await self._stop_resources(list(reversed(ur.cfg.resources)), ur.cfg.name)
        self._set_held(ur.cfg.name, None)
        for rname in ur.cfg.resources:
            if rname not in self.cfg.resources and rname in self.sups:
                await self.sups.pop(rname).close()

    async def _replace_supervisor(self, name: str, res: Any) -> None:
        sup = self.sups[name]
        was = sup.state in ("started", "starting")
        if was:
            sup.request("stop")
            await sup.wait_idle()
        await sup.close()
        self._add_supervisor(res)
        if was:
            self.sups[name].request("start")
            await self.sups[name].wait_idle()

    # ------------------------------------------------------------- shutdown
    async def _shutdown(self) -> None:
        sd_notify("STOPPING=1")
        for t in self._tasks:
            t.cancel()
        ok = True
        if self.state is not None and self.engine is not None:
            self.state.update_local(status="leaving", standby=self.state.local.standby)
            self._publish()
            held = [u for u in reversed(list(self.units)) if self.units[u].state != "stopped"
                    or self.units[u].task is not None]
            for name in held:
                ur = self.units[name]
                if ur.task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await ur.task
                if ur.state not in ("stopped",):
                    await self._release(name, "the daemon is stopping")
                ok = ok and ur.state == "stopped"
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.engine.fileno())
            # A leave message lets peers take over at once, but only when
            # everything here has stopped: otherwise they wait the dead time.
            # It goes out before handlers are waited for, so they never delay
            # the takeover.
            self.engine.close(leave=ok and self.engine.running)
        if self.pinger is not None:
            await self.pinger.close()
        for sup in self.sups.values():
            await sup.close()
        if self.handlers is not None:
            await self.handlers.close()
        joined = self.started_mono != 0.0
        if not joined:    # start-up failed: no peer heard us, nothing to tell them
            summary = f"{self.me} stopped before joining the cluster"
        else:
            summary = f"{self.me} stopped" + (
                "" if ok else " WITHOUT a leave message: a resource failed to stop")
        self._event("daemon_stop", summary, node=self.me,
                    evidence={"leave": ok and joined, "joined": joined})
        if self.control is not None:
            await self.control.close()
        if self.metrics is not None:
            await self.loop.run_in_executor(None, self.metrics.close)
        if self.journal is not None:
            self.journal.close()
        if not ok:
            self._exit_code = 1


@contextlib.contextmanager
def _short_announcer(ifname: str):
    """A short-lived Announcer on ifname (closed on exit)."""
    from heart._core import Announcer

    ann = Announcer(ifname)
    try:
        yield ann
    finally:
        ann.close()


def _local_macs() -> list[str]:
    """This host's interface MACs (the duplicate-owner rule asks whose a
    claiming MAC is)."""
    macs = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == psutil.AF_LINK and a.address and a.address != "00:00:00:00:00:00":
                macs.add(a.address.lower())
    return sorted(macs)


def _strip(obj: Any) -> Any:
    """Compare configuration objects without their line numbers."""
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _strip(getattr(obj, k)) for k in obj.__dataclass_fields__ if k != "line"}
    return obj


def _outcome(r: dispatch.ActionResult | None) -> str:
    if r is None:
        return "no result"
    if r.error:
        return r.error
    if r.timed_out:
        return f"timed out after {r.duration_s:.1f} s, killed"
    return f"{'ok' if r.ok else 'failed'}, rc {r.rc}, {r.duration_s:.2f} s"


def _result_evidence(r: dispatch.ActionResult | None) -> dict:
    if r is None:
        return {}
    return {"action": r.action, "ok": r.ok, "rc": r.rc, "duration_s": round(r.duration_s, 3),
            "output": r.output[-1024:], "attempts": r.attempts, "error": r.error,
            "timed_out": r.timed_out}


def run(cfg: hconfig.Config, log: str = "stderr", log_level: str = "info",
        log_source: str = "--log") -> int:
    """Run the node until stopped.  ``log``: stderr, syslog or journald
    (heart.logsetup; logsetup.LogSetupError, before anything starts, when the
    target cannot be used; ``log_source`` says where it was chosen)."""
    logsetup.configure(log, log_level, node=cfg.node_name, source=log_source)
    return asyncio.run(Daemon(cfg).run())
