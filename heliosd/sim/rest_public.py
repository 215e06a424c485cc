"""Public market-data routes (``/v1/public/*``) and the authenticated order book."""

from __future__ import annotations

import time

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.context import int_param, json_response, state_of


async def server_time(request: web.Request) -> web.Response:
    ns = time.time_ns() + state_of(request).faults.clock_offset_ms * 1_000_000
    # epochTime is whole seconds; time carries nanoseconds (VALR's /v1/public/time).
    return json_response({"epochTime": ns // 1_000_000_000, "time": wire.iso_ns(ns)})


async def status(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response({"status": "read-only" if state.faults.read_only else "online"})


async def pairs(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response([wire.pair_info(spec) for spec in state.exchange.specs.values()])


async def currencies(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response([wire.currency_info(code) for code in state.config.currencies()])


async def market_summaries(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response([wire.market_summary(m) for m in state.exchange.markets.values()])


async def market_summary(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response(wire.market_summary(state.market(request.match_info["pair"])))


async def order_book(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response(wire.order_book(state.market(request.match_info["pair"])))


async def order_book_authed(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.authed(request)
    return json_response(wire.order_book(state.market(request.match_info["pair"])))


async def public_trades(request: web.Request) -> web.Response:
    state = state_of(request)
    market = state.market(request.match_info["pair"])
    skip = int_param(request, "skip", 0, 1_000_000)
    limit = int_param(request, "limit", 100, 100)
    newest_first = list(reversed(market.tape))[skip : skip + limit]
    return json_response([wire.public_trade(t) for t in newest_first])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/public/time", server_time)
    app.router.add_get("/v1/public/status", status)
    app.router.add_get("/v1/public/pairs", pairs)
    app.router.add_get("/v1/public/currencies", currencies)
    app.router.add_get("/v1/public/marketsummary", market_summaries)
    app.router.add_get("/v1/public/{pair}/marketsummary", market_summary)
    app.router.add_get("/v1/public/{pair}/orderbook", order_book)
    app.router.add_get("/v1/public/{pair}/trades", public_trades)
    app.router.add_get("/v1/marketdata/{pair}/orderbook", order_book_authed)
