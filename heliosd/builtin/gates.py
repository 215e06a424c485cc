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
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from heliosd.core.config import Settings, risk_config_problems
from heliosd.core.errors import AuthError, HeliosError
from heliosd.core.protocols import Gate, GateContext
from heliosd.core.types import ZERO, ApiKeyInfo, GateResult, Mode, PairInfo, Side
from heliosd.plugins.hookspecs import hookimpl

POSITIONS = "no_open_positions"
PENDING = "no_pending_orders"
CREDENTIALS = "valr_credentials"
RISK_CONFIG = "risk_config_complete"
CLOCK = "clock_skew"
VENUE = "venue_online"
ENGINE = "engine_stopped"

GATE_NAMES = (POSITIONS, PENDING, CREDENTIALS, RISK_CONFIG, CLOCK, VENUE, ENGINE)

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


# How the VALR client words a refusal: "VALR refused the request (GET /path): <VALR's text>".
_REFUSAL = re.compile(r"^VALR refused the request \([^)]*\): (?P<text>.+)$", re.DOTALL)


def venue_message(exc: HeliosError) -> str:
    """VALR's own text from an error (the contract shows it verbatim), else the whole message."""
    given = exc.details.get("venue_message")
    if isinstance(given, str) and given:
        return given
    match = _REFUSAL.match(exc.message)
    return match.group("text") if match else exc.message


def _cannot(name: str, what: str, exc: HeliosError) -> GateResult:
    return GateResult(name, False, f"cannot check {what} ({exc.message})")


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


# --------------------------------------------------------------------------- credentials


# VALR's API key scopes are View access, Trade, Transfer (shown as "Internal Transfer" in
# the API's permission list), Withdraw and Link bank account [VALR's API docs and its
# agent-skills reference; the "Internal Transfer" label from the latter only, medium
# confidence]. Withdraw and (Internal) Transfer can move funds out of the account, so any
# permission whose name mentions either is refused, whatever the exact label.
_FUNDS_OUT = ("withdraw", "transfer")


def moves_funds_out(permission: str) -> bool:
    text = permission.strip().lower()
    return any(word in text for word in _FUNDS_OUT)


async def credentials_verdict(ctx: GateContext) -> tuple[GateResult, ApiKeyInfo | None]:
    """The ``valr_credentials`` verdict and the key's info when VALR answered.

    Shared by the gate and ``heliosctl doctor`` (which also shows the permissions): one
    reading of what makes a key acceptable, never two that could drift apart.
    """
    try:
        info = await ctx.live.check_credentials()
    except AuthError as exc:
        reason = f"invalid VALR credentials ({venue_message(exc)})"
        return GateResult(CREDENTIALS, False, reason), None
    except HeliosError as exc:
        return _cannot(CREDENTIALS, "VALR credentials", exc), None
    permissions = {p.strip().lower() for p in info.permissions}
    problems = []
    if "trade" not in permissions:
        problems.append("API key lacks Trade permission")
    extra = {p.strip().lower() for p in ctx.settings.valr.refused_permissions}
    for name in sorted({p.strip() for p in info.permissions}):
        if moves_funds_out(name) or name.lower() in extra:
            problems.append(f"API key has {name} permission")
    if problems:
        return GateResult(CREDENTIALS, False, "; ".join(problems)), info
    return GateResult(CREDENTIALS, True), info


class ValrCredentials:
    """The live key answers, may trade, and can never move funds out (no Withdraw, no
    Internal Transfer; ``valr.refused_permissions`` adds more, never fewer)."""

    name: str = CREDENTIALS

    async def check(self, ctx: GateContext) -> GateResult:
        result, _ = await credentials_verdict(ctx)
        return result


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


# --------------------------------------------------------------------------- clock


class ClockSkew:
    """|server time - local time| must stay under ``valr.max_clock_skew_s``.

    Measured afresh on every check (see :func:`_measure_skew`).
    """

    name: str = CLOCK

    async def check(self, ctx: GateContext) -> GateResult:
        try:
            skew = await _measure_skew(ctx)
        except HeliosError as exc:
            return _cannot(self.name, "clock skew", exc)
        limit = float(ctx.settings.valr.max_clock_skew_s)
        size = abs(skew)
        if size < limit:
            return GateResult(self.name, True)
        # One decimal as in the contract, unless that would round down onto the limit.
        text = f"{size:.1f}" if round(size, 1) > limit else f"{size:.3f}"
        return GateResult(self.name, False, f"clock skew {text} s")


async def _measure_skew(ctx: GateContext) -> float:
    """Server minus local time, in seconds, measured now.

    ``server_time()`` is asked in any case: it makes a client that tracks its offset measure
    afresh (a skew measured hours ago says little about the clock now). The client's own
    figure (``ExchangeClient.clock_skew()``) is preferred (it knows its transport); an
    unknown (non-finite) figure falls back to our own comparison. So does a client without
    the method: third-party clients written before the protocol declared it are not type
    checked, and such a client is still measured rather than failed or passed unseen.
    """
    before = time.time()
    server: datetime = await ctx.live.server_time()
    after = time.time()
    measure: Any = getattr(ctx.live, "clock_skew", None)
    if callable(measure):
        value: Any = measure()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    local = datetime.fromtimestamp((before + after) / 2, UTC)
    return (server - local).total_seconds()


# --------------------------------------------------------------------------- venue status


class VenueOnline:
    """VALR's ``GET /v1/public/status`` says ``online``, read afresh at the check.

    In maintenance VALR answers ``read-only`` and refuses every write with 503 [VALR's API
    docs and CCXT agree]: a switch then would go LIVE into a venue that takes no order, and
    the ``venue_read_only`` breaker would make the new LIVE account REDUCING at once. The
    client's last poll is not trusted: it may be seconds old. Not knowing fails: a status
    that cannot be read (VALR unreachable, an answer without a status) is a refusal naming
    why, and so is a LIVE client without ``read_status()`` (it cannot say).
    """

    name: str = VENUE

    async def check(self, ctx: GateContext) -> GateResult:
        label = ctx.settings.valr.label
        read: Any = getattr(ctx.live, "read_status", None)
        if not callable(read):
            return GateResult(
                self.name, False, f"cannot check {label} status (the live client reports none)"
            )
        try:
            status: Any = await read()
        except HeliosError as exc:
            return _cannot(self.name, f"{label} status", exc)
        if not isinstance(status, str) or not status.strip():
            return GateResult(self.name, False, f"cannot check {label} status (no status text)")
        status = status.strip().lower()
        if status == "online":
            return GateResult(self.name, True)
        return GateResult(self.name, False, f"{label} is {status}, not online")


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
