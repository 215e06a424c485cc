"""The control API: aiohttp routes, request validation, JSON errors and error mapping.

Contract: design.md sections 7 and 11, and the error table of docs/internals.md. Every
answer is JSON; every error is ``{"error": code, "message": sentence, "details": {...}}``
and never carries a traceback or a secret. The app talks only to a
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final, TypeVar

from aiohttp import web

from heliosd.config import Secret, Settings
from heliosd.control.backend import JSON, Actor, ControlBackend, OrderRequest
from heliosd.control.openapi import build_document
from heliosd.errors import (
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
from heliosd.types import Mode, OrderType, Side

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_REASON_CHARS: Final = 1000
SSE_HEARTBEAT_S: Final = 15.0
# Events queued for one slow SSE reader before we drop it rather than grow without bound.
SSE_BACKLOG: Final = 10_000

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
    return json.dumps(value, default=_to_json, ensure_ascii=False, separators=(",", ":"))


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(body), status=status, content_type="application/json", headers=headers
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


async def read_object(
    request: web.Request, allowed: tuple[str, ...], *, required: bool = False
) -> dict[str, Any]:
    """The request body as a JSON object holding only ``allowed`` fields.

    An empty body is ``{}`` unless ``required``. Oversized bodies raise 413 (aiohttp's
    ``client_max_size``), everything else malformed a :class:`BadRequest`.
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body is required (a JSON object)", field="body")
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError; the position helps a human.
        raise BadRequest(f"request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(body, dict):
        raise BadRequest(
            f"request body must be a JSON object, got {_type_name(body)}", field="body"
        )
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise BadRequest(
            f"unknown field{'s' if len(unknown) > 1 else ''} {names}",
            fields=unknown,
            allowed=list(allowed),
        )
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def opt_str(body: Mapping[str, Any], name: str, *, max_chars: int = MAX_REASON_CHARS) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {_type_name(value)}", field=name)
    if len(value) > max_chars:
        raise BadRequest(f"{name} must be at most {max_chars} characters", field=name)
    return value


def parse_mode(value: Any) -> Mode:
    if not isinstance(value, str):
        raise BadRequest(f"mode must be PAPER or LIVE, got {_type_name(value)}", field="mode")
    try:
        return Mode(value.upper())
    except ValueError:
        raise BadRequest(f"mode must be PAPER or LIVE, got {value!r}", field="mode") from None


E = TypeVar("E", bound=enum.StrEnum)


def _parse_enum(kind: type[E], name: str, value: Any) -> E:
    choices = " or ".join(m.value for m in kind)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be {choices}, got {_type_name(value)}", field=name)
    try:
        return kind(value.upper())
    except ValueError:
        raise BadRequest(f"{name} must be {choices}, got {value!r}", field=name) from None


_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_PAIR = re.compile(r"[A-Za-z0-9]{2,32}")


def parse_amount(name: str, value: Any) -> Decimal:
    """A positive decimal from a string like "0.01" or a JSON number (floats via ``str``)."""
    if isinstance(value, bool) or value is None:
        raise BadRequest(
            f"{name} must be a positive decimal string, got {_type_name(value)}", field=name
        )
    if isinstance(value, float):
        value = str(value)  # json.loads gives Decimal already; this guards direct callers
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value) or len(value) > 40:
            raise BadRequest(
                f'{name} must be a positive decimal string like "0.01", got {value!r}', field=name
            )
        amount = Decimal(value)
    elif isinstance(value, int | Decimal):
        amount = Decimal(value)
    else:
        raise BadRequest(
            f"{name} must be a positive decimal string, got {_type_name(value)}", field=name
        )
    if not amount.is_finite() or amount <= 0:
        raise BadRequest(f"{name} must be positive, got {value}", field=name)
    # Far beyond any real order; refusing here keeps absurd exponents out of the risk path.
    if amount.adjusted() > 15 or amount.as_tuple().exponent < -18:  # type: ignore[operator]
        raise BadRequest(f"{name} is out of range: {value}", field=name)
    return amount


ORDER_FIELDS: Final = ("pair", "side", "type", "quantity", "price", "reason")


