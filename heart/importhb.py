"""``heart import-heartbeat``: convert a Linux-HA heartbeat v1 configuration.

Heartbeat v1 keeps its configuration in three files in one directory
(usually /etc/ha.d): ``ha.cf`` (nodes, links, timing, options),
``haresources`` (resource groups, one logical line each, the preferred node
first) and ``authkeys`` (``auth N`` and the keys).  ``convert()`` reads them
and returns a Heart configuration (TOML text), the contents of a Heart key
file and a report: one item per directive that was *not converted* (with the
reason), was converted *with a change* the operator should know about, or
needs a *check* on the target nodes.  Each item names the file and line.

Input that cannot be converted at all (no ha.cf, an unparsable value, a
haresources line naming a node ha.cf does not list, a malformed authkeys)
raises ``HeartbeatImportError``, which names the file and line.

See docs/migration.md for the mapping.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field

__all__ = [
    "DESCRIPTION",
    "Conversion",
    "HeartbeatImportError",
    "ReportItem",
    "add_arguments",
    "convert",
    "run",
]

DESCRIPTION = (
    "Reads ha.cf, haresources and authkeys from DIR (e.g. /etc/ha.d) and writes an "
    "equivalent Heart configuration, OUTDIR/heart.toml, and a new key file, "
    "OUTDIR/authkey (mode 0600).  Prints a report naming, with file:line, every "
    "directive that was not converted and why, what was changed on the way, and "
    "what to check on the nodes.  Without -o, prints the configuration and writes "
    "nothing.  Exit status: 0 everything converted; 3 written, but some directives "
    "were not converted or the result does not pass check-config on this machine "
    "(read the report); 1 nothing written (unreadable or malformed input, existing "
    "output without --force, or writing failed).  See docs/migration.md.")

NOT_CONVERTED = "not converted"
CHANGED = "changed"
CHECK = "check"

DEFAULT_PORT = 694
DEFAULT_SCRIPT_DIRS = ("/etc/ha.d/resource.d", "/etc/init.d")
KEY_FILE_NAME = "authkey"
CONFIG_NAME = "heart.toml"
KDF_SALT = b"heart import-heartbeat authkeys"
KDF_ITERATIONS = 200_000

# heartbeat's defaults for absent timing directives, from init_config() in
# heartbeat's heartbeat/config.c (3.0): keepalive "1000ms" and deadtime
# "30000ms" (its Directives table and config->heartbeat_ms / deadtime_ms);
# warntime = deadtime / 2; initdead = deadtime if deadtime > 10 s, else 12 s
# if deadtime < 6 s, else 2 x deadtime (_heartbeat_initdead).  Some guides
# quote "keepalive 2": that is the sample ha.cf's value, not the default.
HB_KEEPALIVE_US = 1_000_000
HB_DEADTIME_US = 30_000_000

# heartbeat's time syntax (get_msec() in heartbeat/config.c): a number, a plain
# one meaning seconds, or with ms/msec or us/usec.  "s"/"sec" is accepted too.
_TIME_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(s|sec|ms|msec|us|usec)?$",
                      re.IGNORECASE)
_TIME_UNITS = {"": "s", "s": "s", "sec": "s", "ms": "ms", "msec": "ms", "us": "us",
               "usec": "us"}
_MAX_PREFIX = 128     # the longest prefix of any family (IPv6)


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------

@dataclass
class ReportItem:
    file: str            # "ha.cf", "haresources" or "authkeys"
    line: int | None     # 1-based; None: the file as a whole
    directive: str       # the directive or resource as written (or the file name)
    action: str          # NOT_CONVERTED, CHANGED or CHECK
    message: str         # why, and what was done instead

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.directive}: {self.action}: {self.message}"


@dataclass
class Conversion:
    toml: str                                   # the text of heart.toml
    key_file: str                               # the text of the key file
    report: list[ReportItem] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    @property
    def not_converted(self) -> list[ReportItem]:
        return [i for i in self.report if i.action == NOT_CONVERTED]


class HeartbeatImportError(Exception):
    """The input cannot be converted; names the file and line."""

    def __init__(self, file: str, line: int | None, message: str):
        self.file, self.line, self.message = file, line, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------

@dataclass
class _Line:
    no: int
    words: list[str]
    text: str


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise HeartbeatImportError(path, None, f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _logical_lines(text: str, *, continuation: bool, comments_anywhere: bool) -> list[_Line]:
    """Split into non-empty lines of words, with the number of each line's first
    physical line.  '#' starts a comment (anywhere, or only at the start of a
    line); with continuation, a line ending in a backslash continues on the next."""
    out: list[_Line] = []
    pending: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw
        if comments_anywhere and "#" in line:
            line = line[:line.index("#")]
        elif line.lstrip().startswith("#"):
            line = ""
        if not pending:
            start = no
        if continuation and line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        joined = " ".join(pending)
        pending = []
        words = joined.split()
        if words:
            out.append(_Line(start, words, " ".join(words)))
    if pending:
        joined = " ".join(pending)
        if joined.split():
            out.append(_Line(start, joined.split(), " ".join(joined.split())))
    return out


def _parse_time(file: str, ln: _Line, value: str) -> int:
    """Heartbeat time syntax -> microseconds, exactly (heartbeat rounded to whole
    milliseconds; Heart keeps microseconds, so 1500us stays 1500us)."""
    from heart import config

    m = _TIME_RE.match(value)
    if not m:
        raise HeartbeatImportError(file, ln.no, f"{ln.words[0]}: {value!r} is not a heartbeat "
                                                f"time (a number of seconds, or with ms or us, "
                                                f"e.g. 2, 1.5, 500ms)")
    return config.parse_duration(m.group(1) + _TIME_UNITS[(m.group(2) or "").lower()])


def _valid_name(s: str) -> bool:
    """Whether s is a valid Heart name (config's rule)."""
    from heart import config

    return len(s) <= config.MAX_NAME and bool(config._NAME_RE.match(s))


def _name(text: str) -> str:
    """A Heart name made from arbitrary text."""
    from heart import config

    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")
    s = s[:config.MAX_NAME] or "x"
    if not s[0].isalnum():
        s = "x" + s[:config.MAX_NAME - 1]
    return s


# ---------------------------------------------------------------------------
# ha.cf
# ---------------------------------------------------------------------------

# Directives Heart has no equivalent for, with the reason shown in the report.
_NO_EQUIVALENT = {
    "logfile": "Heart logs to stderr, syslog or the systemd journal (heart run --log); "
               "no log file setting",
    "debugfile": "Heart logs to stderr, syslog or the systemd journal (heart run --log); "
                 "no debug file",
    "logfacility": "a command-line choice in Heart: heart run --log syslog (facility "
                   "daemon) or --log journald",
    "use_logd": "Heart has no separate logging daemon",
    "conn_logd_time": "Heart has no separate logging daemon",
    "debug": "use heart run --log-level instead",
    "apiauth": "Heart has no client API groups; the control socket's permissions decide",
    "compression": "Heart packets are small and never compressed",
    "compression_threshold": "Heart packets are small and never compressed",
    "traditional_compression": "Heart packets are small and never compressed",
    "msgfmt": "Heart has one binary wire format",
    "coredumps": "set core dump limits in the service manager (LimitCORE= under systemd)",
    "uuidfrom": "Heart identifies nodes by the [[node]] id, which the converter assigns",
    "autojoin": "Heart's nodes are all listed in the configuration; none join by themselves",
    "hopfudge": "Heart has no serial rings to forward on",
    "hbgenmethod": "Heart keeps its own generation counter in state_dir",
    "max_rexmit_delay": "Heart does not retransmit heartbeats",
    "memreserve": "Heart has no memory reservation setting; see [engine] lock_memory",
    "watchdog": "Heart does not drive a watchdog device",
    "serial": "Heart sends heartbeats over UDP only; a serial link cannot be converted "
              "(use a second network link, e.g. a crossover cable, instead)",
    "baud": "Heart has no serial links",
    "stonith": "Heart does not run STONITH plugins; write a [quorum] fence command that "
               "fences a node, see docs/configuration.md",
    "stonith_host": "Heart does not run STONITH plugins; write a [quorum] fence command that "
                    "fences a node, see docs/configuration.md",
    "respawn": "Heart does not start or respawn helper programs; run them as services of "
               "their own (ipfail's job is done by [quorum] ping_nodes)",
    "deadping": "Heart declares a ping node unreachable per round ([quorum] ping_timeout, "
                "at most ping_interval), not after a dead time",
    "medium": "Heart has no medium plugins; links are unicast, multicast or broadcast UDP",
    "pacemaker": "Heart is not Pacemaker: CRM resources (cib.xml) are not converted",
    "record_config_changes": "a Pacemaker option; Heart has no CIB",
    "record_pengine_inputs": "a Pacemaker option; Heart has no CIB",
    "enable_config_writes": "a Pacemaker option; Heart has no CIB",
}

# Directives converted below.
_CONVERTED = {
    "node", "bcast", "mcast", "mcast6", "ucast", "udpport", "keepalive", "deadtime",
    "warntime", "initdead", "auto_failback", "nice_failback", "ping", "ping_group",
    "realtime", "rtprio", "crm", "cluster",
}
_KNOWN = set(_NO_EQUIVALENT) | _CONVERTED


@dataclass
class _Link:
    name: str
    kind: str
    port: int
    line: int
    text: str
    interface: str | None = None
    group: str | None = None
    ttl: int | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)   # ucast: (ip, line)


