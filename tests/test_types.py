"""The contract of heliosd/core/types.py: the frozen value types every boundary shares.

Pinned here: the enums' stored texts (TradingState, Mode, Side.sign, OrderState and its
open/terminal split, the API's state names), ``reduces_position`` (the latch's one
definition of a reducing order), PairInfo's rounding (truncated quantities, tick-rounded
prices that are never zero), Quote.mid, Balance.total, frozenness and PlaceRequest's
permit being outside equality, the Verdict classmethods' details, and ``utcnow`` being
UTC-aware.

Covered elsewhere (not repeated here):
- tests/test_verdict.py: Verdict's own __init__ (keyword/positional/classmethod agree,
  frozen, copy/pickle, as_json) and round_quantity equal to quantize(ROUND_DOWN).
- tests/test_router_scenarios.py: reduces_position as the router's latch uses it.
- tests/test_state.py: the trading state derived from breakers; a missing row reads HALTED.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.control.schema_answers import OrderStateName
from heliosd.core.types import (
    ZERO,
    Balance,
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PairInfo,
    PlaceRequest,
    PlaceResult,
    Quote,
    Side,
    TradingState,
    Verdict,
    VerdictAction,
    reduces_position,
    utcnow,
)
from heliosd.trading.orders import can_move
from heliosd.trading.permits import PermitBoard

D = Decimal
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5_000_000), D(1), 8)
OPEN = {OrderState.NEW, OrderState.SENT, OrderState.PLACED, OrderState.PARTIALLY_FILLED}
FEW = settings(max_examples=60, deadline=None)


def intent(side: Side, quantity: Decimal) -> OrderIntent:
    return OrderIntent("BTCZAR", side, OrderType.MARKET, quantity)


# --------------------------------------------------------------------------- enums


def test_trading_state_and_mode_store_their_own_names_and_refuse_unknown_text() -> None:
    # StrEnums: the member is the text stored in trading_mode_state and shown by the API.
    assert [str(s) for s in TradingState] == ["ACTIVE", "REDUCING", "HALTED"]
    assert [str(m) for m in Mode] == ["PAPER", "LIVE"]
    assert TradingState("REDUCING") is TradingState.REDUCING
    assert Mode("LIVE") is Mode.LIVE
    assert f"{Mode.PAPER}" == "PAPER" and Mode.LIVE == "LIVE"
    # Unknown text is an error, never a silent default (the mode read maps it to HALTED).
    for text in ("halted", "PAUSED", ""):
        with pytest.raises(ValueError, match="is not a valid TradingState"):
            TradingState(text)
    with pytest.raises(ValueError, match="is not a valid Mode"):
        Mode("live")


def test_side_sign_is_plus_one_for_buy_and_minus_one_for_sell() -> None:
    assert (Side.BUY.sign, Side.SELL.sign) == (1, -1)
    # Signed quantities stay exact Decimals.
    assert Side.SELL.sign * D("0.015") == D("-0.015")
    assert Side("BUY") is Side.BUY and str(Side.SELL) == "SELL"


def test_order_states_split_into_open_and_terminal_exactly() -> None:
    for state in OrderState:
        assert state.is_open is (state in OPEN)
        assert state.is_terminal is not state.is_open
    terminal = set(OrderState) - OPEN
    assert terminal == {
        OrderState.FILLED, OrderState.CANCELLED, OrderState.FAILED, OrderState.REJECTED,
    }  # fmt: skip


def test_order_state_texts_are_exactly_the_api_schema_names() -> None:
    assert {str(s) for s in OrderState} == set(typing.get_args(OrderStateName))
    assert OrderState("partially_filled") is OrderState.PARTIALLY_FILLED


@FEW
@given(st.lists(st.sampled_from(list(OrderState)), min_size=1, max_size=12))
def test_an_order_that_only_takes_allowed_moves_never_reopens_or_goes_back(
    proposed: list[OrderState],
) -> None:
    """The lifecycle as OrderState's split defines it: an open state only advances, and once
    terminal an order is final (can_move, the forward-only rule, asks is_terminal)."""
    rank = [OrderState.NEW, OrderState.SENT, OrderState.PLACED, OrderState.PARTIALLY_FILLED]
    state = OrderState.NEW
    for new in proposed:
        if not can_move(state, new):
            continue
        assert state.is_open  # nothing moves out of a terminal state
        if new.is_open:
            assert rank.index(new) > rank.index(state)
        state = new
    if state.is_terminal:
        assert not any(can_move(state, s) for s in OrderState)


# --------------------------------------------------------------------------- reduces_position


@FEW
@given(
    side=st.sampled_from(list(Side)),
    quantity=st.decimals(min_value=-2, max_value=5, places=4),
    position=st.decimals(min_value=-5, max_value=5, places=4),
)
def test_reduces_position_means_opposite_side_and_no_larger_than_the_holding(
    side: Side, quantity: Decimal, position: Decimal
) -> None:
    expected = (
        position != 0
        and quantity > 0
        and side.sign * position < 0  # opposite: a SELL of a long, a BUY of a short
        and quantity <= abs(position)
    )
    assert reduces_position(intent(side, quantity), position) is expected


def test_reduces_position_edges() -> None:
    assert reduces_position(intent(Side.SELL, D("0.1")), D("0.1"))  # all of it: still reducing
    assert not reduces_position(intent(Side.SELL, D("0.10000001")), D("0.1"))  # it would flip
    assert reduces_position(intent(Side.BUY, D("0.5")), D("-0.5"))  # covering a short
    assert not reduces_position(intent(Side.BUY, D("0.1")), D("0.5"))  # adds to a long
    assert not reduces_position(intent(Side.SELL, D("0.1")), ZERO)  # flat: nothing reduces
    assert not reduces_position(intent(Side.SELL, D(0)), D(1))  # a zero order reduces nothing
    assert not reduces_position(intent(Side.SELL, D(-1)), D(1))


# --------------------------------------------------------------------------- PairInfo


@FEW
@given(
    quantity=st.decimals(min_value=0, max_value=10**6, places=12),
    decimals=st.integers(min_value=0, max_value=10),
)
def test_round_quantity_truncates_within_one_quantum_and_is_idempotent(
    quantity: Decimal, decimals: int
) -> None:
    pair = dataclasses.replace(BTCZAR, base_decimals=decimals)
    rounded = pair.round_quantity(quantity)
    quantum = D(1).scaleb(-decimals)
    assert ZERO <= quantity - rounded < quantum  # never up, never more than a quantum down
    assert rounded.as_tuple().exponent == -decimals  # the text sent to the venue
    assert pair.round_quantity(rounded) == rounded
    assert str(pair.round_quantity(rounded)) == str(rounded)


def test_round_quantity_does_not_lift_a_quantity_to_min_base() -> None:
    """Truncation only: a quantity under the pair's minimum stays under it (callers, e.g.
    the size limits and the close planner, compare the rounded value to ``min_base``)."""
    tiny = BTCZAR.round_quantity(D("0.000099999"))
    assert tiny == D("0.00009999") and tiny < BTCZAR.min_base
    assert BTCZAR.round_quantity(D("0.00010000999")) == BTCZAR.min_base
    assert BTCZAR.round_quantity(D("0.000000009")) == ZERO


def test_round_price_goes_to_the_nearest_tick_half_even_in_the_ticks_exponent() -> None:
    cents = dataclasses.replace(BTCZAR, tick_size=D("0.01"))
    assert str(cents.round_price(D("9.994"))) == "9.99"
    assert str(cents.round_price(D("9.996"))) == "10.00"
    assert str(cents.round_price(D("0.125"))) == "0.12"  # half to even
    assert str(cents.round_price(D("0.135"))) == "0.14"
    fives = dataclasses.replace(BTCZAR, tick_size=D(5))
    assert fives.round_price(D(1_000_002)) == D(1_000_000)
    assert fives.round_price(D(1_000_003)) == D(1_000_005)
    # Plain text, never an exponent form ("1E+6" would be sent to the venue).
    assert str(BTCZAR.round_price(D(1_000_000))) == "1000000"
    assert str(BTCZAR.round_price(D("1200000.4"))) == "1200000"


def test_round_price_never_gives_a_zero_price() -> None:
    cents = dataclasses.replace(BTCZAR, tick_size=D("0.01"))
    assert cents.round_price(D("0.004")) == D("0.01")  # under half a tick: one tick
    assert cents.round_price(D(0)) == D("0.01")
    assert BTCZAR.round_price(D("0.2")) == D(1)


# --------------------------------------------------------------------------- small values


def test_quote_mid_is_the_exact_mean_of_bid_and_ask_else_the_last_trade() -> None:
    at = utcnow()
    assert Quote("BTCZAR", D(1_199_000), D(1_201_000), D(5), at).mid == D(1_200_000)
    assert Quote("X", D("0.1"), D("0.2"), None, at).mid == D("0.15")  # exact, not binary
    # A one-sided book is not a mid: the last trade stands in, or nothing.
    assert Quote("X", D(10), None, D(11), at).mid == D(11)
    assert Quote("X", None, D(12), D(11), at).mid == D(11)
    assert Quote("X", None, None, None, at).mid is None


def test_balance_total_is_available_plus_reserved() -> None:
    assert Balance("ZAR", D("100.50"), D("0.25")).total == D("100.75")
    assert Balance("BTC", D("0.1")).reserved == ZERO
    assert Balance("BTC", D("0.1")).total == D("0.1")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (BTCZAR, "min_base"),
        (intent(Side.BUY, D(1)), "quantity"),
        (PlaceResult(OrderState.PLACED, "x"), "state"),
        (Quote("BTCZAR", D(1), D(2), None, datetime(2026, 1, 1, tzinfo=UTC)), "bid"),
        (Balance("ZAR", D(1)), "available"),
    ],
    ids=["PairInfo", "OrderIntent", "PlaceResult", "Quote", "Balance"],
)
def test_value_types_are_frozen(value: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, D(0))
    assert not hasattr(value, "__dict__")  # slots: cheap, and no stray attributes


async def test_place_request_equality_and_repr_ignore_the_permit() -> None:
    board = PermitBoard(lambda: (Mode.PAPER, 0))
    args = ("hd-1", "BTCZAR", Side.BUY, OrderType.LIMIT, D("0.001"), D(1_000_000))
    bare = PlaceRequest(*args)
    permitted = PlaceRequest(*args, permit=board.issue(Mode.PAPER, 0, label="hd-1"))
    assert bare.permit is None and permitted.permit is not None
    assert bare == permitted  # the permit is the right to send, not part of the order
    assert "permit" not in repr(permitted)
    assert permitted != dataclasses.replace(bare, quantity=D("0.002"))


def test_verdict_classmethods_set_the_action_and_never_share_details() -> None:
    capped = Verdict.cap("size", D("0.5"), "too big")
    refused = Verdict.reject("size", "no")
    other = Verdict.reject("size", "no", None)
    assert (capped.action, capped.quantity) == (VerdictAction.CAP, D("0.5"))
    assert (refused.action, refused.quantity) == (VerdictAction.REJECT, None)
    assert Verdict.accept("size", "fine").action is VerdictAction.ACCEPT
    assert refused.details == {} and refused.details is not other.details
    given_details = {"allowed": "0.5"}
    assert Verdict.reject("size", "no", given_details).details == given_details
    # as_json stores the action's text, whatever a drop-in rule handed in.
    assert Verdict(rule="d", action="reject").as_json()["action"] == "reject"  # type: ignore[arg-type]


def test_utcnow_is_timezone_aware_utc_and_the_current_time() -> None:
    before = datetime.now(UTC)
    now = utcnow()
    after = datetime.now(UTC)
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    # Compared with aware system times (a naive one would raise TypeError here).
    assert before - timedelta(seconds=1) <= now <= after + timedelta(seconds=1)
