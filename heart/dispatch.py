"""Running things on the daemon's behalf: resource agents, event handlers, fencing.

Everything here is asyncio and is used from the daemon's main thread.  The
daemon's event loop also drains the heartbeat engine, so nothing in this module
may block it: children are spawned with ``asyncio.create_subprocess_exec``, their
output is read through non-blocking pipes, waits are ``await``s with timeouts,
and a script that hangs is killed (its whole process tree) when its time is up.

Three layers:

* :func:`run_command` runs one argv once with a timeout and returns an
  :class:`ActionResult`.  It never raises for a program that cannot be run.
* Agents (:class:`ScriptAgent`, :class:`OcfAgent`, built by :func:`make_agent`)
  turn ``start`` / ``stop`` / ``monitor`` into one call of an LSB-style script
  or an OCF resource agent and interpret its exit code.
* :class:`ResourceSupervisor` serialises the actions of one resource (one
  queue, pending requests collapse to the latest), retries failed start/stop,
  and runs the recurring monitor.  :class:`HandlerRunner` runs the operator's
  event handlers, one ordered queue per handler.

``heart.config`` is only imported for type hints, so this module can be used
(and tested) with any object that has the documented fields.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from heart.config import HandlerConfig, ResourceConfig

__all__ = [
    "KILL_GRACE_S",
    "LSB_STATUS",
    "OCF_CODES",
    "OUTPUT_LIMIT",
    "ActionResult",
    "Agent",
    "HandlerRunner",
    "OcfAgent",
    "ResourceSupervisor",
    "ScriptAgent",
    "env_name",
    "make_agent",
    "run_command",
    "run_fence",
]

log = logging.getLogger("heart.dispatch")

#: Bytes of merged stdout+stderr kept per run (the tail: the end says why it failed).
OUTPUT_LIMIT = 4096
#: Seconds between SIGTERM and SIGKILL when a run times out or is cancelled.
KILL_GRACE_S = 1.0
#: After the child exits, how long to keep reading its pipe.  A background
#: process it started may hold the pipe open for ever; what the child itself
#: wrote is already in the pipe, so a short wait is enough.
_DRAIN_AFTER_EXIT_S = 0.25
#: How long to wait for the kernel to report a SIGKILLed child as exited
#: (a process stuck in uninterruptible sleep cannot die; do not hang on it).
_REAP_TIMEOUT_S = 5.0
#: How often to check whether signalled processes are gone.
_POLL_S = 0.02
#: Delay between attempts of a failed start or stop.
RETRY_DELAY_S = 0.5

#: LSB ``status`` exit codes; anything else means the service has failed.
LSB_STATUS = {0: "running", 3: "stopped"}

#: OCF resource agent exit codes, by number (names as in ocf-returncodes).
OCF_CODES = {
    0: "OCF_SUCCESS",
    1: "OCF_ERR_GENERIC",
    2: "OCF_ERR_ARGS",
    3: "OCF_ERR_UNIMPLEMENTED",
    4: "OCF_ERR_PERM",
    5: "OCF_ERR_INSTALLED",
    6: "OCF_ERR_CONFIGURED",
    7: "OCF_NOT_RUNNING",
    8: "OCF_RUNNING_PROMOTED",
    9: "OCF_FAILED_PROMOTED",
}
OCF_SUCCESS = 0
OCF_NOT_RUNNING = 7


@dataclass
class ActionResult:
    """What one action (or handler, or fence call) did, for the journal and the daemon.

    ``status`` says what the action tells about the resource: for ``monitor``
    "running" | "stopped" | "failed"; for a successful ``start`` "running", for
    a successful ``stop`` "stopped", for a failed start/stop "failed"; for
    handlers and fencing "ok" | "failed".  ``ok`` is True for a monitor only
    when the resource is running.  ``command`` (not in the original contract,
    defaulted) is the argv as one shell-quoted string, so the journal can say
    which handler ran.
    """

    resource: str | None
    action: str
    ok: bool
    rc: int | None
    timed_out: bool
    output: str
    duration_s: float
    attempts: int = 1
    error: str | None = None
    status: str = ""
    command: str | None = None

    @property
    def outcome(self) -> str:
        """ok | timeout | error (it could not run) | failed (it ran and failed)."""
        if self.ok:
            return "ok"
        if self.timed_out:
            return "timeout"
        return "error" if self.error else "failed"


# --------------------------------------------------------------------------- #
# Running one command
# --------------------------------------------------------------------------- #


class _Tail:
    """Keeps only the last ``limit`` bytes written to it."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        return bytes(self.buf).decode("utf-8", errors="replace")


