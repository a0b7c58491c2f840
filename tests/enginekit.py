"""Helpers to build engines for tests."""
from __future__ import annotations

import contextlib
import os
import select
import time

from heart._core import Engine

KEY1 = bytes(range(1, 33))
KEY2 = bytes([0x5A]) * 32
CLUSTER = 4242


# Test engines run with realtime priority where permitted (root, as in CI),
# as production nodes should: their timing then does not depend on whatever
# else loads the machine's two cores.  HEART_TEST_RT=0 turns it off.
TEST_RT = 10 if os.geteuid() == 0 and os.environ.get("HEART_TEST_RT", "1") != "0" else 0


def make_engine(node_id: int, *, interval_us: int = 10_000, deadtime_us: int = 60_000,
                warntime_us: int | None = None, generation: int = 1,
                cluster_id: int = CLUSTER, alg: str = "hmac-sha256", **kw) -> Engine:
    kw.setdefault("realtime_priority", TEST_RT)
    e = Engine(cluster_id=cluster_id, node_id=node_id, generation=generation,
               interval_us=interval_us, deadtime_us=deadtime_us,
               warntime_us=warntime_us, **kw)
    e.add_key(1, KEY1, alg)
    e.set_send_key(1)
    return e


def loopback_pair(**kw) -> tuple[Engine, Engine]:
    """Two engines on 127.0.0.1 that know each other (not started)."""
    a = make_engine(1, **kw)
    b = make_engine(2, **kw)
    la = a.add_link("unicast", bind="127.0.0.1", port=0)
    lb = b.add_link("unicast", bind="127.0.0.1", port=0)
    a.add_peer(2)
    b.add_peer(1)
    a.set_peer_addr(2, la, "127.0.0.1", b.link_port(lb))
    b.set_peer_addr(1, lb, "127.0.0.1", a.link_port(la))
    return a, b


class Collector:
    """Drains an engine's events and remembers all of them."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.events = []

    def pump(self, timeout: float = 0.0) -> list:
        r, _, _ = select.select([self.engine.fileno()], [], [], timeout)
        new = self.engine.drain() if r else []
        self.events.extend(new)
        return new

    def mark(self) -> int:
        """A position: wait(..., since=mark) looks only at later events."""
        self.pump()
        return len(self.events)

    def wait(self, name: str, node: int | None = None, timeout: float = 2.0,
             since: int = 0, link: int | None = None):
        """The first event called name (for node, on link) at or after
        position since, waiting up to timeout seconds; None if none came."""
        def match(ev):
            return (ev.name == name and (node is None or ev.node == node)
                    and (link is None or ev.link == link))

        end = time.monotonic() + timeout
        for ev in self.events[since:]:
            if match(ev):
                return ev
        while time.monotonic() < end:
            for ev in self.pump(0.01):
                if match(ev):
                    return ev
        return None

    def named(self, name: str) -> list:
        self.pump()
        return [e for e in self.events if e.name == name]


@contextlib.contextmanager
def running_pair(**kw):
    """A loopback pair, started, that has heard each other: (a, b, ca, cb)."""
    a, b = loopback_pair(**kw)
    with a, b:
        ca, cb = Collector(a), Collector(b)
        a.start()
        b.start()
        assert cb.wait("peer_up", 1), "node 2 never heard node 1"
        assert ca.wait("peer_up", 2), "node 1 never heard node 2"
        yield a, b, ca, cb
