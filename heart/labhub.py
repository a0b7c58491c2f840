"""An impairing learning switch for `heart lab`, in user space.

This kernel has no tc netem, so loss, delay, jitter and partitions are made
here: ``python -m heart.labhub --port P ...`` runs inside the lab's bridge
namespace with one AF_PACKET socket bound to each given port (the outer
veth ends), and forwards the frames between them like a learning switch:

* source MAC -> port is learned (entries age out after 300 s); a unicast
  frame to a learned MAC goes to that port only, anything else is flooded
  to every other port;
* per (frame, destination port): dropped with probability ``--loss`` (a
  FRACTION in [0, 1), e.g. 0.2 for 20 %), else sent after a delay drawn
  uniformly from [max(0, delay - jitter), delay + jitter] ms (netem's
  default jitter; like netem, this reorders frames);
* ``--group A,B`` (repeatable) makes a partition: a frame goes from port A
  to port B only if some group holds both; a port in no group (the client)
  talks to everybody.

Frames keep their checksum-offload state (PACKET_VNET_HDR: a frame whose
checksum the sender left to the hardware is sent on the same way), so UDP
and TCP between namespaces work through the hub.  A bad frame or a send
error (ENOBUFS, ENETDOWN, a port that went away...) is counted, never
fatal.  Counters go to ``--stats FILE`` (JSON) every second and on exit;
``--ready FILE`` is written (and "ready" printed) once every socket is
bound.  SIGTERM or SIGINT: a clean exit (frames still queued are dropped).

The lab side, used by `heart lab impair/partition/heal`:

* ``impair(directory, loss, delay_ms, jitter_ms, partition)`` starts a hub
  on every LAN port (nodes, client, extra hosts) of br0, waits until it is
  ready and only then takes the ports out of br0 (one ``ip -batch``), so
  there is never a gap in forwarding (for a few ms both forward: some
  frames arrive twice).  A hub already running is replaced.
* ``heal(directory)`` puts the ports back into br0 first, then stops the
  hub.
* ``status(directory)`` the running hub's settings and counters.
* ``stop_hub(record)`` (``heart lab down`` calls it) stops a recorded hub,
  only while the PID is still that hub.
"""
from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR = struct.Struct("=BBHHHH")
VNET_F_NEEDS_CSUM = 1
AUXDATA = struct.Struct("=IIIHHHH")     # status, len, snaplen, mac, net, vlan_tci, vlan_tpid
BUF = 65536 + 256
MAC_AGE = 300.0
STATS_EVERY = 1.0
BATCH = 256                             # frames read from one socket before looking at the queue


