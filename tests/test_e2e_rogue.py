"""End-to-end: a rogue namespace on the lab's segment replays captured
heartbeats and sends forged ones; they are ignored, counted, and change
nothing (issue 5: "a rogue namespace replays captured heartbeats and sends
forged ones: ignored, counted, no state change").  Root and network
namespaces (CI).

The real 3-node `heart lab` of the make_lab fixture (interval 20 ms, dead time
100 ms, unicast UDP on lab.PORT, key id 1 with the configuration's default
algorithm, AES-256-GCM, read here from the captured headers) gets one more
namespace, the rogue (lab.add_host, 192.0.2.230).  A tap - an AF_PACKET
socket in the bridge namespace on each node's outer veth end - first
records one second of real traffic (heartbeats and state messages as the
nodes send them), then, during the attack, every frame the nodes are given.

The attack lasts ATTACK_S seconds at about RATE datagrams a second in all
(moderate: the machine may have two cores), round robin over three targets
and these categories (what each must be counted as, by the engine's order
of checks, docs/protocol.md "Order of checks on receive"):

  replay        captured datagrams, newest first (so the first rounds are
                still inside the 64-sequence replay window), sent from the
                rogue's own address -> replay.  Each goes only to nodes
                that received that (sender, generation, sequence): a state
                message sent to one peer only, relayed to another within the
                window, passes the engine's checks there and is dropped by
                the daemon, which finds another recipient named inside it
                (counted as "misdirected"; test_rogue_cross_replay_directed);
  replay_spoof  the same with the original sender's source address and port
                (raw socket, IP_HDRINCL, UDP checksum 0) -> replay;
  own           replays of a node's own datagrams to that node -> counted
                as "own" (its own looped-back traffic), not rejected;
  bad_tag       sealed under key id 1 (the lab's algorithm) with an
                attacker's key, cluster 94, claiming another configured
                node with its current generation
                and a far higher sequence, or a newer generation (all three
                message types, leave included), and captured datagrams with
                the sequence raised (tag no longer matches) -> bad tag;
  unknown_key   a newer generation under key ids that are not installed, or
                under key id 1 with the other algorithm -> unknown key;
  wrong_cluster cluster ids other than 94 -> wrong cluster;
  unknown_node  node ids outside the configuration -> unknown node;
  malformed     empty, short, truncated or padded captured datagrams, bad
                magic, version, type, algorithm, reserved field, node id 0,
                sequence 0, length fields that disagree, random bytes
                -> malformed.
Every category but the replays alternates between the rogue's own address
and spoofed node addresses (the engine does not look at the source address),
never the target's own address: its kernel drops such a datagram as a
martian before any socket sees it.

Asserted:
  * every daemon is the same process, alive, throughout;
  * no node's journal has any event from the start of the attack to the end
    of the checks (no node_down/up/late/restart, link_down/up,
    resource_acquire/release, placement, quorum change, overflow, ...);
  * every node's view (state and generation of every node, quorum, owner)
    is the one it had before, polled throughout the attack and after it, and
    only the owner's namespace has the address;
  * the client's replies through the virtual address during the attack all
    came from the owner (and it got plenty);
  * the reject counters: the engine counts every datagram exactly once
    (counters are exact, docs), so each cause must rise by exactly what was
    sent for it.  The only way a sent datagram can go uncounted is a kernel
    drop before the daemon reads it (its UDP socket buffer overflowing, or
    the rogue's socket failing to send, which the rogue sees).  Sends are
    counted only when sendto succeeded, and each node's UDP InErrors (which
    includes RcvbufErrors) is read from its namespace's /proc/net/snmp: with
    d such drops at a node, each cause lies in [sent - d, sent], and the
    total exactly equals sent - d.  In practice d is 0 (the engine thread
    is SCHED_FIFO and drains in batches), so the counts are exact;
  * `accepted` rose by no more than the legitimate datagrams the tap saw
    delivered to that node (frames not from the rogue's MAC) while the
    counters were being compared - so no attack datagram was accepted.
"""
from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import threading
import time

from labkit import Lab, wait

from heart import _core as core
from heart import control, lab

ETH_P_ALL = 3
ETH_P_IP = 0x0800
PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING = 0, 3, 4
SOL_PACKET, PACKET_STATISTICS = 263, 6

