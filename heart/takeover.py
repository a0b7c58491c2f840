"""Confirmed takeover and the duplicate-owner watch.

Both listen to the claims the C announcer receives on an interface (ARP
requests and replies, IPv6 neighbour advertisements: who says "this address
is at my MAC") and compare them with this node's own MAC.

* ``confirm()``: after a new owner announced an address, it asks the segment
  who has it (an ARP probe / a neighbour solicitation) and listens.  Any
  other MAC that answers means someone else still owns the address (an old
  owner that hangs with the address configured, say): re-announce, wait
  longer (backoff), ask again, until only this node answers or the rounds
  run out.  The time to convergence goes into the journal.
* ``ClaimWatch``: while a node holds addresses, every claim for one of them
  from another MAC is reported (a second owner); the daemon's rule decides
  who keeps it.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any, Callable

log = logging.getLogger("heart")


def _norm(mac: str) -> str:
    return mac.lower()


def norm_addr(address: str) -> str:
    """One spelling per address ("2001:DB8:0::1" and "2001:db8::1" are one)."""
    return str(ipaddress.ip_address(address))


class ClaimWatch:
    """Reports claims for watched addresses from MACs other than ours.

    One per announcer (interface).  ``callback(address, mac, kind)`` runs in
    the event loop; a claim from the same MAC for the same address is
    reported at most once per ``quiet_s`` so a flood cannot flood the
    daemon."""

    def __init__(self, ann: Any, quiet_s: float = 1.0) -> None:
        self.ann = ann
        self.own = _norm(ann.mac)
        self.quiet_s = quiet_s
        self._watch: dict[str, Callable[[str, str, str], None]] = {}
        self._taps: list[Callable[[str, str, str], None]] = []
        self._last: dict[tuple[str, str], float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1

    def _start(self) -> None:
        # The one reader of the announcer's socket (asyncio allows one per
        # fd).  It watches a dup of the fd: if the announcer closes its
        # socket (its owner gave up on a dead interface, say) while this
        # watch is still registered, the number stays ours, and asyncio never
        # confuses a new socket that reuses it (a control connection did).
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.ann.claims(1000)             # what arrived before is stale
            self._fd = os.dup(self.ann.fileno())
            self._loop.add_reader(self._fd, self._readable)

    def add(self, address: str, callback: Callable[[str, str, str], None]) -> None:
        self._start()
        self._watch[norm_addr(address)] = callback

    def tap(self, fn: Callable[[str, str, str], None]) -> None:
        """Also pass every claim from another MAC to fn, unthrottled (confirm)."""
        self._start()
        self._taps.append(fn)

    def untap(self, fn: Callable[[str, str, str], None]) -> None:
        if fn in self._taps:
            self._taps.remove(fn)

    def remove(self, address: str) -> None:
        self._watch.pop(norm_addr(address), None)

    @property
    def watching(self) -> bool:
        return bool(self._watch or self._taps)

    def close(self) -> None:
        """Stop reading (before the announcer is closed: its fileno() is
        gone then)."""
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._loop = None
        self._watch.clear()

    def _readable(self) -> None:
        try:
            claims = self.ann.claims(1000)
        except ValueError:                    # the announcer was closed
            self.close()
            return
        except OSError as exc:
            log.warning("%s: reading claims: %s", self.ann.ifname, exc)
            return
        now = time.monotonic()
        for c in claims:
            mac = _norm(c.mac)
            if mac == self.own:
                continue
            addr = norm_addr(c.address)
            for fn in list(self._taps):
                fn(addr, mac, c.kind)
            cb = self._watch.get(addr)
            if cb is None:
                continue
            key = (addr, mac)
            if now - self._last.get(key, -1e9) < self.quiet_s:
                continue
            self._last[key] = now
            try:
                cb(addr, mac, c.kind)
            except Exception:  # a callback bug must not stop the watch
                log.exception("duplicate-owner callback for %s", addr)


async def confirm(watch: ClaimWatch, address: str, *,
                  probe: Callable[[], Awaitable[Any]],
                  reannounce: Callable[[], Awaitable[Any]], window_s: float = 0.05,
                  max_window_s: float = 0.5, max_s: float = 5.0,
                  backoff: float = 2.0) -> dict:
    """Probe until only this host answers for address.

    ``watch`` is the ClaimWatch of the address's interface (the one reader
    of its announcer); ``probe()`` sends one ARP probe / neighbour
    solicitation, ``reannounce()`` one announcement (both through the
    resource agent, which orders every frame it sends).  The wait after each
    probe grows from window_s by backoff up to max_window_s; it gives up
    after max_s (a crashed old owner's address lives until its lease ends,
    so the daemon passes the lease plus a margin).  Returns
    {"converged": bool, "converged_ms": float | None, "rounds": int,
    "others": [MACs that answered]}.  Never raises for what the segment does."""
    address = norm_addr(address)
    t0 = time.monotonic()
    others_ever: set[str] = set()
    seen: set[str] = set()

    def tap(addr: str, mac: str, kind: str) -> None:
        if addr == address:
            seen.add(mac)

    watch.tap(tap)
    try:
        window = window_s
        rnd = 0
        while time.monotonic() - t0 < max_s:
            rnd += 1
            seen.clear()
            await probe()
            await asyncio.sleep(window)       # a whole window: never a probe flood
            if not seen:
                return {"converged": True, "rounds": rnd, "others": sorted(others_ever),
                        "converged_ms": round((time.monotonic() - t0) * 1000, 3)}
            others_ever |= seen
            log.warning("%s: %s still answer(s) for %s; announcing again", watch.ann.ifname,
                        ", ".join(sorted(seen)), address)
            await reannounce()
            window = min(window * backoff, max_window_s)
        return {"converged": False, "rounds": rnd, "others": sorted(others_ever),
                "converged_ms": None}
    finally:
        watch.untap(tap)
