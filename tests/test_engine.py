"""The C engine through its Cython wrapper, on loopback (no root needed)."""
from __future__ import annotations

import asyncio
import errno
import socket
import time

import pytest
from enginekit import CLUSTER, KEY1, KEY2, Collector, loopback_pair, make_engine, running_pair

from heart._core import Engine, Keyring, now_ns, seal


def test_two_engines_find_each_other_then_down_within_deadtime_plus_interval():
    a, b = loopback_pair(interval_us=10_000, deadtime_us=50_000, warntime_us=25_000)
    with a, b:
        a.set_payload(b"digest-1")
        ca, cb = Collector(a), Collector(b)
        a.start()
        b.start()
        assert cb.wait("peer_up", 1) is not None
        assert ca.wait("peer_up", 2) is not None
        ev = cb.wait("payload", 1)
        assert ev is not None and ev.data == b"digest-1"
        a.set_payload(b"digest-2")
        ev = None
        end = time.monotonic() + 1
        while time.monotonic() < end:
            got = [e for e in cb.pump(0.02) if e.name == "payload"]
            if got:
                ev = got[-1]
                break
        assert ev is not None and ev.data == b"digest-2"
        st = b.peer(1)
        assert st["state"] == "up" and st["links"][0]["up"]
        assert st["interval_us"] == 10_000

        a.stop(leave=False)
        t_stop = now_ns()
        down = cb.wait("peer_down", 1, timeout=2)
        assert down is not None
        assert down.reason_name == "timeout"
        # From the last heartbeat a sent: at most deadtime + one interval.
        assert down.time_ns - t_stop <= (50_000 + 10_000) * 1000
        assert b.peer(1)["state"] == "down"
        assert "down" in down.message


def test_spin_before_send_keeps_the_schedule():
    """With spin_us the engine wakes early and spins to each deadline: the
    heartbeats still go out once per interval, none early, none missed."""
    with running_pair(interval_us=5_000, deadtime_us=40_000, spin_us=1_000) as (a, _, _, cb):
        before = a.counters()["heartbeats_sent"]
        time.sleep(0.5)
        sent = a.counters()["heartbeats_sent"] - before
        assert 90 <= sent <= 110
        assert a.counters()["missed_ticks"] == 0
        assert not cb.named("peer_late")


def test_restart_after_stop_without_leave_but_not_after_leave():
    with running_pair(interval_us=10_000, deadtime_us=60_000) as (a, b, _, cb):
        a.stop(leave=False)
        assert cb.wait("peer_down", 1)
        seen = cb.mark()
        a.start()  # same generation, the sequence goes on: not a replay
        assert cb.wait("peer_up", 1, since=seen)
        assert b.peer(1)["state"] == "up"
        assert b.counters()["rejected"]["replay"] == 0
        a.stop(leave=True)
        with pytest.raises(OSError, match="new generation"):
            a.start()


def test_leave_message_is_immediate():
    with running_pair(interval_us=20_000, deadtime_us=200_000) as (a, _, _, cb):
        t0 = now_ns()
        a.stop(leave=True)
        down = cb.wait("peer_down", 1, timeout=1)
        assert down is not None and down.reason_name == "leave"
        assert down.time_ns - t0 < 20_000 * 1000


def _busy(seconds: float) -> int:
    """Pure-Python busy loop: holds the GIL the whole time."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def test_engine_keeps_time_while_python_holds_the_gil():
    """The reason the loop is in C: a Python thread that never lets go of the
    GIL for 2 s changes nothing for the engines.

    The engines run with realtime priority where that is permitted (root,
    as in CI; see enginekit.TEST_RT), as a production node would: then the
    only thing competing with them is what the test is about, not whatever
    else loads the machine's two cores (this test itself keeps one busy)."""
    with running_pair(interval_us=10_000, deadtime_us=60_000,
                      warntime_us=30_000) as (a, b, ca, cb):
        time.sleep(0.1)
        ca.pump()
        cb.pump()
        before_a, before_b = a.counters(), b.counters()
        sent_before = len(a.send_lateness())
        assert _busy(2.0) > 0
        after_a, after_b = a.counters(), b.counters()
        lateness = a.send_lateness()[sent_before:]
        bad = [e for e in ca.pump() + cb.pump()
               if e.name in ("peer_late", "peer_down", "link_down", "stall")]
        assert bad == []
        # ~200 heartbeats went out and arrived during the 2 s.
        sent = after_a["heartbeats_sent"] - before_a["heartbeats_sent"]
        assert 180 <= sent <= 220
        assert after_a["missed_ticks"] == before_a["missed_ticks"]
        assert after_b["accepted"] - before_b["accepted"] >= 180
        # No send was anywhere near late enough to matter (warntime 30 ms).
        assert max(lateness) < 30_000


