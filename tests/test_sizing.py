"""Kelly sizing against hand-computed values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.builtin.sizing import kelly_fraction, kelly_quantity
from heliosd.core.types import PairInfo

D = Decimal
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)


@pytest.mark.parametrize(
    ("p", "b", "expected"),
    [
        ("0.6", "1", "0.2"),  # 0.6 - 0.4 / 1
        ("0.55", "2", "0.325"),  # 0.55 - 0.45 / 2
        ("0.5", "1", "0"),  # a fair coin: no edge
        ("0.3", "1", "0"),  # negative edge clamps to 0
        ("1", "0.5", "1"),  # certainty clamps to 1
        ("0", "3", "0"),
    ],
)
def test_kelly_fraction(p: str, b: str, expected: str) -> None:
    assert kelly_fraction(D(p), D(b)) == D(expected)


@pytest.mark.parametrize(("p", "b"), [("1.1", "1"), ("-0.1", "1"), ("0.5", "0"), ("NaN", "1")])
def test_kelly_fraction_refuses_nonsense(p: str, b: str) -> None:
    with pytest.raises(ValueError, match=r"probability|payoff|finite"):
        kelly_fraction(D(p), D(b))


def test_half_kelly_quantity() -> None:
    # f* = 0.2, half Kelly 0.1: 10,000 ZAR of 100,000 at 1,200,000 = 0.008333..., truncated.
    q = kelly_quantity(D(100000), D(1200000), D("0.6"), D(1), D("0.5"), D(20), BTCZAR)
    assert q == D("0.00833333")


def test_quantity_never_exceeds_the_position_limit() -> None:
    # Full Kelly 0.325 is above the 20% cap: 20,000 / 1,200,000 = 0.0166666...
    q = kelly_quantity(D(100000), D(1200000), D("0.55"), D(2), D(1), D(20), BTCZAR)
    assert q == D("0.01666666")


def test_quantity_respects_the_pair_maximum() -> None:
    q = kelly_quantity(D(10**9), D(1000), D("0.55"), D(2), D(1), D(20), BTCZAR)
    assert q == D(2)  # max_base


@pytest.mark.parametrize(
    ("equity", "price", "p"),
    [
        ("1000", "1200000", "0.6"),  # 0.0000833 BTC: below the 0.0001 minimum
        ("100000", "1200000", "0.5"),  # no edge
        ("0", "1200000", "0.6"),  # nothing to size against
        ("100000", "0", "0.6"),  # no price
    ],
)
def test_zero_when_below_minimum_or_nothing_to_size(equity: str, price: str, p: str) -> None:
    assert kelly_quantity(D(equity), D(price), D(p), D(1), D("0.5"), D(20), BTCZAR) == 0


def test_zero_below_the_minimum_notional() -> None:
    pair = PairInfo("XZAR", "X", "ZAR", D("0.0001"), D(100), D(100), D(10**7), D(1), 4)
    # 0.1 * 1,000 = 100 ZAR -> 0.05 X at 2,000, worth exactly the 100 ZAR minimum: allowed.
    assert kelly_quantity(D(1000), D(2000), D("0.6"), D(1), D("0.5"), D(20), pair) == D("0.05")
    # 0.1 * 990 = 99 ZAR -> 0.0495 X worth 99: below the 100 ZAR minimum.
    assert kelly_quantity(D(990), D(2000), D("0.6"), D(1), D("0.5"), D(20), pair) == 0


@settings(max_examples=200, deadline=None)
@given(
    equity=st.integers(1, 10**8),
    price=st.integers(1, 3 * 10**6),
    p=st.integers(0, 100),
    b=st.integers(1, 50),
    fraction=st.integers(1, 100),
    cap=st.integers(1, 100),
)
def test_quantity_is_always_within_the_cap_and_the_pair(
    equity: int, price: int, p: int, b: int, fraction: int, cap: int
) -> None:
    q = kelly_quantity(
        D(equity), D(price), D(p) / 100, D(b) / 10, D(fraction) / 100, D(cap), BTCZAR
    )
    assert q >= 0
    assert q * price <= D(equity) * cap / 100
    assert q == BTCZAR.round_quantity(q)
    if q:
        assert BTCZAR.min_base <= q <= BTCZAR.max_base
        assert q * price >= BTCZAR.min_quote
