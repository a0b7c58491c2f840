"""Quorum votes and the ping monitor.

Pings go to 127.0.0.1 and ::1 only.  "No answer" is tested with a socket
that never gets replies (a UDP socket aimed at a silent local sink), and,
with root, inside a private network namespace where the kernel ignores
echo requests; the unprivileged DGRAM ping socket path is tested in a
namespace whose ping_group_range allows it."""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
import uuid

import netns
import pytest
from conftest import need
from hypothesis import given, settings
from hypothesis import strategies as st

from heart import quorum
from heart.quorum import PingMonitor, QuorumState, compute_quorum, icmp_checksum

NODES3 = ["alpha", "beta", "gamma"]


def q(nodes, members, ping=None, wait_for_all=False, all_seen=True) -> QuorumState:
    return compute_quorum(nodes, members, ping_reachable=ping, wait_for_all=wait_for_all,
                          all_seen=all_seen)


# ------------------------------------------------------------------ votes

def test_majority():
    s = q(NODES3, ["alpha", "beta"])
    assert s == QuorumState(True, 2, 3, ("alpha", "beta"), None, "2 of 3 votes (alpha, beta)")
    s = q(NODES3, ["gamma"])
    assert not s.quorate and s.reason == "1 of 3 votes (gamma); 2 needed"
    assert not q(["a", "b", "c", "d"], ["a", "b"]).quorate        # half is not a majority
    assert q(["a", "b", "c", "d"], ["a", "b", "c"]).quorate


def test_members_follow_config_order_and_strangers_do_not_vote():
    s = q(NODES3, ["gamma", "intruder", "alpha", "alpha"])
    assert s.members == ("alpha", "gamma") and s.votes == 2 and s.quorate


def test_ping_nodes_add_one_expected_vote_and_break_ties():
    s = q(["alpha", "beta"], ["alpha"], ping=True)
    assert s.quorate and (s.votes, s.expected) == (2, 3)
    assert s.reason == "2 of 3 votes (alpha, ping nodes)"
    s = q(["alpha", "beta"], ["alpha"], ping=False)
    assert not s.quorate and (s.votes, s.expected) == (1, 3)
    # Configured ping nodes count as expected even when unreachable: with
    # three nodes, two of them without the ping nodes are 2 of 4, no quorum.
    s = q(NODES3, ["alpha", "beta"], ping=False)
    assert not s.quorate and s.reason == "2 of 4 votes (alpha, beta); 3 needed"
    assert q(NODES3, ["alpha", "beta"], ping=True).quorate
    assert not q(["a", "b", "c", "d"], ["a", "b"], ping=False).quorate
    assert q(["a", "b", "c", "d"], ["a", "b"], ping=True).quorate


def test_ping_split_brain_caveat():
    """Both halves of a two-node cluster still reach the router: both get
    the ping vote and both are quorate.  This is why fencing is needed."""
    left = q(["alpha", "beta"], ["alpha"], ping=True)
    right = q(["alpha", "beta"], ["beta"], ping=True)
    assert left.quorate and right.quorate


def test_single_node_is_always_quorate():
    assert q(["solo"], ["solo"]).quorate
    assert q(["solo"], ["solo"], wait_for_all=True, all_seen=False).quorate
    assert q(["solo"], ["solo"], ping=False).quorate
    assert "single-node" in q(["solo"], ["solo"]).reason


def test_two_nodes_without_wait_for_all_need_both():
    assert not q(["alpha", "beta"], ["alpha"]).quorate
    assert q(["alpha", "beta"], ["alpha", "beta"]).quorate


