"""The control API: aiohttp routes, request validation, JSON errors and error mapping.

Contract: the error table of docs/internals.md and the bodies of
``heliosd.control.schema`` (requests decode into its Structs, so the OpenAPI document
generated from them says exactly what is accepted). Every answer is JSON; every error is
``{"error": code, "message": sentence, "details": {...}}`` and never carries a traceback or
a secret; a refused field is ``details.field``. The app talks only to a
:class:`~heliosd.control.backend.ControlBackend`: it validates the request, calls exactly
one backend method with the caller's :class:`~heliosd.control.backend.Actor`, and
serialises the answer.

Who the caller is comes from the listener (``heliosd.control.server``), which stores the
Actor under :data:`ACTOR_KEY` before any handler runs. A request that reaches a handler
without one is refused (fail closed): the app is only ever served through ControlServer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from heliosd import __version__
from heliosd.control import schema as sc
from heliosd.control.backend import JSON, Actor, CloseRequest, ControlBackend, OrderRequest
from heliosd.control.openapi import build_document
from heliosd.core.config import Secret, Settings
from heliosd.core.errors import (
    AuthError,
    ConfirmationRequired,
    ExchangeRejected,
    GateRejected,
    HaltedError,
    HeliosError,
    InvalidConfirmToken,
    ModeIntegrityError,
    NotFoundError,
    OutcomeUnknownError,
    PermitRevoked,
    RiskRejected,
    StateChanged,
    TransientError,
)
from heliosd.core.types import Mode, OrderType, Side

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
SSE_HEARTBEAT_S: Final = 15.0
# How often a quiet event stream looks whether its reader is still there.
SSE_LEFT_CHECK_S: Final = 1.0
# Events queued for one slow SSE reader before we drop it rather than grow without bound.
SSE_BACKLOG: Final = 10_000
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

ACTOR_KEY: Final = web.RequestKey("heliosd_actor", Actor)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    """One line of JSON, for server-sent events (times as ``isoformat()``)."""
    return json.dumps(value, default=_to_json, ensure_ascii=False, separators=(",", ":"))


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


# --------------------------------------------------------------------------- errors in


class BadRequest(Exception):
    """A request the API refuses before calling the backend (400, ``bad_request``)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NoIdentity(Exception):
    """A request without an Actor: the app was served without ControlServer."""


# (exception type, HTTP status, error code), first match wins: subclasses before bases.
ERROR_MAP: Final[tuple[tuple[type[HeliosError], int, str], ...]] = (
    (GateRejected, 409, "gate_rejected"),
    (ConfirmationRequired, 409, "confirmation_required"),
    (InvalidConfirmToken, 409, "invalid_confirm_token"),
    (ModeIntegrityError, 409, "mode_integrity"),
    (StateChanged, 409, "state_changed"),
    (PermitRevoked, 409, "permit_revoked"),
    (RiskRejected, 422, "risk_rejected"),
    (ExchangeRejected, 422, "exchange_rejected"),
    (HaltedError, 409, "halted"),
    (NotFoundError, 404, "not_found"),
    (AuthError, 502, "exchange_auth"),
    (OutcomeUnknownError, 503, "exchange_unavailable"),
    (TransientError, 503, "exchange_unavailable"),
)

_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _helios_error_response(exc: HeliosError, request: web.Request) -> web.Response:
    for kind, status, code in ERROR_MAP:
        if isinstance(exc, kind):
            headers: dict[str, str] = {}
            details = dict(exc.details)
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                details.setdefault("retry_after", exc.retry_after)
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return json_error(status, code, exc.message, details, headers)
    # A HeliosError the table does not name (ConfigError, ...) is still a bug here.
    return _internal(request, exc)


