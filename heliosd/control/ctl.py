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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TextIO
from urllib.parse import urlencode

from heliosd import __version__
from heliosd.control import display
from heliosd.control.client import BadResponse, ControlClient, DaemonUnreachable, default_socket
from heliosd.core.pipes import stdout_gone
from heliosd.core.venue import SIMULATOR_NOTE

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_SERVER: Final = 4

HISTORY_COLUMNS: Final = ("id", "changed_at", "old_mode", "new_mode", "changed_by", "reason")
GATE_COLUMNS: Final = ("name", "ok", "reason")


# --------------------------------------------------------------------------- rendering


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(display.plain_text(value)).replace("\n", " ")


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Aligned columns; ``columns`` default to every key, in order of first appearance."""
    if not rows:
        return "(none)"
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def gate_table(gates: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        {"name": g.get("name"), "ok": "ok" if g.get("ok") else "FAIL", "reason": g.get("reason")}
        for g in gates
    ]
    return table(rows, GATE_COLUMNS)


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def render(body: Any) -> str:
    """A readable rendering of any JSON answer: key/value lines, lists of objects as tables."""
    if _is_rows(body):
        return table(body)
    if not isinstance(body, dict):
        return cell(body)
    pairs: list[tuple[str, str]] = []
    blocks: list[str] = []
    _flatten(body, "", pairs, blocks)
    width = max((len(k) for k, _ in pairs), default=0)
    text = "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in pairs)
    return "\n\n".join(p for p in [text, *blocks] if p) or "(empty)"


def mode_summary(body: Any) -> str:
    """`heliosctl mode`: one headline (mode, trading state, epoch), then every field."""
    if not isinstance(body, dict) or "trading_state" not in body:
        return render(body)
    head = f"{body.get('mode')}  {body['trading_state']}  epoch {body.get('epoch')}"
    if body.get("state_reason"):
        head += f"  ({body['state_reason']})"
    return f"{head}\n\n{render(body)}"


# Amounts in an answer's reference currency (pnl, risk): rounded to its decimals in tables.
MONEY_KEYS: Final = frozenset((
    "equity", "realized", "unrealized", "fees", "daily_pnl", "peak_equity", "day_start_equity",
    "gross_exposure", "pending_buy_value", "flows_today",
))  # fmt: skip


def _flatten(
    body: Mapping[str, Any],
    prefix: str,
    pairs: list[tuple[str, str]],
    blocks: list[str],
    currency: str | None = None,
) -> None:
    currency = body.get("reference_currency") or currency
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, f"{name}.", pairs, blocks, currency)
        elif currency and key in MONEY_KEYS and display.decimal_of(value) is not None:
            pairs.append((name, display.amount(value, currency)))
        elif _is_rows(value):
            blocks.append(f"{name}:\n{table(value)}")
        elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            pairs.append((name, ", ".join(cell(v) for v in value) or "-"))
        else:
            pairs.append((name, cell(value)))


def order_line(order: Mapping[str, Any]) -> str:
    base, quote = display.split_pair(order.get("pair"))
    price = f" @ {display.amount(order['price'], quote)}" if order.get("price") else ""
    return (
        f"order {order.get('id')} {order.get('state')}: {order.get('mode')} "
        f"{order.get('side')} {display.amount(order.get('quantity'), base)} {order.get('pair')} "
        f"{order.get('type')}{price}"
    )


def orders_table(body: Any) -> str:
    rows, net_shown = display.order_rows(body.get("orders", []))
    text = table(rows, display.ORDER_TABLE)
    return f"{text}\n\n{display.NET_NOTE}" if net_shown else text


def positions_view(body: Any) -> str:
    """Each mode's positions as a table; a mode without any says so in words."""
    if not isinstance(body, dict) or not ("paper" in body or "live" in body):
        return render(body)
    parts = [f"mode  {body.get('mode')}"] if body.get("mode") else []
    for key in ("paper", "live"):
        rows = body.get(key)
        if isinstance(rows, list):
            shown = table(display.position_rows(rows)) if _is_rows(rows) else "(no positions)"
            parts.append(f"{key}:\n{shown}")
    return "\n\n".join(parts)


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

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.client.request(method, path, body)

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
        status, body = self.call("GET", path)
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


_DOCTOR_WORDS: Final = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def doctor_report(body: Mapping[str, Any]) -> str:
    """One line per check (ok / warn / FAIL, name, detail, and the fix when not ok), then
    the verdict."""
    checks = [c for c in body.get("checks", []) if isinstance(c, dict)]
    width = max((len(str(c.get("name", ""))) for c in checks), default=0)
    lines = []
    for c in checks:
        word = _DOCTOR_WORDS.get(str(c.get("status")), "FAIL")
        name, detail = str(c.get("name", "")), str(c.get("detail", ""))
        line = f"{word:<4}  {name:<{width}}  {detail}"
        if word != "ok" and c.get("fix"):
            line += f"  -> fix: {c['fix']}"
        lines.append(line.replace("\n", " "))
    fails = sum(1 for c in checks if c.get("status") != "ok" and c.get("status") != "warn")
    warns = sum(1 for c in checks if c.get("status") == "warn")
    if fails:
        lines.append(f"NOT READY: {fails} check(s) failed, {warns} warning(s)")
    else:
        lines.append(f"ready: no check failed ({warns} warning(s))")
    return "\n".join(lines)


def _show_order(body: Any) -> str:
    order = body.get("order") if isinstance(body, dict) else None
    if not isinstance(order, dict):
        return render(body)
    lines = [order_line(order)]
    verdicts = order.get("verdicts") or []
    if _is_rows(verdicts):
        lines.append(table(verdicts, ("rule", "action", "reason")))
    return "\n".join(lines)


