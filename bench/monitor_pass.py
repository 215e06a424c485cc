"""Benchmark (issue 13): one monitor pass over an account holding 50 assets.

What ``MonitorRunner.run_monitors`` (heliosd.risk.runner) does after every price update and
fill: value every holding with the age of its price (:func:`heliosd.risk.prices.assess`:
trade-stream quote, REST quote, cross rate or last fill, and the dust rule), take the
ledger's figures (equity at the new marks, the flow-adjusted peak and day start:
``Ledger.snapshot``) and run the two
built-in monitors (daily loss, drawdown). Each pass follows a quote update of one of the 50
pairs (outside the timer: that is the feed's cost), so the ledger's valuation cache is
always cold, as it is in the daemon. Ten of the assets are valued through a cross rate
(``XUSDC`` times ``USDCZAR``), five are dust. The ledger values through the same pricer, as
in the daemon.

Target: median and p99 under 200 us (wall time); ``cpu_us`` is the process's own CPU time
per pass, the figure to read on a loaded machine. Prints one JSON line. ``--quick`` is a
smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, note, summary, us

from heliosd.core.config import Settings
from heliosd.core.protocols import MonitorContext
from heliosd.core.types import Balance, Mode, PairInfo, Quote, utcnow
from heliosd.risk.ledger import Ledger
from heliosd.risk.monitors import DailyLossMonitor, DrawdownMonitor
from heliosd.risk.prices import Pricer, assess
from heliosd.trading.marketdata import MarketData

ASSETS = 50
CROSS = 10
DUST = 5


def _pair(symbol: str, base: str, quote: str) -> PairInfo:
    d0 = Decimal(0)
    return PairInfo(symbol, base, quote, d0, Decimal(1000), d0, d0, Decimal(1), 8)


def build() -> tuple[MarketData, Ledger, Pricer, list[str]]:
    market = MarketData({})
    pairs: dict[str, PairInfo] = {"USDCZAR": _pair("USDCZAR", "USDC", "ZAR")}
    names = [f"A{i:02d}" for i in range(ASSETS)]
    direct = []
    for i, name in enumerate(names):
        quote = "USDC" if i < CROSS else "ZAR"
        symbol = name + quote
        pairs[symbol] = _pair(symbol, name, quote)
        if quote == "ZAR":
            direct.append(symbol)
    market.set_pairs(pairs)
    now = utcnow()
    market.update(Quote("USDCZAR", Decimal("18.1"), Decimal("18.2"), None, now))
    for symbol in pairs:
        if symbol != "USDCZAR":
            market.update(Quote(symbol, Decimal("99.5"), Decimal("100.5"), None, now))
    settings = Settings()
    ledger = Ledger(Mode.LIVE, "ZAR", settings.risk.tz, pairs, market)
    balances = [Balance("ZAR", Decimal(100000))]
    for i, name in enumerate(names):
        qty = Decimal("0.01") if i >= ASSETS - DUST else Decimal("12.5")
        balances.append(Balance(name, qty))
    ledger.set_balances(balances, snapshot=True)
    pricer = Pricer(market, reference="ZAR", max_age_s=10.0)  # no fetch: no I/O in the pass
    ledger.set_pricer(pricer)  # as the daemon wires it: equity values through the pricer
    return market, ledger, pricer, direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test size")
    args = parser.parse_args()
    passes = 200 if args.quick else 20000
    market, ledger, pricer, direct = build()
    settings = Settings()
    monitors = (DailyLossMonitor(), DrawdownMonitor())
    ctx = MonitorContext(settings, {})
    risk = settings.risk
    dust_value, max_age = risk.dust_value, float(risk.max_quote_age_s)
    samples: list[float] = []
    cpu: list[float] = []
    stale_seen = dust_seen = 0
    gc.collect()
    gc.disable()
    try:
        for i in range(passes):
            symbol = direct[i % len(direct)]
            mid = Decimal(100) + Decimal(i % 7)
            market.update(Quote(symbol, mid - 1, mid + 1, None, utcnow()))
            c0 = time.process_time_ns()
            t0 = time.perf_counter_ns()
            now = utcnow()
            totals = ledger.totals()
            seen = assess(pricer, totals, dust_value=dust_value, max_age_s=max_age, now=now)
            if not seen.unpriced:
                snapshot = ledger.snapshot(now)
                for monitor in monitors:
                    monitor.on_update(snapshot, ctx)
            samples.append(time.perf_counter_ns() - t0)
            cpu.append(time.process_time_ns() - c0)
            stale_seen += len(seen.stale)
            dust_seen += len(seen.dust)
    finally:
        gc.enable()
    latency = summary([us(s) for s in samples])
    cpu_time = summary([us(s) for s in cpu])
    note(f"monitor pass over {ASSETS} assets: median {latency['median']} us")
    emit(
        "monitor_pass",
        {
            "assets": ASSETS,
            "cross_rate_assets": CROSS,
            "passes": passes,
            "dust_per_pass": dust_seen // passes,
            "stale_per_pass": stale_seen / passes,
            "latency_us": latency,
            # This process's own CPU time per pass: what the pass costs when the machine's
            # other processes are not preempting it (a shared box makes wall time noisy).
            "cpu_us": cpu_time,
        },
        {"median_under_200_us": latency["median"] < 200, "p99_under_200_us": latency["p99"] < 200},
    )


if __name__ == "__main__":
    main()
