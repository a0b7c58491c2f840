"""How fast the cluster state database converges after a change.

Starts N real daemons (`heart run`) on loopback, then flips node 1's standby
flag over and over (`heart standby` through the control socket) and measures,
from the moment the command returns, how long until every other node's status
shows node 1's new record version.  The result is reported in milliseconds
and in heartbeat intervals (the design promise: "within a few intervals").

    python bench/convergence.py [--nodes 3] [--interval-ms 20] [--trials 30]

Last line: convergence_ms_median=<float> intervals_median=<float>
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from _common import machine_info, write_json
from daemonkit import Cluster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "convergence.json"))
    a = ap.parse_args()
    names = [f"n{i + 1}" for i in range(a.nodes)]
    interval = a.interval_ms
    with tempfile.TemporaryDirectory(prefix="heart-conv-") as tmp:
        c = Cluster(tmp, names, interval=f"{interval}ms", deadtime=f"{interval * 10}ms",
                    initdead=f"{max(interval * 20, 1000)}ms", resources="")
        c.start_all()
        try:
            c.wait(lambda: all((st := c.status(n)) and all(
                x["state"] in ("self", "up") for x in st["nodes"]) for n in names), 30,
                "the cluster to form")
            times = []
            first, others = names[0], names[1:]
            for i in range(a.trials):
                cmd = "standby" if i % 2 == 0 else "unstandby"
                c.request(first, cmd, node=first)
                t0 = time.monotonic()
                want = c.status(first)["nodes"][0]["version"]

                def seen(want=want):
                    for n in others:
                        st = c.status(n)
                        rec = next(x for x in st["nodes"] if x["name"] == first)
                        if rec.get("version", 0) < want:
                            return False
                    return True

                c.wait(seen, 10, "every node to see the new record", every=0.0005)
                times.append((time.monotonic() - t0) * 1000)
                time.sleep(interval / 1000 * 3)
        finally:
            for n in names:
                c.stop(n)
            c.cleanup()
    times.sort()
    med = statistics.median(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    print("| nodes | interval | trials | median | p95 | max |")
    print("|---|---|---|---|---|---|")
    print(f"| {a.nodes} | {interval:g} ms | {len(times)} | {med:.2f} ms "
          f"({med / interval:.2f} intervals) | {p95:.2f} ms | {times[-1]:.2f} ms |")
    write_json(a.json, {"machine": machine_info(), "nodes": a.nodes, "interval_ms": interval,
                        "trials_ms": times, "median_ms": med, "p95_ms": p95})
    print(f"convergence_ms_median={med:.3f} intervals_median={med / interval:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
