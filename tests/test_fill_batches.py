"""Fills stored in batches (orders.apply_fills, VenueSink): the same rows and outcomes as one
by one, exactly once per (mode, trade_id), applied only after their commit, in order, and a
bad fill fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from heliosd import notify
from heliosd import store as st
from heliosd.builtin.valr.streams import AccountStream
from heliosd.core.config import NotifySettings
from heliosd.core.protocols import Event, ExchangeClient
from heliosd.core.types import (
    Balance,
    Fill,
    Mode,
    OrderIntent,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    Side,
    utcnow,
)
from heliosd.notify import Notifications, enqueue_many
from heliosd.risk.ledger import Ledger
from heliosd.sim import wire
from heliosd.sim.accounts import Balance as SimBalance
from heliosd.store import Store
from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    RecordingEvents,
    fast_valr_tuning,
    funded_sim,
    valr_on_sim,
)
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData
from heliosd.trading.sink import VenueSink

D = Decimal
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(10), D(10), D(10_000_000), D(1), 8)


def order(mode: Mode, qty: str, cid: str, state: OrderState = OrderState.PLACED) -> od.NewOrder:
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D(qty), D(1_000_000))
    return od.NewOrder(mode, intent, D(qty), (), "test", state=state, customer_order_id=cid)


def fill(n: int, qty: str = "0.001", price: int = 1_000_000, **ids: str | None) -> Fill:
    return Fill(f"t{n}", "BTCZAR", Side.BUY, D(price + n), D(qty), D("0.000001"), "BTC",
                T0 + timedelta(seconds=n), **ids)  # fmt: skip


def later(f: Fill) -> Fill:
    """``f`` traded after the venue's last balance snapshot (one traded before it is in it)."""
    return dataclasses.replace(f, traded_at=utcnow() + timedelta(milliseconds=1))


def seed(conn: sqlite3.Connection) -> None:
    """Orders the fills below name: by customer id, by exchange id only, one failed, one in
    the other mode (customer ids are global, exchange ids are per mode)."""
    od.insert_order(conn, order(Mode.LIVE, "0.01", "hd-a"))
    od.insert_order(conn, order(Mode.LIVE, "0.5", "hd-b"))
    row = od.insert_order(conn, order(Mode.LIVE, "0.002", "hd-c", OrderState.FAILED))
    conn.execute("UPDATE orders SET exchange_order_id = 'x-c' WHERE id = ?", (row["id"],))
    row = od.insert_order(conn, order(Mode.LIVE, "0.003", "hd-d"))
    conn.execute("UPDATE orders SET exchange_order_id = 'x-d' WHERE id = ?", (row["id"],))
    row = od.insert_order(conn, order(Mode.PAPER, "0.003", "hd-e"))
    conn.execute("UPDATE orders SET exchange_order_id = 'x-d' WHERE id = ?", (row["id"],))


def mixed_fills() -> list[Fill]:
    """700 fills (several statement chunks) over every way a fill finds (or not) its order,
    with repeats inside the batch."""
    out = []
    for n in range(700):
        kind = n % 7
        if kind == 0:
            out.append(fill(n, customer_order_id="hd-a", exchange_order_id="x-a"))
        elif kind == 1:
            out.append(fill(n, qty="0.0001", customer_order_id="hd-b"))
        elif kind == 2:
            out.append(fill(n, exchange_order_id="x-d"))  # by exchange id, LIVE's order
        elif kind == 3:
            out.append(fill(n, exchange_order_id="x-c", customer_order_id="unknown"))
        elif kind == 4:
            out.append(fill(n, exchange_order_id="x-nobody"))
        elif kind == 5:
            out.append(fill(n - 5, customer_order_id="hd-a", exchange_order_id="x-a"))  # repeat
        else:
            out.append(fill(n))
    return out


