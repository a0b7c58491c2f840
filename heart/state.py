"""The cluster state database: one record per node, replicated.

Each node is the authority on its own record (status, generation, attributes,
the units it holds, standby, moves it was asked to make, its version).  The
record's version grows with every change.  Every heartbeat carries a digest of
at most ``HEARTBEAT_PAYLOAD_MAX`` bytes:

    byte 0      digest format (1)
    byte 1      flags: bit 0 standby, bit 1 quorate, bit 2 leaving
    bytes 2-9   record version (big-endian u64)
    bytes 10-   "who I hear" bitmap: bit i (LSB first in each byte) is set
                when the sender hears the i-th node of the configuration

A receiver that sees a newer version than the record it has asks the sender
for its record (a ``req`` state message); records travel as authenticated
state messages over the same links (``rec``), and every node also re-sends its
own record now and then, so lost messages heal by themselves.  State messages
are compact JSON, zlib-compressed when that helps; a record that does not fit
one message is refused when it is built, not truncated on the wire.

Everything here is plain data: no I/O, no engine, so it is tested directly.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from heart import placement

DIGEST_FORMAT = 1
_DIGEST_HEAD = struct.Struct("!BBQ")
F_STANDBY, F_QUORATE, F_LEAVING = 1, 2, 4

# State message framing: one byte says how the rest is encoded.
_RAW, _ZLIB = b"J", b"Z"


class StateError(ValueError):
    """A digest or state message that cannot be decoded (bad peer input)."""


@dataclass
class Record:
    """What one node says about itself."""

    name: str
    generation: int = 0
    version: int = 0
    status: str = "up"                    # "up" | "leaving"
    standby: bool = False
    quorate: bool = False
    held: dict[str, str] = field(default_factory=dict)   # unit -> starting|started|stopping
    failed: list[str] = field(default_factory=list)      # units that failed here
    moves: dict[str, list] = field(default_factory=dict)  # unit -> [node, stamp_ns]
    attributes: dict[str, Any] = field(default_factory=dict)
    heart_version: str = ""

    def to_wire(self) -> dict:
        return {"n": self.name, "g": self.generation, "v": self.version,
                "s": self.status, "sb": self.standby, "q": self.quorate,
                "h": self.held, "f": self.failed, "mv": self.moves,
                "a": self.attributes, "hv": self.heart_version}

    @classmethod
    def from_wire(cls, d: dict) -> Record:
        try:
            rec = cls(name=str(d["n"]), generation=int(d["g"]), version=int(d["v"]),
                      status=str(d.get("s", "up")), standby=bool(d.get("sb", False)),
                      quorate=bool(d.get("q", False)),
                      held={str(k): str(v) for k, v in dict(d.get("h", {})).items()},
                      failed=[str(x) for x in d.get("f", [])],
                      moves={str(k): [str(v[0]), int(v[1])]
                             for k, v in dict(d.get("mv", {})).items()},
                      attributes=dict(d.get("a", {})),
                      heart_version=str(d.get("hv", "")))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StateError(f"malformed record: {exc!r}") from None
        return rec

    def public(self) -> dict:
        """The record as `heart status --json` shows it."""
        return {"generation": self.generation, "version": self.version,
                "status": self.status, "standby": self.standby, "quorate": self.quorate,
                "held": dict(self.held), "failed": list(self.failed),
                "moves": {k: {"to": v[0], "stamp_ns": v[1]} for k, v in self.moves.items()},
                "attributes": dict(self.attributes), "heart_version": self.heart_version}


def encode_message(msg: dict, limit: int) -> bytes:
    """A state message: b"J" + JSON, or b"Z" + zlib(JSON) when shorter."""
    raw = json.dumps(msg, separators=(",", ":"), sort_keys=True).encode()
    out = _RAW + raw
    if len(out) > 200:
        z = _ZLIB + zlib.compress(raw, 6)
        if len(z) < len(out):
            out = z
    if len(out) > limit:
        raise StateError(f"state message of {len(out)} bytes exceeds the {limit}-byte "
                         f"payload limit (too many units or attributes in one record)")
    return out


def decode_message(data: bytes) -> dict:
    if not data:
        raise StateError("empty state message")
    kind, body = data[:1], data[1:]
    try:
        if kind == _ZLIB:
            d = zlib.decompressobj()
            body = d.decompress(body, 64 * 1024)
            if d.unconsumed_tail:
                raise StateError("state message inflates beyond 64 KiB")
        elif kind != _RAW:
            raise StateError(f"unknown state message encoding {kind!r}")
        msg = json.loads(body)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"undecodable state message: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        raise StateError("state message is not an object with a type")
    return msg


def encode_digest(version: int, flags: int, hears: Iterable[int], n_nodes: int) -> bytes:
    bitmap = bytearray((n_nodes + 7) // 8)
    for i in hears:
        bitmap[i >> 3] |= 1 << (i & 7)
    return _DIGEST_HEAD.pack(DIGEST_FORMAT, flags, version) + bytes(bitmap)


def decode_digest(data: bytes, n_nodes: int) -> tuple[int, int, frozenset[int]]:
    """(version, flags, indexes of heard nodes); StateError on garbage."""
    if len(data) < _DIGEST_HEAD.size:
        raise StateError(f"digest of {len(data)} bytes is shorter than its header")
    fmt, flags, version = _DIGEST_HEAD.unpack_from(data)
    if fmt != DIGEST_FORMAT:
        raise StateError(f"unknown digest format {fmt}")
    bits = data[_DIGEST_HEAD.size:]
    heard = frozenset(i for i in range(min(n_nodes, len(bits) * 8))
                      if bits[i >> 3] & (1 << (i & 7)))
    return version, flags, heard


class ClusterState:
    """This node's copy of the cluster state database.

    ``names`` is the configured node list (its order defines the digest
    bitmap, so every node must share the configuration's node order)."""

    def __init__(self, names: Sequence[str], me: str, generation: int,
                 heart_version: str = "") -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.me = me
        self.local = Record(name=me, generation=generation, version=1,
                            heart_version=heart_version)
        self.records: dict[str, Record] = {}      # peers' records, newest seen
        self.digests: dict[str, int] = {}         # peer -> version its digest announced
        self.up: set[str] = set()                 # peers the engine says are up
        self.hears: dict[str, frozenset[str]] = {}  # peer -> nodes it hears (its digest)
        self.refresh: set[str] = set()            # peers whose record must be re-sent

    # -- the local record ------------------------------------------------
    def update_local(self, **changes: Any) -> bool:
        """Apply changes to the local record; bump its version if anything
        changed.  Returns whether it changed."""
        changed = False
        for k, v in changes.items():
            if getattr(self.local, k) != v:
                setattr(self.local, k, v)
                changed = True
        if changed:
            self.local.version += 1
        return changed

    def digest(self) -> bytes:
        flags = ((F_STANDBY if self.local.standby else 0)
                 | (F_QUORATE if self.local.quorate else 0)
                 | (F_LEAVING if self.local.status == "leaving" else 0))
        heard = [self.index[n] for n in self.up if n in self.index]
        return encode_digest(self.local.version, flags, heard, len(self.names))

    def record_message(self, limit: int) -> bytes:
        return encode_message(self.record_wire(), limit)

    def record_wire(self) -> dict:
        """The local record as a state message, before encoding."""
        return {"t": "rec", "r": self.local.to_wire()}

    # -- what peers tell us ----------------------------------------------
    def set_up(self, name: str, up: bool) -> None:
        if up:
            if name not in self.up:
                # Back after being down: what its last record says (what it
                # held, say) may be old news; wait for a fresh one.
                self.refresh.add(name)
            self.up.add(name)
        else:
            self.up.discard(name)
            self.hears.pop(name, None)

    def forget(self, name: str) -> None:
        """A peer restarted (new generation): its old record says nothing."""
        self.records.pop(name, None)
        self.digests.pop(name, None)
        self.refresh.discard(name)

    def on_digest(self, name: str, data: bytes) -> bool:
        """A peer's heartbeat payload.  True if its record is newer than ours
        (ask it for the record)."""
        version, _flags, heard = decode_digest(data, len(self.names))
        self.hears[name] = frozenset(self.names[i] for i in heard)
        self.digests[name] = version
        return self.stale(name)

    def stale(self, name: str) -> bool:
        """True if we lack the record that peer's latest digest announced."""
        rec = self.records.get(name)
        want = self.digests.get(name)
        if rec is None or name in self.refresh:
            return True
        return want is not None and want > rec.version

    def on_record(self, rec: Record, generation: int | None) -> bool:
        """Store a peer's record if it is newer; True if it changed."""
        if rec.name not in self.index or rec.name == self.me:
            raise StateError(f"record for unknown or own node {rec.name!r}")
        if generation is not None and rec.generation != generation:
            # A record from an older (or not yet seen) generation of that peer.
            return False
        old = self.records.get(rec.name)
        fresh = rec.name in self.refresh
        self.refresh.discard(rec.name)
        if old is not None and (old.generation, old.version) >= (rec.generation, rec.version):
            return fresh          # the same record again: now known to be current
        self.records[rec.name] = rec
        return True

    def missing_records(self) -> list[str]:
        """Up peers whose current record we do not have yet."""
        return sorted(n for n in self.up if self.stale(n))

    # -- views -----------------------------------------------------------
    def record_of(self, name: str) -> Record | None:
        return self.local if name == self.me else self.records.get(name)

    def matrix(self) -> dict[str, list[str]]:
        """Who hears whom: for every node, the nodes it hears (from digests;
        ours from the engine).  Nodes we do not hear report nothing."""
        out = {self.me: sorted(self.up)}
        for n in self.names:
            if n != self.me:
                out[n] = sorted(self.hears.get(n, ())) if n in self.up else []
        return out

    def moves(self) -> dict[str, str]:
        """The latest admin move per unit, over every live node's record."""
        best: dict[str, tuple[int, str, str]] = {}
        for n in [self.me, *sorted(self.up)]:
            rec = self.record_of(n)
            if rec is None:
                continue
            for unit, (target, stamp) in rec.moves.items():
                key = (stamp, n, target)
                if unit not in best or key > best[unit]:
                    best[unit] = key
        return {u: k[2] for u, k in best.items()}

    def view(self, quorate: bool) -> placement.View:
        nodes = {}
        for n in self.names:
            rec = self.record_of(n)
            # A peer whose current record we lack is not up for placement
            # (its holdings are unknown; the daemon acquires nothing meanwhile).
            # A leaving node is up (what it holds still counts) but takes
            # nothing new: it is in standby until its leave message.
            up = n == self.me or (n in self.up and rec is not None
                                  and n not in self.refresh)
            nodes[n] = placement.NodeView(
                name=n, up=up,
                standby=bool(rec and (rec.standby or rec.status == "leaving")),
                held=frozenset(rec.held) if (rec and up) else frozenset(),
                releasing=frozenset(u for u, st in rec.held.items()
                                    if st in ("stopping", "failed"))
                if (rec and up) else frozenset(),
                failed=frozenset(rec.failed) if rec else frozenset())
        return placement.View(nodes=nodes, quorate=quorate, moves=self.moves())
