"""heart.dispatch: commands, agents, the resource supervisor, handlers, fencing.

Real subprocesses (``#!/bin/sh`` scripts written in tmp_path), no root needed.
Config objects are local stand-ins with the fields of heart.config's
ResourceConfig / HandlerConfig, so these tests do not depend on config.py.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from conftest import need

from heart import dispatch as d

DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"


@dataclass
class Res:
    """Stand-in for heart.config.ResourceConfig (same field names)."""

    name: str = "r1"
    type: str = "script"
    script: str | None = None
    agent: str | None = None
    ocf_root: str = "/usr/lib/ocf"
    params: dict = field(default_factory=dict)
    timeout_us: int = 5_000_000
    monitor_interval_us: int = 0
    monitor_timeout_us: int = 5_000_000
    retries: int = 0
    group: str | None = None
    line: int | None = None


@dataclass
class Handler:
    """Stand-in for heart.config.HandlerConfig."""

    events: frozenset
    command: list
    timeout_us: int = 5_000_000
    line: int | None = None


def script(dir_: Path, name: str, body: str) -> str:
    path = dir_ / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gone(pid: int) -> bool:
    """Dead, or a zombie (PID 1 in a container may never reap orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree_of(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid] + [p.pid for p in root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def reaper():
    """PIDs a test started; any still alive at teardown are killed (no strays
    even when an assertion fails)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


async def wait_for_file(path: Path, lines: int = 1, timeout: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if path.exists():
            got = path.read_text().split()
            if len(got) >= lines:
                return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} did not get {lines} lines in {timeout}s")


async def until(pred, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- run_command


def test_output_is_merged_and_rc_reported():
    async def main():
        return await d.run_command(
            ["sh", "-c", "echo out; echo err >&2; echo $HEART_X; exit 3"],
            env={"HEART_X": "x-value"}, timeout_s=5,
        )

    r = asyncio.run(main())
    assert (r.ok, r.rc, r.timed_out) == (False, 3, False)
    assert r.output == "out\nerr\nx-value\n"
    assert r.error == "exited with 3"
    assert r.attempts == 1 and r.duration_s < 5


def test_output_keeps_the_last_4_kib_and_replaces_bad_utf8():
    async def main():
        # 10000 'a', then an invalid byte, then the end marker.
        return await d.run_command(
            ["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; printf '\\377END'"],
            env={}, timeout_s=5,
        )

    r = asyncio.run(main())
    assert r.ok
    raw = r.output.encode("utf-8")
    assert r.output.endswith("\ufffdEND")
    assert len(r.output) == 4096  # 4092 'a' + one replaced byte + "END"
    assert len(raw) > 4096  # the replacement character is 3 bytes in UTF-8


@pytest.mark.parametrize("kind", ["missing", "not_executable", "directory"])
def test_a_program_that_cannot_run_is_a_result_not_an_exception(tmp_path, kind):
    path = tmp_path / "prog"
    if kind == "not_executable":
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o644)
    elif kind == "directory":
        path.mkdir()
    reason = {"missing": "No such file or directory"}.get(kind, "Permission denied")

    async def main():
        return await d.run_command([str(path), "start"], env={}, timeout_s=5)

    r = asyncio.run(main())
    assert not r.ok and r.rc is None and not r.timed_out
    assert r.error == f"cannot execute {path}: {reason}"


def test_stdin_is_delivered_and_a_child_that_ignores_it_does_not_hang(tmp_path):
    async def main():
        a = await d.run_command(["cat"], env={}, stdin=b'{"event": "x"}', timeout_s=5)
        # 1 MiB is more than a pipe holds; the child exits without reading it.
        b = await d.run_command(["true"], env={}, stdin=b"x" * (1 << 20), timeout_s=5)
        return a, b

    a, b = asyncio.run(main())
    assert a.ok and a.output == '{"event": "x"}'
    assert b.ok and b.duration_s < 2


def test_background_child_holding_stdout_does_not_delay_the_result(tmp_path, reaper):
    """A start script that leaves a daemon running with our pipe as its stdout:
    the result comes when the script exits, and the daemon is left alone."""
    pidfile = tmp_path / "bg.pid"
    prog = script(tmp_path, "bg", f"sleep 1000 &\necho $! > {pidfile}\necho started\n")

    async def main():
        return await d.run_command([prog], env={}, timeout_s=10)

    r = asyncio.run(main())
    bg = int(pidfile.read_text())
    reaper.append(bg)
    assert r.ok and r.output == "started\n"
    assert r.duration_s < 2
    assert not gone(bg)  # normal exit: the resource's daemon is not ours to kill


def test_timeout_kills_the_group_and_every_descendant(tmp_path, reaper):
    """Grandchildren in the group and one that left it with setsid are all killed."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, "hang", f"""
echo $$ > {pids}
sleep 1000 &
echo $! >> {pids}
setsid sleep 1000 &
echo $! >> {pids}
echo hanging
sleep 1000
""")

    async def main():
        task = asyncio.ensure_future(d.run_command([prog], env={}, timeout_s=1.0))
        listed = [int(p) for p in await wait_for_file(pids, 3)]
        await asyncio.sleep(0.2)
        seen = set(listed) | set(tree_of(listed[0]))  # includes the foreground sleep
        reaper.extend(seen)
        return await task, seen

    r, seen = asyncio.run(main())
    assert len(seen) >= 4
    assert r.timed_out and not r.ok
    assert r.rc == -signal.SIGTERM
    assert "hanging" in r.output
    assert r.error.startswith("timed out after 1s")
    assert 1.0 <= r.duration_s < 3.0
    assert all(gone(pid) for pid in seen), [p for p in seen if not gone(p)]


def test_a_tree_that_ignores_sigterm_is_sigkilled_after_the_grace(tmp_path, reaper):
    pids = tmp_path / "pids"
    prog = script(tmp_path, "stubborn", f"""
trap '' TERM
echo $$ > {pids}
sleep 1000 &
echo $! >> {pids}
sleep 1000
""")

    async def main():
        task = asyncio.ensure_future(
            d.run_command([prog], env={}, timeout_s=0.3, kill_grace_s=0.3)
        )
        listed = [int(p) for p in await wait_for_file(pids, 2)]
        reaper.extend(listed)
        await asyncio.sleep(0.1)
        seen = set(listed) | set(tree_of(listed[0]))
        reaper.extend(seen)
        return await task, seen

    r, seen = asyncio.run(main())
    assert r.timed_out and r.rc == -signal.SIGKILL
    assert r.duration_s >= 0.55
    assert all(gone(pid) for pid in seen)


def test_cancelling_a_run_kills_its_tree(tmp_path, reaper):
    pids = tmp_path / "pids"
    prog = script(tmp_path, "long", f"echo $$ > {pids}\nsleep 1000 &\nsleep 1000\n")

    async def main():
        task = asyncio.ensure_future(d.run_command([prog], env={}, timeout_s=60))
        (root,) = [int(p) for p in await wait_for_file(pids)]
        await asyncio.sleep(0.2)
        seen = tree_of(root)
        reaper.extend(seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 3
    assert all(gone(pid) for pid in seen)


def test_no_file_descriptors_leak(tmp_path):
    async def main():
        for _ in range(3):
            await d.run_command(["cat"], env={}, stdin=b"x" * 100_000, timeout_s=5)
            await d.run_command(["true"], env={}, stdin=b"x", timeout_s=5)
            await d.run_command([str(tmp_path / "missing")], env={}, stdin=b"x", timeout_s=5)
            await d.run_command(["sleep", "10"], env={}, stdin=b"x", timeout_s=0.05)

    asyncio.run(main())  # warm up (the loop's own fds, executor threads)
    before = len(os.listdir("/proc/self/fd"))
    asyncio.run(main())
    assert len(os.listdir("/proc/self/fd")) == before


# --------------------------------------------------------------------------- script agent


def lsb_script(tmp_path: Path) -> str:
    """start/stop via a state file; status exit code from the file 'code' if present."""
    return script(tmp_path, "svc", f"""
cd {tmp_path}
echo "$1 $HEART_RESOURCE $HEART_ACTION $HEART_PARAM_LISTEN_PORT $HEART_CLUSTER" >> calls
case "$1" in
start) touch state; exit 0;;
stop) [ -f stopcode ] && exit $(cat stopcode); rm -f state; exit 0;;
status)
    [ -f code ] && exit $(cat code)
    [ -f state ] && exit 0
    exit 3;;
