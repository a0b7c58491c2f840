"""The journal: storage (WAL, restarts, bounded size, a reader in another
process while the daemon writes), --since parsing, the one-line format, and
`heart why` on a journal filled with a realistic failover."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest

from heart import journal as J
from heart.journal import Journal, JournalError, format_event, open_readonly, parse_since, why
from heart.quorum import compute_quorum


@pytest.fixture
def utc(monkeypatch):
    """Local time = UTC, so formatted times are predictable."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def jpath(tmp_path):
    return str(tmp_path / "state" / "journal.db")


# ------------------------------------------------------------------ storage

def test_file_layout_wal_and_indexes(jpath):
    j = Journal(jpath)
    try:
        db = j._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1          # NORMAL
        cols = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        assert cols == ["id", "time", "kind", "node", "resource", "summary", "evidence"]
        indexed = {tuple(c[2] for c in db.execute(f"PRAGMA index_info({name})"))
                   for (name,) in db.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'index'")}
        assert ("time",) in indexed
        assert any(cols[0] == "node" for cols in indexed)
        assert any(cols[0] == "resource" for cols in indexed)
    finally:
        j.close()
    assert os.stat(os.path.dirname(jpath)).st_mode & 0o777 == 0o700
    assert os.stat(jpath).st_mode & 0o077 == 0


def test_record_and_query(jpath):
    with Journal(jpath) as j:
        a = j.record("node_down", "alpha is down", node="alpha", time=100.0,
                     evidence={"reason": "timeout", "held": {"web", "db"}})
        b = j.record("resource_acquire", "www started on beta", node="beta", resource="www",
                     time=101.0, evidence={"unit": "web", "ok": True})
        c = j.record("daemon_stop", "beta stopped", time=102.0)
        late = j.record("node_up", "alpha is up", node="alpha", time=99.5)   # recorded late
        assert a < b < c < late
        evs = j.events()
        assert [e["id"] for e in evs] == [late, a, b, c]                     # by time
        assert evs[1] == {"id": a, "time": 100.0, "kind": "node_down", "node": "alpha",
                          "resource": None, "summary": "alpha is down",
                          "evidence": {"reason": "timeout", "held": ["db", "web"]}}
        assert evs[-1]["evidence"] == {}
        assert [e["id"] for e in j.events(since=100.5)] == [b, c]
        assert [e["id"] for e in j.events(until=100.0)] == [late, a]
        assert [e["id"] for e in j.events(kinds=["node_down", "daemon_stop"])] == [a, c]
        assert [e["id"] for e in j.events(kinds="node_up")] == [late]
        assert j.events(kinds=[]) == []
        assert [e["id"] for e in j.events(subject="alpha")] == [late, a]
        assert [e["id"] for e in j.events(subject="www")] == [b]
        assert [e["id"] for e in j.events(subject="beta")] == [b]
        assert [e["id"] for e in j.events(limit=2)] == [b, c]               # newest two
        assert j.events(limit=0) == []
        assert j.count() == 4


def test_bad_records_are_refused_clearly(jpath):
    with Journal(jpath) as j:
        with pytest.raises(ValueError, match="non-empty string"):
            j.record("", "x")
        with pytest.raises(TypeError, match="expected a dict"):
            j.record("x", "y", evidence=["not", "a", "dict"])
        with pytest.raises(ValueError, match="finite"):
            j.record("x", "y", time=float("nan"))


def test_survives_a_restart(jpath):
    j = Journal(jpath)
    first = j.record("daemon_start", "alpha started", node="alpha")
    j.record("node_up", "beta is up", node="beta", evidence={"links": {"lan": {"up": True}}})
    j.close()
    j.close()                                            # idempotent
    j = Journal(jpath)
    try:
        evs = j.events()
        assert [e["kind"] for e in evs] == ["daemon_start", "node_up"]
        assert evs[1]["evidence"] == {"links": {"lan": {"up": True}}}
        assert j.record("daemon_start", "again") > first
    finally:
        j.close()


def test_size_is_bounded(jpath):
    j = Journal(jpath, max_rows=50)
    try:
        for i in range(620):
            j.record("node_late", f"event {i}", node="alpha", time=1000.0 + i)
        # Pruned in batches: never more than max_rows + one batch.
        assert 50 <= j.count() <= 50 + j._prune_every
        assert j.events(limit=1)[0]["summary"] == "event 619"
    finally:
        j.close()
    j = Journal(jpath, max_rows=50)          # opening prunes too
    try:
        assert j.count() == 50
        assert j.events()[0]["summary"] == "event 570"
    finally:
        j.close()
    with pytest.raises(ValueError, match="at least 1"):
        Journal(jpath, max_rows=0)


def test_open_readonly_errors(tmp_path, jpath):
    with pytest.raises(FileNotFoundError, match="no journal here"):
        open_readonly(str(tmp_path / "missing.db"))
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not sqlite at all" * 64)
    with pytest.raises(JournalError, match="bogus.db"):
        open_readonly(str(bogus))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(JournalError, match="not a Heart journal"):
        open_readonly(str(other))
    Journal(jpath).close()
    r = open_readonly(jpath)
    try:
        with pytest.raises(JournalError, match="read-only"):
            r.record("x", "y")
    finally:
        r.close()


WRITER = textwrap.dedent("""
    import sys, time
    from heart.journal import Journal
    j = Journal(sys.argv[1])
    print("ready", flush=True)
    for i in range(400):
        j.record("node_late", f"event {i}", node="alpha", evidence={"i": i})
        if i % 40 == 0:
            time.sleep(0.01)
    print("done", flush=True)
    sys.stdin.readline()          # keep the journal open, like a running daemon
    j.close()
""")


def test_reader_in_another_process_while_the_daemon_writes(jpath):
    """A CLI process reads (open_readonly) while another process writes and
    keeps the file open; every read is consistent and sees progress."""
    Journal(jpath).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, jpath], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = open_readonly(jpath)
            try:
                evs = r.events(kinds=["node_late"])
            finally:
                r.close()
            # Consistent snapshot: ids are exactly 0..n-1 in order.
            assert [e["evidence"]["i"] for e in evs] == list(range(len(evs)))
            seen.append(len(evs))
            if len(evs) == 400:
                break
            time.sleep(0.005)
        assert seen[-1] == 400 and seen == sorted(seen)
        assert proc.stdout.readline().strip() == "done"
        # The daemon is still running (file open): why() works on it too.
        r = open_readonly(jpath)
        try:
            assert why(r, "alpha").startswith("No decision about alpha is on record; "
                                              "the latest event about it: event 399")
        finally:
            r.close()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0