def test_wait_for_all_and_the_two_node_rule():
    s = q(["alpha", "beta"], ["alpha"], wait_for_all=True, all_seen=False)
    assert not s.quorate
    assert s.reason.startswith("waiting for all nodes to be up together once (not yet up: beta)")
    # Even a majority waits until everyone was seen once.
    assert not q(NODES3, ["alpha", "beta"], wait_for_all=True, all_seen=False).quorate
    s = q(["alpha", "beta"], ["alpha", "beta"], wait_for_all=True, all_seen=False)
    assert not s.quorate and "all are up now" in s.reason
    # After that, two nodes: one vote suffices (corosync two_node).
    s = q(["alpha", "beta"], ["alpha"], wait_for_all=True, all_seen=True)
    assert s.quorate and "two-node" in s.reason
    assert not q(["alpha", "beta"], [], wait_for_all=True, all_seen=True).quorate
    # The two-node rule is only for two nodes without ping nodes.
    assert not q(["alpha", "beta"], ["alpha"], ping=False, wait_for_all=True,
                 all_seen=True).quorate
    assert not q(NODES3, ["alpha"], wait_for_all=True, all_seen=True).quorate
    assert q(NODES3, ["alpha", "beta"], wait_for_all=True, all_seen=True).quorate


def test_as_dict_is_the_journal_evidence():
    d = q(NODES3, ["beta", "gamma"], ping=True).as_dict()
    assert d == {"quorate": True, "votes": 3, "expected": 4, "members": ["beta", "gamma"],
                 "ping": True, "reason": "3 of 4 votes (beta, gamma, ping nodes)"}


def test_no_nodes_is_an_error():
    with pytest.raises(ValueError, match="no nodes configured"):
        q([], [])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), st.data())
def test_prop_two_sides_of_a_partition_are_never_both_quorate(n, data):
    """Without ping nodes, or when at most one side reaches them (and
    outside the two-node rule), a partition has at most one quorate side."""
    nodes = [f"n{i}" for i in range(n)]
    side = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    left = [x for x, s in zip(nodes, side) if s]
    right = [x for x, s in zip(nodes, side) if not s]
    ping_config = data.draw(st.sampled_from(["none", "left", "right", "neither"]))
    wfa = data.draw(st.booleans()) and n != 2
    ping_left = None if ping_config == "none" else ping_config == "left"
    ping_right = None if ping_config == "none" else ping_config == "right"
    a = q(nodes, left, ping=ping_left, wait_for_all=wfa, all_seen=True)
    b = q(nodes, right, ping=ping_right, wait_for_all=wfa, all_seen=True)
    if n == 1:      # a one-node cluster is always quorate: both "sides" are the node
        return
    assert not (a.quorate and b.quorate)
    assert a.votes + b.votes <= a.expected


# ------------------------------------------------------------------ checksum

def test_icmp_checksum_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    assert icmp_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert icmp_checksum(b"") == 0xFFFF
    assert icmp_checksum(b"\x01") == icmp_checksum(b"\x01\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=64).map(lambda b: b + b"\0" * (len(b) % 2)))
def test_prop_checksum_verifies_to_zero(data):
    packet = b"\x08\x00" + b"\x00\x00" + data
    csum = icmp_checksum(packet)
    filled = packet[:2] + struct.pack("!H", csum) + packet[4:]
    assert icmp_checksum(filled) == 0


# ------------------------------------------------------------------ pinging

class Watch:
    """on_change collector with an awaitable for the next value."""

    def __init__(self):
        self.values: list[bool] = []
        self._event = asyncio.Event()

    def __call__(self, value: bool) -> None:
        self.values.append(value)
        self._event.set()

    async def next(self, timeout: float = 3.0) -> bool:
        await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        return self.values[-1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 15))


def _dgram_allowed_here() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        return True
    except OSError:
        return False


def _raw_allowed_here() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return True
    except OSError:
        return False


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def loopbacks() -> list[str]:
    return ["127.0.0.1", "::1"] if _ipv6_loopback() else ["127.0.0.1"]


async def _ping_loopback(mode: str) -> PingMonitor:
    watch = Watch()
    mon = PingMonitor(loopbacks(), 0.05, 1.0, watch, mode=mode)
    assert mon.reachable is None
    await mon.start()
    try:
        assert await watch.next() is True
        assert mon.reachable is True
        status = mon.status()
        assert all(s["answered"] and s["rtt_ms"] is not None for s in status.values())
        rounds = mon.rounds
        while mon.rounds < rounds + 3:           # keeps answering, no spurious change
            await asyncio.sleep(0.02)
        assert watch.values == [True]
    finally:
        await mon.close()
    return mon


