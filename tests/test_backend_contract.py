"""The raw-frame backend contract, run against every backend libheart has.

One test body, four backends, each a libheart built by CMake (`make
cmake-lib`) and driven through cffi:

* ``linux``  - build/cmake/libheart.so (AF_PACKET);
* ``sunos``  - build/cmake/libheart_sunos_shim.so: src_c/platform/sunos (DLPI)
  on tests/shim/sunos, which provides the STREAMS calls (open, putmsg,
  getmsg, ioctl I_STR) on top of AF_PACKET.  Run three ways: raw mode
  (DLIOCRAW), DL_UNITDATA_REQ/IND (the shim refuses DLIOCRAW) and a style 2
  provider (/dev/eth + DL_ATTACH_REQ with PPA 0);
* ``bsd``    - build/cmake/libheart_bsd_shim.so: src_c/platform/bsd (BPF) on
  tests/shim/bsd (/dev/bpf, its ioctls, read and write on top of AF_PACKET).
  Also run with no cloning /dev/bpf (the /dev/bpfN units), and with a BPF
  that has no direction control (it shows our own frames: the backend's
  own-MAC check must keep them out);
* ``none``   - build/cmake/libheart_portable.so: no raw frames at all.

The contract (src_c/core/platform.h, heart/heart.h): open an interface, send
a gratuitous ARP request, a gratuitous ARP reply and an unsolicited neighbour
advertisement, which arrive on a peer byte for byte as the core built them
(so every backend puts the same bytes on the wire); receive the ARP and NA
frames a peer sends, and nothing else (no other protocol, no VLAN-tagged
frames, none of our own; the shims drop tagged frames themselves, since
Linux strips the tag before a socket sees it, so for sunos and bsd that part
is the shims' and not the backends'); report the interface's MAC and index; close.
Errors: -ENODEV for a missing interface, -ENOTSUP for one that is not
Ethernet, -EPERM without the privilege, each with the failing call named.
The ``none`` backend's contract is -ENOSYS from every call.

Frames are exchanged between two namespaces of a throwaway lab (tests/netns.py).
"""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import netns
import pytest

cffi = pytest.importorskip("cffi")

ROOT = Path(__file__).resolve().parent.parent

CDEF = """
const char *hb_backend(void);
int hb_frame_garp(uint8_t *buf, size_t cap, const uint8_t mac[6],
                  const uint8_t ip[4], int reply);
int hb_frame_unsolicited_na(uint8_t *buf, size_t cap, const uint8_t mac[6],
                            const uint8_t ip6[16]);
typedef struct hb_eth hb_eth;
int hb_eth_open(const char *ifname, hb_eth **out);
const char *hb_eth_open_failed_call(void);
int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len);
int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len);
int hb_eth_fd(const hb_eth *h);
int hb_eth_hwaddr(const hb_eth *h, uint8_t mac[6]);
int hb_eth_ifindex(const hb_eth *h);
void hb_eth_close(hb_eth *h);
"""

# backend case -> (library file, hb_backend() of it, environment for the shim)
CASES = {
    "linux": ("libheart.so", "linux", {}),
    "sunos": ("libheart_sunos_shim.so", "sunos", {}),
    "sunos-unitdata": ("libheart_sunos_shim.so", "sunos", {"HEART_SHIM_DLPI_NORAW": "1"}),
    "sunos-style2": ("libheart_sunos_shim.so", "sunos", {"HEART_SHIM_DLPI_STYLE2": "1"}),
    "bsd": ("libheart_bsd_shim.so", "bsd", {}),
    "bsd-noclone": ("libheart_bsd_shim.so", "bsd", {"HEART_SHIM_BPF_NOCLONE": "1"}),
    "bsd-nodirection": ("libheart_bsd_shim.so", "bsd", {"HEART_SHIM_BPF_NODIRECTION": "1"}),
    "none": ("libheart_portable.so", "none", {}),
}
SHIM_ENV = ("HEART_SHIM_DLPI_NORAW", "HEART_SHIM_DLPI_STYLE2", "HEART_SHIM_BPF_NOCLONE",
            "HEART_SHIM_BPF_NODIRECTION")

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ADDR4 = socket.inet_aton("192.0.2.77")
ADDR6 = socket.inet_pton(socket.AF_INET6, "2001:db8::77")
NOBODY4 = "192.0.2.59"   # on the lab's segment (192.0.2.0/26), given to no namespace


def _libdir() -> Path:
    env = os.environ.get("HEART_LIBHEART")
    return Path(env).parent if env else ROOT / "build" / "cmake"


_ffi = cffi.FFI()
_ffi.cdef(CDEF)
_libs: dict[str, object] = {}


