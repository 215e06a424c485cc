"""A daemon under test: :class:`RunningDaemon` (in this process, on its real control
socket), :class:`DaemonProcess` (a separate ``heliosd run`` that tests can SIGTERM and
``kill -9``), and what tests do to one: the two-step switch to LIVE, a raw request on the
socket from another uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Request = Callable[..., Awaitable[tuple[int, Any]]]


async def go_live(request: Request, reason: str = "test") -> dict[str, Any]:
    """The two-step switch to LIVE (gates -> confirm_token -> confirm); asserts each step.

    ``request`` is ``RunningDaemon.request`` or ``DaemonProcess.arequest``."""
    status, body = await request("POST", "/api/trading/mode", {"mode": "LIVE"})
    assert status == 409, body
    assert body["error"] == "confirmation_required", body
    token = body["details"]["confirm_token"]
    status, body = await request(
        "POST", "/api/trading/mode", {"mode": "LIVE", "confirm_token": token, "reason": reason}
    )
    assert status == 200, body
    assert body["mode"] == "LIVE", body
    result: dict[str, Any] = body
    return result


def request_as(uid: int, gid: int, path: str, request: bytes) -> bytes:
    """One raw HTTP request on the Unix socket ``path`` from a forked child running as
    ``uid``/``gid`` (needs root); its raw answer (or ``child failed: ...``)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain syscalls only, then _exit
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            os.write(write_fd, data[:8192])
        except BaseException as exc:
            os.write(write_fd, f"child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


# ------------------------------------------------------------------------- in-process daemon


@dataclass
class RunningDaemon:
    daemon: Any
    task: asyncio.Task[int]
    socket: Path

    @property
    def service(self) -> Any:
        return self.daemon.service

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from heliosd.control.client import ControlClient

        client = ControlClient(str(self.socket))
        result: tuple[int, Any] = await asyncio.to_thread(client.request, method, path, body)
        return result

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 30)


async def start_daemon(config: Path) -> RunningDaemon:
    from heliosd.plugins.manager import load_with_plugins
    from heliosd.runtime.daemon import Daemon

    settings, pm = load_with_plugins(config)
    daemon = Daemon(settings, pm=pm)
    ready = asyncio.Event()
    daemon.on_ready.append(ready.set)
    task = asyncio.get_running_loop().create_task(daemon.run())
    done, _ = await asyncio.wait({task, asyncio.ensure_future(ready.wait())},
                                 timeout=30, return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    if task in done:
        task.result()  # raises the startup error
        raise RuntimeError("daemon exited during startup")
    if not ready.is_set():
        task.cancel()
        raise TimeoutError("daemon did not become ready in 30 s")
    return RunningDaemon(daemon, task, settings.daemon.control_socket)


# ------------------------------------------------------------------------- a real process


@dataclass
class DaemonProcess:
    config: Path
    socket: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 30, env: dict[str, str] | None = None) -> None:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"heliosd exited with {self.proc.returncode}: {self.logs()}")
            if self.socket.exists():
                with contextlib.suppress(Exception):
                    status, _ = self.request("GET", "/api/health")
                    if status in (200, 503):
                        return
            time.sleep(0.05)
        raise TimeoutError(f"heliosd not ready after {timeout} s: {self.logs()}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from heliosd.control.client import ControlClient

        result: tuple[int, Any] = ControlClient(str(self.socket)).request(method, path, body)
        return result

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # The simulator usually runs in the test's event loop: blocking it while the daemon
    # talks to the simulator would deadlock, so async tests use these.
    async def astart(self, timeout: float = 30, env: dict[str, str] | None = None) -> None:
        await asyncio.to_thread(self.start, timeout, env)

    async def arequest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(self.request, method, path, body)

    async def aterminate(self, timeout: float = 30) -> int:
        return await asyncio.to_thread(self.terminate, timeout)

    async def akill9(self) -> None:
        await asyncio.to_thread(self.kill9)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""
