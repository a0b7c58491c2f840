"""Network namespaces for tests: a bridge namespace, node namespaces joined
to it by veth pairs, documentation addresses only (192.0.2.0/24 and
2001:db8::/64), and a way to create sockets inside a namespace from this
process (setns on the calling thread, then back).

Every name carries a unique prefix; Lab.close() deletes every namespace it
made (which removes their veths), also when a test fails.

Also: client namespaces on the same segments (Lab.add_client), the MAC and
neighbour entries of an interface (mac, neigh), and a kernel-timestamped
AF_PACKET capture that writes pcap files for tshark (Capture, write_pcap).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid


def have_netns() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip"):
        return "needs iproute2 (the ip command)"
    name = f"hbprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


# Entering a namespace, running a command in one and setting a sysctl
# there are product code (heart lab uses them): one implementation.
from heart.failover_demo import kernel_ts
from heart.lab import _setns, inside, run, sysctl  # noqa: F401


class Lab:
    """n_nodes node namespaces, n_links separate segments (one bridge each,
    all in one bridge namespace).  Link L uses 192.0.2.(64*L)/26 and
    2001:db8::L:0:0:0/80; node i (1-based) is .(64*L + i) and ::L:0:0:i."""

    def __init__(self, n_nodes: int, n_links: int = 1):
        assert 1 <= n_links <= 4 and 1 <= n_nodes <= 60
        self.prefix = f"hbt{uuid.uuid4().hex[:6]}"
        self.n_nodes = n_nodes
        self.n_links = n_links
        self.br_ns = f"{self.prefix}br"
        self.nodes = [f"{self.prefix}n{i}" for i in range(1, n_nodes + 1)]
        self.clients: list[str] = []
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def v4(link: int, node: int) -> str:
        return f"192.0.2.{64 * link + node}"

    @staticmethod
    def v6(link: int, node: int) -> str:
        return f"2001:db8::{link}:0:0:{node:x}"

    @staticmethod
    def bcast(link: int) -> str:
        return f"192.0.2.{64 * link + 63}"

    @staticmethod
    def ifname(link: int) -> str:
        return f"eth{link}"

    def _ns_add(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self._made.append(name)
        run("ip", "link", "set", "lo", "up", ns=name)

    def _build(self) -> None:
        self._ns_add(self.br_ns)
        for link in range(self.n_links):
            br = f"br{link}"
            run("ip", "link", "add", br, "type", "bridge", ns=self.br_ns)
            # No multicast snooping: a lab bridge floods groups like a hub.
            run("ip", "link", "set", br, "type", "bridge", "mcast_snooping", "0",
                ns=self.br_ns)
            run("ip", "link", "set", br, "up", ns=self.br_ns)
        for i, ns in enumerate(self.nodes, start=1):
            self._attach(ns, i, str(i))

    def _attach(self, ns: str, host: int, tag: str) -> None:
        """Make namespace ns and cable it to every link as host number host."""
        self._ns_add(ns)
        sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
        sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        for link in range(self.n_links):
            inner, outer = f"{self.prefix}{tag}i{link}", f"{self.prefix}{tag}o{link}"
            run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "link", "set", outer, "netns", self.br_ns)
            run("ip", "link", "set", inner, "name", self.ifname(link), ns=ns)
            run("ip", "link", "set", outer, "master", f"br{link}", ns=self.br_ns)
            run("ip", "link", "set", outer, "up", ns=self.br_ns)
            dev = self.ifname(link)
            run("ip", "addr", "add", f"{self.v4(link, host)}/26", "brd",
                self.bcast(link), "dev", dev, ns=ns)
            run("ip", "-6", "addr", "add", f"{self.v6(link, host)}/80", "dev", dev,
                "nodad", ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)

    # Host numbers of client namespaces: after the nodes' (1..60), below the
    # broadcast address (.63 of each /26).
    CLIENT_HOSTS = (61, 62)

    def add_client(self) -> str:
        """A client namespace (not a cluster node) on every link, with host
        number 61, then 62: Lab.v4(link, lab.host(ns)) is its address.
        Removed by close() like the rest."""
        k = len(self.clients)
        if k >= len(self.CLIENT_HOSTS):
            raise RuntimeError(f"at most {len(self.CLIENT_HOSTS)} clients")
        ns = f"{self.prefix}c{k + 1}"
        self._attach(ns, self.CLIENT_HOSTS[k], f"c{k + 1}")
        self.clients.append(ns)
        return ns

    def host(self, ns: str) -> int:
        """The host number of a node or client namespace."""
        if ns in self.clients:
            return self.CLIENT_HOSTS[self.clients.index(ns)]
        return self.nodes.index(ns) + 1

    def set_link(self, node: int, link: int, up: bool) -> None:
        """Cut or restore node's cable on link (the bridge side of its veth)."""
        outer = f"{self.prefix}{node}o{link}"
        run("ip", "link", "set", outer, "up" if up else "down", ns=self.br_ns)

    def close(self) -> None:
        for name in reversed(self._made):
            run("ip", "netns", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Interfaces, neighbours, captures
# ---------------------------------------------------------------------------

def mac(ns: str, dev: str) -> str:
    """The MAC address of dev in ns ("02:..", lower case)."""
    return json.loads(run("ip", "-j", "link", "show", "dev", dev, ns=ns))[0]["address"]


def ifindex(ns: str, dev: str) -> int:
    return json.loads(run("ip", "-j", "link", "show", "dev", dev, ns=ns))[0]["ifindex"]


def neigh(ns: str, addr: str, dev: str) -> tuple[str | None, list[str]]:
    """(lladdr, states) of the kernel's neighbour entry for addr on dev in
    ns; (None, []) when there is none."""
    family = "-6" if ":" in addr else "-4"
    out = json.loads(run("ip", family, "-j", "neigh", "show", "to", addr, "dev", dev,
                         ns=ns) or "[]")
    for e in out:
        if e.get("dst") == addr:
            return e.get("lladdr"), e.get("state", [])
    return None, []


ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>
PACKET_OUTGOING = 4


class Capture:
    """Every frame that arrives on (or, with outgoing=True, also leaves) dev
    in ns, from the moment the object exists: an AF_PACKET socket with
    kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME ns)."""

    def __init__(self, ns: str, dev: str, outgoing: bool = False):
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(ETH_P_ALL))
            self.sock.bind((dev, ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.outgoing = outgoing

    def read(self, idle: float = 0.2, until: float = 3.0,
             want=None) -> list[tuple[int, bytes]]:
        """(timestamp_ns, frame) of what arrived: read until idle seconds
        pass with nothing new, or want(frames) is true (then a last idle
        wait is skipped), or until seconds in all."""
        frames: list[tuple[int, bytes]] = []
        end = time.monotonic() + until
        while True:
            if want is not None and want(frames):
                return frames
            left = min(idle, end - time.monotonic())
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return frames
            while True:
                try:
                    data, anc, _flags, addr = self.sock.recvmsg(65535, 64)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING and not self.outgoing:
                    continue
                frames.append((kernel_ts(anc, 0), data))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_pcap(path: str, frames: list[tuple[int, bytes]]) -> None:
    """A classic pcap file (nanosecond timestamps, Ethernet) of frames."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            f.write(struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000,
                                len(frame), len(frame)))
            f.write(frame)


# ---------------------------------------------------------------------------
# tshark: do frames decode cleanly?
# ---------------------------------------------------------------------------

# Checksum validation that Wireshark leaves off by default.  (Wireshark
# always verifies ICMPv6 checksums; there is no preference for them.)
TSHARK_PREFS = ("-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                "-o", "tcp.check_checksum:TRUE")
PI_WARN = 0x00600000  # expert severities: chat 0x2.., note 0x4.., warn, error 0x8..


def tshark_decode(pcap: str) -> list[dict]:
    """tshark's full dissection of every frame in pcap (its JSON layers)."""
    r = subprocess.run(["tshark", "-n", *TSHARK_PREFS, "-r", pcap, "-T", "json",
                        "--no-duplicate-keys"], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise RuntimeError(f"tshark -r {pcap} failed ({r.returncode}): {r.stderr}")
    return [p["_source"]["layers"] for p in json.loads(r.stdout or "[]")]


def _experts(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "_ws.expert":
                for e in v if isinstance(v, list) else [v]:
                    yield int(e.get("_ws.expert.severity", 0)), e.get("_ws.expert.message", "")
            yield from _experts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _experts(v)


def tshark_problems(layers: dict) -> list[str]:
    """What tshark found wrong with one frame: malformed, expert infos of
    warning level or worse (bad checksums are warnings), an ICMPv6 checksum
    that was not verified good."""
    out = []
    if "_ws.malformed" in layers:
        out.append("malformed packet")
    out += [msg for sev, msg in _experts(layers) if sev >= PI_WARN]
    icmp = layers.get("icmpv6")
    if icmp is not None and icmp.get("icmpv6.checksum.status") != "1":
        out.append(f"ICMPv6 checksum status {icmp.get('icmpv6.checksum.status')!r}")
    return out


def in_ns(ns: str, fn, *args):
    """fn(*args) in a thread that has entered ns (sockets it makes stay there;
    threads it starts, such as an asyncio loop's workers, start there too);
    its value, or its exception raised here."""
    out: dict = {}

    def run():
        try:
            with inside(ns):
                out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            out["error"] = exc

    t = threading.Thread(target=run, name=f"in-{ns}")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")
