"""One tick of the running strategy: its view of the market and its ledger, its answer
checked, its intents sent through the router; what a tick counts (``_Stats``).

:class:`EngineTick` is a base class of :class:`heliosd.trading.engine.Engine`. Logs as
``heliosd.trading.engine``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from heliosd.core.config import Settings
from heliosd.core.errors import (
    AuthError,
    ExchangeRejected,
    HaltedError,
    ModeIntegrityError,
    RiskRejected,
    TransientError,
)
from heliosd.core.protocols import LedgerView, MarketSnapshot, Strategy, StrategyContext
from heliosd.core.types import Mode, OrderIntent, PairInfo, Quote, utcnow
from heliosd.trading.marketdata import MarketData

log = logging.getLogger("heliosd.trading.engine")

# Order outcomes that are the world saying no, not the strategy misbehaving.
REFUSALS = (
    RiskRejected,
    ExchangeRejected,
    HaltedError,
    ModeIntegrityError,
    TransientError,
    AuthError,
)


class OrderRouter(Protocol):
    """What the engine needs of :class:`heliosd.trading.router.ExecutionRouter`."""

    async def submit(self, intent: OrderIntent, *, actor: str) -> dict[str, Any]: ...


@dataclasses.dataclass(slots=True)
class _Stats:
    running: bool = False
    ticks: int = 0
    last_decision: str | None = None
    last_decision_at: datetime | None = None
    orders_sent: int = 0
    orders_refused: int = 0
    last_refusal: str | None = None
    last_order_id: int | None = None
    errors: int = 0
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        at = self.last_decision_at
        out["last_decision_at"] = at.isoformat() if at is not None else None
        return out


class StrategyFailed(Exception):
    """The strategy misbehaved (raised, hung, answered nonsense); it is stopped."""


def describe(intents: Sequence[OrderIntent]) -> str:
    """A one-line summary of a tick's decision, for status and logs."""
    if not intents:
        return "hold"
    return "; ".join(
        f"{i.side} {i.quantity} {i.pair}" + (f" ({i.reason})" if i.reason else "") for i in intents
    )


class EngineTick:
    """The tick of :class:`heliosd.trading.engine.Engine` (a base class)."""

    # Set by Engine.__init__ (heliosd.trading.engine).
    _router: OrderRouter
    _settings: Settings
    _market: MarketData
    _ledgers: Mapping[Mode, LedgerView]
    _pairs_provider: Callable[[], Mapping[str, PairInfo]]
    _mode_provider: Callable[[], Mode]
    _pairs: tuple[str, ...]
    _tick_timeout: float
    _max_quote_age: timedelta
    _stopping: bool

    async def _tick(self, name: str, strategy: Strategy, stats: _Stats) -> None:
        now = utcnow()
        mode = self._mode_provider()
        snapshot = MarketSnapshot(at=now, quotes=self._quotes(now))
        ctx = StrategyContext(
            settings=self._settings,
            mode=mode,
            ledger=self._ledgers[mode],
            market=self._market,
            pairs=self._pairs_provider(),
            now=now,
        )
        intents = await self._decide(strategy, snapshot, ctx)
        stats.ticks += 1
        stats.last_decision = describe(intents)
        stats.last_decision_at = now
        source = f"engine:{name}"
        for intent in intents:
            if self._stopping:
                break  # stop() means no further orders, even from this tick
            if intent.pair not in self._pairs:
                stats.orders_refused += 1
                stats.last_refusal = f"{intent.pair} is not one of [engine] pairs"
                log.warning("engine: %s asked for %s, not an engine pair", name, intent.pair)
                continue
            try:
                order = await self._router.submit(
                    dataclasses.replace(intent, source=source), actor=source
                )
            except REFUSALS as exc:
                stats.orders_refused += 1
                stats.last_refusal = exc.message
                refused = exc.details.get("order")
                if isinstance(refused, dict):
                    stats.last_order_id = refused.get("id")
                log.info("engine: %s order refused: %s", name, exc.message)
                continue
            except Exception as exc:
                raise StrategyFailed(
                    f"submitting {describe([intent])} failed: {type(exc).__name__}: {exc}"
                ) from exc
            stats.orders_sent += 1
            stats.last_order_id = order.get("id")

    async def _decide(
        self, strategy: Strategy, snapshot: MarketSnapshot, ctx: StrategyContext
    ) -> list[OrderIntent]:
        try:
            answer: Any = strategy.on_market(snapshot, ctx)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, self._tick_timeout)
        except TimeoutError:
            raise StrategyFailed(
                f"on_market did not answer within {self._tick_timeout:g} s"
            ) from None
        except Exception as exc:
            raise StrategyFailed(f"on_market raised {type(exc).__name__}: {exc}") from exc
        if answer is None:
            return []
        if not isinstance(answer, Sequence) or isinstance(answer, str | bytes):
            raise StrategyFailed(f"on_market returned {type(answer).__name__}, not a list")
        intents = list(answer)
        for item in intents:
            if not isinstance(item, OrderIntent):
                raise StrategyFailed(
                    f"on_market returned a {type(item).__name__}, not an OrderIntent"
                )
        return intents

    def _quotes(self, now: datetime) -> dict[str, Quote]:
        """The engine pairs' latest quotes; old ones are left out (a dead feed is no price)."""
        out: dict[str, Quote] = {}
        for pair in self._pairs:
            quote = self._market.quote(pair)
            if quote is not None and now - quote.at <= self._max_quote_age:
                out[pair] = quote
        return out