def _with_query(path: str, **params: Any) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return f"{path}?{urlencode(given)}" if given else path


def exit_code(status: int) -> int:
    if 200 <= status < 300:
        return EXIT_OK
    if 400 <= status < 500:
        return EXIT_REFUSED
    return EXIT_SERVER


# --------------------------------------------------------------------------- arguments


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _side(text: str) -> str:
    side = text.upper()
    if side not in ("BUY", "SELL"):
        raise argparse.ArgumentTypeError(f"side must be BUY or SELL, got {text!r}")
    return side


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before and after the command (`heliosctl mode --json`);
    # SUPPRESS keeps a subcommand from resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", default=argparse.SUPPRESS, help="control socket path")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print the daemon's JSON unchanged (exact values, for scripts)",
    )  # fmt: skip

    p = argparse.ArgumentParser(
        prog="heliosctl",
        description="Control a running heliosd over its Unix socket.",
        epilog="exit codes: 0 ok, 1 refused, 2 usage, 3 daemon not running, 4 server error, "
        "141 stdout closed early (| head)",
    )
    p.add_argument(
        "--socket",
        default=None,
        help="control socket (default: $HELIOSCTL_SOCKET, else /run/heliosd/heliosd.sock)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="print the daemon's JSON unchanged (exact values, for scripts)",
    )
    p.add_argument("--version", action="version", version=f"heliosctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    m = cmd("mode", "show the trading mode, or switch it (paper | live)")
    m.add_argument("target", nargs="?", choices=("paper", "live"), type=str.lower,
                   help="switch to this mode; without it, show the current mode")  # fmt: skip
    m.add_argument("--reason", help="why (recorded in the audit)")
    m.add_argument("--confirm", metavar="LIVE", help="confirm a LIVE switch without a prompt")
    m.add_argument(
        "--yes-i-typed-live",
        action="store_true",
        help="same as --confirm LIVE",
    )
    for name, help_text in (("history", "mode change history"), ("audit", "audit log")):
        c = cmd(name, help_text)
        c.add_argument("--limit", type=_positive_int, help="at most N entries, newest first")
    s = cmd("stop", "EMERGENCY STOP: halt, cancel all orders, switch to PAPER, latch")
    s.add_argument("--reason", help="why (recorded in the audit and the notification)")
    r = cmd("resume", "clear a latched stop")
    r.add_argument("--reason", required=True, help="why trading may go on (recorded)")
    h = cmd("halt", "HALT trading: refuse every order but cancels until a resume")
    h.add_argument("--reason", required=True, help="why (recorded in the audit)")
    e = cmd("engine", "autonomous engine")
    e.add_argument("action", choices=("start", "stop", "status"),
                   help="start or stop the strategy, or show its status")  # fmt: skip
    o = cmd("order", "place a manual order (MARKET, or LIMIT with --limit PRICE)")
    o.add_argument("side", type=_side, metavar="BUY|SELL", help="BUY or SELL")
    o.add_argument("pair", help="VALR pair, e.g. BTCZAR")
    o.add_argument("quantity", metavar="QTY", help="base-currency quantity, e.g. 0.0001")
    o.add_argument("--limit", metavar="PRICE", help="a LIMIT order at PRICE (quote currency)")
    o.add_argument("--reason", help="why (stored with the order)")
    ol = cmd("orders", "list orders, newest first")
    ol.add_argument("--open", action="store_true", help="open orders only")
    ol.add_argument("--limit", type=_positive_int, help="at most N orders")
    c = cmd("cancel", "cancel an order")
    c.add_argument("id", type=_positive_int, help="the order's id (heliosctl orders)")
    for name, help_text in (
        ("positions", "positions"),
        ("pnl", "realized, unrealized and daily P&L"),
        ("risk", "limit use, drawdown, breakers"),
        ("plugins", "loaded plugins"),
        ("health", "liveness of store, feeds and exchanges (exit 4 when unhealthy)"),
        ("backup", "take a database backup"),
    ):
        cmd(name, help_text)
    ls = cmd("live-smoke", "first LIVE trade check: minimum MARKET BUY, then verify everything")
    ls.add_argument("pair", help="VALR pair to buy the minimum of, e.g. BTCZAR")
    ls.add_argument("--yes", action="store_true", help="do not ask before placing the order")
    ls.add_argument("--quantity", metavar="QTY", help="base quantity (default: pair minimum)")
    ls.add_argument("--timeout", type=_positive_int, default=30, help="seconds per check")
    cl = cmd("close", "sell an account's holdings at market (PAIR or --all; --live: LIVE)")
    cl.add_argument("pair", nargs="?", type=str.upper, help="e.g. BTCZAR")
    cl.add_argument("--all", action="store_true", help="every holding a known pair sells")
    cl.add_argument("--live", action="store_true", help="the LIVE account (default PAPER)")
    cl.add_argument("--reason", help="why (recorded in the audit)")
    cl.add_argument("--confirm", metavar="ACCOUNT", help="confirm without a prompt: LIVE|PAPER")
    cl.add_argument("--yes", action="store_true", help="do not ask before selling")
    d = cmd("doctor", "check readiness for LIVE (exit 0 only when no check fails)")
    d.add_argument("--notify", action="store_true",
                   help="also send a test notification through every configured URL")  # fmt: skip
    dash = cmd("dashboard", "open the web dashboard: a loopback bridge and a one-time login URL")
    dash.add_argument(
        "--port", type=_port, default=0, help="bridge port on 127.0.0.1 (default: random)"
    )
    w = cmd("watch", "follow events until Ctrl-C")
    w.add_argument("--count", type=_positive_int, help="stop after N events")
    return p


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