esac
exit 2
""")


@pytest.mark.parametrize("code,status", [(0, "running"), (3, "stopped"), (1, "failed"),
                                         (4, "failed"), (150, "failed")])
def test_lsb_status_codes(tmp_path, code, status):
    agent = d.ScriptAgent(Res(script=lsb_script(tmp_path)))
    (tmp_path / "code").write_text(str(code))
    r = asyncio.run(agent.monitor())
    assert r.action == "monitor" and r.rc == code
    assert r.status == status
    assert r.ok is (status == "running")
    assert (r.error is None) is (status != "failed")


def test_script_agent_environment_and_actions(tmp_path):
    res = Res(name="web", script=lsb_script(tmp_path), params={"listen-port": "8080"})
    agent = d.make_agent(res, {"HEART_CLUSTER": "prod"})
    assert isinstance(agent, d.ScriptAgent)

    async def main():
        return [await agent.monitor(), await agent.start(), await agent.monitor(),
                await agent.stop(), await agent.monitor()]

    results = asyncio.run(main())
    assert [(r.action, r.ok, r.status) for r in results] == [
        ("monitor", False, "stopped"), ("start", True, "running"),
        ("monitor", True, "running"), ("stop", True, "stopped"),
        ("monitor", False, "stopped"),
    ]
    assert all(r.resource == "web" for r in results)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:2] == ["status web status 8080 prod", "start web start 8080 prod"]


def test_stopping_a_stopped_script_resource_is_ok_even_if_stop_complains(tmp_path):
    agent = d.ScriptAgent(Res(script=lsb_script(tmp_path)))
    (tmp_path / "stopcode").write_text("1")
    r = asyncio.run(agent.stop())  # no state file: status says 3
    assert r.ok and r.status == "stopped" and r.rc == 1
    (tmp_path / "state").touch()  # now it is running and stop fails: not ok
    r = asyncio.run(agent.stop())
    assert not r.ok and r.status == "failed" and r.error == "exited with 1"


# --------------------------------------------------------------------------- OCF agents


def fake_ocf(tmp_path: Path) -> Path:
    root = tmp_path / "ocf"
    (root / "resource.d" / "test").mkdir(parents=True)
    script(root / "resource.d" / "test", "Fake", f"""
