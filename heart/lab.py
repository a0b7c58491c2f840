"""`heart lab`: a real cluster on one machine, in network namespaces.

``up`` builds a segment: a bridge in a namespace of its own (so no real
interface is touched), N node namespaces and one client namespace, each
cabled to the bridge by a veth pair that is created inside the bridge
namespace (nothing ever appears in the host's namespace).  Addresses come
from the documentation ranges only: 192.0.2.0/24 and, with ``--ipv6``,
2001:db8::/64.  It writes a configuration and a key file (0600) to the lab
directory, starts one ``heart run`` per node namespace, waits until every
node agrees on the owner of the virtual address and prints a summary.

Everything ``up`` makes is recorded in ``lab.json`` *before* it is made (the
namespace names, which all carry one random prefix) or right after (daemon
PIDs with their start times), so ``down`` can undo a partial ``up`` too, and
touches nothing else: it signals only PIDs it recorded whose command line is
still the daemon it started, and deletes only namespaces it recorded.

Layout of the lab directory ($HEART_LAB_DIR, default /run/heart-lab):
``lab.json`` (the state), ``heart.toml``, ``authkey``, ``<node>/`` (the
node's state_dir and control socket ``ctl.sock``), ``<node>.log``.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import io
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

DEFAULT_DIR = "/run/heart-lab"
STATE_FILE = "lab.json"
MAX_NODES = 64
DEV = "eth0"                 # the interface name inside node and client namespaces
VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
CLIENT_HOST = 200            # 192.0.2.200, 2001:db8::c8
PORT = 6694
CLUSTER_ID = 94
LINK_KINDS = ("unicast", "broadcast")
RING_DEV = "eth1"            # the second link's interface (--links 2)
RING_BASE = 128              # second link: 192.0.2.128/26, node i at .128+host
JOIN_BASE = 20               # a lab that joins another's segment: nodes .21 up,
JOIN_CLIENT = 201            # its client .201, its virtual address .101
JOIN_VIP4 = "192.0.2.101"
JOIN_VIP6 = "2001:db8::101"

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The lab cannot do what was asked (the message says why)."""


# ---------------------------------------------------------------------------
# Addresses and names
# ---------------------------------------------------------------------------

def node_name(i: int) -> str:
    return f"node{i}"


def v4(host: int) -> str:
    return f"192.0.2.{host}"


def v6(host: int) -> str:
    return f"2001:db8::{host:x}"


def lab_dir(path: str | None = None) -> str:
    return os.path.abspath(path or os.environ.get("HEART_LAB_DIR") or DEFAULT_DIR)


# ---------------------------------------------------------------------------
# Namespaces: run a command or make a process inside one
# ---------------------------------------------------------------------------

def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns: str):
    """Run the block with this thread in network namespace ns; sockets and
    children made in the block belong to ns.  (Not ``ip netns exec``: it
    remounts /sys, which fails where / is not a mount point.)"""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        there = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    except FileNotFoundError:
        os.close(here)
        raise LabError(f"network namespace {ns} does not exist") from None
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
    """Run a command (in namespace ns when given); its stdout."""
    cmd = list(args)
    if ns:
        with inside(ns):
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    else:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        where = f" (in namespace {ns})" if ns else ""
        raise LabError(f"{' '.join(cmd)}{where} failed ({r.returncode}): "
                       f"{r.stderr.strip()}")
    return r.stdout


def sysctl(ns: str, key: str, value: str) -> None:
    with inside(ns), open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def ns_exists(ns: str) -> bool:
    return os.path.exists(f"/var/run/netns/{ns}")


def check_root() -> str | None:
    """None when this process can build a lab, else what it needs."""
    if os.geteuid() != 0:
        return ("heart lab needs root: it creates network namespaces, a bridge and veth "
                "pairs (CAP_SYS_ADMIN, CAP_NET_ADMIN) and runs daemons that add addresses "
                "and send raw frames (CAP_NET_RAW); run it as root, e.g. with sudo")
    if not shutil.which("ip"):
        return "heart lab needs iproute2 (the ip command); install it (apt-get install iproute2)"
    return None


# ---------------------------------------------------------------------------
# Processes: only the ones we started
# ---------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of pid, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def is_our_daemon(entry: dict, config: str) -> bool:
    """Is the recorded daemon still alive and still the process we started
    (same start time, command line `... -m heart run -c CONFIG --node NAME`)?"""
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    if entry.get("starttime") is not None and st[1] != entry["starttime"]:
        return False
    argv = _cmdline(pid)
    want = ["heart", "run", "-c", config, "--node", entry.get("name", "")]
    return any(argv[i:i + len(want)] == want for i in range(len(argv)))


# ---------------------------------------------------------------------------
# The state file
# ---------------------------------------------------------------------------

@dataclass
class Paths:
    dir: str

    @property
    def state(self) -> str:
        return os.path.join(self.dir, STATE_FILE)

    @property
    def config(self) -> str:
        return os.path.join(self.dir, "heart.toml")

    @property
    def key(self) -> str:
        return os.path.join(self.dir, "authkey")

    @property
    def lock(self) -> str:
        return os.path.join(self.dir, ".lock")

    def socket(self, node: str) -> str:
        return os.path.join(self.dir, node, "ctl.sock")

    def log(self, node: str) -> str:
        return os.path.join(self.dir, f"{node}.log")


