#!/usr/bin/env python3
"""Acquire to wire: how long from the call that announces an address to its
first frame on the segment.

Two network namespaces on a bridge (tests/netns.py: 192.0.2.0/26 and
2001:db8::/80 only, removed afterwards).  Node 1 owns the address and
announces it with heart._core.Announcer; node 2 captures with an AF_PACKET
socket and the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME),
so the end point is when the frame arrived at another host's interface,
after the bridge.  The start is time.time_ns() (the same clock) taken in
Python right before the call.  Each trial alternates IPv4 (gratuitous ARP)
and IPv6 (unsolicited neighbour advertisement) and measures:

  announce   announce(address) alone, the address already configured: the
             headline figure (the Announcer's part of a takeover);
  acquire    adding the address through netlink (pyroute2, IFA_F_NODAD for
             IPv6), then announce(address) (needs pyroute2; skipped without it);
  resource   heart.ipaddr.IpaddrAgent.start(), the call with which the daemon
             acquires an address (checks, netlink add, first frame): the
             headline figure.

Root only (namespaces, CAP_NET_RAW).

    python bench/announce.py [--trials 200] [--json PATH]

Last line: acquire_to_wire_us_median=<float>  (IpaddrAgent.start() to the
first frame on the wire, both families together; the lines before it give
announce() alone and netlink add + announce()).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)
try:
    import heart._core as core
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, ROOT)
    import heart._core as core

import netns
from _common import machine_info, write_json

DEV = "eth0"
VIPS = {"ipv4": ("192.0.2.50", 26), "ipv6": ("2001:db8::50", 80)}
IFA_F_NODAD = 0x02


def _first_frame(frames, mac: bytes, packed: bytes):
    """Kernel timestamp of the first announcement of packed from mac."""
    for ts, f in frames:
        if f[6:12] != mac:
            continue
        if f[12:14] == b"\x08\x06" and f[28:32] == packed:
            return ts
        if (f[12:14] == b"\x86\xdd" and len(f) >= 78 and f[54] == 136
                and f[62:78] == packed):
            return ts
    return None


def _resource_agents(owner: str):
    """One heart.ipaddr.IpaddrAgent per family, as the daemon runs them
    (one burst frame, no repeat, no lease): its start() is the call that
    acquires an address.  Each agent's worker thread (netlink, raw socket)
    is born inside the owner's namespace."""
    import asyncio
    from types import SimpleNamespace

    from heart.ipaddr import IpaddrAgent

    loop = asyncio.new_event_loop()
    agents = {}
    for fam, (vip, plen) in VIPS.items():
        res = SimpleNamespace(
            name=f"vip-{fam}", type="ipaddr", timeout_us=5_000_000,
            monitor_timeout_us=5_000_000, monitor_interval_us=0, retries=0,
            params={"address": vip, "prefix": str(plen), "interface": DEV, "lease": "off",
                    "announce_count": "1", "announce_repeat": "0s"})
        agent = IpaddrAgent(res, {}, deadtime_us=500_000)
        with netns.inside(owner):
            loop.run_until_complete(agent.monitor())   # starts the worker thread here
        agents[fam] = agent
    return loop, agents


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median_us": statistics.median(xs),
            "p95_us": xs[min(len(xs) - 1, int(0.95 * len(xs)))],
            "min_us": xs[0], "max_us": xs[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200,
                    help="per mode, alternating IPv4 and IPv6")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "announce.json"))
    a = ap.parse_args()
    why = netns.have_netns()
    if why:
        print(f"bench/announce.py {why}", file=sys.stderr)
        return 2
    try:
        from pyroute2 import IPRoute
    except ImportError:
        IPRoute = None
        print("pyroute2 is not installed: the acquire mode (netlink add + announce)"
              " is skipped", file=sys.stderr)

    results: dict[str, dict[str, list[float]]] = {
        "announce": {"ipv4": [], "ipv6": []}, "acquire": {"ipv4": [], "ipv6": []},
        "resource": {"ipv4": [], "ipv6": []}}
    missed = 0
    with netns.Lab(n_nodes=2) as lab:
        owner, observer = lab.nodes
        mac = bytes.fromhex(netns.mac(owner, DEV).replace(":", ""))
        with netns.inside(owner):
            ann = core.Announcer(DEV)
            ipr = IPRoute() if IPRoute else None
        idx = ann.ifindex
        cap = netns.Capture(observer, DEV)
        try:
            modes = ["announce"] + (["acquire"] if ipr else [])
            if ipr:
                loop, agents = _resource_agents(owner)
                modes.append("resource")
            for mode in modes:
                for i in range(a.trials + 10):  # the first 10 warm up
                    family = "ipv4" if i % 2 == 0 else "ipv6"
                    vip, plen = VIPS[family]
                    packed = socket.inet_pton(
                        socket.AF_INET if family == "ipv4" else socket.AF_INET6, vip)
                    if mode == "announce":
                        netns.run("ip", "addr", "add", f"{vip}/{plen}", "dev", DEV,
                                  *(["nodad"] if family == "ipv6" else []), ns=owner)
                    cap.read(idle=0.001, until=0.05)  # drop what came before
                    t0 = time.time_ns()
                    if mode == "resource":
                        r = loop.run_until_complete(agents[family].start())
                        frames = cap.read(idle=0.5, until=1.0,
                                          want=lambda fr, p=packed: _first_frame(fr, mac, p))
                        ts = _first_frame(frames, mac, packed)
                        loop.run_until_complete(agents[family].stop())
                        if not r.ok:
                            raise SystemExit(f"ipaddr start failed: {r.error}")
                        if ts is None:
                            missed += 1
                        elif i >= 10:
                            results[mode][family].append((ts - t0) / 1000.0)
                        continue
                    if mode == "acquire":
                        ipr.addr("add", index=idx, address=vip, prefixlen=plen,
                                 **({"flags": IFA_F_NODAD} if family == "ipv6" else {}))
                    ann.announce(vip)
                    frames = cap.read(idle=0.5, until=1.0,
                                      want=lambda fr, p=packed: _first_frame(fr, mac, p))
                    ts = _first_frame(frames, mac, packed)
                    if ipr:
                        ipr.addr("del", index=idx, address=vip, prefixlen=plen)
                    else:
                        netns.run("ip", "addr", "del", f"{vip}/{plen}", "dev", DEV,
                                  ns=owner)
                    if ts is None:
                        missed += 1
                        continue
                    if i >= 10:
                        results[mode][family].append((ts - t0) / 1000.0)
        finally:
            cap.close()
            ann.close()
            if ipr:
                ipr.close()
                for ag in agents.values():
                    loop.run_until_complete(ag.close())
                loop.close()

    out = {"machine": machine_info(), "trials": a.trials, "missed": missed,
           "clock": "time.time_ns() before the call -> SO_TIMESTAMPNS on the peer's "
                    "interface (CLOCK_REALTIME)"}
    print("| mode | family | n | median us | p95 us | min us | max us |")
    print("|---|---|---|---|---|---|---|")
    for mode, fams in results.items():
        out[mode] = {}
        for fam in ("ipv4", "ipv6", "both"):
            xs = fams["ipv4"] + fams["ipv6"] if fam == "both" else fams[fam]
            st = _stats(xs)
            out[mode][fam] = st
            if st["n"]:
                print(f"| {mode} | {fam} | {st['n']} | {st['median_us']:.1f} | "
                      f"{st['p95_us']:.1f} | {st['min_us']:.1f} | {st['max_us']:.1f} |")
    if missed:
        print(f"{missed} announcements were not seen on the wire")
    write_json(a.json, out)
    acq = out["acquire"]["both"]
    print(f"announce_to_wire_us_median={out['announce']['both']['median_us']:.1f}")
    if acq.get("n"):
        print(f"netlink_add_and_announce_to_wire_us_median={acq['median_us']:.1f}")
    res = out["resource"]["both"]
    if res.get("n"):
        print(f"acquire_to_wire_us_median={res['median_us']:.1f}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
