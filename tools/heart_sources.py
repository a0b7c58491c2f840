#!/usr/bin/env python3
"""The one rule that picks libheart's C sources, used by setup.py and CMake.

Sources are every ``src_c/core/*.c`` plus every ``src_c/platform/<backend>/*.c``
for exactly one backend.  The backend is, in order:

1. ``HEART_BACKEND`` (environment, or ``--backend`` here) when set;
2. detected from the operating system: Linux -> ``linux``; Solaris/illumos ->
   ``sunos`` (DLPI); the BSDs and macOS -> ``bsd`` (BPF);
3. otherwise the build stops, unless ``none`` was asked for.

A backend that is named or detected but has no folder under src_c/platform/
also stops the build, naming the folders that exist.  Nobody is silently
given a backend without raw-frame support.

Run as a script it prints ``backend=<name>`` and one source path per line
(relative to the repository root, '/' separated); CMake reads that.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src_c"

_DETECT = {
    "linux": "linux",
    "sunos": "sunos",
    "freebsd": "bsd",
    "openbsd": "bsd",
    "netbsd": "bsd",
    "dragonfly": "bsd",
    "darwin": "bsd",
}


class BackendError(RuntimeError):
    pass


def available_backends() -> list[str]:
    return sorted(p.name for p in (SRC / "platform").iterdir() if p.is_dir())


def pick_backend(requested: str | None = None, system: str | None = None) -> str:
    requested = requested or os.environ.get("HEART_BACKEND") or None
    have = available_backends()
    if requested:
        if requested not in have:
            raise BackendError(
                f"HEART_BACKEND={requested!r}: no folder src_c/platform/{requested}/"
                f" (available: {', '.join(have)})"
            )
        return requested
    system = (system or platform.system()).lower()
    backend = _DETECT.get(system)
    if backend is None:
        raise BackendError(
            f"no raw-frame backend for operating system {system!r}; set"
            f" HEART_BACKEND=none to build without IP takeover (available:"
            f" {', '.join(have)})"
        )
    if backend not in have:
        raise BackendError(
            f"operating system {system!r} needs backend {backend!r}, which is not"
            f" written yet (src_c/platform/{backend}/ is missing); set"
            f" HEART_BACKEND=none to build without IP takeover"
        )
    return backend


def sources(backend: str) -> list[str]:
    files = sorted((SRC / "core").glob("*.c"))
    files += sorted((SRC / "platform" / backend).glob("*.c"))
    return [p.relative_to(ROOT).as_posix() for p in files]


def main(argv: list[str]) -> int:
    requested = None
    if len(argv) == 2 and argv[0] == "--backend":
        requested = argv[1] or None
    elif argv:
        print("usage: heart_sources.py [--backend NAME]", file=sys.stderr)
        return 2
    try:
        backend = pick_backend(requested)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backend={backend}")
    for s in sources(backend):
        print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
