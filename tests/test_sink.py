"""The contract of heliosd.trading.sink (VenueSink) and heliosd.trading.reconcile (its base
class SinkReconciliation), tested directly: a real VenueSink over a real Store file, Ledger,
MarketData and OrderCounters; the only double is the venue client (open orders, status
lookups), the boundary the sink calls.

Pinned here: a fill is stored and applied exactly once by trade id across batches and
replays; statuses move an order forward only, in stream order; a direct lookup commits after
what was queued before it; balances (LIVE only), quotes and connection changes; the
fail-closed paths (a closed store, a fill the ledger cannot read, a listener that raises,
backpressure); the cancel journal; and the reconciliation of local open orders with the
venue's list (deferral, fresh snapshot, grace, adoption, young and placing orders, failed
lookups, one pass at a time, mode isolation).

What the other files already cover (not repeated here):
- tests/test_fill_batches.py: batched fills equal single fills, one job and one digest per
  burst, a bad fill or status fails alone, a status after its fill, balance-settlement order.
- tests/test_order_fill_counts.py: orders.apply_status/apply_fills counting each fill once
  whatever the interleaving, and apply_order_status before the stream's fill.
- tests/test_open_order_sweep.py: reconciliation against the simulator's lagging views with
  the real ValrClient (its not_found_grace_s), revival of a failed order, adoption.
- tests/test_fillcheck.py: the fill check fed by finished_listeners.
- tests/test_review_exposure.py: balance rows against unsettled fills (account risk).
- tests/test_journal_e2e.py: the cancel journal lines of a running daemon.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from heliosd import store as st
from heliosd.core.errors import HeliosError, TransientError
from heliosd.core.protocols import ExchangeClient
from heliosd.core.types import (
    Balance,
    Fill,
    Mode,
    OpenOrder,
    OrderIntent,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    Quote,
    Side,
    utcnow,
)
from heliosd.notify import enqueue_many
from heliosd.risk.ledger import Ledger
from heliosd.risk.ledger_common import LedgerError
from heliosd.store import Store, iso
from heliosd.trading import orders as od
from heliosd.trading import reconcile, sink
from heliosd.trading.marketdata import MarketData
from heliosd.trading.reconcile import listed_status
from heliosd.trading.sink import VenueSink

D = Decimal
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
BTCZAR = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(10), D(10), D(10_000_000), D(1), 8)
OLD_S = 60.0  # older than RECENT_S and than the default not-found grace


def fill(
    n: int, qty: str = "0.001", *, cid: str | None = "hd-a", pair: str = "BTCZAR",
    at: datetime | None = None,
) -> Fill:  # fmt: skip
    return Fill(f"t{n}", pair, Side.BUY, D(1_000_000 + n), D(qty), D(0), "ZAR",
                at or T0 + timedelta(seconds=n), customer_order_id=cid)  # fmt: skip


def status(cid: str, state: OrderState, executed: str = "0", **kw: Any) -> OrderStatus:
    return OrderStatus("BTCZAR", state, customer_order_id=cid, executed_quantity=D(executed), **kw)


def listing(
    cid: str | None, eid: str, qty: str = "0.01", remaining: str | None = None
) -> OpenOrder:
    left = D(remaining if remaining is not None else qty)
    return OpenOrder(eid, "BTCZAR", Side.BUY, OrderType.LIMIT, D(1_000_000), D(qty), left,
                     customer_order_id=cid)  # fmt: skip


class Venue:
    """The client boundary: the venue's open-order list and its answers to status lookups.

    ``snapshots`` scripts what successive ``open_orders`` calls answer (a list, or an error
    to raise); once used up, ``listed``. ``answers`` maps a customer id to a status, None
    (not known) or an error. ``gate``, when set, holds ``open_orders`` until it is set."""

    def __init__(self, *, grace_s: float | None = None) -> None:
        self.listed: list[OpenOrder] = []
        self.snapshots: list[list[OpenOrder] | HeliosError] = []
        self.answers: dict[str, OrderStatus | HeliosError | None] = {}
        self.snapshot_calls = 0
        self.lookups: list[tuple[str | None, int]] = []  # (cid, snapshots read before it)
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()
        if grace_s is not None:
            self.not_found_grace_s = grace_s

    async def open_orders(self) -> list[OpenOrder]:
        self.snapshot_calls += 1
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        answer = self.snapshots.pop(0) if self.snapshots else self.listed
        if isinstance(answer, HeliosError):
            raise answer
        return list(answer)

    async def order_status(
        self, pair: str, *, exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> OrderStatus | None:  # fmt: skip
        self.lookups.append((customer_order_id, self.snapshot_calls))
        answer = self.answers.get(customer_order_id or "")
        if isinstance(answer, HeliosError):
            raise answer
        return answer


class Rig:
    """A real VenueSink over a real store, ledger, market and counters; what it reports to
    the service (publish, ledger changes, connection changes, ledger errors, finished
    orders, applied fills) is recorded."""

    def __init__(
        self, store: Store, *, mode: Mode = Mode.LIVE, venue: Venue | None = None,
        notify_trades: bool = False, watermark: datetime | None = None,
    ) -> None:  # fmt: skip
        self.store, self.mode = store, mode
        self.venue = venue or Venue()
        self.market = MarketData({"BTCZAR": BTCZAR})
        self.ledger = Ledger(mode, "ZAR", ZoneInfo("UTC"), {"BTCZAR": BTCZAR}, self.market,
                             starting_balances={"ZAR": D(10**9)})  # fmt: skip
        self.counters = od.OrderCounters()
        self.published: list[dict[str, Any]] = []
        self.ledger_changes: list[Mode] = []
        self.connections: list[tuple[Mode, str, bool, str]] = []
        self.ledger_errors: list[tuple[Mode, LedgerError]] = []
        self.sink = VenueSink(
            mode=mode, store=store, ledger=self.ledger, market=self.market,
            counters=self.counters, client=lambda: cast(ExchangeClient, self.venue),
            enqueue=enqueue_many, notify_trades=notify_trades, publish=self.published.append,
            on_ledger_change=self.ledger_changes.append,
            on_connection_change=lambda *a: self.connections.append(a),
            watermark=watermark,
            on_ledger_error=lambda m, e: self.ledger_errors.append((m, e)),
        )  # fmt: skip
        self.applied: list[str] = []
        self.sink.fill_listeners.append(lambda f: self.applied.append(f.trade_id))
        self.finished: list[dict[str, Any]] = []
        self.sink.finished_listeners.append(self.finished.append)

    async def add_order(
        self, cid: str, qty: str = "0.01", state: OrderState = OrderState.PLACED, *,
        eid: str | None = None, age_s: float = 0.0, mode: Mode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """An order row as the router leaves it, created and last updated ``age_s`` ago."""
        intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D(qty), D(1_000_000))
        new = od.NewOrder(mode or self.mode, intent, D(qty), (), "test", state, cid)
        at = iso(utcnow() - timedelta(seconds=age_s))

        def tx(c: sqlite3.Connection) -> dict[str, Any]:
            row = od.insert_order(c, new)
            c.execute(
                "UPDATE orders SET exchange_order_id = ?, created_at = ?, updated_at = ?"
                " WHERE id = ?",
                (eid, at, at, row["id"]),
            )
            return od.get_order_row(c, row["id"])

        row = await self.store.write(tx)
        self.counters.track(row)
        return row

    async def row(self, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda c: od.get_order_row(c, order_id))

    async def stored_fills(self) -> list[str]:
        return [f.trade_id for f in await self.store.read(lambda c: st.load_fills(c, self.mode))]

    async def outbox(self) -> int:
        (count,) = await self.store.read(
            lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()
        )
        return int(count)

    async def drain(self) -> None:
        await asyncio.wait_for(self.sink.drain(), 10)

    async def reconciled(self, orders: Sequence[OpenOrder]) -> None:
        """One reconciliation from ``orders``, waited for to its end (retries included) and
        everything it queued committed."""
        await self.sink.on_open_orders(orders)
        task = self.sink._reconcile_task
        assert task is not None
        await asyncio.wait_for(task, 10)
        await self.drain()


@asynccontextmanager
async def rigged(path: Path, **kw: Any) -> AsyncIterator[Rig]:
    store = await Store.open(path)
    try:
        yield Rig(store, **kw)
    finally:
        await store.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rigged(tmp_path / "h.db", venue=Venue()) as r:
        yield r


@pytest.fixture
def quick_passes(monkeypatch: pytest.MonkeyPatch) -> float:
    """Reconciliation passes RECENT_S apart, shortened so a deferred pass takes 50 ms."""
    monkeypatch.setattr(reconcile, "RECENT_S", 0.05)
    return 0.05


# ====================================================================== VenueSink: fills


@hs.composite
def deliveries(draw: hs.DrawFn) -> tuple[list[int], list[bool], list[int]]:
    """Trade numbers as the stream delivers them (repeats: replays), where the stream pauses
    until everything is committed, and trades stored by an earlier run."""
    ids = draw(hs.lists(hs.integers(0, 7), min_size=1, max_size=14))
    pauses = draw(hs.lists(hs.booleans(), min_size=len(ids), max_size=len(ids)))
    before = sorted(draw(hs.sets(hs.integers(0, 7), max_size=2)))
    return ids, pauses, before


async def play_fills(path: Path, ids: list[int], pauses: list[bool], before: list[int]) -> None:
    async with rigged(path) as r:
        await r.add_order("hd-a", qty="1")
        earlier = [fill(n, f"0.00{n + 1}") for n in before]
        await r.store.write(lambda c: od.apply_fills(c, Mode.LIVE, earlier))
        for n, pause in zip(ids, pauses, strict=True):
            await r.sink.on_fill(fill(n, f"0.00{n + 1}"))
            if pause:
                await r.drain()
        await r.drain()
        new = [n for n in dict.fromkeys(ids) if n not in before]
        assert r.applied == [f"t{n}" for n in new]
        assert r.sink.fills_applied == len(new)
        assert [p["trade_id"] for p in r.published if p["type"] == "fill"] == r.applied
        assert await r.stored_fills() == [f"t{n}" for n in before] + r.applied
        # The ledger counts only what this sink applied; the order row every stored fill.
        assert r.ledger.position("BTCZAR") == sum((D(f"0.00{n + 1}") for n in new), D(0))
        row = await r.row(1)
        assert D(row["filled_quantity"]) == sum((D(f"0.00{n + 1}") for n in {*new, *before}), D(0))


@settings(max_examples=20, deadline=None)
@given(deliveries())
def test_each_trade_id_is_stored_and_applied_once_across_batches_and_replays(
    case: tuple[list[int], list[bool], list[int]],
) -> None:
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(play_fills(Path(d) / "h.db", *case))


async def test_replayed_fills_publish_notify_and_change_nothing(tmp_path: Path) -> None:
    async with rigged(tmp_path / "h.db", notify_trades=True) as r:
        await r.add_order("hd-a")
        for n in (1, 2):
            await r.sink.on_fill(fill(n))
        await r.drain()
        assert (await r.outbox(), r.ledger_changes, r.applied) == (1, [Mode.LIVE], ["t1", "t2"])
        published, position = list(r.published), r.ledger.position("BTCZAR")
        for n in (2, 1, 2):  # a reconnect's replay, out of order
            await r.sink.on_fill(fill(n))
        await r.drain()
        assert await r.outbox() == 1  # no digest for a batch of replays
        assert r.ledger_changes == [Mode.LIVE] and r.applied == ["t1", "t2"]
        assert r.published == published and r.ledger.position("BTCZAR") == position
        assert r.sink.fills_applied == 2


async def test_a_fill_the_ledger_cannot_read_is_stored_counted_and_reported(rig: Rig) -> None:
    """The venue's fact is kept (stored), never silently skipped: the service is told
    (on_ledger_error trips ledger_error), and the other fills of the batch are applied."""
    odd = fill(2, pair="WHAT", cid=None)  # no currencies to tell
    for f in (fill(1), odd, fill(3)):
        await rig.sink.on_fill(f)
    await rig.drain()
    assert await rig.stored_fills() == ["t1", "t2", "t3"]
    assert rig.applied == ["t1", "t2", "t3"] and rig.sink.fills_applied == 3
    ((mode, error),) = rig.ledger_errors
    assert (mode, error.trade_id, error.pair) == (Mode.LIVE, "t2", "WHAT")
    assert rig.ledger.errors == [error]
    assert rig.ledger.position("BTCZAR") == D("0.002")  # t1 and t3 only


@pytest.mark.logs_exception("stored but not applied")
async def test_a_listener_that_raises_does_not_drop_the_other_fills_of_the_batch(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(f: Fill) -> None:
        if f.trade_id == "t2":
            raise RuntimeError("listener broke")

    rig.sink.fill_listeners.append(broken)
    for n in (1, 2, 3):
        await rig.sink.on_fill(fill(n))
    await rig.drain()
    assert rig.applied == ["t1", "t2", "t3"] and rig.sink.fills_applied == 3
    assert {p["trade_id"] for p in rig.published} >= {"t1", "t3"}
    assert rig.ledger.position("BTCZAR") == D("0.003")
    assert rig.ledger_changes == [Mode.LIVE]
    assert any("fill t2 stored but not applied" in r.getMessage() for r in caplog.records)


async def test_the_fill_watermark_moves_only_forward_and_only_for_new_fills(
    tmp_path: Path,
) -> None:
    async with rigged(tmp_path / "h.db", watermark=T0 + timedelta(seconds=10)) as r:
        await r.store.write(lambda c: od.apply_fill(c, Mode.LIVE, fill(30)))  # stored earlier
        await r.sink.on_fill(fill(5))  # older than the watermark
        await r.drain()
        assert r.sink.fill_watermark() == T0 + timedelta(seconds=10)
        await r.sink.on_fill(fill(20))
        await r.sink.on_fill(fill(15))
        await r.drain()
        assert r.sink.fill_watermark() == T0 + timedelta(seconds=20)
        await r.sink.on_fill(fill(30))  # a replay: not applied, so it moves nothing
        await r.drain()
        assert r.applied == ["t5", "t20", "t15"]
        assert r.sink.fill_watermark() == T0 + timedelta(seconds=20)


async def test_the_stream_waits_for_the_writer_past_max_pending(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink, "MAX_PENDING", 3)
    for n in (1, 2, 3):
        await rig.sink.on_fill(fill(n))
    assert rig.applied == []  # queued: the stream did not wait for them
    await asyncio.wait_for(rig.sink.on_fill(fill(4)), 10)
    # The fourth was accepted only once the three before it were committed and applied.
    assert rig.applied == ["t1", "t2", "t3"]
    await rig.drain()
    assert rig.applied == ["t1", "t2", "t3", "t4"]


async def test_a_closed_store_drops_fills_with_an_error_and_drain_still_returns(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutting down: the store is closed under a stream still delivering. Nothing is
    applied that is not durable, the error is said, and drain() does not hang."""
    await rig.store.close()
    with caplog.at_level(logging.ERROR, logger="heliosd.trading.sink"):
        await rig.sink.on_fill(fill(1))
        await rig.sink.on_order_status(status("hd-a", OrderState.CANCELLED))
        await rig.drain()
    assert rig.applied == [] and rig.sink.fills_applied == 0 and rig.published == []
    messages = [r.getMessage() for r in caplog.records]
    assert "1 fills not stored: store is closed" in messages, messages
    assert "1 order statuses not stored: store is closed" in messages, messages


