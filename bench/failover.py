"""Failover time of Heart against keepalived (VRRPv3) and ucarp (CARP), seen
from a client on the same segment.

Each contender runs as a 3-node cluster in a `heart lab` of its own
(bench/contenders.py), with the virtual address 192.0.2.100 on node1, the
preferred node.  In the client namespace a prober sends a UDP datagram to
the address every 2 ms, a UDP echo service in each node namespace answers
with its node name, and an AF_PACKET capture records every frame with its
kernel receive timestamp (heart/failover_demo.py).  Each trial waits a
random fraction of one interval (advertisement period), so that the crash
falls at a random point of the contender's cycle, then crashes the owner,
node1, in one of two ways:

* cut:  its eth0 goes down (ioctl in its namespace; the daemon keeps running);
* kill: SIGKILL of its daemon (its echo service goes silent with it; the
        address stays configured there, as on a crashed machine).

and measures, from t0 = the wall clock right before the crash:

* announce: the first ARP frame claiming 192.0.2.100 from the new owner's MAC
  (gratuitous ARP or ARP reply), as captured by the client;
* outage:   the client's first echo reply through the new owner.

Then it repairs node1 (link up, or daemon restarted after the stale address
is removed, as a reboot would) and waits until node1 holds the address again
and the cluster is settled: node1 alone has the address and serves the
client for a settle period with no address change anywhere.  A virtual
address added on another node during a settle period is a spurious
failover.  A trial with no reply through another node within its timeout
is a failure (reported, not fatal).

    python bench/failover.py [--trials 20] [--quick] [--only heart:20ms,keepalived:0.01]

Settings: Heart with interval 2 ms, 5 ms, 20 ms and 1 s (deadtime = 3
intervals), keepalived advert_int 0.01 s and 1 s, ucarp advbase 1 s.  The
fast settings run one after the other; the three 1-second settings (which
spend most of their time waiting) run at the same time, in separate labs.

Last line: heart_outage_ms=<median at Heart's fastest stable setting>
keepalived_outage_ms=<median at advert_int 0.01 s> ratio=<heart/keepalived>
"""
from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import socket
import struct
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from _common import machine_info, write_json
import contenders
from heart import failover_demo as fd
from heart import lab

FAST = [("heart", "2ms"), ("heart", "5ms"), ("heart", "20ms"), ("keepalived", "0.01")]
SLOW = [("heart", "1s"), ("keepalived", "1"), ("ucarp", "1")]
CRASHES = ("cut", "kill")
ORIGINAL = "node1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def label(kind: str, setting: str) -> str:
    s = contenders.parse_seconds(setting)
    if kind == "heart":
        return f"interval {setting}, deadtime {3 * s * 1000:g} ms"
    if kind == "keepalived":
        return f"advert_int {s:g} s"
    return f"advbase {s:g} s"


class Reader:
    """Reads a Capture's frames incrementally (no copying of the whole list)."""

    def __init__(self, cap: fd.Capture):
        self.cap, self.pos = cap, 0

    def new(self) -> list[tuple[int, bytes]]:
        with self.cap._lock:
            out = self.cap.frames[self.pos:]
        self.pos += len(out)
        return out

    def trim(self) -> None:
        """Forget every frame read so far (keeps memory and scans small)."""
        with self.cap._lock:
            del self.cap.frames[:self.pos]
        self.pos = 0