@pytest.mark.parametrize("mode", ["auto", "raw", "dgram"])
def test_ping_loopback(mode):
    if mode == "raw" and not _raw_allowed_here():
        need("raw ICMP sockets need CAP_NET_RAW")
    if mode == "auto" and not (_raw_allowed_here() or _dgram_allowed_here()):
        need("neither ping sockets nor raw ICMP sockets are allowed here")
    if mode == "dgram" and not _dgram_allowed_here():
        # Forced dgram does not fall back; the error names the sysctl.  (The
        # dgram path itself is tested in a namespace that allows it, below.)
        async def refused():
            mon = PingMonitor(["127.0.0.1"], 0.05, 0.5, lambda v: None, mode="dgram")
            with pytest.raises(PermissionError, match="ping_group_range"):
                await mon.start()
            await mon.close()

        run(refused())
        return
    mon = run(_ping_loopback(mode))
    kinds = {s["kind"] for s in mon.status().values()}
    if mode == "auto":
        assert kinds == {"dgram" if _dgram_allowed_here() else "raw"}
    else:
        assert kinds == {mode}


def test_both_socket_kinds_refused(monkeypatch):
    def refuse(family, kind, proto=0):
        code = errno.EACCES if kind == socket.SOCK_DGRAM else errno.EPERM
        raise PermissionError(code, os.strerror(code))

    class RefusingSocketModule:          # only heart.quorum sees it; asyncio does not
        socket = staticmethod(refuse)

        def __getattr__(self, name):
            return getattr(socket, name)

    monkeypatch.setattr(quorum, "socket", RefusingSocketModule())

    async def main():
        mon = PingMonitor(["127.0.0.1"], 0.05, 0.5, lambda v: None)
        with pytest.raises(PermissionError) as info:
            await mon.start()
        msg = str(info.value)
        assert "net.ipv4.ping_group_range" in msg and "CAP_NET_RAW" in msg

    run(main())


class Sink:
    """A UDP socket that receives what the monitor sends and never answers."""

    def __init__(self, family: int, host: str):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.family = family

    def factory(self, family, sockaddr):
        assert family == self.family
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.connect(self.sock.getsockname())
        return s

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(2048))
            except BlockingIOError:
                return out


def test_no_answer_from_a_socket_that_never_gets_replies():
    sink = Sink(socket.AF_INET, "127.0.0.1")

    async def main():
        watch = Watch()
        mon = PingMonitor(["127.0.0.1"], 0.05, 0.1, watch, socket_factory=sink.factory)
        await mon.start()
        try:
            t0 = time.monotonic()
            assert await watch.next() is False
            assert time.monotonic() - t0 >= 0.09         # waited the whole timeout
            assert mon.reachable is False
            assert mon.status()["127.0.0.1"]["answered"] is False
        finally:
            await mon.close()

    run(main())
    packets = sink.received()
    assert packets, "the monitor sent nothing"
    kind, code, _csum, _ident, _seq = struct.unpack_from("!BBHHH", packets[0])
    assert (kind, code) == (8, 0)                      # an ICMP echo request
    assert icmp_checksum(packets[0]) == 0             # with a valid checksum
    sink.sock.close()