def test_writer_continues_while_a_reader_holds_a_snapshot(jpath):
    j = Journal(jpath)
    try:
        j.record("daemon_start", "up")
        r = open_readonly(jpath)
        try:
            r._db.execute("BEGIN")
            assert len(r.events()) == 1
            for i in range(50):                  # never blocked by the open read
                j.record("node_late", f"{i}")
            assert len(r.events()) == 1          # the reader's snapshot
            r._db.execute("COMMIT")
            assert len(r.events()) == 51
        finally:
            r.close()
    finally:
        j.close()


# ------------------------------------------------------------------ time

NOW = datetime(2026, 11, 25, 21, 3, 4, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("text, ago", [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800),
    ("1h30m", 5400), ("1.5h", 5400), (" 15 m ", 900), ("0s", 0),
])
def test_parse_since_ages(text, ago):
    assert parse_since(text, now=NOW) == pytest.approx(NOW - ago)


def test_parse_since_absolute(utc):
    day = datetime(2026, 11, 25, tzinfo=timezone.utc).timestamp()
    assert parse_since("1764104584") == 1764104584.0
    assert parse_since("1764104584.25") == 1764104584.25
    assert parse_since("2026-11-25") == day
    assert parse_since("2026-11-25T21:03:04", now=NOW) == NOW
    assert parse_since("2026-11-25 21:03:04.500") == NOW + 0.5
    assert parse_since("2026-11-25T22:03:04+01:00") == NOW
    assert parse_since("2026-11-25T21:03:04Z") == NOW
    assert parse_since("today", now=NOW) == day
    assert parse_since("yesterday", now=NOW) == day - 86400
    assert parse_since("21:00", now=NOW) == day + 21 * 3600
    assert parse_since("21:00:30.5", now=NOW) == day + 21 * 3600 + 30.5
    assert parse_since("22:00", now=NOW) == day - 86400 + 22 * 3600   # not in the future


