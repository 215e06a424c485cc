"""heliosctl's text rendering of the daemon's JSON answers.

Aligned tables, key/value lines (amounts rounded to the reference currency), and the
views of single commands: the mode headline, orders, positions, gates and the doctor's
report. ``--json`` bypasses all of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from heliosd.control import display

GATE_COLUMNS: Final = ("name", "ok", "reason")


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
