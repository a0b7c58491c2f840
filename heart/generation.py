"""The node's generation: a number that grows at every start and survives
restarts, so peers never take a restarted node's heartbeats for replays and
AES-256-GCM nonces (derived from generation and sequence) are never reused.

``next_generation(path)`` reads the last generation from ``path``, picks one
that is larger than both that value and a clock-based floor (so a lost or
restored-from-backup file still cannot repeat a generation), and writes it
back atomically and durably (temporary file, fsync, rename, fsync of the
directory) *before* returning it: a crash after this call can only skip
numbers, never reuse one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


class GenerationError(OSError):
    pass


def _clock_floor() -> int:
    """Wall-clock microseconds: two starts never share one, and 2**64 us
    is more than 500,000 years away.  Only a lost file *and* a clock set
    back could repeat a generation."""
    return time.time_ns() // 1000


def read_generation(path: str | os.PathLike) -> int | None:
    """The generation stored in path, None when there is no file yet."""
    p = Path(path)
    try:
        text = p.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        value = int(text)
    except ValueError:
        raise GenerationError(f"{p}: expected one decimal integer (the last "
                              f"generation), found {text[:40]!r}") from None
    if not 0 < value < 2**64:
        raise GenerationError(f"{p}: generation {value} out of range 1..2**64-1")
    return value


def next_generation(path: str | os.PathLike) -> int:
    """Pick, persist (durably) and return this start's generation."""
    p = Path(path)
    last = read_generation(p) or 0
    gen = max(last + 1, _clock_floor())
    if gen >= 2**64:
        raise GenerationError(f"{p}: generation would overflow 64 bits")
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{gen}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return gen