class Hub:
    """The switch.  ports: interface names; loss: a fraction in [0, 1);
    delay_ms, jitter_ms: >= 0; groups: lists of port names (a partition)."""

    def __init__(self, ports: list[str], loss: float = 0.0, delay_ms: float = 0.0,
                 jitter_ms: float = 0.0, groups: list[list[str]] | None = None,
                 seed: int | None = None):
        check_settings(loss, delay_ms, jitter_ms)
        if not ports:
            raise ValueError("no ports")
        if len(set(ports)) != len(ports):
            raise ValueError(f"a port given twice: {ports}")
        groups = [list(g) for g in (groups or [])]
        unknown = sorted({p for g in groups for p in g} - set(ports))
        if unknown:
            raise ValueError(f"group members that are not ports: {', '.join(unknown)}")
        self.ports = list(ports)
        self.loss = float(loss)
        self.delay_ms, self.jitter_ms = float(delay_ms), float(jitter_ms)
        self.lo = max(0.0, delay_ms - jitter_ms) / 1000.0
        self.span = (delay_ms + jitter_ms) / 1000.0 - self.lo
        self.groups = groups
        self.seed = seed
        self.rng = random.Random(seed)
        n = len(ports)
        member = [{k for k, g in enumerate(groups) if p in g} for p in ports]
        # allowed[a][b]: may a frame from port a go to port b?
        self.allowed = [[a != b and (not member[a] or not member[b]
                                     or bool(member[a] & member[b]))
                         for b in range(n)] for a in range(n)]
        self.others = [tuple(b for b in range(n) if b != a) for a in range(n)]
        self.macs: dict[bytes, tuple[int, float]] = {}
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.socks: list[socket.socket] = []
        self.check_outgoing = False
        self.vnet = True
        self.stop = False
        self.last_error = ""
        self.c = {k: 0 for k in (
            "frames_in", "forwarded", "dropped_loss", "dropped_partition", "filtered",
            "bad_frames", "recv_errors", "send_errors", "queue_max", "dropped_at_exit",
            "rx_overruns")}
        self.port_in = [0] * n
        self.port_out = [0] * n

    def settings(self) -> dict:
        return {"ports": self.ports, "loss": self.loss, "delay_ms": self.delay_ms,
                "jitter_ms": self.jitter_ms, "groups": self.groups, "seed": self.seed}

    # -- sockets ---------------------------------------------------------

    def open(self) -> None:
        for name in self.ports:
            # Protocol 0: the socket hears nothing until bound to its port.
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.socks.append(s)
            for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                self.check_outgoing = True
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            if self.vnet:
                try:
                    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                except OSError:
                    self.vnet = False
                    for t in self.socks[:-1]:
                        t.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 0)
            s.bind((name, ETH_P_ALL))
            s.setblocking(False)

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []

    # -- frames ----------------------------------------------------------

    def _recv(self, i: int, now: float) -> bool:
        """Read and handle one frame from port i; False when none is waiting."""
        s = self.socks[i]
        try:
            data, anc, flags, addr = s.recvmsg(BUF, 64)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:       # ENETDOWN after the port went down, ...
            self.c["recv_errors"] += 1
            self.last_error = f"recv on {self.ports[i]}: {exc}"
            return False
        if self.check_outgoing and addr[2] == PACKET_OUTGOING:
            return True
        self.c["frames_in"] += 1
        self.port_in[i] += 1
        h = VNET_HDR.size if self.vnet else 0
        if flags & socket.MSG_TRUNC or len(data) < h + 14:
            self.c["bad_frames"] += 1
            return True
        for level, kind, value in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= AUXDATA.size:
                status, _l, _s, _m, _n, tci, tpid = AUXDATA.unpack_from(value)
                if status & TP_STATUS_VLAN_VALID:
                    data = self._vlan(data, h, tci,
                                      tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100)
        dst = data[h:h + 6]
        src = data[h + 6:h + 12]
        if not src[0] & 1:
            self.macs[src] = (i, now)
        targets = self.others[i]
        if not dst[0] & 1:
            e = self.macs.get(dst)
            if e is not None and now - e[1] < MAC_AGE:
                if e[0] == i:
                    self.c["filtered"] += 1
                    return True
                targets = (e[0],)
        allowed = self.allowed[i]
        loss, rng = self.loss, self.rng
        for j in targets:
            if not allowed[j]:
                self.c["dropped_partition"] += 1
            elif loss and rng.random() < loss:
                self.c["dropped_loss"] += 1
            else:
                d = self.lo + rng.random() * self.span if self.span else self.lo
                if d <= 0.0:
                    self._send(j, data)
                else:
                    heapq.heappush(self.heap, (now + d, self.seq, j, data))
                    self.seq += 1
        return True

    def _vlan(self, data: bytes, h: int, tci: int, tpid: int) -> bytes:
        """Put back a VLAN tag the kernel took out of the frame."""
        if h:
            flags, gso, hdr_len, gso_size, cs, co = VNET_HDR.unpack_from(data)
            if flags & VNET_F_NEEDS_CSUM:
                cs += 4
            if hdr_len:
                hdr_len += 4
            data = VNET_HDR.pack(flags, gso, hdr_len, gso_size, cs, co) + data[h:]
        return data[:h + 12] + struct.pack("!HH", tpid, tci) + data[h + 12:]

    def _send(self, j: int, data: bytes) -> None:
        try:
            self.socks[j].send(data)
        except OSError as exc:       # ENOBUFS, ENETDOWN, ENXIO, EAGAIN, EMSGSIZE...
            self.c["send_errors"] += 1
            self.last_error = f"send on {self.ports[j]}: {exc}"
        else:
            self.c["forwarded"] += 1
            self.port_out[j] += 1

    # -- the loop ----------------------------------------------------------

    def counters(self) -> dict:
        for i, sk in enumerate(self.socks):
            # Frames the kernel dropped because this socket's queue was
            # full (the hub fell behind); the kernel resets it on reading.
            with contextlib.suppress(OSError):
                _n, drops = struct.unpack("II", sk.getsockopt(SOL_PACKET,
                                                              PACKET_STATISTICS, 8))
                self.c["rx_overruns"] += drops
        c = dict(self.c)
        c["queued"] = len(self.heap)
        c["port_in"] = dict(zip(self.ports, self.port_in))
        c["port_out"] = dict(zip(self.ports, self.port_out))
        c["last_error"] = self.last_error
        return c

    def write_stats(self, path: str | None, running: bool = True) -> None:
        if not path:
            return
        doc = {"pid": os.getpid(), "time": time.time(), "running": running,
               "settings": self.settings(), "counters": self.counters()}
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            self.last_error = f"stats {path}: {exc}"

    def run(self, stats: str | None = None, wakeup: int | None = None) -> None:
        """Forward until self.stop (set by a signal handler; wakeup: the
        read end of the signal wakeup pipe)."""
        fds = {s.fileno(): i for i, s in enumerate(self.socks)}
        rlist = list(fds) + ([wakeup] if wakeup is not None else [])
        heap = self.heap
        mono = time.monotonic
        next_stats = mono() + STATS_EVERY
        while not self.stop:
            now = mono()
            while heap and heap[0][0] <= now:
                _t, _s, j, data = heapq.heappop(heap)
                self._send(j, data)
            self.c["queue_max"] = max(self.c["queue_max"], len(heap))
            if now >= next_stats:
                self.write_stats(stats)
                next_stats = now + STATS_EVERY
            until = min(next_stats, heap[0][0]) if heap else next_stats
            try:
                ready = select.select(rlist, [], [], max(0.0, until - mono()))[0]
            except InterruptedError:
                continue
            for fd in ready:
                if fd == wakeup:
                    with contextlib.suppress(OSError):
                        os.read(wakeup, 512)
                    continue
                i = fds[fd]
                for _ in range(BATCH):
                    if not self._recv(i, mono()):
                        break
        self.c["dropped_at_exit"] = len(heap)
        heap.clear()
        self.write_stats(stats, running=False)


