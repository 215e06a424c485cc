"""The four essential risk rules: position, leverage, daily loss, drawdown (their keys:
docs/configuration.md, [risk]).

Each rule is an object with a ``name`` and a synchronous ``check(intent, ctx) -> Verdict``: no
I/O, so the router calls it directly on the order path. Limits are read from
``ctx.settings.risk`` on every call, so the rules always apply the settings the order is
checked under.

Shared semantics:

* **Exposure counts open and in-flight orders.** What an asset's position would be is its
  holding (the venue's balance, plus bought coins of fills the venue's balance does not show
  yet) plus every open or in-flight BUY of that asset (from the moment the order is stored
  until it is terminal, remaining quantity; :mod:`heliosd.risk.exposure`) plus this order.
  The position cap and the leverage limit both count that sum, read from the account's risk
  snapshot (``ctx.account``); the verdict's reason shows each part (held, pending buys, this
  order, equity). A pending BUY counts at the larger of its reserved value (its LIMIT price,
  or the ask plus a margin for a MARKET BUY) and its quantity at this order's price. The
  order being checked is charged at the price it would trade at (the ask, or its LIMIT
  price when higher), as the cap always has; the margin only weighs on the orders after it.
* **No spot shorts.** heliosd never trades on margin: a SELL may sell what is held minus
  what is already promised to other SELLs (and minus sold coins the venue's balance does not
  show yet). Promised is heliosd's own SELLs not yet acknowledged by the venue (which its
  ``reserved`` cannot show) plus the larger of its acknowledged open SELLs and what the
  venue reports reserved (``total - available``, which also holds orders heliosd does not
  know: placed on VALR's site, or with another key). A SELL the venue has acknowledged but
  whose reservation has not reached heliosd yet counts through the first term of that
  maximum; one it has reserved but not acknowledged yet counts twice for a moment, which
  errs towards refusing. Above that it is capped to it; when nothing is left it is
  rejected, never capped to a short.
* An order **reduces** when it is a SELL within that free holding (or a BUY within a short,
  which only a ledger whose balances are still unknown can show). Reducing orders always
  pass: refusing them would trap an operator in a position.
* Anything the rule cannot value (no price, equity <= 0, unknown pair) is a REJECT with the
  reason: fail closed. One exception, on purpose: an account whose balances are *known* and
  all zero (the normal state of a fresh LIVE account before funding, seed Phase 2) holds
  nothing that can be lost, so its orders pass to the venue, which refuses them with its own
  "Insufficient Balance" -- the operator then sees the real venue answer, not a sizing error.
  heliosd never sends ``allowMargin``, so an empty account cannot borrow.
* Notional is valued in the reference currency: ``quantity * price * rate(quote)``, where
  ``rate`` is 1 for pairs quoted in the reference currency and otherwise the mark of
  ``QUOTE + reference``.

The size limits live beside this module: :mod:`heliosd.builtin.limit_valuation` values an
order once for both (:class:`OrderValuation`), and :mod:`heliosd.builtin.size_limits` has
the position and leverage limits. The breaker rules (daily loss, drawdown) and the plugin's
registration are here; every name imported from this module before the split still is.
"""

from __future__ import annotations

from collections.abc import Callable

from heliosd.builtin.limit_valuation import OrderValuation as OrderValuation
from heliosd.builtin.limit_valuation import order_valuation as order_valuation
from heliosd.builtin.limit_valuation import quote_rate as quote_rate
from heliosd.builtin.limit_valuation import valuation_price as valuation_price
from heliosd.builtin.size_limits import EMPTY_ACCOUNT as EMPTY_ACCOUNT
from heliosd.builtin.size_limits import LeverageLimit, PositionLimit
from heliosd.builtin.size_limits import empty_account as empty_account
from heliosd.core.config import Settings
from heliosd.core.protocols import RiskContext, RiskRule
from heliosd.core.types import OrderIntent, Verdict
from heliosd.core.types import reduces_position as reduces_position
from heliosd.plugins.hookspecs import hookimpl

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
EMERGENCY = "emergency"


class _BreakerRule:
    """Rejects risk-increasing orders while its breaker is tripped.

    The breaker's ``tripped`` flag is the truth: clearing it (at ``until`` or on a resume)
    is the core's job, so an expired-but-still-tripped breaker still blocks (fail closed).
    """

    name: str
    breaker: str
    what: str

    def __init__(self) -> None:
        # Verdicts are immutable: the common answer is built once, not per order.
        self._clear = Verdict.accept(self.name, f"{self.what} not reached")
        self._reduces = Verdict.accept(self.name, f"{self.what} reached; the order reduces")

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Verdict:
        state = ctx.breakers.get(self.breaker)
        if state is None or not state.tripped:
            return self._clear
        if reduces_position(intent, ctx.ledger.position(intent.pair)):
            return self._reduces
        until = f" until {state.until.isoformat()} or a resume" if state.until else ""
        because = f" ({state.reason})" if state.reason else ""
        return Verdict.reject(
            self.name,
            f"{self.what} reached{because}: only position-reducing orders are accepted{until}",
        )


class DailyLossLimit(_BreakerRule):
    name = "daily_loss_limit"
    breaker = DAILY_LOSS
    what = "daily loss limit"


class DrawdownLimit(_BreakerRule):
    name = "drawdown_limit"
    breaker = DRAWDOWN
    what = "drawdown limit"


def essential_rules() -> list[RiskRule]:
    """Fresh instances of the four rules, in the order they are registered."""
    return [PositionLimit(), LeverageLimit(), DailyLossLimit(), DrawdownLimit()]


@hookimpl
def heliosd_register_risk_rules(register: Callable[[RiskRule], None], config: Settings) -> None:
    """Register the four essential limits; their thresholds come from ``[risk]``."""
    for rule in essential_rules():
        register(rule)