def test_parse_since_local_time_when_no_zone(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    try:
        assert parse_since("2026-11-25T22:03:04") == NOW
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "soon", "10 minutes", "-5m", "2026-13-45", "25:99",
                                  "1y"])
def test_parse_since_errors_name_the_text_and_the_forms(text):
    with pytest.raises(ValueError) as info:
        parse_since(text, now=NOW)
    msg = str(info.value)
    assert repr(text) in msg and '"90s"' in msg and "ISO 8601" in msg and "unix seconds" in msg


def test_format_event(utc):
    ev = {"id": 3, "time": NOW + 0.123, "kind": "node_down", "node": "beta",
          "resource": None, "summary": "beta is down:\nno heartbeat for 502 ms", "evidence": {}}
    assert format_event(ev) == ("2026-11-25 21:03:04.123 node_down        beta         "
                                "beta is down: no heartbeat for 502 ms")
    ev.update(resource="www", kind="resource_acquire")
    assert format_event(ev).startswith("2026-11-25 21:03:04.123 resource_acquire www@beta ")
    ev.update(node=None, resource=None)
    assert " - " in format_event(ev)


# ------------------------------------------------------------------ heart why

NODES = ["alpha", "beta", "gamma"]


def quorum_of(*members, ping=None):
    return compute_quorum(NODES, members, ping_reachable=ping, wait_for_all=False,
                          all_seen=True).as_dict()


def result(action, ok=True, rc=0, duration=0.02, output="", attempts=1, **more):
    return {"action": action, "ok": ok, "rc": rc, "duration_s": duration, "output": output,
            "attempts": attempts, "error": None, "timed_out": False, **more}


def fill_failover(j: Journal, t: float) -> None:
    """What beta's daemon records when alpha (running the group web = www,
    db) dies: late, down, placement, fencing, the starts.  Then a link of
    gamma flaps (not a decision)."""
    q2 = quorum_of("beta", "gamma")
    j.record("daemon_start", "beta started", node="beta", time=t - 60)
    j.record("placement", "placement puts web on alpha: alpha is its most preferred node",
             resource="web", time=t - 59,
             evidence={"unit": "web", "from": None, "to": "alpha",
                       "reason": "alpha is its most preferred node",
                       "quorum": quorum_of(*NODES)})
    j.record("node_late", "alpha is late: silent for 301.0 ms", node="alpha", time=t - 0.2,
             evidence={"silent_ms": 301.0})
    j.record("node_down", "alpha is down: no heartbeat for 502.0 ms", node="alpha", time=t,
             evidence={"reason": "timeout", "silent_ms": 502.0,
                       "links": {"lan": {"up": False, "silent_ms": 502.0}},
                       "held": ["web"], "quorum": q2})
    j.record("placement", "placement puts web on beta", resource="web", time=t + 0.001,
             evidence={"unit": "web", "from": "alpha", "to": "beta",
                       "reason": "beta is the first available node in its preference order "
                                 "(alpha is down)", "quorum": q2,
                       "nodes": {"alpha": {"up": False, "standby": False, "held": ["web"]}}})
    j.record("resource_acquire", "www started on beta (ok, rc 0, 0.02 s)", node="beta",
             resource="www", time=t + 0.022,
             evidence={"unit": "web", "reason": "beta is the first available node",
                       **result("start")})
    j.record("resource_acquire", "db started on beta (ok, rc 0, 0.31 s)", node="beta",
             resource="db", time=t + 0.335,
             evidence={"unit": "web", **result("start", duration=0.31)})
    j.record("link_down", "link lan to gamma is down", node="gamma", time=t + 5,
             evidence={"link": "lan", "peer": "gamma"})


T0 = datetime.now(timezone.utc).replace(hour=21, minute=3, second=4,
                                        microsecond=101000).timestamp()


