"""Shared pytest fixtures for heliosd and its plugins (registered via the pytest11 entry point).

Everything here is real: the VALR simulator on loopback, a SQLite file, the daemon's own
control socket, and (``heliosd_process``) a separate ``heliosd run`` process that tests can
SIGTERM and ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

SIM_ACCOUNT = "0"


@dataclass
class SimHandle:
    """A started simulator plus the credentials of its main (trade-only) key."""

    sim: Any
    key: str
    secret: str
    account: str = SIM_ACCOUNT
    extra_keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_key(
        self, name: str, permissions: tuple[str, ...], account: str | None = None
    ) -> tuple[str, str]:
        key, secret = secrets.token_hex(32), secrets.token_hex(32)
        self.sim.add_api_key(
            key, secret, permissions=permissions, account_id=account or self.account, label=name
        )
        self.extra_keys[name] = (key, secret)
        return key, secret


async def start_sim(
    *,
    funded: Decimal | None = Decimal(100000),
    price_interval_s: float | None = None,
    seed: int = 1,
) -> SimHandle:
    from heliosd.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, price_interval_s=price_interval_s))
    await sim.start(host="127.0.0.1", port=0)
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sim.add_account(SIM_ACCOUNT)
    sim.add_api_key(key, secret, permissions=("View access", "Trade"), account_id=SIM_ACCOUNT)
    if funded:
        sim.fund(SIM_ACCOUNT, "ZAR", funded)
    return SimHandle(sim, key, secret)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[SimHandle]:
    """The VALR simulator, prices moved only by tests (``sim.sim.set_price``), ZAR funded."""
    handle = await start_sim()
    try:
        yield handle
    finally:
        await handle.sim.stop()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def config_text(
    state_dir: Path,
    *,
    sim: SimHandle | None = None,
    key_file: Path | None = None,
    secret_file: Path | None = None,
    notify_url: str | None = None,
    extra: str = "",
    daemon_extra: str = "",
    risk_extra: str = "",
) -> str:
    """A heliosd.toml for tests: credentials by $file, everything else explicit.

    ``daemon_extra`` / ``risk_extra`` add lines to ``[daemon]`` / ``[risk]`` (e.g.
    ``plugin_dirs = [...]``); ``extra`` appends whole sections.
    """
    lines = [
        "[daemon]",
        f'state_dir = "{state_dir}"',
        f'control_socket = "{state_dir / "heliosd.sock"}"',
        'log_level = "info"',
        "shutdown_timeout_s = 10",
        daemon_extra,
        "",
        "[valr]",
    ]
    if sim is not None:
        lines += [f'rest_url = "{sim.sim.rest_url}"', f'ws_url = "{sim.sim.ws_url}"']
    if key_file is not None and secret_file is not None:
        lines += [f'api_key = {{ "$file" = "{key_file}" }}',
                  f'api_secret = {{ "$file" = "{secret_file}" }}']  # fmt: skip
    lines += ["request_timeout_s = 5", ""]
    lines += ["[risk]", "gate_timeout_s = 5", risk_extra, ""]
    if notify_url:
        lines += ["[notify]", f'urls = ["{notify_url}"]', ""]
    return "\n".join(lines) + "\n" + extra


def write_config(directory: Path, sim: SimHandle | None, **kwargs: Any) -> Path:
    """Write credentials (0600) and a config into ``directory``; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = secret_file = None
    if sim is not None:
        key_file, secret_file = directory / "valr_api_key", directory / "valr_api_secret"
        key_file.write_text(sim.key)
        secret_file.write_text(sim.secret)
        key_file.chmod(0o600)
        secret_file.chmod(0o600)
    path = directory / "heliosd.toml"
    path.write_text(config_text(directory / "state", sim=sim, key_file=key_file,
                                secret_file=secret_file, **kwargs))  # fmt: skip
    return path


# ------------------------------------------------------------------------- waiting, switching


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll a plain predicate on the event loop until it is truthy (AssertionError after
    ``timeout``): the loop keeps running, so the daemon and simulator make progress."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Await ``fn`` until it returns something truthy, and return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last: {value!r})")
        await asyncio.sleep(0.05)


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
    from heliosd.daemon import Daemon
    from heliosd.plugins import load_with_plugins

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


@pytest_asyncio.fixture
async def daemon(sim: SimHandle, short_dir: Path) -> AsyncIterator[RunningDaemon]:
    """An in-process daemon on a real Unix socket, LIVE venue = the simulator."""
    running = await start_daemon(write_config(short_dir, sim))
    try:
        yield running
    finally:
        if not running.task.done():
            await running.stop()


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
            [sys.executable, "-m", "heliosd.cli", "run", "--config", str(self.config)],
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


@pytest.fixture
def heliosd_process(short_dir: Path) -> Iterator[Any]:
    """A factory: ``heliosd_process(config_path)`` -> DaemonProcess (not yet started)."""
    made: list[DaemonProcess] = []

    def make(config: Path, socket: Path | None = None) -> DaemonProcess:
        proc = DaemonProcess(config, socket or (config.parent / "state" / "heliosd.sock"),
                             log_path=short_dir / f"heliosd-{len(made)}.log")  # fmt: skip
        made.append(proc)
        return proc

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
