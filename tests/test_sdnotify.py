"""sd_notify over a real AF_UNIX datagram socket, read back byte for byte."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from heliosd.runtime.sdnotify import SdNotifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive_exactly(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    try:
        assert notifier.enabled
        assert notifier.ready()
        assert receive(sock) == f"READY=1\nMAINPID={os.getpid()}"
        assert notifier.status("PAPER, engine stopped")
        assert receive(sock) == "STATUS=PAPER, engine stopped"
        assert notifier.watchdog()
        assert receive(sock) == "WATCHDOG=1"
        assert notifier.stopping()
        assert receive(sock) == "STOPPING=1"
        assert notifier.stopping("draining orders")
        assert receive(sock) == "STOPPING=1\nSTATUS=draining orders"
        assert notifier.extend_timeout(2.5)
        assert receive(sock) == "EXTEND_TIMEOUT_USEC=2500000"
        assert notifier.reloading()
        reloading, monotonic = receive(sock).split("\n")
        assert reloading == "RELOADING=1"
        assert monotonic.startswith("MONOTONIC_USEC=")
        assert int(monotonic.split("=")[1]) > 0
    finally:
        notifier.close()


def test_status_cannot_inject_fields(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("ok\nREADY=1")
    assert receive(sock) == "STATUS=ok READY=1"
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"heliosd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = SdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert receive(sock).startswith("READY=1\n")
        notifier.close()
    finally:
        sock.close()


def test_no_socket_means_no_op() -> None:
    notifier = SdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None


def test_unreachable_socket_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready()
    assert not notifier.watchdog()
    # Warned once, not on every watchdog ping.
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SdNotifier(env).watchdog_interval() == expected