def test_why_resource(utc, jpath):
    with Journal(jpath) as j:
        fill_failover(j, T0)
        assert why(j, "www") == (
            "www was started on beta at 21:03:04.123 (start ok, rc 0, 0.02 s) because "
            "placement chose beta for web: alpha went down at 21:03:04.101 (no heartbeat for "
            "502 ms on lan; lan silent since 21:03:03.599); quorum 2 of 3 votes "
            "(beta, gamma).")


def test_why_node(utc, jpath):
    with Journal(jpath) as j:
        fill_failover(j, T0)
        assert why(j, "alpha") == (
            "alpha went down at 21:03:04.101 (no heartbeat for 502 ms on lan; lan silent "
            "since 21:03:03.599); quorum 2 of 3 votes (beta, gamma). Then placement moved web "
            "from alpha to beta at 21:03:04.102; www was started on beta at 21:03:04.123 "
            "(start ok, rc 0, 0.02 s); db was started on beta at 21:03:04.436 "
            "(start ok, rc 0, 0.31 s).")


def test_why_group(utc, jpath):
    with Journal(jpath) as j:
        fill_failover(j, T0)
        text = why(j, "web")
        assert text.startswith("db was started on beta at 21:03:04.436 (start ok, rc 0, "
                               "0.31 s) because placement chose beta for web: alpha went down")


def test_why_unknown_and_undecided_subjects(utc, jpath):
    with Journal(jpath) as j:
        assert why(j, "www") == "No decision about www is on record."
        fill_failover(j, T0)
        assert why(j, "delta") == "No decision about delta is on record."
        assert why(j, "gamma") == ("No decision about gamma is on record; the latest event "
                                   "about it: link lan to gamma is down (at 21:03:09.101).")


def test_why_on_a_read_only_journal_from_yesterday(utc, jpath):
    with Journal(jpath) as j:
        fill_failover(j, T0 - 86400)
    r = open_readonly(jpath)
    try:
        day = (datetime.fromtimestamp(T0, timezone.utc) - timedelta(days=1)).date()
        assert why(r, "www").startswith(f"www was started on beta at {day} 21:03:04.123")
    finally:
        r.close()


def test_why_no_quorum_release(utc, jpath):
    q1 = quorum_of("beta")
    with Journal(jpath) as j:
        fill_failover(j, T0)
        t = T0 + 60
        j.record("node_down", "gamma left", node="gamma", time=t,
                 evidence={"reason": "leave", "quorum": q1})
        j.record("quorum_lost", "beta lost quorum", node="beta", time=t + 0.001,
                 evidence={"quorum": q1})
        j.record("placement", "placement puts web on no node", resource="web", time=t + 0.002,
                 evidence={"unit": "web", "from": "beta", "to": None,
                           "reason": "this partition has no quorum", "quorum": q1})
        j.record("resource_release", "db stopped on beta", node="beta", resource="db",
                 time=t + 0.1, evidence={"unit": "web", **result("stop", duration=0.05)})
        j.record("resource_release", "www stopped on beta", node="beta", resource="www",
                 time=t + 0.12, evidence={"unit": "web", **result("stop", duration=0.01)})
        assert why(j, "www") == (
            "www was stopped on beta at 21:04:04.221 (stop ok, rc 0, 0.01 s) because "
            "placement left web on no node: beta lost quorum at 21:04:04.102 "
            "(1 of 3 votes (beta); 2 needed).")
        assert why(j, "gamma") == (
            "gamma left the cluster at 21:04:04.101 (a clean shutdown, announced); no quorum: "
            "1 of 3 votes (beta); 2 needed. Then placement took web off beta at "
            "21:04:04.103; db was stopped on beta at 21:04:04.201 (stop ok, rc 0, 0.05 s); "
            "www was stopped on beta at 21:04:04.221 (stop ok, rc 0, 0.01 s).")


