"""Interface addresses through ifconfig(8): Solaris / illumos, the BSDs, macOS.

:class:`IfconfigAddresses` is the :class:`heart.ipaddr.AddressManager` of the
platforms without netlink.  It runs ifconfig and parses ``ifconfig -a``.  Two
dialects:

``"bsd"`` (FreeBSD, OpenBSD, NetBSD, DragonFly, macOS)::

    ifconfig IF inet ADDR netmask 0xffffff00 alias   ifconfig IF inet ADDR -alias
    ifconfig IF inet6 ADDR prefixlen N alias         ifconfig IF inet6 ADDR -alias

(the hexadecimal netmask is what every BSD's ifconfig(8) and macOS's accept;
"ADDR/PREFIX" is not documented everywhere)

``"sunos"`` (Solaris, illumos: the address goes on a new logical interface)::

    ifconfig IF addif ADDR/PREFIX up          ifconfig IF removeif ADDR
    ifconfig IF inet6 addif ADDR/PREFIX up    ifconfig IF inet6 removeif ADDR

There are no address lifetimes here: an address stays until it is removed
(the resource's lease is refused when configured, see heart.ipaddr), and
``renew`` only checks that the address is still there.  Duplicate address
detection is left to the kernel (see docs/ipaddr.md, "Platforms").

Commands go through ``runner(argv) -> CompletedProcess-like`` (returncode,
stdout, stderr as text); the default runs the command with a timeout and
``LC_ALL=C`` (the messages are matched in English).
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from heart.ipaddr import (
    IFA_F_DADFAILED,
    IFA_F_TENTATIVE,
    AddressError,
    AddressInfo,
    AddressManager,
    IpaddrParams,
    address_backend,
)

__all__ = ["DIALECTS", "IfconfigAddresses", "Listing", "find_ifconfig", "parse_ifconfig",
           "run_command"]

DIALECTS = ("bsd", "sunos")
#: Seconds an ifconfig command may take before it counts as failed.
COMMAND_TIMEOUT_S = 10.0
#: Where ifconfig lives when it is not on PATH.
_IFCONFIG_PATHS = ("/sbin/ifconfig", "/usr/sbin/ifconfig")

Runner = Callable[[Sequence[str]], Any]

_HEADER = re.compile(r"^(?P<name>\S+?):\s+flags=(?P<num>[0-9a-fA-F]+)?<(?P<flags>[^>]*)>"
                     r"(?P<rest>.*)$")
_INDEX = re.compile(r"\bindex (\d+)\b")


def find_ifconfig() -> str | None:
    """ifconfig on PATH, else in /sbin or /usr/sbin; None if there is none."""
    found = shutil.which("ifconfig")
    if found:
        return found
    for path in _IFCONFIG_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def run_command(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
    """The default runner: argv with a timeout, LC_ALL=C, output captured as text."""
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                          env=env, check=False)


def _mask_prefix(mask: str) -> int:
    """The prefix length of a netmask: 0xffffff00, ffffff00 or 255.255.255.0.
    ValueError when it is out of range or not contiguous."""
    text = mask.lower()
    try:
        value = ipaddress.IPv4Address(text if "." in text else int(text.removeprefix("0x"), 16))
    except ValueError as exc:
        raise ValueError(f"netmask {mask!r} is out of range") from exc
    try:
        net = ipaddress.IPv4Network(f"0.0.0.0/{value}")
    except ValueError:
        net = None
    # (ipaddress also takes a host mask such as 0.0.0.255: that is no netmask)
    if net is None or net.netmask != value:
        raise ValueError(f"netmask {mask!r} is not contiguous")
    return net.prefixlen


def _split_address(text: str) -> tuple[str, int | None]:
    """"2001:db8::10/64" -> ("2001:db8::10", 64); a %scope suffix is dropped."""
    host, _, plen = text.partition("/")
    host = host.split("%", 1)[0]
    return str(ipaddress.ip_address(host)), (int(plen) if plen else None)


class Listing(NamedTuple):
    """What one ``ifconfig -a`` says: the interfaces and the addresses."""

    #: index -> name of every interface, in the order listed
    interfaces: dict[int, str]
    #: every address, in the order listed
    addresses: list[AddressInfo]


def parse_ifconfig(text: str, dialect: str,
                   nametoindex: Callable[[str], int | None] | None = None) -> Listing:
    """The interfaces and addresses in ``ifconfig -a`` output, in one pass.

    BSD: "em0: flags=8843<UP,...> mtu 1500" headers, then indented lines such
    as "inet 192.0.2.10 netmask 0xffffff00 broadcast 192.0.2.255" and "inet6
    fe80::1%em0 prefixlen 64 scopeid 0x1" (the address may also carry
    "/prefix"; "tentative" and "duplicated" become IFA_F_TENTATIVE and
    IFA_F_DADFAILED).  sunos: one header per logical interface ("net0:1:
    flags=...<UP,...,IPv4> mtu 1500 index 2"), then "inet 192.0.2.10 netmask
    ffffff00 broadcast ..." or "inet6 2001:db8::10/64"; the address belongs
    to the physical interface (net0) and its label is the logical one
    (net0:1); DUPLICATE in the flags becomes IFA_F_DADFAILED.

    An interface's index is the one the output gives (OpenBSD "index N"
    lines, Solaris headers), else ``nametoindex(name)``; failing both, its
    addresses get index 0 and ``interfaces`` lists it under a made-up
    negative index (-1, -2, ...) so that every interface is there.

    Left out of ``addresses``: unspecified addresses (unconfigured Solaris
    logical interfaces) and, in the sunos dialect, the address of a logical
    interface without UP in its flags (it is not in use: it does not count
    as present).  ValueError for an address line that cannot be read."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown ifconfig dialect {dialect!r}; expected one of {DIALECTS}")
    addresses: list[AddressInfo] = []
    names: list[str] = []          # interfaces, in order
    given: dict[str, int] = {}     # the index the output gives
    resolved: dict[str, int | None] = {}
    name = label = None
    header_flags: set[str] = set()
    index: int | None = None
    pending: list[AddressInfo] = []  # this header's, until its index is known

    def index_of(n: str, idx: int | None) -> int | None:
        if idx is not None:
            return idx
        if n in given:
            return given[n]
        if n not in resolved:
            resolved[n] = nametoindex(n) if nametoindex is not None else None
        return resolved[n]

    def flush() -> None:
        if name is not None and index is not None:
            given[name] = index
        idx = index_of(name, index) if name is not None else None
        for a in pending:
            a.index = idx or 0
        addresses.extend(pending)
        pending.clear()

    for raw in text.splitlines():
        if not raw.strip():
            continue
        m = _HEADER.match(raw)
        if m and not raw[0].isspace():
            flush()
            full = m["name"]
            name, _, unit = full.partition(":") if dialect == "sunos" else (full, "", "")
            label = full if unit else None
            if name not in names:
                names.append(name)
            header_flags = {f.strip().upper() for f in m["flags"].split(",") if f.strip()}
            im = _INDEX.search(m["rest"])
            index = int(im[1]) if im else None
            continue
        if name is None:
            continue
        words = raw.split()
        if words[0] == "index" and len(words) > 1 and words[1].isdigit():  # OpenBSD
            index = int(words[1])
            continue
        if words[0] not in ("inet", "inet6") or len(words) < 2:
            continue
        try:
            address, prefix = _split_address(words[1])
            if prefix is None and words[0] == "inet" and "netmask" in words:
                prefix = _mask_prefix(words[words.index("netmask") + 1])
            if prefix is None and words[0] == "inet6" and "prefixlen" in words:
                prefix = int(words[words.index("prefixlen") + 1])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"cannot read this line of ifconfig output: {raw.strip()!r} "
                             f"({exc})") from exc
        if prefix is None:
            prefix = 32 if words[0] == "inet" else 128
        if ipaddress.ip_address(address).is_unspecified:
            continue
        if dialect == "sunos" and "UP" not in header_flags:
            continue  # a logical interface that is down: its address is not in use
        flags = 0
        if dialect == "bsd":
            if "tentative" in words[2:]:
                flags |= IFA_F_TENTATIVE
            if "duplicated" in words[2:]:
                flags |= IFA_F_DADFAILED
        elif "DUPLICATE" in header_flags:
            flags |= IFA_F_DADFAILED
        pending.append(AddressInfo(interface=name, index=0, address=address, prefix=prefix,
                                   flags=flags, label=label, valid_lft=None,
                                   preferred_lft=None))
    flush()
    interfaces: dict[int, str] = {}
    spare = -1
    for n in names:
        idx = index_of(n, None)
        if idx is None or idx in interfaces:
            idx, spare = spare, spare - 1
        interfaces[idx] = n
    return Listing(interfaces, addresses)


