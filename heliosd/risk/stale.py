"""The ``stale_prices`` breaker's trip and clear: LIVE REDUCING while a holding above dust
cannot be valued fresh (decided by :class:`heliosd.risk.monitors.StaleWatch`, run by the
monitor runner's freshness pass)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from heliosd import store as st
from heliosd.core.types import Mode
from heliosd.notify.notices import stale_prices_event
from heliosd.risk.breakers import clear_sql, trip_sql
from heliosd.risk.monitors import STALE_PRICES, StaleWatch
from heliosd.risk.prices import Assessment, describe_stale

if TYPE_CHECKING:
    from heliosd.notify import Notifications
    from heliosd.risk.breakers import Breakers
    from heliosd.store import Store


class StalePrices:
    """The hysteresis (``watch``) and the assets the standing trip named (``now``)."""

    def __init__(self, store: Store, breakers: Breakers, notifications: Notifications) -> None:
        self.store = store
        self.breakers = breakers
        self.notifications = notifications
        self.watch = StaleWatch()
        self.now: tuple[str, ...] = ()

    async def trip(self, seen: Assessment) -> None:
        detail = describe_stale(seen)
        reason = f"LIVE holdings cannot be valued fresh: {detail}"
        event = stale_prices_event(started=True, mode=Mode.LIVE, assets=seen.stale, detail=detail)
        enqueue = self.notifications.record

        def tx(conn: sqlite3.Connection) -> None:
            trip_sql(conn, STALE_PRICES, mode=Mode.LIVE, reason=reason)
            st.audit(conn, actor="heliosd", action="stale_prices", outcome="tripped",
                     reason=reason, details={"assets": list(seen.stale)})  # fmt: skip
            enqueue(conn, event)

        await self.store.write(tx)
        self.breakers.committed_trip(STALE_PRICES, reason, None)
        self.now = seen.stale  # the breakers' journal line says REDUCING and why
        self.notifications.publish({"type": "stale_prices", "assets": list(seen.stale)})

    async def clear(self) -> None:
        assets = self.now
        event = stale_prices_event(started=False, mode=Mode.LIVE, assets=assets)
        enqueue = self.notifications.record

        def tx(conn: sqlite3.Connection) -> None:
            clear_sql(conn, [STALE_PRICES], actor="heliosd", reason="prices fresh again")
            st.audit(conn, actor="heliosd", action="stale_prices", outcome="cleared",
                     reason="prices fresh again")  # fmt: skip
            enqueue(conn, event)

        await self.store.write(tx)
        self.breakers.committed_clear([STALE_PRICES])
        self.now = ()  # the breakers' journal line says the state and why
        self.notifications.publish({"type": "stale_prices", "assets": []})