CAPTURE_S = 1.0
ATTACK_S = 3.0
RATE = 600                      # attack datagrams a second, all targets together
CAUSES = ("malformed", "wrong_cluster", "unknown_node", "unknown_key", "bad_tag", "replay")
EXPECT = {"replay": "replay", "replay_spoof": "replay", "own": "own",
          "bad_tag": "bad_tag", "unknown_key": "unknown_key",
          "wrong_cluster": "wrong_cluster", "unknown_node": "unknown_node",
          "malformed": "malformed"}


# ---------------------------------------------------------------- the tap

class Tap:
    """Frames on the outer veth ends (in the bridge namespace) of the
    nodes, read by a thread: IPv4 UDP to or from lab.PORT only, as
    (veth, pkttype, src MAC, src ip, src port, dst ip, dst port, payload).
    PACKET_OUTGOING on a node's outer end = given to the node."""

    def __init__(self, bridge_ns: str, veths: list[str]):
        self.socks: list[socket.socket] = []
        self.frames: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        try:
            with lab.inside(bridge_ns):
                for v in veths:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(ETH_P_ALL))
                    self.socks.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                    s.bind((v, ETH_P_ALL))
                    s.setblocking(False)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready = select.select(self.socks, [], [], 0.05)[0]
            for s in ready:
                while True:
                    try:
                        data, addr = s.recvfrom(65535)
                    except (BlockingIOError, OSError):
                        break
                    f = parse_udp(data)
                    if f is not None and lab.PORT in (f[2], f[4]):
                        with self._lock:
                            self.frames.append((addr[0], addr[2]) + f)

    def take(self) -> list[tuple]:
        """The frames so far, forgotten here."""
        with self._lock:
            out, self.frames = self.frames, []
        return out

    def drops(self) -> int:
        """Frames the kernel dropped for these sockets (read resets)."""
        n = 0
        for s in self.socks:
            _packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            n += drops
        return n

    def close(self) -> None:
        self._stop.set()
        if getattr(self, "_thread", None) is not None:
            self._thread.join(2)
        for s in self.socks:
            s.close()


def parse_udp(frame: bytes):
    """(src MAC, src ip, src port, dst ip, dst port, payload) of an
    Ethernet/IPv4/UDP frame, else None."""
    if len(frame) < 14 + 20 + 8 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
        return None
    if struct.unpack("!H", ip[6:8])[0] & 0x3FFF:
        return None                         # a fragment
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    udp = ip[ihl:total]
    if len(udp) < 8:
        return None
    sport, dport, ulen = struct.unpack("!HHH", udp[:6])
    return (frame[6:12], socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]),
            dport, bytes(udp[8:ulen]))


# ---------------------------------------------------------------- the rogue

def ip_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 header (the kernel fills in the checksum and id) and a UDP
    header with checksum 0 (none; allowed for IPv4), then payload."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                      socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return hdr + udp


class Rogue:
    """Sockets in the rogue namespace: a plain UDP socket (its own address)
    and a raw IP_HDRINCL socket (any source address)."""

    def __init__(self, ns: str):
        with lab.inside(ns):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.failed = 0

    def send(self, payload: bytes, dst: str, spoof: tuple[str, int] | None) -> bool:
        assert dst.startswith("192.0.2.")          # never outside the lab
        try:
            if spoof is None:
                self.udp.sendto(payload, (dst, lab.PORT))
            else:
                assert spoof[0].startswith("192.0.2.")
                self.raw.sendto(ip_udp(spoof[0], spoof[1], dst, lab.PORT, payload), (dst, 0))
            return True
        except OSError:
            self.failed += 1
            return False

    def close(self) -> None:
        self.udp.close()
        self.raw.close()


def tamper(pkt: bytes, off: int, value: bytes) -> bytes:
    return pkt[:off] + value + pkt[off + len(value):]


