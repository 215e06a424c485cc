"""The field types of the control API's bodies: the limits of a reason, a token and an
amount, the amount pattern and the annotated types that requests and answers share.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import Meta

# --------------------------------------------------------------------------- field types

MAX_REASON_CHARS: Final = 1000
MAX_TOKEN_CHARS: Final = 200
MAX_AMOUNT_CHARS: Final = 40
# An amount has at most 16 integer digits and 18 decimals and is not zero: beyond any real
# order, and refusing it here keeps absurd exponents out of the risk path.
MAX_INT_DIGITS: Final = 16
MAX_DECIMALS: Final = 18


def _positive_decimal_pattern() -> str:
    # No look-ahead (hypothesis and every JSON Schema engine read this): "not zero" is
    # spelled as "a non-zero digit before the point" or "the first non-zero decimal at k".
    whole = rf"0*[1-9][0-9]{{0,{MAX_INT_DIGITS - 1}}}(\.[0-9]{{1,{MAX_DECIMALS}}})?"
    fracs = "|".join(
        "0" * k + rf"[1-9][0-9]{{0,{MAX_DECIMALS - 1 - k}}}" for k in range(MAX_DECIMALS)
    )
    return rf"^({whole}|0*\.({fracs}))$"


AMOUNT_PATTERN: Final = _positive_decimal_pattern()

Reason = Annotated[str, Meta(max_length=MAX_REASON_CHARS, description="Why, for the audit.")]
RequiredReasonText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        pattern=r"\S",
        description="Why, for the audit; required and not blank.",
    ),
]
ModeName = Literal["PAPER", "LIVE"]
TradingStateName = Annotated[
    Literal["ACTIVE", "REDUCING", "HALTED"],
    Meta(
        description="ACTIVE: the limits apply. REDUCING: only orders that reduce a holding"
        " pass. HALTED: nothing but cancels."
    ),
]
Epoch = Annotated[int, Meta(description="+1 on every stop, halt, resume and mode switch.")]
DecimalText = Annotated[str, Meta(description="A decimal as a string.", examples=["0.01"])]
Time = Annotated[str, Meta(description="ISO 8601, UTC.")]
_AMOUNT_FORMS: Final = [
    {
        "type": "string",
        "pattern": AMOUNT_PATTERN,
        "maxLength": MAX_AMOUNT_CHARS,
        "examples": ["0.01"],
    },
    {"type": "number", "minimum": 10**-MAX_DECIMALS, "exclusiveMaximum": 10**MAX_INT_DIGITS},
]
_AMOUNT_TEXT: Final = (
    "A positive decimal string (JSON numbers accepted and read exactly), at most"
    f" {MAX_INT_DIGITS} integer digits and {MAX_DECIMALS} decimals."
)
AMOUNT_META: Final = Meta(extra_json_schema={"anyOf": _AMOUNT_FORMS, "description": _AMOUNT_TEXT})
PRICE_META: Final = Meta(
    extra_json_schema={
        "anyOf": [*_AMOUNT_FORMS, {"type": "null"}],
        "description": _AMOUNT_TEXT + " Required for LIMIT; null or absent for MARKET.",
    }
)
