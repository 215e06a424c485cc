"""The control API: aiohttp routes, their handlers and the route table.

Contract: the error table of docs/internals.md and the bodies of
``heliosd.control.schema`` (requests decode into its Structs, so the OpenAPI document
generated from them says exactly what is accepted). Every answer is JSON. The app talks
only to a :class:`~heliosd.control.backend.ControlBackend`: it validates the request, calls
exactly one backend method with the caller's :class:`~heliosd.control.backend.Actor`, and
serialises the answer. Validation is in ``app_requests``, error mapping in ``app_errors``,
JSON out in ``app_json``, event framing in ``app_sse``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from heliosd import __version__
from heliosd.control import schema as sc
from heliosd.control.app_errors import MAX_BODY_BYTES, error_middleware
from heliosd.control.app_errors import BadRequest as BadRequest
from heliosd.control.app_errors import Handler as Handler
from heliosd.control.app_json import json_error as json_error
from heliosd.control.app_json import json_response as json_response
from heliosd.control.app_requests import ACTOR_KEY as ACTOR_KEY
from heliosd.control.app_requests import actor_of as actor_of
from heliosd.control.app_requests import parse_amount as parse_amount
from heliosd.control.app_requests import (
    parse_close,
    parse_flag,
    parse_limit,
    parse_mode,
    parse_order,
    parse_order_id,
    parse_since,
    query,
    read_body,
)
from heliosd.control.app_sse import pump_events, write_events
from heliosd.control.backend import JSON, ControlBackend
from heliosd.control.openapi import build_document
from heliosd.core.config import Settings
from heliosd.core.types import Mode

# The "X as X" imports above are re-exports: the listener, the dashboard, the shutdown gate
# and tests import those names from here.

log = logging.getLogger(__name__)

SSE_HEARTBEAT_S: Final = 15.0
# How often a quiet event stream looks whether its reader is still there.
SSE_LEFT_CHECK_S: Final = 1.0
# Events queued for one slow SSE reader before we drop it rather than grow without bound.
SSE_BACKLOG: Final = 10_000
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


# --------------------------------------------------------------------------- handlers


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
        pump = asyncio.create_task(pump_events(stream, queue, SSE_BACKLOG))
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
            await write_events(request, resp, queue, self.heartbeat_s, SSE_LEFT_CHECK_S)
        except ConnectionResetError:
            pass  # the reader went away; nothing to tell anyone
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._pumps.discard(pump)
        return resp

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
