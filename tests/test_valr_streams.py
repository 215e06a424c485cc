"""The account and trade WebSocket streams, on the real simulator (and one silent server)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from heliosd.builtin.valr.client import ValrClient
from heliosd.builtin.valr.streams import AccountStream, StreamBroken, TradeStream
from heliosd.core.errors import AuthError
from heliosd.core.types import Fill, OrderState, OrderType, PlaceRequest, Side
from heliosd.sim import wire
from heliosd.sim.orders import Trade
from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    RecordingEvents,
    fast_valr_tuning,
    funded_sim,
    valr_on_sim,
    valr_settings,
)


def market_buy(cid: str, qty: str = "0.001") -> PlaceRequest:
    return PlaceRequest(cid, "BTCZAR", Side.BUY, OrderType.MARKET, Decimal(qty))


def sim_trade_ids(sim: Any) -> set[str]:
    return {t["id"] for t in sim.trades("0")}


async def test_fills_orders_balances_and_quotes_are_delivered() -> None:
    async with funded_sim() as sim:
        events = RecordingEvents()
        async with valr_on_sim(
            sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()
        ) as client:
            assert events.balance_snapshots == 1  # reconciled before ready
            assert events.open_orders[0] == []  # the REST snapshot came first
            result = await client.place(market_buy("stream-1"))
            await events.wait_for(lambda: sim_trade_ids(sim) <= events.fills.keys())
            (fill,) = events.fills.values()
            assert fill.exchange_order_id == result.exchange_order_id
            assert fill.customer_order_id == "stream-1"
            assert fill.side is Side.BUY
            await events.wait_for(lambda: "BTC" in events.balances)
            assert events.balances["BTC"].available > 0
            resting = await client.place(
                PlaceRequest(
                    "stream-2",
                    "BTCZAR",
                    Side.BUY,
                    OrderType.LIMIT,
                    Decimal("0.001"),
                    Decimal(900000),
                )
            )
            await events.wait_for(
                lambda: (
                    any(s.customer_order_id == "stream-2" for s in events.statuses)
                    and bool(events.open_orders[-1])
                )
            )
            assert events.open_orders[-1][0].exchange_order_id == resting.exchange_order_id
            await client.cancel("BTCZAR", customer_order_id="stream-2")
            await events.wait_for(
                lambda: any(
                    s.customer_order_id == "stream-2" and s.state is OrderState.CANCELLED
                    for s in events.statuses
                )
            )
            sim.set_price("BTCZAR", Decimal(1010000))
            await events.wait_for(lambda: {"BTCZAR", "ETHZAR"} <= events.quotes.keys())
            await events.wait_for(lambda: (events.quotes["BTCZAR"].bid or 0) > Decimal(1000000))
            quote = events.quotes["BTCZAR"]
            assert quote.bid is not None
            assert quote.ask is not None
            assert quote.bid < Decimal(1010000) < quote.ask
            # last comes from the market summary: our market buy's price.
            assert quote.last == fill.price
            assert events.up == {"account": True, "trade": True}


async def test_fills_missed_while_disconnected_are_recovered_exactly_once() -> None:
    async with funded_sim() as sim:
        events = RecordingEvents()
        async with valr_on_sim(
            sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()
        ) as client:
            # Gap 1, before any fill is known (no watermark): events are lost, then the
            # sockets drop.
            sim.faults.pause_account_stream = True
            for i in range(3):
                await client.place(market_buy(f"gap1-{i}"))
            assert events.fills == {}
            sim.faults.pause_account_stream = False
            sim.drop_ws_connections()
            await events.wait_for(lambda: sim_trade_ids(sim) == events.fills.keys())
            # Gap 2, with a watermark; orders placed while reconnecting wait for the
            # reconciliation, then go through.
            sim.faults.pause_account_stream = True
            await client.place(market_buy("gap2-0"))
            sim.faults.pause_account_stream = False
            sim.drop_ws_connections()
            await client.place(market_buy("gap2-1"))
            await events.wait_for(lambda: sim_trade_ids(sim) == events.fills.keys())
            await asyncio.sleep(0.2)
            assert events.fills.keys() == sim_trade_ids(sim)
            assert len(events.fills) == 5
            downs = [c for c in events.connections if c[0] == "account" and not c[1]]
            assert len(downs) >= 2
            assert client._account is not None
            assert client._account.connections >= 3


async def test_garbled_messages_are_skipped_and_the_stream_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr.streams")
    async with funded_sim() as sim:
        events = RecordingEvents()
        async with valr_on_sim(
            sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()
        ) as client:
            sim.faults.garble_rate = 1.0
            for i in range(3):
                await client.place(market_buy(f"garbled-{i}"))
            for price in (1001000, 1002000, 1003000):
                sim.set_price("BTCZAR", Decimal(price))
            await asyncio.sleep(0.3)
            sim.faults.garble_rate = 0.0
            await client.place(market_buy("clean"))
            await events.wait_for(
                lambda: any(f.customer_order_id == "clean" for f in events.fills.values())
            )
            assert client._account is not None
            assert client._trade is not None
            assert client._account.connections == 1  # never reconnected
            assert client._trade.connections == 1
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) >= 5
    assert all(SIM_SECRET not in m and "garbled" not in m for m in skipped)


async def test_missing_pong_means_dead_and_the_stream_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr.streams")
    accepted = 0

    async def silent(request: web.Request) -> web.WebSocketResponse:
        nonlocal accepted
        accepted += 1
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        async for msg in ws:  # read and ignore everything, PING included
            if msg.type is WSMsgType.CLOSE:
                break
        return ws

    app = web.Application()
    app.router.add_get("/ws/trade", silent)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    events = RecordingEvents()
    stream = TradeStream(
        f"ws://127.0.0.1:{port}/ws/trade",
        events,
        fast_valr_tuning(ping_interval_s=0.1),
        sign=None,
        pairs=["BTCZAR"],
    )
    stream.start()
    try:
        await events.wait_for(lambda: accepted >= 2, within=3)
    finally:
        await stream.stop()
        await runner.cleanup()
    assert ("trade", False, "connection closed (code none)") in events.connections
    assert any("no PONG" in r.getMessage() for r in caplog.records)


async def test_debug_logging_never_shows_the_handshake_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        await client.balances()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SIM_KEY not in text
    assert "X-VALR-SIGNATURE" not in text.upper()


async def test_refused_account_stream_makes_place_an_auth_error() -> None:
    async with funded_sim() as sim:
        client = ValrClient(
            valr_settings(sim.rest_url, sim.ws_url, SIM_KEY, "wrong-secret"),
            tuning=fast_valr_tuning(ready_timeout_s=0.5),
        )
        await client.start(RecordingEvents())
        try:
            with pytest.raises(AuthError, match="HTTP 401"):
                await client.place(market_buy("refused"))
        finally:
            await client.close()
        assert sim.orders_received("0") == []


async def test_account_stream_sustains_20k_fills_per_second() -> None:
    """Per-message work: 20 000 NEW_ACCOUNT_TRADE frames through the stream's dispatch."""
    frames = []
    for i in range(20_000):
        trade = Trade(
            f"t{i}",
            "0",
            f"o{i}",
            f"c{i}",
            "BTCZAR",
            "buy",
            Decimal(1000000),
            Decimal("0.0001"),
            Decimal("0.0000001"),
            "BTC",
            datetime.now(UTC),
            i,
            False,
        )
        frames.append(wire.dumps(wire.new_account_trade(trade)))
    count = 0

    class Counting(RecordingEvents):
        async def on_fill(self, fill: Fill) -> None:
            nonlocal count
            count += 1

    async def reconcile(_: Any) -> None:
        return None

    stream = AccountStream(
        "ws://127.0.0.1:9/ws/account",
        Counting(),
        fast_valr_tuning(),
        sign=lambda v, p: {},
        reconcile=reconcile,
    )
    started = time.perf_counter()
    for frame in frames:
        await stream._handle(frame)
    elapsed = time.perf_counter() - started
    assert count == 20_000
    assert 20_000 / elapsed >= 20_000, f"{20_000 / elapsed:.0f} fills/s"


