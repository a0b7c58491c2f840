"""Three-node clusters of Heart and of its contenders (keepalived, ucarp) in a
`heart lab`, behind one interface, for the failover benchmark
(bench/failover.py).

    c = start("keepalived", "0.01", directory)   # or ("heart", "20ms"), ("ucarp", "1")
    c.owner()        # the node whose namespace has 192.0.2.100 (crashed nodes excluded)
    c.kill("node1")  # SIGKILL of node1's daemon (a crash; the address stays behind)
    c.restart("node1")   # drop the stale address (a reboot would) and start it again
    c.cut("node1"); c.restore("node1")    # eth0 down / up in node1's namespace
    c.stop()         # lab.down: every process and namespace goes

Every contender runs inside the lab's node namespaces only (whose only
interfaces are lo and eth0), is started with lab.spawn() (recorded, so
lab.down() stops it by PID) and never as a system service.

* heart: lab.up(daemons=True) with interval = the setting and deadtime =
  3 intervals; resource "vip" 192.0.2.100/24, auto_failback, node1 preferred.
* keepalived: one VRRPv3 instance per node (virtual_router_id 51, priority
  150/100/50 from node1, preempt, advert_int = the setting in seconds),
  virtual_ipaddress 192.0.2.100/24 dev eth0; VRRP subsystem only.
* ucarp: advbase = the setting (whole seconds), advskew 0/10/20 from node1,
  preempt, up/down scripts that add/remove 192.0.2.100/24 on eth0.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

from heart import lab

KINDS = ("heart", "keepalived", "ucarp")
VRID = 51                       # keepalived virtual_router_id, ucarp vhid
UCARP_PASS = "heartlab"
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
UCARP = shutil.which("ucarp") or "/usr/sbin/ucarp"
IP = shutil.which("ip") or "/sbin/ip"


def _lab_call(fn, *args, **kwargs):
    """Call a lab function that takes the lab directory's lock, retrying
    while the lock is busy.  lab's lock is a non-blocking flock, and a
    fork in another thread of this process (another cluster spawning a
    daemon) briefly shares the lock file's descriptor, so with several
    clusters running in threads the lock can look busy for a moment."""
    for attempt in range(50):
        try:
            return fn(*args, **kwargs)
        except lab.LabError as exc:
            if "another `heart lab` command" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02)


def parse_seconds(text: str) -> float:
    """'2ms', '20ms', '1s', '0.01' (seconds) -> seconds."""
    t = text.strip()
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    if t.endswith("s"):
        return float(t[:-1])
    return float(t)


def _fmt_duration(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:g}ms" if ms < 1000 or ms % 1000 else f"{ms / 1000:g}s"


def detect_time(kind: str, setting: str, node: int = 2) -> float:
    """The contender's nominal time (s) to declare the master dead, for the
    node that takes over (node2): Heart's deadtime; VRRP's
    Master_Down_Interval 3*advert + (256-priority)/256*advert; CARP's
    deadratio (3) * advbase + advskew/256."""
    s = parse_seconds(setting)
    if kind == "heart":
        return 3 * s
    if kind == "keepalived":
        prio = _priority(node)
        return 3 * s + (256 - prio) / 256 * s
    return 3 * (s + _skew(node) / 256)


def _priority(i: int) -> int:
    return 200 - 50 * i          # node1 150, node2 100, node3 50


def _skew(i: int) -> int:
    return 10 * (i - 1)          # node1 0, node2 10, node3 20


class Cluster:
    """A running 3-node cluster of one contender in its own lab."""

    def __init__(self, kind: str, setting: str, directory: str):
        if kind not in KINDS:
            raise ValueError(f"unknown contender {kind!r} (expected {', '.join(KINDS)})")
        self.kind, self.setting, self.dir = kind, setting, directory
        self.paths = lab.Paths(directory)
        self.st: dict = {}
        self.pids: dict[str, int] = {}      # node -> spawned pid (keepalived, ucarp)
        self.crashed: set[str] = set()      # killed or cut, not yet restarted/restored
        self._ctl: dict[str, socket.socket] = {}   # ioctl sockets per node namespace
        self.macs: dict[str, str] = {}      # mac -> node

    # -- starting --------------------------------------------------------------
    def _up(self, nodes: int, timeout: float) -> None:
        buf = io.StringIO()
        if self.kind == "heart":
            s = parse_seconds(self.setting)
            lab.up(nodes=nodes, directory=self.dir, interval=_fmt_duration(s),
                   deadtime=_fmt_duration(3 * s), timeout=timeout, out=buf, daemons=True)
        else:
            lab.up(nodes=nodes, directory=self.dir, out=buf, daemons=False)
        self.st = lab.load_state(self.paths)
        for n in self.st["nodes"]:
            with lab.inside(n["ns"]):
                self._ctl[n["name"]] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            info = json.loads(lab.run(IP, "-j", "link", "show", "dev", lab.DEV, ns=n["ns"]))
            self.macs[info[0]["address"].lower()] = n["name"]
        if self.kind == "keepalived":
            for i, n in enumerate(self.st["nodes"], start=1):
                self._write_keepalived(i, n)
        elif self.kind == "ucarp":
            self._write_ucarp_scripts()
        for n in self.st["nodes"]:
            if self.kind != "heart":
                self._start_daemon(n["name"])

    def _node(self, name: str) -> dict:
        return next(n for n in self.st["nodes"] if n["name"] == name)

    def _index(self, name: str) -> int:
        return [n["name"] for n in self.st["nodes"]].index(name) + 1

    def _write_keepalived(self, i: int, n: dict) -> None:
        advert = parse_seconds(self.setting)
        conf = f"""# written by bench/contenders.py for {n['name']} (namespace {n['ns']})
