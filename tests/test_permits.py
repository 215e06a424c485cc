"""heliosd.permits: the send permit's semantics, searched for violations by hypothesis.

Properties (invariants P1-P4 of the module):
- no begin_send succeeds after revoke_all, after the epoch moved on, or (unless any_mode)
  after the mode changed; one fails closed when the state cannot be read;
- settle returns exactly the permits that still have a request on the wire;
- every wait (sleep, guard) ends as soon as the permit is revoked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from heliosd.errors import PermitRevoked
from heliosd.permits import Permit, PermitBoard
from heliosd.types import Mode


@dataclass
class Row:
    """The stored (mode, epoch) the board reads: a stand-in for Store.mode_state."""

    mode: Mode = Mode.PAPER
    epoch: int = 1
    broken: bool = False

    def current(self) -> tuple[Mode, int]:
        if self.broken:
            raise OSError("disk gone")
        return self.mode, self.epoch


@dataclass
class Model:
    permits: list[Permit] = field(default_factory=list)
    revoked: set[int] = field(default_factory=set)  # indexes the model says are dead
    on_wire: dict[int, int] = field(default_factory=dict)
    released: set[int] = field(default_factory=set)


OPS = hs.one_of(
    hs.tuples(hs.just("issue"), hs.booleans()),
    hs.tuples(hs.just("begin"), hs.integers(0, 7)),
    hs.tuples(hs.just("end"), hs.integers(0, 7)),
    hs.tuples(hs.just("release"), hs.integers(0, 7)),
    hs.tuples(hs.just("revoke_all"), hs.none()),
    hs.tuples(hs.just("revoke_stale"), hs.none()),
    hs.tuples(hs.just("epoch"), hs.none()),
    hs.tuples(hs.just("mode"), hs.none()),
    hs.tuples(hs.just("break"), hs.none()),
)


@settings(max_examples=300, deadline=None)
@given(hs.lists(OPS, max_size=40))
def test_no_send_after_revoke_or_a_new_epoch_and_settle_names_what_is_on_the_wire(
    ops: list[tuple[str, object]],
) -> None:
    asyncio.run(_run(ops))


async def _run(ops: list[tuple[str, object]]) -> None:
    row = Row()
    board = PermitBoard(row.current)
    m = Model()
    for op, arg in ops:
        if op == "issue":
            mode, epoch = row.mode, row.epoch
            m.permits.append(board.issue(mode, epoch, label=f"c{len(m.permits)}",
                                         any_mode=bool(arg)))  # fmt: skip
        elif op in ("begin", "end", "release") and m.permits:
            i = int(arg) % len(m.permits)  # type: ignore[call-overload]
            p = m.permits[i]
            if op == "begin":
                valid = (
                    i not in m.revoked and i not in m.released and not row.broken
                    and row.epoch == p.epoch and (p.any_mode or row.mode is p.mode)
                )  # fmt: skip
                if i in m.released:
                    continue  # a released permit is not used again by any caller
                try:
                    p.begin_send()
                except PermitRevoked:
                    assert not valid, (i, p.epoch, row)
                    m.revoked.add(i)  # a failed check revokes for good
                else:
                    assert valid, (i, p.epoch, p.revoked, row)
                    m.on_wire[i] = m.on_wire.get(i, 0) + 1
            elif op == "end" and m.on_wire.get(i, 0) > 0:
                p.end_send()
                m.on_wire[i] -= 1
            elif op == "release":
                p.release()
                m.released.add(i)
                m.on_wire[i] = 0
        elif op == "revoke_all":
            board.revoke_all("stop")
            m.revoked |= set(range(len(m.permits)))
        elif op == "revoke_stale":
            board.revoke_stale()
            for i, p in enumerate(m.permits):
                if i in m.released:
                    continue
                moved = not p.any_mode and row.mode is not p.mode
                if row.broken or row.epoch != p.epoch or moved:
                    m.revoked.add(i)
        elif op == "epoch":
            row.epoch += 1
        elif op == "mode":
            row.mode = Mode.LIVE if row.mode is Mode.PAPER else Mode.PAPER
            row.epoch += 1  # a mode change is a transition
        elif op == "break":
            row.broken = not row.broken
        # After every step: settle names exactly the permits on the wire.
        busy = await board.settle(0)
        expected = {i for i, n in m.on_wire.items() if n > 0 and i not in m.released}
        assert {m.permits.index(p) for p in busy} == expected
        assert {p.label for p in board.on_wire()} == {f"c{i}" for i in expected}
        # And a revoked permit never comes back.
        for i in m.revoked:
            assert m.permits[i].revoked is not None or i in m.released


async def test_a_state_that_cannot_be_read_revokes_fail_closed() -> None:
    row = Row()
    board = PermitBoard(row.current)
    permit = board.issue(Mode.PAPER, 1, label="x")
    row.broken = True
    with pytest.raises(PermitRevoked, match="could not be read"):
        permit.begin_send()
    row.broken = False
    with pytest.raises(PermitRevoked):
        permit.begin_send()  # revoked for good


async def test_sleep_and_guard_end_at_once_when_revoked() -> None:
    row = Row()
    board = PermitBoard(row.current)
    sleeper = board.issue(Mode.PAPER, 1, label="sleeper")
    guarded = board.issue(Mode.PAPER, 1, label="guarded")
    inner_cancelled = asyncio.Event()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            inner_cancelled.set()

    sleeping = asyncio.ensure_future(sleeper.sleep(3600))
    guarding = asyncio.ensure_future(guarded.guard(forever()))
    await started.wait()
    board.revoke_all("emergency stop: drill")
    with pytest.raises(PermitRevoked, match="drill"):
        await sleeping
    with pytest.raises(PermitRevoked, match="drill"):
        await guarding
    assert inner_cancelled.is_set()  # the wait it guarded was cancelled, not left running


async def test_settle_waits_for_the_wire_and_returns_what_is_left() -> None:
    row = Row()
    board = PermitBoard(row.current)
    a = board.issue(Mode.PAPER, 1, label="a")
    b = board.issue(Mode.PAPER, 1, label="b")
    a.begin_send()
    b.begin_send()
    board.revoke_all("stop")
    waiter = asyncio.ensure_future(board.settle(3600))
    await asyncio.sleep(0)
    a.end_send()
    await asyncio.sleep(0)
    assert not waiter.done()  # b is still on the wire
    b.end_send()
    assert await waiter == []
    c = board.issue(Mode.PAPER, 1, label="c")
    c.begin_send()
    assert await board.settle(0) == [c]  # the bound ran out: named, still on the wire
    c.end_send()
    row.epoch += 1
    with pytest.raises(PermitRevoked, match="epoch 1 -> 2"):
        c.begin_send()
