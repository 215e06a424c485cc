"""[paper] max_quote_age_s: the paper venue never fills at a price older than the limit.

A dead market feed leaves MarketData holding its last quote forever; before this check the
paper venue kept filling at it and reported P&L that never happened. Here a real
PaperExchange reads a real MarketData whose quotes carry controlled ages (``Quote.at`` is
heliosd's receive time), on a clock the tests hold still (``heliosd.core.clock``'s ManualClock, the
core's one wall clock). test_paper_quote_age_e2e.py does the same through a real daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.builtin.paper import PaperExchange
from heliosd.core import clock as core_clock
from heliosd.core.clock import ManualClock
from heliosd.core.config import PaperSettings, parse_settings
from heliosd.core.errors import ConfigError, ExchangeRejected
from heliosd.core.types import OpenOrder, OrderState, OrderType, PlaceRequest, Quote, Side
from heliosd.testing.contract import RecordingEvents
from heliosd.trading.marketdata import MarketData

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT = OrderType.MARKET, OrderType.LIMIT
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
BALANCES = {"ZAR": D(100000), "BTC": D("0.5")}


@pytest.fixture(autouse=True)
def clock() -> Iterator[ManualClock]:
    """The core's clock held at NOW; a test moves it with ``clock.set`` or ``advance``."""
    with core_clock.use(ManualClock(NOW)) as held:
        assert isinstance(held, ManualClock)
        yield held


def quote(age_s: str, bid: str = "999000", ask: str = "1000000", pair: str = "BTCZAR") -> Quote:
    """A quote heliosd received ``age_s`` seconds before NOW (negative: after NOW)."""
    return Quote(pair, D(bid), D(ask), None, NOW - timedelta(seconds=float(age_s)))


def req(side: Side, qty: str, type_: OrderType = MARKET, price: str | None = None,
        cid: str = "c-1") -> PlaceRequest:  # fmt: skip
    return PlaceRequest(cid, "BTCZAR", side, type_, D(qty), None if price is None else D(price))


async def venue(market: MarketData, max_age: str = "30") -> tuple[PaperExchange, RecordingEvents]:
    settings = PaperSettings(
        starting_balances=BALANCES, slippage_pct=D(0), max_quote_age_s=D(max_age)
    )
    ex = PaperExchange(market, settings)
    rec = RecordingEvents()
    await ex.start(rec)
    await drain()
    return ex, rec


async def drain() -> None:
    # One pass of the delivery task empties the queue; a few yields leave it room to run.
    for _ in range(5):
        await asyncio.sleep(0)


async def funds(ex: PaperExchange) -> dict[str, tuple[Decimal, Decimal]]:
    return {b.currency: (b.available, b.reserved) for b in await ex.balances()}


def filled(rec: RecordingEvents) -> list[str | None]:
    return [f.customer_order_id for f in rec.fills.values()]


def market_with(q: Quote) -> MarketData:
    md = MarketData()
    md.update(q)
    return md


# ----------------------------------------------------------------------- taking orders


async def test_a_market_order_on_an_hour_old_quote_is_refused_naming_pair_and_age() -> None:
    ex, rec = await venue(market_with(quote("3600")))
    for side in (BUY, SELL):
        with pytest.raises(ExchangeRejected) as err:
            await ex.place(req(side, "0.01"))
        assert err.value.message == (
            "Stale market price for BTCZAR: the last quote is 3600.0 s old, "
            "more than paper.max_quote_age_s (30 s)"
        )
    # Nothing moved and nothing was reported: the refusal is the whole outcome.
    assert await funds(ex) == {"ZAR": (D(100000), D(0)), "BTC": (D("0.5"), D(0))}
    await drain()
    assert (rec.fills, rec.statuses) == ({}, [])
    assert await ex.trade_history() == []
    await ex.close()


async def test_the_limit_is_inclusive_and_counts_to_the_tenth_of_a_second() -> None:
    md = market_with(quote("30"))
    ex, rec = await venue(md)
    result = await ex.place(req(BUY, "0.01", cid="at-limit"))  # exactly 30 s: still fresh
    assert result.state is OrderState.FILLED
    md.update(quote("30.01"))  # ages are rounded up: never shown as within the limit
    with pytest.raises(ExchangeRejected, match=r"the last quote is 30\.1 s old"):
        await ex.place(req(BUY, "0.01", cid="past-limit"))
    await drain()
    assert filled(rec) == ["at-limit"]
    await ex.close()


async def test_a_quote_goes_stale_as_time_passes_without_updates(clock: ManualClock) -> None:
    """The feed dies: no new quote arrives, only the clock moves."""
    ex, rec = await venue(market_with(quote("0")))
    await ex.place(req(BUY, "0.01", cid="fresh"))
    clock.set(NOW + timedelta(seconds=31))
    with pytest.raises(ExchangeRejected, match=r"^Stale market price for BTCZAR: .* 31\.0 s old"):
        await ex.place(req(BUY, "0.01", cid="dead-feed"))
    await drain()
    assert filled(rec) == ["fresh"]
    await ex.close()


