"""End-to-end failover in a real 3-node `heart lab` (issue 5, item 3, first
set): the owner killed (SIGKILL), its link cut, paused (SIGSTOP past the dead
time), stopped gracefully (SIGTERM), and its Python side stalled for 3 s.

Each test builds its own lab in tmp_path and always tears it down.  A client
in the lab's client namespace sends a UDP probe to the virtual address every
2 ms; an echo service per node namespace (sockets in this process, bound to
the virtual address with IP_FREEBIND) answers with the node's name, and a
kernel-timestamped capture in the client namespace records which node each
reply came from (the machinery of `heart demo`, heart/failover_demo.py).

"One owner" is checked from every side: every live node's status names the
same owner, only that node's namespace has the address configured, and the
client's replies come from it.  Root and network namespaces (CI)."""
from __future__ import annotations

import os
import signal
import time

import pytest
from labkit import DEADTIME_MS, DEADTIME_S, INTERVAL_MS, Lab, wait

from heart import control, lab


@pytest.fixture
def lab3(make_lab):
    return make_lab()


def test_owner_sigkill(lab3):
    L, old = lab3, lab3.owner
    rest = [n for n in L.names() if n != old]
    t0, t0_ns = time.time(), time.time_ns()
    os.kill(lab.node_pid(old, L.dir), signal.SIGKILL)
    # The killed daemon cannot remove the address from its namespace (as if
    # the machine were gone): only the survivors' namespaces are looked at.
    new = L.wait_settled(rest, namespaces=rest)
    assert new != old
    L.client_reaches(new)
    first = next(ts for ts, w in L.client.replies(t0_ns) if w == new)
    print(f"\nSIGKILL of {old}: first reply through {new} {(first - t0_ns) / 1e6:.1f} ms "
          f"after the kill")
    for n in rest:
        downs = [e for e in L.events(n, ["node_down"], t0) if e["node"] == old]
        assert downs, f"{n} never declared {old} down"
    # Restarted, the node removes the address left behind and rejoins:
    # still exactly one owner, on every side.
    lab.restart_node(old, L.dir)
    owner = L.wait_settled(L.names(), timeout=15)
    L.client_reaches(owner)


def test_owner_link_cut(lab3):
    L, old = lab3, lab3.owner
    rest = [n for n in L.names() if n != old]
    t_cut = time.monotonic()
    lab.set_link(old, False, L.dir)
    gone = wait(lambda: not L.has_vip(old), 20 * DEADTIME_S, step=0.005)
    released = time.monotonic() - t_cut
    print(f"\nlink cut: {old} released {lab.VIP4} {released * 1000:.1f} ms after the cut")
    assert gone, f"{old}, cut off, still has {lab.VIP4} after {released:.1f} s"
    assert released < 5 * DEADTIME_S, \
        f"{old} released {lab.VIP4} only {released * 1000:.0f} ms after the cut"
    # The node must go on answering its control socket after the cut.  (It
    # once did not: a failed announcement closed the announcer whose fd the
    # claim watch still had registered, and a control connection that got
    # the same fd number was never read.  The watch now reads a dup.)
    s = wait(lambda: lab.node_status(L.paths, old, timeout=0.3), 5, step=0.01)
    assert s is not None, f"{old} does not answer:" + lab._log_tail(L.paths.log(old), 20)
    # It released when its quorum was at risk, a little before the dead
    # time; the quorum itself is lost at the dead time.
    s = wait(lambda: (lambda x: x if x and not x["quorum"]["quorate"] else None)(
        lab.node_status(L.paths, old, timeout=0.3)), 5, step=0.01)
    assert s is not None, f"{old}, cut off, still says it is quorate"
    new = L.wait_settled(rest)
    assert new != old
    L.client_reaches(new)
    # Cable back in: the cluster heals to one owner.
    lab.set_link(old, True, L.dir)
    owner = L.wait_settled(L.names(), timeout=15)
    L.client_reaches(owner)


