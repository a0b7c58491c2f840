"""Daemons on loopback: pause safety, quorum, ping nodes, fencing, handlers,
groups of real OCF agents, systemd readiness, SIGHUP.  No root needed."""
from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import threading
import time

from conftest import need
from daemonkit import Cluster
from test_daemon import agreed

DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"


def kinds(c: Cluster, node: str, kind: str, subject: str | None = None) -> list[dict]:
    return [e for e in c.journal(node) if e["kind"] == kind
            and (subject is None or subject in (e["node"], e["resource"]))]


def test_engine_stall_longer_than_deadtime_releases_first(cluster):
    c = cluster()
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    # alpha's engine thread is not scheduled for 1 s (deadtime 300 ms): its
    # peers declare it down and beta takes www.  alpha's Python side still
    # runs and sees no heartbeat arrive: when its quorum has rested on
    # silent peers for most of the dead time (quorum_at_risk) it releases
    # www, before beta can take it.  When alpha's engine runs again it
    # reports the stall (whose pause safety then has nothing left to do).
    assert c.request("alpha", "debug_stall", seconds=1.0)["ok"]
    c.wait(lambda: kinds(c, "alpha", "stall"), 10, "alpha to report its stall")
    stall = kinds(c, "alpha", "stall")[0]
    assert stall["evidence"]["stall_ms"] > 300
    risk = kinds(c, "alpha", "quorum_at_risk")
    assert risk and risk[0]["time"] < stall["time"], (risk, stall)
    assert stall["evidence"]["released"] in ([], ["www"])
    c.wait(lambda: agreed(c, c.names) in ("alpha", "beta"), 15, "one owner again")
    rel = c.wait(lambda: kinds(c, "alpha", "resource_release", "www"), 5, "alpha's release")
    assert kinds(c, "beta", "node_down", "alpha")
    acq = kinds(c, "beta", "resource_acquire", "www")
    assert acq, "beta never took www"
    assert rel[0]["time"] <= acq[0]["time"], (rel[0], acq[0])


def test_losing_quorum_releases_and_regaining_it_reacquires(cluster):
    c = cluster()
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    t0 = time.time()
    for n in ("beta", "gamma"):
        c.signal(n, signal.SIGSTOP)           # their engines stop: alpha is alone
    c.wait(lambda: c.running_on() == [], 10, "alpha to release www without quorum")
    # (It releases when its quorum is at risk, before the dead time; the
    # quorum is lost at the dead time.)
    lost = c.wait(lambda: [e for e in kinds(c, "alpha", "quorum_lost") if e["time"] > t0],
                  10, "alpha to lose quorum")
    assert lost[-1]["evidence"]["quorum"]["votes"] == 1
    st = c.status("alpha")
    assert st["quorum"]["quorate"] is False
    assert next(r for r in st["resources"] if r["resource"] == "www")["placement"] is None
    for n in ("beta", "gamma"):
        c.signal(n, signal.SIGCONT)
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "www back with quorum")


def test_two_nodes_with_a_ping_node_keep_quorum_alone(cluster):
    c = cluster(names=("alpha", "beta"),
                extra='\n[quorum]\nping_nodes = ["127.0.0.1"]\nping_interval = "200ms"\n'
                      'ping_timeout = "200ms"\n')
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    st = c.status("beta")
    assert st["quorum"]["expected"] == 3 and st["quorum"]["votes"] == 3
    c.kill("alpha")
    os.unlink(c.marks / "www.alpha")
    # beta alone: its vote plus the ping node's is 2 of 3.
    c.wait(lambda: c.running_on() == ["beta"], 10, "beta to take www")
    q = c.status("beta")["quorum"]
    assert q["quorate"] and q["votes"] == 2 and q["ping"] is True


def test_wait_for_all_two_nodes(cluster):
    c = cluster(names=("alpha", "beta"), extra="\n[quorum]\nwait_for_all = true\n")
    c.start("beta")
    time.sleep(1.5)                             # past initdead: still no quorum
    assert c.status("beta")["quorum"]["quorate"] is False
    assert c.running_on() == []
    c.start("alpha")
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    c.kill("alpha")
    os.unlink(c.marks / "www.alpha")
    # Both were seen: the survivor of a two-node cluster keeps quorum.
    c.wait(lambda: c.running_on() == ["beta"], 10, "beta to take www")