@dataclass
class _HaCf:
    nodes: list[tuple[str, int]] = field(default_factory=list)       # (name, line)
    links: list[_Link] = field(default_factory=list)
    timing: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (us, line)
    auto_failback: tuple[bool, int] | None = None
    ping: list[tuple[str, int]] = field(default_factory=list)
    realtime: tuple[bool, int] | None = None
    rtprio: tuple[int, int] | None = None
    cluster: tuple[str, int] | None = None


def _int(file: str, ln: _Line, value: str, lo: int, hi: int, what: str) -> int:
    try:
        n = int(value, 10)
    except ValueError:
        n = None
    if n is None or not lo <= n <= hi:
        raise HeartbeatImportError(file, ln.no, f"{ln.words[0]}: {what} {value!r} is not an "
                                                f"integer from {lo} to {hi}")
    return n


def _onoff(file: str, ln: _Line, value: str) -> bool:
    v = value.lower()
    if v in ("on", "yes", "true", "y", "1"):
        return True
    if v in ("off", "no", "false", "n", "0"):
        return False
    raise HeartbeatImportError(file, ln.no, f"{ln.words[0]}: expected on or off, got {value!r}")


def _parse_hacf(text: str, report: list[ReportItem]) -> _HaCf:
    from heart import config

    F = "ha.cf"
    cf = _HaCf()
    port = DEFAULT_PORT
    link_names: set[str] = set()
    ucast_by_dev: dict[str, _Link] = {}

    def new_link(kind: str, dev: str, ln: _Line, lport: int) -> _Link:
        base = _name(f"{kind}-{dev}")
        name, k = base, 2
        while name in link_names:
            name, k = f"{base}-{k}", k + 1
        link_names.add(name)
        lk = _Link(name=name, kind=kind, port=lport, line=ln.no, text=ln.text, interface=dev)
        cf.links.append(lk)
        return lk

    for ln in _logical_lines(text, continuation=False, comments_anywhere=True):
        d, args = ln.words[0].lower(), ln.words[1:]
        if d not in _KNOWN:
            report.append(ReportItem(F, ln.no, ln.words[0], NOT_CONVERTED,
                                     f"unknown directive (heartbeat would refuse it too)"
                                     f"{config._did_you_mean(d, sorted(_KNOWN))}"))
            continue
        if d in _NO_EQUIVALENT:
            report.append(ReportItem(F, ln.no, d, NOT_CONVERTED, _NO_EQUIVALENT[d]))
            continue
        if not args:
            raise HeartbeatImportError(F, ln.no, f"{d}: a value is missing")
        if d == "node":
            for n in args:
                if any(n.lower() == m.lower() for m, _ in cf.nodes):
                    raise HeartbeatImportError(F, ln.no, f"node: {n} is listed twice")
                if not _valid_name(n):
                    raise HeartbeatImportError(F, ln.no, f"node: {n!r} cannot be a Heart "
                                                         f"node name (letters, digits, _ - ., "
                                                         f"at most {config.MAX_NAME})")
                cf.nodes.append((n, ln.no))
        elif d == "udpport":
            port = _int(F, ln, args[0], 1, 65535, "port")
        elif d == "bcast":
            for dev in args:
                lk = new_link("bcast", dev, ln, port)
                lk.kind, lk.group = "broadcast", "255.255.255.255"
        elif d in ("mcast", "mcast6"):
            if len(args) < 4:
                raise HeartbeatImportError(F, ln.no, f"{d}: expected \"{d} DEVICE GROUP PORT "
                                                     f"TTL LOOP\", got {len(args)} values")
            dev, group = args[0], args[1]
            try:
                gip = ipaddress.ip_address(group)
            except ValueError:
                raise HeartbeatImportError(F, ln.no, f"{d}: {group!r} is not a numeric "
                                                     f"multicast address") from None
            if not gip.is_multicast:
                raise HeartbeatImportError(F, ln.no, f"{d}: {group} is not a multicast "
                                                     f"address")
            mport = _int(F, ln, args[2], 1, 65535, "port")
            ttl = _int(F, ln, args[3], 0, 255, "ttl")
            lk = new_link("mcast", dev, ln, mport)
            lk.kind, lk.group, lk.ttl = "multicast", str(gip), max(ttl, 1)
            if ttl == 0:
                report.append(ReportItem(F, ln.no, d, CHANGED, "ttl 0 became ttl = 1 (Heart's "
                                                               "minimum: this subnet)"))
            if len(args) >= 5 and args[4] not in ("0",):
                report.append(ReportItem(F, ln.no, d, CHANGED,
                                         f"loop {args[4]} dropped: Heart ignores its own "
                                         f"packets and needs no multicast loopback"))
        elif d == "ucast":
            if len(args) != 2:
                raise HeartbeatImportError(F, ln.no, "ucast: expected \"ucast DEVICE "
                                                     "PEER-ADDRESS\"")
            dev, peer = args
            try:
                pip = ipaddress.ip_address(peer)
            except ValueError:
                raise HeartbeatImportError(F, ln.no, f"ucast: {peer!r} is not a numeric IP "
                                                     f"address (Heart does not use DNS for "
                                                     f"heartbeats)") from None
            lk = ucast_by_dev.get(dev)
            if lk is None:
                lk = ucast_by_dev[dev] = new_link("ucast", dev, ln, port)
                lk.kind = "unicast"
            lk.peers.append((str(pip), ln.no))
        elif d in ("keepalive", "deadtime", "warntime", "initdead"):
            cf.timing[d] = (_parse_time(F, ln, args[0]), ln.no)
        elif d == "auto_failback":
            v = args[0].lower()
            if v == "legacy":
                cf.auto_failback = (True, ln.no)
                report.append(ReportItem(F, ln.no, d, CHANGED,
                                         "legacy became auto_failback = true (Heart has no "
                                         "mode that depends on the other node's setting)"))
            else:
                cf.auto_failback = (_onoff(F, ln, v), ln.no)
        elif d == "nice_failback":
            cf.auto_failback = (not _onoff(F, ln, args[0]), ln.no)
            report.append(ReportItem(F, ln.no, d, CHANGED,
                                     f"deprecated; became auto_failback = "
                                     f"{'false' if cf.auto_failback[0] is False else 'true'}"))
        elif d in ("ping", "ping_group"):
            hosts = args[1:] if d == "ping_group" else args
            for h in hosts:
                try:
                    cf.ping.append((str(ipaddress.ip_address(h)), ln.no))
                except ValueError:
                    report.append(ReportItem(F, ln.no, d, NOT_CONVERTED,
                                             f"{h!r} is not a numeric address; Heart does "
                                             f"not resolve ping nodes through DNS"))
        elif d == "realtime":
            cf.realtime = (_onoff(F, ln, args[0]), ln.no)
        elif d == "rtprio":
            cf.rtprio = (_int(F, ln, args[0], 1, 99, "priority"), ln.no)
        elif d == "crm":
            v = args[0].lower()
            if v not in ("off", "no", "false"):
                report.append(ReportItem(F, ln.no, d, NOT_CONVERTED,
                                         f"crm {args[0]}: with the CRM, heartbeat ignores "
                                         f"haresources and keeps resources in the CIB "
                                         f"(cib.xml), which this converter does not read; "
                                         f"haresources was converted anyway"))
        elif d == "cluster":
            if not _valid_name(args[0]):
                raise HeartbeatImportError(F, ln.no, f"cluster: {args[0]!r} cannot be a Heart "
                                                     f"cluster name")
            cf.cluster = (args[0], ln.no)
    return cf


