"""``GET /metrics``: the daemon's state as Prometheus text exposition (format 0.0.4).

Hand-written rather than through prometheus_client: about twenty families read on demand
from the objects that trade (nothing is counted twice, nothing kept in a registry), and the
format is a few lines of text. Every name starts ``heliosd_``; label values are escaped as the
format requires (backslash, double quote, newline). Database counts (orders, fills, the
notification outbox) are read on their own read-only connection in a thread, so a scrape
never waits in the store's write queue nor holds up an order's commit.

The figures are the ones the JSON routes answer: equity, peak, drawdown and daily loss from
the same account snapshot as ``GET /api/risk``; streams, venue status, clock skew and fill
gaps as ``GET /api/health`` reports them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from heliosd import __version__
from heliosd.core.types import Mode, OrderState, TradingState, utcnow
from heliosd.risk.equity import read_only

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Value = int | float | Decimal | bool
Labels = Mapping[str, str]


@dataclass
class Family:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: list[tuple[Labels, Value]] = field(default_factory=list)

    def add(self, value: Value | None, **labels: str) -> None:
        if value is not None:
            self.samples.append((labels, value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{text}}} {_number(value)}" if text else
                         f"{fam.name} {_number(value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _counts(conn: sqlite3.Connection, max_attempts: int) -> dict[str, Any]:
    orders = conn.execute(
        "SELECT mode, state, count(*) FROM orders GROUP BY mode, state"
    ).fetchall()
    fills = conn.execute("SELECT mode, count(*) FROM fills GROUP BY mode").fetchall()
    outbox = conn.execute(
        "SELECT coalesce(sum(attempts < ?), 0), coalesce(sum(attempts >= ?), 0) FROM outbox"
        " WHERE delivered_at IS NULL",
        (max_attempts, max_attempts),
    ).fetchone()
    return {"orders": orders, "fills": fills, "outbox": outbox}


def _fam(name: str, kind: str, help: str) -> Family:
    return Family(f"heliosd_{name}", kind, help)


async def exposition(service: Any) -> str:
    """The exposition text for the running parts (a
    :class:`heliosd.runtime.backend.ServiceBackend`: settings, store, ledgers, sinks, ...)."""
    s = service.settings
    counts = await read_only(service.store.path, lambda c: _counts(c, s.notify.max_attempts))
    state = service.store.mode_state()
    out: list[Family] = []

    info = _fam("build_info", "gauge", "heliosd's version (always 1).")
    info.add(1, version=__version__)
    mode = _fam("mode", "gauge", "1 for the current trading mode, 0 for the other.")
    for m in Mode:
        mode.add(m is state.mode, mode=str(m))
    trading = _fam("trading_state", "gauge", "1 for the current trading state.")
    for t in TradingState:
        trading.add(t is state.trading_state, state=str(t))
    epoch = _fam("epoch", "gauge", "+1 on every stop, halt, resume and mode switch.")
    epoch.add(state.epoch)
    halted = _fam("halted", "gauge", "1 while any breaker is tripped.")
    halted.add(service.breakers.halt_reason() is not None)
    out += [info, mode, trading, epoch, halted]

    ref = s.risk.reference_currency
    ready = _fam("ledger_ready", "gauge", "1 once the mode's balances are known.")
    equity = _fam("equity", "gauge", f"Equity in the reference currency ({ref}).")
    peak = _fam("peak_equity", "gauge", "Flow-adjusted high-water mark the drawdown stop uses.")
    day = _fam("day_start_equity", "gauge", "Flow-adjusted equity at the start of the day.")
    drawdown = _fam("drawdown_pct", "gauge", "Drawdown from the peak, percent.")
    daily = _fam("daily_loss_pct", "gauge", "Loss since the start of the day, percent.")
    for m in Mode:
        is_ready = service.ledgers[m].ready
        ready.add(is_ready, mode=str(m))
        if not is_ready:
            continue  # an unknown equity is not 0
        snap = service.accounts[m].snapshot()
        equity.add(snap.equity, mode=str(m))
        peak.add(snap.peak, mode=str(m))
        day.add(snap.day_start_equity, mode=str(m))
        drawdown.add(snap.drawdown_pct, mode=str(m))
        daily.add(snap.daily_loss_pct, mode=str(m))
    out += [ready, equity, peak, day, drawdown, daily]

    opened = _fam("open_orders", "gauge", "Orders not yet in a final state.")
    total = _fam("orders_total", "counter", "Orders that reached a final state, by outcome.")
    per_mode: dict[str, int] = {str(m): 0 for m in Mode}
    finals: dict[tuple[str, str], int] = {
        (str(m), str(o)): 0 for m in Mode for o in OrderState if o.is_terminal
    }
    for row_mode, row_state, n in counts["orders"]:
        try:
            order_state = OrderState(row_state)
        except ValueError:
            continue  # a state typed in by hand: not an outcome heliosd knows
        if order_state.is_open:
            per_mode[str(row_mode)] = per_mode.get(str(row_mode), 0) + int(n)
        else:
            finals[(str(row_mode), str(order_state))] = int(n)
    for name, n in per_mode.items():
        opened.add(n, mode=name)
    for (name, outcome), n in finals.items():
        total.add(n, mode=name, outcome=outcome)
    fills = _fam("fills_total", "counter", "Fills stored.")
    stored = {str(m): 0 for m in Mode} | {str(r[0]): int(r[1]) for r in counts["fills"]}
    for name, n in stored.items():
        fills.add(n, mode=name)
    pending = _fam("notifications_pending", "gauge", "Outbox rows not yet delivered.")
    pending.add(int(counts["outbox"][0]))
    failed = _fam("notifications_failed", "gauge", "Outbox rows given up after max_attempts.")
    failed.add(int(counts["outbox"][1]))
    out += [opened, total, fills, pending, failed]

    streams = _fam("stream_up", "gauge", "1 while the venue stream is connected.")
    for m, sink in service.sinks.items():
        for name, (up, _detail, _since) in sink.streams.items():
            streams.add(bool(up), mode=str(m), stream=name)
    age = _fam("last_quote_age_seconds", "gauge", "Age of the traded pair's latest quote.")
    now = utcnow()
    for pair in s.valr.pairs:
        quote_age = service.market.age(pair, now)
        if quote_age is not None:
            age.add(quote_age.total_seconds(), pair=pair)
    out += [streams, age]

    live = service.clients[Mode.LIVE]
    status = getattr(live, "venue_status", None)
    online = _fam("venue_online", "gauge", "1 while VALR's /v1/public/status says online.")
    venue = _fam("venue_status", "gauge", "VALR's status text as last read (always 1).")
    if status is not None:
        online.add(status == "online")
        venue.add(1, status=str(status))
    skew = _fam("clock_skew_seconds", "gauge", "VALR's clock minus ours, seconds.")
    skew_ms = getattr(live, "clock_skew_ms", None)
    if skew_ms is not None:
        skew.add(float(skew_ms) / 1000)
    gaps = _fam("fill_gaps_closed_total", "counter",
                "Orders whose missing fills came from VALR's trade history.")  # fmt: skip
    gaps.add(int(service.fillcheck.gaps_closed))
    points = _fam("equity_points_written_total", "counter", "Equity curve points stored.")
    points.add(service.equity.written)
    lost = _fam("equity_points_failed_total", "counter", "Equity curve points not stored.")
    lost.add(service.equity.failed)
    out += [online, venue, skew, gaps, points, lost]
    return render(out)
