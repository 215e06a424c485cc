"""The control listeners: the Unix socket (identity from SO_PEERCRED) and an optional TCP one.

Contract: the socket is ``daemon.control_socket`` with mode
``daemon.socket_mode`` (0660 by default); a TCP listener exists only when
``daemon.http_listen`` is set, binds loopback only and requires ``Authorization: Bearer
<daemon.http_token>``.

Who is asking becomes an :class:`~heliosd.control.backend.Actor` before any handler runs:
on the socket ``Actor(uid, user, "unix")`` from the peer's credentials, on TCP
``Actor(None, "tcp-token", "tcp")``. A browser (through ``heliosctl dashboard``'s bridge, or
on TCP without a bearer token) is served only with a dashboard session
(:mod:`heliosd.control.dashboard`). When ``daemon.allowed_uids`` is non-empty only root,
the daemon's own uid and those uids are served; anyone else gets 403.

A socket file left by a crashed daemon is replaced; a socket a live daemon answers on is
never touched (:class:`SocketInUseError`), nor is a path that is not a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from heliosd.control.app import ACTOR_KEY, Handler, json_error
from heliosd.control.backend import Actor
from heliosd.control.dashboard import SESSIONS_KEY, browser_gate, is_browser_request
from heliosd.core.config import Secret, Settings
from heliosd.core.errors import ConfigError, HeliosError

log = logging.getLogger(__name__)

# sun_path is 108 bytes on Linux, one of them the terminating NUL.
MAX_SOCKET_PATH_BYTES: Final = 107
_UCRED: Final = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


class SocketInUseError(HeliosError):
    """Another process answers on the control socket, or the path is not a socket."""

    code = "socket_in_use"


# --------------------------------------------------------------------------- identity


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED), or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = _UCRED.unpack(raw)
    return int(uid)


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number as text when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def uid_allowed(uid: int, allowed_uids: tuple[int, ...], own_uid: int) -> bool:
    """Empty ``allowed_uids`` = whoever can open the socket file; else root, us, and those."""
    return not allowed_uids or uid in (0, own_uid) or uid in allowed_uids


def bearer_ok(header: str | None, token: Secret) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header."""
    expected = token.reveal().encode()
    if not header or not expected:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected)


def identity_middleware(settings: Settings, own_uid: int) -> Middleware:
    """Store the caller's Actor under ACTOR_KEY, or answer 401/403 without calling a handler."""
    allowed = tuple(settings.daemon.allowed_uids)
    token = settings.daemon.http_token

    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX and sock is not None:
            uid = peer_uid(sock)
            if uid is None:
                return json_error(403, "forbidden", "cannot identify the peer (SO_PEERCRED)")
            name = user_name(uid)
            if not uid_allowed(uid, allowed, own_uid):
                log.warning("control socket: refused uid %d (%s): not in allowed_uids", uid, name)
                return json_error(
                    403,
                    "forbidden",
                    f"uid {uid} ({name}) is not allowed on the control socket",
                    {"uid": uid},
                )
            request[ACTOR_KEY] = Actor(uid, name, "unix")
            sessions = request.app.get(SESSIONS_KEY)
            if sessions is not None and is_browser_request(request, tcp=False):
                return await browser_gate(request, handler, sessions)
        elif family in (socket.AF_INET, socket.AF_INET6):
            sessions = request.app.get(SESSIONS_KEY)
            if sessions is not None and is_browser_request(request, tcp=True):
                return await browser_gate(request, handler, sessions)
            if token is None or not bearer_ok(request.headers.get("Authorization"), token):
                return json_error(
                    401,
                    "unauthorized",
                    "a valid 'Authorization: Bearer <token>' header is required",
                    headers={"WWW-Authenticate": 'Bearer realm="heliosd"'},
                )
            request[ACTOR_KEY] = Actor(None, "tcp-token", "tcp")
        else:
            return json_error(403, "forbidden", "unsupported transport")
        return await handler(request)

    return identify


class _ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the traceback for requests that are not valid HTTP.

    aiohttp logs a malformed request (a bad Content-Length, an overlong line) as an error with
    a traceback; that is the client's fault, and any local user could flood the journal with
    it. Such requests get one warning line; every other error is passed through unchanged.
    """

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            log.warning("control API: malformed HTTP request refused: %s", exc_info.message)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kw)


# --------------------------------------------------------------------------- addresses


def loopback_address(listen: str) -> tuple[str, int]:
    """``host:port`` -> (ip, port), refusing anything but a loopback IP (fail closed)."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"  # not resolved: /etc/hosts must not be able to widen the bind
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if not sep or ip is None or not ip.is_loopback or not port_text.isdigit():
        raise ConfigError(
            f"must be a loopback address like 127.0.0.1:8100, got {listen!r}",
            key="daemon.http_listen",
        )
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"port out of range in {listen!r}", key="daemon.http_listen")
    return str(ip), port