def load_state(paths: Paths) -> dict | None:
    try:
        with open(paths.state) as f:
            st = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{paths.state}: cannot read the lab state: {exc}") from None
    if not isinstance(st, dict) or not isinstance(st.get("prefix"), str):
        raise LabError(f"{paths.state}: not a heart lab state file")
    return st


def save_state(paths: Paths, st: dict) -> None:
    tmp = paths.state + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(st, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, paths.state)


@contextlib.contextmanager
def _locked(paths: Paths):
    """One lab command at a time per lab directory."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        end = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Also while another thread of this process forks: the child
                # shares the descriptor (and the lock) until it execs.
                if time.monotonic() >= end:
                    raise LabError(f"another `heart lab` command is working on "
                                   f"{paths.dir}") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

def _duration_us(text: str, what: str) -> int:
    from heart import config

    try:
        return config.parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} {text}: {exc}") from None


def write_config(paths: Paths, st: dict, interval_us: int, deadtime_us: int,
                 lease: str | None = None, key: str | None = None) -> None:
    """The lab's heart.toml and authkey (key: the key file's line to copy,
    else a new random key)."""
    from heart.config import format_duration

    warntime_us = (interval_us + deadtime_us) // 2
    names = [n["name"] for n in st["nodes"]]
    vip4, vip6 = st["vip"]["v4"], st["vip"]["v6"]
    kind = st.get("link_kind", "unicast")
    link_opts = [f'kind = "{kind}"', 'group = "192.0.2.255"'] if kind == "broadcast" else []
    lines = [
        "# Written by `heart lab up`; removed by `heart lab down`.",
        "[cluster]",
        'name = "lab"',
        f"id = {st.get('cluster_id', CLUSTER_ID)}",
        f'state_dir = "{paths.dir}/{{node}}"',
        f'socket = "{paths.dir}/{{node}}/ctl.sock"',
        "",
        "[timing]",
        f'interval = "{format_duration(interval_us)}"',
        f'warntime = "{format_duration(warntime_us)}"',
        f'deadtime = "{format_duration(deadtime_us)}"',
        f'initdead = "{format_duration(max(1_000_000, 2 * deadtime_us))}"',
        "",
        "[auth]",
        f'key_file = "{paths.key}"',
        "",
        "[engine]",
        f"realtime_priority = {st.get('realtime_priority', 10)}",
        "",
        "[quorum]",
        "wait_for_all = true",
        "",
        "[metrics]",       # each node is its own namespace: one port for all
        'listen = "127.0.0.1"      # the default port, in each node\'s namespace',
        "",
        "[[link]]",
        'name = "lan"',
        f"port = {PORT}",
        f'interface = "{DEV}"',
        *link_opts,
        "",
    ]
    if "ring" in st.get("links", ["lan"]):
        lines += ["[[link]]", 'name = "ring"', f"port = {PORT}",
                  f'interface = "{RING_DEV}"', ""]
    for i, n in enumerate(st["nodes"], start=1):
        addrs = f'lan = "{n["v4"]}"' + (f', ring = "{n["ring_v4"]}"' if n.get("ring_v4")
                                         else "")
        lines += ["[[node]]", f'name = "{n["name"]}"', f"id = {i}",
                  f"addresses = {{ {addrs} }}", ""]
    node_list = ", ".join(f'"{n}"' for n in names)
    extra = f', lease = "{lease}"' if lease else ""
    lines += ["[[resource]]", 'name = "vip"', 'type = "ipaddr"',
              f'params = {{ address = "{vip4}/24", interface = "{DEV}"{extra} }}']
    if vip6:
        lines += ["", "[[resource]]", 'name = "vip6"', 'type = "ipaddr"',
                  f'params = {{ address = "{vip6}/64", interface = "{DEV}"{extra} }}', "",
                  "[[group]]", 'name = "service"', 'resources = ["vip", "vip6"]']
    lines += [f"nodes = [{node_list}]", "auto_failback = true", ""]
    with open(paths.config, "w") as f:
        f.write("\n".join(lines))
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key or f"1 {os.urandom(32).hex()}\n")
    os.chmod(paths.key, 0o600)


class _Builder:
    """Makes the lab, recording every name before making it."""

    def __init__(self, paths: Paths, st: dict):
        self.paths, self.st = paths, st

    def ns_add(self, name: str) -> None:
        self.st["namespaces"].append(name)
        save_state(self.paths, self.st)
        run("ip", "netns", "add", name)
        run("ip", "link", "set", "lo", "up", ns=name)

    def build(self) -> None:
        st = self.st
        br = st["bridge_ns"]
        if not st.get("joined"):
            self.ns_add(br)
            bridges = ["br0"] + (["br1"] if "ring" in st.get("links", []) else [])
            for b in bridges:
                run("ip", "link", "add", b, "type", "bridge", ns=br)
                # No multicast snooping: the lab bridge floods groups like a hub.
                run("ip", "link", "set", b, "type", "bridge", "mcast_snooping", "0", ns=br)
                run("ip", "link", "set", b, "up", ns=br)
        for n in st["nodes"]:
            self.attach(n)
            if n.get("ring_v4"):
                self.cable(n["ns"], n["ring_veth"], RING_DEV, "br1",
                           f"{n['ring_v4']}/26", None)
        self.attach(st["client"])

    def attach(self, h: dict) -> None:
        """Make namespace h["ns"] and cable its eth0 to the bridge (outer end
        h["veth"]).  The veth pair is made inside the bridge namespace, its
        inner end moved straight into the namespace."""
        ns = h["ns"]
        self.ns_add(ns)
        sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
        sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        self.cable(ns, h["veth"], DEV, "br0", f"{h['v4']}/24",
                   f"{h['v6']}/64" if h.get("v6") else None)

    def cable(self, ns: str, outer: str, dev: str, bridge: str, addr4: str,
              addr6: str | None) -> None:
        """A veth pair from bridge (its end `outer`) to dev in ns, with the
        addresses given."""
        br = self.st["bridge_ns"]
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", dev, "netns", ns,
            ns=br)
        run("ip", "link", "set", outer, "master", bridge, ns=br)
        run("ip", "link", "set", outer, "up", ns=br)
        net = ipaddress.ip_interface(addr4).network
        run("ip", "addr", "add", addr4, "brd", str(net.broadcast_address), "dev", dev, ns=ns)
        if addr6:
            run("ip", "-6", "addr", "add", addr6, "dev", dev, "nodad", ns=ns)
        run("ip", "link", "set", dev, "up", ns=ns)

    def start_daemon(self, n: dict) -> None:
        import heart

        paths = self.paths
        os.makedirs(os.path.join(paths.dir, n["name"]), mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update(self.st.get("daemon_env") or {})
        src = os.path.dirname(os.path.dirname(os.path.abspath(heart.__file__)))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"]
                                   if env.get("PYTHONPATH") else "")
        argv = [sys.executable, "-m", "heart", "run", "-c", paths.config,
                "--node", n["name"]]
        with open(paths.log(n["name"]), "ab") as log, inside(n["ns"]):
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, env=env, cwd=paths.dir,
                                 start_new_session=True, close_fds=True)
        p.returncode = 0        # detached: never waited for here, no warning at exit
        st = _proc_stat(p.pid)
        n["pid"] = p.pid
        n["starttime"] = st[1] if st else None
        save_state(paths, self.st)


def _how_it_ended(pid: int) -> str:
    """How a daemon this process started has ended (it is our child: its
    exit status is ours to collect), for the error that says so."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "exited"
    if not done:
        return "is no longer the daemon that was started"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"was killed by signal {sig} ({signal.Signals(sig).name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _log_tail(path: str, lines: int = 8) -> str:
    try:
        with open(path, errors="replace") as f:
            tail = f.read().splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {ln}" for ln in tail)


