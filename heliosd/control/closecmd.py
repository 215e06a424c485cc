"""``heliosctl close``: sell a named account's holdings (``POST /api/positions/close``).

``heliosctl close BTCZAR --live`` sells the LIVE account's BTC, ``heliosctl close --all
--live`` every LIVE holding a known pair sells; without ``--live`` the PAPER account's. The
first request answers with the market SELLs the daemon would send; the operator confirms
by typing the account's name (``LIVE`` or ``PAPER``) on a terminal, or with ``--confirm
LIVE`` / ``--yes`` from a script (like ``heliosctl mode live``); the second request sends
them. Exit codes are heliosctl's: 0 sent (or nothing to sell), 1 refused, not confirmed, or
an order the venue or the risk rules refused, 2 usage, 3 not running, 4 server error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TextIO

from heliosd.control.client import ControlClient
from heliosd.control.ctl import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, exit_code
from heliosd.control.ctl_render import orders_table, table

PLAN_COLUMNS: Final = ("pair", "side", "quantity")
LEFT_COLUMNS: Final = ("pair", "asset", "quantity", "why")
_FAILED: Final = frozenset({"failed", "rejected"})


def close_command(
    client: ControlClient,
    pair: str | None,
    *,
    every: bool,
    live: bool,
    reason: str,
    confirm: str | None,
    yes: bool,
    as_json: bool,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Run ``heliosctl close``; returns the exit code (see the module docstring)."""

    def out(text: str) -> None:
        print(text, file=stdout, flush=True)

    def err(text: str) -> None:
        print(text, file=stderr, flush=True)

    def dump(body: Any) -> None:
        out(json.dumps(body, indent=2, ensure_ascii=False))

    account = "LIVE" if live else "PAPER"
    if (pair is None) == (not every):
        err("heliosctl: close takes a PAIR or --all (not both)")
        return EXIT_USAGE
    if confirm is not None and confirm.upper() != account:
        err(f"heliosctl: --confirm must name the account being closed: {account}")
        return EXIT_USAGE
    body: dict[str, Any] = {"mode": account, "reason": reason}
    if every:
        body["all"] = True
    else:
        body["pair"] = pair
    status, answer = client.request("POST", "/api/positions/close", body)
    if status == 200:  # nothing to sell: no confirmation needed
        if as_json:
            dump(answer)
        else:
            out(f"Nothing to sell on the {account} account.")
            _show_left(out, answer)
        return EXIT_OK
    details = answer.get("details") if isinstance(answer, dict) else None
    if not (
        status == 409
        and isinstance(answer, dict)
        and answer.get("error") == "confirmation_required"
        and isinstance(details, dict)
    ):
        return _refused(status, answer, as_json, dump, err)
    orders = details.get("orders") or []
    if not as_json:
        out(f"Closing on the {account} account: market SELLs")
        out(table(orders, PLAN_COLUMNS))
        _show_left(out, details)
    if not (yes or confirm is not None):
        if as_json or not stdin.isatty():
            err(
                f"heliosctl: nothing sold: confirmation needs a terminal; pass --confirm"
                f" {account} (or --yes) to confirm from a script"
            )
            if as_json:
                dump(answer)
            return EXIT_REFUSED
        print(
            f"This sells at market on the {account} account. Type {account} to send"
            f" {len(orders)} order{'s' if len(orders) != 1 else ''} (within"
            f" {details.get('expires_in', 60)} s): ",
            end="",
            file=stdout,
            flush=True,
        )
        if stdin.readline().strip() != account:
            err("heliosctl: aborted; nothing was sold")
            return EXIT_REFUSED
    status, answer = client.request(
        "POST", "/api/positions/close", {**body, "confirm_token": details.get("confirm_token")}
    )
    if status != 200 or not isinstance(answer, dict):
        return _refused(status, answer, as_json, dump, err)
    sent = answer.get("orders") or []
    if as_json:
        dump(answer)
    else:
        out(orders_table({"orders": sent}))
        _show_left(out, answer)
    refused = [o for o in sent if isinstance(o, Mapping) and o.get("state") in _FAILED]
    if refused:
        if not as_json:
            err(f"heliosctl: {len(refused)} of the close's orders were refused (see above)")
        return EXIT_REFUSED
    return EXIT_OK


def _show_left(out: Any, body: Any) -> None:
    left = body.get("remaining") if isinstance(body, dict) else None
    if isinstance(left, list) and left:
        out("Not sold:")
        out(table(left, LEFT_COLUMNS))


def _refused(status: int, answer: Any, as_json: bool, dump: Any, err: Any) -> int:
    if as_json:
        dump(answer)
    elif isinstance(answer, dict):
        err(f"heliosctl: {answer.get('message') or answer.get('error') or f'HTTP {status}'}")
    else:
        err(f"heliosctl: HTTP {status}")
    code = exit_code(status)
    return EXIT_REFUSED if code == EXIT_OK else code
