"""Benchmark (issue 16): what the web dashboard and a metrics scraper cost the daemon.

A real ``heliosd run`` process (demo-like: PAPER, the demo strategy configured, BTCZAR and
ETHZAR, a few PAPER orders resting and filled) with its LIVE venue the simulator in a third
process, reached as an operator does: the real ``heliosctl dashboard`` bridge on loopback
and a one-time login. Four measurements:

* **first load**: headless Chromium (``/usr/bin/chromium``, over the DevTools protocol, cache
  disabled so every load fetches every asset) opens ``/dashboard/`` N times; a load's time is
  the later of the navigation timing's ``loadEventEnd`` and the page's own
  ``heliosd:first-data`` mark (set when every section has drawn its first answer), both from
  the navigation's start. Also a plain-HTTP figure: the page, its two assets, then the same
  API calls the page makes (all side by side, as the page makes them), over
  the bridge with the session cookie, and over the Unix socket directly.
* **SSE cost**: the daemon process's CPU time (utime + stime from ``/proc/<pid>/stat``) over
  a window in which the simulator pushes fills on the account stream (each a ``fill`` and a
  ``notification`` event on ``GET /api/events``; the fill rate is calibrated so that the
  stream carries ``--rate`` events per second), with one event-stream reader connected and
  with none, alternated; the difference in % of one core. Publishing costs nothing without a
  reader (``Notifications.publish`` returns at once; the outbox rows are written either
  way), so the difference is the whole price of an open stream. The rate actually delivered
  is counted by the reader. Reported too, without a target: the same with the page's own
  refreshes (``_dashload.Refresher``: app.js's API calls 0.7 s after an event), the price of
  an open page rather than of its stream.
* **/metrics**: ``GET /metrics`` on one keep-alive connection over the Unix socket.
* **interference**: ``risk_path.time_evaluate`` on an in-process daemon's own router and
  ``fills.run`` (burst and paced) with and without ``_dashload.py`` next to the daemon (a
  process of its own holding one event-stream reader open with the page's refreshes after
  events, and scraping ``/metrics`` every ``--scrape-interval`` s, 0.1 by default: 150x a
  15 s Prometheus scrape, so that an effect would show), back to back and alternated; the
  ratio loaded / quiet, and the spread of the quiet runs (the noise it is compared with). No
  target: RESULTS.md says whether it is within noise. The fills figure is also taken next
  to a **control** (``--no-control`` leaves it out): a ``_dashload.py --burn`` process that
  asks the daemon nothing and spins the share of a core the loaded runs' loader took, once
  it was ready. ``loaded_over_control`` is then what the page and scraper cost the daemon in
  work, net of what any process using that much CPU on the same cores costs it.

Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fills as fills_bench
import risk_path
from _common import emit, median_of, note, summary
from _daemonproc import UnixHTTP, daemon_process, fail
from _dashload import PAGE_CALLS, Refresher, SSEClient
from _simproc import SimProcess

from heliosd.control.dashboard import CSRF_COOKIE
from heliosd.core.types import Mode
from heliosd.testing import DaemonProcess, start_daemon, write_config

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Close to heliosd/etc/demo.toml; what `heliosd demo` sets at runtime (the simulator, its key)
# comes from write_config. No notification URL: a receiver's deliveries would be CPU in the
# SSE window that has nothing to do with the stream.
DEMO_EXTRA = """
[exchange]
live = "valr"
paper = "paper"

[paper]
starting_balances = { ZAR = "100000" }

[engine]
strategy = "demo"
pairs = ["BTCZAR", "ETHZAR"]
interval_s = 5
autostart = false
"""
DEMO_RISK = """max_position_pct = 20
max_leverage = 3
daily_loss_pct = 5
max_drawdown_pct = 15"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------- the demo daemon


