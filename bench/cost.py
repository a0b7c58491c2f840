#!/usr/bin/env python3
"""What Heart costs: CPU per heartbeat, and the idle cost of a small cluster.

(a) CPU time per heartbeat.  One engine under test (node 1, in this
    process, on 127.0.0.1) has 32 peers and sends a heartbeat to each of them
    every 5 ms (200 Hz); the 32 peers (nodes 2..33, 32 more Engine objects in
    a separate helper process, on 127.0.0.2..127.0.0.33) each send it a
    heartbeat every 5 ms.  The CPU time of the engine's own thread
    ("heart-engine": /proc/self/task/<tid>/schedstat, the scheduler's exact
    run time in ns; user/system split from .../stat) over the window is
    divided by the heartbeats it handled: datagrams sent (counters "sent") +
    heartbeats received and verified (counters "accepted").  The helper's
    CPU does not count.  Four phases, each with a fresh engine and helper:

      idle  32 peers configured, nothing sent either way (timer ticks only)
      send  it sends to the 32 peers, they send nothing back
      recv  the 32 peers send to it, it sends nothing
      full  both ways (the figure asked for)

    send - idle and recv - idle give the cost of one sent and of one received
    and verified heartbeat.  On loopback the sender's system time includes the
    kernel's delivery of the datagram into the receiver's socket queue.

(b) Idle CPU and memory of one node of a 3-node cluster with a 1 s interval,
    in the namespaces of `heart.lab` (bridge, 192.0.2.0/24): Heart
    (`heart run`, interval 1 s), keepalived (VRRPv3, advert_int 1) and ucarp
    (advbase 1), started by bench/contenders.py, each cluster in a lab of
    its own, measured once node1 holds the address and --settle seconds
    more.  For every node, the CPU time (user + system, psutil) of its
    process tree over the window, and its resident memory (RSS, summed over
    the tree).

Only 127.0.0.0/8 and the lab's namespaces are used.  Needs root for (b)
(--skip-idle runs (a) only).  See docs/benchmarks.md.

    python bench/cost.py [--peers 32] [--hz 200] [--seconds 10] [--idle-seconds 30]
                         [--skip-idle] [--json PATH]

The last line printed is  cpu_us_per_heartbeat=<float>
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
try:
    import heart._core as core
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, ROOT)
    import heart._core as core
sys.path.insert(0, HERE)
from _common import machine_info, proc_run_ns, write_json

CLUSTER = 0x48454152
EUT = 1                     # node id of the engine under test
KEY = bytes(range(1, 33))
PAYLOAD = b"heart-cost-16b!!"  # 16 bytes, like bench/throughput.py
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("idle", "send", "recv", "full")


# ---------------------------------------------------------------- (a) helper

def _make_engine(node: int, interval_us: int, bind: str) -> core.Engine:
    e = core.Engine(cluster_id=CLUSTER, node_id=node, generation=1,
                    interval_us=interval_us, deadtime_us=interval_us * 20,
                    initdead_us=max(interval_us * 40, 1_000_000))
    e.add_key(1, KEY)
    e.set_send_key(1)
    e.add_link("unicast", bind=bind, port=0)
    e.set_payload(PAYLOAD)
    return e


def _peers_proc(conn, n: int, interval_us: int, eut_port: int, send: bool) -> None:
    """Helper process: n peer engines (nodes 2..n+1 on 127.0.0.2..), each with
    node 1 as its only peer; with send, each sends node 1 a heartbeat every
    interval.  Sends back their addresses, waits for "stop", sends its own
    CPU time, closes."""
    engines = []
    try:
        for i in range(n):
            node, addr = 2 + i, f"127.0.0.{2 + i}"
            e = _make_engine(node, interval_us, addr)
            e.add_peer(EUT)
            if send:
                e.set_peer_addr(EUT, 0, "127.0.0.1", eut_port)
            engines.append((node, addr, e))
        for _, _, e in engines:
            e.start()
        conn.send([(node, addr, e.link_port(0)) for node, addr, e in engines])
        conn.recv()                          # "stop"
        t = os.times()
        drops = sum(e.counters()["missed_ticks"] for _, _, e in engines)
        conn.send({"cpu_s": t.user + t.system, "missed_ticks": drops})
    finally:
        for _, _, e in engines:
            e.close()
        conn.close()


def _engine_tid() -> int:
    """The engine thread's id (it names itself once it runs)."""
    found: list[int] = []
    deadline = time.monotonic() + 2
    while not found and time.monotonic() < deadline:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if f.read().strip() == "heart-engine":
                        found.append(int(tid))
            except OSError:
                pass
        if not found:
            time.sleep(0.01)
    if len(found) != 1:
        raise RuntimeError(f"expected one heart-engine thread here, found {len(found)}")
    return found[0]


