"""The engine's events: where they go (``EventSink``) and how the engine pushes them.

Account messages (balances with their ZAR value, open orders, a fresh socket's snapshot)
and the market push at the end of each operation (one book and one summary per changed
pair). ``ExchangeEvents`` is a base class of :class:`heliosd.sim.matching.Exchange`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from heliosd.sim import wire
from heliosd.sim.accounts import Account
from heliosd.sim.market import Market
from heliosd.sim.orders import ZERO


class EventSink(Protocol):
    """Where the engine's events go (the WebSocket hub, or nothing)."""

    def wants_account(self, account_id: str) -> bool: ...

    def account(self, account_id: str, message: dict[str, Any]) -> None: ...

    def account_texts(self, account_id: str, texts: list[str]) -> None:
        """Already serialised account messages, in order (the bulk-injection fast path)."""
        ...

    def wants_market(self, event: str, pair: str) -> bool: ...

    def market(self, event: str, pair: str, message: dict[str, Any]) -> None: ...


class NullSink:
    def wants_account(self, account_id: str) -> bool:
        return False

    def account(self, account_id: str, message: dict[str, Any]) -> None:
        return None

    def account_texts(self, account_id: str, texts: list[str]) -> None:
        return None

    def wants_market(self, event: str, pair: str) -> bool:
        return False

    def market(self, event: str, pair: str, message: dict[str, Any]) -> None:
        return None


class ExchangeEvents:
    """The event pushes of :class:`heliosd.sim.matching.Exchange` (one of its base classes)."""

    # Set by Exchange.__init__ (heliosd.sim.matching).
    sink: EventSink
    accounts: dict[str, Account]
    markets: dict[str, Market]
    _dirty: set[str]

    if TYPE_CHECKING:  # defined by Exchange

        def add_account(self, account_id: str = "0", label: str = "") -> Account: ...

    def reference_price(self, currency: str) -> Decimal:
        """Value of one unit in ZAR (for BALANCE_UPDATE's ``totalInReference``)."""
        if currency == wire.REFERENCE_CURRENCY:
            return Decimal(1)
        for market in self.markets.values():
            if market.spec.base == currency and market.spec.quote == wire.REFERENCE_CURRENCY:
                return market.mid
        return ZERO

    def flush(self) -> None:
        """Push one book and one summary per pair that changed during this operation."""
        for pair in sorted(self._dirty):
            market = self.markets[pair]
            if self.sink.wants_market("AGGREGATED_ORDERBOOK_UPDATE", pair):
                self.sink.market("AGGREGATED_ORDERBOOK_UPDATE", pair, wire.ws_order_book(market))
            if self.sink.wants_market("MARKET_SUMMARY_UPDATE", pair):
                self.sink.market("MARKET_SUMMARY_UPDATE", pair, wire.ws_market_summary(market))
        self._dirty.clear()

    # -- events -------------------------------------------------------------------------

    def emit_account(self, account_id: str, message: dict[str, Any]) -> None:
        if self.sink.wants_account(account_id):
            self.sink.account(account_id, message)

    def _emit(self, acct: Account, message: dict[str, Any]) -> None:
        if self.sink.wants_account(acct.account_id):
            self.sink.account(acct.account_id, message)

    def emit_balance(self, acct: Account, currency: str) -> None:
        """Push ``currency``'s balance row to the account's sockets (after a ledger move)."""
        self._emit_balance(acct, currency)

    def _emit_balance(self, acct: Account, currency: str) -> None:
        if self.sink.wants_account(acct.account_id):
            bal = acct.balance(currency)
            msg = wire.balance_update(currency, bal, self.reference_price(currency))
            self.sink.account(acct.account_id, msg)

    def _emit_open_orders(self, acct: Account) -> None:
        if self.sink.wants_account(acct.account_id):
            self.sink.account(acct.account_id, wire.open_orders_update(acct.open_orders.values()))

    def snapshot(self, account_id: str) -> list[dict[str, Any]]:
        """What a fresh account socket gets: one BALANCE_UPDATE per held asset, then the
        open orders."""
        acct = self.add_account(account_id)
        messages = [
            wire.balance_update(cur, bal, self.reference_price(cur))
            for cur, bal in acct.balances.items()
            if bal.total
        ]
        messages.append(wire.open_orders_update(acct.open_orders.values()))
        return messages
