"""Real daemons in network namespaces with an ipaddr resource: the address
moves on SIGKILL and the client's kernel follows; a crashed owner's address
expires with its lease; an owner resumed after SIGSTOP with the address still
configured is caught as a duplicate owner, and afterwards exactly one MAC
answers for the address.  Root and network namespaces (CI)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import netns
import pytest

from heart import _core, control, journal

VIP = "192.0.2.40"
DEV = "eth0"


class NsCluster:
    def __init__(self, lab: netns.Lab, root, lease: str = "2s"):
        self.lab, self.root = lab, root
        self.names = ["alpha", "beta"]
        self.procs: dict[str, subprocess.Popen] = {}
        self.alerts = root / "alerts"
        handler = root / "handler.sh"
        handler.write_text(f"#!/bin/sh\necho \"$HEART_EVENT $HEART_NODE $HEART_MAC\" "
                           f">> {self.alerts}\n")
        handler.chmod(0o755)
        key = root / "authkey"
        key.write_text(f"1 {os.urandom(32).hex()}\n")
        key.chmod(0o600)
        nodes = "".join(
            f'\n[[node]]\nname = "{n}"\nid = {i}\naddresses = {{ lan = "{lab.v4(0, i)}" }}\n'
            for i, n in enumerate(self.names, start=1))
        self.config = root / "heart.toml"
        self.config.write_text(textwrap.dedent(f"""\
            [cluster]
            name = "lab"
            id = 5
            state_dir = "{root}/{{node}}"
            socket = "{root}/{{node}}/ctl.sock"

            [timing]
            interval = "20ms"
            deadtime = "200ms"
            initdead = "1s"

            [auth]
            key_file = "{key}"

            [engine]
            realtime_priority = 10

            [quorum]
            wait_for_all = true

            [[link]]
            name = "lan"
            port = 6694

            [[handler]]
            events = ["duplicate_owner"]
            command = "{root}/handler.sh"

            [[resource]]
            name = "vip"
            type = "ipaddr"
            params = {{ address = "{VIP}", prefix = 26, interface = "{DEV}", lease = "{lease}" }}
            nodes = ["alpha", "beta"]
            auto_failback = false
            """) + nodes)

    def ns(self, name: str) -> str:
        return self.lab.nodes[self.names.index(name)]

    def start(self, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), sys.executable, "-m", "heart", "run",
             "-c", str(self.config), "--node", name],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HEART_DEBUG_HOOKS="1"))
        log.close()

    def start_both(self) -> tuple[str, str]:
        """Start alpha and beta, wait until alpha holds the address; their MACs."""
        self.start("alpha")
        self.start("beta")
        wait(lambda: self.owner("beta") == "alpha" and self.has_vip("alpha"), 20,
             "alpha to hold vip")
        return netns.mac(self.ns("alpha"), DEV), netns.mac(self.ns("beta"), DEV)

    def status(self, name: str) -> dict | None:
        try:
            st = control.request(str(self.root / name / "ctl.sock"), "status", timeout=5)
        except (control.ControlError, OSError, ValueError):
            return None
        return st if st.get("ok") else None

    def owner(self, viewer: str) -> str | None:
        st = self.status(viewer)
        if not st:
            return None
        o = st["resources"][0]["owner"]
        rec = next(n for n in st["nodes"] if n["name"] == o) if isinstance(o, str) else None
        return o if rec and rec.get("held", {}).get("vip") == "started" else None

    def events(self, name: str, kind: str) -> list[dict]:
        path = self.root / name / "journal.db"
        try:
            j = journal.open_readonly(str(path))
        except (FileNotFoundError, journal.JournalError):
            return []                   # the daemon is still creating it
        try:
            return [e for e in j.events() if e["kind"] == kind]
        finally:
            j.close()

    def has_vip(self, name: str) -> bool:
        out = netns.run("ip", "-4", "-o", "addr", "show", "dev", DEV, ns=self.ns(name))
        return f" {VIP}/" in out

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(10)


def wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def lab(netns_ok, tmp_path):
    with netns.Lab(n_nodes=2) as lab:
        client = lab.add_client()
        c = NsCluster(lab, tmp_path)
        try:
            yield lab, client, c
        finally:
            c.close()


def touch_vip(client: str) -> None:
    """Make the client's kernel resolve VIP (a UDP datagram to it)."""
    with netns.inside(client):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", (VIP, 9))
    finally:
        s.close()


def who_answers(client: str, seconds: float = 0.3) -> set[str]:
    """MACs that answer an ARP probe for VIP, seen from the client."""
    with netns.inside(client):
        a = _core.Announcer(DEV)
    try:
        a.claims(1000)
        a.probe(VIP)
        end = time.monotonic() + seconds
        macs = set()
        while time.monotonic() < end:
            time.sleep(0.02)
            macs |= {c.mac.lower() for c in a.claims(1000) if c.address == VIP}
        return macs
    finally:
        a.close()


