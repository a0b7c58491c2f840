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
from collections.abc import Callable, Sequence
from typing import Any

from heart.ipaddr import (
    IFA_F_DADFAILED,
    IFA_F_TENTATIVE,
    AddressError,
    AddressInfo,
    AddressManager,
    IpaddrParams,
    address_backend,
)

__all__ = ["DIALECTS", "IfconfigAddresses", "find_ifconfig", "parse_ifconfig", "run_command"]

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
    """The prefix length of a netmask: 0xffffff00, ffffff00 or 255.255.255.0."""
    text = mask.lower()
    if "." in text:
        value = int(ipaddress.IPv4Address(text))
    else:
        value = int(text[2:] if text.startswith("0x") else text, 16)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"netmask {mask!r} is out of range")
    prefix = bin(value).count("1")
    if value != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise ValueError(f"netmask {mask!r} is not contiguous")
    return prefix


def _split_address(text: str) -> tuple[str, int | None]:
    """"2001:db8::10/64" -> ("2001:db8::10", 64); a %scope suffix is dropped."""
    host, _, plen = text.partition("/")
    host = host.split("%", 1)[0]
    return str(ipaddress.ip_address(host)), (int(plen) if plen else None)


def parse_ifconfig(text: str, dialect: str,
                   nametoindex: Callable[[str], int | None] | None = None
                   ) -> list[AddressInfo]:
    """The addresses in ``ifconfig -a`` output, in order.

    BSD: "em0: flags=8843<UP,...> mtu 1500" headers, then indented lines such
    as "inet 192.0.2.10 netmask 0xffffff00 broadcast 192.0.2.255" and "inet6
    fe80::1%em0 prefixlen 64 scopeid 0x1" (the address may also carry
    "/prefix"; "tentative" and "duplicated" become IFA_F_TENTATIVE and
    IFA_F_DADFAILED).  sunos: one header per logical interface ("net0:1:
    flags=...<UP,...,IPv4> mtu 1500 index 2"), then "inet 192.0.2.10 netmask
    ffffff00 broadcast ..." or "inet6 2001:db8::10/64"; the address belongs
    to the physical interface (net0) and its label is the logical one
    (net0:1); DUPLICATE in the flags becomes IFA_F_DADFAILED.

    The index is the one the output gives (OpenBSD "index N" lines, Solaris
    headers), else ``nametoindex(name)``, else 0.  Unspecified addresses
    (unconfigured Solaris logical interfaces) are left out.  ValueError for an
    address line that cannot be read."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown ifconfig dialect {dialect!r}; expected one of {DIALECTS}")
    out: list[AddressInfo] = []
    name = label = None
    header_flags: set[str] = set()
    index: int | None = None
    pending: list[AddressInfo] = []  # this interface's, until its index is known

    def flush() -> None:
        idx = index
        if idx is None and name is not None and nametoindex is not None:
            idx = nametoindex(name)
        for a in pending:
            a.index = idx or 0
        out.extend(pending)
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
    return out


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
    ``ifconfig`` is the program (default :func:`find_ifconfig`)."""

    lifetimes = False

    def __init__(self, dialect: str | None = None, *, runner: Runner | None = None,
                 ifconfig: str | None = None) -> None:
        if dialect is None:
            dialect = address_backend()
        if dialect not in DIALECTS:
            raise AddressError(f"no ifconfig dialect for this platform ({dialect!r}); "
                               f"expected one of {', '.join(DIALECTS)}", errno.ENOSYS)
        self.dialect = dialect
        self.backend = dialect
        self.runner: Runner = runner or run_command
        self.ifconfig = ifconfig or find_ifconfig() or "ifconfig"

    # -- running ifconfig ------------------------------------------------------

    def _run(self, args: Sequence[str], what: str) -> str:
        """stdout of ``ifconfig args``; AddressError naming ``what`` (such as
        "cannot add 192.0.2.10/24 to em0"), the command and its message."""
        argv = [self.ifconfig, *args]
        cmd = " ".join(argv)
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

    def _listing(self) -> str:
        return self._run(["-a"], "cannot list addresses")

    # -- primitives --------------------------------------------------------------

    def addresses(self, family: int | None = None, address: str | None = None
                  ) -> list[AddressInfo]:
        try:
            found = parse_ifconfig(self._listing(), self.dialect, _nametoindex)
        except ValueError as exc:
            raise AddressError(f"cannot list addresses: {exc}") from exc
        version = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family or 0)
        return [a for a in found
                if (version is None or ipaddress.ip_address(a.address).version == version)
                and (address is None or a.address == address)]

    def interfaces(self) -> dict[int, str]:
        """index -> name of every interface in ``ifconfig -a`` (indexes the
        output does not give come from if_nametoindex, else are made up as
        -1, -2, ... so that every interface is listed)."""
        names: list[str] = []
        given: dict[str, int] = {}
        text = self._listing()
        current = None
        for raw in text.splitlines():
            m = _HEADER.match(raw)
            if m and not raw[0].isspace():
                current = m["name"].split(":", 1)[0] if self.dialect == "sunos" \
                    else m["name"]
                if current not in names:
                    names.append(current)
                im = _INDEX.search(m["rest"])
                if im:
                    given[current] = int(im[1])
            elif current is not None:
                words = raw.split()
                if len(words) > 1 and words[0] == "index" and words[1].isdigit():
                    given[current] = int(words[1])
        out: dict[int, str] = {}
        spare = -1
        for n in names:
            idx = given.get(n) or _nametoindex(n)
            if idx is None or idx in out:
                idx, spare = spare, spare - 1
            out[idx] = n
        return out

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
        mask = (0xFFFFFFFF << (32 - p.prefix)) & 0xFFFFFFFF
        return [p.interface, "inet", p.address, "netmask", f"0x{mask:08x}", "alias"]

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
