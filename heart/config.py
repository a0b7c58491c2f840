"""Reading and checking heart.toml.

``load()`` reads one TOML file and checks *all* of it before the daemon does
anything: every problem is collected (not just the first), each one naming the
file, the line, the key and what was expected, so an operator can fix the whole
file in one pass instead of restarting the daemon once per typo.  A config that
loads is complete: every default is filled in, every reference (node, link,
resource, key id) resolves, every script and agent exists and is executable,
and every timing value is one the C engine accepts.

tomllib gives no positions for values, so a small scanner (``_Locator``) walks
the source text and records the line of every table header, key and array
element; it only has to understand text that tomllib already accepted.
"""
from __future__ import annotations

import difflib
import errno
import ipaddress
import json
import math
import os
import re
import shlex
import shutil
import socket as _socket
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

from heart import _core

__all__ = [
    "HANDLER_EVENTS",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "EngineConfig",
    "HandlerConfig",
    "LinkConfig",
    "MetricsConfig",
    "NodeConfig",
    "QuorumConfig",
    "ResourceConfig",
    "TimingConfig",
    "UnitConfig",
    "generate_key_file",
    "load",
    "parse_duration",
    "write_key_file",
]

HANDLER_EVENTS = ("node_up", "node_late", "node_down", "resource_acquire",
                  "resource_release", "resource_failed", "quorum_lost",
                  "quorum_regained", "stall", "duplicate_owner")

DEFAULT_PORT = 694
DEFAULT_STATE_DIR = "/var/lib/heart"
DEFAULT_SOCKET = "/run/heart/heart.sock"
DEFAULT_OCF_ROOT = "/usr/lib/ocf"
DEFAULT_ALGORITHM = "aes-256-gcm"
DEFAULT_METRICS_PORT = 9721

MAX_KEYS = 8              # HB_MAX_KEYS: keys one engine keyring holds at once
MAX_KEY_ID = 255          # key ids travel as one byte in the packet header
MAX_ID = 2**32 - 1        # node and cluster ids are uint32 on the wire
MAX_ENGINE_US = 2**32 - 1  # the engine keeps its timing values in uint32 microseconds
MAX_IFNAME = 15           # IFNAMSIZ - 1
MAX_SOCKET_PATH = 107     # sizeof(sun_path) - 1 on Linux
MAX_NAME = 64
KEY_FILE_MAX_BYTES = 64 * 1024


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------

@dataclass
class LinkConfig:
    """One [[link]]: a network path heartbeats travel on.  Its index in
    ``Config.links`` is the engine's link id."""
    name: str
    kind: str = "unicast"
    port: int = DEFAULT_PORT
    group: str | None = None
    interface: str | None = None
    bind: str | None = None
    ttl: int = 1
    line: int | None = None


@dataclass
class NodeConfig:
    """One [[node]].  ``addresses`` maps a link name to (ip, port), the port
    already defaulted to the link's port."""
    name: str
    id: int
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    line: int | None = None


@dataclass
class TimingConfig:
    """[timing]; all durations in microseconds, ready for the engine."""
    interval_us: int = 100_000
    warntime_us: int = 300_000
    deadtime_us: int = 500_000
    initdead_us: int = 2_000_000
    detector: str = "fixed"
    phi_threshold: float = 8.0
    phi_min_std_us: int | None = None
    phi_acceptable_pause_us: int = 0
    line: int | None = None


@dataclass
class EngineConfig:
    """[engine]: how the C heartbeat thread runs."""
    realtime_priority: int = 0
    lock_memory: bool = False
    spin_us: int = 0
    event_capacity: int = 4096
    line: int | None = None


@dataclass
class AuthConfig:
    """[auth] plus the keys read from the key file (never printed)."""
    key_file: str
    algorithm: str = DEFAULT_ALGORITHM
    keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    send_key: int = 1
    line: int | None = None


@dataclass
class QuorumConfig:
    """[quorum]."""
    ping_nodes: list[str] = field(default_factory=list)
    ping_interval_us: int = 1_000_000
    ping_timeout_us: int = 1_000_000
    wait_for_all: bool = False
    no_quorum_policy: str = "release"
    fence: list[str] | None = None
    fence_timeout_us: int = 60_000_000
    line: int | None = None


@dataclass
class MetricsConfig:
    """[metrics]: the optional Prometheus endpoint; listen None: off."""
    listen: tuple[str, int] | None = None
    line: int | None = None


@dataclass
class ResourceConfig:
    """One [[resource]].  ``monitor_timeout_us`` 0 means "same as
    timeout_us" (load() always fills it in)."""
    name: str
    type: str
    script: str | None = None
    agent: str | None = None
    ocf_root: str = DEFAULT_OCF_ROOT
    params: dict[str, str] = field(default_factory=dict)
    timeout_us: int = 20_000_000
    monitor_interval_us: int = 0
    monitor_timeout_us: int = 0
    retries: int = 2
    group: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        if not self.monitor_timeout_us:
            self.monitor_timeout_us = self.timeout_us


@dataclass
class UnitConfig:
    """What placement places: a [[group]] or a resource in no group."""
    name: str
    resources: list[str]
    nodes: list[str]
    auto_failback: bool = True
    is_group: bool = False
    line: int | None = None


@dataclass
class HandlerConfig:
    """One [[handler]]: a command run on cluster events."""
    events: frozenset[str]
    command: list[str]
    timeout_us: int = 10_000_000
    line: int | None = None


@dataclass
class Config:
    """The whole, checked configuration of one node."""
    path: str
    cluster_name: str
    cluster_id: int
    node_name: str
    state_dir: str
    socket: str
    attributes_interval_us: int
    timing: TimingConfig
    engine: EngineConfig
    auth: AuthConfig
    links: list[LinkConfig]
    nodes: list[NodeConfig]
    quorum: QuorumConfig
    resources: dict[str, ResourceConfig]
    units: list[UnitConfig]
    handlers: list[HandlerConfig]
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes are: "
                       f"{', '.join(n.name for n in self.nodes)}")

    def node_by_id(self, node_id: int) -> NodeConfig:
        """The node a heartbeat's node id belongs to (the engine reports ids)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node has id {node_id}")

    def link(self, name: str) -> LinkConfig:
        for lk in self.links:
            if lk.name == name:
                return lk
        raise KeyError(f"no link named {name!r}; links are: "
                       f"{', '.join(lk.name for lk in self.links)}")

    @property
    def local(self) -> NodeConfig:
        return self.node(self.node_name)

    @property
    def peers(self) -> list[NodeConfig]:
        """Every node but this one, in config order."""
        return [n for n in self.nodes if n.name != self.node_name]

    def unit_of(self, name: str) -> UnitConfig:
        """The unit called name, or the unit a resource called name is in."""
        for u in self.units:
            if u.name == name:
                return u
        for u in self.units:
            if name in u.resources:
                return u
        raise KeyError(f"no group or resource named {name!r}")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it is and what to do about it."""
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one configuration; str() lists them one per line."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.issues,))


# ---------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------

_UNITS_US = {"us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000,
             "m": 60_000_000, "h": 3_600_000_000}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([^\s0-9.]*)\s*$")
_DURATION_HELP = 'expected a duration such as "500ms" or "2s" (units: us, ms, s, m, h)'