def table(conn: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def without_time(outcome: dict[str, Any] | None) -> Any:
    if outcome is None or outcome["order"] is None:
        return outcome
    return {k: v for k, v in outcome["order"].items() if k not in ("created_at", "updated_at")}


async def test_a_batch_stores_what_single_fills_store(tmp_path: Path) -> None:
    fills = mixed_fills()
    results = []
    for name, batch in (("batch", len(fills)), ("single", 1)):
        s = await Store.open(tmp_path / name / "h.db")
        try:
            await s.write(seed)
            # One fill already stored: the batch must skip it, not fail.
            assert await s.write(lambda c: od.apply_fill(c, Mode.LIVE, fills[6])) is not None
            outcomes: list[dict[str, Any] | None] = []
            for i in range(0, len(fills), batch):
                part = fills[i : i + batch]
                outcomes += await s.write(partial(od.apply_fills, mode=Mode.LIVE, fills=part))
            rows = await s.read(lambda c: (
                table(c, "SELECT id, mode, trade_id, order_id, customer_order_id,"
                         " exchange_order_id, pair, side, price, quantity, fee, fee_currency,"
                         " traded_at FROM fills ORDER BY id"),
                table(c, "SELECT id, state, filled_quantity, average_price, exchange_order_id"
                         " FROM orders ORDER BY id"),
            ))  # fmt: skip
            results.append(([without_time(o) for o in outcomes], rows))
        finally:
            await s.close()
    assert results[0] == results[1]
    outcomes, (fill_rows, order_rows) = results[0]
    # Each trade id once, in the order received, every repeat a no-op.
    assert [r[2] for r in fill_rows] == ["t6"] + [
        f"t{n}" for n in range(700) if n % 7 != 5 and n != 6
    ]
    assert outcomes[6] is None and outcomes[5] is None and outcomes[0] is not None
    by_order = {r[0]: r[1:] for r in order_rows}
    # hd-a: 100 fills of 0.001 against 0.01 (filled after 10; more fills keep it filled).
    assert by_order[1][:2] == ("filled", "0.100")
    # hd-b: 100 x 0.0001 of 0.5, average of the prices 1,000,001 ... 1,000,694 step 7.
    assert by_order[2][:2] == ("partially_filled", "0.0100")
    assert D(by_order[2][2]) == sum(D(1_000_000 + n) for n in range(1, 700, 7)) / 100
    # hd-c was "failed" here; the venue's fills filled it, found by exchange id.
    assert by_order[3][:2] == ("filled", "0.100")
    assert by_order[4][0] == "filled" and by_order[5][:2] == ("placed", "0")  # PAPER's x-d
    assert {r[3] for r in fill_rows if r[2] in ("t4", "t6")} == {None}


async def test_batches_respect_a_small_parameter_limit(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "h.db")
    try:
        await s.read(lambda c: c.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40))
        fills = [fill(n) for n in range(300)]
        outcomes = await s.write(lambda c: od.apply_fills(c, Mode.LIVE, fills))
        assert outcomes == [{"order": None}] * 300
        again = await s.write(lambda c: od.apply_fills(c, Mode.LIVE, fills[::-1]))
        assert again == [None] * 300
        assert await s.read(lambda c: st.load_fills(c, Mode.LIVE)) == fills
    finally:
        await s.close()


