"""The router's send permit against real parts (a real SQLite file, the real ledger, market,
breakers and Stops), with exchange-client doubles that block inside place(): an order checked
at epoch N never reaches a client once a stop has committed N+1, whichever wait it is in."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.control.backend import Actor
from heliosd.core.errors import ModeIntegrityError, PermitRevoked, RiskRejected
from heliosd.core.types import (
    Mode,
    OpenOrder,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    PlaceResult,
    Side,
    TradingState,
    Verdict,
    utcnow,
)
from heliosd.risk.breakers import DAILY_LOSS, trip_sql
from heliosd.risk.stops import Stops
from heliosd.testing import eventually, wait_for
from heliosd.trading import orders as od
from heliosd.trading.router import ExecutionRouter

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import risk_path  # type: ignore[import-not-found]  # noqa: E402

OPERATOR = Actor(1000, "op")


class Venue:
    """A client double. ``honours_permits``: it checks the permit itself around its one wire
    send after a wait (the account stream becoming ready) that a revocation must end; else
    (a plugin client) it blocks inside place() as if the request were on the wire."""

    def __init__(self, rig: Rig, *, honours: bool) -> None:
        self.honours_permits = honours
        self.rig = rig
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.sent: list[tuple[str, int, int]] = []  # (cid, permit epoch, stored epoch)
        self.cancelled: list[str | None] = []  # customer order ids cancelled one by one

    async def place(self, request: PlaceRequest) -> PlaceResult:
        permit = request.permit
        assert permit is not None
        self.entered.set()
        if self.honours_permits:
            await permit.guard(self.gate.wait())
            permit.begin_send()
            try:
                return self._send(request, permit.epoch)
            finally:
                permit.end_send()
        await self.gate.wait()
        return self._send(request, permit.epoch)

    def _send(self, request: PlaceRequest, epoch: int) -> PlaceResult:
        self.sent.append((request.customer_order_id, epoch, self.rig.store.mode_state().epoch))
        return PlaceResult(OrderState.PLACED, f"x-{len(self.sent)}")

    async def cancel_all(self) -> int:
        return 0

    async def cancel(self, pair: str, **ids: Any) -> None:
        """The stop's follow-up cancels by id a placement that answered after it."""
        self.cancelled.append(ids.get("customer_order_id"))

    async def open_orders(self) -> list[OpenOrder]:
        return []


class Rig:
    def __init__(self, base: risk_path.Rig, honours: bool) -> None:
        self.base = base
        self.store = base.store
        self.venue = Venue(self, honours=honours)
        clients: Any = {Mode.PAPER: self.venue, Mode.LIVE: self.venue}
        ledgers: Any = {Mode.PAPER: base.ledger, Mode.LIVE: base.ledger}
        self.router = ExecutionRouter(
            store=base.store, settings=base.settings, clients=clients, ledgers=ledgers,
            market=base.market, breakers=base.breakers, counters=od.OrderCounters(),
            rules=base.router.rules,
        )  # fmt: skip

        async def nothing(*_: Any) -> None:
            return None

        self.stops = Stops(
            store=base.store, settings=base.settings, breakers=base.breakers, clients=clients,
            ledgers=ledgers, market=base.market, enqueue=lambda: (lambda conn, ev: None),
            publish=lambda event: None, stop_engine=nothing, on_open_orders=nothing,
            submit_closing=self.router.submit_closing, permits=self.router.permits, settle_s=0.3,
        )  # fmt: skip

    async def stored(self, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda c: od.get_order_row(c, order_id))


