"""REST fault injection and rate limiting (WebSocket faults live in ``streams``).

Applied to every ``/v1`` and ``/v2`` request, in this order:

1. ``delay_s`` and every matching ``route_delays`` entry without ``after`` sleep *before*
   the handler runs (the request is held in flight: a client that times out and looks the
   order up may not find it yet). ``delay_after_s`` and ``after`` route delays sleep
   *after* the handler ran (the request took effect; only the answer is late).
2. ``read_only``: any non-GET gets 503 (VALR's read-only mode).
3. The first unspent ``rate_limits`` rule matching the route (its count goes down by one),
   the real per-key fixed-window counter (``SimConfig.rate_limit_per_minute``; VALR's
   windows reset at each wall-clock minute), then the random ``http_429_rate``. A 429 has
   ``x-valr-ratelimited: true``, ``Retry-After`` (seconds) and a small HTML body, and the
   request is not processed (so it is not in the order-arrival log either).
4. ``http_5xx_rate``: a 500/502/503/504 with a small HTML body. With probability
   ``http_5xx_after_rate`` the handler runs first and its answer is thrown away (the
   request took effect; the client cannot know), otherwise the request never runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from heliosd.builtin.valr.signing import HEADER_API_KEY
from heliosd.sim.config import FaultConfig
from heliosd.sim.context import error_response
from heliosd.sim.errors import read_only

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RATE_LIMIT_HTML = (
    "<html><head><title>429 Too Many Requests</title></head><body>"
    "<center><h1>429 Too Many Requests</h1></center></body></html>"
)
_5XX = (500, 502, 503, 504)


def rate_limited(retry_after_s: int, floor: int = 1) -> web.Response:
    """VALR's 429. A rule may ask for ``Retry-After: 0`` (``floor`` 0) so tests stay fast."""
    return web.Response(
        status=429,
        text=RATE_LIMIT_HTML,
        content_type="text/html",
        headers={"x-valr-ratelimited": "true", "Retry-After": str(max(retry_after_s, floor))},
    )


def server_error(status: int) -> web.Response:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    text = reason.get(status, "Gateway Timeout")
    return web.Response(
        status=status,
        text=f"<html><body><h1>{status} {text}</h1></body></html>",
        content_type="text/html",
    )


class MinuteCounter:
    """Requests per key in the current wall-clock minute."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._minute = -1
        self._counts: dict[str, int] = {}

    def hit(self, who: str, now: float | None = None) -> int | None:
        """Count one request; return seconds until the window resets if over budget."""
        if self.limit is None:
            return None
        now = time.time() if now is None else now
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        count = self._counts.get(who, 0) + 1
        self._counts[who] = count
        if count > self.limit:
            return int(60 - now % 60) + 1
        return None


def fault_middleware(faults: FaultConfig, counter: MinuteCounter, seed: int) -> Middleware:
    rng = random.Random(seed * 131 + 17)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(("/v1/", "/v2/")):
            return await handler(request)
        method, path = request.method, request.path
        before = faults.delay_s + sum(
            d.delay_s for d in faults.route_delays if not d.after and d.matches(method, path)
        )
        if before > 0:
            await asyncio.sleep(before)
        if faults.read_only and method not in ("GET", "HEAD", "OPTIONS"):
            return error_response(read_only())
        for rule in faults.rate_limits:
            if rule.matches(method, path):
                rule.count -= 1
                rule.hits += 1
                return rate_limited(rule.retry_after_s, floor=0)
        who = request.headers.get(HEADER_API_KEY) or (request.remote or "?")
        retry = counter.hit(who)
        if retry is not None:
            return rate_limited(retry)
        if faults.http_429_rate > 0 and rng.random() < faults.http_429_rate:
            return rate_limited(faults.retry_after_s)
        if faults.http_5xx_rate > 0 and rng.random() < faults.http_5xx_rate:
            status = rng.choice(_5XX)
            if rng.random() < faults.http_5xx_after_rate:
                await handler(request)  # it happened; the answer is lost on the way back
            return server_error(status)
        response = await handler(request)
        after = faults.delay_after_s + sum(
            d.delay_s for d in faults.route_delays if d.after and d.matches(method, path)
        )
        if after > 0:
            await asyncio.sleep(after)
        return response

    return middleware