def test_owner_sigstop_past_deadtime(lab3):
    L, old = lab3, lab3.owner
    rest = [n for n in L.names() if n != old]
    pid = lab.node_pid(old, L.dir)
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        taken = wait(lambda: any(L.has_vip(n) for n in rest), 10, step=0.01)
        assert taken, f"no survivor took {lab.VIP4} while {old} was stopped"
        time.sleep(max(0.0, t0 + 5 * DEADTIME_S - time.time()))
    finally:
        os.kill(pid, signal.SIGCONT)
    owner = L.wait_settled(L.names(), timeout=15)
    L.client_reaches(owner)
    stalls = L.events(old, ["stall"], t0)
    assert stalls, f"{old} did not notice it was stopped (no stall in its journal)"


def test_graceful_stop_outage(lab3):
    L, old = lab3, lab3.owner
    rest = [n for n in L.names() if n != old]
    t0 = time.time_ns()
    os.kill(lab.node_pid(old, L.dir), signal.SIGTERM)
    first = wait(lambda: next(((ts, w) for ts, w in L.client.replies(t0) if w != old), None),
                 10, step=0.005)
    assert first, f"no reply through a new owner within 10 s of stopping {old}"
    first_ts, new = first
    from_old = [ts for ts, w in L.client.replies(t0 - 10**9) if w == old and ts < first_ts]
    assert from_old, f"no reply from {old} in the second before the stop"
    last_old = max(from_old)
    outage_ms = (first_ts - last_old) / 1e6
    assert wait(lambda: lab.node_pid(old, L.dir) is None, 10), f"{old} did not exit"
    leave = [e for e in L.events(new, ["node_down"], t0 / 1e9 - 1) if e["node"] == old]
    assert leave and leave[0]["evidence"]["reason"] == "leave", leave
    after_leave_ms = first_ts / 1e6 - leave[0]["time"] * 1000
    acq = [e for e in L.events(new, ["resource_acquire"], t0 / 1e9 - 1)
           if e["resource"] == "vip"]
    acq_ms = (acq[0]["time"] - leave[0]["time"]) * 1000 if acq else float("nan")
    print(f"\ngraceful stop of {old}: client outage {outage_ms:.1f} ms (last reply from "
          f"{old} to first from {new}); first reply {after_leave_ms:.1f} ms after {new} "
          f"got the leave message ({acq_ms:.1f} ms from the leave message to its "
          f"resource_acquire; interval {INTERVAL_MS} ms, deadtime {DEADTIME_MS} ms)")
    assert outage_ms < DEADTIME_MS
    # The requirement: the takeover (the new owner's acquisition)
    # within one interval of the leave message (seen: 4 to 7 ms, also under
    # stress-ng --cpu 2 --vm 1).
    assert acq and acq_ms < INTERVAL_MS, \
        f"{new} acquired vip {acq_ms:.1f} ms after the leave message (interval {INTERVAL_MS} ms)"
    assert L.wait_settled(rest, namespaces=L.names()) == new
    L.client_reaches(new)


def stall_python(L: Lab, node: str, seconds: float) -> tuple[float, int]:
    """Block node's event loop for `seconds` (debug_block); (start time
    in s, start time in ns)."""
    t0, t0_ns = time.time(), time.time_ns()
    r = control.request(L.paths.socket(node), "debug_block", timeout=seconds + 10,
                        seconds=seconds)
    blocked = time.time() - t0
    assert r.get("ok"), r
    assert blocked >= seconds - 0.1, f"debug_block returned after {blocked:.2f} s"
    return t0, t0_ns


def test_python_stall_3s_no_failover(make_lab):
    """The owner's Python side is blocked for 3 s, three times its address
    lease (1 s, the default for a 100 ms dead time): the heartbeats (C) and
    the lease renewal (a thread of its own) go on, so nothing may change
    anywhere and the client keeps its service."""
    L = make_lab()
    old = L.owner
    rest = [n for n in L.names() if n != old]
    t0, t0_ns = stall_python(L, old, 3)
    for n in rest:
        evs = L.events(n, ["node_down", "resource_acquire"], t0)
        assert not evs, f"{n} during {old}'s 3 s stall: {evs}"
    assert L.settled(L.names()) == (old, "ok")
    who = {w for _, w in L.client.replies(t0_ns)}
    assert who == {old}, f"during the stall replies came from {sorted(who)}"
    L.client_reaches(old)
