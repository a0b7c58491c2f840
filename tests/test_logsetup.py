"""heart.logsetup: one line (one entry) per event, with the journal's fields,
to stderr, syslog or the systemd journal (here: sockets the test binds)."""
from __future__ import annotations

import io
import logging
import os
import socket
import struct

import pytest

from heart import logsetup


@pytest.fixture
def heart_logger():
    """Restore the root and 'heart' loggers after configure() changed them."""
    root, heart = logging.getLogger(), logging.getLogger("heart")
    saved = (list(root.handlers), root.level, heart.level)
    yield heart
    for h in list(root.handlers):
        if getattr(h, "_heart_logsetup", False):
            root.removeHandler(h)
            h.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    heart.setLevel(saved[2])


def _event(log: logging.Logger, summary: str = "node2 acquired vip after node1 went down"):
    extra = logsetup.event_extra(42, "takeover", summary, "node2", "vip",
                                 {"reason": "peer_down", "ms": 97.5})
    log.info("%s %s", "takeover", summary, extra=extra)


def _bind_dgram(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    return s


def test_stderr_one_line_per_event_with_the_journal_fields(heart_logger):
    buf = io.StringIO()
    logsetup.configure("stderr", "info", node="node1", stream=buf)
    _event(logging.getLogger("heart"), "two\nlines")
    logging.getLogger("heart.dispatch").debug("not at info")
    logging.getLogger("heart.ipaddr").warning("plain message")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2, lines
    stamp, tag, rest = lines[0].split(" ", 2)
    assert stamp.endswith("Z") and "T" in stamp and tag == "heart[node1]"
    assert rest == ('INFO takeover: two\\nlines node=node2 resource=vip id=42 '
                    'evidence={"ms":97.5,"reason":"peer_down"}')
    assert lines[1].split(" ", 2)[2] == "WARNING plain message"


def test_level_debug_lets_debug_through(heart_logger):
    buf = io.StringIO()
    logsetup.configure("stderr", "debug", node="n", stream=buf)
    logging.getLogger("heart.dispatch").debug("now visible")
    assert "DEBUG now visible" in buf.getvalue()


def test_syslog_daemon_facility_tag_and_fields(heart_logger, tmp_path):
    path = str(tmp_path / "log")
    srv = _bind_dgram(path)
    try:
        logsetup.configure("syslog", "info", node="node1", syslog_path=path)
        _event(logging.getLogger("heart"))
        msg = srv.recv(65536).decode()
    finally:
        srv.close()
    # <30> = facility daemon (3) * 8 + severity info (6)
    assert msg.startswith(f"<30>heart[{os.getpid()}]: [node1] INFO takeover: node2 acquired"), msg
    assert "node=node2 resource=vip id=42" in msg
    assert "\n" not in msg.rstrip("\x00\n")


def _parse_journal(data: bytes) -> dict[str, str]:
    out = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            out[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            out[line.decode()] = data[nl + 9:nl + 9 + n].decode()
            assert data[nl + 9 + n:nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return out


def test_journald_native_entry_with_event_fields(heart_logger, tmp_path):
    path = str(tmp_path / "journal.sock")
    srv = _bind_dgram(path)
    try:
        logsetup.configure("journald", "info", node="node1", journal_path=path)
        _event(logging.getLogger("heart"), "multi\nline summary")
        logging.getLogger("heart").error("disk full")
        ev = _parse_journal(srv.recv(1 << 20))
        plain = _parse_journal(srv.recv(1 << 20))
    finally:
        srv.close()
    assert ev["HEART_EVENT"] == "takeover" and ev["HEART_EVENT_ID"] == "42"
    assert ev["HEART_PEER"] == "node2" and ev["HEART_RESOURCE"] == "vip"
    assert ev["HEART_NODE"] == "node1" and ev["SYSLOG_IDENTIFIER"] == "heart"
    assert ev["PRIORITY"] == "6" and ev["SYSLOG_PID"] == str(os.getpid())
    assert ev["HEART_EVIDENCE"] == '{"ms": 97.5, "reason": "peer_down"}'
    # MESSAGE is kind and summary (the fields carry the rest); its newline
    # travels in the length-prefixed form, intact
    assert ev["MESSAGE"] == "takeover: multi\nline summary"
    assert plain["MESSAGE"] == "disk full" and plain["PRIORITY"] == "3"
    assert "HEART_EVENT" not in plain


def test_journald_keeps_a_traceback(heart_logger, tmp_path):
    path = str(tmp_path / "journal.sock")
    srv = _bind_dgram(path)
    try:
        logsetup.configure("journald", "info", node="node1", journal_path=path)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("heart.dispatch").exception("action crashed")
        got = _parse_journal(srv.recv(1 << 20))
    finally:
        srv.close()
    assert got["MESSAGE"].startswith("action crashed\nTraceback (most recent call last):")
    assert got["MESSAGE"].rstrip().endswith("ValueError: boom")
    assert got["PRIORITY"] == "3"


def test_other_loggers_reach_the_target_from_warning_up(heart_logger):
    """asyncio's "Exception in callback" and libraries' warnings go where
    Heart's own lines go, not to Python's bare last-resort stderr."""
    buf = io.StringIO()
    logsetup.configure("stderr", "debug", node="n1", stream=buf)
    logging.getLogger("asyncio").error("Exception in callback X")
    logging.getLogger("pyroute2").info("chatty library detail")
    logging.getLogger("heart.quorum").debug("our own debug line")
    lines = [ln.split(" ", 2)[2] for ln in buf.getvalue().splitlines()]
    assert lines == ["ERROR Exception in callback X", "DEBUG our own debug line"]


def test_target_from_the_environment_is_named_as_such(heart_logger):
    with pytest.raises(logsetup.LogSetupError, match=r"^\$HEART_LOG 'journal': expected one of"):
        logsetup.configure("journal", "info", node="n", source="$HEART_LOG")


def test_journald_field_with_a_real_newline_is_length_prefixed():
    raw = logsetup._journal_field("X", "a\nb")
    assert raw == b"X\n" + struct.pack("<Q", 3) + b"a\nb\n"
    assert _parse_journal(raw) == {"X": "a\nb"}


@pytest.mark.parametrize("target,kw,word", [
    ("syslog", {"syslog_path": "/nonexistent/heart-test-log"}, "/nonexistent/heart-test-log"),
    ("journald", {"journal_path": "/nonexistent/heart-journal"}, "/nonexistent/heart-journal"),
    ("files", {}, "stderr, syslog, journald"),
])
def test_unusable_target_is_a_clear_error_and_changes_nothing(heart_logger, target, kw, word):
    root = logging.getLogger()
    before = (list(root.handlers), root.level, heart_logger.level)
    with pytest.raises(logsetup.LogSetupError, match=word):
        logsetup.configure(target, "info", node="n", **kw)
    assert (list(root.handlers), root.level, heart_logger.level) == before


def test_bad_level():
    with pytest.raises(logsetup.LogSetupError, match="--log-level 'loud'"):
        logsetup.configure("stderr", "loud", node="n")


def test_configure_twice_replaces_the_handler(heart_logger):
    a, b = io.StringIO(), io.StringIO()
    logsetup.configure("stderr", "info", node="n", stream=a)
    logsetup.configure("stderr", "info", node="n", stream=b)
    logging.getLogger("heart").info("once")
    assert a.getvalue() == "" and b.getvalue().count("once") == 1


def test_daemon_logs_one_line_per_journal_event(cluster):
    """A real `heart run`: every event in the node's journal is one stderr
    line carrying its id, kind, node and resource."""
    import re

    c = cluster(("alpha", "beta"))
    c.start_all()
    c.wait(lambda: (c.status("alpha") or {}).get("quorum", {}).get("votes") == 2
           and c.running_on("www") != [], 15, "both nodes up and www started")
    c.stop("beta")
    c.wait(lambda: any(e["kind"] == "node_down" for e in c.journal("alpha")), 10,
           "alpha to see beta go")
    assert c.stop("alpha") == 0
    events = c.journal("alpha")
    assert len(events) >= 3
    lines = c.log_text("alpha").splitlines()
    for e in events:
        pat = re.compile(rf"^\S+Z heart\[alpha\] \w+ {re.escape(e['kind'])}: .* "
                         rf"id={e['id']}(?: |$)")
        hits = [ln for ln in lines if pat.match(ln)]
        assert len(hits) == 1, (e, hits)
        if e.get("node"):
            assert f" node={e['node']} " in hits[0]
        if e.get("resource"):
            assert f" resource={e['resource']} " in hits[0]