async def test_a_fractional_limit_is_honoured() -> None:
    md = market_with(quote("0.4"))
    ex, _ = await venue(md, max_age="0.5")
    assert (await ex.place(req(BUY, "0.01", cid="a"))).state is OrderState.FILLED
    md.update(quote("0.6"))
    with pytest.raises(ExchangeRejected, match=r"0\.6 s old, more than .*\(0\.5 s\)"):
        await ex.place(req(BUY, "0.01", cid="b"))
    await ex.close()


async def test_a_quote_dated_in_the_future_beyond_the_limit_has_no_knowable_age() -> None:
    md = market_with(quote("-1"))  # a second ahead: clocks this close are normal
    ex, _ = await venue(md)
    assert (await ex.place(req(BUY, "0.01", cid="a"))).state is OrderState.FILLED
    md.update(quote("-3600"))  # the clock stepped back an hour after it arrived
    with pytest.raises(ExchangeRejected, match=r"dated 3600\.0 s in the future"):
        await ex.place(req(BUY, "0.01", cid="b"))
    await ex.close()


async def test_a_naive_quote_time_is_refused_not_a_crash() -> None:
    naive = Quote("BTCZAR", D(999000), D(1000000), None, NOW.replace(tzinfo=None))
    ex, _ = await venue(market_with(naive))
    with pytest.raises(ExchangeRejected, match="the quote's time has no time zone"):
        await ex.place(req(BUY, "0.01"))
    await ex.close()


async def test_a_marketable_limit_is_refused_but_a_passive_one_rests() -> None:
    ex, rec = await venue(market_with(quote("120")))
    with pytest.raises(ExchangeRejected, match=r"^Stale market price for BTCZAR: .* 120\.0 s"):
        await ex.place(req(BUY, "0.01", LIMIT, "1000000", cid="takes"))  # at the ask
    with pytest.raises(ExchangeRejected, match="Stale market price"):
        await ex.place(req(SELL, "0.01", LIMIT, "990000", cid="takes-too"))  # below the bid
    # Below the ask it would rest on VALR too; resting fills at no price, so it may.
    result = await ex.place(req(BUY, "0.01", LIMIT, "990000", cid="rests"))
    assert result.state is OrderState.PLACED
    assert [o.customer_order_id for o in await ex.open_orders()] == ["rests"]
    await drain()
    assert rec.fills == {}
    await ex.close()


# ----------------------------------------------------------------------- resting orders


async def test_resting_orders_are_not_matched_against_a_stale_quote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    md = market_with(quote("0"))
    ex, rec = await venue(md)
    await ex.place(req(BUY, "0.01", LIMIT, "990000", cid="bid"))
    await ex.place(req(SELL, "0.01", LIMIT, "1010000", cid="offer"))
    with caplog.at_level(logging.WARNING, logger="heliosd.builtin.paper"):
        md.update(quote("45", bid="999000", ask="985000"))  # crosses the bid, but stale
        md.update(quote("45", bid="1020000", ask="1030000"))  # crosses the offer, but stale
    await drain()
    assert rec.fills == {}
    assert len(await ex.open_orders()) == 2
    # One warning per stale spell, naming the pair and the age, not one per quote.
    (record,) = caplog.records
    assert "resting BTCZAR orders not matched" in record.getMessage()
    assert "45.0 s old" in record.getMessage()

    md.update(quote("1", bid="999000", ask="985000"))  # fresh and crossing: fills
    await drain()
    assert [(f.customer_order_id, f.price) for f in rec.fills.values()] == [("bid", D(990000))]
    assert [o.customer_order_id for o in await ex.open_orders()] == ["offer"]
    await ex.close()


async def test_restored_orders_are_not_filled_at_start_against_a_stale_quote() -> None:
    """Restart after the feed died: the last quote crosses a restored order but is old."""
    md = market_with(quote("600", bid="980000", ask="985000"))
    order = OpenOrder("e-1", "BTCZAR", BUY, LIMIT, D(990000), D("0.01"), D("0.01"), "r-1")
    ex = PaperExchange(md, PaperSettings(starting_balances=BALANCES))
    ex.restore([], [order])
    rec = RecordingEvents()
    await ex.start(rec)
    await drain()
    assert rec.fills == {}
    assert [o.customer_order_id for o in await ex.open_orders()] == ["r-1"]
    md.update(quote("0", bid="980000", ask="985000"))
    await drain()
    assert filled(rec) == ["r-1"]
    await ex.close()


# ----------------------------------------------------------------------- configuration


def test_default_is_thirty_seconds_and_fractions_are_read_exactly() -> None:
    assert PaperSettings().max_quote_age_s == D(30)
    parsed = parse_settings({"paper": {"max_quote_age_s": 2.5}})
    assert parsed.paper.max_quote_age_s == D("2.5")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be above 0 and at most 3600, got 0"),
        (-5, "must be above 0"),
        (3601, "at most 3600"),
        ("nan", "must be finite"),
        ("soon", "is not a decimal number"),
        (True, "must be a number"),
    ],
)
def test_bad_values_are_refused_naming_the_key(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"paper": {"max_quote_age_s": value}}, source="t.toml")
    assert err.value.key == "paper.max_quote_age_s"
    assert fragment in str(err.value)


def test_check_config_exits_78_on_a_zero_age(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[paper]\nmax_quote_age_s = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", "check-config", str(bad)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert "paper.max_quote_age_s" in result.stderr
    assert "must be above 0" in result.stderr
