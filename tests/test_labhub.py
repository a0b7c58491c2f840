"""The lab hub (heart/labhub.py): the impairing user-space switch on its own,
between veth pairs in namespaces this test makes, and in a real `heart lab`.

Root and network namespaces (the netns_ok fixture).  Every namespace made
here carries a random prefix and is deleted in a finalizer; every hub is
killed by its PID.  Timing checks have lower bounds (the delay is never
shorter than asked) and only loose upper bounds: a loaded 2-core machine
must not make them fail."""
from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid

import pytest

from heart import journal, lab, labhub
from heart.failover_demo import kernel_ts

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5              # IEEE "local experimental": nothing else sends it
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
BCAST = b"\xff" * 6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mac_of(ns: str, dev: str = "eth0") -> bytes:
    out = lab.run("ip", "-o", "link", "show", "dev", dev, ns=ns)
    return bytes.fromhex(out.split("link/ether ")[1].split()[0].replace(":", ""))


class Port:
    """An AF_PACKET socket on eth0 of a namespace, for frames of type
    ETHERTYPE only: send, and receive with kernel timestamps (with
    outgoing=True, the frames other sockets send too)."""

    def __init__(self, ns: str, outgoing: bool = False):
        self.ns, self.outgoing = ns, outgoing
        self.mac = mac_of(ns)
        with lab.inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # Frames leaving reach ETH_P_ALL sockets only.
            self.sock.bind(("eth0", ETH_P_ALL if outgoing else ETHERTYPE))
        self.sock.setblocking(False)

    def send(self, dst: bytes, payload: bytes, src: bytes | None = None) -> None:
        frame = dst + (src or self.mac) + struct.pack("!H", ETHERTYPE) + payload
        self.sock.send(frame.ljust(60, b"\0"))

    def send_raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    def read(self, idle: float = 0.3, until: float = 5.0, want: int | None = None
             ) -> list[tuple[int, bool, bytes]]:
        """(timestamp ns, outgoing?, frame) until idle seconds pass with
        nothing new, want frames arrived, or until seconds in all."""
        got: list[tuple[int, bool, bytes]] = []
        end = time.monotonic() + until
        while want is None or len(got) < want:
            left = min(idle, end - time.monotonic())
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                break
            while True:
                try:
                    data, anc, _f, addr = self.sock.recvmsg(65535, 64)
                except BlockingIOError:
                    break
                out = addr[2] == PACKET_OUTGOING
                if out and not self.outgoing or data[12:14] != b"\x88\xb5":
                    continue
                got.append((kernel_ts(anc, 0), out, data))
        return got

    def drain(self) -> None:
        self.read(idle=0.05, until=0.5)

    def close(self) -> None:
        self.sock.close()


def payloads(frames, tag: bytes) -> list[bytes]:
    """Payloads (after the Ethernet header) of the received frames that
    start with tag."""
    return [f[14:] for _ts, out, f in frames if not out and f[14:].startswith(tag)]


