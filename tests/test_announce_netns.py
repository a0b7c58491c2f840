"""The announcer on a real segment (root + network namespaces; skipped
without, unless HEART_REQUIRE_ROOT=1): two nodes and a client on one bridge,
192.0.2.0/26 and 2001:db8::/80 (tests/netns.py).

An address moves from node 1 to node 2; node 2's announcement moves the
client kernel's neighbour entry to node 2's MAC (Linux updates an existing
entry from a gratuitous ARP or an unsolicited NA; it creates none, with the
default arp_accept=0 / accept_untracked_na=0, hence the first TCP connection
to node 1), and the client reaches the address on node 2 (a TCP connection
that node 2 answers).  Every frame Heart sent, captured on
the client's interface, decodes in tshark as well-formed ARP / ICMPv6 with a
good checksum.  Probes get the owner's answer as a claim; no Announcer sees
its own frames.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import netns
import pytest
from conftest import need

import heart._core as core

VIP4 = "192.0.2.50"   # inside link 0's 192.0.2.0/26
VIP6 = "2001:db8::50"  # inside link 0's 2001:db8::/80
DEV = "eth0"


@pytest.fixture
def lab(netns_ok):
    with netns.Lab(n_nodes=2) as lab:
        lab.add_client()
        yield lab


def _addr(ns: str, op: str, vip: str) -> None:
    if ":" in vip:
        args = ["ip", "-6", "addr", op, f"{vip}/80", "dev", DEV]
        if op == "add":
            args.append("nodad")
    else:
        args = ["ip", "addr", op, f"{vip}/26", "dev", DEV]
    netns.run(*args, ns=ns)


def _reach(client: str, server: str, vip: str) -> str | None:
    """Connect from namespace client to vip over TCP, where namespace server
    listens on vip; returns the name the server answers with (so we know
    which node we reached), or None if the connection failed."""
    family = netns.socket.AF_INET6 if ":" in vip else netns.socket.AF_INET
    with netns.inside(server):
        srv = netns.socket.socket(family, netns.socket.SOCK_STREAM)
    with netns.inside(client):
        cli = netns.socket.socket(family, netns.socket.SOCK_STREAM)
    try:
        srv.bind((vip, 0))
        srv.listen(1)
        srv.settimeout(3)
        port = srv.getsockname()[1]

        def serve():
            try:
                conn, _ = srv.accept()
                conn.sendall(server.encode())
                conn.close()
            except OSError:
                pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        cli.settimeout(3)
        try:
            cli.connect((vip, port))
            return cli.recv(100).decode()
        except OSError:
            return None
        finally:
            t.join(4)
    finally:
        cli.close()
        srv.close()


def _open(ns: str) -> core.Announcer:
    with netns.inside(ns):
        return core.Announcer(DEV)


def _heart_frames(frames, src_mac: str, vip: str):
    """The frames from src_mac about vip: ARP with vip as sender or target,
    ICMPv6 solicitations / advertisements (135, 136) whose target is vip."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    packed = netns.socket.inet_pton(
        netns.socket.AF_INET6 if ":" in vip else netns.socket.AF_INET, vip)
    out = []
    for ts, f in frames:
        if f[6:12] != mac:
            continue
        arp = f[12:14] == b"\x08\x06" and packed in (f[28:32], f[38:42])
        nd = (f[12:14] == b"\x86\xdd" and len(f) >= 78 and f[20] == 58
              and f[54] in (135, 136) and f[62:78] == packed)
        if arp or nd:
            out.append((ts, f))
    return out


def _tshark_check(tmp_path, frames, name):
    """Every frame decodes cleanly; returns tshark's layers."""
    pcap = str(tmp_path / f"{name}.pcap")
    netns.write_pcap(pcap, frames)
    layers = netns.tshark_decode(pcap)
    assert len(layers) == len(frames)
    for i, lay in enumerate(layers):
        assert netns.tshark_problems(lay) == [], (name, i, netns.tshark_problems(lay))
    # ...and the same check does fail on a corrupted copy of the first frame
    # (ARP: cut short; NA: one checksum bit flipped)
    f = bytearray(frames[0][1])
    bad = bytes(f[:30]) if f[12:14] == b"\x08\x06" else None
    if bad is None:
        f[57] ^= 1
        bad = bytes(f)
    bad_pcap = str(tmp_path / f"{name}-corrupted.pcap")
    netns.write_pcap(bad_pcap, [(0, bad)])
    assert netns.tshark_problems(netns.tshark_decode(bad_pcap)[0]), \
        "tshark did not flag a corrupted frame: the check cannot fail"
    return layers


@pytest.mark.parametrize("vip,reply", [(VIP4, False), (VIP4, True), (VIP6, False)],
                         ids=["ipv4-garp-request", "ipv4-garp-reply", "ipv6-na"])
