"""Every fault mode: 429s (random and counted), 5xx before/after the handler, delays,
dropped, paused and garbled sockets, read-only mode; all seeded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import Probe, compact, drain, probed_simulator, recv_json

LIMIT = {"side": "BUY", "quantity": "0.01", "price": "900000", "pair": "BTCZAR"}


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("1000000"))
        yield sim, probe


async def read_until_closed(ws: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 2)


async def test_random_429(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.http_429_rate = 1.0
    sim.faults.retry_after_s = 3
    reply = await probe.call("POST", "/v2/orders/limit", LIMIT)
    assert reply.status == 429
    assert reply.headers["x-valr-ratelimited"] == "true"
    assert reply.headers["Retry-After"] == "3"
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "429" in reply.text
    with pytest.raises(json.JSONDecodeError):
        reply.json()  # VALR's 429 body is HTML, not JSON
    assert sim.orders_received("0") == []  # a rate-limited request is not processed
    sim.faults.http_429_rate = 0.0
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 201


async def test_fixed_minute_counter() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None, rate_limit_per_minute=3)) as env:
        _, probe = env
        statuses = [(await probe.get("/v1/account/balances")).status for _ in range(5)]
        if statuses[:3] != [200, 200, 200]:  # crossed a minute boundary mid-test: retry once
            statuses = [(await probe.get("/v1/account/balances")).status for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        reply = await probe.get("/v1/account/balances")
        assert 1 <= int(reply.headers["Retry-After"]) <= 61


async def test_5xx_before_the_handler_means_nothing_happened(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.http_5xx_rate = 1.0
    sim.faults.http_5xx_after_rate = 0.0
    reply = await probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "lost"})
    assert reply.status in (500, 502, 503, 504)
    assert sim.orders_received("0") == []
    assert sim.open_orders("0") == []


async def test_5xx_after_the_handler_means_it_happened(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.http_5xx_rate = 1.0
    sim.faults.http_5xx_after_rate = 1.0
    reply = await probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "ghost"})
    assert reply.status in (500, 502, 503, 504)
    received = sim.orders_received("0")
    assert [(r["customerOrderId"], r["accepted"]) for r in received] == [("ghost", True)]
    assert [o["customerOrderId"] for o in sim.open_orders("0")] == ["ghost"]
    # The only safe recovery: look it up by customerOrderId before any retry.
    sim.faults.http_5xx_rate = 0.0
    found = await probe.get("/v1/orders/BTCZAR/customerorderid/ghost")
    assert found.json()["orderStatusType"] == "Placed"
    retry = await probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "ghost"})
    assert retry.json()["code"] == -11502


async def test_fault_sequence_is_seeded() -> None:
    patterns = []
    for _ in range(2):
        async with probed_simulator(SimConfig(seed=5, price_interval_s=None)) as (sim, probe):
            sim.faults.http_429_rate = 0.3
            sim.faults.http_5xx_rate = 0.3
            patterns.append([(await probe.public("/v1/public/time")).status for _ in range(20)])
    assert patterns[0] == patterns[1]
    assert {200, 429} <= set(patterns[0])


async def test_delay(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.delay_s = 0.3
    started = time.monotonic()
    assert (await probe.public("/v1/public/time")).status == 200
    assert time.monotonic() - started >= 0.3


async def test_delay_after_the_handler_means_it_happened(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.delay_after_s = 0.5
    request = asyncio.create_task(
        probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "late"})
    )
    await asyncio.sleep(0.2)
    assert [o["customerOrderId"] for o in sim.open_orders("0")] == ["late"]  # already placed
    assert not request.done()
    assert (await request).status == 201


async def test_delay_before_the_handler_holds_the_request(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.delay_s = 0.5
    request = asyncio.create_task(
        probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "held"})
    )
    await asyncio.sleep(0.2)
    assert sim.open_orders("0") == []  # still in flight
    assert (await request).status == 201
    assert [o["customerOrderId"] for o in sim.open_orders("0")] == ["held"]


async def test_read_only_mode(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.read_only = True
    assert (await probe.get("/v1/account/balances")).status == 200
    reply = await probe.call("POST", "/v2/orders/limit", LIMIT)
    assert reply.status == 503
    assert sim.orders_received("0") == []


@pytest.mark.parametrize(("mode", "code"), [("close", 1001), ("abort", 1006)])
async def test_drop_ws_connections(env: tuple[Simulator, Probe], mode: str, code: int) -> None:
    sim, probe = env
    sim.faults.ws_drop_mode = mode
    account = await probe.connect("account")
    trade = await probe.connect("trade", signed=False)
    await drain(account, 0.1)
    await trade.send(compact({"type": "PING"}))
    await recv_json(trade)
    sim.drop_ws_connections()
    for ws in (account, trade):
        with pytest.raises(ConnectionClosed):
            await read_until_closed(ws)
        assert ws.close_code == code
    # The simulator forgets dropped sockets and accepts new ones.
    await asyncio.sleep(0.05)
    assert sim.hub.account_socket_count() == 0
    again = await probe.connect("account")
    assert await recv_json(again) == {"type": "AUTHENTICATED"}
    await again.close()


async def test_periodic_drops(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.faults.drop_ws_every_s = 0.3
    for _ in range(2):
        ws = await probe.connect("account")
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await read_until_closed(ws)
        assert time.monotonic() - started < 1.0


async def test_paused_account_stream_loses_events_but_trades_happen(
    env: tuple[Simulator, Probe],
) -> None:
    sim, probe = env
    ws = await probe.connect("account")
    await drain(ws, 0.1)
    sim.faults.pause_account_stream = True
    reply = await probe.call(
        "POST", "/v2/orders/market", {"side": "BUY", "quoteAmount": "1000", "pair": "BTCZAR"}
    )
    assert reply.status == 201
    await sim.inject_fills("0", "BTCZAR", 5)
    await ws.send(compact({"type": "PING"}))
    assert await drain(ws, 0.2) == [{"type": "PONG"}]  # control replies still flow
    history = (await probe.get("/v1/account/tradehistory")).json()
    assert len(history) == 6  # REST is the way to reconcile
    # A socket opened while paused gets no snapshot either.
    late = await probe.connect("account")
    assert await drain(late, 0.2) == [{"type": "AUTHENTICATED"}]
    sim.faults.pause_account_stream = False
    sim.fund("0", "ETH", Decimal("1"))
    assert (await recv_json(ws))["type"] == "BALANCE_UPDATE"
    await ws.close()
    await late.close()


async def test_garbled_messages() -> None:
    async with probed_simulator(SimConfig(seed=3, price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("1000000"))
        sim.faults.garble_rate = 1.0
        ws = await probe.connect("account")
        assert await recv_json(ws) == {"type": "AUTHENTICATED"}  # never garbled
        await sim.inject_fills("0", "BTCZAR", 30)
        raw = []
        while len(raw) < 92:  # snapshot (2) + 30 fills x 3
            raw.append(await asyncio.wait_for(ws.recv(), 2))
        kinds = set()
        for text in raw:
            try:
                message = json.loads(text)
            except ValueError:
                kinds.add("unparseable")
                continue
            assert message["type"] == "SIM_UNKNOWN_EVENT"
            kinds.add("unknown")
        assert kinds == {"unparseable", "unknown"}
        await ws.send(compact({"type": "PING"}))
        assert await recv_json(ws) == {"type": "PONG"}
        sim.faults.garble_rate = 0.0
        sim.fund("0", "ETH", Decimal("1"))
        assert (await recv_json(ws))["type"] == "BALANCE_UPDATE"
        await ws.close()
