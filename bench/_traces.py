"""Record heartbeat arrival traces over loopback (used by detector_quality.py).

One *segment* is one sender and one receiver in a single process, over a UDP
socket pair on 127.0.0.1.  The sender generates a heartbeat every interval on
an absolute CLOCK_MONOTONIC schedule and imposes the scenario's impairments
from a seeded RNG:

- loss: each heartbeat is dropped (never sent) with probability `loss`;
- jitter: each heartbeat is held for a delay drawn uniformly from
  [0, jitter_ms] before it is sent (jitter < interval keeps the order);
- pause: the sender stalls for `pause_ms` every `pause_every_s` seconds on
  average (uniform 0.5x..1.5x, like a GC or VM pause); heartbeats that fall
  due during the stall are not generated at all, the schedule resumes after.

Both run under SCHED_FIFO when fifo_priority is given and allowed (as the
engine does with realtime_priority), so that other load on a shared machine
delays the sender less.  The receiver thread records the kernel receive timestamp of every datagram
(SO_TIMESTAMPNS, CLOCK_REALTIME).  The sender records the (CLOCK_REALTIME)
time at which it generated each heartbeat, which is the crash point used for
detection time.  On top of the imposed impairments the trace carries
whatever the machine adds: timer and scheduling latency of the sender and
the loopback path, which on a shared machine is not nothing.

A segment is stored as two aligned lists, both in nanoseconds relative to
the first generated heartbeat: gen_ns[k] (generation time of heartbeat k)
and delay_ns[k] (arrival - generation; None when it never arrived).
"""
from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; also the cmsg type
_TIMESPEC = struct.Struct("@qq")
_SEQ = struct.Struct("!Q")


def _sleep_until(mono_ns: int) -> None:
    while True:
        left = mono_ns - time.monotonic_ns()
        if left <= 0:
            return
        time.sleep(left / 1e9)


def record_segment(spec: dict) -> dict:
    """Record one segment; spec has interval_ms, duration_s, loss, jitter_ms,
    pause_ms, pause_every_s, seed and optionally fifo_priority (run the
    sender and receiver under SCHED_FIFO when permitted).  Returns {"base_realtime_ns", "gen_ns",
    "delay_ns", "stats"}."""
    interval_ns = int(spec["interval_ms"] * 1e6)
    n_slots = int(spec["duration_s"] * 1e9 // interval_ns)
    loss = float(spec.get("loss", 0.0))
    jitter_ns = int(spec.get("jitter_ms", 0.0) * 1e6)
    pause_ns = int(spec.get("pause_ms", 0.0) * 1e6)
    pause_every_ns = int(spec.get("pause_every_s", 0.0) * 1e9)
    rng = random.Random(spec["seed"])
    sched = "normal"
    prio = int(spec.get("fifo_priority", 0))
    if prio > 0:
        # Like the engine's realtime_priority: other load on the machine then
        # delays the sender far less (a preempted VM still stalls it).
        # Set before the receiver thread starts, which inherits it.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
            sched = f"SCHED_FIFO {prio}"
        except (OSError, AttributeError):
            pass

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())

    arrivals: dict[int, int] = {}
    no_ts = [0]
    stop = threading.Event()

    def receive() -> None:
        anc = socket.CMSG_SPACE(_TIMESPEC.size)
        while True:
            try:
                data, cmsgs, _flags, _addr = rx.recvmsg(64, anc)
            except socket.timeout:
                if stop.is_set():
                    return
                continue
            ts = None
            for level, ctype, cdata in cmsgs:
                if level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(cdata[:_TIMESPEC.size])
                    ts = sec * 1_000_000_000 + nsec
            if ts is None:
                no_ts[0] += 1
                ts = time.time_ns()
            seq = _SEQ.unpack(data[:8])[0]
            arrivals.setdefault(seq, ts)  # first copy only

    th = threading.Thread(target=receive, daemon=True)
    th.start()

    # Stalls, as intervals of the slot schedule.
    stalls = []
    if pause_ns and pause_every_ns:
        t = int(pause_every_ns * rng.uniform(0.5, 1.5))
        while t < n_slots * interval_ns:
            stalls.append((t, t + pause_ns))
            t += pause_ns + int(pause_every_ns * rng.uniform(0.5, 1.5))

    gen_real: list[int] = []
    lost: list[bool] = []
    late_wakeups = 0
    t0 = time.monotonic_ns() + 50_000_000
    si = 0
    seq = 0
    for slot in range(n_slots):
        off = slot * interval_ns
        while si < len(stalls) and stalls[si][1] <= off:
            si += 1
        if si < len(stalls) and stalls[si][0] <= off < stalls[si][1]:
            continue  # the sender is frozen: this heartbeat is never generated
        drop = rng.random() < loss
        delay = int(rng.uniform(0, jitter_ns)) if jitter_ns else 0
        _sleep_until(t0 + off)
        gen_real.append(time.time_ns())
        lost.append(drop)
        if delay:
            _sleep_until(t0 + off + delay)
        if time.monotonic_ns() > t0 + off + interval_ns:
            late_wakeups += 1
        if not drop:
            tx.send(_SEQ.pack(seq) + b"\0" * 24)
        seq += 1
    time.sleep(0.3)
    stop.set()
    th.join()
    rx.close()
    tx.close()

    base = gen_real[0]
    gen_ns = [g - base for g in gen_real]
    delay_ns = []
    unexpected = 0
    for k, g in enumerate(gen_real):
        a = arrivals.get(k)
        if a is None:
            delay_ns.append(None)
        else:
            if lost[k]:
                unexpected += 1
            delay_ns.append(a - g)
    return {"base_realtime_ns": base, "gen_ns": gen_ns, "delay_ns": delay_ns,
            "stats": {"generated": len(gen_ns), "dropped": sum(lost),
                      "arrived": len(arrivals), "stalls": len(stalls),
                      "no_kernel_ts": no_ts[0], "late_wakeups": late_wakeups,
                      "unexpected": unexpected, "scheduling": sched}}
