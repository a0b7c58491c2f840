"""`heart lab up / status / down` as a user runs them: real namespaces, real
daemons; the client reaches the virtual address through its owner; down
removes every namespace and process up made, and a second down is
harmless.  Without root, up says what it needs and makes nothing.  Root and
network namespaces (CI)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import netns

from heart import lab


def heart(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heart", "lab", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, HEART_LAB_DIR=str(tmp_path)))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def namespaces() -> set[str]:
    return {line.split()[0] for line in
            subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.splitlines() if line.strip()}


def tcp_through_vip(owner_ns: str, client_ns: str, vip: str = lab.VIP4) -> bytes:
    """Connect from the client to the virtual address; a listener in the
    owner's namespace answers with its name."""
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    with netns.inside(owner_ns):
        srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((vip, 7777))
    srv.listen(1)
    srv.settimeout(10)

    def serve():
        with srv:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(owner_ns.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with netns.inside(client_ns):
        c = socket.socket(fam, socket.SOCK_STREAM)
    with c:
        c.settimeout(10)
        c.connect((vip, 7777))
        data = c.recv(100)
    t.join(10)
    return data


def test_up_status_reach_down(netns_ok, tmp_path):
    before = namespaces()
    r = heart(tmp_path, "up", "--nodes", "3")
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        assert "virtual address 192.0.2.100 on node" in r.stdout
        state = json.loads((tmp_path / "lab.json").read_text())
        made = set(state["namespaces"])
        assert len(made) == 5 and made <= namespaces() and not made & before
        assert all(ns.startswith(state["prefix"]) for ns in made)
        assert (tmp_path / "authkey").stat().st_mode & 0o777 == 0o600
        pids = [n["pid"] for n in state["nodes"]]
        assert all(alive(p) for p in pids)

        r = heart(tmp_path, "status", "--json")
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert [n["daemon"] for n in st["nodes"]] == ["running"] * 3
        owners = {n["owner"] for n in st["nodes"]}
        assert len(owners) == 1 and st["agree"] and st["owner"] in ("node1", "node2", "node3")
        r = heart(tmp_path, "status")
        assert r.stdout.count(" running ") == 3, r.stdout
        assert f"every answering node sees {st['owner']} as the owner" in r.stdout

        owner_ns = next(n["ns"] for n in state["nodes"] if n["name"] == st["owner"])
        assert tcp_through_vip(owner_ns, state["client"]["ns"]) == owner_ns.encode()
    finally:
        r = heart(tmp_path, "down")
    assert r.returncode == 0, r.stderr
    assert "stopped 3 daemons" in r.stdout and "deleted 5 namespaces" in r.stdout
    assert not made & namespaces()
    assert not any(alive(p) for p in pids)
    assert not (tmp_path / "lab.json").exists()

    r = heart(tmp_path, "down")                  # harmless
    assert r.returncode == 0 and "no lab" in r.stdout
    r = heart(tmp_path, "status")
    assert r.returncode == 0 and r.stdout.startswith("no lab")


def test_ipv6_lab(netns_ok, tmp_path):
    """--ipv6: both addresses move together and the client reaches both."""
    r = heart(tmp_path, "up", "--nodes", "2", "--ipv6")
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"virtual address {lab.VIP4} and {lab.VIP6} on node" in r.stdout
        state = json.loads((tmp_path / "lab.json").read_text())
        st = json.loads(heart(tmp_path, "status", "--json").stdout)
        assert st["agree"] and st["owner"]
        owner_ns = next(n["ns"] for n in state["nodes"] if n["name"] == st["owner"])
        for vip in (lab.VIP4, lab.VIP6):
            assert tcp_through_vip(owner_ns, state["client"]["ns"], vip) == owner_ns.encode()
    finally:
        r = heart(tmp_path, "down")
    assert r.returncode == 0 and "deleted 4 namespaces" in r.stdout, r.stderr


def test_down_after_an_interrupted_up(netns_ok, tmp_path):
    """An `up` killed with SIGKILL half-way leaves its record; `down`
    removes what it made."""
    p = subprocess.Popen([sys.executable, "-m", "heart", "lab", "up"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, HEART_LAB_DIR=str(tmp_path)))
    state_file = tmp_path / "lab.json"
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:       # until the first daemon is recorded
            try:
                if json.loads(state_file.read_text())["nodes"][0]["pid"]:
                    break
            except (FileNotFoundError, ValueError, KeyError):
                pass
            time.sleep(0.01)
    finally:
        p.kill()
        p.wait(10)
    state = json.loads(state_file.read_text())
    assert set(state["namespaces"]) & namespaces()
    r = heart(tmp_path, "down")
    assert r.returncode == 0, r.stderr
    assert not set(state["namespaces"]) & namespaces()
    assert not any(alive(n["pid"]) for n in state["nodes"] if n["pid"])
    # Also the daemon that up started but was killed before it could record:
    # no process of this lab's config is left.
    config = str(tmp_path / "heart.toml")
    left = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"run" in argv and config.encode() in argv:
            left.append(int(d))
    assert left == [], f"daemons left running: {left}"
    assert not state_file.exists()


_UNPRIVILEGED = """
import os, sys
from heart import cli, config, journal, lab
os.setgroups([]); os.setgid(65534); os.setuid(65534)
print(lab.check_root())
sys.exit(cli.main(["lab", "up"]))
"""


def test_up_without_root_says_what_it_needs(netns_ok, tmp_path):
    before = namespaces()
    r = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], capture_output=True,
                       text=True, timeout=60, check=False,
                       env=dict(os.environ, HEART_LAB_DIR=str(tmp_path / "lab")))
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith("heart lab needs root: it creates network namespaces")
    assert r.stderr.startswith("heart: heart lab needs root:")
    assert "run it as root" in r.stderr
    assert not (tmp_path / "lab").exists()
    assert not {n for n in namespaces() - before if n.startswith("hl")}


def test_how_a_started_daemon_ended_is_said():
    """When a lab daemon dies during `up`, the error says how (its exit
    status, or the signal that killed it), not only that it is gone."""
    import signal as sig

    ended = subprocess.Popen(["sh", "-c", "exit 3"])
    killed = subprocess.Popen(["sleep", "30"])
    os.kill(killed.pid, sig.SIGKILL)
    for p in (ended, killed):        # wait for them to end, without reaping them
        while lab._proc_stat(p.pid)[0] != "Z":
            time.sleep(0.01)
        p.returncode = 0             # lab._how_it_ended reaps them, as lab does
    assert lab._how_it_ended(ended.pid) == "exited with status 3"
    assert lab._how_it_ended(killed.pid) == "was killed by signal 9 (SIGKILL)"
    assert lab._how_it_ended(ended.pid) == "exited"     # already collected
