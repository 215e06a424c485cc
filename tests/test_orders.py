"""heliosd.trading.orders's own contract: the forward-only state machine (rows.can_move,
rows.revives, rows.apply_result, rows.insert_order), venue statuses and fills applied to
stored rows (updates.apply_status(es), updates.apply_fill(s)) on a real SQLite file, and the
in-memory OrderCounters.

What other files already cover, not repeated here:
* tests/test_order_fill_counts.py: filled_quantity = max(venue figure, stored fills), VWAP vs
  the venue's average, replays, a failed order revived by a fill or status.
* tests/test_fill_batches.py: apply_fills / apply_statuses batches equal one-by-one, chunked
  statements, the VenueSink's commit order and a bad fill or status failing alone.
* tests/test_account.py: OrderCounters.reserve's release feeding the account risk model.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from heliosd.core.types import (
    Fill,
    Mode,
    OrderIntent,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    PlaceResult,
    Side,
    Verdict,
    VerdictAction,
)
from heliosd.risk.account import AccountRisk
from heliosd.risk.ledger import Ledger
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData

D = Decimal
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
S = OrderState
OPEN_IN_ORDER = (S.NEW, S.SENT, S.PLACED, S.PARTIALLY_FILLED)  # the only forward path
FINAL = frozenset((S.FILLED, S.CANCELLED, S.REJECTED))  # terminal, never revived
T = TypeVar("T")


def new_order(
    cid: str, qty: str = "1", *, mode: Mode = Mode.LIVE, state: OrderState = S.PLACED
) -> od.NewOrder:
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D(qty), D(100), "why", "manual")
    return od.NewOrder(mode, intent, D(qty), (), "test", state, customer_order_id=cid)


def status(
    state: OrderState, cid: str | None = None, eid: str | None = None, executed: str = "0",
    avg: str | None = None, reason: str = "",
) -> OrderStatus:  # fmt: skip
    average = None if avg is None else D(avg)
    return OrderStatus("BTCZAR", state, eid, cid, executed_quantity=D(executed),
                       average_price=average, failed_reason=reason)  # fmt: skip


def fill(trade: str, qty: str, price: str = "100", cid: str | None = None,
         eid: str | None = None) -> Fill:  # fmt: skip
    return Fill(trade, "BTCZAR", Side.BUY, D(price), D(qty), D(0), "BTC", T0, eid, cid)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "h.db")
    try:
        yield s
    finally:
        await s.close()


async def add(
    store: Store, cid: str, qty: str = "1", *, mode: Mode = Mode.LIVE,
    state: OrderState = S.PLACED, eid: str | None = None,
) -> int:  # fmt: skip
    def insert(c: sqlite3.Connection) -> int:
        order_id = int(od.insert_order(c, new_order(cid, qty, mode=mode, state=state))["id"])
        if eid is not None:
            c.execute("UPDATE orders SET exchange_order_id = ? WHERE id = ?", (eid, order_id))
        return order_id

    return await store.write(insert)


async def row(store: Store, order_id: int) -> dict[str, Any]:
    return await store.read(lambda c: od.get_order_row(c, order_id))


def counting_changes(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], Any]:
    """``fn`` as a write job that also answers how many rows it changed."""

    def run(c: sqlite3.Connection) -> tuple[T, int]:
        before = c.total_changes
        out = fn(c)
        return out, c.total_changes - before

    return run


# ---------------------------------------------------------------------- rows: state machine


def test_can_move_only_advances_open_states_and_never_leaves_a_terminal_one() -> None:
    for old in S:
        for new in S:
            if old.is_terminal:
                expected = False
            elif new.is_terminal:
                expected = True  # any open order may end, in any of the terminal states
            else:
                expected = OPEN_IN_ORDER.index(new) > OPEN_IN_ORDER.index(old)
            assert od.can_move(old, new) is expected, (old, new)
    assert all(not od.can_move(s, s) for s in S)  # staying put is never a "move"


def test_revives_only_a_failed_order_and_only_to_a_state_the_venue_knows() -> None:
    venue_knows = {S.PLACED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}
    for old in S:
        for new in S:
            assert od.revives(old, new) is (old is S.FAILED and new in venue_knows), (old, new)
    # Revival is never a plain move: the two never both say yes.
    assert not any(od.can_move(o, n) and od.revives(o, n) for o in S for n in S)


async def test_apply_result_is_forward_only_but_keeps_a_late_exchange_id(store: Store) -> None:
    # The stream placed the order before the placement's own answer (SENT) came back.
    order_id = await add(store, "hd-a", state=S.SENT)
    moved = await store.write(lambda c: od.apply_result(c, order_id, PlaceResult(S.PLACED)))
    assert (moved["state"], moved["exchange_order_id"]) == ("placed", None)
    late = await store.write(lambda c: od.apply_result(c, order_id, PlaceResult(S.SENT, "x-1")))
    assert (late["state"], late["exchange_order_id"]) == ("placed", "x-1")
    # A known exchange id is never replaced by a backward answer...
    again = await store.write(lambda c: od.apply_result(c, order_id, PlaceResult(S.SENT, "x-2")))
    assert again["exchange_order_id"] == "x-1"
    # ...and a terminal answer records its reason; nothing moves the order after it.
    failed = PlaceResult(S.FAILED, None, "Insufficient Balance")
    done = await store.write(lambda c: od.apply_result(c, order_id, failed))
    assert (done["state"], done["failed_reason"], done["exchange_order_id"]) == (
        "failed", "Insufficient Balance", "x-1",
    )  # fmt: skip
    after = await store.write(lambda c: od.apply_result(c, order_id, PlaceResult(S.PLACED)))
    assert after["state"] == "failed"


async def test_insert_order_stores_a_new_row_under_a_unique_valr_safe_customer_id(
    store: Store,
) -> None:
    verdict = Verdict("position", VerdictAction.CAP, "too big", D("0.5"), {"held": "1"})
    intent = OrderIntent("BTCZAR", Side.SELL, OrderType.LIMIT, D(1), D("100.50"), "r", "manual")
    order = od.NewOrder(Mode.PAPER, intent, D("0.5"), (verdict,), "alice")
    first = await store.write(lambda c: od.insert_order(c, order))
    second = await store.write(lambda c: od.insert_order(c, order))
    assert first["state"] == "new" and first["filled_quantity"] == "0"
    assert (first["requested_quantity"], first["quantity"], first["price"]) == (
        "1",
        "0.5",
        "100.50",
    )
    assert first["verdicts"] == [verdict.as_json()]
    for r in (first, second):  # VALR: at most 50 of [0-9A-Za-z-]
        assert re.fullmatch(r"hd-[0-9a-f]{32}", r["customer_order_id"])
    assert first["customer_order_id"] != second["customer_order_id"]
    dup = od.NewOrder(Mode.LIVE, intent, D(1), (), "bob", customer_order_id="hd-same")
    await store.write(lambda c: od.insert_order(c, dup))
    with pytest.raises(sqlite3.IntegrityError):  # customer ids are global, across modes
        await store.write(lambda c: od.insert_order(c, dup))


# ---------------------------------------------------------------------- updates: statuses


async def test_a_status_of_an_order_not_stored_here_is_none_and_writes_nothing(
    store: Store,
) -> None:
    await add(store, "hd-a", mode=Mode.PAPER, eid="x-a")
    statuses = [
        status(S.CANCELLED, cid="hd-nobody"),
        status(S.CANCELLED, eid="x-nobody"),
        status(S.CANCELLED, eid="x-a"),  # PAPER's exchange id: not LIVE's order
    ]
    out, changes = await store.write(
        counting_changes(lambda c: od.apply_statuses(c, Mode.LIVE, statuses))
    )
    assert out == [None, None, None] and changes == 0
    assert await store.write(lambda c: od.apply_statuses(c, Mode.LIVE, [])) == []
    assert (await row(store, 1))["state"] == "placed"


async def test_a_status_names_its_order_by_customer_id_in_any_mode_else_by_exchange_id(
    store: Store,
) -> None:
    paper = await add(store, "hd-p", mode=Mode.PAPER)
    live = await add(store, "hd-l", eid="x-1")
    other = await add(store, "hd-o", mode=Mode.PAPER, eid="x-1")
    # Our customer ids are unique, so one finds its order whatever mode reports it.
    by_cid = await store.write(lambda c: od.apply_status(c, Mode.LIVE, status(S.CANCELLED, "hd-p")))
    assert by_cid is not None and by_cid["id"] == paper and by_cid["state"] == "cancelled"
    # A customer id we never issued: the exchange id, in the reporting mode only.
    s = status(S.CANCELLED, cid="hd-unknown", eid="x-1")
    by_eid = await store.write(lambda c: od.apply_status(c, Mode.LIVE, s))
    assert by_eid is not None and by_eid["id"] == live
    assert (await row(store, other))["state"] == "placed"


async def test_an_exchange_id_two_orders_share_names_the_oldest(store: Store) -> None:
    oldest = await add(store, "hd-1", eid="x-dup")
    newer = await add(store, "hd-2", eid="x-dup")
    out = await store.write(
        lambda c: od.apply_status(c, Mode.LIVE, status(S.CANCELLED, eid="x-dup"))
    )
    assert out is not None and out["id"] == oldest
    assert (await row(store, oldest))["state"] == "cancelled"
    assert (await row(store, newer))["state"] == "placed"


async def test_a_placed_status_reporting_executions_marks_the_order_partially_filled(
    store: Store,
) -> None:
    """The stream's fill may not be here yet: the row must not look untouched."""
    order_id = await add(store, "hd-a", state=S.SENT)
    s = status(S.PLACED, "hd-a", "x-a", executed="0.2", avg="101")
    out = await store.write(lambda c: od.apply_status(c, Mode.LIVE, s))
    assert out is not None
    assert (out["state"], out["filled_quantity"], out["average_price"]) == (
        "partially_filled", "0.2", "101",
    )  # fmt: skip
    assert await row(store, order_id) == out


