"""The peer of bench/risk_path.py: NautilusTrader's RiskEngine on the same order stream.

Runs inside bench/.peers-venv (``make bench-peers`` installs nautilus_trader there; heliosd
is not importable here, so the stream arrives as a JSON file written by risk_path.py).

The set-up follows Nautilus's own tests (tests/unit_tests/risk/test_engine.py,
``TestRiskEngineWithCashAccount``): a MessageBus, a Cache, a Portfolio holding a CASH account,
a RiskEngine. Differences, each on purpose:

* The instruments are VALR's two pairs as ``CurrencyPair`` on a venue named VALR (BTC/ZAR and
  ETH/ZAR, 8 size decimals, 1 ZAR tick, VALR's minimum order sizes); the unknown pair of the
  stream is simply not in the cache, so Nautilus denies it as heliosd does.
* The account holds exactly the balances heliosd's paper ledger holds; the quotes are the same.
* ``ExecEngine.execute`` / ``ExecEngine.process`` are no-op endpoints: the order is timed up to
  the moment the RiskEngine hands it on, as heliosd's ``evaluate`` is timed up to its verdict.
* The submit throttler is set far above the stream's rate, so nothing is held back.

Timed: ``risk_engine.execute(SubmitOrder)`` per order with perf_counter_ns (the command and
its order are built beforehand, untimed). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from nautilus_trader.common.component import MessageBus, TestClock
from nautilus_trader.config import RiskEngineConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import SubmitOrder
from nautilus_trader.model.currencies import BTC, ETH, ZAR
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OrderSide
from nautilus_trader.model.events import AccountState
from nautilus_trader.model.identifiers import AccountId, InstrumentId, Symbol, TraderId, Venue
from nautilus_trader.model.instruments import CurrencyPair
from nautilus_trader.model.objects import AccountBalance, Money, Price, Quantity
from nautilus_trader.portfolio.portfolio import Portfolio
from nautilus_trader.risk.engine import RiskEngine
from nautilus_trader.test_kit.stubs.component import TestComponentStubs
from nautilus_trader.trading.strategy import Strategy

VENUE = Venue("VALR")
CURRENCIES = {"BTC": BTC, "ETH": ETH, "ZAR": ZAR}
MIN_BASE = {"BTCZAR": "0.0001", "ETHZAR": "0.001"}  # heliosd.trading.marketdata.DEFAULT_PAIRS
MAX_BASE = {"BTCZAR": "2", "ETHZAR": "50"}


def instrument_id(pair: str) -> InstrumentId:
    return InstrumentId(Symbol(f"{pair[:-3]}/{pair[-3:]}"), VENUE)


def currency_pair(pair: str) -> CurrencyPair:
    base = CURRENCIES[pair[:-3]]
    return CurrencyPair(
        instrument_id=instrument_id(pair),
        raw_symbol=Symbol(pair),
        base_currency=base,
        quote_currency=ZAR,
        price_precision=0,
        size_precision=8,
        price_increment=Price.from_str("1"),
        size_increment=Quantity.from_str("0.00000001"),
        lot_size=None,
        max_quantity=Quantity.from_str(f"{Decimal(MAX_BASE[pair]):.8f}"),
        min_quantity=Quantity.from_str(f"{Decimal(MIN_BASE[pair]):.8f}"),
        max_notional=None,
        min_notional=Money(10, ZAR),
        max_price=None,
        min_price=None,
        margin_init=Decimal(0),
        margin_maint=Decimal(0),
        maker_fee=Decimal(0),
        taker_fee=Decimal("0.001"),
        ts_event=0,
        ts_init=0,
    )


class Peer:
    def __init__(self, stream: dict[str, Any]) -> None:
        self.clock = TestClock()
        self.trader_id = TraderId("TRADER-001")
        self.msgbus = MessageBus(trader_id=self.trader_id, clock=self.clock)
        self.cache = TestComponentStubs.cache()
        self.portfolio = Portfolio(msgbus=self.msgbus, cache=self.cache, clock=self.clock)
        self.risk = RiskEngine(
            portfolio=self.portfolio,
            msgbus=self.msgbus,
            cache=self.cache,
            clock=self.clock,
            config=RiskEngineConfig(max_order_submit_rate="1000000000/00:00:01"),
        )
        self.sent = 0
        self.denied = 0
        self.msgbus.register(endpoint="ExecEngine.execute", handler=self._sent)
        self.msgbus.register(endpoint="ExecEngine.process", handler=self._denied)
        balances = [
            AccountBalance(
                Money(Decimal(v), CURRENCIES[c]), Money(0, CURRENCIES[c]),
                Money(Decimal(v), CURRENCIES[c]),
            )
            for c, v in stream["balances"].items()
        ]  # fmt: skip
        self.portfolio.update_account(
            AccountState(
                account_id=AccountId("VALR-001"), account_type=AccountType.CASH,
                base_currency=None, reported=True, balances=balances, margins=[], info={},
                event_id=UUID4(), ts_event=0, ts_init=0,
            )
        )  # fmt: skip
        for pair, (bid, ask) in stream["quotes"].items():
            inst = currency_pair(pair)
            self.cache.add_instrument(inst)
            self.cache.add_quote_tick(
                QuoteTick(
                    instrument_id=inst.id, bid_price=Price.from_str(bid),
                    ask_price=Price.from_str(ask), bid_size=Quantity.from_str("10"),
                    ask_size=Quantity.from_str("10"), ts_event=0, ts_init=0,
                )
            )  # fmt: skip
        self.strategy = Strategy()
        self.strategy.register(
            trader_id=self.trader_id, portfolio=self.portfolio, msgbus=self.msgbus,
            cache=self.cache, clock=self.clock,
        )  # fmt: skip
        self.risk.start()

    def _sent(self, _msg: Any) -> None:
        self.sent += 1

    def _denied(self, _msg: Any) -> None:
        self.denied += 1

    def commands(self, orders: list[dict[str, Any]]) -> list[SubmitOrder]:
        factory = self.strategy.order_factory
        out = []
        for o in orders:
            side = OrderSide.BUY if o["side"] == "BUY" else OrderSide.SELL
            qty = Quantity.from_str(f"{Decimal(o['quantity']):.8f}")
            iid = instrument_id(o["pair"])
            if o["type"] == "LIMIT":
                order = factory.limit(iid, side, qty, Price.from_str(o["price"]))
            else:
                order = factory.market(iid, side, qty)
            out.append(
                SubmitOrder(
                    trader_id=self.trader_id, strategy_id=self.strategy.id, order=order,
                    command_id=UUID4(), ts_init=0,
                )
            )  # fmt: skip
        return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5000)
    args = parser.parse_args()
    with open(args.stream, encoding="utf-8") as fh:
        stream = json.load(fh)
    peer = Peer(stream)
    orders = stream["orders"]
    execute = peer.risk.execute
    for cmd in peer.commands(orders[: args.warmup]):
        execute(cmd)
    clock = time.perf_counter_ns
    samples: list[float] = []
    medians, p99s, rates = [], [], []
    mix: dict[str, int] = {}
    for _ in range(args.repeats):
        cmds = peer.commands(orders)
        gc.collect()
        sent0, denied0 = peer.sent, peer.denied
        run = []
        start = clock()
        for cmd in cmds:
            t0 = clock()
            execute(cmd)
            run.append((clock() - t0) / 1e3)
        total = (clock() - start) / 1e9
        mix = {"sent": peer.sent - sent0, "denied": peer.denied - denied0}
        medians.append(round(statistics.median(run), 3))
        p99s.append(round(percentile(run, 99), 3))
        rates.append(len(cmds) / total)
        samples += run
        del cmds
    line = {
        "bench": "nautilus_risk_engine",
        "nautilus_trader": __import__("nautilus_trader").__version__,
        "orders": len(orders),
        "repeats": args.repeats,
        "latency_us": {
            "median": round(statistics.median(samples), 3),
            "p99": round(percentile(samples, 99), 3),
            "max": round(max(samples), 3),
        },
        "run_medians_us": medians,
        "run_p99s_us": p99s,
        "orders_per_s": round(statistics.median(rates)),
        "mix": mix,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