env | grep -E '^(OCF_|HEART_)' | sort > {tmp_path}/env.$1
code=0
[ -f {tmp_path}/code.$1 ] && code=$(cat {tmp_path}/code.$1)
[ "$code" = 5 ] && echo "ocf-exit-reason:the frobnicator is not installed" >&2
exit $code
""")
    return root


def test_ocf_environment(tmp_path):
    root = fake_ocf(tmp_path)
    res = Res(name="vip", type="ocf", agent="test:Fake", ocf_root=str(root),
              params={"ip": "192.0.2.10", "cidr_netmask": "24"},
              timeout_us=5_000_000, monitor_interval_us=10_000_000,
              monitor_timeout_us=2_000_000)
    agent = d.make_agent(res, {"HEART_NODE": "alpha"})
    assert isinstance(agent, d.OcfAgent)
    assert agent.path == str(root / "resource.d/test/Fake")

    async def main():
        return await agent.start(), await agent.monitor()

    start, mon = asyncio.run(main())
    assert start.ok and start.status == "running"
    assert mon.ok and mon.status == "running"
    env = dict(line.split("=", 1) for line in (tmp_path / "env.start").read_text().splitlines())
    assert env["OCF_ROOT"] == str(root)
    assert env["OCF_FUNCTIONS_DIR"] == str(root / "lib/heartbeat")
    assert env["OCF_RESOURCE_INSTANCE"] == "vip"
    assert env["OCF_RESOURCE_TYPE"] == "Fake"
    assert env["OCF_RESOURCE_PROVIDER"] == "test"
    assert env["OCF_RESKEY_ip"] == "192.0.2.10"
    assert env["OCF_RESKEY_cidr_netmask"] == "24"
    assert env["OCF_RESKEY_CRM_meta_timeout"] == "5000"
    assert env["HEART_NODE"] == "alpha"
    menv = dict(line.split("=", 1) for line in (tmp_path / "env.monitor").read_text().splitlines())
    assert menv["OCF_RESKEY_CRM_meta_timeout"] == "2000"
    assert menv["OCF_RESKEY_CRM_meta_interval"] == "10000"


@pytest.mark.parametrize("action,code,ok,status,error", [
    ("start", 1, False, "failed", "OCF_ERR_GENERIC (1)"),
    ("start", 7, False, "failed", "OCF_NOT_RUNNING (7)"),
    ("stop", 7, True, "stopped", None),
    ("stop", 1, False, "failed", "OCF_ERR_GENERIC (1)"),
    ("monitor", 7, False, "stopped", None),
    ("monitor", 8, False, "failed", "OCF_RUNNING_PROMOTED (8)"),
    ("monitor", 5, False, "failed", "OCF_ERR_INSTALLED (5)"),
])
def test_ocf_exit_codes(tmp_path, action, code, ok, status, error):
    root = fake_ocf(tmp_path)
    (tmp_path / f"code.{action}").write_text(str(code))
    agent = d.OcfAgent(Res(type="ocf", agent="test:Fake", ocf_root=str(root)))
    r = asyncio.run(getattr(agent, action)())
    assert (r.action, r.rc, r.ok, r.status) == (action, code, ok, status)
    if error is None:
        assert r.error is None
    else:
        assert r.error.startswith(error)
    if code == 5:
        assert r.error.endswith(": the frobnicator is not installed")


def test_real_ocf_dummy_agent(tmp_path):
    need(None if os.access(DUMMY, os.X_OK) else
         f"{DUMMY} is missing (Debian package resource-agents)")
    state = tmp_path / "dummy.state"
    res = Res(name="dummy", type="ocf", agent="heartbeat:Dummy", params={"state": str(state)})
    agent = d.make_agent(res)

    async def main():
        before, start = await agent.monitor(), await agent.start()
        assert state.exists()
        return [before, start, await agent.monitor(), await agent.stop(), await agent.monitor()]

    before, start, running, stop, after = asyncio.run(main())
    assert (before.rc, before.status) == (7, "stopped"), before
    assert start.ok and start.rc == 0, start
    assert (running.rc, running.status, running.ok) == (0, "running", True), running
    assert stop.ok and stop.rc == 0 and not state.exists(), stop
    assert (after.rc, after.status) == (7, "stopped")


def test_make_agent_rejects_bad_definitions():
    with pytest.raises(ValueError, match="unknown type 'lsb'"):
        d.make_agent(Res(type="lsb", script="/bin/true"))
    with pytest.raises(ValueError, match='not "provider:type"'):
        d.make_agent(Res(type="ocf", agent="Dummy"))


# --------------------------------------------------------------------------- supervisor


def logging_script(tmp_path: Path, stop_sleep: float = 0.0) -> str:
    return script(tmp_path, "logged", f"""
