"""``heart demo`` as root: a real failover, measured from outside the daemons.

Builds a 3-node ``heart lab`` (in a temporary lab directory, so it never
touches a lab of the user's), shows the cluster, and starts in the client
namespace a kernel-timestamped AF_PACKET capture and a prober that sends a
UDP datagram to the virtual address every 2 ms.  A tiny echo service in each
node namespace (a socket in this process, bound to the virtual address with
IP_FREEBIND) answers with the node's name, so every reply says which node
the address led to.

Then it kills the owner's daemon with SIGKILL (t=0 is ``time.time_ns()``
right before the kill; the owner's echo service dies with it) and prints a
timeline, all on CLOCK_REALTIME:

* survivors declare the owner down: ``node_down`` in their journals;
* the address is configured on the new owner: an RTM_NEWADDR notification
  from a netlink socket in each survivor's namespace (the journal's
  ``resource_acquire`` time is shown too);
* the client sees the first announcement (gratuitous ARP) from the new
  owner's MAC: the capture's kernel timestamp;
* the client gets the first reply through the new owner: ditto.

Then it restarts the killed daemon and shows what happens to the address
(the lab sets ``auto_failback = true``, so it moves back), tears the lab
down (always: also on an error, Ctrl-C or SIGTERM) and prints as its last
line ``outage_ms=<float>``: from the kill to the client's first reply
through the new owner.

Without root it says what it needs and runs the loopback demo
(heart/demo.py) instead, whose last line is ``detect_ms=<float>``.
"""
from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

from heart import lab

PORT = 7777                  # the echo service on the virtual address
PROBE_EVERY = 0.002          # seconds between probes
NODES = 3
IP_FREEBIND = 15
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWADDR = 20
RTM_DELADDR = 21
IFA_ADDRESS, IFA_LOCAL = 1, 2


class DemoError(RuntimeError):
    """The failover did not happen as expected (the message says what)."""


# ---------------------------------------------------------------------------
# What runs in the namespaces: echo services, the prober, the capture
# ---------------------------------------------------------------------------

class EchoServices:
    """One UDP socket per node namespace, bound to the virtual address (with
    IP_FREEBIND, so before the address exists there); a datagram to it is
    answered with the node's name.  A node marked dead answers nothing."""

    def __init__(self, nodes: list[dict]):
        self.socks: dict[int, str] = {}
        self._objs = []
        self.dead: set[str] = set()
        self._stop = threading.Event()
        try:
            for n in nodes:
                with lab.inside(n["ns"]):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._objs.append(s)
                s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
                s.bind((lab.VIP4, PORT))
                s.setblocking(False)
                self.socks[s.fileno()] = n["name"]
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="echo", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        by_fd = {s.fileno(): s for s in self._objs}
        while not self._stop.is_set():
            r, _, _ = select.select(list(by_fd), [], [], 0.05)
            for fd in r:
                s, name = by_fd[fd], self.socks[fd]
                while True:
                    try:
                        _data, peer = s.recvfrom(2048)
                    except (BlockingIOError, OSError):
                        break
                    if name not in self.dead:
                        with contextlib.suppress(OSError):
                            s.sendto(name.encode(), peer)

    def close(self) -> None:
        self._stop.set()
        t = getattr(self, "_thread", None)
        if t is not None:
            t.join(2)
        for s in self._objs:
            s.close()


