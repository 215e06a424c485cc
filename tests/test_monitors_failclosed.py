"""A monitor that breaks fails closed: it halts trading under its own breaker.

Through real parts: a drop-in monitor file in a plugin directory of a real daemon (in
process, and a real ``heliosd run`` process for the restart), the simulator's prices driving
the monitor passes, the control socket, the notification receiver and the SQLite file.
The rule's pure half (what counts as a well-formed answer, what the halt's reason says) is
checked directly at the end.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.types import Action, ActionKind
from heliosd.risk.monitors import REASON_MAX, checked_action, failure_action, failure_breaker
from heliosd.testing import (
    NotifyReceiver,
    RunningDaemon,
    SimHandle,
    eventually,
    start_daemon,
    write_config,
)

NAME = "broken_guard"
BREAKER = "monitor:broken_guard"
# A held position, so a reducing SELL can show what still passes during the halt.
WITH_BTC = '[paper]\nstarting_balances = { ZAR = "100000", BTC = "0.01" }\n'
BUY = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001", "reason": "t"}
SELL = {"pair": "BTCZAR", "side": "SELL", "type": "MARKET", "quantity": "0.001", "reason": "t"}

PLUGIN = textwrap.dedent(
    '''
    """Test drop-in: a guard monitor whose behaviour the file next to it picks."""
    from pathlib import Path

    from heliosd import hookimpl

    BEHAVIOUR = Path(__file__).with_suffix(".behaviour")
    CALLS = 0


    class BrokenGuard:
        name = "broken_guard"

        def on_update(self, snapshot, ctx):
            global CALLS
            CALLS += 1
            how = BEHAVIOUR.read_text().strip() if BEHAVIOUR.exists() else "ok"
            if how == "raise":
                raise RuntimeError("guard bug\\nsecond line " + "x" * 500)
            if how == "garbage":
                return "halt"
            return None


    @hookimpl
    def heliosd_register_monitors(register, config):
        register(BrokenGuard())
    '''
)


def setup(short_dir: Path, sim: SimHandle, behaviour: str, notify_url: str) -> Path:
    """The plugin (0644 in a 0755 dir, as an operator installs it) and a config naming it."""
    plugins = short_dir / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "guard.py").write_text(PLUGIN)
    (plugins / "guard.py").chmod(0o644)
    behave(short_dir, behaviour)
    return write_config(short_dir, sim, notify_url=notify_url, extra=WITH_BTC,
                        daemon_extra=f'plugin_dirs = ["{plugins}"]')  # fmt: skip


def behave(short_dir: Path, behaviour: str) -> None:
    (short_dir / "plugins" / "guard.behaviour").write_text(behaviour)


def calls() -> int:
    count: int = sys.modules["heliosd_dropin_guard"].CALLS
    return count


async def passes(running: RunningDaemon, sim: SimHandle, n: int = 3) -> None:
    """Move the simulator's price until the monitors have run ``n`` more times."""
    target = calls() + n
    while calls() < target:
        mark = running.service.market.mark("BTCZAR")
        sim.sim.set_price("BTCZAR", (mark * Decimal("1.0005")).quantize(Decimal(1)))
        await asyncio.sleep(0.05)


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    prefix = f"monitor {NAME} failed"
    service = "heliosd.risk.runner"
    return [r for r in caplog.records
            if r.name == service and r.getMessage().startswith(prefix)]  # fmt: skip


async def halt_reason(request: Any) -> str:
    status, body = await request("GET", "/api/trading/mode")
    assert status == 200, body
    return str(body["halt_reason"]) if body["halted"] else ""


