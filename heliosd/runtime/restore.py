"""What a start rebuilds from the database before any venue is asked: each mode's ledger
and account risk model (fills, equity baselines, today's flows) and the open orders' counts.

Stored data never stops a start: a fill or an open order row that cannot be applied is
skipped, logged and reported through ``report`` (the ``ledger_error`` breaker, REDUCING
until a resume) instead of a crash loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

from heliosd import store as st
from heliosd.core.config import Settings
from heliosd.core.types import Fill, Mode, OpenOrder, OrderType, Side, utcnow
from heliosd.risk.account import AccountRisk
from heliosd.risk.flows import flows_value_since
from heliosd.risk.ledger import Ledger, LedgerError, day_start
from heliosd.store import Store, iso
from heliosd.store.marks import load_marks
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData

log = logging.getLogger(__name__)

Report = Callable[[Mode, Sequence[LedgerError]], Awaitable[None]]


async def restore_ledgers(
    store: Store,
    settings: Settings,
    market: MarketData,
    counters: od.OrderCounters,
    *,
    ledgers: dict[Mode, Ledger],
    accounts: dict[Mode, AccountRisk],
    report: Report,
) -> dict[Mode, list[Fill]]:
    """Fill ``ledgers`` and ``accounts`` (and the counters' accounts) for every mode; returns
    each mode's readable stored fills (the paper venue replays them)."""
    s = settings
    tz = s.risk.tz
    checked = {m: await store.read(partial(st.load_fills_checked, mode=m)) for m in Mode}
    fills = {m: checked[m][0] for m in Mode}
    for mode in Mode:
        ledger = Ledger(
            mode, s.risk.reference_currency, tz, market.pairs(), market,
            s.paper.starting_balances if mode is Mode.PAPER else None,
            traded=s.valr.pairs,
        )  # fmt: skip
        # One account risk model per mode (heliosd.risk.account): every order row change
        # reaches it through the counters, every reader takes its snapshot.
        accounts[mode] = counters.accounts[mode] = AccountRisk(
            mode, ledger, market, dust_value=s.risk.dust_value,
            max_quote_age_s=float(s.risk.max_quote_age_s),
        )  # fmt: skip
        # Stored data never stops a start: a fill the ledger cannot apply is skipped,
        # reported and trips ledger_error (REDUCING) instead of a crash loop.
        errors = ledger.rebuild(fills[mode])
        for trade_id, pair, why in checked[mode][1]:
            error = LedgerError(trade_id, pair, why)
            log.error("%s ledger: stored fill %s not applied: %s", mode, trade_id, why)
            ledger.errors.append(error)
            errors.append(error)
        if errors:
            await report(mode, errors)
        peak, day, day_equity = await store.read(partial(load_marks, mode=mode))
        ledger.restore_marks(peak, day, day_equity)
        today = utcnow().astimezone(ledger.tz).date()
        since = iso(day_start(today, ledger.tz))
        flowed = await store.read(partial(flows_value_since, mode=mode, since=since))
        ledger.equity_marks.flows_day, ledger.equity_marks.flows_today = today, flowed
        ledgers[mode] = ledger
    return fills


async def track_open_orders(
    store: Store,
    counters: od.OrderCounters,
    ledgers: Mapping[Mode, Ledger],
    *,
    report: Report,
) -> list[dict[str, Any]]:
    """Count every readable stored open order (risk limits, reserved exposure); returns them."""
    open_rows = await store.read(lambda c: od.list_orders(c, open_only=True, limit=100_000))
    # An open order row that does not parse (a mode spelled by hand, a quantity that is
    # not a number) is reported like an unreadable fill and left out, never raised.
    readable = []
    for row in open_rows:
        try:
            open_order(row)
            Mode(row["mode"])
            if not Decimal(row["quantity"]).is_finite():
                raise ValueError(f"quantity {row['quantity']!r} is not finite")
            counters.track(row)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            cid = str(row.get("customer_order_id"))
            mode = Mode.LIVE if str(row.get("mode", "")).upper() == "LIVE" else Mode.PAPER
            error = LedgerError(cid, str(row.get("pair")), f"stored order unreadable: {exc!r}")
            log.error("stored open order %s not tracked: %r", cid, exc)
            ledgers[mode].errors.append(error)
            await report(mode, [error])
            continue
        readable.append(row)
    return readable


def open_order(row: Mapping[str, Any]) -> OpenOrder:
    """A stored order row as the venue's :class:`OpenOrder` (the paper venue's replay)."""
    qty = Decimal(row["quantity"])
    return OpenOrder(
        exchange_order_id=row["exchange_order_id"] or "", pair=row["pair"],
        side=Side(row["side"]), type=OrderType(row["type"]),
        price=Decimal(row["price"]) if row["price"] else None, original_quantity=qty,
        remaining_quantity=qty - Decimal(row["filled_quantity"]),
        customer_order_id=row["customer_order_id"],
    )  # fmt: skip
