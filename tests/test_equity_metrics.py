"""The equity curve (GET /api/equity) and GET /metrics, through real parts: a real daemon
(in process, and a real process for the restart), the simulator over real HTTP and WebSocket,
the real SQLite file, the real Unix socket and the token-protected loopback TCP listener."""

from __future__ import annotations

import re
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from heliosd.core.types import Mode, Side
from heliosd.testing import (
    DaemonProcess,
    RunningDaemon,
    SimHandle,
    eventually,
    start_daemon,
    wait_for,
    write_config,
)

D = Decimal
PAPER = '[paper]\nstarting_balances = { ZAR = "100000" }\n'


async def _points(request: Any, mode: str = "PAPER", since: str | None = None) -> list[Any]:
    path = f"/api/equity?mode={mode}" + ("" if since is None else f"&since={quote(since)}")
    status, body = await request("GET", path)
    assert status == 200, body
    assert body["mode"] == mode, body
    points: list[Any] = body["points"]
    return points


async def _paper_buy(running: RunningDaemon, sim: SimHandle) -> None:
    sim.sim.set_price("BTCZAR", D(1200000))
    await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
    body = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001",
            "reason": "equity curve test"}  # fmt: skip
    status, answer = await running.request("POST", "/api/orders", body)
    assert status == 201, answer


