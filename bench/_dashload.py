"""What an open dashboard and a Prometheus scraper ask of a daemon, from another process.

``SSEClient`` follows ``GET /api/events`` on its own Unix-socket connection in a thread and
counts the events it reads (by type). ``Refresher`` makes the page's API calls after events
as app.js does (``PAGE_CALLS``, 0.7 s after an event). ``Scraper`` sends ``GET /metrics`` on
one keep-alive connection at a fixed interval and times each answer.

Run as a script (``python bench/_dashload.py SOCKET --scrape-interval 0.1``) it waits for the
socket to appear, keeps one SSE client open (with the page's refreshes unless
``--no-refresh``) and scrapes until SIGTERM, then prints one JSON line of what it did: the
load ``dashboard.py`` puts next to another benchmark's daemon, in a process of its own so
that it never shares that daemon's interpreter.
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

# The API calls of app.js's refreshAll (the first load, and the refresh 0.7 s after an event),
# all made side by side: none waits for another's answer.
PAGE_CALLS: tuple[str, ...] = (
    "/api/trading/mode",
    "/api/health",
    "/api/positions",
    "/api/risk",
    "/api/equity?mode=LIVE",
    "/api/equity?mode=PAPER",
    "/api/orders?state=open&limit=100",
    "/api/fills?limit=30",
    "/api/autonomous-engine/status",
    "/api/trading/mode/history?limit=10",
    "/api/audit?limit=25",
)
REFRESH_DELAY_S = 0.7  # app.js refreshSoon


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


class Refresher:
    """What an open dashboard page asks after events: the page's calls ``REFRESH_DELAY_S``
    after the first event since the last refresh (app.js's debounce), on one keep-alive
    connection (the page spreads them over a few; the daemon's work is the same)."""

    def __init__(self, path: Path, sse: SSEClient) -> None:
        self.conn = UnixHTTP(path)
        self.sse = sse
        self.refreshes = 0
        self.requests = 0
        self.failures = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="refresher", daemon=True)
        self.thread.start()

    def _get(self, path: str) -> Any:
        self.requests += 1
        status, body = self.conn.call("GET", path)
        if status not in (200, 503):  # /api/health: 503 while something is unhealthy
            self.failures += 1
        return body

    def _run(self) -> None:
        seen = self.sse.count
        while not self._stop.wait(0.01):
            if self.sse.count == seen:
                continue
            if self._stop.wait(REFRESH_DELAY_S):
                break
            seen = self.sse.count  # events during the delay are covered by this refresh
            try:
                for path in PAGE_CALLS:
                    self._get(path)
                self.refreshes += 1
            except (OSError, ValueError):
                self.failures += 1

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        self.conn.close()


class Burner:
    """CPU taken from the machine and nothing asked of the daemon: a thread that wakes every
    ``period_s`` and spins for ``share`` of it (``--burn``). Next to the real load it tells
    two things apart: what a load costs the daemon in work, and what it costs only by
    running on the same two cores (wake-ups, caches, a core's time)."""

    def __init__(self, share: float, period_s: float) -> None:
        self.share = share
        self.period_s = period_s
        self.wakes = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="burner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        spin = self.share * self.period_s
        while not self._stop.is_set():
            until = time.thread_time() + spin
            while time.thread_time() < until:
                pass
            self.wakes += 1
            self._stop.wait(max(0.0, start + self.wakes * self.period_s - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


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
    parser.add_argument("--no-refresh", action="store_true", help="the stream only, no page")
    parser.add_argument("--no-stream", action="store_true", help="no event-stream reader, no page")
    parser.add_argument(
        "--burn",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="also spin this share of one core (0.05: 5%%), asking the daemon"
        " nothing (use with --no-stream --scrape-interval 0 for a control)",
    )
    parser.add_argument("--burn-period-ms", type=float, default=1.0)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _wait_for_socket(args.socket, 60)
    sse = None if args.no_stream else SSEClient(args.socket)
    refresher = None if args.no_refresh or sse is None else Refresher(args.socket, sse)
    scraper = Scraper(args.socket, args.scrape_interval) if args.scrape_interval > 0 else None
    burner = Burner(args.burn, args.burn_period_ms / 1e3) if args.burn > 0 else None
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    ready_at, ready_cpu = time.monotonic(), time.process_time()
    while not stop.wait(0.2):  # a short wait: the SIGTERM handler runs between waits
        pass
    if scraper is not None:
        scraper.stop()
    if burner is not None:
        burner.stop()
    if refresher is not None:
        refresher.stop()
    if sse is not None:
        sse.close()
    # This process's own CPU (every thread): on a 2-core box it competes with the daemon and
    # the simulator, so dashboard.py reports it beside the daemon's CPU per fill.
    # cpu_share: what it took of one core once ready (its start-up, ~0.1 s of imports, left
    # out): dashboard.py's control burns that much next to the same daemon.
    ran = max(1e-9, time.monotonic() - ready_at)
    line: dict[str, Any] = {
        "cpu_s": round(time.process_time(), 3),
        "cpu_share": round((time.process_time() - ready_cpu) / ran, 4),
    }
    if sse is not None:
        line["events"], line["event_types"] = sse.count, dict(sse.types)
    if refresher is not None:
        line["page_refreshes"] = refresher.refreshes
        line["page_requests"] = refresher.requests
        line["page_failures"] = refresher.failures
    if burner is not None:
        line["burn_wakes"] = burner.wakes
    if scraper is not None:
        line["scrapes"] = len(scraper.samples_ms)
        line["scrape_failures"] = scraper.failures
        if scraper.samples_ms:
            line["scrape_ms"] = summary(scraper.samples_ms)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