def _thread_cpu(tid: int) -> tuple[int, float, float]:
    """(run time ns from schedstat, user s, system s) of one thread here."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            ns = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ns = int((utime + stime) * 1e9)
    return ns, utime, stime


def run_phase(phase: str, peers: int, interval_us: int, seconds: float) -> dict:
    eut_sends = phase in ("send", "full")
    peers_send = phase in ("recv", "full")
    ctx = multiprocessing.get_context("spawn")
    eut = _make_engine(EUT, interval_us, "127.0.0.1")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_peers_proc, args=(child, peers, interval_us,
                                                 eut.link_port(0), peers_send), daemon=True)
    proc.start()
    try:
        addrs = parent.recv()
        for node, addr, port in addrs:
            eut.add_peer(node)
            if eut_sends:
                eut.set_peer_addr(node, 0, addr, port)
        eut.start()
        tid = _engine_tid()
        # warm up: every peer up when they send, else one second of ticks
        deadline = time.monotonic() + 10
        time.sleep(1.0)
        while peers_send and time.monotonic() < deadline and \
                sum(p["state"] == "up" for p in eut.peers()) < peers:
            time.sleep(0.1)
        up_before = sum(p["state"] == "up" for p in eut.peers())
        eut.drain(100000)
        c0, cpu0, w0 = eut.counters(), _thread_cpu(tid), time.monotonic()
        p0 = os.times()
        time.sleep(seconds)
        c1, cpu1, w1 = eut.counters(), _thread_cpu(tid), time.monotonic()
        p1 = os.times()
        up_after = sum(p["state"] == "up" for p in eut.peers())
        parent.send("stop")
        helper = parent.recv()
    finally:
        eut.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    wall = w1 - w0
    d = {k: c1[k] - c0[k] for k in ("sent", "heartbeats_sent", "received", "accepted",
                                     "missed_ticks", "loop_iterations", "send_errors")}
    rejected = sum(c1["rejected"].values()) - sum(c0["rejected"].values())
    cpu_ns = cpu1[0] - cpu0[0]
    handled = d["sent"] + d["accepted"]
    return {
        "phase": phase, "wall_s": wall, "cpu_ns": cpu_ns,
        "cpu_pct": cpu_ns / 1e9 / wall * 100,
        "user_s": cpu1[1] - cpu0[1], "system_s": cpu1[2] - cpu0[2],
        "process_cpu_s": (p1.user + p1.system) - (p0.user + p0.system),
        "helper_cpu_s_total": helper["cpu_s"], "helper_missed_ticks": helper["missed_ticks"],
        "rejected": rejected, "peers_up": [up_before, up_after], **d,
        "handled": handled,
        "us_per_heartbeat": cpu_ns / 1e3 / handled if handled else None,
        "us_per_tick": cpu_ns / 1e3 / d["heartbeats_sent"] if d["heartbeats_sent"] else None,
        "us_per_loop": cpu_ns / 1e3 / d["loop_iterations"] if d["loop_iterations"] else None,
    }


def _crypto_cost(n: int = 100_000) -> dict:
    """Seal and verify one 72-byte heartbeat, n times each, through the
    Python binding (so an upper bound of the C cost: the call adds ~0.1 us)."""
    kr = core.Keyring()
    kr.add(1, KEY)
    kr.set_send(1)
    seal, verify = core.seal, core.verify
    t0 = time.perf_counter()
    for i in range(n):
        pkt = seal(kr, cluster_id=CLUSTER, node_id=2, generation=1, seq=i + 1,
                   interval_us=5000, payload=PAYLOAD)
    t1 = time.perf_counter()
    for _ in range(n):
        verify(kr, CLUSTER, pkt)
    t2 = time.perf_counter()
    return {"seal_us": (t1 - t0) / n * 1e6, "verify_us": (t2 - t1) / n * 1e6,
            "packet_bytes": len(pkt)}


def per_heartbeat(a: argparse.Namespace) -> dict:
    interval_us = round(1e6 / a.hz)
    runs: dict[str, list[dict]] = {p: [] for p in PHASES}
    for _ in range(a.repeat):
        for p in PHASES:
            runs[p].append(run_phase(p, a.peers, interval_us, a.seconds))

    def med(p: str, key: str) -> float:
        vals = [r[key] for r in runs[p] if r[key] is not None]
        return statistics.median(vals) if vals else float("nan")

    # cost per second of each phase, and the increments over idle
    idle_ns_s = med("idle", "cpu_ns") / med("idle", "wall_s")
    rate = {p: med(p, "cpu_ns") / med(p, "wall_s") for p in PHASES}
    sent_s = med("send", "sent") / med("send", "wall_s")
    acc_s = med("recv", "accepted") / med("recv", "wall_s")
    send_us = (rate["send"] - idle_ns_s) / 1e3 / sent_s if sent_s else float("nan")
    recv_us = (rate["recv"] - idle_ns_s) / 1e3 / acc_s if acc_s else float("nan")
    full = runs["full"]
    crypto = _crypto_cost()
    headline = med("full", "us_per_heartbeat")
    print(f"## (a) CPU per heartbeat: {a.peers} peers at {a.hz:g} Hz "
          f"(interval {interval_us} us), {a.seconds:g} s per phase, {a.repeat} run(s)\n")
    print("| phase | sent/s | received+verified/s | engine thread CPU | user | system "
          "| µs per heartbeat | µs per tick | helper CPU (32 peers) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in PHASES:
        r = runs[p][-1] if a.repeat == 1 else min(runs[p], key=lambda x: abs(
            x["cpu_ns"] - med(p, "cpu_ns")))
        w = r["wall_s"]
        uph = f"{r['us_per_heartbeat']:.2f}" if r["us_per_heartbeat"] else "-"
        upt = f"{r['us_per_tick']:.1f}" if r["us_per_tick"] else "-"
        print(f"| {p} | {r['sent'] / w:.0f} | {r['accepted'] / w:.0f} | {r['cpu_pct']:.2f} % "
              f"| {r['user_s'] / w * 100:.2f} % | {r['system_s'] / w * 100:.2f} % | {uph} "
              f"| {upt} | {r['helper_cpu_s_total']:.1f} s total |")
    print()
    print("| engine loop | wake-ups/s | heartbeats received per wake-up | µs per wake-up |")
    print("|---|---|---|---|")
    for p in PHASES:
        r = runs[p][-1]
        per = r["accepted"] / r["loop_iterations"] if r["loop_iterations"] else 0
        print(f"| {p} | {r['loop_iterations'] / r['wall_s']:.0f} | {per:.2f} "
              f"| {r['us_per_loop']:.1f} |")
    print()
    print("| cost | µs |")
    print("|---|---|")
    print(f"| timer tick with {a.peers} peers, nothing sent or received (idle) "
          f"| {idle_ns_s / 1e3 / (a.hz):.2f} per tick |")
    print(f"| one heartbeat sent (send − idle, per datagram) | {send_us:.2f} |")
    print(f"| one heartbeat received and verified (recv − idle, per datagram) | {recv_us:.2f} |")
    print(f"| of which sealing a heartbeat (HMAC-SHA256, 72 bytes, once per tick for all "
          f"peers; heart._core.seal, Python call included) | {crypto['seal_us']:.2f} |")
    print(f"| of which verifying one heartbeat (heart._core.verify, Python call included) "
          f"| {crypto['verify_us']:.2f} |")
    print(f"| **one heartbeat, both ways (full: CPU / (sent + received))** | **{headline:.2f}** |")
    print()
    target = 5.0
    print(f"target < {target:g} µs per heartbeat: "
          f"{'met' if headline < target else 'missed'} ({headline:.2f} µs)\n")
    return {"peers": a.peers, "hz": a.hz, "interval_us": interval_us, "seconds": a.seconds,
            "runs": runs, "crypto": crypto, "idle_us_per_tick": idle_ns_s / 1e3 / a.hz,
            "send_us_per_heartbeat": send_us, "recv_verify_us_per_heartbeat": recv_us,
            "cpu_us_per_heartbeat": headline,
            "full_cpu_pct": statistics.median(r["cpu_pct"] for r in full),
            "target_us": target, "target_met": headline < target}


# ---------------------------------------------------------------- (b) idle clusters

def _tree(pid: int):
    import psutil

    try:
        p = psutil.Process(pid)
        return [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _threads_ns(pid: int) -> dict[str, list[int]]:
    """{thread name: [run time ns, wake-ups (schedstat's timeslices)]} of one
    process (threads of one name summed)."""
    out: dict[str, list[int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, _, slices = (int(x) for x in f.read().split()[:3])
            acc = out.setdefault(name, [0, 0])
            acc[0] += run_ns
            acc[1] += slices
        except (OSError, ValueError, IndexError):
            pass
    return out


def _tree_cpu(pid: int) -> tuple[dict[int, float], int, int]:
    """({pid: CPU seconds} over the tree, RSS bytes, processes); the root's
    entry includes the CPU time of children it already reaped."""
    import psutil

    cpu: dict[int, float] = {}
    rss = 0
    procs = _tree(pid)
    for i, p in enumerate(procs):
        try:
            t = p.cpu_times()
            ns = proc_run_ns(p.pid)
            own = ns / 1e9 if ns is not None else t.user + t.system
            cpu[p.pid] = own + (t.children_user + t.children_system if i == 0 else 0)
            rss += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return cpu, rss, len(procs)


def _cpu_delta(a: dict[int, float], b: dict[int, float]) -> float:
    """CPU seconds between two samples (a process new in b counts from 0)."""
    return sum(v - a.get(pid, 0.0) for pid, v in b.items())


def idle_one(system: str, seconds: float, settle: float) -> dict:
    from heart import lab

    import contenders

    d = tempfile.mkdtemp(prefix=f"heart-cost-{system}-")
    cluster = None
    try:
        # heart: interval 1 s (dead time 3 s); keepalived: advert_int 1;
        # ucarp: advbase 1.  Returns once node1 holds the address.
        cluster = contenders.start(system, "1s" if system == "heart" else "1", d, timeout=60)
        roots = {n: cluster.daemon_pid(n) for n in ("node1", "node2", "node3")}
        started_by = "bench/contenders.py"
        time.sleep(settle)
        t0 = {n: _tree_cpu(p) for n, p in roots.items()}
        th0 = {n: _threads_ns(p) for n, p in roots.items()}
        w0 = time.monotonic()
        time.sleep(seconds)
        t1 = {n: _tree_cpu(p) for n, p in roots.items()}
        th1 = {n: _threads_ns(p) for n, p in roots.items()}
        wall = time.monotonic() - w0
        nodes = {}
        for n in roots:
            nodes[n] = {"cpu_pct": _cpu_delta(t0[n][0], t1[n][0]) / wall * 100,
                        "root_threads_cpu_pct": {
                            k: (v[0] - th0[n].get(k, [0, 0])[0]) / 1e9 / wall * 100
                            for k, v in th1[n].items()},
                        "root_threads_wakeups_s": {
                            k: (v[1] - th0[n].get(k, [0, 0])[1]) / wall
                            for k, v in th1[n].items()},
                        "rss_mib": t1[n][1] / 2**20, "processes": t1[n][2],
                        "alive": t1[n][2] > 0}
        return {"system": system, "wall_s": wall, "nodes": nodes, "started_by": started_by}
    finally:
        try:
            if cluster is not None:
                cluster.stop()
            lab.down(d, out=io.StringIO())
        finally:
            shutil.rmtree(d, ignore_errors=True)


def idle_clusters(a: argparse.Namespace) -> list[dict]:
    import contenders

    contenders.ensure_installed("keepalived", "ucarp")
    rows = []
    for system in ("heart", "keepalived", "ucarp"):
        try:
            rows.append(idle_one(system, a.idle_seconds, a.settle))
        except Exception as exc:  # noqa: BLE001 (report it, go on with the others)
            rows.append({"system": system, "error": f"{type(exc).__name__}: {exc}"})
    by = sorted({r.get("started_by", "-") for r in rows})
    print(f"## (b) idle: one node of a 3-node cluster, 1 s interval, "
          f"{a.idle_seconds:g} s window (clusters started by {', '.join(by)})\n")
    print("| system | CPU % per node (mean) | CPU % node1 / node2 / node3 | RSS per node (mean) "
          "| processes per node |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['system']} | failed: {r['error']} | | | |")
            continue
        if not all(x["alive"] for x in r["nodes"].values()):
            print(f"| {r['system']} | a node's process exited (see its log) | | | |")
            continue
        ns = list(r["nodes"].values())
        cpu = [x["cpu_pct"] for x in ns]
        print(f"| {r['system']} | {statistics.mean(cpu):.3f} % "
              f"| {' / '.join(f'{c:.3f}' for c in cpu)} "
              f"| {statistics.mean(x['rss_mib'] for x in ns):.1f} MiB "
              f"| {'/'.join(str(x['processes']) for x in ns)} |")
    print()
    for r in rows:
        if "error" in r:
            continue
        names: dict[str, list[float]] = {}
        wakes: dict[str, list[float]] = {}
        for x in r["nodes"].values():
            for k, v in x["root_threads_cpu_pct"].items():
                names.setdefault(k, []).append(v)
                wakes.setdefault(k, []).append(x["root_threads_wakeups_s"][k])
        parts = ", ".join(f"{k} {statistics.mean(v):.3f} % ({statistics.mean(wakes[k]):.1f} "
                          f"runs/s)" for k, v in sorted(names.items()))
        print(f"- {r['system']}: threads of the main process (mean per node): {parts}")
    print()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=32)
    ap.add_argument("--hz", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="window per phase of (a)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each phase of (a); the figures are medians")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="window of (b)")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between starting a cluster and measuring it")
    ap.add_argument("--skip-idle", action="store_true", help="run (a) only")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "cost.json"))
    a = ap.parse_args()
    if not 1 <= a.peers <= min(core.MAX_PEERS, 250):
        ap.error(f"--peers {a.peers}: expected 1 to {min(core.MAX_PEERS, 250)}")
    t_start = time.monotonic()
    out: dict = {"machine": machine_info(), "command": " ".join(sys.argv)}
    out["per_heartbeat"] = ph = per_heartbeat(a)
    if not a.skip_idle:
        if os.geteuid() != 0:
            print("(b) skipped: the lab needs root\n")
        else:
            out["idle"] = idle_clusters(a)
    out["run_s"] = time.monotonic() - t_start
    write_json(a.json, out)
    print(f"cpu_us_per_heartbeat={ph['cpu_us_per_heartbeat']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