# ---------------------------------------------------------------------------
# haresources
# ---------------------------------------------------------------------------

# heartbeat resource scripts that take "::" arguments and have an OCF agent
# (package resource-agents) with the same job: agent -> parameter names in order.
_OCF_EQUIVALENT = {
    "Filesystem": ("Filesystem", ("device", "directory", "fstype", "options")),
    "LVM": ("LVM", ("volgrpname",)),
    "MailTo": ("MailTo", ("email", "subject")),
    "apache": ("apache", ("configfile",)),
}
_IP_SCRIPTS = ("IPaddr", "IPaddr2", "IPv6addr")


@dataclass
class _Res:
    name: str
    line: int
    source: str
    body: list[str]         # TOML body lines


def _ip_resource(token: str, script: str, arg: str, ln: _Line, interface: str | None,
                 prefix: int | None, report: list[ReportItem]) -> tuple[str, list[str]] | None:
    """ip[/prefix[/interface[/broadcast]]] -> (name, TOML lines) or None (reported)."""
    from heart import config

    F = "haresources"
    parts = arg.split("/")
    addr_s = parts[0]
    pfx_s = parts[1] if len(parts) > 1 else ""
    ifname = parts[2] if len(parts) > 2 else ""
    bcast = parts[3] if len(parts) > 3 else ""
    try:
        addr = ipaddress.ip_address(addr_s)
    except ValueError:
        raise HeartbeatImportError(F, ln.no, f"{token}: {addr_s!r} is not an IP "
                                             f"address") from None
    if script == "IPv6addr" and addr.version != 6:
        raise HeartbeatImportError(F, ln.no, f"{token}: IPv6addr needs an IPv6 address")
    if script in ("IPaddr", "IPaddr2") and addr.version != 4:
        raise HeartbeatImportError(F, ln.no, f"{token}: {script} needs an IPv4 address "
                                             f"(IPv6addr is for IPv6)")
    pfx: int | None = None
    if pfx_s:
        if pfx_s.isdigit():
            pfx = int(pfx_s)
        else:
            try:
                pfx = ipaddress.ip_network(f"0.0.0.0/{pfx_s}").prefixlen
            except ValueError:
                raise HeartbeatImportError(F, ln.no, f"{token}: {pfx_s!r} is neither a prefix "
                                                     f"length nor a netmask") from None
        if not 1 <= pfx <= addr.max_prefixlen:
            raise HeartbeatImportError(F, ln.no, f"{token}: prefix /{pfx} is out of range")
    if ":" in ifname:
        report.append(ReportItem(F, ln.no, token, CHANGED,
                                 f"the interface label {ifname} was dropped; Heart labels the "
                                 f"address with the interface name (params label sets another)"))
        ifname = ifname.split(":")[0]
    missing = []
    if pfx is None:
        if prefix is not None and prefix > addr.max_prefixlen:
            report.append(ReportItem(F, ln.no, token, NOT_CONVERTED,
                                     f"no prefix given, and --prefix {prefix} does not fit an "
                                     f"IPv{addr.version} address (at most "
                                     f"/{addr.max_prefixlen}); give the prefix in haresources "
                                     f"or add an ipaddr resource by hand (docs/ipaddr.md)"))
            return None
        if prefix is not None:
            pfx = prefix
            report.append(ReportItem(F, ln.no, token, CHANGED,
                                     f"no prefix given (heartbeat took it from the routing "
                                     f"table at run time); used /{prefix} from --prefix"))
        else:
            missing.append("prefix")
    if not ifname:
        if interface:
            ifname = interface
            report.append(ReportItem(F, ln.no, token, CHANGED,
                                     f"no interface given (heartbeat took it from the routing "
                                     f"table at run time); used {interface} from "
                                     f"--interface"))
        else:
            missing.append("interface")
    if missing:
        report.append(ReportItem(F, ln.no, token, NOT_CONVERTED,
                                 f"no {' or '.join(missing)}: heartbeat found "
                                 f"{'them' if len(missing) > 1 else 'it'} in the routing "
                                 f"table at run time, Heart needs "
                                 f"{'them' if len(missing) > 1 else 'it'} in the "
                                 f"configuration; rerun with "
                                 f"{' and '.join('--' + m + ' ...' for m in missing)} or add "
                                 f"an ipaddr resource by hand (docs/ipaddr.md)"))
        return None
    if bcast:
        try:
            net = ipaddress.ip_network(f"{addr}/{pfx}", strict=False)
            if addr.version == 4 and ipaddress.ip_address(bcast) != net.broadcast_address:
                report.append(ReportItem(F, ln.no, token, CHANGED,
                                         f"broadcast {bcast} dropped: Heart sets the broadcast "
                                         f"address of the prefix, {net.broadcast_address}"))
        except ValueError:
            raise HeartbeatImportError(F, ln.no, f"{token}: {bcast!r} is not a broadcast "
                                                 f"address") from None
    name = _name(f"ip-{addr}".replace(":", "-"))
    params = f"address = {config._q(f'{addr}/{pfx}')}, interface = {config._q(ifname)}"
    body = ['type = "ipaddr"', f"params = {{ {params} }}"]
    return name, body


