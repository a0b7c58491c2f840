"""heart.metrics and [metrics] (issue 8, item 2): the config section, the
exporter fed with fake snapshots, a listen address in use, and a real lab
scraped with curl inside node namespaces."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import textwrap
import time
import urllib.request

import pytest
from conftest import lineno, need, write_key
from labkit import DEADTIME_S, wait
from prometheus_client.parser import text_string_to_metric_families

from heart import config as hc
from heart import daemon, lab, metrics

BASE = """\
[cluster]
name = "web"
id = 7
node = "alpha"

[auth]
key_file = "authkey"

[[link]]
name = "lan"
port = 694

[[node]]
name = "alpha"
id = 1
addresses = { lan = "127.0.0.1:17001" }

[[node]]
name = "beta"
id = 2
addresses = { lan = "127.0.0.1:17002" }
"""


def write(tmp_path, extra: str) -> str:
    write_key(tmp_path / "authkey")
    path = tmp_path / "heart.toml"
    path.write_text(BASE + textwrap.dedent(extra))
    return str(path)


# ---------------------------------------------------------------- [metrics]

def test_metrics_off_by_default(tmp_path):
    assert hc.load(write(tmp_path, "")).metrics.listen is None


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9721", ("0.0.0.0", 9721)),
    ("[::1]:9100", ("::1", 9100)),
    ("127.0.0.1", ("127.0.0.1", hc.DEFAULT_METRICS_PORT)),
])
def test_metrics_listen_parsed(tmp_path, text, want):
    cfg = hc.load(write(tmp_path, f'\n[metrics]\nlisten = "{text}"\n'))
    assert cfg.metrics.listen == want


@pytest.mark.parametrize("value, fragment", [
    ('"localhost:9721"', "not a numeric IPv4 or IPv6 address"),
    ('"127.0.0.1:99999"', "not a number from 1 to 65535"),
    ('"[::1:9721"', "no \"]\""),
    ("9721", "expected a string"),
    ('""', "must not be empty"),
])
def test_metrics_listen_bad(tmp_path, value, fragment):
    path = write(tmp_path, f"\n[metrics]\nlisten = {value}\n")
    with pytest.raises(hc.ConfigError) as ei:
        hc.load(path)
    [issue] = ei.value.issues
    assert issue.key == "metrics.listen"
    with open(path) as f:
        assert issue.line == lineno(f.read(), "listen =")
    assert fragment in issue.message
    assert str(issue).startswith(f"{path}:{issue.line}: metrics.listen: ")


def test_metrics_table_needs_listen_and_known_keys(tmp_path):
    path = write(tmp_path, '\n[metrics]\nlisen = "127.0.0.1:9721"\n')
    with pytest.raises(hc.ConfigError) as ei:
        hc.load(path)
    msgs = {i.key: i.message for i in ei.value.issues}
    assert "did you mean" in msgs["metrics.lisen"].lower()
    assert "required key is missing" in msgs["metrics.listen"]


# ----------------------------------------------------- the exporter alone

def families(text: str) -> dict:
    """{sample name: {frozenset(labels): value}}."""
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def one(fams: dict, name: str, **labels) -> float:
    return fams[name][frozenset(labels.items())]


def fake_snapshot(received: int = 10, rejected_auth: int = 0, quorate: bool = True) -> dict:
    return {
        "peers": [{"peer": "beta", "up": True, "last_heard_s": 0.01,
                   "links": [{"link": "lan", "up": True, "received": received, "lost": 1},
                             {"link": "ring", "up": False, "received": 3, "lost": 0}]},
                  {"peer": "gamma", "up": False, "links": []}],
        "counters": {"heartbeats_sent": 50, "sent": 100, "send_errors": 0, "received": 70,
                     "accepted": 60, "own": 0, "stalls": 2, "max_stall_us": 150_000,
                     "missed_ticks": 1, "events_dropped": 0, "loop_iterations": 500,
                     "rejected": {"bad_auth": rejected_auth, "replay": 4,
                                  "misdirected": 0}},
        "quorum": {"quorate": quorate, "votes": 2, "expected": 3, "members": 2,
                   "at_risk": False},
        "resources": {"vip": "started", "db": "stopped"},
    }


@pytest.fixture
def exporter():
    made = []

    def make(snapshot, **kw):
        e = metrics.Exporter(snapshot, node="alpha", cluster="web", version="9.9",
                             backend="linux", **kw)
        e.start("127.0.0.1", 0)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def scrape(e: metrics.Exporter) -> dict:
    host, port = e.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        return families(r.read().decode())


def test_exporter_serves_snapshot_and_events(exporter):
    e = exporter(fake_snapshot)
    e.observe_detection(0.104)
    e.observe_takeover("vip", 0.003)
    e.action("vip", "start", "ok")
    e.action("vip", "stop", "timeout")
    e.handler("node_down", "failed")
    e.peer_down("gamma", "timeout")
    f = scrape(e)
    assert one(f, "heart_info", version="9.9", backend="linux", node="alpha",
               cluster="web") == 1
    assert one(f, "heart_peers_up") == 1
    assert one(f, "heart_peer_up", peer="beta") == 1
    assert one(f, "heart_peer_up", peer="gamma") == 0
    assert one(f, "heart_link_up", peer="beta", link="lan") == 1
    assert one(f, "heart_link_up", peer="beta", link="ring") == 0
    assert one(f, "heart_heartbeats_received_total", peer="beta", link="lan") == 10
    assert one(f, "heart_heartbeats_lost_total", peer="beta", link="lan") == 1
    assert one(f, "heart_heartbeats_sent_total") == 50
    assert one(f, "heart_heartbeats_rejected_total", cause="replay") == 4
    assert one(f, "heart_heartbeats_rejected_total", cause="bad_auth") == 0
    assert one(f, "heart_stalls_total") == 2
    assert one(f, "heart_stall_max_seconds") == pytest.approx(0.15)
    assert one(f, "heart_quorum") == 1
    assert one(f, "heart_quorum_votes") == 2
    assert one(f, "heart_quorum_expected_votes") == 3
    assert one(f, "heart_resource_started", resource="vip") == 1
    assert one(f, "heart_resource_started", resource="db") == 0
    assert one(f, "heart_detection_seconds_count") == 1
    assert one(f, "heart_detection_seconds_bucket", le="0.15") == 1
    assert one(f, "heart_detection_seconds_bucket", le="0.1") == 0
    assert one(f, "heart_takeover_seconds_count", unit="vip") == 1
    assert one(f, "heart_actions_total", resource="vip", action="start", result="ok") == 1
    assert one(f, "heart_actions_total", resource="vip", action="stop",
               result="timeout") == 1
    assert one(f, "heart_handlers_total", event="node_down", result="failed") == 1
    assert one(f, "heart_peer_down_total", peer="gamma", reason="timeout") == 1
    assert one(f, "heart_scrape_stale") == 0
    # Only this daemon's metrics: nothing from the global registry.
    assert not any(n.startswith("python_gc") for n in f)


def test_counters_never_go_down(exporter):
    """Engine counts that restart from zero are added to what was counted."""
    snaps = iter([fake_snapshot(received=100, rejected_auth=5),
                  fake_snapshot(received=7, rejected_auth=1),
                  fake_snapshot(received=9, rejected_auth=1)])
    e = exporter(lambda: next(snaps))
    got = [scrape(e) for _ in range(3)]
    lan = [one(f, "heart_heartbeats_received_total", peer="beta", link="lan") for f in got]
    auth = [one(f, "heart_heartbeats_rejected_total", cause="bad_auth") for f in got]
    assert lan == [100, 107, 109]
    assert auth == [5, 6, 6]


def test_monotonic_keys_are_independent():
    m = metrics.Monotonic()
    assert [m(("a",), 5), m(("b",), 1), m(("a",), 2), m(("b",), 3)] == [5, 1, 7, 3]


class DeafLoop:
    """A daemon loop that never runs what it is given (its Python side is
    blocked): the exporter serves the last snapshot and says it is stale."""

    def __init__(self):
        self.deaf = False

    def call_soon_threadsafe(self, fn):
        if not self.deaf:
            fn()


def test_blocked_loop_serves_last_snapshot_marked_stale(exporter):
    loop = DeafLoop()
    calls = []

    def snap():
        calls.append(1)
        return fake_snapshot(received=len(calls))

    e = exporter(snap, loop=loop, timeout=0.2)
    f1 = scrape(e)
    assert one(f1, "heart_scrape_stale") == 0
    loop.deaf = True
    t0 = time.monotonic()
    f2 = scrape(e)
    assert 0.15 < time.monotonic() - t0 < 3
    assert one(f2, "heart_scrape_stale") == 1
    assert one(f2, "heart_scrape_age_seconds") > 0
    assert one(f2, "heart_heartbeats_received_total", peer="beta", link="lan") == 1
    assert one(f2, "heart_peers_up") == 1


def test_close_frees_the_port(exporter):
    e = exporter(fake_snapshot)
    host, port = e.address
    e.close()
    e.close()       # idempotent
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


def test_ipv6_listen(exporter):
    if not socket.has_ipv6:
        need("Python without IPv6")
    e = metrics.Exporter(fake_snapshot, node="a", cluster="c", version="1", backend="x")
    try:
        e.start("::1", 0)
    except OSError as exc:
        need(f"cannot listen on ::1 here: {exc}")
    try:
        port = e.address[1]
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as r:
            assert "heart_peers_up 1.0" in r.read().decode()
    finally:
        e.close()


def test_listen_in_use_is_a_startup_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write(tmp_path, f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        d = daemon.Daemon(hc.load(path))
        with pytest.raises(daemon.StartupError) as ei:
            d._start_metrics()
        with open(path) as f:
            line = lineno(f.read(), "listen =")
        assert str(ei.value) == (f"{path}:{line}: metrics.listen: cannot listen on "
                                 f"127.0.0.1:{port}: Address already in use; another program "
                                 f"(or heart daemon) uses that port?; nothing was started")
        assert d.metrics is None
    # ... and the whole daemon refuses to start, before it makes anything.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        state = tmp_path / "state"
        extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        path = write(tmp_path, extra)
        with open(path) as f:
            text = f.read().replace('node = "alpha"',
                                    f'node = "alpha"\nstate_dir = "{state}"\n'
                                    f'socket = "{tmp_path}/ctl.sock"')
        with open(path, "w") as f:
            f.write(text)
        cfg = hc.load(path)
        with pytest.raises(daemon.StartupError, match="metrics.listen"):
            asyncio.run(daemon.Daemon(cfg).run())
        assert not state.exists()
        assert not (tmp_path / "ctl.sock").exists()


# ------------------------------------------------------------- in a lab

def lab_scrape(L, node: str) -> dict:
    out = lab.run("curl", "-sf", "--max-time", "3",
                  f"http://127.0.0.1:{hc.DEFAULT_METRICS_PORT}/metrics", ns=L.ns(node))
    return families(out)


def peer_down_seen(f: dict, peer: str) -> dict | None:
    return f if one(f, "heart_peer_up", peer=peer) == 0 else None


def test_lab_metrics(make_lab):
    need(None if shutil.which("curl") else "curl is not installed (apt-get install curl)")
    L = make_lab(nodes=3)
    names = L.names()
    old = L.owner
    for n in names:
        peers = [p for p in names if p != n]
        f = lab_scrape(L, n)
        assert one(f, "heart_peers_up") == len(names) - 1
        for p in peers:
            assert one(f, "heart_peer_up", peer=p) == 1
            assert one(f, "heart_link_up", peer=p, link="lan") == 1
        assert one(f, "heart_quorum") == 1
        assert one(f, "heart_quorum_votes") == 3
        assert one(f, "heart_quorum_expected_votes") == 3
        assert one(f, "heart_quorum_members") == 3
        assert one(f, "heart_scrape_stale") == 0
        assert one(f, "heart_heartbeats_sent_total") > 0
        assert {dict(k)["cause"] for k in f["heart_heartbeats_rejected_total"]} == {
            "malformed", "wrong_cluster", "unknown_key", "bad_tag", "replay",
            "unknown_node", "misdirected"}
        # present; their values depend on how busy the machine is
        assert "heart_stalls_total" in f and "heart_stall_max_seconds" in f
        assert one(f, "heart_resource_started", resource="vip") == (1 if n == old else 0)
        assert next(iter(f["heart_info"])) >= {("node", n), ("cluster", "lab")}
        if n == old:
            assert one(f, "heart_takeover_seconds_count", unit="vip") == 1
            assert one(f, "heart_actions_total", resource="vip", action="start",
                       result="ok") == 1
    # Heartbeats keep arriving between two scrapes.
    rest = [n for n in names if n != old]
    a = lab_scrape(L, rest[0])
    time.sleep(0.3)
    b = lab_scrape(L, rest[0])
    for p in [x for x in names if x != rest[0]]:
        before = one(a, "heart_heartbeats_received_total", peer=p, link="lan")
        after = one(b, "heart_heartbeats_received_total", peer=p, link="lan")
        assert after > before + 3, (p, before, after)

    # The owner dies: the survivors declare it down (a detection observed),
    # and the new owner's takeover is timed.
    os.kill(lab.node_pid(old, L.dir), signal.SIGKILL)
    new = L.wait_settled(rest, namespaces=rest)
    for n in rest:
        f = wait(lambda n=n: peer_down_seen(lab_scrape(L, n), old), 5)
        assert f, f"{n} still says {old} is up"
        assert one(f, "heart_peers_up") == len(names) - 2
        assert one(f, "heart_link_up", peer=old, link="lan") == 0
        assert one(f, "heart_quorum") == 1
        assert one(f, "heart_quorum_votes") == 2
        assert one(f, "heart_peer_down_total", peer=old, reason="timeout") == 1
        det = one(f, "heart_detection_seconds_count")
        assert det >= 1
        mean = one(f, "heart_detection_seconds_sum") / det
        assert DEADTIME_S * 0.9 <= mean < DEADTIME_S * 5, mean
        if n == new:
            assert one(f, "heart_takeover_seconds_count", unit="vip") >= 1
            assert one(f, "heart_resource_started", resource="vip") == 1
            assert one(f, "heart_actions_total", resource="vip", action="start",
                       result="ok") >= 1
