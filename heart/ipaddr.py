"""The built-in ``ipaddr`` resource: a virtual IP address that follows its owner.

``start`` adds the address (IPv4 or IPv6) to an interface (netlink through
pyroute2 on Linux, ifconfig on Solaris / illumos, the BSDs and macOS),
announces it (gratuitous ARP / unsolicited neighbour advertisement, via
:class:`heart._core.Announcer`), repeats the announcement after a delay,
optionally refreshes it, and on Linux keeps renewing the address's kernel
lifetime (the *lease*) while it is held.  ``stop`` removes it.  ``monitor``
says whether it is on the interface.  See docs/ipaddr.md.

Layers:

* :func:`parse_params` / :func:`validate_params` read a ``[[resource]]``
  ``params`` table into :class:`IpaddrParams` (pure; no system calls; what
  applies depends on the platform: labels and the lease are Linux only).
* :class:`AddressManager`: synchronous operations on one interface address
  (check, add, renew, remove, present), the same on every platform, over
  per-platform primitives.  ``AddressManager()`` gives :class:`NetlinkAddresses` on Linux and
  :class:`heart.addr_ifconfig.IfconfigAddresses` on Solaris / illumos and the
  BSDs.  pyroute2 0.9's synchronous IPRoute runs its own event loop, so it
  cannot be used from a thread whose asyncio loop is running (and ifconfig
  is a subprocess): the agent calls them from a worker thread.
* :func:`add_address`, :func:`remove_address`, :func:`renew_address`,
  :func:`address_present`: the same as plain functions (for the CLI).
* :class:`IpaddrAgent`: the resource agent the supervisor drives (asyncio;
  address operations and frames go to the agent's one worker thread, so the
  daemon's loop never waits on them).

Nothing here changes the system before everything that can be checked has
been checked: an unknown interface, the address already present with another
prefix (or on another interface), a missing capability are reported and
leave the interface as it was.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import difflib
import errno
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from heart.dispatch import ActionResult, Agent

__all__ = [
    "DEFAULT_ANNOUNCE_COUNT",
    "DEFAULT_ANNOUNCE_INTERVAL_US",
    "DEFAULT_ANNOUNCE_REPEAT_US",
    "DEFAULT_DEADTIME_US",
    "DEFAULT_REFRESH_INTERVAL_US",
    "LEASE_DEADTIMES",
    "PARAMS",
    "AddressError",
    "AddressInfo",
    "AddressManager",
    "AnnounceUnavailable",
    "IpaddrAgent",
    "IpaddrParams",
    "NetlinkAddresses",
    "address_backend",
    "add_address",
    "address_present",
    "default_lease_us",
    "make_params",
    "parse_params",
    "remove_address",
    "renew_address",
    "validate_params",
]

log = logging.getLogger("heart.ipaddr")

#: The keys of an ipaddr ``params`` table.
PARAMS = ("address", "prefix", "interface", "label", "lease", "announce_count",
          "announce_interval", "announce_repeat", "refresh_interval")

DEFAULT_ANNOUNCE_COUNT = 3
DEFAULT_ANNOUNCE_INTERVAL_US = 200_000
DEFAULT_ANNOUNCE_REPEAT_US = 1_000_000
DEFAULT_REFRESH_INTERVAL_US = 0
#: The default lease is this many dead times, rounded up to whole seconds.
LEASE_DEADTIMES = 3
#: Used when an agent is built without the cluster's dead time (TimingConfig's default).
DEFAULT_DEADTIME_US = 500_000

MAX_ANNOUNCE_COUNT = 1000
MIN_ANNOUNCE_INTERVAL_US = 1_000
MAX_ANNOUNCE_INTERVAL_US = 60_000_000
MIN_REPEAT_US = 1_000
MIN_REFRESH_US = 100_000
#: valid_lft is a u32 of seconds; all ones means "forever".
INFINITY_LIFE_TIME = 0xFFFFFFFF
MAX_LEASE_S = INFINITY_LIFE_TIME - 1

IFNAMSIZ = 16  # including the NUL: names and labels are at most 15 bytes
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80

_OFF_WORDS = ("0", "off", "none", "no", "false")
_LEASE_OFF_WORDS = _OFF_WORDS + ("permanent", "forever")


def address_backend(platform: str | None = None) -> str | None:
    """How addresses are changed on ``platform`` (default: this one, sys.platform):
    "netlink" (Linux), "sunos" (ifconfig on Solaris / illumos), "bsd" (ifconfig on
    FreeBSD, OpenBSD, NetBSD, DragonFly and macOS), or None (not supported)."""
    plat = (sys.platform if platform is None else platform).lower()
    if plat.startswith("linux"):
        return "netlink"
    if plat.startswith("sunos") or plat.startswith("solaris"):
        return "sunos"
    if "bsd" in plat or plat.startswith("darwin") or plat.startswith("dragonfly"):
        return "bsd"
    return None


# --------------------------------------------------------------------------- #
# Parameters
# --------------------------------------------------------------------------- #


@dataclass
class IpaddrParams:
    """One virtual address, as parsed from an ``ipaddr`` resource's params."""

    address: str                 # normalised: "192.0.2.10", "2001:db8::10"
    prefix: int                  # 1..32 / 1..128
    interface: str
    label: str | None = None     # IPv4 only; starts with the interface name
    lease_us: int | None = None  # whole seconds (x 1e6); None = permanent
    announce_count: int = DEFAULT_ANNOUNCE_COUNT
    announce_interval_us: int = DEFAULT_ANNOUNCE_INTERVAL_US
    announce_repeat_us: int = DEFAULT_ANNOUNCE_REPEAT_US
    refresh_interval_us: int = DEFAULT_REFRESH_INTERVAL_US

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def family(self) -> int:
        return socket.AF_INET if self.version == 4 else socket.AF_INET6

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    @property
    def lease_s(self) -> int | None:
        """The kernel lifetime in seconds, or None for a permanent address."""
        return None if not self.lease_us else self.lease_us // 1_000_000

    @property
    def renew_interval_s(self) -> float | None:
        """How often a held address's lifetime is renewed: a third of the lease."""
        return None if not self.lease_us else self.lease_us / 3e6


