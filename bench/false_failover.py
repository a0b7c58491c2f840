"""False failovers under load: each contender at its fastest setting, for
MINUTES (default 10) with both cores saturated by stress-ng (CPU and
memory) and 1 % loss plus 2 ms +- 2 ms delay on every link; how often does
the virtual address change hands although no node failed?  (Issue 6,
item 2.)

All contenders run at the same time, each in a 3-node `heart lab` of its
own (the same load for all of them):

  heart        interval --heart-interval (default 5 ms), dead time
               --heart-deadtime (default 40 ms), engine thread SCHED_FIFO 10
  heart-nort   the same without realtime priority
  keepalived   VRRPv3, advert_int --keepalived-advert (default 0.01 s, its
               floor)
  ucarp        advbase 1 s (its floor)

Loss and delay come from `heart lab impair` (heart/labhub.py: this kernel
has no netem): each frame is lost with probability 1 % on its way to each
port, and delayed uniformly by 0 to 4 ms.  An rtnetlink watch in every
node namespace (heart.failover_demo.AddressWatch) records every change of
192.0.2.100; a flap is a change of the set of nodes that have it (from
{node1} to anything else, or back).  Heart's journals add its node_down
events.

Needs root, keepalived, ucarp and stress-ng (installed with apt-get when
missing; keepalived and ucarp are only ever started by hand inside the lab
namespaces, never as services).  Last line:
heart_flaps=<int> heart_flaps_nort=<int> keepalived_flaps=<int>
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contenders  # noqa: E402
from _common import machine_info, write_json  # noqa: E402

from heart import failover_demo, journal, lab, labhub  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class HeartCluster:
    """A Heart lab with the given timing and realtime priority."""

    def __init__(self, directory: str, interval_ms: float, deadtime_ms: float, rt: int):
        self.dir = directory
        lab.up(nodes=3, directory=directory, interval=f"{interval_ms:g}ms",
               deadtime=f"{deadtime_ms:g}ms", realtime_priority=rt, out=io.StringIO(),
               timeout=60)
        self.st = lab.load_state(lab.Paths(directory))

    def owners(self) -> list[str]:
        return [n["name"] for n in self.st["nodes"] if lab.has_address(n["ns"], lab.VIP4)]

    def node_downs(self, since: float) -> int:
        total = 0
        for n in self.st["nodes"]:
            path = os.path.join(self.dir, n["name"], "journal.db")
            with journal.open_readonly(path) as j:
                total += len(j.events(since=since, kinds=["node_down"]))
        return total

    def stop(self) -> None:
        lab.down(directory=self.dir, out=io.StringIO())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="how long to watch (default 10)")
    ap.add_argument("--heart-interval", type=float, default=5.0, metavar="MS",
                    help="Heart's heartbeat interval in ms (default 5)")
    ap.add_argument("--heart-deadtime", type=float, default=40.0, metavar="MS",
                    help="Heart's dead time in ms (default 40: about keepalived's "
                         "Master_Down_Interval at advert_int 0.01 s, 36 ms, but with 8 "
                         "heartbeats in it instead of 3)")
    ap.add_argument("--keepalived-advert", default="0.01", metavar="SECONDS",
                    help="keepalived's advert_int (default 0.01, its floor)")
    ap.add_argument("--loss", type=float, default=1.0, metavar="PERCENT")
    ap.add_argument("--jitter", type=float, default=2.0, metavar="MS",
                    help="delay drawn uniformly from 0 to 2 x this (default 2: 2 +- 2 ms)")
    ap.add_argument("--no-stress", action="store_true", help="no stress-ng (a reference run)")
    ap.add_argument("--only", default="heart,heart-nort,keepalived,ucarp",
                    help="comma-separated contenders to run")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "results", "false_failover.json"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("false_failover: needs root (network namespaces)")
    contenders.ensure_installed("keepalived", "ucarp", "stress-ng")
    contenders.become_subreaper()
    names = [x for x in args.only.split(",") if x]
    base = tempfile.mkdtemp(prefix="heart-falsefo-")
    clusters: dict[str, object] = {}
    watches: dict[str, failover_demo.AddressWatch] = {}
    stress = None
    result: dict = {"machine": machine_info(), "minutes": args.minutes,
                    "loss_percent": args.loss, "delay_ms": f"{args.jitter:g} +- {args.jitter:g}",
                    "stress": not args.no_stress, "contenders": {}}
    try:
        for name in names:
            d = os.path.join(base, name)
            log(f"starting {name}")
            if name == "heart":
                clusters[name] = HeartCluster(d, args.heart_interval, args.heart_deadtime, rt=10)
            elif name == "heart-nort":
                clusters[name] = HeartCluster(d, args.heart_interval, args.heart_deadtime, rt=0)
            elif name == "keepalived":
                clusters[name] = contenders.start("keepalived", args.keepalived_advert, d)
            elif name == "ucarp":
                clusters[name] = contenders.start("ucarp", "1", d)
            else:
                sys.exit(f"false_failover: unknown contender {name!r}")
        for name, c in clusters.items():
            d = os.path.join(base, name)
            labhub.impair(d, loss=args.loss / 100, delay_ms=args.jitter,
                          jitter_ms=args.jitter)
        time.sleep(2)
        initial = {}
        for name, c in clusters.items():
            st = lab.load_state(lab.Paths(os.path.join(base, name)))
            watches[name] = failover_demo.AddressWatch(st["nodes"])
            initial[name] = c.owners()
        if not args.no_stress:
            stress = subprocess.Popen(["stress-ng", "--cpu", "2", "--vm", "2", "--vm-bytes",
                                       "25%", "--timeout", f"{int(args.minutes * 60) + 30}s"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        t0 = time.time()
        log(f"watching {', '.join(clusters)} for {args.minutes:g} min"
            + ("" if args.no_stress else f" under stress-ng (pid {stress.pid})"))
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            log("  " + ", ".join(f"{n}: {len(watches[n].holder_changes(initial[n]))}"
                                  for n in clusters))
        for name, c in clusters.items():
            changes = watches[name].holder_changes(initial[name])
            entry = {"initial_owner": initial[name], "flaps": len(changes),
                     "changes": [(round((t / 1e9) - t0, 3), h) for t, h in changes[:200]]}
            if isinstance(c, HeartCluster):
                entry["node_down_events"] = c.node_downs(t0)
            result["contenders"][name] = entry
    finally:
        if stress is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stress.pid, signal.SIGTERM)
            stress.wait(10)
        for w in watches.values():
            w.close()
        for name, c in clusters.items():
            with contextlib.suppress(Exception):
                c.stop()
        log(f"the daemons' logs are kept in {base}")
    rows = ["| contender | setting | flaps in "
            f"{args.minutes:g} min | Heart node_down events |", "|---|---|---:|---:|"]
    hs = f"interval {args.heart_interval:g} ms, deadtime {args.heart_deadtime:g} ms"
    settings = {"heart": f"{hs}, SCHED_FIFO 10", "heart-nort": f"{hs}, no realtime",
                "keepalived": f"advert_int {args.keepalived_advert} s",
                "ucarp": "advbase 1 s"}
    for name, e in result["contenders"].items():
        rows.append(f"| {name} | {settings[name]} | {e['flaps']} | "
                    f"{e.get('node_down_events', '-')} |")
    print("\n".join(rows))
    write_json(args.json, result)
    r = result["contenders"]
    print(f"heart_flaps={r.get('heart', {}).get('flaps', 'na')} "
          f"heart_flaps_nort={r.get('heart-nort', {}).get('flaps', 'na')} "
          f"keepalived_flaps={r.get('keepalived', {}).get('flaps', 'na')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
