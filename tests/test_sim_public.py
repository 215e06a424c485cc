"""Public market data and the account read endpoints, in VALR's shapes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import Probe, probed_simulator


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as e:
        yield e


async def test_time(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    body = (await probe.public("/v1/public/time")).json()
    assert isinstance(body["epochTime"], int)
    assert abs(body["epochTime"] - time.time()) < 5
    assert body["time"].endswith("Z")
    assert len(body["time"].split(".")[1]) == 10  # nine digits of nanoseconds + Z
    parsed = datetime.fromisoformat(body["time"][:26] + "+00:00")
    assert parsed.tzinfo is not None


async def test_status(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    assert (await probe.public("/v1/public/status")).json() == {"status": "online"}
    sim.faults.read_only = True
    assert (await probe.public("/v1/public/status")).json() == {"status": "read-only"}


async def test_pairs(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    pairs = {p["symbol"]: p for p in (await probe.public("/v1/public/pairs")).json()}
    assert set(pairs) == {"BTCZAR", "ETHZAR"}
    btc = pairs["BTCZAR"]
    assert btc["minBaseAmount"] == "0.0001"
    assert btc["maxBaseAmount"] == "2"
    assert btc["minQuoteAmount"] == "10"
    assert btc["maxQuoteAmount"] == "5000000"
    assert btc["tickSize"] == "1"
    assert btc["baseDecimalPlaces"] == "8"  # a string holding an int, as VALR sends it
    assert btc["currencyPairType"] == "SPOT"
    assert btc["active"] is True
    assert (btc["baseCurrency"], btc["quoteCurrency"], btc["shortName"]) == (
        "BTC",
        "ZAR",
        "BTC/ZAR",
    )
    assert pairs["ETHZAR"]["minBaseAmount"] == "0.0002"


async def test_market_summaries(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    one = (await probe.public("/v1/public/BTCZAR/marketsummary")).json()
    assert one["currencyPair"] == "BTCZAR"
    assert Decimal(one["bidPrice"]) < Decimal("1000000") < Decimal(one["askPrice"])
    assert one["lastTradedPrice"] == "1000000"
    every = (await probe.public("/v1/public/marketsummary")).json()
    assert [s["currencyPair"] for s in every] == ["BTCZAR", "ETHZAR"]


async def test_order_book_shape_and_ordering(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    public = (await probe.public("/v1/public/BTCZAR/orderbook")).json()
    authed = (await probe.get("/v1/marketdata/BTCZAR/orderbook")).json()
    for book in (public, authed):
        assert set(book) == {"Asks", "Bids", "LastChange", "SequenceNumber"}
        asks = [Decimal(a["price"]) for a in book["Asks"]]
        bids = [Decimal(b["price"]) for b in book["Bids"]]
        assert asks == sorted(asks)
        assert bids == sorted(bids, reverse=True)
        assert bids[0] < asks[0]
        assert {a["side"] for a in book["Asks"]} == {"sell"}
        assert {b["side"] for b in book["Bids"]} == {"buy"}
        assert all(isinstance(a["orderCount"], int) for a in book["Asks"])
        assert all(isinstance(a["quantity"], str) for a in book["Asks"])


async def test_unknown_pair(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    reply = await probe.public("/v1/public/DOGEZAR/orderbook")
    assert reply.status == 400
    assert reply.json() == {"code": -21, "message": "Unsupported Currency Pair"}


async def test_set_price_moves_book_and_summary(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    before = (await probe.public("/v1/public/BTCZAR/orderbook")).json()
    sim.set_price("BTCZAR", Decimal("1200000"))
    after = (await probe.public("/v1/public/BTCZAR/orderbook")).json()
    assert after["SequenceNumber"] > before["SequenceNumber"]
    assert Decimal(after["Bids"][0]["price"]) > Decimal("1190000")
    summary = (await probe.public("/v1/public/BTCZAR/marketsummary")).json()
    assert summary["markPrice"] == "1200000"


async def test_balances_with_and_without_zero_rows(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.fund("0", "ZAR", Decimal("1234.5"))
    every = (await probe.get("/v1/account/balances")).json()
    assert {row["currency"] for row in every} == {"BTC", "ZAR", "ETH"}
    nonzero = (await probe.get("/v1/account/balances?excludeZeroBalances=true")).json()
    assert len(nonzero) == 1
    row = nonzero[0]
    assert row["currency"] == "ZAR"
    assert (row["available"], row["reserved"], row["total"]) == ("1234.5", "0", "1234.5")
    assert row["updatedAt"].endswith("Z")


async def test_api_key_fees_margin_positions(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    key = (await probe.get("/v1/account/api-keys/current")).json()
    assert set(key) == {"label", "permissions", "addedAt", "isSubAccount"}
    assert key["isSubAccount"] is False
    fees = (await probe.get("/v1/account/fees/trade")).json()
    assert {f["currencyPair"]: (f["makerPercentage"], f["takerPercentage"]) for f in fees} == {
        "BTCZAR": ("0", "0.1"),
        "ETHZAR": ("0", "0.1"),
    }
    margin = (await probe.get("/v1/margin/status")).json()
    assert "marginFraction" not in margin  # no exposure
    assert "leverageMultiple" not in margin
    assert margin["totalBorrowedInReference"] == "0"
    assert (await probe.get("/v1/positions/open")).json() == []


async def test_public_trades_tape(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    sim.tick()  # each tick prints one synthetic trade
    sim.tick()
    tape = (await probe.public("/v1/public/BTCZAR/trades?limit=1")).json()
    assert len(tape) == 1
    assert tape[0]["takerSide"] in ("buy", "sell")
    assert isinstance(tape[0]["sequenceId"], int)
    assert tape[0]["sequenceId"] > 2**53
    assert (await probe.public("/v1/public/BTCZAR/trades?limit=101")).status == 400


def test_serve_forever_and_run_sim_are_exposed() -> None:
    from heliosd.sim import run_sim, serve_forever

    assert callable(run_sim)
    assert callable(serve_forever)
    assert datetime.now(UTC).tzinfo is UTC