async def test_a_status_that_says_nothing_new_writes_nothing(store: Store) -> None:
    order_id = await add(store, "hd-a", state=S.PLACED)
    await store.write(lambda c: od.apply_status(c, Mode.LIVE, status(S.PLACED, "hd-a", "x-a")))
    before = await row(store, order_id)
    stale = [
        status(S.PLACED, "hd-a", "x-a"),  # the same again
        status(S.SENT, "hd-a", "x-a"),  # behind the row
        status(S.NEW, "hd-a", "x-b"),  # behind it, with another exchange id
    ]
    out, changes = await store.write(
        counting_changes(lambda c: od.apply_statuses(c, Mode.LIVE, stale))
    )
    assert changes == 0
    assert out == [before, before, before]
    assert await row(store, order_id) == before


async def test_a_failed_reason_is_recorded_only_when_the_status_moves_or_repeats_the_state(
    store: Store,
) -> None:
    failing = await add(store, "hd-f")
    cancelled = await add(store, "hd-c", state=S.CANCELLED)
    moved = await store.write(
        lambda c: od.apply_status(c, Mode.LIVE, status(S.FAILED, "hd-f", reason="no funds"))
    )
    assert moved is not None and (moved["state"], moved["failed_reason"]) == ("failed", "no funds")
    # The same state again with news (a higher executed figure): its reason is the latest.
    s = status(S.FAILED, "hd-f", executed="0.1", reason="expired")
    again = await store.write(lambda c: od.apply_status(c, Mode.LIVE, s))
    assert again is not None and again["failed_reason"] == "expired"
    # A cancelled order stays cancelled: a FAILED report's executions count, its reason not.
    s = status(S.FAILED, "hd-c", executed="0.3", reason="bogus")
    kept = await store.write(lambda c: od.apply_status(c, Mode.LIVE, s))
    assert kept is not None
    assert (kept["state"], kept["filled_quantity"], kept["failed_reason"]) == (
        "cancelled",
        "0.3",
        "",
    )
    assert await row(store, cancelled) == kept and (await row(store, failing)) == again