echo "$1" >> {tmp_path}/log
case "$1" in
start) touch {tmp_path}/state;;
stop) sleep {stop_sleep}; rm -f {tmp_path}/state;;
status) [ -f {tmp_path}/state ] && exit 0; exit 3;;
esac
exit 0
""")


def test_pending_requests_collapse_to_the_latest(tmp_path):
    prog = logging_script(tmp_path, stop_sleep=0.4)
    results: list[d.ActionResult] = []
    log = tmp_path / "log"

    async def main():
        sup = d.ResourceSupervisor(Res(script=prog), None, results.append)
        assert sup.state == "stopped"
        sup.request("start")
        assert sup.state in ("stopped", "starting")
        await sup.wait_idle()
        assert sup.state == "started"
        sup.request("stop")
        await until(lambda: sup.state == "stopping")
        await asyncio.sleep(0.1)
        sup.request("start")
        sup.request("stop")
        sup.request("start")
        await sup.wait_idle()
        assert sup.state == "started"
        assert log.read_text().split() == ["start", "stop", "start"]

        # Requests that cancel out while a stop runs: nothing after it.
        sup.request("stop")
        await until(lambda: sup.state == "stopping")
        sup.request("start")
        sup.request("stop")
        await sup.wait_idle()
        assert sup.state == "stopped"

        # A request equal to the current state does nothing.
        sup.request("stop")
        await sup.wait_idle()
        await asyncio.sleep(0.05)
        await sup.close()

    asyncio.run(main())
    assert log.read_text().split() == ["start", "stop", "start", "stop"]
    assert [(r.action, r.ok, r.attempts) for r in results] == [
        ("start", True, 1), ("stop", True, 1), ("start", True, 1), ("stop", True, 1),
    ]


def counting_script(tmp_path: Path, succeed_at: int) -> str:
    return script(tmp_path, "flaky", f"""