def node_status(paths: Paths, node: str, timeout: float = 2.0) -> dict | None:
    from heart import control

    try:
        st = control.request(paths.socket(node), "status", timeout=timeout)
    except (control.ControlError, OSError, ValueError):
        return None
    return st if st.get("ok") else None


def owner_of(status: dict | None, resource: str = "vip") -> str | None:
    """The node whose record holds resource started, as status sees it."""
    if not status:
        return None
    for r in status.get("resources", []):
        if r.get("resource") == resource:
            o = r.get("owner")
            if not isinstance(o, str):
                return None
            rec = next((n for n in status.get("nodes", []) if n.get("name") == o), None)
            held = (rec or {}).get("held", {}).get(r.get("unit", resource))
            return o if held == "started" else None
    return None


def _agreed(paths: Paths, st: dict) -> tuple[bool, str]:
    """(every node up, quorate and agreeing on one owner; what is missing)."""
    owners = set()
    names = [n["name"] for n in st["nodes"]]
    for n in st["nodes"]:
        s = node_status(paths, n["name"])
        if s is None:
            return False, f"{n['name']}'s control socket does not answer yet"
        if not s.get("quorum", {}).get("quorate"):
            return False, f"{n['name']} has no quorum yet"
        up = {x["name"] for x in s.get("nodes", []) if x.get("state") in ("self", "up")}
        if up != set(names):
            return False, f"{n['name']} sees up: {', '.join(sorted(up)) or 'nobody'}"
        owners.add(owner_of(s))
    if len(owners) != 1 or None in owners:
        return False, f"no single owner of vip yet ({sorted(map(str, owners))})"
    return True, owners.pop()


def _has_address(ns: str, addr: str) -> bool:
    fam = "-6" if ":" in addr else "-4"
    out = run("ip", fam, "-o", "addr", "show", "dev", DEV, ns=ns, check=False)
    return f" {addr}/" in out