@pytest.mark.logs_exception("monitor broken_guard failed")
async def test_a_raising_monitor_halts_once_per_trip_until_a_person_resumes(
    sim: SimHandle,
    short_dir: Path,
    notify_receiver: NotifyReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="heliosd.risk.runner")
    running = await start_daemon(setup(short_dir, sim, "raise", notify_receiver.url()))
    req = running.request
    try:
        reason = await eventually(lambda: halt_reason(req))
        assert reason.startswith(f"{BREAKER}: monitor {NAME} failed: RuntimeError: guard bug ")
        status, risk = await req("GET", "/api/risk")
        breaker = risk["breakers"][BREAKER]
        assert (breaker["tripped"], breaker["until"]) == (True, None)  # latched: no end time
        text = breaker["reason"]
        assert text.startswith(f"monitor {NAME} failed: RuntimeError: guard bug second line xxx")
        assert "\n" not in text and len(text) == REASON_MAX and text.endswith("...")
        assert risk["breakers"]["emergency"]["tripped"] is False  # a halt, not an emergency stop
        assert (await req("GET", "/api/trading/mode"))[1]["mode"] == "PAPER"

        # Notified like any halt: urgent, the reason as its body.
        posts = await notify_receiver.wait_for(
            lambda ps: any("HALT" in str(p.json.get("title")) for p in ps)
        )
        [halt] = [p.json for p in posts if "HALT" in str(p.json.get("title"))]
        assert halt["title"] == f"URGENT: HALT (PAPER): trading stopped by {BREAKER}"
        assert halt["type"] == "failure"  # urgent
        assert f"monitor {NAME} failed: RuntimeError" in halt["message"]

        # The router's latch refuses new risk; a reducing order still passes.
        status, body = await req("POST", "/api/orders", BUY)
        assert status == 422, body
        assert body["error"] == "risk_rejected"
        assert f"breaker:{BREAKER}: breaker {BREAKER} is tripped (monitor {NAME}" in body["message"]
        assert body["details"]["order"]["state"] == "rejected"
        status, body = await req("POST", "/api/orders", SELL)
        assert status == 201, body

        # Still broken on every tick: one traceback for the trip, not one per update.
        await passes(running, sim)
        [record] = failures_logged(caplog)
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError

        # A person resumes; the monitor still raises, so the next update trips it again.
        status, body = await req("POST", "/api/trading/resume", {"reason": "looking at it"})
        assert status == 200, body
        assert body["halted"] is False and body["cleared"] == 1
        await passes(running, sim, 1)
        assert (await eventually(lambda: halt_reason(req))).startswith(BREAKER)
        await passes(running, sim)
        assert len(failures_logged(caplog)) == 2

        # Fixed, and resumed: it stays clear and orders flow again.
        behave(short_dir, "ok")
        status, body = await req("POST", "/api/trading/resume", {"reason": "guard fixed"})
        assert status == 200, body
        await passes(running, sim)
        assert await halt_reason(req) == ""
        status, body = await req("POST", "/api/orders", BUY)
        assert status == 201, body
        assert len(failures_logged(caplog)) == 2
    finally:
        await running.stop()


