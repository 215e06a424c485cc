"""JSON out for the control API: the answer encoder (Decimal and times as strings, a Secret
never shows itself), :func:`json_response` and :func:`json_error` (the one error shape).
Server-sent events are framed in ``app_sse`` with the same hook.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

import msgspec
from aiohttp import web

from heliosd.core.config import Secret

# --------------------------------------------------------------------------- JSON out


def _to_json(value: Any) -> Any:
    """json.dumps fallback: Decimal and times as strings; a Secret never shows itself."""
    if isinstance(value, Secret):
        return "<hidden>"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, msgspec.Struct):  # an answer Struct inside an event (its fields)
        return msgspec.structs.asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# Answers: msgspec writes Structs, dicts, Decimals (as strings), enums (their values) and
# dataclasses itself; the hook covers the rest (a Secret never shows itself).
_ENCODER: Final = msgspec.json.Encoder(enc_hook=_to_json, decimal_format="string")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_ENCODER.encode(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_error(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The one error shape of the API."""
    body = {"error": code, "message": message, "details": dict(details or {})}
    return json_response(body, status, headers)