def _internal(request: web.Request, exc: BaseException) -> web.Response:
    # The traceback goes to the log only; the caller learns nothing about internals.
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "internal", "internal error; see the daemon log")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn everything a handler raises into the JSON error shape."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, "bad_request", exc.message, exc.details)
    except NoIdentity:
        return json_error(403, "forbidden", "the caller could not be identified")
    except HeliosError as exc:
        return _helios_error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = {
            404: f"no such route: {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
            413: f"request body too large (limit {MAX_BODY_BYTES} bytes)",
        }.get(exc.status, exc.reason)
        details: dict[str, Any] = {}
        if exc.status == 405 and headers:
            details["allowed"] = sorted(headers["Allow"].split(","))
        return json_error(exc.status, code, message, details, headers)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _internal(request, exc)


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


# --------------------------------------------------------------------------- handlers


_END: Final = object()
_OVERFLOW: Final = object()
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def format_event(event: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>\\ndata: <json>\\n\\n`` (json is one line)."""
    kind = str(event.get("type") or event.get("kind") or "message")
    if not _EVENT_TYPE.fullmatch(kind):
        kind = "message"
    return f"event: {kind}\ndata: {dumps(dict(event))}\n\n".encode()


async def _close_stream(stream: object) -> None:
    """Unsubscribe: async generators have ``aclose``, subscription objects ``close``."""
    closer = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if closer is None:
        return
    try:
        result = closer()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("closing an event subscription failed")


class ControlApi:
    """The route handlers; one instance per app."""

    def __init__(
        self,
        backend: ControlBackend,
        settings: Settings,
        plugin_info: Callable[[], Any] | None,
        heartbeat_s: float,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.plugin_info = plugin_info
        self.heartbeat_s = heartbeat_s
        self._pumps: set[asyncio.Task[None]] = set()
        self.document: JSON = {}

    # --- mode
    async def get_mode(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.get_mode())

    async def set_mode(self, request: web.Request) -> web.Response:
        body = await read_body(request, sc.ModeRequest, required=True)
        actor = actor_of(request)
        return json_response(
            await self.backend.set_mode(
                parse_mode(body.mode),
                confirm_token=body.confirm_token,
                reason=body.reason,
                actor=actor,
            )
        )

    async def mode_history(self, request: web.Request) -> web.Response:
        limit = parse_limit(query(request, ("limit",)))
        return json_response(await self.backend.mode_history(limit))

    async def audit(self, request: web.Request) -> web.Response:
        limit = parse_limit(query(request, ("limit",)))
        return json_response(await self.backend.audit(limit))

    # --- stops
    async def emergency_stop(self, request: web.Request) -> web.Response:
        body = await read_body(request, sc.ReasonRequest)
        return json_response(
            await self.backend.emergency_stop(reason=body.reason, actor=actor_of(request))
        )

    async def halt(self, request: web.Request) -> web.Response:
        body = await read_body(request, sc.RequiredReason, required=True)
        return json_response(await self.backend.halt(reason=body.reason, actor=actor_of(request)))

    async def resume(self, request: web.Request) -> web.Response:
        body = await read_body(request, sc.RequiredReason, required=True)
        return json_response(await self.backend.resume(reason=body.reason, actor=actor_of(request)))

    # --- engine
    async def engine_status(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.engine_status())

    async def engine_start(self, request: web.Request) -> web.Response:
        await read_body(request, sc.Empty)
        return json_response(await self.backend.engine_start(actor=actor_of(request)))

    async def engine_stop(self, request: web.Request) -> web.Response:
        await read_body(request, sc.Empty)
        return json_response(await self.backend.engine_stop(actor=actor_of(request)))

    # --- orders and ledger
    async def list_orders(self, request: web.Request) -> web.Response:
        params = query(request, ("state", "limit"))
        state = params.get("state", "all")
        if state not in ("open", "all"):
            raise BadRequest(f"state must be open or all, got {state!r}", field="state")
        limit = parse_limit(params)
        return json_response(await self.backend.list_orders(state=state, limit=limit))

    async def place_order(self, request: web.Request) -> web.Response:
        order = parse_order(await read_body(request, sc.OrderRequestBody, required=True))
        result = await self.backend.place_order(order, actor=actor_of(request))
        return json_response(result, status=201)

    async def get_order(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.get_order(parse_order_id(request)))

    async def order_fills(self, request: web.Request) -> web.Response:
        query(request, ())
        return json_response(await self.backend.order_fills(parse_order_id(request)))

    async def recent_fills(self, request: web.Request) -> web.Response:
        params = query(request, ("mode", "limit"))
        text = params.get("mode")
        if text is not None and text not in ("LIVE", "PAPER"):
            raise BadRequest(f"mode must be LIVE or PAPER, got {text!r}", field="mode")
        mode = None if text is None else Mode(text)
        return json_response(await self.backend.recent_fills(parse_limit(params), mode))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order_id = parse_order_id(request)
        return json_response(await self.backend.cancel_order(order_id, actor=actor_of(request)))

    async def positions(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.positions())

    async def close_positions(self, request: web.Request) -> web.Response:
        body = await read_body(request, sc.CloseRequestBody, required=True)
        close = parse_close(body)
        return json_response(
            await self.backend.close_positions(
                close, confirm_token=body.confirm_token, actor=actor_of(request)
            )
        )

    async def pnl(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.pnl())

    async def risk(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.risk())

    # --- introspection
    async def plugins(self, request: web.Request) -> web.Response:
        if self.plugin_info is None:
            return json_response(await self.backend.plugins())
        info = self.plugin_info()
        if inspect.isawaitable(info):
            info = await info
        return json_response(info)

    async def health(self, request: web.Request) -> web.Response:
        healthy, body = await self.backend.health()
        # Every backend's answer says which heliosd answered (design: health carries version).
        body = {**body, "version": __version__}
        return json_response(body, status=200 if healthy else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(self.document)

    async def doctor(self, request: web.Request) -> web.Response:
        notify = parse_flag(query(request, ("notify",)), "notify")
        fn = self.backend.doctor  # type: ignore[attr-defined]  # optional, see build_app
        return json_response(await fn(notify=notify, actor=actor_of(request)))

    async def equity(self, request: web.Request) -> web.Response:
        params = query(request, ("mode", "since"))
        text = params.get("mode")
        if text is None:
            mode = Mode((await self.backend.get_mode())["mode"])
        elif text in ("LIVE", "PAPER"):
            mode = Mode(text)
        else:
            raise BadRequest(f"mode must be LIVE or PAPER, got {text!r}", field="mode")
        since = parse_since(params.get("since"))
        fn = self.backend.equity_points  # type: ignore[attr-defined]  # optional, see build_app
        return json_response(await fn(mode, since))

    async def metrics(self, request: web.Request) -> web.Response:
        query(request, ())
        fn = self.backend.scrape  # type: ignore[attr-defined]  # optional, see build_app
        body: bytes = await fn()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def backup(self, request: web.Request) -> web.Response:
        await read_body(request, sc.Empty)
        fn = self.backend.backup  # type: ignore[attr-defined]  # optional, see build_app
        return json_response(await fn(actor=actor_of(request)))

    # --- events
    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events until the client leaves, the backend's stream ends, or shutdown."""
        actor_of(request)
        stream = self.backend.events()
        queue: asyncio.Queue[object] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(stream, queue))
        self._pumps.add(pump)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b": connected\n\n")
            beat = time.monotonic() + self.heartbeat_s
            while True:
                try:
                    wait = min(SSE_LEFT_CHECK_S, max(0.0, beat - time.monotonic()))
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    # A reader that left is noticed here, within a second, not at the next
                    # write: a quiet stream would otherwise keep its subscriber (and, through
                    # the dashboard bridge, a connection) until the heartbeat.
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    if time.monotonic() >= beat:
                        await resp.write(b": heartbeat\n\n")
                        beat = time.monotonic() + self.heartbeat_s
                    continue
                if item is _END:
                    break
                if item is _OVERFLOW:
                    await resp.write(
                        format_event({"type": "overflow", "message": "reader too slow"})
                    )
                    break
                assert isinstance(item, Mapping)
                await resp.write(format_event(item))
        except ConnectionResetError:
            pass  # the reader went away; nothing to tell anyone
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._pumps.discard(pump)
        return resp

    async def _pump(
        self, stream: AsyncIterator[Mapping[str, Any]], queue: asyncio.Queue[object]
    ) -> None:
        try:
            async for event in stream:
                if queue.qsize() >= SSE_BACKLOG:
                    queue.put_nowait(_OVERFLOW)
                    return
                queue.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event stream failed; closing the SSE response")
        finally:
            queue.put_nowait(_END)
            await _close_stream(stream)

    async def on_shutdown(self, app: web.Application) -> None:
        # SSE responses never end on their own; end them so shutdown does not wait on them.
        for pump in list(self._pumps):
            pump.cancel()


