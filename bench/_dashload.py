"""What an open dashboard and a Prometheus scraper ask of a daemon, from another process.

``SSEClient`` follows ``GET /api/events`` on its own Unix-socket connection in a thread and
counts the events it reads (by type). ``Scraper`` sends ``GET /metrics`` on one keep-alive
connection at a fixed interval and times each answer.

Run as a script (``python bench/_dashload.py SOCKET --scrape-interval 0.1``) it waits for the
socket to appear, keeps one SSE client open and scrapes until SIGTERM, then prints one JSON
line of what it did: the load ``dashboard.py`` puts next to another benchmark's daemon, in a
process of its own so that it never shares that daemon's interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import summary
from _daemonproc import UnixHTTP


class SSEClient:
    """One reader of the event stream; ``count`` and ``types`` grow as events arrive."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        # HTTP/1.0 as heliosd.control.eventtap does: the answer is not chunked, lines are lines.
        self.sock.sendall(
            b"GET /api/events HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        )
        self.count = 0
        self.types: Counter[str] = Counter()
        self.connected = threading.Event()
        self.error: str | None = None
        self._closing = False
        self.thread = threading.Thread(target=self._read, name="sse", daemon=True)
        self.thread.start()
        if not self.connected.wait(30):
            raise RuntimeError(f"the event stream did not open: {self.error}")

    def _read(self) -> None:
        rest = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line.startswith(b"event: "):
                        self.count += 1
                        self.types[line[7:].decode(errors="replace")] += 1
                    elif line == b": connected":
                        self.connected.set()
        except OSError as exc:
            if not self._closing:
                self.error = str(exc)
        self.connected.set()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):  # the daemon may have closed it first
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


class Scraper:
    """``GET /metrics`` every ``interval`` seconds (absolute schedule) until ``stop``."""

    def __init__(self, path: Path, interval: float) -> None:
        self.conn = UnixHTTP(path)
        self.interval = interval
        self.samples_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            t0 = time.perf_counter_ns()
            try:
                self.conn.request("GET", "/metrics")
                resp = self.conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and b"heliosd_" in body
            except OSError:
                ok = False
            if ok:
                self.samples_ms.append((time.perf_counter_ns() - t0) / 1e6)
            else:
                self.failures += 1
            i += 1
            self._stop.wait(max(0.0, start + i * self.interval - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.conn.close()


def _wait_for_socket(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe = UnixHTTP(path, timeout=5)
            status, _ = probe.call("GET", "/api/trading/mode")
            probe.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"no daemon answered on {path} within {timeout:g} s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", type=Path)
    parser.add_argument("--scrape-interval", type=float, default=0.1)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _wait_for_socket(args.socket, 60)
    sse = SSEClient(args.socket)
    scraper = Scraper(args.socket, args.scrape_interval) if args.scrape_interval > 0 else None
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.wait(0.2):  # a short wait: the SIGTERM handler runs between waits
        pass
    if scraper is not None:
        scraper.stop()
    sse.close()
    line: dict[str, Any] = {"events": sse.count, "event_types": dict(sse.types)}
    if scraper is not None:
        line["scrapes"] = len(scraper.samples_ms)
        line["scrape_failures"] = scraper.failures
        if scraper.samples_ms:
            line["scrape_ms"] = summary(scraper.samples_ms)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
