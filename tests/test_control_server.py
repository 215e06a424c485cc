"""ControlServer: the Unix socket (mode, stale files, SO_PEERCRED, allowed_uids) and the
loopback TCP listener with its bearer token, on real sockets."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import stat
from pathlib import Path

import aiohttp
import pytest
from test_control_api import MemoryBackend, no_unexpected_errors, serve, settings_for, sock_dir

from heliosd.control.app import build_app
from heliosd.control.backend import Actor
from heliosd.control.client import ControlClient
from heliosd.control.server import (
    ControlServer,
    SocketInUseError,
    bearer_ok,
    loopback_address,
    uid_allowed,
)
from heliosd.core.config import Secret
from heliosd.core.errors import ConfigError
from heliosd.testing import request_as

__all__ = ["no_unexpected_errors", "sock_dir"]  # fixtures shared with test_control_api


async def _get(client: ControlClient, path: str = "/api/trading/mode") -> tuple[int, object]:
    return await asyncio.to_thread(client.request, "GET", path)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


# --------------------------------------------------------------------------- the socket file


async def test_socket_mode_is_0660_and_stop_removes_it(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings)
    await session.close()
    path = settings.daemon.control_socket
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_mode & 0o777 == 0o660
    assert not [p for p in sock_dir.iterdir() if p.name != path.name]  # no temp file left
    await server.stop()
    assert not path.exists()


async def test_socket_mode_follows_settings(sock_dir: Path, backend: MemoryBackend) -> None:
    settings = settings_for(sock_dir, socket_mode=0o600)
    server, session = await serve(backend, settings)
    await session.close()
    try:
        assert os.stat(settings.daemon.control_socket).st_mode & 0o777 == 0o600
    finally:
        await server.stop()


async def test_stale_socket_file_is_replaced(sock_dir: Path, backend: MemoryBackend) -> None:
    settings = settings_for(sock_dir)
    path = settings.daemon.control_socket
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # what a crashed daemon leaves: a socket file nobody accepts on
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    server, session = await serve(backend, settings)
    await session.close()
    try:
        assert (await _get(ControlClient(path)))[0] == 200
    finally:
        await server.stop()


async def test_a_file_that_is_not_a_socket_is_left_alone(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    settings = settings_for(sock_dir)
    path = settings.daemon.control_socket
    path.write_text("operator notes")
    with pytest.raises(SocketInUseError, match="not a socket"):
        await ControlServer().start(build_app(backend, settings=settings), settings)
    assert path.read_text() == "operator notes"


async def test_second_server_on_a_live_socket_refuses_to_start(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    settings = settings_for(sock_dir)
    first, session = await serve(backend, settings)
    await session.close()
    second = ControlServer()
    try:
        with pytest.raises(SocketInUseError, match="already answering"):
            await second.start(build_app(MemoryBackend(), settings=settings), settings)
        await second.stop()  # harmless, and must not remove the first server's socket
        assert (await _get(ControlClient(settings.daemon.control_socket)))[0] == 200
    finally:
        await first.stop()


async def test_stop_never_removes_a_socket_it_does_not_own(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    settings = settings_for(sock_dir)
    path = settings.daemon.control_socket
    old, session = await serve(backend, settings)
    await session.close()
    os.unlink(path)  # e.g. an operator cleaned up; a new daemon then took the path
    new, session = await serve(MemoryBackend(), settings)
    await session.close()
    try:
        await old.stop()
        assert (await _get(ControlClient(path)))[0] == 200
    finally:
        await new.stop()
    assert not path.exists()


async def test_socket_path_too_long_is_a_config_error(backend: MemoryBackend) -> None:
    settings = settings_for(Path("/tmp") / ("d" * 120))
    with pytest.raises(ConfigError, match="too long"):
        await ControlServer().start(build_app(backend, settings=settings), settings)


# --------------------------------------------------------------------------- identity


async def test_peer_credentials_become_the_actor(sock_dir: Path, backend: MemoryBackend) -> None:
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings)
    await session.close()
    try:
        client = ControlClient(settings.daemon.control_socket)
        status, _ = await asyncio.to_thread(
            client.request, "POST", "/api/trading/mode", {"mode": "PAPER", "reason": "who"}
        )
        assert status == 200
    finally:
        await server.stop()
    uid = os.geteuid()
    assert backend.actors == [Actor(uid, pwd.getpwuid(uid).pw_name, "unix")]
    assert backend.history[-1]["changed_by"] == f"{pwd.getpwuid(uid).pw_name} (uid {uid})"


GET_MODE = b"GET /api/trading/mode HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
async def test_allowed_uids_refuse_other_users_as_root(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    sock_dir.chmod(0o755)
    nobody = 65534
    for allowed, expect in (((4242,), b"403"), ((nobody,), b"200")):
        settings = settings_for(sock_dir, allowed_uids=allowed, socket_mode=0o666)
        server, session = await serve(backend, settings)
        try:
            answer = await asyncio.to_thread(
                request_as, nobody, nobody, str(settings.daemon.control_socket), GET_MODE
            )
            assert answer.startswith(b"HTTP/1.1 " + expect), answer
            if expect == b"403":
                assert b'"error":"forbidden"' in answer
                assert b"uid 65534" in answer
            # Root and the daemon's own uid are always served.
            async with session.get("http://h/api/trading/mode") as resp:
                assert resp.status == 200
        finally:
            await session.close()
            await server.stop()


async def test_allowed_uids_excluding_the_caller_answer_403(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    me = os.geteuid()
    if me == 0:
        pytest.skip("root is always allowed; covered by the root test above")
    settings = settings_for(sock_dir, allowed_uids=(me + 2,))
    server = ControlServer(own_uid=me + 1)  # as if the daemon ran as another user
    await server.start(build_app(backend, settings=settings), settings)
    try:
        status, body = await _get(ControlClient(settings.daemon.control_socket))
        assert status == 403
        assert body["error"] == "forbidden"  # type: ignore[index]
        assert backend.calls == []
    finally:
        await server.stop()


def test_uid_allowed_rules() -> None:
    assert uid_allowed(1234, (), own_uid=999)  # empty list: the socket mode decides
    assert uid_allowed(0, (5,), own_uid=999)  # root
    assert uid_allowed(999, (5,), own_uid=999)  # the daemon itself
    assert uid_allowed(5, (5,), own_uid=999)
    assert not uid_allowed(6, (5,), own_uid=999)


# --------------------------------------------------------------------------- TCP


async def test_tcp_listener_requires_the_bearer_token(
    sock_dir: Path, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    token = "s3cret-token-value"
    settings = settings_for(sock_dir, http_listen="127.0.0.1:0", http_token=Secret(token))
    server, unix = await serve(backend, settings)
    await unix.close()
    assert server.tcp_address is not None
    host, port = server.tcp_address
    assert host == "127.0.0.1"
    assert port > 0
    base = f"http://{host}:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                async with http.get(f"{base}/api/trading/mode", headers=headers) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["error"] == "unauthorized"
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            good = {"Authorization": f"Bearer {token}"}
            async with http.post(
                f"{base}/api/trading/mode", json={"mode": "PAPER"}, headers=good
            ) as resp:
                assert resp.status == 200
            async with http.get(f"{base}/api/nope", headers=good) as resp:
                assert resp.status == 404
    finally:
        await server.stop()
    assert backend.actors == [Actor(None, "tcp-token", "tcp")]
    assert token not in caplog.text


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8100", "10.1.2.3:8100", "example.com:80", "[::]:8100", "8100"]
)
async def test_tcp_listener_refuses_a_non_loopback_bind(
    sock_dir: Path, backend: MemoryBackend, listen: str
) -> None:
    settings = settings_for(sock_dir, http_listen=listen, http_token=Secret("t"))
    with pytest.raises(ConfigError, match="loopback"):
        await ControlServer().start(build_app(backend, settings=settings), settings)
    assert not settings.daemon.control_socket.exists()


async def test_tcp_listener_without_a_token_is_refused(
    sock_dir: Path, backend: MemoryBackend
) -> None:
    settings = settings_for(sock_dir, http_listen="127.0.0.1:0")
    with pytest.raises(ConfigError, match="http_token"):
        await ControlServer().start(build_app(backend, settings=settings), settings)


def test_loopback_address_and_bearer_parsing() -> None:
    assert loopback_address("127.0.0.1:8100") == ("127.0.0.1", 8100)
    assert loopback_address("localhost:8100") == ("127.0.0.1", 8100)
    assert loopback_address("[::1]:8100") == ("::1", 8100)
    with pytest.raises(ConfigError):
        loopback_address("127.0.0.1:99999")
    token = Secret("abc")
    assert bearer_ok("Bearer abc", token)
    assert bearer_ok("bearer abc", token)
    assert not bearer_ok("Bearer abd", token)
    assert not bearer_ok("Basic abc", token)
    assert not bearer_ok(None, token)
    assert not bearer_ok("Bearer ", Secret(""))


# --------------------------------------------------------------------------- robustness


_BAD_REQUESTS: tuple[bytes, ...] = (
    b"NOT HTTP AT ALL\r\n\r\n",
    b"POST /api/trading/mode HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n{broken",
    b"POST /api/orders HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n[]",
    b"POST /api/orders HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
    b"GET /api/orders/abc HTTP/1.1\r\nHost: h\r\n\r\n",
    b"DELETE /api/trading/mode HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /api/trading/mode HTTP/1.1\r\nHost: h\r\nContent-Length: nope\r\n\r\n",
    b"GET /api/orders?limit=-5 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /api/trading/mode HTTP/1.1\r\n",  # truncated, then the client hangs up
)


async def _raw(path: Path, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        if not data.endswith(b"\r\n\r\n") and b"Content-Length" not in data:
            writer.write_eof()
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        writer.close()


async def test_hundred_bad_requests_then_a_good_one(
    sock_dir: Path, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings)
    path = settings.daemon.control_socket
    try:
        statuses = []
        for i in range(100):
            req = _BAD_REQUESTS[i % len(_BAD_REQUESTS)]
            if req.count(b"\r\n") > 1:  # complete requests: one per connection
                req = req.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
            answer = await _raw(path, req)
            statuses.append(answer[9:12])
        assert {b"400", b"404", b"405", b"413"} <= set(statuses)
        assert b"200" not in statuses
        async with session.get("http://h/api/trading/mode") as resp:
            assert resp.status == 200
        assert backend.calls == [("get_mode", None)]
        # Malformed HTTP is one warning line, not an error with a traceback.
        assert "malformed HTTP request refused" in caplog.text
    finally:
        await session.close()
        await server.stop()
