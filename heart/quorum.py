"""Quorum: may this side of the cluster run resources?

A partition splits the cluster into groups of nodes that can still hear each
other.  Only a group holding a strict majority of the votes may run
resources; the others give them up (or freeze, by policy).  Two majorities
cannot exist at once, which is what keeps one resource from running on both
sides of a partition.

Votes: one per configured node that is up (``members``), plus one for the
*ping nodes* when they are configured: the side that can reach any of them
gets that vote.  The ping vote breaks the tie of an even split, but it is
only a heuristic: two halves that both still reach the ping node (the
partition is between them, not between them and the router) both get the
vote.  In a two-node cluster that means both sides are quorate.  Only fencing
makes that case safe; see docs/placement.md.

This module takes plain values (node names, booleans) and never reads the
configuration itself, so the daemon and the tests can drive it directly.

``PingMonitor`` measures the ping vote: an ICMP echo to every ping node every
interval, on non-blocking sockets served by the asyncio loop.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "PingMonitor",
    "QuorumState",
    "compute_quorum",
    "icmp_checksum",
]

log = logging.getLogger("heart.quorum")


# --------------------------------------------------------------------------
# Votes


@dataclass(frozen=True)
class QuorumState:
    """The outcome of one quorum computation, kept whole so the journal and
    `heart status` can show *why* a node is (not) quorate."""

    quorate: bool
    votes: int
    expected: int
    members: tuple[str, ...]
    ping: bool | None
    reason: str

    def as_dict(self) -> dict:
        """The journal's ``quorum`` evidence (JSON-ready)."""
        return {
            "quorate": self.quorate,
            "votes": self.votes,
            "expected": self.expected,
            "members": list(self.members),
            "ping": self.ping,
            "reason": self.reason,
        }


def _voters(members: Sequence[str], ping: bool | None) -> str:
    names = list(members) + (["ping nodes"] if ping else [])
    return ", ".join(names) if names else "none"


def compute_quorum(nodes: Sequence[str], members: Iterable[str], *,
                   ping_reachable: bool | None, wait_for_all: bool,
                   all_seen: bool) -> QuorumState:
    """Count the votes of this side of the cluster.

    nodes: every configured node name (the electorate, in config order).
    members: the nodes this node currently sees up, itself included; names
        that are not configured do not vote.
    ping_reachable: None when no ping nodes are configured (no ping vote
        exists), else whether any ping node answered in the latest round.
    wait_for_all: do not become quorate before every node has been up at the
        same time once since start (``all_seen``).  This is what makes the
        two-node rule safe: a node that boots alone after a crash cannot grab
        resources the other side may still run.
    all_seen: every node has been up at the same time at least once since
        this daemon started.

    Rules: expected = len(nodes) + 1 if ping nodes are configured; votes =
    members + 1 if a ping node answered; quorate iff votes * 2 > expected.
    A one-node cluster is always quorate.  With wait_for_all, never quorate
    before all_seen; after that a two-node cluster without ping nodes is
    quorate with one vote (corosync's two_node).
    """
    electorate = list(dict.fromkeys(nodes))
    if not electorate:
        raise ValueError("compute_quorum: no nodes configured; expected at least one node name")
    present = set(members)
    voting = tuple(n for n in electorate if n in present)
    has_ping = ping_reachable is not None
    expected = len(electorate) + (1 if has_ping else 0)
    votes = len(voting) + (1 if ping_reachable else 0)
    tally = f"{votes} of {expected} votes ({_voters(voting, ping_reachable)})"
    needed = expected // 2 + 1

    def state(quorate: bool, reason: str) -> QuorumState:
        return QuorumState(quorate, votes, expected, voting, ping_reachable, reason)

    if len(electorate) == 1:
        return state(True, f"{tally}; single-node cluster")
    if wait_for_all and not all_seen:
        missing = [n for n in electorate if n not in present]
        if missing:
            detail = f"not yet up: {', '.join(missing)}"
        else:
            detail = "all are up now; quorum follows once that is recorded"
        return state(False, f"waiting for all nodes to be up together once ({detail}); {tally}")
    if wait_for_all and len(electorate) == 2 and not has_ping:
        if votes >= 1:
            return state(True, f"{tally}; two-node cluster with wait_for_all: one vote suffices")
        return state(False, f"{tally}; two-node cluster: no node is up")
    if votes * 2 > expected:
        return state(True, tally)
    return state(False, f"{tally}; {needed} needed")


# --------------------------------------------------------------------------
# ICMP


ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

_SOL_RAW = 255          # Linux: setsockopt level for ICMP_FILTER on raw IPv4 sockets
_ICMP_FILTER = 1
_ICMP6_FILTER = 1       # Linux: level IPPROTO_ICMPV6


def icmp_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the one's complement of the one's
    complement sum of the 16-bit big-endian words, an odd byte padded with
    zero.  Raw IPv4 ICMP sockets need it from us; DGRAM ping sockets and
    ICMPv6 raw sockets have the kernel fill it in."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            return f.read().split("\n")[0].replace("\t", " ")
    except OSError:
        return "unknown"