@pytest.fixture(params=[True, False], ids=["honours_permits", "plugin_client"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with risk_path.Rig(tmp_path) as base:
        r = Rig(base, honours=request.param)
        try:
            yield r
        finally:
            r.venue.gate.set()
            await r.stops.close()


def buy(qty: str = "0.001") -> OrderIntent:
    return OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, Decimal(qty), Decimal(1_000_000),
                       "test", "manual")  # fmt: skip


def sell(qty: str = "0.01") -> OrderIntent:
    return OrderIntent("BTCZAR", Side.SELL, OrderType.LIMIT, Decimal(qty), Decimal(1_300_000),
                       "test", "manual")  # fmt: skip


async def test_an_order_waiting_in_the_client_is_never_sent_after_a_stop(rig: Rig) -> None:
    epoch = rig.store.mode_state().epoch
    placing = asyncio.ensure_future(rig.router.submit(buy(), actor="t"))
    await rig.venue.entered.wait()
    stop = asyncio.ensure_future(rig.stops.emergency_stop(reason="drill", actor=OPERATOR))
    if rig.venue.honours_permits:
        # The client was waiting before its send: the revocation ends the wait, nothing is
        # sent, and the stop finds nothing on the wire.
        with pytest.raises(PermitRevoked) as info:
            await placing
        answer = await stop
        assert answer["unresolved_placements"] == []
        row = info.value.details["order"]
        assert row["state"] == "rejected"
        assert "emergency stop: drill" in row["failed_reason"]
        assert rig.venue.sent == []
    else:
        # A plugin client is on the wire from the moment place() runs: the stop settles
        # (bounded) and names it, and the venue's answer is whatever it was.
        answer = await stop
        [cid] = answer["unresolved_placements"]
        rig.venue.gate.set()
        row = await placing
        assert row["customer_order_id"] == cid
        assert rig.venue.sent == [(cid, epoch, answer["epoch"])]

        # Once it answered, the stop cancels again until the venue is verified empty, audited.
        async def follow_up() -> list[Any]:
            rows = await rig.store.read(lambda c: c.execute(
                "SELECT details FROM audit WHERE action = 'emergency_stop'"
                " AND outcome = 'verified'"
            ).fetchall())  # fmt: skip
            return list(rows)

        [(details,)] = await eventually(follow_up)
        assert cid in details
    assert answer["epoch"] > epoch and answer["trading_state"] == "REDUCING"
    # Every send happened under the permit's own epoch (or the wrapper made it on-the-wire
    # before the stop, which the stop reported).
    later = rig.router.submit(buy(), actor="t")
    with pytest.raises(RiskRejected, match="emergency_stop"):
        await later
    assert len(rig.venue.sent) == (0 if rig.venue.honours_permits else 1)


async def test_an_order_checked_before_a_stop_is_stored_rejected_not_sent(rig: Rig) -> None:
    """The stop commits while a risk rule is still checking the order (epoch N -> N+1): the
    transaction that stores the order sees N+1 and stores it REJECTED; the client is never
    called."""
    checking, release = asyncio.Event(), asyncio.Event()

    class Slow:
        name = "slow_rule"

        async def _wait(self) -> Verdict:
            checking.set()
            await release.wait()
            return Verdict.accept(self.name)

        def check(self, intent: OrderIntent, ctx: Any) -> Awaitable[Verdict]:
            return self._wait()

    rig.router.rules = (*rig.router.rules, Slow())
    epoch = rig.store.mode_state().epoch
    placing = asyncio.ensure_future(rig.router.submit(buy(), actor="t"))
    await checking.wait()
    answer = await rig.stops.emergency_stop(reason="drill", actor=OPERATOR)
    release.set()
    with pytest.raises(PermitRevoked, match=rf"epoch {epoch} -> {answer['epoch']}") as info:
        await placing
    row = info.value.details["order"]
    assert row["state"] == "rejected"
    assert row["verdicts"][-1]["rule"] == "state_changed"
    assert not rig.venue.entered.is_set() and rig.venue.sent == []


async def test_an_order_placed_while_the_stop_commits_its_latch_is_never_sent(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P6: the stop's latch is still committing (the stored epoch is the old one) when an
    order passes its rules; its permit is born revoked, so it never reaches the venue, and the
    stop's early cancel-all cannot have missed it. The commit is held open by the test."""
    rig.venue.gate.set()  # the venue answers at once: only the permit can keep it off the wire
    holding, release = asyncio.Event(), asyncio.Event()
    real_write = rig.store.write
    held = False

    async def write(fn: Callable[..., Any]) -> Any:
        nonlocal held
        if not held and rig.stops.board.barred is not None:  # the stop's latch transaction
            held = True
            holding.set()
            await release.wait()
        return await real_write(fn)

    monkeypatch.setattr(rig.store, "write", write)
    epoch = rig.store.mode_state().epoch
    stopping = asyncio.ensure_future(rig.stops.emergency_stop(reason="drill", actor=OPERATOR))
    await holding.wait()
    assert rig.store.mode_state().epoch == epoch  # not committed yet
    with pytest.raises(PermitRevoked, match=r"not sent: emergency stop: drill"):
        await rig.router.submit(buy(), actor="t")
    release.set()
    answer = await stopping
    assert answer["epoch"] > epoch and answer["remaining_open_orders"] == 0
    assert rig.venue.sent == []
    assert rig.stops.board.barred is None  # lifted once the latch is durable
    rig.venue.entered.clear()
    with pytest.raises(RiskRejected):  # and from then on the latch itself refuses new risk
        await rig.router.submit(buy(), actor="t")
    assert rig.venue.sent == []


async def test_a_placement_on_the_wire_when_the_stop_begins_is_cancelled_at_once(
    rig: Rig,
) -> None:
    """An order on the wire when the stop begins lands after the stop's early cancel-all; the
    stop knows it was on the wire (P6), so its first pass cancels again instead of looking,
    finding it, waiting 50 ms for a cancel to show and only then cancelling (the bench's
    2-3x slower stops). The venue here rests what it accepts."""
    resting: dict[str, OpenOrder] = {}
    calls: list[str] = []
    venue = rig.venue
    send = venue._send

    def rest(request: PlaceRequest, epoch: int) -> PlaceResult:
        result = send(request, epoch)
        assert result.exchange_order_id is not None
        resting[result.exchange_order_id] = OpenOrder(
            result.exchange_order_id, "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal(1_000_000),
            Decimal("0.001"), Decimal("0.001"), request.customer_order_id,
        )  # fmt: skip
        return result

    async def cancel_all() -> int:
        calls.append("cancel_all")
        n = len(resting)
        resting.clear()
        venue.gate.set()  # the placement on the wire answers just after the cancel-all
        await asyncio.sleep(0)
        return n

    async def open_orders() -> list[OpenOrder]:
        calls.append("open_orders")
        return list(resting.values())

    venue._send = rest  # type: ignore[method-assign]
    venue.cancel_all = cancel_all  # type: ignore[method-assign]
    venue.open_orders = open_orders  # type: ignore[method-assign]
    empty = Venue(rig, honours=True)  # LIVE: an account with nothing on it
    rig.stops.clients = {Mode.PAPER: venue, Mode.LIVE: empty}  # type: ignore[dict-item]
    placing = asyncio.ensure_future(rig.router.submit(buy(), actor="t"))
    await venue.entered.wait()
    if venue.honours_permits:  # the client's own wait (stream ready) ends; then it sends
        assert rig.router.permits.on_wire() == []
    answer = await rig.stops.emergency_stop(reason="drill", actor=OPERATOR)
    await asyncio.gather(placing, return_exceptions=True)
    assert answer["remaining_open_orders"] == 0 and resting == {}
    if venue.honours_permits:  # never on the wire: revoked in its wait, never sent
        assert venue.sent == []
        assert calls == ["cancel_all", "open_orders"]  # nothing raced: the early one only
    else:  # on the wire at the stop: landed after the early cancel-all, cancelled at once
        assert len(venue.sent) == 1 and answer["cancelled_orders"] == 1
        # before: cancel_all, open_orders (finds it), 50 ms, cancel_all, open_orders
        assert calls == ["cancel_all", "cancel_all", "open_orders"]


async def test_halted_refuses_everything_and_reducing_passes_only_reductions(rig: Rig) -> None:
    rig.venue.gate.set()
    answer = await rig.stops.operator_halt(reason="ops look", actor=OPERATOR)
    assert answer["trading_state"] == "HALTED"
    for intent in (buy(), sell()):  # a sell of a holding reduces, and is still refused
        with pytest.raises(RiskRejected, match=r"trading is HALTED \(halt: ops look\)"):
            await rig.router.submit(intent, actor="t")
    await rig.stops.resume(reason="done", actor=OPERATOR)

    until = utcnow().replace(year=utcnow().year + 1)
    await rig.store.write(lambda c: trip_sql(c, DAILY_LOSS, mode=Mode.PAPER, reason="5%",
                                             until=until))  # fmt: skip
    assert rig.store.mode_state().trading_state.value == "REDUCING"
    with pytest.raises(RiskRejected) as info:
        await rig.router.submit(buy(), actor="t")
    rules = [v["rule"] for v in info.value.details["verdicts"] if v["action"] == "reject"]
    assert "reducing" in rules
    row = await rig.router.submit(sell(), actor="t")
    assert row["state"] == "placed"
    assert [s[1] for s in rig.venue.sent] == [rig.store.mode_state().epoch]


async def test_the_closing_path_reduces_only_and_still_checks_integrity(rig: Rig) -> None:
    rig.venue.gate.set()
    await rig.stops.emergency_stop(reason="drill", actor=OPERATOR)
    with pytest.raises(RiskRejected, match="closing order must reduce"):
        await rig.router.submit_closing(buy(), actor="t", mode=Mode.LIVE)
    # Only a market SELL closes: a limit sell of a holding is trading, not getting out.
    with pytest.raises(RiskRejected, match="a market SELL of at most what is held"):
        await rig.router.submit_closing(sell(), actor="t", mode=Mode.LIVE)
    market_sell = dataclasses.replace(sell(), type=OrderType.MARKET, price=None)
    too_much = dataclasses.replace(market_sell, quantity=Decimal(1000))
    with pytest.raises(RiskRejected, match="closing order must reduce"):
        await rig.router.submit_closing(too_much, actor="t", mode=Mode.LIVE)
    row = await rig.router.submit_closing(market_sell, actor="t", mode=Mode.LIVE)
    assert (row["mode"], row["state"]) == ("LIVE", "placed")
    # Somebody writes LIVE by hand: no order goes out, closing ones included.
    await rig.store.write(lambda c: c.execute(
        "UPDATE trading_mode_state SET current_mode = 'LIVE'"
    ))  # fmt: skip
    with pytest.raises(ModeIntegrityError):
        await rig.router.submit_closing(market_sell, actor="t", mode=Mode.LIVE)
    assert len(rig.venue.sent) == 1


async def test_every_permit_is_released(rig: Rig) -> None:
    rig.venue.gate.set()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: rig.router.submit(buy(), actor="t"),
        lambda: rig.router.submit(sell(), actor="t"),
    ]
    for call in calls:
        await call()
    assert rig.router.permits.outstanding() == []


async def test_a_halt_revokes_stale_permits_and_its_until_brings_active_back(rig: Rig) -> None:
    placing = asyncio.ensure_future(rig.router.submit(buy(), actor="t"))
    await rig.venue.entered.wait()
    until = utcnow() + timedelta(milliseconds=200)
    await rig.stops.halt(Mode.PAPER, DAILY_LOSS, "5% down", until)
    assert rig.store.mode_state().trading_state is TradingState.REDUCING
    if rig.venue.honours_permits:
        with pytest.raises(PermitRevoked, match="epoch"):
            await placing
        assert rig.venue.sent == []
    else:  # already on the wire when the halt came: it answers
        rig.venue.gate.set()
        await placing
    epoch = rig.store.mode_state().epoch
    # The expiry timer re-derives the row once `until` has passed: ACTIVE, a new epoch.
    await wait_for(lambda: rig.store.mode_state().trading_state is TradingState.ACTIVE)
    assert rig.store.mode_state().epoch == epoch + 1
    rig.venue.gate.set()
    row = await rig.router.submit(buy(), actor="t")
    assert row["state"] == "placed"
