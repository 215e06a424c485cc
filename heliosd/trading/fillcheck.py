"""Fill completeness: every quantity the venue says an order filled is backed by stored fills.

A venue's word that an order filled comes two ways: its fills (one per trade, keyed by trade
id) and its order statuses (a running executed total). Either may be lost on the way (a
dropped or garbled stream message, a reconnect's catch-up that looks back only from the
fill watermark): an order then shows ``filled_quantity`` 0.003 from its status while its
stored fills sum to 0.002, and the ledger misses a fill (its cost basis, its fee). This
check finds such gaps and closes them from the venue's trade history.

When it runs (LIVE): every ``valr.reconcile_interval_s`` (:meth:`FillCheck.run`), and
``settle_s`` after an order reaches a terminal state with a filled quantity
(:meth:`FillCheck.order_finished`, a :class:`~heliosd.trading.sink.VenueSink` listener).

One pass:

1. Read the recent orders (created within ``window``, or still open) whose row's
   ``filled_quantity`` (the larger of the venue's reported executed quantity and the sum of
   the stored fills, :mod:`heliosd.trading.orders`) is above the sum of their stored fills.
   Orders touched in the last ``settle_s`` are left for the next pass: the stream may still
   be delivering their fills (the venue's order of a status and its trade is undocumented).
2. Fetch the account's trade history from the earliest such order's creation (less
   :data:`CLOCK_MARGIN`: the order's time is ours, the trades' the venue's), paged until
   complete (the client's ``trade_history`` never stops at a page limit), and keep the fills
   of those orders not stored yet, matched by exchange order id (VALR's trade-history rows
   carry ``orderId`` and no customerOrderId: VALR's API reference). No fixed look-back: a fill
   cannot be older than its order.
3. Take a balance snapshot first (the venue's balances already show those fills; the
   ledger counts a fill traded before the snapshot as shown, so the late fill is not also
   held "unsettled" on top of them), then feed each fill through the sink's normal
   ``on_fill`` path, wait until they are committed, and take one more snapshot (a VALR
   clock ahead of ours may stamp a trade after the first). Fills are exactly-once by trade id
   (``UNIQUE(mode, trade_id)``): the stream's own message arriving later is a no-op.
4. Each order whose gap is now closed is logged at WARNING (order, quantities) and counted
   in :attr:`FillCheck.gaps_closed` (``GET /api/health``: ``fill_gaps_closed``). A gap the
   history cannot close yet (the venue's views lag) is logged once and tried again on
   the next pass.

A pass that fails (venue unreachable) is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from heliosd import store as st
from heliosd.core.errors import HeliosError
from heliosd.core.protocols import ExchangeClient
from heliosd.core.types import ZERO, Fill, Mode, utcnow
from heliosd.store import Store, iso, parse_dt
from heliosd.trading import orders as od
from heliosd.trading.sink import VenueSink

log = logging.getLogger(__name__)

# How long after its last change an order's fills may still be on their way.
SETTLE_S = 2.0
# Orders created this long ago or less are checked (open ones always).
WINDOW = timedelta(hours=24)
# Trades are fetched from this long before the earliest gapped order was created: its
# creation time is our clock, a trade's time the venue's (LIVE orders are refused while the
# two differ by more than valr.max_clock_skew_s, a few seconds).
CLOCK_MARGIN = timedelta(seconds=60)
# A pass reads at most this many orders (newest first).
MAX_ORDERS = 5000

# Constant texts, never built from input ({} becomes the placeholders: store.select_in).
_RECENT = (
    "SELECT id, pair, exchange_order_id, customer_order_id, filled_quantity, state,"
    " created_at, updated_at FROM orders WHERE mode = ? AND (created_at >= ?"
    " OR state IN ('new','sent','placed','partially_filled')) AND filled_quantity != '0'"
    " ORDER BY id DESC LIMIT ?"
)
_FILLED_OF = "SELECT order_id, quantity FROM fills WHERE order_id IN ({})"
_BY_ID = (
    "SELECT id, pair, exchange_order_id, customer_order_id, filled_quantity, state,"
    " created_at, updated_at FROM orders WHERE mode = ? AND id IN ({})"
)


@dataclass(frozen=True, slots=True)
class Gap:
    """An order whose venue-reported filled quantity its stored fills do not reach."""

    order_id: int
    pair: str
    exchange_order_id: str | None
    customer_order_id: str
    filled: Decimal  # the row's filled_quantity
    stored: Decimal  # the sum of its stored fills
    created_at: datetime
    updated_at: str

    @property
    def missing(self) -> Decimal:
        return self.filled - self.stored


def find_gaps(
    conn: sqlite3.Connection,
    mode: Mode,
    *,
    created_since: datetime,
    order_ids: Collection[int] | None = None,
) -> list[Gap]:
    """The gaps among ``mode``'s recent orders (or among ``order_ids``), oldest first."""
    if order_ids is None:
        rows = conn.execute(_RECENT, (str(mode), iso(created_since), MAX_ORDERS)).fetchall()
    else:
        rows = st.select_in(conn, _BY_ID, sorted(order_ids), (str(mode),))
    rows = [r for r in rows if Decimal(r[4]) > 0]
    if not rows:
        return []
    stored: dict[int, Decimal] = {}
    # Summed here, not with SQL SUM(): SQLite would add the Decimal texts as floats.
    for order_id, quantity in st.select_in(conn, _FILLED_OF, sorted(r[0] for r in rows)):
        stored[order_id] = stored.get(order_id, ZERO) + Decimal(quantity)
    gaps = [
        Gap(r[0], r[1], r[2], r[3], Decimal(r[4]), stored.get(r[0], ZERO), parse_dt(r[6]), r[7])
        for r in rows
        if Decimal(r[4]) > stored.get(r[0], ZERO)
    ]
    return sorted(gaps, key=lambda g: g.order_id)