# ====================================================================== VenueSink: statuses

_RANK = {OrderState.NEW: 0, OrderState.SENT: 1, OrderState.PLACED: 2,
         OrderState.PARTIALLY_FILLED: 3}  # fmt: skip
_VENUE_KNOWS = {OrderState.PLACED, OrderState.PARTIALLY_FILLED, OrderState.FILLED,
                OrderState.CANCELLED}  # fmt: skip
_STREAMED = [OrderState.SENT, OrderState.PLACED, OrderState.PARTIALLY_FILLED,
             OrderState.FILLED, OrderState.CANCELLED, OrderState.FAILED]  # fmt: skip


def expected_rows(
    start: OrderState, steps: Sequence[tuple[OrderState, int, bool]]
) -> list[tuple[OrderState, Decimal]]:
    """The model: (state, filled) after each status. Open states only advance; filled and
    cancelled are final; failed (maybe our inference) gives way to a state only an order the
    venue knows has; the filled quantity is the highest executed figure reported; a PLACED
    report with something executed is a partial fill."""
    state, top, out = start, D(0), []
    for new, thousandths, _ in steps:
        top = max(top, D(thousandths) / 1000)
        if new is OrderState.PLACED and top > 0:
            new = OrderState.PARTIALLY_FILLED
        if state is OrderState.FAILED:
            state = new if new in _VENUE_KNOWS else state
        elif state.is_open and (new.is_terminal or _RANK[new] > _RANK[state]):
            state = new
        out.append((state, top))
    return out