def parse_order(body: Mapping[str, Any]) -> OrderRequest:
    missing = [f for f in ("pair", "side", "type", "quantity") if body.get(f) is None]
    if missing:
        raise BadRequest(f"missing required field {', '.join(missing)}", fields=missing)
    pair = body["pair"]
    if not isinstance(pair, str) or not _PAIR.fullmatch(pair):
        raise BadRequest(
            f'pair must be a pair symbol like "BTCZAR", got {pair!r}'
            if isinstance(pair, str)
            else f"pair must be a string, got {_type_name(pair)}",
            field="pair",
        )
    side = _parse_enum(Side, "side", body["side"])
    order_type = _parse_enum(OrderType, "type", body["type"])
    quantity = parse_amount("quantity", body["quantity"])
    price: Decimal | None = None
    if order_type is OrderType.LIMIT:
        if body.get("price") is None:
            raise BadRequest("price is required for a LIMIT order", field="price")
        price = parse_amount("price", body["price"])
    elif body.get("price") is not None:
        raise BadRequest("price is not allowed on a MARKET order", field="price")
    return OrderRequest(
        pair=pair.upper(),
        side=side,
        type=order_type,
        quantity=quantity,
        price=price,
        reason=opt_str(body, "reason") or "",
    )


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
        body = await read_object(request, ("mode", "confirm_token", "reason"), required=True)
        if "mode" not in body:
            raise BadRequest("missing required field mode", field="mode")
        mode = parse_mode(body["mode"])
        token = opt_str(body, "confirm_token", max_chars=200)
        reason = opt_str(body, "reason") or ""
        actor = actor_of(request)
        return json_response(
            await self.backend.set_mode(mode, confirm_token=token, reason=reason, actor=actor)
        )

    async def mode_history(self, request: web.Request) -> web.Response:
        limit = parse_limit(query(request, ("limit",)))
        return json_response(await self.backend.mode_history(limit))

    async def audit(self, request: web.Request) -> web.Response:
        limit = parse_limit(query(request, ("limit",)))
        return json_response(await self.backend.audit(limit))

    # --- stops
    async def emergency_stop(self, request: web.Request) -> web.Response:
        body = await read_object(request, ("reason",))
        reason = opt_str(body, "reason") or ""
        return json_response(
            await self.backend.emergency_stop(reason=reason, actor=actor_of(request))
        )

    async def halt(self, request: web.Request) -> web.Response:
        body = await read_object(request, ("reason",), required=True)
        reason = opt_str(body, "reason")
        if reason is None or not reason.strip():
            raise BadRequest("reason is required to halt trading", field="reason")
        return json_response(await self.backend.halt(reason=reason, actor=actor_of(request)))

    async def resume(self, request: web.Request) -> web.Response:
        body = await read_object(request, ("reason",), required=True)
        reason = opt_str(body, "reason")
        if reason is None or not reason.strip():
            raise BadRequest("reason is required to resume trading", field="reason")
        return json_response(await self.backend.resume(reason=reason, actor=actor_of(request)))

    # --- engine
    async def engine_status(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.engine_status())

    async def engine_start(self, request: web.Request) -> web.Response:
        await read_object(request, ())
        return json_response(await self.backend.engine_start(actor=actor_of(request)))

    async def engine_stop(self, request: web.Request) -> web.Response:
        await read_object(request, ())
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
        order = parse_order(await read_object(request, ORDER_FIELDS, required=True))
        result = await self.backend.place_order(order, actor=actor_of(request))
        return json_response(result, status=201)

    async def get_order(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.get_order(parse_order_id(request)))

    async def order_fills(self, request: web.Request) -> web.Response:
        query(request, ())
        return json_response(await self.backend.order_fills(parse_order_id(request)))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order_id = parse_order_id(request)
        return json_response(await self.backend.cancel_order(order_id, actor=actor_of(request)))

    async def positions(self, request: web.Request) -> web.Response:
        return json_response(await self.backend.positions())

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
        return json_response(body, status=200 if healthy else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(self.document)

    async def backup(self, request: web.Request) -> web.Response:
        await read_object(request, ())
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
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.heartbeat_s)
                except TimeoutError:
                    await resp.write(b": heartbeat\n\n")
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
    the backend has an ``async backup(*, actor) -> JSON`` method.
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
        ("DELETE", "/api/orders/{id}", api.cancel_order),
        ("GET", "/api/positions", api.positions),
        ("GET", "/api/pnl", api.pnl),
        ("GET", "/api/risk", api.risk),
        ("GET", "/api/plugins", api.plugins),
        ("GET", "/api/health", api.health),
        ("GET", "/api/events", api.events),
        ("GET", "/api/openapi.json", api.openapi),
    ]
    if callable(getattr(backend, "backup", None)):
        routes.append(("POST", "/api/backup", api.backup))
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