def parse_duration(value: object) -> int:
    """A duration ("50ms", "1.5s", "2m") in whole microseconds.  A bare
    number is refused: "50" could mean seconds or milliseconds, and guessing
    wrong by 1000x is how failover gets either useless or trigger-happy."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected a duration string such as \"500ms\" or \"2s\", "
                        f"got {_describe(value)}")
    if not isinstance(value, str):
        raise TypeError(f"{value} has no unit; expected a duration string such as "
                        f"\"500ms\" or \"2s\" (in quotes)")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"\"{value}\" is negative; durations must be 0 or more")
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"\"{value}\" is not a duration; {_DURATION_HELP}")
    number, unit = m.group(1), m.group(2)
    if not unit:
        raise ValueError(f"\"{value}\" has no unit; expected a duration such as "
                         f"\"500ms\" or \"2s\"")
    if unit not in _UNITS_US:
        raise ValueError(f"\"{value}\": unknown unit \"{unit}\"; {_DURATION_HELP}")
    try:
        us = Decimal(number) * _UNITS_US[unit]
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"\"{value}\" is not a duration; {_DURATION_HELP}") from None
    return int(us.to_integral_value())


def format_duration(us: int) -> str:
    """Microseconds as the shortest exact duration string ("1.5s", "100ms")."""
    if us == 0:
        return "0s"
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if us % size == 0:
            return f"{us // size}{unit}"
    if us >= 1_000_000 and us % 1000 == 0:
        return f"{Decimal(us) / 1_000_000}s"
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


# ---------------------------------------------------------------------------
# Key file
# ---------------------------------------------------------------------------

def generate_key_file(path: str, key_id: int = 1) -> None:
    """Write a new key file with one random key, mode 0600.  Refuses to
    overwrite: replacing the key on one node silently cuts it off from the
    others, so the operator must remove the old file on purpose."""
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not \
            1 <= key_id <= MAX_KEY_ID:
        raise ValueError(f"key id must be an integer from 1 to {MAX_KEY_ID}, got {key_id!r}")
    key = os.urandom(_core.KEY_LEN)
    text = (
        "# Heart authentication key file: \"<key id> <64 hex digits>\" per line.\n"
        "# Copy it to every node (same content, mode 0600, owned by root).\n"
        f"{key_id} {key.hex()}\n"
    )
    write_key_file(path, text)


def write_key_file(path: str, text: str, overwrite: bool = False) -> None:
    """Write text to path as a key file: mode 0600 (whatever the umask),
    fsynced before it counts as written.

    Without overwrite, an existing path (a file, a directory or a symlink,
    even a dangling one) is refused with FileExistsError and left alone; if
    writing fails, the new file is removed.  With overwrite, the text goes to a
    new file next to path that is then renamed over it: a symlink at path is
    replaced, never followed, and if anything fails the old file is left as it
    was and the temporary file is removed."""
    path = os.fspath(path)
    data = text.encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    if not overwrite:
        target = path
        try:
            fd = os.open(target, flags, 0o600)   # O_EXCL: never follows a symlink
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing key file "
                                  "(remove it first if you really mean to replace the key)",
                                  path) from None
    else:
        head, tail = os.path.split(path)
        while True:
            target = os.path.join(head, f".{tail}.{os.urandom(6).hex()}.tmp")
            try:
                fd = os.open(target, flags, 0o600)
                break
            except FileExistsError:  # pragma: no cover - 48 random bits collided
                continue
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask can only remove bits, but be explicit
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(target, path)  # replaces a symlink itself, not what it points to
    except BaseException:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------
# Locating keys in the source text
# ---------------------------------------------------------------------------

Path = tuple  # ("node", 1, "addresses", "lan"): str keys, int array indexes

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _LocatorError(Exception):
    pass


class _Locator:
    """Line numbers of table headers, keys and array elements.

    It mirrors TOML's structure closely enough to know where things are:
    strings (all four kinds, so a "[[node]]" inside a multi-line string is
    not a header), arrays (each element gets its own line), inline tables
    (their keys get the line they are written on), dotted keys and
    ``[[array]]`` headers, counted so the Nth ``[[node]]`` is ``node[N-1]``.
    It also notes keys and tables defined twice, to explain tomllib's
    position-less "Cannot overwrite a value".
    """

    def __init__(self, text: str):
        self.s = text
        self.n = len(text)
        self.i = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self._explicit: set[Path] = set()
        self._aot: dict[Path, int] = {}
        self._headers: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int, int]] = []  # (path, line, first line)
        self.table: Path = ()

    # -- public ------------------------------------------------------------

    @classmethod
    def scan(cls, text: str) -> _Locator:
        loc = cls(text)
        try:
            loc._run()
        except (_LocatorError, IndexError):
            pass  # keep what was found; lines after the problem are unknown
        return loc

    def line_of(self, path: Path) -> int | None:
        """The line of path, else of its nearest recorded parent."""
        for k in range(len(path), 0, -1):
            ln = self.lines.get(tuple(path[:k]))
            if ln is not None:
                return ln
        return None

    def exact(self, path: Path) -> int | None:
        return self.lines.get(tuple(path))

    # -- recording ---------------------------------------------------------

    def _rec(self, path: Path, line: int, explicit: bool = True) -> None:
        if path not in self.lines or (explicit and path not in self._explicit):
            self.lines[path] = line
        if explicit:
            self._explicit.add(path)

    def _rec_key(self, path: Path, line: int) -> None:
        for k in range(1, len(path)):
            self._rec(path[:k], line, explicit=False)
        if path in self._explicit:
            self.duplicates.append((path, line, self.lines[path]))
            return
        self._rec(path, line)

    # -- scanning ----------------------------------------------------------

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < self.n else ""

    def _skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def _skip_comment(self) -> None:
        if self._peek() == "#":
            while self.i < self.n and self.s[self.i] != "\n":
                self.i += 1

    def _skip_all(self) -> None:
        """Whitespace, newlines and comments."""
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "\n":
                self.i += 1
                self.line += 1
            elif c == "#":
                self._skip_comment()
            else:
                return

    def _run(self) -> None:
        while True:
            self._skip_all()
            if self.i >= self.n:
                return
            if self.s[self.i] == "[":
                self._header()
            else:
                line = self.line
                parts = self._key()
                self._expect("=")
                path = self.table + parts
                self._rec_key(path, line)
                self._value(path)
            self._skip_ws()
            self._skip_comment()
            if self.i < self.n and self.s[self.i] not in "\r\n":
                raise _LocatorError(f"unexpected text at line {self.line}")

    def _expect(self, ch: str) -> None:
        self._skip_ws()
        if not self.s.startswith(ch, self.i):
            raise _LocatorError(f"expected {ch!r} at line {self.line}")
        self.i += len(ch)
        self._skip_ws()

    def _header(self) -> None:
        line = self.line
        double = self.s.startswith("[[", self.i)
        self.i += 2 if double else 1
        self._skip_ws()
        parts = self._key()
        self._expect("]]" if double else "]")
        resolved: Path = ()
        for k, part in enumerate(parts):
            resolved += (part,)
            if double and k == len(parts) - 1:
                idx = self._aot.get(resolved, 0)
                self._aot[resolved] = idx + 1
                if resolved not in self._explicit:
                    self._rec(resolved, line)
                resolved += (idx,)
            elif resolved in self._aot and k < len(parts) - 1:
                resolved += (self._aot[resolved] - 1,)
            elif k < len(parts) - 1:
                self._rec(resolved, line, explicit=False)
        if resolved in self._headers:
            self.duplicates.append((resolved, line, self._headers[resolved]))
        else:
            self._headers[resolved] = line
        self._rec(resolved, line)
        self.table = resolved

    def _key(self) -> Path:
        parts: list[str] = []
        while True:
            self._skip_ws()
            c = self._peek()
            if c == '"':
                start = self.i + 1
                self._basic_string()
                raw = self.s[start:self.i - 1]
                try:
                    parts.append(json.loads('"' + raw + '"'))
                except ValueError:
                    parts.append(raw)
            elif c == "'":
                start = self.i + 1
                self._literal_string()
                parts.append(self.s[start:self.i - 1])
            else:
                start = self.i
                while self.i < self.n and self.s[self.i] in _BARE_KEY_CHARS:
                    self.i += 1
                if self.i == start:
                    raise _LocatorError(f"expected a key at line {self.line}")
                parts.append(self.s[start:self.i])
            self._skip_ws()
            if self._peek() == ".":
                self.i += 1
                continue
            return tuple(parts)

    def _value(self, path: Path) -> None:
        s, i = self.s, self.i
        if s.startswith('"""', i):
            self._multi_string('"""', escapes=True)
        elif s.startswith("'''", i):
            self._multi_string("'''", escapes=False)
        elif self._peek() == '"':
            self._basic_string()
        elif self._peek() == "'":
            self._literal_string()
        elif self._peek() == "[":
            self._array(path)
        elif self._peek() == "{":
            self._inline_table(path)
        else:
            start = self.i
            while self.i < self.n and self.s[self.i] not in ",]}#\r\n":
                self.i += 1
            if self.i == start:
                raise _LocatorError(f"expected a value at line {self.line}")

    def _basic_string(self) -> None:
        self.i += 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
            elif c == '"':
                self.i += 1
                return
            elif c == "\n":
                raise _LocatorError("newline in a string")
            else:
                self.i += 1
        raise _LocatorError("unterminated string")

    def _literal_string(self) -> None:
        end = self.s.find("'", self.i + 1)
        nl = self.s.find("\n", self.i + 1)
        if end < 0 or (0 <= nl < end):
            raise _LocatorError("unterminated string")
        self.i = end + 1

    def _multi_string(self, delim: str, escapes: bool) -> None:
        self.i += 3
        while self.i < self.n:
            c = self.s[self.i]
            if escapes and c == "\\":
                if self._peek(1) == "\n":
                    self.line += 1
                self.i += 2
            elif self.s.startswith(delim, self.i):
                self.i += 3
                extra = 0  # up to two quotes may end the content: """a"""""
                while extra < 2 and self._peek() == delim[0]:
                    self.i += 1
                    extra += 1
                return
            else:
                if c == "\n":
                    self.line += 1
                self.i += 1
        raise _LocatorError("unterminated multi-line string")

    def _array(self, path: Path) -> None:
        self.i += 1
        idx = 0
        while True:
            self._skip_all()
            c = self._peek()
            if c == "":
                raise _LocatorError("unterminated array")
            if c == "]":
                self.i += 1
                return
            self._rec_key(path + (idx,), self.line)
            self._value(path + (idx,))
            idx += 1
            self._skip_all()
            if self._peek() == ",":
                self.i += 1
            elif self._peek() != "]":
                raise _LocatorError(f"expected ',' or ']' at line {self.line}")

    def _inline_table(self, path: Path) -> None:
        self.i += 1
        while True:
            self._skip_all()
            c = self._peek()
            if c == "":
                raise _LocatorError("unterminated inline table")
            if c == "}":
                self.i += 1
                return
            line = self.line
            parts = self._key()
            self._expect("=")
            sub = path + parts
            self._rec_key(sub, line)
            self._value(sub)
            self._skip_all()
            if self._peek() == ",":
                self.i += 1
            elif self._peek() != "}":
                raise _LocatorError(f"expected ',' or '}}' at line {self.line}")


