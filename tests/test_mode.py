"""heliosd.risk.mode's own contract (ModeOrchestrator) against a real SQLite file: reading the
mode, PAPER -> LIVE through gates and a single-use confirmation token bound to the actor and
the trading state's epoch, the audit row and notice each answer leaves, LIVE refused while a
breaker is active or the epoch moved, and switches serialized.

What other files already cover (not repeated here):

* tests/test_gates.py -- the built-in gates, and through them a refused switch listing every
  gate, the happy confirm, a spent token, the gates re-run on confirm, a raising or hanging
  gate, a failing ``after_backup`` hook.
* tests/test_safety_daemon.py -- the same race in a real daemon over its control API (a stop
  during the confirmed switch's gates wins; a token from before a stop is void after resume).
* tests/test_confirm_tokens.py -- heliosd.control.confirm's tokens on their own.
* tests/test_state.py -- heliosd.risk.state: derive, sync, require, the epoch on every
  transition.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.core.errors import (
    ConfirmationRequired,
    GateRejected,
    HaltedError,
    InvalidConfirmToken,
    StateChanged,
)
from heliosd.core.protocols import Event, Gate, GateContext
from heliosd.core.types import GateResult, Mode, TradingState
from heliosd.notify.outbox import enqueue
from heliosd.risk.breakers import EMERGENCY, clear_sql, trip_sql
from heliosd.risk.mode import ModeOrchestrator, gates_json, mode_json
from heliosd.store import Store

OPERATOR = Actor(uid=1000, user="operator")
INTRUDER = Actor(uid=1001, user="someone")
TTL = 60.0
# The gates below never look at the context; the orchestrator must hand over what it is given.
CONTEXT = cast(GateContext, object())


class Passing:
    """A gate that passes and counts its runs; ``hold`` makes the next run wait for
    ``release`` after setting ``entered``."""

    def __init__(self, name: str = "passing") -> None:
        self.name = name
        self.runs = 0
        self.seen: list[object] = []
        self.hold = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def check(self, ctx: GateContext) -> GateResult:
        self.runs += 1
        self.seen.append(ctx)
        if self.hold:
            self.entered.set()
            await self.release.wait()
        return GateResult(self.name, True)


@dataclass
class Failing:
    name: str = "failing"
    reason: str = "not today"

    async def check(self, ctx: GateContext) -> GateResult:
        return GateResult(self.name, False, self.reason)


class Clock:
    """The token clock (monotonic seconds), moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    tmp: Path
    gate: Passing
    clock: Clock = field(default_factory=Clock)
    gates: list[Gate] = field(default_factory=list)
    changes: list[Mode] = field(default_factory=list)
    halt: str | None = None

    def orchestrator(self, **kwargs: Any) -> ModeOrchestrator:
        async def after_change(mode: Mode) -> None:
            self.changes.append(mode)

        options: dict[str, Any] = {
            "gates": lambda: self.gates,
            "gate_context": lambda: CONTEXT,
            "gate_timeout_s": 2.0,
            "backup_dir": self.tmp / "backups",
            "enqueue": enqueue,
            "halted": lambda: self.halt,
            "after_change": after_change,
            "token_ttl_s": TTL,
            "clock": self.clock,
        }
        return ModeOrchestrator(self.store, **(options | kwargs))

    async def audit(self) -> list[tuple[str, str]]:
        """(action, outcome) of every audit row, oldest first."""
        rows = await self.store.read(lambda c: st.audit_rows(c, 100))
        return [(r["action"], r["outcome"]) for r in reversed(rows)]

    async def last_audit(self) -> dict[str, Any]:
        rows = await self.store.read(lambda c: st.audit_rows(c, 1))
        return rows[0]

    async def history(self) -> list[tuple[str | None, str]]:
        rows = await self.store.read(lambda c: st.history(c, 100))
        return [(r["old_mode"], r["new_mode"]) for r in reversed(rows)]

    async def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.store.read(
            lambda c: c.execute("SELECT kind, data FROM outbox ORDER BY id").fetchall()
        )
        return [(kind, json.loads(data)) for kind, data in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await Store.open(tmp_path / "state" / "heliosd.db")
    gate = Passing()
    try:
        yield Rig(store, tmp_path, gate, gates=[gate])
    finally:
        await store.close()


async def ask(orch: ModeOrchestrator, actor: Actor = OPERATOR) -> dict[str, Any]:
    """The first LIVE request: its ConfirmationRequired details."""
    with pytest.raises(ConfirmationRequired) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=actor)
    return info.value.details


