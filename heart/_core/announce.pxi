# Raw frames and the announcer (IP takeover): gratuitous ARP and unsolicited
# neighbour advertisements built by libheart's core (frames.c, announce.c)
# and sent through the platform backend's raw-frame handle (AF_PACKET on
# Linux).  See docs/announce.md.

import errno as _errno
import socket as _socket
import threading as _threading
import time as _time

from libc.errno cimport EAGAIN, ENETDOWN
from libc.string cimport memcpy


cdef extern from "<sys/socket.h>":
    enum:
        AF_INET
        AF_INET6


CLAIM_KINDS = {HB_CLAIM_ARP_REQUEST: "arp_request",
               HB_CLAIM_ARP_REPLY: "arp_reply", HB_CLAIM_NA: "na"}

# A burst longer than this, asked for from the main thread, is sent one frame
# per C call with interruptible sleeps in between, so that Ctrl-C stops it.
DEF _LONG_BURST_US = 1000000
DEF _RECV_BUF = 2048


cdef int _parse_addr(object address, uint8_t *out) except -1:
    """Pack a numeric IPv4 or IPv6 address into out; returns its family."""
    text = str(address)
    try:
        packed = _socket.inet_pton(_socket.AF_INET, text)
        memcpy(out, <const char *>packed, 4)
        return AF_INET
    except OSError:
        pass
    try:
        packed = _socket.inet_pton(_socket.AF_INET6, text)
    except OSError:
        raise ValueError(f"{address!r} is not a numeric IPv4 or IPv6 address") from None
    memcpy(out, <const char *>packed, 16)
    return AF_INET6


cdef str _addr_str(int family, const uint8_t *addr):
    if family == AF_INET:
        return _socket.inet_ntop(_socket.AF_INET, addr[:4])
    return _socket.inet_ntop(_socket.AF_INET6, addr[:16])


cdef bytes _mac_bytes(object mac):
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) == 6:
            return bytes(mac)
    else:
        parts = str(mac).replace("-", ":").split(":")
        if len(parts) == 6 and all(1 <= len(p) <= 2 for p in parts):
            try:
                return bytes(int(p, 16) for p in parts)
            except ValueError:
                pass
    raise ValueError(f"{mac!r} is not a MAC address (expected six hex bytes, "
                     f"like 02:00:00:00:00:01)")


cdef str _mac_str(const uint8_t *m):
    return ":".join(f"{m[i]:02x}" for i in range(6))


cdef class Claim:
    """What one ARP packet or neighbour advertisement says: ``mac`` has
    ``address``.  ``kind`` is "arp_request", "arp_reply" or "na"; ``mac`` is
    the ARP sender hardware address or the NA's target link-layer address
    (else the Ethernet source), ``eth_src`` the Ethernet source.  ``flags``
    holds an NA's router / solicited / override bits (0x80 / 0x40 / 0x20);
    0 for ARP."""

    cdef readonly str address
    cdef readonly str mac
    cdef readonly str eth_src
    cdef readonly str kind
    cdef readonly int flags

    def __init__(self, str address, str mac, str eth_src, str kind, int flags=0):
        self.address = address
        self.mac = mac
        self.eth_src = eth_src
        self.kind = kind
        self.flags = flags

    def _key(self):
        return (self.address, self.mac, self.eth_src, self.kind, self.flags)

    def __eq__(self, other):
        if not isinstance(other, Claim):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        extra = f" flags={self.flags:#04x}" if self.flags else ""
        src = f" eth_src={self.eth_src}" if self.eth_src != self.mac else ""
        return f"<Claim {self.kind} {self.address} is-at {self.mac}{src}{extra}>"


cdef Claim _make_claim(const hb_claim *c):
    cdef Claim o = Claim.__new__(Claim)
    o.address = _addr_str(c.family, c.addr)
    o.mac = _mac_str(c.mac)
    o.eth_src = _mac_str(c.eth_src)
    o.kind = CLAIM_KINDS.get(c.kind, "?")
    o.flags = c.flags
    return o


cdef bytes _frame_result(int n, uint8_t *buf, str what):
    if n == -_errno.EINVAL:
        raise ValueError(what)
    _check(n, what)
    return buf[:n]


