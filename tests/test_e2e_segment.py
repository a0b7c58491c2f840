"""End-to-end tests of what shares a wire with a cluster (issue 5, item 3):
two heartbeat links with one cut, and two clusters with different ids on
one segment.  Real 3-node `heart lab`s (heart/lab.py) with a client that
keeps probing the virtual address (tests/labkit.py).  Root and
network namespaces (CI)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from labkit import DEADTIME_S, Lab, wait

from heart import lab

QUIET_KINDS = ["node_down", "node_up", "resource_acquire", "resource_release",
               "quorum_lost", "duplicate_owner"]


def link_states(L: Lab, viewer: str) -> dict[str, dict[str, str]]:
    """{peer: {link: "up"|"down"}} as viewer's status shows them."""
    s = L.status(viewer)
    assert s is not None, f"{viewer} does not answer"
    return {n["name"]: n.get("links", {}) for n in s["nodes"] if n["state"] != "self"}


def assert_quiet(L: Lab, since: float, owner: str, what: str) -> None:
    """Nothing moved in L since `since`: no membership, resource or quorum
    event in any journal, one owner (the same), the client served by it."""
    for n in L.names():
        evs = L.events(n, QUIET_KINDS, since)
        assert not evs, f"{n}'s journal during {what}: {evs}"
    assert L.settled(L.names()) == (owner, "ok"), L.settled(L.names())
    since_ns = int(since * 1e9)
    who = {w for _, w in L.client.replies(since_ns)}
    assert who == {owner}, f"during {what} the client's replies came from {sorted(who)}"


def test_two_links_one_cut(make_lab):
    """The owner's second link ("ring", eth1 on a bridge of its own) is
    cut: every node still hears every other over the lan, so nothing fails
    over; status shows the ring down between the owner and its peers (and
    only there), the journal says when; restored, it comes back up."""
    L = make_lab(links=2)
    owner = L.owner
    rest = [n for n in L.names() if n != owner]
    for n in L.names():
        for peer, links in link_states(L, n).items():
            assert links == {"lan": "up", "ring": "up"}, (n, peer, links)

    t0 = time.time()
    lab.set_link(owner, False, L.dir, link="ring")
    # Past the dead time: the ring is down, the nodes are not.
    assert wait(lambda: all(link_states(L, n)[owner].get("ring") == "down" for n in rest),
                20 * DEADTIME_S), {n: link_states(L, n) for n in rest}
    time.sleep(10 * DEADTIME_S)
    for n in rest:
        view = link_states(L, n)
        assert view[owner] == {"lan": "up", "ring": "down"}, (n, view)
        other = next(x for x in rest if x != n)
        assert view[other] == {"lan": "up", "ring": "up"}, (n, view)
        downs = [e for e in L.events(n, ["link_down"], t0) if e["node"] == owner]
        assert downs and downs[0]["evidence"]["link"] == "ring", (n, downs)
    mine = link_states(L, owner)
    assert all(v == {"lan": "up", "ring": "down"} for v in mine.values()), mine
    assert_quiet(L, t0, owner, "the ring cut")
    # The human view says so too.
    r = subprocess.run([sys.executable, "-m", "heart", "status", "-c", L.paths.config,
                        "--node", rest[0]], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith(owner + " "))
    assert "lan:up" in row and "ring:down" in row, r.stdout

    t1 = time.time()
    lab.set_link(owner, True, L.dir, link="ring")
    assert wait(lambda: all(link_states(L, n)[owner].get("ring") == "up" for n in rest),
                20 * DEADTIME_S), {n: link_states(L, n) for n in rest}
    for n in rest:
        ups = [e for e in L.events(n, ["link_up"], t1) if e["node"] == owner]
        assert ups, f"{n} logged no link_up for {owner}'s ring"
    assert_quiet(L, t0, owner, "the ring cut and its repair")


@pytest.fixture
def two_clusters(make_lab, tmp_path, request):
    """Lab A (cluster 94) and lab B (cluster 95) on one segment, both
    broadcasting their heartbeats to 192.0.2.255 on the same port with the
    same key and the same node names and ids: only the cluster id tells
    their frames apart.  (A's teardown takes B down first.)"""
    A = make_lab(link_kind="broadcast")
    bdir = str(tmp_path / "labB")
    request.addfinalizer(lambda: lab.down(directory=bdir, out=io.StringIO()))
    lab.up(nodes=3, directory=bdir, interval="20ms", deadtime="100ms",
           link_kind="broadcast", join=A.dir, out=io.StringIO(),
           daemon_env={"HEART_DEBUG_HOOKS": "1"})
    B = Lab(bdir)
    B.vip = B.st["vip"]["v4"]
    assert B.st["cluster_id"] != A.st["cluster_id"]
    assert B.vip != lab.VIP4
    return A, B