def _parse_haresources(text: str, nodes: list[str], auto_failback: bool | None,
                       script_dirs: tuple[str, ...], interface: str | None, prefix: int | None,
                       ocf_root: str | None, report: list[ReportItem]) -> list[str]:
    """-> TOML lines for [[resource]] and [[group]]."""
    from heart import config

    F = "haresources"
    lower = {n.lower(): n for n in nodes}
    used: set[str] = set()
    out: list[str] = []

    def unique(base: str) -> str:
        name, k = base, 2
        while name in used:
            name, k = _name(f"{base[:60]}-{k}"), k + 1
        used.add(name)
        return name

    for ln in _logical_lines(text, continuation=True, comments_anywhere=True):
        node = ln.words[0]
        if node.lower() not in lower:
            raise HeartbeatImportError(F, ln.no, f"node {node!r} is not one of the nodes in "
                                                 f"ha.cf ({', '.join(nodes)}); the first word "
                                                 f"of a line is the group's preferred node")
        pref = lower[node.lower()]
        if len(ln.words) == 1:
            report.append(ReportItem(F, ln.no, node, NOT_CONVERTED, "a line with a node and "
                                                                    "no resources"))
            continue
        members: list[_Res] = []
        for token in ln.words[1:]:
            if "::" in token:
                script, _, rest = token.partition("::")
                # IPv6 addresses contain "::"; IPv6addr takes one argument
                args = [rest] if script == "IPv6addr" else rest.split("::")
            else:
                script, args = token, []
                try:
                    ipaddress.IPv4Address(token.split("/")[0])
                    script, args = "IPaddr", [token]
                except ValueError:
                    pass
            if script in _IP_SCRIPTS:
                if len(args) != 1 or not args[0]:
                    raise HeartbeatImportError(F, ln.no, f"{token}: expected {script}::ADDRESS"
                                                         f"[/PREFIX[/INTERFACE]]")
                got = _ip_resource(token, script, args[0], ln, interface, prefix, report)
                if got is None:
                    continue
                name, body = got
            elif script in _OCF_EQUIVALENT:
                agent, pnames = _OCF_EQUIVALENT[script]
                if not args or len(args) > len(pnames):
                    raise HeartbeatImportError(F, ln.no, f"{token}: expected {script}::"
                                                         f"{'::'.join(p.upper() for p in pnames)}"
                                                         f" (at most {len(pnames)} arguments)")
                params = ", ".join(f"{p} = {config._q(v)}" for p, v in zip(pnames, args) if v)
                if script == "Filesystem":
                    base = "fs-" + (args[1].strip("/") if len(args) > 1 else args[0])
                else:
                    base = f"{script.lower()}-{args[0]}"
                name = _name(base)
                body = ['type = "ocf"', f'agent = "heartbeat:{agent}"']
                if ocf_root:
                    body.append(f"ocf_root = {config._q(ocf_root)}")
                body.append(f"params = {{ {params} }}")
                report.append(ReportItem(F, ln.no, token, CHECK,
                                         f"became the OCF agent heartbeat:{agent} (package "
                                         f"resource-agents) with {params}; check-config needs "
                                         f"it installed under "
                                         f"{ocf_root or config.DEFAULT_OCF_ROOT} on "
                                         f"each node"))
            elif args:
                report.append(ReportItem(F, ln.no, token, NOT_CONVERTED,
                                         f"{script} takes heartbeat-style arguments "
                                         f"({' '.join(args)}); Heart runs a script as "
                                         f"\"script start|stop|status\" with parameters in "
                                         f"HEART_PARAM_* variables, so it needs a wrapper or "
                                         f"an OCF agent: add it by hand"))
                continue
            else:
                if not _valid_name(script):
                    raise HeartbeatImportError(F, ln.no, f"{token!r} is not a resource name")
                path = None
                for d in script_dirs:
                    cand = os.path.join(d, script)
                    if os.path.isfile(cand):
                        path = cand
                        break
                if path is None:
                    path = os.path.join(script_dirs[-1], script)
                    report.append(ReportItem(F, ln.no, token, CHECK,
                                             f"no script {script} in {', '.join(script_dirs)} "
                                             f"on this machine; wrote {path}: check-config "
                                             f"fails until it exists on the node"))
                else:
                    report.append(ReportItem(F, ln.no, token, CHECK,
                                             f"became a script resource {path}: Heart reads "
                                             f"the status exit code (0 running, 3 stopped), "
                                             f"not the words running/OK that heartbeat looked "
                                             f"for; check the script"))
                name = _name(script)
                body = ['type = "script"', f"script = {config._q(path)}"]
            name = unique(name)
            members.append(_Res(name, ln.no, token, body))
        if not members:
            report.append(ReportItem(F, ln.no, node, NOT_CONVERTED,
                                     "no resource of this group could be converted, so "
                                     "there is no group"))
            continue
        for r in members:
            out.append(f"# haresources:{r.line}: {r.source}")
            out.append("[[resource]]")
            out.append(f"name = {config._q(r.name)}")
            out.extend(r.body)
            out.append("")
        gname = unique(_name(f"{members[0].name[:58]}-group"))
        order = [pref] + [n for n in nodes if n != pref]
        out.append(f"# haresources:{ln.no}: the group on preferred node {pref}")
        out.append("[[group]]")
        out.append(f"name = {config._q(gname)}")
        out.append(f"resources = [{', '.join(config._q(r.name) for r in members)}]")
        out.append(f"nodes = [{', '.join(config._q(n) for n in order)}]")
        if auto_failback is not None:
            out.append(f"auto_failback = {'true' if auto_failback else 'false'}")
        out.append("")
    return out


# ---------------------------------------------------------------------------
# authkeys
# ---------------------------------------------------------------------------

_AuthKeys = tuple[int, int, dict[int, tuple[str, str | None, int]]]