def test_fencing_hook_must_succeed_before_takeover(cluster, tmp_path):
    fence = tmp_path / "fence.sh"
    allow = tmp_path / "fence-ok"
    calls = tmp_path / "fence.calls"
    fence.write_text(f"#!/bin/sh\necho \"$HEART_EVENT $HEART_NODE\" >> {calls}\n"
                     f"[ -e {allow} ]\n")
    fence.chmod(0o755)
    c = cluster(extra=f'\n[quorum]\nfence = "{fence}"\nfence_timeout = "5s"\n')
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    c.kill("alpha")
    os.unlink(c.marks / "www.alpha")
    c.wait(lambda: calls.exists(), 10, "the fence hook to run")
    time.sleep(1.0)
    assert c.running_on() == []                 # fencing failed: nobody takes www
    assert kinds(c, "beta", "fence", "alpha")[0]["evidence"]["ok"] is False
    allow.touch()
    c.wait(lambda: c.running_on() == ["beta"], 10, "beta to take www once alpha is fenced")
    assert "fence alpha" in calls.read_text()


def test_handlers_get_environment_and_json(cluster, tmp_path):
    out = tmp_path / "handler.out"
    out.mkdir()
    h = tmp_path / "handler.sh"
    # One file per run: the daemons run handlers concurrently.
    h.write_text(f"#!/bin/sh\nf={out}/$HEART_LOCAL_NODE.$HEART_EVENT.$$\n"
                 f"echo \"$HEART_EVENT $HEART_NODE $HEART_CLUSTER $HEART_LOCAL_NODE\" > $f.tmp\n"
                 f"cat >> $f.tmp\nmv $f.tmp $f\n")
    h.chmod(0o755)
    c = cluster(extra=f'\n[[handler]]\nevents = ["node_down", "resource_acquire"]\n'
                      f'command = "{h}"\n')
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    c.kill("alpha")
    os.unlink(c.marks / "www.alpha")

    def runs():
        return [p.read_text().split("\n", 1) for p in out.iterdir()
                if not p.name.endswith(".tmp")]

    c.wait(lambda: {"node_down alpha test beta", "node_down alpha test gamma",
                    "resource_acquire beta test beta"} <= {r[0] for r in runs()}, 10,
           "handlers to run")
    seen = {r[0] for r in runs()}
    assert "node_down alpha test beta" in seen and "node_down alpha test gamma" in seen
    assert "resource_acquire beta test beta" in seen
    down = next(json.loads(r[1]) for r in runs() if r[0] == "node_down alpha test beta")
    assert down["event"] == "node_down" and down["node"] == "alpha"
    assert down["reason"] == "timeout"


def test_group_of_ocf_agents_starts_in_order_and_moves(cluster, tmp_path):
    need(None if os.access(DUMMY, os.X_OK) else
         f"{DUMMY} missing (Debian package resource-agents)")
    states = tmp_path / "ocf"
    states.mkdir()

    def resources(k: Cluster) -> str:
        return textwrap.dedent(f"""
            [[resource]]
            name = "first"
            type = "ocf"
            agent = "heartbeat:Dummy"
            params = {{ state = "{states}/first.{{node}}" }}
            monitor_interval = "200ms"

            [[resource]]
            name = "second"
            type = "ocf"
            agent = "heartbeat:Dummy"
            params = {{ state = "{states}/second.{{node}}" }}

            [[group]]
            name = "web"
            resources = ["first", "second"]
            nodes = ["beta", "alpha"]
            auto_failback = false
            """)

    c = cluster(names=("alpha", "beta"), resources=resources)
    c.start_all()

    def on(node):
        return sorted(p.name.split(".")[0] for p in states.glob(f"*.{node}"))

    c.wait(lambda: on("beta") == ["first", "second"]
           and len(kinds(c, "beta", "resource_acquire")) == 2, 15, "the group on beta")
    evs = kinds(c, "beta", "resource_acquire")
    assert [e["resource"] for e in evs] == ["first", "second"]
    # The monitor notices that "first" died on beta: the group moves to alpha,
    # stopping second before first.
    os.unlink(states / "first.beta")
    c.wait(lambda: on("alpha") == ["first", "second"], 15, "the group on alpha")
    assert on("beta") == []
    rel = [e["resource"] for e in kinds(c, "beta", "resource_release")]
    assert rel[:2] == ["second", "first"]
    assert kinds(c, "beta", "monitor_failed", "first")

    def failed_on_beta():
        return next(n for n in c.status("alpha")["nodes"] if n["name"] == "beta")["failed"]

    assert failed_on_beta() == ["web"]
    assert c.request("alpha", "cleanup", resource="first")["ok"]
    c.wait(lambda: failed_on_beta() == [], 5, "the failure mark on beta to clear")
    assert on("alpha") == ["first", "second"]      # auto_failback off: it stays


