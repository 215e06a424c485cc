"""The web dashboard through real parts: an in-process daemon on its Unix socket, the real
``heliosctl dashboard`` bridge as a subprocess on loopback, aiohttp as the browser (and
headless Chromium where it is installed)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio

from heliosd.control.backend import Actor
from heliosd.control.dashboard import ASSETS, CSRF_COOKIE, SESSION_COOKIE, DashboardSessions
from heliosd.testing import (
    RunningDaemon,
    SimHandle,
    eventually,
    start_daemon,
    wait_for,
    write_config,
)


@dataclass
class Dash:
    base: str  # http://127.0.0.1:PORT
    login_url: str
    proc: asyncio.subprocess.Process


async def open_bridge(socket: Path) -> Dash:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.control.ctl", "--socket", str(socket), "dashboard",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    while not any("token=" in line for line in lines):
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"heliosctl dashboard ended: {lines} {err!r}")
        lines.append(line.decode())
    url = re.search(r"(http://\S+token=\S+)", "".join(lines))
    assert url, lines
    parts = urlsplit(url[1])
    return Dash(f"{parts.scheme}://{parts.netloc}", url[1], proc)


@pytest_asyncio.fixture
async def daemon(sim: SimHandle, short_dir: Path) -> AsyncIterator[RunningDaemon]:
    """A real in-process daemon whose LIVE gates can pass (a notification URL is set) and
    whose prices have arrived (orders can be valued)."""
    config = write_config(short_dir, sim, notify_url="json://127.0.0.1:9/unused")
    running = await start_daemon(config)
    try:
        await wait_for(lambda: running.service.market.mark("BTCZAR") is not None)
        yield running
    finally:
        if not running.task.done():
            await running.stop()


@pytest_asyncio.fixture
async def dash(daemon: RunningDaemon) -> AsyncIterator[Dash]:
    d = await open_bridge(daemon.socket)
    try:
        yield d
    finally:
        if d.proc.returncode is None:
            # Kill, not TERM, in the fixture: quicker, and the SIGTERM path has its own tests
            # (a graceful stop gives relays still running a second, bridge.STOP_GRACE_S).
            d.proc.kill()
        # communicate(), not wait(): it drains and closes the pipes, so no transport is left
        # for the garbage collector after the loop has closed.
        await asyncio.wait_for(d.proc.communicate(), 15)


async def login(dash: Dash) -> tuple[aiohttp.ClientSession, str]:
    """A browser-like session holding the dashboard cookies; returns it and the CSRF value."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP host, as a browser keeps them
    session = aiohttp.ClientSession(cookie_jar=jar)
    async with session.get(dash.login_url, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        assert resp.headers["Location"] == "/dashboard/"
    csrf = next(c.value for c in jar if c.key.startswith(f"{CSRF_COOKIE}_"))
    return session, csrf


async def test_the_bridge_is_loopback_only_and_stops_on_sigterm(dash: Dash) -> None:
    assert urlsplit(dash.base).hostname == "127.0.0.1"
    dash.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(dash.proc.communicate(), 15)
    assert dash.proc.returncode == 0


async def test_the_one_time_token_works_once_and_the_cookies_are_strict(dash: Dash) -> None:
    async with aiohttp.ClientSession() as plain:
        async with plain.get(dash.login_url, allow_redirects=False) as resp:
            assert resp.status == 303
            cookies = resp.headers.getall("Set-Cookie")
        async with plain.get(dash.login_url, allow_redirects=False) as again:
            assert again.status == 403
            assert "already used" in await again.text()
    session_cookie = next(c for c in cookies if re.match(rf"{SESSION_COOKIE}_[0-9a-f]{{8}}=", c))
    flags = {f.strip().lower() for f in session_cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags, flags
    csrf_cookie = next(c for c in cookies if re.match(rf"{CSRF_COOKIE}_[0-9a-f]{{8}}=", c))
    assert "samesite=strict" in csrf_cookie.lower() and "httponly" not in csrf_cookie.lower()


async def test_without_a_session_the_bridge_grants_nothing(dash: Dash) -> None:
    # Another local user who finds the port: the bridge reaches the socket as the operator,
    # yet the daemon serves nothing without a session.
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{dash.base}/api/trading/mode") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
        async with anon.get(f"{dash.base}/dashboard/") as resp:
            assert resp.status == 401
            assert "heliosctl dashboard" in await resp.text()
        async with anon.post(f"{dash.base}/api/trading/emergency-stop", json={}) as resp:
            assert resp.status == 401
        async with anon.get(f"{dash.base}/dashboard/login?token=guessed") as resp:
            assert resp.status == 403


async def test_a_post_needs_the_csrf_header_then_the_stop_happens_and_is_audited(
    dash: Dash, daemon: RunningDaemon
) -> None:
    session, csrf = await login(dash)
    stop = f"{dash.base}/api/trading/emergency-stop"
    try:
        async with session.post(stop, json={"reason": "drill"}) as resp:
            assert resp.status == 403, await resp.text()
            assert "X-CSRF-Token" in (await resp.json())["message"]
        async with session.post(stop, json={"reason": "drill"},
                                headers={"X-CSRF-Token": "wrong"}) as resp:  # fmt: skip
            assert resp.status == 403
        _, mode = await daemon.request("GET", "/api/trading/mode")
        assert mode["trading_state"] == "ACTIVE", "a refused POST must change nothing"
        cross = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        async with session.post(stop, json={"reason": "drill"}, headers=cross) as resp:
            assert resp.status == 403
        async with session.post(stop, json={"reason": "drill"},
                                headers={"X-CSRF-Token": csrf}) as resp:  # fmt: skip
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["halted"] is True
        # A session cannot mint further logins.
        async with session.post(f"{dash.base}/api/dashboard/login", json={},
                                headers={"X-CSRF-Token": csrf}) as resp:  # fmt: skip
            assert resp.status == 403
    finally:
        await session.close()
    _, mode = await daemon.request("GET", "/api/trading/mode")
    assert mode["trading_state"] == "REDUCING" and mode["halted"] is True, mode
    _, audit = await daemon.request("GET", "/api/audit?limit=20")
    actors = [a["actor"] for a in audit["audit"] if a["action"] == "emergency_stop"]
    user = getpass.getuser()
    assert actors and re.fullmatch(rf"dashboard session [0-9a-f]{{8}} via {user}.*", actors[0]), (
        actors
    )


async def test_two_daemons_dashboards_in_one_browser_keep_their_own_sessions(
    sim: SimHandle, short_dir: Path, dash: Dash, daemon: RunningDaemon
) -> None:
    """Cookies are scoped by host, not port: two heliosd@ instances' bridges on 127.0.0.1
    share one cookie jar. Logging in to the second must not log the first out, and each
    page finds its own CSRF cookie (named for its daemon, which the page is told)."""
    other = await start_daemon(write_config(short_dir / "b", sim))
    other_dash = await open_bridge(other.socket)
    jar = aiohttp.CookieJar(unsafe=True)  # one browser
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            instances = []
            for d in (dash, other_dash):
                async with browser.get(d.login_url, allow_redirects=False) as resp:
                    assert resp.status == 303, await resp.text()
                async with browser.get(f"{d.base}/dashboard/") as resp:
                    page = await resp.text()
                found = re.search(r'<meta name="heliosd-instance" content="([0-9a-f]{8})">', page)
                assert found, page[:400]
                instances.append(found[1])
            assert instances[0] != instances[1]
            cookies = {c.key: c.value for c in jar}
            assert {f"{SESSION_COOKIE}_{i}" for i in instances} <= set(cookies), cookies
            for d, instance in ((dash, instances[0]), (other_dash, instances[1])):
                async with browser.get(f"{d.base}/api/trading/mode") as resp:
                    assert resp.status == 200, await resp.text()  # still logged in
                csrf = {"X-CSRF-Token": cookies[f"{CSRF_COOKIE}_{instance}"]}
                async with browser.post(f"{d.base}/api/orders", json={}, headers=csrf) as resp:
                    # Past the CSRF check (a 403 otherwise), refused by the handler instead.
                    assert resp.status == 400, await resp.text()
            # The other daemon's CSRF value is not this one's.
            wrong = {"X-CSRF-Token": cookies[f"{CSRF_COOKIE}_{instances[1]}"]}
            async with browser.post(f"{dash.base}/api/orders", json={}, headers=wrong) as resp:
                assert resp.status == 403
    finally:
        other_dash.proc.kill()
        await asyncio.wait_for(other_dash.proc.communicate(), 15)
        await other.stop()


async def test_sse_through_the_bridge_delivers_an_order_event(
    dash: Dash, daemon: RunningDaemon
) -> None:
    session, _csrf = await login(dash)
    try:
        async with session.get(f"{dash.base}/api/events") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert await asyncio.wait_for(stream.content.readline(), 10) == b": connected\n"
            order = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
            status, body = await daemon.request("POST", "/api/orders", order)
            assert status == 201, body

            async def first_order_event() -> str:
                while True:
                    line = (await stream.content.readline()).decode()
                    if line == "event: order\n":
                        return (await stream.content.readline()).decode()

            data = await asyncio.wait_for(first_order_event(), 15)
            assert data.startswith("data: ") and '"pair":"BTCZAR"' in data
    finally:
        await session.close()


async def test_assets_are_served_with_their_types(dash: Dash) -> None:
    session, _ = await login(dash)
    try:
        async with session.get(f"{dash.base}/dashboard/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "/dashboard/static/app.js" in await resp.text()
        for name, kind in ASSETS.items():
            if name == "index.html":
                continue
            async with session.get(f"{dash.base}/dashboard/static/{name}") as resp:
                assert (resp.status, resp.content_type) == (200, kind), name
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with session.get(f"{dash.base}/dashboard/static/..%2Fapp.py") as resp:
            assert resp.status == 404
    finally:
        await session.close()


# The one URL in an asset that is not a link: the SVG namespace name, never fetched.
_NOT_FETCHED = {"http://www.w3.org/2000/svg"}


def test_no_asset_names_anything_outside_the_daemon() -> None:
    web = resources.files("heliosd.control").joinpath("web")
    names = sorted(p.name for p in web.iterdir())
    assert set(names) == set(ASSETS), "every shipped asset is listed (and served) in ASSETS"
    for name in names:
        content = web.joinpath(name).read_text()
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", content))
        assert urls <= _NOT_FETCHED, (name, urls - _NOT_FETCHED)
        assert "@import" not in content and "cdn" not in content.lower(), name


async def test_the_tcp_listener_serves_the_pages_after_a_bearer_login(
    sim: SimHandle, short_dir: Path
) -> None:
    config = write_config(
        short_dir, sim, daemon_extra='http_listen = "127.0.0.1:0"\nhttp_token = "t0ken-for-tests"'
    )
    running = await start_daemon(config)
    try:
        host, port = running.daemon.service.control.tcp_address
        base = f"http://{host}:{port}"
        bearer = {"Authorization": "Bearer t0ken-for-tests"}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{base}/dashboard/") as resp:
                assert resp.status == 401
            async with browser.post(f"{base}/api/dashboard/login", headers=bearer) as resp:
                assert resp.status == 200
                token = (await resp.json())["token"]
            async with browser.get(f"{base}/dashboard/login?token={token}") as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
            async with browser.get(f"{base}/api/trading/mode") as resp:
                assert resp.status == 200 and (await resp.json())["mode"] == "PAPER"
            # The bearer token still works for API clients, unchanged.
            async with (
                aiohttp.ClientSession() as api,
                api.get(f"{base}/api/health", headers=bearer) as resp,
            ):
                assert resp.status in (200, 503)
    finally:
        await running.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One Chromium tab over the DevTools protocol: evaluate JavaScript in it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def eval(self, expression: str) -> Any:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "awaitPromise": True,
                                            "returnByValue": True}})  # fmt: skip
        while True:
            answer = await asyncio.wait_for(self.ws.receive_json(), 15)
            if answer.get("id") == self.next_id:
                return answer.get("result", {}).get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 30) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        value = None
        while loop.time() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.3)
        return value


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path) -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        # No calls home from a machine whose network is closed (each would wait to fail).
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(profile)},
        # Its own process group: Debian's /usr/bin/chromium is a wrapper script, and the
        # browser's own processes hold stderr open after the wrapper is killed (15 s here).
        start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = ""
        while "DevTools listening on" not in line:
            raw = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert raw, "chromium exited before DevTools listened"
            line = raw.decode()
        port = urlsplit(line.split("listening on", 1)[1].strip()).port
        async with aiohttp.ClientSession() as cdp:
            pages: list[dict[str, Any]] = []
            while not pages:
                async with cdp.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    pages = [t for t in await resp.json() if t.get("type") == "page"]
            async with cdp.ws_connect(pages[0]["webSocketDebuggerUrl"]) as ws:
                yield Page(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and every browser process
        await asyncio.wait_for(proc.communicate(), 15)


def by_id(name: str, prop: str = "textContent") -> str:
    return f"(document.getElementById({json.dumps(name)}) || {{}}).{prop}"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt chromium)")
