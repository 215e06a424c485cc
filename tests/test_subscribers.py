"""heliosd.notify.subscribers: what the event hub hands its subscribers.

``json_ready`` replaced ``json.loads(json.dumps(event, default=...))`` on the publish path
(after every fill); the property below holds it to that round trip for every shape an event
can carry. Delivery, drops and never blocking are in tests/test_notify.py."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.core.types import Mode, OrderState, Side
from heliosd.notify.outbox import _json_default
from heliosd.notify.subscribers import json_ready


class Level(enum.IntEnum):
    LOW = 1


LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.floats(allow_nan=False), st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(UTC)), st.timedeltas(max_value=timedelta(days=3)),
    st.sampled_from([Mode.LIVE, OrderState.FILLED, Side.SELL, Level.LOW]),
    st.frozensets(st.text(max_size=3), max_size=3),
)  # fmt: skip
KEYS = st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none(),
                 st.sampled_from([Mode.PAPER]))  # fmt: skip
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)


def round_trip(event: dict[Any, Any]) -> Any:
    return json.loads(json.dumps(event, default=_json_default))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_json_ready_is_the_json_round_trip_without_the_text(event: dict[Any, Any]) -> None:
    ready = json_ready(event)
    expected = round_trip(event)
    assert ready == expected
    assert json.dumps(ready, sort_keys=True) == json.dumps(expected, sort_keys=True)  # types


def test_a_fill_event_comes_out_as_plain_text_and_numbers() -> None:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    event = {"type": "fill", "mode": Mode.LIVE, "side": Side.BUY, "price": Decimal("1.10"),
             "quantity": Decimal("0.00010000"), "at": at, "ids": (1, 2)}  # fmt: skip
    ready = json_ready(event)
    assert ready == {"type": "fill", "mode": "LIVE", "side": "BUY", "price": "1.10",
                     "quantity": "0.00010000", "at": at.isoformat(), "ids": [1, 2]}  # fmt: skip
    assert type(ready["mode"]) is str and type(ready["side"]) is str  # not the enums
    assert ready is not event


def test_a_value_nothing_knows_becomes_its_text() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert json_ready({"x": Odd(), "nested": {"y": [Odd()]}}) == {
        "x": "odd",
        "nested": {"y": ["odd"]},
    }
