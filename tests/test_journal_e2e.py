"""The journal through real parts: a real ``heliosd run`` process (its log file is its
stderr), the simulator as its LIVE venue over real HTTP and WebSocket, its real Unix socket,
and a real HTTP receiver behind the Apprise URL.

The operator's day: PAPER -> LIVE, an order the risk rules refuse, a fill, a resting order,
a lost and restored stream, an emergency stop (whose reason tries to forge a line), a
resume. Afterwards the log must say each of those once, as ``event=`` lines with the
fields, and nothing else it should not: no Apprise chatter at INFO, no secret.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from heliosd.notify.journal import KINDS
from heliosd.testing import (
    DaemonProcess,
    NotifyReceiver,
    SimHandle,
    eventually,
    go_live,
    wait_for,
    write_config,
)

LINE = re.compile(r"^\S+Z (?P<level>[A-Z]+) heliosd\.journal (?P<message>event=.*)$")
FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)')
HOOK_PASSWORD = "hookTokenR4nd0mXyZ"  # the secret part of the Apprise URL


def journal_lines(text: str) -> list[tuple[str, dict[str, str]]]:
    """Every journal line of a log as (level, fields); JSON-quoted values decoded."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m is None:
            continue
        fields = {k: json.loads(v) if v.startswith('"') else v
                  for k, v in FIELD.findall(m["message"])}  # fmt: skip
        out.append((m["level"], fields))
    return out


def events(text: str, kind: str, **match: str) -> list[tuple[str, dict[str, str]]]:
    return [(lvl, f) for lvl, f in journal_lines(text) if f["event"] == kind
            and all(f.get(k) == v for k, v in match.items())]  # fmt: skip