async def test_an_exchange_id_is_filled_in_once_and_never_overwritten(store: Store) -> None:
    order_id = await add(store, "hd-a", state=S.SENT)
    first = await store.write(
        lambda c: od.apply_status(c, Mode.LIVE, status(S.PLACED, "hd-a", "x-1"))
    )
    assert first is not None and first["exchange_order_id"] == "x-1"
    s = status(S.PARTIALLY_FILLED, "hd-a", "x-2", executed="0.5")
    later = await store.write(lambda c: od.apply_status(c, Mode.LIVE, s))
    assert later is not None and later["exchange_order_id"] == "x-1"
    f = fill("t1", "0.6", cid="hd-a", eid="x-3")
    await store.write(lambda c: od.apply_fill(c, Mode.LIVE, f))
    assert (await row(store, order_id))["exchange_order_id"] == "x-1"


# ---------------------------------------------------------------------- updates: fills


async def test_a_fill_is_stored_once_per_mode_and_trade_id(store: Store) -> None:
    order_id = await add(store, "hd-a", eid="x-a")
    f = fill("t1", "0.25", eid="x-a")
    out = await store.write(lambda c: od.apply_fill(c, Mode.LIVE, f))
    assert out is not None and out["order"]["id"] == order_id
    assert out["order"]["filled_quantity"] == "0.25"
    assert await store.write(lambda c: od.apply_fill(c, Mode.LIVE, f)) is None
    # The same trade id in the other mode is another trade; its exchange id is not LIVE's.
    other = await store.write(lambda c: od.apply_fill(c, Mode.PAPER, f))
    assert other == {"order": None}
    stored = await store.read(
        lambda c: c.execute("SELECT mode, trade_id, order_id FROM fills ORDER BY id").fetchall()
    )
    assert [tuple(r) for r in stored] == [("LIVE", "t1", order_id), ("PAPER", "t1", None)]
    assert (await row(store, order_id))["filled_quantity"] == "0.25"
    assert await store.read(lambda c: od.fills_of_order(c, order_id)) == [f]


