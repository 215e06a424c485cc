"""heliosd.control.app_json and app_sse: the answer and event encoders write what the API
promises.

Decimals and times as text, enums as their values, a Secret never, and (since session 9)
msgspec Structs, such as the answer Structs of control/schema.py, inside an event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from heliosd.control.app_sse import format_event
from heliosd.core.config import Secret
from heliosd.core.types import Mode


class Leg(msgspec.Struct):
    price: Decimal
    at: datetime


class Answer(msgspec.Struct):
    mode: Mode
    legs: list[Leg]
    key: Secret


def data_of(frame: bytes) -> Any:
    head, data, blank = frame.decode().split("\n", 2)
    assert head.startswith("event: ") and data.startswith("data: ") and blank == "\n"
    return json.loads(data.removeprefix("data: "))


def test_an_event_carrying_structs_is_written_as_their_fields() -> None:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    event = {"type": "order", "answer": Answer(Mode.LIVE, [Leg(Decimal("1.10"), at)],
                                               Secret("sk-live-do-not-print"))}  # fmt: skip
    frame = format_event(event)
    assert b"sk-live-do-not-print" not in frame
    body = data_of(frame)
    leg = body["answer"]["legs"][0]
    assert datetime.fromisoformat(leg.pop("at")) == at  # RFC 3339 text of the same instant
    assert body == {
        "type": "order",
        "answer": {"mode": "LIVE", "legs": [{"price": "1.10"}], "key": "<hidden>"},
    }


def test_an_event_is_one_line_of_json_whatever_its_text() -> None:
    # A newline inside a value must not end the data line (SSE frames on blank lines).
    event = {"type": "notification", "body": "line one\n\nline two\r\u2028", "n": 1.5}
    assert data_of(format_event(event)) == event


def test_a_float_that_is_not_a_number_is_null_which_json_parse_reads() -> None:
    assert data_of(format_event({"type": "x", "age": float("nan")}))["age"] is None


def test_an_unknown_type_is_named_not_written_as_garbage() -> None:
    # The hub's events are plain already (json_ready); another backend's stream may not be.
    assert data_of(format_event({"type": "x", "v": Decimal("1E-7")}))["v"] == "1E-7"
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        format_event({"type": "x", "v": object()})
