"""Three real daemons on loopback: the cluster forms, agrees, fails over,
fails back, hands over on a graceful stop, survives a hung script, and
refuses a bad configuration.  No root needed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from daemonkit import Cluster


class OwnerWatch:
    """Samples the marker files every 2 ms in a thread: where the resource
    really runs.  Records any moment two live nodes ran it at once."""

    def __init__(self, cluster: Cluster, resource: str = "www"):
        self.c, self.resource = cluster, resource
        self.doubles: list[list[str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            live = self.c.running_on(self.resource)
            if len(live) > 1:
                self.doubles.append(live)
            time.sleep(0.002)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def agreed(c: Cluster, names, resource="www"):
    """Every named daemon sees every named node up, has quorum and reports
    the same single owner, whose record says the unit started and which
    really runs the resource."""
    owners = set()
    for n in names:
        st = c.status(n)
        if not st or not st["quorum"]["quorate"]:
            return False
        states = {x["name"]: x["state"] for x in st["nodes"]}
        if any(states[m] not in ("self", "up") for m in names):
            return False
        res = next(r for r in st["resources"] if r["resource"] == resource)
        owner = res["owner"]
        if not isinstance(owner, str):
            return False
        held = next(x for x in st["nodes"] if x["name"] == owner).get("held", {})
        if held.get(res["unit"]) != "started":
            return False
        owners.add(owner)
    if len(owners) != 1:
        return False
    owner = owners.pop()
    return owner if c.running_on(resource) == [owner] else False


def test_three_daemons_agree_on_the_view(cluster):
    c = cluster()
    c.start_all()
    owner = c.wait(lambda: agreed(c, c.names), 15, "three nodes to agree")
    assert owner == "alpha"                     # first in the preference list
    st = c.status("beta")
    # Everyone hears everyone: the who-hears-whom matrix is complete everywhere.
    assert st["matrix"] == {"alpha": ["beta", "gamma"], "beta": ["alpha", "gamma"],
                            "gamma": ["alpha", "beta"]} or c.wait(
        lambda: c.status("beta")["matrix"] == {"alpha": ["beta", "gamma"],
                                               "beta": ["alpha", "gamma"],
                                               "gamma": ["alpha", "beta"]}, 5, "full matrix")
    alpha = next(n for n in st["nodes"] if n["name"] == "alpha")
    assert alpha["held"] == {"www": "started"}
    assert alpha["attributes"]["mem_total_mb"] > 0
    assert st["quorum"]["votes"] == 3 and st["quorum"]["expected"] == 3


def test_sigkill_moves_the_resource_and_auto_failback_returns_it(cluster):
    c = cluster()
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    with OwnerWatch(c) as watch:
        t0 = time.monotonic()
        c.kill("alpha")
        # The resource dies with its node (a real one would: the lab in
        # tests/netns kills the namespace); here its marker is removed.
        os.unlink(c.marks / "www.alpha")
        c.wait(lambda: agreed(c, ["beta", "gamma"]) == "beta", 10, "beta to take www")
        took = time.monotonic() - t0
        c.start("alpha")
        c.wait(lambda: agreed(c, c.names) == "alpha", 15, "www to fail back to alpha")
    assert not watch.doubles, f"two nodes ran www at once: {watch.doubles[:3]}"
    assert took < 5
    # Failback was two-phase: beta stopped before alpha started again.
    acts = [(a, n) for _, a, r, n in c.actions() if r == "www"]
    i_stop = acts.index(("stop", "beta"))
    assert acts[i_stop + 1] == ("start", "alpha")
    evs = c.journal("beta")
    down = [e for e in evs if e["kind"] == "node_down" and e["node"] == "alpha"]
    assert down and down[0]["evidence"]["reason"] == "timeout"
    assert "lo" in down[0]["evidence"]["links"]


def test_graceful_stop_hands_over_within_one_deadtime(cluster):
    c = cluster(deadtime="1s", initdead="2s")
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    with OwnerWatch(c) as watch:
        t_term = time.time()
        c.signal("alpha", signal.SIGTERM)
        c.wait(lambda: c.running_on() == ["beta"], 5, "beta to run www")
        assert c.procs["alpha"].wait(10) == 0
    assert not watch.doubles
    starts = [t for t, a, r, n in c.actions() if a == "start" and n == "beta"]
    handover = starts[-1] - t_term
    assert handover < 1.0, f"handover took {handover:.3f} s, deadtime is 1 s"
    evs = c.journal("beta")
    assert any(e["kind"] == "node_down" and e["evidence"].get("reason") == "leave"
               for e in evs)


def test_hung_action_is_killed_at_its_timeout_while_heartbeats_go_on(cluster, tmp_path):
    hang = tmp_path / "hang.sh"
    pidfile = tmp_path / "hang.pid"
    hang.write_text(f"#!/bin/sh\ncase \"$1\" in\n start) echo $$ > {pidfile}; "
                    f"sleep 1000 ;;\n status) exit 3 ;;\n *) exit 0 ;;\nesac\n")
    hang.chmod(0o755)
    c = cluster(names=("alpha", "beta"), deadtime="200ms",
                resources=lambda k: k.script_resource("stuck", nodes=["alpha"], timeout="1s",
                                                      script=str(hang)) + "retries = 0\n")
    c.start_all()
    c.wait(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
           "the hung start to begin")
    pid = int(pidfile.read_text())
    # The hung start blocks neither the control socket nor the event loop.
    t0 = time.monotonic()
    assert c.status("alpha")["node"] == "alpha"
    assert time.monotonic() - t0 < 0.5
    c.wait(lambda: any(e["kind"] == "resource_failed" for e in c.journal("alpha")), 10,
           "the start to time out")
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    fail = next(e for e in c.journal("alpha") if e["kind"] == "resource_failed")
    assert fail["evidence"]["timed_out"] is True
    # Heartbeats went on: beta never saw alpha go down, and alpha is up for it.
    assert not [e for e in c.journal("beta") if e["kind"] == "node_down"]
    st = c.status("beta")
    assert {n["name"]: n["state"] for n in st["nodes"]}["alpha"] == "up"


def test_bad_config_gets_a_precise_message_and_nothing_starts(tmp_path):
    cfg = tmp_path / "heart.toml"
    cfg.write_text('[cluster]\nname = "x"\nid = 3\nstate_dir = "%s/state"\n'
                   '[timing]\ninterval = "10"\n' % tmp_path)
    r = subprocess.run([sys.executable, "-m", "heart", "run", "-c", str(cfg), "--node", "a"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert f"{cfg}:6: timing.interval" in r.stderr
    assert "nothing was changed" in r.stderr
    assert not (tmp_path / "state").exists()
    r2 = subprocess.run([sys.executable, "-m", "heart", "check-config", str(cfg)],
                        capture_output=True, text=True, timeout=60)
    assert r2.returncode == 1 and f"{cfg}:6: timing.interval" in r2.stderr


def test_link_port_in_use_is_a_clear_startup_error(cluster):
    """Another program on the node's heartbeat port: `heart run` exits 1 with
    a message naming the file, line, link and node, starts no resource, and
    journals that it stopped before joining."""
    import re
    import socket

    c = cluster(("alpha", "beta"))
    port = int(re.search(r'name = "alpha"\nid = 1\naddresses = \{ lo = "127.0.0.1:(\d+)"',
                         c.config.read_text()).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", port))
        r = subprocess.run([sys.executable, "-m", "heart", "run", "-c", str(c.config),
                            "--node", "alpha"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    line = c.config.read_text().splitlines().index("[[link]]") + 1
    assert last.startswith(f"heart: {c.config}:{line}: [[link]] 'lo' of node alpha: "), last
    assert "Address already in use; another program (or heart daemon) uses that port?; " \
           "nothing was started" in last, last
    assert "Traceback" not in r.stderr
    assert c.running_on("www") == []
    stop = [e for e in c.journal("alpha") if e["kind"] == "daemon_stop"]
    assert stop and stop[-1]["summary"] == "alpha stopped before joining the cluster"
    assert stop[-1]["evidence"] == {"leave": False, "joined": False}


def test_cli_status_standby_move_events_why(cluster):
    c = cluster()
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    base = [sys.executable, "-m", "heart"]
    opts = ["-c", str(c.config), "--node", "gamma"]

    def heart(*args):
        r = subprocess.run(base + list(args) + opts, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    text = heart("status")
    assert "quorum: yes" in text and "www" in text
    for n in c.names:
        assert n in text
    js = json.loads(heart("status", "--json"))
    assert js["node"] == "gamma" and len(js["nodes"]) == 3
    # Standby of a remote node: alpha gives www up, beta takes it.
    heart("standby", "alpha")
    c.wait(lambda: agreed(c, c.names) == "beta", 10, "www to leave alpha in standby")
    heart("unstandby", "alpha")
    c.wait(lambda: agreed(c, c.names) == "alpha", 10, "www back on alpha")
    heart("move", "www", "gamma")
    c.wait(lambda: agreed(c, c.names) == "gamma", 10, "www moved to gamma")
    ev = heart("events", "--since", "10m")
    assert "move" in ev and "standby" in ev
    lines = heart("events", "--json").splitlines()
    assert all(json.loads(x)["kind"] for x in lines)
    why = heart("why", "www")
    assert "gamma" in why
    assert "failure marks cleared" in heart("cleanup", "www")
    plan = heart("reload", "--plan")
    assert "nothing changed" in plan


def test_reload_plan_and_apply(cluster):
    c = cluster(names=("alpha", "beta"))
    c.start_all()
    c.wait(lambda: agreed(c, c.names) == "alpha", 15, "alpha to own www")
    text = c.config.read_text()
    c.config.write_text(text + c.script_resource("db", nodes=["beta", "alpha"]))
    plan = c.request("alpha", "reload", plan=True)
    assert plan["ok"] and "add resource db" in plan["changes"]
    assert c.running_on("db") == []
    for n in c.names:
        assert c.request(n, "reload")["ok"]
    c.wait(lambda: c.running_on("db") == ["beta"], 10, "db to start on beta")
    assert c.running_on("www") == ["alpha"]          # placement kept www: it never moved
    assert [a for a in c.actions() if a[2] == "www"][-1][1] == "start"
    # A changed preference that placement does not act on moves nothing.
    c.config.write_text(text.replace('auto_failback = true', 'auto_failback = false')
                        + c.script_resource("db", nodes=["beta", "alpha"]))
    plan = c.request("beta", "reload", plan=True)
    assert "change unit www: stays on alpha" in plan["changes"]
    # Removing db stops it where it runs; www stays.
    c.config.write_text(text)
    plan = c.request("beta", "reload", plan=True)
    assert "remove resource db (stopped here first)" in plan["changes"]
    for n in c.names:
        assert c.request(n, "reload")["ok"]
    c.wait(lambda: c.running_on("db") == [], 10, "db to stop")
    c.wait(lambda: all(n["held"] == ({"www": "started"} if n["name"] == "alpha" else {})
                       for n in c.status("beta")["nodes"]), 10, "db to leave beta's record")
    assert c.running_on("www") == ["alpha"]
    assert [a for a in c.actions() if a[2] == "www"][-1][1] == "start"
    # An invalid file changes nothing.
    c.config.write_text(text.replace('interval = "20ms"', 'interval = "x"'))
    bad = c.request("alpha", "reload")
    assert not bad["ok"] and "timing.interval" in bad["error"]
    assert c.request("alpha", "reload", plan=True)["ok"] is False


def test_reload_changes_the_members_of_a_running_group(cluster):
    def resources(k, members):
        return "".join(k.script_resource(m).replace("nodes = ", "# nodes = ")
                       .replace("auto_failback = true", "") for m in members) + (
            f'\n[[group]]\nname = "web"\nresources = {json.dumps(members)}\n'
            f'nodes = ["alpha", "beta"]\n')

    c = cluster(names=("alpha", "beta"), resources=lambda k: resources(k, ["www"]))
    c.start_all()
    c.wait(lambda: c.running_on("www") == ["alpha"]
           and c.status("beta")["resources"][0]["owner"] == "alpha", 15, "web on alpha")
    assert c.running_on("db") == []
    text = c.config.read_text()
    start = text.index("\n[[resource]]")
    c.config.write_text(text[:start] + resources(c, ["www", "db"]))
    plan = c.request("alpha", "reload", plan=True)
    assert "restart unit web here: its resources changed (www -> www, db)" in plan["changes"]
    for n in c.names:
        assert c.request(n, "reload")["ok"]
    c.wait(lambda: c.running_on("db") == ["alpha"] and c.running_on("www") == ["alpha"], 10,
           "the group restarted with both members")
    acts = [(a, r) for _, a, r, n in c.actions()]
    assert acts[-3:] == [("stop", "www"), ("start", "www"), ("start", "db")]
