"""The ``venue_read_only`` breaker: the LIVE account is REDUCING while VALR is not online.

Invariant: while the mode is LIVE and the LIVE client's last read of VALR's status
(``venue_status``, from ``GET /v1/public/status``) is anything but ``online``, the
``venue_read_only`` breaker is tripped (trading REDUCING, reason ``venue_read_only``);
otherwise it is cleared. This module is its only owner: it trips and clears it, each in one
transaction with its audit row, and the operator is told once when the condition starts and
once when it ends (a resume that clears the breaker meanwhile is re-tripped on the next
pass, silently). The breaker is not halting: cancels and reducing orders still reach the
client, which refuses new orders itself while VALR is read-only (it does not accept writes
then), and tries cancels.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from heliosd import store as st
from heliosd.core.protocols import Event
from heliosd.core.types import Mode, utcnow
from heliosd.notify.notices import URGENT_KINDS
from heliosd.risk.breakers import Breakers, clear_sql, trip_sql
from heliosd.store import Store

log = logging.getLogger(__name__)

VENUE_READ_ONLY = "venue_read_only"
ONLINE = "online"


def venue_status_event(*, started: bool, status: str, label: str) -> Event:
    """VALR went read-only (urgent, a ``halt``), or the condition ended (a ``resume``)."""
    data = {"breaker": VENUE_READ_ONLY, "venue_status": status, "started": started}
    if started:
        body = (
            f"{label} reports status {status!r} (maintenance): it accepts no new orders."
            "\nThe LIVE account is REDUCING (venue_read_only): new LIVE orders are refused at"
            " once; cancels are still tried. It clears by itself when VALR is online again."
        )
        return Event("halt", f"{label} is {status}: LIVE orders refused", body, utcnow(),
                     urgent="halt" in URGENT_KINDS, data=data)  # fmt: skip
    body = f"{label} reports status {status!r}; the venue_read_only breaker cleared itself."
    return Event("resume", f"{label} is {status} again", body, utcnow(), data=data)


class VenueStatusWatch:
    """Trips and clears ``venue_read_only`` from the LIVE client's ``venue_status``."""

    def __init__(
        self,
        *,
        store: Store,
        breakers: Breakers,
        client: Any,
        record: Callable[[sqlite3.Connection, Event], Any],
        publish: Callable[[dict[str, Any]], None],
        label: str = "VALR",
    ) -> None:
        self._store = store
        self._breakers = breakers
        self._client = client
        self._record = record
        self._publish = publish
        self._label = label
        # Told at start already (a breaker persisted from before a restart counts as told).
        self._announced = breakers.is_tripped(VENUE_READ_ONLY)

    @property
    def status(self) -> str | None:
        value = getattr(self._client, "venue_status", None)
        return value if isinstance(value, str) else None

    async def run(self, interval_s: float = 0.5) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("venue status pass failed")
            await asyncio.sleep(interval_s)

    async def check(self) -> None:
        """One pass: trip or clear the breaker to match the invariant."""
        status = self.status
        down = status is not None and status != ONLINE
        live = self._store.mode_state().mode is Mode.LIVE
        tripped = self._breakers.is_tripped(VENUE_READ_ONLY)
        if down and live:
            if not tripped:
                await self._trip(status or "unknown")
        elif tripped or self._announced:
            # The end is told even when a resume cleared the breaker meanwhile.
            await self._clear(status or "unknown", live, tripped)

    async def _trip(self, status: str) -> None:
        reason = f"{self._label} is {status}: new LIVE orders are refused, cancels still tried"
        event = None if self._announced else venue_status_event(
            started=True, status=status, label=self._label
        )  # fmt: skip
        record = self._record

        def tx(conn: sqlite3.Connection) -> None:
            trip_sql(conn, VENUE_READ_ONLY, mode=Mode.LIVE, reason=reason)
            st.audit(conn, actor="heliosd", action=VENUE_READ_ONLY, outcome="tripped",
                     reason=reason, details={"venue_status": status})  # fmt: skip
            if event is not None:
                record(conn, event)

        await self._store.write(tx)
        self._breakers.committed_trip(VENUE_READ_ONLY, reason, None)
        self._announced = True  # the breakers' journal line says REDUCING and why
        self._publish({"type": VENUE_READ_ONLY, "venue_status": status, "tripped": True})

    async def _clear(self, status: str, live: bool, tripped: bool) -> None:
        why = f"{self._label} is {status}" if live else "the LIVE account is not in use"
        event = venue_status_event(started=False, status=status, label=self._label)
        record, announced = self._record, self._announced

        def tx(conn: sqlite3.Connection) -> None:
            if tripped:
                clear_sql(conn, [VENUE_READ_ONLY], actor="heliosd", reason=why)
                st.audit(conn, actor="heliosd", action=VENUE_READ_ONLY, outcome="cleared",
                         reason=why, details={"venue_status": status})  # fmt: skip
            if announced:
                record(conn, event)

        await self._store.write(tx)
        if tripped:
            self._breakers.committed_clear([VENUE_READ_ONLY])
        self._announced = False  # the breakers' journal line says the state and why
        self._publish({"type": VENUE_READ_ONLY, "venue_status": status, "tripped": False})
