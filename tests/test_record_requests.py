"""Record requests are not repeated on every heartbeat.

Every heartbeat carries its sender's digest (record version).  A node whose
copy of that record is older asks for it (a ``req`` state message).  Until
the record arrives, each further heartbeat announces the same newer version;
asking again on each of them made record requests most of the traffic of a
saturated 64-node lab (docs/benchmarks.md, section 10).  The daemon asks for a
given version at most every ``ask_retry_s`` (max(50 ms, 2 intervals)), at
once for a newer one, and always when a peer comes up or restarts.

These drive ``Daemon._on_engine_event`` with the engine's payload events,
without an engine or sockets: what goes out is what ``_send_to`` is given.
"""
from __future__ import annotations

import textwrap
import time
from types import SimpleNamespace

from conftest import write_key

from heart import config as hc
from heart import daemon
from heart.state import ClusterState

NAMES = ["alpha", "beta", "gamma"]


def _daemon(tmp_path, interval="20ms"):
    key = write_key(tmp_path / "authkey")
    nodes = "".join(f'\n[[node]]\nname = "{n}"\nid = {i + 1}\n'
                    f'addresses = {{ lan = "127.0.0.1:{17100 + i}" }}\n'
                    for i, n in enumerate(NAMES))
    path = tmp_path / "heart.toml"
    path.write_text(textwrap.dedent(f"""\
        [cluster]
        name = "t"
        id = 9
        node = "alpha"
        state_dir = "{tmp_path}/state"

        [timing]
        interval = "{interval}"

        [auth]
        key_file = "{key}"

        [[link]]
        name = "lan"
        """) + nodes)
    d = daemon.Daemon(hc.load(str(path)))
    d.state = ClusterState(NAMES, "alpha", 1)
    for i, n in enumerate(NAMES[1:], start=2):
        pr = daemon.PeerRuntime(n, i)
        d.peers[i] = pr
        d.by_name[n] = pr
    sent: list[tuple[str, str]] = []
    d._send_to = lambda pr, msg: sent.append((pr.name, msg["t"]))
    return d, sent


def _payload(node_id: int, peer: ClusterState):
    return SimpleNamespace(name="payload", node=node_id, data=peer.digest())


def test_the_same_newer_version_is_asked_for_once_per_retry(tmp_path):
    d, sent = _daemon(tmp_path)
    assert d.ask_retry_s == 0.05          # max(50 ms, 2 x 20 ms)
    beta = ClusterState(NAMES, "beta", 5)
    for _ in range(50):                   # a second of heartbeats, drained at once
        d._on_engine_event(_payload(2, beta))
    assert sent == [("beta", "req")]
    assert d.record_requests == {"sent": 1, "received": 0}

    # the record still has not come: ask again after the retry time, once
    time.sleep(d.ask_retry_s + 0.01)
    for _ in range(20):
        d._on_engine_event(_payload(2, beta))
    assert sent == [("beta", "req")] * 2

    # a newer version is asked for at once
    assert beta.update_local(standby=True)
    d._on_engine_event(_payload(2, beta))
    d._on_engine_event(_payload(2, beta))
    assert sent == [("beta", "req")] * 3

    # once the record is here, its digest asks for nothing
    assert d.state.on_record(beta.local, None)
    time.sleep(d.ask_retry_s + 0.01)
    for _ in range(20):
        d._on_engine_event(_payload(2, beta))
    assert sent == [("beta", "req")] * 3


def test_each_peer_has_its_own_limit(tmp_path):
    d, sent = _daemon(tmp_path)
    beta, gamma = ClusterState(NAMES, "beta", 5), ClusterState(NAMES, "gamma", 6)
    for _ in range(10):
        d._on_engine_event(_payload(2, beta))
        d._on_engine_event(_payload(3, gamma))
    assert sorted(sent) == [("beta", "req"), ("gamma", "req")]


def test_peer_up_always_asks(tmp_path):
    d, sent = _daemon(tmp_path)
    beta = ClusterState(NAMES, "beta", 5)
    d._on_engine_event(_payload(2, beta))
    d._ask_record(d.by_name["beta"])           # peer_up / restart / resync
    assert sent == [("beta", "req")] * 2
    # ... and counts as the ask for the version already announced
    d._on_engine_event(_payload(2, beta))
    assert len(sent) == 2


def test_retry_follows_a_slow_interval(tmp_path):
    d, _ = _daemon(tmp_path, interval="100ms")
    assert d.ask_retry_s == 0.2