def up(nodes: int = 3, ipv6: bool = False, directory: str | None = None,
       interval: str = "20ms", deadtime: str = "100ms", timeout: float = 30.0,
       out=sys.stdout, daemon_env: dict[str, str] | None = None,
       lease: str | None = None, links: int = 1, link_kind: str = "unicast",
       join: str | None = None, cluster_id: int | None = None,
       daemons: bool = True, realtime_priority: int = 10) -> int:
    """Build the lab (see the module docstring).  daemon_env: extra
    environment variables for the daemons (e.g. HEART_DEBUG_HOOKS=1), kept
    in the state so restart_node() uses them too.  lease: the virtual
    addresses' ipaddr lease (default: the resource's default, 3 dead
    times rounded up to whole seconds).  links: 2 adds a second link
    "ring" (eth1 on a second bridge, 192.0.2.128/26).  link_kind: the lan
    link's kind, "unicast" or "broadcast" (to 192.0.2.255).  join: the
    directory of a running lab whose segment this lab's namespaces are
    cabled to instead of a bridge of their own (a second cluster on one
    segment: nodes from 192.0.2.21, client .201, virtual address .101, the
    same key); cluster_id: the cluster id (default 94; 95 when joining).
    daemons: False builds the namespaces and writes the configuration but
    starts no daemon (benchmarks run other software in them, see spawn()).
    realtime_priority: the engine thread's SCHED_FIFO priority (0: none)."""
    need = check_root()
    if need:
        raise LabError(need)
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"--nodes {nodes}: expected 1 to {MAX_NODES}")
    if links not in (1, 2):
        raise ValueError(f"--links {links}: expected 1 or 2")
    if not 0 <= realtime_priority <= 99:
        raise ValueError(f"realtime_priority {realtime_priority}: expected 0 to 99")
    if links == 2 and nodes > 62:
        raise ValueError(f"--links 2: at most 62 nodes (the ring is 192.0.2.128/26), "
                         f"not {nodes}")
    if link_kind not in LINK_KINDS:
        raise ValueError(f"--link-kind {link_kind}: expected one of {', '.join(LINK_KINDS)}")
    if cluster_id is not None and not 0 < cluster_id < 2**32:
        raise ValueError(f"--cluster-id {cluster_id}: expected 1 to {2**32 - 1}")
    interval_us = _duration_us(interval, "--interval")
    deadtime_us = _duration_us(deadtime, "--deadtime")
    _warn_neighbour_table(nodes, out)
    if not 0 < 2 * interval_us < deadtime_us:
        raise ValueError(f"--deadtime {deadtime} must be more than twice --interval {interval}")
    paths = Paths(lab_dir(directory))
    host_paths = key = None
    if join is not None:
        host_paths, host_st = _running_state(join)
        if host_paths.dir == paths.dir:
            raise ValueError(f"--join {join}: that is this lab's own directory")
        if links != 1:
            raise ValueError("--join: the joining lab has the lan link only (no --links 2)")
        live_guests = [g for g in host_st.get("guests", [])
                       if os.path.exists(Paths(g).state)]
        if nodes > JOIN_BASE - 1 or len(host_st["nodes"]) > JOIN_BASE - 1:
            raise ValueError(f"--join: both labs can have at most {JOIN_BASE - 1} nodes "
                             f"(the joining lab's start at 192.0.2.{JOIN_BASE + 1})")
        if host_st.get("joined") or live_guests:
            raise LabError(f"--join {join}: that segment already has two clusters")
        if cluster_id is None:
            cluster_id = host_st.get("cluster_id", CLUSTER_ID) + 1
        if cluster_id == host_st.get("cluster_id", CLUSTER_ID):
            raise ValueError(f"--cluster-id {cluster_id}: the lab in {join} has that id; "
                             f"two clusters on one segment need different ids")
        with open(host_paths.key) as f:
            key = f.read()       # the same key: only the cluster id tells them apart
    base = JOIN_BASE if join else 0
    client_host = JOIN_CLIENT if join else CLIENT_HOST
    os.makedirs(paths.dir, mode=0o700, exist_ok=True)
    with _locked(paths):
        if load_state(paths) is not None:
            raise LabError(f"a lab is already up (state in {paths.state}); "
                           f"run `heart lab down` first")
        prefix = f"hl{uuid.uuid4().hex[:6]}"
        st = {
            "version": 1, "prefix": prefix, "dir": paths.dir, "config": paths.config,
            "ipv6": ipv6, "created": time.time(),
            "bridge_ns": host_st["bridge_ns"] if join else f"{prefix}br",
            "joined": host_paths.dir if join else None,
            "cluster_id": cluster_id or CLUSTER_ID, "link_kind": link_kind,
            "realtime_priority": realtime_priority,
            "links": ["lan", "ring"][:links], "namespaces": [],
            "nodes": [{"name": node_name(i), "ns": f"{prefix}n{i}", "host": base + i,
                       "veth": f"{prefix}n{i}", "v4": v4(base + i),
                       "v6": v6(base + i) if ipv6 else None, "pid": None,
                       "starttime": None} for i in range(1, nodes + 1)],
            "client": {"ns": f"{prefix}c", "veth": f"{prefix}c", "host": client_host,
                       "v4": v4(client_host), "v6": v6(client_host) if ipv6 else None},
            "hosts": [],
            "vip": {"v4": JOIN_VIP4 if join else VIP4,
                    "v6": (JOIN_VIP6 if join else VIP6) if ipv6 else None,
                    "resource": "vip"},
        }
        if links == 2:
            for n in st["nodes"]:
                n["ring_v4"] = v4(RING_BASE + n["host"])
                n["ring_veth"] = f"{prefix}r{n['host']}"
        if daemon_env:
            st["daemon_env"] = {str(k): str(v) for k, v in daemon_env.items()}
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            save_state(paths, st)
            if host_paths is not None:
                _add_guest(host_paths, paths.dir)
            write_config(paths, st, interval_us, deadtime_us, lease=lease, key=key)
            from heart import config

            config.load(paths.config, node_name=node_name(1), read_keys=True)
            b = _Builder(paths, st)
            b.build()
            owner = None
            if daemons:
                for n in st["nodes"]:
                    b.start_daemon(n)
                owner = _wait_agreed(paths, st, timeout)
        except BaseException as exc:
            # Let the cleanup finish, whatever else arrives meanwhile.
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                _teardown(paths, st)
            finally:
                signal.signal(signal.SIGINT, old_int)
            if isinstance(exc, (KeyboardInterrupt, LabError)):
                what = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
                raise LabError(f"lab up failed: {what}; everything it made was removed") \
                    from None
            raise LabError(f"lab up failed: {type(exc).__name__}: {exc}; everything it "
                           f"made was removed") from exc
        finally:
            signal.signal(signal.SIGTERM, old)
    _summary(paths, st, owner, out)
    return 0


