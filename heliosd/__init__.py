"""heliosd: a safety-first trading daemon for the VALR exchange.

This module is the public plugin API: the ``hookimpl`` marker, the protocols plugins
implement and the value types they exchange.
"""

from heliosd.core.protocols import (
    BreakerState,
    Event,
    ExchangeClient,
    ExchangeContext,
    ExchangeEvents,
    Gate,
    GateContext,
    LedgerSnapshot,
    LedgerView,
    MarketSnapshot,
    MarketView,
    Monitor,
    MonitorContext,
    Notifier,
    RiskContext,
    RiskRule,
    Strategy,
    StrategyContext,
)
from heliosd.core.types import (
    Action,
    ActionKind,
    Balance,
    Fill,
    GateResult,
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PairInfo,
    Quote,
    Side,
    Verdict,
    VerdictAction,
    reduces_position,
)
from heliosd.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionKind",
    "Balance",
    "BreakerState",
    "Event",
    "ExchangeClient",
    "ExchangeContext",
    "ExchangeEvents",
    "Fill",
    "Gate",
    "GateContext",
    "GateResult",
    "LedgerSnapshot",
    "LedgerView",
    "MarketSnapshot",
    "MarketView",
    "Mode",
    "Monitor",
    "MonitorContext",
    "Notifier",
    "OrderIntent",
    "OrderState",
    "OrderType",
    "PairInfo",
    "Quote",
    "RiskContext",
    "RiskRule",
    "Side",
    "Strategy",
    "StrategyContext",
    "Verdict",
    "VerdictAction",
    "hookimpl",
    "reduces_position",
]