def test_enqueue_many_stores_rows_in_order(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    for statement in st._statements(st.MIGRATIONS[0]):
        conn.execute(statement)
    events = [Event("fill", f"t {i} é", f"b{i}", T0, data={"n": D(i)}) for i in range(70)]
    enqueue_many(conn, events)
    rows = conn.execute("SELECT kind, title, body, data, created_at, next_attempt_at, attempts"
                        " FROM outbox ORDER BY id").fetchall()  # fmt: skip
    assert [r[1] for r in rows] == [f"t {i} é" for i in range(70)]
    at = T0.isoformat(timespec="microseconds")
    assert rows[3] == ("fill", "t 3 é", "b3", '{"n": "3"}', at, at, 0)


# ---------------------------------------------------------------------- VenueSink


class Sink:
    """A real VenueSink over a real store and ledger, with what it reports recorded."""

    def __init__(self, store: Store) -> None:
        market = MarketData({"BTCZAR": BTCZAR})
        self.ledger = Ledger(Mode.LIVE, "ZAR", ZoneInfo("UTC"), {"BTCZAR": BTCZAR}, market,
                             starting_balances={"ZAR": D(10**9)})  # fmt: skip
        self.published: list[dict[str, Any]] = []
        self.changes: list[Mode] = []

        def no_client() -> ExchangeClient:
            raise AssertionError("fills never call the venue")

        self.sink = VenueSink(
            mode=Mode.LIVE, store=store, ledger=self.ledger, market=market,
            counters=od.OrderCounters(), client=no_client, enqueue=enqueue_many,
            notify_trades=True, publish=self.published.append,
            on_ledger_change=self.changes.append, on_connection_change=lambda *a: None,
        )  # fmt: skip
        self.applied: list[str] = []
        self.sink.fill_listeners.append(lambda f: self.applied.append(f.trade_id))


async def test_sink_stores_a_burst_as_few_jobs_and_applies_after_commit(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "h.db")
    try:
        s = Sink(store)
        fills = [fill(n) for n in range(500)] + [fill(3)]
        for f in fills:
            await s.sink.on_fill(f)
        assert s.applied == []  # nothing counts before its commit
        commits = store.commits
        await asyncio.wait_for(s.sink.drain(), 10)
        assert store.commits - commits == 1  # one loop turn, one job, one commit
        assert s.applied == [f"t{n}" for n in range(500)]
        assert s.sink.fills_applied == 500 and s.changes == [Mode.LIVE]
        assert [p["trade_id"] for p in s.published] == s.applied
        assert s.ledger.position("BTCZAR") == D("0.5") - 500 * D("0.000001")
        # One notification for the burst, not 500 (notify.fills_event).
        rows = await store.read(lambda c: table(c, "SELECT title, body, data FROM outbox"))
        assert len(rows) == 1
        title, body, data = rows[0]
        assert title == "LIVE fills: 500 trades (BUY BTCZAR)"
        assert body.splitlines() == [
            "BUY 0.500 BTCZAR in 500 trades, average 1,000,249.5, value 500,124.750,"
            " fees 0.000500 BTC.",
            "500 trades; each is in GET /api/orders/{id}/fills.",
        ]
        digest = json.loads(data)
        assert (digest["trades"], digest["first_trade_id"], digest["last_trade_id"]) == (
            500,
            "t0",
            "t499",
        )
        assert digest["totals"] == [{"pair": "BTCZAR", "side": "BUY", "trades": 500,
                                     "quantity": "0.500", "value": "500124.750",
                                     "fees": {"BTC": "0.000500"}}]  # fmt: skip
    finally:
        await store.close()


async def test_a_bad_fill_fails_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "h.db")
    try:
        s = Sink(store)
        bad = Fill("bad", None, Side.BUY, D(1), D(1), D(0), "BTC", T0)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="heliosd.trading.sink"):
            for f in (fill(1), bad, fill(2)):
                await s.sink.on_fill(f)
            await asyncio.wait_for(s.sink.drain(), 10)
        assert s.applied == ["t1", "t2"]
        stored = await store.read(lambda c: st.load_fills(c, Mode.LIVE))
        assert [f.trade_id for f in stored] == ["t1", "t2"]
        messages = [r.getMessage() for r in caplog.records]
        assert any("a batch of 3 fills was not stored" in m for m in messages), messages
        assert any(m.startswith("fill bad not stored: NOT NULL") for m in messages), messages
    finally:
        await store.close()


async def test_a_status_after_a_fill_is_applied_after_it(tmp_path: Path) -> None:
    """The venue's ORDER_STATUS_UPDATE (executed = the fill's quantity) follows its fill in
    the same loop turn: applied in that order, the fill is counted once."""
    store = await Store.open(tmp_path / "h.db")
    try:
        await store.write(seed)
        s = Sink(store)
        await s.sink.on_fill(fill(1, qty="0.01", customer_order_id="hd-a"))
        await s.sink.on_order_status(OrderStatus(
            "BTCZAR", OrderState.FILLED, customer_order_id="hd-a",
            executed_quantity=D("0.01"), average_price=D(1_000_001),
        ))  # fmt: skip
        await asyncio.wait_for(s.sink.drain(), 10)
        row = await store.read(lambda c: od.get_order_row(c, 1))
        assert (row["state"], row["filled_quantity"]) == ("filled", "0.01")
    finally:
        await store.close()