def _parse_authkeys(text: str) -> _AuthKeys:
    """-> (active id, line of auth, {id: (method, secret or None for crc, line)})."""
    from heart import config

    F = "authkeys"
    top = config.MAX_KEY_ID   # key ids travel as one byte, in heartbeat as in Heart
    active: tuple[int, int] | None = None
    keys: dict[int, tuple[str, str | None, int]] = {}
    for ln in _logical_lines(text, continuation=False, comments_anywhere=False):
        w = ln.words
        if w[0].lower() == "auth":
            if active is not None:
                raise HeartbeatImportError(F, ln.no, f"a second auth line (the first is on "
                                                     f"line {active[1]})")
            if len(w) != 2 or not w[1].isdigit() or not 1 <= int(w[1]) <= top:
                raise HeartbeatImportError(F, ln.no, f"expected \"auth N\", N the id of the key "
                                                     f"used to send (1 to {top})")
            active = (int(w[1]), ln.no)
            continue
        if not w[0].isdigit() or not 1 <= int(w[0]) <= top:
            raise HeartbeatImportError(F, ln.no, f"expected \"auth N\" or \"N METHOD SECRET\", "
                                                 f"got {w[0]!r}")
        kid = int(w[0])
        if kid in keys:
            raise HeartbeatImportError(F, ln.no, f"key {kid} is defined twice (first on line "
                                                 f"{keys[kid][2]})")
        if len(w) < 2:
            raise HeartbeatImportError(F, ln.no, f"key {kid}: the method (sha1, md5 or crc) "
                                                 f"is missing")
        method = w[1].lower()
        if method not in ("sha1", "md5", "crc"):
            raise HeartbeatImportError(F, ln.no, f"key {kid}: unknown method {w[1]!r}; "
                                                 f"expected sha1, md5 or crc")
        if method == "crc":
            if len(w) > 2:
                raise HeartbeatImportError(F, ln.no, f"key {kid}: crc takes no secret")
            keys[kid] = (method, None, ln.no)
        else:
            if len(w) != 3:
                raise HeartbeatImportError(F, ln.no, f"key {kid}: expected \"{kid} {method} "
                                                     f"SECRET\" (one word)")
            keys[kid] = (method, w[2], ln.no)
    if active is None:
        raise HeartbeatImportError(F, None, "no \"auth N\" line: heartbeat needs one to know "
                                            "which key to send with")
    if active[0] not in keys:
        raise HeartbeatImportError(F, active[1], f"auth {active[0]}: there is no key "
                                                 f"{active[0]} in the file")
    return active[0], active[1], keys


def _key_text(keys: list[tuple[int, bytes]]) -> str:
    """A Heart key file, in the format `heart keygen` writes."""
    return ("# Heart authentication key file: \"<key id> <64 hex digits>\" per line.\n"
            "# Written by heart import-heartbeat.  Copy it to every node (same content,\n"
            "# mode 0600, owned by root).\n"
            + "".join(f"{kid} {key.hex()}\n" for kid, key in keys))


def _key_file(authkeys: _AuthKeys | None, send_key: int, derive: bool, key_file: str,
              report: list[ReportItem]) -> str:
    """-> the key file text; send_key (the active key) is in it."""
    from heart import _core, config

    F = "authkeys"

    def random_key() -> str:
        return _key_text([(send_key, os.urandom(_core.KEY_LEN))])

    if authkeys is None:
        report.append(ReportItem(F, None, F, CHANGED,
                                 f"there is no authkeys; a new random key {send_key} was "
                                 f"written to {key_file}: copy it to every node"))
        return random_key()
    active, aline, keys = authkeys
    method = keys[active][0]
    if method == "crc":
        report.append(ReportItem(F, aline, f"auth {active}", CHANGED,
                                 f"WARNING: crc means heartbeat did NOT authenticate: anyone on "
                                 f"the network could send it heartbeats and take over its "
                                 f"resources.  Heart always authenticates: a new random key "
                                 f"{active} was written to {key_file}; copy it to every node"))
        for kid, (m, _s, kl) in sorted(keys.items()):
            if kid != active:
                report.append(ReportItem(F, kl, f"{kid} {m}", CHANGED,
                                         "not carried over (Heart sends and accepts the new key "
                                         "only)"))
        return random_key()
    if not derive:
        report.append(ReportItem(F, aline, f"auth {active}", CHANGED,
                                 f"heartbeat's {method} secret is not reused: a new random "
                                 f"256-bit key {active} was written to {key_file} (Heart "
                                 f"encrypts and authenticates with AES-256-GCM); copy it to "
                                 f"every node, or convert with --derive-key on each node"))
        for kid, (m, _s, kl) in sorted(keys.items()):
            if kid != active:
                report.append(ReportItem(F, kl, f"{kid} {m}", CHANGED,
                                         "not carried over (only the active key is replaced)"))
        return random_key()
    import hashlib  # here: `heart --help` must not need to import more than it uses

    derived: list[tuple[int, bytes]] = []
    # the active key first (it always fits), then the others in id order
    for kid in [active] + sorted(k for k in keys if k != active):
        m, secret, kl = keys[kid]
        if secret is None:
            report.append(ReportItem(F, kl, f"{kid} crc", NOT_CONVERTED,
                                     "crc has no secret to derive a key from"))
            continue
        if len(derived) >= config.MAX_KEYS:
            report.append(ReportItem(F, kl, f"{kid} {m}", NOT_CONVERTED,
                                     f"left out: Heart holds at most {config.MAX_KEYS} keys "
                                     f"(the active key {active} and the {config.MAX_KEYS - 1} "
                                     f"lowest other ids were kept)"))
            continue
        derived.append((kid, hashlib.pbkdf2_hmac("sha256", secret.encode(), KDF_SALT,
                                                 KDF_ITERATIONS, _core.KEY_LEN)))
        if len(secret) < 16:
            report.append(ReportItem(F, kl, f"{kid} {m}", CHECK,
                                     f"the secret has only {len(secret)} characters; the "
                                     f"derived key is no stronger than the secret"))
    report.append(ReportItem(F, aline, f"auth {active}", CHANGED,
                             f"keys derived from the secrets with PBKDF2-HMAC-SHA256 "
                             f"({KDF_ITERATIONS} rounds): the same authkeys gives the same key "
                             f"file on every node; key {active} sends ([auth] send_key)"))
    return _key_text(derived)


# ---------------------------------------------------------------------------
# The conversion
# ---------------------------------------------------------------------------

def _parse_node_addresses(pairs: dict[str, list[str]] | None,
                          nodes: list[str]) -> dict[str, set[str]]:
    """--node-address: {node name in lower case: addresses}.  A node ha.cf does
    not list, or an address that is not one, is an error."""
    lower = {n.lower() for n in nodes}
    out: dict[str, set[str]] = {}
    for node, addrs in (pairs or {}).items():
        if node.lower() not in lower:
            raise HeartbeatImportError("--node-address", None,
                                       f"node {node!r} is not one of the nodes in ha.cf "
                                       f"({', '.join(nodes)})")
        try:
            out.setdefault(node.lower(), set()).update(str(ipaddress.ip_address(a))
                                                       for a in addrs)
        except ValueError as exc:
            raise HeartbeatImportError("--node-address", None, f"{node}: {exc}") from None
    return out


