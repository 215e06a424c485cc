"""Request decoding and validation for the control API: bodies into the Structs of
``heliosd.control.schema``, refusals naming ``details.field``, query parameters, amounts.

Who the caller is comes from the listener (``heliosd.control.server``), which stores the
Actor under :data:`ACTOR_KEY` before any handler runs. A request that reaches a handler
without one is refused (fail closed): the app is only ever served through ControlServer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from heliosd.control import schema as sc
from heliosd.control.app_errors import BadRequest, NoIdentity
from heliosd.control.backend import Actor, CloseRequest, OrderRequest
from heliosd.core.types import Mode, OrderType, Side

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

ACTOR_KEY: Final = web.RequestKey("heliosd_actor", Actor)

# --------------------------------------------------------------------------- validation

S = TypeVar("S", bound=sc.Request)
_DECODERS: Final[dict[type[sc.Request], msgspec.json.Decoder[Any]]] = {
    kind: msgspec.json.Decoder(kind) for kind in sc.REQUESTS
}
_ANY: Final = msgspec.json.Decoder()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


async def read_body(request: web.Request, kind: type[S], *, required: bool = False) -> S:
    """The request body decoded into ``kind`` (its fields, types and constraints).

    An empty body is ``{}`` unless ``required``. Oversized bodies raise 413 (aiohttp's
    ``client_max_size``), everything else malformed a :class:`BadRequest` naming the field.
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body is required (a JSON object)", field="body")
        raw = b"{}"
    try:
        return _DECODERS[kind].decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise refusal(raw, kind, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", field="body") from None


# msgspec's messages, e.g. "Expected `str`, got `int` - at `$.reason`".
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`(?P<rest>.*?), got `(?P<got>[^`]*)`$")
_CONSTRAINT = re.compile(r"^Expected `str` (?P<rule>.*)$")
_TYPE_WORDS: Final = {
    "str": "a string",
    "str | null": "a string or null",
    "object": "a JSON object",
    "int": "an integer",
    "bool": "true or false",
}
# What a field that fails its pattern must be, in words (the pattern itself is unreadable).
_PATTERN_WORDS: Final = {
    "mode": "PAPER or LIVE",
    "side": "BUY or SELL",
    "type": "MARKET or LIMIT",
    "pair": 'a pair symbol like "BTCZAR"',
}


def refusal(raw: bytes, kind: type[sc.Request], message: str) -> BadRequest:
    """A msgspec ValidationError as a BadRequest: a sentence and ``details.field``.

    Only on the refusal path: the body is parsed again, generically, to quote the value."""
    at = _AT.match(message)
    what, path = (at["what"], at["path"] or "") if at else (message, "")
    field = path.lstrip(".").split(".", 1)[0].split("[", 1)[0]
    try:
        body = _ANY.decode(raw)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        if field == "":
            return BadRequest(
                f"request body must be a JSON object, got {_type_name(body)}", field="body"
            )
        body = {}
    if m := _UNKNOWN.match(what):
        allowed = list(kind.__struct_fields__)
        unknown = sorted(set(body) - set(allowed)) or [m["name"]]
        names = ", ".join(repr(u) for u in unknown)
        return BadRequest(
            f"unknown field{'s' if len(unknown) > 1 else ''} {names}",
            field=unknown[0],
            fields=unknown,
            allowed=allowed,
        )
    if m := _MISSING.match(what):
        if m["name"] == "reason":  # the routes that need one: halt and resume
            return BadRequest("reason is required and must not be blank", field="reason")
        return BadRequest(f"missing required field {m['name']}", field=m["name"])
    value = body.get(field)
    if m := _EXPECTED.match(what):
        if field in _PATTERN_WORDS and m["want"] == "str":
            return BadRequest(
                f"{field} must be {_PATTERN_WORDS[field]}, got {_type_name(value)}", field=field
            )
        want = _TYPE_WORDS.get(m["want"], m["want"])
        return BadRequest(f"{field} must be {want}, got {_type_name(value)}", field=field)
    if m := _CONSTRAINT.match(what):
        rule = m["rule"]
        if rule.startswith("matching regex") and field == "reason":
            return BadRequest("reason is required and must not be blank", field=field)
        if rule.startswith("matching regex") and field in _PATTERN_WORDS:
            return BadRequest(
                f"{field} must be {_PATTERN_WORDS[field]}, got {value!r}", field=field
            )
        if rule.startswith("of length <="):
            limit = rule.rsplit(" ", 1)[-1]
            return BadRequest(f"{field} must be at most {limit} characters", field=field)
        if rule.startswith("of length >="):
            return BadRequest(f"{field} must not be empty", field=field)
    return BadRequest(f"{field or 'body'}: {what}", field=field or "body")


def parse_mode(text: str) -> Mode:
    return Mode(text.upper())


_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_AMOUNT = re.compile(sc.AMOUNT_PATTERN)


def parse_amount(name: str, raw: msgspec.Raw) -> Decimal:
    """A positive decimal from the JSON text of a string like "0.01" or a number (exact).

    The rules are the ones the document states (``schema.AMOUNT_PATTERN`` for strings, a
    range for numbers); the checks below only choose the sentence."""
    text = bytes(raw).decode()
    if text.startswith('"'):
        value = msgspec.json.decode(text, type=str)
        if len(value) > sc.MAX_AMOUNT_CHARS or not _DECIMAL_TEXT.fullmatch(value):
            raise BadRequest(
                f'{name} must be a positive decimal string like "0.01", got {value!r}',
                field=name,
            )
        if Decimal(value) == 0:
            raise BadRequest(f"{name} must be positive, got {value}", field=name)
        if not _AMOUNT.fullmatch(value):
            raise BadRequest(f"{name} is out of range: {value}", field=name)
        return Decimal(value)
    if not _NUMBER_TEXT.fullmatch(text):
        got = _type_name(_ANY.decode(text))
        raise BadRequest(f"{name} must be a positive decimal string, got {got}", field=name)
    amount = Decimal(text)
    if amount <= 0:
        raise BadRequest(f"{name} must be positive, got {text}", field=name)
    # A number's digits are bounded by the body limit only (a schema cannot bound them);
    # the first arithmetic on it rounds to the context's precision.
    if not _MIN_NUMBER <= amount < _MAX_NUMBER:
        raise BadRequest(f"{name} is out of range: {text}", field=name)
    return amount


_MIN_NUMBER: Final = Decimal(10) ** -sc.MAX_DECIMALS
_MAX_NUMBER: Final = Decimal(10) ** sc.MAX_INT_DIGITS


def parse_order(body: sc.OrderRequestBody) -> OrderRequest:
    """The order a decoded body asks for; the one cross-field rule lives here."""
    order_type = OrderType(body.type.upper())
    quantity = parse_amount("quantity", body.quantity)
    price_raw = body.price
    has_price = isinstance(price_raw, msgspec.Raw) and bytes(price_raw) != b"null"
    price: Decimal | None = None
    if order_type is OrderType.LIMIT:
        if not has_price:
            raise BadRequest("price is required for a LIMIT order", field="price")
        assert isinstance(price_raw, msgspec.Raw)
        price = parse_amount("price", price_raw)
    elif has_price:
        raise BadRequest("price is not allowed on a MARKET order", field="price")
    return OrderRequest(
        pair=body.pair.upper(),
        side=Side(body.side.upper()),
        type=order_type,
        quantity=quantity,
        price=price,
        reason=body.reason,
    )


def parse_close(body: sc.CloseRequestBody) -> CloseRequest:
    """The close a decoded body asks for: one pair, or every holding (``all``: true)."""
    has_pair = isinstance(body.pair, str)
    if has_pair and body.all:
        raise BadRequest("give either pair or all: true, not both", field="all")
    if not has_pair and not body.all:
        raise BadRequest("pair is required (or all: true to close every holding)", field="pair")
    pair = body.pair.upper() if isinstance(body.pair, str) else None
    return CloseRequest(mode=parse_mode(body.mode), pair=pair, reason=body.reason)


def query(request: web.Request, allowed: tuple[str, ...]) -> Mapping[str, str]:
    """The query string, refusing names the route does not take (a typo fails loudly)."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {', '.join(repr(u) for u in unknown)}",
            fields=unknown,
            allowed=list(allowed),
        )
    return request.query


def parse_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(
            f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}", field="limit"
        )
    return int(text)


_FLAGS: Final = {"1": True, "true": True, "0": False, "false": False}


def parse_flag(params: Mapping[str, str], name: str) -> bool:
    """A yes/no query parameter: 1/true or 0/false (absent: false)."""
    text = params.get(name)
    if text is None:
        return False
    if text.lower() not in _FLAGS:
        raise BadRequest(f"{name} must be 1, 0, true or false, got {text!r}", field=name)
    return _FLAGS[text.lower()]


def parse_since(text: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 instant (``Z`` or an offset; none means UTC), as UTC."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"since must be an ISO 8601 time like 2025-01-31T08:00:00Z, got {text!r}",
            field="since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC: the range's ends
        return (
            datetime.max.replace(tzinfo=UTC) if when.year > 1 else datetime.min.replace(tzinfo=UTC)
        )


def parse_order_id(request: web.Request) -> int:
    text = request.match_info["id"]
    # isdecimal() alone accepts non-ASCII digits; keep ids to ASCII and SQLite's range.
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise BadRequest(f"order id must be a positive integer, got {text!r}", field="id")
    return int(text)


def actor_of(request: web.Request) -> Actor:
    actor = request.get(ACTOR_KEY)
    if not isinstance(actor, Actor):
        raise NoIdentity
    return actor
