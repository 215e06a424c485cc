"""Daily-loss and drawdown monitors, fed real Ledger snapshots driven by fills and prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pluggy

from heliosd.core.config import Settings
from heliosd.core.protocols import BreakerState, Monitor, MonitorContext
from heliosd.core.types import ActionKind, Fill, Mode, PairInfo, Quote, Side
from heliosd.plugins import hookspecs
from heliosd.risk import monitors
from heliosd.risk.ledger import Ledger
from heliosd.risk.monitors import DailyLossMonitor, DrawdownMonitor
from heliosd.trading.marketdata import MarketData

D = Decimal
SETTINGS = Settings()
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5000000), D(1), 8)
MORNING = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 08:00 SAST, 2 March


def price(market: MarketData, mid: str, at: datetime = MORNING) -> None:
    market.update(Quote("BTCZAR", D(mid), D(mid), D(mid), at))


def funded() -> tuple[Ledger, MarketData]:
    """50,000 ZAR and 0.05 BTC bought at 1,000,000: equity 100,000 at that price."""
    market = MarketData({"BTCZAR": BTCZAR})
    price(market, "1000000")
    ledger = Ledger(
        Mode.PAPER, "ZAR", SETTINGS.risk.tz, {"BTCZAR": BTCZAR}, market, {"ZAR": D(100000)}
    )
    ledger.apply_fill(Fill("t1", "BTCZAR", Side.BUY, D(1000000), D("0.05"), D(0), "ZAR", MORNING))
    return ledger, market


def ctx(**tripped: bool) -> MonitorContext:
    return MonitorContext(SETTINGS, {n: BreakerState(n, t, "earlier") for n, t in tripped.items()})


def test_daily_loss_at_the_limit_halts_until_the_next_johannesburg_midnight() -> None:
    ledger, market = funded()
    monitor = DailyLossMonitor()
    assert monitor.on_update(ledger.snapshot(MORNING), ctx()) is None

    price(market, "900400")  # equity 95,020: a 4.98% loss
    assert monitor.on_update(ledger.snapshot(MORNING), ctx()) is None

    price(market, "900000")  # equity 95,000: exactly 5%
    at = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)  # 22:30 SAST
    action = monitor.on_update(ledger.snapshot(at), ctx())
    assert action is not None
    assert (action.kind, action.breaker) == (ActionKind.HALT, "daily_loss")
    assert action.until == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # 00:00 SAST, 3 March
    assert action.reason == (
        "PAPER daily loss 5.00% reached the 5% limit (equity 95000.00 ZAR, "
        "start of day 100000.00 ZAR, loss 5000.00 ZAR)"
    )


def test_daily_loss_does_not_refire_while_its_breaker_is_tripped() -> None:
    ledger, market = funded()
    ledger.snapshot(MORNING)
    price(market, "800000")
    snap = ledger.snapshot(MORNING)
    assert DailyLossMonitor().on_update(snap, ctx(daily_loss=True)) is None
    assert DailyLossMonitor().on_update(snap, ctx(daily_loss=False)) is not None


def test_yesterdays_loss_does_not_count_today() -> None:
    ledger, market = funded()
    ledger.snapshot(MORNING)
    price(market, "904000")  # -4.8% on 2 March
    ledger.snapshot(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    # 00:00 SAST on 3 March: the day starts again at 95,200.
    today = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    assert DailyLossMonitor().on_update(ledger.snapshot(today), ctx()) is None
    price(market, "808000")  # equity 90,400: 5.04% below 95,200 (9.6% below the peak)
    action = DailyLossMonitor().on_update(ledger.snapshot(today), ctx())
    assert action is not None
    assert action.until == datetime(2026, 3, 3, 22, 0, tzinfo=UTC)
    assert action.reason.startswith("PAPER daily loss 5.04% reached the 5% limit")


def test_drawdown_at_the_limit_is_an_emergency_stop() -> None:
    ledger, market = funded()
    monitor = DrawdownMonitor()
    price(market, "1400000")  # equity 120,000: the new peak
    assert monitor.on_update(ledger.snapshot(MORNING), ctx()) is None

    price(market, "1000000")  # equity 100,000: 16.67% below the peak
    action = monitor.on_update(ledger.snapshot(MORNING), ctx())
    assert action is not None
    assert (action.kind, action.breaker, action.until) == (
        ActionKind.EMERGENCY_STOP,
        "drawdown",
        None,
    )
    assert action.reason == (
        "PAPER drawdown 16.67% reached the 15% limit (equity 100000.00 ZAR, peak 120000.00 ZAR)"
    )
    assert monitor.on_update(ledger.snapshot(MORNING), ctx(drawdown=True)) is None


def test_drawdown_just_under_the_limit_is_quiet() -> None:
    ledger, market = funded()
    ledger.snapshot(MORNING)  # peak 100,000
    price(market, "700200")  # equity 85,010: 14.99%
    assert DrawdownMonitor().on_update(ledger.snapshot(MORNING), ctx()) is None
    price(market, "700000")  # equity 85,000: 15%
    assert DrawdownMonitor().on_update(ledger.snapshot(MORNING), ctx()) is not None


def test_an_unknown_ledger_never_trips() -> None:
    market = MarketData({"BTCZAR": BTCZAR})
    live = Ledger(Mode.LIVE, "ZAR", SETTINGS.risk.tz, {"BTCZAR": BTCZAR}, market, None)
    snap = live.snapshot(MORNING)
    assert DailyLossMonitor().on_update(snap, ctx()) is None
    assert DrawdownMonitor().on_update(snap, ctx()) is None


def test_hookimpl_registers_both_monitors() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(monitors)
    got: list[Monitor] = []
    pm.hook.heliosd_register_monitors(register=got.append, config=SETTINGS)
    assert [m.name for m in got] == ["daily_loss", "drawdown"]