class Bench:
    """One setting of one contender: its lab, client and trials."""

    def __init__(self, kind: str, setting: str, trials: int, stop: threading.Event):
        self.kind, self.setting, self.trials_wanted = kind, setting, trials
        self.name = f"{kind} {setting}"
        self.period = contenders.parse_seconds(setting)
        self.detect = contenders.detect_time(kind, setting)
        self.settle = max(1.0, 1.5 * self.period)
        self.fail_timeout = 3.0 + 5 * self.detect
        self.restore_timeout = 20.0 + 10 * self.period
        self.stop_ev = stop
        self.dir = tempfile.mkdtemp(prefix=f"heart-failover-{kind}-")
        self.cluster: contenders.Cluster | None = None
        self.echo = self.cap = self.watch = self.prober = None
        self.trials: list[dict] = []
        self.spurious: list[dict] = []
        self.notes: list[str] = []
        self.error: str | None = None
        self.restarted_after_cut = 0
        self.one_way_ms: float | None = None
        self.fulls_at_start: int | None = None
        self.table_fulls: int | None = None     # neighbour table overflows meanwhile
        self.load: list[float] = []             # 1-min load average after each trial

    # -- set up / tear down (main thread: lab.up installs signal handlers) --------
    def setup(self) -> None:
        log(f"{self.name}: building the lab in {self.dir}")
        self.fulls_at_start = arp_fulls()
        self.cluster = contenders.start(self.kind, self.setting, self.dir)
        st = self.cluster.st
        self.echo = fd.EchoServices(st["nodes"])
        self.cap = fd.Capture(st["client"]["ns"])
        self.watch = fd.AddressWatch(st["nodes"])
        self.prober = fd.Prober(st["client"]["ns"])
        self.reader = Reader(self.cap)

    def teardown(self) -> None:
        for obj in (self.prober, self.watch, self.cap, self.echo):
            if obj is not None:
                try:
                    obj.close()
                except Exception as exc:          # keep tearing down
                    log(f"{self.name}: closing {type(obj).__name__}: {exc}")
        self.prober = self.watch = self.cap = self.echo = None
        if self.cluster is not None:
            self.cluster.stop()
        elif lab.load_state(lab.Paths(self.dir)) is not None:
            lab.down(directory=self.dir, out=open(os.devnull, "w"))

    def keep_logs(self, where: str) -> None:
        os.makedirs(where, exist_ok=True)
        for f in os.listdir(self.dir):
            if f.endswith(".log"):
                shutil.copy(os.path.join(self.dir, f),
                            os.path.join(where, f"{self.kind}-{self.setting}-{f}"))

    # -- waiting -------------------------------------------------------------------
    def _sleep(self, s: float) -> None:
        if self.stop_ev.wait(s):
            raise KeyboardInterrupt

    def wait_stable(self, timeout: float, count_spurious: bool) -> bool:
        """Until node1 alone has the address, the client's replies come from
        node1, and that holds for self.settle with no address change on any
        node.  An address added on another node inside a settle window is a
        spurious failover (counted when count_spurious)."""
        c = self.cluster
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if c.owners() != [ORIGINAL]:
                self._sleep(0.01)
                continue
            t_start = time.time_ns()
            n_changes = len(self.watch.changes)
            got = False
            w_end = time.monotonic() + 2.0
            while time.monotonic() < w_end and not got:
                got = any(fd.udp_reply(f) == ORIGINAL for ts, f in self.reader.new()
                          if ts > t_start)
                if not got:
                    self._sleep(0.01)
            if not got:
                continue
            self.reader.trim()
            # The settle window.
            w_end = time.monotonic() + self.settle
            bad = None
            while time.monotonic() < w_end and bad is None:
                self._sleep(0.05)
                for ts, f in self.reader.new():
                    who = fd.udp_reply(f)
                    if who and who != ORIGINAL:
                        bad = ("failover", f"a reply through {who}")
                        break
                # (Heart renews its address's lease: RTM_NEWADDR on node1 is
                # no change of owner; only an add elsewhere or a delete on node1.)
                changes = self.watch.changes[n_changes:]
                adds = [(t, n) for t, n, what in changes if what == "add" and n != ORIGINAL]
                dels = [(t, n) for t, n, what in changes if what == "del" and n == ORIGINAL]
                if adds and bad is None:
                    bad = ("failover", f"{lab.VIP4} added on {adds[0][1]}")
                elif dels and bad is None:
                    bad = ("release", f"{lab.VIP4} removed from {ORIGINAL}")
            self.reader.trim()
            if bad is None and c.owners() == [ORIGINAL]:
                return True
            if count_spurious and bad:
                ev = {"time": time.time(), "trial": len(self.trials), "kind": bad[0],
                      "what": bad[1],
                      "changes": [(round((t - t_start) / 1e6, 3), n, w)
                                  for t, n, w in self.watch.changes[n_changes:]]}
                self.spurious.append(ev)
                log(f"{self.name}: SPURIOUS {bad[0]} during settle: {bad[1]}")
        return False

    # -- the trials ----------------------------------------------------------------
    def run(self) -> None:
        try:
            if not self.wait_stable(self.restore_timeout + 10, count_spurious=False):
                raise lab.LabError(f"{self.name}: never settled with {lab.VIP4} on node1 "
                                   f"(owners {self.cluster.owners()})")
            log(f"{self.name}: settled; {self.trials_wanted} trials per crash kind "
                f"(settle {self.settle:g} s, timeout {self.fail_timeout:g} s)")
            for i in range(self.trials_wanted):
                for crash in CRASHES:
                    self.trial(i, crash)
        except KeyboardInterrupt:
            self.error = "interrupted"
        except Exception as exc:       # reported, the other settings go on
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"{self.name}: ERROR {self.error}")
        finally:
            self.note_fulls()

    def note_fulls(self) -> None:
        now = arp_fulls()
        if now is not None and self.fulls_at_start is not None:
            self.table_fulls = now - self.fulls_at_start

    def trial(self, i: int, crash: str) -> None:
        c = self.cluster
        macs = {n: c.mac_of(n) for n in ("node1", "node2", "node3")}
        # A random phase: the repair ends in step with the contender's own
        # timers (node1 takes over on an advertisement), and a fixed settle
        # period would crash it at the same point of its heartbeat or
        # advertisement cycle every time.
        delay = random.uniform(0, self.period)
        self._sleep(delay)
        self.reader.new()
        self.reader.trim()
        n_changes = len(self.watch.changes)
        rec = {"trial": i, "crash": crash, "ok": False, "phase_delay_s": delay}
        if crash == "kill":
            self.echo.dead.add(ORIGINAL)
        t0 = time.time_ns()
        if crash == "kill":
            c.kill(ORIGINAL)
        else:
            c.cut(ORIGINAL)
        rec["crash_call_ms"] = (time.time_ns() - t0) / 1e6
        # The first reply through another node.
        reply = None
        frames: list[tuple[int, bytes]] = []
        end = time.monotonic() + self.fail_timeout
        while reply is None and time.monotonic() < end:
            self._sleep(0.002)
            new = self.reader.new()
            frames += new
            for ts, f in new:
                who = fd.udp_reply(f)
                if who and who != ORIGINAL and ts > t0:
                    reply = (ts, who)
                    break
        if reply is None:
            rec["error"] = (f"no reply through another node within {self.fail_timeout:g} s "
                            f"(owners {c.owners()})")
        else:
            ts, new_owner = reply
            rec.update(ok=True, new_owner=new_owner, outage_ms=(ts - t0) / 1e6)
            self._sleep(0.05)
            frames += self.reader.new()
            claim = self._first_claim(frames, t0, macs[new_owner])
            rec["announce_ms"] = None if claim is None else (claim - t0) / 1e6
            adds = [t for t, n, w in self.watch.changes[n_changes:]
                    if n == new_owner and w == "add"]
            rec["configured_ms"] = (adds[0] - t0) / 1e6 if adds else None
            if self.kind == "heart":
                # The new owner's journal: when it declared node1 down and
                # when it acquired the address (its own clock = ours).
                since = t0 / 1e9 - 0.001
                for kind_, key, match in (("node_down", "detect_ms", ("node", ORIGINAL)),
                                          ("resource_acquire", "acquire_ms",
                                           ("resource", "vip"))):
                    evs = [e for e in fd._journal_events(c.paths, new_owner, [kind_], since)
                           if e.get(match[0]) == match[1]]
                    rec[key] = (evs[0]["time"] * 1e3 - t0 / 1e6) if evs else None
        # Repair node1 and wait for it to be back and settled.
        if crash == "kill":
            self.echo.dead.discard(ORIGINAL)
            c.restart(ORIGINAL)
        else:
            if c.restore(ORIGINAL):
                rec["daemon_restarted"] = True
                self.restarted_after_cut += 1
        self.trials.append(rec)
        self.load.append(os.getloadavg()[0])
        a = rec.get("announce_ms")
        extra = "".join(f"{k[:-3]} {rec[k]:.2f} ms, " for k in ("detect_ms", "acquire_ms")
                        if rec.get(k) is not None)
        log(f"{self.name}: trial {i + 1}/{self.trials_wanted} {crash}: {extra}"
            + (f"announce {a:.2f} ms, " if a is not None else "announce -, ")
            + (f"outage {rec['outage_ms']:.2f} ms via {rec['new_owner']}" if rec["ok"]
               else f"FAILED: {rec['error']}"))
        if not self.wait_stable(self.restore_timeout, count_spurious=True):
            raise lab.LabError(f"node1 did not get {lab.VIP4} back and settle within "
                               f"{self.restore_timeout:g} s (owners {c.owners()})")

    @staticmethod
    def _first_claim(frames, t0: int, mac: str) -> int | None:
        from heart._core import parse_claim

        for ts, f in frames:
            if ts <= t0 or f[12:14] != b"\x08\x06":
                continue
            cl = parse_claim(f)
            if cl is not None and cl.address == lab.VIP4 and cl.mac.lower() == mac:
                return ts
        return None

    # -- results -------------------------------------------------------------------
    def rows(self) -> list[dict]:
        out = []
        for crash in CRASHES:
            ts = [t for t in self.trials if t["crash"] == crash]
            ok = [t for t in ts if t["ok"]]
            ann = sorted(t["announce_ms"] for t in ok if t.get("announce_ms") is not None)
            outg = sorted(t["outage_ms"] for t in ok)
            out.append({"contender": self.kind, "setting": self.setting,
                        "label": label(self.kind, self.setting), "crash": crash,
                        "trials": len(ts), "failures": len(ts) - len(ok),
                        "no_announce": len(ok) - len(ann),
                        "announce_median_ms": med(ann), "announce_p95_ms": p95(ann),
                        "outage_median_ms": med(outg), "outage_p95_ms": p95(outg),
                        "spurious_failovers": self.n_spurious("failover"),
                        "spurious_releases": self.n_spurious("release")})
        return out

    def n_spurious(self, kind: str) -> int:
        return sum(e["kind"] == kind for e in self.spurious)

    def stable(self, strict: bool = True) -> bool:
        """Every trial ran and failed over, and no settle period saw a
        spurious failover (the address on another node) nor, when strict,
        a spurious release (node1 dropping the address while nothing was
        wrong, even if it took it back at once)."""
        return (self.error is None and len(self.trials) == 2 * self.trials_wanted
                and all(t["ok"] for t in self.trials)
                and not self.n_spurious("failover")
                and not (strict and self.n_spurious("release")))


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def p95(xs: list[float]) -> float | None:
    # nearest rank: the smallest value with at least 95 % of the trials at or below it
    return sorted(xs)[math.ceil(0.95 * len(xs)) - 1] if xs else None


