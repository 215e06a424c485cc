"""The outbox: events committed with their cause, delivered through Apprise to a real local
HTTP receiver, retried from the database, and delivered after a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd import notify
from heliosd import store as st
from heliosd.builtin.apprise import AppriseNotifier
from heliosd.core.config import EVENT_KINDS, NotifySettings, Secret
from heliosd.core.protocols import Event
from heliosd.core.types import (
    Fill,
    GateResult,
    Mode,
    OrderIntent,
    OrderType,
    Side,
    Verdict,
    utcnow,
)
from heliosd.notify import Notifications, enqueue
from heliosd.store import Store
from heliosd.testing import NotifyReceiver, wait_for

PASSWORD = "pw-Hk29xQ"
TOKEN = "tok-9b1e77c04d2f"

# Fast retries for tests; production defaults are 2 s doubling to 10 min.
# poll_s is long so that every test shows delivery driven by wakes and due times alone.
FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "poll_s": 30.0}


def url(receiver: NotifyReceiver) -> Secret:
    return Secret(receiver.url(f"/hook/{TOKEN}", user="heliosd", password=PASSWORD))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "heliosd.db")
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Fails the test on a WARNING or worse it did not announce (append a substring)."""
    caplog.set_level(logging.DEBUG)
    expected: list[str] = []
    yield expected
    bad = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("call")
        if r.levelno >= logging.WARNING
        and r.name.startswith("heliosd")
        and not any(e in r.getMessage() for e in expected)
    ]
    bad += [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and not any(e in r.getMessage() for e in expected)
    ]
    assert not bad, f"unexpected log records: {bad}"


def settings(receiver: NotifyReceiver | None = None, **kw: Any) -> NotifySettings:
    urls = (url(receiver),) if receiver is not None else ()
    kw.setdefault("timeout_s", Decimal(2))
    return NotifySettings(urls=urls, **kw)


def notifications(store: Store, cfg: NotifySettings, **kw: Any) -> Notifications:
    notifiers = [AppriseNotifier.from_settings(cfg)] if cfg.urls else []
    return Notifications(store, notifiers, cfg, **{**FAST, **kw})


until = wait_for  # heliosd.testing.wait_for: sync or async predicates