def seed(conn: UnixHTTP, filled: int, resting: int) -> None:
    """A few PAPER orders: market buys that fill, limit bids that rest (the page's tables,
    and /metrics' order and fill counts, have rows to show)."""
    deadline = time.monotonic() + 30
    market = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
    placed = 0
    while placed < filled:
        status, body = conn.call("POST", "/api/orders", market)
        if status == 201:
            placed += 1
        elif time.monotonic() > deadline:  # prices not there yet, or something is wrong
            raise RuntimeError(f"a PAPER market order was refused: {status} {body}")
        else:
            time.sleep(0.2)
    for i in range(resting):
        # Half the simulator's BTCZAR price: bids that rest, above VALR's 10 ZAR minimum.
        limit = {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
                 "price": str(500_000 + 1000 * i)}  # fmt: skip
        status, body = conn.call("POST", "/api/orders", limit)
        if status != 201:
            raise RuntimeError(f"a resting PAPER order was refused: {status} {body}")


async def open_bridge(socket: Path) -> tuple[str, str, asyncio.subprocess.Process]:
    """The real ``heliosctl dashboard``: (base URL, one-time login URL, its process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.control.ctl", "--socket", str(socket), "dashboard",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    text = ""
    while "token=" not in text:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"heliosctl dashboard ended: {text!r}")
        text += line.decode()
    url = re.search(r"(http://\S+token=\S+)", text)
    assert url, text
    parts = urlsplit(url[1])
    return f"{parts.scheme}://{parts.netloc}", url[1], proc


async def close_bridge(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()  # an event stream may still be relayed; a graceful stop would wait it out
    await asyncio.wait_for(proc.communicate(), 15)


# ---------------------------------------------------------------------- first load: browser


class CDP:
    """One Chromium tab over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params or {}})
        while True:  # events (Network.*) arrive in between; only the answer matters here
            answer = await asyncio.wait_for(self.ws.receive_json(), 30)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    async def eval(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", {"expression": expression,
                                                      "returnByValue": True})  # fmt: skip
        return result.get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 30, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):  # the document changed under the call
                value = await self.eval(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never satisfied {expression[:80]!r}")
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[CDP]:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        # No calls home from a machine whose network is closed (each would wait to fail).
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(profile)},
        # Its own process group: Debian's /usr/bin/chromium is a wrapper script whose browser
        # processes outlive it unless the whole group is killed.
        start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = ""
        while "DevTools listening on" not in line:
            raw = await asyncio.wait_for(proc.stderr.readline(), 60)
            if not raw:
                raise RuntimeError("chromium exited before DevTools listened")
            line = raw.decode()
        port = urlsplit(line.split("listening on", 1)[1].strip()).port
        async with aiohttp.ClientSession() as http:
            pages: list[dict[str, Any]] = []
            while not pages:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    pages = [t for t in await resp.json() if t.get("type") == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield CDP(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and every browser process
        await asyncio.wait_for(proc.communicate(), 15)


# Both timings from the navigation's start (performance.timeOrigin), read from the page itself;
# null until the load event has ended and the first data is drawn.
LOADED = """(() => {
  if (location.pathname !== '/dashboard/') return null;
  const nav = performance.getEntriesByType('navigation')[0];
  const data = performance.getEntriesByName('heliosd:first-data')[0];
  if (!nav || !(nav.loadEventEnd > 0) || !data) return null;
  return {load: nav.loadEventEnd, data: data.startTime, ttfb: nav.responseStart,
          mode: (document.getElementById('mode') || {}).textContent,
          open_orders: document.querySelectorAll('[data-cancel]').length};
})()"""


async def browser_loads(login_url: str, base: str, loads: int, work: Path) -> dict[str, Any]:
    async with chromium(work / "chromium") as page:
        await page.call("Network.enable")
        await page.call("Network.setCacheDisabled", {"cacheDisabled": True})
        await page.call("Page.navigate", {"url": login_url})  # the one-time login: cookies
        await page.until(LOADED, timeout=60)
        totals, load_ends, data_marks, ttfbs = [], [], [], []
        seen: dict[str, Any] = {}
        for n in range(loads):
            # From a blank tab each time: the previous page's event stream is closed and
            # nothing of it is still running when the next load starts.
            try:
                await page.call("Page.navigate", {"url": "about:blank"})
                await page.until("location.href === 'about:blank'")
                await page.call("Page.navigate", {"url": f"{base}/dashboard/"})
                seen = await page.until(LOADED)
            except TimeoutError as exc:
                raise TimeoutError(f"browser load {n + 1} of {loads}: {exc}") from exc
            if seen["mode"] not in ("PAPER", "LIVE"):
                raise RuntimeError(f"the page drew no mode: {seen}")
            load_ends.append(seen["load"])
            data_marks.append(seen["data"])
            ttfbs.append(seen["ttfb"])
            totals.append(max(seen["load"], seen["data"]))
    return {
        "loads": loads,
        "first_load_ms": summary(totals, 1),
        "load_event_end_ms": summary(load_ends, 1),
        "first_data_mark_ms": summary(data_marks, 1),
        "html_ttfb_ms": summary(ttfbs, 1),
        "open_orders_drawn": seen.get("open_orders"),
        "how": "headless Chromium over CDP, cache disabled, through the heliosctl bridge",
    }


# ---------------------------------------------------------------------- first load: HTTP


async def http_load(session: aiohttp.ClientSession, base: str) -> tuple[float, int]:
    """The page, its assets, then the page's initial API calls as app.js's refreshAll makes
    them: all side by side. (ms, requests)."""
    count = 0

    async def get(path: str) -> Any:
        nonlocal count
        async with session.get(base + path) as resp:
            body = await resp.read()
            count += 1
            # /api/health answers 503 while something is unhealthy: still the page's data.
            if resp.status not in (200, 503):
                raise RuntimeError(f"GET {path} answered {resp.status}: {body[:200]!r}")
            return json.loads(body) if path.startswith("/api/") else body

    t0 = time.perf_counter_ns()
    html = await get("/dashboard/")
    if b"/dashboard/static/app.js" not in html:
        raise RuntimeError("the dashboard page does not load app.js")
    await asyncio.gather(get("/dashboard/static/style.css"), get("/dashboard/static/app.js"))
    await asyncio.gather(*(get(path) for path in PAGE_CALLS))
    return (time.perf_counter_ns() - t0) / 1e6, count


async def http_loads(
    proc: DaemonProcess, base: str, loads: int, warmup: int
) -> dict[str, dict[str, Any]]:
    status, login = await proc.arequest("POST", "/api/dashboard/login", {})
    if status != 200:
        raise RuntimeError(f"POST /api/dashboard/login answered {status} {login}")
    out: dict[str, dict[str, Any]] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP host, as a browser keeps them
    async with aiohttp.ClientSession(cookie_jar=jar) as bridge:
        path = login.get("path", "/dashboard/login")
        async with bridge.get(f"{base}{path}?token={login['token']}", allow_redirects=False) as r:
            if r.status != 303 or not any(c.key.startswith(f"{CSRF_COOKIE}_") for c in jar):
                raise RuntimeError(f"the dashboard login answered {r.status}")
        out["bridge"] = await _timed_loads(bridge, base, loads, warmup)
    connector = aiohttp.UnixConnector(path=str(proc.socket))
    async with aiohttp.ClientSession(connector=connector) as direct:
        out["socket"] = await _timed_loads(direct, "http://localhost", loads, warmup)
    return out


async def _timed_loads(
    session: aiohttp.ClientSession, base: str, loads: int, warmup: int
) -> dict[str, Any]:
    for _ in range(warmup):
        await http_load(session, base)
    samples, requests = [], 0
    for _ in range(loads):
        took, requests = await http_load(session, base)
        samples.append(took)
    return {"loads": loads, "requests_per_load": requests, "first_load_ms": summary(samples, 2)}


# ---------------------------------------------------------------------- SSE cost


def sse_window(
    proc: DaemonProcess,
    sim: SimProcess,
    rate: int,
    seconds: float,
    reader: bool,
    page: bool = False,
) -> dict[str, Any]:
    """Daemon CPU while the simulator pushes ``rate`` fills/s for ``seconds``; with one
    event-stream reader or none, and with the page's refreshes after events (``page``)."""
    assert proc.proc is not None
    sse = SSEClient(proc.socket) if reader else None
    refresher = Refresher(proc.socket, sse) if sse is not None and page else None
    time.sleep(0.3)  # the connection's own setup is not the stream's running cost
    n = max(1, round(rate * seconds))
    e0 = sse.count if sse else 0
    c0, w0 = cpu_seconds(proc.proc.pid), time.monotonic()
    sim.ask(("paced", n, 1, 1 / rate))  # answers once the last fill is sent
    sent = time.monotonic() - w0
    time.sleep(0.25)  # the last fills committed and streamed; the same wait in both
    c1, w1 = cpu_seconds(proc.proc.pid), time.monotonic()
    events = (sse.count - e0) if sse else 0
    types = dict(sse.types) if sse else {}
    refreshes = None
    if refresher is not None:
        refresher.stop()
        refreshes = {"refreshes": refresher.refreshes, "requests": refresher.requests,
                     "failures": refresher.failures}  # fmt: skip
    if sse is not None:
        sse.close()
    wall = w1 - w0
    return {
        "reader": reader,
        "page": refreshes,
        "fills": n,
        "wall_s": round(wall, 3),
        "sending_s": round(sent, 3),
        "cpu_pct_of_core": round((c1 - c0) / wall * 100, 2),
        "events": events,
        "events_per_s": round(events / sent, 1),
        "event_types": types,
    }


def sse_cost(proc: DaemonProcess, sim: SimProcess, args: argparse.Namespace) -> dict[str, Any]:
    # Warm-up, and calibration: a fill is a "fill" event and, once its outbox row commits, a
    # "notification" event, so the fill rate that makes --rate events per second is measured.
    warm = sse_window(proc, sim, args.rate, 1.0, reader=True)
    per_fill = warm["events"] / warm["fills"]
    if per_fill <= 0:
        raise RuntimeError(f"the event stream delivered nothing: {warm}")
    fill_rate = max(1, round(args.rate / per_fill))
    windows = []
    for i in range(args.repeats):
        # Alternate which comes first, so a drift of the machine does not favour one side.
        for reader in (False, True) if i % 2 == 0 else (True, False):
            windows.append(sse_window(proc, sim, fill_rate, args.window, reader))
    # Not the target: what an open page adds on top of its stream (app.js refreshes every
    # section 0.7 s after an event, so at this rate about once a second), once per repeat.
    pages = [sse_window(proc, sim, fill_rate, args.window, True, page=True)
             for _ in range(args.repeats)]  # fmt: skip
    quiet = [w["cpu_pct_of_core"] for w in windows if not w["reader"]]
    streamed = [w["cpu_pct_of_core"] for w in windows if w["reader"]]
    delivered = [w["events_per_s"] for w in windows if w["reader"]]
    if min(delivered) <= 0:
        raise RuntimeError(f"the event stream delivered nothing: {windows}")
    page_cpu = [w["cpu_pct_of_core"] for w in pages]
    return {
        "target_events_per_s": args.rate,
        "events_per_fill": round(per_fill, 2),
        "fills_per_s": fill_rate,
        "window_s": args.window,
        "delivered_events_per_s": median_of(delivered, 1),
        "cpu_pct_no_reader": median_of(quiet, 2),
        "cpu_pct_one_reader": median_of(streamed, 2),
        "cost_pct_of_core": round(statistics.median(streamed) - statistics.median(quiet), 2),
        "cpu_pct_open_page": median_of(page_cpu, 2),
        "open_page_cost_pct_of_core": round(
            statistics.median(page_cpu) - statistics.median(quiet), 2
        ),
        "windows": windows,
        "page_windows": pages,
        "how": "utime+stime of the daemon process from /proc/<pid>/stat; the reader is a raw"
        " HTTP/1.0 client on the Unix socket (the bridge relays the same bytes)",
    }


# ---------------------------------------------------------------------- /metrics


def metrics_latency(proc: DaemonProcess, n: int, warmup: int) -> dict[str, Any]:
    conn = UnixHTTP(proc.socket)
    samples, size = [], 0
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        took = (time.perf_counter_ns() - t0) / 1e6
        if resp.status != 200 or b"heliosd_" not in body:
            fail(proc, f"GET /metrics answered {resp.status} {body[:200]!r}")
        if i >= warmup:
            samples.append(took)
        size = len(body)
    conn.close()
    return {"requests": n, "bytes": size, "latency_ms": summary(samples),
            "connection": "one keep-alive HTTP/1.1 connection over the Unix socket"}  # fmt: skip


# ---------------------------------------------------------------------- interference


class Loader:
    """``_dashload.py`` next to a daemon: one event-stream reader and a scraper."""

    def __init__(self, interval: float, extra: Sequence[str] = ()) -> None:
        self.interval = interval
        self.extra = tuple(extra)  # more _dashload.py arguments (--no-refresh, --no-stream)
        self.proc: asyncio.subprocess.Process | None = None
        self.report: dict[str, Any] = {}

    async def start(self, socket: Path) -> Callable[[], Awaitable[None]]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "_dashload.py"), str(socket),
            "--scrape-interval", str(self.interval), *self.extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise RuntimeError(f"_dashload.py did not start: {line!r} {err[-2000:]!r}")
        await asyncio.sleep(0.3)  # a few scrapes in before anything is timed
        return self.stop

    async def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"_dashload.py exited {self.proc.returncode}: {err[-2000:]!r}")
        self.report = json.loads(lines[-1])


