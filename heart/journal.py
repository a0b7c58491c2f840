"""The journal: every decision the daemon makes, with the evidence for it.

A failover that happened at 3 a.m. is explained the next morning from this
file: ``heart events`` lists what happened and ``heart why <node|resource>``
turns the newest decision about a subject into a paragraph of prose ("www
was started on beta at 21:03:04.123 because placement chose beta: alpha
went down ...").

Storage is one SQLite table (standard library ``sqlite3``) in WAL mode, so
the CLI can read it from another process while the daemon writes, and with
``synchronous=NORMAL``: a commit is not fsynced on its own (an event costs
microseconds, not a disk flush); a power loss can lose the last few events
but never corrupts the file.  The table is capped at ``max_rows`` rows (the
oldest are deleted now and then), so the file stays bounded.

This module takes plain values and never reads the configuration itself.
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time as _time
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "Journal",
    "JournalError",
    "format_event",
    "open_readonly",
    "parse_since",
    "why",
]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 4 * 1024 * 1024   # the WAL is truncated to this after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY,
    time     REAL NOT NULL,
    kind     TEXT NOT NULL,
    node     TEXT,
    resource TEXT,
    summary  TEXT NOT NULL,
    evidence TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_node ON events (node, time);
CREATE INDEX IF NOT EXISTS events_resource ON events (resource, time);
"""

_COLUMNS = "id, time, kind, node, resource, summary, evidence"


class JournalError(Exception):
    """A journal that cannot be opened or used; the message names the file."""


