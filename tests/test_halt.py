"""The operator's halt and the trading state on the API and heliosctl, against a real
daemon on its real Unix socket (LIVE venue: the simulator)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from heliosd.control.ctl import main
from heliosd.testing import RunningDaemon

BUY = {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
       "price": "500000", "reason": "t"}  # fmt: skip


async def ctl(running: RunningDaemon, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        main, ["--socket", str(running.socket), *argv], stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


async def test_halt_needs_a_reason_refuses_everything_but_cancels_and_resume_clears_it(
    daemon: RunningDaemon,
) -> None:
    req = daemon.request
    status, body = await req("POST", "/api/trading/halt", {})
    assert (status, body["error"]) == (400, "bad_request"), body
    status, first = await req("GET", "/api/trading/mode")
    assert (first["trading_state"], first["state_reason"], first["halted"]) == ("ACTIVE", "",
                                                                                 False)  # fmt: skip
    status, resting = await req("POST", "/api/orders", BUY)
    assert status == 201, resting

    code, out, err = await ctl(daemon, "halt", "--reason", "looking into it")
    assert code == 0, err
    status, mode = await req("GET", "/api/trading/mode")
    assert mode["trading_state"] == "HALTED" and mode["halted"] is True
    assert mode["state_reason"] == "halt: looking into it"
    assert mode["epoch"] > first["epoch"]
    code, out, err = await ctl(daemon, "mode")
    head = out.splitlines()[0]
    assert code == 0 and "HALTED" in head and f"epoch {mode['epoch']}" in head, out

    status, body = await req("POST", "/api/orders", {**BUY, "side": "SELL"})
    assert (status, body["error"]) == (422, "risk_rejected"), body
    assert "trading is HALTED (halt: looking into it): nothing but cancels" in body["message"]
    # Cancels still work while halted.
    status, body = await req("DELETE", f"/api/orders/{resting['order']['id']}")
    assert status == 200, body
    status, body = await req("POST", "/api/trading/mode", {"mode": "LIVE"})
    assert (status, body["error"]) == (409, "halted"), body
    audit = (await req("GET", "/api/audit"))[1]["audit"]
    assert any(a["action"] == "halt" and a["outcome"] == "tripped" for a in audit)

    code, out, err = await ctl(daemon, "resume", "--reason", "fine")
    assert code == 0, err
    status, mode = await req("GET", "/api/trading/mode")
    assert (mode["trading_state"], mode["halted"]) == ("ACTIVE", False)
    status, body = await req("POST", "/api/orders", BUY)
    assert status == 201, body


async def test_the_stop_answer_names_its_fields_and_the_openapi_document_has_them(
    daemon: RunningDaemon,
) -> None:
    req = daemon.request
    status, stop = await req("POST", "/api/trading/emergency-stop", {"reason": "drill"})
    assert status == 200, stop
    for name in ("remaining_open_orders", "remaining", "unresolved_placements", "epoch",
                 "trading_state", "cancelled_orders", "mode", "halted"):  # fmt: skip
        assert name in stop, name
    doc: Any = (await req("GET", "/api/openapi.json"))[1]
    schemas = doc["components"]["schemas"]
    assert {"trading_state", "state_reason", "epoch"} <= set(schemas["Mode"]["properties"])
    assert {"remaining", "unresolved_placements", "epoch", "trading_state"} <= set(
        schemas["EmergencyStop"]["properties"]
    )
    assert "post" in doc["paths"]["/api/trading/halt"]