async def test_a_real_browser_shows_the_mode_and_switches_live_by_typing_live(
    dash: Dash, daemon: RunningDaemon, tmp_path: Path
) -> None:
    """Headless Chromium opens the login URL; the page's own script fills the header, draws
    the equity chart, and runs the LIVE switch's two steps with the typed confirmation.

    Driven over the DevTools protocol (--dump-dom cannot wait for a page that holds an
    EventSource open)."""
    async with chromium(dash.login_url, tmp_path / "profile") as page:
        assert await page.until(f"{by_id('mode')} === 'PAPER'")
        assert await page.eval(by_id("state")) == "ACTIVE"
        assert await page.until(f"{by_id('stream')} === 'live'"), "the EventSource is open"
        assert "hidden" in await page.eval(by_id("simulator", "className"))
        # The equity section draws each mode's curve from GET /api/equity, or says there is
        # no history yet (a fresh daemon may not have recorded a point): never an error.
        assert await page.until(
            "(() => { const e = document.getElementById('equity'); return !!e &&"
            " e.textContent.includes('PAPER') && (e.querySelector('svg polyline') !== null"
            " || e.textContent.includes('no equity history yet')); })()"
        )
        polylines = await page.eval(
            "chart([{at: '2026-12-01T00:00:00Z', equity: '100', peak: '100'},"
            " {at: '2026-12-02T00:00:00Z', equity: '90', peak: '100'}])"
            ".querySelectorAll('polyline').length"
        )
        assert polylines == 3, "equity, peak and the drawdown-stop line"

        # An open order appears (the order event over SSE refreshes the table); its Cancel
        # button, confirmed, sends the DELETE with the CSRF header.
        limit = {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
                 "price": "500000"}  # fmt: skip
        status, placed = await daemon.request("POST", "/api/orders", limit)
        assert status == 201, placed
        order_id = placed["order"]["id"]
        button = f"document.querySelector('[data-cancel=\"{order_id}\"]')"
        assert await page.until(f"{button} !== null"), "the open order is listed"
        await page.eval(f"{button}.click()")
        await page.eval("document.getElementById('confirm-yes').click()")

        async def cancelled() -> bool:
            _, got = await daemon.request("GET", f"/api/orders/{order_id}")
            return bool(got["order"]["state"] == "cancelled")

        # The account stream may report the cancellation before the DELETE's handler has
        # written its audit row (it writes after asking VALR for the order's status): wait for
        # both, not one and then a single look at the other.
        cancels: list[dict[str, Any]] = []

        async def audited() -> bool:
            _, audit = await daemon.request("GET", "/api/audit?limit=20")
            cancels[:] = [a for a in audit["audit"] if "cancel" in a["action"]]
            return bool(cancels)

        await eventually(cancelled)
        await eventually(audited)
        assert cancels[0]["actor"].startswith("dashboard session "), cancels

        # Step one: the gates pass and the page asks for LIVE to be typed.
        await page.eval("document.getElementById('btn-live').click()")
        asked = f"!{by_id('confirm', 'classList')}.contains('hidden')"
        assert await page.until(asked), await page.eval(by_id("action-result"))
        assert "simulator (not real money)" in await page.eval(by_id("confirm-text"))
        # Anything but LIVE typed: nothing is sent.
        await page.eval("document.getElementById('confirm-typed').value = 'yes'")
        await page.eval("document.getElementById('confirm-yes').click()")
        assert "type LIVE exactly" in await page.until(by_id("action-result"))
        _, mode = await daemon.request("GET", "/api/trading/mode")
        assert mode["mode"] == "PAPER"
        await page.eval("document.getElementById('confirm-typed').value = 'LIVE'")
        await page.eval("document.getElementById('confirm-yes').click()")
        # The mode event over SSE (and the action's own refresh) turn the banner red.
        assert await page.until(f"{by_id('banner', 'className')}.includes('live')")
        assert await page.eval(by_id("mode")) == "LIVE"
        assert "hidden" not in await page.eval(by_id("simulator", "className"))

        # A LIVE fill appears in the recent fills (GET /api/fills: the database, never VALR).
        market = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
        status, placed = await daemon.request("POST", "/api/orders", market)
        assert status == 201 and placed["order"]["state"] == "filled", placed
        _, recent = await daemon.request("GET", "/api/fills?limit=1")
        [fill] = recent["fills"]
        assert fill["order_id"] == placed["order"]["id"], recent
        assert await page.until(
            f"document.getElementById('fills').textContent.includes({fill['trade_id']!r})"
        ), "the fill is listed"
    _, mode = await daemon.request("GET", "/api/trading/mode")
    assert mode["mode"] == "LIVE"
    assert mode["updated_by"].startswith("dashboard session "), mode


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt chromium)")
async def test_leaving_the_page_closes_its_event_stream_so_it_loads_every_time(
    dash: Dash, daemon: RunningDaemon, tmp_path: Path
) -> None:
    """More visits than a browser's six connections per host: a page that kept its event
    stream open once left (the back/forward cache keeps such a page alive) took one each
    time, and the seventh visit never loaded."""
    notifications = daemon.service.notifications
    async with chromium(dash.login_url, tmp_path / "profile") as page:
        live = f"location.pathname === '/dashboard/' && {by_id('stream')} === 'live'"
        assert await page.until(live)
        page_url = await page.eval("location.origin + '/dashboard/'")
        for visit in range(8):
            await page.eval("location.href = 'about:blank'")
            assert await page.until("location.href === 'about:blank'")
            await wait_for(lambda: notifications.readers == 0, 10)  # closed when left
            await page.eval(f"location.href = {json.dumps(page_url)}")
            assert await page.until(live, timeout=15), f"visit {visit + 2} never loaded"
            assert await page.until(f"{by_id('mode')} === 'PAPER'")
        assert notifications.readers == 1


