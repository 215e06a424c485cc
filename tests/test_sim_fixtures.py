"""The VALR payload fixtures in ``tests/fixtures/valr`` are what the simulator emits.

One scenario drives the simulator through every REST response and WebSocket event it
produces and captures one example of each. The fixtures are the canonical examples for
the client's parser tests; this test fails if the simulator's output and a fixture differ
in shape (key names, key order, nesting, JSON value types) or if a fixture is missing or
stale. Regenerate after an intended change with::

    HELIOSD_WRITE_FIXTURES=1 .venv/bin/pytest tests/test_sim_fixtures.py

and review the diff against VALR's API documentation before committing.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.sim import SimConfig
from heliosd.sim.probe import Probe, compact, drain, probed_simulator, recv_json, recv_until

FIXTURES = Path(__file__).parent / "fixtures" / "valr"
WRITE = os.environ.get("HELIOSD_WRITE_FIXTURES") == "1"


def shape(value: Any) -> Any:
    """Structure without values: key order, nesting and JSON types."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


async def _reply(probe: Probe, verb: str, path: str, payload: Any = None, status: int = 200) -> Any:
    reply = await probe.call(verb, path, payload)
    assert reply.status == status, (path, reply.status, reply.text)
    return reply.json()


async def capture() -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with probed_simulator(SimConfig(seed=11, price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("100000"))
        sim.fund("0", "BTC", Decimal("0.05"))
        account = await probe.connect("account")
        out["ws_account_authenticated"] = await recv_json(account)
        out["ws_account_balance_update"] = await recv_json(account)
        await drain(account, 0.1)

        trade = await probe.connect("trade", signed=False)
        await trade.send(compact({"type": "PING"}))
        out["ws_pong"] = await recv_json(trade)
        await trade.send(
            compact(
                {
                    "type": "SUBSCRIBE",
                    "subscriptions": [
                        {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR"]},
                        {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR"]},
                        {"event": "NEW_TRADE", "pairs": ["BTCZAR"]},
                    ],
                }
            )
        )
        out["ws_trade_subscribed"] = await recv_json(trade)
        out["ws_trade_aggregated_orderbook_update"] = await recv_json(trade)
        out["ws_trade_market_summary_update"] = await recv_json(trade)

        # Public REST.
        for name, path in (
            ("rest_public_time", "/v1/public/time"),
            ("rest_public_status", "/v1/public/status"),
            ("rest_public_pairs", "/v1/public/pairs"),
            ("rest_public_currencies", "/v1/public/currencies"),
            ("rest_public_marketsummary", "/v1/public/marketsummary"),
            ("rest_public_pair_marketsummary", "/v1/public/BTCZAR/marketsummary"),
            ("rest_public_orderbook", "/v1/public/BTCZAR/orderbook"),
        ):
            out[name] = (await probe.public(path)).json()
        out["rest_marketdata_orderbook"] = await _reply(
            probe, "GET", "/v1/marketdata/BTCZAR/orderbook"
        )

        # v1 limit that rests: 202, then the account events.
        rest_limit = {
            "side": "BUY",
            "quantity": "0.01",
            "price": "990000",
            "pair": "BTCZAR",
            "postOnly": True,
            "customerOrderId": "fixture-limit-1",
            "timeInForce": "GTC",
        }
        out["rest_orders_limit_v1_202"] = await _reply(
            probe, "POST", "/v1/orders/limit", rest_limit, 202
        )
        out["ws_account_order_processed"] = (
            await recv_until(account, lambda m: m["type"] == "ORDER_PROCESSED")
        )[0]
        out["ws_account_order_status_update"] = (
            await recv_until(account, lambda m: m["type"] == "ORDER_STATUS_UPDATE")
        )[0]
        out["ws_account_open_orders_update"] = (
            await recv_until(account, lambda m: m["type"] == "OPEN_ORDERS_UPDATE")
        )[0]
        order_id = out["rest_orders_limit_v1_202"]["id"]
        out["rest_order_status"] = await _reply(
            probe, "GET", f"/v1/orders/BTCZAR/orderid/{order_id}"
        )
        out["rest_orders_open"] = await _reply(probe, "GET", "/v1/orders/open")

        # The market moves through it: a maker fill.
        sim.set_price("BTCZAR", Decimal("985000"))
        out["ws_account_new_account_trade"] = (
            await recv_until(account, lambda m: m["type"] == "NEW_ACCOUNT_TRADE")
        )[0]
        out["ws_trade_new_trade"] = (await recv_until(trade, lambda m: m["type"] == "NEW_TRADE"))[0]
        out["rest_public_trades"] = (await probe.public("/v1/public/BTCZAR/trades")).json()
        out["rest_order_history_summary"] = await _reply(
            probe, "GET", "/v1/orders/history/summary/customerorderid/fixture-limit-1"
        )
        out["rest_orders_history"] = await _reply(probe, "GET", "/v1/orders/history")
        out["rest_account_tradehistory"] = await _reply(
            probe, "GET", "/v1/account/tradehistory?limit=10"
        )
        # Money moved without a trade: the ledger mixes it with the trade rows.
        sim.deposit("0", "ZAR", Decimal("5000"))
        sim.withdraw("0", "BTC", Decimal("0.001"), fee=Decimal("0.0001"), tx_type="BLOCKCHAIN_SEND")
        out["rest_account_transactionhistory"] = await _reply(
            probe, "GET", "/v1/account/transactionhistory?limit=10"
        )
        await account.send(
            compact({"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": True}})
        )
        out["ws_account_cancel_on_disconnect_update"] = (
            await recv_until(account, lambda m: m["type"] == "CANCEL_ON_DISCONNECT_UPDATE")
        )[0]

        # Markets, v2, cancels.
        market = {
            "side": "BUY",
            "quoteAmount": "100",
            "pair": "BTCZAR",
            "customerOrderId": "fixture-mkt-1",
        }
        out["rest_orders_market_v1_202"] = await _reply(
            probe, "POST", "/v1/orders/market", market, 202
        )
        v2 = {
            "side": "SELL",
            "quantity": "0.001",
            "price": "1100000",
            "pair": "BTCZAR",
            "customerOrderId": "fixture-v2-1",
        }
        out["rest_orders_v2_201"] = await _reply(probe, "POST", "/v2/orders/limit", v2, 201)
        cancel = {"orderId": out["rest_orders_v2_201"]["id"], "pair": "BTCZAR"}
        out["rest_cancel_v2_200"] = await _reply(probe, "DELETE", "/v2/orders/order", cancel)
        await _reply(
            probe, "POST", "/v2/orders/limit", {**v2, "customerOrderId": "fixture-v2-2"}, 201
        )
        out["rest_cancel_all_200"] = await _reply(probe, "DELETE", "/v1/orders")
        await drain(account, 0.1)
        assert (await probe.call("DELETE", "/v1/orders/order", cancel)).status == 202
        out["ws_account_failed_cancel_order"] = (
            await recv_until(account, lambda m: m["type"] == "FAILED_CANCEL_ORDER")
        )[0]

        # Account reads.
        out["rest_account_api_key_current"] = await _reply(
            probe, "GET", "/v1/account/api-keys/current"
        )
        out["rest_account_balances"] = await _reply(
            probe, "GET", "/v1/account/balances?excludeZeroBalances=true"
        )
        out["rest_account_fees_trade"] = await _reply(probe, "GET", "/v1/account/fees/trade")
        out["rest_margin_status"] = await _reply(probe, "GET", "/v1/margin/status")
        out["rest_positions_open"] = await _reply(probe, "GET", "/v1/positions/open")

        # Failures: an unfunded ETH order, v1 and v2.
        eth = {
            "side": "BUY",
            "quantity": "10",
            "price": "50000",
            "pair": "ETHZAR",
            "customerOrderId": "fixture-poor-1",
        }
        await _reply(probe, "POST", "/v1/orders/limit", eth, 202)
        out["ws_account_order_processed_failed"] = (
            await recv_until(account, lambda m: m["type"] == "ORDER_PROCESSED")
        )[0]
        out["ws_account_order_status_update_failed"] = (
            await recv_until(account, lambda m: m["type"] == "ORDER_STATUS_UPDATE")
        )[0]
        out["rest_order_status_failed"] = await _reply(
            probe, "GET", "/v1/orders/ETHZAR/customerorderid/fixture-poor-1"
        )
        out["rest_orders_v2_400_insufficient_balance"] = await _reply(
            probe, "POST", "/v2/orders/limit", {**eth, "customerOrderId": "fixture-poor-2"}, 400
        )

        # Error bodies.
        out["rest_error_400_invalid_order"] = await _reply(
            probe, "GET", "/v1/orders/BTCZAR/customerorderid/no-such-order", status=400
        )
        small = {"side": "BUY", "quantity": "0.00001", "price": "990000", "pair": "BTCZAR"}
        out["rest_error_400_min_order_size"] = await _reply(
            probe, "POST", "/v2/orders/limit", small, 400
        )
        out["rest_error_400_duplicate_customer_order_id"] = await _reply(
            probe,
            "POST",
            "/v2/orders/limit",
            {**rest_limit, "postOnly": False, "price": "900000", "customerOrderId": "twice"},
            201,
        ) and await _reply(
            probe,
            "POST",
            "/v2/orders/limit",
            {**rest_limit, "postOnly": False, "price": "900000", "customerOrderId": "twice"},
            400,
        )
        out["rest_error_400_invalid_request"] = await _reply(
            probe, "POST", "/v2/orders/limit", {**small, "side": "buy"}, 400
        )
        bad_json = '{"side":'
        reply = await probe.raw(
            "POST",
            "/v2/orders/limit",
            bad_json,
            headers=probe.headers("POST", "/v2/orders/limit", bad_json),
        )
        out["rest_error_400_invalid_json"] = reply.json()
        headers = probe.headers("GET", "/v1/account/balances")
        headers["X-VALR-SIGNATURE"] = "0" * 128
        out["rest_error_401_invalid_signature"] = (
            await probe.raw("GET", "/v1/account/balances", headers=headers)
        ).json()
        stranger = Probe(probe.session, sim.rest_url, sim.ws_url, "f" * 64, "e" * 64)
        out["rest_error_401_invalid_api_key"] = (await stranger.get("/v1/account/balances")).json()
        out["rest_error_401_timestamp"] = (
            await probe.call("GET", "/v1/account/balances", ts=1558014486185)
        ).json()
        sim.add_api_key("c" * 64, "d" * 64, permissions=("View access",))
        viewer = Probe(probe.session, sim.rest_url, sim.ws_url, "c" * 64, "d" * 64)
        out["rest_error_401_permission"] = (await viewer.call("DELETE", "/v1/orders")).json()
        out["rest_error_403_missing_api_key"] = (
            await probe.raw("GET", "/v1/account/balances")
        ).json()
        body = compact(small)
        out["rest_error_403_content_type"] = (
            await probe.raw(
                "POST",
                "/v2/orders/limit",
                body,
                content_type="text/plain",
                headers=probe.headers("POST", "/v2/orders/limit", body),
            )
        ).json()

        # Maker rebates (docs/simulator.md, sim.faults.maker_rebate_bps): makerReward in
        # place of, then beside, the fee. Resting buys below the 985,000 market fill as the
        # market falls through them.
        sim.faults.maker_rebate_bps = 2
        rebates = (
            ("reward", "fixture-rebate-1", "980000", "975000"),
            ("both", "fixture-rebate-2", "970000", "965000"),
        )
        for shape, cid, price, to in rebates:
            sim.faults.maker_reward_shape = shape
            rebate = {**rest_limit, "price": price, "customerOrderId": cid}
            await _reply(probe, "POST", "/v2/orders/limit", rebate, 201)
            sim.set_price("BTCZAR", Decimal(to))
            suffix = "" if shape == "reward" else "_both"
            out[f"ws_account_new_account_trade_maker_reward{suffix}"] = (
                await recv_until(account, lambda m: m["type"] == "NEW_ACCOUNT_TRADE")
            )[0]
        out["rest_account_tradehistory_maker_reward"] = await _reply(
            probe, "GET", "/v1/account/tradehistory?limit=2"
        )
        sim.faults.maker_rebate_bps = 0

        await trade.send(
            compact(
                {
                    "type": "UNSUBSCRIBE",
                    "subscriptions": [{"event": "NEW_TRADE", "pairs": ["BTCZAR"]}],
                }
            )
        )
        out["ws_trade_unsubscribed"] = (
            await recv_until(trade, lambda m: m["type"] == "UNSUBSCRIBED")
        )[0]
        await account.close()
        await trade.close()
    return out


@pytest.fixture(scope="module")
def captured() -> dict[str, Any]:
    import asyncio

    return asyncio.run(capture())


def test_every_fixture_matches_what_the_simulator_emits(captured: dict[str, Any]) -> None:
    if WRITE:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for stale in FIXTURES.glob("*.json"):
            if stale.stem not in captured:
                stale.unlink()
        for name, payload in captured.items():
            (FIXTURES / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    on_disk = {p.stem for p in FIXTURES.glob("*.json")}
    assert on_disk == set(captured), "fixtures missing or stale; see this module's docstring"
    for name, payload in captured.items():
        fixture = json.loads((FIXTURES / f"{name}.json").read_text())
        assert shape(payload) == shape(fixture), name


def test_fixture_essentials_follow_valr_api_md(captured: dict[str, Any]) -> None:
    load = lambda name: json.loads((FIXTURES / f"{name}.json").read_text())  # noqa: E731
    book = load("rest_public_orderbook")
    assert list(book) == ["Asks", "Bids", "LastChange", "SequenceNumber"]
    assert book["Asks"][0]["side"] == "sell"
    assert isinstance(book["Asks"][0]["price"], str)
    assert load("ws_trade_aggregated_orderbook_update")["data"]["Bids"][0]["side"] == "buy"
    assert load("rest_orders_v2_400_insufficient_balance")["code"] == -6
    assert load("rest_error_400_invalid_order")["message"] == "Invalid Order. "
    assert load("rest_error_401_invalid_signature") == {
        "code": -11252,
        "message": "Request has an invalid signature",
    }
    assert (
        load("ws_account_order_status_update_failed")["data"]["failedReason"]
        == "Insufficient Balance"
    )
    assert isinstance(load("rest_account_tradehistory")[0]["sequenceId"], int)
    trade = load("ws_account_new_account_trade")
    assert trade["currencyPairSymbol"] == "BTCZAR"
    assert trade["data"]["side"] == "buy"
    assert load("rest_public_pairs")[0]["baseDecimalPlaces"] == "8"
    # A maker rebate: makerReward (positive, a decimal string) in the currency a maker fee
    # would be paid in, in place of the fee or beside a zero one.
    reward = load("ws_account_new_account_trade_maker_reward")["data"]
    assert "fee" not in reward and reward["makerRewardCurrency"] == "ZAR"
    assert Decimal(reward["makerReward"]) > 0
    both = load("ws_account_new_account_trade_maker_reward_both")["data"]
    assert (both["fee"], both["feeCurrency"], both["makerRewardCurrency"]) == ("0", "ZAR", "ZAR")
    rows = load("rest_account_tradehistory_maker_reward")
    assert [("makerReward" in r, r.get("fee")) for r in rows] == [(True, "0"), (True, None)]