def spawn(where: str, argv: list[str], directory: str | None = None,
          log: str | None = None) -> int:
    """Start argv inside the namespace of node `where` (or "client", or an
    added host's tag), detached, output to log (default DIR/<where>-<name>.log);
    recorded (PID, start time, command line) before this returns, so `down`
    stops it (SIGTERM, then SIGKILL; only while it is still that process).
    Benchmarks start keepalived or ucarp this way.  Its PID."""
    paths, st = _running_state(directory)
    with _locked(paths):
        st = load_state(paths)
        if st is None:
            raise LabError(f"no lab (no {paths.state})")
        places = {n["name"]: n["ns"] for n in st["nodes"]}
        places["client"] = st["client"]["ns"]
        places.update({h["tag"]: h["ns"] for h in st.get("hosts", [])})
        if where not in places:
            raise LabError(f"no node or host {where!r} in this lab")
        log = log or os.path.join(paths.dir, f"{where}-{os.path.basename(argv[0])}.log")
        with open(log, "ab") as f, inside(places[where]):
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, cwd=paths.dir,
                                 start_new_session=True, close_fds=True)
        p.returncode = 0        # detached: never waited for here
        pst = _proc_stat(p.pid)
        st.setdefault("procs", []).append(
            {"pid": p.pid, "starttime": pst[1] if pst else None, "argv": argv,
             "where": where})
        save_state(paths, st)
        return p.pid


def _is_our_proc(entry: dict) -> bool:
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    pst = _proc_stat(pid)
    if pst is None or pst[0] in ("Z", "X"):
        return False
    if entry.get("starttime") is not None and pst[1] != entry["starttime"]:
        return False
    return _cmdline(pid)[:1] == entry.get("argv", [None])[:1]


def stop_spawned(pid: int, directory: str | None = None, grace: float = 5.0) -> bool:
    """Stop one process that spawn() started (SIGTERM, SIGKILL after
    grace); True if it was running.  Also forgets it."""
    paths, st = _running_state(directory)
    with _locked(paths):
        st = load_state(paths) or st
        procs = st.get("procs", [])
        entry = next((e for e in procs if e.get("pid") == pid), None)
        if entry is None:
            raise LabError(f"pid {pid} was not started by this lab")
        was = _stop_procs([entry], grace)
        procs.remove(entry)
        save_state(paths, st)
        return bool(was)