def fmt(x: float | None) -> str:
    return "-" if x is None else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def one_way_ms(b: Bench, count: int = 50) -> float | None:
    """Half the median RTT of ICMP echoes from the client to node2 (answered
    by node2's kernel; receive time = the kernel's timestamp, send time =
    the wall clock right before sendto), over the lab's veths and bridge."""
    st = b.cluster.st
    dst = next(n["v4"] for n in st["nodes"] if n["name"] == "node2")
    with lab.inside(st["client"]["ns"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    rtts = []
    try:
        s.setsockopt(socket.SOL_SOCKET, fd.SO_TIMESTAMPNS, 1)
        s.settimeout(0.5)
        ident = os.getpid() & 0xFFFF
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"heart-bench"
            pkt = body[:2] + struct.pack("!H", _icmp_checksum(body)) + body[4:]
            t = time.time_ns()
            s.sendto(pkt, (dst, 0))
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    data, anc, _fl, _ad = s.recvmsg(2048, 64)
                except socket.timeout:
                    break
                ihl = (data[0] & 0x0F) * 4
                typ, _c, _ck, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if typ == 0 and rid == ident and rseq == seq:
                    rtts.append((fd.kernel_ts(anc) - t) / 1e6)
                    break
            time.sleep(0.01)
    finally:
        s.close()
    return statistics.median(rtts) / 2 if rtts else None


def arp_table() -> tuple[int, int] | None:
    """(entries, gc_thresh3) of the kernel's IPv4 neighbour table, which all
    network namespaces share: when it is full, no namespace can learn a new
    neighbour (dmesg: "arp_cache: neighbor table overflow!") and the lab's
    nodes cannot reach each other.  Another lab with many nodes fills it."""
    try:
        with open("/proc/net/stat/arp_cache") as f:
            entries = int(f.read().split("\n")[1].split()[0], 16)
        with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3") as f:
            return entries, int(f.read())
    except (OSError, ValueError, IndexError):
        return None


def arp_fulls() -> int | None:
    """How often the shared neighbour table has been full (table_fulls,
    summed over CPUs) since boot."""
    try:
        with open("/proc/net/stat/arp_cache") as f:
            lines = f.read().split("\n")[1:]
        return sum(int(ln.split()[12], 16) for ln in lines if ln.strip())
    except (OSError, ValueError, IndexError):
        return None


def wait_arp_room(stop: threading.Event, wait: float, warnings: list[str], what: str) -> None:
    """Wait (at most `wait` s) until the shared neighbour table has room
    for a lab (100 entries); note it when it has not."""
    end = time.monotonic() + wait
    told = False
    while True:
        t = arp_table()
        if t is None or t[0] < t[1] - 100:
            return
        if time.monotonic() >= end:
            msg = (f"{what}: the host's neighbour table (shared by every namespace) was "
                   f"full ({t[0]} entries, gc_thresh3 {t[1]}): ARP in the lab may fail")
            warnings.append(msg)
            log("WARNING " + msg)
            return
        if not told:
            log(f"the host's neighbour table is full ({t[0]} of {t[1]}, another lab?); "
                f"waiting up to {wait:g} s for room")
            told = True
        if stop.wait(1.0):
            raise KeyboardInterrupt


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per crash kind and setting")
    ap.add_argument("--quick", action="store_true", help="3 trials per crash kind")
    ap.add_argument("--only", default="", help="comma-separated kind:setting, e.g. "
                    "heart:20ms,keepalived:0.01 (default: all)")
    ap.add_argument("--sequential", action="store_true",
                    help="run the 1-second settings one after the other too")
    ap.add_argument("--arp-wait", type=float, default=300.0,
                    help="seconds to wait for room in the host's neighbour table before "
                         "each lab (default 300)")
    ap.add_argument("--keep-logs", default="", help="copy the daemons' logs to this directory")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "failover.json"))
    a = ap.parse_args()
    need = lab.check_root()
    if need:
        print(f"failover: needs root ({need})", file=sys.stderr)
        return 2
    trials = 3 if a.quick else a.trials
    fast, slow = list(FAST), list(SLOW)
    if a.only:
        want = [tuple(x.split(":", 1)) for x in a.only.split(",") if x]
        fast = [s for s in fast if s in want]
        slow = [s for s in slow if s in want]
    contenders.ensure_installed("keepalived", "ucarp")
    contenders.become_subreaper()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    stop = threading.Event()
    benches: list[Bench] = []
    started = time.monotonic()
    interrupted = False
    warnings: list[str] = []
    try:
        for kind, setting in fast:
            b = Bench(kind, setting, trials, stop)
            benches.append(b)
            try:
                wait_arp_room(stop, a.arp_wait, warnings, b.name)
                b.setup()
                if b.kind == "heart" and b.one_way_ms is None:
                    b.one_way_ms = one_way_ms(b)
                b.run()
            except lab.LabError as exc:
                b.error = str(exc)
                log(f"{b.name}: ERROR {exc}")
                b.note_fulls()
            finally:
                if a.keep_logs:
                    b.keep_logs(a.keep_logs)
                b.teardown()
            if b.error == "interrupted":
                raise KeyboardInterrupt
        group = [Bench(k, s, trials, stop) for k, s in slow]
        benches += group
        if group:
            wait_arp_room(stop, a.arp_wait, warnings, "the 1-second settings")
        for b in group if not a.sequential else []:
            try:
                b.setup()
            except lab.LabError as exc:
                b.error = str(exc)
                log(f"{b.name}: ERROR {exc}")
        if a.sequential:
            for b in group:
                try:
                    wait_arp_room(stop, a.arp_wait, warnings, b.name)
                    b.setup()
                    b.run()
                except lab.LabError as exc:
                    b.error = str(exc)
                finally:
                    if a.keep_logs:
                        b.keep_logs(a.keep_logs)
                    b.teardown()
        else:
            threads = [threading.Thread(target=b.run, name=b.name, daemon=True)
                       for b in group if b.error is None]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: tearing everything down")
        stop.set()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()
        for b in benches:
            try:
                if a.keep_logs and b.cluster is not None and os.path.isdir(b.dir):
                    b.keep_logs(a.keep_logs)
                b.teardown()
            except Exception as exc:
                log(f"{b.name}: teardown: {exc}")
            shutil.rmtree(b.dir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, old_term)
    if interrupted:
        return 130
    return report(benches, trials, time.monotonic() - started, a.json, warnings)


