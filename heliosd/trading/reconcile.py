"""VenueSink's reconciliation: the local open orders against the venue's open-order list.

A base class of :class:`heliosd.trading.sink.VenueSink`: a local order the venue no longer
lists is looked up (failed once the venue still does not know it after a grace), and a listed
order whose placement answer was lost is adopted. Logs as ``heliosd.trading.sink``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from heliosd.core.errors import HeliosError
from heliosd.core.protocols import ExchangeClient
from heliosd.core.types import Mode, OpenOrder, OrderState, OrderStatus, utcnow
from heliosd.store import Store, iso
from heliosd.trading import orders as od

log = logging.getLogger("heliosd.trading.sink")

# Reconciliation leaves orders updated this recently alone (they may be in flight).
RECENT_S = 2.0
# An order VALR does not know is failed only once it is this old (clients may say otherwise:
# ValrClient.not_found_grace_s): until then the venue's views may simply not show it yet.
DEFAULT_NOT_FOUND_GRACE_S = 20.0


class SinkReconciliation:
    """Open-order reconciliation of :class:`heliosd.trading.sink.VenueSink` (a base class)."""

    # Set by VenueSink.__init__ (heliosd.trading.sink).
    mode: Mode
    _store: Store
    _counters: od.OrderCounters
    _client: Callable[[], ExchangeClient]
    _reconcile_task: asyncio.Task[None] | None

    if TYPE_CHECKING:  # defined by VenueSink

        async def on_order_status(self, status: OrderStatus) -> None: ...

    async def on_open_orders(self, orders: Sequence[OpenOrder]) -> None:
        """Local orders the venue no longer lists are looked up (in the background)."""
        if self._reconcile_task is not None and not self._reconcile_task.done():
            return
        self._reconcile_task = asyncio.get_running_loop().create_task(self._reconcile(orders))

    async def _reconcile(self, orders: Sequence[OpenOrder]) -> None:
        # An order touched in the last RECENT_S may be on its way: the venue's list need not
        # show it yet, so it is skipped. Skipped must not mean forgotten: an order stored
        # just before a crash (still `new`) is only this young when the restarted daemon
        # first reconciles, and nothing else would ever look at it again. So while any order
        # was skipped (or its status lookup failed), look again a little later, with a fresh
        # snapshot of the venue.
        # An order the venue no longer lists has usually just finished, and the account
        # stream is already saying how (ORDER_STATUS_UPDATE comes before the venue's new
        # list): the first pass only notes such orders, and the next, RECENT_S later, looks
        # up those still open here. After an emergency stop of 500 orders that is no status
        # lookup instead of 500 (bench/emergency_stop.py). Deferred must not mean dropped:
        # if the fresh snapshot cannot be read, the deferred lookups run against the one
        # we have (an order absent from it and older than RECENT_S was not open then).
        look_up = False
        while await self._reconcile_once(orders, look_up=look_up):
            deferred, look_up = not look_up, True
            await asyncio.sleep(RECENT_S)
            try:
                orders = await self._client().open_orders()
            except HeliosError as exc:
                log.warning("reconcile: venue open orders unknown: %s", exc)
                if not deferred:
                    return

    async def _reconcile_once(self, orders: Sequence[OpenOrder], *, look_up: bool = True) -> bool:
        """One pass over the local open orders; True when one of them was too young to judge,
        or was left for the next pass (``look_up`` false), or its status could not be read
        (so another pass is due).

        A local order the venue lists by its customer id while ours has no exchange id yet
        (its placement's answer was lost, or the daemon died before it came) is adopted:
        the listing is applied as its status, so both sides name the same order (I4)."""
        exchange_ids, customer_ids = od.open_orders_by_id(orders)
        by_customer = {o.customer_order_id: o for o in orders if o.customer_order_id}
        mode = self.mode
        cutoff = iso(utcnow() - timedelta(seconds=RECENT_S))
        local = await self._store.read(
            lambda c: od.list_orders(c, open_only=True, limit=1000, mode=mode)
        )
        skipped = False
        for row in local:
            if row["exchange_order_id"] in exchange_ids or row["customer_order_id"] in customer_ids:
                listed = by_customer.get(row["customer_order_id"])
                placing = row["customer_order_id"] in self._counters.placing
                if listed is not None and not row["exchange_order_id"] and not placing:
                    await self.on_order_status(listed_status(listed))
                continue
            if row["updated_at"] > cutoff or row["customer_order_id"] in self._counters.placing:
                skipped = True
                continue  # being placed or just sent: the venue's list may not show it yet
            if not look_up:
                skipped = True
                continue
            try:
                status = await self._client().order_status(
                    row["pair"], exchange_order_id=row["exchange_order_id"],
                    customer_order_id=row["customer_order_id"],
                )  # fmt: skip
            except HeliosError as exc:
                log.warning("reconcile: status of order %s unknown: %s", row["id"], exc)
                skipped = True
                continue
            if status is None:
                if OrderState(row["state"]) not in (OrderState.NEW, OrderState.SENT):
                    continue
                grace = self._not_found_grace_s()
                if row["created_at"] > iso(utcnow() - timedelta(seconds=grace)):
                    # VALR's views lag its engine, and a request may still be on its way:
                    # not known yet is not never placed. Look again until the grace is over.
                    skipped = True
                    continue
                status = OrderStatus(
                    pair=row["pair"], state=OrderState.FAILED,
                    customer_order_id=row["customer_order_id"],
                    failed_reason=f"not known to the venue {grace:g} s after it was created",
                )  # fmt: skip
            await self.on_order_status(status)
        return skipped

    def _not_found_grace_s(self) -> float:
        # The client says how long its venue may take to show an order (ValrClient's tuning).
        grace = getattr(self._client(), "not_found_grace_s", DEFAULT_NOT_FOUND_GRACE_S)
        return float(grace)

    async def reconcile_open_orders(self) -> None:
        """Compare the local open orders with the venue's list now (the periodic pass, see
        heliosd.trading.sweep); nothing to do while no local order is open or a pass is running."""
        if self._reconcile_task is not None and not self._reconcile_task.done():
            return
        mode = self.mode
        local = await self._store.read(
            lambda c: od.list_orders(c, open_only=True, limit=1, mode=mode)
        )
        if local:
            await self.on_open_orders(await self._client().open_orders())


def listed_status(order: OpenOrder) -> OrderStatus:
    """What a venue's open-order listing says of one order, as a status to apply."""
    executed = max(order.original_quantity - order.remaining_quantity, Decimal(0))
    return OrderStatus(
        pair=order.pair,
        state=OrderState.PARTIALLY_FILLED if executed > 0 else OrderState.PLACED,
        exchange_order_id=order.exchange_order_id,
        customer_order_id=order.customer_order_id,
        original_quantity=order.original_quantity,
        remaining_quantity=order.remaining_quantity,
        executed_quantity=executed,
    )