async def test_statuses_of_a_turn_are_a_few_commits_in_stream_order(tmp_path: Path) -> None:
    """500 cancellations (an emergency stop) are one store job, not 500 awaited commits; a
    fill and statuses interleaved keep the stream's order; the stream never waits."""
    store = await Store.open(tmp_path / "h.db")
    try:
        rows = await store.write(
            lambda c: [od.insert_order(c, order(Mode.LIVE, "0.01", f"hd-s{i}")) for i in range(500)]
        )
        await store.write(seed)
        s = Sink(store)
        commits = store.commits
        for i in range(500):
            await s.sink.on_order_status(OrderStatus(
                "BTCZAR", OrderState.CANCELLED, customer_order_id=f"hd-s{i}"))  # fmt: skip
        assert store.commits == commits and s.published == []  # queued, nothing waited for
        await s.sink.on_fill(fill(1, qty="0.01", customer_order_id="hd-a"))
        await s.sink.on_order_status(OrderStatus(
            "BTCZAR", OrderState.FILLED, customer_order_id="hd-a",
            executed_quantity=D("0.01"), average_price=D(1_000_001),
        ))  # fmt: skip
        await asyncio.wait_for(s.sink.drain(), 10)
        assert store.commits - commits <= 3  # statuses, the fill, the last status: grouped
        states = await store.read(lambda c: table(
            c, "SELECT state, count(*) FROM orders WHERE customer_order_id LIKE 'hd-s%'"
            " GROUP BY state"))  # fmt: skip
        assert states == [("cancelled", 500)]
        a = await store.read(lambda c: od.get_order_row(c, rows[-1]["id"] + 1))
        assert (a["customer_order_id"], a["state"], a["filled_quantity"]) == (
            "hd-a",
            "filled",
            "0.01",
        )
        assert [p["order"]["state"] for p in s.published if p["type"] == "order"] == (
            ["cancelled"] * 500 + ["filled"]
        )
        row = await s.sink.apply_order_status(OrderStatus(
            "BTCZAR", OrderState.CANCELLED, customer_order_id="hd-s0"))  # fmt: skip
        assert row is not None and row["state"] == "cancelled"  # committed on return
    finally:
        await store.close()


async def test_a_bad_status_fails_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "h.db")
    try:
        await store.write(seed)
        s = Sink(store)
        bad = OrderStatus("BTCZAR", "nonsense", customer_order_id="hd-b")  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="heliosd.trading.sink"):
            await s.sink.on_order_status(OrderStatus(
                "BTCZAR", OrderState.CANCELLED, customer_order_id="hd-a"))  # fmt: skip
            await s.sink.on_order_status(bad)
            await s.sink.on_order_status(OrderStatus(
                "BTCZAR", OrderState.CANCELLED, customer_order_id="hd-d"))  # fmt: skip
            await asyncio.wait_for(s.sink.drain(), 10)
        states = await store.read(lambda c: table(
            c, "SELECT customer_order_id, state FROM orders WHERE mode = 'LIVE'"
            " AND customer_order_id IN ('hd-a', 'hd-b', 'hd-d') ORDER BY 1"))  # fmt: skip
        assert states == [("hd-a", "cancelled"), ("hd-b", "placed"), ("hd-d", "cancelled")]
        messages = [r.getMessage() for r in caplog.records]
        assert any("a batch of 3 order statuses was not stored" in m for m in messages), messages
        assert any(m.startswith("order status hd-b") for m in messages), messages
    finally:
        await store.close()


async def test_outbox_rows_nobody_listened_for_are_not_replayed(tmp_path: Path) -> None:
    """With no subscriber the hub skips past committed rows instead of reading them back (a
    fill burst is thousands of rows); a later subscriber gets what follows, nothing older."""
    store = await Store.open(tmp_path / "h.db")
    notes = Notifications(store, [], NotifySettings(), poll_s=30.0)
    notes.start()
    try:
        await asyncio.sleep(0.05)  # the task notes where the outbox starts
        await notes.notify(notify.resume_event(actor="before", reason="nobody listens"))
        await asyncio.sleep(0.1)  # a pass with no subscriber
        async with notes.subscribe() as sub:
            await notes.notify(notify.resume_event(actor="after", reason="ok"))
            item = await asyncio.wait_for(anext(sub), 2)
    finally:
        await notes.close()
        await store.close()
    assert (item["kind"], item["data"]["actor"]) == ("resume", "after")


# ---------------------------------------------------------------------- balance rows


