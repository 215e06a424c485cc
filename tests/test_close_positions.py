"""Closing positions after an emergency stop, through real parts: a real ``heliosd run``
process whose LIVE venue is the simulator (real HTTP and WebSocket on loopback), its real
Unix socket, real heliosctl subprocesses (one on a pseudo-terminal, typing the
confirmation), and a real HTTP receiver for the notifications.

The story the operator lives: go LIVE, buy, emergency stop (the mode is PAPER now, so an
ordinary order would go to the paper account), and the LIVE holding is sold with
``POST /api/positions/close`` / ``heliosctl close BTCZAR --live``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from heliosd.control import schema as sc
from heliosd.core.types import Side
from heliosd.testing import (
    DaemonProcess,
    NotifyReceiver,
    ReceivedPost,
    RunningDaemon,
    SimHandle,
    eventually,
    go_live,
    start_daemon,
    write_config,
)

CLOSE = "/api/positions/close"
NOTIFY = "json://127.0.0.1:9/unused"  # a LIVE switch needs a notification URL


def market(side: str, qty: str, pair: str = "BTCZAR") -> dict[str, str]:
    return {"pair": pair, "side": side, "type": "MARKET", "quantity": qty, "reason": "t"}


async def _priced(proc: DaemonProcess) -> bool:
    status, body = await proc.arequest("GET", "/api/risk")
    return status == 200 and bool(body["pairs"].get("BTCZAR"))


async def _filled(proc: DaemonProcess, order_id: int) -> dict[str, Any] | None:
    _, body = await proc.arequest("GET", f"/api/orders/{order_id}")
    return body["order"] if body["order"]["state"] == "filled" else None


def _held(positions: dict[str, Any], mode: str, asset: str = "BTC") -> Decimal:
    rows = positions[mode.lower()]
    return sum((Decimal(r["quantity"]) for r in rows if r.get("asset") == asset), Decimal(0))


async def _audit(proc: DaemonProcess) -> list[dict[str, Any]]:
    status, body = await proc.arequest("GET", "/api/audit?limit=200")
    assert status == 200, body
    return [r for r in body["audit"] if r["action"] == "positions_close"]


def conforms(doc: dict[str, Any], name: str, body: Any) -> None:
    """``body`` matches the served document's schema ``name`` and decodes into its Struct."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    assert jsonschema_rs.validator_for(schema).is_valid(body), (name, body)
    msgspec.convert(body, getattr(sc, name))


