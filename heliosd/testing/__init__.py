"""Test helpers for heliosd and its plugins: no pytest needed to import them (benchmarks use
them too); the fixtures are opt-in, in :mod:`heliosd.testing.plugin`.

Everything here is real: the VALR simulator on loopback, a SQLite file, the daemon's own
control socket, and (``heliosd_process``) a separate ``heliosd run`` process that tests can
SIGTERM and ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest
    from aiohttp import web

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
    valr_extra: str = "",
) -> str:
    """A heliosd.toml for tests: credentials by $file, everything else explicit.

    ``daemon_extra`` / ``risk_extra`` / ``valr_extra`` add lines to ``[daemon]`` /
    ``[risk]`` / ``[valr]`` (e.g. ``plugin_dirs = [...]``); ``extra`` appends whole sections.
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
    lines += ["request_timeout_s = 5", valr_extra, ""]
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


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """Poll ``predicate`` (plain, or returning an awaitable) on the event loop until it is
    truthy, and return that value; AssertionError naming ``what`` and the last value after
    ``timeout``. The loop keeps running meanwhile, so the daemon and simulator progress.
    The one polling helper of the suite (no test file keeps its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """:func:`wait_for` with an async ``fn`` (kept for its callers)."""
    return await wait_for(fn, timeout, interval=0.05)


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


# ------------------------------------------------------------------------- notification receiver


@dataclass(frozen=True)
class ReceivedPost:
    """One POST as :class:`NotifyReceiver` saw it.

    ``json`` is the parsed body (``None`` when the body is not JSON); ``status`` is what the
    receiver answered, or ``None`` for a stalled request (its sender gave up waiting).
    """

    path: str
    headers: Mapping[str, str]  # case-insensitive (a copy of aiohttp's CIMultiDictProxy)
    body: bytes
    json: Any
    status: int | None

    @property
    def auth(self) -> str | None:
        """The ``Authorization`` header (a json:// URL's ``user:password`` arrives as Basic)."""
        return self.headers.get("Authorization")

    @property
    def accepted(self) -> bool:
        return self.status == 200


class NotifyReceiver:
    """A real HTTP endpoint for Apprise's ``json://`` schema on 127.0.0.1 (aiohttp).

    Every POST, to any path, is recorded in ``received`` (path, headers, raw and parsed body,
    the status answered); ``posts`` are the accepted ones (answered 200), ``hits`` counts all.
    A body that is not JSON is answered 400 (the sender must not think it delivered).

    Failure modes, for the outbox's retries and Apprise's timeouts:

    * ``fail(times, status=500)``: answer the next ``times`` POSTs (every one when ``None``)
      with ``status``;
    * ``stall(times)``: hold the next ``times`` POSTs unanswered (every one when ``None``),
      so the sender times out; they are answered 503 only when ``recover()`` or ``stop()``
      releases them, and never count as accepted;
    * ``recover()``: accept again, releasing stalled requests.

    ``stop()`` then ``start()`` rebinds the same port, so a test can show "receiver down"
    (connection refused) and "back up" at the URL already in the daemon's config. The
    access log is off: a URL's path may carry a token, even in tests.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[ReceivedPost] = []
        self._mode = "ok"  # "ok" | "fail" | "stall"
        self._left: int | None = None  # POSTs the mode still applies to; None = all
        self._fail_status = 500
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._release.is_set():  # set by the last stop(): a stall mode must hold again
            self._release = asyncio.Event()

    async def stop(self) -> None:
        self._release.set()  # stalled handlers answer now instead of holding up cleanup
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> NotifyReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what goes in the config

    def url(
        self, path: str = "/hook", *, user: str | None = None, password: str | None = None
    ) -> str:
        """The Apprise URL ``json://[user[:password]@]127.0.0.1:<port><path>``."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if self.port == 0:
            raise RuntimeError("start() the receiver first: its port is not known yet")
        credentials = ""
        if user is not None:
            credentials = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"json://{credentials}127.0.0.1:{self.port}{path}"

    # -- failure modes

    def fail(self, times: int | None = None, *, status: int = 500) -> None:
        self._set_mode("fail", times)
        self._fail_status = status

    def stall(self, times: int | None = None) -> None:
        self._set_mode("stall", times)
        if self._release.is_set():  # released by recover()/stop(): hold again from now
            self._release = asyncio.Event()

    def recover(self) -> None:
        self._set_mode("ok", None)
        self._release.set()

    def _set_mode(self, mode: str, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every POST): {times}")
        self._mode, self._left = mode, times

    def _next_action(self) -> str:
        mode = self._mode
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                self._mode, self._left = "ok", None
        return mode

    # -- what arrived

    @property
    def posts(self) -> list[ReceivedPost]:
        return [p for p in self.received if p.accepted]

    @property
    def hits(self) -> int:
        return len(self.received)

    def titles(self) -> list[Any]:
        """The ``title`` of every accepted post, in arrival order."""
        return [p.json.get("title") if isinstance(p.json, dict) else None for p in self.posts]

    async def wait_for(
        self, what: int | Callable[[list[ReceivedPost]], bool], timeout: float = 10.0
    ) -> list[ReceivedPost]:
        """Wait until ``what`` accepted posts arrived (at least), or ``what(posts)`` is true;
        return the accepted posts. AssertionError, showing what did arrive, after ``timeout``."""

        def met() -> bool:
            posts = self.posts
            return len(posts) >= what if isinstance(what, int) else what(posts)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(met), timeout)
            except TimeoutError:
                seen = repr([p.json for p in self.posts])[:2000]
                raise AssertionError(
                    f"notification receiver: condition not met in {timeout} s "
                    f"({len(self.posts)} accepted of {self.hits} POSTs: {seen})"
                ) from None
        return self.posts

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from multidict import CIMultiDict, CIMultiDictProxy

        body = await request.read()
        try:
            parsed: Any = json.loads(body)
            is_json = True
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            parsed, is_json = None, False
        action = self._next_action()
        release = self._release
        status: int | None
        if action == "stall":
            status = None
        elif action == "fail":
            status = self._fail_status
        else:
            status = 200 if is_json else 400
        headers = CIMultiDictProxy(CIMultiDict(request.headers))
        async with self._changed:
            self.received.append(ReceivedPost(request.path, headers, body, parsed, status))
            self._changed.notify_all()
        if status is None:
            await release.wait()
            return web.Response(status=503, text="stalled")
        return web.Response(status=status, text="ok" if status == 200 else "refused")


# ------------------------------------------------------------------------- seeded searches


SEED_ENV = "HELIOSD_SEED"


def search_seed(config: pytest.Config, default: int) -> int:
    """The seed a randomized search runs with: ``--seed``, else ``$HELIOSD_SEED``, else
    ``default`` (fixed, so CI runs one known sequence and a failure reproduces)."""
    option = config.getoption("--seed", default=None)
    if option is not None:
        return int(option)
    env = os.environ.get(SEED_ENV, "").strip()
    return int(env) if env else default
