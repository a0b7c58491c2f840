"""The cluster state database without any engine: digests, records, views."""
from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heart._core import HEARTBEAT_PAYLOAD_MAX, PAYLOAD_MAX
from heart.state import (
    ClusterState,
    Record,
    StateError,
    decode_digest,
    decode_message,
    encode_digest,
    encode_message,
)

NAMES = ["alpha", "beta", "gamma"]


def test_digest_round_trip_and_size_limit():
    d = encode_digest(12345678901, 3, [0, 2], 3)
    assert decode_digest(d, 3) == (12345678901, 3, frozenset({0, 2}))
    # The largest cluster the engine supports still fits one heartbeat.
    big = encode_digest(2**64 - 1, 7, range(256), 256)
    assert len(big) <= HEARTBEAT_PAYLOAD_MAX
    assert decode_digest(big, 256)[2] == frozenset(range(256))


@pytest.mark.parametrize("bad", [b"", b"\x01\x00", b"\x09" + bytes(9)])
def test_garbage_digest_is_a_state_error(bad):
    with pytest.raises(StateError):
        decode_digest(bad, 3)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_no_input_crashes_the_decoders(data):
    for fn in (lambda: decode_digest(data, 8), lambda: decode_message(data),
               lambda: Record.from_wire(decode_message(data).get("r") or {})):
        try:
            fn()
        except StateError:
            pass


def test_zip_bomb_is_refused():
    bomb = b"Z" + zlib.compress(b'{"t":"rec","x":"' + b"a" * 10_000_000 + b'"}')
    with pytest.raises(StateError, match="64 KiB"):
        decode_message(bomb)


def test_message_round_trip_compresses_and_refuses_oversize():
    rec = Record("alpha", generation=5, version=9, held={"www": "started"},
                 attributes={"load1": 0.5, "note": "x" * 300})
    m = encode_message({"t": "rec", "r": rec.to_wire()}, PAYLOAD_MAX)
    assert m[:1] == b"Z"
    back = Record.from_wire(decode_message(m)["r"])
    assert back == rec
    huge = Record("alpha", held={f"unit{i}": "started" for i in range(400)},
                  attributes={"blob": bytes(range(256)).hex() * 8})
    with pytest.raises(StateError, match="exceeds"):
        encode_message({"t": "rec", "r": huge.to_wire()}, PAYLOAD_MAX)


def test_local_changes_bump_the_version_once():
    s = ClusterState(NAMES, "alpha", generation=7)
    v = s.local.version
    assert s.update_local(standby=True)
    assert s.local.version == v + 1
    assert not s.update_local(standby=True)
    assert s.local.version == v + 1


def test_newer_records_replace_older_and_other_generations_are_ignored():
    s = ClusterState(NAMES, "alpha", generation=1)
    s.set_up("beta", True)
    assert s.on_digest("beta", encode_digest(3, 0, [0, 1], 3))     # we lack it: ask
    assert s.on_record(Record("beta", generation=10, version=3), generation=10)
    assert not s.stale("beta")
    assert not s.on_record(Record("beta", generation=10, version=2), generation=10)
    assert not s.on_record(Record("beta", generation=9, version=50), generation=10)
    assert s.on_digest("beta", encode_digest(4, 0, [0, 1], 3))     # newer announced
    assert s.missing_records() == ["beta"]
    with pytest.raises(StateError):
        s.on_record(Record("alpha", generation=1, version=99), generation=1)


def test_view_counts_holdings_of_a_leaving_node_and_hides_unknown_peers():
    s = ClusterState(NAMES, "alpha", generation=1)
    s.set_up("beta", True)
    s.set_up("gamma", True)
    s.on_record(Record("beta", generation=2, version=1, status="leaving",
                       held={"www": "stopping"}), generation=2)
    v = s.view(quorate=True)
    assert v.nodes["beta"].up and v.nodes["beta"].standby
    assert v.nodes["beta"].held == frozenset({"www"})
    # gamma is heard but its record has not arrived: not up for placement.
    assert not v.nodes["gamma"].up


def test_matrix_and_latest_move_win():
    s = ClusterState(NAMES, "alpha", generation=1)
    s.set_up("beta", True)
    s.on_digest("beta", encode_digest(1, 0, [0], 3))
    s.on_record(Record("beta", generation=2, version=1,
                       moves={"www": ["gamma", 200]}), generation=2)
    s.update_local(moves={"www": ["beta", 100]})
    assert s.matrix() == {"alpha": ["beta"], "beta": ["alpha"], "gamma": []}
    assert s.moves() == {"www": "gamma"}
    s.update_local(moves={"www": ["alpha", 300]})
    assert s.moves() == {"www": "alpha"}


def test_a_peer_back_from_down_needs_a_fresh_record():
    s = ClusterState(NAMES, "alpha", generation=1)
    s.set_up("beta", True)
    s.on_record(Record("beta", generation=2, version=3, held={"www": "started"}),
                generation=2)
    assert s.view(True).nodes["beta"].held == frozenset({"www"})
    s.set_up("beta", False)
    s.set_up("beta", True)
    # What beta held before it went away is old news until it says again.
    assert s.missing_records() == ["beta"]
    assert not s.view(True).nodes["beta"].up
    assert s.on_record(Record("beta", generation=2, version=3, held={"www": "started"}),
                       generation=2)
    assert s.missing_records() == [] and s.view(True).nodes["beta"].up
