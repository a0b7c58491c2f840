"""The ``heart`` command."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from heart import __version__


def _version_line() -> str:
    """heart X.Y.Z (backend B, OpenSSL ..., wire vN), from the loaded core."""
    try:
        from heart import _core
    except ImportError as exc:  # a broken install still says which heart it is
        return f"heart {__version__} (core not loadable: {exc})"
    return (f"heart {__version__} (backend {_core.BACKEND}, {_core.CRYPTO_LIBRARY}, "
            f"wire v{_core.WIRE_VERSION})")


def _cmd_version(args: argparse.Namespace) -> int:
    print(_version_line())
    return 0


class _VersionAction(argparse.Action):
    """--version: the same line as `heart version`, computed only when asked
    (so building the parser never loads the C core)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version, the backend and the OpenSSL version, then exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_line())
        parser.exit()


def _cmd_demo(args: argparse.Namespace) -> int:
    from heart import demo, failover_demo

    def loopback() -> int:
        return demo.run(interval_ms=args.interval_ms, deadtime_ms=args.deadtime_ms,
                        seconds=args.seconds, alg=args.alg)

    if args.loopback:
        return loopback()
    return failover_demo.run(fallback=loopback)


DEFAULT_CONFIG = "/etc/heart/heart.toml"


def _config_path(args: argparse.Namespace) -> str:
    return args.config or os.environ.get("HEART_CONFIG") or DEFAULT_CONFIG


def _load(args: argparse.Namespace, path: str | None = None, read_keys: bool = False):
    """The configuration, read once per command; the key file is read only by
    the commands that need keys (run, check-config), so `heart status` works
    without it."""
    from heart import config

    key = (path or _config_path(args), read_keys)
    cached = getattr(args, "_config", None)
    if cached is None or cached[0] != key:
        cfg = config.load(key[0], node_name=getattr(args, "node", None), read_keys=read_keys)
        args._config = cached = (key, cfg)
    return cached[1]


def _socket(args: argparse.Namespace) -> str:
    if getattr(args, "socket", None):
        return args.socket
    return _load(args).socket


def _cmd_check_config(args: argparse.Namespace) -> int:
    from heart import config

    path = args.file or _config_path(args)
    try:
        cfg = config.load(path, node_name=args.node)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        n = len(exc.issues)
        print(f"{path}: {n} error{'s' if n != 1 else ''}; the configuration is not valid",
              file=sys.stderr)
        return 1
    print(f"{cfg.path}: ok: cluster {cfg.cluster_name} (id {cfg.cluster_id}), this node "
          f"{cfg.node_name}, {len(cfg.nodes)} nodes, {len(cfg.links)} links, "
          f"{len(cfg.resources)} resources in {len(cfg.units)} units, "
          f"{len(cfg.handlers)} handlers")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from heart import config, daemon

    try:
        cfg = _load(args, read_keys=True)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        print("heart: refusing to start with an invalid configuration; nothing was changed",
              file=sys.stderr)
        return 1
    from heart import logsetup

    try:
        if args.log is None and os.environ.get("HEART_LOG"):
            target, source = os.environ["HEART_LOG"], "$HEART_LOG"
        else:
            target, source = args.log or "stderr", "--log"
        return daemon.run(cfg, log=target, log_level=args.log_level, log_source=source)
    except logsetup.LogSetupError as exc:
        print(f"heart: {exc}; nothing was started", file=sys.stderr)
        return 1
    except daemon.StartupError as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 1


def _control(args: argparse.Namespace, cmd: str, **kw) -> dict:
    from heart import control

    resp = control.request(_socket(args), cmd, **kw)
    if not resp.get("ok"):
        raise control.ControlError(resp.get("error", "the daemon refused the request"))
    return resp


def _cmd_status(args: argparse.Namespace) -> int:
    from heart import status

    sock = _socket(args)
    args.socket = sock
    if args.watch and not args.json:
        from heart import watch

        # The live view also shows the newest journal events, when this
        # node's journal is readable here (best effort: never an error).
        def fetch() -> dict:
            st = _control(args, "status")
            try:
                j = _journal(args)
                try:
                    st["events"] = j.events(limit=watch.MAX_EVENTS)
                finally:
                    j.close()
            except Exception:
                pass
            return st

        return watch.run(fetch, args.watch)
    try:
        while True:
            st = _control(args, "status")
            st.pop("ok", None)
            if args.json:
                print(json.dumps(st, indent=2, sort_keys=True), flush=True)
            else:
                print(status.format_status(st))
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0            # ^C is how --watch ends, as in the live view