class Net:
    """Namespaces a, b, c, ... each with eth0 (192.0.2.1, .2, ...) whose
    peer (the hub's port) is <prefix>p<name> in a namespace of its own,
    with no bridge: only a hub connects them."""

    def __init__(self, names: list[str]):
        self.prefix = f"hlt{uuid.uuid4().hex[:6]}"
        self.hub_ns = f"{self.prefix}hub"
        self.made: list[str] = []
        self.hubs: list[subprocess.Popen] = []
        self.socks: list[Port] = []
        self.ns: dict[str, str] = {}
        self.port: dict[str, str] = {}
        self._add_ns(self.hub_ns)
        for i, n in enumerate(names, start=1):
            ns, port = f"{self.prefix}{n}", f"{self.prefix}p{n}"
            self._add_ns(ns)
            lab.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            lab.run("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns, ns=self.hub_ns)
            lab.run("ip", "link", "set", port, "up", ns=self.hub_ns)
            lab.run("ip", "addr", "add", f"192.0.2.{i}/24", "dev", "eth0", ns=ns)
            lab.run("ip", "link", "set", "eth0", "up", ns=ns)
            self.ns[n], self.port[n] = ns, port

    def _add_ns(self, name: str) -> None:
        self.made.append(name)
        lab.run("ip", "netns", "add", name)
        lab.run("ip", "link", "set", "lo", "up", ns=name)

    def hub(self, *args: str, ports: list[str] | None = None) -> tuple[subprocess.Popen, str]:
        """Start `python -m heart.labhub` in the hub namespace on the ports
        of `ports` (default: all); (process, stats file) once it is ready."""
        names = ports or list(self.port)
        tmp = f"/tmp/{self.prefix}-{len(self.hubs)}"
        argv = [sys.executable, "-m", "heart.labhub", "--stats", tmp + ".json",
                "--ready", tmp + ".ready", *args]
        for n in names:
            argv += ["--port", self.port[n]]
        env = dict(os.environ, PYTHONPATH=REPO)
        with lab.inside(self.hub_ns):
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.hubs.append(p)
        end = time.monotonic() + 15
        while not os.path.exists(tmp + ".ready"):
            if p.poll() is not None:
                pytest.fail(f"the hub exited ({p.returncode}): {p.stdout.read().decode()}")
            assert time.monotonic() < end, "the hub was not ready within 15 s"
            time.sleep(0.01)
        os.unlink(tmp + ".ready")
        return p, tmp + ".json"

    def sock(self, name: str, outgoing: bool = False) -> Port:
        s = Port(self.ns[name], outgoing)
        self.socks.append(s)
        return s

    def close(self) -> None:
        for s in self.socks:
            s.close()
        for p in self.hubs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            if p.stdout:
                p.stdout.close()
        for i in range(len(self.hubs)):
            for ext in (".json", ".ready"):
                tmp = f"/tmp/{self.prefix}-{i}{ext}"
                if os.path.exists(tmp):
                    os.unlink(tmp)
        for ns in reversed(self.made):
            lab.run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def net(netns_ok, request):
    made = []

    def make(names=("a", "b", "c")) -> Net:
        n = Net(list(names))
        made.append(n)
        return n

    def fin():
        for n in made:
            n.close()

    request.addfinalizer(fin)
    return make


def stats(path: str) -> dict:
    with open(path) as f:
        return json.load(f)["counters"]


def stop(p: subprocess.Popen) -> str:
    """SIGTERM the hub; its output (it must exit cleanly, status 0)."""
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0, out.decode()
    return out.decode()


def learn(*ports: Port) -> None:
    """Each port sends a broadcast, so the hub knows every MAC."""
    for s in ports:
        for _ in range(3):
            s.send(BCAST, b"learn")
    time.sleep(0.2)
    for s in ports:
        s.drain()


# ---------------------------------------------------------------------------
# The hub on its own
# ---------------------------------------------------------------------------

def test_udp_and_tcp_through_the_hub(net):
    """Real sockets between namespaces: ARP, UDP and TCP (checksums left to
    the offload by the sender still come out right)."""
    n = net()
    p, st = n.hub()
    with lab.inside(n.ns["b"]):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("192.0.2.2", 5000))
        ls = socket.socket()
        ls.bind(("192.0.2.2", 5001))
        ls.listen()
    with lab.inside(n.ns["a"]):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.settimeout(5)
        for k in range(20):
            tx.sendto(b"ping %d" % k, ("192.0.2.2", 5000))
        got = [rx.recvfrom(100)[0] for _ in range(20)]
        assert sorted(got) == sorted(b"ping %d" % k for k in range(20))
        with lab.inside(n.ns["a"]):
            c = socket.create_connection(("192.0.2.2", 5001), timeout=5)
        ls.settimeout(5)
        srv, _ = ls.accept()
        blob = os.urandom(1 << 20)
        buf = bytearray()

        def reader():
            srv.settimeout(10)
            with contextlib.suppress(OSError):
                while True:
                    d = srv.recv(1 << 16)
                    if not d:
                        break
                    buf.extend(d)

        t = threading.Thread(target=reader)
        t.start()
        c.sendall(blob)
        c.close()
        t.join(15)
        srv.close()
        assert bytes(buf) == blob
    finally:
        for s in (rx, ls, tx):
            s.close()
    stop(p)
    c = stats(st)
    assert c["forwarded"] > 40 and c["send_errors"] == 0, c