n=$(cat {tmp_path}/count 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > {tmp_path}/count
echo "attempt $n"
[ "$n" -ge {succeed_at} ] && exit 0
exit 1
""")


def test_failed_start_is_retried(tmp_path):
    results: list[d.ActionResult] = []

    async def main():
        sup = d.ResourceSupervisor(Res(script=counting_script(tmp_path, 3), retries=2),
                                   None, results.append, retry_delay_s=0.05)
        sup.request("start")
        await sup.wait_idle()
        return sup.state

    assert asyncio.run(main()) == "started"
    (r,) = results
    assert r.ok and r.attempts == 3 and r.output == "attempt 3\n"
    assert r.duration_s >= 0.1  # two retry delays


def test_start_that_keeps_failing_is_reported_once_and_state_is_failed(tmp_path):
    results: list[d.ActionResult] = []
    sup_last: list[d.ActionResult | None] = []

    async def main():
        sup = d.ResourceSupervisor(Res(script=counting_script(tmp_path, 99), retries=1),
                                   None, results.append, retry_delay_s=0.05)
        assert sup.last_result is None
        sup.request("start")
        await sup.wait_idle()
        state = sup.state
        sup_last.append(sup.last_result)
        await asyncio.sleep(0.2)  # not retried on its own
        return state

    assert asyncio.run(main()) == "failed"
    (r,) = results
    assert sup_last[0] is r
    assert (r.action, r.ok, r.attempts, r.status) == ("start", False, 2, "failed")
    assert r.error == "exited with 1" and r.output == "attempt 2\n"
    assert (tmp_path / "count").read_text().strip() == "2"


def test_monitor_failure_is_reported_and_marks_the_resource_failed(tmp_path):
    prog = logging_script(tmp_path)
    results: list[d.ActionResult] = []
    log = tmp_path / "log"

    def monitors() -> int:
        return log.read_text().split().count("status")

    async def main():
        sup = d.ResourceSupervisor(Res(script=prog, monitor_interval_us=50_000), None,
                                   results.append)
        sup.request("start")
        await sup.wait_idle()
        await until(lambda: monitors() >= 3)
        assert [r.action for r in results] == ["start"]  # good monitors are not reported
        (tmp_path / "state").unlink()  # the service dies
        await until(lambda: len(results) == 2)
        assert sup.state == "failed"
        n = monitors()
        await asyncio.sleep(0.2)
        assert monitors() == n  # no monitoring while failed
        sup.request("stop")
        await sup.wait_idle()
        assert sup.state == "stopped"
        sup.request("start")
        await sup.wait_idle()
        assert sup.state == "started"
        await until(lambda: monitors() > n)
        await sup.close()

    asyncio.run(main())
    mon = results[1]
    assert (mon.action, mon.ok, mon.status, mon.rc) == ("monitor", False, "stopped", 3)
    assert [r.action for r in results] == ["start", "monitor", "stop", "start"]


def test_probe_adopts_what_the_agent_reports(tmp_path):
    """A resource left running by a previous daemon: probe makes it "started", so a
    start request does nothing and a stop request really stops it."""
    prog = logging_script(tmp_path)
    log = tmp_path / "log"
    (tmp_path / "state").touch()
    results: list[d.ActionResult] = []

    async def main():
        sup = d.ResourceSupervisor(Res(script=prog), None, results.append)
        sup.request("start")  # queued behind the probe; judged against its answer
        r = await sup.probe()
        assert (r.status, sup.state) == ("running", "started")
        await sup.wait_idle()
        sup.request("stop")
        await sup.wait_idle()
        assert sup.state == "stopped"
        other = d.ResourceSupervisor(Res(name="x", script=script(tmp_path, "bad", "exit 1\n")),
                                     None, results.append)
        r = await other.probe()
        assert (r.status, other.state) == ("failed", "failed")
        await sup.close()
        await other.close()

    asyncio.run(main())
    # The start request waited for the probe, which said "running": no start ran.
    assert log.read_text().split() == ["status", "stop"]
    assert [r.action for r in results] == ["stop"]


def test_a_hung_start_does_not_block_other_supervisors_or_the_loop(tmp_path, reaper):
    pids = tmp_path / "pids"
    hung = script(tmp_path, "hung", f"""
echo $$ > {pids}
sleep 1000 &
echo $! >> {pids}
echo "starting up"
sleep 1000
""")
    quick = logging_script(tmp_path)
    results: list[d.ActionResult] = []

    async def main():
        loop = asyncio.get_running_loop()
        ticks: list[float] = []

        async def ticker():
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.01)

        tick_task = asyncio.ensure_future(ticker())
        slow = d.ResourceSupervisor(Res(name="hung", script=hung, timeout_us=1_000_000),
                                    None, results.append)
        fast = d.ResourceSupervisor(Res(name="quick", script=quick), None, results.append)
        slow.request("start")
        listed = [int(p) for p in await wait_for_file(pids, 2)]
        await asyncio.sleep(0.1)
        seen = set(listed) | set(tree_of(listed[0]))
        reaper.extend(seen)
        fast.request("start")
        await fast.wait_idle()
        assert fast.state == "started"
        assert slow.state == "starting"  # still hanging
        await slow.wait_idle()
        tick_task.cancel()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        return slow.state, seen, gaps

    state, seen, gaps = asyncio.run(main())
    assert [r.resource for r in results] == ["quick", "hung"]
    r = results[1]
    assert state == "failed"
    assert r.timed_out and not r.ok and r.status == "failed"
    assert "starting up" in r.output
    assert len(seen) >= 3
    assert all(gone(pid) for pid in seen), [p for p in seen if not gone(p)]
    assert len(gaps) > 50
    assert max(gaps) < 0.2, max(gaps)


def test_close_kills_a_running_monitor_and_lets_a_start_finish(tmp_path, reaper):
    pids = tmp_path / "pids"
    prog = script(tmp_path, "svc", f"""
case "$1" in
start) sleep 0.3; exit 0;;
status) echo $$ >> {pids}; sleep 1000;;
esac
exit 0
""")
    results: list[d.ActionResult] = []

    async def main():
        # close() during a start: the start completes and is reported.
        a = d.ResourceSupervisor(Res(name="a", script=prog), None, results.append)
        a.request("start")
        await asyncio.sleep(0.05)
        await a.close()
        assert a.state == "started"
        with pytest.raises(RuntimeError, match="closed"):
            a.request("stop")

        # close() during a (hung) monitor: the monitor's tree is killed at once.
        b = d.ResourceSupervisor(Res(name="b", script=prog, monitor_interval_us=50_000,
                                     monitor_timeout_us=60_000_000), None, results.append)
        b.request("start")
        await b.wait_idle()
        (root,) = [int(p) for p in await wait_for_file(pids)]
        await asyncio.sleep(0.1)
        seen = tree_of(root)
        reaper.extend(seen)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.close()
        return seen, loop.time() - t0

    seen, took = asyncio.run(main())
    assert [(r.resource, r.action, r.ok) for r in results] == [("a", "start", True),
                                                                ("b", "start", True)]
    assert took < 2.0
    assert len(seen) == 2 and all(gone(pid) for pid in seen)


def test_supervisor_env_reaches_the_agent(tmp_path):
    prog = script(tmp_path, "envy", f'echo "$HEART_CLUSTER $HEART_NODE" > {tmp_path}/seen\n')
    results: list[d.ActionResult] = []

    async def main():
        sup = d.ResourceSupervisor(Res(script=prog), None, results.append,
                                   env={"HEART_CLUSTER": "web", "HEART_NODE": "alpha"})
        sup.request("start")
        await sup.wait_idle()
        await sup.close()

    asyncio.run(main())
    assert (tmp_path / "seen").read_text() == "web alpha\n"


# --------------------------------------------------------------------------- handlers, fence


def test_handler_environment_and_json_stdin(tmp_path):
    prog = script(tmp_path, "notify", f"""