global_defs {{
    router_id {n['name']}
    vrrp_version 3
}}

vrrp_instance VI_{VRID} {{
    state BACKUP
    interface {lab.DEV}
    virtual_router_id {VRID}
    priority {_priority(i)}
    advert_int {advert:g}
    virtual_ipaddress {{
        {lab.VIP4}/24 dev {lab.DEV}
    }}
}}
"""
        with open(self._kfile(n["name"], "conf"), "w") as f:
            f.write(conf)

    def _kfile(self, node: str, what: str) -> str:
        return os.path.join(self.dir, f"keepalived-{node}.{what}")

    def _write_ucarp_scripts(self) -> None:
        for what, verb in (("up", "add"), ("down", "del")):
            path = os.path.join(self.dir, f"ucarp-{what}.sh")
            with open(path, "w") as f:
                # ucarp calls: script <interface> <virtual address> [xparam]
                f.write(f'#!/bin/sh\n{IP} addr {verb} "$2"/24 dev "$1"'
                        + (" 2>/dev/null\nexit 0\n" if verb == "del" else "\n"))
            os.chmod(path, 0o755)

    def _argv(self, node: str) -> list[str]:
        i = self._index(node)
        if self.kind == "keepalived":
            return [KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-B",
                    "-f", self._kfile(node, "conf"), "-p", self._kfile(node, "pid"),
                    "-r", self._kfile(node, "vrrp.pid"),
                    "-c", self._kfile(node, "checkers.pid"),
                    "-b", self._kfile(node, "bfd.pid")]
        advbase = parse_seconds(self.setting)
        if advbase != int(advbase) or advbase < 1:
            raise ValueError(f"ucarp: advbase is whole seconds, not {self.setting}")
        return [UCARP, "-i", lab.DEV, "-s", self._node(node)["v4"], "-v", str(VRID),
                "-p", UCARP_PASS, "-a", lab.VIP4, "-b", str(int(advbase)),
                "-k", str(_skew(i)), "-P",
                "-u", os.path.join(self.dir, "ucarp-up.sh"),
                "-d", os.path.join(self.dir, "ucarp-down.sh")]

    def _start_daemon(self, node: str) -> None:
        self.pids[node] = _lab_call(lab.spawn, node, self._argv(node), directory=self.dir,
                                    log=os.path.join(self.dir, f"{node}-{self.kind}.log"))

    # -- looking -----------------------------------------------------------------
    def owners(self) -> list[str]:
        """Every node whose namespace has the virtual address configured."""
        return [n["name"] for n in self.st["nodes"] if lab.has_address(n["ns"], lab.VIP4)]

    def owner(self) -> str | None:
        """The one live node (not killed or cut) with the virtual address, or
        None when there is none or more than one."""
        live = [n for n in self.owners() if n not in self.crashed]
        return live[0] if len(live) == 1 else None

    def mac_of(self, node: str) -> str:
        return next(m for m, n in self.macs.items() if n == node)

    def daemon_pid(self, node: str) -> int | None:
        if self.kind == "heart":
            return lab.node_pid(node, directory=self.dir)
        return self.pids.get(node)

    # -- crashing and repairing --------------------------------------------------
    def kill(self, node: str) -> None:
        """SIGKILL node's daemon (for keepalived: the VRRP child and the
        parent, the parent stopped first so it cannot respawn the child and the
        child gets no SIGTERM from its parent's death, i.e. no priority-0
        advert).  The address stays configured in node's namespace."""
        self.crashed.add(node)
        pid = self.daemon_pid(node)
        if pid is None:
            raise lab.LabError(f"{node}: no {self.kind} daemon running")
        children = []
        if self.kind == "keepalived":
            os.kill(pid, signal.SIGSTOP)
            children = _children(pid)
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
        for child in children:      # ours to reap when we are a subreaper
            _reap(child, 0.5)

    def restart(self, node: str, wait: float | None = None) -> None:
        """Start node's daemon again after kill(), as after a reboot: the
        stale virtual address is removed from its namespace first."""
        ns = self._node(node)["ns"]
        lab.run(IP, "addr", "del", f"{lab.VIP4}/24", "dev", lab.DEV, ns=ns, check=False)
        if self.kind == "heart":
            _lab_call(lab.restart_node, node, directory=self.dir, wait=wait)
        else:
            if self.kind == "keepalived":     # a reboot empties /run
                for what in ("pid", "vrrp.pid", "checkers.pid", "bfd.pid"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._kfile(node, what))
            old = self.pids.pop(node, None)
            if old is not None:
                with contextlib.suppress(lab.LabError):
                    _lab_call(lab.stop_spawned, old, directory=self.dir, grace=1.0)
            self._start_daemon(node)
        self.crashed.discard(node)

    def _set_up(self, node: str, up: bool) -> None:
        # ioctl on a socket made in node's namespace: microseconds, unlike
        # fork+exec of `ip link set` (which would blur t=0 for fast settings).
        s = self._ctl[node]
        req = struct.pack("16sH", lab.DEV.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req)[:18])[1]
        flags = flags | IFF_UP if up else flags & ~IFF_UP
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH", lab.DEV.encode(), flags))

    def cut(self, node: str) -> None:
        """eth0 down in node's namespace (its daemon keeps running)."""
        self.crashed.add(node)
        self._set_up(node, False)

    def restore(self, node: str) -> bool:
        """eth0 up again.  ucarp exits when its interface goes down (libpcap
        poll error), so a ucarp that is gone is started again (its start
        runs the down script, which removes the stale address).  True if
        the daemon had to be restarted."""
        self._set_up(node, True)
        restarted = False
        if self.kind != "heart" and not self.running(node):
            self.restart(node)
            restarted = True
        self.crashed.discard(node)
        return restarted

    def running(self, node: str) -> bool:
        """Is node's daemon still running?"""
        pid = self.daemon_pid(node)
        if pid is None:
            return False
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return os.path.exists(f"/proc/{pid}") and \
                open(f"/proc/{pid}/stat").read().split(") ")[1][:1] not in "ZX"

    def stop(self) -> None:
        for s in self._ctl.values():
            s.close()
        self._ctl.clear()
        buf = io.StringIO()
        if lab.load_state(self.paths) is not None:
            _lab_call(lab.down, directory=self.dir, out=buf)


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    return out


