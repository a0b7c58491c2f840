"""The ipaddr resource without root: params parsing and validation, and the
agent's schedule (bursts, repeat, refresh, lease renewal, stop ordering,
errors) against a fake kernel and a fake announcer.  The real kernel and the
wire are in test_ipaddr_netns.py."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
import time

import pytest

from heart.config import ResourceConfig
from heart.dispatch import ActionResult
from heart.ipaddr import (
    DEFAULT_ANNOUNCE_COUNT,
    DEFAULT_ANNOUNCE_INTERVAL_US,
    DEFAULT_ANNOUNCE_REPEAT_US,
    AddressError,
    AddressManager,
    AnnounceUnavailable,
    IpaddrAgent,
    IpaddrParams,
    add_address,
    default_lease_us,
    make_params,
    parse_params,
    validate_params,
)

DEAD = 500_000


def parse(**params):
    return parse_params("vip", {k: str(v) for k, v in params.items()}, DEAD)


def issues(deadtime_us=DEAD, **params):
    return validate_params("vip", {k: str(v) for k, v in params.items()}, deadtime_us)


def keys(found):
    return [k for k, _ in found]


# --------------------------------------------------------------------------- #
# Params
# --------------------------------------------------------------------------- #


def test_defaults_ipv4():
    p = parse(address="192.0.2.10/24", interface="eth0")
    assert p == IpaddrParams(address="192.0.2.10", prefix=24, interface="eth0", label=None,
                             lease_us=2_000_000, announce_count=DEFAULT_ANNOUNCE_COUNT,
                             announce_interval_us=DEFAULT_ANNOUNCE_INTERVAL_US,
                             announce_repeat_us=DEFAULT_ANNOUNCE_REPEAT_US,
                             refresh_interval_us=0)
    assert p.version == 4 and p.cidr == "192.0.2.10/24" and p.lease_s == 2
    assert p.renew_interval_s == pytest.approx(2 / 3)


def test_ipv6_normalised_and_prefix_param():
    p = parse(address="2001:DB8:0::0010", prefix=64, interface="eth1")
    assert (p.address, p.prefix, p.version) == ("2001:db8::10", 64, 6)


def test_numbers_are_accepted_as_well_as_strings():
    p = parse_params("vip", {"address": "192.0.2.10", "prefix": 24, "interface": "eth0",
                             "announce_count": 5}, DEAD)
    assert (p.prefix, p.announce_count) == (24, 5)


@pytest.mark.parametrize("deadtime_us, lease_s", [
    (500_000, 2), (1_000_000, 3), (100_000, 1), (1, 1), (334_000, 2), (10_000_000, 30),
])
def test_default_lease_is_three_deadtimes_rounded_up(deadtime_us, lease_s):
    assert default_lease_us(deadtime_us) == lease_s * 1_000_000
    p = parse_params("vip", {"address": "192.0.2.10/24", "interface": "eth0"}, deadtime_us)
    assert p.lease_s == lease_s


@pytest.mark.parametrize("value", ["off", "0", "0s", "none", "permanent", "OFF"])
def test_lease_off_is_permanent(value):
    p = parse(address="192.0.2.10/24", interface="eth0", lease=value)
    assert p.lease_us is None and p.lease_s is None and p.renew_interval_s is None


def test_lease_explicit():
    assert parse(address="192.0.2.10/24", interface="eth0", lease="10s").lease_s == 10
    assert parse(address="192.0.2.10/24", interface="eth0", lease="2m").lease_s == 120


@pytest.mark.parametrize("value, words", [
    ("1500ms", ["whole number of seconds", '"2s"']),
    ("2", ["no unit"]),
    ("-2s", ["negative"]),
    ("2 parsecs", ["unknown unit"]),
])
def test_lease_errors(value, words):
    found = issues(address="192.0.2.10/24", interface="eth0", lease=value)
    assert keys(found) == ["lease"]
    for w in words:
        assert w in found[0][1]


def test_address_required_and_bad():
    assert keys(issues(interface="eth0")) == ["address"]
    found = issues(address="192.0.2.300/24", interface="eth0")
    assert keys(found) == ["address"] and "not an IPv4 or IPv6 address" in found[0][1]
    found = issues(address="fe80::1%eth0/64", interface="eth0")
    assert keys(found) == ["address"]


@pytest.mark.parametrize("address, word", [
    ("224.0.0.5/24", "multicast"), ("ff02::1/64", "multicast"), ("0.0.0.0/24", "unspecified"),
    ("::/64", "unspecified"), ("127.0.0.2/8", "loopback"), ("::1/128", "loopback"),
    ("::ffff:192.0.2.10/120", "IPv4-mapped"),
])
def test_address_must_be_unicast(address, word):
    found = issues(address=address, interface="eth0")
    assert keys(found) == ["address"] and word in found[0][1]


def test_ipv4_network_and_broadcast_refused():
    found = issues(address="192.0.2.0/24", interface="eth0")
    assert keys(found) == ["address"] and "network address of 192.0.2.0/24" in found[0][1]
    found = issues(address="192.0.2.255/24", interface="eth0")
    assert keys(found) == ["address"] and "broadcast address" in found[0][1]
    assert issues(address="192.0.2.0/31", interface="eth0") == []
    assert issues(address="192.0.2.10/32", interface="eth0") == []


def test_prefix_problems():
    found = issues(address="192.0.2.10", interface="eth0")
    assert keys(found) == ["prefix"] and '"192.0.2.10/24"' in found[0][1]
    found = issues(address="192.0.2.10/24", prefix=26, interface="eth0")
    assert keys(found) == ["prefix"] and "address says /24" in found[0][1]
    assert issues(address="192.0.2.10/24", prefix=24, interface="eth0") == []
    found = issues(address="192.0.2.10/33", interface="eth0")
    assert keys(found) == ["address"] and "1 to 32" in found[0][1]
    found = issues(address="2001:db8::10", prefix=129, interface="eth0")
    assert keys(found) == ["prefix"] and "1 to 128" in found[0][1]
    found = issues(address="192.0.2.10", prefix="255.255.255.0", interface="eth0")
    assert keys(found) == ["prefix"]
    found = issues(address="192.0.2.10/x", interface="eth0")
    assert keys(found) == ["address"]


@pytest.mark.parametrize("name, word", [
    ("", "empty"), ("a" * 16, "longer than 15"), ("eth0:1", "':'"), ("a/b", "'/'"),
    ("a b", "' '"), ("..", "cannot be"),
])
def test_interface_names(name, word):
    found = issues(address="192.0.2.10/24", interface=name)
    assert keys(found) == ["interface"] and word in found[0][1]


def test_interface_required():
    assert keys(issues(address="192.0.2.10/24")) == ["interface"]


def test_label_rules():
    p = parse(address="192.0.2.10/24", interface="eth0", label="eth0:vip")
    assert p.label == "eth0:vip"
    found = issues(address="192.0.2.10/24", interface="eth0", label="vip")
    assert keys(found) == ["label"]
    assert "does not start with the interface name 'eth0'" in found[0][1]
    assert '"eth0:vip"' in found[0][1]
    found = issues(address="2001:db8::10/64", interface="eth0", label="eth0:v6")
    assert keys(found) == ["label"] and "IPv4 addresses only" in found[0][1]
    found = issues(address="192.0.2.10/24", interface="eth0", label="eth0:" + "x" * 11)
    assert keys(found) == ["label"] and "longer than 15" in found[0][1]
    found = issues(address="192.0.2.10/24", interface="eth0", label="")
    assert keys(found) == ["label"]


def test_announcement_params():
    p = parse(address="192.0.2.10/24", interface="eth0", announce_count=5,
              announce_interval="50ms", announce_repeat="off", refresh_interval="30s")
    assert (p.announce_count, p.announce_interval_us, p.announce_repeat_us,
            p.refresh_interval_us) == (5, 50_000, 0, 30_000_000)
    p = parse(address="192.0.2.10/24", interface="eth0", announce_count=0,
              announce_repeat="0", refresh_interval="0s")
    assert (p.announce_count, p.announce_repeat_us, p.refresh_interval_us) == (0, 0, 0)


@pytest.mark.parametrize("key, value, word", [
    ("announce_count", "x", "not a count"),
    ("announce_count", "-1", "not a count"),
    ("announce_count", "1001", "not a count"),
    ("announce_interval", "0s", "too short"),
    ("announce_interval", "2m", "too long"),
    ("announce_interval", "200", "no unit"),
    ("announce_repeat", "500us", "too short"),
    ("refresh_interval", "10ms", "too short"),
    ("refresh_interval", "often", "not a duration"),
])
def test_announcement_param_errors(key, value, word):
    found = issues(address="192.0.2.10/24", interface="eth0", **{key: value})
    assert keys(found) == [key] and word in found[0][1]


def test_unknown_param_did_you_mean():
    found = issues(address="192.0.2.10/24", interface="eth0", lable="eth0:1")
    assert keys(found) == ["lable"] and 'did you mean "label"' in found[0][1]
    found = issues(address="192.0.2.10/24", interface="eth0", zzz="1")
    assert keys(found) == ["zzz"] and "expected one of: address, prefix" in found[0][1]


def test_validate_collects_every_problem_parse_raises_with_all():
    params = {"address": "192.0.2.10/24", "interface": "eth0:bad", "lease": "1.5s",
              "announce_count": "many"}
    found = validate_params("vip", params, DEAD)
    assert keys(found) == ["interface", "lease", "announce_count"]
    for _, msg in found:
        assert "vip" not in msg and "params." not in msg  # the loader adds its location
    with pytest.raises(ValueError) as ei:
        parse_params("vip", params, DEAD)
    text = str(ei.value)
    assert text.startswith("resource vip: params.interface: ")
    assert "; params.lease: " in text and "; params.announce_count: " in text


def test_make_params_for_the_plain_api():
    p = make_params("eth0", "192.0.2.10", 24, lease_s=5, label="eth0:x")
    assert (p.cidr, p.lease_s, p.label, p.announce_count) == ("192.0.2.10/24", 5, "eth0:x", 0)
    assert make_params("eth0", "2001:db8::10/64").lease_s is None
    with pytest.raises(ValueError, match="label"):
        make_params("eth0", "192.0.2.10", 24, label="eth1:x")
    with pytest.raises(ValueError, match="prefix"):
        make_params("eth0", "192.0.2.10")


def test_unknown_interface_is_refused_before_any_change():
    """Read-only on this host: the check lists interfaces (no privilege
    needed) and refuses before anything is sent that would change them."""
    with AddressManager() as m:
        names = set(m.interfaces().values())
    name = "hbnosuch0"
    assert name not in names
    with pytest.raises(AddressError) as ei:
        add_address(name, "192.0.2.10", 24, lease_s=2)
    assert ei.value.errno == errno.ENODEV
    assert f"cannot add 192.0.2.10/24 to {name}: interface '{name}' does not exist" \
        in str(ei.value)
    assert "lo" in str(ei.value)


# --------------------------------------------------------------------------- #
# The agent against fakes
# --------------------------------------------------------------------------- #


class FakeKernel:
    """What the agent did, in order, with times; shared by every manager."""

    def __init__(self, interfaces=("lo", "eth0")):
        self.interfaces = list(interfaces)
        self.addrs: dict[tuple[str, str], int] = {}  # (ifname, address) -> prefix
        self.log: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.renew_delay = 0.0
        self.fail_add: AddressError | None = None
        self.threads: set[str] = set()
        self.managers = 0
        self.closed_managers = 0


class FakeManager:
    def __init__(self, k: FakeKernel):
        self.k = k
        k.managers += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self.k.lock:
            self.k.closed_managers += 1

    def _operation(self):
        return contextlib.nullcontext()

    def _note(self, what):
        with self.k.lock:
            self.k.log.append((what, time.monotonic()))
            self.k.threads.add(threading.current_thread().name)

    def ifindex(self, ifname):
        return self.k.interfaces.index(ifname) + 1 if ifname in self.k.interfaces else None

    def check(self, p):
        if p.interface not in self.k.interfaces:
            return f"cannot add {p.cidr} to {p.interface}: interface {p.interface!r} " \
                   f"does not exist"
        have = self.k.addrs.get((p.interface, p.address))
        if have is not None and have != p.prefix:
            return f"cannot add {p.cidr} to {p.interface}: already there with /{have}"
        return None

    def add(self, p, *, checked=False):
        if self.k.fail_add:
            raise self.k.fail_add
        self._note("add")
        self.k.addrs[(p.interface, p.address)] = p.prefix

    def renew(self, p):
        time.sleep(self.k.renew_delay)
        if (p.interface, p.address) not in self.k.addrs:
            raise AddressError("gone", errno.EADDRNOTAVAIL)
        self._note("renew")

    def remove(self, p):
        self._note("remove")
        return self.k.addrs.pop((p.interface, p.address), None) is not None

    def present(self, p):
        return self.k.addrs.get((p.interface, p.address)) == p.prefix


class FakeAnnouncer:
    def __init__(self, k: FakeKernel, fail: BaseException | None = None):
        self.k = k
        self.fail = fail
        self.closed = False

    def announce(self, address, count=1, interval_ms=0.0, reply=False):
        assert not self.closed
        assert count == 1
        if self.fail:
            raise self.fail
        with self.k.lock:
            self.k.log.append((f"frame {address}", time.monotonic()))
        return 1

    def probe(self, address):
        with self.k.lock:
            self.k.log.append((f"probe {address}", time.monotonic()))

    def close(self):
        self.closed = True


def make_agent(k: FakeKernel, announcer=None, open_error=None, **params):
    base = {"address": "192.0.2.10/24", "interface": "eth0", "lease": "off",
            "announce_count": "3", "announce_interval": "40ms", "announce_repeat": "off"}
    base.update({key: str(v) for key, v in params.items()})
    res = ResourceConfig(name="vip", type="ipaddr", params=base, timeout_us=5_000_000)
    agent = IpaddrAgent(res, deadtime_us=DEAD)
    agent.manager_factory = lambda: FakeManager(k)
    ann = announcer or FakeAnnouncer(k)

    def opener(ifname, address):
        if open_error is not None:
            raise open_error
        ann.closed = False
        return ann

    agent.announcer_factory = opener
    _made.append(agent)
    return agent


_made: list[IpaddrAgent] = []


@pytest.fixture(autouse=True)
def _close_agents():
    yield
    while _made:
        asyncio.run(_made.pop().close())


def frames(k):
    return [t for what, t in k.log if what.startswith("frame")]


def run(coro):
    return asyncio.run(coro)


def test_start_sends_burst_at_interval_then_stop_removes():
    k = FakeKernel()

    async def main():
        a = make_agent(k)
        r = await a.start()
        assert isinstance(r, ActionResult)
        assert (r.ok, r.status, r.action, r.resource, r.error) == \
            (True, "running", "start", "vip", None)
        assert "added 192.0.2.10/24 to eth0" in r.output and "permanent" in r.output
        assert len(frames(k)) == 1  # the first frame is sent before start returns
        await asyncio.sleep(0.2)
        m = await a.monitor()
        assert (m.ok, m.status) == (True, "running")
        s = await a.stop()
        assert (s.ok, s.status, s.output) == (True, "stopped", "removed 192.0.2.10/24 from eth0")
        m = await a.monitor()
        assert (m.ok, m.status) == (False, "stopped")
        s = await a.stop()
        assert s.ok and "was not on eth0" in s.output
        return a

    a = run(main())
    t = frames(k)
    assert len(t) == 3 and a.frames_sent == 3
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert all(0.035 <= g < 1.0 for g in gaps), gaps   # never early; late only under load
    assert [w for w, _ in k.log if not w.startswith("frame")] == ["add", "remove", "remove"]
    # Every netlink call and frame ran in the agent's one worker thread, with
    # one netlink manager; close() ends both.
    assert len(k.threads) == 1 and next(iter(k.threads)).startswith("heart-ipaddr-vip")
    assert (k.managers, k.closed_managers) == (1, 0)
    run(a.close())
    assert k.closed_managers == 1


def test_repeat_burst_and_refresh():
    k = FakeKernel()

    async def main():
        a = make_agent(k, announce_count=2, announce_interval="20ms", announce_repeat="150ms",
                       refresh_interval="400ms")
        t0 = time.monotonic()
        r = await a.start()
        assert "repeat in 150ms" in r.output and "refresh every 400ms" in r.output
        await asyncio.sleep(1.05)
        await a.stop()
        return t0

    t0 = run(main())
    rel = [t - t0 for t in frames(k)]
    # burst (0, 20ms), repeat (150, 170ms), refresh (400, 420ms), (800, 820ms)
    assert len(rel) == 8, rel
    assert rel[1] < 0.5 and 0.14 <= rel[2] < 1.0 and 0.39 <= rel[4] < 1.5
    assert 0.79 <= rel[6] < 2.0      # never early; late only on a loaded machine


def test_stop_ends_a_burst_at_once():
    k = FakeKernel()

    async def main():
        a = make_agent(k, announce_count=10, announce_interval="100ms", announce_repeat="300ms")
        await a.start()
        await asyncio.sleep(0.15)
        await a.stop()
        stopped = time.monotonic()
        await asyncio.sleep(0.3)
        return stopped

    stopped = run(main())
    assert len(frames(k)) == 2
    assert all(t < stopped for t in frames(k))
    remove_at = dict(k.log)["remove"]
    assert all(t < remove_at for t in frames(k))  # no frame after the release


def test_lease_is_renewed_every_third():
    k = FakeKernel()

    async def main():
        a = make_agent(k, lease="1s", announce_count=0)
        r = await a.start()
        assert "lease 1s, renewed every 333ms" in r.output
        await asyncio.sleep(1.17)  # renewals at 1/3, 2/3 and 1 s
        await a.stop()
        return a

    a = run(main())
    renews = [t for w, t in k.log if w == "renew"]
    assert len(renews) == 3 and a.renewals == 3
    gaps = [b - a for a, b in zip(renews, renews[1:])]
    assert all(0.3 <= g < 1.0 for g in gaps), gaps


def test_a_renewal_in_flight_finishes_before_the_remove():
    k = FakeKernel()
    k.renew_delay = 0.3

    async def main():
        a = make_agent(k, lease="1s", announce_count=0)
        await a.start()
        await asyncio.sleep(0.45)  # the first renewal (333 to 633ms) is in flight
        await a.stop()
        await asyncio.sleep(0.5)

    run(main())
    assert [w for w, _ in k.log] == ["add", "renew", "remove"]


def test_vanished_address_is_not_readded_by_renewal():
    k = FakeKernel()

    async def main():
        a = make_agent(k, lease="1s", announce_count=0)
        await a.start()
        k.addrs.clear()  # somebody removed it
        await asyncio.sleep(0.85)
        assert a.renew_errors == 2 and a.renewals == 0
        m = await a.monitor()
        assert (m.ok, m.status) == (False, "stopped")
        await a.close()

    run(main())
    assert k.addrs == {}


def test_start_errors_change_nothing():
    k = FakeKernel()

    async def main():
        r = await make_agent(k, interface="eth9").start()
        assert (r.ok, r.status) == (False, "failed")
        assert r.error.startswith("resource vip: cannot add 192.0.2.10/24 to eth9: "
                                  "interface 'eth9' does not exist")
        assert r.error.endswith("nothing was changed")
        k.addrs[("eth0", "192.0.2.10")] = 26
        r = await make_agent(k).start()
        assert not r.ok and "already there with /26" in r.error
        del k.addrs[("eth0", "192.0.2.10")]
        perm = AddressError("cannot announce 192.0.2.10 on eth0: sending ARP / neighbour "
                            "advertisement frames needs CAP_NET_RAW (run as root)",
                            errno.EPERM)
        r = await make_agent(k, open_error=perm).start()
        assert not r.ok and "CAP_NET_RAW" in r.error and "resource vip" in r.error
        k.fail_add = AddressError("cannot add 192.0.2.10/24 to eth0: changing addresses "
                                  "needs CAP_NET_ADMIN (run as root)", errno.EPERM)
        ann = FakeAnnouncer(k)
        r = await make_agent(k, announcer=ann).start()
        assert not r.ok and "CAP_NET_ADMIN" in r.error
        assert ann.closed  # opened before the add, closed when the add failed

    run(main())
    assert k.addrs == {} and frames(k) == []
    assert [w for w, _ in k.log] == []


def test_no_announcer_here_still_adds_the_address():
    k = FakeKernel()

    async def main():
        a = make_agent(k, open_error=AnnounceUnavailable("heart._core has no Announcer"))
        r = await a.start()
        assert r.ok and "not announced: heart._core has no Announcer" in r.output
        await asyncio.sleep(0.15)
        await a.stop()

    run(main())
    assert frames(k) == [] and [w for w, _ in k.log] == ["add", "remove"]


def test_send_errors_are_logged_and_do_not_fail_start(caplog):
    k = FakeKernel()
    ann = FakeAnnouncer(k, fail=OSError(errno.ENETDOWN, "Network is down"))

    async def main():
        a = make_agent(k, announcer=ann)
        r = await a.start()
        assert r.ok and "first announcement failed" in r.output
        await asyncio.sleep(0.15)
        ann.fail = None  # the link came back: the next frames go out
        await asyncio.sleep(0.2)
        await a.stop()

    run(main())
    assert "announcing 192.0.2.10 on eth0 failed" in caplog.text


def test_restart_without_stop_does_not_leave_old_tasks():
    k = FakeKernel()

    async def main():
        a = make_agent(k, lease="1s", announce_count=0)
        await a.start()
        await a.start()  # a supervisor retry, say
        await asyncio.sleep(0.45)
        await a.stop()

    run(main())
    assert [w for w, _ in k.log] == ["add", "add", "renew", "remove"]


def test_agent_rejects_bad_params():
    res = ResourceConfig(name="vip", type="ipaddr", params={"address": "192.0.2.10/24"})
    with pytest.raises(ValueError, match="resource vip: params.interface: required"):
        IpaddrAgent(res)


def test_reannounce_and_probe_while_held_only():
    k = FakeKernel()

    async def main():
        a = make_agent(k, announce_count=1)
        assert not a.held and a.announcer is None
        assert await a.announce(3) == 0  # not held: nothing is sent
        await a.start()
        assert a.held and a.announcer is not None
        assert await a.announce(2) == 2
        assert await a.probe() is True
        late = asyncio.ensure_future(a.announce(5))  # a burst that a stop overtakes
        await asyncio.sleep(0.06)
        await a.stop()
        assert await late <= 2
        assert not a.held and a.announcer is None
        assert await a.probe() is False
        return dict(k.log)["remove"]

    removed = run(main())
    assert [w for w, _ in k.log].count("probe 192.0.2.10") == 1
    assert all(t < removed for t in frames(k))