def test_learning(net):
    """Broadcasts reach every other port; a unicast frame to a learned MAC
    reaches that port only."""
    n = net()
    p, st = n.hub()
    a, b, c = n.sock("a"), n.sock("b"), n.sock("c")
    a.send(BCAST, b"hello from a")
    assert payloads(b.read(want=1), b"hello") == [b"hello from a".ljust(46, b"\0")]
    assert payloads(c.read(want=1), b"hello") == [b"hello from a".ljust(46, b"\0")]
    b.send(BCAST, b"hello from b")     # the hub learns b's MAC
    assert payloads(a.read(want=1), b"hello from b")
    c.drain()
    for k in range(50):
        a.send(b.mac, b"uni %d" % k)
    got_b = payloads(b.read(want=50), b"uni")
    got_c = payloads(c.read(idle=0.3), b"uni")
    assert len(got_b) == 50
    assert got_c == [], f"c got {len(got_c)} unicast frames meant for b"
    # An unknown unicast destination is flooded.
    a.send(b"\x02\0\0\0\0\x99", b"unknown dst")
    assert payloads(b.read(want=1), b"unknown") and payloads(c.read(want=1), b"unknown")
    stop(p)
    s = stats(st)
    assert s["frames_in"] >= 53 and s["dropped_loss"] == 0 and s["send_errors"] == 0, s


def test_loss_fraction(net):
    n = net(("a", "b"))
    loss, count = 0.2, 2000
    p, st = n.hub("--loss", str(loss), "--seed", "7")
    a, b = n.sock("a"), n.sock("b")
    learn(a, b)
    for k in range(count):
        a.send(b.mac, b"loss %d" % k)
        if k % 50 == 49:
            time.sleep(0.002)          # let the hub keep up; no queue overflow
    got = payloads(b.read(idle=0.5, until=20), b"loss ")
    assert len(set(got)) == len(got)
    frac = 1 - len(got) / count
    sigma = (loss * (1 - loss) / count) ** 0.5
    stop(p)
    s = stats(st)
    print(f"\nloss {loss}: {count - len(got)} of {count} frames lost ({frac:.3f}, "
          f"6 sigma = {6 * sigma:.3f}); hub {s}")
    assert abs(frac - loss) < 6 * sigma, f"lost {frac:.3f}, expected {loss} +- {6 * sigma:.3f}"
    assert s["send_errors"] == 0 and s["recv_errors"] == 0, s


def one_way(n: Net, args: tuple[str, ...], count: int = 300, gap: float = 0.002
            ) -> tuple[list[float], dict]:
    """One-way delays (ms) of count frames a -> b through a hub started with
    args: kernel timestamps of the frame leaving a's eth0 and reaching b's."""
    p, st = n.hub(*args)
    a, b = n.sock("a"), n.sock("b")
    # A packet socket does not see its own frames leave: a second one does.
    acap = n.sock("a", outgoing=True)
    learn(a, b)
    acap.drain()
    for k in range(count):
        a.send(b.mac, b"delay %06d" % k)
        time.sleep(gap)
    got = b.read(idle=0.5, until=20, want=count)
    sent = acap.read(idle=0.2, until=5)
    stop(p)
    t_out = {f[14:26]: ts for ts, out, f in sent if out and f[14:].startswith(b"delay")}
    t_in = {f[14:26]: ts for ts, out, f in got if f[14:].startswith(b"delay")}
    assert len(t_in) == count, f"{len(t_in)} of {count} frames arrived"
    assert set(t_in) <= set(t_out)
    order = [f[14:26] for ts, out, f in sorted(got) if f[14:].startswith(b"delay")]
    reordered = sum(1 for x, y in zip(order, order[1:]) if x > y)
    return [(t_in[k] - t_out[k]) / 1e6 for k in t_in], {"reordered": reordered,
                                                         **stats(st)}