def _raw_sender(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    return s


def test_tampered_replayed_truncated_wrong_cluster_are_rejected_and_counted():
    b = make_engine(2, interval_us=50_000, deadtime_us=500_000)
    with b:
        link = b.add_link("unicast", bind="127.0.0.1", port=0)
        b.add_peer(1)
        b.set_peer_addr(1, link, "127.0.0.1", 9)
        cb = Collector(b)
        b.start()
        kr = Keyring()
        kr.add(1, KEY1)
        kr.set_send(1)
        forger = Keyring()
        forger.add(1, KEY2)
        forger.set_send(1)
        s = _raw_sender(b.link_port(link))
        good = seal(kr, cluster_id=CLUSTER, node_id=1, generation=1, seq=1,
                    interval_us=50_000, payload=b"ok")
        s.send(good)                                        # accepted
        s.send(good)                                        # replay
        s.send(good[:-3])                                   # truncated
        t = bytearray(seal(kr, cluster_id=CLUSTER, node_id=1, generation=1, seq=2,
                           payload=b"ok"))
        t[41] ^= 0x20
        s.send(bytes(t))                                    # tampered
        s.send(seal(forger, cluster_id=CLUSTER, node_id=1, generation=1, seq=3))  # forged
        s.send(seal(kr, cluster_id=CLUSTER + 1, node_id=1, generation=1, seq=4))  # cluster
        s.send(seal(kr, cluster_id=CLUSTER, node_id=77, generation=1, seq=5))     # unknown
        s.send(seal(kr, cluster_id=CLUSTER, node_id=1, generation=0 + 1, seq=6))  # accepted
        end = time.monotonic() + 2
        while b.counters()["received"] < 8 and time.monotonic() < end:
            time.sleep(0.01)
        c = b.counters()
        assert c["received"] == 8
        assert c["accepted"] == 2
        assert c["rejected"] == {"malformed": 1, "wrong_cluster": 1, "unknown_node": 1,
                                 "unknown_key": 0, "bad_tag": 2, "replay": 1}
        assert b.peer(1)["last_seq"] == 6
        causes = {e.reason_name for e in cb.named("reject")}
        assert {"replay", "malformed", "bad_tag", "wrong_cluster", "unknown_node"} <= causes
        # The engine is still alive and well after all that.
        assert b.running and b.peer(1)["state"] == "up"
        s.close()


def test_events_through_asyncio_add_reader():
    a, b = loopback_pair(interval_us=10_000, deadtime_us=50_000)

    async def main():
        loop = asyncio.get_running_loop()
        got = []
        done = asyncio.Event()

        def on_ready():
            batch = b.drain()
            got.extend(batch)
            if any(e.name == "peer_down" for e in batch):
                done.set()

        loop.add_reader(b.fileno(), on_ready)
        try:
            a.start()
            b.start()
            await asyncio.sleep(0.2)
            a.stop(leave=False)
            await asyncio.wait_for(done.wait(), 2)
        finally:
            loop.remove_reader(b.fileno())
        return got

    with a, b:
        got = asyncio.run(main())
    names = [e.name for e in got]
    assert names.index("peer_up") < names.index("peer_down")
    assert "link_down" in names


def test_state_message_round_trip_gcm():
    with running_pair(alg="aes-256-gcm") as (a, _, _, cb):
        record = bytes(range(256)) * 4
        a.send_state(record, to_node=2)
        ev = cb.wait("state", 1)
        assert ev is not None and ev.data == record and ev.link == 0


def test_stall_is_reported_as_an_event():
    a, b = loopback_pair(interval_us=10_000, deadtime_us=60_000, warntime_us=30_000)
    with a, b:
        ca = Collector(a)
        a.start()
        time.sleep(0.05)
        a.debug_stall(100_000)
        ev = ca.wait("stall", timeout=2)
        assert ev is not None and ev.value >= 30_000
        assert a.counters()["stalls"] >= 1


def test_errors_name_the_failing_call():
    e = make_engine(1)
    with e:
        with pytest.raises(OSError) as exc:
            e.add_link("unicast", bind="not-an-address")
        assert exc.value.errno == errno.EINVAL and "not-an-address" in str(exc.value)
        with pytest.raises(ValueError, match="dest"):
            e.add_link("multicast", bind="0.0.0.0")
        with pytest.raises(OSError) as exc:
            e.add_link("multicast", bind="0.0.0.0", dest="192.0.2.1")
        assert "not a multicast group" in str(exc.value)
        with pytest.raises(OSError, match="needs an interface name"):
            e.add_link("multicast", bind="::", dest="ff02::1:42")
        with pytest.raises(OSError) as exc:
            e.add_link("unicast", bind="127.0.0.1", ifname="nosuchif0")
        assert exc.value.errno == errno.ENODEV and "nosuchif0" in str(exc.value)
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        busy.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as exc:
            e.add_link("unicast", bind="127.0.0.1", port=busy.getsockname()[1])
        assert exc.value.errno == errno.EADDRINUSE and "bind" in str(exc.value)
        busy.close()
        with pytest.raises(OSError, match="no links"):
            e.start()
        e.add_link("unicast", bind="127.0.0.1")
        with pytest.raises(FileExistsError):
            e.add_key(1, KEY2)
        e.add_peer(5)
        with pytest.raises(FileExistsError, match="already a peer"):
            e.add_peer(5)
        with pytest.raises(OSError, match="own id"):
            e.add_peer(1)
        with pytest.raises(OSError, match="family"):
            e.set_peer_addr(5, 0, "::1")
    with pytest.raises(ValueError, match="spin_us"):
        Engine(cluster_id=1, node_id=1, generation=1, interval_us=10_000, spin_us=6_000)
    with pytest.raises(ValueError, match="timing"):
        Engine(cluster_id=1, node_id=1, generation=1, interval_us=10_000,
               warntime_us=90_000, deadtime_us=40_000)
    e = Engine(cluster_id=1, node_id=1, generation=1, interval_us=10_000)
    with e:
        e.add_link("unicast", bind="127.0.0.1")
        with pytest.raises(OSError, match="send key"):
            e.start()
    with pytest.raises(ValueError, match="closed"):
        e.add_peer(3)


def test_restart_with_higher_generation_is_not_a_replay():
    a, b = loopback_pair(interval_us=10_000, deadtime_us=60_000)
    with b:
        cb = Collector(b)
        with a:
            a.start()
            b.start()
            assert cb.wait("peer_up", 1)
            port_b = b.link_port(0)
        a2 = make_engine(1, generation=2)
        with a2:
            link = a2.add_link("unicast", bind="127.0.0.1")
            a2.add_peer(2)
            a2.set_peer_addr(2, link, "127.0.0.1", port_b)
            a2.start()
            ev = cb.wait("peer_restart", 1)
            assert ev is not None and ev.value == 2
            time.sleep(0.05)
            assert b.peer(1)["generation"] == 2 and b.peer(1)["state"] == "up"
            assert b.counters()["rejected"]["replay"] == 0


def test_phi_accrual_detector_declares_down_and_not_before():
    with running_pair(interval_us=10_000, deadtime_us=200_000, detector="phi",
                      phi_threshold=8.0, phi_min_std_us=2_000,
                      phi_min_samples=16) as (a, b, _, cb):
        time.sleep(0.5)  # ~50 samples: phi is in charge now
        st = b.peer(1)
        assert st["state"] == "up" and 9_000 < st["mean_us"] < 11_000
        assert st["phi"] < 8.0
        a.stop(leave=False)
        last = b.peer(1)["last_arrival_ns"]
        down = cb.wait("peer_down", 1, timeout=2)
        assert down is not None and down.reason_name == "timeout"
        silence_us = (down.time_ns - last) / 1000
        # phi = 8 means about mean + 5.6 std (std >= 2 ms): well before the
        # 200 ms fixed deadtime, and not before the mean interval.
        assert 10_000 < silence_us < 200_000


def _in_unprivileged_child(fn) -> dict:
    """Run fn() in a forked child that dropped root (uid/gid nobody) and
    return what it returns (a dict), through a pipe."""
    import json
    import os

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))