def compare(quiet: list[float], loaded: list[float]) -> dict[str, Any]:
    """loaded / quiet (medians), and the spread of the quiet runs: the noise to compare with.
    With one run a side (--quick) there is no spread: within_noise is null."""
    ratio = statistics.median(loaded) / statistics.median(quiet)
    spread = max(quiet) / min(quiet) if len(quiet) > 1 else None
    within = None if spread is None else 1 / spread <= ratio <= spread
    return {"quiet": quiet, "loaded": loaded, "ratio_loaded_over_quiet": round(ratio, 3),
            "quiet_spread": None if spread is None else round(spread, 3),
            "within_noise": within}  # fmt: skip


def _order(i: int) -> tuple[bool, bool]:
    return (False, True) if i % 2 == 0 else (True, False)


# The fills interference's conditions (C_: not the page's LOADED expression above).
C_QUIET, C_LOADED, C_CONTROL = "quiet", "loaded", "control"
# Each repeat runs the three conditions in a rotated order (the control after a loaded run
# in the first, so its share is known): none always runs first or last.
_ROTATIONS = (
    (C_LOADED, C_QUIET, C_CONTROL),
    (C_QUIET, C_CONTROL, C_LOADED),
    (C_CONTROL, C_LOADED, C_QUIET),
)