async def play_statuses(
    path: Path, start: OrderState, steps: list[tuple[OrderState, int, bool]]
) -> None:
    async with rigged(path) as r:
        await r.add_order("hd-a", state=start)
        for state, thousandths, pause in steps:
            await r.sink.on_order_status(status("hd-a", state, str(D(thousandths) / 1000)))
            if pause:
                await r.drain()
        await r.drain()
        want = expected_rows(start, steps)
        seen = [(OrderState(p["order"]["state"]), D(p["order"]["filled_quantity"]))
                for p in r.published]  # fmt: skip
        assert seen == want  # one order event per status, in the stream's order
        assert [OrderState(f["state"]) for f in r.finished] == [s for s, _ in want if s.is_terminal]
        row = await r.row(1)
        assert (OrderState(row["state"]), D(row["filled_quantity"])) == want[-1]
        assert r.counters.open_orders(mode=Mode.LIVE) == (1 if want[-1][0].is_open else 0)


@settings(max_examples=25, deadline=None)
@given(
    hs.sampled_from([OrderState.NEW, OrderState.SENT, OrderState.PLACED, OrderState.FAILED]),
    hs.lists(
        hs.tuples(hs.sampled_from(_STREAMED), hs.integers(0, 10), hs.booleans()),
        min_size=1,
        max_size=10,
    ),
)
def test_statuses_move_an_order_forward_only_in_stream_order(
    start: OrderState, steps: list[tuple[OrderState, int, bool]]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(play_statuses(Path(d) / "h.db", start, steps))


async def test_a_direct_lookup_commits_after_what_the_stream_queued_before_it(rig: Rig) -> None:
    """apply_order_status (a REST lookup) returns the row once committed; the fill the
    stream delivered just before it, not yet submitted, is stored first."""
    await rig.add_order("hd-a")
    await rig.sink.on_fill(fill(1, "0.004"))
    row = await rig.sink.apply_order_status(status("hd-a", OrderState.PARTIALLY_FILLED, "0.002"))
    assert row is not None
    assert (row["state"], row["filled_quantity"]) == ("partially_filled", "0.004")
    await rig.drain()
    assert rig.applied == ["t1"]
    assert [p["type"] for p in rig.published] == ["fill", "order"]
    # An order not stored here: None, and nothing to publish or to check.
    assert await rig.sink.apply_order_status(status("hd-nobody", OrderState.FILLED)) is None
    assert len(rig.published) == 2 and rig.finished == []


async def test_cancellations_are_journaled_once_each_and_a_burst_as_one_line(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [(await rig.add_order(f"hd-c{i}"))["id"] for i in range(12)]
    with caplog.at_level(logging.INFO, logger="heliosd.journal"):
        await rig.sink.on_order_status(status("hd-c0", OrderState.CANCELLED))
        await rig.drain()
        await rig.sink.on_order_status(status("hd-c0", OrderState.CANCELLED))  # said again
        await rig.drain()
        for i in range(11):  # an emergency stop's burst: c0 again, ten new
            await rig.sink.on_order_status(status(f"hd-c{i}", OrderState.CANCELLED))
        await rig.drain()
    lines = [(r.event, r.event_fields) for r in caplog.records if hasattr(r, "event")]
    assert [e for e, _ in lines] == ["order_cancelled", "orders_cancelled"]
    assert lines[0][1]["order"] == str(ids[0])
    burst = lines[1][1]
    assert burst["count"] == "10"
    assert burst["orders"] == ",".join(str(i) for i in ids[1:11])
    # Every report still reaches the API and the fill check (repeats included).
    assert len(rig.finished) == 13 and len(rig.published) == 13
    assert rig.counters.open_orders(mode=Mode.LIVE) == 1  # hd-c11


async def test_a_cancel_burst_line_counts_each_order_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by this file: two cancelled statuses of one order in a batch (the stream and a
    lookup) were both counted, so nine orders made a burst line of count=10."""
    ids = [(await rig.add_order(f"hd-c{i}"))["id"] for i in range(9)]
    with caplog.at_level(logging.INFO, logger="heliosd.journal"):
        for i in [*range(9), 0]:  # the stream and a lookup both report hd-c0
            await rig.sink.on_order_status(status(f"hd-c{i}", OrderState.CANCELLED))
        await rig.drain()
    lines = [(r.event, r.event_fields) for r in caplog.records if hasattr(r, "event")]
    burst = [f for e, f in lines if e == "orders_cancelled"]
    single = [f["order"] for e, f in lines if e == "order_cancelled"]
    listed = [o for f in burst for o in f["orders"].split(",")]
    assert sorted(single + listed) == sorted(str(i) for i in ids)  # each order once
    assert all(int(f["count"]) == len(f["orders"].split(",")) for f in burst)


# ====================================================================== VenueSink: account, market


async def test_balances_move_the_live_ledger_only_and_quotes_reach_the_market(
    tmp_path: Path,
) -> None:
    async with rigged(tmp_path / "live.db") as live:
        await live.sink.on_balances([Balance("ZAR", D(5000)), Balance("BTC", D("0.5"))],
                                    snapshot=True)  # fmt: skip
        await live.sink.on_balances([Balance("BTC", D("0.7"), D("0.1"))], snapshot=False)
        assert dict(live.ledger.balances()) == {
            "ZAR": Balance("ZAR", D(5000)), "BTC": Balance("BTC", D("0.7"), D("0.1")),
        }  # fmt: skip
        assert live.ledger_changes == [Mode.LIVE, Mode.LIVE]
        assert live.ledger.position("BTCZAR") == D("0.8")
    async with rigged(tmp_path / "paper.db", mode=Mode.PAPER) as paper:
        before = dict(paper.ledger.balances())
        await paper.sink.on_balances([Balance("ZAR", D(1))], snapshot=True)  # not its truth
        assert dict(paper.ledger.balances()) == before == {"ZAR": Balance("ZAR", D(10**9))}
        assert paper.ledger_changes == []
        version = paper.market.version
        q = Quote("BTCZAR", D(999_000), D(1_001_000), D(1_000_500), T0)
        await paper.sink.on_quote(q)
        assert paper.market.quote("BTCZAR") == q and paper.market.version == version + 1
        assert paper.market.mark("BTCZAR") == D(1_000_000)


async def test_a_connection_change_is_reported_only_when_a_stream_flips(rig: Rig) -> None:
    """The first "up" is the normal start; a first "down" is news (never connected)."""
    s = rig.sink
    for stream, up, detail in [
        ("account", True, "connected"), ("account", True, "again"),
        ("account", False, "lost"), ("account", False, "still lost"),
        ("account", True, "back"), ("market", False, "refused"),
    ]:  # fmt: skip
        await s.on_connection(stream, up, detail)
    assert rig.connections == [
        (Mode.LIVE, "account", False, "lost"), (Mode.LIVE, "account", True, "back"),
        (Mode.LIVE, "market", False, "refused"),
    ]  # fmt: skip
    assert {k: v[:2] for k, v in s.streams.items()} == {
        "account": (True, "back"), "market": (False, "refused"),
    }  # fmt: skip
    since = datetime.fromisoformat(s.streams["account"][2])
    assert since.tzinfo is not None and abs(utcnow() - since) < timedelta(seconds=5)


# ====================================================================== reconciliation


@settings(max_examples=50, deadline=None)
@given(hs.integers(1, 10**6), hs.integers(0, 15 * 10**5), hs.sampled_from([None, "hd-x"]))
def test_listed_status_reads_a_listing_as_placed_or_partially_filled(
    original: int, remaining: int, cid: str | None
) -> None:
    o = listing(cid, "x-1", str(D(original) / 10**4), str(D(remaining) / 10**4))
    s = listed_status(o)
    executed = max(o.original_quantity - o.remaining_quantity, D(0))
    assert s.executed_quantity == executed >= 0
    assert s.state is (OrderState.PARTIALLY_FILLED if executed > 0 else OrderState.PLACED)
    assert (s.pair, s.exchange_order_id, s.customer_order_id) == ("BTCZAR", "x-1", cid)
    assert (s.original_quantity, s.remaining_quantity) == (o.original_quantity,
                                                           o.remaining_quantity)  # fmt: skip


async def test_no_open_local_order_of_its_mode_means_no_venue_call(tmp_path: Path) -> None:
    async with rigged(tmp_path / "h.db", mode=Mode.PAPER) as paper:
        live_row = await paper.add_order("hd-live", age_s=OLD_S, mode=Mode.LIVE)
        await paper.add_order("hd-done", state=OrderState.CANCELLED, age_s=OLD_S)
        await paper.sink.reconcile_open_orders()
        assert paper.sink._reconcile_task is None and paper.venue.snapshot_calls == 0
        # Handed a listing anyway, it judges only its own mode's orders.
        assert await paper.sink._reconcile_once([], look_up=True) is False
        assert paper.venue.lookups == []
        assert (await paper.row(live_row["id"]))["state"] == "placed"


async def test_orders_the_venue_lists_are_left_alone_in_one_pass(rig: Rig) -> None:
    a = await rig.add_order("hd-a", eid="x-a", age_s=OLD_S)
    b = await rig.add_order("hd-b", eid="x-b", age_s=OLD_S)
    await rig.reconciled([listing(None, "x-a"), listing("hd-b", "x-b", remaining="0.004")])
    assert rig.venue.lookups == [] and rig.venue.snapshot_calls == 0  # one pass, no retry
    assert await rig.row(a["id"]) == a and await rig.row(b["id"]) == b
    assert rig.published == []


async def test_a_missing_order_is_looked_up_only_against_a_fresh_listing(
    rig: Rig, quick_passes: float
) -> None:
    """An order the venue no longer lists has usually just finished and the stream is
    saying how: the first pass only notes it; the next, with a fresh listing, looks it up."""
    row = await rig.add_order("hd-a", age_s=OLD_S)
    rig.venue.answers["hd-a"] = status("hd-a", OrderState.FILLED, "0.01",
                                       average_price=D(1_000_000))  # fmt: skip
    await rig.reconciled([])
    assert rig.venue.lookups == [("hd-a", 1)]  # after one fresh snapshot, not before
    assert rig.venue.snapshot_calls == 1
    done = await rig.row(row["id"])
    assert (done["state"], done["filled_quantity"]) == ("filled", "0.01")
    assert [f["id"] for f in rig.finished] == [row["id"]]
    assert rig.counters.open_orders(mode=Mode.LIVE) == 0


async def test_a_fresh_listing_that_shows_the_order_spares_the_lookup(
    rig: Rig, quick_passes: float
) -> None:
    row = await rig.add_order("hd-a", eid="x-a", age_s=OLD_S)
    rig.venue.listed = [listing("hd-a", "x-a")]  # the first listing was stale
    await rig.reconciled([])
    assert rig.venue.lookups == [] and rig.venue.snapshot_calls == 1
    assert await rig.row(row["id"]) == row


async def test_an_unknown_order_is_failed_only_if_never_placed_and_past_the_grace(
    rig: Rig,
) -> None:
    sent = await rig.add_order("hd-sent", state=OrderState.SENT, age_s=OLD_S)
    new = await rig.add_order("hd-new", state=OrderState.NEW, age_s=OLD_S)
    young = await rig.add_order("hd-young", state=OrderState.SENT, age_s=10)
    placed = await rig.add_order("hd-placed", eid="x-p", age_s=OLD_S)
    for cid in ("hd-sent", "hd-new", "hd-young", "hd-placed"):
        rig.venue.answers[cid] = None  # "not known"
    again = await rig.sink._reconcile_once([], look_up=True)
    await rig.drain()
    assert again is True  # hd-young: looked at again until its grace is over
    reason = "not known to the venue 20 s after it was created"
    for r in (sent, new):
        failed = await rig.row(r["id"])
        assert (failed["state"], failed["failed_reason"]) == ("failed", reason)
    assert (await rig.row(young["id"]))["state"] == "sent"
    assert (await rig.row(placed["id"]))["state"] == "placed"  # the venue accepted it once
    assert rig.counters.open_orders(mode=Mode.LIVE) == 2


async def test_young_orders_and_orders_being_placed_are_not_looked_up(rig: Rig) -> None:
    young = await rig.add_order("hd-young", state=OrderState.SENT)
    placing = await rig.add_order("hd-placing", state=OrderState.SENT, age_s=OLD_S)
    rig.counters.placing.add("hd-placing")
    assert await rig.sink._reconcile_once([], look_up=True) is True  # another pass is due
    await rig.drain()
    assert rig.venue.lookups == []
    assert await rig.row(young["id"]) == young and await rig.row(placing["id"]) == placing


async def test_a_failed_lookup_leaves_its_order_and_asks_for_another_pass(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    unknown = await rig.add_order("hd-u", age_s=OLD_S)
    gone = await rig.add_order("hd-g", age_s=OLD_S)
    rig.venue.answers["hd-u"] = TransientError("HTTP 503")
    rig.venue.answers["hd-g"] = status("hd-g", OrderState.CANCELLED)
    with caplog.at_level(logging.WARNING, logger="heliosd.trading.sink"):
        assert await rig.sink._reconcile_once([], look_up=True) is True
        await rig.drain()
    assert sorted(c for c, _ in rig.venue.lookups) == ["hd-g", "hd-u"]
    assert await rig.row(unknown["id"]) == unknown
    assert (await rig.row(gone["id"]))["state"] == "cancelled"
    assert f"reconcile: status of order {unknown['id']} unknown: HTTP 503" in caplog.messages


async def test_a_listed_order_without_exchange_id_is_adopted_unless_being_placed(
    rig: Rig,
) -> None:
    lost = await rig.add_order("hd-lost", state=OrderState.SENT, age_s=OLD_S)
    young = await rig.add_order("hd-young", state=OrderState.SENT)
    placing = await rig.add_order("hd-placing", state=OrderState.SENT, age_s=OLD_S)
    rig.counters.placing.add("hd-placing")
    await rig.reconciled([
        listing("hd-lost", "x-lost", remaining="0.006"), listing("hd-young", "x-young"),
        listing("hd-placing", "x-placing"),
    ])  # fmt: skip
    adopted = await rig.row(lost["id"])
    assert (adopted["state"], adopted["exchange_order_id"], adopted["filled_quantity"]) == (
        "partially_filled", "x-lost", "0.004",
    )  # fmt: skip
    assert [(r := await rig.row(young["id"]))["state"], r["exchange_order_id"]] == [
        "placed", "x-young",
    ]  # fmt: skip
    assert await rig.row(placing["id"]) == placing  # its placer's answer will name it
    assert rig.venue.lookups == []


async def test_a_listing_while_a_pass_runs_is_ignored(rig: Rig, quick_passes: float) -> None:
    row = await rig.add_order("hd-a", age_s=OLD_S)
    rig.venue.answers["hd-a"] = status("hd-a", OrderState.CANCELLED)
    rig.venue.gate = asyncio.Event()
    await rig.sink.on_open_orders([])
    task = rig.sink._reconcile_task
    await asyncio.wait_for(rig.venue.waiting.wait(), 10)  # pass 2 is reading the venue
    await rig.sink.on_open_orders([listing("hd-a", "x-a")])
    await rig.sink.reconcile_open_orders()
    assert rig.sink._reconcile_task is task and rig.venue.snapshot_calls == 1
    rig.venue.gate.set()
    assert task is not None
    await asyncio.wait_for(task, 10)
    await rig.drain()
    assert rig.venue.lookups == [("hd-a", 1)]
    assert (await rig.row(row["id"]))["state"] == "cancelled"


async def test_deferred_lookups_use_the_old_listing_when_a_fresh_one_fails(
    rig: Rig, quick_passes: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Deferred must not mean dropped: an order absent from the listing we have, and older
    than RECENT_S, was not open then."""
    row = await rig.add_order("hd-a", age_s=OLD_S)
    rig.venue.answers["hd-a"] = status("hd-a", OrderState.CANCELLED)
    rig.venue.snapshots = [TransientError("HTTP 502")]
    with caplog.at_level(logging.WARNING, logger="heliosd.trading.sink"):
        await rig.reconciled([])
    assert rig.venue.lookups == [("hd-a", 1)]
    assert (await rig.row(row["id"]))["state"] == "cancelled"
    assert "reconcile: venue open orders unknown: HTTP 502" in caplog.messages


async def test_a_pass_that_cannot_read_a_fresh_listing_after_lookups_ends(
    rig: Rig, quick_passes: float
) -> None:
    """After the deferred pass, a lookup fails (another pass is due), then the venue's list
    cannot be read: the pass ends (the periodic sweep tries again), it does not spin."""
    row = await rig.add_order("hd-a", age_s=OLD_S)
    rig.venue.answers["hd-a"] = TransientError("HTTP 503")
    rig.venue.snapshots = [[], TransientError("HTTP 502")]
    await rig.reconciled([])
    assert rig.venue.lookups == [("hd-a", 1)] and rig.venue.snapshot_calls == 2
    assert await rig.row(row["id"]) == row
