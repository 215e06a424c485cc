"""The control API's bodies as msgspec Structs: what requests decode into, what answers hold.

Invariant: the OpenAPI document (``heliosd.control.openapi``) is generated from these types
and the request decoder (``heliosd.control.app_requests``) decodes with the same types, so
what the document allows is what the API accepts. Request Structs refuse unknown fields; every
constraint a request field has is a ``Meta`` here (the document shows it) and the one rule a
schema cannot say (a LIMIT order needs a price, a MARKET order must not have one; a close
names a pair or ``all``, not both) is checked by
:func:`heliosd.control.app_requests.parse_order` /
:func:`heliosd.control.app_requests.parse_close` and stated in :data:`EXTRA_SCHEMA`.

Answers are in ``schema_answers``, field types in ``schema_fields``; every name of both is
importable from here too (openapi.py and the tests look Structs up here).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from heliosd.control.schema_answers import Answer as Answer
from heliosd.control.schema_answers import Audit as Audit
from heliosd.control.schema_answers import Backup as Backup
from heliosd.control.schema_answers import Cancelled as Cancelled
from heliosd.control.schema_answers import Closed as Closed
from heliosd.control.schema_answers import CloseLeft as CloseLeft
from heliosd.control.schema_answers import ClosePlan as ClosePlan
from heliosd.control.schema_answers import CloseSell as CloseSell
from heliosd.control.schema_answers import Doctor as Doctor
from heliosd.control.schema_answers import DoctorCheck as DoctorCheck
from heliosd.control.schema_answers import Document as Document
from heliosd.control.schema_answers import EmergencyStop as EmergencyStop
from heliosd.control.schema_answers import Engine as Engine
from heliosd.control.schema_answers import Equity as Equity
from heliosd.control.schema_answers import EquityPoint as EquityPoint
from heliosd.control.schema_answers import Error as Error
from heliosd.control.schema_answers import Fill as Fill
from heliosd.control.schema_answers import Fills as Fills
from heliosd.control.schema_answers import Gate as Gate
from heliosd.control.schema_answers import Halt as Halt
from heliosd.control.schema_answers import Health as Health
from heliosd.control.schema_answers import History as History
from heliosd.control.schema_answers import HistoryRow as HistoryRow
from heliosd.control.schema_answers import Mode as Mode
from heliosd.control.schema_answers import ModeSwitched as ModeSwitched
from heliosd.control.schema_answers import Order as Order
from heliosd.control.schema_answers import OrderAnswer as OrderAnswer
from heliosd.control.schema_answers import Orders as Orders
from heliosd.control.schema_answers import OrderStateName as OrderStateName
from heliosd.control.schema_answers import Plugins as Plugins
from heliosd.control.schema_answers import Pnl as Pnl
from heliosd.control.schema_answers import Positions as Positions
from heliosd.control.schema_answers import RecentFill as RecentFill
from heliosd.control.schema_answers import RecentFills as RecentFills
from heliosd.control.schema_answers import RemainingOrder as RemainingOrder
from heliosd.control.schema_answers import Resumed as Resumed
from heliosd.control.schema_answers import Risk as Risk
from heliosd.control.schema_answers import Verdict as Verdict
from heliosd.control.schema_fields import AMOUNT_META as AMOUNT_META
from heliosd.control.schema_fields import AMOUNT_PATTERN as AMOUNT_PATTERN
from heliosd.control.schema_fields import MAX_AMOUNT_CHARS as MAX_AMOUNT_CHARS
from heliosd.control.schema_fields import MAX_DECIMALS as MAX_DECIMALS
from heliosd.control.schema_fields import MAX_INT_DIGITS as MAX_INT_DIGITS
from heliosd.control.schema_fields import MAX_REASON_CHARS as MAX_REASON_CHARS
from heliosd.control.schema_fields import MAX_TOKEN_CHARS as MAX_TOKEN_CHARS
from heliosd.control.schema_fields import PRICE_META as PRICE_META
from heliosd.control.schema_fields import DecimalText as DecimalText
from heliosd.control.schema_fields import Epoch as Epoch
from heliosd.control.schema_fields import ModeName as ModeName
from heliosd.control.schema_fields import Reason as Reason
from heliosd.control.schema_fields import RequiredReasonText as RequiredReasonText
from heliosd.control.schema_fields import Time as Time
from heliosd.control.schema_fields import TradingStateName as TradingStateName

# --------------------------------------------------------------------------- requests


class Request(Struct, forbid_unknown_fields=True):
    """Base of every request body: unknown fields are refused."""


class ModeRequest(Request):
    mode: Annotated[
        str, Meta(pattern="^([Pp][Aa][Pp][Ee][Rr]|[Ll][Ii][Vv][Ee])$", description="PAPER or"
                  " LIVE, case-insensitive.")
    ]  # fmt: skip
    confirm_token: (
        Annotated[
            str,
            Meta(
                max_length=MAX_TOKEN_CHARS,
                description="From the confirmation_required answer; single use, 60 s.",
            ),
        ]
        | None
    ) = None
    reason: Reason = ""


class ReasonRequest(Request):
    reason: Reason = ""


class RequiredReason(Request):
    reason: RequiredReasonText


class Empty(Request):
    pass


class OrderRequestBody(Request):
    pair: Annotated[str, Meta(pattern="^[A-Za-z0-9]{2,32}$", examples=["BTCZAR"])]
    side: Annotated[str, Meta(pattern="^([Bb][Uu][Yy]|[Ss][Ee][Ll][Ll])$",
                              description="BUY or SELL, case-insensitive.")]  # fmt: skip
    type: Annotated[str, Meta(pattern="^([Mm][Aa][Rr][Kk][Ee][Tt]|[Ll][Ii][Mm][Ii][Tt])$",
                              description="MARKET or LIMIT, case-insensitive.")]  # fmt: skip
    # Raw keeps a JSON number's text, so 0.1 is Decimal("0.1"), never a binary float.
    quantity: Annotated[msgspec.Raw, AMOUNT_META]
    # Required for LIMIT, not allowed for MARKET (null or absent): parse_order says so.
    price: Annotated[msgspec.Raw | msgspec.UnsetType, PRICE_META] = msgspec.UNSET
    reason: Reason = ""


class CloseRequestBody(Request):
    """Close positions on one account: one pair, or every holding (``all``: true)."""

    mode: Annotated[
        str, Meta(pattern="^([Pp][Aa][Pp][Ee][Rr]|[Ll][Ii][Vv][Ee])$",
                  description="The account whose holdings are sold (not the current mode):"
                  " PAPER or LIVE, case-insensitive.")
    ]  # fmt: skip
    pair: (
        Annotated[str, Meta(pattern="^[A-Za-z0-9]{2,32}$", examples=["BTCZAR"],
                            description="Sell this pair's base asset. Give pair or all: true,"
                            " not both.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET  # fmt: skip
    all: Annotated[bool, Meta(description="true: sell every holding that a known pair sells.")] = (
        False
    )
    reason: Reason = ""
    confirm_token: (
        Annotated[
            str,
            Meta(
                max_length=MAX_TOKEN_CHARS,
                description="From the confirmation_required answer to this same body; single"
                " use, 60 s.",
            ),
        ]
        | None
    ) = None


# The one rule of an order body a field's own schema cannot say, in the body's schema:
# parse_order enforces the same (a LIMIT order needs a price, a MARKET order has none).
EXTRA_SCHEMA: Final[dict[str, dict[str, Any]]] = {
    "OrderRequestBody": {
        "if": {"properties": {"type": {"pattern": "^[Ll][Ii][Mm][Ii][Tt]$"}}},
        "then": {"required": ["price"], "properties": {"price": {"not": {"type": "null"}}}},
        "else": {"properties": {"price": {"type": "null"}}},
    },
    # A close names one pair or every holding; close_request in the app says so in words.
    "CloseRequestBody": {
        "oneOf": [
            {"required": ["pair"], "properties": {"all": {"const": False}}},
            {
                "required": ["all"],
                "properties": {"all": {"const": True}},
                "not": {"required": ["pair"]},
            },
        ]
    },
}

REQUESTS: Final = (
    ModeRequest, ReasonRequest, RequiredReason, Empty, OrderRequestBody, CloseRequestBody,
)  # fmt: skip
ANSWERS: Final = (
    Error, Mode, ModeSwitched, Gate, History, Audit, EmergencyStop, Halt, Resumed, Order,
    OrderAnswer, Cancelled, Orders, Fills, RecentFills, Engine, Positions, Pnl, Risk, Plugins,
    Health,
    Backup, Document, CloseSell, CloseLeft, ClosePlan, Closed, DoctorCheck, Doctor,
    EquityPoint, Equity,
)  # fmt: skip
