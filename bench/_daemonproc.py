"""A real ``heliosd run`` process for the benchmarks that talk to it from outside.

The client of a benchmark must not share the daemon's event loop or its interpreter, so these
benchmarks start the daemon as operators do (``python -m heliosd.runtime.cli run --config``) and
talk to its control socket with a keep-alive HTTP/1.1 connection over AF_UNIX.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

from heliosd.testing import DaemonProcess


class UnixHTTP(http.client.HTTPConnection):
    """One persistent HTTP/1.1 connection to a Unix socket (keep-alive between requests)."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.request(method, path, body=data, headers=headers)
        resp = self.getresponse()
        return resp.status, json.loads(resp.read())


def daemon_process(config: Path, log: Path) -> DaemonProcess:
    return DaemonProcess(config, config.parent / "state" / "heliosd.sock", log_path=log)


def fail(proc: DaemonProcess, what: str) -> None:
    sys.stderr.write(f"{what}\n--- daemon log ---\n{proc.logs()}\n")
    raise SystemExit(1)
