"""The loopback demo: two engines on 127.0.0.1, no IP takeover.

``heart demo`` runs this without root (and ``heart demo --loopback`` always);
as root it runs the failover demo in network namespaces (failover_demo.py).
Prints what each engine sees, with times measured on CLOCK_MONOTONIC by the
engines themselves; the last line is ``detect_ms=<float>``.
"""
from __future__ import annotations

import os
import select
import socket
import time

from heart._core import Engine, Keyring, now_ns, seal

CLUSTER = 0x4845  # "HE"


def _engine(node: int, generation: int, key: bytes, alg: str, interval_us: int,
            deadtime_us: int) -> Engine:
    e = Engine(cluster_id=CLUSTER, node_id=node, generation=generation,
               interval_us=interval_us, deadtime_us=deadtime_us,
               warntime_us=deadtime_us // 2)
    e.add_key(1, key, alg)
    e.set_send_key(1)
    e.add_link("unicast", bind="127.0.0.1", port=0)
    return e


class _Printer:
    def __init__(self, t0: int):
        self.t0 = t0

    def show(self, who: str, events) -> None:
        for ev in events:
            ms = (ev.time_ns - self.t0) / 1e6
            if ev.name == "payload":
                what = f"digest from node {ev.node}: {ev.data.decode(errors='replace')!r}"
            elif ev.name == "reject":
                what = f"rejected a packet: {ev.reason_name} (claimed node {ev.node})"
            elif ev.name in ("peer_up", "link_up"):
                what = f"{ev.name.replace('_', ' ')}: node {ev.node}" + (
                    f" on link {ev.link}" if ev.link >= 0 else "")
            elif ev.name == "state":
                what = f"state message from node {ev.node}: {len(ev.data)} bytes"
            else:
                what = ev.message
            print(f"  t={ms:9.3f} ms  {who} sees  {what}")


def _pump(engines: dict, printer: _Printer, seconds: float) -> list:
    end = time.monotonic() + seconds
    seen = []
    fds = {e.fileno(): (name, e) for name, e in engines.items()}
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return seen
        r, _, _ = select.select(list(fds), [], [], left)
        for fd in r:
            name, e = fds[fd]
            evs = e.drain()
            printer.show(name, evs)
            seen.extend((name, ev) for ev in evs)


def run(interval_ms: float = 10.0, deadtime_ms: float = 50.0, seconds: float = 1.0,
        alg: str = "aes-256-gcm") -> int:
    interval_us = int(interval_ms * 1000)
    deadtime_us = int(deadtime_ms * 1000)
    key = os.urandom(32)
    print(f"heart demo: two engines on 127.0.0.1, interval {interval_ms:g} ms, "
          f"deadtime {deadtime_ms:g} ms, {alg}")
    a = _engine(1, time.time_ns() // 1000, key, alg, interval_us, deadtime_us)
    b = _engine(2, time.time_ns() // 1000, key, alg, interval_us, deadtime_us)
    try:
        for me, other, peer in ((a, b, 2), (b, a, 1)):
            me.add_peer(peer)
            me.set_peer_addr(peer, 0, "127.0.0.1", other.link_port(0))
        a.set_payload(b"node1 v1")
        b.set_payload(b"node2 v1")
        t0 = now_ns()
        printer = _Printer(t0)
        a.start()
        b.start()
        names = {"node1": a, "node2": b}
        _pump(names, printer, min(0.2, seconds))
        b.set_payload(b"node2 v2")
        b.send_state(b"node2 full record " * 8, to_node=1)
        _pump(names, printer, 0.1)

        print("an attacker on loopback sends node1 three bad packets:")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            target = ("127.0.0.1", a.link_port(0))
            forger = Keyring()
            forger.add(1, os.urandom(32), alg)
            forger.set_send(1)
            s.sendto(seal(forger, cluster_id=CLUSTER, node_id=2, generation=b.generation,
                          seq=10**9), target)
            s.sendto(seal(forger, cluster_id=CLUSTER + 1, node_id=2, generation=1, seq=1),
                     target)
            s.sendto(b"HRTB" + b"\x00" * 20, target)
        _pump(names, printer, max(0.1, seconds - 0.3))

        st = a.peer(2)
        print(f"node1's view of node2: {st['state']}, {st['received']} heartbeats, "
              f"inter-arrival {st['mean_us'] / 1000:.3f} ms +- {st['std_us'] / 1000:.3f} ms")
        print("node2 stops without a goodbye (no leave message):")
        b.stop(leave=False)
        t_stop = now_ns()
        last_hb = a.peer(2)["last_arrival_ns"]
        seen = _pump({"node1": a}, printer, (deadtime_us + 4 * interval_us) / 1e6 + 0.2)
        down = [ev for _, ev in seen if ev.name == "peer_down" and ev.node == 2]
        c = a.counters()
        print(f"node1 counters: accepted={c['accepted']} rejected="
              + ",".join(f"{k}:{v}" for k, v in c["rejected"].items() if v))
        if not down:
            print("node1 did NOT declare node2 down: something is wrong")
            return 1
        detect_ms = (down[0].time_ns - last_hb) / 1e6
        print(f"node2 declared down {detect_ms:.3f} ms after its last heartbeat "
              f"({(down[0].time_ns - t_stop) / 1e6:.3f} ms after it stopped; "
              f"deadtime {deadtime_ms:g} ms)")
        print(f"detect_ms={detect_ms:.3f}")
        return 0
    finally:
        a.close(leave=False)
        b.close(leave=False)
