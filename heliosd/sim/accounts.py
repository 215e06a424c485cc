"""Accounts, balances with reservations, and API keys.

A balance is ``available`` plus ``reserved``; placing a resting order moves funds from
available to reserved, fills consume the reservation and cancels release it. Nothing here
lets ``available`` go negative: the matching engine checks before it moves money.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from heliosd.sim.orders import ZERO, Order, ReceivedOrder, Trade

if TYPE_CHECKING:
    from heliosd.sim.transactions import Transaction


@dataclass(slots=True)
class Balance:
    available: Decimal = ZERO
    reserved: Decimal = ZERO
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    secret: str
    permissions: tuple[str, ...]
    account_id: str
    label: str
    added_at: datetime

    @property
    def is_sub_account(self) -> bool:
        # Keys issued on a subaccount are scoped to it; only primary ("0") keys impersonate.
        return self.account_id != "0"


class InsufficientFunds(Exception):
    """Raised when a debit or reservation would take ``available`` below zero."""


class Account:
    """One VALR account (primary ``"0"`` or a numeric-string subaccount id)."""

    def __init__(self, account_id: str, label: str = "") -> None:
        self.account_id = account_id
        self.label = label or ("Primary" if account_id == "0" else f"Sub {account_id}")
        self.balances: dict[str, Balance] = {}
        self.orders: dict[str, Order] = {}
        self.open_orders: dict[str, Order] = {}  # insertion order = creation order
        # customerOrderIds of open orders plus accepted-but-unprocessed v1 orders.
        self.live_customer_ids: dict[str, str] = {}
        self.trades: list[Trade] = []  # chronological
        self.received: list[ReceivedOrder] = []
        self.transactions: list[Transaction] = []  # deposits, withdrawals, transfers

    def balance(self, currency: str) -> Balance:
        bal = self.balances.get(currency)
        if bal is None:
            bal = self.balances[currency] = Balance()
        return bal

    def credit(self, currency: str, amount: Decimal, now: datetime) -> None:
        bal = self.balance(currency)
        bal.available += amount
        bal.updated_at = now

    def debit(self, currency: str, amount: Decimal, now: datetime) -> None:
        bal = self.balance(currency)
        if bal.available < amount:
            raise InsufficientFunds(currency)
        bal.available -= amount
        bal.updated_at = now

    def reserve(self, currency: str, amount: Decimal, now: datetime) -> None:
        bal = self.balance(currency)
        if bal.available < amount:
            raise InsufficientFunds(currency)
        bal.available -= amount
        bal.reserved += amount
        bal.updated_at = now

    def release(self, currency: str, amount: Decimal, now: datetime) -> None:
        bal = self.balance(currency)
        # A reservation can never be released twice; an assert here is a sim bug, not a
        # client error.
        assert bal.reserved >= amount, (currency, bal.reserved, amount)
        bal.reserved -= amount
        bal.available += amount
        bal.updated_at = now

    def customer_id_in_use(self, customer_order_id: str | None) -> bool:
        return customer_order_id is not None and customer_order_id in self.live_customer_ids

    def find_order(self, order_id: str | None, customer_order_id: str | None) -> Order | None:
        """By id, or by customerOrderId (open orders first, then the newest finished one)."""
        if order_id is not None:
            return self.orders.get(order_id)
        if customer_order_id is None:
            return None
        live = self.live_customer_ids.get(customer_order_id)
        if live is not None and live in self.orders:
            return self.orders[live]
        for order in reversed(self.orders.values()):
            if order.customer_order_id == customer_order_id:
                return order
        return None