def test_sigkill_moves_the_address_and_its_lease_expires(lab):
    _, client, c = lab
    alpha_mac, beta_mac = c.start_both()
    touch_vip(client)
    wait(lambda: netns.neigh(client, VIP, DEV)[0] == alpha_mac, 5, "client to learn alpha")
    c.procs["alpha"].kill()
    t_kill = time.monotonic()
    wait(lambda: c.has_vip("beta"), 10, "beta to add vip")
    # The client's kernel moved its entry to beta's MAC: an announcement did it.
    wait(lambda: netns.neigh(client, VIP, DEV)[0] == beta_mac, 5, "client to follow")
    # alpha's daemon is gone, so nobody renews its lease: the kernel drops it.
    wait(lambda: not c.has_vip("alpha"), 2 + 1.5, "alpha's address to expire")
    assert time.monotonic() - t_kill < 3.5
    conf = wait(lambda: c.events("beta", "takeover_confirmed"), 5, "beta's confirmation")
    assert conf[-1]["evidence"]["converged"] is True
    assert who_answers(client) == {beta_mac}


def test_resumed_old_owner_is_a_duplicate_and_one_mac_remains(lab):
    _, client, c = lab
    alpha_mac, beta_mac = c.start_both()
    c.procs["alpha"].send_signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        # beta takes over while alpha's kernel still has the address (its
        # lease has not run out): alpha answers beta's probe.
        wait(lambda: c.has_vip("beta"), 10, "beta to add vip")
        dup = wait(lambda: c.events("beta", "duplicate_owner"), 5, "the duplicate")
        assert dup[0]["evidence"]["mac"] == alpha_mac and dup[0]["evidence"]["keep"]
        # The alert reached the handlers, with the other claimant's MAC.
        wait(lambda: c.alerts.exists() and f"duplicate_owner beta {alpha_mac}"
             in c.alerts.read_text(), 5, "the duplicate_owner handler")
        assert c.has_vip("alpha")
        time.sleep(max(0.0, 0.8 - (time.monotonic() - t_stop)))   # well past the dead time
    finally:
        c.procs["alpha"].send_signal(signal.SIGCONT)
    # alpha finds it was paused past the dead time and gives the address up.
    wait(lambda: not c.has_vip("alpha"), 5, "alpha to release vip")
    stall = wait(lambda: c.events("alpha", "stall"), 5, "alpha's stall report")
    assert stall[0]["evidence"]["released"] == ["vip"]
    wait(lambda: c.owner("alpha") == "beta" and c.owner("beta") == "beta", 10, "one view")
    assert who_answers(client) == {beta_mac}
    assert c.has_vip("beta") and not c.has_vip("alpha")


@pytest.mark.parametrize("vip,reply", [(VIP, False), (VIP, True), ("2001:db8::40", False)])
def test_heart_announce_command(netns_ok, vip, reply):
    """`heart announce` puts COUNT frames on the wire, every one a claim for
    the address from the node's MAC, in the form asked for."""
    with netns.Lab(n_nodes=1) as lab:
        client = lab.add_client()
        node = lab.nodes[0]
        mac = netns.mac(node, DEV)
        with netns.Capture(client, DEV) as cap:
            r = subprocess.run(["ip", "netns", "exec", node, sys.executable, "-m", "heart",
                                "announce", DEV, vip, "--count", "3", "--interval", "20"]
                               + (["--reply"] if reply else []),
                               capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, r.stderr
            frames = cap.read(idle=0.3)
        claims = [c for c in (_core.parse_claim(f) for _, f in frames)
                  if c is not None and c.address == vip]
        assert len(claims) == 3
        assert all(c.mac.lower() == mac for c in claims)
        want = "na" if ":" in vip else ("arp_reply" if reply else "arp_request")
        assert {c.kind for c in claims} == {want}
        assert "sent 3 " in r.stdout and mac in r.stdout


def test_heart_announce_errors(netns_ok):
    with netns.Lab(n_nodes=1) as lab:
        def heart(*args):
            return subprocess.run(["ip", "netns", "exec", lab.nodes[0], sys.executable, "-m",
                                   "heart", "announce", *args], capture_output=True,
                                  text=True, timeout=60, check=False)

        r = heart("eth9", VIP)
        assert r.returncode == 1 and "interface 'eth9' does not exist" in r.stderr
        r = heart(DEV, "192.0.2.400")
        assert r.returncode == 2 and "not an IPv4 or IPv6 address" in r.stderr
        r = heart(DEV, "2001:db8::40", "--reply")
        assert r.returncode == 2 and "--reply applies to IPv4" in r.stderr


def test_an_address_a_foreign_host_answers_for_is_not_taken(lab):
    """A host outside the cluster already has the address: no node adds it,
    each says who answers for it, and nothing changes on the nodes."""
    _, client, c = lab
    netns.run("ip", "addr", "add", f"{VIP}/26", "dev", DEV, ns=client)
    foreign_mac = netns.mac(client, DEV)
    c.start("alpha")
    c.start("beta")
    for n in c.names:
        ev = wait(lambda n=n: c.events(n, "resource_failed"), 20, f"{n} to refuse vip")
        assert f"{VIP} is already answered for by {foreign_mac}" in ev[0]["summary"]
        assert "nothing was changed" in ev[0]["summary"]
    assert not c.has_vip("alpha") and not c.has_vip("beta")
    st = c.status("alpha")
    assert st["resources"][0]["owner"] is None and st["resources"][0]["placement"] is None