def load(case: str):
    """The case's libheart (cffi), and its backend's name checked."""
    fname, backend, _env = CASES[case]
    if fname not in _libs:
        path = _libdir() / fname
        if not path.exists():
            pytest.fail(f"{path} is missing: `make cmake-lib` builds every backend's "
                        f"library (the shims are built on Linux when HEART_SHIMS is ON)")
        _libs[fname] = _ffi.dlopen(str(path))
    lib = _libs[fname]
    assert _ffi.string(lib.hb_backend()).decode() == backend
    return lib


@pytest.fixture(params=list(CASES))
def case(request, monkeypatch):
    for k in SHIM_ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in CASES[request.param][2].items():
        monkeypatch.setenv(k, v)
    return request.param


@pytest.fixture(scope="module")
def pair(netns_ok):
    """Two namespaces on one bridge; we open eth0 of the first."""
    lab = netns.Lab(2)
    try:
        yield lab
    finally:
        lab.close()


def frames(lib, mac: bytes) -> list[bytes]:
    out = []
    buf = _ffi.new("uint8_t[128]")
    for build in (lambda: lib.hb_frame_garp(buf, 128, mac, ADDR4, 0),
                  lambda: lib.hb_frame_garp(buf, 128, mac, ADDR4, 1),
                  lambda: lib.hb_frame_unsolicited_na(buf, 128, mac, ADDR6)):
        n = build()
        assert n > 0
        out.append(bytes(_ffi.buffer(buf, n)))
    return out


def raw_socket(ns: str, ifname: str) -> socket.socket:
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((ifname, 0))
    s.setblocking(False)
    return s


def collect(s: socket.socket, src: bytes, seconds: float) -> list[bytes]:
    """Frames from Ethernet source src arriving on s within seconds."""
    got = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([s], [], [], left)
        if not r:
            break
        data, addr = s.recvfrom(2048)
        if addr[2] != socket.PACKET_OUTGOING and data[6:12] == src:
            got.append(data)
    return got


def open_eth(lib, ns: str, ifname: str):
    h = _ffi.new("hb_eth **")
    with netns.inside(ns):
        rc = lib.hb_eth_open(ifname.encode(), h)
    return rc, h[0], _ffi.string(lib.hb_eth_open_failed_call()).decode()


def recv_all(lib, h, seconds: float) -> list[bytes]:
    """Everything hb_eth_recv hands out within seconds (woken by its fd)."""
    got = []
    buf = _ffi.new("uint8_t[2048]")
    n = _ffi.new("size_t *")
    fd = lib.hb_eth_fd(h)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        rc = lib.hb_eth_recv(h, buf, 2048, n)
        if rc == 0:
            got.append(bytes(_ffi.buffer(buf, n[0])))
            continue
        assert rc == -errno.EAGAIN, os.strerror(-rc)
        select.select([fd], [], [], left)
    return got


def unpadded(frame: bytes, want: bytes) -> bool:
    """frame is want, or want padded with zeros to the 60-byte minimum."""
    return frame == want or (len(want) < 60 and frame == want + bytes(60 - len(want)))


def test_every_backend_is_built_and_named():
    """make cmake-lib builds all four, and each says which backend it is."""
    for case_ in ("linux", "sunos", "bsd", "none"):
        load(case_)