class Prober:
    """From the client namespace: a datagram to the virtual address every
    PROBE_EVERY seconds (replies are read and dropped; the capture sees them)."""

    def __init__(self, client_ns: str):
        with lab.inside(client_ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(PROBE_EVERY):
            with contextlib.suppress(OSError):
                self.sock.sendto(b"probe %d" % self.sent, (lab.VIP4, PORT))
                self.sent += 1
            while True:
                try:
                    self.sock.recv(2048)
                except OSError:
                    break

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def kernel_ts(anc, default: int | None = None) -> int:
    """The SO_TIMESTAMPNS receive time (ns) in recvmsg's ancillary data;
    default (None: now) when there is none."""
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns() if default is None else default


class Capture:
    """Frames arriving on dev in ns, with the kernel's receive timestamps
    (SO_TIMESTAMPNS, CLOCK_REALTIME ns), read by a thread.  Kept: ARP and
    IPv6 frames, and UDP from the echo port."""

    def __init__(self, ns: str, dev: str = lab.DEV):
        with lab.inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(ETH_P_ALL))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind((dev, ETH_P_ALL))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except BaseException:
            self.sock.close()
            raise
        self.frames: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, 64, socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            etype = data[12:14]
            if etype in (b"\x08\x06", b"\x86\xdd") or (etype == b"\x08\x00"
                                                       and udp_reply(data) is not None):
                with self._lock:
                    self.frames.append((kernel_ts(anc), data))

    def snapshot(self) -> list[tuple[int, bytes]]:
        with self._lock:
            return list(self.frames)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def udp_reply(frame: bytes) -> str | None:
    """The node name in an echo reply from the virtual address (an IPv4
    UDP frame from VIP4 port PORT), else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != 17 or frame[26:30] != ipaddress.IPv4Address(lab.VIP4).packed:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp:udp + 2])[0] != PORT:
        return None
    return frame[udp + 8:].decode(errors="replace")


def eth_src(frame: bytes) -> str:
    return ":".join(f"{b:02x}" for b in frame[6:12])


class AddressWatch:
    """An rtnetlink socket in each namespace, subscribed to IPv4 address
    changes: when the virtual address is first added there (seen: wall
    clock at receipt, ns), and every change (changes: (time ns, node,
    "add" or "del"), in order of receipt)."""

    def __init__(self, nodes: list[dict], address: str = lab.VIP4):
        self.seen: dict[str, int] = {}
        self.changes: list[tuple[int, str, str]] = []
        self._vip = ipaddress.IPv4Address(address).packed
        self._socks: dict[int, tuple[socket.socket, str]] = {}
        try:
            for n in nodes:
                with lab.inside(n["ns"]):
                    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
                self._socks[s.fileno()] = (s, n["name"])
                s.bind((0, RTMGRP_IPV4_IFADDR))
        except BaseException:
            for s, _ in self._socks.values():
                s.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="addrwatch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        vip = self._vip
        while not self._stop.is_set():
            r, _, _ = select.select(list(self._socks), [], [], 0.05)
            for fd in r:
                s, name = self._socks[fd]
                try:
                    data = s.recv(65536)
                except OSError:
                    continue
                now = time.time_ns()
                off = 0
                while off + 16 <= len(data):
                    length, mtype = struct.unpack_from("=IH", data, off)
                    if length < 16:
                        break
                    if mtype in (RTM_NEWADDR, RTM_DELADDR):
                        a = off + 16 + 8          # nlmsghdr, ifaddrmsg
                        while a + 4 <= off + length:
                            alen, atype = struct.unpack_from("=HH", data, a)
                            if alen < 4:
                                break
                            if atype in (IFA_ADDRESS, IFA_LOCAL) and data[a + 4:a + alen] == vip:
                                what = "add" if mtype == RTM_NEWADDR else "del"
                                self.changes.append((now, name, what))
                                if what == "add":
                                    self.seen.setdefault(name, now)
                                break
                            a += (alen + 3) & ~3
                    off += (length + 3) & ~3

    def holder_changes(self, initial: list[str]) -> list[tuple[int, list[str]]]:
        """[(time ns, nodes holding the address after it)] for each change
        of that set, starting from `initial` (a lease renewal, an add on a
        node that has it already, is no change)."""
        holders, out = set(initial), []
        for t, node, what in list(self.changes):
            new = set(holders)
            (new.add if what == "add" else new.discard)(node)
            if new != holders:
                holders = new
                out.append((t, sorted(holders)))
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s, _ in self._socks.values():
            s.close()


# ---------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------

def _macs(st: dict) -> dict[str, str]:
    out = {}
    for n in st["nodes"]:
        info = json.loads(lab.run("ip", "-j", "link", "show", "dev", lab.DEV, ns=n["ns"]))
        out[info[0]["address"].lower()] = n["name"]
    return out


def _journal_events(paths: lab.Paths, node: str, kinds: list[str], since: float) -> list[dict]:
    from heart import journal

    try:
        with journal.open_readonly(os.path.join(paths.dir, node, "journal.db")) as j:
            return j.events(since=since, kinds=kinds)
    except (OSError, journal.JournalError):
        return []


def _wait(cond, timeout: float, step: float = 0.005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def _first_reply(cap: Capture, after_ns: int, node: str | None = None,
                 not_node: str | None = None) -> tuple[int, str] | None:
    for ts, f in cap.snapshot():
        if ts <= after_ns:
            continue
        who = udp_reply(f)
        if who and (node is None or who == node) and who != not_node:
            return ts, who
    return None


def _first_claim(cap: Capture, after_ns: int, mac: str):
    from heart._core import parse_claim

    for ts, f in cap.snapshot():
        if ts <= after_ns:
            continue
        c = parse_claim(f)
        if c is not None and c.address == lab.VIP4 and c.mac.lower() == mac:
            return ts, c
    return None


def _max_gap_ms(cap: Capture, start_ns: int, end_ns: int) -> float:
    ts = [t for t, f in cap.snapshot() if start_ns <= t <= end_ns and udp_reply(f)]
    return max((b - a for a, b in zip(ts, ts[1:])), default=0) / 1e6


def _failover(paths: lab.Paths, out) -> float:
    p = lambda s="": print(s, file=out, flush=True)
    st = lab.load_state(paths)
    lab.status(directory=paths.dir, out=out)
    owner = lab.owner_of(lab.node_status(paths, "node1"))
    if owner is None:
        raise DemoError("no owner of the virtual address after lab up")
    victim = next(n for n in st["nodes"] if n["name"] == owner)
    survivors = [n for n in st["nodes"] if n["name"] != owner]
    macs = _macs(st)
    from heart import config

    cfg = config.load(paths.config, node_name=owner)
    unit = next(u for u in cfg.units if "vip" in u.resources or u.name == "vip")

    echo = prober = cap = watch = None
    try:
        echo = EchoServices(st["nodes"])
        cap = Capture(st["client"]["ns"])
        watch = AddressWatch(survivors)
        prober = Prober(st["client"]["ns"])
        p()
        p(f"the client ({st['client']['ns']}, {st['client']['v4']}) sends a UDP probe to "
          f"{lab.VIP4}:{PORT} every {PROBE_EVERY * 1000:g} ms; each node answers with its "
          "name")
        start = time.time_ns()
        if not _wait(lambda: _first_reply(cap, start, owner), 5):
            raise DemoError(f"the client gets no reply from {owner} through {lab.VIP4}")
        time.sleep(0.3)
        steady = [udp_reply(f) for t, f in cap.snapshot() if t > start and udp_reply(f)]
        p(f"  steady state: {len(steady)} replies in the last {(time.time_ns() - start) / 1e9:.1f} s, "
          f"all from {', '.join(sorted(set(steady)))}")
        p()
        p(f"kill -9 {owner}'s daemon (pid {victim['pid']}); its echo service dies with it")
        echo.dead.add(owner)
        t0 = time.time_ns()
        os.kill(victim["pid"], signal.SIGKILL)

        got = _wait(lambda: _first_reply(cap, t0, not_node=owner), 10)
        if not got:
            raise DemoError(f"no reply through a new owner within 10 s of killing {owner}")
        reply_ts, new = got
        new_mac = next(m for m, n in macs.items() if n == new)
        time.sleep(0.2)                  # let journals and the capture settle
        claim = _first_claim(cap, t0, new_mac)
        rows: list[tuple[int | None, str]] = [(t0, f"kill -9 {owner}'s daemon, the owner of "
                                            f"{lab.VIP4}")]
        since = t0 / 1e9 - 1
        for n in survivors:
            evs = [e for e in _journal_events(paths, n["name"], ["node_down"], since)
                   if e["node"] == owner]
            if evs:
                rows.append((int(evs[0]["time"] * 1e9),
                             f"{n['name']} declares {owner} down (its journal: node_down)"))
            else:
                rows.append((None, f"{n['name']} has no node_down for {owner} in its journal"))
        acq = [e for e in _journal_events(paths, new, ["resource_acquire"], since)
               if e["resource"] == "vip"]
        acq_txt = (f"; journal resource_acquire at +{(acq[0]['time'] * 1e9 - t0) / 1e6:.3f} ms"
                   if acq else "")
        if new in watch.seen:
            rows.append((watch.seen[new], f"{lab.VIP4} configured on {new} (RTM_NEWADDR in "
                                          f"its namespace{acq_txt})"))
        elif acq:
            rows.append((int(acq[0]["time"] * 1e9), f"{lab.VIP4} configured on {new} "
                                                    "(its journal: resource_acquire)"))
        if claim:
            kind = "gratuitous ARP" if claim[1].kind.startswith("arp") else claim[1].kind
            rows.append((claim[0], f"client sees the first announcement from {new} "
                                   f"({kind} {lab.VIP4} is-at {new_mac})"))
        else:
            rows.append((None, f"client saw no announcement from {new}'s MAC {new_mac}"))
        rows.append((reply_ts, f"client gets the first reply from {lab.VIP4} through {new}"))
        p()
        p("timeline, measured from outside the daemons (ms after the kill; wall clock; the")
        p("client's times are kernel receive timestamps of a capture in its namespace):")
        rows.sort(key=lambda r: (r[0] is None, r[0] or 0))
        for t, what in rows:
            p(f"  t={(t - t0) / 1e6:9.3f} ms  {what}" if t is not None
              else f"  t=        ? ms  {what}")
        outage_ms = (reply_ts - t0) / 1e6
        p(f"outage seen by the client: {outage_ms:.3f} ms (deadtime "
          f"{cfg.timing.deadtime_us / 1000:g} ms, interval {cfg.timing.interval_us / 1000:g} ms)")

        # Failback: restart the killed node's daemon.
        p()
        p(f"restart {owner}'s daemon (auto_failback = {str(unit.auto_failback).lower()})")
        echo.dead.discard(owner)
        t1 = time.time_ns()
        lab.restart_node(owner, directory=paths.dir, wait=15)
        if unit.auto_failback:
            back = _wait(lambda: _first_reply(cap, t1, owner), 10)
            if not back:
                raise DemoError(f"{lab.VIP4} did not move back to {owner} after its restart")
            time.sleep(0.1)
            gap = _max_gap_ms(cap, t1, time.time_ns())
            p(f"  {owner} rejoined and took {lab.VIP4} back: first reply through {owner} "
              f"{(back[0] - t1) / 1e6:.3f} ms after the restart; the longest gap between "
              f"replies meanwhile was {gap:.3f} ms")
        else:
            time.sleep(1.0)
            p(f"  {owner} rejoined; {lab.VIP4} stays on {new} (auto_failback is off)")
        lab.status(directory=paths.dir, out=out)
        return outage_ms
    finally:
        for obj in (prober, watch, cap, echo):
            if obj is not None:
                obj.close()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(out=sys.stdout, err=sys.stderr, fallback=None) -> int:
    """The failover demo as root, else the loopback demo (fallback())."""
    need = lab.check_root()
    if need:
        print(f"heart demo: the failover demo {need[len('heart lab '):]}.", file=out)
        print("heart demo: running the loopback demo instead (two engines on 127.0.0.1, no "
              "IP takeover); its last line is detect_ms=<float>", file=out, flush=True)
        if fallback is None:
            from heart import demo
            fallback = demo.run
        return fallback()
    directory = tempfile.mkdtemp(prefix="heart-demo-")
    paths = lab.Paths(directory)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    outage = None
    ok = False
    keep_logs = False           # only after an error: the daemons' logs explain it
    try:
        print(f"heart demo: a {NODES}-node heart lab in network namespaces "
              f"(lab directory {directory})", file=out, flush=True)
        buf = io.StringIO()
        lab.up(nodes=NODES, directory=directory, out=buf)
        print("\n".join(buf.getvalue().splitlines()[:2]), file=out)
        print(file=out)
        outage = _failover(paths, out)
        ok = True
    except KeyboardInterrupt:
        print("heart demo: interrupted", file=err)
    except (lab.LabError, DemoError, OSError) as exc:
        keep_logs = True
        print(f"heart demo: {exc}", file=err)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            print(file=out)
            buf = io.StringIO()
            try:
                lab.down(directory=directory, out=buf)
            finally:
                text = buf.getvalue().rstrip()
                if not keep_logs:
                    text = text.split("; logs kept in")[0]
                print(text, file=out, flush=True)
        except lab.LabError as exc:
            ok, keep_logs = False, True
            print(f"heart demo: {exc}", file=err)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, old_term)
        if keep_logs:
            print(f"heart demo: the daemons' logs are in {directory}", file=err)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    if not ok or outage is None:
        return 1
    print(f"outage_ms={outage:.3f}", file=out)
    return 0
