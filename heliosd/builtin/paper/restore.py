"""Restart of the paper venue: balances and open orders rebuilt from the fills and orders the
core stored (see ``heliosd.builtin.paper``, section Restart)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

import heliosd.core.types as htypes
from heliosd.builtin.paper.book import _Book, _Resting
from heliosd.builtin.paper.funds import _BUY, _LIMIT
from heliosd.builtin.paper.texts import INSUFFICIENT_BALANCE, INVALID_ORDER, UNSUPPORTED_PAIR
from heliosd.core.errors import HeliosError
from heliosd.core.types import (
    ZERO,
    Fill,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    Side,
)

if TYPE_CHECKING:
    from heliosd.core.protocols import ExchangeEvents

# One logger for the whole venue, whichever module logs: operators (and tests) filter on
# "heliosd.builtin.paper", the name it had before the venue was split into modules.
logger = logging.getLogger("heliosd.builtin.paper")

# VALR's quote currencies, longest first so "USDC" wins over a hypothetical "DC"; used only
# to read a pair symbol that is not loaded yet (see PaperExchange._restore_pair).
_QUOTE_CURRENCIES = ("USDC", "USDT", "ZAR", "BTC", "ETH", "EUR", "USD")


class _Restoring(_Book):
    """``restore`` and its helpers; the state is set up by ``PaperExchange.__init__``."""

    _events: ExchangeEvents | None

    def restore(self, fills: Iterable[Fill], open_orders: Iterable[OpenOrder]) -> None:
        """Continue where the last run stopped. Call once, before :meth:`start`.

        Balances become starting balances plus every fill (a fill's fee is taken from its
        ``fee_currency``; a trade id seen twice counts once). Open LIMIT orders rest again and
        re-reserve their funds; one that can no longer rest (unknown pair, not a limit order,
        funds missing) is reported CANCELLED with the reason once started, never silently
        dropped. Raises HeliosError for a fill of an unknown pair: balances would be wrong.
        """
        if self._events is not None:
            raise HeliosError("PaperExchange.restore() must be called before start()")
        for fill in sorted(fills, key=lambda f: f.traded_at):
            if fill.trade_id in self._trade_ids:
                continue
            info = self._restore_pair(fill.pair)
            if info is None:
                raise HeliosError(
                    f"cannot restore paper fill {fill.trade_id}: unknown pair {fill.pair}"
                )
            notional = fill.quantity * fill.price
            if Side(fill.side) is _BUY:
                self._add(info.quote, -notional)
                self._add(info.base, fill.quantity)
            else:
                self._add(info.base, -fill.quantity)
                self._add(info.quote, notional)
            self._add(fill.fee_currency, -fill.fee)
            self._fills.append(fill)
            self._trade_ids.add(fill.trade_id)
            self._remember_fill(fill)
        for order in open_orders:
            if not order.exchange_order_id:
                # Never acknowledged by this venue (the daemon stopped between sending and
                # recording): the core's reconciliation fails it when the venue does not
                # list it, which is the truth.
                logger.info(
                    "paper order %s was never placed; not restored", order.customer_order_id
                )
                continue
            if order.exchange_order_id in self._open:
                continue
            self._restore_open(order)
        for currency, funds in self._funds.items():
            if funds.available < 0:
                logger.warning(
                    "paper balance of %s is negative after restore (%s): starting balances "
                    "changed since these fills?",
                    currency,
                    funds.available,
                )

    def _restore_pair(self, symbol: str) -> PairInfo | None:
        """The pair's info, or a provisional one read from the symbol.

        The core restores before the venue's pair list is loaded, so a pair beyond the
        defaults is not known yet; its base and quote are still plain in the symbol (VALR
        concatenates them), and that is all a restored fill needs. Restored orders of such a
        pair keep the provisional info: fees in base decimals 8 and quote cents.
        """
        info = self._market.pair(symbol)
        if info is not None:
            return info
        for quote in _QUOTE_CURRENCIES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                logger.info(
                    "paper restore: %s not loaded yet; read as %s/%s",
                    symbol,
                    symbol[: -len(quote)],
                    quote,
                )
                return PairInfo(
                    symbol=symbol,
                    base=symbol[: -len(quote)],
                    quote=quote,
                    min_base=ZERO,
                    max_base=Decimal("Infinity"),
                    min_quote=ZERO,
                    max_quote=Decimal("Infinity"),
                    tick_size=Decimal(1),
                    base_decimals=8,
                )
        return None

    def _restore_open(self, order: OpenOrder) -> None:
        info = self._restore_pair(order.pair)
        try:
            side = Side(order.side)
            is_limit = OrderType(order.type) is _LIMIT
        except ValueError:
            is_limit = False
        reason = ""
        if info is None:
            reason = UNSUPPORTED_PAIR
        elif not is_limit or order.price is None or order.remaining_quantity <= 0:
            reason = INVALID_ORDER.strip()
        else:
            currency, reserve = self._reservation(info, side, order.remaining_quantity, order.price)
            funds = self._funds.get(currency)
            if funds is None or funds.available < reserve:
                reason = INSUFFICIENT_BALANCE
            else:
                funds.available -= reserve
                funds.reserved += reserve
                self._add_open(
                    _Resting(
                        exchange_order_id=order.exchange_order_id,
                        customer_order_id=order.customer_order_id,
                        info=info,
                        side=side,
                        price=order.price,
                        quantity=order.original_quantity,
                        remaining=order.remaining_quantity,
                        created_at=order.created_at or htypes.utcnow(),
                        reserved_currency=currency,
                        reserved_amount=reserve,
                    )
                )
                return
        logger.warning(
            "paper order %s (%s) cannot rest again after restart: %s",
            order.exchange_order_id,
            order.pair,
            reason,
        )
        status = OrderStatus(
            pair=order.pair,
            state=OrderState.CANCELLED,
            exchange_order_id=order.exchange_order_id,
            customer_order_id=order.customer_order_id,
            original_quantity=order.original_quantity,
            remaining_quantity=order.remaining_quantity,
            executed_quantity=order.original_quantity - order.remaining_quantity,
            failed_reason=reason,
            updated_at=htypes.utcnow(),
        )
        self._finish(status)
        self._push(lambda ev: ev.on_order_status(status))
