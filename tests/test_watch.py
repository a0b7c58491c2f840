"""heart status --watch: the live view (heart.watch) at 80 columns, its loop
when the daemon goes away and comes back, and the plain frames in a pipe."""
from __future__ import annotations

import copy
import io
import re

import pytest
from rich.console import Console

from heart import cli, control, status, watch

NOW = 1_764_106_847.0        # a fixed clock for the header


def _node(name, nid, state, links, heard=None, lost=None, held=None, load=0.45,
          standby=False, failed=()):
    n = {"name": name, "id": nid, "state": state, "links": links,
         "generation": 1, "version": 3, "status": "active", "standby": standby,
         "quorate": True, "held": held or {}, "failed": list(failed), "moves": {},
         "attributes": {"load1": load, "mem_available_mb": 23650, "cpus": 2},
         "heart_version": "0.1.0"}
    if state != "self":
        n["lost"] = lost if lost is not None else {k: 0 for k in links}
        n["last_heard_ms"] = heard
    return n


def _res(name, owner, placement=None, local="stopped", unit=None):
    return {"resource": name, "unit": unit or name, "owner": owner,
            "placement": placement if placement is not None else owner,
            "reason": "it is the first available node", "local_state": local}


def sample() -> dict:
    """beta's view 1.5 s after alpha was killed (the README's cluster)."""
    return {
        "cluster": "test", "cluster_id": 77, "node": "beta",
        "generation": 1795646440286220, "version": "0.1.0", "uptime_s": 8.4,
        "quorum": {"quorate": True, "votes": 2, "expected": 3,
                   "members": ["beta", "gamma"], "ping": None,
                   "reason": "2 of 3 votes (beta, gamma)"},
        "nodes": [
            _node("alpha", 1, "down", {"lo": "down"}, heard=1622.0, lost={"lo": 7},
                  held={"www": "started"}),
            _node("beta", 2, "self", {"lo": "local"}, held={"www": "started"}),
            _node("gamma", 3, "up", {"lo": "up"}, heard=66.0, standby=True,
                  failed=["www"]),
        ],
        "resources": [_res("www", "beta", local="started")],
        "links": [{"name": "lo", "kind": "unicast", "port": 58004, "peers_up": ["gamma"]}],
        "matrix": {"beta": ["gamma"], "gamma": ["beta"]},
        "counters": {"sent": 160, "received": 152},
    }


def wide() -> dict:
    """12 nodes on two links with long names, 10 resources, some in a group."""
    st = sample()
    st["cluster"] = "production-frankfurt-east"
    st["node"] = "node03.frankfurt.example.net"
    links = ("ring0-backbone", "ring1-storage")
    states = ["up", "late", "down", "self", "up", "up", "unknown", "up", "up", "late",
              "up", "down"]
    nodes = []
    for i, s in enumerate(states):
        name = f"node{i:02d}.frankfurt.example.net"
        if s == "self":
            links_i = {k: "local" for k in links}
        elif s == "down":
            links_i = {k: "down" for k in links}
        else:
            links_i = {links[0]: "up", links[1]: "down" if s == "late" else "up"}
        held = {f"service-{i}-database": "started", f"vip-{i}": "starting"} if i % 3 == 0 \
            else {}
        nodes.append(_node(name, i + 1, s, links_i, heard=40.0 + 900 * i,
                           lost={k: 1000 * i for k in links} if s != "self" else None,
                           held=held, load=i * 1.37, standby=(i == 4),
                           failed=["db-cluster"] if i == 5 else ()))
    st["nodes"] = nodes
    st["links"] = [{"name": k, "kind": "multicast", "port": 694, "peers_up": []}
                   for k in links]
    st["resources"] = [
        _res(f"resource-with-a-long-name-{i}" if i % 2 else f"r{i}",
             nodes[i]["name"] if i != 4 else [nodes[1]["name"], nodes[2]["name"]],
             placement=nodes[(i + 1) % 12]["name"],
             local="started" if i % 3 == 0 else "stopped",
             unit="db-cluster" if i < 3 else None)
        for i in range(10)]
    st["events"] = [{"id": i, "time": NOW - 10 + i, "kind": k, "node": n, "resource": r,
                     "summary": s, "evidence": {}}
                    for i, (k, n, r, s) in enumerate([
                        ("node_late", "node02.frankfurt.example.net", None, "late"),
                        ("node_down", "node02.frankfurt.example.net", None,
                         "node02.frankfurt.example.net is down: no heartbeat for 500.1 ms"),
                        ("placement", None, "r0", "placement puts r0 on node01: it is the "
                         "first available node in its preference order (node02 is down)"),
                        ("resource_acquire", "node03.frankfurt.example.net", "r0",
                         "r0 started\non node03 (ok, rc 0, 0.01 s)"),
                        ("quorum_safe", "node03", None, "quorum is safe"),
                        ("link_down", "node11", None, "link ring1-storage to node11 is down"),
                    ])]
    return st


