"""Verdict's own constructor and PairInfo's cached quantum behave as the plain dataclass did.

Both were made cheaper for the order path (types.py); drop-in rules build Verdicts with
keywords, store them, compare them and copy them, so every public behaviour is pinned here.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal, InvalidOperation

import pytest

from heliosd.core.types import PairInfo, Verdict, VerdictAction

D = Decimal
CAP = VerdictAction.CAP
ACCEPT = VerdictAction.ACCEPT
REJECT = VerdictAction.REJECT


def test_keyword_positional_and_classmethod_construction_agree() -> None:
    by_keyword = Verdict(
        rule="r", action=CAP, reason="too big", quantity=D("0.5"), details={"allowed": "0.5"}
    )
    by_position = Verdict("r", CAP, "too big", D("0.5"), {"allowed": "0.5"})
    by_classmethod = Verdict.cap("r", D("0.5"), "too big", {"allowed": "0.5"})
    assert by_keyword == by_position == by_classmethod
    assert (by_keyword.rule, by_keyword.action, by_keyword.reason) == ("r", CAP, "too big")
    assert by_keyword.quantity == D("0.5")
    assert by_keyword.details == {"allowed": "0.5"}
    assert repr(by_classmethod) == (
        "Verdict(rule='r', action=<VerdictAction.CAP: 'cap'>, reason='too big', "
        "quantity=Decimal('0.5'), details={'allowed': '0.5'})"
    )
    assert Verdict.reject("r", "no") == Verdict("r", REJECT, "no", None, {})
    assert Verdict.accept("r") == Verdict(rule="r", action=ACCEPT)
    assert Verdict.accept("r") != Verdict.accept("s")
    assert Verdict.accept("r") != Verdict.reject("r", "")


def test_defaults_give_each_verdict_its_own_empty_details() -> None:
    first, second = Verdict("r", ACCEPT), Verdict("r", ACCEPT)
    assert first.reason == "" and first.quantity is None
    assert type(first.details) is dict and first.details == {}
    assert first.details is not second.details
    assert Verdict.cap("r", D(1), "x").details == {}
    # An explicit value is kept as given, None included, as the generated __init__ did.
    assert Verdict("r", ACCEPT, details=None).details is None  # type: ignore[arg-type]


def test_verdict_is_frozen_and_copies_like_a_dataclass() -> None:
    v = Verdict.cap("r", D("0.25"), "capped", {"k": "v"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.reason = "changed"  # type: ignore[misc]
    # No new attributes either (3.11's frozen slots dataclasses raise TypeError here, from
    # the generated __setattr__'s super(); the point is that it raises).
    with pytest.raises((AttributeError, TypeError)):
        v.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(v, "__dict__")
    assert dataclasses.is_dataclass(v)
    assert [f.name for f in dataclasses.fields(v)] == [
        "rule", "action", "reason", "quantity", "details",
    ]  # fmt: skip
    replaced = dataclasses.replace(v, reason="other")
    assert replaced.reason == "other" and replaced.quantity == D("0.25") and v.reason == "capped"
    assert pickle.loads(pickle.dumps(v)) == v
    assert copy.copy(v) == v == copy.deepcopy(v)
    match v:
        case Verdict(rule, action, reason):
            assert (rule, action, reason) == ("r", CAP, "capped")
    # Hashing follows the fields, as before: a dict of details is unhashable.
    with pytest.raises(TypeError):
        hash(v)


def test_missing_or_unknown_arguments_are_still_errors() -> None:
    with pytest.raises(TypeError, match="action"):
        Verdict("r")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="bogus"):
        Verdict("r", ACCEPT, bogus=1)  # type: ignore[call-arg]


def test_subclass_classmethods_build_the_subclass() -> None:
    class Tagged(Verdict):
        pass

    v = Tagged.cap("r", D(1), "x")
    assert type(v) is Tagged and v.quantity == D(1)
    assert v != Verdict.cap("r", D(1), "x")  # dataclass equality: same class only


def test_as_json_unchanged() -> None:
    assert Verdict.cap("r", D("0.10"), "c", {"a": "1"}).as_json() == {
        "rule": "r", "action": "cap", "reason": "c", "quantity": "0.10", "details": {"a": "1"},
    }  # fmt: skip
    assert Verdict.accept("r", "ok").as_json() == {"rule": "r", "action": "accept", "reason": "ok"}


def pair(decimals: int) -> PairInfo:
    return PairInfo("XZAR", "X", "ZAR", D(0), D(0), D(0), D(0), D(1), decimals)


@pytest.mark.parametrize("decimals", [0, 1, 2, 6, 8, 18, 19, 30, -2])
@pytest.mark.parametrize(
    "quantity", ["0.123456789123456789123", "7", "1234.99999999999999999999", "0", "1E+3", "-0.5"]
)
def test_round_quantity_equals_truncation_to_base_decimals(decimals: int, quantity: str) -> None:
    q = D(quantity)

    def outcome(fn: Callable[[], Decimal]) -> object:
        try:
            got = fn()
        except InvalidOperation as exc:  # more digits than the context's precision holds
            return type(exc)
        # Same value *and* same representation (the text is stored and sent to the venue).
        return str(got), got.as_tuple()

    expected = outcome(lambda: q.quantize(D(1).scaleb(-decimals), rounding=ROUND_DOWN))
    assert outcome(lambda: pair(decimals).round_quantity(q)) == expected


def test_round_quantity_never_rounds_up() -> None:
    assert str(pair(8).round_quantity(D("0.123456789"))) == "0.12345678"
    assert str(pair(0).round_quantity(D("2.9999"))) == "2"
    assert str(pair(2).round_quantity(D("5"))) == "5.00"
