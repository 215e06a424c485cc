"""The account ledger: deposits, withdrawals, transfers, and ``/v1/account/transactionhistory``.

Money moved without a trade goes through :func:`move_funds`: it changes the balance, pushes
the BALANCE_UPDATE on the account stream and records a :class:`Transaction`, in one
synchronous step. The history route lists those rows together with one row per account
trade (``LIMIT_BUY``, ``MARKET_SELL``, ...), newest first, the way VALR's ledger mixes them.

Row shape (VALR's Postman examples, corroborated by two client libraries' type lists):
``{"transactionType": {"type", "description"}, "debitCurrency", "debitValue",
"creditCurrency", "creditValue", "feeCurrency", "feeValue", "eventAt", "additionalInfo",
"id"}``, the debit/credit/fee keys present only when they apply. Sim choices where VALR is
silent: a trade row's id is its trade id; ``creditValue`` of a buy is the gross base
quantity, the fee is given separately; ``limit`` defaults to 100 and may be at most 200
(VALR's documented maximum); an unknown ``beforeId`` is 400 -11.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.context import int_param, json_response, state_of, time_param
from heliosd.sim.errors import invalid_request
from heliosd.sim.matching import Exchange
from heliosd.sim.orders import ZERO, Trade

# VALR's transaction types for money moved without a trade, by direction.
DESCRIPTIONS = {
    "FIAT_DEPOSIT": "Fiat Deposit",
    "FIAT_WITHDRAWAL": "Fiat Withdrawal",
    "BLOCKCHAIN_RECEIVE": "Receive",
    "BLOCKCHAIN_SEND": "Send",
    "INTERNAL_TRANSFER": "Internal Transfer",
    "LIMIT_BUY": "Limit Buy",
    "LIMIT_SELL": "Limit Sell",
    "MARKET_BUY": "Market Buy",
    "MARKET_SELL": "Market Sell",
}
# The admin kinds (heliosd's Flow kinds) and the VALR type each records by default.
KIND_TYPES = {
    "deposit": "FIAT_DEPOSIT",
    "withdrawal": "FIAT_WITHDRAWAL",
    "transfer_in": "INTERNAL_TRANSFER",
    "transfer_out": "INTERNAL_TRANSFER",
}
MAX_LIMIT = 200


@dataclass(slots=True, frozen=True)
class Transaction:
    """One ledger row that is not a trade. ``amount`` is signed: positive into the account;
    ``fee`` (>= 0, same currency) is charged on top of a debit."""

    tx_id: str
    account_id: str
    type: str
    currency: str
    amount: Decimal
    fee: Decimal
    at: datetime


def move_funds(
    exchange: Exchange,
    account_id: str,
    kind: str,
    currency: str,
    amount: Decimal,
    *,
    fee: Decimal = ZERO,
    tx_type: str | None = None,
) -> Transaction:
    """Deposit (``deposit``, ``transfer_in``) or withdraw (``withdrawal``,
    ``transfer_out``) ``amount`` > 0; raises ValueError naming the problem (nothing moves)."""
    if kind not in KIND_TYPES:
        raise ValueError(f"kind must be one of {', '.join(KIND_TYPES)}, not {kind!r}")
    if amount <= 0 or fee < 0:
        raise ValueError("amount must be positive and fee not negative")
    if not (currency.isascii() and currency.isalnum() and currency.isupper()):
        raise ValueError(f"currency must be an upper-case code like ZAR, not {currency!r}")
    acct = exchange.add_account(account_id)
    now = datetime.now(UTC)
    incoming = kind in ("deposit", "transfer_in")
    if incoming:
        acct.credit(currency, amount, now)
    else:
        if acct.balance(currency).available < amount + fee:
            raise ValueError(
                f"account {account_id} has {wire.dec(acct.balance(currency).available)} "
                f"{currency} available, cannot withdraw {wire.dec(amount + fee)}"
            )
        acct.debit(currency, amount + fee, now)
    tx = Transaction(
        exchange.ids.uuid(), account_id, tx_type or KIND_TYPES[kind], currency,
        amount if incoming else -amount, fee, now,
    )  # fmt: skip
    acct.transactions.append(tx)
    exchange.emit_balance(acct, currency)
    return tx


def transaction_row(tx: Transaction) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transactionType": {"type": tx.type, "description": DESCRIPTIONS.get(tx.type, tx.type)}
    }
    if tx.amount < 0:
        row["debitCurrency"], row["debitValue"] = tx.currency, wire.dec(-tx.amount)
    else:
        row["creditCurrency"], row["creditValue"] = tx.currency, wire.dec(tx.amount)
    if tx.fee:
        row["feeCurrency"], row["feeValue"] = tx.currency, wire.dec(tx.fee)
    row["eventAt"] = wire.iso(tx.at)
    row["additionalInfo"] = {}
    row["id"] = tx.tx_id
    return row


def trade_row(exchange: Exchange, trade: Trade) -> dict[str, Any]:
    spec = exchange.specs.get(trade.pair)
    base, quote = (spec.base, spec.quote) if spec else (trade.pair[:3], trade.pair[3:])
    order = exchange.accounts[trade.account_id].orders.get(trade.order_id)
    kind = "MARKET" if order is not None and order.kind == "market" else "LIMIT"
    tx_type = f"{kind}_{trade.side.upper()}"
    cost = wire.dec(trade.price * trade.quantity)
    qty = wire.dec(trade.quantity)
    row: dict[str, Any] = {
        "transactionType": {"type": tx_type, "description": DESCRIPTIONS[tx_type]}
    }
    if trade.side == "buy":
        row.update(debitCurrency=quote, debitValue=cost, creditCurrency=base, creditValue=qty)
    else:
        row.update(debitCurrency=base, debitValue=qty, creditCurrency=quote, creditValue=cost)
    if trade.fee:
        row.update(feeCurrency=trade.fee_currency, feeValue=wire.dec(trade.fee))
    row["eventAt"] = wire.iso(trade.traded_at)
    row["additionalInfo"] = {
        "costPerCoin": wire.dec(trade.price),
        "currencyPairSymbol": trade.pair,
        "orderId": trade.order_id,
    }
    row["id"] = trade.trade_id
    return row


def _ledger(exchange: Exchange, account_id: str) -> list[tuple[datetime, str, Any]]:
    """(time, type, record) for every transaction and trade, newest first."""
    acct = exchange.add_account(account_id)
    items: list[tuple[datetime, str, Any]] = [(tx.at, tx.type, tx) for tx in acct.transactions]
    for trade in acct.trades:
        order = acct.orders.get(trade.order_id)
        kind = "MARKET" if order is not None and order.kind == "market" else "LIMIT"
        items.append((trade.traded_at, f"{kind}_{trade.side.upper()}", trade))
    items.sort(key=lambda item: item[0])  # stable: same-instant rows keep their order
    items.reverse()
    return items


async def transaction_history(request: web.Request) -> web.Response:
    """``skip``, ``limit`` (<= 200), ``transactionTypes`` (comma list), ``currency``,
    ``startTime``/``endTime`` (inclusive), ``beforeId`` (only older rows)."""
    state = state_of(request)
    ctx, _ = await state.authed(request)
    skip = int_param(request, "skip", 0, 10_000_000)
    limit = int_param(request, "limit", 100, MAX_LIMIT)
    start, end = time_param(request, "startTime"), time_param(request, "endTime")
    types_param = request.query.get("transactionTypes")
    types = {t.strip() for t in types_param.split(",") if t.strip()} if types_param else None
    currency = request.query.get("currency")
    items = _ledger(state.exchange, ctx.account_id)
    before_id = request.query.get("beforeId")
    if before_id is not None:
        index = next((i for i, (_, _, rec) in enumerate(items) if _id_of(rec) == before_id), None)
        if index is None:
            raise invalid_request()
        items = items[index + 1 :]
    page: list[dict[str, Any]] = []
    for at, tx_type, record in items:
        if end is not None and at > end:
            continue
        if start is not None and at < start:
            break  # newest first: the rest is older still
        if types is not None and tx_type not in types:
            continue
        row = (
            transaction_row(record)
            if isinstance(record, Transaction)
            else trade_row(state.exchange, record)
        )
        if currency is not None and currency not in (
            row.get("debitCurrency"),
            row.get("creditCurrency"),
        ):
            continue
        if skip:
            skip -= 1
            continue
        page.append(row)
        if len(page) >= limit:
            break
    return json_response(page)


def _id_of(record: Transaction | Trade) -> str:
    return record.tx_id if isinstance(record, Transaction) else record.trade_id


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/account/transactionhistory", transaction_history)
