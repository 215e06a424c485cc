"""The essential pre-LIVE safety gates (their reasons: docs/api.md, "Switching the mode").

Each gate is an object with ``name`` and ``async check(ctx) -> GateResult``; the mode
orchestrator runs them all concurrently, each under ``risk.gate_timeout_s``, and treats an
exception or a timeout as a failure. The reason texts are contract (operators and scripts
match on them):

========================  ==================================================================
gate                      reason when it fails
========================  ==================================================================
``no_open_positions``     ``open positions exist (BTCZAR 0.0100 live; ETHZAR 0.5000 paper)``
``no_pending_orders``     ``pending orders exist (2 open on BTCZAR at VALR)``
``valr_credentials``      ``invalid VALR credentials (<VALR's message>)``,
                          ``API key lacks Trade permission``, ``API key has Withdraw permission``,
                          ``API key has Internal Transfer permission`` (any permission naming
                          a withdrawal or a transfer, and any in ``valr.refused_permissions``)
``risk_config_complete``  ``risk configuration incomplete (<what>)``
``clock_skew``            ``clock skew 3.2 s``
``venue_online``          ``VALR is read-only, not online``,
                          ``cannot check VALR status (<why>)``
``engine_stopped``        ``engine is running``
========================  ==================================================================

When a gate cannot find out (VALR unreachable, a pair without limits), it fails with a reason
saying so: not knowing is never a pass.

The gates that ask VALR (credentials, clock skew, venue status) live beside this module in
:mod:`heliosd.builtin.valr_gates`, and the gate names in :mod:`heliosd.builtin.gate_names`.
The positions, orders, risk-config and engine gates and the plugin's registration are here;
every name imported from this module before the split still is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal

from heliosd.builtin.gate_names import CLOCK as CLOCK
from heliosd.builtin.gate_names import CREDENTIALS as CREDENTIALS
from heliosd.builtin.gate_names import ENGINE as ENGINE
from heliosd.builtin.gate_names import GATE_NAMES, _cannot
from heliosd.builtin.gate_names import PENDING as PENDING
from heliosd.builtin.gate_names import POSITIONS as POSITIONS
from heliosd.builtin.gate_names import RISK_CONFIG as RISK_CONFIG
from heliosd.builtin.gate_names import VENUE as VENUE
from heliosd.builtin.valr_gates import (
    ClockSkew,
    ValrCredentials,
    VenueOnline,
    credentials_verdict,
    venue_message,
)
from heliosd.builtin.valr_gates import moves_funds_out as moves_funds_out
from heliosd.core.config import Settings, risk_config_problems
from heliosd.core.errors import HeliosError
from heliosd.core.protocols import Gate, GateContext
from heliosd.core.types import ZERO, GateResult, Mode, PairInfo, Side
from heliosd.plugins.hookspecs import hookimpl

_FOUR_PLACES = Decimal("0.0001")


def format_quantity(quantity: Decimal) -> str:
    """At least four decimals (``0.0100``), more when the quantity has them (``0.00012345``)."""
    if quantity == quantity.quantize(_FOUR_PLACES):
        return format(quantity.quantize(_FOUR_PLACES), "f")
    return format(quantity.normalize(), "f")


def _pair_info(ctx: GateContext, symbol: str) -> PairInfo | None:
    return ctx.pairs.get(symbol) or ctx.market.pair(symbol)


def worth_an_order(quantity: Decimal, info: PairInfo, mark: Decimal | None) -> bool:
    """True when ``|quantity|`` could make a valid order: at least min_base and min_quote.

    Less than that is dust: VALR would refuse to sell it, so it is not exposure an operator
    can or must close before going LIVE (refusing on it would block LIVE forever). Without a
    mark the quote minimum cannot be checked, so only the base minimum decides (the stricter
    reading: more quantities count as open).
    """
    size = abs(quantity)
    if size == 0 or size < info.min_base:
        return False
    return mark is None or size * mark >= info.min_quote


# --------------------------------------------------------------------------- positions


class NoOpenPositions:
    """No position worth a minimum order in the paper ledger nor on the live account.

    Live spot positions are balances of the base currency of each ``valr.pairs`` pair (not the
    reference currency); live futures positions count whatever their size.
    """

    name: str = POSITIONS

    async def check(self, ctx: GateContext) -> GateResult:
        found: list[str] = []
        unknown: set[str] = set()

        live_error = None
        try:
            balances = await ctx.live.balances()
            futures = await ctx.live.positions()
        except HeliosError as exc:
            live_error = f"cannot check live positions ({exc.message})"
        else:
            totals: dict[str, Decimal] = {}
            for b in balances:
                totals[b.currency] = totals.get(b.currency, ZERO) + b.total
            found += _spot(
                ctx,
                {s: totals.get(_base(ctx, s), ZERO) for s in ctx.settings.valr.pairs},
                "live",
                unknown,
            )
            for pos in futures:
                if pos.quantity:
                    qty = pos.quantity if pos.side is Side.BUY else -pos.quantity
                    found.append(f"{pos.pair} {format_quantity(qty)} live")

        found += _spot(ctx, dict(sorted(ctx.paper_ledger.positions().items())), "paper", unknown)

        problems = []
        if found:
            problems.append(f"open positions exist ({'; '.join(found)})")
        if live_error:
            problems.append(live_error)
        if unknown:
            problems.append(
                f"cannot check open positions (no pair limits for {', '.join(sorted(unknown))})"
            )
        if problems:
            return GateResult(self.name, False, "; ".join(problems))
        return GateResult(self.name, True)


def _base(ctx: GateContext, symbol: str) -> str:
    info = _pair_info(ctx, symbol)
    return info.base if info is not None else ""


def _spot(
    ctx: GateContext, holdings: Mapping[str, Decimal], where: str, unknown: set[str]
) -> list[str]:
    """``PAIR qty where`` for each holding worth an order; pairs without limits go to unknown.

    Pairs sharing a base currency (BTCZAR, BTCUSDC) hold the same coins: reported once.
    """
    reference = ctx.settings.risk.reference_currency
    out: list[str] = []
    seen: set[str] = set()
    for symbol in holdings:
        info = _pair_info(ctx, symbol)
        if info is None:
            unknown.add(symbol)
            continue
        if info.base == reference or info.base in seen:
            continue
        seen.add(info.base)
        qty = holdings[symbol]
        if worth_an_order(qty, info, ctx.market.mark(symbol)):
            out.append(f"{symbol} {format_quantity(qty)} {where}")
    return out


# --------------------------------------------------------------------------- orders


class NoPendingOrders:
    """No open order in the store (either mode), at the live venue, or at the paper venue.

    A stored LIVE order that the venue also lists is counted once, as the venue's.
    """

    name: str = PENDING

    async def check(self, ctx: GateContext) -> GateResult:
        venue = ctx.settings.valr.label
        try:
            live_open = await ctx.live.open_orders()
        except HeliosError as exc:
            return _cannot(self.name, f"open orders at {venue}", exc)
        try:
            paper_open = await ctx.paper.open_orders()
        except HeliosError as exc:
            return _cannot(self.name, "open paper orders", exc)
        stored = await ctx.orders.open_orders()

        counts: dict[tuple[str, str], int] = {}

        def count(where: str, pairs: Iterable[str]) -> None:
            for pair in pairs:
                counts[(pair, where)] = counts.get((pair, where), 0) + 1

        live_ids = _ids((o.exchange_order_id, o.customer_order_id) for o in live_open)
        paper_ids = _ids((o.exchange_order_id, o.customer_order_id) for o in paper_open)
        count(f"at {venue}", (o.pair for o in live_open))
        count("at the paper venue", (o.pair for o in paper_open))
        for row in stored:
            mode = str(row.get("mode", ""))
            known = live_ids if mode == Mode.LIVE else paper_ids
            ids = {row.get("exchange_order_id"), row.get("customer_order_id")} - {None, ""}
            if ids & known:
                continue
            count("stored as live" if mode == Mode.LIVE else "in paper", [str(row["pair"])])
        if not counts:
            return GateResult(self.name, True)
        parts = [f"{n} open on {pair} {where}" for (pair, where), n in sorted(counts.items())]
        return GateResult(self.name, False, f"pending orders exist ({'; '.join(parts)})")


def _ids(pairs: Iterable[tuple[str | None, str | None]]) -> set[str]:
    out: set[str] = set()
    for exchange_id, customer_id in pairs:
        out.update(i for i in (exchange_id, customer_id) if i)
    return out


# --------------------------------------------------------------------------- config


class RiskConfigComplete:
    name: str = RISK_CONFIG

    async def check(self, ctx: GateContext) -> GateResult:
        problems = risk_config_problems(ctx.settings)
        if problems:
            return GateResult(
                self.name, False, f"risk configuration incomplete ({'; '.join(problems)})"
            )
        return GateResult(self.name, True)


# --------------------------------------------------------------------------- engine


class EngineStopped:
    name: str = ENGINE

    async def check(self, ctx: GateContext) -> GateResult:
        if ctx.engine_running:
            return GateResult(self.name, False, "engine is running")
        return GateResult(self.name, True)


# --------------------------------------------------------------------------- registration


def builtin_gates() -> Sequence[Gate]:
    """One instance of every essential gate, in the order their results are reported."""
    return (
        NoOpenPositions(),
        NoPendingOrders(),
        ValrCredentials(),
        RiskConfigComplete(),
        ClockSkew(),
        VenueOnline(),
        EngineStopped(),
    )


@hookimpl
def heliosd_register_gates(register: Callable[[Gate], None], config: Settings) -> None:
    """Register the seven essential gates (they need no configuration of their own)."""
    del config
    for gate in builtin_gates():
        register(gate)


__all__ = [
    "GATE_NAMES",
    "ClockSkew",
    "EngineStopped",
    "NoOpenPositions",
    "NoPendingOrders",
    "RiskConfigComplete",
    "ValrCredentials",
    "VenueOnline",
    "builtin_gates",
    "credentials_verdict",
    "format_quantity",
    "heliosd_register_gates",
    "venue_message",
    "worth_an_order",
]
