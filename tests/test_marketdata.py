"""MarketData: quotes, derived prices, pairs, subscribers and staleness."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from heliosd.core.types import PairInfo, Quote, Side
from heliosd.trading.marketdata import DEFAULT_PAIRS, MarketData

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
D = Decimal


def q(
    pair: str = "BTCZAR",
    bid: str | None = None,
    ask: str | None = None,
    last: str | None = None,
    at: datetime = T0,
) -> Quote:
    return Quote(
        pair,
        None if bid is None else D(bid),
        None if ask is None else D(ask),
        None if last is None else D(last),
        at,
    )


def test_default_pairs_carry_valr_limits() -> None:
    md = MarketData()
    btc = md.pair("BTCZAR")
    eth = md.pair("ETHZAR")
    assert btc == PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)
    assert eth == PairInfo("ETHZAR", "ETH", "ZAR", D("0.001"), D(50), D(10), D(5000000), D(1), 8)
    assert set(md.pairs()) == {"BTCZAR", "ETHZAR"}
    assert md.pairs() == DEFAULT_PAIRS
    with pytest.raises(TypeError):
        md.pairs()["X"] = btc  # type: ignore[index]


def test_set_pairs_replaces_the_defaults_and_bumps_version() -> None:
    md = MarketData()
    v = md.version
    usdc = PairInfo("BTCUSDC", "BTC", "USDC", D("0.00001"), D(2), D(1), D(300000), D(1), 8)
    md.set_pairs({"BTCUSDC": usdc})
    assert md.version == v + 1
    assert md.pair("BTCUSDC") is usdc
    assert md.pair("BTCZAR") is None
    assert list(md.pairs()) == ["BTCUSDC"]


def test_prices_from_a_full_quote() -> None:
    md = MarketData()
    assert md.quote("BTCZAR") is None
    assert md.price_for("BTCZAR", Side.BUY) is None
    assert md.mark("BTCZAR") is None
    quote = q(bid="999000", ask="1000001", last="999500")
    md.update(quote)
    assert md.quote("BTCZAR") is quote
    assert md.price_for("BTCZAR", Side.BUY) == D(1000001)
    assert md.price_for("BTCZAR", Side.SELL) == D(999000)
    assert md.mark("BTCZAR") == D("999500.5")
    assert md.quotes() == {"BTCZAR": quote}


def test_missing_sides_fall_back_to_last_and_never_linger() -> None:
    md = MarketData()
    md.update(q(bid="999000", ask="1000000", last="999500"))
    # A one-sided book: the missing side falls back to the last trade, and mid is unknown.
    md.update(q(bid="998000", last="998500"))
    assert md.price_for("BTCZAR", Side.BUY) == D(998500)
    assert md.price_for("BTCZAR", Side.SELL) == D(998000)
    assert md.mark("BTCZAR") == D(998500)
    # Nothing known any more: every derived price disappears with it.
    md.update(q())
    assert md.price_for("BTCZAR", Side.BUY) is None
    assert md.price_for("BTCZAR", Side.SELL) is None
    assert md.mark("BTCZAR") is None


def test_version_counts_every_update() -> None:
    md = MarketData()
    v = md.version
    for i in range(5):
        md.update(q(last=str(1000 + i)))
    assert md.version == v + 5


def test_subscribers_are_called_in_order_and_can_unsubscribe() -> None:
    md = MarketData()
    seen: list[tuple[str, Decimal | None]] = []
    unsub_a = md.subscribe(lambda quote: seen.append(("a", quote.last)))
    md.subscribe(lambda quote: seen.append(("b", quote.last)))
    md.update(q(last="1"))
    unsub_a()
    unsub_a()  # idempotent
    md.update(q(last="2"))
    assert seen == [("a", D(1)), ("b", D(1)), ("b", D(2))]


def test_subscriber_sees_the_stored_quote() -> None:
    md = MarketData()
    marks: list[Decimal | None] = []
    md.subscribe(lambda quote: marks.append(md.mark(quote.pair)))
    md.update(q(bid="10", ask="12"))
    assert marks == [D(11)]


@pytest.mark.logs_exception("boom")
def test_a_failing_subscriber_is_logged_and_does_not_starve_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    md = MarketData()
    got: list[Quote] = []

    def broken(quote: Quote) -> None:
        raise RuntimeError("boom")

    md.subscribe(broken)
    md.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.marketdata"):
        md.update(q(last="5"))
    assert len(got) == 1
    assert md.mark("BTCZAR") == D(5)
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("boom",)]


def test_unsubscribing_during_a_callback_is_safe() -> None:
    md = MarketData()
    calls: list[str] = []

    def once(quote: Quote) -> None:
        calls.append("once")
        unsub_once()

    unsub_once = md.subscribe(once)
    md.subscribe(lambda quote: calls.append("other"))
    md.update(q(last="1"))
    md.update(q(last="2"))
    assert calls == ["once", "other", "other"]


def test_age_and_staleness() -> None:
    md = MarketData()
    now = T0 + timedelta(seconds=7)
    # No quote at all is stale: fail closed.
    assert md.age("BTCZAR", now) is None
    assert md.is_stale("BTCZAR", timedelta(seconds=60), now)
    md.update(q(last="1", at=T0))
    assert md.age("BTCZAR", now) == timedelta(seconds=7)
    assert not md.is_stale("BTCZAR", timedelta(seconds=7), now)
    assert md.is_stale("BTCZAR", timedelta(seconds=6), now)


def test_reads_are_dict_lookups_fast() -> None:
    """The risk path calls these per order; keep them far below a microsecond each."""
    md = MarketData()
    md.update(q(bid="999000", ask="1000000", last="999500"))
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        md.price_for("BTCZAR", Side.BUY)
        md.mark("BTCZAR")
        md.quote("BTCZAR")
    per_call = (time.perf_counter() - start) / (3 * n)
    # ~100 ns on our machines; the bound is loose so a busy CI box does not flake.
    assert per_call < 2e-6, per_call