def check_settings(loss: float, delay_ms: float, jitter_ms: float) -> None:
    for name, v in (("loss", loss), ("delay", delay_ms), ("jitter", jitter_ms)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"{name} {v!r}: expected a finite number")
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss {loss}: expected a fraction in [0, 1) (0.2 is 20 %)")
    if delay_ms < 0 or jitter_ms < 0:
        raise ValueError(f"delay {delay_ms} ms, jitter {jitter_ms} ms: expected >= 0")


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m heart.labhub",
        description="An impairing learning switch between AF_PACKET ports (heart lab).")
    ap.add_argument("--port", action="append", required=True, metavar="NAME",
                    help="an interface to switch between (repeat)")
    ap.add_argument("--loss", type=float, default=0.0, metavar="FRACTION",
                    help="drop probability per frame and destination, in [0, 1) "
                         "(0.2 = 20 %%)")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0,
                    help="delay drawn uniformly from [max(0, delay-jitter), delay+jitter]")
    ap.add_argument("--group", action="append", default=[], metavar="PORT,PORT",
                    help="a partition group (repeat); ports in no group reach everybody")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--stats", metavar="FILE", help="JSON counters, every second and at exit")
    ap.add_argument("--ready", metavar="FILE", help="written once every port is bound")
    ap.add_argument("--priority", type=int, default=20,
                    help="SCHED_FIFO priority to try (0: do not)")
    a = ap.parse_args(argv)
    try:
        hub = Hub(a.port, a.loss, a.delay_ms, a.jitter_ms,
                  [[p for p in g.split(",") if p] for g in a.group], a.seed)
    except ValueError as exc:
        ap.error(str(exc))
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)

    def on_signal(signum, frame):
        hub.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    if a.priority > 0:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(a.priority))
    try:
        hub.open()
    except OSError as exc:
        print(f"heart.labhub: cannot open the ports: {exc}", file=sys.stderr)
        return 1
    hub.write_stats(a.stats)
    if a.ready:
        _write_atomic(a.ready, json.dumps({"pid": os.getpid()}) + "\n")
    print(f"ready pid {os.getpid()} ports {','.join(hub.ports)}"
          + ("" if hub.vnet else " (no PACKET_VNET_HDR)"), flush=True)
    try:
        hub.run(a.stats, r)
    finally:
        hub.close()
    print(f"exit {json.dumps(hub.counters(), sort_keys=True)}", flush=True)
    return 0


# ---------------------------------------------------------------------------
# The lab side
# ---------------------------------------------------------------------------

LOG = "labhub.log"


def _lab():
    from heart import lab

    return lab