def _cmd_simple(args: argparse.Namespace) -> int:
    """standby / unstandby / move / cleanup: one request, print its answer."""
    kw = {}
    if getattr(args, "target", None):
        kw["node"] = args.target
    if getattr(args, "resource", None):
        kw["resource"] = args.resource
    resp = _control(args, args.command, **kw)
    print(resp.get("message", "ok"))
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    resp = _control(args, "reload", plan=args.plan)
    changes, restart = resp.get("changes", []), resp.get("needs_restart", [])
    verb = "would change" if args.plan else "changed"
    if not changes and not restart:
        print("nothing changed")
    for c in changes:
        print(f"{verb}: {c}")
    for r in restart:
        print(f"needs a restart (not applied): {r}")
    return 0


def _journal(args: argparse.Namespace):
    from heart import journal

    state_dir = getattr(args, "state_dir", None) or _load(args).state_dir
    return journal.open_readonly(os.path.join(state_dir, "journal.db"))


def _cmd_events(args: argparse.Namespace) -> int:
    from heart import journal

    since = journal.parse_since(args.since) if args.since else None
    j = _journal(args)
    try:
        evs = j.events(since=since, limit=args.limit)
    finally:
        j.close()
    for ev in evs:
        print(json.dumps(ev, sort_keys=True) if args.json else journal.format_event(ev))
    return 0


def _cmd_why(args: argparse.Namespace) -> int:
    from heart import journal

    j = _journal(args)
    try:
        print(journal.why(j, args.subject))
    finally:
        j.close()
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from heart import config

    config.generate_key_file(args.file, key_id=args.id)
    print(f"wrote a new random key (id {args.id}) to {args.file}, mode 0600; copy it to "
          f"every node over a secure channel")
    return 0


def _cmd_announce(args: argparse.Namespace) -> int:
    import ipaddress

    from heart._core import Announcer

    try:
        addr = ipaddress.ip_address(args.address)
    except ValueError:
        raise ValueError(f"{args.address!r} is not an IPv4 or IPv6 address") from None
    if args.count < 1:
        raise ValueError(f"--count {args.count}: expected at least 1")
    if args.interval < 0:
        raise ValueError(f"--interval {args.interval}: expected 0 or more milliseconds")
    if args.reply and addr.version == 6:
        raise ValueError("--reply applies to IPv4 (the ARP reply form); IPv6 always sends "
                         "unsolicited neighbour advertisements")
    with Announcer(args.interface) as a:
        what = ("gratuitous ARP " + ("replies" if args.reply else "requests")
                if addr.version == 4 else "unsolicited neighbour advertisements")
        n = a.announce(str(addr), count=args.count, interval_ms=args.interval,
                       reply=args.reply)
        print(f"{args.interface} ({a.mac}): sent {n} {what} for {addr}"
              + (f", {args.interval:g} ms apart" if n > 1 else ""))
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from heart import lab

    try:
        if args.lab_command == "up":
            return lab.up(nodes=args.nodes, ipv6=args.ipv6, directory=args.dir,
                          interval=args.interval, deadtime=args.deadtime,
                          timeout=args.timeout, links=args.links,
                          link_kind=args.link_kind, join=args.join,
                          cluster_id=args.cluster_id)
        if args.lab_command == "down":
            return lab.down(directory=args.dir)
        if args.lab_command in ("impair", "partition", "heal"):
            return _lab_impair(args)
        return lab.status(directory=args.dir, as_json=args.json)
    except (lab.LabError, ValueError) as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 1