async def confirm(orch: ModeOrchestrator, token: str, actor: Actor = OPERATOR) -> dict[str, Any]:
    return await orch.switch(Mode.LIVE, confirm_token=token, reason="go", actor=actor)


async def go_live(orch: ModeOrchestrator) -> dict[str, Any]:
    return await confirm(orch, (await ask(orch))["confirm_token"])


async def stop(store: Store) -> None:
    """An emergency stop as heliosd.risk.stops commits one: the latch, and PAPER, together."""

    def tx(conn: sqlite3.Connection) -> None:
        trip_sql(conn, EMERGENCY, mode=None, reason="drill")
        if conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()[0] == "LIVE":
            st.set_mode(store, conn, Mode.PAPER, actor="t", reason="stop", confirmed=False)

    await store.write(tx)


async def resume(store: Store) -> None:
    await store.write(lambda c: clear_sql(c, [EMERGENCY], actor="t", reason="drill over"))


# --------------------------------------------------------------------------- reads and gates


async def test_state_is_the_stored_row_and_mode_json_names_every_field(rig: Rig) -> None:
    orch = rig.orchestrator()
    assert orch.state() == rig.store.mode_state()
    state = orch.state()
    assert (state.mode, state.trading_state, state.verified) == (
        Mode.PAPER, TradingState.ACTIVE, True,
    )  # fmt: skip
    assert mode_json(state) == {
        "mode": "PAPER", "updated_at": state.updated_at, "updated_by": "heliosd (initial)",
        "verified": True, "trading_state": "ACTIVE", "state_reason": "", "epoch": state.epoch,
    }  # fmt: skip
    await stop(rig.store)
    assert mode_json(orch.state())["trading_state"] == "REDUCING"
    assert orch.state().state_reason == "emergency: drill"


async def test_gates_run_concurrently_and_each_gets_the_context_of_the_run(rig: Rig) -> None:
    """Each gate waits for the other to have started: run one after the other, the first
    would time out and fail."""
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    class Meeting:
        def __init__(self, name: str, other: str) -> None:
            self.name, self._other = name, other
            self.ctx: object = None

        async def check(self, ctx: GateContext) -> GateResult:
            self.ctx = ctx
            started[self.name].set()
            await started[self._other].wait()
            return GateResult(self.name, True)

    a, b = Meeting("a", "b"), Meeting("b", "a")
    rig.gates[:] = [a, b]
    results = await rig.orchestrator().run_gates()
    assert results == [GateResult("a", True), GateResult("b", True)]  # in registration order
    assert a.ctx is CONTEXT and b.ctx is CONTEXT
    assert gates_json(results) == [
        {"name": "a", "ok": True, "reason": ""}, {"name": "b", "ok": True, "reason": ""},
    ]  # fmt: skip


async def test_a_gate_answering_anything_but_a_gate_result_fails_closed(rig: Rig) -> None:
    class Truthy:  # no ``name``: the class name stands for it
        async def check(self, ctx: GateContext) -> Any:
            return True

    rig.gates[:] = [cast(Gate, Truthy())]
    [result] = await rig.orchestrator().run_gates()
    assert result == GateResult("Truthy", False, "gate Truthy returned bool")


# --------------------------------------------------------------------------- the two steps


async def test_the_first_live_request_issues_a_token_and_changes_nothing(rig: Rig) -> None:
    before = rig.store.mode_state()
    details = await ask(rig.orchestrator())
    assert details["gates"] == [{"name": "passing", "ok": True, "reason": ""}]
    assert details["expires_in"] == 60 and isinstance(details["confirm_token"], str)
    after = rig.store.mode_state()
    assert (after.mode, after.epoch) == (Mode.PAPER, before.epoch)
    assert await rig.history() == [] and await rig.outbox() == []
    assert await rig.audit() == [("mode_live", "confirmation_issued")]
    assert not (rig.tmp / "backups").exists() and rig.changes == []


