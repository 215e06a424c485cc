"""heliosd.trading.permits: no send begins without a valid permit, revocation ends every wait, and
settle names exactly the permits still on the wire.

The board reads (mode, epoch) through a callable; here that is a plain cell the test moves,
so the hypothesis machine can interleave issues, sends, answers, revocations, epoch bumps and
mode changes freely and check P1-P4 after every step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as hs
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from heliosd.core.errors import PermitRevoked
from heliosd.core.types import Mode
from heliosd.trading import permits
from heliosd.trading.permits import Permit, PermitBoard


@dataclass
class Cell:
    mode: Mode = Mode.PAPER
    epoch: int = 1
    broken: bool = False

    def __call__(self) -> tuple[Mode, int]:
        if self.broken:
            raise OSError("database is locked")
        return self.mode, self.epoch


def test_a_permit_sends_only_at_its_epoch_and_mode() -> None:
    cell = Cell()
    board = PermitBoard(cell)
    permit = board.issue(Mode.PAPER, 1, label="hd-1")
    permit.begin_send()
    assert board.on_wire() == [permit]
    permit.end_send()
    assert board.on_wire() == []
    cell.mode = Mode.LIVE  # a mode change without an epoch bump still refuses
    with pytest.raises(PermitRevoked, match=r"order hd-1 not sent: the mode changed"):
        permit.begin_send()
    assert permit.revoked is not None and permit.on_wire == 0
    closing = board.issue(Mode.PAPER, 1, label="hd-2", any_mode=True)
    closing.begin_send()  # the core's closing orders are bound to the epoch only
    closing.end_send()
    cell.epoch = 2
    with pytest.raises(PermitRevoked, match=r"epoch 1 -> 2"):
        closing.begin_send()


def test_a_check_that_cannot_read_the_state_revokes() -> None:
    cell = Cell(broken=True)
    permit = PermitBoard(cell).issue(Mode.PAPER, 1, label="hd-1")
    with pytest.raises(PermitRevoked, match=r"could not be read \(OSError: database is locked"):
        permit.begin_send()
    cell.broken = False  # once refused, always refused
    with pytest.raises(PermitRevoked):
        permit.check()


def test_revoke_stale_revokes_only_the_stale() -> None:
    cell = Cell()
    board = PermitBoard(cell)
    old = board.issue(Mode.PAPER, 1, label="old")
    cell.epoch = 2
    new = board.issue(Mode.PAPER, 2, label="new")
    board.revoke_stale()
    assert old.revoked is not None and "epoch 1 -> 2" in old.revoked
    assert new.revoked is None
    new.begin_send()


async def test_revocation_ends_a_sleep_and_a_guarded_wait_at_once() -> None:
    board = PermitBoard(Cell())
    sleeper = board.issue(Mode.PAPER, 1, label="retry-after")
    waiter = board.issue(Mode.PAPER, 1, label="stream-ready")
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def stream_ready() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sleeping = asyncio.ensure_future(sleeper.sleep(3600))
    guarded = asyncio.ensure_future(waiter.guard(stream_ready()))
    await asyncio.sleep(0)
    assert not sleeping.done() and not guarded.done()
    board.revoke_all("emergency stop: drill")
    with pytest.raises(PermitRevoked, match="emergency stop: drill"):
        await sleeping
    with pytest.raises(PermitRevoked, match="emergency stop: drill"):
        await guarded
    assert cancelled.is_set()  # the inner wait was cancelled, not left running


async def test_settle_waits_for_the_wire_and_names_what_is_left() -> None:
    board = PermitBoard(Cell())
    a = board.issue(Mode.PAPER, 1, label="a")
    b = board.issue(Mode.PAPER, 1, label="b")
    a.begin_send()
    b.begin_send()
    board.revoke_all("stop")
    settling = asyncio.ensure_future(board.settle(3600))
    await asyncio.sleep(0)
    a.end_send()
    await asyncio.sleep(0)
    assert not settling.done()
    b.release()  # released (answered or given up) counts as off the wire
    assert await settling == []
    c = board.issue(Mode.PAPER, 1, label="c")
    board._outstanding.add(c)
    c.on_wire = 1
    assert await board.settle(0) == [c]


async def test_a_parked_permit_is_off_the_wire_but_named_until_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """P5: sent with an unknown outcome, a placement no longer holds up a settle, but the
    board still names it, until it is resolved or PARK_KEEP_S passes."""
    board = PermitBoard(Cell(Mode.LIVE))
    a = board.issue(Mode.LIVE, 1, label="a")
    a.begin_send()
    a.end_send()  # the answer was lost; the lookups too
    a.park()
    assert await board.settle(0) == [] and board.outstanding() == []
    assert board.parked() == [a] and a.parked and not a.released
    board.resolve(a)
    assert board.parked() == [] and a.released and not a.parked
    b = board.issue(Mode.LIVE, 1, label="b")
    b.park()
    clock = [1000.0]
    monkeypatch.setattr(permits.time, "monotonic", lambda: clock[0])
    board._parked[b] = clock[0]
    clock[0] += permits.PARK_KEEP_S + 1
    assert board.parked() == []  # kept an hour at most: the board never grows unbounded


# --------------------------------------------------------------------------- the search


@dataclass
class Model:
    """What the machine expects of one permit."""

    permit: Permit
    sends: int = 0
    ever_invalid: bool = False  # revoked, or the epoch/mode moved since issue
    history: list[str] = field(default_factory=list)


class PermitMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.cell = Cell()
        self.board = PermitBoard(self.cell)
        self.models: dict[int, Model] = {}

    def _invalidate(self) -> None:
        for m in self.models.values():
            p = m.permit
            if p.epoch != self.cell.epoch or (not p.any_mode and p.mode is not self.cell.mode):
                m.ever_invalid = True

    @rule(target=permits, any_mode=hs.booleans())
    def issue(self, any_mode: bool) -> int:
        p = self.board.issue(self.cell.mode, self.cell.epoch, label=f"hd-{len(self.models)}",
                             any_mode=any_mode)  # fmt: skip
        # P6: a permit issued while a stop commits is born revoked, for good.
        self.models[id(p)] = Model(p, ever_invalid=self.board.barred is not None)
        return id(p)

    @rule()
    def bar(self) -> None:  # a stop begins: every outstanding permit is void from here on
        self.board.bar("stop committing")
        for m in self.models.values():
            m.ever_invalid = True

    @rule(committed=hs.booleans())
    def unbar(self, committed: bool) -> None:  # the stop's latch committed, or failed to
        if self.board.barred is not None:
            self.board.unbar()
            if committed:  # a new epoch
                self.cell.epoch += 1
                self._invalidate()

    @rule(key=permits)
    def begin_send(self, key: int) -> None:
        m = self.models[key]
        if m.permit.released:
            return
        try:
            m.permit.begin_send()
        except PermitRevoked:
            assert m.ever_invalid or m.permit.revoked is not None
            m.ever_invalid = True
            return
        # P1: a send began, so nothing ever invalidated this permit.
        assert not m.ever_invalid, m.history
        assert m.permit.epoch == self.cell.epoch
        m.sends += 1

    @rule(key=permits)
    def end_send(self, key: int) -> None:
        m = self.models[key]
        if m.sends > 0 and not m.permit.released:
            m.permit.end_send()
            m.sends -= 1

    @rule(key=consumes(permits))
    def release(self, key: int) -> None:
        m = self.models[key]
        m.permit.release()
        m.sends = 0

    @rule()
    def revoke_all(self) -> None:
        self.board.revoke_all("stop")
        for m in self.models.values():
            m.ever_invalid = True

    @rule()
    def bump_epoch(self) -> None:
        self.cell.epoch += 1
        self._invalidate()

    @rule()
    def switch_mode(self) -> None:
        self.cell.mode = Mode.LIVE if self.cell.mode is Mode.PAPER else Mode.PAPER
        self.cell.epoch += 1
        self._invalidate()

    @rule()
    def revoke_stale(self) -> None:
        self.board.revoke_stale()
        for m in self.models.values():
            if m.ever_invalid:
                assert m.permit.revoked is not None or m.permit.released

    @invariant()
    def settle_names_exactly_the_permits_on_the_wire(self) -> None:
        expected = {id(m.permit) for m in self.models.values()
                    if m.sends > 0 and not m.permit.released}  # fmt: skip
        left = asyncio.run(self.board.settle(0))
        assert {id(p) for p in left} == expected


def test_a_stop_that_is_committing_refuses_every_send_even_at_the_old_epoch() -> None:
    """P6: between a stop's first revocation and its latch's commit the stored epoch is the
    old one; a permit issued then would pass P1, so the bar refuses it, and keeps refusing it
    once lifted. The emergency-stop bench saw such orders land after the early cancel-all."""
    cell = Cell()
    board = PermitBoard(cell)
    before = board.issue(Mode.PAPER, 1, label="before")
    before.begin_send()  # on the wire when the stop begins: the stop must know it
    board.bar("emergency stop: test")
    assert board.on_wire() == [before]
    during = board.issue(Mode.PAPER, 1, label="during")  # checked at the old epoch
    with pytest.raises(PermitRevoked, match=r"order during not sent: emergency stop: test"):
        during.begin_send()
    with pytest.raises(PermitRevoked, match=r"emergency stop: test"):
        before.begin_send()  # a resend of the one on the wire is refused as well
    board.unbar()  # the latch failed to commit: the epoch stays 1, yet "during" stays void
    with pytest.raises(PermitRevoked):
        during.begin_send()
    after = board.issue(Mode.PAPER, 1, label="after")
    after.begin_send()  # P1 judges again once the bar is lifted
    after.end_send()


PermitMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)  # fmt: skip
test_permit_semantics = PermitMachine.TestCase
