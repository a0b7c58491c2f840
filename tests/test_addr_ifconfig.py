"""The address layer off Linux: heart.addr_ifconfig.IfconfigAddresses (BSD and
Solaris / illumos ifconfig) and the platform choice in heart.ipaddr.

Parsing is checked on ``ifconfig -a`` samples (tests/data/ifconfig), the
commands and the error mapping with a recording runner, and the whole thing
for real with a fake ifconfig (tests/shim/ifconfig/ifconfig, which applies
the commands with iproute2) in a network namespace (root; documentation
addresses only).
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import netns
import pytest

from heart.addr_ifconfig import IfconfigAddresses, parse_ifconfig
from heart.config import ResourceConfig
from heart.ipaddr import (
    IFA_F_DADFAILED,
    IFA_F_TENTATIVE,
    AddressError,
    AddressInfo,
    AddressManager,
    IpaddrAgent,
    NetlinkAddresses,
    address_backend,
    make_params,
    parse_params,
    validate_params,
)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "ifconfig"
SHIM = HERE / "shim" / "ifconfig"


def A(interface, index, address, prefix, flags=0, label=None):
    return AddressInfo(interface=interface, index=index, address=address, prefix=prefix,
                       flags=flags, label=label, valid_lft=None, preferred_lft=None)


# --------------------------------------------------------------------------- #
# Parsing ifconfig -a
# --------------------------------------------------------------------------- #


FREEBSD = [
    A("em0", 0, "192.0.2.5", 24),
    A("em0", 0, "192.0.2.10", 26),
    A("em0", 0, "fe80::5a9c:fcff:fe00:1234", 64),
    A("em0", 0, "2001:db8::5", 64),
    A("em0", 0, "2001:db8::10", 80, IFA_F_TENTATIVE),
    A("em1", 0, "198.51.100.7", 32),   # em1 is not UP: on the BSDs its addresses count
    A("em1", 0, "2001:db8:1::7", 64, IFA_F_DADFAILED),
    A("lo0", 0, "::1", 128),
    A("lo0", 0, "fe80::1", 64),
    A("lo0", 0, "127.0.0.1", 8),
]


def _indexed(addrs, idx):
    return [A(a.interface, idx.get(a.interface, 0), a.address, a.prefix, a.flags, a.label)
            for a in addrs]


@pytest.mark.parametrize("sample, dialect, resolver, interfaces, addresses", [
    # FreeBSD prints no index: without a resolver the addresses get 0 and the
    # interfaces made-up negative indexes
    ("freebsd.txt", "bsd", None, {-1: "em0", -2: "em1", -3: "lo0"}, FREEBSD),
    # ... with one, the resolver's (lo0: unknown to it)
    ("freebsd.txt", "bsd", {"em0": 1, "em1": 2}.get, {1: "em0", 2: "em1", -1: "lo0"},
     _indexed(FREEBSD, {"em0": 1, "em1": 2})),
    # OpenBSD's "index N" lines win over the resolver
    ("openbsd.txt", "bsd", lambda n: 99, {5: "lo0", 1: "em0", 2: "enc0", 6: "pflog0"}, [
        A("lo0", 5, "::1", 128),
        A("lo0", 5, "fe80::1", 64),
        A("lo0", 5, "127.0.0.1", 8),
        A("em0", 1, "192.0.2.5", 24),
        A("em0", 1, "192.0.2.10", 24),
        A("em0", 1, "fe80::21b:21ff:feaa:bbcc", 64),
        A("em0", 1, "2001:db8::10", 64),
    ]),
    ("macos.txt", "bsd", None, {-1: "lo0", -2: "gif0", -3: "stf0", -4: "en0"}, [
        A("lo0", 0, "127.0.0.1", 8),
        A("lo0", 0, "::1", 128),
        A("lo0", 0, "fe80::1", 64),
        A("en0", 0, "fe80::1c8a:5b2f:9d3e:4a71", 64),
        A("en0", 0, "192.0.2.5", 24),
        A("en0", 0, "2001:db8::1c8a:5b2f:9d3e:4a71", 64),
        A("en0", 0, "2001:db8::10", 64),
        A("en0", 0, "192.0.2.10", 24),
    ]),
    # logical interfaces: the address on the physical one, labelled
    ("illumos.txt", "sunos", lambda n: 99, {1: "lo0", 2: "e1000g0", 3: "net1"}, [
        A("lo0", 1, "127.0.0.1", 8),
        A("e1000g0", 2, "192.0.2.5", 24),
        A("e1000g0", 2, "192.0.2.10", 26, label="e1000g0:1"),
        # e1000g0:2 (0.0.0.0, down) is an unconfigured logical interface: left out
        A("net1", 3, "198.51.100.16", 24),
        A("net1", 3, "198.51.100.17", 24, IFA_F_DADFAILED, label="net1:1"),
        A("lo0", 1, "::1", 128),
        A("e1000g0", 2, "fe80::a00:27ff:fe75:c95d", 10),
        A("e1000g0", 2, "2001:db8::10", 64, label="e1000g0:1"),
    ]),
])
def test_parse(sample, dialect, resolver, interfaces, addresses):
    got = parse_ifconfig((DATA / sample).read_text(), dialect, resolver)
    assert got.addresses == addresses
    if interfaces is not None:
        assert got.interfaces == interfaces
        assert list(got.interfaces.values()) == list(interfaces.values())  # listed order
    assert tuple(got) == (got.interfaces, got.addresses)


def test_parse_sunos_logical_interface_not_up_is_not_present():
    """Solaris: a logical interface without UP holds an address that is not in
    use, so it is left out (the interface itself is still listed)."""
    text = ("net0: flags=1000843<UP,BROADCAST,RUNNING,MULTICAST,IPv4> mtu 1500 index 2\n"
            "\tinet 192.0.2.5 netmask ffffff00 broadcast 192.0.2.255\n"
            "net0:1: flags=1000842<BROADCAST,RUNNING,MULTICAST,IPv4> mtu 1500 index 2\n"
            "\tinet 192.0.2.10 netmask ffffff00 broadcast 192.0.2.255\n"
            "net0:2: flags=1000843<UP,BROADCAST,RUNNING,MULTICAST,IPv4> mtu 1500 index 2\n"
            "\tinet 192.0.2.11 netmask ffffff00 broadcast 192.0.2.255\n"
            "net0:1: flags=2000840<RUNNING,MULTICAST,IPv6> mtu 1500 index 2\n"
            "\tinet6 2001:db8::10/64\n")
    got = parse_ifconfig(text, "sunos")
    assert got.interfaces == {2: "net0"}
    assert got.addresses == [A("net0", 2, "192.0.2.5", 24),
                             A("net0", 2, "192.0.2.11", 24, label="net0:2")]
    # the same down interface in the BSD dialect: the address counts there
    bsd = text.replace("net0:1:", "net1:").replace("net0:2:", "net2:")
    assert ("192.0.2.10", 24) in {(a.address, a.prefix)
                                  for a in parse_ifconfig(bsd, "bsd").addresses}
    # through the manager: not present, and add brings up a logical interface
    m, rec = manager("sunos", text)
    p = params("net0", "192.0.2.10/24", "sunos5")
    assert not m.present(p) and m.check(p) is None
    m.add(p)
    assert rec.calls == [["net0", "addif", "192.0.2.10/24", "up"]]
    assert m.present(p)


def test_parse_other_forms_and_errors():
    text = ("vtnet0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> "
            "metric 0 mtu 1500\n"
            "\tinet 192.0.2.10/26 broadcast 192.0.2.63\n"       # FreeBSD -f inet:cidr
            "\tinet 192.0.2.11 netmask 255.255.255.0\n"         # dotted mask
            "\tinet6 2001:db8::10/64\n")
    assert parse_ifconfig(text, "bsd").addresses == [A("vtnet0", 0, "192.0.2.10", 26),
                                                     A("vtnet0", 0, "192.0.2.11", 24),
                                                     A("vtnet0", 0, "2001:db8::10", 64)]
    with pytest.raises(ValueError, match="not contiguous"):
        parse_ifconfig("em0: flags=8843<UP> mtu 1500\n\tinet 192.0.2.1 netmask 0xff00ff00\n",
                       "bsd")
    for mask in ("0x000000ff", "0.0.0.255", "255.0.255.0"):  # a host mask is no netmask
        with pytest.raises(ValueError, match="not contiguous"):
            parse_ifconfig(f"em0: flags=8843<UP> mtu 1500\n\tinet 192.0.2.1 netmask {mask}\n",
                           "bsd")
    with pytest.raises(ValueError, match="out of range"):
        parse_ifconfig("em0: flags=8843<UP> mtu 1500\n\tinet 192.0.2.1 netmask 0x1ffffff00\n",
                       "bsd")
    for mask, prefix in (("0x00000000", 0), ("ffffffff", 32), ("255.255.255.128", 25)):
        got = parse_ifconfig(f"em0: flags=8843<UP> mtu 1500\n\tinet 192.0.2.1 netmask {mask}\n",
                             "bsd")
        assert got.addresses == [A("em0", 0, "192.0.2.1", prefix)]
    with pytest.raises(ValueError, match="cannot read this line"):
        parse_ifconfig("em0: flags=8843<UP> mtu 1500\n\tinet 192.0.2.300 netmask 0xffffff00\n",
                       "bsd")
    with pytest.raises(ValueError, match="unknown ifconfig dialect"):
        parse_ifconfig("", "hpux")


# --------------------------------------------------------------------------- #
# Commands and errors, with a recording runner
# --------------------------------------------------------------------------- #

BSD_LISTING = """\
em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.0.2.5 netmask 0xffffff00 broadcast 192.0.2.255
\tinet6 2001:db8::5 prefixlen 64
em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 198.51.100.5 netmask 0xffffff00 broadcast 198.51.100.255
lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384
\tinet 127.0.0.1 netmask 0xff000000
"""

SUNOS_LISTING = """\
lo0: flags=2001000849<UP,LOOPBACK,RUNNING,MULTICAST,IPv4,VIRTUAL> mtu 8232 index 1
\tinet 127.0.0.1 netmask ff000000
net0: flags=1000843<UP,BROADCAST,RUNNING,MULTICAST,IPv4> mtu 1500 index 2
\tinet 192.0.2.5 netmask ffffff00 broadcast 192.0.2.255
net1: flags=1000843<UP,BROADCAST,RUNNING,MULTICAST,IPv4> mtu 1500 index 3
\tinet 198.51.100.5 netmask ffffff00 broadcast 198.51.100.255
net0: flags=2000841<UP,RUNNING,MULTICAST,IPv6> mtu 1500 index 2
\tinet6 fe80::a00:27ff:fe75:c95d/10
"""


class Recorder:
    """A runner: answers ``-a`` with a listing that follows what was added and
    removed (one line per address, appended under its interface), records
    every other command in ``calls`` (and every command, ``-a`` included, in
    ``log``), and fails those listed in ``fail`` (argv tuple -> (rc, stderr))
    or raises ``raise_``."""

    def __init__(self, listing, dialect):
        self.listing = listing
        self.dialect = dialect
        self.calls: list[list[str]] = []
        self.log: list[list[str]] = []
        self.fail: dict[tuple, tuple[int, str]] = {}
        self.raise_: BaseException | None = None

    def __call__(self, argv):
        argv = list(argv)
        assert argv[0] == "/sbin/ifconfig"
        args = argv[1:]
        self.log.append(args)
        if args == ["-a"]:
            return SimpleNamespace(returncode=0, stdout=self.listing, stderr="")
        self.calls.append(args)
        if self.raise_ is not None:
            raise self.raise_
        if tuple(args) in self.fail:
            rc, err = self.fail[tuple(args)]
            return SimpleNamespace(returncode=rc, stdout="", stderr=err)
        self._apply(args)
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    def _apply(self, args):
        ifname = args[0]
        v6 = "inet6" in args
        if "addif" in args or "alias" in args:
            if self.dialect == "sunos":
                cidr = args[args.index("addif") + 1]
                line = f"\tinet6 {cidr}" if v6 else \
                    f"\tinet {cidr.split('/')[0]} netmask ffffff00"
                n = len(re.findall(rf"^{ifname}:\d+:", self.listing, re.M)) + 1
                self.listing += (f"{ifname}:{n}: flags=1000843<UP,IPv{6 if v6 else 4}> "
                                 f"mtu 1500 index 9\n{line}\n")
                return
            line = f"\tinet6 {args[2]} prefixlen {args[4]}" if v6 else \
                f"\tinet {args[2]} netmask {args[4]}"
            head = next(x for x in self.listing.splitlines() if x.startswith(f"{ifname}: "))
            self.listing = self.listing.replace(head + "\n", f"{head}\n{line}\n", 1)
        else:
            addr = args[-1] if self.dialect == "sunos" else args[2]
            self.listing = "\n".join(x for x in self.listing.splitlines()
                                     if not x.split()[1:2] == [addr]
                                     and not x.split()[1:2] == [addr + "/64"]) + "\n"


def manager(dialect, listing=None):
    rec = Recorder(listing or (SUNOS_LISTING if dialect == "sunos" else BSD_LISTING), dialect)
    return IfconfigAddresses(dialect, runner=rec, ifconfig="/sbin/ifconfig"), rec


def params(ifname, cidr, platform="freebsd14"):
    return make_params(ifname, cidr, platform=platform)


@pytest.mark.parametrize("dialect, ifname, cidr, add, remove", [
    ("bsd", "em0", "192.0.2.10/24", ["em0", "inet", "192.0.2.10", "netmask", "0xffffff00", "alias"],
     ["em0", "inet", "192.0.2.10", "-alias"]),
    ("bsd", "em0", "2001:db8::10/64", ["em0", "inet6", "2001:db8::10", "prefixlen", "64", "alias"],
     ["em0", "inet6", "2001:db8::10", "-alias"]),
    ("sunos", "net0", "192.0.2.10/24", ["net0", "addif", "192.0.2.10/24", "up"],
     ["net0", "removeif", "192.0.2.10"]),
    ("sunos", "net0", "2001:db8::10/64", ["net0", "inet6", "addif", "2001:db8::10/64", "up"],
     ["net0", "inet6", "removeif", "2001:db8::10"]),
])
def test_commands(dialect, ifname, cidr, add, remove):
    m, rec = manager(dialect)
    p = params(ifname, cidr, "sunos5" if dialect == "sunos" else "freebsd14")
    assert m.check(p) is None and not m.present(p)
    m.add(p)
    assert rec.calls == [add]
    info = m.info(p)
    assert info is not None and info.interface == ifname and info.valid_lft is None
    if dialect == "sunos":
        assert info.label == f"{ifname}:1"
    m.add(p)          # already there: nothing to do (addif would make a second one)
    m.renew(p)        # no lifetimes: only checks that it is there
    assert rec.calls == [add]
    assert m.remove(p) is True
    assert rec.calls == [add, remove]
    assert not m.present(p)
    assert m.remove(p) is False  # not there: no command
    assert rec.calls == [add, remove]
    with pytest.raises(AddressError) as ei:
        m.renew(p)
    assert ei.value.errno == errno.EADDRNOTAVAIL and "no longer there" in str(ei.value)


@pytest.mark.parametrize("dialect", ["bsd", "sunos"])
def test_one_listing_per_operation(dialect):
    """ifconfig -a runs once per public operation; a change drops the parse,
    so the next operation (and a re-check after a change) lists afresh."""
    m, rec = manager(dialect)
    ifname = "em0" if dialect == "bsd" else "net0"
    p = params(ifname, "192.0.2.10/24")
    add, remove = m.add_command(p), m.remove_command(p)
    m.add(p)
    assert rec.log == [["-a"], add]
    rec.log.clear()
    m.add(p)          # already there: one listing, no command
    assert rec.log == [["-a"]]
    for op in (m.check, m.present, m.renew):
        rec.log.clear()
        op(p)
        assert rec.log == [["-a"]], op
    rec.log.clear()
    assert m.remove(p) is True
    assert rec.log == [["-a"], remove]
    rec.log.clear()
    assert m.remove(p) is False
    assert rec.log == [["-a"]]
    # outside an operation every query lists
    rec.log.clear()
    m.info(p), m.ifindex(ifname), m.interfaces()
    assert rec.log == [["-a"]] * 3
    # a failed removal re-lists after the command (the cache is gone)
    m.add(p)
    rec.log.clear()
    rec.fail[tuple(remove)] = (1, "ifconfig: Can't assign requested address")
    with pytest.raises(AddressError) as ei:
        m.remove(p)      # still listed: an error
    assert ei.value.errno == errno.EADDRNOTAVAIL
    assert rec.log == [["-a"], remove, ["-a"]]
    # and a listing that fails is not kept
    rec.log.clear()
    m._run = lambda args, what: (_ for _ in ()).throw(AddressError("boom"))
    with pytest.raises(AddressError):
        m.present(p)
    del m._run
    assert m.present(p) and m._cached is None and rec.log == [["-a"]]


@pytest.mark.parametrize("dialect, hint", [
    ("bsd", "ifconfig em1 inet 198.51.100.5 -alias"),
    ("sunos", "ifconfig net1 removeif 198.51.100.5"),
])
def test_checks_refuse_before_any_command(dialect, hint):
    m, rec = manager(dialect)
    first, other = ("em0", "em1") if dialect == "bsd" else ("net0", "net1")
    with pytest.raises(AddressError) as ei:
        m.add(params(first, "198.51.100.5/24"))
    assert ei.value.errno == errno.EEXIST
    assert f"198.51.100.5 is already on another interface, {other} (/24)" in str(ei.value)
    assert hint in str(ei.value)
    problem = m.check(params(first, "192.0.2.5/26"))
    assert f"192.0.2.5 is already on {first} with prefix /24, not /26" in problem
    with pytest.raises(AddressError) as ei:
        m.add(params("eth9", "192.0.2.10/24"))
    assert ei.value.errno == errno.ENODEV
    known = ", ".join(sorted([first, other, "lo0"]))
    assert str(ei.value) == (f"cannot add 192.0.2.10/24 to eth9: interface 'eth9' does not "
                             f"exist (interfaces here: {known})")
    assert m.remove(params("eth9", "192.0.2.10/24")) is False
    assert rec.calls == []


def test_interfaces_and_index():
    m, _ = manager("sunos")
    assert m.interfaces() == {1: "lo0", 2: "net0", 3: "net1"}
    assert m.ifindex("net1") == 3 and m.ifindex("net7") is None


@pytest.mark.parametrize("dialect, stderr, code", [
    ("bsd", "ifconfig: ioctl (SIOCAIFADDR): Operation not permitted", errno.EPERM),
    ("bsd", "ifconfig: interface em0 does not exist", errno.ENODEV),
    ("bsd", "ifconfig: ioctl (SIOCAIFADDR): File exists", errno.EEXIST),
    ("bsd", "ifconfig: something else went wrong", None),
    ("sunos", "ifconfig: addif: SIOCLIFADDIF: net0: Not owner", errno.EPERM),
    ("sunos", "ifconfig: net0: insufficient privileges", errno.EPERM),
    ("sunos", "ifconfig: net0: no such interface", errno.ENODEV),
])
def test_add_errors(dialect, stderr, code):
    m, rec = manager(dialect)
    ifname = "em0" if dialect == "bsd" else "net0"
    p = params(ifname, "192.0.2.10/24")
    rec.fail[tuple(m.add_command(p))] = (1, stderr + "\n")
    with pytest.raises(AddressError) as ei:
        m.add(p)
    assert ei.value.errno == code
    text = str(ei.value)
    assert text.startswith(f"cannot add 192.0.2.10/24 to {ifname}: /sbin/ifconfig "
                           f"{' '.join(m.add_command(p))} failed (exit 1): {stderr}")
    assert text.endswith("; changing addresses needs root") == (code == errno.EPERM)


def test_remove_errors():
    m, rec = manager("bsd", BSD_LISTING.replace(
        "\tinet6 2001:db8::5", "\tinet 192.0.2.10 netmask 0xffffff00\n\tinet6 2001:db8::5"))
    p = params("em0", "192.0.2.10/24")
    rec.fail[tuple(m.remove_command(p))] = (1, "ifconfig: ioctl (SIOCDIFADDR): Permission "
                                               "denied")
    with pytest.raises(AddressError) as ei:
        m.remove(p)
    assert ei.value.errno == errno.EPERM
    assert "cannot remove 192.0.2.10/24 from em0: /sbin/ifconfig em0 inet 192.0.2.10 -alias " \
           "failed (exit 1): ifconfig: ioctl (SIOCDIFADDR): Permission denied" in str(ei.value)
    # "not there" from ifconfig while the listing still shows it: an error ...
    rec.fail[tuple(m.remove_command(p))] = (1, "ifconfig: ioctl (SIOCDIFADDR): Can't assign "
                                               "requested address")
    with pytest.raises(AddressError) as ei:
        m.remove(p)
    assert ei.value.errno == errno.EADDRNOTAVAIL


def test_runner_failures():
    m, rec = manager("bsd")
    p = params("em0", "192.0.2.10/24")
    rec.raise_ = subprocess.TimeoutExpired(["ifconfig"], 10.0)
    with pytest.raises(AddressError) as ei:
        m.add(p)
    assert ei.value.errno == errno.ETIMEDOUT and "did not finish within 10s" in str(ei.value)
    rec.raise_ = FileNotFoundError(2, "No such file")
    with pytest.raises(AddressError) as ei:
        m.add(p)
    assert ei.value.errno == errno.ENOENT and "/sbin/ifconfig not found" in str(ei.value)
    bad = IfconfigAddresses("bsd", ifconfig="/sbin/ifconfig", runner=lambda argv:
                            SimpleNamespace(returncode=1, stdout="", stderr="boom"))
    with pytest.raises(AddressError, match=r"cannot list addresses: /sbin/ifconfig -a failed "
                                           r"\(exit 1\): boom"):
        bad.addresses()


def test_default_runner_runs_a_real_program(tmp_path):
    """The default runner: a real subprocess, with LC_ALL=C."""
    prog = tmp_path / "ifconfig"
    prog.write_text("#!/bin/sh\nif [ \"$1\" = -a ]; then printf 'em0: flags=8843<UP> mtu 1500"
                    "\\n\\tinet 192.0.2.5 netmask 0xffffff00 LC_ALL=%s\\n' \"$LC_ALL\"; "
                    "exit 0; fi\n"
                    "echo \"ifconfig: $1: Operation not permitted\" >&2; exit 1\n")
    prog.chmod(0o755)
    m = IfconfigAddresses("bsd", ifconfig=str(prog))
    assert m.addresses() == [A("em0", 0, "192.0.2.5", 24)]
    with pytest.raises(AddressError) as ei:
        m.add(params("em0", "192.0.2.10/24"))
    assert ei.value.errno == errno.EPERM and "em0: Operation not permitted" in str(ei.value)
    assert "LC_ALL" not in str(ei.value)
    seen = subprocess.run([str(prog), "-a"], capture_output=True, text=True,
                          env={"LC_ALL": "fr_FR.UTF-8"}).stdout
    assert "LC_ALL=fr_FR.UTF-8" in seen  # the check below is not vacuous
    from heart.addr_ifconfig import run_command
    assert "LC_ALL=C" in run_command([str(prog), "-a"]).stdout


# --------------------------------------------------------------------------- #
# The platform: which manager, what the params mean
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("platform, backend", [
    ("linux", "netlink"), ("sunos5", "sunos"), ("freebsd14", "bsd"), ("openbsd7", "bsd"),
    ("netbsd10", "bsd"), ("darwin", "bsd"), ("dragonfly6", "bsd"),
    ("win32", None), ("cygwin", None), ("aix7", None),
])
def test_backend_per_platform(platform, backend, monkeypatch):
    """AddressManager(), the one factory, picks by sys.platform."""
    assert address_backend(platform) == backend
    monkeypatch.setattr(sys, "platform", platform)
    assert address_backend() == backend
    if backend is None:
        with pytest.raises(AddressError) as ei:
            AddressManager()
        assert ei.value.errno == errno.ENOSYS
        assert f"cannot manage addresses on platform {platform!r}" in str(ei.value)
        return
    m = AddressManager()
    try:
        assert m.backend == backend and isinstance(m, AddressManager)
        if backend == "netlink":
            assert type(m) is NetlinkAddresses
        else:
            assert type(m) is IfconfigAddresses and m.dialect == backend
            assert "backend" not in vars(m)  # one attribute: backend is the dialect
    finally:
        m.close()
    assert not hasattr(m, "lifetimes")
    # kwargs go to the platform's class
    if backend != "netlink":
        rec = Recorder(BSD_LISTING, backend)
        m = AddressManager(runner=rec, ifconfig="/sbin/ifconfig")
        assert type(m) is IfconfigAddresses and m.runner is rec and m.dialect == backend


def test_address_manager_here_is_netlink():
    with AddressManager() as m:
        assert type(m) is NetlinkAddresses
        assert "lo" in m.interfaces().values()


@pytest.mark.parametrize("platform", ["freebsd14", "sunos5", "darwin"])
def test_lease_and_label_are_linux_only(platform):
    raw = {"address": "192.0.2.10/24", "interface": "em0"}
    p = parse_params("vip", raw, 500_000, platform=platform)
    assert p.lease_us is None and p.renew_interval_s is None  # the default does not apply
    for off in ("off", "0", "permanent"):
        assert validate_params("vip", dict(raw, lease=off), 500_000, platform) == []
    found = validate_params("vip", dict(raw, lease="3s"), 500_000, platform)
    assert [k for k, _ in found] == ["lease"]
    assert f"address lifetimes (the lease) are Linux only; on {platform}" in found[0][1]
    with pytest.raises(ValueError, match=r"resource vip: params.lease: '3s'"):
        parse_params("vip", dict(raw, lease="3s"), 500_000, platform=platform)
    found = validate_params("vip", dict(raw, label="em0:vip"), 500_000, platform)
    assert [k for k, _ in found] == ["label"] and "Linux only" in found[0][1]
    with pytest.raises(ValueError, match="lease"):
        make_params("em0", "192.0.2.10/24", lease_s=5, platform=platform)
    # Linux as before
    assert parse_params("vip", raw, 500_000, platform="linux").lease_s == 2
    assert validate_params("vip", dict(raw, lease="3s", label="em0:vip"), 500_000,
                           "linux") == []


# --------------------------------------------------------------------------- #
# For real: the fake ifconfig in a network namespace
# --------------------------------------------------------------------------- #




def kernel_addrs(ns, ifname):
    """{(address, prefix)} on ifname in ns, from ip -j (independent of heart)."""
    data = json.loads(netns.run("ip", "-j", "addr", "show", "dev", ifname, ns=ns))
    return {(a["local"], a["prefixlen"]) for a in data[0]["addr_info"]}


def netlink_info(ns, p):
    def get():
        with NetlinkAddresses() as m:
            return m.info(p)
    return netns.in_ns(ns, get)


@pytest.fixture
def lab1(netns_ok):
    with netns.Lab(n_nodes=1, n_links=2) as lab:
        yield lab


@pytest.fixture(params=["bsd", "sunos"])
def fake(request, monkeypatch):
    monkeypatch.setenv("PATH", f"{SHIM}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HEART_FAKE_IFCONFIG", request.param)
    return request.param


VIP = {4: "192.0.2.40/26", 6: "2001:db8::40/80"}


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_fake_ifconfig_add_detect_remove(lab1, fake, version):
    ns = lab1.nodes[0]
    platform = "sunos5" if fake == "sunos" else "freebsd14"
    p = make_params("eth0", VIP[version], platform=platform)
    before = kernel_addrs(ns, "eth0")

    def go():
        m = IfconfigAddresses(fake)
        assert m.ifconfig == str(SHIM / "ifconfig")  # found on PATH
        assert m.ifindex("eth0") == socket.if_nametoindex("eth0")
        assert m.check(p) is None and not m.present(p)
        m.add(p)
        info = m.info(p)
        m.add(p)  # again: no second copy
        m.renew(p)
        # the same address with another prefix, and on another interface
        other = make_params("eth0", f"{p.address}/{p.prefix - 2}", platform=platform)
        elsewhere = make_params("eth1", VIP[version], platform=platform)
        problems = (m.check(other), m.check(elsewhere))
        with pytest.raises(AddressError) as ei:
            m.add(elsewhere)
        nodev = m.check(make_params("eth9", VIP[version], platform=platform))
        return m, info, problems, ei.value, nodev

    m, info, problems, err, nodev = netns.in_ns(ns, go)
    assert info is not None and (info.interface, info.address, info.prefix) == \
        ("eth0", p.address, p.prefix)
    assert info.index == netns.ifindex(ns, "eth0")
    if fake == "sunos" and version == 4:
        assert info.label == "eth0:1"  # a logical interface
    assert kernel_addrs(ns, "eth0") == before | {(p.address, p.prefix)}
    n = netlink_info(ns, p)
    assert n is not None and n.valid_lft is None  # permanent: no lifetimes here
    assert f"is already on eth0 with prefix /{p.prefix}, not /{p.prefix - 2}" in problems[0]
    assert "is already on another interface, eth0" in problems[1]
    assert err.errno == errno.EEXIST
    assert "interface 'eth9' does not exist (interfaces here: eth0, eth1, lo)" in nodev
    assert (p.address, p.prefix) not in kernel_addrs(ns, "eth1")

    assert netns.in_ns(ns, lambda: m.remove(p)) is True
    assert kernel_addrs(ns, "eth0") == before
    assert netlink_info(ns, p) is None
    assert netns.in_ns(ns, lambda: m.remove(p)) is False
    with pytest.raises(AddressError, match="no longer there"):
        netns.in_ns(ns, lambda: m.renew(p))


def test_fake_ifconfig_errors_are_mapped(lab1, fake):
    """The real command's failure, through the default runner: an unknown
    interface (past the check) is ENODEV with ifconfig's message."""
    ns = lab1.nodes[0]
    p = make_params("eth9", "192.0.2.40/26", platform="freebsd14")
    m = IfconfigAddresses(fake)
    with pytest.raises(AddressError) as ei:
        netns.in_ns(ns, lambda: m._put(p, 99))
    assert ei.value.errno == errno.ENODEV
    text = str(ei.value)
    assert text.startswith(f"cannot add 192.0.2.40/26 to eth9: {SHIM / 'ifconfig'} ")
    assert ("eth9: no such interface" if fake == "sunos"
            else "interface eth9 does not exist") in text