async def test_a_confirmed_switch_commits_mode_history_audit_and_notice_after_a_backup(
    rig: Rig,
) -> None:
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    epoch = rig.store.mode_state().epoch
    answer = await confirm(orch, token)

    state = rig.store.mode_state()
    assert (state.mode, state.verified, state.epoch) == (Mode.LIVE, True, epoch + 1)
    assert answer["changed"] is True and answer["mode"] == "LIVE" and answer["epoch"] == epoch + 1
    assert answer["gates"] == [{"name": "passing", "ok": True, "reason": ""}]
    assert rig.gate.runs == 2  # the confirm re-ran the gates
    assert await rig.history() == [("PAPER", "LIVE")]
    audit = await rig.last_audit()
    assert (audit["action"], audit["outcome"], audit["actor"]) == (
        "mode_live", "switched", "operator (uid 1000)",
    )  # fmt: skip
    assert audit["details"]["backup"] == answer["backup"]
    [(kind, data)] = await rig.outbox()
    assert (kind, data["old_mode"], data["new_mode"]) == ("mode_change", "PAPER", "LIVE")
    assert rig.changes == [Mode.LIVE]
    # The backup was taken before the switch: it holds PAPER.
    backup = sqlite3.connect(answer["backup"])
    try:
        row = backup.execute("SELECT current_mode, epoch FROM trading_mode_state").fetchone()
    finally:
        backup.close()
    assert row == ("PAPER", epoch)


async def test_live_when_already_verified_live_is_a_noop_without_gates(rig: Rig) -> None:
    orch = rig.orchestrator()
    await go_live(orch)
    runs, epoch = rig.gate.runs, rig.store.mode_state().epoch
    answer = await orch.switch(Mode.LIVE, confirm_token=None, reason="again", actor=OPERATOR)
    assert answer["changed"] is False and answer["mode"] == "LIVE"
    assert (rig.gate.runs, rig.store.mode_state().epoch) == (runs, epoch)
    assert (await rig.audit())[-1] == ("mode_live", "noop")
    assert rig.changes == [Mode.LIVE]


async def test_an_out_of_band_live_row_is_not_a_noop_and_must_pass_the_two_steps(
    rig: Rig,
) -> None:
    await rig.store.write(
        lambda c: c.execute("UPDATE trading_mode_state SET current_mode = 'LIVE'")
    )
    assert rig.store.mode_state().verified is False
    orch = rig.orchestrator()
    details = await ask(orch)  # not "changed: False": an unsealed LIVE is not LIVE
    answer = await confirm(orch, details["confirm_token"])
    assert answer["changed"] is True
    state = rig.store.mode_state()
    assert (state.mode, state.verified) == (Mode.LIVE, True)


async def test_a_failing_gate_refuses_with_an_audit_row_and_a_notice_and_no_token(
    rig: Rig,
) -> None:
    rig.gates.append(Failing())
    rig.gates.append(Failing("silent", ""))
    epoch = rig.store.mode_state().epoch
    with pytest.raises(GateRejected) as info:
        await rig.orchestrator().switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    # A failure without a reason is named by its gate.
    assert info.value.message == "Cannot switch to LIVE: not today; silent"
    assert "confirm_token" not in info.value.details
    assert [g["ok"] for g in info.value.details["gates"]] == [True, False, False]
    audit = await rig.last_audit()
    assert (audit["outcome"], audit["details"]) == ("gate_rejected", info.value.details)
    [(kind, data)] = await rig.outbox()
    assert kind == "live_refused" and [g["name"] for g in data["gates"]] == [
        "passing", "failing", "silent",
    ]  # fmt: skip
    state = rig.store.mode_state()
    assert (state.mode, state.epoch) == (Mode.PAPER, epoch)


# --------------------------------------------------------------------------- refusals


