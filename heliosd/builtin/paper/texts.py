"""What the paper venue says when it refuses: VALR's texts and codes, the customer order id
rule, and how numbers and ages read in those messages (see ``heliosd.builtin.paper``)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from typing import TypeVar

from heliosd.core.errors import ExchangeRejected
from heliosd.core.types import PairInfo

_E = TypeVar("_E", bound=Enum)

# VALR's own texts and codes (VALR's error codes), so a paper refusal reads like a live one.
INSUFFICIENT_BALANCE = "Insufficient Balance"  # -6
DUPLICATE_CUSTOMER_ID = "Duplicate customer order id's are not allowed"  # -11502
UNSUPPORTED_PAIR = "Unsupported Currency Pair"  # -21
PAIR_INACTIVE = "The given currency pair is not active"  # -32
INVALID_REQUEST = "Invalid Request, please check your request and try again"  # -11
INVALID_ORDER = "Invalid Order. "  # -1, trailing space included

# VALR accepts customerOrderIds of up to 50 characters of [0-9A-Za-z-]; paper refuses the
# same ids so that a bad id generator is caught in rehearsal, not on the first LIVE order.
_CUSTOMER_ID = re.compile(r"[0-9A-Za-z-]{1,50}")
_TENTH = Decimal("0.1")


def _parse_enum(enum: type[_E], value: object) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise ExchangeRejected(INVALID_REQUEST, venue_code=-11) from None


def _plain(value: Decimal) -> str:
    """Decimal as VALR prints it in messages: no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _seconds(age: timedelta) -> str:
    """An age in seconds to the tenth, rounded up so that an age over a limit never reads
    as equal to it (Decimal from whole microseconds: no float text like 30.000001)."""
    micros = (age.days * 86_400 + age.seconds) * 1_000_000 + age.microseconds
    return f"{(Decimal(micros) / 1_000_000).quantize(_TENTH, rounding=ROUND_CEILING)} s"


def _min_size(info: PairInfo) -> ExchangeRejected:
    # VALR's wording (its -12007) without its stray space before the full stop,
    # as the VALR client shows VALR's own answers (valr.parse.venue_text).
    return ExchangeRejected(
        f"Minimum order size not met. Minimum amount: {_plain(info.min_base)} {info.base}, "
        f"minimum total: {_plain(info.min_quote)} {info.quote}",
        venue_code=-12007,
    )


def _max_size(info: PairInfo) -> ExchangeRejected:
    # VALR documents no text for this; the simulator's (and so the client's) wording.
    return ExchangeRejected(
        f"Maximum order size exceeded. Maximum amount: {_plain(info.max_base)} {info.base}, "
        f"maximum total: {_plain(info.max_quote)} {info.quote}",
        venue_code=-11,
    )