def _fmt_us(us: int) -> str:
    from heart.config import format_duration
    return format_duration(us)


class _Issues:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, msg: str) -> None:
        self.items.append((key, msg))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _duration(issues: _Issues, params: Mapping[str, Any], key: str, default: int, *,
              lo: int, hi: int | None = None, off: bool = False) -> int:
    """A duration param in microseconds; 0 when ``off`` words are allowed and used."""
    if key not in params:
        return default
    from heart.config import parse_duration  # lazy: heart.config may import this module
    raw = params[key]
    text = _text(raw)
    if off and text.lower() in _OFF_WORDS:
        return 0
    try:
        us = parse_duration(raw)
    except (TypeError, ValueError) as exc:
        extra = ' (or "0" / "off")' if off else ""
        issues.add(key, f"{exc}{extra}")
        return default
    if off and us == 0:
        return 0
    if us < lo:
        issues.add(key, f"{_fmt_us(us)} is too short; expected at least {_fmt_us(lo)}"
                        + (' (or "0" / "off")' if off else ""))
        return default
    if hi is not None and us > hi:
        issues.add(key, f"{_fmt_us(us)} is too long; expected at most {_fmt_us(hi)}")
        return default
    return us


def _valid_ifname(name: str) -> str | None:
    """Why ``name`` cannot be a Linux interface name (the kernel's dev_valid_name), or None."""
    if not name:
        return "is empty"
    if len(name.encode()) >= IFNAMSIZ:
        return f"{name!r} is longer than {IFNAMSIZ - 1} bytes (Linux's limit)"
    if name in (".", ".."):
        return f"{name!r} cannot be an interface name"
    bad = [c for c in name if c in "/:" or c.isspace()]
    if bad:
        return f"{name!r} contains {bad[0]!r}; interface names cannot contain '/', ':' or spaces"
    return None


