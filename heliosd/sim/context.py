"""State shared by the simulator's HTTP and WebSocket handlers, and their helpers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from heliosd.sim.accounts import Account
from heliosd.sim.arrivals import ArrivalLog
from heliosd.sim.auth import VIEW, AuthContext, authenticate
from heliosd.sim.config import FaultConfig, SimConfig
from heliosd.sim.errors import ApiError, invalid_json, invalid_request, unsupported_pair
from heliosd.sim.market import Market
from heliosd.sim.matching import Exchange
from heliosd.sim.orders import ReceivedOrder
from heliosd.sim.streams import StreamHub
from heliosd.sim.wire import dumps


@dataclass
class SimState:
    config: SimConfig
    faults: FaultConfig
    exchange: Exchange
    hub: StreamHub
    _timers: set[asyncio.TimerHandle] = field(default_factory=set)
    # "METHOD /route/{pattern}" -> requests answered (any status): lets a test assert how
    # many calls of a kind a client made (e.g. no per-order status lookups after a stop).
    requests: Counter[str] = field(default_factory=Counter)
    # Every placement request that reached a place handler (heliosd.sim.arrivals).
    arrivals: ArrivalLog = field(default_factory=ArrivalLog)
    # (account, orders cancelled) each time an armed CANCEL_ON_DISCONNECT socket ended.
    disconnect_cancels: list[tuple[str, int]] = field(default_factory=list)

    # -- auth and bodies ----------------------------------------------------------------

    async def authed(
        self, request: web.Request, require: tuple[str, ...] = (VIEW,)
    ) -> tuple[AuthContext, str]:
        """Authenticate a REST request over its exact raw path and body bytes."""
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = raw.decode("utf-8", "replace")  # can never match a signature
        ctx = authenticate(
            request.headers,
            request.method,
            request.raw_path,
            body,
            self.exchange.keys,
            self.exchange.accounts,
            self.config.timestamp_window_ms,
            require=require,
            offset_ms=self.faults.clock_offset_ms,
            plain_stale=self.faults.stale_timestamp_plain,
        )
        return ctx, body

    async def authed_json(
        self, request: web.Request, require: tuple[str, ...] = (VIEW,)
    ) -> tuple[AuthContext, Any]:
        ctx, body = await self.authed(request, require)
        try:
            return ctx, json.loads(body)
        except ValueError:
            raise invalid_json() from None

    # -- lookups ------------------------------------------------------------------------

    def market(self, pair: str) -> Market:
        market = self.exchange.markets.get(pair)
        if market is None:
            raise unsupported_pair()
        return market

    def account(self, ctx: AuthContext) -> Account:
        return self.exchange.add_account(ctx.account_id)

    def record(self, ctx: AuthContext, route: str, body: Any) -> ReceivedOrder:
        received = ReceivedOrder(route=route, body=body, received_at=datetime.now(UTC))
        self.account(ctx).received.append(received)
        return received

    # -- deferred work ------------------------------------------------------------------

    def later(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` after the current response (VALR's 202 'accepted, processing')."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            fn()

        handle = loop.call_later(self.config.v1_processing_delay_s, run)
        self._timers.add(handle)

    def cancel_pending(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


STATE: web.AppKey[SimState] = web.AppKey("heliosd_sim_state", SimState)


def state_of(request: web.Request) -> SimState:
    return request.app[STATE]


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), error.status)


def int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise invalid_request()
    value = int(raw)
    if value > maximum:
        raise invalid_request(f"{name} must not exceed {maximum}")
    return value


def time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid_request() from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
