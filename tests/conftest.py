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
