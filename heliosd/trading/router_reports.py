"""What the router reports of an order: its journal lines, the order listener, the
mode-integrity alert, a placement cancelled on the wire recorded as sent, and where it
reports its timings (:class:`RouterTimings`).

:class:`RouterReports` is a base class of :class:`heliosd.trading.router.ExecutionRouter`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from heliosd.core.errors import ExchangeRejected, HeliosError, PermitRevoked
from heliosd.core.types import Mode, OrderState, PlaceResult
from heliosd.notify import journal
from heliosd.store import Store
from heliosd.trading.permits import Permit

# The router's logger, as before the split.
log = logging.getLogger("heliosd.trading.router")


class RouterTimings(Protocol):
    """Where the router reports how long its two halves took (``/metrics``)."""

    def observe_risk_path(self, seconds: float) -> None:
        """An order's arrival to its risk verdict and reservation."""

    def observe_round_trip(self, mode: Mode, outcome: str, seconds: float) -> None:
        """An order handed to the venue's client to its answer (not for one never sent)."""


class RouterReports:
    """The reports of :class:`heliosd.trading.router.ExecutionRouter` (a base class)."""

    # Set by ExecutionRouter.__init__ (heliosd.trading.router).
    _on_order: Callable[[dict[str, Any], str], None] | None
    _on_integrity: Callable[[str], Awaitable[None]] | None
    _integrity_reported: tuple[str, str, str, int] | None
    _store: Store

    if TYPE_CHECKING:  # defined by ExecutionRouter

        def _result_tx(
            self, order_id: int, result: PlaceResult, mode: Mode
        ) -> Callable[[sqlite3.Connection], dict[str, Any]]: ...

    def _cancelled_on_wire(self, order_id: int, mode: Mode, permit: Permit) -> bool:
        """A placement cancelled (a shutdown, the engine stopping): True when a request had
        gone out, so the order may be at the venue and its outcome is unknown (P5). The
        row is then queued SENT (no await: the task is being cancelled), so a stop names it
        and reconciliation settles it; one cancelled before any request is not."""
        if not permit.began:
            return False
        sent = PlaceResult(OrderState.SENT, None, "")
        try:
            done = self._store.submit(self._result_tx(order_id, sent, mode))
        except RuntimeError:  # the store closed first (a shutdown cut short)
            log.warning("order %s: cancelled after it was sent, with the store closed; the"
                        " next start reconciles it", order_id)  # fmt: skip
        else:
            done.add_done_callback(_log_failed_write)
        return True

    @staticmethod
    def _journal_result(
        row: dict[str, Any], error: HeliosError | None, unknown: str, actor: str
    ) -> None:
        """The journal line of a placement's answer: placed, refused (by the venue, or by
        a permit a stop revoked before the send), or failed / outcome unknown."""
        if isinstance(error, PermitRevoked):
            journal.order("order_refused", row, rule="permit", reason=error.message, by=actor)
        elif isinstance(error, ExchangeRejected):
            journal.order("order_refused", row, rule="venue", reason=error.message,
                          venue_code=error.venue_code, by=actor)  # fmt: skip
        elif error is not None or unknown:
            journal.order("order_failed", row, state=row["state"],
                          reason=error.message if error is not None else unknown,
                          by=actor)  # fmt: skip
        else:
            journal.order("order_placed", row, state=row["state"],
                          exchange_id=row.get("exchange_order_id"), by=actor)  # fmt: skip

    def _after_order(self, row: dict[str, Any], mode: Mode) -> None:
        if self._on_order is not None:
            self._on_order(row, str(mode))

    async def _report_integrity(self, row: tuple[str, str, str, int], reason: str) -> None:
        if self._integrity_reported == row:
            return
        self._integrity_reported = row
        journal.event("integrity_alert", check="mode_integrity", reason=reason)
        if self._on_integrity is not None:
            await self._on_integrity(reason)


def _log_failed_write(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("recording a cancelled placement as sent failed: %s", done.exception())