class Ordered(RecordingEvents):
    """Records the order of deliveries (and counts balance calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.balance_calls = 0

    async def on_balances(self, balances: Sequence[Balance], *, snapshot: bool) -> None:
        await super().on_balances(balances, snapshot=snapshot)
        if not snapshot:
            self.balance_calls += 1
            self.log += [f"{b.currency} {b.available}" for b in balances]

    async def on_order_status(self, status: OrderStatus) -> None:
        await super().on_order_status(status)
        self.log.append(f"status {status.customer_order_id}")

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        await super().on_connection(stream, up, detail)
        self.log.append(f"{stream} {'up' if up else 'down'}")


def balance_frame(currency: str, available: str) -> str:
    bal = SimBalance(D(available), D(0), T0)
    return wire.dumps(wire.balance_update(currency, bal, D(1)))


async def test_balance_rows_of_a_burst_arrive_latest_per_currency() -> None:
    async with funded_sim(D(10_000_000)) as sim:
        events = Ordered()
        async with valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()):
            await sim.inject_fills("0", "BTCZAR", 3000)
            await events.wait_for(lambda: len(events.fills) == 3000, within=20)
            want = {c: a for c, (a, _) in sim.balances("0").items()}
            await events.wait_for(
                lambda: {c: events.balances[c].available for c in want} == want, within=5
            )
    # 6,000 BALANCE_UPDATE frames, a few deliveries (one per socket read at most).
    assert 0 < events.balance_calls < 1000, events.balance_calls


async def test_balance_rows_wait_for_nothing_but_fills() -> None:
    """Rows held back for coalescing are delivered before any later order event and before
    the connection is reported down: the venue's order is kept."""
    events = Ordered()

    async def reconcile(_: Any) -> None:
        return None

    stream = AccountStream("ws://127.0.0.1:9/ws/account", events, fast_valr_tuning(),
                           sign=lambda v, p: {}, reconcile=reconcile)  # fmt: skip
    stream._up = True
    status = wire.dumps({"type": "ORDER_STATUS_UPDATE", "data": {
        "orderId": "x-1", "customerOrderId": "c-1", "currencyPair": "BTCZAR",
        "orderStatusType": "Placed", "originalQuantity": "1", "remainingQuantity": "1",
    }})  # fmt: skip
    for frame in (balance_frame("BTC", "1"), balance_frame("ZAR", "5"),
                  balance_frame("BTC", "2"), status, balance_frame("BTC", "3")):  # fmt: skip
        await stream._handle(frame)
    assert events.log == ["ZAR 5", "BTC 2", "status c-1"]
    await stream._went_down("test")
    assert events.log == ["ZAR 5", "BTC 2", "status c-1", "BTC 3", "account down"]
    await asyncio.sleep(0)  # the scheduled delivery finds nothing left
    assert events.balance_calls == 2
    await stream.stop()


def test_a_small_digest_lists_each_trade_and_one_fill_is_a_fill_event() -> None:
    eth = Fill("e1", "ETHZAR", Side.SELL, D("40000"), D("0.5"), D("0.0000001"), "ZAR", T0)
    batch = [(fill(1), 7), (fill(2), 7), (eth, None)]
    event = notify.fills_event(Mode.LIVE, batch)
    assert event.kind == "fill" and not event.urgent
    assert event.title == "LIVE fills: 3 trades (BUY BTCZAR, SELL ETHZAR)"
    assert event.body.splitlines() == [
        "BUY 0.002 BTCZAR in 2 trades, average 1,000,001.5, value 2,000.003, fees 0.000002 BTC.",
        "SELL 0.5 ETHZAR in 1 trades, average 40,000, value 20,000.0, fees 0.0000001 ZAR.",
        "Trade t1: BUY 0.001 BTCZAR @ 1,000,001, fee 0.000001 BTC, order #7.",
        "Trade t2: BUY 0.001 BTCZAR @ 1,000,002, fee 0.000001 BTC, order #7.",
        "Trade e1: SELL 0.5 ETHZAR @ 40,000, fee 0.0000001 ZAR.",  # no exponent (was 1E-7)
    ]
    assert event.data["order_ids"] == [7] and event.data["trades"] == 3
    assert (event.data["from"], event.data["to"]) == (T0, T0 + timedelta(seconds=2))
    single = notify.fills_event(Mode.LIVE, [(eth, 9)])
    one = notify.fill_event(Mode.LIVE, eth, order_id=9)
    assert (single.title, single.body, single.data) == (one.title, one.body, one.data)
    assert single.title == "LIVE fill: SELL 0.5 ETHZAR @ 40,000"
    assert "fee 0.0000001 ZAR" in single.body and "order #9" in single.body


