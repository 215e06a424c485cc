"""The seam between the control API and the daemon.

The aiohttp app validates requests, calls exactly one method here with the caller's
:class:`Actor`, and turns the JSON-ready result (or a ``heliosd.core.errors`` exception) into the
response. Keeping the seam narrow lets the API be tested against the real daemon and lets the
daemon be driven without HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from heliosd.core.types import Mode, OrderType, Side

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: from SO_PEERCRED on the Unix socket, or the TCP listener's token."""

    uid: int | None
    user: str
    via: str = "unix"  # "unix", "tcp", "internal"

    def __str__(self) -> str:
        return self.user if self.uid is None else f"{self.user} (uid {self.uid})"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    pair: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    reason: str


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """Close positions on ``mode``'s account: ``pair``, or every holding when None."""

    mode: Mode
    pair: str | None
    reason: str


class ControlBackend(Protocol):
    # --- mode
    async def get_mode(self) -> JSON:
        """{"mode","updated_at","updated_by","halted","halt_reason","trading_state",
        "state_reason","epoch", ...}"""
        ...

    async def set_mode(
        self, mode: Mode, *, confirm_token: str | None, reason: str, actor: Actor
    ) -> JSON:
        """Switch; raises GateRejected / ConfirmationRequired / InvalidConfirmToken."""
        ...

    async def mode_history(self, limit: int) -> JSON: ...

    async def audit(self, limit: int) -> JSON: ...

    # --- stops
    async def emergency_stop(self, *, reason: str, actor: Actor) -> JSON: ...

    async def resume(self, *, reason: str, actor: Actor) -> JSON: ...

    async def halt(self, *, reason: str, actor: Actor) -> JSON:
        """Trip the operator's ``halt`` breaker (trading HALTED: nothing but cancels)."""
        ...

    # --- engine
    async def engine_status(self) -> JSON: ...

    async def engine_start(self, *, actor: Actor) -> JSON: ...

    async def engine_stop(self, *, actor: Actor) -> JSON: ...

    # --- orders and ledger
    async def list_orders(self, *, state: str, limit: int) -> JSON: ...

    async def get_order(self, order_id: int) -> JSON: ...

    async def order_fills(self, order_id: int) -> JSON:
        """{"order_id", "mode", "fills": [...], "venue_checked": bool}; for LIVE each fill
        says whether VALR's own trade history lists its trade id (``in_venue_history``)."""
        ...

    async def recent_fills(self, limit: int, mode: Mode | None) -> JSON:
        """{"fills": [FILL + "order_id", "mode"]}, newest first, from the database only."""
        ...

    async def place_order(self, request: OrderRequest, *, actor: Actor) -> JSON:
        """{"order": ORDER}; raises RiskRejected / ExchangeRejected (details hold the order)."""
        ...

    async def cancel_order(self, order_id: int, *, actor: Actor) -> JSON: ...

    async def positions(self) -> JSON: ...

    async def close_positions(
        self, request: CloseRequest, *, confirm_token: str | None, actor: Actor
    ) -> JSON:
        """{"orders": [ORDER...], "remaining": [...]}; without a token raises
        ConfirmationRequired (details: confirm_token, expires_in, orders), or answers at
        once when nothing can be sold; InvalidConfirmToken / HaltedError / NotFoundError."""
        ...

    async def pnl(self) -> JSON: ...

    async def risk(self) -> JSON: ...

    # --- introspection
    async def plugins(self) -> JSON: ...

    async def health(self) -> tuple[bool, JSON]:
        """(healthy, body): the API answers 200 when healthy, 503 otherwise."""
        ...

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        """Every event as it happens (for GET /api/events, server-sent events); the daemon's
        hub budgets a reader's fills and orders (docs/api.md, *Event stream*)."""
        ...