def _heartbeat_initdead(deadtime_us: int) -> int:
    """heartbeat's initdead when ha.cf has none (init_config() in config.c)."""
    if deadtime_us > 10_000_000:
        return deadtime_us
    if deadtime_us < 6_000_000:
        return 12_000_000
    return 2 * deadtime_us


def _closeness(addr: str, others: list[str]) -> int:
    """Leading bits addr has in common with the closest of others."""
    ip = ipaddress.ip_address(addr)
    return max(ip.max_prefixlen - (int(ip) ^ int(ipaddress.ip_address(o))).bit_length()
               for o in others)


def convert(src_dir: str, *, cluster_name: str | None = None, cluster_id: int | None = None,
            node_addresses: dict[str, list[str]] | None = None,
            interface: str | None = None, prefix: int | None = None,
            script_dirs: tuple[str, ...] | list[str] = DEFAULT_SCRIPT_DIRS,
            derive_key: bool = False, key_file: str = KEY_FILE_NAME,
            ocf_root: str | None = None) -> Conversion:
    """Convert the heartbeat configuration in src_dir.  Pure apart from reading
    src_dir (and looking for scripts in script_dirs); writes nothing.  Raises
    HeartbeatImportError for input that cannot be converted."""
    from heart import _core, config

    script_dirs = tuple(script_dirs) or DEFAULT_SCRIPT_DIRS
    if prefix is not None and not 1 <= prefix <= _MAX_PREFIX:
        raise HeartbeatImportError("--prefix", None, f"{prefix} is not a prefix length (1 to "
                                                     f"{_MAX_PREFIX})")
    if cluster_id is not None and not 1 <= cluster_id <= config.MAX_ID:
        raise HeartbeatImportError("--cluster-id", None, f"{cluster_id} is not from 1 to "
                                                         f"{config.MAX_ID}")
    report: list[ReportItem] = []
    hacf_path = os.path.join(src_dir, "ha.cf")
    if not os.path.isdir(src_dir):
        raise HeartbeatImportError(src_dir, None, "is not a directory (expected the heartbeat "
                                                  "configuration directory, e.g. /etc/ha.d)")
    if not os.path.exists(hacf_path):
        raise HeartbeatImportError(hacf_path, None, "does not exist: DIR must hold heartbeat's "
                                                    "ha.cf (and haresources, authkeys)")
    cf = _parse_hacf(_read(hacf_path), report)
    if not cf.nodes:
        raise HeartbeatImportError("ha.cf", None, "there is no node directive; Heart needs "
                                                  "every node listed (node NAME ...)")
    nodes = [n for n, _ in cf.nodes]
    F = "ha.cf"

    # --- links ----------------------------------------------------------------
    explicit = _parse_node_addresses(node_addresses, nodes)
    node_addr: dict[str, dict[str, str]] = {n: {} for n in nodes}
    links: list[_Link] = []
    for lk in cf.links:
        if lk.kind != "unicast":
            links.append(lk)
            continue
        fams = {ipaddress.ip_address(a).version for a, _ in lk.peers}
        if len(fams) > 1:
            report.append(ReportItem(F, lk.line, f"ucast {lk.interface}", NOT_CONVERTED,
                                     "IPv4 and IPv6 peers on one device: a Heart unicast link "
                                     "has one address family"))
            continue
        addrs = list(dict.fromkeys(a for a, _ in lk.peers))
        assign: dict[str, str] = {}
        rest = []
        for a in addrs:
            owner = [n for n in nodes if a in explicit.get(n.lower(), ())]
            if owner:
                assign[owner[0]] = a
            else:
                rest.append(a)
        # A node's own address is usually not in its ucast lines (they name peers):
        # take its --node-address of the link's family closest to the peers'.
        fam = next(iter(fams))
        for n in nodes:
            if n in assign:
                continue
            cands = [a for a in explicit.get(n.lower(), ())
                     if ipaddress.ip_address(a).version == fam and a not in assign.values()]
            if cands:
                assign[n] = max(sorted(cands), key=lambda a: _closeness(a, addrs))
        free = [n for n in nodes if n not in assign]
        if rest and len(rest) == len(free):
            pairs = list(zip(free, rest))
            assign.update(pairs)
            report.append(ReportItem(F, lk.line, f"ucast {lk.interface}", CHECK,
                                     "heartbeat does not say which address is whose; assumed "
                                     "the ucast lines follow the node order: "
                                     + ", ".join(f"{n} = {a}" for n, a in pairs)
                                     + " (give --node-address NODE=ADDRESS to say otherwise)"))
        elif len(assign) != len(nodes):
            missing = [n for n in nodes if n not in assign]
            report.append(ReportItem(F, lk.line, f"ucast {lk.interface}", NOT_CONVERTED,
                                     f"{len(addrs)} address(es) ({', '.join(addrs)}) for "
                                     f"{len(nodes)} nodes: cannot tell the address of "
                                     f"{', '.join(missing)} (heartbeat's ucast lists only "
                                     f"peers); rerun with --node-address NODE=ADDRESS for "
                                     f"each node"))
            continue
        for n, a in assign.items():
            node_addr[n][lk.name] = a
        links.append(lk)
    if not links:
        raise HeartbeatImportError(F, None, "no bcast, mcast or ucast link could be converted "
                                            "(see the report); Heart needs at least one")
    if len(links) > _core.MAX_LINKS:
        for lk in links[_core.MAX_LINKS:]:
            report.append(ReportItem(F, lk.line, lk.text.split()[0], NOT_CONVERTED,
                                     f"Heart supports at most {_core.MAX_LINKS} links"))
        links = links[:_core.MAX_LINKS]

    # --- timing ---------------------------------------------------------------
    # Every value is written, heartbeat's default where ha.cf has none (Heart's
    # own defaults are much shorter), each such default reported.
    fmt = config.format_duration
    t = {k: v[0] for k, v in cf.timing.items()}
    tl = {k: v[1] for k, v in cf.timing.items()}

    def default(k: str, us: int, why: str) -> None:
        t[k] = us
        report.append(ReportItem(F, None, k, CHANGED,
                                 f"not in ha.cf: wrote heartbeat's default, {fmt(us)} "
                                 f"({why}); Heart's own default would differ"))

    if "keepalive" not in t:
        default("keepalive", HB_KEEPALIVE_US, "heartbeat's fixed default")
    if "deadtime" not in t:
        default("deadtime", HB_DEADTIME_US, "heartbeat's fixed default")
    interval, deadtime = t["keepalive"], t["deadtime"]
    if interval < 1000:
        raise HeartbeatImportError(F, tl.get("keepalive"), f"keepalive {fmt(interval)}: "
                                                           f"Heart's minimum is 1ms")
    if deadtime <= interval:
        raise HeartbeatImportError(F, tl.get("deadtime", tl.get("keepalive")),
                                   f"deadtime {fmt(deadtime)} is not longer than keepalive "
                                   f"{fmt(interval)}: no node would ever be seen alive")
    if "warntime" not in t:
        default("warntime", deadtime // 2, "half the deadtime")
    if not interval < t["warntime"] < deadtime:
        w = t["warntime"]
        new = 3 * interval if 3 * interval < deadtime else (interval + deadtime) // 2
        report.append(ReportItem(F, tl.get("warntime"), "warntime", CHANGED,
                                 f"{fmt(w)} is not between keepalive and deadtime, as Heart "
                                 f"requires; used {fmt(new)}"))
        t["warntime"] = new
    if "initdead" not in t:
        default("initdead", _heartbeat_initdead(deadtime),
                "deadtime if that is over 10s, else 12s if deadtime is under 6s, else twice "
                "the deadtime")
    elif t["initdead"] < deadtime:
        report.append(ReportItem(F, tl["initdead"], "initdead", CHANGED,
                                 f"{fmt(t['initdead'])} is shorter than deadtime; used "
                                 f"{fmt(deadtime)} (Heart requires initdead >= deadtime)"))
        t["initdead"] = deadtime
    for k in ("keepalive", "deadtime", "warntime", "initdead"):
        if t[k] > config.MAX_ENGINE_US:
            raise HeartbeatImportError(F, tl.get(k), f"{k}: {fmt(t[k])} is longer than "
                                                     f"Heart's limit of "
                                                     f"{fmt(config.MAX_ENGINE_US)}")

    # --- cluster name and id --------------------------------------------------
    name = cluster_name or (cf.cluster[0] if cf.cluster else "heartbeat")
    if not _valid_name(name):
        raise HeartbeatImportError("--cluster-name", None, f"{name!r} is not a valid name")
    if cluster_id is None:
        import zlib

        cluster_id = zlib.crc32("\n".join([name] + nodes).encode()) or 1
        report.append(ReportItem(F, None, "cluster id", CHANGED,
                                 f"heartbeat has no cluster id; chose {cluster_id} from the "
                                 f"cluster and node names (--cluster-id to choose): two "
                                 f"clusters on one network need different ids"))

    # --- haresources ----------------------------------------------------------
    failback = cf.auto_failback[0] if cf.auto_failback else None
    hr_path = os.path.join(src_dir, "haresources")
    res_lines: list[str] = []
    if os.path.exists(hr_path):
        res_lines = _parse_haresources(_read(hr_path), nodes, failback, script_dirs,
                                               interface, prefix, ocf_root, report)
    else:
        report.append(ReportItem("haresources", None, "haresources", CHECK,
                                 "there is no haresources: the cluster has no resources"))

    # --- authkeys -------------------------------------------------------------
    ak_path = os.path.join(src_dir, "authkeys")
    authkeys = _parse_authkeys(_read(ak_path)) if os.path.exists(ak_path) else None
    send_key = authkeys[0] if authkeys else 1
    key_text = _key_file(authkeys, send_key, derive_key, key_file, report)

    # --- the TOML -------------------------------------------------------------
    o: list[str] = [
        ("# Heart configuration converted from the heartbeat configuration in "
         + os.path.abspath(src_dir).replace("\n", " ")),
        "# by heart import-heartbeat.  Check it with: heart check-config --node NAME FILE",
        "# Keys are described in docs/configuration.md; the mapping in docs/migration.md.",
        "",
        "[cluster]",
        f"name = {config._q(name)}",
        f"id = {cluster_id}",
        "",
    ]
    o.append("[timing]")
    labels = {"keepalive": "interval", "deadtime": "deadtime", "warntime": "warntime",
              "initdead": "initdead"}
    for k, hk in labels.items():
        src = f"ha.cf:{tl[k]}: {k}" if k in tl else f"heartbeat's default {k}"
        o.append(f"{hk} = {config._q(fmt(t[k]))}".ljust(28) + f"# {src}")
    o.append("")
    if cf.realtime is not None or cf.rtprio is not None:
        o.append("[engine]")
        rt_on = cf.realtime[0] if cf.realtime else True
        if rt_on:
            prio = cf.rtprio[0] if cf.rtprio else 1
            o.append(f"realtime_priority = {prio}")
            o.append("lock_memory = true")
            if not cf.rtprio:
                report.append(ReportItem(F, cf.realtime[1], "realtime", CHANGED,
                                         "became realtime_priority = 1 (the lowest SCHED_FIFO "
                                         "priority, above every normal process) and "
                                         "lock_memory = true; set rtprio for another"))
        o.append("")
    o += ["[auth]", f"key_file = {config._q(key_file)}", f"send_key = {send_key}", ""]
    for lk in links:
        o.append(f"# ha.cf:{lk.line}: {lk.text}")
        o.append("[[link]]")
        o.append(f"name = {config._q(lk.name)}")
        o.append(f"kind = {config._q(lk.kind)}")
        o.append(f"port = {lk.port}")
        if lk.group:
            o.append(f"group = {config._q(lk.group)}")
        if lk.interface:
            o.append(f"interface = {config._q(lk.interface)}")
        if lk.ttl is not None:
            o.append(f"ttl = {lk.ttl}")
        o.append("")
    for i, n in enumerate(nodes, 1):
        o.append(f"# ha.cf:{cf.nodes[i - 1][1]}: node {n}")
        o.append("[[node]]")
        o.append(f"name = {config._q(n)}")
        o.append(f"id = {i}")
        if node_addr[n]:
            inner = ", ".join(f"{k if config._BARE_KEY_RE.match(k) else config._q(k)} = "
                              f"{config._q(v)}" for k, v in node_addr[n].items())
            o.append(f"addresses = {{ {inner} }}")
        o.append("")
    if "." in "".join(nodes):
        report.append(ReportItem(F, cf.nodes[0][1], "node", CHECK,
                                 "node names with dots: Heart's default local name is the "
                                 "host name up to the first dot; set [cluster] node or run "
                                 "with --node"))
    if cf.ping:
        o.append("[quorum]")
        pings = dict.fromkeys(a for a, _ in cf.ping)
        o.append(f"ping_nodes = [{', '.join(config._q(a) for a in pings)}]")
        o.append("")
        report.append(ReportItem(F, cf.ping[0][1], "ping", CHANGED,
                                 "became [quorum] ping_nodes: in Heart a ping node that "
                                 "answers is one extra quorum vote (all of them together "
                                 "count as one), which also does ipfail's job"))
    o += res_lines
    order = {"ha.cf": 0, "haresources": 1, "authkeys": 2}
    report.sort(key=lambda i: (order.get(i.file, 3), i.line or 0))
    toml = "\n".join(o).rstrip("\n") + "\n"
    return Conversion(toml=toml, key_file=key_text, report=report, nodes=nodes)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _prefix_arg(text: str) -> int:
    """--prefix: a prefix length, 1 to 128 (whether it fits an address's family
    is checked per address, see _ip_resource)."""
    try:
        n = int(text, 10)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= _MAX_PREFIX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a prefix length (1 to {_MAX_PREFIX}; "
                                         f"at most 32 for IPv4)")
    return n


def _cluster_id_arg(text: str) -> int:
    """--cluster-id: 1 to config.MAX_ID."""
    from heart import config

    try:
        n = int(text, 10)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= config.MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a cluster id (an integer from 1 to "
                                         f"{config.MAX_ID})")
    return n


def _node_address_arg(text: str) -> tuple[str, str]:
    """--node-address NODE=ADDRESS -> (NODE, ADDRESS); whether NODE is in ha.cf
    is checked by convert()."""
    node, sep, addr = text.partition("=")
    try:
        if not sep or not node:
            raise ValueError
        return node, str(ipaddress.ip_address(addr))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NODE=ADDRESS with a numeric "
                                         f"IPv4 or IPv6 address") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR",
                        help="the heartbeat configuration directory (e.g. /etc/ha.d)")
    parser.add_argument("-o", "--output", metavar="OUTDIR",
                        help="write OUTDIR/heart.toml and OUTDIR/authkey (default: print the "
                             "configuration, write nothing)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite heart.toml and authkey in OUTDIR")
    parser.add_argument("--cluster-name", metavar="NAME",
                        help="the cluster's name (default: ha.cf's cluster, else heartbeat)")
    parser.add_argument("--cluster-id", type=_cluster_id_arg, metavar="ID",
                        help="the cluster id, 1 to 4294967295 (default: derived from the "
                             "cluster and node names)")
    parser.add_argument("--node-address", type=_node_address_arg, action="append", default=[],
                        metavar="NODE=ADDRESS",
                        help="NODE's address on a ucast link, when heartbeat's ucast lines "
                             "do not say (repeatable; NODE must be in ha.cf)")
    parser.add_argument("--interface", metavar="IF",
                        help="interface for virtual addresses in haresources that name none")
    parser.add_argument("--prefix", type=_prefix_arg, metavar="N",
                        help="prefix length (1 to 32 for IPv4, to 128 for IPv6) for virtual "
                             "addresses in haresources that give none")
    parser.add_argument("--script-dir", action="append", default=[], metavar="DIR",
                        help="where to look for resource scripts, in order (default "
                             "/etc/ha.d/resource.d then /etc/init.d, as heartbeat did)")
    parser.add_argument("--ocf-root", metavar="DIR",
                        help="root of the OCF resource agents, if not /usr/lib/ocf")
    parser.add_argument("--derive-key", action="store_true",
                        help="derive Heart keys from the authkeys secrets (the same on every "
                             "node) instead of writing a new random key")


