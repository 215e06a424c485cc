"""The router fails closed on verdicts a drop-in rule builds by hand.

``Verdict(rule=..., action=...)`` is public API (docs/plugins.md) and drop-in files are not
type-checked, so an action may arrive as the plain string it names, or as something that is
no action at all, and a cap's quantity as a float. A real daemon loads a drop-in rule that
answers each order with one such verdict (chosen by the order's ``reason``), and orders go
through the control socket: each must be refused, capped or placed as the verdict means,
never passed because the router did not recognise what it was handed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heliosd.core.types import Side
from heliosd.testing import RunningDaemon, SimHandle, start_daemon, wait_for, write_config

RULE = """
from decimal import Decimal

from heliosd import Verdict, VerdictAction, hookimpl

NAME = "verdict_shapes"


class Shapes:
    name = NAME

    def check(self, intent, ctx):
        kind = intent.reason
        if kind == "str-reject":
            return Verdict(rule=NAME, action="reject", reason="refused by a string action")
        if kind == "str-cap":
            return Verdict(rule=NAME, action="cap", reason="halved", quantity=intent.quantity / 2)
        if kind == "str-accept":
            return Verdict(rule=NAME, action="accept", reason="fine")
        if kind == "unknown-action":
            return Verdict(rule=NAME, action="deny", reason="not an action heliosd knows")
        if kind == "float-cap":
            return Verdict(rule=NAME, action=VerdictAction.CAP, reason="a float",
                           quantity=float(intent.quantity) / 2)
        if kind == "nan-cap":
            return Verdict(rule=NAME, action=VerdictAction.CAP, reason="NaN",
                           quantity=Decimal("NaN"))
        if kind == "zero-cap":
            return Verdict(rule=NAME, action="cap", reason="", quantity=Decimal(0))
        return Verdict(rule=NAME, action=VerdictAction.ACCEPT)


@hookimpl
def heliosd_register_risk_rules(register, config):
    register(Shapes())
"""


def order(reason: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.002",
            "reason": reason}  # fmt: skip


def shapes_verdict(stored: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in stored["verdicts"] if v["rule"] == "verdict_shapes"]
    assert len(found) == 1, stored["verdicts"]
    return found[0]


async def refused(running: RunningDaemon, reason: str) -> tuple[str, dict[str, Any]]:
    status, answer = await running.request("POST", "/api/orders", order(reason))
    assert status == 422, answer
    assert answer["error"] == "risk_rejected"
    stored = answer["details"]["order"]
    assert stored["state"] == "rejected"
    message: str = answer["message"]
    return message, shapes_verdict(stored)


async def placed(running: RunningDaemon, reason: str) -> dict[str, Any]:
    status, answer = await running.request("POST", "/api/orders", order(reason))
    assert status == 201, answer
    stored: dict[str, Any] = answer["order"]
    return stored


async def test_hand_built_verdicts_are_obeyed_or_refused_never_ignored(
    sim: SimHandle, short_dir: Path
) -> None:
    plugin_dir = short_dir / "plugins"
    plugin_dir.mkdir()
    plugin_dir.chmod(0o755)
    rule_file = plugin_dir / "verdict_shapes.py"
    rule_file.write_text(RULE)
    rule_file.chmod(0o644)
    config = write_config(
        short_dir, sim, notify_url="json://127.0.0.1:9/unused",
        daemon_extra=f'plugin_dirs = ["{plugin_dir}"]',
        extra='[paper]\nstarting_balances = { ZAR = "100000" }\n',
    )  # fmt: skip
    running = await start_daemon(config)
    try:
        status, body = await running.request("GET", "/api/plugins")
        assert status == 200 and "verdict_shapes" in body["risk_rules"], body
        market = running.service.market
        await wait_for(lambda: market.price_for("BTCZAR", Side.BUY) is not None)

        # The control: a well-formed accept, and an action given as the string it names.
        assert (await placed(running, "enum-accept"))["quantity"] == "0.002"
        ok = await placed(running, "str-accept")
        assert ok["quantity"] == "0.002"
        assert shapes_verdict(ok) == {"rule": "verdict_shapes", "action": "accept",
                                      "reason": "fine"}  # fmt: skip

        # "reject" as a string rejects (it used to pass: the router compared by identity).
        message, verdict = await refused(running, "str-reject")
        assert message == (
            "Order refused by risk rules: verdict_shapes: refused by a string action"
        )
        assert verdict["action"] == "reject"

        # "cap" as a string caps.
        capped = await placed(running, "str-cap")
        assert capped["requested_quantity"] == "0.002"
        assert capped["quantity"] == "0.001"
        assert shapes_verdict(capped)["action"] == "cap"

        # Anything else is refused, saying what was wrong.
        message, verdict = await refused(running, "unknown-action")
        assert message == (
            "Order refused by risk rules: verdict_shapes: unknown verdict action 'deny'"
        )
        assert verdict == {"rule": "verdict_shapes", "action": "deny",
                           "reason": "not an action heliosd knows"}  # fmt: skip
        message, _ = await refused(running, "float-cap")
        assert message == (
            "Order refused by risk rules: verdict_shapes: cap quantity 0.001 is not a finite"
            " Decimal"
        )
        message, _ = await refused(running, "nan-cap")
        assert message == (
            "Order refused by risk rules: verdict_shapes: cap quantity Decimal('NaN') is not a"
            " finite Decimal"
        )
        message, _ = await refused(running, "zero-cap")
        assert message == "Order refused by risk rules: verdict_shapes: capped to nothing"

        # The daemon is still taking orders after all of that.
        assert (await placed(running, "enum-accept"))["state"] in {"placed", "filled", "sent"}
    finally:
        await running.stop()