async def _socket_is_live(path: Path) -> bool:
    """True when something accepts on ``path``; False when it is absent or stale."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(f"{path} exists and is not a socket; refusing to replace it")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 2.0)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (OSError, TimeoutError) as exc:
        # Cannot tell whether someone owns it (EACCES, a full backlog): leave it alone.
        raise SocketInUseError(
            f"cannot probe the existing socket {path} ({exc}); refusing to replace it"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _bind_unix(path: Path, mode: int) -> tuple[socket.socket, Path]:
    """A socket bound at a temporary name beside ``path`` with ``mode`` already applied.

    The caller listens, then renames it over ``path``: the final path never exists with
    looser permissions than ``mode`` (no umask window), and a stale file is replaced
    atomically.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, mode)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sock.setblocking(False)
    return sock, tmp


def _install(tmp: Path, path: Path) -> tuple[int, int]:
    """Rename the listening socket over ``path``; returns its (st_dev, st_ino)."""
    if os.path.lexists(path):
        log.info("control socket: replacing stale socket file %s", path)
    os.replace(tmp, path)
    st = os.stat(path)
    return st.st_dev, st.st_ino


# --------------------------------------------------------------------------- the server


class ControlServer:
    """Serves a control app on the Unix socket and, if configured, loopback TCP.

    ``own_uid`` is the daemon's uid for ``allowed_uids`` (default: the effective uid).
    ``after_identity``: middlewares that run once the caller is identified (the shutdown's
    503 gate: an unidentified caller is refused 401/403 first, whatever the daemon is doing).
    """

    def __init__(
        self,
        *,
        own_uid: int | None = None,
        shutdown_timeout_s: float = 5.0,
        after_identity: Sequence[Middleware] = (),
    ) -> None:
        self.own_uid = os.geteuid() if own_uid is None else own_uid
        self.after_identity = tuple(after_identity)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.socket_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._socket_id: tuple[int, int] | None = None

    async def start(self, app: web.Application, settings: Settings) -> None:
        """Listen. Raises ConfigError (bad listen address, path too long) or
        SocketInUseError (a live daemon owns the socket); nothing is left behind on failure."""
        if self._runner is not None:
            raise RuntimeError("ControlServer already started")
        d = settings.daemon
        tcp = loopback_address(d.http_listen) if d.http_listen else None
        if tcp is not None and d.http_token is None:
            raise ConfigError("is required when http_listen is set", key="daemon.http_token")
        path = Path(d.control_socket)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                f"path too long for a Unix socket ({len(os.fsencode(path))} bytes, "
                f"at most {MAX_SOCKET_PATH_BYTES})",
                key="daemon.control_socket",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if await _socket_is_live(path):
            raise SocketInUseError(
                f"another heliosd is already answering on {path}; refusing to start"
            )

        app.middlewares.append(identity_middleware(settings, self.own_uid))
        app.middlewares.extend(self.after_identity)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout_s,
            # No per-request access lines: status polling would flood the journal, and
            # every state-changing request is in the audit table with its caller.
            access_log=None,
            logger=cast(logging.Logger, _ProtocolLog(logging.getLogger("aiohttp.server"))),
        )
        await runner.setup()
        sock, tmp = _bind_unix(path, d.socket_mode)
        try:
            await web.SockSite(runner, sock).start()
            self._socket_id = _install(tmp, path)
            if tcp is not None:
                site = web.TCPSite(runner, tcp[0], tcp[1])
                await site.start()
                self.tcp_address = self._tcp_bound(runner, tcp)
        except BaseException:
            sock.close()
            await runner.cleanup()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._unlink_ours(path)
            raise
        self._runner = runner
        self.socket_path = path
        log.info(
            "control API on %s (mode %o)%s",
            path,
            d.socket_mode,
            f" and http://{tcp[0]}:{self.tcp_address[1]}" if tcp and self.tcp_address else "",
        )

    @staticmethod
    def _tcp_bound(runner: web.AppRunner, wanted: tuple[str, int]) -> tuple[str, int]:
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                return str(addr[0]), int(addr[1])
        return wanted

    def _unlink_ours(self, path: Path) -> None:
        # Only the file we created: a newer daemon may already own the path.
        if self._socket_id is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._socket_id:
                os.unlink(path)
        self._socket_id = None

    async def stop(self) -> None:
        """Stop listening, end open requests (SSE streams included) and remove the socket."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.socket_path is not None:
            self._unlink_ours(self.socket_path)
        self.tcp_address = None
