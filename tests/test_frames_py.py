"""The raw frames of IP takeover through heart._core, no root needed: the
builders' bytes, parse_claim on built, edited and random frames, tshark's
verdict on every kind of frame (and on corrupted ones, so that the check is
known to be able to fail), and the Announcer's open errors."""
from __future__ import annotations

import errno
import os
import random
import shutil
import struct

import netns
import pytest

import heart._core as core

MAC = "02:00:00:00:00:01"
V4 = "192.0.2.10"
V6 = "2001:db8::10"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_garp_request_and_reply():
    req = core.frame_garp(MAC, V4)
    rep = core.frame_garp(MAC, V4, reply=True)
    mac = bytes.fromhex(MAC.replace(":", ""))
    ip = bytes([192, 0, 2, 10])
    head = b"\xff" * 6 + mac + b"\x08\x06" + bytes([0, 1, 8, 0, 6, 4])
    assert req == head + b"\x00\x01" + mac + ip + bytes(6) + ip + bytes(18)
    assert rep == head + b"\x00\x02" + mac + ip + mac + ip + bytes(18)
    assert len(req) == len(rep) == 60


def test_na_checksum_and_fields():
    f = core.frame_unsolicited_na(MAC, V6)
    assert len(f) == 86
    assert f[:6] == bytes.fromhex("333300000001") and f[12:14] == b"\x86\xdd"
    assert f[20] == 58 and f[21] == 255 and f[54] == 136 and f[58] == 0x20
    # pseudo-header + message sums to 0xffff
    plen = struct.unpack("!H", f[18:20])[0]
    pseudo = f[22:54] + struct.pack("!I", plen) + b"\0\0\0\x3a"
    assert _csum(pseudo + f[54:54 + plen]) == 0xFFFF
    assert core.frame_unsolicited_na(MAC, V6, router=True)[58] == 0xA0


def test_ns_goes_to_the_solicited_node_group():
    f = core.frame_ns(MAC, "2001:db8::12:3456")
    assert f[:6] == bytes.fromhex("3333ff123456")
    assert f[38:54] == bytes.fromhex("ff0200000000000000000001ff123456")
    assert len(f) == 78 and f[22:38] == bytes(16)  # from ::, no option
    assert len(core.frame_ns(MAC, V6, source="2001:db8::1")) == 86


@pytest.mark.parametrize("call", [
    lambda: core.frame_garp(MAC, "0.0.0.0"),
    lambda: core.frame_garp(MAC, "224.0.0.1"),
    lambda: core.frame_garp(MAC, "255.255.255.255"),
    lambda: core.frame_garp("01:00:5e:00:00:01", V4),
    lambda: core.frame_garp("00:00:00:00:00:00", V4),
    lambda: core.frame_garp(MAC, V6),
    lambda: core.frame_garp("02:00:00:00:00", V4),
    lambda: core.frame_garp("zz:00:00:00:00:01", V4),
    lambda: core.frame_garp(MAC, "192.0.2"),
    lambda: core.frame_unsolicited_na(MAC, "ff02::1"),
    lambda: core.frame_unsolicited_na(MAC, "::"),
    lambda: core.frame_unsolicited_na(MAC, V4),
    lambda: core.frame_ns(MAC, "ff02::1"),
    lambda: core.frame_arp_probe(MAC, "0.0.0.0"),
])
def test_builders_refuse_what_cannot_be_claimed(call):
    with pytest.raises(ValueError):
        call()


def test_parse_claim_round_trip():
    c = core.parse_claim(core.frame_garp(MAC, V4))
    assert (c.address, c.mac, c.eth_src, c.kind, c.flags) == (V4, MAC, MAC, "arp_request", 0)
    assert core.parse_claim(core.frame_garp(MAC, V4, reply=True)).kind == "arp_reply"
    c = core.parse_claim(core.frame_unsolicited_na(MAC, V6))
    assert (c.address, c.mac, c.kind, c.flags) == (V6, MAC, "na", 0x20)
    assert c == core.Claim(V6, MAC, MAC, "na", 0x20)
    assert hash(c) == hash(core.Claim(V6, MAC, MAC, "na", 0x20))
    assert "na 2001:db8::10 is-at 02:00:00:00:00:01" in repr(c)
    # asking is not claiming
    assert core.parse_claim(core.frame_arp_probe(MAC, V4)) is None
    assert core.parse_claim(core.frame_ns(MAC, V6)) is None
    # a who-has from 192.0.2.1 says 192.0.2.1 is at its sender
    assert core.parse_claim(core.frame_arp_probe(MAC, V4, sender="192.0.2.1")).address \
        == "192.0.2.1"