env | grep '^HEART_' | sort > {tmp_path}/env.$HEART_EVENT
cat > {tmp_path}/stdin.$HEART_EVENT
""")
    results: list[d.ActionResult] = []
    handlers = [Handler(events=frozenset({"node_down"}), command=[prog])]

    async def main():
        runner = d.HandlerRunner(handlers, {"HEART_CLUSTER": "web", "HEART_LOCAL_NODE": "alpha"},
                                 results.append)
        assert runner.fire("node_up", {"node": "beta"}) == 0  # not subscribed
        assert runner.fire("node_down", {
            "node": "beta", "reason": "timeout", "silent_ms": 512.5,
            "links": {"lan": {"up": False}}, "fenced": False, "resource": None,
        }) == 1
        await runner.close()

    asyncio.run(main())
    assert not (tmp_path / "env.node_up").exists()
    env = dict(line.split("=", 1)
               for line in (tmp_path / "env.node_down").read_text().splitlines())
    assert env["HEART_EVENT"] == "node_down"
    assert env["HEART_NODE"] == "beta"
    assert env["HEART_REASON"] == "timeout"
    assert env["HEART_RESOURCE"] == ""
    assert env["HEART_CLUSTER"] == "web"
    assert env["HEART_LOCAL_NODE"] == "alpha"
    assert env["HEART_SILENT_MS"] == "512.5"
    assert env["HEART_FENCED"] == "false"
    assert json.loads(env["HEART_LINKS"]) == {"lan": {"up": False}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", env["HEART_TIME"])
    assert json.loads((tmp_path / "stdin.node_down").read_text()) == {
        "event": "node_down", "node": "beta", "reason": "timeout", "silent_ms": 512.5,
        "links": {"lan": {"up": False}}, "fenced": False, "resource": None,
    }
    (r,) = results
    assert (r.action, r.ok, r.rc, r.resource) == ("node_down", True, 0, None)
    assert r.command == prog


def test_handlers_run_in_order_each_with_its_own_timeout(tmp_path, reaper):
    ordered = script(tmp_path, "ordered",
                     f'sleep 0.02\necho "$HEART_EVENT $HEART_RESOURCE" >> {tmp_path}/order\n')
    hang = script(tmp_path, "hang", f"echo $$ >> {tmp_path}/hangpids\nsleep 1000\n")
    results: list[d.ActionResult] = []
    handlers = [
        Handler(events=frozenset({"resource_acquire", "resource_release"}), command=[ordered]),
        Handler(events=frozenset({"resource_acquire"}), command=[hang], timeout_us=300_000),
    ]

    async def main():
        runner = d.HandlerRunner(handlers, {}, results.append)
        for i in range(5):
            runner.fire("resource_acquire" if i % 2 == 0 else "resource_release",
                        {"resource": f"r{i}"})
        await until(lambda: len([r for r in results if r.command == ordered]) == 5)
        hung_done = [r for r in results if r.command == hang]
        await runner.close()
        return hung_done

    hung_done_early = asyncio.run(main())
    reaper.extend(int(p) for p in (tmp_path / "hangpids").read_text().split())
    assert (tmp_path / "order").read_text().splitlines() == [
        "resource_acquire r0", "resource_release r1", "resource_acquire r2",
        "resource_release r3", "resource_acquire r4",
    ]
    # The fast handler finished all five while the hanging one was still on its first.
    assert hung_done_early == []
    hung = [r for r in results if r.command == hang]
    assert [r.resource for r in hung] == ["r0", "r2", "r4"]
    assert all(r.timed_out and not r.ok for r in hung)
    assert all(gone(int(p)) for p in (tmp_path / "hangpids").read_text().split())


def test_handler_close_without_drain_kills_the_running_handler(tmp_path, reaper):
    hang = script(tmp_path, "hang", f"echo $$ >> {tmp_path}/pids\nsleep 1000\n")

    async def main():
        runner = d.HandlerRunner([Handler(events=frozenset({"stall"}), command=[hang],
                                          timeout_us=60_000_000)], {}, lambda r: None)
        runner.fire("stall", {"stall_ms": 900})
        runner.fire("stall", {"stall_ms": 950})
        (pid,) = [int(p) for p in await wait_for_file(tmp_path / "pids")]
        reaper.append(pid)
        await runner.close(drain=False)
        assert runner.fire("stall", {}) == 0
        return pid

    pid = asyncio.run(main())
    assert gone(pid)
    assert len((tmp_path / "pids").read_text().split()) == 1  # the queued one was dropped


def test_run_fence(tmp_path):
    prog = script(tmp_path, "fence", 'echo "fencing $HEART_NODE ($HEART_EVENT) in $HEART_CLUSTER"\n')

    async def main():
        ok = await d.run_fence([prog, "--off"], "beta", 5, {"HEART_CLUSTER": "web"})
        bad = await d.run_fence([str(tmp_path / "nope")], "beta", 5, {})
        return ok, bad

    ok, bad = asyncio.run(main())
    assert ok.ok and ok.action == "fence" and ok.output == "fencing beta (fence) in web\n"
    assert not bad.ok and bad.error.startswith(f"cannot execute {tmp_path / 'nope'}: ")


def test_action_result_outcome():
    """The one word metrics and logs use for how an action ended."""
    def r(**kw):
        base = dict(resource="vip", action="start", ok=False, rc=1, timed_out=False,
                    output="", duration_s=0.1)
        return d.ActionResult(**{**base, **kw})

    assert r(ok=True, rc=0).outcome == "ok"
    assert r(timed_out=True, rc=None).outcome == "timeout"
    assert r(rc=None, error="exec failed: No such file").outcome == "error"
    assert r().outcome == "failed"
