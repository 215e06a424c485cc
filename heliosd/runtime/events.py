"""What the trading parts report while running, turned into /api/events messages, journal
lines and notifications: orders, engine events, LIVE-mode integrity alerts, stream losses and
mode changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from heliosd import store as st
from heliosd.core.types import Mode, utcnow
from heliosd.notify import journal
from heliosd.notify.notices import (
    connection_lost_event,
    connection_restored_event,
    integrity_event,
    strategy_error_event,
)
from heliosd.risk.mode import mode_json

if TYPE_CHECKING:
    from heliosd.notify import Notifications
    from heliosd.risk.runner import Spawn
    from heliosd.store import Store


class ServiceEvents:
    """The callbacks the service hands the router, engine, sinks and mode orchestrator.

    ``closing()`` says whether the daemon's own shutdown is under way (a stream it closes
    is not news)."""

    def __init__(
        self,
        store: Store,
        notifications: Notifications,
        *,
        spawn: Spawn,
        closing: Callable[[], bool],
    ) -> None:
        self.store = store
        self.notifications = notifications
        self._spawn = spawn
        self._closing = closing
        self._down_since: dict[str, datetime] = {}  # live account stream: when it went down

    def order_event(self, row: dict[str, Any], mode: str) -> None:
        self.notifications.publish({"type": "order", "mode": mode, "order": row})

    def engine_event(self, event: dict[str, Any]) -> None:
        """Engine events go to /api/events; a strategy stopped by an error is also a
        notification (automatic trading is off until a person starts it again)."""
        self.notifications.publish(event)
        if event.get("event") == "error":
            notice = strategy_error_event(
                str(event.get("strategy", "?")), str(event.get("error", "")),
                mode=self.store.mode_state().mode,
            )  # fmt: skip
            self._spawn(self.notifications.notify(notice))

    async def integrity_alert(self, reason: str) -> None:
        enqueue_fn = self.notifications.record

        def tx(conn: sqlite3.Connection) -> None:
            st.audit(
                conn, actor="heliosd", action="mode_integrity", outcome="refused", reason=reason
            )
            enqueue_fn(conn, integrity_event(
                f"LIVE mode not trusted: {reason}",
                action="Every order is refused until an operator switches to PAPER and back to"
                " LIVE through the gates (heliosctl mode paper, then heliosctl mode live).",
            ))  # fmt: skip

        await self.store.write(tx)  # fmt: skip

    def connection_changed(self, mode: Mode, stream: str, up: bool, detail: str) -> None:
        self.notifications.publish(
            {"type": "connection", "mode": str(mode), "stream": stream, "up": up, "detail": detail}
        )
        closing = self._closing()
        if up or not closing:  # our own shutdown closing a stream is not news
            journal.event("stream_restored" if up else "stream_lost", mode=mode, stream=stream,
                          detail=detail)  # fmt: skip
        if mode is not Mode.LIVE or stream != "account":
            return
        if up:
            since = self._down_since.pop(stream, None)
            event = connection_restored_event(
                venue="VALR", stream=stream, detail=detail,
                down_for=utcnow() - since if since is not None else None,
            )  # fmt: skip
        elif closing:
            return  # our own shutdown closed it
        else:
            self._down_since.setdefault(stream, utcnow())
            event = connection_lost_event(venue="VALR", stream=stream, detail=detail, mode=mode)
        enqueue_fn = self.notifications.record
        self._spawn(self.store.write(lambda c: enqueue_fn(c, event)))

    async def mode_changed(self, mode: Mode) -> None:
        self.notifications.publish({"type": "mode", **mode_json(self.store.mode_state())})
