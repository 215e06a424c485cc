"""A small synchronous HTTP client for the control socket (heliosctl and tests).

Standard library only, so ``heliosctl`` starts fast and works wherever the daemon does.
``ControlClient(path).request(method, path, body)`` returns ``(status, json)``;
:meth:`ControlClient.events` follows ``GET /api/events``. Failing to reach the daemon raises
:class:`DaemonUnreachable` with a sentence an operator can act on.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any, Final

DEFAULT_SOCKET: Final = "/run/heliosd/heliosd.sock"
SOCKET_ENV: Final = "HELIOSCTL_SOCKET"
# Generous: a LIVE switch runs every gate against the venue before answering.
DEFAULT_TIMEOUT_S: Final = 60.0
# Longer than the server's 15 s heartbeat: silence this long means the daemon is gone.
EVENTS_TIMEOUT_S: Final = 45.0


class DaemonUnreachable(Exception):
    """The daemon could not be reached, or the connection was lost.

    ``kind`` is "not_running" (no socket, connection refused), "permission" (the socket
    file's mode keeps us out) or "lost" (timeout, reset mid-request).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class BadResponse(Exception):
    """Something answered on the socket, but not with the control API's JSON."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    """One request per connection: simple, and fast enough on a Unix socket."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT_S):
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    def _open(
        self, method: str, path: str, body: Any, timeout: float | None
    ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(self.socket_path, timeout)
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn, conn.getresponse()
        except FileNotFoundError:
            conn.close()
            raise DaemonUnreachable(
                f"heliosd is not running (no socket at {self.socket_path})", kind="not_running"
            ) from None
        except ConnectionRefusedError:
            conn.close()
            raise DaemonUnreachable(
                f"heliosd is not running (connection refused on {self.socket_path})",
                kind="not_running",
            ) from None
        except PermissionError:
            conn.close()
            raise DaemonUnreachable(
                f"permission denied on {self.socket_path} (is your user in the daemon's group?)",
                kind="permission",
            ) from None
        except TimeoutError:
            conn.close()
            raise DaemonUnreachable(
                f"heliosd did not answer within {timeout} s on {self.socket_path}",
                kind="lost",
            ) from None
        except http.client.RemoteDisconnected:
            conn.close()
            raise DaemonUnreachable(
                f"heliosd closed the connection on {self.socket_path}", kind="lost"
            ) from None
        except http.client.HTTPException as exc:
            conn.close()
            raise BadResponse(f"{method} {path}: not an HTTP answer ({exc!r})") from None
        except OSError as exc:
            conn.close()
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise DaemonUnreachable(
                    f"heliosd closed the connection on {self.socket_path}", kind="lost"
                ) from None
            raise DaemonUnreachable(
                f"cannot reach heliosd on {self.socket_path}: {exc.strerror or exc}",
                kind="lost",
            ) from None

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """Send one request; returns (HTTP status, decoded JSON body). ``timeout`` overrides
        the client's for this request (a request known to take long: the doctor's)."""
        conn, resp = self._open(method, path, body, self.timeout if timeout is None else timeout)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonUnreachable(
                f"connection lost while reading the answer: {exc}", kind="lost"
            ) from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            raise BadResponse(f"{method} {path}: HTTP {resp.status} with a non-JSON body") from None

    def events(self, path: str = "/api/events") -> Iterator[tuple[str, Any]]:
        """Yield (event type, decoded data) from the server-sent events stream.

        Ends when the daemon closes the stream. Heartbeat comments are consumed silently;
        a silence longer than EVENTS_TIMEOUT_S raises DaemonUnreachable.
        """
        conn, resp = self._open("GET", path, None, EVENTS_TIMEOUT_S)
        try:
            if resp.status != 200:
                raw = resp.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"error": "http_error", "message": f"HTTP {resp.status}"}
                raise BadResponse(body.get("message") or f"HTTP {resp.status}")
            kind, data = "message", list[str]()
            while True:
                try:
                    line = resp.readline()
                except TimeoutError:
                    raise DaemonUnreachable(
                        "no heartbeat from heliosd; the event stream is dead", kind="lost"
                    ) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise DaemonUnreachable(f"event stream lost: {exc}", kind="lost") from None
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if not text:
                    if data:
                        yield kind, _decode("\n".join(data))
                    kind, data = "message", []
                elif text.startswith(":"):
                    continue
                else:
                    field, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        kind = value
                    elif field == "data":
                        data.append(value)
        finally:
            conn.close()


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
