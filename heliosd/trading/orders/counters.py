"""OrderCounters: the in-memory order counts risk rules read, fed by every order row change
(:meth:`OrderCounters.track`), and the router's reservations made before a row exists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from heliosd.core.types import Mode, OrderIntent, OrderState

if TYPE_CHECKING:
    from heliosd.risk.account import AccountRisk


class OrderCounters:
    """Cheap counts for risk rules (implements heliosd.core.protocols.OrderStats), and the one
    place every order row change passes through (:meth:`track`): it feeds each mode's
    account risk model (``accounts``), whose reserved exposure is kept from these rows."""

    def __init__(self, window: timedelta = timedelta(hours=1)) -> None:
        # Mode -> heliosd.risk.account.AccountRisk (the service wires them; empty: none).
        self.accounts: dict[Mode, AccountRisk] = {}
        self._provisional = 0  # ids of reservations made before a row exists: -1, -2, ...
        self._recent: deque[tuple[datetime, Mode]] = deque()
        self._open: dict[tuple[Mode, str], set[int]] = {}
        self._window = window
        # customerOrderIds whose placement is under way in this process (the router adds and
        # removes them): reconciliation leaves these to the placer.
        self.placing: set[str] = set()

    def sent(self, mode: Mode, at: datetime) -> None:
        self._recent.append((at, mode))
        cutoff = at - self._window
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def track(self, order: Mapping[str, Any]) -> None:
        mode = Mode(order["mode"])
        key = (mode, order["pair"])
        ids = self._open.setdefault(key, set())
        if OrderState(order["state"]).is_open:
            ids.add(order["id"])
        else:
            ids.discard(order["id"])
        account = self.accounts.get(mode)
        if account is not None:
            account.track_order(order)

    def reserve(self, mode: Mode, intent: OrderIntent, quantity: Decimal) -> Callable[[], None]:
        """Reserve an order's exposure now, before its row is stored; returns the release.

        For the router: between an order's evaluation and its stored row being tracked the
        order must already count, or another order evaluated meanwhile (while the first one
        waits for its commit) would not see it. Call the release once the stored row has
        been tracked (or the order was refused); it is idempotent.
        """
        self._provisional -= 1
        row = {
            "id": self._provisional, "mode": str(mode), "pair": intent.pair,
            "side": str(intent.side), "type": str(intent.type), "quantity": str(quantity),
            "price": None if intent.price is None else str(intent.price), "state": "new",
            "filled_quantity": "0",
        }  # fmt: skip
        account = self.accounts.get(mode)
        if account is None:
            return _nothing
        account.track_order(row)

        def release() -> None:
            account.track_order({**row, "state": str(OrderState.REJECTED)})

        return release

    def fill_applied(self, mode: Mode, order_id: int, quantity: Decimal) -> None:
        """The ledger of ``mode`` applied a fill of ``order_id`` (before the order's new row
        is tracked): the reservation moves from the order to the ledger's holdings."""
        account = self.accounts.get(mode)
        if account is not None:
            account.exposure.fill_applied(order_id, quantity)

    def orders_since(self, since: datetime, mode: Mode | None = None) -> int:
        return sum(1 for at, m in reversed(self._recent)
                   if at >= since and (mode is None or m is mode))  # fmt: skip

    def open_orders(self, pair: str | None = None, mode: Mode | None = None) -> int:
        return sum(
            len(ids) for (m, p), ids in self._open.items()
            if (pair is None or p == pair) and (mode is None or m is mode)
        )  # fmt: skip


def _nothing() -> None:
    return None
