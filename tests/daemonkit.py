"""Run real `heart run` daemons on loopback for tests.

Every node of a Cluster is a separate process (python -m heart run) on
127.0.0.1 with its own port, state directory and control socket; they share
one configuration file ({node} in state_dir and socket).  The test resource
is an LSB-style script that keeps a marker file per node while it runs and
appends every start and stop, with a timestamp, to one shared log: the test's
own, independent record of who ran what when.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from heart import control

# Like tests/enginekit.py: realtime priority where permitted (root, as in CI),
# so heartbeat timing does not depend on what else loads the two cores.
TEST_RT = 10 if os.geteuid() == 0 and os.environ.get("HEART_TEST_RT", "1") != "0" else 0

RESOURCE_SCRIPT = """\
#!/bin/sh
# LSB-style test resource: start | stop | status
mark="$HEART_PARAM_MARKDIR/$HEART_RESOURCE.$HEART_LOCAL_NODE"
log="$HEART_PARAM_MARKDIR/actions.log"
case "$1" in
  start)  [ -n "$HEART_PARAM_START_SLEEP" ] && sleep "$HEART_PARAM_START_SLEEP"
          echo "$(date +%s.%N) start $HEART_RESOURCE $HEART_LOCAL_NODE" >> "$log"
          touch "$mark" ;;
  stop)   echo "$(date +%s.%N) stop $HEART_RESOURCE $HEART_LOCAL_NODE" >> "$log"
          rm -f "$mark" ;;
  status) [ -e "$mark" ] && exit 0 || exit 3 ;;
  *)      exit 2 ;;
esac
exit 0
"""


def free_udp_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class Cluster:
    def __init__(self, root: Path, names=("alpha", "beta", "gamma"), *,
                 interval="20ms", deadtime="300ms", initdead="1s", resources=None,
                 extra: str = "", engine: str = "", cluster_id: int = 77):
        self.root = Path(root)
        self.names = list(names)
        self.marks = self.root / "marks"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        key = self.root / "authkey"
        key.write_text(f"1 {os.urandom(32).hex()}\n")
        key.chmod(0o600)
        self.script = self.root / "resource.sh"
        self.script.write_text(RESOURCE_SCRIPT)
        self.script.chmod(0o755)
        ports = free_udp_ports(len(self.names))
        nodes = "".join(
            f'\n[[node]]\nname = "{n}"\nid = {i + 1}\naddresses = {{ lo = "127.0.0.1:{p}" }}\n'
            for i, (n, p) in enumerate(zip(self.names, ports)))
        if resources is None:
            resources = self.script_resource("www", nodes=self.names)
        elif callable(resources):
            resources = resources(self)
        self.config = self.root / "heart.toml"
        self.config.write_text(textwrap.dedent(f"""\
            [cluster]
            name = "test"
            id = {cluster_id}
            state_dir = "{self.root}/{{node}}"
            socket = "{self.root}/{{node}}/ctl.sock"

            [timing]
            interval = "{interval}"
            deadtime = "{deadtime}"
            initdead = "{initdead}"

            [auth]
            key_file = "{key}"

            [engine]
            realtime_priority = {TEST_RT}
            {engine}

            [[link]]
            name = "lo"
            """) + nodes + resources + extra)

    def script_resource(self, name: str, nodes=None, auto_failback=True, timeout="5s",
                        start_sleep: str | None = None, script: str | None = None) -> str:
        params = f'markdir = "{self.marks}"'
        if start_sleep:
            params += f', start_sleep = "{start_sleep}"'
        return textwrap.dedent(f"""
            [[resource]]
            name = "{name}"
            type = "script"
            script = "{script or self.script}"
            params = {{ {params} }}
            timeout = "{timeout}"
            nodes = {json.dumps(list(nodes or self.names))}
            auto_failback = {"true" if auto_failback else "false"}
            """)

    # -- processes ---------------------------------------------------------
    def start(self, name: str, env: dict | None = None) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        f = open(log, "ab")
        e = dict(os.environ, HEART_DEBUG_HOOKS="1", PYTHONUNBUFFERED="1", **(env or {}))
        p = subprocess.Popen([sys.executable, "-m", "heart", "run", "-c", str(self.config),
                              "--node", name], stdout=f, stderr=subprocess.STDOUT, env=e)
        f.close()
        self.procs[name] = p
        return p

    def start_all(self) -> None:
        for n in self.names:
            self.start(n)

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        p.kill()
        p.wait(10)

    def stop(self, name: str, timeout: float = 20.0) -> int:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        return p.wait(timeout)

    def cleanup(self) -> None:
        """Kill every daemon this cluster started (by PID), also a stopped one."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    # -- asking the daemons --------------------------------------------------
    def sock(self, name: str) -> str:
        return str(self.root / name / "ctl.sock")

    def request(self, name: str, cmd: str, **kw) -> dict:
        return control.request(self.sock(name), cmd, **kw)

    def status(self, name: str) -> dict | None:
        try:
            st = self.request(name, "status", timeout=5)
        except (control.ControlError, OSError, ValueError):
            return None
        return st if st.get("ok") else None

    def wait(self, pred, timeout: float = 10.0, what: str = "condition", every=0.02):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = pred()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")

    def owner(self, viewer: str, resource: str = "www"):
        st = self.status(viewer)
        if not st:
            return None
        for r in st["resources"]:
            if r["resource"] == resource:
                return r["owner"] if r["local_state"] is not None else None
        return None

    def running_on(self, resource: str = "www") -> list[str]:
        """Nodes whose marker for resource exists: where it really runs."""
        return sorted(p.name.split(".", 1)[1] for p in self.marks.glob(f"{resource}.*"))

    def actions(self) -> list[tuple[float, str, str, str]]:
        log = self.marks / "actions.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            t, action, res, node = line.split()
            out.append((float(t), action, res, node))
        return out

    def journal(self, name: str) -> list[dict]:
        from heart import journal

        j = journal.open_readonly(str(self.root / name / "journal.db"))
        try:
            return j.events()
        finally:
            j.close()