def _reap(pid: int, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.002)


def ensure_installed(*packages: str) -> None:
    """The benchmark's setup step: apt-get install the Debian packages whose
    program (same name) is missing.  A policy-rc.d that answers 101 keeps
    their services from starting: keepalived and ucarp run only by hand,
    inside lab namespaces."""
    missing = [p for p in packages if not shutil.which(p) and
               not os.access(f"/usr/sbin/{p}", os.X_OK)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"needs {', '.join(missing)}: apt-get install {' '.join(missing)}")
    print(f"installing {' '.join(missing)} with apt-get (their services are not started)",
          file=sys.stderr, flush=True)
    policy = "/usr/sbin/policy-rc.d"
    made = not os.path.exists(policy)
    if made:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                       stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    finally:
        if made:
            os.unlink(policy)


def become_subreaper() -> None:
    """Orphans of our daemons (keepalived's VRRP child after its parent's
    SIGKILL) are re-parented to this process, which reaps them (PID 1 in a
    container may not)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def start(kind: str, setting: str, directory: str, nodes: int = 3,
          timeout: float = 30.0) -> Cluster:
    """Build a lab in directory and start a cluster of kind with setting
    (heart: the heartbeat interval, e.g. "20ms"; keepalived: advert_int in
    seconds, e.g. "0.01"; ucarp: advbase in whole seconds).  Waits until one
    node (node1) holds the address.  On failure everything is removed."""
    c = Cluster(kind, setting, directory)
    try:
        for attempt in range(3 if kind == "heart" else 1):
            try:
                c._up(nodes, timeout if kind != "heart" else min(timeout, 15.0))
                break
            except lab.LabError:
                # A busy machine can keep a fast-timed Heart cluster from
                # forming (nodes stalled past initdead); try again.
                if kind != "heart" or attempt == 2:
                    raise
                c = Cluster(kind, setting, directory)
        end = time.monotonic() + timeout
        while time.monotonic() < end and c.owners() != ["node1"]:
            time.sleep(0.02)
        if c.owners() != ["node1"]:
            raise lab.LabError(f"{kind} {setting}: node1 did not take {lab.VIP4} within "
                               f"{timeout:g} s (owners: {c.owners()}; logs in {directory})")
        return c
    except BaseException:
        c.stop()
        raise