def _lab_impair(args: argparse.Namespace) -> int:
    from heart import config, labhub

    if args.lab_command == "heal":
        labhub.heal(args.dir)
        print("heart lab heal: the lab's bridge forwards every frame again")
        return 0
    groups = [[x for x in g.split(",") if x] for g in (args.groups or [])]
    if args.lab_command == "partition":
        loss, delay_ms, jitter_ms = 0.0, 0.0, 0.0
        if len(groups) < 2:
            raise ValueError("partition: name at least two groups, e.g. "
                             "`heart lab partition node1 node2,node3`")
    else:
        text = args.loss.strip()
        try:
            loss = float(text[:-1] if text.endswith("%") else text) / 100
        except ValueError:
            loss = -1.0
        if not 0 <= loss < 1:
            raise ValueError(f"--loss {args.loss}: expected a percentage from 0 to less "
                             f"than 100, such as 20 or 20%")
        try:
            delay_ms = config.parse_duration(args.delay) / 1000
            jitter_ms = config.parse_duration(args.jitter) / 1000
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--delay/--jitter: {exc}") from None
    labhub.impair(args.dir, loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms,
                  partition=groups or None)
    what = [f"{loss * 100:g}% loss"] if loss else []
    if delay_ms or jitter_ms:
        what.append(f"{delay_ms:g} ms +- {jitter_ms:g} ms delay")
    if groups:
        what.append("partition " + " | ".join(",".join(g) for g in groups))
    print(f"heart lab {args.lab_command}: the lab's frames now go through a userspace "
          f"switch ({'; '.join(what) or 'no impairment'}); `heart lab heal` undoes it")
    return 0