async def test_a_batch_of_statuses_ends_as_the_same_statuses_one_by_one(tmp_path: Path) -> None:
    """orders.apply_statuses (one job's few statements) leaves every row as apply_status
    applied one status at a time would: several statuses of one order in turn, by customer
    id or exchange id only, another mode's exchange id, an order not stored here."""
    statuses = [
        OrderStatus("BTCZAR", OrderState.PLACED, customer_order_id="hd-a", exchange_order_id="x-a"),
        OrderStatus("BTCZAR", OrderState.PARTIALLY_FILLED, customer_order_id="hd-a",
                    executed_quantity=D("0.004"), average_price=D(1_000_000)),
        OrderStatus("BTCZAR", OrderState.FILLED, customer_order_id="hd-a",
                    executed_quantity=D("0.01"), average_price=D(1_000_100)),
        OrderStatus("BTCZAR", OrderState.CANCELLED, customer_order_id="hd-a"),  # too late
        OrderStatus("BTCZAR", OrderState.CANCELLED, exchange_order_id="x-d"),  # LIVE's x-d
        OrderStatus("BTCZAR", OrderState.FAILED, customer_order_id="hd-b",
                    failed_reason="Insufficient Balance"),
        OrderStatus("BTCZAR", OrderState.CANCELLED, customer_order_id="hd-nobody"),
        OrderStatus("BTCZAR", OrderState.PLACED, customer_order_id="hd-c"),  # failed stays
    ]  # fmt: skip
    rows = {}
    for how in ("batch", "one by one"):
        store = await Store.open(tmp_path / f"{how}.db")
        try:
            await store.write(seed)
            if how == "batch":
                answers = await store.write(lambda c: od.apply_statuses(c, Mode.LIVE, statuses))
            else:
                answers = [await store.write(lambda c, s=s: od.apply_status(c, Mode.LIVE, s))
                           for s in statuses]  # fmt: skip
            stored = await store.read(lambda c: table(c, od._SELECT + " ORDER BY id"))
        finally:
            await store.close()
        drop = {"updated_at", "created_at"}  # times: each file was made at its own moment
        times = [od.ORDER_COLUMNS.index(c) for c in drop]
        rows[how] = (
            [None if a is None else {k: v for k, v in a.items() if k not in drop} for a in answers],
            [tuple(v for i, v in enumerate(r) if i not in times) for r in stored],
        )
    batch, single = rows["batch"], rows["one by one"]
    assert batch[0] == single[0]  # what each status left, as returned
    assert batch[1] == single[1]  # and what is stored
    assert batch[0][2]["state"] == "filled" and batch[0][6] is None


async def test_a_balance_reported_between_a_fill_and_its_commit_settles_it(
    tmp_path: Path,
) -> None:
    """VALR sends the trade, then the balances; the fill is applied only at its commit, after
    the balance rows were taken. Those balances already show it: nothing is left unsettled
    (counted twice). A fill no later balance reports stays unsettled until one does."""
    store = await Store.open(tmp_path / "h.db")
    try:
        s = Sink(store)
        await s.sink.on_balances([Balance("ZAR", D(100000))], snapshot=True)
        await s.sink.on_fill(later(fill(1, qty="0.01", price=1_000_000)))
        await s.sink.on_balances(
            [Balance("BTC", D("0.009999")), Balance("ZAR", D(89999))], snapshot=False
        )
        assert s.applied == []  # not committed yet: the balances came first here
        await asyncio.wait_for(s.sink.drain(), 10)
        assert s.applied == ["t1"]
        assert dict(s.ledger.unsettled()) == {}
        assert s.ledger.position("BTCZAR") == D("0.009999")

        await s.sink.on_fill(later(fill(2, qty="0.01", price=1_000_000)))
        await asyncio.wait_for(s.sink.drain(), 10)
        assert s.ledger.unsettled()["BTC"] == D("0.01") - D("0.000001")  # base fee
        assert s.ledger.position("BTCZAR") == D("0.009999")  # the venue's word, still
        await s.sink.on_balances([Balance("BTC", D("0.019998"))], snapshot=False)
        assert "BTC" not in s.ledger.unsettled()
    finally:
        await store.close()
