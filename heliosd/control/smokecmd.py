"""``heliosctl live-smoke``: the command around :class:`heliosd.control.smoke.LiveSmoke`
(confirmation, output, exit codes: see that module's docstring)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TextIO

from heliosd.control.client import ControlClient
from heliosd.control.eventtap import EventTap, EventTapError
from heliosd.control.smoke import LiveSmoke
from heliosd.control.smoke_quantity import _dec
from heliosd.control.smoke_result import (
    CHECKS,
    EXIT_FAILED,
    EXIT_OK,
    FAILED,
    PASSED,
    SKIPPED,
    SmokeRefused,
)


def live_smoke_command(
    client: ControlClient,
    pair: str,
    *,
    quantity: str | None,
    yes: bool,
    timeout_s: float,
    as_json: bool,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """``heliosctl live-smoke``: returns the exit code (see the module docstring)."""

    def out(text: str) -> None:
        print(text, file=stdout, flush=True)

    def err(text: str) -> None:
        print(text, file=stderr, flush=True)

    qty: Decimal | None = None
    if quantity is not None:
        qty = _dec(quantity)
        if qty is None:
            err(f"heliosctl: --quantity is not a number: {quantity!r}")
            return 2
    smoke = LiveSmoke(
        client,
        pair,
        quantity=qty,
        timeout_s=timeout_s,
        report=None if as_json else (lambda c: out(c.line)),
    )
    try:
        plan = smoke.preflight()
        if not as_json:
            out(
                f"live-smoke: MARKET BUY {plan.quantity} {plan.pair} ({plan.quantity_source}) "
                f"on {plan.venue}"
            )
        if not yes:
            if as_json or not stdin.isatty():
                raise SmokeRefused(
                    "live-smoke places an order on the LIVE account: pass --yes to run it "
                    "without a terminal"
                )
            stakes = "on the simulator (not real money)" if plan.simulator else "real money"
            print(f"This trades {stakes}. Type BUY to place it: ", end="", file=stdout, flush=True)
            if stdin.readline().strip() != "BUY":
                raise SmokeRefused("aborted; nothing was placed")
        events = EventTap(client.socket_path)
        try:
            events.start()
        except EventTapError as exc:
            raise SmokeRefused(str(exc)) from None
        try:
            result = smoke.run(plan, events=events)
        finally:
            events.close()
    except SmokeRefused as exc:
        err(f"heliosctl: live-smoke refused: {exc.message}")
        return exc.exit_code
    if as_json:
        out(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return EXIT_OK if result.ok else EXIT_FAILED
    failed = [c for c in result.checks if c.status != PASSED]
    if not failed:
        out(
            f"live-smoke: all {len(result.checks)} checks PASSED. The account now holds the "
            f"bought {plan.pair}; to sell it: heliosctl order SELL {plan.pair} QTY"
        )
        return EXIT_OK
    out(
        f"live-smoke: {sum(c.status == FAILED for c in failed)} FAILED, "
        f"{sum(c.status == SKIPPED for c in failed)} SKIPPED of {len(CHECKS)} checks"
    )
    return EXIT_FAILED


__all__ = ["live_smoke_command"]
