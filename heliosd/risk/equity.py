"""The equity curve: snapshots of each mode's equity and the baselines the stops use.

A point holds ``equity``, ``peak`` (the flow-adjusted high-water mark the drawdown stop
measures from), ``day_start_equity`` and ``daily_pnl``, exactly as the monitor pass saw them:
:meth:`EquityRecorder.observe` is called with the pass's own snapshot, so the curve never
shows a figure the stops did not act on (no point while balances are unknown or a holding
has no price at all; those passes are skipped before the snapshot).

Points are written about once a minute per mode (``minute``) and after a fill batch
(``fill``), at most one per ``coalesce_s`` per mode: a burst of fills is one point with the
equity after it. Writing never blocks or fails an order: a point is queued on the store's
group-commit queue (:meth:`heliosd.store.Store.submit`) and not awaited; a failed write is
logged and the curve simply has a gap. Reads (``GET /api/equity``) use their own read-only
connection in a thread (WAL readers never wait for the writer, nor it for them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

from heliosd.core.protocols import LedgerSnapshot
from heliosd.core.types import Mode, utcnow
from heliosd.risk.ledger import decimal_text
from heliosd.store import Store

log = logging.getLogger(__name__)

# GET /api/equity answers at most this many points; a longer range is thinned evenly
# (every step-th point, always the newest), never cut to a window.
MAX_POINTS: Final = 10_000
PRUNE_EVERY_S: Final = 3600.0


def stamp(dt: datetime) -> str:
    """Fixed-width UTC text (microseconds always present): text order is time order."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def insert_point(conn: sqlite3.Connection, snap: LedgerSnapshot, kind: str) -> None:
    conn.execute(
        "INSERT INTO equity_points(mode, at, kind, equity, peak, day_start_equity, daily_pnl)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            str(snap.mode), stamp(snap.at), kind, decimal_text(snap.equity),
            decimal_text(snap.peak_equity), decimal_text(snap.day_start_equity),
            decimal_text(snap.daily_pnl),
        ),
    )  # fmt: skip


def prune(conn: sqlite3.Connection, before: datetime) -> int:
    return conn.execute("DELETE FROM equity_points WHERE at < ?", (stamp(before),)).rowcount


def load_points(
    conn: sqlite3.Connection, mode: Mode, since: datetime | None, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """``mode``'s points at or after ``since``, oldest first, thinned to ``max_points``."""
    low = "" if since is None else stamp(since)
    total = conn.execute(
        "SELECT count(*) FROM equity_points WHERE mode = ? AND at >= ?", (str(mode), low)
    ).fetchone()[0]
    # Every step-th point and the newest: at most max_points - 1 + 1.
    step = 1 if total <= max_points else math.ceil(total / (max_points - 1))
    rows = conn.execute(
        "SELECT at, kind, equity, peak, day_start_equity, daily_pnl FROM ("
        " SELECT *, row_number() OVER (ORDER BY at, id) AS n FROM equity_points"
        " WHERE mode = ? AND at >= ?)"
        " WHERE (n - 1) % ? = 0 OR n = ? ORDER BY n",
        (str(mode), low, step, total),
    ).fetchall()
    points = [
        {"at": r[0], "equity": r[2], "peak": r[3], "day_start_equity": r[4],
         "daily_pnl": r[5], "kind": r[1]}
        for r in rows
    ]  # fmt: skip
    return {"mode": str(mode), "points": points, "total": total, "step": step}


class EquityRecorder:
    """Decides when a monitor pass's snapshot becomes a stored point (module docstring).

    ``kick(mode)`` asks for a monitor pass (the service's coalesced ``_ledger_changed``):
    :meth:`run` uses it when a minute point or a held-back fill point is due and no pass
    came by on its own (a quiet market).
    """

    def __init__(
        self,
        store: Store,
        *,
        retention_days: int,
        kick: Callable[[Mode], None],
        interval_s: float = 60.0,
        coalesce_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._kick = kick
        self.retention = timedelta(days=retention_days)
        self.interval_s = interval_s
        self.coalesce_s = coalesce_s
        self._clock = clock
        self._last: dict[Mode, float] = {}
        self._fills: set[Mode] = set()
        self.written = 0  # points committed (for tests and /metrics)
        self.failed = 0

    def note_fill(self, mode: Mode, _fill: object = None) -> None:
        """A fill was applied to ``mode``'s ledger (a sink's fill listener)."""
        self._fills.add(mode)

    def observe(self, snap: LedgerSnapshot) -> None:
        """Called by every monitor pass with its snapshot; queues a point when one is due.

        Never raises: the monitor pass that protects the account must not fail on the curve.
        """
        try:
            self._observe(snap)
        except RuntimeError as exc:  # the store closed under a late pass (shutdown)
            self.failed += 1
            log.warning("equity point for %s not recorded: %s", snap.mode, exc)
        except Exception:
            self.failed += 1
            log.exception("equity point for %s not recorded", snap.mode)

    def _observe(self, snap: LedgerSnapshot) -> None:
        mode, now = snap.mode, self._clock()
        last = self._last.get(mode)
        fill = mode in self._fills
        due = last is None or now - last >= self.interval_s
        if fill and (last is None or now - last >= self.coalesce_s):
            due = True
        if not due:
            return
        self._last[mode] = now
        self._fills.discard(mode)
        future = self._store.submit(
            partial(insert_point, snap=snap, kind="fill" if fill else "minute")
        )
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.written += 1
        else:
            self.failed += 1
            log.error("equity point not stored: %s", exc)

    def _due(self, mode: Mode, now: float) -> bool:
        last = self._last.get(mode)
        if last is None:
            return False  # no pass yet (balances unknown): nothing to record
        if mode in self._fills:
            return now - last >= self.coalesce_s
        return now - last >= self.interval_s

    async def run(self, tick_s: float = 1.0) -> None:
        """Prune at start and hourly; ask for a pass when a point is due."""
        pruned_at = float("-inf")
        while True:
            try:
                now = self._clock()
                if now - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = now
                    await self.prune()
                for mode in Mode:
                    if self._due(mode, now):
                        self._kick(mode)
            except Exception:
                log.exception("equity curve pass failed")
            await asyncio.sleep(tick_s)

    async def prune(self) -> int:
        before = utcnow() - self.retention
        deleted = await self._store.write(partial(prune, before=before))
        if deleted:
            log.info("equity curve: %d points older than %s deleted", deleted, stamp(before))
        return deleted

    async def points(self, mode: Mode, since: datetime | None) -> dict[str, Any]:
        answer = await self._store.read_aside(partial(load_points, mode=mode, since=since))
        answer["since"] = None if since is None else stamp(since)
        return answer
