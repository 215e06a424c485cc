"""The simulator's fault controls and admin routes over real HTTP and WebSocket: what a test
driving a daemon process uses to make the venue misbehave and to see what reached it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import Probe, drain, probed_simulator, recv_json, recv_until

LIMIT = {"side": "BUY", "quantity": "0.01", "price": "900000", "pair": "BTCZAR"}
MARKET = {"side": "BUY", "baseAmount": "0.001", "pair": "BTCZAR"}


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("1000000"))
        yield sim, probe


async def admin(probe: Probe, verb: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A plain (unsigned) admin call, as a test process would make it."""
    async with probe.session.request(
        verb, probe.rest_url + path, data=None if body is None else json.dumps(body)
    ) as resp:
        return resp.status, await resp.json()


async def test_fault_state_round_trip_and_all_or_nothing(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    status, state = await admin(probe, "GET", "/sim/faults")
    assert status == 200
    assert state["read_only"] is False and state["rate_limits"] == []
    status, state = await admin(probe, "POST", "/sim/faults", {
        "read_only": True, "http_429_rate": 0.25,
        "rate_limits": [{"prefix": "/v2/orders", "count": 2, "retry_after_s": 3,
                         "method": "post"}],
        "route_delays": [{"prefix": "/v1/orders/open", "delay_s": 0.01}],
        "drop_account_messages": {"NEW_ACCOUNT_TRADE": 2},
    })  # fmt: skip
    assert status == 200
    assert state["read_only"] is True and state["http_429_rate"] == 0.25
    assert state["rate_limits"] == [
        {"prefix": "/v2/orders", "count": 2, "retry_after_s": 3, "method": "POST", "hits": 0}
    ]
    assert state["route_delays"] == [
        {"prefix": "/v1/orders/open", "delay_s": 0.01, "method": None, "after": False}
    ]
    assert state["drop_account_messages"] == {"NEW_ACCOUNT_TRADE": 2}
    assert sim.faults.read_only is True
    # A bad body changes nothing, even where its other keys were good.
    for bad in (
        {"read_only": False, "http_429_rate": 2},
        {"read_only": False, "no_such_fault": 1},
        {"rate_limits": [{"prefix": "v2"}]},
        {"route_delays": [{"prefix": "/v2", "delay_s": 1, "after": "yes"}]},
        {"route_delays": [{"prefix": "/v2", "delay_s": -1}]},
        {"dropped_account_messages": {}},
        [1, 2],
    ):
        status, body = await admin(probe, "POST", "/sim/faults", bad)
        assert status == 400 and body["error"] == "bad_request", bad
        assert body["message"]
    assert sim.faults.read_only is True and sim.faults.http_429_rate == 0.25
    status, state = await admin(probe, "POST", "/sim/faults", {"reset": True})
    assert state == (await admin(probe, "GET", "/sim/faults"))[1]
    assert state["read_only"] is False and state["rate_limits"] == []
    assert state["drop_account_messages"] == {}


async def test_429_for_the_next_n_requests_on_a_route(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    await admin(probe, "POST", "/sim/faults", {
        "rate_limits": [{"prefix": "/v2/orders", "count": 2, "retry_after_s": 7,
                         "method": "POST"}]
    })  # fmt: skip
    assert (await probe.get("/v1/orders/open")).status == 200  # other routes untouched
    for _ in range(2):
        reply = await probe.call("POST", "/v2/orders/limit", LIMIT)
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "7"
        assert reply.headers["x-valr-ratelimited"] == "true"
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 201
    _, state = await admin(probe, "GET", "/sim/faults")
    assert state["rate_limits"][0]["count"] == 0 and state["rate_limits"][0]["hits"] == 2
    assert len(sim.order_log()) == 1  # the 429s never reached the handler


async def test_a_route_delay_holds_only_that_route(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.delay_route("/v2/orders", 0.3, method="POST")
    order: list[str] = []

    async def place() -> None:
        await probe.call("POST", "/v2/orders/limit", LIMIT)
        order.append("place")

    async def read() -> None:
        await asyncio.sleep(0.02)
        await probe.get("/v1/orders/open")
        order.append("read")

    await asyncio.gather(place(), read())
    assert order == ["read", "place"]


async def test_drop_the_next_message_of_a_type(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("account")
    await drain(ws)
    await admin(probe, "POST", "/sim/faults", {"drop_account_messages": {"NEW_ACCOUNT_TRADE": 1}})
    assert (await probe.call("POST", "/v2/orders/market", MARKET)).status == 201
    first = await drain(ws)
    assert "NEW_ACCOUNT_TRADE" not in [m["type"] for m in first]
    assert "ORDER_STATUS_UPDATE" in [m["type"] for m in first]  # only that type is lost
    assert (await probe.call("POST", "/v2/orders/market", MARKET)).status == 201
    second = await drain(ws)
    assert [m["type"] for m in second].count("NEW_ACCOUNT_TRADE") == 1
    assert sim.fault_state()["dropped_account_messages"] == {"NEW_ACCOUNT_TRADE": 1}
    assert sim.fault_state()["drop_account_messages"] == {}
    await ws.close()


async def test_a_dropped_message_is_redelivered_late_once(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("account")
    await drain(ws)
    sim.drop_account_messages("NEW_ACCOUNT_TRADE")
    assert (await probe.call("POST", "/v2/orders/market", MARKET)).status == 201
    first = await drain(ws)
    assert "NEW_ACCOUNT_TRADE" not in [m["type"] for m in first]
    status, body = await admin(probe, "POST", "/sim/redeliver-dropped", {"account": "1"})
    assert (status, body) == (200, {"redelivered": 0})  # another account's: nothing
    status, body = await admin(probe, "POST", "/sim/redeliver-dropped", {})
    assert (status, body) == (200, {"redelivered": 1})
    (late,) = await drain(ws)
    assert late["type"] == "NEW_ACCOUNT_TRADE"
    assert late["data"]["id"] == sim.trades("0")[0]["id"]
    assert (await admin(probe, "POST", "/sim/redeliver-dropped", {}))[1] == {"redelivered": 0}
    status, body = await admin(probe, "POST", "/sim/redeliver-dropped", {"account": 0})
    assert status == 400 and body["error"] == "bad_request"
    await ws.close()


async def test_authenticated_can_be_left_out_on_either_stream(
    env: tuple[Simulator, Probe],
) -> None:
    sim, probe = env
    await admin(probe, "POST", "/sim/faults", {"no_account_authenticated": True})
    ws = await probe.connect("account")
    assert (await recv_json(ws))["type"] == "BALANCE_UPDATE"  # the snapshot comes first
    await ws.close()
    sim.apply_faults({"no_account_authenticated": False})
    ws = await probe.connect("account")
    assert (await recv_json(ws))["type"] == "AUTHENTICATED"
    await ws.close()


async def test_drop_sockets_and_read_only_over_http(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    ws = await probe.connect("account")
    await drain(ws)
    status, body = await admin(probe, "POST", "/sim/drop-sockets", {"stream": "account"})
    assert (status, body) == (200, {"dropped": 1})
    with pytest.raises(ConnectionClosed):
        await recv_until(ws, lambda m: False, timeout=2)
    status, body = await admin(probe, "POST", "/sim/drop-sockets", {"stream": "sideways"})
    assert status == 400
    await admin(probe, "POST", "/sim/faults", {"read_only": True})
    assert (await probe.public("/v1/public/status")).json() == {"status": "read-only"}
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 503
    await admin(probe, "POST", "/sim/faults", {"read_only": False})
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 201


async def test_order_log_records_every_arrival(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    assert (await probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "a1"})
            ).status == 201  # fmt: skip
    bad = {**LIMIT, "side": "buy", "customerOrderId": "a2"}  # lower-case side: refused
    assert (await probe.call("POST", "/v2/orders/limit", bad)).status == 400
    stranger = Probe(probe.session, probe.rest_url, probe.ws_url, "f" * 64, "0" * 64)
    body = {**MARKET, "customerOrderId": "a3"}
    assert (await stranger.call("POST", "/v1/orders/market", body)).status == 401
    status, log = await admin(probe, "GET", "/sim/order-log")
    assert status == 200 and log["last_seq"] == 3
    rows = [(o["seq"], o["customer_order_id"], o["pair"], o["side"], o["account"],
             o["accepted"], o["status"]) for o in log["orders"]]  # fmt: skip
    assert rows == [
        (1, "a1", "BTCZAR", "BUY", "0", True, 201),
        (2, "a2", "BTCZAR", "buy", "0", False, 400),
        (3, "a3", "BTCZAR", "BUY", None, False, 401),
    ]
    assert log["orders"][0]["order_id"] and log["orders"][0]["arrived_at"].endswith("Z")
    assert log["orders"][1]["error"]["code"] == -11
    _, tail = await admin(probe, "GET", "/sim/order-log?after=2")
    assert [o["seq"] for o in tail["orders"]] == [3]
    assert [a.seq for a in sim.order_log(after=1)] == [2, 3]
    assert (await admin(probe, "GET", "/sim/order-log?after=x"))[0] == 400


async def test_cancel_on_disconnect_per_socket(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    armed = await probe.connect("account")
    plain = await probe.connect("account")
    await drain(armed)
    await drain(plain)
    await armed.send(json.dumps(
        {"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": True}}
    ))  # fmt: skip
    answer = await recv_json(armed)
    assert answer == {
        "type": "CANCEL_ON_DISCONNECT_UPDATE",
        "data": {"cancelOnDisconnect": "true"},
    }  # a string, as VALR answers
    assert sim.cancel_on_disconnect_sockets("0") == 1
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 201
    await plain.close()  # an unarmed socket closing cancels nothing
    await asyncio.sleep(0.1)
    assert len(sim.open_orders("0")) == 1
    _, view = await admin(probe, "GET", "/sim/accounts/0")
    assert view["cancel_on_disconnect_sockets"] == 1 and len(view["open_orders"]) == 1
    assert view["balances"]["ZAR"]["reserved"] == "9000" and view["trades"] == []
    assert (await admin(probe, "GET", "/sim/accounts/nobody"))[0] == 404
    await armed.close()
    for _ in range(100):
        if not sim.open_orders("0"):
            break
        await asyncio.sleep(0.02)
    assert sim.open_orders("0") == []
    assert sim.disconnect_cancels() == [("0", 1)]
    # Disarming answers "false" and a later drop cancels nothing.
    ws = await probe.connect("account")
    await drain(ws)
    await ws.send(
        json.dumps({"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": True}})
    )
    await recv_until(ws, lambda m: m["type"] == "CANCEL_ON_DISCONNECT_UPDATE")
    await ws.send(
        json.dumps({"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": False}})
    )
    off, _ = await recv_until(ws, lambda m: m["type"] == "CANCEL_ON_DISCONNECT_UPDATE")
    assert off["data"] == {"cancelOnDisconnect": "false"}
    assert (await probe.call("POST", "/v2/orders/limit", LIMIT)).status == 201
    await ws.close()
    await asyncio.sleep(0.1)
    assert len(sim.open_orders("0")) == 1


async def test_transactions_route_moves_money(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ws = await probe.connect("account")
    await drain(ws)
    deposit = {"kind": "deposit", "currency": "ZAR", "amount": "2500.5"}
    status, body = await admin(probe, "POST", "/sim/transactions", deposit)
    assert status == 201
    row = body["transaction"]
    assert row["transactionType"]["type"] == "FIAT_DEPOSIT"
    assert (row["creditCurrency"], row["creditValue"]) == ("ZAR", "2500.5")
    update, _ = await recv_until(ws, lambda m: m["type"] == "BALANCE_UPDATE")
    assert update["data"]["available"] == "1002500.5"
    for bad in (
        {"kind": "withdrawal", "currency": "ZAR", "amount": "99999999"},
        {"kind": "gift", "currency": "ZAR", "amount": "1"},
        {"kind": "deposit", "currency": "ZAR", "amount": 1},
        {"kind": "deposit", "currency": "ZAR", "amount": "-1"},
    ):
        status, body = await admin(probe, "POST", "/sim/transactions", bad)
        assert status == 400 and body["message"], bad
    assert sim.balances("0")["ZAR"][0] == Decimal("1002500.5")
    history = (await probe.get("/v1/account/transactionhistory")).json()
    # sim.fund is the starting balance, not a deposit: only the admin move is a row.
    assert [r["transactionType"]["type"] for r in history] == ["FIAT_DEPOSIT"]
    await ws.close()


async def test_admin_routes_need_no_content_type() -> None:
    async with (
        probed_simulator(SimConfig(price_interval_s=None)) as (_, probe),
        aiohttp.ClientSession() as session,
        session.post(probe.rest_url + "/sim/faults", data=b'{"read_only": true}') as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["read_only"] is True


async def test_lagging_views_and_v1_cancel_200(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    await admin(probe, "POST", "/sim/faults", {"view_lag_s": 30, "v1_cancel_status": 200})
    placed = await probe.call("POST", "/v2/orders/limit", {**LIMIT, "customerOrderId": "lag1"})
    assert placed.status == 201
    looked = await probe.get("/v1/orders/BTCZAR/customerorderid/lag1")
    assert looked.status == 400 and looked.json()["code"] == -1  # not in the view yet
    assert (await probe.get("/v1/orders/open")).json() == []
    assert [o["customerOrderId"] for o in sim.open_orders("0")] == ["lag1"]  # yet it rests
    assert (await probe.call("POST", "/v2/orders/market", MARKET)).status == 201
    assert (await probe.get("/v1/account/tradehistory")).json() == []
    cancel = await probe.call("DELETE", "/v1/orders/order",
                              {"customerOrderId": "lag1", "pair": "BTCZAR"})  # fmt: skip
    assert (cancel.status, cancel.text) == (200, "")
    await admin(probe, "POST", "/sim/faults", {"view_lag_s": 0})
    assert len((await probe.get("/v1/account/tradehistory")).json()) >= 1
    assert (await admin(probe, "POST", "/sim/faults", {"v1_cancel_status": 204}))[0] == 400


async def test_maker_rebates_over_http_fees_route_and_a_garbled_reward(
    env: tuple[Simulator, Probe],
) -> None:
    sim, probe = env
    for bad, message in (
        ({"maker_rebate_bps": 101}, "maker_rebate_bps must be at most 100"),
        ({"maker_rebate_bps": 1.5}, "maker_rebate_bps must be an integer of at least 0"),
        ({"maker_reward_shape": "rebate"}, "maker_reward_shape must be 'reward', 'both' or"),
        ({"garbled_maker_rewards": 3}, "unknown or read-only fault 'garbled_maker_rewards'"),
    ):
        status, body = await admin(probe, "POST", "/sim/faults", bad)
        assert status == 400 and body["message"].startswith(message), body
    status, state = await admin(
        probe, "POST", "/sim/faults", {"maker_rebate_bps": 3, "garble_maker_rewards": 1}
    )
    assert status == 200 and state["maker_rebate_bps"] == 3
    fees = (await probe.get("/v1/account/fees/trade")).json()
    assert {row["makerPercentage"] for row in fees} == {"-0.03"}  # the rate in force

    account = await probe.connect("account")
    await drain(account, 0.1)
    reply = await probe.call("POST", "/v2/orders/limit", {**LIMIT, "postOnly": True})
    assert reply.status == 201, reply.text
    sim.set_price("BTCZAR", Decimal(890000))
    trade, _ = await recv_until(account, lambda m: m["type"] == "NEW_ACCOUNT_TRADE")
    assert trade["data"]["makerReward"] == "0.0I"  # garbled on the stream only
    [row] = (await probe.get("/v1/account/tradehistory")).json()
    assert (row["makerReward"], row["makerRewardCurrency"]) == ("2.7", "ZAR")  # 3 bps of 9,000
    status, state = await admin(probe, "GET", "/sim/faults")
    assert (state["garble_maker_rewards"], state["garbled_maker_rewards"]) == (0, 1)
    await account.close()
