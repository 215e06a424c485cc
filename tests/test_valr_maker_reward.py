"""VALR maker rebates (``makerReward``/``makerRewardCurrency``: a field VALR's public docs
show with low confidence, docs/operations.md "Maker rebates") parsed as a negative fee, on
the simulator's fixtures and every variation the parser must survive: reward alone, beside
a fee, absent, "0", garbled."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.builtin.valr import parse
from heliosd.core.types import Side

FIXTURES = Path(__file__).parent / "fixtures" / "valr"
D = Decimal


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def stream_trade(**changes: Any) -> dict[str, Any]:
    """The reward-only NEW_ACCOUNT_TRADE fixture's data, with ``changes`` (None: removed)."""
    data: dict[str, Any] = dict(load("ws_account_new_account_trade_maker_reward")["data"])
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_the_fixtures_parse_to_a_negative_fee_in_the_reward_currency() -> None:
    reward = parse.fill(load("ws_account_new_account_trade_maker_reward")["data"], lenient=True)
    assert (reward.side, reward.fee, reward.fee_currency) == (Side.BUY, D("-1.96"), "ZAR")
    both = parse.fill(load("ws_account_new_account_trade_maker_reward_both")["data"])
    assert (both.fee, both.fee_currency) == (D("-1.94"), "ZAR")
    rows = [parse.fill(r) for r in load("rest_account_tradehistory_maker_reward")]
    assert [(f.fee, f.fee_currency) for f in rows] == [(D("-1.94"), "ZAR"), (D("-1.96"), "ZAR")]
    plain = parse.fill(load("ws_account_new_account_trade")["data"])  # no reward: as before
    assert (plain.fee, plain.fee_currency) == (D(0), "ZAR")


@pytest.mark.parametrize(
    ("changes", "fee", "currency"),
    [
        ({"makerReward": None, "makerRewardCurrency": None}, D(0), ""),  # neither: no fee
        ({"makerReward": "0", "makerRewardCurrency": None}, D(0), ""),  # "0": no rebate
        ({"makerReward": "", "fee": "0.5", "feeCurrency": "ZAR"}, D("0.5"), "ZAR"),
        ({"makerReward": "0", "fee": "0.5", "feeCurrency": "ZAR"}, D("0.5"), "ZAR"),
        ({"fee": "0", "feeCurrency": "BTC"}, D("-1.96"), "ZAR"),  # a zero fee elsewhere
        ({"fee": "0.5", "feeCurrency": "ZAR"}, D("-1.46"), "ZAR"),  # both: the net
        ({"makerReward": "0.00000123", "makerRewardCurrency": "BTC"}, D("-0.00000123"), "BTC"),
        ({"makerReward": 2}, D(-2), "ZAR"),  # a JSON number is read like its text
    ],
)
def test_reward_fee_combinations(changes: dict[str, Any], fee: Decimal, currency: str) -> None:
    got = parse.fill(stream_trade(**changes), lenient=True)
    assert (got.fee, got.fee_currency) == (fee, currency)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"makerReward": "0.0I"}, "makerReward is not a decimal number"),
        ({"makerReward": "NaN"}, "makerReward is not finite"),
        ({"makerReward": True}, "makerReward is missing or not a number"),
        ({"makerReward": "-1.96"}, "makerReward is negative"),
        ({"makerRewardCurrency": None}, "makerRewardCurrency is missing"),
        ({"makerRewardCurrency": ""}, "makerRewardCurrency is missing"),
        ({"fee": "0.5", "feeCurrency": "BTC"}, "fee and makerReward are in different currencies"),
    ],
)
def test_a_reward_that_cannot_be_read_is_an_error_naming_it(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(parse.ParseError, match=reason) as info:
        parse.fill(stream_trade(**changes), lenient=True)
    assert "fixture-rebate" not in str(info.value)  # names the field, never the payload


def test_comma_forms_of_the_stream_are_read_in_a_reward_too_but_not_on_rest() -> None:
    trade = stream_trade(makerReward="1,96")
    assert parse.fill(trade, lenient=True).fee == D("-1.96")
    with pytest.raises(parse.ParseError, match="makerReward"):
        parse.fill(trade)
