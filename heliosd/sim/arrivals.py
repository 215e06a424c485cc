"""The order-arrival log: every order placement request that reached a place handler.

Invariant: a placement request is logged when its handler starts, before authentication,
validation or matching, so the log holds every request that *could* have executed, accepted
or refused, in arrival order (``seq`` increases by one per entry). Requests that a fault
answered before the handler (a 429, a 503 in read-only mode, a 5xx "before") never reached
it and are not logged; a 5xx produced *after* the handler ran is logged (the order exists).

This is what proves "no order reached the venue after the stop answered": compare each
entry's ``arrived_at`` (UTC, microseconds) with the stop's answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class OrderArrival:
    """One placement request as it reached the handler. ``account`` is None when the
    request did not authenticate; ``status`` is the HTTP status answered (0 while the
    handler runs); ``accepted`` is a 2xx answer."""

    seq: int
    arrived_at: datetime
    route: str
    customer_order_id: str | None
    pair: str | None
    side: str | None
    account: str | None = None
    status: int = 0
    accepted: bool = False
    order_id: str | None = None
    error: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "arrived_at": self.arrived_at.isoformat().replace("+00:00", "Z"),
            "route": self.route,
            "customer_order_id": self.customer_order_id,
            "pair": self.pair,
            "side": self.side,
            "account": self.account,
            "status": self.status,
            "accepted": self.accepted,
            "order_id": self.order_id,
            "error": dict(self.error),
        }


ARRIVAL: web.RequestKey[OrderArrival] = web.RequestKey("heliosd_sim_arrival", OrderArrival)


class ArrivalLog:
    """Append-only, in memory (a simulator lives for one test or one session)."""

    def __init__(self) -> None:
        self.entries: list[OrderArrival] = []

    def add(self, route: str, body: bytes) -> OrderArrival:
        fields = _fields(body)
        entry = OrderArrival(
            seq=len(self.entries) + 1,
            arrived_at=datetime.now(UTC),
            route=route,
            customer_order_id=fields.get("customerOrderId"),
            pair=fields.get("pair"),
            side=fields.get("side"),
        )
        self.entries.append(entry)
        return entry

    def after(self, seq: int = 0) -> list[OrderArrival]:
        return self.entries[seq:] if seq >= 0 else list(self.entries)


def _fields(body: bytes) -> dict[str, str]:
    """customerOrderId, pair and side from a body, whatever else is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for key in ("customerOrderId", "pair", "side"):
        value = data.get(key)
        if isinstance(value, str):
            out[key] = value
    return out


def logged(log: Callable[[web.Request], ArrivalLog], handler: Handler) -> Handler:
    """Wrap a place handler so every request it gets is in the log with its outcome."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        from heliosd.sim.errors import ApiError  # the handler's refusals

        entry = log(request).add(request.path, await request.read())
        request[ARRIVAL] = entry
        try:
            response = await handler(request)
        except ApiError as error:
            entry.status, entry.error = error.status, error.body()
            raise
        except web.HTTPException as exc:
            entry.status = exc.status
            raise
        entry.status = response.status
        entry.accepted = 200 <= response.status < 300
        return response

    return wrapped