def build_attack(captured: list[tuple], nodes: list[dict], gens: dict[int, int],
                 rng: random.Random) -> dict[str, list]:
    """For each category, a list of (target node id, payload, spoof or None)
    to cycle through."""
    ids = [n["host"] for n in nodes]
    ip_of = {n["host"]: n["v4"] for n in nodes}
    # The lab's algorithm, as on the wire (the configuration default).
    alg_ids = {v: k for k, v in core.ALGORITHMS.items()}
    ours = alg_ids[core.parse_header(captured[0][3])["alg"]]
    other = next(a for a in core.ALGORITHMS if a != ours)
    kr = core.Keyring()
    kr.add(1, os.urandom(32), ours)         # the attacker's key under our key id
    kr.set_send(1)
    other_krs = []
    for kid, alg in ((2, ours), (7, other), (255, ours), (1, other)):
        k = core.Keyring()
        k.add(kid, os.urandom(32), alg)
        k.set_send(kid)
        other_krs.append(k)
    T = core.MESSAGE_TYPES
    interval_us = 20000

    def spoof_of(i: int, claim: int, tgt: int) -> tuple[str, int] | None:
        """Every other one from the claimed sender's address (another
        node's when that is the target's own: the target's kernel drops a
        datagram from one of its own addresses as a martian)."""
        if not i % 2:
            return None
        src = claim if claim in ip_of and claim != tgt else \
            next(x for x in ids if x != tgt)
        return ip_of[src], lab.PORT

    out: dict[str, list] = {k: [] for k in EXPECT}
    newest_first = list(reversed(captured))
    # Directed state messages (a record request or reply, an operator's
    # command) go to one peer only: see test_rogue_cross_replay_directed.
    # Here each captured datagram is replayed only to nodes that received
    # that very (sender, generation, sequence).
    got_it: dict[tuple, set] = {}
    for (_src, _sport, dst, pkt) in captured:
        h = core.parse_header(pkt)
        got_it.setdefault((h["node_id"], h["generation"], h["seq"]), set()).add(dst)
    for (src, sport, _dst, pkt) in newest_first:
        h = core.parse_header(pkt)
        claim = h["node_id"]
        for tgt in ids:
            if claim != tgt and ip_of[tgt] not in got_it[(claim, h["generation"], h["seq"])]:
                out["directed"] = out.get("directed", 0) + 1
                continue
            if claim == tgt:
                out["own"].append((tgt, pkt, spoof_of(len(out["own"]), claim, tgt)))
            else:
                out["replay"].append((tgt, pkt, None))
                out["replay_spoof"].append((tgt, pkt, (src, sport)))
    for tgt in ids:
        others = [i for i in ids if i != tgt]
        for i in range(60):
            claim = others[i % len(others)]
            typ = ("heartbeat", "state", "leave")[i % 3]
            if i % 2:
                gen, seq = gens[claim], 10**9 + i
            else:
                gen, seq = gens[claim] + 1 + i, 1 + i
            pkt = core.seal(kr, type=T[typ], cluster_id=lab.CLUSTER_ID, node_id=claim,
                            generation=gen, seq=seq, interval_us=interval_us,
                            payload=os.urandom(rng.randrange(0, 64)))
            out["bad_tag"].append((tgt, pkt, spoof_of(i, claim, tgt)))
        for i, (src, sport, _dst, pkt) in enumerate(newest_first[:40]):
            h = core.parse_header(pkt)
            if h["node_id"] == tgt:
                continue
            pkt = tamper(pkt, 24, struct.pack("!Q", h["seq"] + 10**6))
            out["bad_tag"].append((tgt, pkt, (src, sport) if i % 2 else None))
        for i in range(40):
            claim = others[i % len(others)]
            pkt = core.seal(other_krs[i % len(other_krs)], type=T["heartbeat"],
                            cluster_id=lab.CLUSTER_ID, node_id=claim,
                            generation=gens[claim] + 1 + i, seq=1 + i,
                            interval_us=interval_us, payload=b"")
            out["unknown_key"].append((tgt, pkt, spoof_of(i, claim, tgt)))
        for i, cid in enumerate((0, 1, 93, 95, 2**32 - 1) * 8):
            claim = ids[i % len(ids)]
            pkt = core.seal(kr, type=T["heartbeat"], cluster_id=cid, node_id=claim,
                            generation=gens[claim] + 1, seq=1 + i, interval_us=interval_us)
            out["wrong_cluster"].append((tgt, pkt, spoof_of(i, claim, tgt)))
        for i, nid in enumerate((4, 5, 50, 200, 2**31, 2**32 - 1) * 7):
            pkt = core.seal(kr, type=T["heartbeat"], cluster_id=lab.CLUSTER_ID, node_id=nid,
                            generation=1, seq=1 + i, interval_us=interval_us)
            out["unknown_node"].append((tgt, pkt, spoof_of(i, others[i % 2], tgt)))
        real = newest_first[0][3]
        bad = [b"", b"\x00", b"HRTB", real[:39], real[:-1], real + b"\x00",
               real[:len(real) // 2], tamper(real, 0, b"HRTX"), tamper(real, 4, b"\x02"),
               tamper(real, 5, b"\x09"), tamper(real, 6, b"\x07"), tamper(real, 38, b"\x00\x01"),
               tamper(real, 12, b"\x00" * 4), tamper(real, 24, b"\x00" * 8),
               tamper(real, 36, b"\x00\x05"), tamper(real, 36, b"\xff\xff"),
               b"\x00" * 56, b"\xff" * 1400]
        bad += [os.urandom(rng.randrange(1, 300)) for _ in range(22)]
        for i, pkt in enumerate(bad):
            out["malformed"].append((tgt, pkt, spoof_of(i, others[i % 2], tgt)))
    for k in EXPECT:
        if k not in ("replay", "replay_spoof", "own"):      # these: newest first
            rng.shuffle(out[k])
    return out


def attack(rogue: Rogue, plan: dict[str, list], ip_of: dict[int, str], duration: float,
           rate: int) -> dict[int, dict[str, int]]:
    """Send round robin over the categories (each cycling through its
    list) at about `rate` datagrams a second for `duration` seconds; what
    was sent (sendto succeeded), by target node and category.  The replay
    lists are consumed from their start, newest captures first."""
    sent = {i: {k: 0 for k in plan} for i in ip_of}
    cursors = {k: 0 for k in plan}
    kinds = [k for k in plan if plan[k]]
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    start = time.monotonic()
    n = 0
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        for _ in range(per_tick):
            k = kinds[n % len(kinds)]
            n += 1
            tgt, pkt, spoof = plan[k][cursors[k] % len(plan[k])]
            cursors[k] += 1
            if rogue.send(pkt, ip_of[tgt], spoof):
                sent[tgt][k] += 1
        time.sleep(max(0.0, start + (n / per_tick) * tick - time.monotonic()))
    return sent


# ---------------------------------------------------------------- checks

def udp_in_errors(ns: str) -> int:
    """UDP InErrors (incl. RcvbufErrors) of namespace ns."""
    with lab.inside(ns), open("/proc/thread-self/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:]))["InErrors"])


def view(s: dict) -> dict:
    """What must not change in a node's status."""
    return {"nodes": sorted((x["name"], x.get("state"), x.get("generation"),
                             x.get("quorate"), x.get("standby")) for x in s["nodes"]),
            "quorate": s["quorum"]["quorate"], "owner": lab.owner_of(s)}


def test_rogue_replays_and_forgeries_are_ignored(make_lab):
    L: Lab = make_lab()
    st = L.st
    nodes = st["nodes"]
    names = L.names()
    owner = L.owner
    id_of = {n["name"]: n["host"] for n in nodes}
    ip_of = {n["host"]: n["v4"] for n in nodes}
    pids = {n: lab.node_pid(n, L.dir) for n in names}
    assert all(pids.values()), pids
    rogue_host = lab.add_host("rogue", L.dir)
    rogue_mac = bytes.fromhex(json.loads(lab.run("ip", "-j", "link", "show", lab.DEV,
                                                 ns=rogue_host["ns"]))[0]["address"]
                              .replace(":", ""))
    before = {n: L.status(n) for n in names}
    assert all(before.values()), before
    views = {n: view(before[n]) for n in names}
    gens = {x["id"]: x["generation"] for x in before[owner]["nodes"]}
    assert set(gens) == set(ip_of), gens

    tap = Tap(st["bridge_ns"], [n["veth"] for n in nodes])
    rogue = None
    try:
        # 1. One second of real traffic, as each node sends it.
        time.sleep(CAPTURE_S)
        captured = [(f[3], f[4], f[5], f[7]) for f in tap.take()
                    if f[1] == PACKET_OTHERHOST and f[3] in ip_of.values()
                    and f[4] == lab.PORT and f[6] == lab.PORT]
        assert len(captured) > 100, f"the tap saw only {len(captured)} datagrams in " \
                                    f"{CAPTURE_S:g} s"
        kinds_seen = {core.parse_header(p)["type"] for *_, p in captured}
        rng = random.Random(94)
        plan = build_attack(captured, nodes, gens, rng)
        not_replayed = plan.pop("directed", 0)
        rogue = Rogue(rogue_host["ns"])

        # 2. The attack, with the state of every node polled throughout.
        errs0 = {n["host"]: udp_in_errors(n["ns"]) for n in nodes}
        c0 = {n: L.status(n)["counters"] for n in names}
        t0, t0_ns = time.time(), time.time_ns()
        result: dict = {}

        def run_attack():
            try:
                result["sent"] = attack(rogue, plan, ip_of, ATTACK_S, RATE)
            except BaseException as exc:        # reported below
                result["error"] = exc

        th = threading.Thread(target=run_attack, name="rogue", daemon=True)
        th.start()
        polls, changed = 0, []
        while th.is_alive():
            for n in names:
                s = L.status(n)
                if s is None or view(s) != views[n]:
                    changed.append((round(time.time() - t0, 3), n,
                                    view(s) if s else "no answer"))
            polls += 1
            th.join(0.15)
        th.join()
        attack_s = time.time() - t0
        assert "error" not in result, f"the attack failed: {result['error']!r}"
        sent = result["sent"]
        # In flight: the datagrams sent last reach the engines within ms.
        time.sleep(0.3)
        c1 = {n: L.status(n)["counters"] for n in names}
        errs1 = {n["host"]: udp_in_errors(n["ns"]) for n in nodes}
        frames = tap.take()
        tap_drops = tap.drops()
    finally:
        tap.close()
        if rogue is not None:
            rogue.close()

    # No state change, no restart, nothing journaled.
    for n in names:
        assert lab.node_pid(n, L.dir) == pids[n], f"{n} is no longer process {pids[n]}"
    assert not changed, f"views changed during the attack: {changed[:10]}"
    after = {n: L.status(n) for n in names}
    for n in names:
        assert after[n] is not None, f"{n} does not answer after the attack"
        assert view(after[n]) == views[n], (n, views[n], view(after[n]))
    for n in names:
        evs = L.events(n, None, t0)
        assert not evs, f"{n} journaled during the attack: " \
                        f"{[(e['kind'], e['summary']) for e in evs]}"
    assert L.settled(names) == (owner, "ok")
    replies = L.client.replies(t0_ns)
    who = {w for _, w in replies}
    assert who == {owner}, f"during the attack replies came from {sorted(who)}"
    assert len(replies) > 100 * attack_s, f"only {len(replies)} replies in {attack_s:.1f} s"
    L.client_reaches(owner)

    # The counters.
    report = [f"\nrogue attack {attack_s:.2f} s, {polls} status polls, captured "
              f"{len(captured)} datagrams (types {sorted(kinds_seen)}; {not_replayed} "
              f"replays of directed ones to other nodes left out), "
              f"{rogue.failed} failed sends, tap drops {tap_drops}"]
    problems = []
    for n in names:
        i = id_of[n]
        a, b = c0[n], c1[n]
        drops = errs1[i] - errs0[i]
        d_rej = {c: b["rejected"][c] - a["rejected"][c] for c in CAUSES}
        d_own = b["own"] - a["own"]
        want = {c: 0 for c in CAUSES + ("own",)}
        for k, cnt in sent[i].items():
            want[EXPECT[k]] += cnt
        got = dict(d_rej, own=d_own)
        legit = sum(1 for f in frames if f[0] == nodes[i - 1]["veth"]
                    and f[1] == PACKET_OUTGOING and f[2] != rogue_mac
                    and f[5] == ip_of[i] and f[6] == lab.PORT)
        d_acc = b["accepted"] - a["accepted"]
        d_recv = b["received"] - a["received"]
        report.append(f"  {n}: sent {dict(sent[i])}; counted {got}; udp drops {drops}; "
                      f"accepted +{d_acc} (legitimate on the wire {legit}); "
                      f"received +{d_recv}")
        for c in want:
            if not want[c] - drops <= got[c] <= want[c]:
                problems.append(f"{n}: {c} rose by {got[c]}, sent {want[c]} "
                                f"({drops} dropped by the kernel)")
        if sum(got.values()) != sum(want.values()) - drops:
            problems.append(f"{n}: {sum(got.values())} attack datagrams counted, "
                            f"{sum(want.values())} sent, {drops} dropped")
        if d_acc > legit:
            problems.append(f"{n}: accepted rose by {d_acc}, but only {legit} legitimate "
                            f"datagrams reached it")
        if d_recv != d_acc + sum(got.values()):
            problems.append(f"{n}: received +{d_recv} != accepted +{d_acc} + counted "
                            f"{sum(got.values())}")
    print("\n".join(report))
    assert tap_drops == 0, f"the tap lost {tap_drops} frames: the accepted bound is void"
    assert not problems, "\n".join(problems + report)


class Forwarder:
    """The rogue relays, live, every state message one node sends another
    (seen on the sender's outer veth) to a third node, with the original
    sender's address: a genuine datagram the third node was never sent."""

    def __init__(self, bridge_ns: str, rogue_ns: str, frm: dict, to: dict, victim: dict):
        self.frm, self.to, self.victim = frm, to, victim
        self.forwarded: list[tuple[int, int]] = []       # (seq, length)
        with lab.inside(bridge_ns):
            self.tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                     socket.htons(ETH_P_ALL))
            self.tap.bind((frm["veth"], ETH_P_ALL))
        self.rogue = Rogue(rogue_ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.tap], [], [], 0.05)[0]:
                continue
            data, addr = self.tap.recvfrom(65535)
            f = parse_udp(data)
            if (f is None or addr[2] == PACKET_OUTGOING or f[1] != self.frm["v4"]
                    or f[3] != self.to["v4"] or f[4] != lab.PORT):
                continue
            h = core.parse_header(f[5])
            if h["type"] == core.MESSAGE_TYPES["state"]:
                if self.rogue.send(f[5], self.victim["v4"], (f[1], f[2])):
                    self.forwarded.append((h["seq"], len(f[5])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.tap.close()
        self.rogue.close()


def test_rogue_cross_replay_directed(make_lab):
    """An operator on the owner asks another node to go on standby
    (`heart standby --node`): a state message "cmd standby" sent to that
    node only.  A rogue relays it at once, from the owner's address, to the
    third node.  That node never received this (generation, sequence) from
    the owner, so its replay window has a hole there; the datagram is
    genuine, so the tag verifies.  It must still not be acted on: the third
    node is not the recipient.  Asserted: the third node does not go on
    standby, journals nothing, and counts the relayed datagrams as
    rejected, not accepted."""
    L: Lab = make_lab()
    st = L.st
    by_name = {n["name"]: n for n in st["nodes"]}
    owner = L.owner
    target, victim = [n for n in L.names() if n != owner]
    rogue_host = lab.add_host("rogue", L.dir)
    fw = Forwarder(st["bridge_ns"], rogue_host["ns"], by_name[owner], by_name[target],
                   by_name[victim])
    try:
        time.sleep(0.5)
        c0 = L.status(victim)["counters"]
        n0 = len(fw.forwarded)
        t0 = time.time()
        r = control.request(L.paths.socket(owner), "standby", node=target, timeout=5)
        assert r.get("ok"), r
        wait(lambda: any(x["name"] == target and x.get("standby")
                         for x in L.status(owner)["nodes"]), 5)
        time.sleep(0.5)
    finally:
        fw.close()
    c1 = L.status(victim)["counters"]
    relayed = fw.forwarded[n0:]
    assert relayed, "the rogue relayed nothing (no directed state message seen)"
    s = L.status(victim)
    me = next(x for x in s["nodes"] if x["name"] == victim)
    evs = L.events(victim, ["standby"], t0)
    d_rej = sum(c1["rejected"].values()) - sum(c0["rejected"].values())
    print(f"\nrelayed {relayed} from {owner} to {victim}; {victim}: standby "
          f"{me.get('standby')}, journal {[e['summary'] for e in evs]}, rejected +{d_rej}")
    assert not me.get("standby"), f"{victim} went on standby on a relayed command: " \
                                  f"{[e['summary'] for e in evs]}"
    assert not evs, evs
    assert d_rej >= len(relayed), (c0, c1)
