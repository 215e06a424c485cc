"""The streams without VALR's AUTHENTICATED, and NEW_ACCOUNT_HISTORY_RECORD met and ignored.

That VALR sends AUTHENTICATED on a signed ``/ws/trade`` is unproven (and on ``/ws/account``
only its type is known), so neither stream may depend on it: the trade stream is up on open,
the account stream on AUTHENTICATED or its first message, or after ``auth_timeout_s`` of
silence with a warning. The simulator omits AUTHENTICATED on request
(``no_trade_authenticated`` / ``no_account_authenticated``) and sends VALR's ledger row
NEW_ACCOUNT_HISTORY_RECORD beside each NEW_ACCOUNT_TRADE; the client takes fills from the
trade message only (one fill per trade, never two).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from heliosd.builtin.valr.client import ValrClient
from heliosd.builtin.valr.signing import auth_headers
from heliosd.core.types import OrderType, PlaceRequest, Side
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


class AccountTap:
    """A second, raw signed socket on the account's ``/ws/account``: every message type the
    simulator sends the account, as a socket sees it."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.types: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AccountTap:
        self._session = aiohttp.ClientSession()
        headers = auth_headers(SIM_KEY, SIM_SECRET, int(time.time() * 1000), "GET", "/ws/account")
        ws = await self._session.ws_connect(f"{self.sim.ws_url}/ws/account", headers=headers)

        async def read() -> None:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.types.append(json.loads(msg.data)["type"])

        self._task = asyncio.get_running_loop().create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._session is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._session.close()


async def test_trade_stream_without_authenticated_streams_prices_and_the_client_trades(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr")
    async with funded_sim() as sim:
        sim.apply_faults({"no_trade_authenticated": True})
        events = RecordingEvents()
        # auth_timeout_s is long: a trade stream that still waited for AUTHENTICATED would
        # not be up (nor have prices) within the waits below.
        tuning = fast_valr_tuning(auth_timeout_s=30.0)
        started = time.monotonic()
        async with valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=tuning) as client:
            await events.wait_for(lambda: events.up.get("trade") is True, within=5)
            assert time.monotonic() - started < 5
            sim.set_price("BTCZAR", Decimal(1010000))
            await events.wait_for(
                lambda: "BTCZAR" in events.quotes and (events.quotes["BTCZAR"].bid or 0) > 1000000,
                within=5,
            )
            result = await client.place(market_buy("no-auth-1"))
            await events.wait_for(lambda: len(events.fills) == 1)
            (fill,) = events.fills.values()
            assert fill.exchange_order_id == result.exchange_order_id
    assert not [r for r in caplog.records if "AUTHENTICATED" in r.getMessage()]


async def test_account_stream_without_authenticated_is_up_on_its_snapshot() -> None:
    async with funded_sim() as sim:
        sim.apply_faults({"no_account_authenticated": True, "no_trade_authenticated": True})
        events = RecordingEvents()
        tuning = fast_valr_tuning(auth_timeout_s=30.0)
        started = time.monotonic()
        async with valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=tuning) as client:
            # Up on VALR's connect snapshot, long before auth_timeout_s.
            assert time.monotonic() - started < 5
            await client.place(market_buy("no-auth-2"))
            await events.wait_for(lambda: len(events.fills) == 1)
            assert events.up == {"account": True, "trade": True}


async def test_a_silent_account_stream_is_used_after_auth_timeout_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts the signed upgrade and says nothing: after ``auth_timeout_s``
    the stream carries on (warned), reconciles through REST and is ready; what the socket
    delivers afterwards is applied."""
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr.streams")
    sockets: list[web.WebSocketResponse] = []

    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and json.loads(msg.data).get("type") == "PING":
                await ws.send_str('{"type":"PONG"}')
        return ws

    app = web.Application()
    app.router.add_get("/ws/account", silent)
    app.router.add_get("/ws/trade", silent)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with funded_sim() as sim:
            events = RecordingEvents()
            client = ValrClient(
                valr_settings(sim.rest_url, f"ws://127.0.0.1:{port}", SIM_KEY, SIM_SECRET),
                tuning=fast_valr_tuning(auth_timeout_s=0.3),
            )
            await client.start(events)
            try:
                await events.wait_for(lambda: events.up.get("account") is True, within=5)
                assert events.balance_snapshots == 1  # the REST reconciliation ran
                assert client._account is not None and client._account.ready.is_set()
                warned = [r.getMessage() for r in caplog.records]
                assert any("no AUTHENTICATED nor any message" in m for m in warned), warned
                assert events.up.get("trade") is True  # never waited for anything
                assert len(sockets) == 2  # both connected once: nothing was retried
            finally:
                await client.close()
    finally:
        await runner.cleanup()


async def test_history_records_are_sent_and_ignored_one_fill_per_trade(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr.streams")
    async with funded_sim() as sim, AccountTap(sim) as seen:
        events = RecordingEvents()
        async with valr_on_sim(
            sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()
        ) as client:
            for i in range(3):
                await client.place(market_buy(f"hist-{i}"))
            trade_ids = {t["id"] for t in sim.trades("0")}
            await events.wait_for(lambda: events.fills.keys() == trade_ids)
            await events.wait_for(lambda: seen.types.count("NEW_ACCOUNT_HISTORY_RECORD") == 3)
            await client.balances()  # a round trip: the records have been read by now
        assert seen.types.count("NEW_ACCOUNT_TRADE") == 3
        assert events.fill_deliveries == 3  # one per trade: none from the ledger rows
    # Known and deliberately ignored: no "unknown type" or "skipped" warning, no catch-up.
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def test_the_history_record_has_valrs_documented_shape() -> None:
    """NEW_ACCOUNT_HISTORY_RECORD with the fields VALR documents for it (docs/simulator.md)."""
    from datetime import UTC, datetime

    from heliosd.sim import wire
    from heliosd.sim.orders import Trade

    trade = Trade(
        "t-1", "0", "o-1", "c-1", "BTCZAR", "buy", Decimal(1000500), Decimal("0.001"),
        Decimal("0.000001"), "BTC", datetime(2026, 1, 2, tzinfo=UTC), 7, False,
    )  # fmt: skip
    message = wire.new_account_history_record(trade, "BTC", "ZAR", market=True)
    assert message["type"] == "NEW_ACCOUNT_HISTORY_RECORD"
    data = message["data"]
    assert data["transactionType"] == {"type": "MARKET_BUY", "description": "Market Buy"}
    assert data["debitCurrency"]["shortName"] == "ZAR"
    assert data["debitValue"] == "1000.5"
    assert data["creditCurrency"]["shortName"] == "BTC"
    assert data["creditValue"] == "0.001"
    assert data["feeCurrency"]["shortName"] == "BTC"
    assert data["feeValue"] == "0.000001"
    assert data["eventAt"] == "2026-01-02T00:00:00.000Z"
    assert data["additionalInfo"] == {
        "costPerCoin": "1000500",
        "costPerCoinSymbol": "ZAR",
        "currencyPairSymbol": "BTCZAR",
        "orderId": "o-1",
    }