async def test_fills_complete_an_order_and_take_its_exchange_id(store: Store) -> None:
    order_id = await add(store, "hd-a", qty="0.5", state=S.SENT)
    outcomes = await store.write(lambda c: od.apply_fills(c, Mode.LIVE, [
        fill("t1", "0.2", "100", cid="hd-a", eid="x-a"),
        fill("t2", "0.3", "110", cid="hd-a", eid="x-a"),
    ]))  # fmt: skip
    states = [o["order"]["state"] for o in outcomes if o is not None]
    assert states == ["partially_filled", "filled"]
    r = await row(store, order_id)
    assert (r["state"], r["filled_quantity"], r["average_price"], r["exchange_order_id"]) == (
        "filled", "0.5", "106", "x-a",
    )  # fmt: skip


async def test_a_fill_on_a_rejected_order_counts_but_does_not_revive_it(store: Store) -> None:
    """Only "failed" may be heliosd's inference; a risk rule's "rejected" is final."""
    order_id = await add(store, "hd-r", state=S.REJECTED)
    f = fill("t1", "1", cid="hd-r")
    out = await store.write(lambda c: od.apply_fill(c, Mode.LIVE, f))
    assert out is not None
    assert (out["order"]["state"], out["order"]["filled_quantity"]) == ("rejected", "1")
    assert await row(store, order_id) == out["order"]


async def test_a_batch_the_store_does_not_fully_store_fails_and_rolls_back(
    store: Store,
) -> None:
    """Fail closed: if the store disagrees with what was read (a fill not written), the job
    raises and the store's savepoint undoes the part of the batch already written."""
    order_id = await add(store, "hd-a")
    before = await row(store, order_id)
    await store.write(lambda c: c.execute(
        "CREATE TRIGGER lose_t2 BEFORE INSERT ON fills WHEN NEW.trade_id = 't2'"
        " BEGIN SELECT RAISE(IGNORE); END"
    ))  # fmt: skip
    batch = [fill("t1", "0.2", cid="hd-a"), fill("t2", "0.3", cid="hd-a")]
    with pytest.raises(RuntimeError, match="stored 1 of 2 new fills"):
        await store.write(lambda c: od.apply_fills(c, Mode.LIVE, batch))
    assert await store.read(lambda c: c.execute("SELECT count(*) FROM fills").fetchone()[0]) == 0
    assert await row(store, order_id) == before


# ---------------------------------------------------------------------- forward only, any input

_STEP = hs.one_of(
    hs.tuples(hs.just("status"), hs.sampled_from(list(S)), hs.sampled_from(["0", "0.3", "1"])),
    hs.tuples(hs.just("fill"), hs.sampled_from(["t0", "t1", "t2", "t3"]), hs.just("0.25")),
)


async def _play(path: Path, start: OrderState, steps: list[tuple[str, Any, str]]) -> None:
    store = await Store.open(path)
    try:
        order_id = await add(store, "hd-a", state=start)
        old = await row(store, order_id)
        for kind, what, qty in steps:
            if kind == "status":
                s = status(what, "hd-a", executed=qty)
                await store.write(lambda c, s=s: od.apply_status(c, Mode.LIVE, s))
            else:
                f = fill(what, qty, cid="hd-a")
                await store.write(lambda c, f=f: od.apply_fills(c, Mode.LIVE, [f]))
            new = await row(store, order_id)
            a, b = S(old["state"]), S(new["state"])
            assert a is b or od.can_move(a, b) or od.revives(a, b), (a, b, kind, what)
            assert a not in FINAL or b is a, (a, b)
            assert D(new["filled_quantity"]) >= D(old["filled_quantity"])
            old = new
    finally:
        await store.close()


@settings(max_examples=30, deadline=None)
@given(start=hs.sampled_from(list(S)), steps=hs.lists(_STEP, max_size=8))
def test_any_sequence_of_venue_reports_moves_an_order_only_forward(
    start: OrderState, steps: list[tuple[str, Any, str]]
) -> None:
    """Statuses (any state, stale or not) and fills (replays too) in any order: each stored
    change is a can_move or a revival, the final states stay, executions never go down."""
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(_play(Path(d) / "h.db", start, steps))


