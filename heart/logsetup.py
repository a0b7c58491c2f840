"""Where the daemon's log goes: stderr, syslog or the systemd journal.

Every journal event (``Daemon._event``) is also one log record, carrying the
journal's fields (id, kind, node, resource, summary, evidence) in
``record.heart_event`` (see :func:`event_extra`).  Each target writes one
line (one entry) per record:

* ``stderr``: ``2026-11-26T03:04:05.678Z heart[node1] INFO takeover:
  summary node=node2 resource=vip id=42 evidence={...}``; newlines in a
  summary are escaped, so one event is one line;
* ``syslog``: the same line without the time stamp, to /dev/log (facility
  daemon, tag ``heart``), so rsyslog / syslog-ng file it like any daemon;
* ``journald``: a native journal entry (the datagram protocol of
  systemd-journald's /run/systemd/journal/socket, written here; no library
  needed): MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=heart, HEART_NODE (this
  node) and, for events, HEART_EVENT, HEART_EVENT_ID, HEART_PEER (the
  event's node), HEART_RESOURCE and HEART_EVIDENCE (JSON), so that
  ``journalctl HEART_EVENT=takeover`` finds every takeover.

A target that cannot be used (no /dev/log, no journal socket) is an error
at start-up that names it, before the daemon changes anything.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import struct
import time
from typing import Any

from heart.journal import evidence_json

__all__ = ["JOURNAL_SOCKET", "LEVELS", "SYSLOG_SOCKET", "TARGETS", "LogSetupError",
           "configure", "event_extra", "format_line"]

TARGETS = ("stderr", "syslog", "journald")
LEVELS = ("debug", "info", "warning", "error")
SYSLOG_SOCKET = "/dev/log"
JOURNAL_SOCKET = "/run/systemd/journal/socket"

# logging level -> syslog priority (RFC 5424 severities)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class LogSetupError(Exception):
    """The log target cannot be used; the message says which and why."""


def event_extra(event_id: int | None, kind: str, summary: str, node: str | None,
                resource: str | None, evidence: dict | None) -> dict:
    """``extra=`` for the log record of one journal event."""
    return {"heart_event": {"id": event_id, "kind": kind, "summary": summary, "node": node,
                            "resource": resource, "evidence": evidence}}


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def format_line(record: logging.LogRecord) -> str:
    """The record as one line, without time stamp or tag: ``LEVEL kind: summary
    node=.. resource=.. id=.. evidence={..}`` for events, ``LEVEL message``
    otherwise."""
    ev = getattr(record, "heart_event", None)
    if not ev:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return f"{record.levelname} {_one_line(text)}"
    parts = [f"{record.levelname} {ev['kind']}: {_one_line(str(ev['summary']))}"]
    for key in ("node", "resource", "id"):
        if ev.get(key) is not None:
            parts.append(f"{key}={ev[key]}")
    if ev.get("evidence"):
        parts.append("evidence=" + evidence_json(ev["evidence"], sort_keys=True,
                                                 separators=(",", ":")))
    return " ".join(parts)


class _StderrFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"
        return f"{stamp} heart[{self.node}] {format_line(record)}"


class _SyslogFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        # SysLogHandler puts "<PRI>" in front; "heart[pid]: " is the tag
        return f"heart[{os.getpid()}]: [{self.node}] {format_line(record)}"


def _journal_field(name: str, value: Any) -> bytes:
    """One field of the native journal protocol: NAME=value\\n, or for a
    value with a newline NAME\\n<64-bit little-endian length><value>\\n."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


# A datagram larger than this would need a memfd; evidence is cut instead.
_JOURNAL_EVIDENCE_MAX = 64 * 1024


class JournaldHandler(logging.Handler):
    """Native journal entries over systemd-journald's datagram socket."""

    def __init__(self, node: str, path: str = JOURNAL_SOCKET, source: str = "--log") -> None:
        super().__init__()
        self.node = node
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise LogSetupError(
                f"{source} journald: cannot reach the journal at {path}: {exc.strerror or exc}"
                f" (is systemd-journald running? use --log stderr or syslog)") from exc

    def entry(self, record: logging.LogRecord) -> bytes:
        ev = getattr(record, "heart_event", None)
        if ev:
            message = f"{ev['kind']}: {ev['summary']}"   # the fields carry the rest
        else:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = [
            ("MESSAGE", message),
            ("PRIORITY", _PRIORITY.get(record.levelno, 6)),
            ("SYSLOG_IDENTIFIER", "heart"),
            ("SYSLOG_PID", os.getpid()),
            ("HEART_NODE", self.node),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", record.lineno),
            ("CODE_FUNC", record.funcName),
            ("LOGGER", record.name),
        ]
        if ev:
            fields.append(("HEART_EVENT", ev["kind"]))
            if ev.get("id") is not None:
                fields.append(("HEART_EVENT_ID", ev["id"]))
            if ev.get("node") is not None:
                fields.append(("HEART_PEER", ev["node"]))
            if ev.get("resource") is not None:
                fields.append(("HEART_RESOURCE", ev["resource"]))
            if ev.get("evidence"):
                blob = evidence_json(ev["evidence"], sort_keys=True)
                if len(blob) > _JOURNAL_EVIDENCE_MAX:
                    blob = blob[:_JOURNAL_EVIDENCE_MAX] + "...(cut)"
                fields.append(("HEART_EVIDENCE", blob))
        return b"".join(_journal_field(k, v) for k, v in fields)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.send(self.entry(record))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def configure(target: str = "stderr", level: str = "info", *, node: str,
              stream: Any = None, syslog_path: str = SYSLOG_SOCKET,
              journal_path: str = JOURNAL_SOCKET, source: str = "--log") -> logging.Handler:
    """Send the process's log to target (replacing what an earlier call
    installed): the ``heart`` loggers at ``level``, everything else (asyncio,
    libraries) at warning and above.  LogSetupError names an unusable target
    and where it was chosen (``source``: "--log" or "$HEART_LOG")."""
    if target not in TARGETS:
        raise LogSetupError(f"{source} {target!r}: expected one of {', '.join(TARGETS)}")
    if level not in LEVELS:
        raise LogSetupError(f"--log-level {level!r}: expected one of {', '.join(LEVELS)}")
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_StderrFormatter(node))
    elif target == "syslog":
        def unusable(why: str) -> LogSetupError:
            return LogSetupError(f"{source} syslog: cannot reach {syslog_path}: {why} (is a "
                                 f"syslog daemon running? use --log stderr or journald)")
        # SysLogHandler does not fail on a missing socket (it retries at
        # each record): check here, before anything starts
        if not os.path.exists(syslog_path):
            raise unusable("it does not exist")
        try:
            handler = logging.handlers.SysLogHandler(
                address=syslog_path, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        except OSError as exc:
            raise unusable(exc.strerror or str(exc)) from exc
        handler.setFormatter(_SyslogFormatter(node))
    else:
        handler = JournaldHandler(node, journal_path, source)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_heart_logsetup", False):
            root.removeHandler(old)
            old.close()
    handler._heart_logsetup = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("heart").setLevel(getattr(logging, level.upper()))
    return handler
