"""Network namespaces for tests: a bridge namespace, node namespaces joined
to it by veth pairs, documentation addresses only (192.0.2.0/24 and
2001:db8::/64), and a way to create sockets inside a namespace from this
process (setns on the calling thread, then back).

Every name carries a unique prefix; Lab.close() deletes every namespace it
made (which removes their veths), also when a test fails.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import uuid

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


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


def sysctl(ns: str, key: str, value: str) -> None:
    """Set a net.* sysctl inside ns (/proc/sys/net follows the namespace
    of the thread that opens it)."""
    with inside(ns), open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns: str):
    """Run the block with this thread in namespace ns (sockets made here
    stay in ns after the block)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)
        os.close(there)


def run(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run a command, in namespace ns when given: the child is forked by a
    thread that setns'd into ns, so it starts there.  (``ip netns exec`` and
    ``ip -n`` also remount /sys, which fails where / is not a mount point,
    as in a chroot.)"""
    cmd = list(args)
    if ns:
        with inside(ns):
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    else:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        where = f" (in namespace {ns})" if ns else ""
        raise RuntimeError(f"{' '.join(cmd)}{where} failed ({r.returncode}): "
                           f"{r.stderr.strip()}")
    return r.stdout


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
            self._ns_add(ns)
            sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
            sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
            for link in range(self.n_links):
                inner, outer = f"{self.prefix}{i}i{link}", f"{self.prefix}{i}o{link}"
                run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
                run("ip", "link", "set", inner, "netns", ns)
                run("ip", "link", "set", outer, "netns", self.br_ns)
                run("ip", "link", "set", inner, "name", self.ifname(link), ns=ns)
                run("ip", "link", "set", outer, "master", f"br{link}", ns=self.br_ns)
                run("ip", "link", "set", outer, "up", ns=self.br_ns)
                dev = self.ifname(link)
                run("ip", "addr", "add", f"{self.v4(link, i)}/26", "brd",
                    self.bcast(link), "dev", dev, ns=ns)
                run("ip", "-6", "addr", "add", f"{self.v6(link, i)}/80", "dev", dev,
                    "nodad", ns=ns)
                run("ip", "link", "set", dev, "up", ns=ns)

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