async def outbox(store: Store) -> list[dict[str, Any]]:
    def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        cur = conn.execute("SELECT * FROM outbox ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return await store.read(q)


def fill(mode_tag: str = "t1") -> Fill:
    return Fill(
        trade_id=mode_tag,
        pair="BTCZAR",
        side=Side.BUY,
        price=Decimal("1000000"),
        quantity=Decimal("0.0100"),
        fee=Decimal("0.00001"),
        fee_currency="BTC",
        traded_at=datetime(2025, 1, 31, 10, 0, tzinfo=UTC),
    )


# --------------------------------------------------------------------------- delivery


async def test_event_committed_with_its_cause_arrives(
    store: Store, notify_receiver: NotifyReceiver
) -> None:
    cfg = settings(notify_receiver)
    notes = notifications(store, cfg)
    notes.start()
    try:
        event = notify.mode_change_event(Mode.LIVE, Mode.PAPER, actor="alice", reason="done")

        def switch(conn: sqlite3.Connection) -> int | None:
            st.set_mode(store, conn, Mode.PAPER, actor="alice", reason="done", confirmed=False)
            return notes.record(conn, event)

        row_id = await store.write(switch)
        assert row_id is not None
        await until(lambda: len(notify_receiver.posts) == 1)
    finally:
        await notes.close()
    (post,) = notify_receiver.posts
    assert post.json["title"] == "Trading mode LIVE -> PAPER"
    assert post.json["message"] == "By alice: done"
    assert post.json["type"] == "info"
    (row,) = await outbox(store)
    assert row["id"] == row_id
    assert row["delivered_at"] is not None
    assert row["attempts"] == 1
    assert row["last_error"] is None


async def test_rolled_back_cause_sends_nothing(
    store: Store, notify_receiver: NotifyReceiver
) -> None:
    notes = notifications(store, settings(notify_receiver))
    notes.start()

    def failing(conn: sqlite3.Connection) -> None:
        notes.record(conn, notify.resume_event(actor="bob", reason="x"))
        raise RuntimeError("the cause failed")

    try:
        with pytest.raises(RuntimeError):
            await store.write(failing)
        await asyncio.sleep(0.3)
    finally:
        await notes.close()
    assert await outbox(store) == []
    assert notify_receiver.hits == 0


async def test_urgent_stop_is_marked(store: Store, notify_receiver: NotifyReceiver) -> None:
    notes = notifications(store, settings(notify_receiver))
    notes.start()
    try:
        ev = notify.emergency_stop_event(
            reason="drawdown 15.2%", actor="monitor", cancelled_orders=3, remaining_open_orders=0
        )
        assert ev.urgent
        await notes.notify(ev)
        await until(lambda: len(notify_receiver.posts) == 1)
    finally:
        await notes.close()
    (post,) = notify_receiver.posts
    assert post.json["title"] == "URGENT: EMERGENCY STOP: trading halted"
    assert post.json["type"] == "failure"
    assert "Cancelled 3 orders" in post.json["message"]


async def test_down_receiver_is_retried_from_the_database(
    store: Store, notify_receiver: NotifyReceiver, logged: list[str]
) -> None:
    logged.append("failed, retrying in")
    notify_receiver.fail()
    notes = notifications(store, settings(notify_receiver))
    notes.start()
    try:
        await notes.notify(notify.halt_event(breaker="daily_loss", reason="daily loss 5.1%"))

        async def retried() -> bool:
            rows = await outbox(store)
            return rows[0]["attempts"] >= 2

        await until(retried)
        (row,) = await outbox(store)
        assert row["delivered_at"] is None
        assert "0/1 URLs accepted" in row["last_error"]
        assert TOKEN not in row["last_error"]
        assert PASSWORD not in row["last_error"]
        notify_receiver.recover()
        await until(lambda: len(notify_receiver.posts) == 1)
        await until(lambda: notes.delivered == 1)
    finally:
        await notes.close()
    (row,) = await outbox(store)
    assert row["delivered_at"] is not None
    assert row["attempts"] >= 3
    assert notify_receiver.titles() == ["URGENT: HALT: trading stopped by daily_loss"]


async def test_pending_rows_are_delivered_once_after_a_restart(
    tmp_path: Path, logged: list[str]
) -> None:
    logged.append("failed, retrying in")
    receiver = NotifyReceiver()
    await receiver.start()
    await receiver.stop()  # down: the port refuses connections
    cfg = settings(receiver)
    db = tmp_path / "heliosd.db"

    store = await Store.open(db)
    notes = notifications(store, cfg)
    notes.start()
    ev1 = notify.connection_lost_event(venue="VALR", stream="account", detail="socket closed")
    ev2 = notify.resume_event(actor="alice", reason="checked")
    await notes.notify(ev1)
    await notes.notify(ev2)

    async def tried() -> bool:
        return all(r["attempts"] >= 1 for r in await outbox(store))

    await until(tried)
    await notes.close()
    await store.close()

    await receiver.start()  # same port, back up
    try:
        store = await Store.open(db)
        notes = notifications(store, cfg)
        notes.start()
        try:
            await until(lambda: len(receiver.posts) == 2)

            async def recorded() -> bool:  # delivered_at committed: never picked again
                return all(r["delivered_at"] is not None for r in await outbox(store))

            await until(recorded)
        finally:
            await notes.close()  # the sender has stopped: a duplicate could only be in posts
        rows = await outbox(store)
        await store.close()
    finally:
        await receiver.stop()
    assert receiver.titles() == [ev1.title, ev2.title]  # oldest first, each once
    assert all(r["delivered_at"] is not None for r in rows)


async def test_recovery_flushes_the_backlog_without_waiting_out_backoffs(
    store: Store, notify_receiver: NotifyReceiver, logged: list[str]
) -> None:
    logged.append("failed, retrying in")
    notify_receiver.fail()
    notes = notifications(store, settings(notify_receiver), retry_initial_s=60.0, retry_max_s=60.0)
    notes.start()
    try:
        first = notify.connection_lost_event(venue="VALR", stream="trade")
        await notes.notify(first)
        await until(lambda: notes.failures == 1)  # next try of `first` is a minute away
        notify_receiver.recover()
        second = notify.connection_restored_event(venue="VALR", stream="trade")
        await notes.notify(second)
        await until(lambda: len(notify_receiver.posts) == 2)
    finally:
        await notes.close()
    assert notify_receiver.titles() == [second.title, first.title]


async def test_late_delivery_says_when_it_happened(
    store: Store, notify_receiver: NotifyReceiver
) -> None:
    at = utcnow() - timedelta(minutes=5)
    await store.write(lambda c: enqueue(c, Event("resume", "Trading resumed", "by a", at=at)))
    notes = notifications(store, settings(notify_receiver))
    notes.start()
    try:
        await until(lambda: len(notify_receiver.posts) == 1)
    finally:
        await notes.close()
    stamp = at.strftime("%Y-%m-%d %H:%M:%S")
    late = f"by a\n(Happened at {stamp} UTC; delivered late.)"
    assert notify_receiver.posts[0].json["message"] == late


async def test_gives_up_after_max_attempts(
    store: Store, notify_receiver: NotifyReceiver, logged: list[str]
) -> None:
    logged += ["failed, retrying in", "given up after 2 attempts"]
    notify_receiver.fail()
    notes = notifications(store, settings(notify_receiver, max_attempts=2))
    notes.start()
    try:
        await notes.notify(notify.integrity_event("LIVE without a confirmed switch"))
        await until(lambda: notes.failures == 2)

        async def given_up() -> bool:  # attempts = max committed: never due again
            return [r["attempts"] for r in await outbox(store)] == [2]

        await until(given_up)
    finally:
        await notes.close()  # stopped: a third attempt could only be among the hits
    (row,) = await outbox(store)
    assert row["attempts"] == 2
    assert row["delivered_at"] is None
    assert row["last_error"]
    assert notify_receiver.hits == 2


async def test_hanging_receiver_blocks_neither_writes_nor_close(
    store: Store, notify_receiver: NotifyReceiver, logged: list[str]
) -> None:
    logged += ["did not finish within", "failed, retrying in"]
    notify_receiver.stall()
    notes = notifications(store, settings(notify_receiver, timeout_s=Decimal(3)))
    notes.start()
    await notes.notify(notify.resume_event(actor="a", reason="b"))
    await until(lambda: notify_receiver.hits == 1)  # a send is now stuck in the receiver
    started = time.monotonic()
    await store.write(
        lambda c: st.audit(c, actor="test", action="order", outcome="ok", reason="trading goes on")
    )
    row_id = await notes.notify(notify.resume_event(actor="a", reason="again"))
    assert row_id is not None
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    await notes.close(grace_s=0.5)
    assert time.monotonic() - started < 1.5
    rows = await outbox(store)
    assert [r["delivered_at"] for r in rows] == [None, None]  # still pending for next start


async def test_two_notifiers_one_failing_only_the_failed_one_is_retried(
    store: Store, notify_receiver: NotifyReceiver, logged: list[str]
) -> None:
    logged.append("failed, retrying in")

    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.calls = 0

        async def send(self, event: Event) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("first try fails")

    flaky = Flaky()
    cfg = settings(notify_receiver)
    notes = Notifications(store, [AppriseNotifier.from_settings(cfg), flaky], cfg, **FAST)
    notes.start()
    try:
        await notes.notify(notify.resume_event(actor="a", reason="b"))
        await until(lambda: notes.delivered == 1)
    finally:
        await notes.close()
    assert flaky.calls == 2
    assert len(notify_receiver.posts) == 1  # the retry did not resend to Apprise
    (row,) = await outbox(store)
    assert row["attempts"] == 2


async def test_without_notifiers_rows_are_closed_not_piled_up(store: Store) -> None:
    notes = notifications(store, settings())
    notes.start()
    try:
        await notes.notify(notify.resume_event(actor="a", reason="b"))
        await until(lambda: notes.delivered == 1)
    finally:
        await notes.close()
    (row,) = await outbox(store)
    assert row["delivered_at"] is not None
    assert row["last_error"] == "no notifier configured"


async def test_delivered_rows_are_pruned_after_retention(store: Store) -> None:
    old = Event("resume", "old", "b", at=utcnow() - timedelta(days=40))
    new = Event("resume", "new", "b", at=utcnow())

    def seed(conn: sqlite3.Connection) -> None:
        for ev in (old, new):
            rid = enqueue(conn, ev)
            conn.execute(
                "UPDATE outbox SET delivered_at = ? WHERE id = ?", (ev.at.isoformat(), rid)
            )
        enqueue(conn, Event("resume", "stuck", "b", at=utcnow() - timedelta(days=40)))
        conn.execute("UPDATE outbox SET attempts = 99 WHERE title = 'stuck'")

    await store.write(seed)
    notes = notifications(store, settings())
    notes.start()
    try:
        await until(lambda: _titles(store), timeout=5)
    finally:
        await notes.close()


async def _titles(store: Store) -> bool:
    return [r["title"] for r in await outbox(store)] == ["new", "stuck"]


# --------------------------------------------------------------------------- filters


def test_filters_by_kind_and_paper_trades() -> None:
    live_fill = notify.fill_event(Mode.LIVE, fill())
    paper_fill = notify.fill_event(Mode.PAPER, fill())
    halt = notify.halt_event(breaker="daily_loss", reason="x", mode=Mode.PAPER)
    cfg = NotifySettings()
    assert notify.wants(cfg, live_fill)
    assert not notify.wants(cfg, paper_fill)
    assert notify.wants(cfg, halt)  # stops matter in any mode
    assert notify.wants(NotifySettings(paper_trades=True), paper_fill)
    assert not notify.wants(NotifySettings(events=("halt",)), live_fill)
    # No mode given: treated as LIVE (tell the operator when unsure).
    assert notify.wants(cfg, Event("risk_rejected", "t", "b", at=utcnow()))


async def test_record_skips_unwanted_events(store: Store) -> None:
    notes = Notifications(store, [], NotifySettings(), **FAST)

    def tx(conn: sqlite3.Connection) -> tuple[int | None, int | None]:
        return (
            notes.record(conn, notify.fill_event(Mode.PAPER, fill("p"))),
            notes.record(conn, notify.fill_event(Mode.LIVE, fill("l"))),
        )

    skipped, kept = await store.write(tx)
    assert skipped is None
    assert kept is not None
    (row,) = await outbox(store)
    assert json.loads(row["data"])["mode"] == "LIVE"


# --------------------------------------------------------------------------- event hub


async def test_slow_subscriber_drops_oldest_and_is_told(store: Store) -> None:
    notes = Notifications(store, [], NotifySettings(), **FAST)
    sub = notes.subscribe(maxsize=2)
    for i in range(5):
        notes.publish({"type": "order", "n": i, "price": Decimal("1.50")})
    await notes.close()
    got = [item async for item in sub]
    assert got[0]["type"] == "dropped"
    assert got[0]["count"] == 3
    assert [g["n"] for g in got[1:]] == [3, 4]
    assert got[1]["price"] == "1.50"
    assert "at" in got[1]


async def test_committed_notifications_reach_subscribers(store: Store) -> None:
    notes = Notifications(store, [], NotifySettings(), **FAST)
    notes.start()
    try:
        await asyncio.sleep(0.05)  # the task notes where the outbox starts
        async with notes.subscribe() as sub:
            await notes.notify(notify.resume_event(actor="alice", reason="ok"))
            item = await asyncio.wait_for(anext(sub), 2)
    finally:
        await notes.close()
    assert item["type"] == "notification"
    assert item["kind"] == "resume"
    assert item["title"] == "Trading resumed"
    assert item["data"]["actor"] == "alice"


async def test_publishing_never_waits_for_subscribers(store: Store) -> None:
    notes = Notifications(store, [], NotifySettings(), **FAST)
    subs = [notes.subscribe(maxsize=8) for _ in range(50)]
    started = time.monotonic()
    for i in range(2000):
        notes.publish({"type": "fill", "n": i})
    assert time.monotonic() - started < 2
    # Each holds at most 8 of the fills; the rest are counted where they were missed (the
    # buffer's and the budget's misses: tests/test_event_budget.py).
    for s in subs:
        accounted, held = 0, 0
        while (item := s.take()) is not None:
            if item["type"] == "dropped":
                accounted += item["count"]
            else:
                assert item["n"] == accounted
                accounted, held = accounted + 1, held + 1
        assert accounted == 2000 and held == 8
    await notes.close()


# --------------------------------------------------------------------------- builders


def test_a_builder_for_every_kind_and_stops_are_urgent() -> None:
    order = {
        "id": 7, "customer_order_id": "c7", "mode": "LIVE", "pair": "BTCZAR", "side": "BUY",
        "type": "LIMIT", "requested_quantity": "0.0125", "quantity": "0.0100",
        "price": "1000000", "state": "placed", "reason": "rebalance",
    }  # fmt: skip
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.5"), source="manual")
    built = {
        "order": notify.order_event(order),
        "fill": notify.fill_event(Mode.LIVE, fill(), order_id=7),
        "mode_change": notify.mode_change_event(Mode.PAPER, Mode.LIVE, actor="a", reason="go"),
        "live_refused": notify.live_refused_event(
            "alice", gates=[GateResult("positions", False, "open positions exist (BTCZAR 0.0100)")]
        ),
        "risk_rejected": notify.risk_rejected_event(
            Mode.LIVE, intent, [Verdict.reject("leverage", "leverage 3.4x above 3x")]
        ),
        "halt": notify.halt_event(breaker="daily_loss", reason="daily loss 5.1%"),
        "emergency_stop": notify.emergency_stop_event(
            reason="drawdown", actor="monitor", cancelled_orders=1, remaining_open_orders=2
        ),
        "resume": notify.resume_event(actor="a", reason="b", breakers=["daily_loss"]),
        "connection_lost": notify.connection_lost_event(venue="VALR", stream="account"),
        "connection_restored": notify.connection_restored_event(
            venue="VALR", stream="account", down_for=timedelta(seconds=12)
        ),
        "integrity": notify.integrity_event("LIVE without a confirmed switch"),
        "strategy_error": notify.strategy_error_event("demo", "boom", mode=Mode.PAPER),
        "positions_close": notify.positions_close_event(
            mode=Mode.LIVE,
            target="LIVE BTCZAR",
            actor="op (uid 1000)",
            reason="after a stop",
            orders=[{"id": 9, "pair": "BTCZAR", "quantity": "0.0009", "state": "placed"}],
            remaining=[{"pair": "BTCZAR", "asset": "BTC", "quantity": "0.00000001", "why": "step"}],
        ),
    }
    assert set(built) == set(EVENT_KINDS)
    for kind, ev in built.items():
        assert ev.kind == kind
        # Stops, integrity alarms and a switch to LIVE (real money from now on) are urgent.
        assert ev.urgent == (kind in {"halt", "emergency_stop", "integrity", "mode_change"})
        assert ev.title
        assert ev.at.tzinfo is not None
        json.dumps(json.loads(notify._dumps(ev.data)))  # stored as JSON
    assert built["order"].title == "LIVE order placed: BUY 0.0100 BTCZAR @ 1,000,000"
    assert "Requested 0.0125, capped to 0.0100." in built["order"].body
    assert built["fill"].title == "LIVE fill: BUY 0.0100 BTCZAR @ 1,000,000"
    assert "open positions exist (BTCZAR 0.0100)" in built["live_refused"].body
    assert "leverage: leverage 3.4x above 3x" in built["risk_rejected"].body
    assert "CHECK VALR NOW" in built["emergency_stop"].body
    assert built["connection_restored"].title == "VALR account connection restored after 12 s"
    assert built["positions_close"].title == "LIVE close: 1 SELL order"
    assert "Sent: SELL 0.0009 BTCZAR (placed)." in built["positions_close"].body
    assert "Not sold: 0.00000001 BTC: step." in built["positions_close"].body


def test_a_risk_refusal_notice_carries_the_routers_whole_reason() -> None:
    """The router passes its refusal text, which also names what no verdict says (an
    unknown action); a string "reject" from a drop-in rule is listed as a reject."""
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.5"), source="manual")
    odd = Verdict(rule="desk", action="bogus")  # type: ignore[arg-type]
    plain = Verdict(rule="desk2", action="reject", reason="no")  # type: ignore[arg-type]
    event = notify.risk_rejected_event(
        Mode.LIVE,
        intent,
        [odd, plain],
        reason="desk: unknown verdict action 'bogus'; desk2: no",
        order_id=3,
    )
    assert event.title == "LIVE order rejected: BUY 0.5 BTCZAR (desk2)"
    assert event.body.splitlines()[0] == "desk: unknown verdict action 'bogus'; desk2: no"
    assert event.data["order_id"] == 3
    assert [v["rule"] for v in event.data["verdicts"]] == ["desk2"]