def b_owner(B: Lab, live: list[str]) -> str | None:
    """B's single owner among live, agreed by every live node and the only
    one of live with B's address, else None."""
    owners = {lab.owner_of(B.status(n)) for n in live}
    if len(owners) != 1:
        return None
    o = owners.pop()
    if o not in live:
        return None
    holding = [n for n in live if lab.has_address(B.ns(n), B.vip)]
    return o if holding == [o] else None


def test_two_clusters_one_segment(two_clusters):
    A, B = two_clusters
    a_owner = A.owner
    t0 = time.time()
    for L, other in ((A, B), (B, A)):
        for n in L.names():
            s = L.status(n)
            assert s["cluster_id"] == L.st["cluster_id"]
            ups = sorted(x["name"] for x in s["nodes"] if x["state"] in ("self", "up"))
            assert ups == sorted(L.names()), (L.dir, n, s["nodes"])
    # Each receives the other's broadcasts and drops every one of them as
    # another cluster's.
    def foreign(L: Lab) -> list[int]:
        return [L.status(n)["counters"]["rejected"]["wrong_cluster"] for n in L.names()]
    a0, b0 = foreign(A), foreign(B)
    time.sleep(0.5)
    a1, b1 = foreign(A), foreign(B)
    assert all(y > x for x, y in zip(a0, a1)), (a0, a1)
    assert all(y > x for x, y in zip(b0, b1)), (b0, b1)
    # Each cluster has its own address on its own node.
    old = wait(lambda: b_owner(B, B.names()), 10)
    assert old, "cluster B has no single owner of its address"
    for n in A.names():
        assert not lab.has_address(A.ns(n), B.vip), f"A's {n} has B's address"
    for n in B.names():
        assert not lab.has_address(B.ns(n), lab.VIP4), f"B's {n} has A's address"

    # B's owner dies: B fails over, A does not notice.
    t_kill = time.time()
    os.kill(lab.node_pid(old, B.dir), signal.SIGKILL)
    b_rest = [n for n in B.names() if n != old]
    new = wait(lambda: b_owner(B, b_rest), 10)
    assert new and new != old, f"cluster B did not fail over from {old}"
    downs = [e for e in B.events(new, ["node_down"], t_kill) if e["node"] == old]
    assert downs, f"B's {new} never declared {old} down"
    assert_quiet(A, t0, a_owner, "cluster B's failover")
    A.client_reaches(a_owner)


def test_heartbeats_keep_neighbour_entries_confirmed(make_lab):
    """Heartbeats to a peer that is heard go out with MSG_CONFIRM, so the
    kernel never re-probes the peer's neighbour entry (a failed probe on a
    lossy link stops every send to the peer until ARP succeeds again; it
    once cost a false failover in the lossy minute).  Here the entries would
    go stale every ~0.1 s (base_reachable_time_ms 100, no delay before the
    first probe): they must stay REACHABLE, with no probe sent."""
    L = make_lab()
    peers = {n["name"]: n["v4"] for n in L.st["nodes"]}
    for n in L.names():
        for key, value in (("base_reachable_time_ms", "100"), ("delay_first_probe_time", "0")):
            lab.sysctl(L.ns(n), f"net.ipv4.neigh.eth0.{key}", value)
        # Entries made from now on run on the new timing.
        lab.run("ip", "neigh", "flush", "dev", "eth0", ns=L.ns(n))
    time.sleep(0.5)

    def entries(node: str) -> dict[str, tuple[str, int]]:
        out = lab.run("ip", "-s", "neigh", "show", "dev", "eth0", ns=L.ns(node))
        got = {}
        for line in out.splitlines():
            f = line.split()
            if f and f[0] in peers.values():
                probes = int(f[f.index("probes") + 1]) if "probes" in f else 0
                got[f[0]] = (f[-1], probes)
        return got

    before = {n: entries(n) for n in L.names()}
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for n in L.names():
            for addr, (state, _) in entries(n).items():
                assert state in ("REACHABLE", "DELAY"), (n, addr, state)
        time.sleep(0.02)
    for n in L.names():
        after = entries(n)
        others = {a for name, a in peers.items() if name != n}
        assert set(after) >= others, (n, after)
        for addr in others:
            assert after[addr][1] == before[n].get(addr, ("", 0))[1], \
                f"{n} probed {addr}: {before[n]} -> {after}"
