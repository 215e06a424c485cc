"""VenueSink: what an exchange client's streams say, applied to the store, ledger and market.

One sink per mode (paper, live). A fill is queued for the group-committing writer without
waiting in line (the stream keeps reading: one commit per fill would cap it near 4-5k
fills/s), and applied to the ledger only in its commit's completion, in commit order: a fill
counts once it is durable, and a fill already stored (``UNIQUE(mode, trade_id)``) is a no-op.

Fills and order statuses that arrive in the same loop turn go to the store as a few jobs, in
the order they came: each run of fills is one job (``orders.apply_fills``: a few statements
for the whole run), each run of statuses another. The store runs jobs in the order they are
queued, so the stream's order is kept (``orders`` counts a fill once whichever of it and its
status comes first; the ledger and listeners see fills in the venue's order). If a job
fails, nothing of it was stored and each of its items is submitted again on its own, so a
bad fill or status fails alone. The stream never waits for a commit; it waits only when
MAX_PENDING items are queued (backpressure). Reconciling the local open orders with the
venue's list: :mod:`heliosd.trading.reconcile` (a base class of VenueSink).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.protocols import Event, ExchangeClient
from heliosd.core.types import (
    Balance,
    Fill,
    Mode,
    OrderState,
    OrderStatus,
    Quote,
    utcnow,
)
from heliosd.notify import journal
from heliosd.notify.notices import fills_event
from heliosd.store import Store, iso
from heliosd.trading import orders as od
from heliosd.trading.reconcile import DEFAULT_NOT_FOUND_GRACE_S as DEFAULT_NOT_FOUND_GRACE_S
from heliosd.trading.reconcile import RECENT_S as RECENT_S
from heliosd.trading.reconcile import SinkReconciliation
from heliosd.trading.reconcile import listed_status as listed_status

if TYPE_CHECKING:
    from heliosd.risk.ledger import Ledger, LedgerError
    from heliosd.trading.marketdata import MarketData

log = logging.getLogger(__name__)

# Outbox rows for several events, inside the caller's transaction (service._enqueue_many_fn).
EnqueueFn = Callable[[sqlite3.Connection, Sequence[Event]], Any]

# A fill stream may outrun the disk for a moment; past this many queued fills and statuses
# the stream waits for the writer (backpressure) instead of growing memory without bound.
MAX_PENDING = 50_000
# From this many cancellations in one committed batch, the journal says them in one line.
CANCELS_PER_LINE = 10


def _plural(item: Fill | OrderStatus) -> str:
    return "fills" if isinstance(item, Fill) else "order statuses"


def _describe(item: Fill | OrderStatus) -> str:
    if isinstance(item, Fill):
        return f"fill {item.trade_id}"
    return f"order status {item.customer_order_id or item.exchange_order_id} ({item.state})"


class VenueSink(SinkReconciliation):
    """Implements :class:`heliosd.core.protocols.ExchangeEvents` for one mode."""

    def __init__(
        self,
        *,
        mode: Mode,
        store: Store,
        ledger: Ledger,
        market: MarketData,
        counters: od.OrderCounters,
        client: Callable[[], ExchangeClient],
        enqueue: EnqueueFn | None,
        notify_trades: bool,
        publish: Callable[[dict[str, Any]], None],
        on_ledger_change: Callable[[Mode], None],
        on_connection_change: Callable[[Mode, str, bool, str], None],
        watermark: datetime | None = None,
        publish_lazy: Callable[[str, Callable[[], dict[str, Any]]], None] | None = None,
        on_ledger_error: Callable[[Mode, LedgerError], None] | None = None,
    ) -> None:
        self.mode = mode
        self._store = store
        self._ledger = ledger
        self._market = market
        self._counters = counters
        self._client = client
        self._enqueue = enqueue
        self._notify_trades = notify_trades
        self._publish = publish
        # (kind, build): the hub builds a fill's event only when a reader takes it (none, or
        # every reader's budget spent, in a burst: then building it would be wasted).
        self._publish_lazy = publish_lazy or (lambda _kind, build: publish(build()))
        self._on_ledger_change = on_ledger_change
        self._on_connection_change = on_connection_change
        self._on_ledger_error = on_ledger_error
        # LIVE: each in-flight fill's currencies' reported totals (and the movement already
        # attributed) as it arrived; the ledger settles at commit only what a report since
        # then shows (heliosd.risk.ledger, "Unsettled fills").
        self._live = mode is Mode.LIVE
        self._fill_marks: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}
        self._cancels_journaled = journal.Once()
        self._watermark = watermark
        self._pending = 0  # fills and statuses received and not yet committed (or failed)
        self._batch: list[Fill | OrderStatus] = []  # received this loop turn, not submitted
        self._drained = asyncio.Event()
        self._drained.set()
        self._reconcile_task: asyncio.Task[None] | None = None
        self.fills_applied = 0
        # Called with each new fill once it is committed and applied to the ledger (after
        # fills_applied moves). For measurement (bench/fills.py); keep listeners trivial:
        # they run inside the commit's completion, on the loop.
        self.fill_listeners: list[Callable[[Fill], None]] = []
        # Called with an order's row whenever a status leaves it terminal (filled,
        # cancelled, failed; repeats included): the fill check (heliosd.trading.fillcheck).
        self.finished_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.streams: dict[str, tuple[bool, str, str]] = {}  # stream -> (up, detail, since)

    # ------------------------------------------------------------------ fills

    async def on_fill(self, fill: Fill) -> None:
        """Queue ``fill``; it is applied once committed (see :meth:`_flush`)."""
        if self._live:
            info = self._ledger.pair_info(fill.pair)
            if info is not None:
                mark = self._ledger.report_mark
                self._fill_marks[fill.trade_id] = {
                    info.base: mark(info.base),
                    info.quote: mark(info.quote),
                }
        await self._queue(fill)

    async def _queue(self, item: Fill | OrderStatus) -> None:
        if self._pending >= MAX_PENDING:
            await self._drained.wait()
        self._pending += 1
        self._drained.clear()
        self._batch.append(item)
        if len(self._batch) == 1:
            # Everything the stream delivers in this loop turn (one socket read holds
            # hundreds of messages) joins a few store jobs: one savepoint, one future and one
            # completion per run instead of per message (bench/fills.py, emergency_stop.py).
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        items, self._batch = self._batch, []
        start = 0
        for i in range(1, len(items) + 1):
            if i == len(items) or type(items[i]) is not type(items[start]):
                self._submit(items[start:i])  # a run of fills, or of statuses
                start = i

    def _submit(self, items: Sequence[Fill | OrderStatus]) -> None:
        """One store job for a run of fills or of statuses (never mixed)."""
        tx = self._fills_tx(items) if isinstance(items[0], Fill) else self._statuses_tx(items)
        try:
            fut = self._store.submit(tx)
        except RuntimeError as exc:  # the store is closed: shutting down
            log.error("%d %s not stored: %s", len(items), _plural(items[0]), exc)
            self._settled(len(items))
            return
        fut.add_done_callback(lambda f: self._committed(items, f))

    def _fills_tx(self, fills: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Any]]:
        mode = self.mode
        enqueue = self._enqueue if self._notify_trades else None

        def tx(conn: sqlite3.Connection) -> list[dict[str, Any] | None]:
            outcomes = od.apply_fills(conn, mode, fills)
            if enqueue is not None:
                new = [
                    (fill, outcome["order"]["id"] if outcome["order"] else None)
                    for fill, outcome in zip(fills, outcomes, strict=True) if outcome is not None
                ]  # fmt: skip
                if new:
                    # One notification per batch: a burst is one digest (notices.fills_event).
                    enqueue(conn, [fills_event(mode, new)])
            return outcomes

        return tx

    def _statuses_tx(self, statuses: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Any]]:
        mode = self.mode
        return lambda conn: od.apply_statuses(conn, mode, statuses)

    def _committed(self, items: Sequence[Fill | OrderStatus], fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and len(items) > 1:
            # The batch rolled back as a whole (its savepoint): nothing of it is stored. Each
            # item is tried again as its own job, so one bad fill or status fails alone, as
            # it would have without batching. They commit, and are applied, after the jobs
            # queued meanwhile: the ledger still follows commit order.
            log.warning("a batch of %d %s was not stored (%s); storing one by one",
                        len(items), _plural(items[0]), exc)  # fmt: skip
            for item in items:
                self._submit([item])  # still pending: each retry settles its own item
            return
        try:
            if fut.cancelled():
                return
            if exc is not None:
                log.error("%s not stored: %s", _describe(items[0]), exc)
                return
            if isinstance(items[0], Fill):
                self._fills_done(items, fut.result())  # type: ignore[arg-type]
            else:
                rows = fut.result()
                cancels = self._batch_cancels(rows)
                for row in rows:
                    self._status_applied(row, journal_cancel=cancels is None)
                if cancels:
                    journal.event(
                        "orders_cancelled", mode=self.mode, count=len(cancels),
                        orders=",".join(str(r["id"]) for r in cancels),
                        cids=",".join(str(r.get("customer_order_id")) for r in cancels),
                    )  # fmt: skip
        finally:
            self._settled(len(items))

    def _fills_done(self, fills: Sequence[Fill], outcomes: list[dict[str, Any] | None]) -> None:
        applied = False
        for fill, outcome in zip(fills, outcomes, strict=True):
            if outcome is None:
                self._fill_marks.pop(fill.trade_id, None)  # kept for nothing otherwise
                continue  # already stored: a replay, or a late message the fill check beat
            try:
                self._applied(fill, outcome)
            except Exception:  # one fill the ledger refuses must not drop the others
                log.exception("fill %s stored but not applied", fill.trade_id)
            applied = True
        if applied:
            self._on_ledger_change(self.mode)

    def _settled(self, n: int) -> None:
        self._pending -= n
        if self._pending == 0:
            self._drained.set()

    def _applied(self, fill: Fill, outcome: dict[str, Any]) -> None:
        # A fill the ledger cannot read is stored all the same (it is the venue's fact) and
        # reported, never silently skipped: the service trips ledger_error.
        error = self._ledger.apply_or_record(fill, seen=self._fill_marks.pop(fill.trade_id, None))
        if error is not None and self._on_ledger_error is not None:
            self._on_ledger_error(self.mode, error)
        self.fills_applied += 1
        order = outcome.get("order")
        journal.event("order_filled", mode=self.mode, trade=fill.trade_id, pair=fill.pair,
                      side=fill.side, quantity=fill.quantity, price=fill.price, fee=fill.fee,
                      fee_currency=fill.fee_currency, order=order["id"] if order else None,
                      cid=fill.customer_order_id)  # fmt: skip
        for listener in self.fill_listeners:
            listener(fill)
        if self._watermark is None or fill.traded_at > self._watermark:
            self._watermark = fill.traded_at
        if order is not None:
            if error is None:
                self._counters.fill_applied(self.mode, order["id"], fill.quantity)
            self._counters.track(order)
        self._publish_lazy("fill", lambda: {
            "type": "fill", "mode": str(self.mode), "trade_id": fill.trade_id,
            "pair": fill.pair, "side": str(fill.side), "price": str(fill.price),
            "quantity": str(fill.quantity), "fee": str(fill.fee),
            "fee_currency": fill.fee_currency, "traded_at": iso(fill.traded_at),
            "order_id": order["id"] if order else None,
        })  # fmt: skip

    async def drain(self) -> None:
        """Wait until every queued fill and status is committed and applied."""
        await self._drained.wait()

    def fill_watermark(self) -> datetime | None:
        return self._watermark

    # ------------------------------------------------------------------ orders

    async def on_order_status(self, status: OrderStatus) -> None:
        """Queue ``status`` behind the fills and statuses received before it; the order row
        moves once committed (the stream does not wait for the disk: 500 cancellations after
        an emergency stop are a few commits, not 500 in a row)."""
        await self._queue(status)

    async def apply_order_status(self, status: OrderStatus) -> dict[str, Any] | None:
        """:meth:`on_order_status`, returning once it is committed: the order row after it
        (None for an order not stored here)."""
        self._flush()  # what came before goes first
        mode = self.mode
        row = await self._store.write(lambda c: od.apply_status(c, mode, status))
        self._status_applied(row)
        return row

    def _batch_cancels(self, rows: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]] | None:
        """The cancellations of a committed batch, when there are enough of them to journal
        as one line (CANCELS_PER_LINE): after an emergency stop of 500 orders that is one
        line, not 500 of ~50 us each on the event loop while the stop verifies the venue.
        None: journal each one on its own line."""
        first: dict[int, dict[str, Any]] = {}  # by order: a batch may report one twice
        for r in rows:
            if (
                r is not None
                and r["state"] == "cancelled"
                and r["id"] not in self._cancels_journaled
            ):
                first.setdefault(r["id"], r)
        if len(first) < CANCELS_PER_LINE:
            return None
        for order_id in first:
            self._cancels_journaled.add(order_id)
        return list(first.values())

    def _status_applied(self, row: dict[str, Any] | None, *, journal_cancel: bool = True) -> None:
        if row is not None:
            self._counters.track(row)
            if (journal_cancel and row["state"] == "cancelled"
                    and self._cancels_journaled.add(row["id"])):  # fmt: skip
                journal.order("order_cancelled", row, filled=row.get("filled_quantity"))
            self._publish({"type": "order", "mode": str(self.mode), "order": row})
            if self.finished_listeners and OrderState(row["state"]).is_terminal:
                for listener in self.finished_listeners:
                    listener(row)

    # ------------------------------------------------------------------ balances, prices

    async def on_balances(self, balances: Sequence[Balance], *, snapshot: bool) -> None:
        if self.mode is Mode.LIVE:
            self._ledger.set_balances(balances, snapshot=snapshot)
            self._on_ledger_change(self.mode)

    async def on_quote(self, quote: Quote) -> None:
        self._market.update(quote)

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        previous = self.streams.get(stream)
        self.streams[stream] = (up, detail, iso(utcnow()))
        # The first "up" is the normal start, not news; a first "down" is (never connected).
        if (previous is None and not up) or (previous is not None and previous[0] != up):
            self._on_connection_change(self.mode, stream, up, detail)
