"""The autonomous engine over real parts: PaperExchange + ExecutionRouter with the essential
limits + a real Store in tmp_path + the venue sink applying fills to a real Ledger, with
MarketData fed quotes by the test."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.builtin.limits import essential_rules
from heliosd.builtin.paper import PaperExchange
from heliosd.core.config import EngineSettings, Settings
from heliosd.core.errors import HaltedError, NotFoundError
from heliosd.core.protocols import MarketSnapshot, StrategyContext
from heliosd.core.types import Mode, OrderIntent, OrderType, Quote, Side
from heliosd.risk.breakers import DAILY_LOSS, Breakers, trip_sql
from heliosd.risk.ledger import Ledger
from heliosd.store import Store
from heliosd.testing import wait_for
from heliosd.trading import orders as od
from heliosd.trading.engine import Engine
from heliosd.trading.marketdata import MarketData
from heliosd.trading.router import ExecutionRouter
from heliosd.trading.sink import VenueSink

D = Decimal


def quote(pair: str, mid: Decimal) -> Quote:
    half = mid / 2000  # a book 0.1 % wide
    return Quote(pair, mid - half, mid + half, mid, datetime.now(UTC))


def buy(pair: str, qty: str, reason: str = "") -> OrderIntent:
    return OrderIntent(pair, Side.BUY, OrderType.MARKET, D(qty), reason=reason)


until = wait_for


@dataclass
class Rig:
    store: Store
    market: MarketData
    paper: PaperExchange
    ledgers: dict[Mode, Ledger]
    sink: VenueSink
    router: ExecutionRouter
    breakers: Breakers
    settings: Settings
    events: list[dict[str, Any]] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def engine(self, strategies: Sequence[Any], interval_s: str = "60", **kwargs: Any) -> Engine:
        settings = self.settings.replace(
            engine=EngineSettings(pairs=("BTCZAR", "ETHZAR"), interval_s=D(interval_s))
        )
        engine = Engine(
            self.router,
            {s.name: s for s in strategies},
            settings,
            self.market,
            self.ledgers,
            self.market.pairs,
            lambda: self.store.mode_state().mode,
            self.events.append,
            halted=self.breakers.halt_reason,
            **kwargs,
        )
        self.engines.append(engine)
        return engine

    async def orders(self) -> list[dict[str, Any]]:
        rows = await self.store.read(lambda c: od.list_orders(c, open_only=False, limit=100))
        return list(reversed(rows))

    async def fills(self) -> list[tuple[Any, ...]]:
        return await self.store.read(
            lambda c: c.execute("SELECT order_id, pair, side, quantity FROM fills").fetchall()
        )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = Settings()
    store = await Store.open(tmp_path / "heliosd.db")
    market = MarketData()
    market.update(quote("BTCZAR", D(1000000)))
    market.update(quote("ETHZAR", D(50000)))
    tz = settings.risk.tz
    ledgers = {
        Mode.PAPER: Ledger(Mode.PAPER, "ZAR", tz, market.pairs(), market,
                           settings.paper.starting_balances),
        Mode.LIVE: Ledger(Mode.LIVE, "ZAR", tz, market.pairs(), market, None),
    }  # fmt: skip
    paper = PaperExchange(market, settings.paper)
    counters = od.OrderCounters()
    breakers = Breakers(store)
    await breakers.load()
    sink = VenueSink(
        mode=Mode.PAPER, store=store, ledger=ledgers[Mode.PAPER], market=market,
        counters=counters, client=lambda: paper, enqueue=None, notify_trades=False,
        publish=lambda _e: None, on_ledger_change=lambda _m: None,
        on_connection_change=lambda *_a: None,
    )  # fmt: skip
    await paper.start(sink)
    router = ExecutionRouter(
        store=store, settings=settings, clients={Mode.PAPER: paper}, ledgers=ledgers,
        market=market, breakers=breakers, counters=counters, rules=essential_rules(),
    )  # fmt: skip
    r = Rig(store, market, paper, ledgers, sink, router, breakers, settings)
    try:
        yield r
    finally:
        for engine in r.engines:
            await engine.stop(actor="teardown")
        await paper.close()
        await sink.drain()
        await store.close()


class Scripted:
    """Answers each call with the next list of intents, then holds."""

    def __init__(self, name: str, script: list[list[OrderIntent]]) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[tuple[MarketSnapshot, StrategyContext]] = []

    def on_market(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> list[OrderIntent]:
        self.calls.append((snapshot, ctx))
        return self.script.pop(0) if self.script else []


class Slow:
    """An async strategy whose every call takes ``delay`` seconds (or forever when None)."""

    def __init__(self, delay: float | None, answer: list[OrderIntent] | None = None) -> None:
        self.name = "slow"
        self.delay = delay
        self.answer = answer or []
        self.started = 0
        self.finished = 0

    async def on_market(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> list[OrderIntent]:
        self.started += 1
        if self.delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay or 0)
        self.finished += 1
        return list(self.answer)


class Raising:
    name = "raising"

    def __init__(self, fail_on: int) -> None:
        self.fail_on = fail_on
        self.calls = 0

    def on_market(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> list[OrderIntent]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise ValueError("window is empty")
        return []


def stats(engine: Engine, name: str) -> dict[str, Any]:
    result: dict[str, Any] = engine.status()["strategies"][name]
    return result


# --------------------------------------------------------------------------- trading


async def test_intents_become_stored_orders_and_fills(rig: Rig) -> None:
    strategy = Scripted(
        "scripted",
        [[buy("BTCZAR", "0.01", "test buy"),
          # 30 BTC is far beyond the position limit and the venue's maximum: refused.
          buy("BTCZAR", "30"),
          # below the venue's minimum: the paper venue refuses it at once.
          buy("ETHZAR", "0.00001")]],
    )  # fmt: skip
    engine = rig.engine([strategy])
    started = await engine.start("scripted", actor="alice")
    assert started["running"] is True
    assert started["strategy"] == "scripted"
    await until(lambda: stats(engine, "scripted")["orders_sent"] + stats(engine, "scripted")[
        "orders_refused"] == 3)  # fmt: skip
    await rig.sink.drain()
    await until(lambda: rig.ledgers[Mode.PAPER].position("BTCZAR") > 0)

    s = stats(engine, "scripted")
    assert (s["orders_sent"], s["orders_refused"], s["errors"]) == (1, 2, 0)
    assert s["last_decision"].startswith("BUY 0.01 BTCZAR (test buy); BUY 30 BTCZAR;")

    orders = await rig.orders()
    assert [(o["pair"], o["source"], o["actor"]) for o in orders] == [
        ("BTCZAR", "engine:scripted", "engine:scripted")
    ] * 2 + [("ETHZAR", "engine:scripted", "engine:scripted")]
    first, capped, tiny = orders
    assert first["state"] == "filled"
    assert first["reason"] == "test buy"
    # 30 BTC: the leverage limit rejects it (never sent); stored with every verdict.
    assert capped["state"] == "rejected"
    assert [v["action"] for v in capped["verdicts"]][:2] == ["cap", "reject"]
    # 0.00001 ETH: sent, and the paper venue refuses it with VALR's words.
    assert tiny["state"] == "failed"
    assert tiny["failed_reason"].startswith("Minimum order size not met")
    assert s["last_refusal"] == tiny["failed_reason"]
    assert s["last_order_id"] == tiny["id"]
    fills = await rig.fills()
    assert [(f[0], f[1], f[2]) for f in fills] == [(first["id"], "BTCZAR", "BUY")]
    assert rig.ledgers[Mode.PAPER].position("BTCZAR") > D("0.0099")

    # The strategy saw both pairs' quotes, the stored mode and that mode's ledger.
    snapshot, ctx = strategy.calls[0]
    assert set(snapshot.quotes) == {"BTCZAR", "ETHZAR"}
    assert ctx.mode is Mode.PAPER
    assert ctx.ledger is rig.ledgers[Mode.PAPER]
    assert engine.running
    assert rig.events[0]["type"] == "engine"
    assert rig.events[0]["event"] == "started"
    assert rig.events[0]["actor"] == "alice"


async def test_an_intent_outside_the_engine_pairs_is_refused_not_sent(rig: Rig) -> None:
    strategy = Scripted("scripted", [[buy("BTCUSDC", "0.01")]])
    engine = rig.engine([strategy])
    await engine.start("scripted")
    await until(lambda: stats(engine, "scripted")["orders_refused"] == 1)
    assert stats(engine, "scripted")["last_refusal"] == "BTCUSDC is not one of [engine] pairs"
    assert await rig.orders() == []


# --------------------------------------------------------------------------- ticks


async def test_ticks_come_on_the_interval_without_price_updates(rig: Rig) -> None:
    strategy = Scripted("scripted", [])
    engine = rig.engine([strategy], interval_s="0.02")
    await engine.start("scripted")
    await until(lambda: len(strategy.calls) >= 4)
    assert stats(engine, "scripted")["ticks"] >= 4
    assert stats(engine, "scripted")["last_decision"] == "hold"


async def test_price_updates_wake_the_engine_and_bursts_coalesce(rig: Rig) -> None:
    strategy = Slow(0.2)
    engine = rig.engine([strategy], interval_s="60")
    await engine.start("slow")
    await until(lambda: strategy.started == 1)  # the first tick runs at once
    for i in range(50):  # a burst while the tick runs
        rig.market.update(quote("BTCZAR", D(1000000 + i)))
    await until(lambda: strategy.finished == 2)
    await asyncio.sleep(0.3)
    assert strategy.started == 2  # one tick for the whole burst, not fifty

    rig.market.update(quote("ETHZAR", D(50001)))
    await until(lambda: strategy.finished == 3)
    # A pair the engine does not trade does not wake it.
    rig.market.update(quote("BTCUSDC", D(60000)))
    await asyncio.sleep(0.3)
    assert strategy.started == 3


async def test_old_quotes_are_left_out_of_the_snapshot(rig: Rig) -> None:
    old = quote("ETHZAR", D(50000))
    rig.market.update(Quote(old.pair, old.bid, old.ask, old.last, old.at - timedelta(hours=1)))
    strategy = Scripted("scripted", [])
    engine = rig.engine([strategy])
    await engine.start("scripted")
    await until(lambda: len(strategy.calls) == 1)
    assert set(strategy.calls[0][0].quotes) == {"BTCZAR"}


# --------------------------------------------------------------------------- failures


async def test_a_raising_strategy_is_stopped_and_reported(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = Raising(fail_on=2)
    engine = rig.engine([strategy], interval_s="0.02")
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.engine"):
        await engine.start("raising")
        await until(lambda: not engine.running)
    status = engine.status()
    assert status["running"] is False
    s = status["strategies"]["raising"]
    assert s["running"] is False
    assert s["errors"] == 1
    assert s["last_error"] == "on_market raised ValueError: window is empty"
    assert rig.events[-1]["event"] == "error"
    assert rig.events[-1]["error"] == s["last_error"]
    assert [r.getMessage() for r in caplog.records] == [
        "engine: strategy raising stopped: on_market raised ValueError: window is empty"
    ]
    # Stopped for good: no more calls, and no more market subscription doing work.
    rig.market.update(quote("BTCZAR", D(1000001)))
    await asyncio.sleep(0.1)
    assert strategy.calls == 2
    # And it can be started again by an operator.
    await engine.start("raising")
    assert engine.running


async def test_a_strategy_answering_nonsense_is_stopped(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    class Nonsense:
        name = "nonsense"

        def on_market(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Any:
            return "BUY BTC"

    engine = rig.engine([Nonsense()])
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.engine"):
        await engine.start("nonsense")
        await until(lambda: not engine.running)
    assert stats(engine, "nonsense")["last_error"] == "on_market returned str, not a list"
    assert len(caplog.records) == 1


async def test_a_hung_strategy_times_out_and_is_stopped(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    engine = rig.engine([Slow(None)], tick_timeout_s=0.1)
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.engine"):
        await engine.start("slow")
        await until(lambda: not engine.running)
    assert stats(engine, "slow")["last_error"] == "on_market did not answer within 0.1 s"
    assert len(caplog.records) == 1


# --------------------------------------------------------------------------- halts


async def halt(rig: Rig, reason: str) -> None:
    until_ = datetime.now(UTC) + timedelta(hours=1)
    await rig.store.write(
        lambda c: trip_sql(c, DAILY_LOSS, mode=Mode.PAPER, reason=reason, until=until_)
    )
    rig.breakers.committed_trip(DAILY_LOSS, reason, until_)


async def test_start_is_refused_while_halted(rig: Rig) -> None:
    await halt(rig, "daily loss 5.2 %")
    engine = rig.engine([Scripted("scripted", [])])
    with pytest.raises(HaltedError, match=r"trading is halted \(daily_loss: daily loss 5\.2 %\)"):
        await engine.start("scripted")
    assert engine.running is False
    assert engine.status()["strategies"]["scripted"]["ticks"] == 0


async def test_a_halt_while_running_stops_the_engine(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = Scripted("scripted", [])
    engine = rig.engine([strategy], interval_s="0.02")
    await engine.start("scripted")
    await until(lambda: len(strategy.calls) >= 1)
    with caplog.at_level(logging.WARNING, logger="heliosd.trading.engine"):
        await halt(rig, "daily loss 5.2 %")
        await until(lambda: not engine.running)
    calls = len(strategy.calls)
    assert stats(engine, "scripted")["last_error"] == (
        "stopped: trading is halted (daily_loss: daily loss 5.2 %)"
    )
    assert rig.events[-1]["event"] == "stopped"
    # One engine line (the halt's own journal line, heliosd.journal, is not the engine's).
    assert [r.name for r in caplog.records if r.name.startswith("heliosd.trading")] == [
        "heliosd.trading.engine"
    ]
    await asyncio.sleep(0.1)
    assert len(strategy.calls) == calls


# --------------------------------------------------------------------------- start / stop


async def test_stop_is_prompt_and_ends_the_loop(rig: Rig) -> None:
    strategy = Scripted("scripted", [])
    engine = rig.engine([strategy], interval_s="60")
    await engine.start("scripted", actor="alice")
    await until(lambda: len(strategy.calls) == 1)
    t0 = time.monotonic()
    answer = await engine.stop(actor="bob")
    assert time.monotonic() - t0 < 2.0  # the interval is 60 s: stop did not wait for it
    assert answer["stopped"] is True
    assert answer["running"] is False
    assert engine.running is False
    assert rig.events[-1] == {**rig.events[-1], "event": "stopped", "actor": "bob"}

    rig.market.update(quote("BTCZAR", D(1000500)))
    await asyncio.sleep(0.1)
    assert len(strategy.calls) == 1
    assert (await engine.stop(actor="bob"))["stopped"] is False  # idempotent


async def test_stop_waits_for_the_tick_in_flight_and_sends_nothing_after(rig: Rig) -> None:
    strategy = Slow(0.3, answer=[buy("BTCZAR", "0.01")])
    engine = rig.engine([strategy])
    await engine.start("slow")
    await until(lambda: strategy.started == 1)
    t0 = time.monotonic()
    await engine.stop(actor="bob")
    assert time.monotonic() - t0 >= 0.2  # waited for the strategy to answer
    assert strategy.finished == 1
    assert await rig.orders() == []  # its intent came after the stop: never sent
    assert stats(engine, "slow")["orders_sent"] == 0


async def test_stop_is_bounded_when_a_tick_never_ends(rig: Rig) -> None:
    strategy = Slow(None)
    engine = rig.engine([strategy], stop_timeout_s=0.2)
    await engine.start("slow")
    await until(lambda: strategy.started == 1)
    t0 = time.monotonic()
    await engine.stop(actor="bob")
    assert time.monotonic() - t0 < 3.0  # bounded by stop_timeout_s, not forever
    assert engine.running is False


async def test_start_names_a_known_strategy(rig: Rig) -> None:
    a, b = Scripted("a", []), Scripted("b", [])
    engine = rig.engine([a, b])
    with pytest.raises(NotFoundError, match=r"unknown strategy 'c' \(known: a, b\)"):
        await engine.start("c")
    with pytest.raises(NotFoundError, match="no strategy given"):
        await engine.start()

    assert (await engine.start("a"))["changed"] is True
    assert (await engine.start("a"))["changed"] is False  # already running: no-op
    await engine.start("b")  # another one replaces it
    status = engine.status()
    assert (status["strategy"], status["running"]) == ("b", True)
    assert status["strategies"]["a"]["running"] is False
    assert status["strategies"]["b"]["running"] is True
    assert status["interval_s"] == 60.0
    assert status["started_at"] is not None


async def test_the_status_shape(rig: Rig) -> None:
    engine = rig.engine([Scripted("a", [])])
    status = engine.status()
    assert status == {
        "running": False,
        "strategy": None,
        "started_at": None,
        "interval_s": 60.0,
        "pairs": ["BTCZAR", "ETHZAR"],
        "strategies": {
            "a": {
                "running": False, "ticks": 0, "last_decision": None, "last_decision_at": None,
                "orders_sent": 0, "orders_refused": 0, "last_refusal": None,
                "last_order_id": None, "errors": 0, "last_error": None,
            }
        },
    }  # fmt: skip


def test_the_engine_needs_the_stored_mode() -> None:
    async def never(*_a: Any) -> Any:
        raise AssertionError

    router: Any = type("R", (), {"submit": never})()
    with pytest.raises(TypeError, match="mode_provider"):
        Engine(router, {}, Settings(), MarketData(), {}, None, None)


@pytest.mark.logs_exception("stopped by an engine failure")
async def test_an_engine_failure_stops_and_reports_instead_of_crashing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A mode without a ledger: the engine's own wiring is wrong, not the strategy.
    strategy = Scripted("scripted", [])
    engine = Engine(
        rig.router, {"scripted": strategy}, rig.settings, rig.market,
        {Mode.PAPER: rig.ledgers[Mode.PAPER]}, rig.market.pairs, lambda: Mode.LIVE,
        rig.events.append,
    )  # fmt: skip
    rig.engines.append(engine)
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.engine"):
        await engine.start("scripted")
        await until(lambda: not engine.running)
    assert stats(engine, "scripted")["last_error"] == "engine failed: KeyError: <Mode.LIVE: 'LIVE'>"
    assert strategy.calls == []
    assert rig.events[-1]["event"] == "error"
    (record,) = caplog.records
    assert record.exc_info is not None