async def test_fills_make_points_read_oldest_first_with_since_and_bad_params_refused(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        recorder = running.service.equity
        recorder.coalesce_s = 0.2  # a fill point may follow the start's point quickly
        first = await eventually(lambda: _points(running.request))
        assert first[0]["kind"] == "minute" and D(first[0]["equity"]) == D(100000), first
        assert first[0]["peak"] == "100000", first

        await _paper_buy(running, sim)
        await wait_for(lambda: running.service.ledgers[Mode.PAPER].position("BTCZAR") > 0)

        async def with_fill() -> list[Any]:
            pts = await _points(running.request)
            return pts if any(p["kind"] == "fill" for p in pts) else []

        points = await eventually(with_fill)
        ats = [datetime.fromisoformat(p["at"]) for p in points]
        assert ats == sorted(ats), points
        fill = next(p for p in points if p["kind"] == "fill")
        # The fill point's figures are the pass's: equity below the start (spread, fees),
        # the peak the drawdown stop measures from still the start.
        assert D(fill["equity"]) < D(100000), fill
        assert D(fill["peak"]) == D(100000), fill
        assert D(fill["daily_pnl"]) == D(fill["equity"]) - D(fill["day_start_equity"]), fill
        for p in points:
            assert all(isinstance(p[k], str) for k in ("at", "equity", "peak", "daily_pnl")), p

        # since: only points at or after it (RFC 3339 with Z, an offset, or none = UTC).
        cut = ats[-1]
        later = await _points(running.request, since=cut.isoformat())
        assert later and all(datetime.fromisoformat(p["at"]) >= cut for p in later), later
        assert len(later) < len(points)
        z = (cut - timedelta(hours=2)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert len(await _points(running.request, since=z)) == len(points)
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        assert await _points(running.request, since=future) == []
        live = await _points(running.request, mode="LIVE")  # its own curve: the sim account
        assert live and all(D(p["equity"]) == D(100000) for p in live), live

        for path, field in (("/api/equity?mode=BTC", "mode"), ("/api/equity?mode=paper", "mode"),
                            ("/api/equity?mode=PAPER&since=yesterday", "since"),
                            ("/api/equity?since=2025-13-01T00:00:00Z", "since"),
                            ("/api/equity?mode=PAPER&limit=5", "limit")):  # fmt: skip
            status, body = await running.request("GET", path)
            assert status == 400, (path, body)
            assert field in body["message"], (path, body)
        status, body = await running.request("GET", "/api/equity")  # mode: the current one
        assert status == 200 and body["mode"] == "PAPER" and body["points"], body
        assert recorder.failed == 0
    finally:
        await running.stop()


_SAMPLE = re.compile(
    r'^(?P<name>heliosd_[a-z_]+)(\{(?P<labels>[a-z_]+="(?:[^"\\\n]|\\["\\n])*"'
    r'(?:,[a-z_]+="(?:[^"\\\n]|\\["\\n])*")*)\})? (?P<value>-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?)$'
)
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], Decimal]:
    """A strict reader of the 0.0.4 text format: every line HELP, TYPE or a sample."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], Decimal] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(r"^# HELP heliosd_[a-z_]+ \S", line), line
            continue
        if line.startswith("# TYPE "):
            m = re.fullmatch(r"# TYPE (heliosd_[a-z_]+) (gauge|counter|histogram|summary)", line)
            assert m, line
            typed[m.group(1)] = m.group(2)
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        base = re.sub(r"_(bucket|count|sum)$", "", m.group("name"))
        assert m.group("name") in typed or typed.get(base) in ("histogram", "summary"), (
            f"sample before its TYPE: {line}"
        )
        labels = frozenset(_LABEL.findall(m.group("labels") or ""))
        key = (m.group("name"), labels)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = Decimal(m.group("value"))
    for name, kind in typed.items():
        assert kind != "counter" or name.endswith("_total"), name
    return samples


def _get(samples: dict[Any, Decimal], name: str, **labels: str) -> Decimal:
    return samples[(name, frozenset(labels.items()))]


async def _scrape(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str, str]:
    async with http.get(url, **kw) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_parse_and_match_risk_and_health_on_socket_and_tcp(
    sim: SimHandle, short_dir: Path
) -> None:
    token = secrets.token_urlsafe(24)
    listen = f'http_listen = "127.0.0.1:0"\nhttp_token = "{token}"'
    config = write_config(short_dir, sim, extra=PAPER, daemon_extra=listen)
    running = await start_daemon(config)
    try:
        running.service.equity.coalesce_s = 0.2
        await _paper_buy(running, sim)
        await wait_for(lambda: running.service.ledgers[Mode.PAPER].position("BTCZAR") > 0)
        # Quiet prices: /api/risk and /metrics see the same figures.
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(running.socket))
        ) as http:
            status, ctype, text = await _scrape(http, "http://heliosd/metrics")
        assert status == 200, text
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
        samples = parse_exposition(text)

        _, risk = await running.request("GET", "/api/risk")
        _, health = await running.request("GET", "/api/health")
        _, mode = await running.request("GET", "/api/trading/mode")
        assert _get(samples, "heliosd_build_info", version=health["version"]) == 1
        assert _get(samples, "heliosd_mode", mode="PAPER") == 1
        assert _get(samples, "heliosd_mode", mode="LIVE") == 0
        assert _get(samples, "heliosd_trading_state", state=mode["trading_state"]) == 1
        assert _get(samples, "heliosd_epoch") == mode["epoch"]
        assert _get(samples, "heliosd_halted") == int(risk["halted"])
        cents = D("0.01")
        equity = _get(samples, "heliosd_equity", mode="PAPER")
        assert equity.quantize(cents) == D(risk["equity"]), (equity, risk)
        limits = risk["limits"]
        assert _get(samples, "heliosd_drawdown_pct", mode="PAPER").quantize(cents) == D(
            limits["max_drawdown_pct"]["use"]
        )
        assert _get(samples, "heliosd_daily_loss_pct", mode="PAPER").quantize(cents) == D(
            limits["daily_loss_pct"]["use"]
        )
        assert _get(samples, "heliosd_peak_equity", mode="PAPER") == D(100000)
        _, pnl = await running.request("GET", "/api/pnl")
        assert _get(samples, "heliosd_peak_equity", mode="PAPER") == D(pnl["paper"]["peak_equity"])
        assert _get(samples, "heliosd_orders_total", mode="PAPER", outcome="filled") == 1
        assert _get(samples, "heliosd_open_orders", mode="PAPER") == 0
        assert _get(samples, "heliosd_fills_total", mode="PAPER") >= 1
        assert _get(samples, "heliosd_fill_gaps_closed_total") == health["fill_gaps_closed"]
        for key, stream in health["streams"].items():
            prefix, name = key.split(".", 1)
            assert _get(samples, "heliosd_stream_up", mode=prefix.upper(), stream=name) == int(
                stream["up"]
            ), key
        if health["venue_status"] is not None:
            online = int(health["venue_status"] == "online")
            assert _get(samples, "heliosd_venue_online") == online
        if health["clock_skew_ms"] is not None:
            skew = _get(samples, "heliosd_clock_skew_seconds")
            assert skew * 1000 == pytest.approx(float(health["clock_skew_ms"]))
        age = _get(samples, "heliosd_last_quote_age_seconds", pair="BTCZAR")
        assert D(0) <= age < D(60), age
        assert (("heliosd_notifications_pending", frozenset())) in samples
        assert (("heliosd_notifications_failed", frozenset())) in samples

        # The TCP listener guards /metrics with the token like every route.
        host, port = running.service.control.tcp_address
        async with aiohttp.ClientSession() as http:
            status, _, _ = await _scrape(http, f"http://{host}:{port}/metrics")
            assert status == 401
            status, ctype, text = await _scrape(
                http, f"http://{host}:{port}/metrics",
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
        assert status == 200 and ctype.startswith("text/plain"), text
        assert _get(parse_exposition(text), "heliosd_mode", mode="PAPER") == 1
        assert token not in text
    finally:
        await running.stop()


async def test_points_survive_a_restart_and_old_ones_are_pruned(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, extra=PAPER, daemon_extra="equity_retention_days = 2")
    proc: DaemonProcess = heliosd_process(config)
    await proc.astart()
    try:
        first = await eventually(lambda: _points(proc.arequest))
    finally:
        assert await proc.aterminate() == 0
    db = short_dir / "state" / "heliosd.db"
    now = datetime.now(UTC)
    conn = sqlite3.connect(db)
    with conn:
        for age, value in ((timedelta(days=3), "90000"), (timedelta(days=1), "95000")):
            at = (now - age).isoformat(timespec="microseconds")
            conn.execute(
                "INSERT INTO equity_points(mode, at, kind, equity, peak, day_start_equity,"
                " daily_pnl) VALUES ('PAPER', ?, 'minute', ?, ?, ?, '0')",
                (at, value, value, value),
            )
    conn.close()

    await proc.astart()
    try:

        async def pruned_and_new() -> list[Any]:
            pts = await _points(proc.arequest)
            old = [p for p in pts if p["equity"] == "90000"]
            return pts if not old and len(pts) > len(first) + 1 else []

        points = await eventually(pruned_and_new)
    finally:
        assert await proc.aterminate() == 0
    assert points[0]["equity"] == "95000", points  # a day old: kept, and the oldest
    assert [p["at"] for p in points[1 : 1 + len(first)]] == [p["at"] for p in first]
    ats = [datetime.fromisoformat(p["at"]) for p in points]
    assert ats == sorted(ats)


async def test_a_failing_point_write_is_logged_and_never_reaches_orders_or_stops(
    sim: SimHandle, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        recorder = running.service.equity
        await eventually(lambda: _points(running.request))
        # Out of band, the table goes away: every later point's INSERT fails in its savepoint.
        conn = sqlite3.connect(running.service.store.path)
        conn.execute("DROP TABLE equity_points")
        conn.commit()
        conn.close()
        recorder.coalesce_s = 0.0
        await _paper_buy(running, sim)  # the order passes; its fill point cannot be stored
        await wait_for(lambda: recorder.failed > 0)
        assert "equity point not stored" in caplog.text
        await wait_for(lambda: running.service.ledgers[Mode.PAPER].position("BTCZAR") > 0)
        # Orders, stops and the monitor passes go on as before: another order fills, its
        # fill point fails too (the pass that records it ran), a halt and a resume commit.
        failed = recorder.failed
        body = {"pair": "BTCZAR", "side": "SELL", "type": "MARKET", "quantity": "0.001",
                "reason": "after the failure"}  # fmt: skip
        status, answer = await running.request("POST", "/api/orders", body)
        assert status == 201 and answer["order"]["state"] == "filled", answer
        await wait_for(lambda: recorder.failed > failed)
        status, body = await running.request("POST", "/api/trading/halt", {"reason": "t"})
        assert status == 200, body
        status, body = await running.request("POST", "/api/trading/resume", {"reason": "t"})
        assert status == 200, body
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(running.socket))
        ) as http:
            status, _, text = await _scrape(http, "http://heliosd/metrics")
        assert status == 200
        assert _get(parse_exposition(text), "heliosd_equity_points_failed_total") >= 1
    finally:
        await running.stop()


async def test_minute_points_come_without_fills_or_price_ticks(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        running.service.equity.interval_s = 0.3  # "a minute", shortened
        pts = await eventually(lambda: _enough(running.request, 4))
        assert all(p["kind"] == "minute" for p in pts), pts
    finally:
        await running.stop()


async def _enough(request: Any, n: int) -> list[Any]:
    pts = await _points(request)
    return pts if len(pts) >= n else []


async def test_a_long_range_is_thinned_to_the_cap_keeping_oldest_and_newest(
    tmp_path: Path,
) -> None:
    from heliosd.risk.equity import MAX_POINTS, load_points, stamp
    from heliosd.store import Store

    store = await Store.open(tmp_path / "state" / "heliosd.db")
    try:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        rows = [("LIVE", stamp(start + timedelta(minutes=i)), str(i)) for i in range(25_001)]

        def fill(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO equity_points(mode, at, kind, equity, peak, day_start_equity,"
                " daily_pnl) VALUES (?, ?, 'minute', ?, '0', '0', '0')",
                rows,
            )

        await store.write(fill)
        body = await store.read_aside(lambda c: load_points(c, Mode.LIVE, None))
        points = body["points"]
        assert body["total"] == 25_001 and body["step"] > 1
        assert len(points) <= MAX_POINTS
        assert points[0]["equity"] == "0" and points[-1]["equity"] == "25000"
        values = [int(p["equity"]) for p in points]
        assert values == sorted(values)
        gaps = {b - a for a, b in pairwise(values[:-1])}  # the newest is added at the end
        assert gaps == {body["step"]}, gaps  # evenly thinned
        since = start + timedelta(minutes=20_000)
        near = await store.read_aside(lambda c: load_points(c, Mode.LIVE, since))
        assert near["step"] == 1 and len(near["points"]) == 5_001
        assert near["points"][0]["at"] == stamp(since)
        assert (await store.read_aside(lambda c: load_points(c, Mode.PAPER, None)))["points"] == []
    finally:
        await store.close()
