#!/usr/bin/env python3
"""How Heart scales with the cluster: 8, 32 and 64 nodes at a 100 ms interval.

For each size N, `heart.lab.up(nodes=N, interval="100ms", deadtime="500ms")`
builds N network namespaces on one bridge (192.0.2.0/24) with one real
`heart run` daemon each, and waits until the cluster agrees.  Then, over a
window (--seconds):

  packets/s per node  growth of the daemon's engine counters "sent" and
                      "received" (heart status, the control socket), over
                      each node's own window between its two reads (a round
                      of 64 reads takes seconds on a busy machine); of the
                      sent packets, those that are not heartbeats (sent
                      minus heartbeat ticks x peers) and record requests;
  CPU per node        the daemon's run time over all its threads
                      (/proc/<pid>/task/*/schedstat), in % of one core; the
                      total is the sum over the N daemons (the machine has
                      os.cpu_count() cores: 100 % per core);
  RSS per node        resident memory of each daemon at the end;
  health              node_down events journaled during the window (false
                      detections), missed ticks and stalls of the engines,
                      and the machine's busy % (/proc/stat).

Then detection (--trials): SIGKILL one node that does not own the virtual
address (a different one each trial), t0 = time.time() just before the
kill; the detection time is the time from t0 until every survivor has
journaled node_down for it (the journal's event time, DIR/<node>/journal.db),
i.e. the slowest survivor; the fastest survivor and the median survivor are
kept too.  The node is restarted and the cluster has to agree again before
the next trial.

Needs root.  Only the lab's namespaces are used.  See docs/benchmarks.md.

    python bench/scale.py [--sizes 8,32,64] [--trials 5] [--seconds 10]
                          [--interval 100ms] [--deadtime 500ms] [--json PATH]

The last line printed is  nodes=<largest N that ran> detect_ms_8=<float> detect_ms_64=<float>
(median detection times; nan for a size that did not run).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from _common import machine_info, proc_run_ns, write_json

from heart import journal, lab


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def _journal(d: str, node: str, since: float, kinds: list[str]) -> list[dict]:
    try:
        with journal.open_readonly(os.path.join(d, node, "journal.db")) as j:
            return j.events(since=since, kinds=kinds)
    except (OSError, journal.JournalError):
        return []


def _counters(paths: lab.Paths, names: list[str]) -> dict[str, dict | None]:
    """Each node's engine counters, with "_t": when they were read (monotonic
    seconds, the middle of the request).  On a saturated machine one round of
    64 requests takes seconds, so every node's rates are over its own window
    (its second read minus its first), not over the sleep between rounds."""
    out = {}
    for n in names:
        t = time.monotonic()
        s = lab.node_status(paths, n, timeout=5.0)
        c = s.get("counters") if s else None
        if c is not None:
            c = dict(c, _t=(t + time.monotonic()) / 2)
        out[n] = c
    return out


def _owner(paths: lab.Paths, names: list[str]) -> str | None:
    for n in names:
        o = lab.owner_of(lab.node_status(paths, n, timeout=5.0))
        if o:
            return o
    return None


def measure(d: str, names: list[str], pids: dict[str, int], seconds: float) -> dict:
    paths = lab.Paths(d)
    since = time.time()
    c0 = _counters(paths, names)
    b0 = _machine_busy()
    r0 = {n: proc_run_ns(p) for n, p in pids.items()}
    w0 = time.monotonic()
    time.sleep(seconds)
    r1 = {n: proc_run_ns(p) for n, p in pids.items()}
    wall = time.monotonic() - w0
    b1 = _machine_busy()
    c1 = _counters(paths, names)
    rss = {n: _rss(p) for n, p in pids.items()}
    per = {}
    for n in names:
        row: dict = {"cpu_pct": None, "rss_mib": None}
        if r0[n] is not None and r1[n] is not None:
            row["cpu_pct"] = (r1[n] - r0[n]) / 1e9 / wall * 100
        if rss[n] is not None:
            row["rss_mib"] = rss[n] / 2**20
        if c0[n] and c1[n]:
            for k in ("sent", "received", "accepted", "missed_ticks", "stalls", "send_errors",
                      "heartbeats_sent"):
                row[k] = c1[n].get(k, 0) - c0[n].get(k, 0)
            # record requests this node sent ("req" state messages)
            row["req_sent"] = (c1[n].get("record_requests", {}).get("sent", 0)
                               - c0[n].get("record_requests", {}).get("sent", 0))
            row["max_stall_us"] = c1[n]["max_stall_us"]
            # the counters are read one node after the other: each node's
            # rates are over its own window between its two reads
            row["window_s"] = win = c1[n]["_t"] - c0[n]["_t"]
            row["sent_s"] = row["sent"] / win
            row["received_s"] = row["received"] / win
        per[n] = row
    downs = sum(len(_journal(d, n, since, ["node_down"])) for n in names)
    ok = [r for r in per.values() if r["cpu_pct"] is not None]
    with_c = [r for r in per.values() if "sent_s" in r]
    return {
        "wall_s": wall, "per_node": per,
        "cpu_pct_mean": statistics.mean(r["cpu_pct"] for r in ok) if ok else None,
        "cpu_pct_max": max(r["cpu_pct"] for r in ok) if ok else None,
        "cpu_pct_total": sum(r["cpu_pct"] for r in ok) if ok else None,
        "machine_busy_pct": (b1[0] - b0[0]) / max(1, b1[1] - b0[1]) * 100,
        "rss_mib_mean": statistics.mean(r["rss_mib"] for r in ok if r["rss_mib"]) if ok
        else None,
        "rss_mib_max": max((r["rss_mib"] for r in ok if r["rss_mib"]), default=None),
        "sent_s_mean": statistics.mean(r["sent_s"] for r in with_c) if with_c else None,
        # packets other than heartbeats: sent minus ticks x peers (one
        # heartbeat per peer and tick on the unicast link)
        "state_s_mean": statistics.mean((r["sent"] - r["heartbeats_sent"] * (len(names) - 1))
                                        / r["window_s"] for r in with_c) if with_c else None,
        "req_s_mean": statistics.mean(r["req_sent"] / r["window_s"] for r in with_c)
        if with_c else None,
        "ticks_s_mean": statistics.mean(r["heartbeats_sent"] / r["window_s"] for r in with_c)
        if with_c else None,
        "received_s_mean": statistics.mean(r["received_s"] for r in with_c) if with_c
        else None,
        "missed_ticks": sum(r["missed_ticks"] for r in with_c),
        "stalls": sum(r["stalls"] for r in with_c),
        "max_stall_us": max((r["max_stall_us"] for r in with_c), default=0),
        "status_answered": len(with_c),
        "false_node_downs": downs,
    }


def detect_trial(d: str, names: list[str], victim: str, timeout: float) -> dict:
    pid = lab.node_pid(victim, d)
    if pid is None:
        raise lab.LabError(f"{victim}'s daemon is not running")
    survivors = [n for n in names if n != victim]
    since = time.time() - 0.001
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
        for n in survivors:
            if n in seen:
                continue
            evs = [e for e in _journal(d, n, since, ["node_down"]) if e.get("node") == victim]
            if evs:
                seen[n] = evs[0]
    ms = sorted((e["time"] - t0) * 1000 for e in seen.values())
    silent = sorted(e["evidence"].get("silent_ms") for e in seen.values()
                    if isinstance(e.get("evidence"), dict)
                    and e["evidence"].get("silent_ms") is not None)
    return {"victim": victim, "survivors": len(survivors), "declared": len(seen),
            "all_ms": ms[-1] if len(seen) == len(survivors) else None,
            "first_ms": ms[0] if ms else None,
            "median_ms": statistics.median(ms) if ms else None,
            "engine_silent_ms_median": statistics.median(silent) if silent else None,
            "missing": sorted(set(survivors) - set(seen))}


class UpWatch(threading.Thread):
    """While lab.up waits for agreement (in the main thread: it handles
    signals), sample every few seconds how far the cluster got: nodes that
    answer, are quorate, how many peers each sees up, node_down events so far,
    missed ticks, the daemons' CPU and the machine's busy %."""

    def __init__(self, d: str, every: float = 5.0):
        super().__init__(daemon=True)
        self.d, self.every = d, every
        self.stop = threading.Event()
        self.samples: list[dict] = []
        self.t0 = time.monotonic()

    def run(self) -> None:
        paths = lab.Paths(self.d)
        b_prev, r_prev, t_prev = _machine_busy(), {}, time.monotonic()
        while not self.stop.wait(self.every):
            try:
                st = lab.load_state(paths)
            except (OSError, ValueError, lab.LabError):
                st = None
            if not st:
                continue
            nodes = [x for x in st["nodes"] if x.get("pid")]
            r_now = {x["name"]: proc_run_ns(x["pid"]) for x in nodes}
            b_now, t_now = _machine_busy(), time.monotonic()
            answering = quorate = missed = 0
            seen = []
            for x in nodes:
                if self.stop.is_set():
                    return
                s = lab.node_status(paths, x["name"], timeout=2.0)
                if not s:
                    continue
                answering += 1
                quorate += bool(s.get("quorum", {}).get("quorate"))
                seen.append(sum(y.get("state") in ("self", "up") for y in s.get("nodes", [])))
                missed += s.get("counters", {}).get("missed_ticks", 0)
            downs = sum(len(_journal(self.d, x["name"], 0, ["node_down"])) for x in nodes)
            cpu = sum((r_now[k] - r_prev[k]) for k in r_now
                      if r_now[k] is not None and r_prev.get(k) is not None)
            self.samples.append({
                "t_s": round(t_now - self.t0, 1), "daemons": len(nodes),
                "answering": answering, "quorate": quorate,
                "sees_up_min": min(seen, default=0),
                "sees_up_mean": round(statistics.mean(seen), 1) if seen else 0,
                "node_down_events": downs, "missed_ticks": missed,
                "daemons_cpu_pct": round(cpu / 1e9 / (t_now - t_prev) * 100, 1)
                if r_prev else None,
                "machine_busy_pct": round((b_now[0] - b_prev[0]) /
                                          max(1, b_now[1] - b_prev[1]) * 100, 1)})
            b_prev, r_prev, t_prev = b_now, r_now, t_now


NEIGH = "/proc/sys/net/ipv4/neigh/default/gc_thresh{}"


def neigh_limits() -> list[int]:
    """The kernel's ARP table thresholds gc_thresh1..3.  The table is shared
    by every network namespace, and only the initial namespace can set them."""
    out = []
    for i in (1, 2, 3):
        with open(NEIGH.format(i)) as f:
            out.append(int(f.read()))
    return out


def set_neigh_limits(vals: list[int]) -> None:
    for i, v in zip((1, 2, 3), vals):
        with open(NEIGH.format(i), "w") as f:
            f.write(str(v))


def neigh_needed(n: int) -> int:
    """ARP entries an n-node lab needs: each node resolves every other node,
    plus a few for the client and the virtual address."""
    return n * (n - 1) + 4 * n


def run_size(n: int, a: argparse.Namespace) -> dict:
    d = tempfile.mkdtemp(prefix=f"heart-scale-{n}-")
    row: dict = {"nodes": n}
    t_start = time.monotonic()
    timeout = a.up_timeout if a.up_timeout else 30 + 2 * n
    busy0 = _machine_busy()
    keep = False
    watch = UpWatch(d)
    try:
        watch.start()
        try:
            lab.up(nodes=n, directory=d, interval=a.interval, deadtime=a.deadtime,
                   timeout=timeout, out=io.StringIO())
        except lab.LabError as exc:
            b = _machine_busy()
            row["error"] = str(exc)
            row["up_s"] = time.monotonic() - t_start
            row["machine_busy_pct_during_up"] = (b[0] - busy0[0]) / max(1, b[1] - busy0[1]) \
                * 100
            keep = True          # the daemons' logs stay for a look
            return row
        finally:
            watch.stop.set()
            watch.join(30)
            row["up_samples"] = watch.samples
        row["up_s"] = time.monotonic() - t_start
        paths = lab.Paths(d)
        st = lab.load_state(paths)
        names = [x["name"] for x in st["nodes"]]
        pids = {x["name"]: x["pid"] for x in st["nodes"]}
        time.sleep(a.settle)
        row.update(measure(d, names, pids, a.seconds))
        trials = []
        owner = _owner(paths, names)
        victims = [x for x in reversed(names) if x != owner]
        for k in range(a.trials):
            victim = victims[k % len(victims)]
            try:
                trials.append(detect_trial(d, names, victim, a.detect_timeout))
                t = time.monotonic()
                lab.restart_node(victim, d, wait=timeout)
                trials[-1]["rejoin_s"] = time.monotonic() - t
            except lab.LabError as exc:
                trials.append({"victim": victim, "error": str(exc)})
                break
        row["trials"] = trials
        got = [t["all_ms"] for t in trials if t.get("all_ms") is not None]
        row["detect_ms_median"] = statistics.median(got) if got else None
        row["detect_ms_max"] = max(got) if got else None
        row["detect_ms_min"] = min(got) if got else None
        firsts = [t["first_ms"] for t in trials if t.get("first_ms") is not None]
        row["detect_first_ms_median"] = statistics.median(firsts) if firsts else None
        meds = [t["median_ms"] for t in trials if t.get("median_ms") is not None]
        row["detect_survivor_median_ms"] = statistics.median(meds) if meds else None
        sil = [t["engine_silent_ms_median"] for t in trials
               if t.get("engine_silent_ms_median") is not None]
        row["engine_silent_ms_median"] = statistics.median(sil) if sil else None
        row["trials_complete"] = len(got)
    finally:
        row["run_s"] = time.monotonic() - t_start
        try:
            lab.down(d, out=io.StringIO())
        finally:
            if keep:
                row["kept_logs"] = d
            else:
                shutil.rmtree(d, ignore_errors=True)
    return row


def _f(v, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="8,32,64")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between agreement and the window")
    ap.add_argument("--interval", default="100ms")
    ap.add_argument("--deadtime", default="500ms")
    ap.add_argument("--up-timeout", type=float, default=0.0,
                    help="seconds for the cluster to agree (default 30 + 2 per node)")
    ap.add_argument("--detect-timeout", type=float, default=15.0)
    ap.add_argument("--neigh", choices=("raise", "keep"), default="raise",
                    help="raise: if the largest lab needs more ARP entries than half the "
                         "kernel's gc_thresh3 (1024 by default: 32 nodes fit, 64 do not), "
                         "raise gc_thresh2/3 for the run and restore them after; keep: leave "
                         "them as they are")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "scale.json"))
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    if any(not 2 <= s <= 64 for s in sizes):
        ap.error("--sizes: each size must be 2 to 64")
    if os.geteuid() != 0:
        print("bench/scale.py needs root (network namespaces)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rows = []
    orig = neigh_limits()
    need = neigh_needed(max(sizes))
    raised = None
    if a.neigh == "raise" and need > orig[2] // 2:
        raised = [orig[0], max(orig[1], 2 * need), max(orig[2], 4 * need)]
        set_neigh_limits(raised)
        print(f"... net.ipv4.neigh.default.gc_thresh2/3 raised from {orig[1]}/{orig[2]} to "
              f"{raised[1]}/{raised[2]} for this run ({max(sizes)} nodes need about {need} "
              f"ARP entries; the table is shared by all namespaces)", file=sys.stderr)
    try:
        rows = run_sizes(sizes, a)
    finally:
        if raised is not None:
            set_neigh_limits(orig)
    return report(rows, a, orig, raised, t0)


def run_sizes(sizes: list[int], a: argparse.Namespace) -> list[dict]:
    rows = []
    for n in sizes:
        print(f"... {n} nodes", file=sys.stderr, flush=True)
        try:
            rows.append(run_size(n, a))
        except Exception as exc:  # noqa: BLE001 (report it, go on with the other sizes)
            rows.append({"nodes": n, "error": f"{type(exc).__name__}: {exc}"})
        print(f"... {n} nodes: {rows[-1].get('error') or 'ok'} "
              f"({rows[-1].get('run_s', 0):.0f} s)", file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict], a: argparse.Namespace, orig: list[int], raised: list[int] | None,
           t0: float) -> int:
    cpus = os.cpu_count() or 1
    print(f"## Heart at {a.interval} interval, dead time {a.deadtime}, {cpus} CPUs, "
          f"window {a.seconds:g} s, {a.trials} detection trials\n")
    print("| nodes | up in | sent/s per node (not heartbeats; of those record requests) "
          "| received/s per node "
          "| CPU per node (mean / max) | CPU total | machine busy | RSS per node (mean / max) "
          "| false node_down | missed ticks | detection, all survivors: median / max (min) "
          "| median survivor / first survivor / engine (medians) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['nodes']} | failed after {_f(r.get('up_s'), '.0f', ' s')}: "
                  f"{r['error'][:300]} | | | | | | | | | | |")
            continue
        print(f"| {r['nodes']} | {r['up_s']:.0f} s | {_f(r['sent_s_mean'], '.0f')} "
              f"({_f(r.get('state_s_mean'), '.0f')}; {_f(r.get('req_s_mean'), '.1f')}) "
              f"| {_f(r['received_s_mean'], '.0f')} "
              f"| {_f(r['cpu_pct_mean'], '.2f', ' %')} / {_f(r['cpu_pct_max'], '.2f', ' %')} "
              f"| {_f(r['cpu_pct_total'], '.1f', ' %')} | {r['machine_busy_pct']:.0f} % "
              f"| {_f(r['rss_mib_mean'], '.1f')} / {_f(r['rss_mib_max'], '.1f', ' MiB')} "
              f"| {r['false_node_downs']} | {r['missed_ticks']} "
              f"| {_f(r['detect_ms_median'], '.0f')} / {_f(r['detect_ms_max'], '.0f')} "
              f"({_f(r['detect_ms_min'], '.0f')}) ms, {r['trials_complete']}/{len(r['trials'])} "
              f"| {_f(r['detect_survivor_median_ms'], '.0f')} / "
              f"{_f(r['detect_first_ms_median'], '.0f')} / "
              f"{_f(r['engine_silent_ms_median'], '.0f', ' ms')} |")
    print()
    if raised:
        print(f"The kernel's ARP table (shared by all namespaces) was enlarged for this run: "
              f"net.ipv4.neigh.default.gc_thresh1/2/3 {'/'.join(map(str, orig))} -> "
              f"{'/'.join(map(str, raised))}, restored after.\n")
    elif any(neigh_needed(r["nodes"]) > orig[2] for r in rows):
        print(f"Note: net.ipv4.neigh.default.gc_thresh3 is {orig[2]}; a lab of N nodes needs "
              f"about N*(N+3) ARP entries, all namespaces together (the kernel logs "
              f"'neighbour: arp_cache: neighbor table overflow!').\n")
    for r in rows:
        if "error" in r and r.get("up_samples"):
            print(f"{r['nodes']} nodes, while waiting for agreement (every ~5 s):\n")
            print("| t | answering | quorate | sees up: min / mean | node_down events "
                  "| missed ticks | daemons CPU | machine busy |")
            print("|---|---|---|---|---|---|---|---|")
            for x in r["up_samples"]:
                print(f"| {x['t_s']:.0f} s | {x['answering']}/{x['daemons']} | {x['quorate']} "
                      f"| {x['sees_up_min']} / {x['sees_up_mean']} | {x['node_down_events']} "
                      f"| {x['missed_ticks']} | {_f(x['daemons_cpu_pct'], '.0f', ' %')} "
                      f"| {x['machine_busy_pct']:.0f} % |")
            print(f"\n(daemon logs kept in {r.get('kept_logs')})\n")
    for r in rows:
        for t in r.get("trials", []):
            if t.get("error") or t.get("missing"):
                print(f"- {r['nodes']} nodes, {t['victim']}: "
                      f"{t.get('error') or 'not declared down by ' + ', '.join(t['missing'])}")
    ran = [r for r in rows if "error" not in r]
    by = {r["nodes"]: r for r in ran}

    def det(n: int) -> float:
        v = by.get(n, {}).get("detect_ms_median")
        return math.nan if v is None else v

    write_json(a.json, {"machine": machine_info(), "command": " ".join(sys.argv),
                        "interval": a.interval, "deadtime": a.deadtime,
                        "seconds": a.seconds, "trials": a.trials, "rows": rows,
                        "neigh_gc_thresh": orig, "neigh_gc_thresh_raised": raised,
                        "run_s": time.monotonic() - t0})
    print(f"nodes={max((r['nodes'] for r in ran), default=0)} detect_ms_8={det(8):.1f} "
          f"detect_ms_64={det(64):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
