"""Fills (or open orders) the ledger could not apply: reported, never raised.

Stored data never stops a start and a bad fill at runtime never stops the daemon: each is
logged, an urgent notification goes out, GET /api/health lists it (``ledger_errors``) and the
``ledger_error`` breaker trips (REDUCING until a resume).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from heliosd.core.types import Mode
from heliosd.notify import journal
from heliosd.notify.notices import integrity_event
from heliosd.risk.breakers import trip_sql
from heliosd.risk.ledger import LedgerError

if TYPE_CHECKING:
    from heliosd.notify import Notifications
    from heliosd.risk.breakers import Breakers
    from heliosd.store import Store

log = logging.getLogger(__name__)

# The breaker a stored fill the ledger cannot apply trips (REDUCING until a resume).
LEDGER_ERROR = "ledger_error"


async def report_ledger_errors(
    store: Store,
    notifications: Notifications,
    breakers: Breakers,
    mode: Mode,
    errors: Sequence[LedgerError],
) -> None:
    """Report fills the ledger could not apply: log, an urgent notification, health
    (``ledger_errors``), and the ``ledger_error`` breaker (REDUCING until a resume),
    tripped in a store write and mirrored into the breakers' cache."""
    first = errors[0]
    reason = (
        f"{len(errors)} stored {mode} fill(s) not applied to the ledger (first: trade "
        f"{first.trade_id} in {first.pair}: {first.reason}); positions may be wrong"
    )
    journal.event("integrity_alert", check="ledger_error", mode=mode, reason=reason)
    event = integrity_event(
        reason,
        action="Trading is REDUCING (breaker ledger_error): only orders that reduce a "
        "holding pass. Check the fills and balances on VALR, then heliosctl resume.",
        details={"mode": str(mode), "ledger_errors": [e.as_json() for e in errors[:20]]},
    )
    enqueue = notifications.record

    def tx(conn: sqlite3.Connection) -> None:
        trip_sql(conn, LEDGER_ERROR, mode=mode, reason=reason)
        enqueue(conn, event)

    try:
        await store.write(tx)
    except Exception:
        # Still come up: the cache below holds the breaker for this run (fail closed).
        log.exception("could not persist the ledger_error breaker")
    breakers.committed_trip(LEDGER_ERROR, reason, None)
