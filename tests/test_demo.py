"""`heart demo`: as root the failover demo in a 3-node lab (timeline in
order, a plausible outage_ms last, nothing left behind, also after Ctrl-C);
without root the loopback demo, after saying what the failover demo needs."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from test_lab import namespaces

TIMELINE = [
    r"t=\s+0\.000 ms  kill -9 (node\d)'s daemon, the owner of 192\.0\.2\.100",
    r"t=\s+[\d.]+ ms  node\d declares node\d down \(its journal: node_down\)",
    r"t=\s+[\d.]+ ms  192\.0\.2\.100 configured on (node\d)",
    r"t=\s+[\d.]+ ms  client sees the first announcement from node\d \(gratuitous ARP",
    r"t=\s+[\d.]+ ms  client gets the first reply from 192\.0\.2\.100 through node\d",
]


def _prefix(out: str) -> str:
    m = re.search(r"bridge in namespace (hl[0-9a-f]{6})br", out)
    assert m, out
    return m.group(1)


def test_failover_demo(netns_ok):
    r = subprocess.run([sys.executable, "-m", "heart", "demo"], capture_output=True,
                       text=True, timeout=30, check=False)
    out = r.stdout
    assert r.returncode == 0, r.stderr + out
    last = out.rstrip().splitlines()[-1]
    m = re.fullmatch(r"outage_ms=(\d+\.\d+)", last)
    assert m, last
    assert 0 < float(m.group(1)) < 5000
    pos = []
    for pat in TIMELINE:
        found = re.search(pat, out)
        assert found, f"{pat!r} not in:\n{out}"
        pos.append(found.start())
    assert pos == sorted(pos), out
    killed = re.search(TIMELINE[0], out).group(1)
    assert re.search(TIMELINE[2], out).group(1) != killed
    assert "auto_failback = true" in out and f"{killed} rejoined and took" in out
    assert "deleted 5 namespaces" in out
    prefix = _prefix(out)
    assert not {n for n in namespaces() if n.startswith(prefix)}
    labdir = re.search(r"lab directory (\S+)\)", out).group(1)
    assert not os.path.exists(labdir)


def test_failover_demo_interrupted_cleans_up(netns_ok):
    p = subprocess.Popen([sys.executable, "-m", "heart", "demo"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if "steady state:" in line:
                p.send_signal(signal.SIGINT)
                break
        rest, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines) + rest
    assert p.returncode == 1, out + err
    assert "heart demo: interrupted" in err
    assert "outage_ms=" not in out
    prefix = _prefix(out)
    assert not {n for n in namespaces() if n.startswith(prefix)}
    labdir = re.search(r"lab directory (\S+)\)", out).group(1)
    assert not os.path.exists(labdir)


_UNPRIVILEGED = """
import os, sys
from heart import cli, config, demo, failover_demo, journal, lab  # before setuid
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(cli.main(["demo", "--seconds", "0.3"]))
"""


def test_demo_without_root_runs_the_loopback_demo(tmp_path):
    r = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr + r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].startswith("heart demo: the failover demo needs root: it creates "
                               "network namespaces"), r.stdout
    assert "CAP_NET_RAW" in lines[0] and "CAP_NET_ADMIN" in lines[0]
    assert lines[1].startswith("heart demo: running the loopback demo instead")
    assert lines[2].startswith("heart demo: two engines on 127.0.0.1")
    assert re.fullmatch(r"detect_ms=\d+\.\d+", lines[-1]), r.stdout


def test_loopback_flag(tmp_path):
    r = subprocess.run([sys.executable, "-m", "heart", "demo", "--loopback", "--seconds",
                        "0.3"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("heart demo: two engines on 127.0.0.1")
    assert re.fullmatch(r"detect_ms=\d+\.\d+", r.stdout.splitlines()[-1])
