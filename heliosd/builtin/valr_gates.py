"""The gates that ask VALR: ``valr_credentials`` (:func:`credentials_verdict`, shared with
``heliosctl doctor``), ``clock_skew`` (measured afresh) and ``venue_online`` (the status read
at the check), and how VALR's own text is read out of an error (:func:`venue_message`).
Registered by :mod:`heliosd.builtin.gates`, which re-exports them.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from heliosd.builtin.gate_names import CLOCK, CREDENTIALS, VENUE, _cannot
from heliosd.core.errors import AuthError, HeliosError
from heliosd.core.protocols import GateContext
from heliosd.core.types import ApiKeyInfo, GateResult

# How the VALR client words a refusal: "VALR refused the request (GET /path): <VALR's text>".
_REFUSAL = re.compile(r"^VALR refused the request \([^)]*\): (?P<text>.+)$", re.DOTALL)


def venue_message(exc: HeliosError) -> str:
    """VALR's own text from an error (the contract shows it verbatim), else the whole message."""
    given = exc.details.get("venue_message")
    if isinstance(given, str) and given:
        return given
    match = _REFUSAL.match(exc.message)
    return match.group("text") if match else exc.message


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