def test_agent_on_ifconfig(lab1, fake):
    """The resource agent, unchanged, over IfconfigAddresses: start, monitor,
    stop; the kernel agrees at each step."""
    ns = lab1.nodes[0]
    platform = "sunos5" if fake == "sunos" else "freebsd14"
    raw = {"address": VIP[4], "interface": "eth0", "announce_count": "0"}
    res = ResourceConfig(name="vip", type="ipaddr", params=raw, timeout_us=5_000_000)
    agent = IpaddrAgent(res, params=parse_params("vip", raw, 500_000, platform=platform))
    agent.manager_factory = lambda: IfconfigAddresses(fake)

    async def main():
        try:
            r = await agent.start()
            up = kernel_addrs(ns, "eth0")
            m = await agent.monitor()
            s = await agent.stop()
            m2 = await agent.monitor()
            return r, up, m, s, m2
        finally:
            await agent.close()

    r, up, m, s, m2 = netns.in_ns(ns, lambda: asyncio.run(main()))
    assert r.ok and "added 192.0.2.40/26 to eth0; permanent" in r.output, r
    assert ("192.0.2.40", 26) in up
    assert (m.ok, m.status) == (True, "running")
    assert (s.ok, s.output) == (True, "removed 192.0.2.40/26 from eth0")
    assert (m2.ok, m2.status) == (False, "stopped")
    assert ("192.0.2.40", 26) not in kernel_addrs(ns, "eth0")
