"""The seeded price path, CSV replay, and the market maker that follows it."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.prices import PricePath, load_csv
from heliosd.sim.probe import compact, probed_simulator, recv_json

START = {"BTCZAR": Decimal("1000000"), "ETHZAR": Decimal("50000")}


def walk(seed: int, steps: int = 50) -> list[Decimal]:
    path = PricePath(START, seed=seed, volatility_bps=5)
    return [path.next("BTCZAR") for _ in range(steps)]


def test_walk_is_deterministic_per_seed() -> None:
    assert walk(1) == walk(1)
    assert walk(1) != walk(2)


def test_walk_steps_are_bounded_and_decimal() -> None:
    prices = [START["BTCZAR"], *walk(9, 200)]
    for before, after in itertools.pairwise(prices):
        assert isinstance(after, Decimal)
        assert abs(after - before) <= before * Decimal("0.0005") + Decimal("1e-8")


def test_csv_replay_cycles(tmp_path: Path) -> None:
    csv = tmp_path / "path.csv"
    csv.write_text("pair,price\n# comment\nBTCZAR,1000\nETHZAR,50\nBTCZAR,1010\n\nBTCZAR,990\n")
    assert load_csv(csv) == {
        "BTCZAR": [Decimal(1000), Decimal(1010), Decimal(990)],
        "ETHZAR": [Decimal(50)],
    }
    path = PricePath(START, seed=1, volatility_bps=5, csv_path=csv)
    assert [path.next("BTCZAR") for _ in range(4)] == [Decimal(n) for n in (1000, 1010, 990, 1000)]
    assert [path.next("ETHZAR") for _ in range(2)] == [Decimal(50), Decimal(50)]


@pytest.mark.parametrize("line", ["BTCZAR", "BTCZAR,abc", "BTCZAR,-5", "BTCZAR,NaN"])
def test_csv_errors(tmp_path: Path, line: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(line + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        load_csv(csv)


def test_market_maker_quotes_on_ticks_around_the_mid() -> None:
    sim = Simulator(SimConfig(price_interval_s=None))
    market = sim.exchange.markets["BTCZAR"]
    for _ in range(20):
        sim.tick()
        asks = [lv.price for lv in market.mm_asks]
        bids = [lv.price for lv in market.mm_bids]
        assert asks == sorted(asks) and len(set(asks)) == 10
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == 10
        assert bids[0] < market.mid < asks[0]
        assert all(p % 1 == 0 for p in asks + bids)  # on the tick


async def test_ticker_pushes_book_summary_and_trades(tmp_path: Path) -> None:
    csv = tmp_path / "path.csv"
    csv.write_text("BTCZAR,1000000\nBTCZAR,1001000\nETHZAR,50000\n")
    cfg = SimConfig(price_interval_s=0.05, price_csv=csv)
    async with probed_simulator(cfg) as (sim, probe):
        ws = await probe.connect("trade", signed=False)
        await ws.send(
            compact(
                {
                    "type": "SUBSCRIBE",
                    "subscriptions": [
                        {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR"]},
                        {"event": "NEW_TRADE", "pairs": ["BTCZAR"]},
                    ],
                }
            )
        )
        assert await recv_json(ws) == {"type": "SUBSCRIBED"}
        messages = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.5  # ticks every 50 ms: read for a while, not till quiet
        while loop.time() < deadline:
            messages.append(await recv_json(ws))
        marks = {m["data"]["markPrice"] for m in messages if m["type"] == "MARKET_SUMMARY_UPDATE"}
        assert marks == {"1000000", "1001000"}
        assert any(m["type"] == "NEW_TRADE" for m in messages)
        await ws.close()
        assert sim.exchange.markets["ETHZAR"].mid == Decimal(50000)


def test_seeded_simulators_quote_identically() -> None:
    books = []
    for _ in range(2):
        sim = Simulator(SimConfig(seed=4, price_interval_s=None))
        for _ in range(30):
            sim.tick()
        books.append([(lv.price, lv.quantity) for lv in sim.exchange.markets["ETHZAR"].mm_asks])
    assert books[0] == books[1]