@pytest.mark.logs_exception("monitor broken_guard failed")
async def test_a_monitor_answering_garbage_halts_like_one_that_raises(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(setup(short_dir, sim, "garbage", "json://127.0.0.1:9/unused"))
    try:
        reason = await eventually(lambda: halt_reason(running.request))
        assert reason == (
            f"{BREAKER}: monitor {NAME} failed: TypeError: on_update returned str, not an"
            " Action or None"
        )
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 422, body
        assert BREAKER in body["message"]
    finally:
        await running.stop()


@pytest.mark.slow
async def test_the_latch_survives_kill9_and_only_a_resume_clears_it(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = setup(short_dir, sim, "raise", "json://127.0.0.1:9/unused")
    proc = heliosd_process(config)
    await proc.astart()
    reason = await eventually(lambda: halt_reason(proc.arequest))
    assert reason.startswith(f"{BREAKER}: monitor {NAME} failed: RuntimeError")
    await proc.akill9()

    conn = sqlite3.connect(config.parent / "state" / "heliosd.db")
    row = conn.execute(
        "SELECT reason, until FROM breakers WHERE name = ? AND cleared_at IS NULL", (BREAKER,)
    ).fetchone()
    audit = conn.execute(
        "SELECT actor, outcome, reason FROM audit WHERE action = 'halt' ORDER BY id DESC"
    ).fetchone()
    conn.close()
    assert row is not None and row[1] is None
    assert reason == f"{BREAKER}: {row[0]}"
    assert audit == ("heliosd", "tripped", row[0])

    # The monitor is fixed while the daemon is down: the latch still holds after the restart,
    # because a stop is cleared by a person, not by the bug going away.
    behave(short_dir, "ok")
    await proc.astart()
    assert await halt_reason(proc.arequest) == reason
    status, body = await proc.arequest("POST", "/api/orders", BUY)
    assert status == 422, body
    assert BREAKER in body["message"]

    ctl = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heliosd.control.ctl", "--socket", str(proc.socket),
        "resume", "--reason", "guard fixed and redeployed",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(ctl.communicate(), 30)
    assert ctl.returncode == 0, (out, err)
    assert await halt_reason(proc.arequest) == ""
    status, body = await proc.arequest("POST", "/api/orders", BUY)
    assert status == 201, body
    assert await proc.aterminate() == 0


# --------------------------------------------------------------------------- the rule itself


def test_well_formed_answers_pass_and_a_kind_given_as_its_value_counts() -> None:
    halt = Action(ActionKind.HALT, "x", "why")
    assert checked_action(None) is None
    assert checked_action(halt) is halt
    until = datetime(2026, 3, 3, 22, 0, tzinfo=UTC)
    coerced = checked_action(Action("emergency_stop", "x", "why", until))  # type: ignore[arg-type]
    assert coerced == Action(ActionKind.EMERGENCY_STOP, "x", "why", until)
    assert coerced is not None and coerced.kind is ActionKind.EMERGENCY_STOP


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("halt", "on_update returned str, not an Action or None"),
        ({"kind": "halt"}, "on_update returned dict, not an Action or None"),
        (Action("pause", "x", "why"), "unknown action kind 'pause'"),  # type: ignore[arg-type]
        (Action(ActionKind.HALT, "", "why"), "action breaker '' is not a non-empty string"),
        (Action(ActionKind.HALT, None, "why"), "action breaker None is not"),  # type: ignore[arg-type]
        (Action(ActionKind.HALT, "x", 5), "action reason is int, not a string"),  # type: ignore[arg-type]
        (Action(ActionKind.HALT, "x", "why", datetime(2026, 3, 3)), "is not a timezone-aware"),
    ],
)
def test_anything_else_is_refused_with_what_was_wrong(answer: object, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error.replace("(", r"\(")):
        checked_action(answer)


def test_a_coroutine_answer_is_closed_not_left_to_warn() -> None:
    async def on_update() -> None:
        return None

    coro = on_update()
    with pytest.raises(TypeError, match="monitors must be synchronous"):
        checked_action(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning later


def test_the_failure_is_a_latched_halt_with_a_short_one_line_reason() -> None:
    assert failure_breaker("drawdown") == "monitor:drawdown"
    action = failure_action("floor", KeyError("BTCZAR"))
    assert action == Action(
        ActionKind.HALT, "monitor:floor", "monitor floor failed: KeyError: 'BTCZAR'"
    )
    assert failure_action("floor", ZeroDivisionError()).reason == (
        "monitor floor failed: ZeroDivisionError"
    )

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert failure_action("floor", Unprintable()).reason == (
        "monitor floor failed: Unprintable: <unprintable exception>"
    )
    long = failure_action("floor", ValueError("a\n\tb " + "y" * 1000)).reason
    assert long.startswith("monitor floor failed: ValueError: a b yyy")
    assert len(long) == REASON_MAX and long.endswith("...")
