"""The ipaddr resource against a real kernel, in network namespaces (root).

A Lab of two nodes on two segments (tests/netns.py): node 1 gets the virtual
address on eth0, node 2 is the client.  Addresses: 192.0.2.40/26 and
2001:db8::40/80 (inside link 0's subnets), nothing outside the namespaces
these tests create.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import netns
import pytest
from conftest import need

from heart.config import ResourceConfig
from heart.ipaddr import (
    AddressError,
    AddressManager,
    IpaddrAgent,
    add_address,
    address_present,
    make_params,
    remove_address,
)

ROOT = Path(__file__).resolve().parent.parent
VIP = {4: ("192.0.2.40", 26), 6: ("2001:db8::40", 80)}
FAMILIES = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])




def arun(ns: str, coro_fn):
    return netns.in_ns(ns, lambda: asyncio.run(coro_fn()))


def addrs(ns: str):
    """Every address in ns as (interface, address, prefix, permanent)."""
    def get():
        with AddressManager() as m:
            return sorted((a.interface, a.address, a.prefix, a.valid_lft is None)
                          for a in m.addresses())
    return netns.in_ns(ns, get)


def info(ns: str, version: int, ifname: str = "eth0", prefix: int | None = None):
    address, plen = VIP[version]
    p = make_params(ifname, address, prefix or plen)

    def get():
        with AddressManager() as m:
            return m.info(p)
    return netns.in_ns(ns, get)


_made: list[IpaddrAgent] = []


@pytest.fixture(autouse=True)
def _close_agents():
    """End every agent's worker thread (and its sockets in the node namespace)."""
    yield
    while _made:
        asyncio.run(_made.pop().close())


def agent(version: int, **params) -> IpaddrAgent:
    address, prefix = VIP[version]
    base = {"address": f"{address}/{prefix}", "interface": "eth0"}
    base.update({k: str(v) for k, v in params.items()})
    a = IpaddrAgent(ResourceConfig(name="vip", type="ipaddr", params=base,
                                   timeout_us=5_000_000), deadtime_us=500_000)
    _made.append(a)
    return a


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(ns: str, address: str, timeout_s: float = 0.5) -> float | None:
    """One ICMP / ICMPv6 echo from ns (raw socket, root): the round trip in
    seconds, or None without a reply within timeout_s."""
    v6 = ipaddress.ip_address(address).version == 6
    s = netns.in_ns(ns, lambda: socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                                        socket.SOCK_RAW,
                                        socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP))
    with s:
        ident, seq, payload = os.getpid() & 0xFFFF, 7, b"heart-ipaddr-test"
        if v6:  # the kernel fills in the ICMPv6 checksum
            pkt = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
        else:
            head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, seq) + payload
        t0 = time.monotonic()
        s.sendto(pkt, (address, 0))
        while True:
            left = t0 + timeout_s - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data, src = s.recvfrom(4096)
            except socket.timeout:
                return None
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
            want = 129 if v6 else 0
            if (ipaddress.ip_address(src[0].split("%")[0]) == ipaddress.ip_address(address)
                    and icmp[0] == want and struct.unpack("!HH", icmp[4:8]) == (ident, seq)):
                return time.monotonic() - t0


def mac_of(ns: str, ifname: str = "eth0") -> str:
    out = netns.run("ip", "-o", "link", "show", ifname, ns=ns)
    return out.split("link/ether ")[1].split()[0]