def test_missing_capabilities_are_named(netns_ok):
    """Without CAP_SYS_NICE / CAP_IPC_LOCK the engine still runs, and says
    which capability is missing; a privileged port says it needs
    CAP_NET_BIND_SERVICE."""
    import resource

    def child():
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        e = make_engine(1, interval_us=10_000, realtime_priority=50, lock_memory=True)
        e.add_link("unicast", bind="127.0.0.1")
        e.add_peer(2)
        e.set_peer_addr(2, 0, "127.0.0.1", 9)
        c = Collector(e)
        e.start()
        end = time.monotonic() + 1
        while len(c.named("warning")) < 2 and time.monotonic() < end:
            c.pump(0.05)
        out = {"warnings": [(ev.reason_name, ev.message) for ev in c.named("warning")],
               "running": e.running, "sent": e.counters()["heartbeats_sent"]}
        e.close()
        low = make_engine(1)
        try:
            low.add_link("unicast", bind="127.0.0.1", port=694)  # heartbeat's port
        except PermissionError as exc:
            out["low_port"] = str(exc)
        low.close()
        return out

    got = _in_unprivileged_child(child)
    reasons = dict(got["warnings"])
    assert "CAP_SYS_NICE" in reasons["realtime"]
    assert "CAP_IPC_LOCK" in reasons["mlock"]
    assert got["running"] and got["sent"] >= 1
    assert "CAP_NET_BIND_SERVICE" in got["low_port"] and "bind" in got["low_port"]


def test_peer_back_after_outage_phi_is_not_blunted():
    """After a peer was down, its outage must not count as an inter-arrival
    sample: the phi detector is as quick the second time as the first."""
    with running_pair(interval_us=10_000, deadtime_us=100_000, detector="phi",
                      phi_min_std_us=2_000, phi_min_samples=8) as (a, b, _, cb):
        time.sleep(0.3)
        seen = cb.mark()
        a.debug_stall(600_000)  # node 1 falls silent for 0.6 s, same generation
        end = time.monotonic() + 3
        names = []
        while time.monotonic() < end and names[-1:] != ["peer_up"]:
            cb.pump(0.02)
            names = [e.name for e in cb.events[seen:] if e.name in ("peer_down", "peer_up")]
        assert names == ["peer_down", "peer_up"]
        time.sleep(0.3)
        st = b.peer(1)
        assert st["state"] == "up"
        assert st["mean_us"] < 15_000 and st["std_us"] < 5_000
