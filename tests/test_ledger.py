"""Ledger arithmetic, checked against figures computed by hand, and its invariants."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.core.types import Balance, Fill, Mode, PairInfo, Quote, Side
from heliosd.risk.ledger import Ledger, decimal_text, next_day_start
from heliosd.trading.marketdata import MarketData

D = Decimal
SAST = ZoneInfo("Africa/Johannesburg")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)
ETHZAR = PairInfo("ETHZAR", "ETH", "ZAR", D("0.001"), D(50), D(10), D(5000000), D(1), 8)
PAIRS = {"BTCZAR": BTCZAR, "ETHZAR": ETHZAR}
_ids = count(1)


def make_market(**mids: str) -> MarketData:
    market = MarketData(PAIRS)
    for pair, mid in mids.items():
        set_price(market, pair, mid)
    return market


def set_price(market: MarketData, pair: str, mid: str, spread: str = "0") -> None:
    half = D(spread) / 2
    market.update(Quote(pair, D(mid) - half, D(mid) + half, D(mid), T0))


def fill(
    side: Side,
    qty: str,
    price: str,
    fee: str = "0",
    fee_currency: str = "ZAR",
    pair: str = "BTCZAR",
) -> Fill:
    return Fill(
        trade_id=f"t{next(_ids)}",
        pair=pair,
        side=side,
        price=D(price),
        quantity=D(qty),
        fee=D(fee),
        fee_currency=fee_currency,
        traded_at=T0,
    )


def paper(market: MarketData, **balances: str) -> Ledger:
    start = {c: D(v) for c, v in balances.items()} or {"ZAR": D(100000)}
    return Ledger(Mode.PAPER, "ZAR", SAST, PAIRS, market, start)


def apply_all(ledger: Ledger, fills: Iterable[Fill]) -> None:
    for f in fills:
        ledger.apply_fill(f)


# --------------------------------------------------------------------------- hand-computed


def test_buy_with_base_fee_then_price_move() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market, ZAR="200000")
    # Buy 0.1 BTC at 1,000,000; VALR charges the buyer's fee in BTC: 0.0001 BTC.
    ledger.apply_fill(fill(Side.BUY, "0.1", "1000000", "0.0001", "BTC"))

    assert ledger.balances()["ZAR"].total == D(100000)
    assert ledger.balances()["BTC"].total == D("0.0999")
    assert ledger.position("BTCZAR") == D("0.0999")
    assert ledger.fees_paid() == D(100)  # 0.0001 BTC at the fill price
    assert ledger.equity() == D("199900")  # 100000 + 0.0999 * 1,000,000

    set_price(market, "BTCZAR", "1100000", spread="2000")  # mid 1,100,000
    assert ledger.equity() == D("209890")  # 100000 + 0.0999 * 1,100,000
    assert ledger.unrealized_pnl() == D("9990")  # 0.0999 * (1,100,000 - 1,000,000)
    assert ledger.realized_pnl() == 0
    assert ledger.gross_exposure() == D("109890")
    # realized + unrealized - fees == equity change (200,000 -> 209,890)
    assert ledger.realized_pnl() + ledger.unrealized_pnl() - ledger.fees_paid() == D(9890)


def test_partial_sell_with_quote_fee_realizes_against_average_cost() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market, ZAR="200000")
    ledger.apply_fill(fill(Side.BUY, "0.1", "1000000", "0.0001", "BTC"))
    # Sell 0.04 at 1,200,000 with a 0.1% fee in ZAR: 48.
    ledger.apply_fill(fill(Side.SELL, "0.04", "1200000", "48", "ZAR"))

    assert ledger.realized_pnl() == D(8000)  # 0.04 * (1,200,000 - 1,000,000)
    assert ledger.fees_paid() == D(148)
    assert ledger.balances()["ZAR"].total == D("147952")  # 100000 + 48000 - 48
    assert ledger.position("BTCZAR") == D("0.0599")

    set_price(market, "BTCZAR", "1150000")
    assert ledger.equity() == D("216837")  # 147952 + 0.0599 * 1,150,000
    assert ledger.unrealized_pnl() == D("8985")  # 0.0599 * 150,000
    assert ledger.realized_pnl() + ledger.unrealized_pnl() - ledger.fees_paid() == D(16837)

    (row,) = ledger.positions_json()
    assert row.pop("asset") == "BTC"
    assert row.pop("external") is False
    assert row == {
        "pair": "BTCZAR",
        "quantity": "0.0599",
        "average_cost": "1000000",
        "mark": "1150000",
        "notional": "68885",
        "unrealized_pnl": "8985",
        "realized_pnl": "8000",
        "fees": "148",
        "currency": "ZAR",
    }


def test_average_cost_blends_buys_and_a_full_close_realizes_the_rest() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market, ZAR="500000")
    ledger.apply_fill(fill(Side.BUY, "0.06", "1000000"))
    ledger.apply_fill(fill(Side.BUY, "0.04", "1300000", "52", "ZAR"))
    # avg = (60,000 + 52,000) / 0.1 = 1,120,000
    assert ledger.positions_json()[0]["average_cost"] == "1120000"
    ledger.apply_fill(fill(Side.SELL, "0.1", "1000000", "100", "ZAR"))
    assert ledger.position("BTCZAR") == 0
    assert ledger.realized_pnl() == D(-12000)  # 0.1 * (1,000,000 - 1,120,000)
    assert ledger.fees_paid() == D(152)
    assert ledger.unrealized_pnl() == 0
    assert ledger.equity() == D("487848")  # 500000 - 12000 - 152
    assert ledger.positions() == {}
    row = ledger.positions_json()[0]
    assert (row["quantity"], row["average_cost"], row["realized_pnl"]) == ("0", "0", "-12000")


def test_unmarked_currency_is_valued_at_its_last_fill_price() -> None:
    market = make_market(BTCZAR="1000000")  # no ETHZAR quote
    ledger = paper(market, ZAR="100000")
    ledger.apply_fill(fill(Side.BUY, "1", "40000", pair="ETHZAR"))
    assert ledger.equity() == D(100000)  # ETH at its last fill price 40,000
    ledger.apply_fill(fill(Side.SELL, "0.5", "42000", pair="ETHZAR"))
    assert ledger.equity() == D(102000)  # 81000 ZAR + 0.5 ETH at 42,000
    assert ledger.unrealized_pnl() == D(1000)  # 0.5 * (42,000 - 40,000)
    assert ledger.realized_pnl() == D(1000)


def test_valuations_follow_fills_balances_and_marks() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market, ZAR="100000", BTC="0.01")
    assert ledger.equity() == D(110000)
    set_price(market, "BTCZAR", "2000000")
    assert ledger.equity() == D(120000)  # cache dropped: the market's version moved
    ledger.apply_fill(fill(Side.SELL, "0.01", "2000000"))
    assert ledger.equity() == D(120000)
    assert ledger.gross_exposure() == 0
    assert ledger.balances()["ZAR"].total == D(120000)


def test_unknown_pair_and_nonsense_fills_are_refused() -> None:
    ledger = paper(make_market())
    with pytest.raises(ValueError, match="unknown pair"):
        ledger.apply_fill(fill(Side.BUY, "1", "10", pair="FOOBAR"))
    with pytest.raises(ValueError, match="must be positive"):
        ledger.apply_fill(fill(Side.BUY, "0", "10"))
    # A pair quoted in the reference currency but not listed yet is still bookable.
    ledger.apply_fill(fill(Side.BUY, "2", "100", pair="SOLZAR"))
    assert ledger.position("SOLZAR") == D(2)
    assert ledger.equity() == D(100000)  # valued at its last fill price


def test_maker_rebate_is_a_negative_fee() -> None:
    ledger = paper(make_market(BTCZAR="1000000"))
    ledger.apply_fill(fill(Side.BUY, "0.01", "1000000", "-1", "ZAR"))
    assert ledger.fees_paid() == D(-1)
    assert ledger.equity() == D(100001)


def test_quote_rebates_on_a_round_trip_raise_the_net_pnl_by_exactly_the_rebates() -> None:
    # Maker buy 0.01 at 1,000,000 earning 2 ZAR, maker sell at 1,010,000 earning 2.02 ZAR.
    market = make_market(BTCZAR="1000000")
    ledger = paper(market)
    ledger.apply_fill(fill(Side.BUY, "0.01", "1000000", "-2", "ZAR"))
    ledger.apply_fill(fill(Side.SELL, "0.01", "1010000", "-2.02", "ZAR"))
    assert ledger.realized_pnl() == D(100)  # the trading result, before fees
    assert ledger.fees_paid() == D("-4.02")  # rebates: negative fees
    assert ledger.balances()["ZAR"].total == D("100104.02")  # realized - fees, in cash
    assert ledger.equity() - D(100000) == ledger.realized_pnl() - ledger.fees_paid()
    pnl = ledger.pnl_json(T0)
    assert (pnl["realized"], pnl["fees"], pnl["equity"]) == ("100", "-4.02", "100104.02")
    [row] = ledger.book_rows()
    assert (row["quantity"], row["realized_pnl"], row["fees"]) == ("0", "100", "-4.02")


def test_a_base_currency_rebate_adds_quantity_at_the_fill_price() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market)
    # A maker buy of 0.01 BTC earning 0.000002 BTC: 0.010002 BTC held for 10,000 ZAR.
    ledger.apply_fill(fill(Side.BUY, "0.01", "1000000", "-0.000002", "BTC"))
    assert ledger.position("BTCZAR") == D("0.010002")
    assert ledger.balances()["ZAR"].total == D(90000)
    assert ledger.fees_paid() == D(-2)  # 0.000002 BTC x 1,000,000
    [row] = ledger.book_rows()
    assert (row["quantity"], row["average_cost"]) == ("0.010002", "1000000")
    assert ledger.equity() == D(100002)
    # A maker sell of 0.01 BTC earning 0.000001 BTC gives up only 0.009999 BTC.
    ledger.apply_fill(fill(Side.SELL, "0.01", "1000000", "-0.000001", "BTC"))
    assert ledger.position("BTCZAR") == D("0.000003")
    assert ledger.fees_paid() == D(-3)
    assert ledger.realized_pnl() == 0
    assert ledger.equity() - D(100000) == ledger.unrealized_pnl() - ledger.fees_paid() == D(3)


def test_a_live_rebate_is_unsettled_until_the_venue_shows_it() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = Ledger(Mode.LIVE, "ZAR", SAST, PAIRS, market, None)
    ledger.set_balances([Balance("ZAR", D(100000))], snapshot=True)
    seen = {c: ledger.report_mark(c) for c in ("BTC", "ZAR")}
    # Traded after the snapshot, so the snapshot cannot have shown it.
    rebate = replace(fill(Side.BUY, "0.01", "1000000", "-2", "ZAR"), traded_at=datetime.now(UTC))
    ledger.apply_fill(rebate, seen=seen)
    # The account paid 10,000 ZAR less the 2 ZAR rebate: 9,998 ZAR out, 0.01 BTC in.
    assert ledger.unsettled() == {"ZAR": D(-9998), "BTC": D("0.01")}
    ledger.set_balances([Balance("ZAR", D(90002)), Balance("BTC", D("0.01"))], snapshot=False)
    assert ledger.unsettled() == {}
    assert ledger.fees_paid() == D(-2)
    assert ledger.equity() == D(100002)


# --------------------------------------------------------------------------- venue balances


def test_live_ledger_is_unknown_until_the_venue_snapshot_then_follows_it() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = Ledger(Mode.LIVE, "ZAR", SAST, PAIRS, market, None)
    assert not ledger.ready
    assert ledger.equity() == 0  # unknown: the risk rules refuse on equity <= 0
    ledger.set_balances([Balance("BTC", D(1))], snapshot=False)  # delta before snapshot
    assert ledger.balances() == {}

    snap = ledger.snapshot(T0)
    assert snap.equity == 0
    assert ledger.marks() == (None, None, None)  # unknown equity sets no marks

    ledger.set_balances(
        [Balance("ZAR", D(1000), D(500)), Balance("BTC", D("0.01"), D("0.005"))], snapshot=True
    )
    assert ledger.ready
    assert ledger.position("BTCZAR") == D("0.015")
    assert ledger.equity() == D(16500)  # 1500 + 0.015 * 1,000,000

    # Fills drive cost basis and P&L, never the venue's balances.
    ledger.apply_fill(fill(Side.BUY, "0.005", "1000000", "5", "ZAR"))
    assert ledger.position("BTCZAR") == D("0.015")
    assert ledger.fees_paid() == D(5)
    ledger.set_balances([Balance("BTC", D("0.02"))], snapshot=False)
    assert ledger.position("BTCZAR") == D("0.02")
    assert ledger.balances()["ZAR"].total == D(1500)
    ledger.set_balances([Balance("ZAR", D(7))], snapshot=True)
    assert ledger.position("BTCZAR") == 0
    assert ledger.equity() == D(7)


# --------------------------------------------------------------------------- marks and days


def test_day_boundary_is_midnight_in_johannesburg() -> None:
    market = make_market(BTCZAR="1000000")
    ledger = paper(market, ZAR="100000")
    ledger.apply_fill(fill(Side.BUY, "0.05", "1000000"))

    s1 = ledger.snapshot(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))  # 23:00 SAST, 2 March
    assert s1.day_start == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    assert (s1.equity, s1.day_start_equity, s1.peak_equity) == (D(100000),) * 3

    set_price(market, "BTCZAR", "900000")
    s2 = ledger.snapshot(datetime(2026, 3, 2, 21, 59, tzinfo=UTC))
    assert s2.daily_pnl == D(-5000)
    assert s2.daily_loss_pct == D(5)
    assert s2.drawdown_pct == D(5)

    s3 = ledger.snapshot(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))  # 00:00 SAST, 3 March
    assert s3.day_start == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    assert (s3.day_start_equity, s3.daily_pnl, s3.daily_loss_pct) == (D(95000), 0, 0)
    assert s3.drawdown_pct == D(5)  # the peak is not reset by a new day

    set_price(market, "BTCZAR", "800000")
    s4 = ledger.snapshot(datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    assert s4.equity == D(90000)
    assert s4.daily_loss_pct == D(5000) / D(95000) * 100  # 5.263...%
    assert s4.drawdown_pct == D(10)
    assert ledger.marks() == (D(100000), date(2026, 3, 3), D(95000))
    assert next_day_start(s4.at, SAST) == datetime(2026, 3, 3, 22, 0, tzinfo=UTC)

    pnl = ledger.pnl_json(s4.at)
    assert pnl["daily_loss_pct"] == "5.2632"
    assert pnl["drawdown_pct"] == "10"
    assert pnl["equity"] == "90000"
    assert pnl["day_start"] == "2026-03-02T22:00:00+00:00"
    assert (pnl["mode"], pnl["reference_currency"]) == ("PAPER", "ZAR")


def test_restored_marks_survive_a_restart_on_the_same_day_only() -> None:
    market = make_market(BTCZAR="800000")
    fills = [fill(Side.BUY, "0.05", "1000000")]
    ledger = paper(market, ZAR="100000")
    ledger.rebuild(fills)
    ledger.restore_marks(D(120000), date(2026, 3, 3), D(95000))

    s = ledger.snapshot(datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    assert s.equity == D(90000)
    assert (s.peak_equity, s.day_start_equity) == (D(120000), D(95000))
    assert s.drawdown_pct == D(25)

    # Next day: the restored start is replaced by the first equity seen that day.
    s = ledger.snapshot(datetime(2026, 3, 4, 6, 0, tzinfo=UTC))
    assert (s.day_start_equity, s.daily_loss_pct) == (D(90000), 0)
    assert ledger.marks() == (D(120000), date(2026, 3, 4), D(90000))


def test_readers_do_not_move_the_persisted_marks() -> None:
    ledger = paper(make_market(BTCZAR="1000000"))
    ledger.pnl_json(T0)
    assert ledger.peek(T0).day_start_equity == D(100000)
    assert ledger.marks() == (None, None, None)


def test_pairs_listed_later_by_the_market_show_their_holdings() -> None:
    market = MarketData({"BTCZAR": BTCZAR})
    start = {"ZAR": D(1000), "ETH": D(2)}
    ledger = Ledger(Mode.PAPER, "ZAR", SAST, market.pairs(), market, start,
                    traded=("BTCZAR", "ETHZAR"))  # fmt: skip
    assert ledger.positions() == {}  # ETHZAR's currencies are not known yet
    market.set_pairs({"BTCZAR": BTCZAR, "ETHZAR": ETHZAR})
    assert ledger.positions() == {"ETHZAR": D(2)}


def test_positions_are_the_traded_pairs_and_other_holdings_are_external() -> None:
    market = MarketData({"BTCZAR": BTCZAR, "ETHZAR": ETHZAR})
    ledger = Ledger(Mode.PAPER, "ZAR", SAST, market.pairs(), market,
                    {"ZAR": D(1000), "ETH": D(2)}, traded=("BTCZAR",))  # fmt: skip
    assert ledger.positions() == {}  # ETH is held, but no traded pair has it
    assert ledger.is_external("ETH") and not ledger.is_external("BTC")


def test_decimal_text_is_fixed_point() -> None:
    assert decimal_text(D("1E+5")) == "100000"
    assert decimal_text(D("-0.000000001")) == "0"
    assert decimal_text(D("1.123456789")) == "1.12345679"


# --------------------------------------------------------------------------- properties

_fills = st.lists(
    st.tuples(
        st.sampled_from(["BTCZAR", "ETHZAR"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 100_000),  # quantity in 1e-6
        st.integers(1_000, 2_000_000),  # price in ZAR
        st.sampled_from(["base", "quote", "none"]),
        st.integers(-5, 50),  # fee in basis points (negative: maker rebate)
    ),
    max_size=25,
)


def _to_fills(raw: list[tuple[str, Side, int, int, str, int]]) -> list[Fill]:
    out = []
    for pair, side, qty_u, price, fee_kind, bps in raw:
        qty = D(qty_u).scaleb(-6)
        base = PAIRS[pair].base
        if fee_kind == "base":
            fee, cur = qty * bps / 10000, base
        elif fee_kind == "quote":
            fee, cur = qty * price * bps / 10000, "ZAR"
        else:
            fee, cur = D(0), "ZAR"
        out.append(fill(side, str(qty), str(price), str(fee), cur, pair))
    return out


@settings(max_examples=150, deadline=None)
@given(
    raw=_fills,
    marks=st.tuples(st.integers(1_000, 2_000_000), st.integers(1_000, 200_000)),
    opening_btc=st.integers(0, 3),
)
def test_pnl_explains_the_equity_change_and_rebuild_is_identical(
    raw: list[tuple[str, Side, int, int, str, int]],
    marks: tuple[int, int],
    opening_btc: int,
) -> None:
    market = make_market(BTCZAR=str(marks[0]), ETHZAR=str(marks[1]))
    ledger = paper(market, ZAR="1000000", BTC=str(opening_btc))
    before = ledger.equity()
    fills = _to_fills(raw)
    apply_all(ledger, fills)

    explained = ledger.realized_pnl() + ledger.unrealized_pnl() - ledger.fees_paid()
    assert ledger.equity() - before == explained

    again = paper(market, ZAR="1000000", BTC=str(opening_btc))
    again.rebuild(fills)
    assert again.positions_json() == ledger.positions_json()
    assert again.pnl_json(T0) == ledger.pnl_json(T0)
    assert again.balances() == ledger.balances()
    assert (again.realized_pnl(), again.fees_paid()) == (
        ledger.realized_pnl(),
        ledger.fees_paid(),
    )
    # Rebuilding in place (a restart with the same object) gives the same figures too.
    ledger.rebuild(fills)
    assert ledger.equity() - before == explained
    assert ledger.pnl_json(T0) == again.pnl_json(T0)