async def test_live_is_refused_while_a_breaker_is_active_before_any_gate_runs(rig: Rig) -> None:
    await stop(rig.store)
    orch = rig.orchestrator()
    with pytest.raises(HaltedError) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    assert info.value.details == {"trading_state": "REDUCING", "reason": "emergency: drill"}
    assert "resume first" in info.value.message
    assert rig.gate.runs == 0
    assert await rig.audit() == [("mode_live", "refused_halted")]
    assert (await rig.last_audit())["details"] == {
        "halt": "emergency: drill", "trading_state": "REDUCING",
    }  # fmt: skip


async def test_live_is_refused_while_the_halted_callback_names_a_stop(rig: Rig) -> None:
    """The in-memory breakers may know a stop the row does not yet say: either refuses."""
    rig.halt = "daily_loss: 5%"
    with pytest.raises(HaltedError) as info:
        await rig.orchestrator().switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    assert info.value.details == {"trading_state": "ACTIVE", "reason": "daily_loss: 5%"}
    assert rig.gate.runs == 0 and rig.store.mode_state().mode is Mode.PAPER


async def test_a_token_is_spent_even_by_a_confirm_the_gates_refuse(rig: Rig) -> None:
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    rig.gates.append(Failing())
    with pytest.raises(GateRejected):
        await confirm(orch, token)
    rig.gates.pop()
    runs = rig.gate.runs
    with pytest.raises(InvalidConfirmToken, match="unknown, already used"):
        await confirm(orch, token)
    assert rig.gate.runs == runs  # a bad token never reaches the gates
    assert rig.store.mode_state().mode is Mode.PAPER


async def test_a_token_confirms_only_for_the_uid_it_was_issued_to_and_is_spent_by_a_try(
    rig: Rig,
) -> None:
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    with pytest.raises(InvalidConfirmToken, match="issued to someone else"):
        await confirm(orch, token, actor=INTRUDER)
    assert (await rig.audit())[-1] == ("mode_live", "invalid_token")
    with pytest.raises(InvalidConfirmToken):  # the owner cannot use it after the attempt
        await confirm(orch, token)
    assert rig.store.mode_state().mode is Mode.PAPER and await rig.history() == []


async def test_a_token_expires_at_its_ttl(rig: Rig) -> None:
    orch = rig.orchestrator()
    late = (await ask(orch))["confirm_token"]
    rig.clock.now += TTL
    with pytest.raises(InvalidConfirmToken):
        await confirm(orch, late)
    assert rig.store.mode_state().mode is Mode.PAPER
    # One issued later is still good just before its own expiry.
    rig.clock.now -= 0.001
    fresh = (await ask(orch))["confirm_token"]
    rig.clock.now += TTL - 0.001
    assert (await confirm(orch, fresh))["changed"] is True


async def test_a_token_from_before_a_stop_and_resume_is_refused_naming_both_epochs(
    rig: Rig,
) -> None:
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    issued = rig.store.mode_state().epoch
    await stop(rig.store)
    await resume(rig.store)
    now = rig.store.mode_state()
    assert (now.trading_state, now.epoch) == (TradingState.ACTIVE, issued + 2)
    with pytest.raises(InvalidConfirmToken, match="issued before the trading state changed") as e:
        await confirm(orch, token)
    assert e.value.details == {"epoch": issued + 2}
    audit = await rig.last_audit()
    assert (audit["outcome"], audit["details"]) == (
        "invalid_token", {"token_epoch": issued, "epoch": issued + 2},
    )  # fmt: skip
    assert rig.gate.runs == 1 and rig.store.mode_state().mode is Mode.PAPER


@pytest.mark.parametrize("then_resume", [False, True], ids=["stopped", "stopped-and-resumed"])
async def test_a_stop_committed_while_the_confirmed_gates_run_wins(
    rig: Rig, then_resume: bool
) -> None:
    """The switch's transaction requires the epoch its gates ran under: a stop in between
    wins, even one already resumed (ACTIVE again, but at a later epoch)."""
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    checked = rig.store.mode_state().epoch
    rig.gate.hold = True
    switching = asyncio.ensure_future(confirm(orch, token))
    await rig.gate.entered.wait()
    await stop(rig.store)
    if then_resume:
        await resume(rig.store)
    rig.gate.release.set()
    with pytest.raises(StateChanged) as info:
        await switching
    now = rig.store.mode_state()
    assert "the mode stays PAPER" in info.value.message
    assert info.value.details["checked_epoch"] == checked
    assert info.value.details["epoch"] == now.epoch == checked + (2 if then_resume else 1)
    assert now.mode is Mode.PAPER and await rig.history() == []
    assert [kind for kind, _ in await rig.outbox()] == []  # no mode_change notice
    assert (await rig.audit())[-1] == ("mode_live", "state_changed")
    assert rig.changes == []