def spawn_in(ns: str, code: str) -> subprocess.Popen:
    """A Python child started in ns (forked by a thread inside it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return netns.in_ns(ns, lambda: subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))


def _have_announcer() -> str | None:
    try:
        from heart._core import Announcer  # noqa: F401
    except ImportError:
        return "heart._core.Announcer is not built yet (the announcer lands separately)"
    return None


# --------------------------------------------------------------------------- #
# Adding and removing
# --------------------------------------------------------------------------- #


@FAMILIES
def test_add_remove(lab2, version):
    n1 = lab2.nodes[0]
    address, prefix = VIP[version]
    before = addrs(n1)
    netns.in_ns(n1, lambda: add_address("eth0", address, prefix))
    a = info(n1, version)
    assert a is not None and a.valid_lft is None and a.preferred_lft is None
    assert f"{address}/{prefix}" in netns.run("ip", "addr", "show", "dev", "eth0", ns=n1)
    assert netns.in_ns(n1, lambda: address_present("eth0", f"{address}/{prefix}"))
    assert netns.in_ns(n1, lambda: address_present("eth0", address))
    assert not netns.in_ns(n1, lambda: address_present("eth0", address, prefix - 1))
    assert not netns.in_ns(n1, lambda: address_present("eth1", address))
    # Adding what is there is an update, not an error.
    netns.in_ns(n1, lambda: add_address("eth0", address, prefix))
    assert netns.in_ns(n1, lambda: remove_address("eth0", address, prefix)) is True
    assert info(n1, version) is None
    assert netns.in_ns(n1, lambda: remove_address("eth0", address, prefix)) is False
    # Without a prefix: whatever prefix it has there.
    netns.in_ns(n1, lambda: add_address("eth0", f"{address}/{prefix}"))
    assert netns.in_ns(n1, lambda: remove_address("eth0", address)) is True
    assert netns.in_ns(n1, lambda: remove_address("eth9", address)) is False
    assert addrs(n1) == before


def test_label(lab2):
    n1 = lab2.nodes[0]
    netns.in_ns(n1, lambda: add_address("eth0", "192.0.2.40", 26, label="eth0:vip"))
    assert info(n1, 4).label == "eth0:vip"
    out = netns.run("ip", "-4", "-o", "addr", "show", "label", "eth0:vip", ns=n1)
    assert "192.0.2.40/26" in out and "brd 192.0.2.63" in out
    with pytest.raises(ValueError, match="does not start with the interface name"):
        add_address("eth0", "192.0.2.41", 26, label="vip")
    netns.in_ns(n1, lambda: remove_address("eth0", "192.0.2.40", 26))


@FAMILIES
def test_lifetimes_are_the_lease(lab2, version):
    n1 = lab2.nodes[0]
    address, prefix = VIP[version]
    netns.in_ns(n1, lambda: add_address("eth0", address, prefix, lease_s=7))
    a = info(n1, version)
    assert 6 <= a.valid_lft <= 7 and a.preferred_lft == a.valid_lft
    out = netns.run("ip", "addr", "show", "dev", "eth0", ns=n1)
    assert "dynamic" in out
    assert "preferred_lft 7sec" in out or "preferred_lft 6sec" in out
    # Re-adding without a lease makes it permanent again.
    netns.in_ns(n1, lambda: add_address("eth0", address, prefix))
    a = info(n1, version)
    assert a.valid_lft is None and a.preferred_lft is None
    netns.in_ns(n1, lambda: remove_address("eth0", address, prefix))


# --------------------------------------------------------------------------- #
# IPv6 without duplicate address detection
# --------------------------------------------------------------------------- #


def test_ipv6_without_dad_is_usable_at_once(lab2):
    n1, n2 = lab2.nodes
    # The Lab turns DAD off in its namespaces; turn it on for eth0 here, and
    # show with a control address that the kernel now makes new addresses
    # tentative.
    netns.sysctl(n1, "net.ipv6.conf.eth0.accept_dad", "1")
    netns.run("ip", "-6", "addr", "add", "2001:db8::41/80", "dev", "eth0", ns=n1)
    assert info(n1, 6) is None  # the VIP is not there yet

    def control():
        with AddressManager() as m:
            return [a for a in m.addresses(socket.AF_INET6) if a.address == "2001:db8::41"]

    ctl = netns.in_ns(n1, control)
    assert ctl and ctl[0].tentative, "control: DAD should make a new address tentative"
    with pytest.raises(OSError):  # a tentative address cannot be used yet
        netns.in_ns(n1, lambda: socket.socket(socket.AF_INET6).bind(("2001:db8::41", 0)))

    netns.in_ns(n1, lambda: add_address("eth0", "2001:db8::40", 80, lease_s=30))
    rtt = ping(n2, "2001:db8::40")
    a = info(n1, 6)
    assert a.nodad and not a.tentative
    assert rtt is not None, "no echo reply from 2001:db8::40 right after the add"
    s = netns.in_ns(n1, lambda: socket.socket(socket.AF_INET6))
    with s:
        s.bind(("2001:db8::40", 0))
    netns.in_ns(n1, lambda: remove_address("eth0", "2001:db8::40", 80))


def test_ipv4_usable_at_once(lab2):
    n1, n2 = lab2.nodes
    netns.in_ns(n1, lambda: add_address("eth0", "192.0.2.40", 26, lease_s=30))
    assert ping(n2, "192.0.2.40") is not None
    netns.in_ns(n1, lambda: remove_address("eth0", "192.0.2.40", 26))
    assert ping(n2, "192.0.2.40", timeout_s=0.3) is None


# --------------------------------------------------------------------------- #
# The lease
# --------------------------------------------------------------------------- #


def _wait_gone(ns: str, versions, limit_s: float) -> dict[int, float]:
    t0 = time.monotonic()
    gone: dict[int, float] = {}
    while len(gone) < len(versions) and time.monotonic() - t0 < limit_s:
        have = {a[1] for a in addrs(ns)}
        for v in versions:
            if v not in gone and VIP[v][0] not in have:
                gone[v] = time.monotonic() - t0
        time.sleep(0.05)
    return gone


def test_lease_expires_by_itself(lab2):
    n1 = lab2.nodes[0]
    for v in (4, 6):
        netns.in_ns(n1, lambda v=v: add_address("eth0", *VIP[v], lease_s=2))
    gone = _wait_gone(n1, (4, 6), 5.0)
    assert set(gone) == {4, 6}, "the kernel did not remove the leased addresses"
    for v, t in gone.items():
        assert 1.5 <= t <= 3.0, (v, t)  # lease 2 s (+ up to 1 s of kernel timer slack)


_OWNER = """
import asyncio, sys
from heart.config import ResourceConfig
from heart.ipaddr import IpaddrAgent