def default_lease_us(deadtime_us: int) -> int:
    """LEASE_DEADTIMES dead times, rounded up to whole seconds, at least 1 s."""
    seconds = -(-(LEASE_DEADTIMES * max(int(deadtime_us), 0)) // 1_000_000)
    return max(1, seconds) * 1_000_000


def _parse(params: Mapping[str, Any], deadtime_us: int, platform: str | None = None
           ) -> tuple[IpaddrParams | None, list[tuple[str, str]]]:
    issues = _Issues()
    plat = sys.platform if platform is None else platform
    linux = address_backend(plat) == "netlink"  # labels and address lifetimes: Linux only
    params = dict(params or {})
    for key in params:
        if key not in PARAMS:
            close = difflib.get_close_matches(str(key), PARAMS, n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else \
                f"; expected one of: {', '.join(PARAMS)}"
            issues.add(key, f'is not a parameter of type "ipaddr"{hint}')

    # address [/ prefix]
    ip = None
    addr_prefix = None
    if "address" not in params:
        issues.add("address", 'required: the virtual address, e.g. address = "192.0.2.10/24" '
                              'or "2001:db8::10/64"')
    else:
        text = _text(params["address"])
        host, slash, plen = text.partition("/")
        try:
            if "%" in host:
                raise ValueError("scoped")
            ip = ipaddress.ip_address(host)
        except ValueError:
            issues.add("address", f"{text!r} is not an IPv4 or IPv6 address (e.g. "
                                  f'"192.0.2.10/24" or "2001:db8::10/64")')
        if ip is not None:
            why = None
            if ip.is_unspecified:
                why = "is the unspecified address"
            elif ip.is_multicast:
                why = "is a multicast address"
            elif ip.is_loopback:
                why = "is a loopback address"
            elif ip.version == 6 and ip.ipv4_mapped is not None:
                why = f"is an IPv4-mapped IPv6 address; write it as {ip.ipv4_mapped}"
            if why:
                issues.add("address", f"{host} {why}; a virtual address must be a unicast address")
                ip = None
        if ip is not None and slash:
            try:
                addr_prefix = int(plen)
            except ValueError:
                issues.add("address", f"{text!r}: {plen!r} after '/' is not a prefix length")
                ip = None

    # prefix
    prefix = None
    if "prefix" in params:
        ptext = _text(params["prefix"])
        try:
            prefix = int(ptext)
        except ValueError:
            issues.add("prefix", f"{ptext!r} is not a prefix length; expected a number such "
                                 f"as 24 (IPv4) or 64 (IPv6)")
            prefix = -1
        if addr_prefix is not None and prefix >= 0 and prefix != addr_prefix:
            issues.add("prefix", f"is {prefix} but address says /{addr_prefix}; give the "
                                 f"prefix once")
            prefix = -1
    if prefix is None:
        prefix = addr_prefix
    if ip is not None and prefix is None:
        issues.add("prefix", f"required: the prefix length of {ip}, as prefix = "
                             f"\"{24 if ip.version == 4 else 64}\" or in the address "
                             f"(\"{ip}/{24 if ip.version == 4 else 64}\")")
    elif ip is not None and prefix is not None and prefix >= 0:
        top = 32 if ip.version == 4 else 128
        key = "prefix" if "prefix" in params else "address"
        if not 1 <= prefix <= top:
            issues.add(key, f"/{prefix} is out of range for an IPv{ip.version} address; "
                            f"expected 1 to {top}")
        elif ip.version == 4 and prefix <= 30:
            net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
            if ip == net.network_address:
                issues.add("address", f"{ip} is the network address of {net}; pick a host "
                                      f"address")
            elif ip == net.broadcast_address:
                issues.add("address", f"{ip} is the broadcast address of {net}; pick a host "
                                      f"address")

    # interface
    ifname = None
    if "interface" not in params:
        issues.add("interface", 'required: the interface that gets the address, e.g. '
                                'interface = "eth0"')
    else:
        ifname = _text(params["interface"])
        why = _valid_ifname(ifname)
        if why:
            issues.add("interface", why)
            ifname = None

    # label
    label = None
    if "label" in params and not linux:
        issues.add("label", f"address labels are Linux only; on {plat} an address has no "
                            f"label; remove it")
    elif "label" in params:
        label = _text(params["label"])
        if ip is not None and ip.version == 6:
            issues.add("label", "applies to IPv4 addresses only (Linux keeps no label on IPv6 "
                                "addresses); remove it")
            label = None
        elif not label:
            issues.add("label", "is empty; remove it (the interface name is the default label)")
            label = None
        elif len(label.encode()) >= IFNAMSIZ:
            issues.add("label", f"{label!r} is longer than {IFNAMSIZ - 1} bytes (Linux's limit)")
            label = None
        elif ifname is not None and not label.startswith(ifname):
            issues.add("label", f"{label!r} does not start with the interface name {ifname!r}; "
                                f"Linux labels an address after its interface (e.g. "
                                f"\"{ifname}:vip\"; iproute2 refuses other labels)")
            label = None

    # lease
    lease_us: int | None
    if not linux:
        # No kernel address lifetimes here: the address stays until removed.
        # The default lease does not apply; an explicit one is refused.
        lease_us = None
        if "lease" in params and _text(params["lease"]).lower() not in _LEASE_OFF_WORDS:
            issues.add("lease", f"{_text(params['lease'])!r}: address lifetimes (the lease) are "
                                f"Linux only; on {plat} an address stays until it is "
                                f"removed; remove \"lease\" or set it to \"off\"")
    elif "lease" in params:
        text = _text(params["lease"])
        if text.lower() in _LEASE_OFF_WORDS:
            lease_us = None
        else:
            us = _duration(issues, params, "lease", -1, lo=0)
            if us in (-1, 0):  # bad (reported) or "0s" (permanent)
                lease_us = None
            elif us % 1_000_000:
                whole = -(-us // 1_000_000)
                issues.add("lease", f"{_fmt_us(us)} is not a whole number of seconds; Linux "
                                    f"address lifetimes are counted in seconds (e.g. "
                                    f"\"{whole}s\")")
                lease_us = None
            elif us // 1_000_000 > MAX_LEASE_S:
                issues.add("lease", f"{_fmt_us(us)} is too long; the kernel's limit is "
                                    f"{MAX_LEASE_S}s (use \"off\" for a permanent address)")
                lease_us = None
            else:
                lease_us = us
    else:
        lease_us = default_lease_us(deadtime_us)

    # announcements
    count = DEFAULT_ANNOUNCE_COUNT
    if "announce_count" in params:
        ctext = _text(params["announce_count"])
        try:
            count = int(ctext)
            if not 0 <= count <= MAX_ANNOUNCE_COUNT:
                raise ValueError
        except ValueError:
            issues.add("announce_count", f"{ctext!r} is not a count from 0 (no announcements) "
                                         f"to {MAX_ANNOUNCE_COUNT}")
            count = DEFAULT_ANNOUNCE_COUNT
    interval = _duration(issues, params, "announce_interval", DEFAULT_ANNOUNCE_INTERVAL_US,
                         lo=MIN_ANNOUNCE_INTERVAL_US, hi=MAX_ANNOUNCE_INTERVAL_US)
    repeat = _duration(issues, params, "announce_repeat", DEFAULT_ANNOUNCE_REPEAT_US,
                       lo=MIN_REPEAT_US, off=True)
    refresh = _duration(issues, params, "refresh_interval", DEFAULT_REFRESH_INTERVAL_US,
                        lo=MIN_REFRESH_US, off=True)

    if issues.items or ip is None or ifname is None or prefix is None or prefix < 0:
        return None, issues.items
    return IpaddrParams(
        address=str(ip), prefix=prefix, interface=ifname, label=label, lease_us=lease_us,
        announce_count=count, announce_interval_us=interval, announce_repeat_us=repeat,
        refresh_interval_us=refresh,
    ), []


def validate_params(res_name: str, params: Mapping[str, Any],
                    deadtime_us: int, platform: str | None = None) -> list[tuple[str, str]]:
    """Every problem with an ipaddr resource's params, as (param key, message).

    Empty when :func:`parse_params` would succeed.  Messages do not repeat the
    resource name or the key (the config loader prefixes its own location).
    ``platform`` (a sys.platform value; default: this one) decides what
    applies: labels and the lease are Linux only."""
    return _parse(params, deadtime_us, platform)[1]


def parse_params(res_name: str, params: Mapping[str, Any], deadtime_us: int,
                 platform: str | None = None) -> IpaddrParams:
    """The params table of ``[[resource]] type = "ipaddr"`` as :class:`IpaddrParams`.

    Values may be strings (as the config loader passes them) or numbers.
    Raises ValueError naming the resource and every bad param.  ``platform``:
    as for :func:`validate_params` (off Linux the lease is None: permanent)."""
    p, issues = _parse(params, deadtime_us, platform)
    if issues:
        raise ValueError(f"resource {res_name}: " + "; ".join(
            f"params.{key}: {msg}" for key, msg in issues))
    assert p is not None
    return p


def make_params(ifname: str, address: str, prefix: int | None = None, *,
                lease_s: int | None = None, label: str | None = None,
                platform: str | None = None) -> IpaddrParams:
    """IpaddrParams for the plain-function API (no announcements).  ``address``
    may carry the prefix ("192.0.2.10/24").  ValueError for bad input (also a
    lease or a label where ``platform``, default this one, has none)."""
    raw: dict[str, Any] = {"address": address, "interface": ifname,
                           "lease": f"{int(lease_s)}s" if lease_s else "off",
                           "announce_count": 0}
    if prefix is not None:
        raw["prefix"] = prefix
    if label is not None:
        raw["label"] = label
    p, issues = _parse(raw, DEFAULT_DEADTIME_US, platform)
    if issues:
        raise ValueError("; ".join(f"{key}: {msg}" for key, msg in issues))
    assert p is not None
    return p


# --------------------------------------------------------------------------- #
# Addresses: one interface, per-platform implementations
# --------------------------------------------------------------------------- #


class AddressError(Exception):
    """An operation on an address failed, or a check refused it.  The message
    names the interface and the address; ``errno`` is set when the kernel (or
    the failing command's message) gave one."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


@dataclass
class AddressInfo:
    """One address as the kernel reports it (netlink), or as ifconfig lists it
    (there: lifetimes None, flags only IFA_F_TENTATIVE / IFA_F_DADFAILED, label
    the Solaris logical interface, such as "net0:1")."""

    interface: str
    index: int
    address: str
    prefix: int
    flags: int
    label: str | None
    valid_lft: int | None       # seconds left; None = forever
    preferred_lft: int | None

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def nodad(self) -> bool:
        return bool(self.flags & IFA_F_NODAD)


def _lft(value: Any) -> int | None:
    if value is None or value == INFINITY_LIFE_TIME:
        return None
    return int(value)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return getattr(exc, "errno", None)


class AddressManager:
    """Operations on interface addresses, one implementation per platform.

    ``AddressManager(**kwargs)`` is the one way to make one: it gives this
    platform's (by ``sys.platform``, see :func:`address_backend`), with
    ``kwargs`` passed on: :class:`NetlinkAddresses` on Linux (``ipr``),
    :class:`heart.addr_ifconfig.IfconfigAddresses` on Solaris / illumos, the
    BSDs and macOS (``runner``, ``ifconfig``); elsewhere AddressError
    (ENOSYS) naming the platform.  A subclass can also be made directly.

    This base class holds what does not depend on the platform (find, info,
    present, check, and the add / renew / remove flow with its checks and
    messages).  A subclass provides the primitives: :meth:`interfaces`,
    :meth:`ifindex`, :meth:`addresses`, :meth:`_put` (add, or update the same
    address), :meth:`_refresh` (renew the lease), :meth:`_delete` and
    :meth:`_del_hint`; it may override :meth:`_operation`, which brackets
    each public operation (check, present, add, renew, remove).

    Synchronous.  One instance belongs to one thread.  Use as a context
    manager or call :meth:`close`.
    """

    #: "netlink", "bsd" or "sunos" (see :func:`address_backend`).
    backend = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> AddressManager:
        if cls is AddressManager:  # the factory: this platform's implementation
            cls = _manager_class()
        return super().__new__(cls)

    def close(self) -> None:
        pass

    def __enter__(self) -> AddressManager:  # noqa: PYI034 (typing.Self needs 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- primitives (per platform) -------------------------------------------

    def interfaces(self) -> dict[int, str]:
        """ifindex -> name for every interface."""
        raise NotImplementedError

    def ifindex(self, ifname: str) -> int | None:
        """The interface's index, or None when there is no such interface."""
        raise NotImplementedError

    def addresses(self, family: int | None = None, address: str | None = None
                  ) -> list[AddressInfo]:
        """Every address (of ``family``; equal to ``address``) on every interface."""
        raise NotImplementedError

    def _put(self, p: IpaddrParams, index: int) -> None:
        """Add p's address, or update it when it is there with p's prefix."""
        raise NotImplementedError

    def _refresh(self, p: IpaddrParams, info: AddressInfo) -> None:
        """Renew the lease of p's address, which is there (``info``)."""
        raise NotImplementedError

    def _delete(self, p: IpaddrParams, index: int) -> bool:
        """Remove p's address (this prefix) from interface ``index``; False
        when it was not there."""
        raise NotImplementedError

    def _del_hint(self, a: AddressInfo) -> str:
        """The command an operator runs to remove ``a``."""
        raise NotImplementedError

    def _error(self, exc: BaseException, verb: str, p: IpaddrParams) -> AddressError:
        """AddressError for a primitive's failure other than an AddressError."""
        where = "to" if verb == "add" else "on"
        return AddressError(f"cannot {verb} {p.cidr} {where} {p.interface}: {exc}", _code(exc))

    @contextlib.contextmanager
    def _errors_as(self, verb: str, p: IpaddrParams) -> Iterator[None]:
        """An error with a code (netlink's, a system call's) raised in the
        block becomes an AddressError naming verb and p; AddressError and
        errors without a code pass through."""
        try:
            yield
        except AddressError:
            raise
        except Exception as exc:
            if _code(exc) is None:
                raise
            raise self._error(exc, verb, p) from exc

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        """Brackets one public operation (check, present, add, renew, remove),
        so that a subclass may reuse what it read during it (IfconfigAddresses
        runs ``ifconfig -a`` once per operation).  Here: nothing."""
        yield

    # -- queries -------------------------------------------------------------

    def find(self, p: IpaddrParams) -> list[AddressInfo]:
        """Every configured copy of p.address (any interface, any prefix)."""
        return self.addresses(p.family, p.address)

    def info(self, p: IpaddrParams) -> AddressInfo | None:
        """p's address with p's prefix on p's interface, or None."""
        for a in self.find(p):
            if a.interface == p.interface and a.prefix == p.prefix:
                return a
        return None

    def present(self, p: IpaddrParams) -> bool:
        with self._operation():
            return self.info(p) is not None

    def check(self, p: IpaddrParams) -> str | None:
        """Why p cannot be added, or None: an unknown interface, or the same
        address already there with another prefix or on another interface."""
        with self._operation():
            problem = self._problem(p)
        return problem[1] if problem else None

    def _problem(self, p: IpaddrParams) -> tuple[int, str] | None:
        what = f"cannot add {p.cidr} to {p.interface}"
        if self.ifindex(p.interface) is None:
            names = self.interfaces()
            known = ", ".join(sorted(n for n in names.values() if n))
            return errno.ENODEV, (f"{what}: interface {p.interface!r} does not exist "
                                  f"(interfaces here: {known or 'none'})")
        link_local = ipaddress.ip_address(p.address).is_link_local
        for a in self.find(p):
            if a.interface == p.interface and a.prefix != p.prefix:
                return errno.EEXIST, (
                    f"{what}: {p.address} is already on {p.interface} with prefix "
                    f"/{a.prefix}, not /{p.prefix}; fix the prefix or remove the other "
                    f"address ({self._del_hint(a)})")
            if a.interface != p.interface and not link_local:
                return errno.EEXIST, (
                    f"{what}: {p.address} is already on another interface, {a.interface} "
                    f"(/{a.prefix}); remove it there first ({self._del_hint(a)})")
        return None

    # -- changes -------------------------------------------------------------

    def add(self, p: IpaddrParams, *, checked: bool = False) -> None:
        """Add p's address (with a lease where the platform has lifetimes).
        An address already there with the same prefix is updated, not an error.
        AddressError (and nothing changed) when :meth:`check` objects."""
        with self._operation():
            if not checked:
                problem = self._problem(p)
                if problem:
                    raise AddressError(problem[1], problem[0])
            index = self.ifindex(p.interface)
            if index is None:
                raise AddressError(f"cannot add {p.cidr} to {p.interface}: interface "
                                   f"{p.interface!r} does not exist", errno.ENODEV)
            with self._errors_as("add", p):
                self._put(p, index)

    def renew(self, p: IpaddrParams) -> None:
        """Refresh the lifetimes of p's address (where there are none, only
        check that it is there).  AddressError when it is no longer there: a
        vanished address is not silently re-added (the monitor reports it)."""
        with self._operation():
            info = self.info(p)
            if info is None:
                raise AddressError(f"cannot renew {p.cidr} on {p.interface}: the address "
                                   f"is no longer there", errno.EADDRNOTAVAIL)
            with self._errors_as("renew", p):
                self._refresh(p, info)

    def remove(self, p: IpaddrParams) -> bool:
        """Remove p's address (exactly this prefix); False when it was not there
        (also when the interface is gone)."""
        with self._operation():
            index = self.ifindex(p.interface)
            if index is None:
                return False
            try:
                return self._delete(p, index)
            except AddressError:
                raise
            except Exception as exc:
                code = _code(exc)
                if code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT, errno.ESRCH):
                    return False
                if code is None:
                    raise
                raise self._error(exc, "remove", p) from exc


def _manager_class() -> type[AddressManager]:
    """This platform's AddressManager class (for ``AddressManager()``)."""
    backend = address_backend()
    if backend == "netlink":
        return NetlinkAddresses
    if backend in ("bsd", "sunos"):
        from heart.addr_ifconfig import IfconfigAddresses
        return IfconfigAddresses
    raise AddressError(f"cannot manage addresses on platform {sys.platform!r}: Heart changes "
                       f"addresses through netlink on Linux and through ifconfig on "
                       f"Solaris / illumos, FreeBSD, OpenBSD, NetBSD, DragonFly and macOS",
                       errno.ENOSYS)


class NetlinkAddresses(AddressManager):
    """Linux: netlink operations on interface addresses (pyroute2's IPRoute).

    Quick (one netlink round trip each).  The thread that uses an instance
    must not be running an asyncio loop (pyroute2 0.9's synchronous API runs
    its own).
    """

    backend = "netlink"

    def __init__(self, ipr: Any = None) -> None:
        self._ipr = ipr
        self._own = ipr is None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute
            self._ipr = IPRoute(groups=0)  # requests only: no multicast notifications
        return self._ipr

    def close(self) -> None:
        if self._own and self._ipr is not None:
            self._ipr.close()
        self._ipr = None

    # -- queries -------------------------------------------------------------

    def interfaces(self) -> dict[int, str]:
        """ifindex -> name for every interface."""
        return {m["index"]: m.get("ifname") for m in self.ipr.get_links()}

    def ifindex(self, ifname: str) -> int | None:
        """The interface's index, or None.  With our own netlink socket (made in
        this thread, so in this thread's namespace) an ioctl answers, which is
        much quicker than a netlink round trip through pyroute2."""
        if self._own:
            try:
                return socket.if_nametoindex(ifname)
            except OSError:
                return None
        found = self.ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def _ifname(self, index: int, names: dict[int, str]) -> str:
        if index not in names:
            try:
                if not self._own:
                    raise OSError
                names[index] = socket.if_indextoname(index)
            except OSError:
                names.update(self.interfaces())
        return names.get(index) or f"if{index}"

    def addresses(self, family: int | None = None, address: str | None = None
                  ) -> list[AddressInfo]:
        """Every address (of ``family``; equal to ``address``) on every interface."""
        names: dict[int, str] = {}
        out = []
        kw = {"family": family} if family else {}
        for m in self.ipr.addr("dump", **kw):
            fam = m["family"]
            addr = (m.get("local") or m.get("address")) if fam == socket.AF_INET \
                else m.get("address")
            if addr is None:
                continue
            addr = str(ipaddress.ip_address(addr))
            if address is not None and addr != address:
                continue
            cache = m.get("cacheinfo") or {}
            flags = m.get("flags")
            if flags is None:
                flags = m["flags"]
            out.append(AddressInfo(
                interface=self._ifname(m["index"], names), index=m["index"],
                address=addr, prefix=m["prefixlen"], flags=int(flags), label=m.get("label"),
                valid_lft=_lft(cache.get("ifa_valid")),
                preferred_lft=_lft(cache.get("ifa_preferred"))))
        return out

    def _del_hint(self, a: AddressInfo) -> str:
        return f"ip addr del {a.address}/{a.prefix} dev {a.interface}"

    # -- changes -------------------------------------------------------------

    def _error(self, exc: BaseException, verb: str, p: IpaddrParams) -> AddressError:
        code = _code(exc)
        where = "to" if verb == "add" else "on"
        what = f"cannot {verb} {p.cidr} {where} {p.interface}"
        if code == errno.EPERM:
            why = "changing addresses needs CAP_NET_ADMIN (run as root)"
        elif code == errno.EACCES and p.version == 6:
            why = (f"IPv6 is disabled on {p.interface} "
                   f"(net.ipv6.conf.{p.interface}.disable_ipv6 = 1)")
        elif code == errno.EACCES:
            why = "permission denied (CAP_NET_ADMIN is needed)"
        elif code == errno.ENODEV:
            why = f"interface {p.interface!r} does not exist"
        elif isinstance(code, int):
            why = os.strerror(code)
        else:
            why = str(exc)
        return AddressError(f"{what}: {why}", code)

    def _replace(self, p: IpaddrParams, index: int) -> None:
        lft = p.lease_s if p.lease_s else INFINITY_LIFE_TIME
        kw: dict[str, Any] = {"index": index, "address": p.address, "prefixlen": p.prefix,
                              "family": p.family, "valid_lft": lft, "preferred_lft": lft}
        if p.version == 6:
            kw["flags"] = IFA_F_NODAD  # usable at once: no duplicate address detection
        else:
            kw["label"] = p.label or p.interface
            if p.prefix <= 30:
                net = ipaddress.ip_network(p.cidr, strict=False)
                kw["broadcast"] = str(net.broadcast_address)
        # RTM_NEWADDR with NLM_F_CREATE | NLM_F_REPLACE: adds, or updates the
        # lifetimes of the same address/prefix already there.
        self.ipr.addr("replace", **kw)

    def _put(self, p: IpaddrParams, index: int) -> None:
        self._replace(p, index)

    def _refresh(self, p: IpaddrParams, info: AddressInfo) -> None:
        self._replace(p, info.index)

    def _delete(self, p: IpaddrParams, index: int) -> bool:
        self.ipr.addr("del", index=index, address=p.address, prefixlen=p.prefix,
                      family=p.family)
        return True


# --------------------------------------------------------------------------- #
# Plain functions (CLI)
# --------------------------------------------------------------------------- #


def add_address(ifname: str, address: str, prefix: int | None = None, *,
                lease_s: int | None = None, label: str | None = None) -> None:
    """Add ``address/prefix`` to ``ifname`` (IPv6 without DAD; ``lease_s``: kernel
    lifetime in seconds, None = permanent; ``label``: IPv4 only).  Updates the
    lifetimes of the same address already there.  ValueError for bad input,
    AddressError (nothing changed) for an unknown interface, the address on
    this interface with another prefix or on another interface, or a missing
    capability."""
    p = make_params(ifname, address, prefix, lease_s=lease_s, label=label)
    with AddressManager() as m:
        m.add(p)


def renew_address(ifname: str, address: str, prefix: int | None = None, *,
                  lease_s: int | None = None, label: str | None = None) -> None:
    """Refresh the lifetime of an address that is there (AddressError if not)."""
    p = make_params(ifname, address, prefix, lease_s=lease_s, label=label)
    with AddressManager() as m:
        m.renew(p)


def remove_address(ifname: str, address: str, prefix: int | None = None) -> bool:
    """Remove ``address`` from ``ifname``: with ``prefix`` only that prefix,
    without it whatever prefix it has there.  False if it was not there."""
    with AddressManager() as m:
        if prefix is None and "/" not in address:
            ip = ipaddress.ip_address(address)
            found = [a for a in m.addresses(socket.AF_INET if ip.version == 4
                                            else socket.AF_INET6)
                     if a.address == str(ip) and a.interface == ifname]
            if not found:
                return False
            prefix = found[0].prefix
        p = make_params(ifname, address, prefix)
        return m.remove(p)


def address_present(ifname: str, address: str, prefix: int | None = None) -> bool:
    """True if ``address`` (with ``prefix``, when given) is on ``ifname``."""
    ip = ipaddress.ip_interface(address).ip if "/" in address else ipaddress.ip_address(address)
    if "/" in address and prefix is None:
        prefix = int(address.partition("/")[2])
    with AddressManager() as m:
        fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        return any(a.address == str(ip) and a.interface == ifname
                   and (prefix is None or a.prefix == prefix) for a in m.addresses(fam))


# --------------------------------------------------------------------------- #
# Announcements
# --------------------------------------------------------------------------- #


class AnnounceUnavailable(Exception):
    """Frames cannot be sent here (no Announcer in heart._core, or backend none)."""


def _open_announcer(ifname: str, address: str) -> Any:
    """heart._core.Announcer(ifname).  AnnounceUnavailable when the platform has none;
    AddressError for a missing capability or an unknown interface."""
    try:
        from heart._core import Announcer
    except ImportError as exc:
        raise AnnounceUnavailable("heart._core has no Announcer (rebuild Heart)") from exc
    try:
        return Announcer(ifname)
    except PermissionError as exc:
        raise AddressError(f"cannot announce {address} on {ifname}: sending ARP / neighbour "
                           f"advertisement frames needs CAP_NET_RAW (run as root)",
                           errno.EPERM) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            raise AnnounceUnavailable(f"this platform cannot send raw frames ({exc})") from exc
        if exc.errno == errno.ENODEV:
            raise AddressError(f"cannot announce {address} on {ifname}: interface {ifname!r} does "
                               f"not exist", errno.ENODEV) from exc
        raise AddressError(f"cannot announce {address} on {ifname}: {exc}", exc.errno) from exc


# --------------------------------------------------------------------------- #
# The agent
# --------------------------------------------------------------------------- #


class IpaddrAgent(Agent):
    """``[[resource]] type = "ipaddr"``: see the module docstring and docs/ipaddr.md.

    ``deadtime_us`` (the cluster's dead time) sets the default lease; the
    daemon passes ``config.timing.deadtime_us``.  ``params`` may be given
    already parsed.  Raises ValueError for bad params.

    Every netlink call and every frame goes to the agent's one worker thread
    (made on first use, with its own netlink socket, ended by :meth:`close`),
    so they run in order: a renewal in flight when ``stop`` is called
    finishes before the address is removed, and no frame leaves after the
    release.  Frames are sent one at a time (the spacing is slept in the
    loop), so ``stop`` also ends a burst at once.  The thread is idle between
    actions; ``close()`` ends it (the address is left as it is).
    """

    #: How the agent reaches the kernel and the wire (tests substitute fakes):
    #: ``manager_factory()`` -> an AddressManager-like context manager, made
    #: and used in one worker thread; ``announcer_factory(ifname, address)`` ->
    #: a heart._core.Announcer-like object, or raises AnnounceUnavailable / AddressError.
    manager_factory: Any = AddressManager
    announcer_factory: Any = staticmethod(_open_announcer)

    def __init__(self, res: Any, env: Mapping[str, Any] | None = None, *,
                 deadtime_us: int | None = None, params: IpaddrParams | None = None) -> None:
        super().__init__(res, env)
        if params is None:
            params = parse_params(res.name, res.params or {},
                                  DEFAULT_DEADTIME_US if deadtime_us is None else deadtime_us)
        self.params = params
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._manager: Any = None  # the worker thread's AddressManager
        self._held = False
        self._tasks: set[asyncio.Task] = set()
        self._announcer: Any = None
        self._announce_off: str | None = None  # why frames are not sent, if so
        self._send_failed = False
        #: Counters (tests, journal): frames sent and lifetime renewals, this hold.
        self.frames_sent = 0
        self.renewals = 0
        self.renew_errors = 0
        self._renewer: threading.Thread | None = None
        self._renew_stop = threading.Event()

    # -- helpers -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self.res.name

    def _result(self, action: str, ok: bool, started: float, *, status: str,
                output: str = "", error: str | None = None) -> ActionResult:
        loop = asyncio.get_running_loop()
        return ActionResult(
            resource=self.name, action=action, ok=ok, rc=None, timed_out=False,
            output=output, duration_s=loop.time() - started, error=error, status=status)

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"heart-ipaddr-{self.name}")
        return self._pool

    def _end_worker(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    async def _in_worker(self, fn: Any, *args: Any, timeout_s: float | None = None) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._worker(), fn, *args)
        if timeout_s is None:
            return await fut
        # Not asyncio.wait_for: before Python 3.12 it can swallow a
        # cancellation that arrives as the call completes, and a renewal
        # task cancelled by stop() would then never end (seen in the lab:
        # the release after a pause hung in _halt()).
        done, _ = await asyncio.wait({fut}, timeout=timeout_s)
        if not done:
            raise asyncio.TimeoutError
        return fut.result()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _halt(self) -> None:
        """Cancel the background tasks (bursts, repeat, refresh, renewal) and wait for them."""
        await self._stop_renewer()
        tasks = list(self._tasks)
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- worker-thread functions ----------------------------------------------

    def _acquire_sync(self) -> tuple[int, str]:
        """check, open the announcer, add, send the first frame.  Returns
        (frames sent, a note on announcements)."""
        p = self.params
        with self._netlink() as m:
            problem = m.check(p)
            if problem:
                raise AddressError(f"{problem}; nothing was changed")
            note = ""
            self._announce_off = None
            if p.announce_count > 0 and self._announcer is None:
                try:
                    self._announcer = self.announcer_factory(p.interface, p.address)
                except AnnounceUnavailable as exc:
                    self._announce_off = str(exc)
                    note = f"not announced: {exc}"
                except AddressError as exc:
                    raise AddressError(f"{exc}; nothing was changed", exc.errno) from exc
            try:
                m.add(p, checked=True)
            except AddressError as exc:
                self._close_announcer_sync()
                raise AddressError(f"{exc}; nothing was changed", exc.errno) from exc
            except BaseException:
                self._close_announcer_sync()
                raise
        sent = 0
        if self._announcer is not None:
            try:
                sent = self._send_frame_sync()
            except OSError as exc:
                note = f"first announcement failed: {exc}"
                log.warning("resource %s: announcing %s on %s failed: %s", self.name,
                            p.address, p.interface, exc)
        return sent, note

    def _send_sync(self) -> int:
        """One frame while the address is held (never after stop began)."""
        if not self._held:
            return 0
        return self._send_frame_sync()

    def _send_frame_sync(self) -> int:
        """One frame (GARP / unsolicited NA) for the address; reopens the
        announcer after a send error (the interface may have been recreated)."""
        if self._announce_off is not None:
            return 0
        p = self.params
        if self._announcer is None:
            try:
                self._announcer = self.announcer_factory(p.interface, p.address)
            except AnnounceUnavailable as exc:
                self._announce_off = str(exc)
                return 0
        try:
            n = self._announcer.announce(p.address, 1)
        except OSError:
            self._close_announcer_sync()
            raise
        self.frames_sent += n
        return n

    def _close_announcer_sync(self) -> None:
        ann, self._announcer = self._announcer, None
        if ann is not None:
            try:
                ann.close()
            except OSError:
                pass

    @contextlib.contextmanager
    def _netlink(self) -> Iterator[Any]:
        """The worker thread's manager (made on first use); dropped after an
        unexpected error, so the next call starts with a fresh socket."""
        if self._manager is None:
            self._manager = self.manager_factory()
        try:
            yield self._manager
        except AddressError:
            raise
        except BaseException:
            self._drop_manager_sync()
            raise

    def _drop_manager_sync(self) -> None:
        m, self._manager = self._manager, None
        if m is not None:
            with contextlib.suppress(Exception):
                m.close()

    def _renew_sync(self) -> None:
        with self._netlink() as m:
            m.renew(self.params)
        self.renewals += 1

    def _release_sync(self) -> bool:
        self._close_announcer_sync()
        with self._netlink() as m:
            return m.remove(self.params)

    def _present_sync(self) -> tuple[bool, str | None]:
        with self._netlink() as m, m._operation():     # one listing for both
            if m.ifindex(self.params.interface) is None:
                return False, f"interface {self.params.interface!r} does not exist"
            return m.present(self.params), None

    def _close_sync(self) -> None:
        self._close_announcer_sync()
        self._drop_manager_sync()

    # -- background tasks --------------------------------------------------

    async def _frame(self) -> None:
        try:
            await self._in_worker(self._send_sync)
            self._send_failed = False
        except (OSError, AddressError) as exc:
            if not self._send_failed:  # once per run of failures
                log.warning("resource %s: announcing %s on %s failed: %s", self.name,
                            self.params.address, self.params.interface, exc)
            self._send_failed = True

    async def _burst(self, count: int, first_delay_s: float) -> None:
        interval_s = self.params.announce_interval_us / 1e6
        for i in range(count):
            await asyncio.sleep(first_delay_s if i == 0 else interval_s)
            if not self._held:
                return
            await self._frame()

    async def _repeat(self) -> None:
        await asyncio.sleep(self.params.announce_repeat_us / 1e6)
        await self._burst(self.params.announce_count, 0.0)

    async def _refresh(self) -> None:
        period = self.params.refresh_interval_us / 1e6
        while True:
            await asyncio.sleep(period)
            await self._burst(self.params.announce_count, 0.0)

    def _renew_loop(self, stop: threading.Event) -> None:
        """Lease renewal on a thread of its own, so that it does not depend
        on the event loop: a daemon whose Python side is blocked for a few
        seconds (a slow handler, a GC pause) keeps its address, while one
        that crashed or was stopped as a whole loses it when the lease ends.
        Each renewal still runs on the worker thread, in order with every
        other netlink call (a renewal in flight finishes before a remove)."""
        period = self.params.renew_interval_s
        assert period
        due = time.monotonic()
        failing = False
        while True:
            due += period
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            due = max(due, time.monotonic())  # after a stall, do not catch up in a burst
            try:
                self._worker().submit(self._renew_sync).result(timeout=period)
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep renewing; the monitor judges
                self.renew_errors += 1
                if not failing:
                    log.warning("resource %s: lease renewal failed: %s", self.name, exc)
                failing = True

    def _start_renewer(self) -> None:
        self._renew_stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, args=(self._renew_stop,),
                                         name=f"heart-lease-{self.name}", daemon=True)
        self._renewer.start()

    async def _stop_renewer(self) -> None:
        t, self._renewer = self._renewer, None
        if t is not None:
            self._renew_stop.set()
            await asyncio.get_running_loop().run_in_executor(None, t.join)

    # -- the three actions -------------------------------------------------

    async def _netlink_step(self, action: str, fn: Any, began: float,
                            what: str) -> tuple[Any, ActionResult | None]:
        """fn on the worker thread within the action timeout: (its value,
        None), or (None, the failed result naming what went wrong)."""
        try:
            return await self._in_worker(fn, timeout_s=self.action_timeout_s), None
        except asyncio.TimeoutError:
            error = f"{what} timed out after {self.action_timeout_s:g}s"
        except AddressError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an unexpected netlink failure
            log.exception("resource %s: %s failed", self.name, action)
            error = f"{what} failed: {exc!r}"
        return None, self._result(action, False, began, status="failed",
                                  error=f"resource {self.name}: {error}")

    async def start(self) -> ActionResult:
        loop = asyncio.get_running_loop()
        began = loop.time()
        p = self.params
        self._held = False
        await self._halt()  # a start after a failed start: stop the old tasks first
        self.frames_sent = self.renewals = self.renew_errors = 0
        self._send_failed = False
        done, failed = await self._netlink_step("start", self._acquire_sync, began,
                                                f"adding {p.cidr} to {p.interface}")
        if failed:
            return failed
        _sent, note = done
        parts = [f"added {p.cidr} to {p.interface}"]
        if p.label and p.version == 4:
            parts.append(f"label {p.label}")
        if p.lease_us:
            parts.append(f"lease {_fmt_us(p.lease_us)}, renewed every "
                         f"{_fmt_us(round(p.lease_us / 3000) * 1000)}")
        else:
            parts.append("permanent")
        text = "; ".join(parts)
        self._held = True
        if p.announce_count > 0 and self._announce_off is None:
            text += f"; announced (frame 1 of {p.announce_count}"
            if p.announce_count > 1:
                text += f", then every {_fmt_us(p.announce_interval_us)}"
                self._spawn(self._burst(p.announce_count - 1, p.announce_interval_us / 1e6))
            text += ")"
            if p.announce_repeat_us:
                text += f"; repeat in {_fmt_us(p.announce_repeat_us)}"
                self._spawn(self._repeat())
            if p.refresh_interval_us:
                text += f"; refresh every {_fmt_us(p.refresh_interval_us)}"
                self._spawn(self._refresh())
        if note:
            text += f"; {note}"
        if p.lease_us:
            self._start_renewer()
        log.info("resource %s: %s", self.name, text)
        return self._result("start", True, began, status="running", output=text)

    async def stop(self) -> ActionResult:
        loop = asyncio.get_running_loop()
        began = loop.time()
        p = self.params
        self._held = False
        await self._halt()
        removed, failed = await self._netlink_step("stop", self._release_sync, began,
                                                   f"removing {p.cidr} from {p.interface}")
        if failed:
            return failed
        text = (f"removed {p.cidr} from {p.interface}" if removed
                else f"{p.cidr} was not on {p.interface}")
        return self._result("stop", True, began, status="stopped", output=text)

    async def monitor(self) -> ActionResult:
        loop = asyncio.get_running_loop()
        began = loop.time()
        p = self.params
        try:
            present, why = await self._in_worker(self._present_sync,
                                                 timeout_s=self.monitor_timeout_s)
        except asyncio.TimeoutError:
            return self._result("monitor", False, began, status="failed",
                                error=f"resource {self.name}: checking {p.cidr} on "
                                      f"{p.interface} timed out")
        except Exception as exc:  # noqa: BLE001 - any failure to look is "failed"
            return self._result("monitor", False, began, status="failed",
                                error=f"resource {self.name}: checking {p.cidr} on "
                                      f"{p.interface} failed: {exc}")
        if present:
            return self._result("monitor", True, began, status="running",
                                output=f"{p.cidr} is on {p.interface}")
        text = why or f"{p.cidr} is not on {p.interface}"
        return self._result("monitor", False, began, status="stopped", output=text)

    # -- for confirmed takeover and the duplicate-owner watch --------------

    @property
    def announcer(self) -> Any:
        """The open heart._core.Announcer while the address is held (None
        before start, after stop, or where frames cannot be sent).  Read its
        claims from the loop (fileno / claims); send through :meth:`announce`
        and :meth:`probe`, which use the worker thread like every other frame."""
        return self._announcer

    @property
    def held(self) -> bool:
        """True between a successful start and the next stop (or close)."""
        return self._held

    async def announce(self, count: int | None = None) -> int:
        """A burst now (``count`` frames, default announce_count, at
        announce_interval): the winner's re-announcement.  Returns frames sent."""
        if not self._held:
            return 0
        before = self.frames_sent
        await self._burst(self.params.announce_count if count is None else count, 0.0)
        return self.frames_sent - before

    async def probe(self) -> bool:
        """Ask the segment who has the address (ARP request / neighbour
        solicitation), in the worker thread.  False if frames cannot be sent."""
        def go() -> bool:
            if self._announcer is None:
                return False
            self._announcer.probe(self.params.address)
            return True
        return await self._in_worker(go)

    async def close(self) -> None:
        """Stop the background tasks, close the raw and netlink sockets and end
        the worker thread, without touching the address (with a lease, it
        then expires by itself).  The agent can still be used afterwards."""
        self._held = False
        await self._halt()
        if self._pool is not None:
            await self._in_worker(self._close_sync)
        self._end_worker()