def _stop_procs(entries: list[dict], grace: float = 5.0) -> list[dict]:
    ours = [e for e in entries if _is_our_proc(e)]
    for e in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e["pid"], signal.SIGCONT)
            os.kill(e["pid"], signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(_is_our_proc(e) for e in ours):
        time.sleep(0.02)
    for e in ours:
        if _is_our_proc(e):
            with contextlib.suppress(ProcessLookupError):
                os.kill(e["pid"], signal.SIGKILL)
    end = time.monotonic() + 5
    for e in ours:
        # Reap it when this process started it (no zombie left behind).
        while time.monotonic() < end:
            try:
                if os.waitpid(e["pid"], os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)
    return ours


def _warn_neighbour_table(nodes: int, out) -> None:
    """Every node needs an ARP entry for every other node (and the client,
    the address...), and the kernel's table is shared by all namespaces:
    past net.ipv4.neigh.default.gc_thresh3 entries nodes stop hearing each
    other (bench/scale.py found it at 64 nodes: the cluster never formed)."""
    try:
        with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3") as f:
            thresh3 = int(f.read())
    except (OSError, ValueError):
        return
    need = nodes * (nodes + 3)
    if need > thresh3:
        print(f"heart lab up: warning: {nodes} nodes need about {need} ARP entries, but "
              f"the kernel's table, shared by every namespace, holds {thresh3} "
              f"(net.ipv4.neigh.default.gc_thresh3): nodes will not all hear each other; "
              f"raise net.ipv4.neigh.default.gc_thresh2 and gc_thresh3 first", file=out)


def _add_guest(host_paths: Paths, guest_dir: str) -> None:
    """Record in the joined lab that guest_dir's lab is cabled to its
    segment, so its `down` takes the guest down first."""
    with _locked(host_paths):
        hst = load_state(host_paths)
        if hst is None:
            raise LabError(f"the lab in {host_paths.dir} went away")
        hst.setdefault("guests", []).append(guest_dir)
        save_state(host_paths, hst)


def _drop_guest(host_paths: Paths, guest_dir: str) -> None:
    with _locked(host_paths):
        hst = load_state(host_paths)
        if hst is not None and guest_dir in hst.get("guests", []):
            hst["guests"].remove(guest_dir)
            save_state(host_paths, hst)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _wait_agreed(paths: Paths, st: dict, timeout: float) -> str:
    end = time.monotonic() + timeout
    why = "nothing asked yet"
    while time.monotonic() < end:
        for n in st["nodes"]:
            if not is_our_daemon(n, paths.config):
                raise LabError(f"the daemon of {n['name']} (pid {n['pid']}) "
                               f"{_how_it_ended(n['pid'])}; the end of "
                               f"{paths.log(n['name'])}:{_log_tail(paths.log(n['name']))}")
        ok, why = _agreed(paths, st)
        if ok:
            owner = why
            ns = next(n["ns"] for n in st["nodes"] if n["name"] == owner)
            vip = st["vip"]
            if _has_address(ns, vip["v4"]) and (not vip["v6"] or _has_address(ns, vip["v6"])):
                return owner
            why = f"{owner} holds vip but its address is not configured yet"
        time.sleep(0.05)
    raise LabError(f"the cluster did not agree within {timeout:g} s: {why} "
                   f"(logs: {paths.dir}/node*.log)")


def _summary(paths: Paths, st: dict, owner: str | None, out) -> None:
    p = lambda s="": print(s, file=out)
    vips = st["vip"]["v4"] + (f" and {st['vip']['v6']}" if st["vip"]["v6"] else "")
    k = len(st["nodes"])
    p(f"heart lab up: {k} node{'s' if k != 1 else ''} on 192.0.2.0/24"
      + (" and 2001:db8::/64" if st["ipv6"] else "")
      + f", bridge in namespace {st['bridge_ns']}")
    p(f"  virtual address {vips} on {owner}" if owner else
      f"  no daemons started (virtual address {vips} is not configured anywhere)")
    p()
    p(f"  {'NODE':<7} {'NAMESPACE':<12} {'ADDRESS':<13} PID")
    for n in st["nodes"]:
        p(f"  {n['name']:<7} {n['ns']:<12} {n['v4']:<13} {n['pid']}")
    c = st["client"]
    p(f"  {'client':<7} {c['ns']:<12} {c['v4']:<13} -")
    p()
    p(f"  lab directory {paths.dir} (heart.toml, authkey, <node>.log, lab.json)")
    p(f"  try:  heart status -c {paths.config} --node {owner or st['nodes'][0]['name']}")
    p(f"        ip netns exec {c['ns']} ping -c 3 {st['vip']['v4']}")
    p("        heart lab status; heart lab down")


# ---------------------------------------------------------------------------
# Working on a running lab (tests, the demo): one node at a time
# ---------------------------------------------------------------------------

def _node(st: dict, node: str) -> dict:
    for n in st.get("nodes", []):
        if n.get("name") == node:
            return n
    raise LabError(f"no node {node!r} in this lab")


def _running_state(directory: str | None) -> tuple[Paths, dict]:
    paths = Paths(lab_dir(directory))
    st = load_state(paths) if os.path.isdir(paths.dir) else None
    if st is None:
        raise LabError(f"no lab (no {paths.state})")
    return paths, st


def node_pid(node: str, directory: str | None = None) -> int | None:
    """The PID of node's daemon while it is still the process the lab
    started, else None."""
    paths, st = _running_state(directory)
    n = _node(st, node)
    return n["pid"] if is_our_daemon(n, st.get("config", paths.config)) else None


def restart_node(node: str, directory: str | None = None,
                 wait: float | None = None) -> int:
    """Start node's daemon again after it died (killed, stopped); its new
    PID.  Refuses while the recorded daemon still runs.  With wait (seconds),
    also waits until every node agrees on the owner again (LabError if not)."""
    paths, st = _running_state(directory)
    with _locked(paths):
        st = load_state(paths)
        if st is None:
            raise LabError(f"no lab (no {paths.state})")
        n = _node(st, node)
        if is_our_daemon(n, st.get("config", paths.config)):
            raise LabError(f"the daemon of {node} (pid {n['pid']}) is still running")
        _Builder(paths, st).start_daemon(n)
        if wait is not None:
            _wait_agreed(paths, st, wait)
        return n["pid"]


def set_link(node: str, up: bool, directory: str | None = None, link: str = "lan") -> None:
    """`ip link set eth0|eth1 up|down` inside node's namespace: cut or
    restore its cable to the lan (eth0) or the ring (eth1, --links 2)."""
    _paths, st = _running_state(directory)
    if link not in st.get("links", ["lan"]):
        raise LabError(f"this lab has no link {link!r} (links: "
                       f"{', '.join(st.get('links', ['lan']))})")
    dev = DEV if link == "lan" else RING_DEV
    run("ip", "link", "set", dev, "up" if up else "down", ns=_node(st, node)["ns"])


HOST_BASE = 230             # add_host: 192.0.2.230 to .249


def add_host(tag: str, directory: str | None = None) -> dict:
    """One more namespace on the lab's segment (e.g. a rogue sender, a
    second client): eth0 cabled to the bridge with the next free address
    from 192.0.2.230 up (and 2001:db8::e6 up with --ipv6), no daemon.
    Recorded before it is made, so `down` removes it.  Its record:
    {"tag", "ns", "veth", "host", "v4", "v6"}."""
    paths, st = _running_state(directory)
    if not tag.isalnum() or len(tag) > 5:
        raise ValueError(f"host tag {tag!r}: expected 1 to 5 letters or digits")
    with _locked(paths):
        st = load_state(paths)
        if st is None:
            raise LabError(f"no lab (no {paths.state})")
        hosts = st.setdefault("hosts", [])
        if any(h["tag"] == tag for h in hosts):
            raise LabError(f"the lab already has a host {tag!r}")
        used = {h["host"] for h in hosts}
        host = next((i for i in range(HOST_BASE, HOST_BASE + 20) if i not in used), None)
        if host is None:
            raise LabError("the lab has no free host address left (192.0.2.230 to .249)")
        prefix = st["prefix"]
        h = {"tag": tag, "ns": f"{prefix}h{tag}", "veth": f"{prefix}h{tag}", "host": host,
             "v4": v4(host), "v6": v6(host) if st.get("ipv6") else None}
        hosts.append(h)
        save_state(paths, st)
        _Builder(paths, st).attach(h)
        return h


def has_address(ns: str, addr: str = VIP4) -> bool:
    """Is addr configured on eth0 in network namespace ns?"""
    return _has_address(ns, addr)


# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

def _unrecorded_daemons(st: dict, config: str) -> list[dict]:
    """Daemons of this lab whose PID never reached the state file (up was
    killed between starting one and recording it): processes inside one of
    the lab's recorded namespaces whose command line is `heart run -c CONFIG
    --node NAME` for one of its nodes.  Entries shaped like the state file's."""
    prefix = st.get("prefix", "")
    inodes = set()
    for ns in st.get("namespaces", []):
        if isinstance(ns, str) and prefix and ns.startswith(prefix) and "/" not in ns:
            with contextlib.suppress(OSError):
                inodes.add(os.stat(f"/var/run/netns/{ns}").st_ino)
    recorded = {n.get("pid") for n in st.get("nodes", [])}
    names = [n.get("name", "") for n in st.get("nodes", []) if n.get("name")]
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in recorded:
            continue
        try:
            if os.stat(f"/proc/{d}/ns/net").st_ino not in inodes:
                continue
        except OSError:
            continue
        for name in names:
            entry = {"pid": int(d), "name": name, "starttime": None}
            if is_our_daemon(entry, config):
                found.append(entry)
                break
    return found


def _stop_daemons(paths: Paths, st: dict, grace: float = 5.0) -> list[str]:
    """SIGTERM each recorded daemon that is still ours (and any daemon of
    this lab that was started but never recorded), SIGKILL after grace
    seconds; the names of those that were running."""
    config = st.get("config", paths.config)
    ours = [n for n in st.get("nodes", []) if is_our_daemon(n, config)]
    ours += _unrecorded_daemons(st, config)
    for n in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(n["pid"], signal.SIGCONT)   # a stopped one must see SIGTERM
            os.kill(n["pid"], signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(is_our_daemon(n, config) for n in ours):
        time.sleep(0.02)
    for n in ours:
        if is_our_daemon(n, config):
            with contextlib.suppress(ProcessLookupError):
                os.kill(n["pid"], signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end and any(is_our_daemon(n, config) for n in ours):
        time.sleep(0.02)
    return [n["name"] for n in ours]


def _teardown(paths: Paths, st: dict) -> tuple[list[str], list[str]]:
    """Stop recorded daemons, delete recorded namespaces (only those with
    the recorded prefix), remove the state file and what up wrote."""
    for guest in st.get("guests", []):
        # A lab cabled to this segment goes first (its cables end here).
        with contextlib.suppress(LabError, OSError):
            down(guest, out=io.StringIO())
    stopped = _stop_daemons(paths, st)
    _stop_procs(st.get("procs", []))
    for key in ("hub", "hub_old"):      # the userspace switch of `lab impair`
        if st.get(key):
            from heart import labhub

            labhub.stop_hub(st[key])
    prefix = st["prefix"]
    deleted, failed = [], []
    for ns in reversed(st.get("namespaces", [])):
        if not (isinstance(ns, str) and ns.startswith(prefix) and "/" not in ns):
            continue
        if ns_exists(ns):
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                               check=False)
            if r.returncode != 0 and ns_exists(ns):
                failed.append(f"{ns}: {r.stderr.strip()}")
                continue
            deleted.append(ns)
    if failed:
        raise LabError("could not delete namespaces: " + "; ".join(failed)
                       + f" (the state stays in {paths.state}; try again)")
    if st.get("joined"):
        # Taken down by the joined lab's own down, which holds its lock:
        # then it drops the record itself.
        with contextlib.suppress(LabError, OSError):
            _drop_guest(Paths(st["joined"]), paths.dir)
    for f in (paths.config, paths.key, paths.state):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
    for n in st.get("nodes", []):
        d = os.path.join(paths.dir, n.get("name", ""))
        if n.get("name") and os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)
    return stopped, deleted


def down(directory: str | None = None, out=sys.stdout) -> int:
    paths = Paths(lab_dir(directory))
    if not os.path.isdir(paths.dir):
        print(f"no lab ({paths.dir} does not exist); nothing to do", file=out)
        return 0
    st = load_state(paths)
    if st is None:
        print(f"no lab (no {paths.state}); nothing to do", file=out)
        return 0
    need = check_root()
    if need:
        raise LabError(need)
    with _locked(paths):
        st = load_state(paths)
        if st is None:
            print("no lab; nothing to do", file=out)
            return 0
        stopped, deleted = _teardown(paths, st)
    print(f"heart lab down: stopped {len(stopped)} daemon"
          f"{'s' if len(stopped) != 1 else ''}"
          + (f" ({', '.join(stopped)})" if stopped else "")
          + f", deleted {len(deleted)} namespace{'s' if len(deleted) != 1 else ''}; "
          f"logs kept in {paths.dir}", file=out)
    return 0


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------

def status(directory: str | None = None, as_json: bool = False, out=sys.stdout) -> int:
    paths = Paths(lab_dir(directory))
    st = load_state(paths) if os.path.isdir(paths.dir) else None
    if st is None:
        if as_json:
            print(json.dumps({"lab": None, "dir": paths.dir}), file=out)
        else:
            print(f"no lab (no {paths.state})", file=out)
        return 0
    config = st.get("config", paths.config)
    rows = []
    for n in st.get("nodes", []):
        running = is_our_daemon(n, config)
        s = node_status(paths, n["name"]) if running else None
        rows.append({
            "node": n["name"], "namespace": n["ns"], "address": n["v4"],
            "pid": n.get("pid"), "daemon": "running" if running else "dead",
            "namespace_exists": ns_exists(n["ns"]),
            "quorate": (s or {}).get("quorum", {}).get("quorate"),
            "owner": owner_of(s) if s else None,
            "answers": s is not None,
        })
    owners = {r["owner"] for r in rows if r["answers"]}
    agree = len(owners) == 1 and None not in owners
    hub = None
    if st.get("hub"):
        from heart import labhub

        with contextlib.suppress(LabError, OSError, ValueError):
            hub = labhub.status(paths.dir)
    result = {"lab": st["prefix"], "dir": paths.dir, "ipv6": st.get("ipv6", False),
              "cluster_id": st.get("cluster_id", CLUSTER_ID), "links": st.get("links"),
              "vip": st.get("vip"), "client": st.get("client"), "nodes": rows,
              "hosts": st.get("hosts", []), "hub": hub,
              "agree": agree, "owner": next(iter(owners)) if agree else None}
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
        return 0
    vip = st.get("vip") or {}
    print(f"lab {st['prefix']} in {paths.dir}: cluster id {st.get('cluster_id', CLUSTER_ID)}, "
          f"virtual address {vip.get('v4')}" + (f" and {vip['v6']}" if vip.get("v6") else "")
          + f", client namespace {st['client']['ns']} ({st['client']['v4']})", file=out)
    print(f"  {'NODE':<7} {'NAMESPACE':<12} {'ADDRESS':<13} {'PID':<8} {'DAEMON':<8} "
          f"{'QUORUM':<7} OWNER OF VIP", file=out)
    for r in rows:
        q = "-" if r["quorate"] is None else ("yes" if r["quorate"] else "no")
        owner = r["owner"] or ("-" if not r["answers"] else "none")
        daemon = r["daemon"] if r["answers"] or r["daemon"] == "dead" else "no answer"
        print(f"  {r['node']:<7} {r['namespace']:<12} {r['address']:<13} "
              f"{r['pid']!s:<8} {daemon:<8} {q:<7} {owner}", file=out)
    for h in result["hosts"]:
        print(f"  host {h['tag']} in namespace {h['ns']} ({h['v4']}), no daemon", file=out)
    if hub is not None:
        s = hub.get("settings") or {}
        groups = " | ".join(",".join(g) for g in s.get("partition") or [])
        print(f"  impaired by a userspace switch (pid {hub.get('pid')}, "
              f"{'running' if hub.get('running') else 'NOT running'}): loss "
              f"{s.get('loss', 0) * 100:g}%, delay {s.get('delay_ms', 0):g} ms +- "
              f"{s.get('jitter_ms', 0):g} ms" + (f", partition {groups}" if groups else "")
              + "; `heart lab heal` undoes it", file=out)
    if result["agree"] and result["owner"]:
        print(f"  every answering node sees {result['owner']} as the owner", file=out)
    elif any(r["answers"] for r in rows):
        print("  the nodes do not agree on the owner (yet)", file=out)
    return 0