async def _fd_ready(fd: int, *, write: bool) -> None:
    """Wait until a non-blocking fd is readable (or writable) without blocking the loop."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _read_into(fd: int, tail: _Tail) -> None:
    """Read a pipe to EOF.  Waits for readability before every read so that a
    child flooding its output still lets the loop run other tasks."""
    while True:
        await _fd_ready(fd, write=False)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not chunk:
            return
        tail.feed(chunk)


async def _feed(fd: list[int], data: bytes) -> None:
    """Write ``data`` to the child's stdin (``fd[0]``) and close it so the child
    sees EOF; ``fd[0]`` becomes -1 once closed.  A child that exits without
    reading is not an error (EPIPE just ends the feeding)."""
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd[0], view)
            except BlockingIOError:
                await _fd_ready(fd[0], write=True)
                continue
            except OSError:
                return
            view = view[n:]
    finally:
        os.close(fd[0])
        fd[0] = -1


def _descendants(pid: int) -> list[psutil.Process]:
    """Every descendant of ``pid`` (psutil objects remember their start time, so a
    later signal cannot hit a recycled PID)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _group_exists(pgid: int, procs: Iterable[psutil.Process]) -> bool:
    """True if a live process we know of is still in process group ``pgid``.  The
    kernel does not reuse a PID while it names a live group, so then killpg is safe."""
    for p in procs:
        try:
            if _alive(p) and os.getpgid(p.pid) == pgid:
                return True
        except OSError:
            continue
    return False


def _signal_tree(proc: asyncio.subprocess.Process, tree: list[psutil.Process], sig: int) -> None:
    pgid = proc.pid  # start_new_session: the child leads its own group
    if proc.returncode is None or _group_exists(pgid, tree):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, sig)
    for p in tree:
        # Processes that called setsid() left the group; signal them one by one.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.send_signal(sig)


def _any_alive(proc: asyncio.subprocess.Process, tree: list[psutil.Process]) -> bool:
    return proc.returncode is None or any(_alive(p) for p in tree)