def _nametoindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _errno_of(stderr: str) -> int | None:
    """The errno an ifconfig error message stands for, where it says."""
    text = stderr.lower()
    if any(w in text for w in ("permission", "not owner", "privilege", "not permitted")):
        return errno.EPERM
    if any(w in text for w in ("does not exist", "no such interface", "no such device",
                               "device not configured")):
        return errno.ENODEV
    if "file exists" in text or "already exists" in text:
        return errno.EEXIST
    if "assign requested address" in text:
        return errno.EADDRNOTAVAIL
    return None


class IfconfigAddresses(AddressManager):
    """Addresses through ifconfig (dialect "bsd" or "sunos"; default: this
    platform's).  ``runner(argv)`` runs a command (default :func:`run_command`);
    ``ifconfig`` is the program (default :func:`find_ifconfig`).

    Within one public operation (check, present, add, renew, remove)
    ``ifconfig -a`` runs once and its parse is reused, until a command that
    changes something runs; outside one, every query lists afresh."""

    def __init__(self, dialect: str | None = None, *, runner: Runner | None = None,
                 ifconfig: str | None = None) -> None:
        if dialect is None:
            dialect = address_backend()
        if dialect not in DIALECTS:
            raise AddressError(f"no ifconfig dialect for this platform ({dialect!r}); "
                               f"expected one of {', '.join(DIALECTS)}", errno.ENOSYS)
        self.dialect = dialect
        self.runner: Runner = runner or run_command
        self.ifconfig = ifconfig or find_ifconfig() or "ifconfig"
        self._depth = 0                  # nesting of public operations
        self._cached: Listing | None = None

    @property
    def backend(self) -> str:  # type: ignore[override]
        """The dialect ("bsd" or "sunos")."""
        return self.dialect

    @contextmanager
    def _operation(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._cached = None

    # -- running ifconfig ------------------------------------------------------

    def _run(self, args: Sequence[str], what: str) -> str:
        """stdout of ``ifconfig args``; AddressError naming ``what`` (such as
        "cannot add 192.0.2.10/24 to em0"), the command and its message.  Any
        command but ``-a`` may change something: it drops the cached listing."""
        argv = [self.ifconfig, *args]
        cmd = " ".join(argv)
        if list(args) != ["-a"]:
            self._cached = None
        try:
            r = self.runner(argv)
        except subprocess.TimeoutExpired as exc:
            raise AddressError(f"{what}: {cmd} did not finish within {exc.timeout:g}s",
                               errno.ETIMEDOUT) from exc
        except FileNotFoundError as exc:
            raise AddressError(f"{what}: {self.ifconfig} not found (is ifconfig installed "
                               f"and on PATH?)", errno.ENOENT) from exc
        except PermissionError as exc:
            raise AddressError(f"{what}: cannot run {self.ifconfig}: {exc}",
                               errno.EACCES) from exc
        if r.returncode != 0:
            msg = (r.stderr or "").strip() or (r.stdout or "").strip() or "no message"
            code = _errno_of(msg)
            hint = "; changing addresses needs root" if code == errno.EPERM else ""
            raise AddressError(f"{what}: {cmd} failed (exit {r.returncode}): {msg}{hint}",
                               code)
        return r.stdout or ""

    def _listing(self) -> Listing:
        """``ifconfig -a``, parsed (within an operation: once, until a change)."""
        if self._cached is not None:
            return self._cached
        text = self._run(["-a"], "cannot list addresses")
        try:
            listing = parse_ifconfig(text, self.dialect, _nametoindex)
        except ValueError as exc:
            raise AddressError(f"cannot list addresses: {exc}") from exc
        if self._depth:
            self._cached = listing
        return listing

    # -- primitives --------------------------------------------------------------

    def addresses(self, family: int | None = None, address: str | None = None
                  ) -> list[AddressInfo]:
        version = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family or 0)
        return [a for a in self._listing().addresses
                if (version is None or ipaddress.ip_address(a.address).version == version)
                and (address is None or a.address == address)]

    def interfaces(self) -> dict[int, str]:
        """index -> name of every interface in ``ifconfig -a`` (see
        :func:`parse_ifconfig` for the indexes)."""
        return dict(self._listing().interfaces)

    def ifindex(self, ifname: str) -> int | None:
        for idx, name in self.interfaces().items():
            if name == ifname:
                return idx
        return None

    def add_command(self, p: IpaddrParams) -> list[str]:
        """The ifconfig arguments that add p's address."""
        if self.dialect == "sunos":
            fam = ["inet6"] if p.version == 6 else []
            return [p.interface, *fam, "addif", p.cidr, "up"]
        if p.version == 6:
            return [p.interface, "inet6", p.address, "prefixlen", str(p.prefix), "alias"]
        mask = ipaddress.IPv4Network((0, p.prefix)).netmask
        return [p.interface, "inet", p.address, "netmask", f"0x{int(mask):08x}", "alias"]

    def remove_command(self, p: IpaddrParams) -> list[str]:
        """The ifconfig arguments that remove p's address."""
        if self.dialect == "sunos":
            fam = ["inet6"] if p.version == 6 else []
            return [p.interface, *fam, "removeif", p.address]
        return [p.interface, "inet6" if p.version == 6 else "inet", p.address, "-alias"]

    def _del_hint(self, a: AddressInfo) -> str:
        v6 = ipaddress.ip_address(a.address).version == 6
        if self.dialect == "sunos":
            return f"ifconfig {a.interface}{' inet6' if v6 else ''} removeif {a.address}"
        return f"ifconfig {a.interface} {'inet6' if v6 else 'inet'} {a.address} -alias"

    def _put(self, p: IpaddrParams, index: int) -> None:
        # Already there with this prefix: nothing to update (no lifetimes), and
        # Solaris's addif would make a second logical interface with it.
        if self.info(p) is not None:
            return
        self._run(self.add_command(p), f"cannot add {p.cidr} to {p.interface}")

    def _refresh(self, p: IpaddrParams, info: AddressInfo) -> None:
        """No lifetimes here: renew only checked that the address is there."""

    def _delete(self, p: IpaddrParams, index: int) -> bool:
        if self.info(p) is None:  # not there with this prefix: leave other prefixes be
            return False
        try:
            self._run(self.remove_command(p), f"cannot remove {p.cidr} from {p.interface}")
        except AddressError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV) and self.info(p) is None:
                return False  # gone meanwhile (or with its interface)
            raise
        return True