async def test_a_failure_inside_the_switch_transaction_leaves_paper_and_writes_nothing(
    rig: Rig,
) -> None:
    """All or nothing: a notice that cannot be recorded undoes the mode, history and audit."""

    def broken(conn: sqlite3.Connection, event: Event) -> None:
        if event.kind == "mode_change":
            raise sqlite3.OperationalError("outbox is full")
        enqueue(conn, event)

    orch = rig.orchestrator(enqueue=broken)
    token = (await ask(orch))["confirm_token"]
    epoch = rig.store.mode_state().epoch
    with pytest.raises(sqlite3.OperationalError, match="outbox is full"):
        await confirm(orch, token)
    state = rig.store.mode_state()
    assert (state.mode, state.epoch) == (Mode.PAPER, epoch)
    assert await rig.history() == [] and rig.changes == []
    assert ("mode_live", "switched") not in await rig.audit()


# --------------------------------------------------------------------------- back to PAPER


async def test_paper_when_already_paper_is_a_noop_that_keeps_the_epoch(rig: Rig) -> None:
    epoch = rig.store.mode_state().epoch
    answer = await rig.orchestrator().switch(
        Mode.PAPER, confirm_token=None, reason="just checking", actor=OPERATOR
    )
    assert answer["changed"] is False and answer["mode"] == "PAPER"
    assert rig.store.mode_state().epoch == epoch
    assert await rig.audit() == [("mode_paper", "noop")] and await rig.history() == []


async def test_paper_from_live_is_always_allowed_and_lists_what_is_left_open(rig: Rig) -> None:
    async def leftovers() -> dict[str, Any]:
        return {"open_orders": 2}

    orch = rig.orchestrator(live_leftovers=leftovers)
    await go_live(orch)
    rig.halt = "emergency: drill"  # a stop never blocks the safe direction
    answer = await orch.switch(Mode.PAPER, confirm_token=None, reason="done", actor=OPERATOR)
    assert answer["changed"] is True and answer["mode"] == "PAPER"
    assert answer["left_open"] == {"open_orders": 2}
    assert await rig.history() == [("PAPER", "LIVE"), ("LIVE", "PAPER")]
    assert (await rig.audit())[-1] == ("mode_paper", "switched")
    assert [(k, d["new_mode"]) for k, d in await rig.outbox()] == [
        ("mode_change", "LIVE"), ("mode_change", "PAPER"),
    ]  # fmt: skip
    assert rig.changes == [Mode.LIVE, Mode.PAPER]


async def test_paper_stands_when_the_live_leftovers_cannot_be_listed(rig: Rig) -> None:
    async def unreachable() -> dict[str, Any]:
        raise ConnectionError("VALR is down")

    orch = rig.orchestrator(live_leftovers=unreachable)
    await go_live(orch)
    answer = await orch.switch(Mode.PAPER, confirm_token=None, reason="done", actor=OPERATOR)
    assert answer["left_open"] == {"error": "could not list live orders: VALR is down"}
    assert rig.store.mode_state().mode is Mode.PAPER


# --------------------------------------------------------------------------- serialized


async def test_switches_are_serialized_a_paper_request_waits_for_a_live_one(rig: Rig) -> None:
    """Without the orchestrator's lock the PAPER request would see PAPER (a noop) while the
    confirmed LIVE switch sat in its gates, and LIVE would win last."""
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    rig.gate.hold = True
    live = asyncio.ensure_future(confirm(orch, token))
    await rig.gate.entered.wait()
    paper = asyncio.ensure_future(
        orch.switch(Mode.PAPER, confirm_token=None, reason="back", actor=OPERATOR)
    )
    rig.gate.release.set()
    assert (await live)["changed"] is True
    assert (await paper)["changed"] is True  # it ran after LIVE committed
    assert rig.store.mode_state().mode is Mode.PAPER
    assert await rig.history() == [("PAPER", "LIVE"), ("LIVE", "PAPER")]