# ---------------------------------------------------------------------- OrderCounters


def counted(
    order_id: int, state: str, mode: Mode = Mode.LIVE, pair: str = "BTCZAR"
) -> dict[str, Any]:
    return {"id": order_id, "mode": str(mode), "pair": pair, "state": state}


def test_open_orders_counts_each_open_row_once_by_mode_and_pair() -> None:
    c = od.OrderCounters()
    c.track(counted(1, "new"))
    c.track(counted(1, "placed"))  # the same order, moved on: still one
    c.track(counted(2, "partially_filled", pair="ETHZAR"))
    c.track(counted(3, "sent", Mode.PAPER))
    c.track(counted(4, "filled"))  # first seen terminal: never counted
    assert c.open_orders() == 3
    assert c.open_orders(pair="BTCZAR") == 2
    assert c.open_orders(mode=Mode.LIVE) == 2
    assert c.open_orders(pair="BTCZAR", mode=Mode.PAPER) == 1
    assert c.open_orders(pair="XRPZAR") == 0
    c.track(counted(1, "cancelled"))
    c.track(counted(1, "cancelled"))  # idempotent
    assert c.open_orders(pair="BTCZAR", mode=Mode.LIVE) == 0 and c.open_orders() == 2


_PAIRS = ("BTCZAR", "ETHZAR")


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(1, 6), hs.sampled_from(list(S))), max_size=30))
def test_open_orders_always_equals_a_recount_of_the_latest_rows(
    changes: list[tuple[int, OrderState]],
) -> None:
    c = od.OrderCounters()
    latest: dict[int, OrderState] = {}

    def where(order_id: int) -> tuple[Mode, str]:  # an order's mode and pair never change
        return (Mode.LIVE if order_id % 2 else Mode.PAPER), _PAIRS[order_id % 3 % 2]

    for order_id, state in changes:
        mode, pair = where(order_id)
        c.track(counted(order_id, str(state), mode, pair))
        latest[order_id] = state
        for m in (None, *Mode):
            for p in (None, *_PAIRS):
                expected = sum(
                    1 for i, s in latest.items() if s.is_open
                    and (m is None or where(i)[0] is m) and (p is None or where(i)[1] == p)
                )  # fmt: skip
                assert c.open_orders(pair=p, mode=m) == expected


def test_orders_since_counts_sends_in_the_window_by_mode() -> None:
    c = od.OrderCounters(window=timedelta(minutes=30))
    c.sent(Mode.LIVE, T0)
    c.sent(Mode.PAPER, T0 + timedelta(minutes=10))
    assert c.orders_since(T0) == 2 and c.orders_since(T0, Mode.LIVE) == 1
    c.sent(Mode.LIVE, T0 + timedelta(minutes=35))  # the first falls out of the window
    c.sent(Mode.LIVE, T0 + timedelta(minutes=40))
    assert c.orders_since(T0 - timedelta(days=1)) == 3  # forgotten, not only filtered
    assert c.orders_since(T0 + timedelta(minutes=35), Mode.LIVE) == 2
    assert c.orders_since(T0 + timedelta(minutes=10), Mode.PAPER) == 1
    assert c.orders_since(T0 + timedelta(minutes=41)) == 0


def test_reservations_are_exposure_not_open_orders_and_each_is_its_own() -> None:
    btczar = PairInfo("BTCZAR", "BTC", "ZAR", D("0.0001"), D(2), D(10), D(5_000_000), D(1), 8)
    market = MarketData({"BTCZAR": btczar})
    ledger = Ledger(Mode.LIVE, "ZAR", ZoneInfo("UTC"), {"BTCZAR": btczar}, market)
    c = od.OrderCounters()
    c.accounts[Mode.LIVE] = account = AccountRisk(Mode.LIVE, ledger, market)
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D("0.01"), D(1_000_000))
    first = c.reserve(Mode.LIVE, intent, D("0.01"))
    second = c.reserve(Mode.LIVE, intent, D("0.02"))
    pending = account.exposure.pending()["BTC"]
    assert (pending.orders, pending.buy_quantity) == (2, D("0.03"))
    assert c.open_orders() == 0  # a reservation is no order row
    first()
    first()
    assert account.exposure.pending()["BTC"].buy_quantity == D("0.02")
    second()
    assert account.exposure.pending() == {}
    # A mode without an account model: nothing to reserve, and fills change nothing.
    assert c.reserve(Mode.PAPER, intent, D(1))() is None
    c.fill_applied(Mode.PAPER, 1, D(1))
    assert c.open_orders() == 0 and account.exposure.pending() == {}
