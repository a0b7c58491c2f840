"""The ``heart`` command."""
from __future__ import annotations

import argparse
import sys

from heart import __version__


def _cmd_version(args: argparse.Namespace) -> int:
    from heart import _core

    print(f"heart {__version__} (libheart backend {_core.BACKEND}, wire v{_core.WIRE_VERSION})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from heart import demo

    return demo.run(interval_ms=args.interval_ms, deadtime_ms=args.deadtime_ms,
                    seconds=args.seconds, alg=args.alg)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="heart",
        description="Heart: heartbeat, cluster membership and fast IP failover. "
                    "The heartbeat loop runs in C (libheart) on its own thread; "
                    "Python does configuration, cluster state and actions.",
    )
    p.add_argument("--version", action="version", version=f"heart {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="two engines on loopback: they find each other, one stops, the other "
             "declares it down; forged and replayed packets are rejected",
        description="Runs two heartbeat engines on 127.0.0.1 in this process and "
                    "prints what each one sees: discovery, the digest each carries, "
                    "a forged, a replayed and a wrong-cluster packet (rejected and "
                    "counted), then node 2 stopping without a goodbye and node 1 "
                    "declaring it down.  The last line is detect_ms=<float>: time "
                    "from node 2's last heartbeat to node 1's down event.  Needs no "
                    "root and touches no network but loopback.",
    )
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except OSError as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