def _open_icmp(family: int, mode: str) -> tuple[socket.socket, str]:
    """An ICMP socket for family, preferring an unprivileged ping socket.

    Returns (socket, "dgram" | "raw").  mode "dgram" or "raw" forces one
    kind (no fallback); "auto" tries dgram and falls back to raw when the
    kernel refuses it (group outside ping_group_range, or no ping socket
    support)."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    if mode in ("auto", "dgram"):
        try:
            return socket.socket(family, socket.SOCK_DGRAM, proto), "dgram"
        except OSError as e:
            refused = e.errno in (errno.EACCES, errno.EPERM)
            unsupported = e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT)
            if mode == "dgram" and refused:
                raise PermissionError(
                    e.errno,
                    f"unprivileged ICMP ping socket refused: group {os.getgid()} is outside "
                    f"net.ipv4.ping_group_range ({_ping_group_range()})") from e
            if mode == "dgram" or not (refused or unsupported):
                raise
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), "raw"
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM):
            raise
        raise PermissionError(
            e.errno,
            "cannot open an ICMP socket for the ping nodes: unprivileged ping sockets are "
            f"refused (group {os.getgid()} is outside net.ipv4.ping_group_range = "
            f"{_ping_group_range()}) and raw ICMP sockets need CAP_NET_RAW; run the "
            "daemon as root or with CAP_NET_RAW, or widen net.ipv4.ping_group_range"
            ) from e


def _set_reply_filter(sock: socket.socket, family: int) -> None:
    """Ask the kernel to pass only echo replies to a raw socket: a raw ICMP
    socket otherwise wakes us for every ICMP packet the host receives.
    Purely an optimisation (replies are matched in Python anyway)."""
    try:
        if family == socket.AF_INET:
            # ICMP_FILTER: bit t set = drop type t.
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER,
                            struct.pack("=I", ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF))
        else:
            # ICMP6_FILTER: 256-bit map, bit t set = block type t (Linux).
            words = [0xFFFFFFFF] * 8
            words[ICMPV6_ECHO_REPLY >> 5] &= ~(1 << (ICMPV6_ECHO_REPLY & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
    except OSError as e:  # pragma: no cover - very old kernels
        log.debug("ICMP reply filter not set: %s", e)


@dataclass
class _Target:
    address: str
    family: int
    sockaddr: tuple
    sock: socket.socket | None = None
    kind: str = ""           # "dgram" | "raw"
    sent_at: float | None = None
    answered: bool = False
    rtt_ms: float | None = None
    error: str | None = None


SocketFactory = Callable[[int, tuple], "socket.socket"]


class PingMonitor:
    """ICMP echo to every ping node every ``interval_s``; the ping vote.

    ``reachable`` is None until the first round completes, then True when any
    address answered within ``timeout_s`` in the latest round.
    ``on_change(reachable)`` is called (from the event loop) after the first
    round and whenever the value flips.  Rounds do not overlap: a round lasts
    at most ``timeout_s`` (less when every address answered), and the next
    one starts ``interval_s`` after the previous start, or at once if the
    round ran longer than that.

    One connected socket per address, so the kernel delivers each socket only
    its own peer's packets.  Sockets are opened by ``start()``, which raises
    PermissionError when neither ping socket kind is allowed.

    ``mode``: "auto" (unprivileged DGRAM ping socket, falling back to RAW),
    "dgram" or "raw" to force one kind.  ``socket_factory(family, sockaddr)``
    replaces socket creation entirely and must return a socket already
    connected to sockaddr (tests use it for a socket that never gets
    replies); a factory's SOCK_RAW sockets are treated as raw ICMP, any other
    as a ping socket.

    Only the configured addresses are ever sent to; they must be numeric IP
    addresses (no name resolution: DNS may be what just failed).
    """

    def __init__(self, addresses: Iterable[str], interval_s: float, timeout_s: float,
                 on_change: Callable[[bool], None], *, mode: str = "auto",
                 socket_factory: SocketFactory | None = None):
        if mode not in ("auto", "dgram", "raw"):
            raise ValueError(f'PingMonitor mode {mode!r}: expected "auto", "dgram" or "raw"')
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError(f"PingMonitor: interval ({interval_s}) and timeout ({timeout_s}) "
                             "must be positive seconds")
        self._targets: list[_Target] = []
        for address in dict.fromkeys(addresses):
            try:
                info = socket.getaddrinfo(address, 0, 0, socket.SOCK_DGRAM, 0,
                                          socket.AI_NUMERICHOST)
            except (socket.gaierror, UnicodeError, TypeError):
                raise ValueError(f"ping node {address!r}: expected a numeric IPv4 or IPv6 "
                                 "address (names are not resolved)") from None
            family, _, _, _, sockaddr = info[0]
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(f"ping node {address!r}: not an IPv4 or IPv6 address")
            self._targets.append(_Target(address, family, sockaddr))
        if not self._targets:
            raise ValueError("PingMonitor: no addresses; expected at least one ping node")
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self.on_change = on_change
        self.mode = mode
        self._factory = socket_factory
        self.reachable: bool | None = None
        self.rounds = 0
        ident = os.urandom(10)
        self._ident = int.from_bytes(ident[:2], "big")
        self._cookie = ident[2:]
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._round_done: asyncio.Future | None = None
        self._closing = False

    # -- public state ------------------------------------------------------

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(t.address for t in self._targets)

    def status(self) -> dict[str, dict]:
        """Per address, for `heart status`: socket kind, whether it answered
        in the latest round, its round-trip time and the last send/receive
        error."""
        return {t.address: {"kind": t.kind or None, "answered": t.answered,
                            "rtt_ms": t.rtt_ms, "error": t.error}
                for t in self._targets}

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets and begin pinging.  Raises PermissionError (see
        module doc) before anything runs if a socket cannot be opened."""
        if self._task is not None:
            raise RuntimeError("PingMonitor already started")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        try:
            for t in self._targets:
                self._open(t)
        except BaseException:
            self._close_sockets()
            raise
        self._task = self._loop.create_task(self._run(), name="heart-ping")

    async def close(self) -> None:
        """Stop pinging and close the sockets (idempotent)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("ping monitor failed: %s", task.exception())
        self._close_sockets()

    def _open(self, t: _Target) -> None:
        if self._factory is not None:
            sock = self._factory(t.family, t.sockaddr)
            kind = "raw" if sock.type == socket.SOCK_RAW else "dgram"
        else:
            sock, kind = _open_icmp(t.family, self.mode)
            try:
                if kind == "raw":
                    _set_reply_filter(sock, t.family)
                sock.connect(t.sockaddr)
            except BaseException:
                sock.close()
                raise
        sock.setblocking(False)
        t.sock, t.kind = sock, kind
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_readable, t)

    def _close_sockets(self) -> None:
        for t in self._targets:
            if t.sock is not None:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(t.sock.fileno())
                t.sock.close()
                t.sock = None

    # -- rounds -----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._closing:
            await self._round()
            next_at += self.interval_s
            now = loop.time()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)

    def _packet(self, t: _Target) -> bytes:
        kind = ICMP_ECHO_REQUEST if t.family == socket.AF_INET else ICMPV6_ECHO_REQUEST
        payload = self._cookie + b"heart-pg"
        header = struct.pack("!BBHHH", kind, 0, 0, self._ident, self._seq)
        if t.family == socket.AF_INET:
            csum = icmp_checksum(header + payload)
            header = struct.pack("!BBHHH", kind, 0, csum, self._ident, self._seq)
        return header + payload

    async def _round(self) -> None:
        assert self._loop is not None
        self._seq = (self._seq + 1) & 0xFFFF
        pending = 0
        for t in self._targets:
            t.answered, t.rtt_ms, t.sent_at = False, None, None
            if t.sock is None:
                continue
            try:
                t.sock.send(self._packet(t))
            except OSError as e:   # unreachable network, no route, buffer full...
                t.error = f"send: {e.strerror or e}"
                continue
            t.sent_at = self._loop.time()
            pending += 1
        if pending:
            # A plain future and a timer, not asyncio.wait_for: before 3.12,
            # wait_for can swallow a cancel that coincides with completion,
            # and close() would then wait for a monitor that keeps running.
            done = self._round_done = self._loop.create_future()
            timer = self._loop.call_later(
                self.timeout_s, lambda: done.done() or done.set_result(None))
            try:
                await done
            finally:
                timer.cancel()
                self._round_done = None
        for t in self._targets:
            t.sent_at = None       # late replies to this round no longer count
        self.rounds += 1
        now = any(t.answered for t in self._targets)
        before, self.reachable = self.reachable, now
        if before != now:
            if before is not None or not now:
                log.info("ping nodes %s: %s", ", ".join(self.addresses),
                         "reachable" if now else f"no answer within {self.timeout_s:.3g} s")
            try:
                self.on_change(now)
            except Exception:  # a broken callback must not stop the pinging
                log.exception("PingMonitor on_change callback failed")

    def _on_readable(self, t: _Target) -> None:
        sock = t.sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # e.g. a queued ICMP error on a connected socket
                t.error = f"receive: {e.strerror or e}"
                return
            self._match(t, data)

    def _match(self, t: _Target, data: bytes) -> None:
        if t.kind == "raw" and t.family == socket.AF_INET:
            # Raw IPv4 sockets deliver the IP header too.
            if len(data) < 20 or data[0] >> 4 != 4:
                return
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 8 + len(self._cookie):
            return
        kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", data)
        want = ICMP_ECHO_REPLY if t.family == socket.AF_INET else ICMPV6_ECHO_REPLY
        if kind != want or seq != self._seq or t.sent_at is None:
            return
        # A ping socket's identifier is chosen by the kernel, which already
        # demultiplexes replies by it; on raw sockets it is ours to check.
        if t.kind == "raw" and ident != self._ident:
            return
        if data[8:8 + len(self._cookie)] != self._cookie:
            return
        if t.answered:
            return
        assert self._loop is not None
        t.answered = True
        t.error = None
        t.rtt_ms = (self._loop.time() - t.sent_at) * 1000.0
        done = self._round_done
        if done is not None and not done.done() and all(
                x.answered or x.sent_at is None for x in self._targets):
            done.set_result(None)