def market(side: str, qty: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": qty, "reason": "t"}


async def _priced(proc: DaemonProcess) -> bool:
    status, body = await proc.arequest("GET", "/api/risk")
    return status == 200 and bool(body["pairs"].get("BTCZAR"))


async def test_the_journal_tells_the_operators_day_one_line_per_event(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    url = notify_receiver.url("/notify", user="hook", password=HOOK_PASSWORD)
    config = write_config(short_dir, sim, notify_url=url)
    proc: DaemonProcess = heliosd_process(config)
    await proc.astart()
    req = proc.arequest
    me = f"uid:{os.getuid()}({pwd.getpwuid(os.getuid()).pw_name})"
    log = lambda: proc.log_path.read_text() if proc.log_path else ""  # noqa: E731
    try:
        await eventually(lambda: _priced(proc))
        await go_live(req, reason="after the drill review")

        # A risk rejection: four times the equity is refused by the leverage limit.
        status, refused = await req("POST", "/api/orders", market("BUY", "10"))
        assert status == 422, refused
        rejecting = [v["rule"] for v in refused["details"]["order"]["verdicts"]
                     if v["action"] == "reject"]  # fmt: skip
        # A fill.
        status, body = await req("POST", "/api/orders", market("BUY", "0.001"))
        assert status == 201, body
        bought_id = body["order"]["id"]

        async def filled() -> dict[str, Any] | None:
            _, b = await req("GET", f"/api/orders/{bought_id}")
            return b["order"] if b["order"]["state"] == "filled" else None

        bought = await eventually(filled)
        # A resting order, which the emergency stop cancels.
        status, body = await req("POST", "/api/orders", {
            "pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
            "price": "100000", "reason": "t",
        })  # fmt: skip
        assert status == 201, body
        resting = body["order"]

        # The venue drops its streams; the daemon reconnects.
        sim.sim.drop_ws_connections()
        await wait_for(lambda: events(log(), "stream_restored", mode="LIVE"), timeout=20)

        # The emergency stop's reason tries to forge a resume line of someone else.
        forged = "drill\nevent=resume by=uid:0(mallory) reason=forged"
        status, stop = await req("POST", "/api/trading/emergency-stop", {"reason": forged})
        assert status == 200, stop
        status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE", "reason": "again"})
        assert (status, body["error"]) == (409, "halted"), body
        status, resumed = await req("POST", "/api/trading/resume", {"reason": "drill over"})
        assert status == 200, resumed
        await wait_for(lambda: events(log(), "order_cancelled", order=str(resting["id"])))
        # An operator's halt (HALTED, nothing but cancels), and its resume.
        status, body = await req("POST", "/api/trading/halt", {"reason": "checking fills"})
        assert status == 200, body
        status, body = await req("POST", "/api/trading/resume", {"reason": "fills fine"})
        assert status == 200, body
        await wait_for(lambda: notify_receiver.posts)  # Apprise did talk
    finally:
        await proc.aterminate()

    text = log()
    # PAPER -> LIVE: who and why.
    ((lvl, live),) = events(text, "mode_change", to="LIVE")
    assert lvl == "INFO"
    assert (live["from"], live["by"], live["reason"]) == ("PAPER", me, "after the drill review")
    # The refusal: the rules and the reason, with the order's quantity.
    ((lvl, no),) = events(text, "order_refused", order=str(refused["details"]["order"]["id"]))
    assert lvl == "INFO"
    assert no["rule"] == ",".join(rejecting) and "leverage_limit" in rejecting
    assert refused["message"].endswith(no["reason"]) and no["reason"]
    assert (no["quantity"], no["side"], no["mode"], no["by"]) == ("10", "BUY", "LIVE", me)
    # Placed, then filled: quantity, price, fee and its currency, as the order row says.
    ((_, placed),) = events(text, "order_placed", order=str(bought_id))
    assert (placed["mode"], placed["pair"], placed["type"]) == ("LIVE", "BTCZAR", "MARKET")
    fills = [f for _, f in events(text, "order_filled", order=str(bought_id))]
    assert fills and all(f["mode"] == "LIVE" and f["fee_currency"] for f in fills)
    assert sum(Decimal(f["quantity"]) for f in fills) == Decimal(bought["filled_quantity"])
    assert all(Decimal(f["price"]) > 0 and Decimal(f["fee"]) >= 0 for f in fills)
    # The stream: lost at WARNING, restored at INFO.
    assert [lvl for lvl, _ in events(text, "stream_lost", mode="LIVE")] and all(
        lvl == "WARNING" for lvl, _ in events(text, "stream_lost")
    )
    # The stop: WARNING, who, the whole reason in one field; LIVE -> PAPER with it; REDUCING.
    ((lvl, es),) = events(text, "emergency_stop")
    assert (lvl, es["by"], es["reason"]) == ("WARNING", me, forged)
    ((_, down),) = events(text, "mode_change", to="PAPER")
    assert (down["from"], down["by"], down["reason"]) == ("LIVE", me, f"emergency stop: {forged}")
    states = [(lvl, f["to"], f.get("reason", "")) for lvl, f in events(text, "trading_state")]
    assert states[0][:2] == ("WARNING", "REDUCING") and states[0][2].startswith("emergency: drill")
    assert states[1][:2] == states[-1][:2] == ("INFO", "ACTIVE")
    ((_, cancelled),) = events(text, "order_cancelled", order=str(resting["id"]))
    assert (cancelled["pair"], cancelled["price"]) == ("BTCZAR", "100000")
    # The LIVE switch refused while REDUCING says so, and why.
    ((_, nolive),) = events(text, "mode_refused")
    assert (nolive["to"], nolive["by"], nolive["reason"]) == ("LIVE", me, "again")
    assert nolive["why"].startswith("emergency: drill")
    # The resume: one line, ours; the newline in the stop's reason forged nothing.
    ((lvl, res), (_, res2)) = events(text, "resume")
    assert (lvl, res["by"], res["reason"]) == ("INFO", me, "drill over")
    assert "emergency" in res["cleared"]
    ((lvl, halt),) = events(text, "halt")
    assert (lvl, halt["breaker"], halt["by"], halt["reason"]) == ("WARNING", "halt", me,
                                                                  "checking fills")  # fmt: skip
    assert (res2["by"], res2["reason"], res2["cleared"]) == (me, "fills fine", "halt")
    assert ("WARNING", "HALTED", "halt: checking fills") in states
    assert not [line for line in text.splitlines() if line.startswith("event=")]
    assert "mallory" not in "".join(f.get("by", "") for _, f in journal_lines(text))
    # Every journal line is a known kind; Apprise's chatter is not at INFO; no secret.
    assert {f["event"] for _, f in journal_lines(text)} <= set(KINDS)
    assert "Notifying" not in text
    for secret in (sim.key, sim.secret, HOOK_PASSWORD):
        assert secret not in text


async def test_a_stop_of_many_orders_journals_each_cancellation_exactly_once(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    """An emergency stop of 25 resting orders: each cancellation is in the journal exactly
    once, on its own ``order_cancelled`` line or in a batch's one ``orders_cancelled``
    line (from 10 in a committed batch: 500 lines of ~50 us would load the event loop while
    the stop verifies the venue)."""
    config = write_config(short_dir, sim, notify_url=notify_receiver.url("/notify"))
    proc: DaemonProcess = heliosd_process(config)
    await proc.astart()
    req = proc.arequest
    log = lambda: proc.log_path.read_text() if proc.log_path else ""  # noqa: E731
    try:
        await eventually(lambda: _priced(proc))
        await go_live(req, reason="many orders")
        ids = []
        for _ in range(25):
            status, body = await req("POST", "/api/orders", {
                "pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
                "price": "100000", "reason": "t",
            })  # fmt: skip
            assert status == 201, body
            ids.append(str(body["order"]["id"]))
        status, stop = await req("POST", "/api/trading/emergency-stop", {"reason": "many"})
        assert status == 200 and stop["remaining_open_orders"] == 0, stop

        def journaled() -> list[str]:
            text = log()
            single = [f["order"] for _, f in events(text, "order_cancelled")]
            batched = [o for _, f in events(text, "orders_cancelled")
                       for o in f["orders"].split(",")]  # fmt: skip
            return single + batched

        await wait_for(lambda: set(ids) <= set(journaled()), 15, "every cancellation")
    finally:
        await proc.aterminate()
    said = journaled()
    assert sorted(said) == sorted(ids), "each cancellation once, none twice"
    for _, f in events(log(), "orders_cancelled"):
        assert int(f["count"]) == len(f["orders"].split(",")) == len(f["cids"].split(","))