class FillCheck:
    """Finds and closes fill gaps of one mode's orders (see the module docstring)."""

    def __init__(
        self,
        *,
        sink: VenueSink,
        store: Store,
        client: Callable[[], ExchangeClient],
        settle_s: float = SETTLE_S,
        window: timedelta = WINDOW,
    ) -> None:
        self._sink = sink
        self._store = store
        self._client = client
        self.mode = sink.mode
        self.settle_s = settle_s
        self.window = window
        self.gaps_closed = 0  # since start (GET /api/health: fill_gaps_closed)
        self._lock = asyncio.Lock()  # one pass at a time
        self._soon: asyncio.Task[None] | None = None
        self._finished: set[int] = set()  # orders ended, to be checked after settle_s
        self._reported: set[int] = set()  # gaps not closable yet, already logged

    # ------------------------------------------------------------------ when

    def attach(self) -> None:
        """Check ``settle_s`` after each of the sink's orders reaches a terminal state."""
        self._sink.finished_listeners.append(self.order_finished)

    def order_finished(self, row: Mapping[str, Any]) -> None:
        """An order row reached a terminal state: check it ``settle_s`` from now (one task
        checks every order that ended meanwhile; one ending during its check, or touched
        again before its settle time, is checked in its next round)."""
        if Decimal(row["filled_quantity"]) <= 0:
            return
        self._finished.add(row["id"])
        if self._soon is None or self._soon.done():
            self._soon = asyncio.get_running_loop().create_task(self._check_later())

    async def _check_later(self) -> None:
        while self._finished:
            await asyncio.sleep(self.settle_s)
            ids, self._finished = self._finished, set()
            await self._guarded(ids)

    async def run(self, interval_s: float) -> None:
        """A pass every ``interval_s`` until cancelled; a failed pass never ends the loop."""
        while True:
            await asyncio.sleep(interval_s)
            await self._guarded(None)

    async def close(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._soon

    async def _guarded(self, order_ids: Collection[int] | None) -> None:
        try:
            await self.check(order_ids)
        except HeliosError as exc:
            log.warning("fill check (%s): %s", self.mode, exc.message)
        except Exception:
            log.exception("fill check (%s) failed", self.mode)

    # ------------------------------------------------------------------ what

    async def check(self, order_ids: Collection[int] | None = None) -> int:
        """One pass over the recent orders (or only ``order_ids``); returns the number of
        gaps it closed."""
        async with self._lock:
            return await self._check(order_ids)

    async def _check(self, order_ids: Collection[int] | None) -> int:
        await self._sink.drain()  # fills received but not committed are not gaps
        mode, since = self.mode, utcnow() - self.window
        gaps = await self._store.read(
            lambda c: find_gaps(c, mode, created_since=since, order_ids=order_ids)
        )
        settled = iso(utcnow() - timedelta(seconds=self.settle_s))
        if order_ids is not None:  # touched again since it ended: its own next round
            self._finished.update(g.order_id for g in gaps if g.updated_at > settled)
        gaps = [g for g in gaps if g.updated_at <= settled]
        if not gaps:
            return 0
        by_exchange_id = {g.exchange_order_id: g for g in gaps if g.exchange_order_id}
        for g in gaps:
            if not g.exchange_order_id:
                self._report(g, "it has no exchange order id to find its trades by")
        if not by_exchange_id:
            return 0
        client = self._client()
        start = min(g.created_at for g in by_exchange_id.values()) - CLOCK_MARGIN
        history = await client.trade_history(since=start)
        theirs = [f for f in history if f.exchange_order_id in by_exchange_id]
        stored = await self._store.read(
            lambda c: st.stored_trade_ids(c, mode, [f.trade_id for f in theirs])
        )
        missing = [f for f in theirs if f.trade_id not in stored]
        if missing:
            # VALR's balances already show these trades. A snapshot first makes the ledger
            # take each as shown, not as unsettled on top of them (heliosd.risk.ledger,
            # "Unsettled fills": a fill traded before the snapshot arrived is in it); one
            # more after covers a trade stamped after the first by a VALR clock ahead of ours.
            await self._sink.on_balances(await client.balances(), snapshot=True)
            for fill in missing:
                await self._sink.on_fill(fill)
            await self._sink.drain()
            await self._sink.on_balances(await client.balances(), snapshot=True)
        fed: dict[int, list[Fill]] = {}
        for fill in missing:
            gap = by_exchange_id[fill.exchange_order_id or ""]
            fed.setdefault(gap.order_id, []).append(fill)
        ids = {g.order_id for g in by_exchange_id.values()}
        left = await self._store.read(
            lambda c: find_gaps(c, mode, created_since=since, order_ids=ids)
        )
        still = {g.order_id for g in left}
        closed = 0
        for gap in by_exchange_id.values():
            fills = fed.get(gap.order_id, [])
            if gap.order_id in still:
                now = next(g for g in left if g.order_id == gap.order_id)
                self._report(now, f"VALR's trade history shows {len(fills)} more fill(s)")
            elif fills:
                closed += 1
                self._reported.discard(gap.order_id)
                log.warning(
                    "fill gap closed: order %d (%s, %s, VALR order %s) filled %s at VALR but its"
                    " stored fills summed to %s; %d missing fill(s) of %s fetched from VALR's"
                    " trade history (%s)",
                    gap.order_id, gap.customer_order_id, gap.pair, gap.exchange_order_id,
                    od.plain(gap.filled), od.plain(gap.stored), len(fills),
                    od.plain(sum((f.quantity for f in fills), ZERO)),
                    ", ".join(f.trade_id for f in fills),
                )  # fmt: skip
        self.gaps_closed += closed
        return closed

    def _report(self, gap: Gap, why: str) -> None:
        """A gap not closed in this pass: WARNING the first time, DEBUG on later passes."""
        first = gap.order_id not in self._reported
        self._reported.add(gap.order_id)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "fill gap not closed yet: order %d (%s, %s) filled %s at VALR, stored fills sum"
            " to %s (%s missing); %s; trying again on the next pass",
            gap.order_id, gap.customer_order_id, gap.pair, od.plain(gap.filled),
            od.plain(gap.stored), od.plain(gap.missing), why,
        )  # fmt: skip