# ---------------------------------------------------------------------------
# Helpers for messages
# ---------------------------------------------------------------------------

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_key(path: Path) -> str:
    """("node", 1, "addresses", "lan") -> "node[1].addresses.lan"."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            text = p if _BARE_KEY_RE.match(p) else json.dumps(p)
            out += f".{text}" if out else text
    return out


def _describe(v: object) -> str:
    """A value as the operator wrote it, with its TOML type."""
    if isinstance(v, bool):
        return f"{'true' if v else 'false'} (a boolean)"
    if isinstance(v, int):
        return f"{v} (an integer)"
    if isinstance(v, float):
        return f"{v} (a number)"
    if isinstance(v, str):
        shown = v if len(v) <= 60 else v[:57] + "..."
        return f"{json.dumps(shown, ensure_ascii=False)} (a string)"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return f"{v} (a date/time)"


def _q(s: object) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def _one_of(choices: Iterable[str]) -> str:
    return ", ".join(_q(c) for c in choices)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {_q(close[0])}?" if close else ""


def _exec_problem(path: str) -> str | None:
    """Why path cannot be run, or None."""
    if not os.path.lexists(path):
        return f"{path} does not exist"
    if not os.path.exists(path):
        return f"{path} is a broken symbolic link"
    if os.path.isdir(path):
        return f"{path} is a directory, not a program"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable (chmod +x {path})"
    return None


def _parse_address(text: str) -> tuple[str, int | None]:
    """ "192.0.2.1", "192.0.2.1:7001", "2001:db8::1", "[2001:db8::1]:7001"
    -> (normalized ip, port or None).  Raises ValueError with a reason."""
    t = text.strip()
    port: str | None = None
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ValueError("has \"[\" but no \"]\"; write IPv6 with a port as "
                             "\"[2001:db8::1]:7001\"")
        host, rest = t[1:end], t[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected \":<port>\" after \"]\"")
            port = rest[1:]
    elif t.count(":") == 1:
        host, port = t.split(":")
    else:
        host = t
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("is not a numeric IPv4 or IPv6 address (host names are not "
                         "resolved: heartbeats must not depend on DNS)") from None
    p: int | None = None
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"port {_q(port)} is not a number from 1 to 65535")
        p = int(port)
    return str(ip), p


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# Keys of every table, for unknown-key checks and "belongs in [x]" hints.
_CLUSTER_KEYS = ("name", "id", "node", "state_dir", "socket", "attributes_interval")
_TIMING_KEYS = ("interval", "warntime", "deadtime", "initdead", "detector",
                "phi_threshold", "phi_min_std", "phi_acceptable_pause")
_ENGINE_KEYS = ("realtime_priority", "lock_memory", "spin", "event_capacity")
_AUTH_KEYS = ("key_file", "algorithm", "send_key")
_LINK_KEYS = ("name", "kind", "port", "group", "interface", "bind", "ttl")
_NODE_KEYS = ("name", "id", "addresses")
_QUORUM_KEYS = ("ping_nodes", "ping_interval", "ping_timeout", "wait_for_all",
                "no_quorum_policy", "fence", "fence_timeout")
_RESOURCE_KEYS = ("name", "type", "script", "agent", "ocf_root", "params", "timeout",
                  "monitor_interval", "monitor_timeout", "retries", "nodes",
                  "auto_failback")
_GROUP_KEYS = ("name", "resources", "nodes", "auto_failback")
_HANDLER_KEYS = ("events", "command", "timeout")
_METRICS_KEYS = ("listen",)
_TABLES: dict[str, tuple[str, ...]] = {
    "cluster": _CLUSTER_KEYS, "timing": _TIMING_KEYS, "engine": _ENGINE_KEYS,
    "auth": _AUTH_KEYS, "link": _LINK_KEYS, "node": _NODE_KEYS, "quorum": _QUORUM_KEYS,
    "resource": _RESOURCE_KEYS, "group": _GROUP_KEYS, "handler": _HANDLER_KEYS,
    "metrics": _METRICS_KEYS,
}
_ARRAY_TABLES = ("link", "node", "resource", "group", "handler")


def _table_label(name: str) -> str:
    return f"[[{name}]]" if name in _ARRAY_TABLES else f"[{name}]"


_MISSING: Any = object()


# ---------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------

class _Checker:
    """Builds a Config from parsed TOML, collecting every issue."""

    def __init__(self, display: str, abspath: str, loc: _Locator, node_name: str | None,
                 read_keys: bool = True):
        self.file = display
        self.abspath = abspath
        self.dir = os.path.dirname(abspath)
        self.loc = loc
        self.node_arg = node_name
        self.read_keys_file = read_keys
        self.issues: list[ConfigIssue] = []

    # -- reporting ---------------------------------------------------------

    def error(self, path: Path, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.loc.line_of(path),
                                       format_key(path), message))

    def file_error(self, file: str, line: int | None, message: str) -> None:
        self.issues.append(ConfigIssue(file, line, "", message))

    def where(self, path: Path) -> str:
        ln = self.loc.line_of(path)
        return f" (line {ln})" if ln is not None else ""

    # -- typed getters -----------------------------------------------------

    def unknown_keys(self, tbl: dict, path: Path, table: str) -> None:
        allowed = _TABLES[table]
        for k in tbl:
            if k in allowed:
                continue
            msg = f"unknown key in {_table_label(table)}; expected one of: {', '.join(allowed)}"
            close = _did_you_mean(k, allowed)
            if close:
                msg += close
            else:
                homes = [t for t, keys in _TABLES.items() if k in keys and t != table]
                if homes:
                    msg += (f"; {k} is a key of {' or '.join(_table_label(h) for h in homes)}"
                            f": is it below the wrong table header?")
            self.error(path + (k,), msg)

    def _get(self, tbl: dict, path: Path, key: str, default: Any, example: str) -> Any:
        if key in tbl:
            return tbl[key]
        if default is _MISSING:
            hint = f", e.g. {key} = {example}" if example else ""
            self.error(path + (key,), f"required key is missing{hint}")
        return _MISSING

    def string(self, tbl: dict, path: Path, key: str, default: Any = _MISSING,
               example: str = "") -> Any:
        v = self._get(tbl, path, key, default, example)
        if v is _MISSING:
            return None if default is _MISSING else default
        if not isinstance(v, str):
            self.error(path + (key,), f"expected a string (in quotes), got {_describe(v)}")
            return None if default is _MISSING else default
        if not v.strip():
            self.error(path + (key,), "must not be empty")
            return None if default is _MISSING else default
        return v

    def name(self, tbl: dict, path: Path, key: str = "name", example: str = "") -> str | None:
        v = self.string(tbl, path, key, example=example)
        if v is None:
            return None
        if len(v) > MAX_NAME or not _NAME_RE.match(v):
            self.error(path + (key,), f"{_q(v)} is not a valid name; use letters, digits, "
                                      f"'_', '-' and '.', starting with a letter or digit, "
                                      f"at most {MAX_NAME} characters")
            return None
        return v

    def integer(self, tbl: dict, path: Path, key: str, default: Any = _MISSING,
                lo: int | None = None, hi: int | None = None, example: str = "") -> Any:
        v = self._get(tbl, path, key, default, example)
        bad = None if default is _MISSING else default
        if v is _MISSING:
            return bad
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, str) and v.strip().isdigit():
                self.error(path + (key,), f"expected an integer without quotes, got "
                                          f"{_describe(v)}; write {key} = {v.strip()}")
            else:
                self.error(path + (key,), f"expected an integer, got {_describe(v)}")
            return bad
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = (f"from {lo} to {hi}" if lo is not None and hi is not None
                   else f"at least {lo}" if lo is not None else f"at most {hi}")
            self.error(path + (key,), f"{v} is out of range; expected an integer {rng}")
            return bad
        return v

    def boolean(self, tbl: dict, path: Path, key: str, default: bool) -> bool:
        v = self._get(tbl, path, key, default, "")
        if v is _MISSING:
            return default
        if not isinstance(v, bool):
            hint = ""
            if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "on", "off"):
                word = "true" if v.lower() in ("true", "yes", "on") else "false"
                hint = f"; write {key} = {word}"
            self.error(path + (key,), f"expected true or false (no quotes), got {_describe(v)}"
                                      f"{hint}")
            return default
        return v

    def number(self, tbl: dict, path: Path, key: str, default: float,
               positive: bool = False) -> float:
        v = self._get(tbl, path, key, default, "")
        if v is _MISSING:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(path + (key,), f"expected a number, got {_describe(v)}")
            return default
        v = float(v)
        if not math.isfinite(v) or (positive and v <= 0):
            self.error(path + (key,), f"{v} is out of range; expected a number greater than 0")
            return default
        return v

    def duration(self, tbl: dict, path: Path, key: str, default: Any = _MISSING,
                 minimum: int | None = 0, maximum: int | None = None,
                 what_min: str = "") -> Any:
        v = self._get(tbl, path, key, default, '"1s"')
        bad = None if default is _MISSING else default
        if v is _MISSING:
            return bad
        try:
            us = parse_duration(v)
        except (TypeError, ValueError) as exc:
            self.error(path + (key,), str(exc))
            return bad
        if minimum is not None and us < minimum:
            self.error(path + (key,), f"{_q(v)} is too short; expected at least "
                                      f"{what_min or format_duration(minimum)}")
            return bad
        if maximum is not None and us > maximum:
            self.error(path + (key,), f"{_q(v)} is too long; expected at most "
                                      f"{format_duration(maximum)}")
            return bad
        return us

    def choice(self, tbl: dict, path: Path, key: str, choices: Sequence[str],
               default: Any = _MISSING) -> Any:
        v = self.string(tbl, path, key, default, example=_q(choices[0]))
        if v is None or v == default:
            return v
        if v not in choices:
            self.error(path + (key,), f"{_q(v)} is not one of {_one_of(choices)}"
                                      f"{_did_you_mean(v, choices)}")
            return None if default is _MISSING else default
        return v

    def string_list(self, tbl: dict, path: Path, key: str, default: Any = _MISSING,
                    example: str = "") -> Any:
        v = self._get(tbl, path, key, default, example)
        if v is _MISSING:
            return None if default is _MISSING else list(default)
        if isinstance(v, str):
            self.error(path + (key,), f"expected an array of strings, got {_describe(v)}; "
                                      f"write {key} = [{_q(v)}]")
            return None
        if not isinstance(v, list):
            self.error(path + (key,), f"expected an array of strings, got {_describe(v)}")
            return None
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str) or not item.strip():
                self.error(path + (key, i), f"expected a non-empty string, got "
                                            f"{_describe(item)}")
            else:
                out.append(item)
        return out if len(out) == len(v) else None

    def argv(self, tbl: dict, path: Path, key: str, default: Any = _MISSING) -> Any:
        """A command: a string split like a shell would (no shell runs it),
        or an array of strings.  Its program must exist and be executable."""
        v = self._get(tbl, path, key, default, '"/usr/local/bin/heart-notify"')
        if v is _MISSING:
            return None
        if isinstance(v, str):
            try:
                argv = shlex.split(v)
            except ValueError as exc:
                self.error(path + (key,), f"cannot split {_describe(v)} into arguments: "
                                          f"{exc}")
                return None
        else:
            argv = self.string_list(tbl, path, key)
            if argv is None:
                return None
        if not argv:
            self.error(path + (key,), "the command is empty")
            return None
        prog = argv[0]
        if "/" in prog:
            prog = os.path.normpath(os.path.join(self.dir, prog))
            why = _exec_problem(prog)
            if why:
                self.error(path + (key,), why)
            argv = [prog] + argv[1:]
        elif shutil.which(prog) is None:
            self.error(path + (key,), f"{prog} is not found in PATH; give its full path")
        return argv

    def table(self, data: dict, key: str, required: bool = False) -> dict:
        v = data.get(key, _MISSING)
        if v is _MISSING:
            if required:
                keys = _TABLES[key]
                self.error((key,), f"required table [{key}] is missing (keys: "
                                   f"{', '.join(keys)})")
            return {}
        if not isinstance(v, dict):
            if isinstance(v, list):
                self.error((key,), f"expected one [{key}] table, got [[{key}]] (an array "
                                   f"of tables); write [{key}] with single brackets")
            else:
                self.error((key,), f"expected a [{key}] table, got {_describe(v)}")
            return {}
        self.unknown_keys(v, (key,), key)
        return v

    def array_tables(self, data: dict, key: str) -> list[tuple[Path, dict]]:
        v = data.get(key, _MISSING)
        if v is _MISSING:
            return []
        if isinstance(v, dict):
            self.error((key,), f"expected [[{key}]] (double brackets: there can be several), "
                               f"got a single [{key}] table")
            return []
        if not isinstance(v, list):
            self.error((key,), f"expected [[{key}]] tables, got {_describe(v)}")
            return []
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                self.error((key, i), f"expected a table, got {_describe(item)}")
                continue
            self.unknown_keys(item, (key, i), key)
            out.append(((key, i), item))
        return out

    def resolve_path(self, p: str) -> str:
        """Relative paths are relative to the config file, not to the daemon's
        working directory (which an init system picks)."""
        return os.path.normpath(os.path.join(self.dir, p))

    # -- sections ----------------------------------------------------------

    def build(self, data: dict) -> Config:
        for k in data:
            if k not in _TABLES:
                msg = f"unknown table; expected one of: {', '.join(_TABLES)}"
                close = _did_you_mean(k, _TABLES)
                homes = [t for t, keys in _TABLES.items() if k in keys]
                if close:
                    msg += close
                elif homes:
                    msg += (f"; {k} is a key of {' or '.join(_table_label(h) for h in homes)}: "
                            f"put it below that table header")
                self.error((k,), msg)

        cluster = self.table(data, "cluster", required=True)
        cp: Path = ("cluster",)
        cluster_name = cluster_id = None
        if isinstance(data.get("cluster"), dict):  # else the missing table is reported
            cluster_name = self.name(cluster, cp, example='"web"')
            cluster_id = self.integer(cluster, cp, "id", lo=1, hi=MAX_ID, example="7")
        attributes_interval = self.duration(cluster, cp, "attributes_interval", 5_000_000,
                                            minimum=1000)
        timing = self.timing(self.table(data, "timing"))
        engine = self.engine(self.table(data, "engine"), timing)
        auth = self.auth(self.table(data, "auth", required=True),
                         present=isinstance(data.get("auth"), dict))
        links = self.links(data)
        nodes = self.nodes(data, links)
        quorum = self.quorum(self.table(data, "quorum"))
        node_name = self.local_name(cluster, nodes)
        resources = self.resources(data, nodes, node_name, timing.deadtime_us)
        units = self.units(data, resources, nodes)
        handlers = self.handlers(data)
        metrics = self.metrics(self.table(data, "metrics"),
                               present=isinstance(data.get("metrics"), dict))

        state_dir = self.path_setting(cluster, cp, "state_dir", DEFAULT_STATE_DIR, node_name)
        sock = self.path_setting(cluster, cp, "socket", DEFAULT_SOCKET, node_name)
        if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
            self.error(cp + ("socket",), f"{sock} is {len(os.fsencode(sock))} bytes long; "
                                         f"Unix socket paths are limited to {MAX_SOCKET_PATH}")

        return Config(
            path=self.abspath, cluster_name=cluster_name or "",
            cluster_id=cluster_id or 0, node_name=node_name or "",
            state_dir=state_dir, socket=sock,
            attributes_interval_us=attributes_interval, timing=timing, engine=engine,
            auth=auth, links=links, nodes=nodes, quorum=quorum, resources=resources,
            units=units, handlers=handlers, metrics=metrics,
        )

    def path_setting(self, tbl: dict, path: Path, key: str, default: str,
                     node_name: str | None) -> str:
        v = self.string(tbl, path, key, default)
        v = self.resolve_path(v)
        if node_name:
            v = v.replace("{node}", node_name)
        return v

    def local_name(self, cluster: dict, nodes: list[NodeConfig]) -> str | None:
        if self.node_arg is not None:
            name, source = self.node_arg, "given on the command line (--node)"
        elif "node" in cluster:
            name = self.string(cluster, ("cluster",), "node")
            source = "set by [cluster] node"
            if name is None:
                return None
        else:
            name = _socket.gethostname().split(".")[0]
            source = "this host's name; set [cluster] node or pass --node to choose another"
        names = [n.name for n in nodes]
        if names and name not in names:
            self.error(("cluster", "node"), f"this node is {_q(name)} ({source}), but no "
                                            f"[[node]] has that name; nodes are: "
                                            f"{', '.join(names)}{_did_you_mean(name, names)}")
        return name

    def timing(self, t: dict) -> TimingConfig:
        p: Path = ("timing",)
        before = len(self.issues)
        kw = {"maximum": MAX_ENGINE_US}
        interval = self.duration(t, p, "interval", 100_000, minimum=1000, **kw)
        warn = self.duration(t, p, "warntime", None, minimum=1, **kw)
        dead = self.duration(t, p, "deadtime", None, minimum=1, **kw)
        init = self.duration(t, p, "initdead", None, minimum=1, **kw)
        detector = self.choice(t, p, "detector", tuple(_core.DETECTORS), "fixed")
        threshold = self.number(t, p, "phi_threshold", 8.0, positive=True)
        min_std = self.duration(t, p, "phi_min_std", None, **kw)
        pause = self.duration(t, p, "phi_acceptable_pause", 0, **kw)

        set_warn, set_dead, set_init = "warntime" in t, "deadtime" in t, "initdead" in t
        if warn is None:
            warn = 3 * interval
        if dead is None:
            dead = 5 * interval
        if init is None:
            init = max(2_000_000, 2 * dead)

        def show(name: str, us: int, given: bool, rule: str) -> str:
            return (f"{name} {format_duration(us)}" if given
                    else f"{name} {format_duration(us)} (the default, {rule})")

        iv = show("interval", interval, "interval" in t, "100ms")
        wv = show("warntime", warn, set_warn, "3 x interval")
        dv = show("deadtime", dead, set_dead, "5 x interval")
        nv = show("initdead", init, set_init, "the larger of 2s and 2 x deadtime")
        if len(self.issues) == before:  # else the values below may be stand-ins
            if not interval < warn:
                self.error(p + ("warntime" if set_warn else "interval",),
                           f"{wv} must be longer than {iv}: a peer is late only after "
                           f"missing at least one heartbeat")
            if not warn < dead:
                self.error(p + ("warntime" if set_warn or not set_dead else "deadtime",),
                           f"{wv} must be shorter than {dv}: a peer is late before it "
                           f"is dead" + ("" if set_warn else "; set warntime"))
            if not dead <= init:
                self.error(p + ("initdead" if set_init or not set_dead else "deadtime",),
                           f"{nv} must not be shorter than {dv}")
            for name, us in (("warntime", warn), ("deadtime", dead), ("initdead", init)):
                if us > MAX_ENGINE_US:
                    self.error(p + (name,), f"{format_duration(us)} (derived from the "
                                            f"interval) is longer than the engine allows "
                                            f"({format_duration(MAX_ENGINE_US)}); set it")
        return TimingConfig(interval_us=interval, warntime_us=warn, deadtime_us=dead,
                            initdead_us=init, detector=detector, phi_threshold=threshold,
                            phi_min_std_us=min_std, phi_acceptable_pause_us=pause,
                            line=self.loc.exact(p))

    def engine(self, t: dict, timing: TimingConfig) -> EngineConfig:
        p: Path = ("engine",)
        prio = self.integer(t, p, "realtime_priority", 0, lo=0, hi=99)
        lock = self.boolean(t, p, "lock_memory", False)
        spin = self.duration(t, p, "spin", 0)
        if spin and spin > timing.interval_us // 2:
            self.error(p + ("spin",), f"{format_duration(spin)} is more than half the "
                                      f"heartbeat interval ({format_duration(timing.interval_us)}"
                                      f"); the engine would spin most of the time")
            spin = 0
        cap = self.integer(t, p, "event_capacity", 4096, lo=16, hi=1 << 20)
        return EngineConfig(realtime_priority=prio, lock_memory=lock, spin_us=spin,
                            event_capacity=cap, line=self.loc.exact(p))

    def auth(self, t: dict, present: bool) -> AuthConfig:
        p: Path = ("auth",)
        key_file = None
        if present:
            key_file = self.string(t, p, "key_file", example='"/etc/heart/authkey"')
        algorithm = self.choice(t, p, "algorithm", tuple(_core.ALGORITHMS), DEFAULT_ALGORITHM)
        send_key = self.integer(t, p, "send_key", None, lo=1, hi=MAX_KEY_ID)
        keys: dict[int, bytes] = {}
        if key_file is not None:
            key_file = self.resolve_path(key_file)
            if self.read_keys_file:
                keys = self.read_keys(key_file, p + ("key_file",))
        if send_key is None:
            send_key = next(iter(keys), 1)
        elif keys and send_key not in keys:
            self.error(p + ("send_key",), f"key {send_key} is not in {key_file} (it has "
                                          f"key{'s' if len(keys) > 1 else ''} "
                                          f"{', '.join(map(str, keys))})")
        return AuthConfig(key_file=key_file or "", algorithm=algorithm, keys=keys,
                          send_key=send_key, line=self.loc.exact(p))

    def read_keys(self, key_file: str, path: Path) -> dict[int, bytes]:
        """Keys from the key file.  Problems *in* the file name the file and
        its line; never is any part of a key echoed into a message."""
        try:
            fd = os.open(key_file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            self.error(path, f"{key_file} does not exist; create one with "
                             f"\"heart keygen {key_file}\" and copy it to every node")
            return {}
        except PermissionError:
            self.error(path, f"cannot read {key_file}: permission denied (run as root, or "
                             f"as the user that owns the key file)")
            return {}
        except OSError as exc:
            self.error(path, f"cannot open {key_file}: {exc.strerror}")
            return {}
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.error(path, f"{key_file} is not a regular file")
                return {}
            if st.st_mode & 0o077:
                self.file_error(key_file, None,
                                f"mode {st.st_mode & 0o7777:04o} lets group or others "
                                f"{'read' if st.st_mode & 0o044 else 'access'} it; "
                                f"chmod 600 {key_file}")
            raw = os.read(fd, KEY_FILE_MAX_BYTES + 1)
        except OSError as exc:
            self.error(path, f"cannot read {key_file}: {exc.strerror}")
            return {}
        finally:
            os.close(fd)
        if len(raw) > KEY_FILE_MAX_BYTES:
            self.file_error(key_file, None, f"is larger than {KEY_FILE_MAX_BYTES} bytes; "
                                            f"is this really a key file?")
            return {}
        keys: dict[int, bytes] = {}
        first_line: dict[int, int] = {}
        hex_len = 2 * _core.KEY_LEN
        fmt = f"expected \"<key id> <{hex_len} hex digits>\" (key id 1 to {MAX_KEY_ID})"
        for lineno, rawline in enumerate(raw.split(b"\n"), 1):
            try:
                text = rawline.decode("ascii")
            except UnicodeDecodeError:
                self.file_error(key_file, lineno, f"contains non-ASCII bytes; {fmt}")
                continue
            text = text.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.split()
            if len(fields) != 2:
                self.file_error(key_file, lineno, f"{fmt}; found {len(fields)} "
                                                  f"field{'s' if len(fields) != 1 else ''}")
                continue
            kid_text, key_hex = fields
            if not kid_text.isdigit() or not 1 <= int(kid_text) <= MAX_KEY_ID:
                shown = kid_text if len(kid_text) <= 8 else kid_text[:8] + "..."
                self.file_error(key_file, lineno, f"key id {_q(shown)} is not a number from "
                                                  f"1 to {MAX_KEY_ID}")
                continue
            kid = int(kid_text)
            if len(key_hex) != hex_len or any(c not in "0123456789abcdefABCDEF"
                                               for c in key_hex):
                what = (f"has {len(key_hex)} characters" if len(key_hex) != hex_len
                        else "contains characters that are not hex digits")
                self.file_error(key_file, lineno, f"key {kid} {what}; expected {hex_len} hex "
                                                  f"digits (a {_core.KEY_LEN}-byte key)")
                continue
            if kid in keys:
                self.file_error(key_file, lineno, f"key id {kid} is already used on line "
                                                  f"{first_line[kid]}; key ids must be unique")
                continue
            keys[kid] = bytes.fromhex(key_hex)
            first_line[kid] = lineno
        if not keys and not any(i.file == key_file and i.line for i in self.issues):
            self.file_error(key_file, None, f"contains no keys; {fmt}")
        if len(keys) > MAX_KEYS:
            self.file_error(key_file, None, f"has {len(keys)} keys; at most {MAX_KEYS} can be "
                                            f"installed at once (remove retired keys)")
        return keys

    def links(self, data: dict) -> list[LinkConfig]:
        out: list[LinkConfig] = []
        seen: dict[str, Path] = {}
        items = self.array_tables(data, "link")
        if not items and not any(i.key == "link" for i in self.issues):
            self.error(("link",), "at least one [[link]] is required, e.g. [[link]] "
                                  "name = \"lan\"")
        if len(items) > _core.MAX_LINKS:
            self.error(("link", _core.MAX_LINKS), f"{len(items)} links configured; the engine "
                                                  f"supports at most {_core.MAX_LINKS}")
        for p, t in items:
            name = self.name(t, p, example='"lan"')
            if name is not None:
                if name in seen:
                    self.error(p + ("name",), f"{_q(name)} is already the name of "
                                              f"{format_key(seen[name])}{self.where(seen[name])}"
                                              f"; link names must be unique")
                else:
                    seen[name] = p
            kind = self.choice(t, p, "kind", tuple(_core.LINK_KINDS), "unicast")
            port = self.integer(t, p, "port", DEFAULT_PORT, lo=1, hi=65535)
            group = self.string(t, p, "group", None)
            interface = self.string(t, p, "interface", None)
            bind = self.string(t, p, "bind", None)
            ttl = self.integer(t, p, "ttl", 1, lo=1, hi=255)
            if interface is not None and (len(interface) > MAX_IFNAME or "/" in interface
                                          or any(c.isspace() for c in interface)):
                self.error(p + ("interface",), f"{_q(interface)} is not a valid interface "
                                               f"name (at most {MAX_IFNAME} characters, no "
                                               f"'/' or spaces)")
            bind_ip = None
            if bind is not None:
                try:
                    bind_ip = _ip(bind)
                    bind = str(bind_ip)
                except ValueError:
                    self.error(p + ("bind",), f"{_q(bind)} is not a numeric IPv4 or IPv6 "
                                              f"address")
                    bind = None
            if kind == "unicast":
                if group is not None:
                    self.error(p + ("group",), "applies only to kind = \"multicast\" or "
                                               "\"broadcast\"; a unicast link sends to each "
                                               "node's address (set in [[node]] addresses)")
            elif kind is not None:
                self.check_group(p, kind, group, interface, bind_ip)
            out.append(LinkConfig(name=name or "", kind=kind or "unicast", port=port,
                                  group=group, interface=interface, bind=bind, ttl=ttl,
                                  line=self.loc.exact(p)))
        return out

    def check_group(self, p: Path, kind: str, group: str | None, interface: str | None,
                    bind_ip: Any) -> None:
        if group is None:
            example = '"239.0.0.94"' if kind == "multicast" else '"192.0.2.255"'
            what = "multicast group" if kind == "multicast" else "broadcast address"
            self.error(p + ("group",), f"required for kind = {_q(kind)}: the {what} "
                                       f"heartbeats are sent to, e.g. group = {example}")
            return
        try:
            gip = _ip(group)
        except ValueError:
            self.error(p + ("group",), f"{_q(group)} is not a numeric IPv4 or IPv6 address")
            return
        if kind == "multicast":
            if not gip.is_multicast:
                self.error(p + ("group",), f"{group} is not a multicast address (IPv4 "
                                           f"224.0.0.0/4, IPv6 ff00::/8); use kind = "
                                           f"\"broadcast\" or \"unicast\" for other addresses")
            elif gip.version == 6 and interface is None and \
                    gip in ipaddress.ip_network("ff02::/16"):
                self.error(p + ("interface",), f"the link-local group {group} needs an "
                                               f"interface, e.g. interface = \"eth1\"")
        else:
            if gip.version != 4:
                self.error(p + ("group",), f"{group}: broadcast exists only for IPv4; use "
                                           f"kind = \"multicast\" for IPv6")
            elif gip.is_multicast:
                self.error(p + ("group",), f"{group} is a multicast address; use kind = "
                                           f"\"multicast\"")
        if bind_ip is not None and bind_ip.version != gip.version:
            self.error(p + ("bind",), f"{bind_ip} is IPv{bind_ip.version} but group {group} "
                                      f"is IPv{gip.version}; they must be of one family")

    def nodes(self, data: dict, links: list[LinkConfig]) -> list[NodeConfig]:
        out: list[NodeConfig] = []
        names: dict[str, Path] = {}
        ids: dict[int, tuple[Path, str]] = {}
        link_by_name = {lk.name: lk for lk in links if lk.name}
        items = self.array_tables(data, "node")
        if not items and not any(i.key == "node" for i in self.issues):
            self.error(("node",), "at least one [[node]] is required")
        if len(items) > _core.MAX_PEERS + 1:
            self.error(("node", _core.MAX_PEERS + 1),
                       f"{len(items)} nodes configured; the engine supports at most "
                       f"{_core.MAX_PEERS + 1} (itself and {_core.MAX_PEERS} peers)")
        # (link, ip, port) -> the node path that uses it; link -> first family seen
        endpoints: dict[tuple[str, str, int], Path] = {}
        families: dict[str, tuple[int, Path]] = {}
        for p, t in items:
            name = self.name(t, p, example='"alpha"')
            if name is not None:
                if name in names:
                    self.error(p + ("name",), f"{_q(name)} is already the name of "
                                              f"{format_key(names[name])}"
                                              f"{self.where(names[name])}; node names must "
                                              f"be unique")
                else:
                    names[name] = p
            nid = self.integer(t, p, "id", lo=1, hi=MAX_ID, example="1")
            if nid is not None:
                if nid in ids:
                    other, oname = ids[nid]
                    self.error(p + ("id",), f"{nid} is already used by node {_q(oname)}"
                                            f"{self.where(other + ('id',))}; node ids must "
                                            f"be unique")
                else:
                    ids[nid] = (p, name or format_key(p))
            addresses: dict[str, tuple[str, int]] = {}
            raw = t.get("addresses", {})
            if not isinstance(raw, dict):
                self.error(p + ("addresses",), f"expected a table of link name = "
                                               f"\"address\", e.g. addresses = {{ lan = "
                                               f"\"192.0.2.1\" }}, got {_describe(raw)}")
                raw = {}
            for lname, value in raw.items():
                ap = p + ("addresses", lname)
                link = link_by_name.get(lname)
                if link is None:
                    if links:
                        self.error(ap, f"there is no link named {_q(lname)}; links are: "
                                       f"{', '.join(link_by_name)}"
                                       f"{_did_you_mean(lname, link_by_name)}")
                    continue
                if not isinstance(value, str):
                    self.error(ap, f"expected an address string such as \"192.0.2.1\" or "
                                   f"\"192.0.2.1:7001\", got {_describe(value)}")
                    continue
                try:
                    ip, port = _parse_address(value)
                except ValueError as exc:
                    self.error(ap, f"{_q(value)} {exc}")
                    continue
                ipo = _ip(ip.split("%")[0])
                if ipo.is_multicast or ipo.is_unspecified:
                    self.error(ap, f"{ip} is not a node address (it is "
                                   f"{'multicast' if ipo.is_multicast else 'unspecified'})")
                    continue
                port = port or link.port
                addresses[lname] = (ip, port)
                if link.kind == "unicast":
                    fam = families.get(lname)
                    if fam is None:
                        families[lname] = (ipo.version, ap)
                    elif fam[0] != ipo.version:
                        self.error(ap, f"{ip} is IPv{ipo.version} but {format_key(fam[1])}"
                                       f"{self.where(fam[1])} is IPv{fam[0]}; all addresses "
                                       f"on one link must be of one family")
                    if link.bind is not None and _ip(link.bind).version != ipo.version:
                        self.error(ap, f"{ip} is IPv{ipo.version} but link {_q(lname)} binds "
                                       f"{link.bind}")
                ep = (lname, ip, port)
                if ep in endpoints:
                    other = endpoints[ep]
                    self.error(ap, f"{ip} port {port} is already {format_key(other)}"
                                   f"{self.where(other)}; two nodes cannot share an address "
                                   f"and port on a link")
                else:
                    endpoints[ep] = ap
            for link in links:
                if link.kind == "unicast" and link.name and link.name not in addresses \
                        and link.name not in raw:
                    self.error(p + ("addresses", link.name),
                               f"node {_q(name or format_key(p))} has no address on unicast "
                               f"link {_q(link.name)}; every node needs one: add "
                               f"{link.name} = \"<its address>\" to its addresses")
            out.append(NodeConfig(name=name or "", id=nid or 0, addresses=addresses,
                                  line=self.loc.exact(p)))
        return out

    def quorum(self, t: dict) -> QuorumConfig:
        p: Path = ("quorum",)
        ping = self.string_list(t, p, "ping_nodes", []) or []
        seen: dict[str, int] = {}
        clean = []
        for i, addr in enumerate(ping):
            try:
                ip = str(_ip(addr))
            except ValueError:
                self.error(p + ("ping_nodes", i), f"{_q(addr)} is not a numeric IPv4 or IPv6 "
                                                  f"address")
                continue
            if ip in seen:
                self.error(p + ("ping_nodes", i), f"{ip} is listed twice")
                continue
            seen[ip] = i
            clean.append(ip)
        interval = self.duration(t, p, "ping_interval", 1_000_000, minimum=10_000)
        timeout = self.duration(t, p, "ping_timeout", 1_000_000, minimum=1000)
        if timeout > interval:
            self.error(p + ("ping_timeout",), f"{format_duration(timeout)} is longer than "
                                              f"ping_interval ({format_duration(interval)}); "
                                              f"a round must end before the next one starts")
        wait_for_all = self.boolean(t, p, "wait_for_all", False)
        policy = self.choice(t, p, "no_quorum_policy", ("release", "freeze"), "release")
        fence = self.argv(t, p, "fence", None) if "fence" in t else None
        fence_timeout = self.duration(t, p, "fence_timeout", 60_000_000, minimum=1000)
        return QuorumConfig(ping_nodes=clean, ping_interval_us=interval,
                            ping_timeout_us=timeout, wait_for_all=wait_for_all,
                            no_quorum_policy=policy, fence=fence,
                            fence_timeout_us=fence_timeout, line=self.loc.exact(p))

    def metrics(self, t: dict, present: bool) -> MetricsConfig:
        p: Path = ("metrics",)
        if not present:
            return MetricsConfig()
        v = self.string(t, p, "listen", example=f'"127.0.0.1:{DEFAULT_METRICS_PORT}"')
        listen = None
        if v is not None:
            try:
                host, port = _parse_address(v)
            except ValueError as exc:
                self.error(p + ("listen",), f"{_q(v)} {exc}")
            else:
                listen = (host, port if port is not None else DEFAULT_METRICS_PORT)
        return MetricsConfig(listen=listen, line=self.loc.exact(p + ("listen",)))

    def node_list(self, t: dict, p: Path, key: str, nodes: list[NodeConfig]) -> list[str] | None:
        """A preference list of node names; None when absent or invalid."""
        if key not in t:
            return None
        lst = self.string_list(t, p, key)
        if lst is None:
            return None
        known = [n.name for n in nodes if n.name]
        ok = True
        if not lst:
            self.error(p + (key,), "is empty; list at least one node, or leave nodes out to "
                                   "allow every node")
            return None
        for i, n in enumerate(lst):
            if n not in known:
                self.error(p + (key, i), f"there is no node named {_q(n)}; nodes are: "
                                         f"{', '.join(known)}{_did_you_mean(n, known)}")
                ok = False
            elif n in lst[:i]:
                self.error(p + (key, i), f"{_q(n)} is listed twice")
                ok = False
        return lst if ok else None

    def resources(self, data: dict, nodes: list[NodeConfig],
                  node_name: str | None, deadtime_us: int) -> dict[str, ResourceConfig]:
        out: dict[str, ResourceConfig] = {}
        self._res_paths: dict[str, tuple[Path, dict]] = {}
        for p, t in self.array_tables(data, "resource"):
            name = self.name(t, p, example='"www"')
            rtype = self.choice(t, p, "type", ("script", "ocf", "ipaddr"))
            script = self.string(t, p, "script", None)
            agent = self.string(t, p, "agent", None)
            ocf_root = self.string(t, p, "ocf_root", DEFAULT_OCF_ROOT)
            ocf_root = self.resolve_path(ocf_root)
            timeout = self.duration(t, p, "timeout", 20_000_000, minimum=1000)
            mon_int = self.duration(t, p, "monitor_interval", 0)
            mon_to = self.duration(t, p, "monitor_timeout", timeout, minimum=1000)
            retries = self.integer(t, p, "retries", 2, lo=0, hi=100)
            self.node_list(t, p, "nodes", nodes)
            self.boolean(t, p, "auto_failback", True)
            params = self.params(t, p, rtype, node_name)
            if mon_int and mon_int < 1000:
                self.error(p + ("monitor_interval",), f"{format_duration(mon_int)} is too "
                                                      f"short; expected 0 (off) or at least 1ms")
            if rtype == "script":
                if agent is not None:
                    self.error(p + ("agent",), "applies only to type = \"ocf\"; a script "
                                               "resource names its program in script")
                if "ocf_root" in t:
                    self.error(p + ("ocf_root",), "applies only to type = \"ocf\"")
                if script is None and "script" not in t:
                    self.error(p + ("script",), "required for type = \"script\": the path of "
                                                "a program run as \"script start|stop|status\"")
                elif script is not None:
                    script = self.resolve_path(script)
                    why = _exec_problem(script)
                    if why:
                        self.error(p + ("script",), why)
            elif rtype == "ipaddr":
                for key in ("script", "agent", "ocf_root"):
                    if key in t:
                        self.error(p + (key,), "does not apply to type = \"ipaddr\" (the "
                                               "address, interface, ... go in params)")
                from heart import ipaddr

                for key, msg in ipaddr.validate_params(name or "?", params, deadtime_us):
                    self.error(p + ("params", key), msg)
            elif rtype == "ocf":
                if script is not None:
                    self.error(p + ("script",), "applies only to type = \"script\"; an OCF "
                                                "resource names its agent in agent")
                if agent is None and "agent" not in t:
                    self.error(p + ("agent",), "required for type = \"ocf\", as "
                                               "\"provider:type\", e.g. agent = "
                                               "\"heartbeat:Dummy\"")
                elif agent is not None:
                    prov, _, atype = agent.partition(":")
                    if not prov or not atype or "/" in agent or ":" in atype:
                        self.error(p + ("agent",), f"{_q(agent)} is not \"provider:type\", "
                                                   f"e.g. \"heartbeat:IPaddr2\"")
                    else:
                        apath = os.path.join(ocf_root, "resource.d", prov, atype)
                        why = _exec_problem(apath)
                        if why:
                            pdir = os.path.join(ocf_root, "resource.d", prov)
                            try:
                                agents = sorted(os.listdir(pdir))
                            except OSError:
                                agents = None
                            if agents is None:
                                hint = (f"; there is no provider {_q(prov)} under "
                                        f"{ocf_root}/resource.d (is the resource-agents "
                                        f"package installed?)")
                            else:
                                close = difflib.get_close_matches(atype, agents, n=1)
                                hint = f"; did you mean {_q(prov + ':' + close[0])}?" \
                                    if close else ""
                            self.error(p + ("agent",), f"OCF agent {why}{hint}")
            if name is not None:
                if name in out:
                    other = self._res_paths[name][0]
                    self.error(p + ("name",), f"{_q(name)} is already the name of "
                                              f"{format_key(other)}{self.where(other)}; "
                                              f"resource names must be unique")
                    continue
                self._res_paths[name] = (p, t)
                out[name] = ResourceConfig(
                    name=name, type=rtype or "script", script=script,
                    agent=agent, ocf_root=ocf_root, params=params, timeout_us=timeout,
                    monitor_interval_us=mon_int, monitor_timeout_us=mon_to, retries=retries,
                    group=None, line=self.loc.exact(p))
        return out

    def params(self, t: dict, p: Path, rtype: str | None,
               node_name: str | None) -> dict[str, str]:
        raw = t.get("params", {})
        if not isinstance(raw, dict):
            self.error(p + ("params",), f"expected a table such as params = {{ state = "
                                        f"\"/run/x.state\" }}, got {_describe(raw)}")
            return {}
        out: dict[str, str] = {}
        upper: dict[str, str] = {}
        for k, v in raw.items():
            kp = p + ("params", k)
            if not _ENV_NAME_RE.match(k):
                self.error(kp, f"{_q(k)} cannot be an environment variable name; use "
                               f"letters, digits and '_', not starting with a digit")
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (int, float)):
                v = str(v)
            elif not isinstance(v, str):
                self.error(kp, f"expected a string, number or boolean, got {_describe(v)}")
                continue
            if rtype == "script":
                if k.upper() in upper:
                    self.error(kp, f"HEART_PARAM_{k.upper()} is already set by "
                                   f"{_q(upper[k.upper()])}; script parameter names must "
                                   f"differ in more than case")
                    continue
                upper[k.upper()] = k
            out[k] = v.replace("{node}", node_name) if node_name else v
        return out

    def units(self, data: dict, resources: dict[str, ResourceConfig],
              nodes: list[NodeConfig]) -> list[UnitConfig]:
        all_nodes = [n.name for n in nodes if n.name]
        out: list[UnitConfig] = []
        in_group: dict[str, tuple[str, Path]] = {}
        group_names: dict[str, Path] = {}
        res_paths = getattr(self, "_res_paths", {})
        for p, t in self.array_tables(data, "group"):
            name = self.name(t, p, example='"web"')
            members = self.string_list(t, p, "resources", example='["www"]')
            gnodes = self.node_list(t, p, "nodes", nodes)
            failback = self.boolean(t, p, "auto_failback", True)
            if name is not None:
                if name in group_names:
                    other = group_names[name]
                    self.error(p + ("name",), f"{_q(name)} is already the name of "
                                              f"{format_key(other)}{self.where(other)}; "
                                              f"group names must be unique")
                    name = None
                elif name in res_paths:
                    other = res_paths[name][0]
                    self.error(p + ("name",), f"{_q(name)} is also the name of "
                                              f"{format_key(other)}{self.where(other)}; groups "
                                              f"and resources share one namespace")
                    name = None
                else:
                    group_names[name] = p
            good: list[str] = []
            if members is not None:
                if not members:
                    self.error(p + ("resources",), "is empty; a group needs at least one "
                                                   "resource")
                for i, r in enumerate(members):
                    rp = p + ("resources", i)
                    if r not in resources:
                        if r not in res_paths:
                            self.error(rp, f"there is no resource named {_q(r)}; resources "
                                           f"are: {', '.join(resources) or '(none)'}"
                                           f"{_did_you_mean(r, resources)}")
                        continue
                    if r in good:
                        self.error(rp, f"{_q(r)} is listed twice")
                        continue
                    if r in in_group:
                        gname, gp = in_group[r]
                        self.error(rp, f"{_q(r)} is already in group {_q(gname)}"
                                       f"{self.where(gp)}; a resource can be in one group only")
                        continue
                    good.append(r)
                    if name is not None:
                        in_group[r] = (name, p)
                        resources[r].group = name
                        rpath, rt = res_paths[r]
                        for key in ("nodes", "auto_failback"):
                            if key in rt:
                                self.error(rpath + (key,),
                                           f"resource {_q(r)} is in group {_q(name)}"
                                           f"{self.where(p)}; set {key} on the group, not on "
                                           f"its resources")
            if name is not None:
                out.append(UnitConfig(name=name, resources=good,
                                      nodes=gnodes if gnodes is not None else list(all_nodes),
                                      auto_failback=failback, is_group=True,
                                      line=self.loc.exact(p)))
        for rname, res in resources.items():
            if res.group is not None:
                continue
            rpath, rt = res_paths[rname]
            rnodes = None
            if "nodes" in rt and isinstance(rt["nodes"], list):
                lst = rt["nodes"]
                if all(isinstance(n, str) and n in all_nodes for n in lst) and lst:
                    rnodes = list(lst)
            failback = rt.get("auto_failback", True)
            out.append(UnitConfig(name=rname, resources=[rname],
                                  nodes=rnodes if rnodes is not None else list(all_nodes),
                                  auto_failback=failback if isinstance(failback, bool) else True,
                                  is_group=False, line=res.line))
        return out

    def handlers(self, data: dict) -> list[HandlerConfig]:
        out: list[HandlerConfig] = []
        for p, t in self.array_tables(data, "handler"):
            events = self.string_list(t, p, "events", example='["node_down"]')
            chosen: set[str] = set()
            if events is not None:
                if not events:
                    self.error(p + ("events",), f"is empty; list events, or \"*\" for all: "
                                                f"{', '.join(HANDLER_EVENTS)}")
                for i, ev in enumerate(events):
                    if ev == "*":
                        chosen.update(HANDLER_EVENTS)
                    elif ev in HANDLER_EVENTS:
                        chosen.add(ev)
                    else:
                        self.error(p + ("events", i), f"{_q(ev)} is not an event; expected "
                                                      f"\"*\" or one of: "
                                                      f"{', '.join(HANDLER_EVENTS)}"
                                                      f"{_did_you_mean(ev, HANDLER_EVENTS)}")
            command = self.argv(t, p, "command")
            timeout = self.duration(t, p, "timeout", 10_000_000, minimum=1000)
            out.append(HandlerConfig(events=frozenset(chosen), command=command or [],
                                     timeout_us=timeout, line=self.loc.exact(p)))
        return out


# ---------------------------------------------------------------------------
# Syntax errors
# ---------------------------------------------------------------------------

_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_END_RE = re.compile(r"\s*\(at end of document\)\s*$")
_UNQUOTED_RE = re.compile(r"=\s*([0-9.]+\s*[A-Za-zµμ]+|[A-Za-z][^\s\"'#]*)\s*(#.*)?$")


def _syntax_issue(display: str, text: str, exc: Exception) -> ConfigIssue:
    """tomllib's message, at its line, with a hint for the usual mistakes."""
    msg = str(exc)
    line: int | None = None
    col: int | None = None
    m = _POS_RE.search(msg)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        msg = msg[:m.start()]
    else:
        m = _END_RE.search(msg)
        if m:
            msg = msg[:m.start()]
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    key = ""
    hint = ""
    if msg.startswith(("Cannot overwrite a value", "Cannot declare")):
        loc = _Locator.scan(text)
        if loc.duplicates:
            path, dline, first = loc.duplicates[0]
            line, col, key = dline, None, format_key(path)
            aot = path and isinstance(path[-1], str) and path[-1] in _ARRAY_TABLES
            if aot and len(path) == 1:
                hint = (f"; [{path[0]}] is declared twice (first on line {first}): write "
                        f"[[{path[0]}]] with double brackets before each {path[0]}")
            else:
                hint = f"; it is already set on line {first}: a key may be set only once"
        elif msg.startswith("Cannot declare"):
            hint = ("; a table is declared twice, or [name] is used where [[name]] "
                    "(one more of a list) is meant")
    elif line is not None:
        src = text.splitlines()[line - 1] if line - 1 < len(text.splitlines()) else ""
        um = _UNQUOTED_RE.search(src)
        if um and um.group(1) not in ("true", "false", "inf", "nan"):
            hint = (f"; text values need quotes, e.g. {src.split('=')[0].strip()} = "
                    f"\"{um.group(1).strip()}\"")
    where = f" (column {col})" if col is not None else ""
    return ConfigIssue(display, line, key, f"TOML syntax error: {msg}{where}{hint}")


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def load(path: str, node_name: str | None = None, *, read_keys: bool = True) -> Config:
    """Read and check the configuration file at path for the node node_name
    (None: [cluster] node, else the host name).  Raises ConfigError listing
    every problem found.

    read_keys=False skips the key file (``auth.keys`` is then empty): for
    clients such as ``heart status`` that only need the socket path and
    usually run without the permission to read the key."""
    display = os.fspath(path)
    abspath = os.path.abspath(display)
    try:
        with open(abspath, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, None, "", f"cannot read the configuration "
                                                          f"file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(display, line, "", "is not valid UTF-8 text")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(display, text, exc)]) from None
    checker = _Checker(display, abspath, _Locator.scan(text), node_name, read_keys)
    config = checker.build(data)
    if checker.issues:
        ordered = sorted(checker.issues, key=lambda i: (i.file != display, i.line or 0))
        raise ConfigError(ordered)
    return config