def report(benches: list[Bench], trials: int, elapsed: float, json_path: str,
           warnings: list[str]) -> int:
    rows = [r for b in benches for r in b.rows()]
    print("| contender | setting | crash | trials | announce median | announce p95 "
          "| outage median | outage p95 | failures | spurious failovers / releases (whole setting) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['contender']} | {r['label']} | {r['crash']} | {r['trials']} "
              f"| {fmt(r['announce_median_ms'])} ms | {fmt(r['announce_p95_ms'])} ms "
              f"| {fmt(r['outage_median_ms'])} ms | {fmt(r['outage_p95_ms'])} ms "
              f"| {r['failures']}" + (f" ({r['no_announce']} without announce)"
                                      if r["no_announce"] else "")
              + f" | {r['spurious_failovers']} / {r['spurious_releases']} |")
    print()
    ow = next((b.one_way_ms for b in benches if b.one_way_ms is not None), None)
    print("Heart's floor: the survivors declare node1 dead a deadtime (3 intervals) after "
          "the last heartbeat they got from it, which left it between 0 and 1 interval "
          "before the crash; the announcement then needs one one-way trip to the client.  "
          "So the floor is 2 intervals + one-way latency, and 2.5 intervals + one-way "
          "latency on average over crash phases.  One-way latency = half the median RTT "
          "of 50 ICMP echoes client -> node2 (node2's kernel answers; kernel receive "
          "timestamp) in the first Heart lab: "
          + (f"{ow:.3f} ms." if ow is not None else "not measured, taken as 0."))
    floors = {}
    for b in benches:
        if b.kind == "heart":
            lo = 2 * b.period * 1000 + (ow or 0.0)
            avg = 2.5 * b.period * 1000 + (ow or 0.0)
            floors[b.setting] = {"min_ms": lo, "mean_ms": avg}
            ann = med(sorted(t["announce_ms"] for t in b.trials
                             if t["ok"] and t.get("announce_ms") is not None))
            print(f"  interval {b.setting}: floor {lo:.2f} ms (mean over phases {avg:.2f} ms); "
                  f"median announce {fmt(ann)} ms"
                  + (f" = mean floor + {ann - avg:.2f} ms" if ann is not None else ""))
    for b in benches:
        if b.error:
            print(f"  note: {b.name}: stopped early: {b.error}")
        if b.restarted_after_cut:
            print(f"  note: {b.name}: the daemon on node1 had exited after its link was cut "
                  f"and was restarted on restore ({b.restarted_after_cut} times)")
    print()
    hearts = sorted((b for b in benches if b.kind == "heart"), key=lambda b: b.period)
    print("Fastest stable Heart setting: the shortest interval whose trials all ran and "
          "failed over (a reply through a new owner within the timeout, both crash "
          "kinds) and whose settle periods (node1 serving, nothing crashed; counted per "
          "setting, both crash kinds) saw no spurious failover (the address added on "
          "another node) and no spurious release (node1 dropping the address, e.g. "
          "Heart's early release when it hears no quorum for a while):")
    fastest = loose = None
    for b in hearts:
        fails = sum(not t["ok"] for t in b.trials)
        print(f"  interval {b.setting}: {len(b.trials)}/{2 * b.trials_wanted} trials run, "
              f"{fails} failed, {b.n_spurious('failover')} spurious failovers, "
              f"{b.n_spurious('release')} spurious releases"
              + (f", error: {b.error}" if b.error else "")
              + (" -> stable" if b.stable() else " -> not stable"))
        if fastest is None and b.stable():
            fastest = b
        if loose is None and b.stable(strict=False):
            loose = b
    keep = next((b for b in benches if b.kind == "keepalived" and b.period == 0.01), None)
    outage = lambda b: med([t["outage_ms"] for t in b.trials if t["ok"]]) if b else None
    h_out, k_out = outage(fastest), outage(keep)
    print(f"  -> fastest stable: {fastest.setting if fastest else 'none'}"
          + (f" (counting spurious failovers only: {loose.setting}, outage median "
             f"{fmt(outage(loose))} ms)" if loose is not fastest and loose else "")
          + "; the outage medians on the last line are over both crash kinds")
    for b in benches:
        if b.table_fulls:
            print(f"  warning: {b.name}: the host's neighbour table (shared by every "
                  f"namespace, gc_thresh3) overflowed {b.table_fulls} times during this "
                  "setting (another lab on the machine): ARP in the lab failed meanwhile")
    loads = [x for b in benches for x in b.load]
    if loads:
        print(f"  machine load (1-min load average after each trial, {os.cpu_count()} CPUs): "
              f"median {statistics.median(loads):.1f}, max {max(loads):.1f}")
    for w in warnings:
        print(f"  warning: {w}")
    print(f"elapsed {elapsed:.0f} s")
    write_json(json_path, {
        "machine": machine_info(), "trials_per_crash_kind": trials, "elapsed_s": elapsed,
        "warnings": warnings,
        "one_way_latency_ms": ow, "heart_floor_ms": floors,
        "fastest_stable_heart": fastest.setting if fastest else None,
        "fastest_heart_without_spurious_failover": loose.setting if loose else None,
        "rows": rows,
        "settings": [{"contender": b.kind, "setting": b.setting, "label": label(b.kind, b.setting),
                      "nominal_detect_ms": b.detect * 1000, "settle_s": b.settle,
                      "timeout_s": b.fail_timeout, "error": b.error,
                      "spurious": b.spurious, "restarted_after_cut": b.restarted_after_cut,
                      "neighbour_table_overflows": b.table_fulls, "load_avg_1min": b.load,
                      "trials": b.trials} for b in benches]})
    ratio = (h_out / k_out) if h_out is not None and k_out else None
    print(f"heart_outage_ms={fmt(h_out) if h_out is not None else 'nan'} "
          f"keepalived_outage_ms={fmt(k_out) if k_out is not None else 'nan'} "
          f"ratio={f'{ratio:.3f}' if ratio is not None else 'nan'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