async def heliosctl(
    proc: DaemonProcess, *args: str, typed: str | None = None
) -> tuple[int, str, str]:
    """heliosctl as its own process; with ``typed``, its stdin is a pseudo-terminal the
    operator types ``typed`` into (so the typed-confirmation path runs for real)."""
    script = Path(sys.executable).with_name("heliosctl")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "heliosd.control.ctl"]
    master = slave = None
    stdin: Any = subprocess.DEVNULL
    if typed is not None:
        master, slave = os.openpty()
        stdin = slave
    try:
        child = await asyncio.create_subprocess_exec(
            *cmd, "--socket", str(proc.socket), *args,
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        if master is not None and typed is not None:
            os.write(master, typed.encode())
        out, err = await asyncio.wait_for(child.communicate(), 60)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_after_an_emergency_stop_the_live_holding_is_closed_on_the_live_account(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    config = write_config(short_dir, sim, notify_url=notify_receiver.url("/notify"))
    proc: DaemonProcess = heliosd_process(config)
    await proc.astart()
    req = proc.arequest
    try:
        await eventually(lambda: _priced(proc))
        await go_live(req)
        status, body = await req("POST", "/api/orders", market("BUY", "0.001"))
        assert status == 201, body
        bought = await eventually(lambda: _filled(proc, body["order"]["id"]))
        assert bought["mode"] == "LIVE"
        held = sim.sim.balances(sim.account)["BTC"][0]  # about 0.001, VALR's fee aside
        assert Decimal("0.0009") < held < Decimal("0.0011")

        async def live_btc_known() -> bool:
            return _held((await req("GET", "/api/positions"))[1], "LIVE") == held

        await eventually(live_btc_known)

        # The emergency stop: PAPER, REDUCING, and the answer names the close as next step.
        status, stop = await req("POST", "/api/trading/emergency-stop", {"reason": "drill"})
        assert status == 200, stop
        assert (stop["mode"], stop["trading_state"]) == ("PAPER", "REDUCING")
        assert "heliosctl close --all --live" in stop["next_step"], stop
        assert f"{held} BTC" in stop["next_step"]
        assert stop["next_step"] in stop["notes"]
        status, doc = await req("GET", "/api/openapi.json")
        conforms(doc, "EmergencyStop", stop)

        # First answer: 409 with the orders it would send and a token.
        ask = {"mode": "LIVE", "pair": "BTCZAR", "reason": "flatten after drill"}
        status, body = await req("POST", CLOSE, ask)
        assert (status, body["error"]) == (409, "confirmation_required"), body
        details = body["details"]
        assert details["orders"] == [{"pair": "BTCZAR", "side": "SELL", "quantity": str(held)}]
        assert details["expires_in"] == 60
        conforms(doc, "Error", body)
        conforms(doc, "ClosePlan", details)
        assert sim.sim.orders_received(sim.account)[-1]["body"]["side"] == "BUY"  # nothing yet

        # A token confirms only the exact body it was issued for, and only once.
        other = {**ask, "reason": "something else", "confirm_token": details["confirm_token"]}
        status, body = await req("POST", CLOSE, other)
        assert (status, body["error"]) == (409, "invalid_confirm_token"), body
        assert "different request" in body["message"]
        status, body = await req("POST", CLOSE, {**ask, "confirm_token": details["confirm_token"]})
        assert (status, body["error"]) == (409, "invalid_confirm_token"), body  # spent
        assert "already used" in body["message"]
        status, body = await req("POST", CLOSE, {**ask, "all": True, "confirm_token": "x" * 32})
        assert (status, body["details"]["field"]) == (400, "all"), body
        sells = [o for o in sim.sim.orders_received(sim.account) if o["body"]["side"] == "SELL"]
        assert sells == []  # nothing refused ever reached VALR

        # Confirmed: the SELL goes to the LIVE venue although the mode is PAPER.
        status, body = await req("POST", CLOSE, ask)
        token = body["details"]["confirm_token"]
        status, closed = await req("POST", CLOSE, {**ask, "confirm_token": token})
        assert status == 200, closed
        conforms(doc, "Closed", closed)
        (order,) = closed["orders"]
        assert (order["mode"], order["side"], order["type"]) == ("LIVE", "SELL", "MARKET")
        assert Decimal(order["quantity"]) == held
        assert order["source"] == "close"
        assert order["verdicts"][0]["rule"] == "closing"  # the order says how it got there
        assert "closes a LIVE holding" in order["verdicts"][0]["reason"]
        assert "(mode now PAPER)" in order["verdicts"][0]["reason"]
        (sent,) = [o for o in sim.sim.orders_received(sim.account) if o["body"]["side"] == "SELL"]
        assert sent["route"].endswith("/orders/market") and sent["accepted"] is True
        assert Decimal(sent["body"]["baseAmount"]) == held
        await eventually(lambda: _filled(proc, order["id"]))
        assert sim.sim.balances(sim.account)["BTC"][0] == 0

        async def live_flat() -> bool:
            return _held((await req("GET", "/api/positions"))[1], "LIVE") == 0

        await eventually(live_flat)
        status, mode = await req("GET", "/api/trading/mode")
        assert (mode["mode"], mode["trading_state"]) == ("PAPER", "REDUCING")
        # The token is spent: the same confirmation again sends nothing.
        status, body = await req("POST", CLOSE, {**ask, "confirm_token": token})
        assert (status, body["error"]) == (409, "invalid_confirm_token"), body

        # Audited with the caller (uid from the socket), every step.
        rows = await _audit(proc)
        outcomes = [r["outcome"] for r in reversed(rows)]
        asked, refused = "confirmation_issued", "invalid_token"
        assert outcomes == [asked, refused, refused, asked, "confirmed", "sent", refused]
        assert all(f"(uid {os.getuid()})" in r["actor"] for r in rows)
        done = next(r for r in rows if r["outcome"] == "sent")
        assert done["reason"] == "flatten after drill"
        assert done["details"]["mode"] == "LIVE"
        assert done["details"]["orders"][0]["id"] == order["id"]

        # Notified: the receiver got the close's own message.
        def told(posts: list[ReceivedPost]) -> bool:
            return any("LIVE close" in json.dumps(p.json) for p in posts)

        assert told(await notify_receiver.wait_for(told, timeout=10))

        # Dust: what is below VALR's minimum is reported, never forced.
        sim.sim.fund(sim.account, "BTC", Decimal("0.00005"))

        async def dust_known() -> bool:
            return _held((await req("GET", "/api/positions"))[1], "LIVE") == Decimal("0.00005")

        await eventually(dust_known)
        status, body = await req("POST", CLOSE, ask)
        assert status == 200, body  # nothing to sell: no confirmation round
        assert body["orders"] == []
        (left,) = body["remaining"]
        assert (left["pair"], left["asset"], left["quantity"]) == ("BTCZAR", "BTC", "0.00005")
        assert "below VALR's minimum order of 0.0001 BTC" in left["why"]

        # ACTIVE again (a resume; the mode stays PAPER), and a PAPER holding to close.
        status, body = await req("POST", "/api/trading/resume", {"reason": "drill over"})
        assert status == 200, body
        status, body = await req("POST", "/api/orders", market("BUY", "0.002"))
        assert status == 201, body
        assert body["order"]["mode"] == "PAPER"
        await eventually(lambda: _filled(proc, body["order"]["id"]))

        async def paper_held() -> Decimal:
            return _held((await req("GET", "/api/positions"))[1], "PAPER")

        paper_btc = await eventually(paper_held)
        # PAPER (no --live): heliosctl on a terminal, the operator types the account name.
        code, out, err = await heliosctl(proc, "close", "BTCZAR", "--reason", "paper too")
        assert code == 1, out + err  # no terminal, no --confirm: nothing sold
        assert "--confirm PAPER" in err
        code, out, err = await heliosctl(proc, "close", "BTCZAR", typed="LIVE\n")
        assert code == 1 and "aborted; nothing was sold" in err, out + err  # wrong account
        code, out, err = await heliosctl(proc, "close", "BTCZAR", "--reason", "paper too",
                                         typed="PAPER\n")  # fmt: skip
        assert code == 0, out + err
        assert "Type PAPER to send 1 order" in out
        assert f"SELL  {paper_btc}" in out  # the plan was shown before the prompt
        status, orders = await req("GET", "/api/orders?limit=1")
        (paper_sell,) = orders["orders"]
        assert (paper_sell["mode"], paper_sell["side"]) == ("PAPER", "SELL")
        assert Decimal(paper_sell["quantity"]) == paper_btc
        assert len([o for o in sim.sim.orders_received(sim.account)
                    if o["body"]["side"] == "SELL"]) == 1  # fmt: skip  # not at VALR

        # --all --live from a script (--yes): only dust is left, so nothing is sent.
        code, out, err = await heliosctl(proc, "--json", "close", "--all", "--live", "--yes")
        assert code == 0, out + err
        answer = json.loads(out)
        assert answer["orders"] == []
        assert [r["asset"] for r in answer["remaining"]] == ["BTC"]

        # HALTED: nothing but cancels, a close included.
        status, body = await req("POST", "/api/trading/halt", {"reason": "ops look"})
        assert status == 200, body
        status, body = await req("POST", CLOSE, {"mode": "PAPER", "all": True})
        assert (status, body["error"]) == (409, "halted"), body
        assert (await _audit(proc))[0]["outcome"] == "refused_halted"
    finally:
        await proc.aterminate()


async def test_the_plan_never_sells_what_is_reserved_or_above_the_venue_maximum(
    sim: SimHandle, short_dir: Path
) -> None:
    """While ACTIVE and LIVE (a close needs no stop), on an in-process daemon: a resting
    SELL's reservation is not sold again, and an order above VALR's maximum is cut to it
    with the rest reported."""
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    req = running.request
    try:
        await eventually(lambda: _priced_in(running))
        await go_live(req)
        sim.sim.fund(sim.account, "BTC", Decimal("2.6"))
        resting = {"pair": "BTCZAR", "side": "SELL", "type": "LIMIT", "quantity": "0.1",
                   "price": "2000000"}  # fmt: skip
        status, body = await req("POST", "/api/orders", resting)
        assert status == 201, body

        async def reserved() -> bool:
            return sim.sim.balances(sim.account)["BTC"] == (Decimal("2.5"), Decimal("0.1"))

        await eventually(reserved)

        async def plan() -> dict[str, Any] | None:
            status, body = await req("POST", CLOSE, {"mode": "live", "pair": "btczar"})
            assert status == 409, body
            left = {r["why"].split(" ", 1)[0]: r["quantity"] for r in body["details"]["remaining"]}
            return body["details"] if left.get("reserved") == "0.1" else None

        details = await eventually(plan)
        assert details["orders"] == [{"pair": "BTCZAR", "side": "SELL", "quantity": "2"}]
        why = {r["quantity"]: r["why"] for r in details["remaining"]}
        assert why["0.5"].startswith("above VALR's maximum order of 2 BTC")
        assert why["0.1"].startswith("reserved by open orders")

        # What the body must say, in words, and a pair nobody lists.
        status, body = await req("POST", CLOSE, {"mode": "LIVE"})
        assert (status, body["details"]["field"]) == (400, "pair"), body
        status, body = await req("POST", CLOSE, {"mode": "LIVE", "pair": "BTCZAR", "all": True})
        assert (status, body["details"]["field"]) == (400, "all"), body
        status, body = await req("POST", CLOSE, {"mode": "LIVE", "all": "yes"})
        assert (status, body["message"]) == (400, "all must be true or false, got string")
        status, body = await req("POST", CLOSE, {"mode": "LIVE", "pair": "DOGEZAR"})
        assert (status, body["error"]) == (404, "not_found"), body
        assert sim.sim.orders_received(sim.account)[-1]["body"]["side"] == "SELL"
        assert len(sim.sim.orders_received(sim.account)) == 1  # only the resting one
    finally:
        await running.stop()


async def _priced_in(running: RunningDaemon) -> bool:
    return running.service.market.price_for("BTCZAR", Side.SELL) is not None