def _write_outputs(out: str, conv: Conversion, force: bool) -> tuple[str, str]:
    """Write OUTDIR/heart.toml and OUTDIR/authkey, or nothing: both go to new
    temporary files in OUTDIR first and are renamed into place at the end; on
    any failure the temporary files (and directories this made) are removed.
    A symlink at either name is replaced, never followed.  -> the two paths."""
    import tempfile

    from heart import config

    cfg_path = os.path.join(out, CONFIG_NAME)
    key_path = os.path.join(out, KEY_FILE_NAME)
    made: list[str] = []              # directories created here, outermost first
    d = os.path.abspath(out)
    while not os.path.isdir(d):
        made.insert(0, d)
        d = os.path.dirname(d)
    temps: list[str] = []
    renamed: list[str] = []
    try:
        for m in made:
            os.mkdir(m)
        fd, tmp_cfg = tempfile.mkstemp(prefix=f".{CONFIG_NAME}.", suffix=".tmp", dir=out)
        temps.append(tmp_cfg)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(conv.toml)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_cfg, 0o644)      # mkstemp makes 0600; the configuration is no secret
        tmp_key = os.path.join(out, f".{KEY_FILE_NAME}.{os.urandom(6).hex()}.tmp")
        config.write_key_file(tmp_key, conv.key_file)
        temps.append(tmp_key)
        if not force:
            existing = [p for p in (cfg_path, key_path) if os.path.lexists(p)]
            if existing:
                raise FileExistsError(f"{', '.join(existing)} appeared meanwhile")
        for tmp, final in ((tmp_key, key_path), (tmp_cfg, cfg_path)):
            os.replace(tmp, final)    # a symlink at final is replaced, not followed
            temps.remove(tmp)
            renamed.append(final)
    except BaseException:
        # a file renamed into place over nothing is removed again; one that
        # replaced an old file (--force) cannot be undone
        for p in temps + [p for p in renamed if not force]:
            try:
                os.unlink(p)
            except OSError:
                pass
        for m in reversed(made):
            try:
                os.rmdir(m)
            except OSError:
                pass
        raise
    return cfg_path, key_path