def frame_garp(mac, address, bint reply=False):
    """The gratuitous ARP frame (60 bytes, padded) that announces that mac
    has the IPv4 address: request form (op 1, target hw 0), or with reply
    the reply form (op 2, target hw = mac)."""
    cdef uint8_t buf[HB_FRAME_MAX]
    cdef uint8_t addr[16]
    cdef bytes m = _mac_bytes(mac)
    if _parse_addr(address, addr) != AF_INET:
        raise ValueError(f"gratuitous ARP is for IPv4 addresses, not {address}")
    return _frame_result(hb_frame_garp(buf, sizeof(buf), m, addr, reply), buf,
                         f"cannot build a gratuitous ARP for {address} from "
                         f"{mac}: needs a unicast IPv4 address and a unicast, "
                         f"nonzero MAC")


def frame_arp_probe(mac, target, sender="0.0.0.0"):
    """An ARP request "who has target" from mac; sender 0.0.0.0 (the
    default) makes it an RFC 5227 probe."""
    cdef uint8_t buf[HB_FRAME_MAX]
    cdef uint8_t t[16]
    cdef uint8_t s[16]
    cdef bytes m = _mac_bytes(mac)
    if _parse_addr(target, t) != AF_INET or _parse_addr(sender, s) != AF_INET:
        raise ValueError(f"ARP is for IPv4 addresses: target {target}, sender {sender}")
    return _frame_result(hb_frame_arp_probe(buf, sizeof(buf), m, s, t), buf,
                         f"cannot build an ARP request for {target} from "
                         f"{sender} / {mac}")


def frame_unsolicited_na(mac, address, bint router=False):
    """The unsolicited neighbour advertisement (86 bytes) that announces that
    mac has the IPv6 address: override set, to ff02::1, hop limit 255."""
    cdef uint8_t buf[HB_FRAME_MAX]
    cdef uint8_t addr[16]
    cdef bytes m = _mac_bytes(mac)
    if _parse_addr(address, addr) != AF_INET6:
        raise ValueError(f"neighbour advertisements are for IPv6 addresses, "
                         f"not {address}")
    return _frame_result(hb_frame_na(buf, sizeof(buf), m, addr, router), buf,
                         f"cannot build a neighbour advertisement for {address}"
                         f" from {mac}: needs a unicast IPv6 address and a "
                         f"unicast, nonzero MAC")


def frame_ns(mac, target, source="::"):
    """A neighbour solicitation for target to its solicited-node group, from
    source (the default :: makes it a duplicate-address-detection probe)."""
    cdef uint8_t buf[HB_FRAME_MAX]
    cdef uint8_t t[16]
    cdef uint8_t s[16]
    cdef bytes m = _mac_bytes(mac)
    if _parse_addr(target, t) != AF_INET6 or _parse_addr(source, s) != AF_INET6:
        raise ValueError(f"neighbour solicitations are for IPv6 addresses: "
                         f"target {target}, source {source}")
    return _frame_result(hb_frame_ns(buf, sizeof(buf), m, s, t), buf,
                         f"cannot build a neighbour solicitation for {target}"
                         f" from {source} / {mac}")


def parse_claim(const uint8_t[::1] frame not None):
    """The Claim an Ethernet frame makes (ARP with a sender address, or a
    valid ICMPv6 neighbour advertisement), or None.  Safe on any bytes."""
    cdef hb_claim c
    cdef int rc = hb_frame_parse_claim(&frame[0] if frame.shape[0] else NULL,
                                       frame.shape[0], &c)
    return _make_claim(&c) if rc == 0 else None


# What sending raw frames needs, per backend (said when it is missing).
_RAW_PRIVILEGE = {
    "linux": "opening a raw socket needs CAP_NET_RAW (run as root, or grant "
             "the capability)",
    "sunos": "opening the DLPI device needs the net_rawaccess privilege (run "
             "as root, or grant it with usermod -K defaultpriv=basic,net_rawaccess)",
    "bsd": "opening a BPF device (/dev/bpf*) needs read and write access to it "
           "(run as root, or give the daemon's group access to /dev/bpf*)",
}


