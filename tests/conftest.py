"""Shared fixtures.  Tests that need root or network namespaces skip without
them, except under HEART_REQUIRE_ROOT=1 (CI), where such a skip fails."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns

REQUIRE_ROOT = os.environ.get("HEART_REQUIRE_ROOT") == "1"


def need(reason: str | None) -> None:
    """Skip with reason, or fail when CI requires these tests to run."""
    if reason is None:
        return
    if REQUIRE_ROOT:
        pytest.fail(f"HEART_REQUIRE_ROOT=1 but this test cannot run: {reason}")
    pytest.skip(reason)


_netns_reason: list[str | None] = []


@pytest.fixture(scope="session")
def netns_ok():
    if not _netns_reason:
        _netns_reason.append(netns.have_netns())
    need(_netns_reason[0])


@pytest.fixture
def lab2(netns_ok):
    """Two nodes on two separate segments."""
    with netns.Lab(n_nodes=2, n_links=2) as lab:
        yield lab


@pytest.fixture
def cluster(tmp_path):
    """cluster(names, **options) -> daemonkit.Cluster: real `heart run`
    daemons on loopback, all killed (by PID) when the test ends."""
    from daemonkit import Cluster

    made = []

    def make(*a, **kw):
        c = Cluster(tmp_path, *a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()
