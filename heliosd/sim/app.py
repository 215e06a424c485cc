"""The aiohttp application: REST routes, WebSocket routes and the middleware chain.

Middleware, outermost first: faults (``heliosd.sim.faults``), then protocol errors:

* A POST/PUT/PATCH/DELETE whose Content-Type is not ``application/json`` -> 403 (VALR
  rejects writes without it; the body is ``{"code":-11,...}``, a sim choice).
* ``ApiError`` raised anywhere in a handler -> its status and ``{"code","message"}`` body.

Every request that gets past the faults is counted per route pattern
(``Simulator.request_counts``). The simulator's own admin routes (``/sim/...``,
``heliosd.sim.admin``) skip both: they are not VALR's.
"""

from __future__ import annotations

from aiohttp import web

from heliosd.sim import admin, rest_account, rest_orders, rest_public, transactions, ws
from heliosd.sim.context import STATE, SimState, error_response
from heliosd.sim.errors import ApiError, wrong_content_type
from heliosd.sim.faults import Handler, MinuteCounter, fault_middleware

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def protocol_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/sim/"):
        return await handler(request)  # the admin routes are not VALR's (heliosd.sim.admin)
    route = request.match_info.route.resource
    pattern = route.canonical if route is not None else request.path
    request.app[STATE].requests[f"{request.method} {pattern}"] += 1
    if request.method in _WRITES and request.content_type != "application/json":
        return error_response(wrong_content_type())
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)


def make_app(state: SimState) -> web.Application:
    counter = MinuteCounter(state.config.rate_limit_per_minute)
    app = web.Application(
        middlewares=[
            fault_middleware(state.faults, counter, state.config.seed),
            protocol_middleware,
        ]
    )
    app[STATE] = state
    rest_public.add_routes(app)
    rest_account.add_routes(app)
    rest_orders.add_routes(app)
    transactions.add_routes(app)
    ws.add_routes(app)
    admin.add_routes(app)
    return app
