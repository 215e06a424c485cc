"""What the router reports of an order: its journal lines, the order listener, the
mode-integrity alert, and where it reports its timings (:class:`RouterTimings`).

:class:`RouterReports` is a base class of :class:`heliosd.trading.router.ExecutionRouter`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from heliosd.core.errors import ExchangeRejected, HeliosError, PermitRevoked
from heliosd.core.types import Mode
from heliosd.notify import journal


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