def test_takeover_moves_the_clients_neighbour_entry(lab, tmp_path, vip, reply):
    need(None if shutil.which("tshark") else "needs tshark")
    old, new = lab.nodes
    client = lab.clients[0]
    old_mac, new_mac = netns.mac(old, DEV), netns.mac(new, DEV)

    # The client learns vip -> old node's MAC by talking to it.
    _addr(old, "add", vip)
    assert _reach(client, old, vip) == old
    assert netns.neigh(client, vip, DEV)[0] == old_mac

    # The address moves; the client's entry still says the old MAC.
    _addr(old, "del", vip)
    _addr(new, "add", vip)
    assert netns.neigh(client, vip, DEV)[0] == old_mac

    with netns.Capture(client, DEV) as cap:
        with _open(new) as ann:
            assert ann.mac == new_mac and ann.ifname == DEV
            assert ann.ifindex == netns.ifindex(new, DEV)
            t0 = time.monotonic()
            assert ann.announce(vip, count=3, interval_ms=50, reply=reply) == 3
            took = time.monotonic() - t0
            ann.probe(vip)
            # what the client's kernel made of it, before any other traffic
            lladdr, state = netns.neigh(client, vip, DEV)
            assert lladdr == new_mac, (lladdr, state)
            # no Announcer hears its own frames
            assert all(c.mac != new_mac for c in ann.claims())
        frames = cap.read(want=lambda fr: len(_heart_frames(fr, new_mac, vip)) >= 4)
    # three frames, 50 ms apart on absolute deadlines: about 100 ms in all
    assert 0.095 <= took < 1.0, took

    ours = _heart_frames(frames, new_mac, vip)
    assert len(ours) == 4, [f.hex() for _, f in ours]
    gaps = [(b[0] - a[0]) / 1e6 for a, b in zip(ours, ours[1:3])]
    # Absolute deadlines: never early; a late wake-up on a loaded machine
    # may bring the next frame closer, so only the whole span is bounded.
    assert sum(gaps) >= 95 and all(g < 1000 for g in gaps), gaps
    layers = _tshark_check(tmp_path, ours, "heart")
    if ":" in vip:
        icmp = [lay["icmpv6"] for lay in layers]
        assert [i["icmpv6.type"] for i in icmp] == ["136", "136", "136", "135"]
        for lay in layers[:3]:
            assert lay["ipv6"]["ipv6.hlim"] == "255"
            assert lay["ipv6"]["ipv6.dst"] == "ff02::1"
            flags = lay["icmpv6"]["icmpv6.nd.na.flag_tree"]
            assert (flags["icmpv6.nd.na.flag.o"], flags["icmpv6.nd.na.flag.s"],
                    flags["icmpv6.nd.na.flag.r"]) == ("1", "0", "0")
            assert lay["icmpv6"]["icmpv6.nd.na.target_address"] == vip
    else:
        arp = [lay["arp"] for lay in layers]
        assert [a["arp.opcode"] for a in arp] == ["2" if reply else "1"] * 3 + ["1"]
        for a in arp[:3]:
            assert a["arp.isgratuitous"] == "1"
            assert a["arp.src.proto_ipv4"] == a["arp.dst.proto_ipv4"] == vip
            assert a["arp.src.hw_mac"] == new_mac
        assert arp[3]["arp.src.proto_ipv4"] == "0.0.0.0"  # the probe

    # The client now reaches the address on the new node.
    assert _reach(client, new, vip) == new
    assert netns.neigh(client, vip, DEV)[0] == new_mac


@pytest.mark.parametrize("vip", [VIP4, VIP6], ids=["ipv4", "ipv6"])
def test_probe_gets_the_owners_answer(lab, vip):
    """Confirmed takeover / duplicate detection: a probe for an address is
    answered by every node that has it, and the answers come back as claims;
    here node 1 and node 2 both hold it and node 2 asks."""
    n1, n2 = lab.nodes
    mac1 = netns.mac(n1, DEV)
    _addr(n1, "add", vip)
    _addr(n2, "add", vip)
    with _open(n2) as ann:
        ann.claims(max=1000)  # drop what arrived before the probe
        ann.probe(vip)
        got = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
                c.address == vip and c.mac == mac1 for c in got):
            netns.select.select([ann], [], [], 0.1)
            got += ann.claims()
        owners = {c.mac for c in got if c.address == vip}
        assert owners == {mac1}, got
        c = next(c for c in got if c.address == vip)
        assert c.kind == ("na" if ":" in vip else "arp_reply")
        if ":" in vip:
            assert c.flags & 0x20 and not c.flags & 0x40  # override, unsolicited


def test_claims_report_other_nodes_announcements(lab):
    """The duplicate-owner watch: node 1's announcements reach node 2's
    Announcer as claims; its own never do."""
    n1, n2 = lab.nodes
    mac1 = netns.mac(n1, DEV)
    with _open(n1) as a1, _open(n2) as a2:
        a2.claims(max=1000)
        a1.announce(VIP4, count=2)
        a1.announce(VIP6, count=2)
        got = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(got) < 4:
            netns.select.select([a2], [], [], 0.1)
            got += [c for c in a2.claims() if c.mac == mac1]
        assert sorted((c.address, c.kind) for c in got) == sorted(
            [(VIP4, "arp_request")] * 2 + [(VIP6, "na")] * 2), got
        assert all(c.mac != a1.mac for c in a1.claims())


