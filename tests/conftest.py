"""Shared fixtures.  Tests that need root or network namespaces skip without
them, except under HEART_REQUIRE_ROOT=1 (CI), where such a skip fails."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns
from labkit import DEADTIME_MS, INTERVAL_MS, Client, Lab

from heart import lab

REQUIRE_ROOT = os.environ.get("HEART_REQUIRE_ROOT") == "1"


# A fixed 256-bit test key (hex), and a key file holding it as key id 1.
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def write_key(path: Path, text: str | None = None, mode: int = 0o600) -> Path:
    path.write_text(f"# test key\n1 {KEY_HEX}\n" if text is None else text)
    os.chmod(path, mode)
    return path


def lineno(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line of text containing needle."""
    hits = [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln]
    return hits[nth - 1]


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


@pytest.fixture
def make_lab(netns_ok, tmp_path, request):
    """make_lab(**lab.up options) -> Lab: a lab (default 3 nodes at
    INTERVAL_MS/DEADTIME_MS, daemons with HEART_DEBUG_HOOKS=1) with a
    probing client, settled; torn down whatever happens."""
    made = []

    def fin():
        for L in made:
            try:
                if L.client is not None:
                    L.client.close()
            finally:
                lab.down(directory=L.dir, out=io.StringIO())

    request.addfinalizer(fin)

    def make(**kw) -> Lab:
        L = Lab(str(tmp_path / "lab"))
        made.append(L)
        opts = dict(nodes=3, interval=f"{INTERVAL_MS}ms", deadtime=f"{DEADTIME_MS}ms",
                    daemon_env={"HEART_DEBUG_HOOKS": "1"})
        opts.update(kw)
        lab.up(directory=L.dir, out=io.StringIO(), **opts)
        L.client = Client(L.st)
        L.owner = L.wait_settled(L.names())
        L.client_reaches(L.owner)
        return L

    return make