def is_our_hub(rec: dict) -> bool:
    """Is the recorded hub alive and still the process we started (same
    start time, `heart.labhub` in its command line)?"""
    lab = _lab()
    pid = rec.get("pid") if isinstance(rec, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    st = lab._proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    if rec.get("starttime") is not None and st[1] != rec["starttime"]:
        return False
    return "heart.labhub" in lab._cmdline(pid)


def _reap(pid: int, wait: float = 0.0) -> None:
    """Collect the exit status if the hub is our child (no zombie left),
    waiting up to `wait` seconds for it to finish exiting."""
    end = time.monotonic() + wait
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except (ChildProcessError, OSError):
            return                      # not our child (or already collected)
        if time.monotonic() >= end:
            return
        time.sleep(0.005)


def stop_hub(hub_record: dict, grace: float = 3.0) -> bool:
    """SIGTERM the recorded hub, SIGKILL after grace seconds; only while its
    PID is still that hub.  True if it was running."""
    if not is_our_hub(hub_record):
        # Dead already: collect it if it is our zombie (same start time).
        pid = hub_record.get("pid") if isinstance(hub_record, dict) else None
        st = _lab()._proc_stat(pid) if isinstance(pid, int) and pid > 1 else None
        if st is not None and st[0] == "Z" and st[1] == hub_record.get("starttime"):
            _reap(pid)
        return False
    pid = hub_record["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, grace), (None, 5.0)):
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not is_our_hub(hub_record):
                # While exiting its command line reads empty: give the
                # process a moment to become a zombie we can collect.
                _reap(pid, wait=2.0)
                return True
            time.sleep(0.01)
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    return True


def _ports(st: dict) -> list[tuple[str, str]]:
    """(name, outer veth) of every LAN port: the nodes by name, "client",
    the extra hosts by tag."""
    out = [(n["name"], n["veth"]) for n in st.get("nodes", [])]
    if st.get("client"):
        out.append(("client", st["client"]["veth"]))
    out += [(h["tag"], h["veth"]) for h in st.get("hosts", [])]
    return out


def _existing(st: dict) -> set[str]:
    lab = _lab()
    text = lab.run("ip", "-o", "link", "show", ns=st["bridge_ns"])
    names = set()
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@")[0])
    return names


def _batch(st: dict, lines: list[str]) -> None:
    """One `ip -batch -` in the bridge namespace (one process: a few ms)."""
    lab = _lab()
    if not lines:
        return
    with lab.inside(st["bridge_ns"]):
        r = subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise lab.LabError(f"ip -batch in {st['bridge_ns']} failed ({r.returncode}): "
                           f"{r.stderr.strip()}")


def _unlink(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def impair(directory: str | None = None, loss: float = 0.0, delay_ms: float = 0.0,
           jitter_ms: float = 0.0, partition: list[list[str]] | None = None,
           seed: int | None = None, timeout: float = 10.0) -> dict:
    """Put the hub between the lab's LAN ports: loss (a fraction in [0, 1)),
    delay and jitter (ms) per frame and destination, and a partition (lists
    of node names, host tags or "client"; a port in no group reaches every
    port).  Replaces a running hub.  The hub record stored as st["hub"]:
    {"pid", "starttime", "settings", "stats", "ports", "log"}."""
    lab = _lab()
    check_settings(loss, delay_ms, jitter_ms)
    paths, st = lab._running_state(directory)
    groups = [list(g) for g in (partition or [])]
    for g in groups:
        if not all(isinstance(x, str) for x in g):
            raise ValueError(f"partition group {g!r}: expected names")
    with lab._locked(paths):
        st = lab.load_state(paths)
        if st is None:
            raise lab.LabError(f"no lab (no {paths.state})")
        ports = _ports(st)
        by_name = dict(ports)
        unknown = sorted({x for g in groups for x in g} - set(by_name))
        if unknown:
            raise ValueError(f"not in this lab: {', '.join(unknown)} (it has "
                             f"{', '.join(n for n, _ in ports)})")
        have = _existing(st)
        veths = [v for _n, v in ports if v in have]
        vgroups = [[by_name[x] for x in g] for g in groups if g]
        settings = {"loss": float(loss), "delay_ms": float(delay_ms),
                    "jitter_ms": float(jitter_ms), "partition": groups, "seed": seed}
        old = st.get("hub")
        token = uuid.uuid4().hex[:8]
        stats = os.path.join(paths.dir, f"labhub-{token}.json")
        ready = os.path.join(paths.dir, f"labhub-{token}.ready")
        argv = [sys.executable, "-m", "heart.labhub", "--loss", repr(float(loss)),
                "--delay-ms", repr(float(delay_ms)), "--jitter-ms", repr(float(jitter_ms)),
                "--stats", stats, "--ready", ready]
        for v in veths:
            argv += ["--port", v]
        for g in vgroups:
            argv += ["--group", ",".join(g)]
        if seed is not None:
            argv += ["--seed", str(int(seed))]
        rec = _start(paths, st, argv, ready, timeout)
        rec.update(settings=settings, stats=stats, ports=veths,
                   log=os.path.join(paths.dir, LOG))
        # Recorded before anything else happens, so that `down` stops both
        # hubs whatever interrupts this.
        if old:
            st["hub_old"] = old
        st["hub"] = rec
        lab.save_state(paths, st)
        try:
            # The hub forwards already: now take the ports out of br0.
            _batch(st, [f"link set {v} nomaster" for v in veths])
        except BaseException:
            with contextlib.suppress(Exception):
                _batch(st, [f"link set {v} master br0" for v in veths])
            stop_hub(rec)
            _unlink(stats)
            if old:
                st["hub"] = st.pop("hub_old")
            else:
                st.pop("hub", None)
            lab.save_state(paths, st)
            raise
        if old:
            stop_hub(old)
            _unlink(old.get("stats"))
            st.pop("hub_old", None)
            lab.save_state(paths, st)
        return rec


def _start(paths, st: dict, argv: list[str], ready: str, timeout: float) -> dict:
    import heart

    lab = _lab()
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(heart.__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"]
                               if env.get("PYTHONPATH") else "")
    log_path = os.path.join(paths.dir, LOG)
    with open(log_path, "ab") as log, lab.inside(st["bridge_ns"]):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=env, cwd=paths.dir,
                             start_new_session=True, close_fds=True)
    p.returncode = 0            # detached: never waited for by Popen
    stat = lab._proc_stat(p.pid)
    rec = {"pid": p.pid, "starttime": stat[1] if stat else None}
    end = time.monotonic() + timeout
    try:
        while not os.path.exists(ready):
            # Not is_our_hub(): right after a vfork-exec the new command
            # line can read as empty for a moment.
            stat = lab._proc_stat(p.pid)
            if stat is None or stat[0] in ("Z", "X") or stat[1] != rec["starttime"]:
                _reap(p.pid)
                raise lab.LabError(f"the lab hub (pid {p.pid}) exited; the end of "
                                   f"{log_path}:{lab._log_tail(log_path)}")
            if time.monotonic() > end:
                raise lab.LabError(f"the lab hub (pid {p.pid}) was not ready within "
                                   f"{timeout:g} s (log {log_path})")
            time.sleep(0.005)
    except BaseException:
        # Our child, not collected yet: its PID cannot have been reused, and
        # right after exec its command line may still read empty (so not
        # stop_hub, which checks it).
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        _reap(p.pid, wait=5.0)
        _unlink(ready)
        raise
    _unlink(ready)
    return rec


def heal(directory: str | None = None) -> None:
    """Every LAN port back into br0, then the hub stopped.  No hub: nothing
    to do."""
    lab = _lab()
    paths, st = lab._running_state(directory)
    with lab._locked(paths):
        st = lab.load_state(paths)
        if st is None or not st.get("hub"):
            return
        rec = st["hub"]
        have = _existing(st)
        _batch(st, [f"link set {v} master br0" for _n, v in _ports(st) if v in have])
        stop_hub(rec)
        _unlink(rec.get("stats"))
        del st["hub"]
        lab.save_state(paths, st)


def status(directory: str | None = None) -> dict | None:
    """{"pid", "running", "settings", "ports", "counters" (None until the
    hub wrote some), "log"} of the lab's hub, or None without one."""
    lab = _lab()
    _paths, st = lab._running_state(directory)
    rec = st.get("hub")
    if not rec:
        return None
    counters = None
    try:
        with open(rec.get("stats") or "") as f:
            doc = json.load(f)
        if doc.get("pid") == rec.get("pid"):
            counters = doc.get("counters")
    except (OSError, ValueError):
        pass
    return {"pid": rec.get("pid"), "running": is_our_hub(rec),
            "settings": rec.get("settings"), "ports": rec.get("ports"),
            "counters": counters, "log": rec.get("log")}


if __name__ == "__main__":
    sys.exit(main())