async def main():
    agents = [IpaddrAgent(ResourceConfig(name=f"vip{v}", type="ipaddr", params={
        "address": a, "interface": "eth0", "lease": "2s", "announce_count": "0"}))
        for v, a in ((4, "192.0.2.40/26"), (6, "2001:db8::40/80"))]
    for a in agents:
        r = await a.start()
        assert r.ok, r
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_renewal_keeps_the_address_and_a_killed_owner_loses_it(lab2):
    n1 = lab2.nodes[0]
    child = spawn_in(n1, _OWNER)
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", (line, child.stderr.read() if child.poll() else "")
        time.sleep(4.5)  # more than twice the 2 s lease: only renewal keeps them
        for v in (4, 6):
            a = info(n1, v)
            assert a is not None, f"IPv{v} address expired although renewed"
            assert a.valid_lft is not None and a.valid_lft >= 1
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        gone = _wait_gone(n1, (4, 6), 5.0)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()
        child.stderr.close()
    assert set(gone) == {4, 6}
    # renewed at most 2/3 s before the kill: gone within lease + 1 s of it
    assert all(t <= 3.0 for t in gone.values()), gone


def test_agent_close_stops_renewal_and_the_address_expires(lab2):
    n1 = lab2.nodes[0]

    async def main():
        a = agent(4, lease="1s", announce_count="0")
        r = await a.start()
        assert r.ok and "lease 1s, renewed every 333ms" in r.output
        await asyncio.sleep(2.2)
        assert a.renewals >= 5
        m = await a.monitor()
        assert m.status == "running"
        await a.close()  # renewal stops, the address stays ...
        return time.monotonic()

    closed = arun(n1, main)
    assert info(n1, 4) is not None
    gone = _wait_gone(n1, (4,), 4.0)  # ... until its lifetime runs out
    assert 4 in gone and time.monotonic() - closed < 1.0 + 1.0 + 0.5


