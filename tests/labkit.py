"""The end-to-end tests' view of a running `heart lab` (tests/test_e2e_*.py):
a probing client, a Lab with its nodes' status, journals and addresses, and
wait().  The make_lab fixture that builds one is in conftest.py."""
from __future__ import annotations

import os
import time

import pytest

from heart import failover_demo, journal, lab

INTERVAL_MS = 20
DEADTIME_MS = 100
DEADTIME_S = DEADTIME_MS / 1000


class Client:
    """Echo services in the node namespaces, a capture and a prober in the
    client namespace."""

    def __init__(self, st: dict):
        self.echo = self.cap = self.prober = None
        try:
            self.echo = failover_demo.EchoServices(st["nodes"])
            self.cap = failover_demo.Capture(st["client"]["ns"])
            self.prober = failover_demo.Prober(st["client"]["ns"])
        except BaseException:
            self.close()
            raise

    def replies(self, after_ns: int = 0) -> list[tuple[int, str]]:
        """(kernel receive time ns, node name) of each echo reply after after_ns."""
        out = []
        for ts, f in self.cap.snapshot():
            if ts > after_ns:
                who = failover_demo.udp_reply(f)
                if who:
                    out.append((ts, who))
        return out

    def close(self) -> None:
        for obj in (self.prober, self.cap, self.echo):
            if obj is not None:
                obj.close()


class Lab:
    def __init__(self, directory: str):
        self.dir = directory
        self.paths = lab.Paths(directory)
        self.client: Client | None = None

    @property
    def st(self) -> dict:
        return lab.load_state(self.paths)

    def names(self) -> list[str]:
        return [n["name"] for n in self.st["nodes"]]

    def ns(self, node: str) -> str:
        return next(n["ns"] for n in self.st["nodes"] if n["name"] == node)

    def status(self, node: str) -> dict | None:
        return lab.node_status(self.paths, node, timeout=1.0)

    def has_vip(self, node: str) -> bool:
        return lab.has_address(self.ns(node))

    def events(self, node: str, kinds: list[str], since: float) -> list[dict]:
        with journal.open_readonly(os.path.join(self.dir, node, "journal.db")) as j:
            return j.events(since=since, kinds=kinds)

    def settled(self, live: list[str], namespaces: list[str] | None = None):
        """(owner or None, why): every live node answers, is quorate, sees
        every other live node up and names one owner among them; of the
        namespaces of `namespaces` (default: every node) only the owner's
        has the address."""
        owners = set()
        for name in live:
            s = self.status(name)
            if s is None:
                return None, f"{name} does not answer"
            if not s.get("quorum", {}).get("quorate"):
                return None, f"{name} has no quorum"
            up = {x["name"] for x in s.get("nodes", []) if x.get("state") in ("self", "up")}
            if not set(live) <= up:
                return None, f"{name} sees up only {sorted(up)}"
            owners.add(lab.owner_of(s))
        if len(owners) != 1 or None in owners:
            return None, f"owners named: {sorted(map(str, owners))}"
        owner = owners.pop()
        if owner not in live:
            return None, f"the owner named, {owner}, is not live"
        holding = [n for n in (namespaces or self.names()) if self.has_vip(n)]
        if holding != [owner]:
            return None, f"owner {owner} but the address is configured on {holding}"
        return owner, "ok"

    def wait_settled(self, live: list[str], namespaces: list[str] | None = None,
                     timeout: float = 10.0) -> str:
        owner, why = wait(lambda: self.settled(live, namespaces), timeout)
        if owner is None:
            pytest.fail(f"no single owner among {live} within {timeout:g} s: {why}")
        return owner

    def client_reaches(self, owner: str, timeout: float = 5.0, count: int = 20) -> None:
        """The next `count` replies the client gets all come from owner."""
        t = time.time_ns()
        got = wait(lambda: (lambda r: r if len(r) >= count else None)(self.client.replies(t)),
                   timeout)
        if not got:
            pytest.fail(f"the client got {len(self.client.replies(t))} replies through "
                        f"{lab.VIP4} in {timeout:g} s, expected {count} from {owner}")
        who = {w for _, w in got}
        assert who == {owner}, f"replies through {lab.VIP4} came from {sorted(who)}, " \
                               f"expected only {owner}"


def wait(cond, timeout: float, step: float = 0.02):
    """Poll cond() until its value (or its first item, for a tuple) is
    true; the last value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        ok = v[0] if isinstance(v, tuple) else v
        if ok or time.monotonic() >= end:
            return v
        time.sleep(step)
