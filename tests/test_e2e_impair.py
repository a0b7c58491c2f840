"""End-to-end tests on an impaired segment (issue 5, item 3): a 2 + 1
partition, and 20 % loss with 5 ms +- 5 ms jitter on every link for a
minute.

This kernel has no tc netem (nor tc's flower and gact), so the impairment
comes from `heart lab impair` (heart/labhub.py): the lab's bridge ports are
handed to a userspace switch that drops and delays frames per destination,
and that forwards only inside the groups of a partition.  The client
belongs to no group, so it sees both sides: if both sides answered for the
address the client would get replies from two nodes.  Root and network
namespaces (CI)."""
from __future__ import annotations

import time

import pytest
from labkit import DEADTIME_S, Lab, wait

from heart import failover_demo, lab, labhub

SIDE_KINDS = ["node_down", "node_up", "resource_acquire", "resource_release",
              "quorum_lost", "quorum_regained", "duplicate_owner"]


def minority_out(L: Lab, node: str) -> tuple[bool, str]:
    s = L.status(node)
    if s is None:
        return False, f"{node} does not answer"
    if s["quorum"]["quorate"]:
        return False, f"{node} is still quorate"
    if L.has_vip(node):
        return False, f"{node} still has {lab.VIP4}"
    return True, "ok"


def test_partition_owner_in_minority(make_lab):
    """The owner is cut off from the other two, the client still reaches
    everybody: the owner releases the address, the majority takes it, and
    the client is served by the majority only.  Never two owners: the
    kernel's own address notifications (rtnetlink, in every node's
    namespace) show the address removed from the old owner before it is
    added on the new one; the old owner released it early, when its quorum
    rested on peers silent for most of a dead time (quorum_at_risk), so it
    was gone before the majority could declare it dead.  Healed, the
    cluster settles on one owner again."""
    L = make_lab()
    old = L.owner
    rest = [n for n in L.names() if n != old]
    watch = failover_demo.AddressWatch(L.st["nodes"])
    try:
        t0 = time.time()
        labhub.impair(L.dir, partition=[[old], rest])
        ok, why = wait(lambda: minority_out(L, old), 10)
        assert ok, why
        new = L.wait_settled(rest, namespaces=L.names())
        assert new != old
        L.client_reaches(new)
        time.sleep(0.1)
        changes = list(watch.changes)
        timeline = watch.holder_changes([old])
    finally:
        watch.close()
    two = [(t, h) for t, h in timeline if len(h) > 1]
    assert not two, f"the address was on two nodes at once: {timeline}"
    t_del = next(t for t, n, w in changes if n == old and w == "del")
    t_add = next(t for t, n, w in changes if n == new and w == "add")
    print(f"\npartition {old} | {'+'.join(rest)}: {lab.VIP4} left {old} "
          f"{(t_add - t_del) / 1e6:.1f} ms before it came up on {new}")
    risk = L.events(old, ["quorum_at_risk"], t0)
    assert risk, f"{old} released without a quorum_at_risk event"
    labhub.heal(L.dir)
    owner = L.wait_settled(L.names(), timeout=15)
    L.client_reaches(owner)


def test_partition_owner_in_majority(make_lab):
    """A node that does not own the address is cut off: it loses quorum
    and holds nothing, the owner keeps the address, nothing moves on the
    majority side and the client is served without a change.  Healed, the
    node rejoins and still nothing moves."""
    L = make_lab()
    owner = L.owner
    lone = next(n for n in L.names() if n != owner)
    majority = [n for n in L.names() if n != lone]
    t0, t0_ns = time.time(), time.time_ns()
    labhub.impair(L.dir, partition=[majority, [lone]])
    ok, why = wait(lambda: minority_out(L, lone), 10)
    assert ok, why
    assert L.wait_settled(majority, namespaces=L.names()) == owner
    time.sleep(10 * DEADTIME_S)
    for n in majority:
        evs = [e for e in L.events(n, SIDE_KINDS, t0) if e["kind"] != "node_down"
               or e["node"] != lone]
        assert not evs, f"{n} during the partition: {evs}"
    assert {w for _, w in L.client.replies(t0_ns)} == {owner}
    labhub.heal(L.dir)
    assert L.wait_settled(L.names(), timeout=15) == owner
    L.client_reaches(owner)
    for n in majority:
        moved = L.events(n, ["resource_acquire", "resource_release"], t0)
        assert not moved, f"{n}: {moved}"


LOSSY_INTERVAL_MS = 20
LOSSY_DEADTIME_MS = 300


def test_lossy_jittery_minute_no_failover(make_lab):
    """20 % loss and 5 ms +- 5 ms delay on every frame between any two
    ports, for a minute: no node is declared down and nothing moves.

    The timing is chosen for that network, as an administrator would: a
    node is declared down only after deadtime/interval = 15 heartbeats in a
    row are lost (or delayed past it), p = 0.2^15 = 3e-11 per heartbeat,
    about 3000 heartbeats a minute on each of 6 directed pairs.  (With
    the lab's default 5 intervals, 0.2^5 = 3e-4 per heartbeat, about six
    false detections a minute would be expected: the test would fail.)"""
    L = make_lab(interval=f"{LOSSY_INTERVAL_MS}ms", deadtime=f"{LOSSY_DEADTIME_MS}ms")
    owner = L.owner
    t0, t0_ns = time.time(), time.time_ns()
    labhub.impair(L.dir, loss=0.2, delay_ms=5, jitter_ms=5)
    lost_before = {n: sum(ls for ls in _lost(L, n)) for n in L.names()}
    time.sleep(60)
    hub = labhub.status(L.dir)
    for n in L.names():
        evs = L.events(n, SIDE_KINDS, t0)
        assert not evs, f"{n} on the lossy segment: {evs}"
    assert L.settled(L.names()) == (owner, "ok"), L.settled(L.names())
    who = {w for _, w in L.client.replies(t0_ns)}
    assert who == {owner}, f"replies came from {sorted(who)}"
    lost = {n: sum(_lost(L, n)) - lost_before[n] for n in L.names()}
    print(f"\n60 s at 20 % loss, 5 +- 5 ms: hub {hub and hub.get('counters')}; "
          f"heartbeats counted lost per node {lost}")
    assert hub is not None
    # The impairment really happened: the hub dropped about a fifth.
    c = hub["counters"]
    assert c["dropped_loss"] > 0.1 * (c["forwarded"] + c["dropped_loss"]), c
    labhub.heal(L.dir)
    L.client_reaches(owner)


def _lost(L: Lab, node: str) -> list[int]:
    """Per peer and link, heartbeats the node counted as lost."""
    s = L.status(node)
    if s is None:
        pytest.fail(f"{node} does not answer")
    return [int(v) for n in s["nodes"] for v in (n.get("lost") or {}).values()]