# --------------------------------------------------------------------------- the app


def build_app(
    backend: ControlBackend,
    *,
    settings: Settings,
    plugin_info: Callable[[], Any] | None = None,
    sse_heartbeat_s: float = SSE_HEARTBEAT_S,
) -> web.Application:
    """The control API for ``backend``, ready for :class:`heliosd.control.server.ControlServer`.

    ``plugin_info``, when given, answers GET /api/plugins instead of ``backend.plugins()``
    (it may return the JSON object or an awaitable of it). POST /api/backup exists only when
    the backend has an ``async backup(*, actor) -> JSON`` method, GET /api/doctor only when
    it has ``async doctor(*, notify, actor) -> JSON``.
    """
    api = ControlApi(backend, settings, plugin_info, sse_heartbeat_s)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/api/trading/mode", api.get_mode),
        ("POST", "/api/trading/mode", api.set_mode),
        ("GET", "/api/trading/mode/history", api.mode_history),
        ("GET", "/api/audit", api.audit),
        ("POST", "/api/trading/emergency-stop", api.emergency_stop),
        ("POST", "/api/trading/resume", api.resume),
        ("POST", "/api/trading/halt", api.halt),
        ("GET", "/api/autonomous-engine/status", api.engine_status),
        ("POST", "/api/autonomous-engine/start", api.engine_start),
        ("POST", "/api/autonomous-engine/stop", api.engine_stop),
        ("GET", "/api/orders", api.list_orders),
        ("POST", "/api/orders", api.place_order),
        ("GET", "/api/orders/{id}", api.get_order),
        ("GET", "/api/orders/{id}/fills", api.order_fills),
        ("GET", "/api/fills", api.recent_fills),
        ("DELETE", "/api/orders/{id}", api.cancel_order),
        ("GET", "/api/positions", api.positions),
        ("POST", "/api/positions/close", api.close_positions),
        ("GET", "/api/pnl", api.pnl),
        ("GET", "/api/risk", api.risk),
        ("GET", "/api/plugins", api.plugins),
        ("GET", "/api/health", api.health),
        ("GET", "/api/events", api.events),
        ("GET", "/api/openapi.json", api.openapi),
    ]
    if callable(getattr(backend, "backup", None)):
        routes.append(("POST", "/api/backup", api.backup))
    if callable(getattr(backend, "doctor", None)):
        routes.append(("GET", "/api/doctor", api.doctor))
    if callable(getattr(backend, "equity_points", None)):
        routes.append(("GET", "/api/equity", api.equity))
    if callable(getattr(backend, "scrape", None)):
        routes.append(("GET", "/metrics", api.metrics))
    for method, path, handler in routes:
        # No implicit HEAD routes: the OpenAPI document lists exactly what is served.
        if method == "GET":
            app.router.add_get(path, handler, allow_head=False)
        else:
            app.router.add_route(method, path, handler)
    api.document = build_document([(m, p) for m, p, _ in routes])
    app.on_shutdown.append(api.on_shutdown)
    return app


def registered_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    out: list[tuple[str, str]] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if isinstance(path, str):
            out.append((route.method, path))
    return out
