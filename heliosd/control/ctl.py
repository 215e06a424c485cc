"""heliosctl: the operator's command line for a running heliosd.

Every command wraps one control API route. People get aligned tables;
``--json`` prints the daemon's JSON unchanged for scripts. Exit codes (a contract scripts
rely on): 0 ok, 1 refused (any 4xx answer, or the operator did not confirm), 2 usage,
3 daemon not running, 4 server error (5xx, unreadable answer, lost connection), 141 the
reader of stdout went away (``heliosctl watch | head -3``: quietly, as SIGPIPE would).

Switching to LIVE asks the operator to type ``LIVE`` on a terminal. Without a terminal, or
with ``--json``, it refuses unless ``--confirm LIVE`` (or ``--yes-i-typed-live``) is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO
from urllib.parse import urlencode

from heliosd.control import display
from heliosd.control.client import BadResponse, ControlClient, DaemonUnreachable, default_socket
from heliosd.control.ctl_parser import build_parser
from heliosd.control.ctl_render import (
    _is_rows,
    _show_order,
    doctor_report,
    gate_table,
    mode_summary,
    order_line,
    orders_table,
    positions_view,
    render,
    table,
)
from heliosd.core.pipes import stdout_gone
from heliosd.core.venue import SIMULATOR_NOTE

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_SERVER: Final = 4

# How long `heliosctl doctor` waits for the answer: longer than any check the daemon bounds
# (the notify check sends a test to every URL, each under notify.timeout_s).
DOCTOR_WAIT_S = 900.0

HISTORY_COLUMNS: Final = ("id", "changed_at", "old_mode", "new_mode", "changed_by", "reason")


# --------------------------------------------------------------------------- the runner


class Ctl:
    def __init__(
        self, args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO
    ) -> None:
        self.args = args
        self.json: bool = bool(args.json)
        self.client = ControlClient(args.socket)
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr

    def out(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def err(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        return self.client.request(method, path, body, timeout=timeout)

    def finish(self, status: int, body: Any, show: Callable[[Any], str] = render) -> int:
        """Print the answer (or the refusal) and return the exit code for ``status``."""
        code = exit_code(status)
        if self.json:
            self.out(json.dumps(body, indent=2, ensure_ascii=False))
            return code
        if code == EXIT_OK:
            self.out(show(body))
        else:
            self.refusal(status, body)
        return code

    def refusal(self, status: int, body: Any) -> None:
        if not isinstance(body, dict):
            self.err(f"heliosctl: HTTP {status}")
            return
        self.err(f"heliosctl: {body.get('message') or body.get('error') or f'HTTP {status}'}")
        details = body.get("details") or {}
        if isinstance(details, dict):
            if _is_rows(details.get("gates")):
                self.err(gate_table(details["gates"]))
            if isinstance(details.get("order"), dict):
                self.err(order_line(details["order"]))

    # --- commands
    def mode(self) -> int:
        a = self.args
        if a.target is None:
            return self.finish(*self.call("GET", "/api/trading/mode"), show=mode_summary)
        if a.target == "paper":
            body = {"mode": "PAPER", "reason": a.reason or ""}
            return self.finish(*self.call("POST", "/api/trading/mode", body))
        return self.mode_live()

    def mode_live(self) -> int:
        a = self.args
        reason = a.reason or ""
        status, body = self.call("POST", "/api/trading/mode", {"mode": "LIVE", "reason": reason})
        if not (status == 409 and isinstance(body, dict)):
            return self.finish(status, body)
        if body.get("error") != "confirmation_required":
            return self.finish(status, body)
        details = body.get("details") or {}
        token = details.get("confirm_token")
        if not self.json:
            self.out(gate_table(details.get("gates") or []))
            self.out("All gates passed.")
        if not (a.confirm == "LIVE" or a.yes_i_typed_live):
            if self.json or not self.stdin.isatty():
                self.err(
                    "heliosctl: not switching to LIVE: confirmation needs a terminal; "
                    "pass --confirm LIVE to confirm from a script"
                )
                if self.json:
                    self.out(json.dumps(body, indent=2, ensure_ascii=False))
                return EXIT_REFUSED
            expires = details.get("expires_in", 60)
            print(
                f"{self.live_target()}. Type LIVE to confirm (within {expires} s): ",
                end="",
                file=self.stdout,
                flush=True,
            )
            answer = self.stdin.readline()
            if answer.strip() != "LIVE":
                self.err("heliosctl: aborted; still in PAPER")
                return EXIT_REFUSED
        return self.finish(
            *self.call(
                "POST",
                "/api/trading/mode",
                {"mode": "LIVE", "confirm_token": token, "reason": reason},
            )
        )

    def live_target(self) -> str:
        """What a LIVE switch means here: real money, unless LIVE is the simulator."""
        status, body = self.call("GET", "/api/trading/mode")
        if status == 200 and isinstance(body, dict) and body.get("live_is_simulator") is True:
            return f"Switching LIVE to the {SIMULATOR_NOTE} ({body.get('live_venue')})"
        return "Switching to LIVE trading with real money"

    def history(self) -> int:
        status, body = self.call(
            "GET", _with_query("/api/trading/mode/history", limit=self.args.limit)
        )
        return self.finish(status, body, lambda b: table(b.get("history", []), HISTORY_COLUMNS))

    def audit(self) -> int:
        status, body = self.call("GET", _with_query("/api/audit", limit=self.args.limit))
        return self.finish(
            status, body, lambda b: table(b.get("audit", [])) if "audit" in b else render(b)
        )

    def stop(self) -> int:
        body = {"reason": self.args.reason} if self.args.reason else {}
        return self.finish(*self.call("POST", "/api/trading/emergency-stop", body))

    def resume(self) -> int:
        return self.finish(*self.call("POST", "/api/trading/resume", {"reason": self.args.reason}))

    def halt(self) -> int:
        return self.finish(*self.call("POST", "/api/trading/halt", {"reason": self.args.reason}))

    def engine(self) -> int:
        action = self.args.action
        if action == "status":
            return self.finish(*self.call("GET", "/api/autonomous-engine/status"))
        return self.finish(*self.call("POST", f"/api/autonomous-engine/{action}", {}))

    def order(self) -> int:
        a = self.args
        body: dict[str, Any] = {
            "pair": a.pair,
            "side": a.side,
            "type": "LIMIT" if a.limit is not None else "MARKET",
            "quantity": a.quantity,
        }
        if a.limit is not None:
            body["price"] = a.limit
        if a.reason:
            body["reason"] = a.reason
        status, answer = self.call("POST", "/api/orders", body)
        return self.finish(status, answer, _show_order)

    def orders(self) -> int:
        a = self.args
        path = _with_query("/api/orders", state="open" if a.open else None, limit=a.limit)
        status, body = self.call("GET", path)
        return self.finish(status, body, orders_table)

    def cancel(self) -> int:
        return self.finish(*self.call("DELETE", f"/api/orders/{self.args.id}"))

    def simple(self, path: str, show: Callable[[Any], str] = render) -> int:
        return self.finish(*self.call("GET", path), show=show)

    def health(self) -> int:
        status, body = self.call("GET", "/api/health")
        if self.json:
            return self.finish(status, body)
        if status in (200, 503):
            self.out(render(body))
            self.out("healthy" if status == 200 else "UNHEALTHY")
            return exit_code(status)
        return self.finish(status, body)

    def doctor(self) -> int:
        path = "/api/doctor?notify=1" if self.args.notify else "/api/doctor"
        # The daemon bounds every check itself (the notify check: notify.timeout_s per URL),
        # which can exceed the client's 60 s; its answer is worth waiting for.
        status, body = self.call("GET", path, timeout=max(self.client.timeout, DOCTOR_WAIT_S))
        if status != 200:
            return self.finish(status, body)
        if not isinstance(body, dict) or not isinstance(body.get("checks"), list):
            self.err("heliosctl: the daemon's doctor answer has no checks")
            return EXIT_SERVER
        if self.json:
            self.out(json.dumps(body, indent=2, ensure_ascii=False))
        else:
            self.out(doctor_report(body))
        # Only a fail makes it non-zero: a warning is worth reading, not a refusal.
        return EXIT_OK if body.get("ok") is True else EXIT_REFUSED

    def watch(self) -> int:
        count = 0
        try:
            for kind, data in self.client.events():
                self.out(self.event_line(kind, data))
                count += 1
                if self.args.count and count >= self.args.count:
                    return EXIT_OK
        except KeyboardInterrupt:
            return EXIT_OK
        self.err("heliosctl: heliosd closed the event stream")
        return EXIT_NOT_RUNNING

    def event_line(self, kind: str, data: Any) -> str:
        if self.json:
            return json.dumps({"type": kind, "data": data}, ensure_ascii=False)
        return display.event_line(kind, data)

    def backup(self) -> int:
        status, body = self.call("POST", "/api/backup", {})
        if status == 404:
            self.err(
                "heliosctl: this daemon does not take backups over the API. Run, as the daemon's "
                "user:\n  heliosd backup PATH --config /etc/heliosd/heliosd.toml\n"
                "(it uses SQLite's online backup, safe while the daemon runs)"
            )
            return EXIT_REFUSED
        return self.finish(status, body)

    def live_smoke(self) -> int:
        from heliosd.control.smokecmd import live_smoke_command

        a = self.args
        return live_smoke_command(
            self.client,
            a.pair,
            quantity=a.quantity,
            yes=a.yes,
            timeout_s=a.timeout,
            as_json=self.json,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
        )

    def close(self) -> int:
        from heliosd.control.closecmd import close_command

        a = self.args
        return close_command(
            self.client, a.pair, every=a.all, live=a.live, reason=a.reason or "",
            confirm=a.confirm, yes=a.yes, as_json=self.json,
            stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
        )  # fmt: skip


def _with_query(path: str, **params: Any) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return f"{path}?{urlencode(given)}" if given else path


def exit_code(status: int) -> int:
    if 200 <= status < 300:
        return EXIT_OK
    if 400 <= status < 500:
        return EXIT_REFUSED
    return EXIT_SERVER


def _dashboard(ctl: Ctl) -> int:
    # Imported on use: the bridge needs aiohttp, every other command only the stdlib.
    from heliosd.control.dashcmd import dashboard

    return dashboard(ctl)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run heliosctl; returns the exit code (the console script exits with it)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        finally:
            sys.stdout.flush()  # --help, --version: a closed pipe fails here, not at exit
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0)
    except BrokenPipeError:
        return stdout_gone()
    args.socket = args.socket or default_socket()
    if args.command == "mode" and args.confirm is not None and args.confirm != "LIVE":
        print("heliosctl: --confirm takes exactly LIVE", file=stderr)
        return EXIT_USAGE
    ctl = Ctl(args, stdin, stdout, stderr)
    commands: dict[str, Callable[[], int]] = {
        "mode": ctl.mode,
        "history": ctl.history,
        "audit": ctl.audit,
        "stop": ctl.stop,
        "resume": ctl.resume,
        "halt": ctl.halt,
        "engine": ctl.engine,
        "order": ctl.order,
        "orders": ctl.orders,
        "cancel": ctl.cancel,
        "positions": lambda: ctl.simple("/api/positions", positions_view),
        "pnl": lambda: ctl.simple("/api/pnl"),
        "risk": lambda: ctl.simple("/api/risk"),
        "plugins": lambda: ctl.simple("/api/plugins"),
        "health": ctl.health,
        "watch": ctl.watch,
        "doctor": ctl.doctor,
        "backup": ctl.backup,
        "live-smoke": ctl.live_smoke,
        "close": ctl.close,
        "dashboard": lambda: _dashboard(ctl),
    }
    try:
        return commands[args.command]()
    except DaemonUnreachable as exc:
        print(f"heliosctl: {exc.message}", file=stderr)
        if exc.kind == "not_running":
            return EXIT_NOT_RUNNING
        return EXIT_REFUSED if exc.kind == "permission" else EXIT_SERVER
    except BadResponse as exc:
        print(f"heliosctl: unexpected answer from {args.socket}: {exc}", file=stderr)
        return EXIT_SERVER
    except BrokenPipeError:  # the reader closed the pipe (| head): nothing left to say
        return stdout_gone()
    except KeyboardInterrupt:
        print("heliosctl: interrupted", file=stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
