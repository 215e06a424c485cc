"""heliosctl's command line: the argparse parser of every command and its options,
and the argument types that check them (port, positive integer, side)."""

from __future__ import annotations

import argparse

from heliosd import __version__


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
