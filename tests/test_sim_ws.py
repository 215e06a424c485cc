"""The account and trade WebSockets: upgrade auth, snapshots, events, PING/PONG,
subscriptions and the unauthenticated-session limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from heliosd.builtin.valr.signing import auth_headers
from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import (
    PROBE_KEY,
    PROBE_SECRET,
    Probe,
    compact,
    drain,
    probed_simulator,
    recv_json,
    recv_until,
)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as e:
        yield e


async def expect_401(url: str, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(url, additional_headers=headers)
    assert info.value.response.status_code == 401


async def test_account_upgrade_needs_valid_auth(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    url = sim.ws_url + "/ws/account"
    await expect_401(url, {})
    await expect_401(
        url,
        auth_headers(
            PROBE_KEY, "wrong", probe.headers("GET", "/")["X-VALR-TIMESTAMP"], "GET", "/ws/account"
        ),
    )
    # Signed over the wrong path (the trade stream's) is a bad signature too.
    await expect_401(url, probe.headers("GET", "/ws/trade"))
    stale = probe.headers("GET", "/ws/account", ts=1558014486185)
    await expect_401(url, stale)
    await expect_401(url, auth_headers("0" * 64, "x", 1, "GET", "/ws/account"))


async def test_account_snapshot_on_connect(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("50000"))
    sim.fund("0", "BTC", Decimal("0.25"))
    sim.add_account("0")
    order = {
        "side": "BUY",
        "quantity": "0.01",
        "price": "900000",
        "pair": "BTCZAR",
        "customerOrderId": "snap",
    }
    assert (await probe.call("POST", "/v2/orders/limit", order)).status == 201
    ws = await probe.connect("account")
    first = await recv_json(ws)
    assert first == {"type": "AUTHENTICATED"}
    snapshot = await drain(ws)
    assert [m["type"] for m in snapshot] == [
        "BALANCE_UPDATE",
        "BALANCE_UPDATE",
        "OPEN_ORDERS_UPDATE",
    ]
    balances = {m["data"]["currency"]["shortName"]: m["data"] for m in snapshot[:2]}
    assert balances["ZAR"]["available"] == "41000"
    assert balances["ZAR"]["reserved"] == "9000"
    assert balances["ZAR"]["currency"]["symbol"] == "R"  # VALR's symbol for the rand
    assert balances["BTC"]["totalInReference"] == "250000"
    assert [o["customerOrderId"] for o in snapshot[2]["data"]] == ["snap"]
    await ws.close()


async def test_zero_balances_are_not_in_the_snapshot(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    ws = await probe.connect("account")
    assert await recv_json(ws) == {"type": "AUTHENTICATED"}
    assert await drain(ws) == [{"type": "OPEN_ORDERS_UPDATE", "data": []}]
    await ws.close()


async def test_ping_pong_and_live_balance_events(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("account")
    await drain(ws)
    await ws.send(compact({"type": "PING"}))
    assert await recv_json(ws) == {"type": "PONG"}
    await ws.send("not json")  # ignored, connection stays up
    await ws.send(compact({"type": "SOMETHING_ELSE"}))
    sim.fund("0", "ETH", Decimal("1.5"))
    update = await recv_json(ws)
    assert update["type"] == "BALANCE_UPDATE"
    assert (update["data"]["currency"]["shortName"], update["data"]["available"]) == ("ETH", "1.5")
    await ws.close()


async def test_subaccount_stream_is_scoped(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sub = "903671169785507840"
    sim.add_account(sub)
    as_sub = Probe(probe.session, sim.rest_url, sim.ws_url, PROBE_KEY, PROBE_SECRET, sub)
    ws = await as_sub.connect("account")
    await drain(ws)
    sim.fund("0", "ZAR", Decimal("1"))  # primary: not this socket's business
    sim.fund(sub, "ZAR", Decimal("2"))
    update = await recv_json(ws)
    assert update["data"]["available"] == "2"
    assert await drain(ws, 0.1) == []
    await ws.close()


async def test_trade_stream_subscribe_snapshot_and_updates(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("trade", signed=False)
    await ws.send(
        compact(
            {
                "type": "SUBSCRIBE",
                "subscriptions": [
                    {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR"]},
                    {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]},
                    {"event": "NEW_TRADE", "pairs": ["BTCZAR"]},
                ],
            }
        )
    )
    assert await recv_json(ws) == {"type": "SUBSCRIBED"}
    snapshot = await drain(ws)
    assert [(m["type"], m["currencyPairSymbol"]) for m in snapshot] == [
        ("AGGREGATED_ORDERBOOK_UPDATE", "BTCZAR"),
        ("MARKET_SUMMARY_UPDATE", "BTCZAR"),
        ("MARKET_SUMMARY_UPDATE", "ETHZAR"),
    ]
    book = snapshot[0]["data"]
    assert set(book) == {"Asks", "Bids", "LastChange", "SequenceNumber"}
    sim.set_price("BTCZAR", Decimal("1010000"))
    moved = await drain(ws)
    assert [m["type"] for m in moved] == ["AGGREGATED_ORDERBOOK_UPDATE", "MARKET_SUMMARY_UPDATE"]
    assert moved[0]["data"]["SequenceNumber"] > book["SequenceNumber"]
    assert moved[1]["data"]["markPrice"] == "1010000"
    sim.fund("0", "ZAR", Decimal("5000"))
    await probe.call(
        "POST", "/v2/orders/market", {"side": "BUY", "quoteAmount": "1000", "pair": "BTCZAR"}
    )
    trade, _ = await recv_until(ws, lambda m: m["type"] == "NEW_TRADE")
    assert trade["currencyPairSymbol"] == "BTCZAR"
    assert set(trade["data"]) == {
        "price",
        "quantity",
        "currencyPair",
        "tradedAt",
        "takerSide",
        "id",
    }
    assert trade["data"]["takerSide"] == "buy"
    await ws.close()


async def test_subscribe_replaces_the_pair_set(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("trade", signed=False)
    for pairs in (["BTCZAR", "ETHZAR"], ["ETHZAR"]):
        await ws.send(
            compact(
                {
                    "type": "SUBSCRIBE",
                    "subscriptions": [{"event": "MARKET_SUMMARY_UPDATE", "pairs": pairs}],
                }
            )
        )
        await recv_until(ws, lambda m: m["type"] == "SUBSCRIBED")
        await drain(ws)
    sim.set_price("BTCZAR", Decimal("990000"))
    sim.set_price("ETHZAR", Decimal("51000"))
    updates = await drain(ws)
    assert [m["currencyPairSymbol"] for m in updates] == ["ETHZAR"]
    await ws.send(
        compact(
            {
                "type": "SUBSCRIBE",
                "subscriptions": [{"event": "MARKET_SUMMARY_UPDATE", "pairs": []}],
            }
        )
    )
    assert await recv_json(ws) == {"type": "SUBSCRIBED"}
    sim.set_price("ETHZAR", Decimal("52000"))
    assert await drain(ws, 0.1) == []
    await ws.close()


async def test_unsubscribe(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("trade", signed=False)
    await ws.send(
        compact(
            {
                "type": "SUBSCRIBE",
                "subscriptions": [
                    {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]}
                ],
            }
        )
    )
    await drain(ws)
    await ws.send(
        compact(
            {
                "type": "UNSUBSCRIBE",
                "subscriptions": [{"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR"]}],
            }
        )
    )
    assert await recv_json(ws) == {"type": "UNSUBSCRIBED"}
    sim.set_price("BTCZAR", Decimal("990000"))
    sim.set_price("ETHZAR", Decimal("51000"))
    assert [m["currencyPairSymbol"] for m in await drain(ws)] == ["ETHZAR"]
    await ws.close()


async def read_until_closed(ws: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 2)


async def test_unauthenticated_trade_socket_is_closed_after_timeout() -> None:
    async with probed_simulator(SimConfig(price_interval_s=None, unauth_timeout_s=0.5)) as env:
        sim, probe = env
        anonymous = await probe.connect("trade", signed=False)
        signed = await probe.connect("trade", signed=True)
        assert await recv_json(signed) == {"type": "AUTHENTICATED"}
        await anonymous.send(compact({"type": "PING"}))
        assert await recv_json(anonymous) == {"type": "PONG"}
        with pytest.raises(ConnectionClosed):
            await read_until_closed(anonymous)
        assert anonymous.close_code == 1008
        # Authenticated sockets are not limited.
        await signed.send(compact({"type": "PING"}))
        assert await recv_json(signed) == {"type": "PONG"}
        await signed.close()
        await expect_401(sim.ws_url + "/ws/trade", probe.headers("GET", "/ws/account"))


async def test_stop_is_bounded_with_a_client_that_stopped_reading() -> None:
    sim = Simulator(SimConfig(price_interval_s=None))
    await sim.start()
    sim.add_api_key(PROBE_KEY, PROBE_SECRET)
    sim.fund("0", "ZAR", Decimal("10000000"))
    headers = auth_headers(PROBE_KEY, PROBE_SECRET, int(time.time() * 1000), "GET", "/ws/account")
    # A tiny receive queue: the client stops reading and TCP backs up into the sim.
    ws = await websockets.connect(
        sim.ws_url + "/ws/account", additional_headers=headers, max_queue=4
    )
    await sim.inject_fills("0", "BTCZAR", 20_000)
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 5
    ws.transport.abort()