def test_sd_notify_ready_and_sighup_reload(cluster, tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(20)
    try:
        c = cluster(names=("alpha",))
        c.start("alpha", env={"NOTIFY_SOCKET": path})
        assert b"READY=1" in s.recv(4096)
        c.wait(lambda: c.running_on() == ["alpha"], 10, "alpha to run www alone")
        c.config.write_text(c.config.read_text() + c.script_resource("db", nodes=["alpha"]))
        c.signal("alpha", signal.SIGHUP)
        c.wait(lambda: c.running_on("db") == ["alpha"], 10, "SIGHUP to add db")
        assert kinds(c, "alpha", "config_reload")
        c.signal("alpha", signal.SIGTERM)
        assert b"STOPPING=1" in s.recv(4096)
        assert c.procs["alpha"].wait(20) == 0
        assert c.running_on() == [] and c.running_on("db") == []
    finally:
        s.close()


def test_lost_events_resynchronise_from_the_engine(cluster):
    """The Python side blocked while its event queue overflowed (rejects of
    a flood fill it) and gamma died meanwhile: the dropped peer_down is
    recovered from the engine's own peer table."""
    c = cluster(engine="event_capacity = 16")
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    port = c.status("alpha")["links"][0]["port"]
    blocker = threading.Thread(target=c.request, args=("alpha", "debug_block"),
                               kwargs={"seconds": 2.5, "timeout": 30})
    blocker.start()
    time.sleep(0.2)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + 1.8
    while time.monotonic() < end:          # malformed packets: a reject event each 100 ms
        s.sendto(b"junk", ("127.0.0.1", port))
        time.sleep(0.005)
    s.close()
    c.kill("gamma")
    blocker.join()
    c.wait(lambda: kinds(c, "alpha", "overflow"), 10, "the overflow to be reported")
    # The engine's own peer table says "down" as soon as the dead time
    # passes; the daemon's view (quorum) follows once it resynchronised.
    c.wait(lambda: c.status("alpha")["quorum"]["members"] == ["alpha", "beta"], 10,
           "gamma out of alpha's quorum")
    st = c.status("alpha")
    assert {n["name"]: n["state"] for n in st["nodes"]}["gamma"] == "down"
    down = kinds(c, "alpha", "node_down", "gamma")
    assert down and down[-1]["evidence"]["reason"] == "resync"


def test_a_failed_stop_keeps_the_unit_where_it_may_still_run(cluster, tmp_path):
    block = tmp_path / "stop-fails"
    script = tmp_path / "stubborn.sh"
    script.write_text(f"""#!/bin/sh
mark="$HEART_PARAM_MARKDIR/$HEART_RESOURCE.$HEART_LOCAL_NODE"
case "$1" in
  start)  touch "$mark" ;;
  stop)   [ -e {block} ] && exit 1; rm -f "$mark" ;;
  status) [ -e "$mark" ] && exit 0 || exit 3 ;;
esac
""")
    script.chmod(0o755)
    c = cluster(names=("alpha", "beta"),
                resources=lambda k: k.script_resource("www", script=str(script))
                + "retries = 0\n")
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    block.touch()
    assert c.request("beta", "standby", node="alpha")["ok"]
    c.wait(lambda: kinds(c, "alpha", "resource_failed", "www"), 10, "the stop to fail")
    time.sleep(1.0)
    # alpha may still run www: it stays held there and beta does not start it.
    assert c.running_on() == ["alpha"]
    held = {n["name"]: n["held"] for n in c.status("beta")["nodes"]}
    assert held["alpha"] == {"www": "failed"} and held["beta"] == {}
    block.unlink()
    c.wait(lambda: c.running_on() == ["beta"], 20, "the retried stop, then beta")
