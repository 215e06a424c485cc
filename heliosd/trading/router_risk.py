"""The router's risk evaluation: every rule's verdict and the core's latch check, combined.

:class:`RiskEvaluation` is a base class of :class:`heliosd.trading.router.ExecutionRouter`
(``rules``, ``evaluate``); :class:`Evaluation` is its outcome. Logs as
``heliosd.trading.router``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from heliosd.core.config import Settings
from heliosd.core.protocols import LedgerView, MarketView, RiskContext, RiskRule
from heliosd.core.types import (
    ZERO,
    Mode,
    OrderIntent,
    TradingState,
    Verdict,
    VerdictAction,
    reduces_position,
    utcnow,
)
from heliosd.risk import state as trading
from heliosd.risk.breakers import BUILTIN, EMERGENCY, Breakers
from heliosd.store import ModeState, Store
from heliosd.trading import orders as od

log = logging.getLogger("heliosd.trading.router")

# Module constants compared by identity on the order path: on 3.11 every ``Mode.LIVE`` or
# ``VerdictAction.CAP`` is a ~100 ns class attribute lookup, several per order.
_LIVE = Mode.LIVE
_ACCEPT = VerdictAction.ACCEPT
_REJECT = VerdictAction.REJECT
_CAP = VerdictAction.CAP
_ACTIVE = TradingState.ACTIVE
_HALTED = TradingState.HALTED


class Evaluation(NamedTuple):
    """The outcome of :meth:`ExecutionRouter.evaluate`. Immutable.

    A NamedTuple, not a frozen dataclass: one is built per order, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) costs ~1 us, a tenth of the whole path.
    """

    mode: Mode
    verdicts: tuple[Verdict, ...]
    quantity: Decimal | None  # None: rejected
    reason: str = ""


class RiskEvaluation:
    """The risk half of :class:`heliosd.trading.router.ExecutionRouter` (a base class)."""

    # Set by ExecutionRouter.__init__ (heliosd.trading.router).
    _store: Store
    _settings: Settings
    _ledgers: Mapping[Mode, LedgerView]
    _market: MarketView
    _breakers: Breakers
    _counters: od.OrderCounters
    _rule_timeout: float

    @property
    def rules(self) -> tuple[RiskRule, ...]:
        """The loaded risk rules, in order. Replaced whole (on plugin reload), never mutated."""
        return self._rules

    @rules.setter
    def rules(self, rules: Sequence[RiskRule]) -> None:
        self._rules: tuple[RiskRule, ...] = tuple(rules)
        # Each rule's name is looked up once here, not per rule per order (a getattr with a
        # default is ~150 ns). Names are class attributes by contract (RiskRule.name).
        self._named_rules: tuple[tuple[RiskRule, str], ...] = tuple(
            (rule, getattr(rule, "name", type(rule).__name__)) for rule in self._rules
        )

    async def evaluate(
        self, intent: OrderIntent, mode: Mode | None = None, state: ModeState | None = None
    ) -> Evaluation:
        """The pre-trade path: mode and trading state at execution time, every risk verdict.

        ``state`` is the mode read the caller already made (submit), so the verdicts and
        the permit are for the one (mode, epoch) that read saw.
        """
        if state is None:
            state = self._store.mode_state()
        if mode is None:
            mode = state.mode
        ledger = self._ledgers[mode]
        breakers = self._breakers.states()
        verdicts: list[Verdict] = []
        # The core's own latch check, whatever rules are loaded (only when something is off:
        # the common ACTIVE order pays one identity test).
        if breakers or state.trading_state is not _ACTIVE:
            self._latch(intent, ledger, breakers, state, verdicts)
        if mode is _LIVE or self._settings.risk.enforce_in_paper:
            market = self._market
            # Positional: keyword arguments cost ~0.3 us more per order. The order is
            # RiskContext's field order: mode, settings, pair, ledger, market, breakers, now,
            # order_stats, memo (a fresh dict: see RiskContext.memo), account (the account's
            # risk snapshot: holdings and open orders' exposure); mypy checks each type.
            account = self._counters.accounts.get(mode)
            ctx = RiskContext(
                mode, self._settings, market.pair(intent.pair), ledger, market, breakers,
                utcnow(), self._counters, {}, None if account is None else account.snapshot(),
            )  # fmt: skip
            pending: list[tuple[str, Awaitable[Verdict]]] = []
            for rule, name in self._named_rules:
                try:
                    answer: Any = rule.check(intent, ctx)
                except Exception as exc:
                    log.warning("risk rule %s raised %s: %s", name, type(exc).__name__, exc)
                    verdicts.append(Verdict.reject(name, f"rule {name} failed: {exc}"))
                    continue
                if isinstance(answer, Verdict):
                    verdicts.append(answer)
                elif inspect.isawaitable(answer):
                    pending.append((name, answer))
                else:
                    verdicts.append(Verdict.reject(name, f"rule {name} returned no verdict"))
            if pending:
                verdicts.extend(await asyncio.gather(*(self._await(n, a) for n, a in pending)))
        # Most orders get nothing but accepts: that answer is built here, without
        # _combine's call and bookkeeping (~0.2 us of a ~4.5 us order); it is the answer
        # _combine gives for accepts only.
        for v in verdicts:
            if v.action is not _ACCEPT:
                return self._combine(mode, intent, verdicts)
        return Evaluation(mode, tuple(verdicts), intent.quantity)

    @staticmethod
    def _latch(
        intent: OrderIntent,
        ledger: LedgerView,
        breakers: Mapping[str, Any],
        state: ModeState,
        verdicts: list[Verdict],
    ) -> None:
        """HALTED (or a halting breaker in the cache) refuses everything; otherwise, while
        the row says REDUCING or any breaker is tripped, only orders that reduce a holding
        pass. The emergency stop and plugin breakers keep their own verdict names."""
        halting = [n for n in breakers if n in trading.HALTING]
        if state.trading_state is _HALTED or halting:
            why = (
                state.state_reason
                if state.trading_state is _HALTED
                else "; ".join(f"{n}: {breakers[n].reason}" for n in sorted(halting))
            )
            verdicts.append(Verdict.reject(
                "halted", f"trading is HALTED ({why}): nothing but cancels"
            ))  # fmt: skip
            return
        if reduces_position(intent, ledger.position(intent.pair)):
            return
        before = len(verdicts)
        for name, st in breakers.items():
            if name == EMERGENCY:
                verdicts.append(Verdict.reject(
                    "emergency_stop",
                    f"trading is halted by an emergency stop ({st.reason});"
                    " only orders that reduce a position may pass until a resume",
                ))  # fmt: skip
            elif name not in BUILTIN:
                verdicts.append(Verdict.reject(
                    f"breaker:{name}",
                    f"breaker {name} is tripped ({st.reason}); only orders that reduce"
                    " a position may pass until a resume",
                ))  # fmt: skip
        if len(verdicts) == before and state.trading_state is TradingState.REDUCING:
            verdicts.append(Verdict.reject(
                "reducing",
                f"trading is REDUCING ({state.state_reason}): only orders that reduce a"
                " holding pass",
            ))  # fmt: skip

    async def _await(self, name: str, answer: Awaitable[Verdict]) -> Verdict:
        try:
            result: Any = await asyncio.wait_for(answer, self._rule_timeout)
        except TimeoutError:
            return Verdict.reject(name, f"rule {name} timed out after {self._rule_timeout:g} s")
        except Exception as exc:
            log.warning("risk rule %s raised %s: %s", name, type(exc).__name__, exc)
            return Verdict.reject(name, f"rule {name} failed: {exc}")
        if not isinstance(result, Verdict):
            return Verdict.reject(name, f"rule {name} returned no verdict")
        return result

    @staticmethod
    def _combine(mode: Mode, intent: OrderIntent, verdicts: list[Verdict]) -> Evaluation:
        """Any reject rejects; caps take the smallest quantity; accepts change nothing.

        Fail closed on what a rule may hand back that is not one of those: an action given
        as a plain string ("reject", "cap": a drop-in rule's keyword-built Verdict) counts
        as the action it names; any other action, and a cap whose quantity is not a finite
        Decimal, rejects the order with a reason naming the problem.
        """
        quantity = intent.quantity
        rejects = []
        for v in verdicts:
            action = v.action
            # Identity first: every built-in verdict's action is the enum member itself.
            if action is _ACCEPT:
                continue
            if action is _REJECT:
                rejects.append(v)
            elif action is _CAP or action == _CAP:
                allowed = v.quantity
                if isinstance(allowed, Decimal) and allowed.is_finite():
                    if allowed > ZERO:
                        if allowed < quantity:
                            quantity = allowed
                        continue
                    rejects.append(Verdict.reject(v.rule, v.reason or "capped to nothing"))
                elif allowed is None:
                    rejects.append(Verdict.reject(v.rule, v.reason or "capped to nothing"))
                else:
                    rejects.append(Verdict.reject(
                        v.rule, f"cap quantity {allowed!r} is not a finite Decimal"
                    ))  # fmt: skip
            elif action == _REJECT:
                rejects.append(v)
            elif action != _ACCEPT:
                rejects.append(Verdict.reject(v.rule, f"unknown verdict action {action!r}"))
        if rejects:
            reason = "; ".join(f"{v.rule}: {v.reason}" for v in rejects)
            return Evaluation(mode, tuple(verdicts), None, reason)
        return Evaluation(mode, tuple(verdicts), quantity)
