"""Bulk fill injection for benchmarks: many real trades, generated as fast as possible.

Each injected fill is a small market BUY that executes against the market maker's best ask
at the time of the call (the market maker is treated as deep enough for all of them and is
not re-quoted). Each one is real in every way a client can observe: a Filled market order
(status lookups work), an account trade with a taker fee in the base currency (trade
history works), moved balances, a public trade, and on the account stream one
NEW_ACCOUNT_TRADE followed by one BALANCE_UPDATE per currency. ORDER_PROCESSED and
ORDER_STATUS_UPDATE are *not* sent for injected fills: benchmarks measure the fill path.

The account must hold enough quote currency for all ``n`` fills beforehand.

Speed: the messages are rendered from templates made by serialising ``wire``'s own
payloads once with placeholder values, so they are byte-identical to what the general
path would send (a test checks this) at a fraction of the cost of ``json`` per message,
and they reach the sockets in batches rather than one call per message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from heliosd.sim import wire
from heliosd.sim.accounts import Balance
from heliosd.sim.matching import Exchange
from heliosd.sim.orders import FILLED, ZERO, Order, Trade
from heliosd.sim.wire import dec, dumps


class _Template:
    """A serialised message with ``@@name@@`` holes, filled positionally by a join.

    (``str.format_map`` re-parses a 450-character format string on every call; slicing
    the values into a pre-split list is several times cheaper.)
    """

    def __init__(self, message: dict[str, object], names: tuple[str, ...]) -> None:
        self._parts = dumps(message).split("@@")
        # The holes must appear in exactly the order callers pass values in.
        assert tuple(self._parts[1::2]) == names, (self._parts[1::2], names)

    def render(self, *values: str) -> str:
        parts = self._parts[:]
        parts[1::2] = values
        return "".join(parts)


BALANCE_HOLES = ("available", "reserved", "total", "updatedAt", "inRef", "inRef")


def _balance_template(currency: str, bal: Balance) -> _Template:
    message = wire.balance_update(currency, bal, Decimal(1))
    data = message["data"]
    for key, hole in (
        ("available", "available"),
        ("reserved", "reserved"),
        ("total", "total"),
        ("updatedAt", "updatedAt"),
        ("totalInReference", "inRef"),
        ("totalInReferenceWeighted", "inRef"),
    ):
        data[key] = f"@@{hole}@@"
    return _Template(message, BALANCE_HOLES)


def _trade_template(trade: Trade) -> _Template:
    message = wire.new_account_trade(trade)
    message["data"]["orderId"] = "@@orderId@@"
    message["data"]["id"] = "@@id@@"
    return _Template(message, ("orderId", "id"))


BATCH = 1024  # messages handed to the sockets per call: bounded memory, few calls


def inject_fills(
    exchange: Exchange, account_id: str, pair: str, n: int, quantity: Decimal
) -> list[str]:
    """Create ``n`` fills of ``quantity`` base each; return their trade ids in order."""
    market = exchange.markets[pair]
    spec = market.spec
    qty = quantity.quantize(spec.base_quantum, rounding=ROUND_DOWN)
    if n <= 0:
        return []
    if qty <= 0 or not market.mm_asks:
        raise ValueError(f"cannot inject fills of {quantity} {spec.base} on {pair}")
    price = market.mm_asks[0].price
    cost = qty * price
    fee = (qty * exchange.taker_rate).quantize(wire.currency_spec(spec.base).quantum, ROUND_HALF_UP)
    acct = exchange.add_account(account_id)
    quote_bal, base_bal = acct.balance(spec.quote), acct.balance(spec.base)
    if quote_bal.available < cost * n:
        raise ValueError(
            f"account {account_id} needs {dec(cost * n)} {spec.quote} available for {n} fills, "
            f"has {dec(quote_bal.available)}"
        )
    sink = exchange.sink
    wants = sink.wants_account(account_id)
    ref_base, ref_quote = exchange.reference_price(spec.base), exchange.reference_price(spec.quote)
    ids, orders, trades = exchange.ids, acct.orders, acct.trades
    now = datetime.now(UTC)
    stamp = wire.iso(now)
    net = qty - fee
    proto = Trade("", account_id, "", None, pair, "buy", price, qty, fee, spec.base, now, 0, False)
    trade_tpl = _trade_template(proto)
    base_tpl = _balance_template(spec.base, base_bal)
    quote_tpl = _balance_template(spec.quote, quote_bal)
    quote_bal.updated_at = base_bal.updated_at = now
    trade_ids: list[str] = []
    pending: list[str] = []
    for _ in range(n):
        order_id, trade_id = ids.uuid(), ids.uuid()
        orders[order_id] = Order(
            order_id=order_id,
            account_id=account_id,
            pair=pair,
            side="buy",
            kind="market",
            price=ZERO,
            original_quantity=qty,
            remaining=ZERO,
            time_in_force="IOC",
            post_only=False,
            customer_order_id=None,
            created_at=now,
            updated_at=now,
            status=FILLED,
            executed_quantity=qty,
            executed_quote=cost,
            executed_fee=fee,
            fee_currency=spec.base,
        )
        trades.append(
            Trade(
                trade_id,
                account_id,
                order_id,
                None,
                pair,
                "buy",
                price,
                qty,
                fee,
                spec.base,
                now,
                ids.sequence(),
                False,
            )
        )
        quote_bal.available -= cost
        base_bal.available += net
        trade_ids.append(trade_id)
        if wants:
            pending.append(trade_tpl.render(order_id, trade_id))
            pending.append(_render_balance(base_tpl, base_bal, ref_base, stamp))
            pending.append(_render_balance(quote_tpl, quote_bal, ref_quote, stamp))
            if len(pending) >= BATCH:
                sink.account_texts(account_id, pending)
                pending = []
    if pending:
        sink.account_texts(account_id, pending)
    # One public print summarising the burst keeps the tape and statistics honest without
    # flooding the trade stream with n NEW_TRADE messages.
    exchange.print_trade(pair, price, qty * n, "buy")
    return trade_ids


def _render_balance(tpl: _Template, bal: Balance, reference: Decimal, stamp: str) -> str:
    # Reserved is untouched by injected fills and the reference is often 1 (ZAR): reuse
    # strings rather than format the same Decimal twice.
    available = dec(bal.available)
    total = available if not bal.reserved else dec(bal.available + bal.reserved)
    in_reference = total if reference == 1 else dec((bal.available + bal.reserved) * reference)
    return tpl.render(available, dec(bal.reserved), total, stamp, in_reference, in_reference)