async def test_one_token_confirms_one_of_two_concurrent_requests(rig: Rig) -> None:
    orch = rig.orchestrator()
    token = (await ask(orch))["confirm_token"]
    first, second = await asyncio.gather(
        confirm(orch, token), confirm(orch, token), return_exceptions=True
    )
    assert isinstance(first, dict) and first["changed"] is True
    # The second ran after the first committed: LIVE already, so a noop, never a second switch.
    assert isinstance(second, dict) and second["changed"] is False
    assert await rig.history() == [("PAPER", "LIVE")]


# --------------------------------------------------------------------------- a small machine

STEPS = hs.lists(
    hs.one_of(
        hs.just(("ask", 0)),
        hs.tuples(hs.just("confirm"), hs.integers(0, 5)),
        hs.just(("stop", 0)),
        hs.just(("resume", 0)),
        hs.just(("paper", 0)),
    ),
    min_size=1,
    max_size=10,
)


async def _run_machine(steps: Sequence[tuple[str, int]], tmp: Path) -> None:
    """Each answer is the one the contract predicts, and after every step the row agrees
    with the model: the epoch moves exactly on transitions, LIVE only from ACTIVE."""
    store = await Store.open(tmp / "heliosd.db")
    try:
        gate = Passing()
        orch = ModeOrchestrator(
            store, gates=lambda: [gate], gate_context=lambda: CONTEXT, gate_timeout_s=2.0,
            backup_dir=tmp / "backups", clock=Clock(),
        )  # fmt: skip
        mode, stopped, epoch = Mode.PAPER, False, store.mode_state().epoch
        tokens: list[tuple[str, int]] = []  # (text, epoch issued under)
        spent: set[str] = set()
        for kind, pick in steps:
            if kind in ("stop", "resume"):
                await (stop(store) if kind == "stop" else resume(store))
                epoch += 2 if kind == "stop" and mode is Mode.LIVE else 1
                mode, stopped = (Mode.PAPER, True) if kind == "stop" else (mode, False)
            elif kind == "paper":
                out = await orch.switch(Mode.PAPER, confirm_token=None, reason="", actor=OPERATOR)
                assert out["changed"] is (mode is Mode.LIVE)
                epoch += 1 if mode is Mode.LIVE else 0
                mode = Mode.PAPER
            else:
                if kind == "confirm" and not tokens:
                    continue
                text = tokens[pick % len(tokens)][0] if kind == "confirm" else None
                issued = tokens[pick % len(tokens)][1] if kind == "confirm" else None

                def call(token: str | None = text) -> Awaitable[dict[str, Any]]:
                    return orch.switch(Mode.LIVE, confirm_token=token, reason="", actor=OPERATOR)

                if mode is Mode.LIVE:
                    assert (await call())["changed"] is False  # a token is not even taken
                elif stopped:
                    with pytest.raises(HaltedError):
                        await call()
                elif text is None:
                    with pytest.raises(ConfirmationRequired) as info:
                        await call()
                    tokens.append((info.value.details["confirm_token"], epoch))
                elif text in spent or issued != epoch:
                    spent.add(text)
                    with pytest.raises(InvalidConfirmToken):
                        await call()
                else:
                    spent.add(text)
                    assert (await call())["changed"] is True
                    mode, epoch = Mode.LIVE, epoch + 1
            row = store.mode_state()
            assert (row.mode, row.epoch) == (mode, epoch)
            assert row.trading_state is (TradingState.REDUCING if stopped else TradingState.ACTIVE)
            assert not (row.mode is Mode.LIVE and row.trading_state is not TradingState.ACTIVE)
    finally:
        await store.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_the_switch_follows_its_state_machine(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_machine(steps, Path(tmp)))