def _add_config_opts(p: argparse.ArgumentParser, socket: bool = False,
                     state: bool = False) -> None:
    p.add_argument("-c", "--config", metavar="FILE",
                   help=f"configuration file (default $HEART_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--node", metavar="NAME",
                   help="this node's name, if not the hostname or cluster.node")
    if socket:
        p.add_argument("--socket", metavar="PATH",
                       help="the daemon's control socket (default: cluster.socket)")
    if state:
        p.add_argument("--state-dir", metavar="DIR",
                       help="where the journal is (default: cluster.state_dir)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line.  With argv, commands it does not name may be
    left without their arguments (only `import-heartbeat`, whose module is
    large, is: the others cost nothing to build)."""
    full = argv is None or "import-heartbeat" in argv
    p = argparse.ArgumentParser(
        prog="heart",
        description="Heart: heartbeat, cluster membership and fast IP failover. "
                    "The heartbeat loop runs in C (libheart) on its own thread; "
                    "Python does configuration, cluster state and actions.",
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="as root: a 3-node cluster in network namespaces, the owner killed, the "
             "failover timeline measured from a client; without root: two engines on "
             "loopback",
        description="As root: builds a 3-node `heart lab` (in a temporary lab directory) "
                    "with the virtual address 192.0.2.100, shows the cluster, starts a "
                    "kernel-timestamped capture and a UDP prober in the client namespace, "
                    "kills the owner's daemon with SIGKILL and prints a timeline measured "
                    "from outside the daemons: the kill, the survivors declaring it down, "
                    "the address configured on the new owner, the first gratuitous ARP "
                    "the client sees from it and the client's first reply through it.  "
                    "Then it restarts the killed node (the address moves back: "
                    "auto_failback = true), tears the lab down (also on an error or "
                    "Ctrl-C) and prints as its last line outage_ms=<float>: from the kill "
                    "to the client's first reply through the new owner.  Needs root "
                    "(network namespaces: CAP_SYS_ADMIN, CAP_NET_ADMIN; raw frames: "
                    "CAP_NET_RAW) and iproute2.  Without root (or with --loopback) it runs "
                    "two heartbeat engines on 127.0.0.1 in this process instead: "
                    "discovery, forged and replayed packets rejected, node 2 stopping and "
                    "node 1 declaring it down; that demo's last line is detect_ms=<float> "
                    "(node 2's last heartbeat to node 1's down event) and the options "
                    "below apply to it only.",
    )
    d.add_argument("--loopback", action="store_true",
                   help="run the loopback demo even as root")
    d.add_argument("--interval-ms", type=float, default=10.0,
                   help="heartbeat interval in milliseconds (default 10)")
    d.add_argument("--deadtime-ms", type=float, default=50.0,
                   help="silence after which a peer is declared down (default 50)")
    d.add_argument("--seconds", type=float, default=1.0,
                   help="how long both run before node 2 stops (default 1)")
    d.add_argument("--alg", choices=["hmac-sha256", "aes-256-gcm"], default="aes-256-gcm",
                   help="authentication (default aes-256-gcm)")
    d.set_defaults(func=_cmd_demo)

    v = sub.add_parser("version", help="print versions and the libheart backend")
    v.set_defaults(func=_cmd_version)

    r = sub.add_parser(
        "run", help="run this node: heartbeats, cluster state, placement, actions",
        description="Runs a cluster node in the foreground until SIGTERM or SIGINT, which "
                    "stop its resources, then send a leave message so peers take over at "
                    "once.  SIGHUP reloads the configuration (as `heart reload`).  Refuses "
                    "an invalid configuration and then changes nothing.  Logs go to "
                    "stderr, syslog or the systemd journal (--log), one line per event "
                    "with the event journal's fields; the event journal itself is "
                    "<state_dir>/journal.db (`heart events`).")
    _add_config_opts(r)
    r.add_argument("--log", choices=("stderr", "syslog", "journald"),
                   default=None,
                   help="where log lines go: stderr (default, or $HEART_LOG), syslog "
                        "(/dev/log, facility daemon, tag heart) or journald (native "
                        "entries with HEART_EVENT, HEART_PEER, HEART_RESOURCE, ... fields: "
                        "journalctl HEART_EVENT=takeover)")
    r.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info", help="least severe level logged (default info)")
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser(
        "check-config", help="validate a configuration file",
        description="Reads the whole file and reports every problem as FILE:LINE: KEY: "
                    "what is wrong and what was expected.  Exit status 0 if valid, 1 if "
                    "not.  Checks the key file's permissions and that scripts and OCF "
                    "agents exist; starts nothing.")
    c.add_argument("file", nargs="?", metavar="FILE",
                   help=f"the file to check (default: -c, $HEART_CONFIG or {DEFAULT_CONFIG})")
    _add_config_opts(c)
    c.set_defaults(func=_cmd_check_config)

    s = sub.add_parser(
        "status", help="nodes, links, resources and quorum as this node sees them",
        description="Asks the local daemon over its control socket.  The table shows each "
                    "node's state (self / up / late / down), its links, when it was last "
                    "heard, load, available memory and what it holds; each resource's "
                    "owner, where placement puts it and its state on this node.")
    _add_config_opts(s, socket=True)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--watch", type=float, nargs="?", const=1.0, default=None,
                   metavar="SECONDS", help="refresh every SECONDS (default 1) until ^C")
    s.set_defaults(func=_cmd_status)

    for name, text in (("standby", "NODE takes no resources; what it holds moves away"),
                       ("unstandby", "NODE may take resources again")):
        sb = sub.add_parser(name, help=text, description=text + ".  The node applies "
                            "it to its own record, which every node replicates; it "
                            "survives restarts of that node.")
        sb.add_argument("target", metavar="NODE")
        _add_config_opts(sb, socket=True)
        sb.set_defaults(func=_cmd_simple)

    m = sub.add_parser("move", help="move RESOURCE (or its group) to NODE",
                       description="Prefers NODE for the resource's unit (its group, if it "
                                   "is in one) from now on; the current owner stops it, "
                                   "then NODE starts it (never two owners).  The move "
                                   "survives restarts until another move replaces it.")
    m.add_argument("resource", metavar="RESOURCE")
    m.add_argument("target", metavar="NODE")
    _add_config_opts(m, socket=True)
    m.set_defaults(func=_cmd_simple)

    cu = sub.add_parser("cleanup", help="forget that RESOURCE failed, on every node",
                        description="A start or monitor failure marks the resource's unit "
                                    "failed on that node, and placement avoids the node "
                                    "from then on.  After fixing the cause, cleanup clears "
                                    "the mark on every live node (a restart clears it too).")
    cu.add_argument("resource", metavar="RESOURCE")
    _add_config_opts(cu, socket=True)
    cu.set_defaults(func=_cmd_simple)

    rl = sub.add_parser("reload", help="apply changes of the configuration file",
                        description="The daemon re-reads its configuration file and applies "
                                    "only what changed (keys, handlers, quorum policy, "
                                    "resources, groups); resources placement keeps stay "
                                    "where they are.  An invalid file changes nothing.  "
                                    "Timing, links and nodes need a restart; they are listed.")
    rl.add_argument("--plan", action="store_true",
                    help="print what would change, change nothing")
    _add_config_opts(rl, socket=True)
    rl.set_defaults(func=_cmd_reload)

    ev = sub.add_parser("events", help="the event journal",
                        description="Reads <state_dir>/journal.db (works while the daemon "
                                    "runs or after it stopped).")
    ev.add_argument("--since", metavar="T",
                    help="only events after T: 90s, 10m, 2h, 1d ago, an ISO 8601 time, or "
                         "unix seconds")
    ev.add_argument("--limit", type=int, default=None, help="at most this many (the newest)")
    ev.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_config_opts(ev, state=True)
    ev.set_defaults(func=_cmd_events)

    w = sub.add_parser("why", help="explain the last decision about a node or resource",
                       description="A short paragraph from the journal: what happened to "
                                   "NODE or RESOURCE last, when, and the evidence (silent "
                                   "links, quorum view, placement reason, action result).")
    w.add_argument("subject", metavar="NODE|RESOURCE")
    _add_config_opts(w, state=True)
    w.set_defaults(func=_cmd_why)

    an = sub.add_parser(
        "announce", help="tell the segment that this host owns ADDRESS (GARP / NA)",
        description="Sends gratuitous ARP (IPv4; request form, or --reply) or unsolicited "
                    "neighbour advertisements with the override flag (IPv6) for ADDRESS "
                    "from INTERFACE's MAC address, like arping -U or send_arp, so every "
                    "host on the segment updates its neighbour entry at once.  It neither "
                    "adds nor checks the address.  Needs CAP_NET_RAW (root).")
    an.add_argument("interface", metavar="INTERFACE")
    an.add_argument("address", metavar="ADDRESS")
    an.add_argument("--count", type=int, default=3, help="frames to send (default 3)")
    an.add_argument("--interval", type=float, default=100.0, metavar="MS",
                    help="milliseconds between frames (default 100)")
    an.add_argument("--reply", action="store_true",
                    help="IPv4: send the ARP reply form instead of the request form")
    an.set_defaults(func=_cmd_announce)

    lb = sub.add_parser(
        "lab", help="a real cluster on this machine, in network namespaces (root)",
        description="Builds, inspects or removes a lab: a bridge in a network namespace "
                    "of its own, N node namespaces and a client namespace on "
                    "192.0.2.0/24 (and 2001:db8::/64), one `heart run` daemon per node "
                    "with a generated configuration and key, and a virtual address "
                    "(192.0.2.100) that moves between them.  No real interface is "
                    "touched.  The state is kept in DIR (--dir, $HEART_LAB_DIR or "
                    "/run/heart-lab).  See docs/lab.md.")
    lsub = lb.add_subparsers(dest="lab_command",
                             metavar="up|down|status|impair|partition|heal", required=True)

    def _lab_dir_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", metavar="DIR",
                       help="lab directory (default $HEART_LAB_DIR or /run/heart-lab)")

    lu = lsub.add_parser(
        "up", help="build the lab and start a daemon per node",
        description="Creates the namespaces and the bridge, writes DIR/heart.toml and "
                    "DIR/authkey (0600), starts `heart run` in every node namespace "
                    "(logs: DIR/<node>.log) and waits until every node is up, quorate "
                    "and agrees on the owner of the virtual address.  On any failure it "
                    "removes everything it made.  Needs root.")
    lu.add_argument("--nodes", type=int, default=3, metavar="N",
                    help="number of nodes, 1 to 64 (default 3)")
    lu.add_argument("--ipv6", action="store_true",
                    help="also 2001:db8::/64 addresses and the virtual address "
                         "2001:db8::100 (moves together with 192.0.2.100)")
    lu.add_argument("--interval", default="20ms", metavar="DURATION",
                    help="heartbeat interval (default 20ms)")
    lu.add_argument("--deadtime", default="100ms", metavar="DURATION",
                    help="silence after which a node is down (default 100ms)")
    lu.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                    help="how long to wait for the cluster to agree (default 30)")
    lu.add_argument("--links", type=int, default=1, choices=(1, 2),
                    help="2 adds a second heartbeat link \"ring\": eth1 in every node "
                         "on a second bridge, 192.0.2.128/26 (default 1)")
    lu.add_argument("--link-kind", default="unicast", choices=("unicast", "broadcast"),
                    help="how the lan link sends: to each peer, or to 192.0.2.255 "
                         "(default unicast)")
    lu.add_argument("--join", metavar="LABDIR",
                    help="cable this lab to the segment of the running lab in LABDIR "
                         "instead of a bridge of its own: a second cluster on one "
                         "segment (nodes from 192.0.2.21, client .201, virtual address "
                         ".101, the same key); that lab's `down` also takes this one down")
    lu.add_argument("--cluster-id", type=int, metavar="ID",
                    help="the cluster id (default 94, or one more than the joined lab's)")
    _lab_dir_opt(lu)
    ld = lsub.add_parser(
        "down", help="stop the lab's daemons and delete its namespaces",
        description="Stops the daemons `up` recorded (SIGTERM, SIGKILL after 5 s; only "
                    "processes that are still those daemons), deletes the namespaces it "
                    "recorded and its state file; logs stay.  Harmless when there is no "
                    "lab; also cleans up after a failed or interrupted `up`.")
    _lab_dir_opt(ld)
    ls = lsub.add_parser(
        "status", help="each node's daemon and who owns the virtual address",
        description="Per node: its namespace, address, daemon PID and state (running / "
                    "dead), quorum and the owner of the virtual address as that node's "
                    "control socket reports it.  Prints \"no lab\" when there is none.")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    _lab_dir_opt(ls)
    imp_desc = ("Hands the lab's bridge ports (lan only) to a userspace switch "
                "(heart/labhub.py, run in the bridge namespace, stopped by `heal` or "
                "`down`) that drops and delays frames, per frame and destination, and "
                "forwards only within the groups of a partition; ports in no group (the "
                "client) reach everybody.  It stands in for tc netem, which many kernels "
                "lack.  Settings replace the previous ones.  See docs/lab.md.")
    li = lsub.add_parser("impair", help="loss, delay and jitter on the lab's segment",
                         description=imp_desc)
    li.add_argument("--loss", default="0", metavar="PERCENT",
                    help="chance that a frame is lost on its way to a port, e.g. 20%% "
                         "(default 0)")
    li.add_argument("--delay", default="0ms", metavar="DURATION",
                    help="mean one-way delay added to each frame (default 0ms)")
    li.add_argument("--jitter", default="0ms", metavar="DURATION",
                    help="each frame's delay is uniform in delay +- jitter, so frames "
                         "reorder, as with netem (default 0ms)")
    li.add_argument("--partition", dest="groups", action="append", metavar="NODE,NODE",
                    help="a group of nodes (or added hosts) that hear only each other; "
                         "repeat for each side")
    _lab_dir_opt(li)
    lp = lsub.add_parser("partition", help="split the lab's nodes into groups",
                         description="`heart lab partition node1 node2,node3`: node1 "
                                     "and node2+node3 no longer hear each other; the "
                                     "client still reaches both sides.  " + imp_desc)
    lp.add_argument("groups", nargs="+", metavar="NODE[,NODE...]",
                    help="one argument per side")
    _lab_dir_opt(lp)
    lh = lsub.add_parser("heal", help="undo impair / partition",
                         description="Gives the ports back to the kernel bridge and stops "
                                     "the userspace switch.  Harmless when none runs.")
    _lab_dir_opt(lh)
    lb.set_defaults(func=_cmd_lab)

    ih = sub.add_parser("import-heartbeat", help="convert a Linux-HA heartbeat v1 "
                        "configuration (ha.cf, haresources, authkeys) into heart.toml")
    if full:
        # the converter is large: loaded only when this command is asked for
        from heart import importhb

        ih.description = importhb.DESCRIPTION
        importhb.add_arguments(ih)
        ih.set_defaults(func=importhb.run)

    k = sub.add_parser("keygen", help="write a new random authentication key file",
                       description="Creates FILE (mode 0600, never overwrites) with one "
                                   "random 256-bit key, for auth.key_file.")
    k.add_argument("file", metavar="FILE")
    k.add_argument("--id", type=int, default=1, help="key id 1..255 (default 1)")
    k.set_defaults(func=_cmd_keygen)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from heart import config, journal

    try:
        return args.func(args)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except journal.JournalError as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