def fills_order(i: int, control: bool) -> tuple[str, ...]:
    if not control:
        return tuple(C_LOADED if loaded else C_QUIET for loaded in _order(i))
    return _ROTATIONS[i % 3]


async def risk_interference(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    orders = risk_path.intents(risk_path.order_stream(args.risk_orders))
    medians: dict[bool, list[float]] = {False: [], True: []}
    p99s: dict[bool, list[float]] = {False: [], True: []}
    scrapes = []
    with SimProcess() as sim:
        config = write_config(work, sim.handle, risk_extra=DEMO_RISK, extra=DEMO_EXTRA)
        running = await start_daemon(config)
        try:
            market = running.service.market
            deadline = time.monotonic() + 30
            while market.mark("BTCZAR") is None or market.mark("ETHZAR") is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("no prices from the simulator within 30 s")
                await asyncio.sleep(0.05)
            router = running.service.router
            for intent in orders[: min(2000, len(orders))]:
                await router.evaluate(intent)  # warm-up
            for i in range(args.repeats):
                for loaded in _order(i):
                    loader = Loader(args.scrape_interval) if loaded else None
                    if loader is not None:
                        await loader.start(running.socket)
                    gc.collect()
                    run = [x / 1e3 for x in await risk_path.time_evaluate(router, orders)]
                    if loader is not None:
                        await loader.stop()
                        scrapes.append(loader.report)
                    s = summary(run)
                    medians[loaded].append(s["median"])
                    p99s[loaded].append(s["p99"])
        finally:
            await running.stop()
    return {
        "orders": len(orders),
        "median_us": compare(medians[False], medians[True]),
        "p99_us": compare(p99s[False], p99s[True]),
        "load": scrapes,
        "how": "risk_path.time_evaluate on the in-process daemon's own ExecutionRouter",
    }


async def fills_interference(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    fargs = argparse.Namespace(fills=args.fills, paced_fills=args.paced_fills,
                               rate=args.fills_rate, batch=50, repeats=1, sweep=[])  # fmt: skip
    control = not args.no_control
    runs: dict[str, dict[str, list[float]]] = {
        c: {"rate": [], "p99": [], "daemon_cpu": [], "sim_cpu": []}
        for c in (C_QUIET, C_LOADED, C_CONTROL)
    }
    shares: list[float] = []  # the loader's share of a core once ready, per loaded run
    loads: dict[str, list[dict[str, Any]]] = {C_LOADED: [], C_CONTROL: []}
    for i in range(args.repeats):
        for cond in fills_order(i, control):
            loader = None
            if cond == C_LOADED:
                loader = Loader(args.scrape_interval, args.loader_args.split())
            elif cond == C_CONTROL:
                share = f"{statistics.median(shares):.4f}"
                loader = Loader(0, ["--no-stream", "--burn", share])
            run_dir = work / f"fills-{i}-{cond}"
            # A fresh simulator each run: the daemon must not catch up the last run's trades.
            with SimProcess() as sim:
                figures = await fills_bench.run(
                    sim, fargs, run_dir, on_ready=loader.start if loader else None
                )
            if loader is not None:
                loads[cond].append(loader.report)
                if cond == C_LOADED:
                    shares.append(float(loader.report["cpu_share"]))
            r = runs[cond]
            r["rate"].append(figures["fills_per_s"])
            r["p99"].append(figures["paced"]["delay_ms"]["p99"])
            r["daemon_cpu"].append(figures["burst"][0]["daemon_cpu_us_per_fill"])
            r["sim_cpu"].append(figures["burst"][0]["sim_cpu_us_per_fill"])
    q, lo = runs[C_QUIET], runs[C_LOADED]
    out: dict[str, Any] = {
        "burst_fills": args.fills,
        "paced": {"fills": args.paced_fills, "rate_per_s": args.fills_rate},
        "fills_per_s": compare(q["rate"], lo["rate"]),
        "paced_p99_ms": compare(q["p99"], lo["p99"]),
        "daemon_cpu_us_per_fill": compare(q["daemon_cpu"], lo["daemon_cpu"]),
        "sim_cpu_us_per_fill": compare(q["sim_cpu"], lo["sim_cpu"]),
        "loader_cpu_s": [r.get("cpu_s") for r in loads[C_LOADED]],
        "loader_cpu_share": shares,
        "load": loads[C_LOADED],
        "loader_args": args.loader_args,
        "how": "fills.run (its burst and paced stream) with _dashload.py on its daemon's socket",
    }
    if control:
        c = runs[C_CONTROL]
        out["control"] = {
            "how": "_dashload.py --no-stream --burn <the loaded runs' median cpu_share>: the"
            " same CPU taken from the cores, nothing asked of the daemon",
            "fills_per_s": compare(q["rate"], c["rate"]),
            "daemon_cpu_us_per_fill": compare(q["daemon_cpu"], c["daemon_cpu"]),
            "load": loads[C_CONTROL],
        }
        out["loaded_over_control"] = {
            "fills_per_s": compare(c["rate"], lo["rate"]),
            "paced_p99_ms": compare(c["p99"], lo["p99"]),
            "daemon_cpu_us_per_fill": compare(c["daemon_cpu"], lo["daemon_cpu"]),
        }
    return out


# ---------------------------------------------------------------------- main


async def measure(sim: SimProcess, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = write_config(work / "demo", sim.handle, risk_extra=DEMO_RISK, extra=DEMO_EXTRA)
    proc = daemon_process(config, work / "demo" / "heliosd.log")
    await proc.astart()
    figures: dict[str, Any] = {}
    try:
        conn = UnixHTTP(proc.socket)
        await asyncio.to_thread(seed, conn, args.seed_filled, args.seed_resting)
        conn.close()
        base, login_url, bridge = await open_bridge(proc.socket)
        try:
            if CHROMIUM is not None and not args.no_browser:
                figures["browser"] = await browser_loads(login_url, base, args.loads, work)
            else:
                figures["browser"] = {"error": "headless Chromium not found (apt chromium)"
                                      if CHROMIUM is None else "--no-browser"}  # fmt: skip
                note(f"browser figure skipped: {figures['browser']['error']}")
            figures["http"] = await http_loads(proc, base, args.http_loads, args.warmup)
        finally:
            await close_bridge(bridge)
        figures["metrics"] = await asyncio.to_thread(
            metrics_latency, proc, args.metrics_requests, args.warmup * 10
        )
        figures["sse"] = await asyncio.to_thread(sse_cost, proc, sim, args)
    except Exception:
        fail(proc, traceback.format_exc())  # with the daemon's log: what it was doing then
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            await proc.aterminate()
    if not args.no_interference:
        figures["interference"] = {
            "scrape_interval_s": args.scrape_interval,
            "risk_path": await risk_interference(args, work / "risk"),
            "fills": await fills_interference(args, work / "fills"),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--loads", type=int, default=50, help="browser page loads")
    parser.add_argument("--http-loads", type=int, default=200)
    parser.add_argument("--metrics-requests", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=100, help="events per second on the stream")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per CPU window")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of quiet/loaded runs")
    parser.add_argument("--scrape-interval", type=float, default=0.1)
    parser.add_argument("--risk-orders", type=int, default=20_000)
    parser.add_argument("--fills", type=int, default=20_000, help="interference burst")
    parser.add_argument("--paced-fills", type=int, default=10_000)
    parser.add_argument("--fills-rate", type=int, default=10_000)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-interference", action="store_true")
    parser.add_argument("--only-fills", action="store_true", help="only the fills interference")
    parser.add_argument(
        "--no-control",
        action="store_true",
        help="no control runs (a CPU burner) in the fills interference",
    )
    parser.add_argument("--loader-args", default="", help="more _dashload.py arguments for the"
                        " fills interference, e.g. '--no-refresh' (the stream alone) or"
                        " '--no-stream' (the scraper alone)")  # fmt: skip
    args = parser.parse_args()
    args.warmup, args.seed_filled, args.seed_resting = 5, 6, 6
    if args.quick:
        args.loads, args.http_loads, args.metrics_requests, args.window = 2, 3, 30, 1.0
        args.repeats, args.risk_orders, args.fills, args.paced_fills = 1, 500, 300, 200
        args.fills_rate, args.warmup, args.seed_filled, args.seed_resting = 2000, 1, 3, 3
    if args.only_fills:
        with tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
            fills = asyncio.run(fills_interference(args, Path(tmp)))
        emit("dashboard_fills_interference", {"fills": fills}, {})
        return
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        figures = asyncio.run(measure(sim, args, Path(tmp)))
    figures["mode"] = str(Mode.PAPER) + " (the demo's), demo strategy configured, not running"
    http_p99 = figures["http"]["bridge"]["first_load_ms"]["p99"]
    targets = {
        "http_first_load_p99_under_300ms": http_p99 < 300,
        "sse_cost_under_2pct_of_core": figures["sse"]["cost_pct_of_core"] < 2,
        "metrics_p99_under_5ms": figures["metrics"]["latency_ms"]["p99"] < 5,
    }
    if "first_load_ms" in figures["browser"]:
        targets["browser_first_load_p99_under_300ms"] = (
            figures["browser"]["first_load_ms"]["p99"] < 300
        )
    emit("dashboard", figures, targets)


if __name__ == "__main__":
    main()