# --------------------------------------------------------------------------- #
# Errors: clear, and nothing changes
# --------------------------------------------------------------------------- #


def test_unknown_interface(lab2):
    n1 = lab2.nodes[0]
    before = addrs(n1)

    async def main():
        return await agent(4, interface="eth9").start()

    r = arun(n1, main)
    assert (r.ok, r.status) == (False, "failed")
    assert r.error.startswith("resource vip: cannot add 192.0.2.40/26 to eth9: "
                              "interface 'eth9' does not exist (interfaces here: eth0, eth1, lo)")
    assert "nothing was changed" in r.error
    assert addrs(n1) == before


@FAMILIES
def test_address_there_with_another_prefix(lab2, version):
    n1 = lab2.nodes[0]
    address, prefix = VIP[version]
    other = 24 if version == 4 else 64
    netns.run("ip", f"-{version}", "addr", "add", f"{address}/{other}", "dev", "eth0", ns=n1)
    before = addrs(n1)

    async def main():
        a = agent(version, lease="2s")
        return await a.start(), await a.monitor()

    r, m = arun(n1, main)
    assert not r.ok
    assert r.error.startswith(f"resource vip: cannot add {address}/{prefix} to eth0: {address} "
                              f"is already on eth0 with prefix /{other}, not /{prefix}")
    assert m.status == "stopped"
    assert addrs(n1) == before  # still /other, still permanent
    with pytest.raises(AddressError, match=f"with prefix /{other}"):
        netns.in_ns(n1, lambda: add_address("eth0", address, prefix, lease_s=2))
    assert addrs(n1) == before


def test_address_on_another_interface(lab2):
    n1 = lab2.nodes[0]
    netns.run("ip", "addr", "add", "192.0.2.40/26", "dev", "eth1", ns=n1)
    before = addrs(n1)

    async def main():
        return await agent(4).start()

    r = arun(n1, main)
    assert not r.ok and "192.0.2.40 is already on another interface, eth1" in r.error
    assert addrs(n1) == before


_UNPRIVILEGED = """
import asyncio, concurrent.futures.thread, ctypes, json, os, sys
from pyroute2 import IPRoute
import heart.config, heart._core
from heart.config import ResourceConfig
from heart.ipaddr import AddressError, IpaddrAgent, add_address

IPRoute().close()  # load what pyroute2 loads lazily while the files are readable
def agent(count):
    return IpaddrAgent(ResourceConfig(name="vip", type="ipaddr", params={
        "address": "192.0.2.40/26", "interface": "eth0", "announce_count": count}))
agents = [agent("0"), agent("3")]
loop = asyncio.new_event_loop()
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
try:
    add_address("eth0", "192.0.2.40", 26, lease_s=2)
    out["plain"] = "added"
except AddressError as exc:
    out["plain"] = str(exc)
out["agent"] = loop.run_until_complete(agents[0].start()).error
out["agent_announce"] = loop.run_until_complete(agents[1].start()).error
print(json.dumps(out))
"""


