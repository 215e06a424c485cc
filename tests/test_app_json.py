"""heliosd.control.app_json: the answer and event encoders write what the API promises.

Decimals and times as text, enums as their values, a Secret never, and (since session 9)
msgspec Structs, such as the answer Structs of control/schema.py, inside an event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from heliosd.control.app_json import dumps
from heliosd.core.config import Secret
from heliosd.core.types import Mode


class Leg(msgspec.Struct):
    price: Decimal
    at: datetime


class Answer(msgspec.Struct):
    mode: Mode
    legs: list[Leg]
    key: Secret


def test_an_event_carrying_structs_is_written_as_their_fields() -> None:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    event = {"type": "order", "answer": Answer(Mode.LIVE, [Leg(Decimal("1.10"), at)],
                                               Secret("sk-live-do-not-print"))}  # fmt: skip
    text = dumps(event)
    assert "sk-live-do-not-print" not in text
    assert json.loads(text) == {
        "type": "order",
        "answer": {"mode": "LIVE", "legs": [{"price": "1.10", "at": at.isoformat()}],
                   "key": "<hidden>"},
    }  # fmt: skip


def test_what_it_cannot_write_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        dumps({"x": object()})
