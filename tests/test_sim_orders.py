"""Order placement, matching, fees, balances and cancels over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import Probe, drain, probed_simulator, recv_until

MIN_SIZE = "Minimum order size not met . Minimum amount: 0.0001 BTC, minimum total: 10 ZAR"


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as e:
        yield e


def limit(
    side: str = "BUY", quantity: str = "0.01", price: str = "990000", **extra: Any
) -> dict[str, Any]:
    return {"side": side, "quantity": quantity, "price": price, "pair": "BTCZAR", **extra}


async def account_ws(probe: Probe) -> ClientConnection:
    ws = await probe.connect("account")
    await recv_until(ws, lambda m: m["type"] == "OPEN_ORDERS_UPDATE")
    return ws


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == kind]


# -- v1: asynchronous ---------------------------------------------------------------------


async def test_v1_limit_accepted_then_placed(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    ws = await account_ws(probe)
    reply = await probe.call("POST", "/v1/orders/limit", limit(customerOrderId="buy-1"))
    assert reply.status == 202
    body = reply.json()
    assert set(body) == {"id", "customerOrderId"}
    assert body["customerOrderId"] == "buy-1"
    events = await drain(ws)
    kinds = [m["type"] for m in events]
    assert kinds == [
        "ORDER_PROCESSED",
        "BALANCE_UPDATE",
        "ORDER_STATUS_UPDATE",
        "OPEN_ORDERS_UPDATE",
    ]
    processed = events[0]["data"]
    assert processed == {
        "orderId": body["id"],
        "success": True,
        "failureReason": "",
        "customerOrderId": "buy-1",
    }
    balance = events[1]["data"]
    assert balance["currency"]["shortName"] == "ZAR"
    assert (balance["available"], balance["reserved"], balance["total"]) == (
        "10100",
        "9900",
        "20000",
    )
    status = events[2]["data"]
    assert (status["orderStatusType"], status["orderSide"], status["orderType"]) == (
        "Placed",
        "buy",
        "limit",
    )
    assert events[3]["data"][0]["orderId"] == body["id"]
    assert events[3]["data"][0]["quantity"] == "0.01"
    # REST agrees: status by id and by customerOrderId, open orders, balances.
    by_id = (await probe.get(f"/v1/orders/BTCZAR/orderid/{body['id']}")).json()
    by_cid = (await probe.get("/v1/orders/BTCZAR/customerorderid/buy-1")).json()
    assert by_id == by_cid
    assert by_id["orderStatusType"] == "Placed"
    assert by_id["remainingQuantity"] == "0.01"
    opened = (await probe.get("/v1/orders/open")).json()
    assert [o["orderId"] for o in opened] == [body["id"]]
    assert opened[0]["remainingQuantity"] == "0.01"
    assert sim.balances("0")["ZAR"] == (Decimal("10100"), Decimal("9900"))
    await ws.close()


async def test_v1_unfunded_fails_asynchronously(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    ws = await account_ws(probe)
    for path, payload in (
        ("/v1/orders/limit", limit(customerOrderId="poor-1")),
        ("/v1/orders/market", {"side": "BUY", "quoteAmount": "100", "pair": "BTCZAR"}),
    ):
        reply = await probe.call("POST", path, payload)
        assert reply.status == 202  # accepted: 202 never means placed
        order_id = reply.json()["id"]
        status, seen = await recv_until(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE")
        processed = of_type(seen, "ORDER_PROCESSED")[0]["data"]
        assert processed["success"] is False
        assert processed["failureReason"] == "Insufficient Balance"
        assert status["data"]["orderId"] == order_id
        assert status["data"]["orderStatusType"] == "Failed"
        assert status["data"]["failedReason"] == "Insufficient Balance"
    looked_up = (await probe.get("/v1/orders/BTCZAR/customerorderid/poor-1")).json()
    assert looked_up["orderStatusType"] == "Failed"
    summary = (await probe.get("/v1/orders/history/summary/customerorderid/poor-1")).json()
    assert summary["failedReason"] == "Insufficient Balance"
    await ws.close()


async def test_v1_not_visible_before_processing() -> None:
    cfg = SimConfig(price_interval_s=None, v1_processing_delay_s=0.3)
    async with probed_simulator(cfg) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("20000"))
        reply = await probe.call("POST", "/v1/orders/limit", limit())
        order_id = reply.json()["id"]
        early = await probe.get(f"/v1/orders/BTCZAR/orderid/{order_id}")
        assert (early.status, early.json()) == (400, {"code": -1, "message": "Invalid Order. "})
        await asyncio.sleep(0.5)
        late = await probe.get(f"/v1/orders/BTCZAR/orderid/{order_id}")
        assert late.json()["orderStatusType"] == "Placed"


# -- v2: synchronous ----------------------------------------------------------------------


async def test_v2_limit_created(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    reply = await probe.call("POST", "/v2/orders/limit", limit())
    assert reply.status == 201
    assert set(reply.json()) == {"id"}
    status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{reply.json()['id']}")).json()
    assert status["orderStatusType"] == "Placed"


async def test_v2_unfunded_is_400_minus_6(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    for path, payload in (
        ("/v2/orders/limit", limit()),
        ("/v2/orders/market", {"side": "BUY", "quoteAmount": "100", "pair": "BTCZAR"}),
        ("/v2/orders/market", {"side": "SELL", "baseAmount": "0.001", "pair": "BTCZAR"}),
    ):
        reply = await probe.call("POST", path, payload)
        assert reply.status == 400
        body = reply.json()
        assert list(body) == ["orderId", "code", "message"]
        assert (body["code"], body["message"]) == (-6, "Insufficient Balance")
        status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{body['orderId']}")).json()
        assert status["orderStatusType"] == "Failed"
    assert sim.balances("0") == {"ZAR": (0, 0), "BTC": (0, 0)}


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (limit(quantity="0.00009"), -12007, MIN_SIZE),
        (limit(quantity="0.0001", price="50000"), -12007, MIN_SIZE),  # 5 ZAR notional
        (limit(quantity="0.000099999"), -12007, MIN_SIZE),  # truncated below the minimum
        (limit(quantity="2.5"), -11, None),
        (limit(price="1000000.5"), -11, "Price must be a multiple of the tick size 1"),
        (limit(side="buy"), -11, "Invalid Request, please check your request and try again"),
        ({**limit(), "quantity": 0.01}, -11, None),  # numbers are not decimal strings
        ({**limit(), "price": 990000}, -11, None),
        (limit(timeInForce="DAY"), -11, None),
        (limit(customerOrderId="not valid!"), -11, None),
        (limit(customerOrderId="x" * 51), -11, None),
        ({**limit(), "pair": "DOGEZAR"}, -21, "Unsupported Currency Pair"),
        ([limit()], -11, None),
    ],
)
async def test_limit_validation(
    env: tuple[Simulator, Probe], payload: Any, code: int, message: str | None
) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("10000000"))
    for path in ("/v1/orders/limit", "/v2/orders/limit"):
        reply = await probe.call("POST", path, payload)
        assert reply.status == 400, (path, reply.text)
        assert reply.json()["code"] == code
        if message is not None:
            assert reply.json()["message"] == message
    assert sim.open_orders("0") == []
    received = sim.orders_received("0")
    assert len(received) == 2
    assert not any(r["accepted"] for r in received)


@pytest.mark.parametrize(
    "payload",
    [
        {"side": "BUY", "pair": "BTCZAR"},
        {"side": "BUY", "pair": "BTCZAR", "baseAmount": "0.001", "quoteAmount": "100"},
        {"side": "BUY", "pair": "BTCZAR", "quoteAmount": "5"},
        {"side": "SELL", "pair": "BTCZAR", "baseAmount": "0.00001"},
    ],
)
async def test_market_validation(env: tuple[Simulator, Probe], payload: dict[str, str]) -> None:
    _, probe = env
    reply = await probe.call("POST", "/v2/orders/market", payload)
    assert reply.status == 400
    assert reply.json()["code"] in (-11, -12007)


async def test_quantity_truncated_to_base_decimals(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("200000"))
    reply = await probe.call("POST", "/v2/orders/limit", limit(quantity="0.123456789"))
    status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{reply.json()['id']}")).json()
    assert status["originalQuantity"] == "0.12345678"


async def test_duplicate_customer_order_id(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("50000"))
    first = await probe.call("POST", "/v2/orders/limit", limit(customerOrderId="dup"))
    assert first.status == 201
    for path in ("/v1/orders/limit", "/v2/orders/limit"):
        again = await probe.call("POST", path, limit(customerOrderId="dup"))
        assert again.status == 400
        assert again.json() == {
            "code": -11502,
            "message": "Duplicate customer order id's are not allowed",
        }
    # Unique among *open* orders only: after a cancel the id is free again.
    cancel = await probe.call(
        "DELETE", "/v2/orders/order", {"customerOrderId": "dup", "pair": "BTCZAR"}
    )
    assert cancel.json() == {"id": "dup"}
    assert (
        await probe.call("POST", "/v2/orders/limit", limit(customerOrderId="dup"))
    ).status == 201
    received = [(r["customerOrderId"], r["accepted"]) for r in sim.orders_received("0")]
    assert received == [("dup", True), (None, False), (None, False), ("dup", True)]


async def test_v1_duplicate_while_still_processing() -> None:
    cfg = SimConfig(price_interval_s=None, v1_processing_delay_s=0.2)
    async with probed_simulator(cfg) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("50000"))
        assert (
            await probe.call("POST", "/v1/orders/limit", limit(customerOrderId="c1"))
        ).status == 202
        again = await probe.call("POST", "/v1/orders/limit", limit(customerOrderId="c1"))
        assert again.json()["code"] == -11502


async def test_unknown_order_lookups(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    invalid = {"code": -1, "message": "Invalid Order. "}
    for path in (
        "/v1/orders/BTCZAR/orderid/01981786-c482-7bae-a3da-4a756ef9d12e",
        "/v1/orders/BTCZAR/customerorderid/nope",
        "/v1/orders/history/summary/orderid/01981786-c482-7bae-a3da-4a756ef9d12e",
        "/v1/orders/history/summary/customerorderid/nope",
    ):
        reply = await probe.get(path)
        assert (reply.status, reply.json()) == (400, invalid), path


# -- matching, fees, balances -------------------------------------------------------------


async def test_resting_limit_filled_by_set_price(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    placed = await probe.call("POST", "/v2/orders/limit", limit(customerOrderId="dip"))
    order_id = placed.json()["id"]
    ws = await account_ws(probe)
    sim.set_price("BTCZAR", Decimal("995000"))  # ask 995498 > 990000: still resting
    assert await drain(ws, 0.1) == []
    sim.set_price("BTCZAR", Decimal("985000"))  # ask 985493 <= 990000: crossed
    events = await drain(ws)
    assert [m["type"] for m in events] == [
        "NEW_ACCOUNT_TRADE",
        "BALANCE_UPDATE",
        "BALANCE_UPDATE",
        "NEW_ACCOUNT_HISTORY_RECORD",  # after each trade's balance updates
        "ORDER_STATUS_UPDATE",
        "OPEN_ORDERS_UPDATE",
    ]
    trade = events[0]
    assert trade["currencyPairSymbol"] == "BTCZAR"
    assert trade["data"]["price"] == "990000"  # filled at its own limit, as maker
    assert trade["data"]["quantity"] == "0.01"
    assert trade["data"]["side"] == "buy"
    assert trade["data"]["customerOrderId"] == "dip"
    assert (trade["data"]["fee"], trade["data"]["feeCurrency"]) == ("0", "ZAR")  # maker pays quote
    status = events[4]["data"]
    assert (status["orderStatusType"], status["executedQuantity"], status["executedPrice"]) == (
        "Filled",
        "0.01",
        "990000",
    )
    assert events[5]["data"] == []
    assert sim.balances("0") == {"ZAR": (Decimal("10100"), 0), "BTC": (Decimal("0.01"), 0)}
    history = (await probe.get("/v1/account/tradehistory")).json()
    assert [(h["orderId"], h["price"], h["side"]) for h in history] == [(order_id, "990000", "buy")]
    summary = (await probe.get(f"/v1/orders/history/summary/orderid/{order_id}")).json()
    assert (summary["orderStatusType"], summary["averagePrice"], summary["total"]) == (
        "Filled",
        "990000",
        "9900",
    )
    await ws.close()


async def test_resting_sell_filled_when_price_rises(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "BTC", Decimal("0.5"))
    placed = await probe.call("POST", "/v2/orders/limit", limit("SELL", "0.2", "1100000"))
    assert placed.status == 201
    assert sim.balances("0")["BTC"] == (Decimal("0.3"), Decimal("0.2"))
    sim.set_price("BTCZAR", Decimal("1150000"))
    assert sim.open_orders("0") == []
    assert sim.balances("0") == {"BTC": (Decimal("0.3"), 0), "ZAR": (Decimal("220000"), 0)}
    trade = sim.trades("0")[0]
    assert (trade["fee"], trade["feeCurrency"]) == ("0", "BTC")  # maker selling pays base


async def test_market_buy_pays_taker_fee_in_base(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("2000"))
    reply = await probe.call(
        "POST", "/v2/orders/market", {"side": "BUY", "quoteAmount": "1000.5", "pair": "BTCZAR"}
    )
    assert reply.status == 201
    trade = sim.trades("0")[0]
    # Best ask 1000500: 0.001 BTC for 1000.5 ZAR, 0.1 % fee in BTC.
    assert (trade["price"], trade["quantity"], trade["side"]) == ("1000500", "0.001", "buy")
    assert (trade["fee"], trade["feeCurrency"]) == ("0.000001", "BTC")
    assert sim.balances("0") == {"ZAR": (Decimal("999.5"), 0), "BTC": (Decimal("0.000999"), 0)}
    status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{reply.json()['id']}")).json()
    assert (status["orderType"], status["timeInForce"], status["originalPrice"]) == (
        "market",
        "IOC",
        "0",
    )
    assert status["orderStatusType"] == "Filled"


async def test_market_sell_pays_taker_fee_in_quote(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "BTC", Decimal("0.01"))
    reply = await probe.call(
        "POST", "/v2/orders/market", {"side": "SELL", "baseAmount": "0.01", "pair": "BTCZAR"}
    )
    assert reply.status == 201
    trade = sim.trades("0")[0]
    assert (trade["price"], trade["quantity"], trade["side"]) == ("999500", "0.01", "sell")
    # 0.1 % of 9995 ZAR is 9.995, rounded half-up to the cent.
    assert (trade["fee"], trade["feeCurrency"]) == ("10", "ZAR")
    assert sim.balances("0") == {"BTC": (0, 0), "ZAR": (Decimal("9985"), 0)}


async def test_marketable_limit_takes_liquidity_and_releases_excess(
    env: tuple[Simulator, Probe],
) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    reply = await probe.call("POST", "/v2/orders/limit", limit(quantity="0.01", price="1010000"))
    assert reply.status == 201
    trade = sim.trades("0")[0]
    assert trade["price"] == "1000500"  # taker gets the book price, not its limit
    assert trade["feeCurrency"] == "BTC"
    # Reserved 10100 at the limit, spent 10005: the 95 difference came back.
    assert sim.balances("0") == {"ZAR": (Decimal("9995"), 0), "BTC": (Decimal("0.00999"), 0)}


async def test_post_only_ioc_fok(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("5000000"))
    crossing = limit(price="1000500", postOnly=True)
    reply = await probe.call("POST", "/v2/orders/limit", crossing)
    assert (reply.status, reply.json()["code"]) == (400, -12011)
    ioc = await probe.call("POST", "/v2/orders/limit", limit(price="990000", timeInForce="IOC"))
    status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{ioc.json()['id']}")).json()
    assert status["orderStatusType"] == "Cancelled"  # nothing to match; remainder cancelled
    too_big = limit(quantity="1.9", price="1000500", timeInForce="FOK")  # only 0.49975 there
    reply = await probe.call("POST", "/v2/orders/limit", too_big)
    assert (reply.status, reply.json()["code"]) == (400, -12012)
    assert sim.balances("0")["ZAR"] == (Decimal("5000000"), 0)


async def test_self_trade_prevented_and_cross_account_match(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "BTC", Decimal("1"))
    sim.fund("0", "ZAR", Decimal("100000"))
    ask = await probe.call("POST", "/v2/orders/limit", limit("SELL", "0.01", "1000100"))
    assert ask.status == 201
    own = await probe.call("POST", "/v2/orders/limit", limit("BUY", "0.01", "1000200"))
    assert (own.status, own.json()["code"]) == (400, -12013)
    # Another account's buy matches the resting sell at the sell's price.
    sim.add_account("77")
    sim.add_api_key("7" * 64, "6" * 64, account_id="77")
    sim.fund("77", "ZAR", Decimal("20000"))
    other = Probe(probe.session, sim.rest_url, sim.ws_url, "7" * 64, "6" * 64)
    taker = await other.call("POST", "/v2/orders/limit", limit("BUY", "0.01", "1000200"))
    assert taker.status == 201
    assert sim.trades("77")[0]["price"] == "1000100"
    assert sim.trades("0")[0]["price"] == "1000100"
    assert sim.open_orders("0") == []
    assert sim.balances("0")["ZAR"] == (Decimal("110001"), 0)


# -- cancels ------------------------------------------------------------------------------


async def test_cancel_v1_releases_reservation(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    order_id = (await probe.call("POST", "/v2/orders/limit", limit())).json()["id"]
    ws = await account_ws(probe)
    reply = await probe.call("DELETE", "/v1/orders/order", {"orderId": order_id, "pair": "BTCZAR"})
    assert (reply.status, reply.text) == (202, "")
    events = await drain(ws)
    assert [m["type"] for m in events] == [
        "ORDER_STATUS_UPDATE",
        "BALANCE_UPDATE",
        "OPEN_ORDERS_UPDATE",
    ]
    assert events[0]["data"]["orderStatusType"] == "Cancelled"
    assert events[1]["data"]["available"] == "20000"
    assert sim.balances("0")["ZAR"] == (Decimal("20000"), 0)
    # Cancelling it again (or anything unknown) fails asynchronously.
    again = await probe.call("DELETE", "/v1/orders/order", {"orderId": order_id, "pair": "BTCZAR"})
    assert again.status == 202
    failed, _ = await recv_until(ws, lambda m: m["type"] == "FAILED_CANCEL_ORDER")
    assert failed["data"] == {
        "orderId": order_id,
        "message": "An error occurred while cancelling your order.",
    }
    await ws.close()


async def test_cancel_v2(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    order_id = (await probe.call("POST", "/v2/orders/limit", limit())).json()["id"]
    reply = await probe.call("DELETE", "/v2/orders/order", {"orderId": order_id, "pair": "BTCZAR"})
    assert (reply.status, reply.json()) == (200, {"id": order_id})
    again = await probe.call("DELETE", "/v2/orders/order", {"orderId": order_id, "pair": "BTCZAR"})
    assert (again.status, again.json()["code"]) == (400, -1)
    both = {"orderId": order_id, "customerOrderId": "x", "pair": "BTCZAR"}
    assert (await probe.call("DELETE", "/v2/orders/order", both)).status == 400
    status = (await probe.get(f"/v1/orders/BTCZAR/orderid/{order_id}")).json()
    assert status["orderStatusType"] == "Cancelled"


async def test_cancel_all_and_per_pair(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("100000"))
    ids = []
    for price in ("990000", "980000"):
        ids.append((await probe.call("POST", "/v2/orders/limit", limit(price=price))).json()["id"])
    eth = {"side": "BUY", "quantity": "0.1", "price": "49000", "pair": "ETHZAR"}
    eth_id = (await probe.call("POST", "/v2/orders/limit", eth)).json()["id"]
    per_pair = await probe.call("DELETE", "/v1/orders/BTCZAR")
    assert per_pair.status == 200
    assert sorted(o["orderId"] for o in per_pair.json()) == sorted(ids)
    assert [o["orderId"] for o in sim.open_orders("0")] == [eth_id]
    every = await probe.call("DELETE", "/v1/orders")
    assert every.json() == [{"orderId": eth_id}]
    assert (await probe.call("DELETE", "/v1/orders")).json() == []
    assert sim.balances("0")["ZAR"] == (Decimal("100000"), 0)


async def test_cancel_all_events_one_snapshot_per_operation(env: tuple[Simulator, Probe]) -> None:
    """A status per cancelled order, then one balance per currency and one open-order list:
    per-order full snapshots would be O(n^2) (2 s for 500 orders; RESULTS.md section 3)."""
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("100000"))
    sim.fund("0", "BTC", Decimal("1"))
    ids = []
    for body in (limit(price="990000"), limit(price="980000"), limit("SELL", price="1100000")):
        ids.append((await probe.call("POST", "/v2/orders/limit", body)).json()["id"])
    ws = await account_ws(probe)
    reply = await probe.call("DELETE", "/v1/orders")
    assert sorted(o["orderId"] for o in reply.json()) == sorted(ids)
    events = await drain(ws)
    assert [m["type"] for m in events] == [
        *["ORDER_STATUS_UPDATE"] * 3,
        "BALANCE_UPDATE",
        "BALANCE_UPDATE",
        "OPEN_ORDERS_UPDATE",
    ]
    statuses = [(m["data"]["orderId"], m["data"]["orderStatusType"]) for m in events[:3]]
    assert statuses == [(i, "Cancelled") for i in ids]  # in the order they were placed
    balances = {m["data"]["currency"]["shortName"]: m["data"] for m in events[3:5]}
    assert (balances["ZAR"]["available"], balances["ZAR"]["reserved"]) == ("100000", "0")
    assert (balances["BTC"]["available"], balances["BTC"]["reserved"]) == ("1", "0")
    assert events[5]["data"] == []
    assert (await probe.call("DELETE", "/v1/orders")).json() == []
    assert await drain(ws, 0.1) == []  # nothing to cancel: nothing to say
    await ws.close()


async def test_order_history_lists_finished_orders(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("20000"))
    order_id = (await probe.call("POST", "/v2/orders/limit", limit())).json()["id"]
    assert (await probe.get("/v1/orders/history")).json() == []
    live = await probe.get(f"/v1/orders/history/summary/orderid/{order_id}")
    assert live.json()["code"] == -1  # summaries are for completed orders only
    await probe.call("DELETE", "/v1/orders")
    rows = (await probe.get("/v1/orders/history?limit=10")).json()
    assert [(r["orderId"], r["orderStatusType"]) for r in rows] == [(order_id, "Cancelled")]
