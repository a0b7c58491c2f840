"""The control socket: a Unix stream socket (mode 0600) speaking one JSON
object per line in each direction.

Request:  {"cmd": "status"} or {"cmd": "move", "unit": "web", "node": "beta"} ...
Response: {"ok": true, ...} or {"ok": false, "error": "what went wrong"}

Only the socket's owner (root on a production node) may connect; the mode
and a private parent directory enforce that, so the protocol itself carries
no credentials.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable
from typing import Any, Callable

Handler = Callable[[dict], Awaitable[dict]]
MAX_REQUEST = 64 * 1024


class ControlError(OSError):
    """The daemon could not be reached or refused the request."""


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        parent = os.path.dirname(self.path) or "."
        # A directory made here is private (0700): only root reaches the
        # socket through it.  An existing one is left as its owner set it.
        os.makedirs(parent, mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            # A socket left by a crashed daemon is removed; one that answers
            # belongs to a running daemon and is not touched.
            if _alive(self.path):
                raise ControlError(f"control socket {self.path}: another heart daemon is "
                                   f"listening there (stop it, or set cluster.socket)")
            os.unlink(self.path)
        old = os.umask(0o177)          # the socket is born 0600: no window
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path,
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, {"ok": False, "error": "request longer than 64 KiB"})
                    return
                if not line:
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                        raise ValueError("expected a JSON object with a \"cmd\" string")
                except ValueError as exc:
                    await _send(writer, {"ok": False, "error": f"bad request: {exc}"})
                    continue
                try:
                    resp = await self.handler(req)
                except Exception as exc:  # a bad request never takes the daemon down
                    resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                await _send(writer, resp)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def _send(writer: asyncio.StreamWriter, obj: dict) -> None:
    writer.write(json.dumps(obj, default=str).encode() + b"\n")
    await writer.drain()


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(path: str, cmd: str, timeout: float = 10.0, **args: Any) -> dict:
    """Send one request to the daemon at path and return its response.

    Raises ControlError with a message that says what to check."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except FileNotFoundError:
            raise ControlError(f"no heart daemon: control socket {path} does not exist "
                               f"(is `heart run` running with this config?)") from None
        except ConnectionRefusedError:
            raise ControlError(f"no heart daemon listens on {path} (a stale socket?)") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: the control socket is mode "
                               f"0600, run as the daemon's user (root)") from None
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ControlError(f"the daemon at {path} closed the connection")
            buf += chunk
    except socket.timeout:
        raise ControlError(f"the daemon at {path} did not answer within {timeout:g} s") from None
    finally:
        s.close()
    return json.loads(buf)
