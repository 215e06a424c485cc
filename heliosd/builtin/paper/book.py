"""The paper venue's order book and event queue: resting orders and their ids, finished
orders kept for lookups, fills, and the events queued for the sink (see
``heliosd.builtin.paper``, section Events)."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from heliosd.builtin.paper.funds import _FILLED, _Ledger
from heliosd.core.types import (
    ZERO,
    Balance,
    Fill,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    Side,
)

if TYPE_CHECKING:
    from heliosd.core.protocols import ExchangeEvents, MarketView

# Finished orders kept for order_status lookups; older ones are forgotten (the store has them).
MAX_FINISHED_ORDERS = 10_000

_Delivery = Callable[["ExchangeEvents"], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _Resting:
    """An open (resting) limit order and the funds it holds."""

    exchange_order_id: str
    customer_order_id: str | None
    info: PairInfo
    side: Side
    price: Decimal
    quantity: Decimal
    remaining: Decimal
    created_at: datetime
    reserved_currency: str
    reserved_amount: Decimal
    # Built once: a resting order only ever fills in full, so its OpenOrder never changes
    # and open-order snapshots (one per book change) need not rebuild it.
    cached: OpenOrder | None = None

    def open_order(self) -> OpenOrder:
        if self.cached is not None:
            return self.cached
        self.cached = OpenOrder(
            exchange_order_id=self.exchange_order_id,
            pair=self.info.symbol,
            side=self.side,
            type=OrderType.LIMIT,
            price=self.price,
            original_quantity=self.quantity,
            remaining_quantity=self.remaining,
            customer_order_id=self.customer_order_id,
            created_at=self.created_at,
        )
        return self.cached

    def status(self, state: OrderState, now: datetime, reason: str = "") -> OrderStatus:
        executed = self.quantity - self.remaining
        return OrderStatus(
            pair=self.info.symbol,
            state=state,
            exchange_order_id=self.exchange_order_id,
            customer_order_id=self.customer_order_id,
            original_quantity=self.quantity,
            remaining_quantity=self.remaining,
            executed_quantity=executed,
            average_price=self.price if executed else None,
            failed_reason=reason,
            updated_at=now,
        )


# Ids need uniqueness, not secrecy: a private Mersenne Twister seeded from os.urandom gives
# 128 random bits in ~0.1 us, where uuid.uuid4() costs ~4 us (it builds a UUID object).
_ids = random.Random()
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _uuid4_hex() -> str:
    """32 hex digits of a random (version 4) UUID, as ``uuid.uuid4().hex``."""
    return f"{(_ids.getrandbits(128) & _V4_CLEAR) | _V4_SET:032x}"


def _uuid4() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())``."""
    h = _uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Book(_Ledger):
    """Open and finished orders, fills and the event queue; set up by ``PaperExchange``."""

    _market: MarketView
    _open: dict[str, _Resting]
    _open_by_customer: dict[str, _Resting]
    _resting: dict[str, dict[str, _Resting]]
    _finished: OrderedDict[str, OrderStatus]
    _finished_by_customer: dict[str, str]
    _fills: list[Fill]
    _trade_ids: set[str]
    _outbox: deque[_Delivery | None]
    _wakeup: asyncio.Event

    def _push(self, item: _Delivery | None) -> None:
        self._outbox.append(item)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _cancel(self, order: _Resting, now: datetime) -> None:
        funds = self._funds[order.reserved_currency]
        funds.reserved -= order.reserved_amount
        funds.available += order.reserved_amount
        self._remove_open(order)
        status = order.status(OrderState.CANCELLED, now)
        self._finish(status)
        self._push(lambda ev: ev.on_order_status(status))

    def _add_open(self, order: _Resting) -> None:
        self._open[order.exchange_order_id] = order
        if order.customer_order_id is not None:
            self._open_by_customer[order.customer_order_id] = order
        self._resting.setdefault(order.info.symbol, {})[order.exchange_order_id] = order

    def _remove_open(self, order: _Resting) -> None:
        del self._open[order.exchange_order_id]
        if order.customer_order_id is not None:
            self._open_by_customer.pop(order.customer_order_id, None)
        book = self._resting[order.info.symbol]
        del book[order.exchange_order_id]
        if not book:
            del self._resting[order.info.symbol]

    def _find_open(
        self, exchange_order_id: str | None, customer_order_id: str | None
    ) -> _Resting | None:
        if exchange_order_id is not None:
            return self._open.get(exchange_order_id)
        if customer_order_id is not None:
            return self._open_by_customer.get(customer_order_id)
        return None

    @staticmethod
    def _open_state(order: _Resting) -> OrderState:
        return (
            OrderState.PARTIALLY_FILLED if order.remaining < order.quantity else OrderState.PLACED
        )

    def _finish(self, status: OrderStatus) -> None:
        eid = status.exchange_order_id
        assert eid is not None
        self._finished[eid] = status
        self._finished.move_to_end(eid)
        if status.customer_order_id is not None:
            self._finished_by_customer[status.customer_order_id] = eid
        while len(self._finished) > MAX_FINISHED_ORDERS:
            old_eid, old = self._finished.popitem(last=False)
            cid = old.customer_order_id
            if cid is not None and self._finished_by_customer.get(cid) == old_eid:
                del self._finished_by_customer[cid]

    def _record_fill(self, fill: Fill, status: OrderStatus) -> None:
        self._fills.append(fill)
        self._trade_ids.add(fill.trade_id)
        self._finish(status)
        self._push(lambda ev: ev.on_fill(fill))
        self._push(lambda ev: ev.on_order_status(status))

    def _remember_fill(self, fill: Fill) -> None:
        """Fold a restored fill into its order's status (so lookups survive a restart)."""
        eid = fill.exchange_order_id
        if eid is None:
            return
        prior = self._finished.get(eid)
        executed = fill.quantity + (prior.executed_quantity if prior else ZERO)
        value = fill.quantity * fill.price
        if prior is not None and prior.average_price is not None:
            value += prior.executed_quantity * prior.average_price
        self._finish(
            OrderStatus(
                pair=fill.pair,
                state=_FILLED,
                exchange_order_id=eid,
                customer_order_id=fill.customer_order_id,
                original_quantity=executed,
                remaining_quantity=ZERO,
                executed_quantity=executed,
                average_price=value / executed,
                updated_at=fill.traded_at,
            )
        )

    def _open_snapshot(self) -> list[OpenOrder]:
        return [order.open_order() for order in self._open.values()]

    def _push_balances(self, currencies: Iterable[str]) -> None:
        funds = self._funds
        rows = [Balance(c, funds[c].available, funds[c].reserved) for c in currencies]
        self._push(lambda ev: ev.on_balances(rows, snapshot=False))

    def _push_book_change(self, currencies: Iterable[str]) -> None:
        snapshot = self._open_snapshot()
        self._push(lambda ev: ev.on_open_orders(snapshot))
        self._push_balances(sorted(currencies))