def describe(d: list[float]) -> str:
    q = statistics.quantiles(d, n=100)
    return (f"min {min(d):.3f} p10 {q[9]:.3f} median {statistics.median(d):.3f} "
            f"p90 {q[89]:.3f} p99 {q[98]:.3f} max {max(d):.3f} ms")


def test_latency_without_delay(net):
    """With no delay asked, the hub adds little (figures printed); only a
    loose bound is checked."""
    d, s = one_way(net(("a", "b")), ())
    print(f"\nno delay: {describe(d)}; {s['reordered']} reordered")
    assert statistics.median(d) < 20
    assert s["reordered"] == 0


def test_delay_and_jitter(net):
    delay, jitter = 5.0, 2.0
    d, s = one_way(net(("a", "b")), ("--delay-ms", str(delay), "--jitter-ms", str(jitter)))
    print(f"\ndelay {delay} ms +- {jitter} ms: {describe(d)}; {s['reordered']} of "
          f"{len(d)} arrived before an earlier frame")
    assert min(d) >= delay - jitter - 0.2
    assert delay - 0.5 <= statistics.median(d) <= delay + 25
    q = statistics.quantiles(d, n=10)
    assert q[8] - q[0] > 1.0, f"no jitter to see: p10 {q[0]:.3f}, p90 {q[8]:.3f} ms"


def test_delay_without_jitter_keeps_order(net):
    d, s = one_way(net(("a", "b")), ("--delay-ms", "3"), count=200)
    print(f"\ndelay 3 ms: {describe(d)}")
    assert min(d) >= 3 - 0.2
    assert s["reordered"] == 0


def test_rate(net):
    """3000 broadcast frames a second for 2 s, each flooded to two ports
    with 20 % loss and 5 +- 5 ms delay: the hub keeps up (no frame lost
    beyond the loss asked for, no queue overflow, no send error)."""
    n = net(("a", "b", "c"))
    loss, count = 0.2, 6000
    p, st = n.hub("--loss", str(loss), "--delay-ms", "5", "--jitter-ms", "5", "--seed", "3")
    a, b, c = n.sock("a"), n.sock("b"), n.sock("c")
    t0 = time.monotonic()
    for k in range(count):
        a.send(BCAST, b"rate %d" % k)
        if k % 30 == 29:                 # 30 frames every 10 ms
            time.sleep(max(0.0, t0 + (k + 1) / 3000 - time.monotonic()))
    took = time.monotonic() - t0
    got_b = payloads(b.read(idle=0.5, until=30), b"rate ")
    got_c = payloads(c.read(idle=0.5, until=30), b"rate ")
    stop(p)
    s = stats(st)
    sigma = (count * loss * (1 - loss)) ** 0.5
    print(f"\n{count} frames in {took:.2f} s: b got {len(got_b)}, c got {len(got_c)} "
          f"(expected {count * (1 - loss):.0f} +- {6 * sigma:.0f}); hub {s}")
    for got in (got_b, got_c):
        assert abs(len(got) - count * (1 - loss)) < 6 * sigma
    assert s["send_errors"] == 0 and s["rx_overruns"] == 0, s
    assert s["frames_in"] >= count


def reach(n: Net, names: list[str]) -> set[tuple[str, str]]:
    """(sender, receiver) pairs a broadcast got through."""
    socks = {x: n.sock(x) for x in names}
    for x, s in socks.items():
        for _ in range(3):
            s.send(BCAST, b"from " + x.encode())
    ok = set()
    for y, s in socks.items():
        for pl in payloads(s.read(idle=0.3), b"from "):
            ok.add((pl[5:].rstrip(b"\0").decode(), y))
    return ok


