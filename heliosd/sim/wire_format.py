"""Values as VALR writes them: plain decimal text, ISO-8601 UTC times, compact JSON.

Also each currency's spec (decimal places, names) as the wire shapes and the matching
engine read it. The shapes built from these are ``wire_public``'s, ``wire_account``'s and
``wire_orders``'s (all re-exported by ``wire``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from heliosd.sim.config import CURRENCIES, CurrencySpec

Json = dict[str, Any]

# One serialisation per message, compact like VALR's own frames. A shared encoder avoids
# json.dumps building a new JSONEncoder per call (it does whenever options are passed),
# which dominated inject_fills' profile.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def dec(value: Decimal) -> str:
    """Plain decimal text: no exponent, no trailing zeros ("0.0001", "1000000", "0")."""
    if not value:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_last_iso: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "")


def iso(ts: datetime) -> str:
    """``2025-07-17T08:36:04.866Z`` (always UTC, milliseconds)."""
    global _last_iso
    # Bursts stamp many objects with the same instant; strftime is the costly part.
    if _last_iso[0] == ts:
        return _last_iso[1]
    utc = ts.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    _last_iso = (ts, text)
    return text


def iso_ns(ns: int) -> str:
    """``/v1/public/time`` carries nanoseconds: ``2025-06-17T13:02:41.280178906Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    ts = datetime.fromtimestamp(seconds, UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{frac:09d}Z"


def currency_spec(code: str) -> CurrencySpec:
    return CURRENCIES.get(code) or CurrencySpec(code, code, code, 8)
