"""What the pre-LIVE gates (and ``heliosctl doctor``) see of the running system, and what a
switch to LIVE reports as left over on the venue."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from heliosd.core.errors import AuthError
from heliosd.core.protocols import GateContext
from heliosd.core.types import Mode
from heliosd.trading import orders as od

if TYPE_CHECKING:
    from heliosd.core.config import Settings
    from heliosd.core.protocols import ExchangeClient
    from heliosd.risk.ledger import Ledger
    from heliosd.store import Store
    from heliosd.trading.marketdata import MarketData


class StoreOrders:
    """The stored open orders, as :class:`GateContext` offers them to gates."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def open_orders(self, mode: Mode | None = None) -> Sequence[Mapping[str, Any]]:
        return await self._store.read(
            lambda c: od.list_orders(c, open_only=True, limit=10_000, mode=mode)
        )


def gate_context(
    *,
    settings: Settings,
    clients: Mapping[Mode, ExchangeClient],
    ledgers: Mapping[Mode, Ledger],
    market: MarketData,
    store: Store,
    engine_running: Callable[[], bool],
) -> GateContext:
    """The gates' view, taken now (each switch and each doctor run takes a fresh one)."""
    return GateContext(
        settings=settings, live=clients[Mode.LIVE], paper=clients[Mode.PAPER],
        paper_ledger=ledgers[Mode.PAPER], live_ledger=ledgers[Mode.LIVE],
        market=market, orders=StoreOrders(store), pairs=market.pairs(),
        engine_running=engine_running(),
    )  # fmt: skip


async def live_leftovers(client: ExchangeClient, ledger: Ledger) -> dict[str, Any]:
    """The LIVE venue's open orders and the LIVE positions (shown when switching to LIVE)."""
    try:
        orders = await client.open_orders()
    except AuthError:
        orders = []
    return {
        "orders": [{"pair": o.pair, "side": str(o.side), "remaining": str(o.remaining_quantity),
                    "exchange_order_id": o.exchange_order_id} for o in orders],
        "positions": ledger.positions_json(),
    }  # fmt: skip
