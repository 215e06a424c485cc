"""A follower of the daemon's ``GET /api/events`` stream on a connection of its own (used by
``heliosctl live-smoke`` to see the order's notifications as they are committed)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


class EventTapError(Exception):
    """The event stream could not be opened (the daemon refused it or is gone)."""


class EventTap:
    """Follows ``GET /api/events`` on its own connection, in a thread, until closed.

    A raw HTTP/1.0 request keeps the body unchunked, and owning the socket lets
    :meth:`close` end the read at once (shutdown), whatever the stream is doing.
    """

    def __init__(self, socket_path: str, *, connect_timeout: float = 10.0) -> None:
        self._path = socket_path
        self._timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        """Connect and return once the daemon has subscribed us (its ``: connected``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(self._path)
            sock.sendall(
                b"GET /api/events HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
            )
            buf = b""
            while b"\r\n\r\n" not in buf or b": connected" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("the daemon closed the event stream")
                buf += chunk
        except OSError as exc:
            sock.close()
            raise EventTapError(f"cannot follow the daemon's events: {exc}") from None
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 200 " not in f"{status_line} ":
            sock.close()
            raise EventTapError(f"cannot follow the daemon's events: {status_line}")
        sock.settimeout(None)  # the reader blocks; close() wakes it with shutdown()
        self._sock = sock
        self._thread = threading.Thread(
            target=self._read, args=(rest,), name="live-smoke-events", daemon=True
        )
        self._thread.start()

    def _read(self, buf: bytes) -> None:
        assert self._sock is not None
        kind, data = "message", list[str]()
        try:
            while True:
                while b"\n" in buf:
                    raw, _, buf = buf.partition(b"\n")
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if not line:
                        if data:
                            self._add(kind, "\n".join(data))
                        kind, data = "message", []
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            kind = value
                        elif name == "data":
                            data.append(value)
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError as exc:
            self.error = str(exc)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _add(self, kind: str, text: str) -> None:
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        with self._cond:
            self._events.append((kind, value))
            self._cond.notify_all()

    def wait_for(self, match: Callable[[str, Any], bool], timeout: float) -> Any | None:
        """The first event (kind, data) so far or within ``timeout`` for which ``match``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for kind, data in self._events[seen:]:
                    if match(kind, data):
                        return data
                seen = len(self._events)
                left = deadline - time.monotonic()
                alive = self._thread is not None and self._thread.is_alive()
                if left <= 0 or not alive:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)


__all__ = ["EventTap", "EventTapError"]