def test_send_receive_close(case, pair):
    lib = load(case)
    me, peer = pair.nodes
    if case == "none":
        rc, h, call = open_eth(lib, me, "eth0")
        assert rc == -errno.ENOSYS and h == _ffi.NULL
        assert "none" in call
        buf = _ffi.new("uint8_t[64]")
        assert lib.hb_eth_send(_ffi.NULL, buf, 64) == -errno.ENOSYS
        assert lib.hb_eth_fd(_ffi.NULL) == -errno.ENOSYS
        lib.hb_eth_close(_ffi.NULL)
        return
    my_mac = bytes.fromhex(netns.mac(me, "eth0").replace(":", ""))
    peer_mac = bytes.fromhex(netns.mac(peer, "eth0").replace(":", ""))
    my_index = netns.ifindex(me, "eth0")
    rc, h, call = open_eth(lib, me, "eth0")
    assert rc == 0, f"{case}: hb_eth_open: {os.strerror(-rc)} in {call}"
    try:
        assert call == ""
        mac = _ffi.new("uint8_t[6]")
        assert lib.hb_eth_hwaddr(h, mac) == 0
        assert bytes(mac) == my_mac
        assert lib.hb_eth_ifindex(h) == my_index
        assert lib.hb_eth_fd(h) >= 0

        # -- send: the peer sees exactly the frames the core built
        cap = raw_socket(peer, "eth0")
        try:
            sent = frames(lib, my_mac)
            for f in sent:
                assert lib.hb_eth_send(h, f, len(f)) == 0
            assert lib.hb_eth_send(h, sent[0], 10) == -errno.EINVAL
            got = collect(cap, my_mac, 1.0)
        finally:
            cap.close()
        # (the kernel's own traffic from this MAC, MLD reports, may be there too)
        for want in sent:
            assert sum(unpadded(g, want) for g in got) == 1, \
                f"{case}: frame {want.hex()} not seen once on the peer (got {[g.hex() for g in got]})"

        # none of our own frames come back: neither those sent through the
        # handle nor the kernel's own ARP requests (a datagram to an address
        # nobody has makes this host ask who has it, from our MAC)
        with netns.inside(me), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"who", (NOBODY4, 9))
        assert [f for f in recv_all(lib, h, 0.5) if f[6:12] == my_mac] == []

        # -- receive: the peer's ARP and NA, and nothing else
        theirs = frames(lib, peer_mac)
        other = (b"\xff" * 6 + peer_mac + struct.pack("!H", 0x88B5) + b"contract" * 6)
        tagged = (theirs[0][:12] + struct.pack("!HH", 0x8100, 5) + theirs[0][12:])
        ipv4 = (b"\xff" * 6 + peer_mac + struct.pack("!H", 0x0800) + bytes(46))
        tx = raw_socket(peer, "eth0")
        try:
            for f in (other, theirs[0], tagged, ipv4, theirs[1], theirs[2]):
                tx.send(f)
        finally:
            tx.close()
        got = [f for f in recv_all(lib, h, 1.0) if f[6:12] == peer_mac]
        assert len(got) == 3, f"{case}: received {[g.hex() for g in got]}"
        for g, want in zip(got, theirs):
            assert unpadded(g, want), f"{case}: {g.hex()} != {want.hex()}"
    finally:
        lib.hb_eth_close(h)
    # closing released the interface: it opens again
    rc, h, call = open_eth(lib, me, "eth0")
    assert rc == 0, call
    lib.hb_eth_close(h)


def test_missing_interface(case, pair):
    lib = load(case)
    rc, h, call = open_eth(lib, pair.nodes[0], "hbnosuch0")
    want = -errno.ENOSYS if case == "none" else -errno.ENODEV
    assert rc == want, f"{case}: {rc} ({os.strerror(-rc)}) in {call!r}"
    assert h == _ffi.NULL
    assert call  # names the call that failed
    assert lib.hb_eth_open(b"", _ffi.new("hb_eth **")) == (
        -errno.ENOSYS if case == "none" else -errno.EINVAL)


def test_not_ethernet(case, pair):
    lib = load(case)
    rc, h, call = open_eth(lib, pair.nodes[0], "lo")
    want = -errno.ENOSYS if case == "none" else -errno.ENOTSUP
    assert rc == want, f"{case}: {rc} ({os.strerror(-rc)}) in {call!r}"
    assert h == _ffi.NULL and call


CHILD = r"""
import cffi, os, sys
ffi = cffi.FFI()
ffi.cdef("typedef struct hb_eth hb_eth; int hb_eth_open(const char *, hb_eth **);"
         "const char *hb_eth_open_failed_call(void);")
lib = ffi.dlopen(sys.argv[1])
h = ffi.new("hb_eth **")
rc = lib.hb_eth_open(sys.argv[2].encode(), h)
print(rc, ffi.string(lib.hb_eth_open_failed_call()).decode())
"""


def test_missing_permission(case, pair):
    """Without CAP_NET_RAW (dropped from the bounding set, so even root lacks
    it): -EPERM, and the failing call named; a missing interface is still
    -ENODEV (checked before anything needs the privilege)."""
    if not os.path.exists("/usr/bin/setpriv"):
        pytest.fail("setpriv (util-linux) is needed to drop CAP_NET_RAW")
    lib = load(case)
    path = str(_libdir() / CASES[case][0])
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def child(ifname: str) -> tuple[int, str]:
        with netns.inside(pair.nodes[0]):
            r = subprocess.run(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw",
                                sys.executable, "-c", CHILD, path, ifname],
                               capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        rc, _, call = r.stdout.strip().partition(" ")
        return int(rc), call

    rc, call = child("eth0")
    want = -errno.ENOSYS if case == "none" else -errno.EPERM
    assert rc == want, f"{case}: {rc} ({os.strerror(-rc)}) in {call!r}"
    assert call
    rc, call = child("hbnosuch0")
    assert rc == (-errno.ENOSYS if case == "none" else -errno.ENODEV), call
    del lib