cdef object _open_error(int rc, str ifname):
    cdef int err = -rc
    call = hb_eth_open_failed_call().decode()
    if err == _errno.EPERM or err == _errno.EACCES:
        return PermissionError(
            err, f"{call} for interface {ifname!r}: "
                 f"{_RAW_PRIVILEGE.get(hb_backend().decode(), _RAW_PRIVILEGE['linux'])}")
    if err == _errno.ENODEV:
        return OSError(err, f"interface {ifname!r} does not exist")
    if err == _errno.ENOSYS:
        return OSError(
            err, f"raw frames are not available: libheart was built with the "
                 f"{hb_backend().decode()!r} backend, which cannot send "
                 f"gratuitous ARP or neighbour advertisements (interface "
                 f"{ifname!r})")
    if err == _errno.ENOTSUP:
        return OSError(err, f"interface {ifname!r} is not an Ethernet interface"
                            f" ({call} reports another hardware type): ARP and"
                            f" neighbour advertisements need Ethernet")
    if err == _errno.EINVAL:
        return ValueError(f"invalid interface name {ifname!r}")
    return OSError(err, f"{call} for interface {ifname!r}: {os.strerror(err)}")


cdef class Announcer:
    """Announces addresses on one Ethernet interface: gratuitous ARP for
    IPv4, unsolicited neighbour advertisements for IPv6; asks who has an
    address (probe) and reports the claims that arrive (ARP packets and
    neighbour advertisements from other hosts; claims(), readable fileno()).

    Opening needs CAP_NET_RAW.  Methods may be called from several threads:
    announce() releases the GIL while it sends and waits, and close() during
    a running announce() takes effect when that returns."""

    cdef hb_announcer *a
    cdef int users
    cdef bint closing
    cdef readonly str ifname
    cdef readonly int ifindex
    cdef readonly str mac

    def __cinit__(self):
        self.a = NULL
        self.users = 0
        self.closing = False

    def __init__(self, str ifname):
        cdef uint8_t m[6]
        cdef hb_eth *h
        if self.a is not NULL:
            raise RuntimeError("Announcer.__init__ called twice")
        name = ifname.encode()
        if b"\0" in name:
            raise ValueError(f"invalid interface name {ifname!r}")
        self.ifname = ifname
        cdef int rc = hb_announcer_open(name, &self.a)
        if rc < 0:
            self.a = NULL
            raise _open_error(rc, ifname)
        h = hb_announcer_eth(self.a)
        self.ifindex = hb_eth_ifindex(h)
        hb_eth_hwaddr(h, m)
        self.mac = _mac_str(m)

    def __dealloc__(self):
        if self.a is not NULL:
            hb_announcer_close(self.a)
            self.a = NULL

    cdef int _enter(self) except -1:
        if self.a is NULL or self.closing:
            raise ValueError(f"Announcer for {self.ifname!r} is closed")
        self.users += 1
        return 0

    cdef void _leave(self):
        self.users -= 1
        if self.closing and self.users == 0 and self.a is not NULL:
            hb_announcer_close(self.a)
            self.a = NULL

    cdef object _send_error(self, int rc, str what):
        cdef int err = -rc
        if err == _errno.EINVAL:
            return ValueError(f"{what}: not an address this host can claim "
                              f"(unicast only)")
        call = f"sendto(AF_PACKET) on interface {self.ifname!r}"
        if err == _errno.ENETDOWN:
            return OSError(err, f"{what}: {call}: the interface is down")
        if err == _errno.ENXIO or err == _errno.ENODEV:
            return OSError(err, f"{what}: {call}: the interface is gone")
        return OSError(err, f"{what}: {call}: {os.strerror(err)}")

    def announce(self, address, int count=1, double interval_ms=0.0,
                 bint reply=False, bint router=False):
        """Send count announcements of address (IPv4: gratuitous ARP, the
        reply form with reply=True; IPv6: unsolicited neighbour
        advertisement, router flag with router=True), the first at once,
        then one every interval_ms on absolute monotonic deadlines.
        Returns the number sent.  Blocks for (count - 1) * interval_ms with
        the GIL released; from an event loop, run it in an executor."""
        cdef uint8_t addr[16]
        cdef int family = _parse_addr(address, addr)
        cdef int flags = 0
        cdef int rc = 0
        cdef int i
        cdef uint32_t interval_us
        cdef uint64_t start, due, now
        if count < 1:
            raise ValueError(f"count {count}: at least 1")
        if not 0.0 <= interval_ms <= 4294967.0:
            raise ValueError(f"interval_ms {interval_ms}: 0 .. 4294967")
        interval_us = <uint32_t>(interval_ms * 1000.0 + 0.5)
        if reply:
            if family != AF_INET:
                raise ValueError(f"reply=True is the gratuitous ARP reply form: "
                                 f"IPv4 only, not {address}")
            flags |= HB_ANNOUNCE_REPLY
        if router:
            if family != AF_INET6:
                raise ValueError(f"router=True sets the router flag of a "
                                 f"neighbour advertisement: IPv6 only, not {address}")
            flags |= HB_ANNOUNCE_ROUTER
        what = f"announcing {address}"
        self._enter()
        try:
            if ((<uint64_t>count - 1) * interval_us > _LONG_BURST_US and
                    _threading.current_thread() is _threading.main_thread()):
                start = hb_now_ns()
                for i in range(count):
                    if i:
                        due = start + <uint64_t>i * interval_us * 1000
                        now = hb_now_ns()
                        if due > now:
                            _time.sleep((due - now) / 1e9)
                    with nogil:
                        rc = hb_announce(self.a, family, addr, 1, 0, flags)
                    if rc < 0:
                        break
                if rc >= 0:
                    rc = count
            else:
                with nogil:
                    rc = hb_announce(self.a, family, addr, count, interval_us, flags)
        finally:
            self._leave()
        if rc < 0:
            raise self._send_error(rc, what)
        return rc

    def probe(self, address):
        """Ask the segment who has address (IPv4: an ARP probe from 0.0.0.0;
        IPv6: a neighbour solicitation from ::).  Owners answer; their
        answers come back through claims()."""
        cdef uint8_t addr[16]
        cdef int family = _parse_addr(address, addr)
        cdef int rc
        self._enter()
        try:
            with nogil:
                rc = hb_announcer_probe(self.a, family, addr)
        finally:
            self._leave()
        if rc < 0:
            raise self._send_error(rc, f"probing {address}")

    def fileno(self):
        """Readable while claims() has something to return."""
        if self.a is NULL or self.closing:
            raise ValueError(f"Announcer for {self.ifname!r} is closed")
        return hb_eth_fd(hb_announcer_eth(self.a))

    def claims(self, int max=64):
        """The claims that arrived since the last call, oldest first, at
        most max (non-blocking).  ARP packets without a sender address and
        invalid advertisements are skipped; at most 4 * max frames are read
        per call, so call again while it returns max claims (a backend may
        hold frames read in one batch, BPF does, which no longer make
        fileno() readable).  The interface
        going down is not an error here (nothing arrives meanwhile); it
        vanishing is (OSError)."""
        cdef uint8_t buf[_RECV_BUF]
        cdef size_t n = 0
        cdef hb_claim c
        cdef int rc
        cdef hb_eth *h
        if max < 1:
            raise ValueError(f"max {max}: at least 1")
        self._enter()
        try:
            h = hb_announcer_eth(self.a)
            out = []
            for _ in range(4 * max):
                rc = hb_eth_recv(h, buf, sizeof(buf), &n)
                if rc == -EAGAIN or rc == -ENETDOWN:
                    # ENETDOWN: reported once when the interface went down;
                    # the socket receives again when it comes back up
                    break
                if rc < 0:
                    raise OSError(-rc, f"recvmsg(AF_PACKET) on interface "
                                       f"{self.ifname!r}: {os.strerror(-rc)}")
                if hb_frame_parse_claim(buf, n, &c) == 0:
                    out.append(_make_claim(&c))
                    if len(out) >= max:
                        break
            return out
        finally:
            self._leave()

    @property
    def closed(self):
        return self.a is NULL or self.closing

    def close(self):
        """Close the raw socket (after a running announce() returns)."""
        self.closing = True
        if self.users == 0 and self.a is not NULL:
            hb_announcer_close(self.a)
            self.a = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = " closed" if self.closed else ""
        return (f"<Announcer {self.ifname} ifindex={self.ifindex} "
                f"mac={self.mac}{state}>")