def test_late_and_foreign_replies_do_not_count():
    """Replies with the wrong sequence, identifier or cookie are ignored."""
    sink = Sink(socket.AF_INET, "127.0.0.1")

    async def main():
        watch = Watch()
        mon = PingMonitor(["127.0.0.1"], 0.05, 0.2, watch, socket_factory=sink.factory)
        await mon.start()
        try:
            target = mon._targets[0]
            await asyncio.sleep(0.01)
            good = mon._packet(target)
            bad_seq = bytearray(good)
            bad_seq[0] = 0
            struct.pack_into("!H", bad_seq, 6, (mon._seq + 7) & 0xFFFF)
            bad_cookie = bytearray(good)
            bad_cookie[0] = 0
            bad_cookie[9] ^= 0xFF
            request = bytes(good)                      # type 8: not a reply
            for data in (bytes(bad_seq), bytes(bad_cookie), request):
                mon._match(target, data)
            assert not target.answered
            reply = bytearray(good)
            reply[0] = 0
            # On a raw socket (IPv4: an IP header first) the identifier is ours
            # to check; a ping socket's kernel already did.
            target.kind = "raw"
            ip_header = bytes([0x45]) + bytes(19)
            foreign = bytearray(reply)
            struct.pack_into("!H", foreign, 4, (mon._ident + 1) & 0xFFFF)
            mon._match(target, ip_header + bytes(foreign))
            mon._match(target, bytes(reply))               # no IP header: too short/ignored
            assert not target.answered
            mon._match(target, ip_header + bytes(reply))
            assert target.answered
        finally:
            await mon.close()

    run(main())
    sink.sock.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match="numeric IPv4 or IPv6"):
        PingMonitor(["gateway.example"], 1, 1, lambda v: None)
    with pytest.raises(ValueError, match="at least one ping node"):
        PingMonitor([], 1, 1, lambda v: None)
    with pytest.raises(ValueError, match="must be positive"):
        PingMonitor(["127.0.0.1"], 0, 1, lambda v: None)
    with pytest.raises(ValueError, match='expected "auto"'):
        PingMonitor(["127.0.0.1"], 1, 1, lambda v: None, mode="icmp")


def test_close_is_idempotent_and_a_broken_callback_does_not_stop_pinging():
    sink = Sink(socket.AF_INET, "127.0.0.1")
    calls = []

    def broken(value):
        calls.append(value)
        raise RuntimeError("handler bug")

    async def main():
        mon = PingMonitor(["127.0.0.1"], 0.02, 0.02, broken, socket_factory=sink.factory)
        await mon.start()
        while mon.rounds < 3:
            await asyncio.sleep(0.01)
        await mon.close()
        await mon.close()
        return mon

    mon = run(main())
    assert calls == [False] and mon.rounds >= 3
    sink.sock.close()


# ------------------------------------------------------------ in a namespace

@pytest.fixture
def private_ns(netns_ok):
    """A bare network namespace with only its loopback up."""
    name = f"hbq{uuid.uuid4().hex[:8]}"
    netns.run("ip", "netns", "add", name)
    try:
        netns.run("ip", "link", "set", "lo", "up", ns=name)
        yield name
    finally:
        netns.run("ip", "netns", "del", name, check=False)


def test_dgram_ping_sockets_in_a_namespace_that_allows_them(private_ns):
    netns.sysctl(private_ns, "net.ipv4.ping_group_range", "0 2147483647")

    async def main():
        watch = Watch()
        mon = PingMonitor(loopbacks(), 0.05, 1.0, watch, mode="dgram")
        with netns.inside(private_ns):      # the sockets are made in the namespace
            await mon.start()
        try:
            assert await watch.next() is True
            assert {s["kind"] for s in mon.status().values()} == {"dgram"}
        finally:
            await mon.close()

    run(main())


@pytest.mark.parametrize("mode", ["raw", "dgram"])
def test_answers_stop_and_resume(private_ns, mode):
    """The kernel of the namespace stops answering echo requests (and starts
    again): the monitor reports False, then True."""
    netns.sysctl(private_ns, "net.ipv4.ping_group_range", "0 2147483647")
    addresses = loopbacks()

    def ignore(on: bool) -> None:
        netns.sysctl(private_ns, "net.ipv4.icmp_echo_ignore_all", "1" if on else "0")
        if "::1" in addresses:
            netns.sysctl(private_ns, "net.ipv6.icmp.echo_ignore_all", "1" if on else "0")

    async def main():
        watch = Watch()
        mon = PingMonitor(addresses, 0.05, 0.3, watch, mode=mode)
        with netns.inside(private_ns):
            await mon.start()
        try:
            assert await watch.next() is True
            ignore(True)
            assert await watch.next() is False
            assert not any(s["answered"] for s in mon.status().values())
            ignore(False)
            assert await watch.next() is True
        finally:
            await mon.close()
        assert watch.values == [True, False, True]

    run(main())