def test_partition(net):
    names = ["a", "b", "c", "d"]
    n = net(names)
    p, st = n.hub("--group", f"{n.port['a']},{n.port['b']}", "--group", n.port["c"])
    got = reach(n, names)
    want = {(x, y) for x in names for y in names if x != y} - {
        ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")}
    assert got == want
    # Unicast across the partition too (the MAC is learned by now).
    a, c = n.socks[0], n.socks[2]
    a.send(c.mac, b"across")
    assert payloads(c.read(idle=0.3), b"across") == []
    stop(p)
    assert stats(st)["dropped_partition"] >= 13


def test_survives_garbage_and_ports_going_away(net):
    n = net(("a", "b", "c"))
    p, st = n.hub()
    a, b = n.sock("a"), n.sock("b")
    learn(a, b)
    # A bare Ethernet header (the kernel refuses shorter frames), odd
    # addresses, a VLAN tag, a full-size frame.
    a.send_raw(b"\0" * 14)
    a.send(b"\0" * 6, b"zero dst", src=b"\xff" * 6)
    a.send(b.mac, b"x" * 1486)
    a.send_raw(b.mac + a.mac + b"\x81\x00\x00\x05" + struct.pack("!H", ETHERTYPE)
               + b"vlan".ljust(46, b"\0"))
    # A port going down and up again, then one going away for good.
    lab.run("ip", "link", "set", n.port["b"], "down", ns=n.hub_ns)
    for k in range(20):
        a.send(b.mac, b"into a down port %d" % k)
    time.sleep(0.2)
    lab.run("ip", "link", "set", n.port["b"], "up", ns=n.hub_ns)
    lab.run("ip", "netns", "del", n.ns["c"])
    n.made.remove(n.ns["c"])
    for k in range(20):
        a.send(BCAST, b"after %d" % k)
    time.sleep(0.3)
    assert p.poll() is None, p.stdout.read().decode()
    b.drain()
    # Whatever the port did meanwhile, it forwards again.
    end = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < end:
        a.send(b.mac, b"alive")
        got = payloads(b.read(idle=0.1, until=0.2), b"alive")
    assert got, "the hub no longer forwards a -> b"
    assert p.poll() is None
    out = stop(p)
    s = stats(st)
    print(f"\nafter garbage and port trouble: {s}")
    assert "exit" in out


def test_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "heart.labhub", "--port", "x", "--loss", "1"],
                       capture_output=True, text=True, check=False,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 2 and "loss" in r.stderr
    r = subprocess.run([sys.executable, "-m", "heart.labhub", "--port", "x",
                        "--group", "x,y"],
                       capture_output=True, text=True, check=False,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 2 and "y" in r.stderr
    with pytest.raises(ValueError):
        labhub.check_settings(-0.1, 0, 0)
    with pytest.raises(ValueError):
        labhub.check_settings(0.1, -1, 0)
    with pytest.raises(ValueError):
        labhub.check_settings(float("nan"), 0, 0)


# ---------------------------------------------------------------------------
# In a real lab
# ---------------------------------------------------------------------------

def br0_ports(st: dict) -> set[str]:
    out = lab.run("ip", "-o", "link", "show", "master", "br0", ns=st["bridge_ns"])
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def all_ports(st: dict) -> set[str]:
    return ({n["veth"] for n in st["nodes"]} | {st["client"]["veth"]}
            | {h["veth"] for h in st.get("hosts", [])})


def node_downs(directory: str, st: dict, since: float) -> dict[str, list]:
    out = {}
    for n in st["nodes"]:
        with journal.open_readonly(os.path.join(directory, n["name"], "journal.db")) as j:
            ev = j.events(since=since, kinds=["node_down"])
        if ev:
            out[n["name"]] = ev
    return out


def wait_for(cond, timeout: float, step: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


@pytest.fixture
def lab3(netns_ok, tmp_path, request):
    d = str(tmp_path / "lab")
    request.addfinalizer(lambda: lab.down(directory=d, out=io.StringIO()))
    lab.up(nodes=3, directory=d, out=io.StringIO())
    return d


def test_lab_impair_heal_down(lab3):
    d = lab3
    paths = lab.Paths(d)
    st = lab.load_state(paths)
    lab.add_host("x", d)
    st = lab.load_state(paths)
    ports = all_ports(st)
    assert br0_ports(st) == ports
    assert labhub.status(d) is None
    with pytest.raises(ValueError, match="node9"):
        labhub.impair(d, partition=[["node1", "node9"]])
    with pytest.raises(ValueError):
        labhub.impair(d, loss=1.0)
    with pytest.raises(ValueError):
        labhub.impair(d, delay_ms=-1)
    assert "hub" not in lab.load_state(paths)

    t0 = time.time()
    rec = labhub.impair(d)
    st = lab.load_state(paths)
    assert st["hub"]["pid"] == rec["pid"] and labhub.is_our_hub(rec)
    assert br0_ports(st) == set(), "the ports are still in br0"
    assert set(rec["ports"]) == ports
    # Replacing the hub (a small delay now) must not cut anybody off either.
    time.sleep(1.5)
    rec2 = labhub.impair(d, delay_ms=1.0, jitter_ms=0.5)
    assert rec2["pid"] != rec["pid"] and not labhub.is_our_hub(rec)
    time.sleep(1.5)
    s = labhub.status(d)
    assert s["running"] and s["settings"]["delay_ms"] == 1.0, s
    assert s["counters"] and s["counters"]["forwarded"] > 50, s
    assert s["counters"]["send_errors"] == 0, s
    downs = node_downs(d, st, t0)
    assert not downs, f"node_down while the hub took over: {downs}"
    ok, why = lab._agreed(paths, st)
    assert ok, why

    labhub.heal(d)
    st = lab.load_state(paths)
    assert "hub" not in st
    assert br0_ports(st) == ports
    assert not labhub.is_our_hub(rec2) and not os.path.exists(f"/proc/{rec2['pid']}")
    assert labhub.status(d) is None
    labhub.heal(d)                       # idempotent
    time.sleep(0.5)
    assert not node_downs(d, st, t0)
    ok, why = lab._agreed(paths, st)
    assert ok, why

    # down stops a running hub.
    rec3 = labhub.impair(d, loss=0.05)
    assert labhub.is_our_hub(rec3)
    lab.down(directory=d, out=io.StringIO())
    assert not os.path.exists(f"/proc/{rec3['pid']}")
    assert not lab.ns_exists(st["bridge_ns"])


def test_lab_partition_2_1(lab3):
    """node3 cut off from node1 and node2 (the client still reaches all):
    node1 and node2 keep quorum and declare node3 down; node3 loses quorum.
    Healed, all three agree again."""
    d = lab3
    paths = lab.Paths(d)
    st = lab.load_state(paths)
    t0 = time.time()
    labhub.impair(d, partition=[["node1", "node2"], ["node3"]])

    def split():
        s = {n: lab.node_status(paths, n, timeout=1.0) for n in ("node1", "node2", "node3")}
        if None in s.values():
            return False
        return (s["node1"]["quorum"]["quorate"] and s["node2"]["quorum"]["quorate"]
                and not s["node3"]["quorum"]["quorate"])

    assert wait_for(split, 10), "no 2+1 split"
    downs = node_downs(d, st, t0)
    assert {e["node"] for e in downs.get("node1", [])} == {"node3"}, downs
    assert {e["node"] for e in downs.get("node2", [])} == {"node3"}, downs
    time.sleep(1.2)                      # the hub writes its counters every second
    c = labhub.status(d)["counters"]
    assert c["dropped_partition"] > 0 and c["forwarded"] > 0, c
    labhub.heal(d)
    assert wait_for(lambda: lab._agreed(paths, st)[0], 15), lab._agreed(paths, st)[1]
    print(f"\npartition 2+1: hub counters {c}")