async def _terminate(proc: asyncio.subprocess.Process, grace_s: float) -> str | None:
    """SIGTERM the child's process group and every descendant (captured before
    signalling), wait up to ``grace_s``, SIGKILL what is left, reap the child.

    If this coroutine is itself cancelled while waiting, it escalates to SIGKILL
    at once, so closing the daemon never leaves a stray child.  Returns an error
    text if the child could not be reaped."""
    loop = asyncio.get_running_loop()
    tree: list[psutil.Process] = []
    late: list[psutil.Process] | None = None
    try:
        # /proc scans run in a thread: on a busy host they are not instant.
        tree = await loop.run_in_executor(None, _descendants, proc.pid)
        _signal_tree(proc, tree, signal.SIGTERM)
        deadline = loop.time() + grace_s
        while _any_alive(proc, tree) and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)
        if _any_alive(proc, tree):
            late = await loop.run_in_executor(None, _late_descendants, proc, tree)
    finally:
        if _any_alive(proc, tree):
            if late is None:  # cancelled: no more waiting, scan here
                late = _late_descendants(proc, tree)
            _signal_tree(proc, tree + late, signal.SIGKILL)
    try:
        await asyncio.wait_for(proc.wait(), _REAP_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.error("pid %d did not exit %gs after SIGKILL", proc.pid, _REAP_TIMEOUT_S)
        return f"pid {proc.pid} did not exit after SIGKILL"
    return None


def _late_descendants(
    proc: asyncio.subprocess.Process, tree: list[psutil.Process]
) -> list[psutil.Process]:
    """Processes forked after the first snapshot (by the child or a descendant)."""
    seen = {p.pid for p in tree}
    found = []
    for root in [proc.pid] + [p.pid for p in tree if _alive(p)]:
        for p in _descendants(root):
            if p.pid not in seen:
                seen.add(p.pid)
                found.append(p)
    return found


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "did not exit"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with {rc}"


def _full_env(env: Mapping[str, Any] | None) -> dict[str, str]:
    """The daemon's environment with ``env`` applied on top (None removes a name)."""
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[str(key)] = str(value)
    return full


async def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, Any] | None,
    stdin: bytes | None = None,
    timeout_s: float,
    resource: str | None = None,
    action: str = "command",
    kill_grace_s: float = KILL_GRACE_S,
) -> ActionResult:
    """Run ``argv`` once in a new session and process group.

    ``env`` is applied on top of the daemon's own environment (a value of None
    removes a variable).  stdout and stderr are merged; the last
    :data:`OUTPUT_LIMIT` bytes are kept.  On timeout, or if the awaiting task is
    cancelled, the whole process tree is terminated (see :func:`_terminate`).
    Never raises for a missing or non-executable program: the result has
    ``ok=False`` and ``error="cannot execute <path>: <reason>"``.

    ``ok`` is True iff the program exited with 0 in time; agents reinterpret rc.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    command = shlex.join([str(a) for a in argv]) if argv else ""

    def result(ok: bool, rc: int | None, timed_out: bool, output: str, error: str | None):
        return ActionResult(
            resource=resource, action=action, ok=ok, rc=rc, timed_out=timed_out,
            output=output, duration_s=loop.time() - started, attempts=1, error=error,
            status="ok" if ok else "failed", command=command,
        )

    if not argv:
        return result(False, None, False, "", "cannot execute an empty command")

    # Our own pipes, not asyncio's PIPE: with asyncio's pipes, waiting for the
    # process can also wait for the pipes to close, which a background grandchild
    # holding stdout may never do.
    out_r, out_w = os.pipe()
    in_r = in_w = -1
    if stdin is not None:
        in_r, in_w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *[str(a) for a in argv],
            stdin=in_r if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=asyncio.subprocess.STDOUT,
            env=_full_env(env),
            start_new_session=True,
            close_fds=True,
        )
    except BaseException as exc:
        for fd in (out_r, out_w, in_r, in_w):
            if fd >= 0:
                os.close(fd)
        if not isinstance(exc, OSError):
            raise
        reason = exc.strerror or str(exc)
        return result(False, None, False, "", f"cannot execute {argv[0]}: {reason}")
    # The child has its copies; ours would keep the pipes open after it exits.
    os.close(out_w)
    if in_r >= 0:
        os.close(in_r)

    tail = _Tail()
    os.set_blocking(out_r, False)
    reader = asyncio.ensure_future(_read_into(out_r, tail))
    feeder = None
    stdin_fd = [in_w]  # closed by the feeder, or below if it never ran
    if stdin is not None:
        os.set_blocking(in_w, False)
        feeder = asyncio.ensure_future(_feed(stdin_fd, stdin))

    timed_out = False
    kill_error = None
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            if proc.returncode is None:
                timed_out = True
                kill_error = await _terminate(proc, kill_grace_s)
    except asyncio.CancelledError:
        # Closing: the child must not outlive us.
        if proc.returncode is None:
            await _terminate(proc, kill_grace_s)
        raise
    finally:
        if proc.returncode is None:  # cancelled inside _terminate's snapshot, say
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if feeder is not None and not feeder.done():
            feeder.cancel()
        if not reader.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({reader}, timeout=_DRAIN_AFTER_EXIT_S)
            reader.cancel()
        # Let a cancelled reader/feeder run its cleanup (remove_reader, close).
        helpers = [reader] if feeder is None else [reader, feeder]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*helpers, return_exceptions=True)
        os.close(out_r)
        if stdin_fd[0] >= 0:  # a feeder cancelled before it started
            os.close(stdin_fd[0])

    rc = proc.returncode
    if timed_out:
        error = f"timed out after {timeout_s:g}s; process tree killed"
        if kill_error:
            error += f" ({kill_error})"
        return result(False, rc, True, tail.text(), error)
    ok = rc == 0
    return result(ok, rc, False, tail.text(), None if ok else _exit_text(rc))


# --------------------------------------------------------------------------- #
# Agents
# --------------------------------------------------------------------------- #


def env_name(name: str) -> str:
    """``"listen-port"`` -> ``"LISTEN_PORT"``: a parameter or field name as the tail
    of an environment variable name (upper case, anything else becomes ``_``)."""
    return re.sub(r"[^A-Z0-9_]", "_", str(name).upper())


def _timeout_s(value_us: int | None, fallback_us: int | None = None) -> float:
    us = value_us or fallback_us or 20_000_000
    return us / 1_000_000


class Agent:
    """What a supervisor needs from a resource type: three single-attempt actions.

    ``env`` holds daemon variables (HEART_CLUSTER, HEART_NODE, ...) exported to
    every action; subclasses add their own.  Retries are the supervisor's job.
    """

    def __init__(self, res: ResourceConfig, env: Mapping[str, Any] | None = None) -> None:
        self.res = res
        self.env: dict[str, Any] = dict(env or {})

    @property
    def action_timeout_s(self) -> float:
        return _timeout_s(self.res.timeout_us)

    @property
    def monitor_timeout_s(self) -> float:
        return _timeout_s(getattr(self.res, "monitor_timeout_us", None), self.res.timeout_us)

    async def start(self) -> ActionResult:
        raise NotImplementedError

    async def stop(self) -> ActionResult:
        raise NotImplementedError

    async def monitor(self) -> ActionResult:
        raise NotImplementedError


class ScriptAgent(Agent):
    """An LSB-style script: ``script start|stop|status``.

    status: 0 running, 3 stopped, anything else failed.  stop that fails while
    ``status`` then says stopped counts as ok (many init scripts return 1 when
    asked to stop a stopped service)."""

    def _env(self, verb: str) -> dict[str, Any]:
        env = dict(self.env)
        for key, value in (self.res.params or {}).items():
            env[f"HEART_PARAM_{env_name(key)}"] = value
        env["HEART_RESOURCE"] = self.res.name
        env["HEART_ACTION"] = verb
        return env

    async def _call(self, verb: str, action: str, timeout_s: float) -> ActionResult:
        return await run_command(
            [self.res.script, verb], env=self._env(verb), timeout_s=timeout_s,
            resource=self.res.name, action=action,
        )

    async def start(self) -> ActionResult:
        r = await self._call("start", "start", self.action_timeout_s)
        return replace(r, status="running" if r.ok else "failed")

    async def stop(self) -> ActionResult:
        r = await self._call("stop", "stop", self.action_timeout_s)
        if r.ok:
            return replace(r, status="stopped")
        if r.rc is not None and not r.timed_out:
            s = await self._call("status", "stop", self.monitor_timeout_s)
            if s.rc == 3:
                return replace(
                    r, ok=True, status="stopped", error=None, duration_s=r.duration_s + s.duration_s,
                    output=_join_output(r.output, s.output),
                )
        return replace(r, status="failed")

    async def monitor(self) -> ActionResult:
        r = await self._call("status", "monitor", self.monitor_timeout_s)
        status = "failed" if r.timed_out or r.rc is None else LSB_STATUS.get(r.rc, "failed")
        error = r.error if status == "failed" else None
        if status == "failed" and r.rc is not None and not r.timed_out:
            error = f"status {_exit_text(r.rc)} (0 running, 3 stopped, else failed)"
        return replace(r, ok=status == "running", status=status, error=error)


def _join_output(a: str, b: str) -> str:
    joined = (a + b).encode("utf-8", errors="replace")
    return joined[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")


_EXIT_REASON = re.compile(r"^ocf-exit-reason:(.*)$", re.MULTILINE)


class OcfAgent(Agent):
    """An OCF resource agent: ``<ocf_root>/resource.d/<provider>/<type> start|stop|monitor``.

    Exit codes: see :data:`OCF_CODES`.  start: 0 ok.  stop: 0 or 7 (not
    running) ok.  monitor: 0 running, 7 stopped, anything else failed.
    """

    def __init__(self, res: ResourceConfig, env: Mapping[str, Any] | None = None) -> None:
        super().__init__(res, env)
        agent = res.agent or ""
        provider, sep, rtype = agent.partition(":")
        if not sep or not provider or not rtype:
            raise ValueError(
                f"resource {res.name}: agent {agent!r} is not \"provider:type\" "
                '(e.g. "heartbeat:Dummy")'
            )
        self.provider = provider
        self.type = rtype
        self.ocf_root = res.ocf_root or "/usr/lib/ocf"
        self.path = os.path.join(self.ocf_root, "resource.d", provider, rtype)

    def _env(self, action: str, timeout_s: float) -> dict[str, Any]:
        env = dict(self.env)
        for key, value in (self.res.params or {}).items():
            env[f"OCF_RESKEY_{key}"] = value
        interval_us = getattr(self.res, "monitor_interval_us", 0) or 0
        env.update({
            "OCF_ROOT": self.ocf_root,
            "OCF_FUNCTIONS_DIR": os.path.join(self.ocf_root, "lib", "heartbeat"),
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "0",
            "OCF_RESOURCE_INSTANCE": self.res.name,
            "OCF_RESOURCE_TYPE": self.type,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_RESKEY_CRM_meta_timeout": str(round(timeout_s * 1000)),
            # 0 makes a monitor a "probe" for the agent (ocf_is_probe).
            "OCF_RESKEY_CRM_meta_interval":
                str(interval_us // 1000) if action == "monitor" else "0",
            "HEART_RESOURCE": self.res.name,
            "HEART_ACTION": action,
        })
        return env

    async def _call(self, action: str, timeout_s: float) -> ActionResult:
        return await run_command(
            [self.path, action], env=self._env(action, timeout_s), timeout_s=timeout_s,
            resource=self.res.name, action=action,
        )

    @staticmethod
    def _error(r: ActionResult, expected: str) -> str | None:
        if r.rc is None or r.timed_out or r.rc < 0:
            return r.error
        name = OCF_CODES.get(r.rc, "unknown OCF code")
        text = f"{name} ({r.rc}); expected {expected}"
        reasons = _EXIT_REASON.findall(r.output)
        if reasons:
            text += f": {reasons[-1].strip()}"
        return text

    async def start(self) -> ActionResult:
        r = await self._call("start", self.action_timeout_s)
        if r.rc == OCF_SUCCESS and not r.timed_out:
            return replace(r, ok=True, status="running", error=None)
        return replace(r, ok=False, status="failed", error=self._error(r, "OCF_SUCCESS (0)"))

    async def stop(self) -> ActionResult:
        r = await self._call("stop", self.action_timeout_s)
        if r.rc in (OCF_SUCCESS, OCF_NOT_RUNNING) and not r.timed_out:
            return replace(r, ok=True, status="stopped", error=None)
        return replace(r, ok=False, status="failed", error=self._error(r, "0 or 7"))

    async def monitor(self) -> ActionResult:
        r = await self._call("monitor", self.monitor_timeout_s)
        if r.timed_out or r.rc is None:
            status = "failed"
        else:
            status = {OCF_SUCCESS: "running", OCF_NOT_RUNNING: "stopped"}.get(r.rc, "failed")
        error = None if status != "failed" else self._error(r, "0 (running) or 7 (stopped)")
        return replace(r, ok=status == "running", status=status, error=error)


def make_agent(res: ResourceConfig, env: Mapping[str, Any] | None = None, *,
               deadtime_us: int | None = None) -> Agent:
    """The agent for ``res.type`` ("script", "ocf" or "ipaddr"; the cluster's
    dead time sets an ipaddr resource's default lease)."""
    if res.type == "script":
        if not res.script:
            raise ValueError(f"resource {res.name}: type \"script\" needs a script path")
        return ScriptAgent(res, env)
    if res.type == "ocf":
        return OcfAgent(res, env)
    if res.type == "ipaddr":
        from heart.ipaddr import IpaddrAgent

        return IpaddrAgent(res, env, deadtime_us=deadtime_us)
    raise ValueError(f"resource {res.name}: unknown type {res.type!r}; expected \"script\", "
                     f"\"ocf\" or \"ipaddr\"")


# --------------------------------------------------------------------------- #
# Supervisor: one ordered queue per resource
# --------------------------------------------------------------------------- #

_TARGET = {"start": "started", "stop": "stopped"}


class ResourceSupervisor:
    """Runs the actions of one resource, one at a time.

    ``request("start" | "stop")`` sets what is wanted and returns at once.  The
    running action is never interrupted (except by its own timeout); requests
    made meanwhile collapse to the latest, and a request equal to the current
    state does nothing.  Failed start/stop is retried ``res.retries`` times,
    ``retry_delay_s`` apart (fewer if the wanted state changes meanwhile), then
    reported with ``ok=False`` and the state becomes "failed".

    While "started" and ``res.monitor_interval_us > 0``, the resource is
    monitored at that interval.  Successful monitors are not reported; a monitor
    that does not say "running" is reported via ``on_result`` (action "monitor",
    status "stopped" or "failed") and the state becomes "failed" until the
    daemon requests stop or start.  Monitors are not retried.

    The supervisor starts out "stopped".  At daemon start a previous instance
    may have left the resource running: :meth:`probe` asks the agent and takes
    the answer as the state.

    ``agent`` may be None: the supervisor then builds one with
    :func:`make_agent` and ``env``.  With an agent given, ``env`` is merged into
    its ``env``.
    """

    def __init__(
        self,
        res: ResourceConfig,
        agent: Agent | None,
        on_result: Callable[[ActionResult], None],
        *,
        env: Mapping[str, Any] | None = None,
        retry_delay_s: float = RETRY_DELAY_S,
    ) -> None:
        self.res = res
        if agent is None:
            agent = make_agent(res, env)
        elif env and hasattr(agent, "env"):
            agent.env = {**agent.env, **env}
        self.agent = agent
        self.on_result = on_result
        self.retry_delay_s = retry_delay_s
        self._state = "stopped"
        self._wanted: str | None = None  # "started" | "stopped" | None (nothing pending)
        self._closing = False
        self._worker: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._busy: asyncio.Lock | None = None  # held by whatever runs the agent
        #: The latest result reported via on_result (start, stop, failed monitor)
        #: or returned by probe(); None before the first.
        self.last_result: ActionResult | None = None
        self._monitor_task: asyncio.Future | None = None
        self._next_monitor = 0.0

    @property
    def state(self) -> str:
        """ "stopped" | "starting" | "started" | "stopping" | "failed"."""
        return self._state

    @property
    def wanted(self) -> str | None:
        """The pending target ("started" / "stopped"), or None when nothing is pending."""
        return self._wanted

    def _ensure_worker(self) -> None:
        # Created lazily: asyncio objects must be made inside the running loop (3.9).
        if self._worker is None:
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._idle.set()
            self._busy = asyncio.Lock()
            self._worker = asyncio.ensure_future(self._run())

    def _pending(self) -> str | None:
        """The action to run next, if any."""
        if self._wanted is None or self._wanted == self._state:
            return None
        return "start" if self._wanted == "started" else "stop"

    def request(self, action: str) -> None:
        """Want the resource started or stopped.  Returns at once (call from the loop)."""
        if action not in _TARGET:
            raise ValueError(f"request: unknown action {action!r}; expected \"start\" or \"stop\"")
        if self._closing:
            raise RuntimeError(f"resource {self.res.name}: supervisor is closed")
        self._ensure_worker()
        self._wanted = _TARGET[action]
        if self._state in ("starting", "stopping") or self._pending() is not None:
            self._idle.clear()
        self._wake.set()

    async def probe(self) -> ActionResult:
        """Run one monitor now (after any running action) and take its answer as
        the state: running -> "started", stopped -> "stopped", else "failed".
        Not reported via on_result; the result is returned.  Pending requests
        stay pending and are then judged against the new state."""
        if self._closing:
            raise RuntimeError(f"resource {self.res.name}: supervisor is closed")
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        async with self._busy:
            try:
                r = await self.agent.monitor()
            except Exception as exc:
                log.exception("%s probe raised", self.res.name)
                r = ActionResult(self.res.name, "monitor", False, None, False, "", 0.0,
                                 error=f"agent raised {exc!r}", status="failed")
            self.last_result = r
            self._state = {"running": "started", "stopped": "stopped"}.get(r.status, "failed")
            if self._state == "started":
                self._next_monitor = loop.time() + (self.res.monitor_interval_us or 0) / 1e6
            if self._pending() is not None:
                self._idle.clear()
            self._wake.set()
        return r

    async def wait_idle(self) -> None:
        """Return when no start/stop is running or pending (monitors do not count)."""
        if self._worker is None:
            return
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel the monitor (killing its process), let a running start/stop finish
        or time out (no further retries), drop what is pending.  Idempotent."""
        self._closing = True
        if self._worker is not None:
            if self._monitor_task is not None:
                self._monitor_task.cancel()
            self._wake.set()
            await asyncio.wait({self._worker})
            self._idle.set()
        # Agents that hold threads or sockets (ipaddr) let them go; the
        # resource itself is left as it is.
        closer = getattr(self.agent, "close", None)
        if closer is not None:
            res = closer()
            if asyncio.iscoroutine(res):
                await res

    def _report(self, result: ActionResult) -> None:
        self.last_result = result
        try:
            self.on_result(result)
        except Exception:  # a bug in the callback must not kill the queue
            log.exception("on_result failed for %s %s", result.resource, result.action)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._wake.clear()
            action = self._pending()
            if action is None:
                self._idle.set()
                monitoring = (
                    self._state == "started" and (self.res.monitor_interval_us or 0) > 0
                )
                if not monitoring:
                    await self._wake.wait()
                    continue
                delay = self._next_monitor - loop.time()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                async with self._busy:  # a probe may be running
                    if self._state == "started" and not self._closing and not self._pending():
                        await self._monitor()
                continue
            self._idle.clear()
            async with self._busy:
                action = self._pending()  # a probe may have changed the state
                if action is not None and not self._closing:
                    await self._do(action)
        self._idle.set()

    async def _do(self, action: str) -> None:
        loop = asyncio.get_running_loop()
        target = _TARGET[action]
        self._state = "starting" if action == "start" else "stopping"
        began = loop.time()
        attempts = 0
        while True:
            attempts += 1
            try:
                r = await (self.agent.start() if action == "start" else self.agent.stop())
            except Exception as exc:  # an agent bug must not wedge the queue
                log.exception("%s %s raised", self.res.name, action)
                r = ActionResult(self.res.name, action, False, None, False, "", 0.0,
                                 error=f"agent raised {exc!r}", status="failed")
            if r.ok:
                break
            if attempts > (self.res.retries or 0) or self._closing or self._wanted != target:
                break
            await asyncio.sleep(self.retry_delay_s)
            if self._closing or self._wanted != target:
                break
        r = replace(r, attempts=attempts, duration_s=loop.time() - began)
        if r.ok:
            self._state = target
            if action == "start":
                self._next_monitor = loop.time() + self.res.monitor_interval_us / 1e6
        else:
            self._state = "failed"
            if self._wanted == target:
                self._wanted = None  # do not loop on a failure; the daemon decides
        self._report(r)

    async def _monitor(self) -> None:
        loop = asyncio.get_running_loop()
        self._monitor_task = asyncio.ensure_future(self.agent.monitor())
        try:
            await asyncio.wait({self._monitor_task})
        finally:
            task, self._monitor_task = self._monitor_task, None
        self._next_monitor = loop.time() + self.res.monitor_interval_us / 1e6
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s monitor raised %r", self.res.name, exc)
            r = ActionResult(self.res.name, "monitor", False, None, False, "", 0.0,
                             error=f"agent raised {exc!r}", status="failed")
        else:
            r = task.result()
        if r.status == "running" or self._closing:
            return
        if self._state != "started" or self._pending() is not None:
            return  # a request arrived meanwhile: the daemon already moved on
        self._state = "failed"
        self._wanted = None  # stay failed (no automatic restart) until the daemon asks
        self._report(replace(r, action="monitor", ok=False))


# --------------------------------------------------------------------------- #
# Handlers and fencing
# --------------------------------------------------------------------------- #


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True)


def _iso_utc(ts: float) -> str:
    t = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HandlerRunner:
    """Runs the operator's ``[[handler]]`` commands for daemon events.

    ``fire(event, fields)`` returns at once.  Each handler has its own ordered
    queue (events are never collapsed or reordered; a slow handler delays only
    itself), at most ``max_queue`` deep (further events are dropped and logged).
    Results go to ``on_result`` (action = event name).
    """

    def __init__(
        self,
        handlers: list[HandlerConfig],
        base_env: Mapping[str, Any],
        on_result: Callable[[ActionResult], None],
        *,
        max_queue: int = 1000,
    ) -> None:
        self.handlers = list(handlers)
        self.base_env = dict(base_env)
        self.on_result = on_result
        self.max_queue = max_queue
        self._queues: list[asyncio.Queue | None] = [None] * len(self.handlers)
        self._workers: list[asyncio.Task | None] = [None] * len(self.handlers)
        self._closing = False

    def environment(self, event: str, fields: Mapping[str, Any], when: float) -> dict[str, str]:
        """The variables a handler sees (also used by the docs and tests)."""
        env: dict[str, Any] = dict(self.base_env)
        for key, value in fields.items():
            env[f"HEART_{env_name(key)}"] = _env_value(value)
        env["HEART_EVENT"] = event
        env["HEART_NODE"] = _env_value(fields.get("node"))
        env["HEART_RESOURCE"] = _env_value(fields.get("resource"))
        env["HEART_REASON"] = _env_value(fields.get("reason"))
        env["HEART_TIME"] = _iso_utc(when)
        return {k: str(v) for k, v in env.items()}

    def fire(self, event: str, fields: Mapping[str, Any] | None = None) -> int:
        """Queue ``event`` for every handler that wants it; returns how many."""
        if self._closing:
            log.warning("handler event %s after close: ignored", event)
            return 0
        fields = dict(fields or {})
        when = time.time()  # wall clock for HEART_TIME; the loop clock is monotonic
        env = self.environment(event, fields, when)
        data = json.dumps({"event": event, **fields}, default=str).encode()
        queued = 0
        for i, h in enumerate(self.handlers):
            if event not in h.events:
                continue
            if self._queues[i] is None:
                self._queues[i] = asyncio.Queue()
                self._workers[i] = asyncio.ensure_future(self._work(i))
            q = self._queues[i]
            if q.qsize() >= self.max_queue:
                log.error("handler %s: %d events queued; dropping %s",
                          shlex.join(h.command), q.qsize(), event)
                continue
            q.put_nowait((event, fields, env, data))
            queued += 1
        return queued

    async def _work(self, i: int) -> None:
        h = self.handlers[i]
        q = self._queues[i]
        while True:
            event, fields, env, data = await q.get()
            try:
                r = await run_command(
                    h.command, env=env, stdin=data, timeout_s=_timeout_s(h.timeout_us),
                    resource=fields.get("resource"), action=event,
                )
                self.on_result(r)
            except Exception:  # keep the queue going whatever happens to one run
                log.exception("handler %s for %s failed", shlex.join(h.command), event)
            finally:
                q.task_done()

    async def wait_idle(self) -> None:
        """Return when every queued handler run has finished."""
        for q in self._queues:
            if q is not None:
                await q.join()

    async def close(self, *, drain: bool = True) -> None:
        """Stop accepting events.  With ``drain`` (default) finish what is queued
        (each run bounded by its timeout); otherwise drop it and kill running ones."""
        self._closing = True
        if drain:
            await self.wait_idle()
        workers = [w for w in self._workers if w is not None]
        for w in workers:
            w.cancel()
        if workers:
            await asyncio.wait(workers)


async def run_fence(
    argv: Sequence[str], node: str, timeout_s: float, env: Mapping[str, Any] | None = None
) -> ActionResult:
    """Run the fence command against ``node`` (HEART_EVENT=fence, HEART_NODE=node).
    ok iff it exits 0 in time; the daemon must not take over a node's resources
    on a failed fence."""
    full = {**(env or {}), "HEART_EVENT": "fence", "HEART_NODE": node}
    return await run_command(argv, env=full, timeout_s=timeout_s, action="fence")