def run(args: argparse.Namespace) -> int:
    addrs: dict[str, list[str]] = {}
    for node, addr in args.node_address:
        addrs.setdefault(node, []).append(addr)
    try:
        conv = convert(args.dir, cluster_name=args.cluster_name, cluster_id=args.cluster_id,
                       node_addresses=addrs, interface=args.interface, prefix=args.prefix,
                       script_dirs=tuple(args.script_dir), derive_key=args.derive_key,
                       ocf_root=args.ocf_root)
    except HeartbeatImportError as exc:
        print(f"heart import-heartbeat: {exc}", file=sys.stderr)
        print("heart import-heartbeat: nothing was written", file=sys.stderr)
        return 1
    status = 3 if conv.not_converted else 0
    if not args.output:
        sys.stdout.write(conv.toml)
    else:
        out = args.output
        if not args.force:
            existing = [p for p in (os.path.join(out, CONFIG_NAME),
                                    os.path.join(out, KEY_FILE_NAME)) if os.path.lexists(p)]
            if existing:
                print(f"heart import-heartbeat: {', '.join(existing)} already exist(s); "
                      f"use --force to overwrite; nothing was written", file=sys.stderr)
                return 1
        try:
            cfg_path, key_path = _write_outputs(out, conv, args.force)
        except OSError as exc:
            print(f"heart import-heartbeat: cannot write to {out}: {exc}; nothing was written",
                  file=sys.stderr)
            return 1
        print(f"wrote {cfg_path} and {key_path} (mode 0600)")
        from heart import config

        try:
            config.load(cfg_path, node_name=conv.nodes[0])
            print(f"{cfg_path} passes heart check-config (checked as node {conv.nodes[0]})")
        except config.ConfigError as exc:
            status = 3
            print(f"{cfg_path} does not pass heart check-config on this machine "
                  f"(as node {conv.nodes[0]}):")
            for issue in exc.issues:
                print(f"  {issue}")
    stream = sys.stderr if not args.output else sys.stdout
    if conv.report:
        print(f"\nReport ({len(conv.not_converted)} not converted, "
              f"{len(conv.report) - len(conv.not_converted)} other items):", file=stream)
        for item in conv.report:
            print(f"  {item}", file=stream)
    else:
        print("\nEverything was converted.", file=stream)
    return status