def evidence_json(evidence: Any, **kw: Any) -> str:
    """Evidence as JSON, as the journal stores it (the log targets use it
    too, so both show the same)."""
    return json.dumps(evidence, default=_jsonable, **kw)


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: evidence is whatever the daemon had at hand
    (sets of units, tuples, dataclasses); store it rather than lose it."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Journal:
    """The event journal in one SQLite file.

    Usable from one thread (the daemon's event loop).  Each ``record()`` is
    its own small transaction.  Several processes may read while one writes;
    readers use ``open_readonly()``.
    """

    def __init__(self, path: str | os.PathLike, max_rows: int = 100_000, *,
                 _readonly: bool = False):
        if max_rows < 1:
            raise ValueError(f"Journal max_rows {max_rows}: expected at least 1")
        self.path = str(path)
        self.max_rows = int(max_rows)
        self.readonly = _readonly
        self._since_prune = 0
        # Delete in batches: a DELETE per insert would double the write cost.
        self._prune_every = max(1, min(1000, self.max_rows // 10))
        try:
            if _readonly:
                self._db = self._connect_readonly()
            else:
                self._db = self._connect_writable()
        except sqlite3.DatabaseError as e:
            raise JournalError(f"{self.path}: cannot open the journal: {e}") from e

    def _connect_writable(self) -> sqlite3.Connection:
        p = Path(self.path)
        if not p.parent.exists():
            # Events carry script output: keep the directory private.
            os.makedirs(p.parent, mode=0o700, exist_ok=True)
        # Create the file 0600 before SQLite does (it would use 0644 & ~umask);
        # SQLite gives the -wal and -shm files the same mode.
        os.close(os.open(p, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                                   "is the file on a network file system?")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"{self.path}: journal schema version {version} is newer "
                                   f"than this Heart understands ({SCHEMA_VERSION})")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db = db
            self._prune()
        except BaseException:
            db.close()
            raise
        return db

    def _connect_readonly(self) -> sqlite3.Connection:
        p = Path(self.path)
        if not p.is_file():
            raise FileNotFoundError(
                f"{self.path}: no journal here (the daemon creates journal.db in its "
                "state_dir; is the path right, and has the daemon run on this node?)")
        uri = "file:" + quote(str(p.resolve())) + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                             isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            row = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'events'").fetchone()
            if row is None:
                raise JournalError(f"{self.path}: not a Heart journal (no events table)")
        except BaseException:
            db.close()
            raise
        return db

    # -- writing -------------------------------------------------------------

    def record(self, kind: str, summary: str, *, node: str | None = None,
               resource: str | None = None, evidence: dict | None = None,
               time: float | None = None) -> int:
        """Append one event; returns its id.  ``time`` is unix seconds
        (default: now).  Evidence must be a dict; values JSON cannot hold
        are stored as lists (sets) or strings."""
        if self.readonly:
            raise JournalError(f"{self.path}: opened read-only; only the daemon records events")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"journal event kind {kind!r}: expected a non-empty string")
        if evidence is not None and not isinstance(evidence, dict):
            raise TypeError(f"journal evidence for {kind}: expected a dict, "
                            f"got {type(evidence).__name__}")
        t = _time.time() if time is None else float(time)
        if not math.isfinite(t):
            raise ValueError(f"journal event time {time!r}: expected finite unix seconds")
        blob = None if evidence is None else evidence_json(evidence)
        cur = self._db.execute(
            "INSERT INTO events (time, kind, node, resource, summary, evidence) "
            "VALUES (?, ?, ?, ?, ?, ?)", (t, kind, node, resource, str(summary), blob))
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self._prune()
        return int(cur.lastrowid)

    def _prune(self) -> None:
        """Keep the newest max_rows rows (by id, i.e. by insertion)."""
        self._since_prune = 0
        top = self._db.execute("SELECT max(id) FROM events").fetchone()[0]
        if top is not None and top > self.max_rows:
            self._db.execute("DELETE FROM events WHERE id <= ?", (top - self.max_rows,))

    # -- reading ---------------------------------------------------------------

    def events(self, since: float | None = None, kinds: Iterable[str] | None = None,
               subject: str | None = None, limit: int | None = None, *,
               until: float | None = None) -> list[dict]:
        """Events oldest first (by time, then id).

        since, until: unix seconds, inclusive.  kinds: only these kinds.  subject:
        events whose node or resource is this name.  limit: the newest
        ``limit`` of the matching events (still returned oldest first)."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("time >= ?")
            args.append(float(since))
        if until is not None:
            where.append("time <= ?")
            args.append(float(until))
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            if not kinds:
                return []
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        if subject is not None:
            where.append("(node = ? OR resource = ?)")
            args.extend([subject, subject])
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"journal events limit {limit}: expected 0 or more")
            sql += " ORDER BY time DESC, id DESC LIMIT ?"
            args.append(int(limit))
            rows = self._db.execute(sql, args).fetchall()
            rows.reverse()
        else:
            sql += " ORDER BY time, id"
            rows = self._db.execute(sql, args).fetchall()
        return [_row_dict(r) for r in rows]

    def count(self) -> int:
        """Number of events stored."""
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        """Close the file (idempotent).  The last connection to close
        checkpoints the WAL into the main file."""
        db, self._db = getattr(self, "_db", None), None
        if db is not None:
            db.close()

    def __enter__(self) -> Journal:  # noqa: PYI034 (typing.Self needs 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row_dict(row: Sequence) -> dict:
    ev_id, t, kind, node, resource, summary, blob = row
    evidence: dict = {}
    if blob:
        try:
            value = json.loads(blob)
            evidence = value if isinstance(value, dict) else {"value": value}
        except ValueError:
            evidence = {"raw": blob}
    return {"id": ev_id, "time": t, "kind": kind, "node": node, "resource": resource,
            "summary": summary, "evidence": evidence}


def open_readonly(path: str | os.PathLike) -> Journal:
    """Open a journal for reading (the CLI), also while the daemon writes it.
    FileNotFoundError if there is none; JournalError if it is not a journal."""
    return Journal(path, _readonly=True)


# ----------------------------------------------------------------------------
# Time


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", re.IGNORECASE)
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


def parse_since(text: str, now: float | None = None) -> float:
    """A ``--since`` value as unix seconds.

    Accepts an age ("90s", "10m", "2h", "1d", "1w", or combined "1h30m"),
    "today" / "yesterday" (local midnight), a clock time "21:03[:04[.5]]"
    (today, or yesterday if that is still in the future), an ISO 8601
    date or date-time ("2026-11-25", "2026-11-25T21:03:04", local time unless
    a zone such as "Z" or "+01:00" is given) or unix seconds ("1764104584").
    """
    now = _time.time() if now is None else float(now)
    s = text.strip() if isinstance(text, str) else ""
    low = s.lower()
    if re.fullmatch(r"(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+", low):
        age = sum(float(n) * _AGE_UNITS[u.lower()] for n, u in _AGE_PART.findall(low))
        return now - age
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    if low in ("today", "yesterday"):
        day = datetime.fromtimestamp(now).date()
        if low == "yesterday":
            day -= timedelta(days=1)
        return datetime(day.year, day.month, day.day).timestamp()
    if _CLOCK.match(s):
        try:
            clock = datetime.strptime(s, "%H:%M:%S.%f" if "." in s else
                                      ("%H:%M:%S" if s.count(":") == 2 else "%H:%M")).time()
        except ValueError:
            clock = None
        if clock is not None:
            today = datetime.fromtimestamp(now).date()
            t = datetime.combine(today, clock).timestamp()
            if t > now:
                t = datetime.combine(today - timedelta(days=1), clock).timestamp()
            return t
    iso = s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        dt = None
    if dt is not None:
        return dt.timestamp()   # naive: local time
    raise ValueError(
        f"cannot read the time {text!r}; expected an age such as \"90s\", \"10m\", \"2h\" or "
        "\"1d\", \"today\", a clock time such as \"21:03\", an ISO 8601 date/time such as "
        "\"2026-11-25T21:03:04\" (local time unless a zone like \"Z\" or \"+01:00\" is "
        "given), or unix seconds")


def _local(t: float) -> datetime:
    return datetime.fromtimestamp(t)


def _stamp(t: float) -> str:
    """Full local time stamp with milliseconds."""
    dt = _local(t)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + f".{dt.microsecond // 1000:03d}"


def _clock(t: float, today: date | None = None) -> str:
    """Local time of day with milliseconds; with the date when not today."""
    dt = _local(t)
    hms = dt.strftime("%H:%M:%S") + f".{dt.microsecond // 1000:03d}"
    if dt.date() != (today or date.today()):
        return dt.strftime("%Y-%m-%d ") + hms
    return hms


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def event_subject(ev: dict) -> str:
    """What an event is about: its node, its resource, or resource@node."""
    node, res = ev.get("node"), ev.get("resource")
    return f"{res}@{node}" if node and res else (node or res or "-")


def event_summary(ev: dict) -> str:
    """Its summary on one line."""
    return _one_line(ev.get("summary", ""))


def format_event(ev: dict) -> str:
    """One line: local time, kind, subject (node, resource or resource@node),
    summary."""
    return (f"{_stamp(ev['time'])} {ev['kind']:<16} {event_subject(ev):<12} "
            f"{event_summary(ev)}")


# ----------------------------------------------------------------------------
# heart why


ACTION_KINDS = ("resource_acquire", "resource_release", "resource_failed", "monitor_failed")
NODE_KINDS = ("node_down", "node_up", "node_restart", "standby", "stall", "fence",
              "quorum_lost", "quorum_regained", "quorum_at_risk", "quorum_safe",
              "duplicate_owner", "daemon_start",
              "daemon_stop", "config_reload")
UNIT_KINDS = ("placement", "move")
DECISION_KINDS = ACTION_KINDS + NODE_KINDS + UNIT_KINDS
# Events that make placement change its mind, looked for just before a placement.
TRIGGER_KINDS = ("node_down", "node_up", "node_restart", "standby", "stall", "quorum_lost",
                 "quorum_regained", "quorum_at_risk", "quorum_safe", "move", "resource_failed", "monitor_failed",
                 "daemon_start", "config_reload")
TRIGGER_WINDOW_S = 60.0      # a placement is recomputed within ms of its cause
CONTEXT_BEFORE_S = 3600.0    # how far before a decision its placement is looked for
FOLLOW_WINDOW_S = 600.0      # how far after a decision its consequences are looked for
MAX_FOLLOW = 3               # consequences (placements, actions) named at most
_SCAN = 500                  # newest events about a subject that why() considers


def _ms(value: Any) -> str:
    v = float(value)
    return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"


def _secs(value: Any) -> str:
    v = float(value)
    return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"


def _names(items: Sequence[str]) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quorum_text(q: Any) -> str | None:
    """'quorum 2 of 3 votes (beta, gamma)' / 'no quorum: 1 of 3 votes ...'."""
    if not isinstance(q, dict):
        return None
    reason = q.get("reason")
    if not reason and "votes" in q and "expected" in q:
        members = ", ".join(q.get("members") or []) or "none"
        reason = f"{q['votes']} of {q['expected']} votes ({members})"
    if not reason:
        return None
    return f"quorum {reason}" if q.get("quorate") else f"no quorum: {reason}"


def _output_tail(text: Any, limit: int = 160) -> str | None:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    if not lines:
        return None
    tail = lines[-1]
    return tail if len(tail) <= limit else "..." + tail[-limit:]


def _result(e: dict, default_action: str) -> str:
    """'start ok, rc 0, 0.02 s' from an action's evidence."""
    action = e.get("action") or default_action
    parts: list[str] = []
    if e.get("timed_out"):
        head = f"{action} timed out"
        if e.get("duration_s") is not None:
            head += f" after {_secs(e['duration_s'])}"
        parts.append(head)
    elif e.get("error"):
        parts.append(f"{action} failed: {e['error']}")
    else:
        ok = e.get("ok")
        parts.append(f"{action} {'ok' if ok else 'failed' if ok is False else 'done'}")
        if e.get("rc") is not None:
            parts.append(f"rc {e['rc']}")
        if e.get("status") and e.get("status") not in ("running",):
            parts.append(f"status {e['status']}")
        if e.get("duration_s") is not None:
            parts.append(_secs(e["duration_s"]))
    if isinstance(e.get("attempts"), int) and e["attempts"] > 1:
        parts.append(f"{e['attempts']} attempts")
    text = ", ".join(parts)
    if e.get("ok") is not True:
        tail = _output_tail(e.get("output"))
        if tail:
            text += f'; output: "{tail}"'
    return text


class _Story:
    """why(): the events about a subject and around its newest decision, and
    the sentence makers that turn them into prose."""

    def __init__(self, journal: Journal, subject: str):
        self.subject = subject
        self.today = date.today()
        about = journal.events(subject=subject, limit=_SCAN)
        # A resource in a group is placed as its group (the unit): the
        # group's placements and moves are about the resource too.
        units = {_unit_of(ev) for ev in about
                 if ev["kind"] in ACTION_KINDS and ev["resource"] == subject}
        units -= {None, subject}
        for unit in sorted(units):
            about += journal.events(subject=unit, kinds=UNIT_KINDS, limit=_SCAN)
        # A group's own events name the group; its resources' actions name
        # the resource and carry the group as evidence "unit".
        seen = {ev["id"] for ev in about}
        about += [ev for ev in journal.events(kinds=ACTION_KINDS, limit=_SCAN * 4)
                  if ev["evidence"].get("unit") == subject and ev["id"] not in seen]
        about.sort(key=_order)
        self.about = about
        decisions = [ev for ev in about if ev["kind"] in DECISION_KINDS]
        self.decision = decisions[-1] if decisions else None
        self.ctx: list[dict] = []
        if self.decision is not None:
            t = self.decision["time"]
            self.ctx = journal.events(since=t - CONTEXT_BEFORE_S, until=t + FOLLOW_WINDOW_S)

    def t(self, ts: float) -> str:
        return _clock(ts, self.today)

    # -- the paragraph -------------------------------------------------------

    def explain(self) -> str:
        ev = self.decision
        if ev is None:
            if self.about:
                return (f"No decision about {self.subject} is on record; the latest event "
                        f"about it: {self.generic(self.about[-1])}.")
            return f"No decision about {self.subject} is on record."
        kind = ev["kind"]
        if kind in ("resource_acquire", "resource_release"):
            text = self.action(ev) + self.action_cause(ev)
        elif kind in ACTION_KINDS:
            text = self.action(ev) + self.failure_consequence(ev) + self.then(ev)
        elif kind == "placement":
            text = self.placement(ev, with_cause=True) + self.carried_out(ev)
        elif kind == "move":
            text = self.move(ev) + self.then(ev)
        elif kind == "fence":
            text = self.fence(ev) + self.fence_cause(ev) + self.carried_out(ev, "; then ")
        else:
            text = self.node_event(ev) + self.then(ev)
        return _sentence(text)

    # -- context queries ------------------------------------------------------

    def between(self, t0: float, t1: float) -> list[dict]:
        return [x for x in self.ctx if t0 <= x["time"] <= t1]

    def placement_for(self, unit: str, ev: dict) -> dict | None:
        """The newest placement of unit at or before ev."""
        found = None
        for x in self.ctx:
            if x["kind"] == "placement" and _unit_of(x) == unit and _before(x, ev):
                found = x
        return found

    def trigger_event(self, p: dict) -> dict | None:
        """What made placement decide p: the newest related event shortly
        before it (placement is recomputed within milliseconds of a change)."""
        pe = p["evidence"]
        unit = _unit_of(p)
        nodes = {pe.get("from"), pe.get("to")} - {None}
        best = None
        for x in self.between(p["time"] - TRIGGER_WINDOW_S, p["time"]):
            if x["kind"] not in TRIGGER_KINDS or not _before(x, p) or x["id"] == p["id"]:
                continue
            if x["kind"] in ("move", "resource_failed", "monitor_failed"):
                related = _unit_of(x) == unit
            elif x["kind"] in ("quorum_lost", "quorum_regained", "daemon_start",
                               "config_reload"):
                related = True
            else:
                related = x["node"] in nodes
            if related:
                best = x
        return best

    def caused(self, ev: dict) -> list[dict]:
        """Placements (one per unit) that ev triggered, directly or through a
        quorum change it caused."""
        out: dict[str, dict] = {}
        for p in self.between(ev["time"], ev["time"] + FOLLOW_WINDOW_S):
            if p["kind"] != "placement" or not _before(ev, p):
                continue
            trig = self.trigger_event(p)
            if trig is None:
                continue
            direct = trig["id"] == ev["id"]
            via_quorum = (trig["kind"] in ("quorum_lost", "quorum_regained")
                          and _before(ev, trig) and trig["time"] - ev["time"] <= 1.0)
            unit = _unit_of(p)
            if (direct or via_quorum) and unit is not None and unit not in out:
                out[unit] = p
        return list(out.values())[:MAX_FOLLOW]

    # -- sentences ----------------------------------------------------------------

    def generic(self, ev: dict) -> str:
        return f"{_one_line(ev['summary']).rstrip('.')} (at {self.t(ev['time'])})"

    def action(self, ev: dict) -> str:
        e, kind = ev["evidence"], ev["kind"]
        res = ev["resource"] or _unit_of(ev) or "the resource"
        node = ev["node"] or "this node"
        at = self.t(ev["time"])
        if kind == "resource_acquire":
            return f"{res} was started on {node} at {at} ({_result(e, 'start')})"
        if kind == "resource_release":
            return f"{res} was stopped on {node} at {at} ({_result(e, 'stop')})"
        if kind == "monitor_failed":
            return f"the monitor of {res} on {node} failed at {at} ({_result(e, 'monitor')})"
        verb = {"start": "start", "stop": "stop", "monitor": "pass its monitor"}.get(
            e.get("action"), "run")
        return f"{res} failed to {verb} on {node} at {at} ({_result(e, 'action')})"

    def action_cause(self, ev: dict) -> str:
        """' because placement chose beta: alpha went down at ...; quorum ...'."""
        e = ev["evidence"]
        unit = _unit_of(ev)
        p = self.placement_for(unit, ev) if unit else None
        if p is None:
            reason = e.get("reason")
            return f" because {_one_line(reason)}" if reason else ""
        pe = p["evidence"]
        to = pe.get("to")
        for_unit = f" for {unit}" if unit != ev["resource"] else ""
        head = f"placement chose {to}{for_unit}" if to else f"placement left {unit} on no node"
        trig = self.trigger_event(p)
        detail = (self.describe(trig, with_quorum=False) if trig
                  else _one_line(pe.get("reason") or p["summary"]))
        text = f" because {head}: {detail}"
        q = _quorum_text(pe.get("quorum"))
        if q and (q.startswith("quorum ") or "quorum" not in text):
            text += f"; {q}"
        if ev["kind"] == "resource_acquire":
            fence = self.fence_before(ev)
            if fence:
                text += f"; before that, {fence}"
        return text

    def failure_consequence(self, ev: dict) -> str:
        e = ev["evidence"]
        unit = _unit_of(ev) or "it"
        node = ev["node"] or "this node"
        if ev["kind"] == "monitor_failed" or e.get("action") == "start":
            return f"; {unit} is not placed on {node} again until the failure is cleared"
        if e.get("action") == "stop":
            return f"; {unit} stays held on {node} so that no other node starts it twice"
        return ""

    def fence_before(self, ev: dict) -> str | None:
        unit = _unit_of(ev)
        found = None
        for x in self.between(ev["time"] - TRIGGER_WINDOW_S, ev["time"]):
            if x["kind"] == "fence" and x["resource"] == unit and _before(x, ev):
                found = x
        return self.node_event(found) if found else None

    def describe(self, ev: dict, *, with_quorum: bool = True) -> str:
        if ev["kind"] in ACTION_KINDS:
            return self.action(ev)
        if ev["kind"] == "move":
            return self.move(ev)
        if ev["kind"] == "placement":
            return self.placement(ev, with_cause=False)
        return self.node_event(ev, with_quorum=with_quorum)

    def placement(self, p: dict, *, with_cause: bool) -> str:
        pe = p["evidence"]
        unit, src, dst = _unit_of(p) or "the unit", pe.get("from"), pe.get("to")
        at = self.t(p["time"])
        if dst and src and src != dst:
            text = f"placement moved {unit} from {src} to {dst} at {at}"
        elif dst:
            text = f"placement put {unit} on {dst} at {at}"
        else:
            text = f"placement took {unit} off {src or 'every node'} at {at}"
        if not with_cause:
            return text
        reason = _one_line(pe.get("reason") or "")
        trig = self.trigger_event(p)
        if reason and not (trig and trig["kind"] == "move"):
            text += f" because {reason}"
        if trig:
            text += f", after {self.describe(trig, with_quorum=False)}"
        q = _quorum_text(pe.get("quorum"))
        if q and (q.startswith("quorum ") or "quorum" not in text):
            text += f"; {q}"
        return text

    def carried_out(self, p: dict, lead: str = "; ") -> str:
        """'; www was started on beta at ...' for the actions that followed
        placement (or fencing) p, until the unit's next placement."""
        unit = _unit_of(p)
        acts: list[dict] = []
        for x in self.between(p["time"], p["time"] + FOLLOW_WINDOW_S):
            if not _before(p, x) or x["id"] == p["id"] or _unit_of(x) != unit:
                continue
            if x["kind"] == "placement":
                break
            if x["kind"] in ACTION_KINDS:
                acts.append(x)
        if not acts:
            return ""
        shown = [self.action(a) for a in acts[:MAX_FOLLOW]]
        if len(acts) > MAX_FOLLOW:
            shown.append(f"{len(acts) - MAX_FOLLOW} more action(s)")
        return lead + "; ".join(shown)

    def then(self, ev: dict) -> str:
        parts = [self.placement(p, with_cause=False) + self.carried_out(p)
                 for p in self.caused(ev)]
        return ". Then " + ". Then ".join(parts) if parts else ""

    def move(self, ev: dict) -> str:
        e = ev["evidence"]
        unit = _unit_of(ev) or "a unit"
        to = e.get("to") or "another node"
        return f"the operator moved {unit} to {to} at {self.t(ev['time'])}"

    def node_event(self, ev: dict, *, with_quorum: bool = True) -> str:
        e, kind = ev["evidence"], ev["kind"]
        n = ev["node"] or "this node"
        at = self.t(ev["time"])
        if kind == "node_down":
            reason = e.get("reason") or "timeout"
            if reason == "leave":
                text = f"{n} left the cluster at {at} (a clean shutdown, announced)"
            elif reason == "initdead":
                text = (f"{n} was declared down at {at}: it was not heard from within the "
                        "initial dead time after start")
            else:
                text = f"{n} went down at {at} ({self.silence(ev)})"
        elif kind == "node_up":
            links = [k for k, v in (e.get("links") or {}).items()
                     if isinstance(v, dict) and v.get("up")]
            text = f"{n} came up at {at}" + (f" (heard on {_names(links)})" if links else "")
        elif kind == "node_late":
            text = f"{n} was late at {at}"
            if e.get("silent_ms") is not None:
                text += f" (silent for {_ms(e['silent_ms'])})"
        elif kind == "node_restart":
            text = f"{n} restarted at {at}"
            if e.get("generation") is not None:
                text += f" (new generation {e['generation']})"
        elif kind == "standby":
            verb = "left standby" if e.get("standby") is False else "entered standby"
            text = f"{n} {verb} at {at}" + (f" (asked by {e['by']})" if e.get("by") else "")
        elif kind == "stall":
            text = self.stall(ev)
        elif kind == "fence":
            text = self.fence(ev)
        elif kind in ("quorum_lost", "quorum_regained"):
            q = e.get("quorum") or {}
            verb = "lost quorum" if kind == "quorum_lost" else "regained quorum"
            text = f"{n} {verb} at {at}"
            if isinstance(q, dict) and q.get("reason"):
                text += f" ({q['reason']})"
            return text
        else:
            return self.generic(ev)
        q = _quorum_text(e.get("quorum")) if with_quorum else None
        return text + (f"; {q}" if q else "")

    def stall(self, ev: dict) -> str:
        e = ev["evidence"]
        text = f"the engine on {ev['node'] or 'this node'} stalled at {self.t(ev['time'])}"
        stall, dead = e.get("stall_ms"), e.get("deadtime_ms")
        if stall is not None:
            text += f" for {_ms(stall)}"
        if stall is not None and dead is not None and float(stall) > float(dead):
            released = e.get("released") or []
            text += f", longer than the dead time ({_ms(dead)}), "
            text += (f"so it released {_names(released)} to be safe" if released
                     else "but it held nothing")
        return text

    def fence_cause(self, ev: dict) -> str:
        """' because it had gone down at ... holding web'."""
        down = None
        for x in self.between(ev["time"] - CONTEXT_BEFORE_S, ev["time"]):
            if x["kind"] == "node_down" and x["node"] == ev["node"] and _before(x, ev):
                down = x
        if down is None:
            return ""
        text = f" because {self.node_event(down, with_quorum=False)}"
        held = down["evidence"].get("held")
        if held:
            text += f" while holding {_names(held)}"
        return text

    def fence(self, ev: dict) -> str:
        e = ev["evidence"]
        unit = ev["resource"]
        text = f"{ev['node'] or 'a node'} was fenced at {self.t(ev['time'])}"
        if unit:
            text += f" before {unit} was taken over"
        ok = e.get("ok")
        if e.get("timed_out"):
            text += " (fencing timed out)"
        elif ok is not None:
            rc = f", rc {e['rc']}" if e.get("rc") is not None else ""
            text += f" ({'succeeded' if ok else 'FAILED'}{rc})"
        if ok is False:
            tail = _output_tail(e.get("output")) or e.get("error")
            if tail:
                text += f': "{tail}"'
            text += "; nothing is taken over from a node that could not be fenced"
        return text

    def silence(self, ev: dict) -> str:
        """'no heartbeat for 502 ms on lan; lan silent since 21:03:03.599'."""
        e = ev["evidence"]
        links = {k: v for k, v in (e.get("links") or {}).items() if isinstance(v, dict)}
        silent = {k: v.get("silent_ms") for k, v in links.items()}
        known = {k: float(s) for k, s in silent.items() if s is not None}
        total = e.get("silent_ms")
        if total is None and known:
            total = min(known.values())
        where = f" on {_names(list(links))}" if links else ""
        parts = [f"no heartbeat for {_ms(total)}{where}" if total is not None
                 else f"no heartbeat{where}"]
        parts += [f"{k} silent since {self.t(ev['time'] - s / 1000)}" for k, s in known.items()]
        parts += [f"nothing ever heard on {k}" for k, s in silent.items() if s is None]
        return "; ".join(parts)


def _order(ev: dict) -> tuple[float, int]:
    return (ev["time"], ev["id"])


def _unit_of(ev: dict) -> str | None:
    e = ev.get("evidence") or {}
    return e.get("unit") or ev.get("resource")


def _before(a: dict, b: dict) -> bool:
    """a happened at or before b (time, then journal order)."""
    return (a["time"], a["id"]) <= (b["time"], b["id"])


def _sentence(text: str) -> str:
    """Capitalise our own opening words, never a node or resource name."""
    text = text.strip()
    for word in ("placement ", "the "):
        if text.startswith(word):
            text = text[0].upper() + text[1:]
    if not text.endswith("."):
        text += "."
    return text


def why(journal: Journal, subject: str) -> str:
    """A short paragraph on the newest decision about a node or resource
    (or group): what happened, when, and why, from the recorded evidence.
    'No decision about X is on record.' when the journal has none."""
    return _Story(journal, subject).explain()