def test_parse_claim_on_bad_bytes():
    na = core.frame_unsolicited_na(MAC, V6)
    for n in range(len(na)):
        assert core.parse_claim(na[:n]) is None
    assert core.parse_claim(b"") is None
    bad = bytearray(na)
    bad[57] ^= 1
    assert core.parse_claim(bytes(bad)) is None
    hop = bytearray(na)
    hop[21] = 64
    assert core.parse_claim(bytes(hop)) is None
    rng = random.Random(4)
    for _ in range(20000):
        f = bytearray(rng.choice([na, core.frame_garp(MAC, V4)]))
        for _ in range(rng.randrange(1, 4)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        c = core.parse_claim(bytes(f[:rng.randrange(len(f) + 1)]))
        assert c is None or isinstance(c, core.Claim)
    assert core.parse_claim(memoryview(na)) is not None
    assert core.parse_claim(bytearray(na)) is not None


@pytest.fixture
def tshark():
    if not shutil.which("tshark"):
        pytest.skip("needs tshark")


def test_tshark_decodes_every_frame_cleanly(tmp_path, tshark):
    frames = [core.frame_garp(MAC, V4), core.frame_garp(MAC, V4, reply=True),
              core.frame_arp_probe(MAC, V4), core.frame_unsolicited_na(MAC, V6),
              core.frame_unsolicited_na(MAC, V6, router=True), core.frame_ns(MAC, V6),
              core.frame_ns(MAC, V6, source="2001:db8::1")]
    pcap = str(tmp_path / "frames.pcap")
    netns.write_pcap(pcap, [(i, f) for i, f in enumerate(frames)])
    layers = netns.tshark_decode(pcap)
    assert len(layers) == len(frames)
    for i, lay in enumerate(layers):
        assert netns.tshark_problems(lay) == [], (i, netns.tshark_problems(lay))
    arp = [lay["arp"] for lay in layers[:3]]
    assert [a["arp.opcode"] for a in arp] == ["1", "2", "1"]
    assert arp[0].get("arp.isannouncement") == "1" and arp[1].get("arp.isgratuitous") == "1"
    icmp = [lay["icmpv6"] for lay in layers[3:]]
    assert [i["icmpv6.type"] for i in icmp] == ["136", "136", "135", "135"]
    assert icmp[0]["icmpv6.nd.na.flag_tree"]["icmpv6.nd.na.flag.o"] == "1"
    assert icmp[0]["icmpv6.nd.na.flag_tree"]["icmpv6.nd.na.flag.s"] == "0"
    assert layers[3]["ipv6"]["ipv6.hlim"] == "255"


def test_tshark_check_flags_corrupted_frames(tmp_path, tshark):
    """The check can fail: a wrong ICMPv6 checksum and a cut ARP packet."""
    na = bytearray(core.frame_unsolicited_na(MAC, V6))
    na[57] ^= 1
    pcap = str(tmp_path / "bad.pcap")
    netns.write_pcap(pcap, [(0, bytes(na)), (1, core.frame_garp(MAC, V4)[:30])])
    probs = [netns.tshark_problems(lay) for lay in netns.tshark_decode(pcap)]
    assert any("checksum" in p.lower() for p in probs[0]), probs[0]
    assert "malformed packet" in probs[1], probs[1]


def test_unknown_interface():
    with pytest.raises(OSError) as ei:
        core.Announcer("hbnosuch9")
    assert ei.value.errno == errno.ENODEV
    assert "interface 'hbnosuch9' does not exist" in str(ei.value)


def test_loopback_is_not_ethernet():
    if os.geteuid() != 0:
        with pytest.raises(PermissionError, match="CAP_NET_RAW"):
            core.Announcer("lo")
        return
    with pytest.raises(OSError) as ei:
        core.Announcer("lo")
    assert ei.value.errno == errno.ENOTSUP
    assert "'lo' is not an Ethernet interface" in str(ei.value)


def test_announcer_argument_errors():
    with pytest.raises(ValueError, match="invalid interface name"):
        core.Announcer("")
    with pytest.raises(ValueError, match="invalid interface name"):
        core.Announcer("a\0b")