def test_vlan_tagged_frames_are_not_claims(lab):
    """A frame with an 802.1Q tag belongs to another segment (a VLAN on the
    same cable): the kernel filter keeps it from an Announcer on the parent
    interface, where the kernel would hand it over untagged.  Node 1 sends
    the same gratuitous ARPs tagged (VLAN 10) and untagged; node 2 sees only
    the untagged ones."""
    n1, n2 = lab.nodes
    mac1 = netns.mac(n1, DEV)
    garp = core.frame_garp(mac1, VIP4)
    na = core.frame_unsolicited_na(mac1, VIP6)
    tag = b"\x81\x00\x00\x0a"
    with netns.inside(n1):
        raw = netns.socket.socket(netns.socket.AF_PACKET, netns.socket.SOCK_RAW, 0)
    with raw, _open(n2) as ann:
        raw.bind((DEV, 0))
        ann.claims(max=1000)
        for f in (garp, na):
            raw.send(f[:12] + tag + f[12:])
        raw.send(garp)
        raw.send(na)
        got = []
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            netns.select.select([ann], [], [], 0.1)
            got += [c for c in ann.claims() if c.mac == mac1]
        assert sorted(c.address for c in got) == [VIP4, VIP6], got


def test_close_during_announce_waits_for_it(lab):
    """close() from another thread while a burst runs (GIL released) takes
    effect when the burst ends: no use after free, all frames sent."""
    ann = _open(lab.nodes[0])
    result = []
    t = threading.Thread(target=lambda: result.append(
        ann.announce(VIP4, count=5, interval_ms=40)))
    t.start()
    time.sleep(0.05)
    ann.close()
    assert ann.closed
    with pytest.raises(ValueError, match="closed"):
        ann.announce(VIP4)
    with pytest.raises(ValueError, match="closed"):
        ann.fileno()
    t.join(5)
    assert result == [5]


def test_long_burst_from_the_main_thread_can_be_interrupted(lab):
    """A burst longer than a second asked for from the main thread sends
    every frame, and stops on Ctrl-C (SIGINT) instead of running to the end.
    (Its spacing is not asserted: on a loaded CI machine a late wake-up
    sends two frames together; bench/announce.py measures timing.)"""
    import signal

    ns, peer = lab.nodes
    mac = netns.mac(ns, DEV)
    with _open(ns) as ann, netns.Capture(peer, DEV) as cap:
        t0 = time.monotonic()
        assert ann.announce(VIP4, count=3, interval_ms=600) == 3
        assert time.monotonic() - t0 >= 1.19      # it waited for the schedule
        ts = [t for t, _ in _heart_frames(cap.read(), mac, VIP4)]
        assert len(ts) == 3

        timer = threading.Timer(0.3, signal.pthread_kill,
                                (threading.main_thread().ident, signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            ann.announce(VIP4, count=100, interval_ms=500)
        assert time.monotonic() - t0 < 1.0
        timer.join()
        assert not ann.closed


def test_announce_errors(lab):
    ns = lab.nodes[0]
    with _open(ns) as ann:
        with pytest.raises(ValueError, match="IPv4 only"):
            ann.announce(VIP6, reply=True)
        with pytest.raises(ValueError, match="IPv6 only"):
            ann.announce(VIP4, router=True)
        with pytest.raises(ValueError, match="at least 1"):
            ann.announce(VIP4, count=0)
        with pytest.raises(ValueError, match="not a numeric"):
            ann.announce("host.example")
        with pytest.raises(ValueError, match="unicast"):
            ann.announce("224.0.0.1")
        netns.run("ip", "link", "set", DEV, "down", ns=ns)
        with pytest.raises(OSError) as ei:
            ann.announce(VIP4)
        assert ei.value.errno == errno.ENETDOWN
        assert "sendto(AF_PACKET) on interface 'eth0': the interface is down" \
            in str(ei.value)
        assert ann.claims() == []  # down is no error for the watch
        netns.run("ip", "link", "set", DEV, "up", ns=ns)
        assert ann.announce(VIP4) == 1  # the same socket works again


def test_without_cap_net_raw(lab):
    """A process without CAP_NET_RAW (here: root turned nobody) gets a
    PermissionError that names the call, the interface and the capability."""
    code = textwrap.dedent("""
        import os, sys
        import heart._core as core
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            core.Announcer("eth0")
        except PermissionError as e:
            print(e)
            sys.exit(0)
        except Exception as e:
            print(type(e).__name__, e)
            sys.exit(1)
        sys.exit(2)
    """)
    with netns.inside(lab.nodes[0]):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, (r.stdout, r.stderr)
    msg = r.stdout.strip()
    assert "socket(AF_PACKET, SOCK_RAW)" in msg and "'eth0'" in msg, msg
    assert "needs CAP_NET_RAW" in msg, msg