def test_without_privileges(lab2):
    """A child that dropped to uid 65534 (no CAP_NET_ADMIN, no CAP_NET_RAW)."""
    n1 = lab2.nodes[0]
    before = addrs(n1)
    child = spawn_in(n1, _UNPRIVILEGED)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    got = json.loads(out)
    assert got["plain"] == ("cannot add 192.0.2.40/26 to eth0: changing addresses needs "
                            "CAP_NET_ADMIN (run as root)")
    assert got["agent"] == ("resource vip: cannot add 192.0.2.40/26 to eth0: changing "
                            "addresses needs CAP_NET_ADMIN (run as root); nothing was changed")
    if _have_announcer() is None:  # the raw socket is opened before the address is added
        assert got["agent_announce"].startswith("resource vip: cannot announce 192.0.2.40 on "
                                                "eth0: ")
        assert "needs CAP_NET_RAW (run as root)" in got["agent_announce"]
    else:
        assert "CAP_NET_ADMIN" in got["agent_announce"]
    assert "nothing was changed" in got["agent_announce"]
    assert addrs(n1) == before


# --------------------------------------------------------------------------- #
# Announcements on the wire (needs heart._core.Announcer)
# --------------------------------------------------------------------------- #


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


def _claims(frame: bytes) -> tuple[str, str] | None:
    """(claimed address, sender MAC) of a gratuitous ARP or a neighbour advertisement."""
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    src = frame[6:12].hex(":")
    if etype == 0x0806 and len(frame) >= 42:
        sip, tip = frame[28:32], frame[38:42]
        if sip == tip:
            return str(ipaddress.IPv4Address(sip)), frame[22:28].hex(":")
    if etype == 0x86DD and len(frame) >= 78 and frame[20] == 58 and frame[54] == 136:
        return str(ipaddress.IPv6Address(frame[62:78])), src
    return None


@FAMILIES
def test_announcements_on_the_wire(lab2, version):
    need(_have_announcer())
    n1, n2 = lab2.nodes
    address, _ = VIP[version]
    mac1 = mac_of(n1)
    # The client believes the address is somewhere else.
    netns.run("ip", "neigh", "replace", address, "lladdr", "02:00:00:00:00:99", "dev", "eth0",
              "nud", "stale", ns=n2)
    time.sleep(1.1)  # past the neighbour entry's locktime
    cap = netns.in_ns(n2, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                          socket.htons(0x0003)))
    seen: list[tuple[float, str]] = []  # (kernel receive time, CLOCK_REALTIME; sender MAC)
    stop = threading.Event()

    def capture():
        cap.settimeout(0.05)
        while not stop.is_set():
            try:
                frame, anc, _, _ = cap.recvmsg(2048, 64)
            except socket.timeout:
                continue
            c = _claims(frame)
            if c and c[0] == address:
                stamp = [struct.unpack("qq", d[:16]) for lvl, typ, d in anc
                         if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS]
                sec, nsec = stamp[0]
                seen.append((sec + nsec / 1e9, c[1]))

    with cap:
        cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        cap.bind(("eth0", 0))
        reader = threading.Thread(target=capture)
        reader.start()
        try:
            async def main():
                a = agent(version, announce_count="3", announce_interval="100ms",
                          announce_repeat="500ms")
                t0 = time.time()
                r = await a.start()
                returned = time.time()
                assert r.ok and "announced (frame 1 of 3" in r.output, r
                await asyncio.sleep(0.85)
                s = await a.stop()
                assert s.ok
                return t0, returned, time.time(), a.frames_sent

            t0, returned, stopped, sent = arun(n1, main)
            time.sleep(0.4)
        finally:
            stop.set()
            reader.join()
    assert sent == 6
    assert [m for _, m in seen] == [mac1] * 6, seen
    rel = [t - t0 for t, _ in seen]
    assert seen[0][0] <= returned  # the first frame left before start() returned
    assert 0.09 < rel[1] - rel[0] < 1.0 and 0.09 < rel[2] - rel[1] < 1.0, rel
    assert 0.49 <= rel[3] < 1.5, rel  # the repeat burst (never early; late under load)
    assert all(t < stopped for t, _ in seen)
    neigh = netns.run("ip", "neigh", "show", address, "dev", "eth0", ns=n2)
    assert f"lladdr {mac1}" in neigh, neigh