async def test_bulk_fills_over_the_socket_arrive_exactly_once() -> None:
    async with funded_sim(Decimal(10_000_000)) as sim:
        events = RecordingEvents()
        async with valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()):
            ids = await sim.inject_fills("0", "BTCZAR", 3000)
            await events.wait_for(lambda: len(events.fills) == 3000, within=20)
            assert list(events.fills) == ids  # in order
            assert events.fill_deliveries == 3000


@pytest.mark.logs_exception("a programming error, not a network failure")
async def test_a_programming_error_stops_the_stream_once_and_orders_are_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A TypeError while connecting (a library API we call the wrong way, or our own bug) is
    not a network failure: it is logged once at CRITICAL, never retried, and place() refuses
    at once with the reason instead of waiting for a stream that will not come."""
    async with funded_sim() as sim:
        client = ValrClient(
            valr_settings(sim.rest_url, sim.ws_url, SIM_KEY, SIM_SECRET),
            tuning=fast_valr_tuning(ready_timeout_s=30),
        )
        calls = 0

        def broken_sign(verb: str, path: str) -> dict[str, str]:
            nonlocal calls
            calls += 1
            raise TypeError("sign() got an unexpected keyword argument 'when'")

        events = RecordingEvents()
        await client.start(events)
        stream = client._account
        assert stream is not None
        await stream.stop()  # restart it with a signer that is broken
        stream._sign = broken_sign
        stream.start()
        try:
            await events.wait_for(lambda: stream.broken is not None, within=5)
            # The loop has ended: no retry can come later (none waits in a backoff).
            await events.wait_for(lambda: stream._task is not None and stream._task.done(), 5)
            assert calls == 1
            started = time.perf_counter()
            with pytest.raises(StreamBroken, match="TypeError"):
                await client.place(market_buy("broken"))
            assert time.perf_counter() - started < 1  # not the 30 s ready timeout
        finally:
            await client.close()
        critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(critical) == 1 and "not retried" in critical[0].getMessage()
        assert sim.orders_received("0") == []