def text_of(renderable, width=80) -> list[str]:
    c = Console(width=width, record=True, force_terminal=False, color_system=None,
                file=io.StringIO())
    c.print(renderable)
    return c.export_text().splitlines()


def fits(lines: list[str], width=80) -> None:
    too_long = [ln for ln in lines if len(ln) > width]
    assert not too_long, too_long
    assert not any("\x1b" in ln for ln in lines)


def row(lines: list[str], first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for ln in lines:
        cells = re.split(r"\s{2,}", ln.strip())
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n" + "\n".join(lines))


def test_render_sample_fits_80_columns_and_says_what_matters():
    lines = text_of(watch.render(sample(), width=80, now=NOW))
    fits(lines)
    print("\n".join(lines))
    head = lines[0]
    assert "cluster test (id 77)" in head and "node beta" in head and "quorum yes" in head
    assert head.rstrip().endswith(watch._clock(NOW))
    assert len(head) == 80                       # the clock sits at the right edge
    assert lines[1] == "quorum: 2 of 3 votes (beta, gamma)"
    assert row(lines, "NODE") == ["NODE", "STATE", "LINKS", "HEARD", "LOST", "LOAD",
                                  "HOLDS"]
    assert row(lines, "alpha") == ["alpha", "down", "lo:down", "1.6s", "7", "0.45",
                                   "last:www"]
    assert row(lines, "beta") == ["beta", "self", "-", "-", "-", "0.45", "www"]
    assert row(lines, "gamma") == ["gamma", "up standby", "lo:up", "66ms", "0", "0.45", "-"]
    assert row(lines, "RESOURCE") == ["RESOURCE", "OWNER", "PLACED", "HERE", "FAILED ON"]
    assert row(lines, "www") == ["www", "beta", "beta", "started", "gamma"]
    assert "EVENTS" not in lines                 # the sample has no journal events


def test_render_without_quorum_and_without_resources():
    st = sample()
    st["quorum"] = {"quorate": False, "votes": 1, "expected": 3, "members": ["beta"],
                    "ping": None, "reason": "1 of 3 votes (beta); 2 needed"}
    st["resources"] = []
    lines = text_of(watch.render(st, width=80))
    fits(lines)
    assert "quorum NO" in lines[0] and lines[1] == "quorum: 1 of 3 votes (beta); 2 needed"
    assert not any(ln.startswith("RESOURCE") for ln in lines)
    assert not re.search(r"\d\d:\d\d:\d\d", lines[0])     # no clock without now


def test_render_conflicting_owners_and_pending_move():
    st = sample()
    st["resources"] = [_res("www", ["beta", "gamma"], placement="beta", local="started"),
                       _res("db", "beta", placement="gamma", local="stopping")]
    lines = text_of(watch.render(st, width=80, now=NOW))
    fits(lines)
    assert row(lines, "www")[1] == "CONFLICT:beta,gamma"
    assert row(lines, "db")[:4] == ["db", "beta", "gamma", "stopping"]


def test_render_wide_cluster_truncates_and_never_wraps():
    st = wide()
    lines = text_of(watch.render(st, width=80, now=NOW))
    print("\n".join(lines))
    fits(lines)
    # One line per node and per resource: nothing wrapped onto a second line.
    node_rows = [ln for ln in lines if ln.startswith("node")]
    assert len(node_rows) == 12
    res_start = next(i for i, ln in enumerate(lines) if ln.startswith("RESOURCE"))
    assert lines[res_start].split()[:2] == ["RESOURCE", "GROUP"]
    res_rows = lines[res_start + 1:res_start + 11]
    assert all(ln.startswith(("r", "resource-")) for ln in res_rows), res_rows
    assert lines[res_start + 11] == ""
    # Long cells end in an ellipsis; states and numbers stay whole.
    assert "…" in node_rows[0] and "…" in res_rows[1]
    for ln, s in zip(node_rows, ["up", "late", "down", "self", "up standby", "up",
                                 "unknown", "up", "up", "late", "up", "down"]):
        assert f"  {s}  " in ln, (s, ln)
    assert "13.70" in node_rows[10]             # the load column is whole
    # Long link names leave the cells (states in link order) for a legend.
    assert row(lines, "node01.frankfurt…")[1:3] == ["late", "up/down"]
    assert row(lines, "node02.frankfurt…")[1:3] == ["down", "down/down"]
    assert "LINKS: ring0-backbone/ring1-storage" in lines
    assert "quorum yes" in lines[0] and "…" in lines[0]     # names cut, not the quorum
    assert "CONFLICT:" in res_rows[4]
    # The events: the last five, one line each, the newline in a summary flattened.
    ev_start = lines.index("EVENTS")
    events = lines[ev_start + 1:]
    assert len(events) == 5 and events[0].split()[1] == "node_down"
    assert events[-1].split()[1:3] == ["link_down", "node11"]
    assert "r0 started on node03" in events[2]


@pytest.mark.parametrize("width", [60, 80, 100, 132])
def test_render_any_width_fits(width):
    fits(text_of(watch.render(wide(), width=width, now=NOW), width=width), width)
    fits(text_of(watch.render(sample(), width=width, now=NOW), width=width), width)


def test_long_names_get_an_ellipsis_not_a_second_line():
    st = sample()
    long = "a-node-name-that-is-much-longer-than-any-column-should-be-at-80"
    st["nodes"][0]["name"] = long
    st["nodes"][0]["held"] = {"a-resource-with-a-very-long-name-too-" * 3: "started"}
    st["resources"][0]["resource"] = "r-" + "x" * 90
    st["cluster"] = "c" * 100
    lines = text_of(watch.render(st, width=80, now=NOW))
    fits(lines)
    assert lines[0].endswith(watch._clock(NOW)) and "…" in lines[0]
    alpha = next(ln for ln in lines if ln.startswith("a-node-name"))
    assert "…" in alpha and "down" in alpha and "1.6s" in alpha
    assert sum(1 for ln in lines if ln.startswith("r-x")) == 1
    assert not any(ln.startswith("xxx") for ln in lines)


def test_unreachable_keeps_last_data_dimmed():
    lines = text_of(watch.render(sample(), width=80, now=NOW, error="connection refused",
                                 as_of=NOW - 3))
    fits(lines)
    assert lines[0] == (f"daemon unreachable: connection refused "
                        f"(data from {watch._clock(NOW - 3)})")
    assert row(lines, "alpha")[1] == "down"       # the last good data is still there
    c = Console(width=80, record=True, force_terminal=True, color_system="standard",
                file=io.StringIO())
    c.print(watch.render(sample(), width=80, now=NOW, error="connection refused"))
    ansi = c.export_text(styles=True)
    assert "\x1b[1;31mdaemon unreachable" in ansi
    assert "\x1b[2m" in ansi.split("\n", 1)[1]    # the rest is dim
    nothing = text_of(watch.render(None, width=80, error="no such file"))
    assert nothing[0] == "daemon unreachable: no such file"
    assert "waiting for the daemon" in nothing[1]


def test_format_status_still_prints_the_sample():
    text = status.format_status(sample())
    assert "quorum: yes, 2 of 3 votes (beta, gamma)" in text and "last:www" in text


class FakeDaemon:
    """fetch() for run(): answers, then refuses once, then answers, then ^C."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return {"ok": True, **copy.deepcopy(step)}


def _recovered() -> dict:
    st = sample()
    st["nodes"][0].update(state="up", links={"lo": "up"}, last_heard_ms=12.0)
    st["quorum"]["reason"] = "3 of 3 votes (alpha, beta, gamma)"
    return st


def test_run_in_a_pipe_prints_plain_frames_and_survives_an_outage():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    fake = FakeDaemon([sample(), control.ControlError("cannot reach the daemon at "
                                                      "/run/heart.sock: connection refused"),
                       _recovered(), KeyboardInterrupt()])
    sleeps = []
    assert watch.run(fake, 0.2, console=console, sleep=sleeps.append) == 0
    assert fake.calls == 4 and sleeps == [0.2, 0.2, 0.2]
    text = out.getvalue()
    assert "\x1b" not in text
    # A frame, a blank line, the next frame (which starts with its header).
    frames = re.split(r"\n\n(?=cluster |daemon unreachable)", text.strip("\n"))
    assert len(frames) == 3, text
    first, down, back = frames
    assert "alpha  down" in first and "daemon unreachable" not in first
    assert down.splitlines()[0].startswith(
        "daemon unreachable: cannot reach the daemon at /run/heart.sock: connection")
    assert "alpha  down" in down               # the last good data, still shown
    assert "daemon unreachable" not in back
    assert row(back.splitlines(), "alpha")[1:3] == ["up", "lo:up"]
    assert "3 of 3 votes" in back
    for ln in text.splitlines():
        assert len(ln) <= 80


def test_run_on_a_terminal_uses_live_and_returns_0_on_ctrl_c():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system="standard",
                      height=40)
    fake = FakeDaemon([OSError(111, "Connection refused"), sample(), KeyboardInterrupt()])
    assert watch.run(fake, 0.01, console=console, sleep=lambda s: None) == 0
    text = out.getvalue()
    assert "daemon unreachable" in text and "Connection refused" in text
    assert "waiting for the daemon" in text
    assert "\x1b[?25l" in text and text.rstrip().endswith("\x1b[?25h")   # cursor back
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "quorum: 2 of 3 votes (beta, gamma)" in plain


def test_cli_watch_uses_the_live_view(monkeypatch):
    seen = {}

    def fake_run(fetch, interval, console=None):
        seen["interval"] = interval
        seen["status"] = fetch()
        return 0

    monkeypatch.setattr(watch, "run", fake_run)
    monkeypatch.setattr(cli, "_control", lambda args, cmd, **kw: {"ok": True, **sample()})
    assert cli.main(["status", "--socket", "/nonexistent/heart.sock", "--watch", "0.5"]) == 0
    assert seen["interval"] == 0.5 and seen["status"]["node"] == "beta"


def test_cli_watch_json_prints_one_document_per_refresh(monkeypatch, capsys):
    calls = []

    def fake_control(args, cmd, **kw):
        calls.append(cmd)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {"ok": True, **sample()}

    monkeypatch.setattr(cli, "_control", fake_control)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    assert cli.main(["status", "--socket", "/nonexistent/heart.sock", "--json", "--watch",
                     "0.1"]) == 0           # ^C ends it, as it ends the live view
    out = capsys.readouterr().out
    assert out.count('"cluster": "test"') == 2


def test_heart_status_watch_in_a_pipe_against_real_daemons(cluster):
    """`heart status --watch 0.2 | cat`: plain frames; the daemon stops (red
    line, last data kept), starts again (recovered); ^C ends it with 0."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    c = cluster(names=("alpha", "beta"))
    c.start_all()
    c.wait(lambda: (st := c.status("beta")) and all(
        n["state"] in ("self", "up") for n in st["nodes"]), 15, "alpha up for beta")
    p = subprocess.Popen([sys.executable, "-m", "heart", "status", "-c", str(c.config),
                          "--node", "beta", "--watch", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**__import__("os").environ, "COLUMNS": "80"})
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()
    try:
        c.wait(lambda: sum(ln.startswith("cluster ") for ln in out) >= 2, 15, "2 frames")
        assert c.stop("beta") == 0
        c.wait(lambda: any(ln.startswith("daemon unreachable: ") for ln in out), 10,
               "the unreachable line")
        c.start("beta")

        def recovered():
            frames = re.split(r"\n\n(?=cluster |daemon unreachable)", "".join(out))
            first_down = next(i for i, f in enumerate(frames)
                              if f.startswith("daemon unreachable"))
            return any(f.startswith("cluster ") for f in frames[first_down + 1:-1])

        c.wait(recovered, 20, "a good frame after the restart")
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(10)
    time.sleep(0.1)
    text = "".join(out)
    assert rc == 0, p.stderr.read()
    assert "\x1b" not in text
    assert all(len(ln.rstrip("\n")) <= 80 for ln in out)
    assert "NODE" in text and "alpha" in text and "quorum: " in text
    assert "RESOURCE" in text and "www" in text
    assert "EVENTS" in text and "placement " in text     # from beta's journal
    frames = re.split(r"\n\n(?=cluster |daemon unreachable)", text.strip("\n"))
    down = [f for f in frames if f.startswith("daemon unreachable: ")]
    assert down and "node beta" in down[0]               # the last data, kept
    assert frames.index(down[-1]) < len(frames) - 1
    assert frames[-1].startswith("cluster ")             # and recovered