def test_why_failed_start_and_the_move_that_follows(utc, jpath):
    q2 = quorum_of("beta", "gamma")
    with Journal(jpath) as j:
        fill_failover(j, T0)
        t = T0 + 120
        j.record("resource_failed", "www failed to start on beta", node="beta",
                 resource="www", time=t,
                 evidence={"unit": "web", **result("start", ok=False, rc=1, duration=0.5,
                                                   attempts=3,
                                                   output="starting\nERROR: port 80 in use\n")})
        assert why(j, "www") == (
            "www failed to start on beta at 21:05:04.101 (start failed, rc 1, 0.50 s, "
            "3 attempts; output: \"ERROR: port 80 in use\"); web is not placed on beta again "
            "until the failure is cleared.")
        j.record("placement", "placement puts web on gamma", resource="web", time=t + 0.01,
                 evidence={"unit": "web", "from": "beta", "to": "gamma",
                           "reason": "gamma is the first available node in its preference "
                                     "order (alpha is down and web failed on beta)",
                           "quorum": q2})
        j.record("resource_acquire", "www started on gamma", node="gamma", resource="www",
                 time=t + 0.05, evidence={"unit": "web", **result("start")})
        text = why(j, "www")
        assert text.startswith("www was started on gamma at 21:05:04.151 (start ok, rc 0, "
                               "0.02 s) because placement chose gamma for web: www failed to "
                               "start on beta at 21:05:04.101 (start failed, rc 1")
        assert text.endswith("; quorum 2 of 3 votes (beta, gamma).")


def test_why_fence_stall_move_and_monitor(utc, jpath):
    q3 = quorum_of(*NODES)
    with Journal(jpath) as j:
        fill_failover(j, T0)
        j.record("fence", "fencing alpha before taking web: succeeded", node="alpha",
                 resource="web", time=T0 + 0.01, evidence={"ok": True, "rc": 0, "output": ""})
        assert why(j, "alpha") == (
            "alpha was fenced at 21:03:04.111 before web was taken over (succeeded, rc 0) "
            "because alpha went down at 21:03:04.101 (no heartbeat for 502 ms on lan; lan "
            "silent since 21:03:03.599) while holding web; then www was started on beta at "
            "21:03:04.123 (start ok, rc 0, 0.02 s); db was started on beta at 21:03:04.436 "
            "(start ok, rc 0, 0.31 s).")
        assert why(j, "www").endswith("; before that, alpha was fenced at 21:03:04.111 "
                                      "before web was taken over (succeeded, rc 0).")
        t = T0 + 300
        j.record("stall", "the engine on beta was not scheduled for 812.0 ms", node="beta",
                 time=t, evidence={"stall_ms": 812.0, "deadtime_ms": 500.0, "released": ["web"]})
        assert why(j, "beta") == (
            "The engine on beta stalled at 21:08:04.101 for 812 ms, longer than the dead "
            "time (500 ms), so it released web to be safe.")
        j.record("monitor_failed", "monitor of db on beta says stopped", node="beta",
                 resource="db", time=t + 30,
                 evidence={"unit": "web", "action": "monitor", "ok": False, "rc": 7,
                           "status": "stopped", "output": ""})
        assert why(j, "db") == (
            "The monitor of db on beta failed at 21:08:34.101 (monitor failed, rc 7, status "
            "stopped); web is not placed on beta again until the failure is cleared.")
        t += 60
        j.record("move", "web moved to alpha by the operator", resource="web", time=t,
                 evidence={"unit": "web", "to": "alpha"})
        j.record("placement", "placement puts web on alpha", resource="web", time=t + 0.001,
                 evidence={"unit": "web", "from": "gamma", "to": "alpha",
                           "reason": "the operator moved web to alpha", "quorum": q3})
        assert why(j, "web") == (
            "Placement moved web from gamma to alpha at 21:09:04.102, after the operator "
            "moved web to alpha at 21:09:04.101; quorum 3 of 3 votes (alpha, beta, gamma).")


def test_why_reads_journals_with_missing_evidence(utc, jpath):
    """Every evidence key is optional: bare events still give a sentence."""
    with Journal(jpath) as j:
        for kind in J.DECISION_KINDS:
            j.record(kind, f"bare {kind}", node="x", resource="y", time=T0)
            assert why(j, "x").endswith(".")
            assert why(j, "y").endswith(".")