def test_login_tokens_and_sessions_expire() -> None:
    sessions = DashboardSessions(login_ttl_s=0.05, session_ttl_s=0.05)
    alice = Actor(1000, "alice", "unix")
    stale = sessions.issue_login(alice)
    fresh = sessions.issue_login(alice)
    session = sessions.exchange(fresh)
    assert session is not None and sessions.lookup(session.secret) == session
    assert session.actor == Actor(1000, f"dashboard session {session.id} via alice", "dashboard")
    assert sessions.exchange(fresh) is None, "a login token works once"
    time.sleep(0.1)
    assert sessions.exchange(stale) is None, "an unused login token expires"
    assert sessions.lookup(session.secret) is None, "a session expires"
    assert sessions.lookup(None) is None and sessions.lookup("") is None


def test_heliosctl_dashboard_without_a_daemon_exits_3(short_dir: Path) -> None:
    from heliosd.control.ctl import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["--socket", str(short_dir / "none.sock"), "dashboard"], stdout=out, stderr=err)
    assert code == 3, err.getvalue()
    assert "token=" not in out.getvalue()


async def test_a_taken_port_is_refused_in_one_line(dash: Dash, daemon: RunningDaemon) -> None:
    port = str(urlsplit(dash.base).port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.control.ctl", "--socket", str(daemon.socket),
        "dashboard", "--port", port,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, (out, err)
    assert err.decode().startswith(f"heliosctl: cannot listen on 127.0.0.1:{port}: "), err
    assert b"Traceback" not in err and b"token=" not in out


async def test_sigterm_stops_the_bridge_promptly_with_an_event_stream_open(dash: Dash) -> None:
    """An open page's event stream used to hold the bridge's graceful stop for about 15 s
    (aiohttp waits for open handlers up to its shutdown timeout); relaying a stream is only
    a connection to the daemon, so the bridge gives them a moment and stops."""
    session, _csrf = await login(dash)
    try:
        async with session.get(f"{dash.base}/api/events") as stream:
            assert await asyncio.wait_for(stream.content.readline(), 10) == b": connected\n"
            started = time.monotonic()
            dash.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(dash.proc.communicate(), 15)
            took = time.monotonic() - started
    finally:
        await session.close()
    assert dash.proc.returncode == 0
    assert took < 4, f"the bridge took {took:.1f} s to stop"
