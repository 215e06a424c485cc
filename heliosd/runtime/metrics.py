"""``GET /metrics``: the daemon's state and its order timings, in Prometheus' text format.

Built with the official ``prometheus_client`` library on one :class:`DaemonMetrics` per
daemon, each with a registry of its own (never the library's global one: two daemons in one
process, as in the tests, must not see each other's figures).

Two kinds of metric live in that registry:

* **Instruments**, updated as orders go through the router (:class:`RouterTimings`):
  ``heliosd_order_round_trip_seconds``, a histogram of the time from handing an order to the
  venue's client to its answer (by mode and outcome), and ``heliosd_risk_path_seconds``, a
  summary (count and sum, as the library's summaries have no quantiles) of the time from an
  order's arrival to its risk verdict and reservation.
* **The state**, read at scrape time from the objects that own it (nothing is counted
  twice): mode, trading state, epoch, equity, peak and drawdown per mode, the limits the
  stops compare them with, orders and fills, stream health, quote ages, the outbox, venue
  status, clock skew (fills counted once each, incrementally: :class:`FillCounts`). A scrape
  gathers them first (database counts on a read-only connection
  in a thread, so a scrape never waits in the store's write queue nor holds up an order's
  commit), then hands them to the registry's collector for the one synchronous render.

The figures are the ones the JSON routes answer: equity, peak, drawdown and daily loss from
the same account snapshot as ``GET /api/risk``; streams, venue status, clock skew and fill
gaps as ``GET /api/health`` reports them. docs/operations.md lists every name, and
etc/heliosd-alerts.yml alerts on them (tests/test_metrics_alerts.py keeps the two in step).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Histogram, Summary, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from heliosd import __version__
from heliosd.core.types import Mode, OrderState, TradingState, utcnow

if TYPE_CHECKING:
    from heliosd.runtime.backend import ServiceBackend

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# An order's round trip to VALR is 10-100 ms when all is well; seconds when it retries
# through a 429 or a lost answer. The buckets cover both, finer where the normal case is.
ROUND_TRIP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
                             5.0, 10.0, 30.0)  # fmt: skip


class _State(Collector):
    """Yields the families a scrape gathered just before rendering (none otherwise)."""

    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def collect(self) -> Iterable[Metric]:
        return self.families


class DaemonMetrics:
    """One daemon's registry: the router's timings and the state collector."""

    def __init__(self) -> None:
        # auto_describe off: the state collector has no fixed names to describe up front.
        self.registry = CollectorRegistry(auto_describe=False)
        self.round_trip = Histogram(
            "heliosd_order_round_trip_seconds",
            "Time from handing an order to the venue's client to its answer.",
            ("mode", "outcome"),
            buckets=ROUND_TRIP_BUCKETS,
            registry=self.registry,
        )
        self.risk_path = Summary(
            "heliosd_risk_path_seconds",
            "Time from an order's arrival to its risk verdict and reservation.",
            registry=self.registry,
        )
        self._state = _State()
        self.registry.register(self._state)
        self.fills = FillCounts()

    # RouterTimings
    def observe_risk_path(self, seconds: float) -> None:
        self.risk_path.observe(seconds)

    def observe_round_trip(self, mode: Mode, outcome: str, seconds: float) -> None:
        self.round_trip.labels(str(mode), outcome).observe(seconds)

    def render(self, families: Sequence[Metric]) -> bytes:
        """The exposition of ``families`` and the instruments (synchronous: no scrape can
        interleave with another between setting the families and reading them)."""
        self._state.families = families
        try:
            return generate_latest(self.registry)
        finally:
            self._state.families = ()

    async def exposition(self, service: ServiceBackend) -> bytes:
        return self.render(await gather(service, self.fills))


class FillCounts:
    """``heliosd_fills_total`` per mode, each fill counted once. Counting the table on every
    scrape took 58 ms at a million fills (a covering-index scan), against a 5 ms target; fills
    are only ever inserted, so a scrape counts the rows after the last id it saw (a rowid
    range) and adds them. Scrapes are serialized, so two never add the same rows."""

    def __init__(self) -> None:
        self.last_id = 0
        self.by_mode: dict[str, int] = {}
        self.lock = asyncio.Lock()

    def read(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        """Count what is new since the last read (call under ``lock``); the totals.

        The first read counts the table through its covering index (fills_traded) and takes
        the top id in the same read transaction, so no row falls between the two; later ones
        walk the rowid range past it (NOT INDEXED: else SQLite scans the index for the GROUP
        BY, the whole table again)."""
        conn.execute("BEGIN")
        try:
            if self.last_id == 0:
                counted = conn.execute("SELECT mode, count(*) FROM fills GROUP BY mode").fetchall()
                top = conn.execute("SELECT coalesce(max(id), 0) FROM fills").fetchone()[0]
                rows = [(m, n, top) for m, n in counted]
            else:
                rows = conn.execute(
                    "SELECT mode, count(*), max(id) FROM fills NOT INDEXED WHERE id > ?"
                    " GROUP BY mode", (self.last_id,),
                ).fetchall()  # fmt: skip
        finally:
            conn.execute("COMMIT")
        for mode, n, top in rows:
            self.by_mode[str(mode)] = self.by_mode.get(str(mode), 0) + int(n)
            self.last_id = max(self.last_id, int(top))
        return sorted(self.by_mode.items())


def _counts(conn: sqlite3.Connection, max_attempts: int, fills: FillCounts) -> dict[str, Any]:
    orders = conn.execute(
        "SELECT mode, state, count(*) FROM orders GROUP BY mode, state"
    ).fetchall()
    outbox = conn.execute(
        "SELECT coalesce(sum(attempts < ?), 0), coalesce(sum(attempts >= ?), 0) FROM outbox"
        " WHERE delivered_at IS NULL",
        (max_attempts, max_attempts),
    ).fetchone()
    return {"orders": orders, "fills": fills.read(conn), "outbox": outbox}


def _gauge(name: str, help: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"heliosd_{name}", help, labels=labels)


def _counter(name: str, help: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    # The library adds the "_total" suffix: heliosd_orders -> heliosd_orders_total.
    return CounterMetricFamily(f"heliosd_{name}", help, labels=labels)


async def gather(service: ServiceBackend, tally: FillCounts) -> list[Metric]:
    """The state families, read now from the running parts (``tally``: the daemon's running
    count of its fills)."""
    s = service.settings
    async with tally.lock:
        counts = await service.store.read_aside(lambda c: _counts(c, s.notify.max_attempts, tally))
    state = service.store.mode_state()
    out: list[Metric] = []

    info = _gauge("build_info", "heliosd's version (always 1).", ("version",))
    info.add_metric([__version__], 1)
    mode = _gauge("mode", "1 for the current trading mode, 0 for the other.", ("mode",))
    for m in Mode:
        mode.add_metric([str(m)], m is state.mode)
    trading = _gauge("trading_state", "1 for the current trading state.", ("state",))
    for t in TradingState:
        trading.add_metric([str(t)], t is state.trading_state)
    epoch = _gauge("epoch", "+1 on every stop, halt, resume and mode switch.")
    epoch.add_metric([], state.epoch)
    halted = _gauge("halted", "1 while any breaker is tripped.")
    halted.add_metric([], service.breakers.halt_reason() is not None)
    out += [info, mode, trading, epoch, halted]

    r = s.risk
    stop = _gauge("drawdown_stop_pct", "Drawdown at which the emergency stop trips, percent.")
    stop.add_metric([], float(r.max_drawdown_pct))
    limit = _gauge("daily_loss_limit_pct", "Daily loss at which trading auto-stops, percent.")
    limit.add_metric([], float(r.daily_loss_pct))
    max_age = _gauge("max_quote_age_seconds", "Age past which a quote counts as stale.")
    max_age.add_metric([], float(r.max_quote_age_s))
    max_skew = _gauge("max_clock_skew_seconds", "Clock skew at which the LIVE gate refuses.")
    max_skew.add_metric([], float(s.valr.max_clock_skew_s))
    out += [stop, limit, max_age, max_skew]

    ref = r.reference_currency
    by_mode = ("mode",)
    ready = _gauge("ledger_ready", "1 once the mode's balances are known.", by_mode)
    equity = _gauge("equity", f"Equity in the reference currency ({ref}).", by_mode)
    peak = _gauge("peak_equity", "Flow-adjusted high-water mark the drawdown stop uses.",
                  by_mode)  # fmt: skip
    day = _gauge("day_start_equity", "Flow-adjusted equity at the start of the day.", by_mode)
    drawdown = _gauge("drawdown_pct", "Drawdown from the peak, percent.", by_mode)
    daily = _gauge("daily_loss_pct", "Loss since the start of the day, percent.", by_mode)
    for m in Mode:
        is_ready = service.ledgers[m].ready
        ready.add_metric([str(m)], is_ready)
        if not is_ready:
            continue  # an unknown equity is not 0: no sample at all
        snap = service.accounts[m].snapshot()
        for fam, value in ((equity, snap.equity), (peak, snap.peak),
                           (day, snap.day_start_equity), (drawdown, snap.drawdown_pct),
                           (daily, snap.daily_loss_pct)):  # fmt: skip
            if value is not None:
                fam.add_metric([str(m)], float(value))
    out += [ready, equity, peak, day, drawdown, daily]

    opened = _gauge("open_orders", "Orders not yet in a final state.", by_mode)
    total = _counter("orders", "Orders that reached a final state, by outcome.",
                     ("mode", "outcome"))  # fmt: skip
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
        opened.add_metric([name], n)
    for (name, outcome), n in finals.items():
        total.add_metric([name, outcome], n)
    fills = _counter("fills", "Fills stored.", by_mode)
    stored = {str(m): 0 for m in Mode} | {str(r[0]): int(r[1]) for r in counts["fills"]}
    for name, n in stored.items():
        fills.add_metric([name], n)
    pending = _gauge("notifications_pending", "Outbox rows not yet delivered.")
    pending.add_metric([], int(counts["outbox"][0]))
    failed = _gauge("notifications_failed", "Outbox rows given up after max_attempts.")
    failed.add_metric([], int(counts["outbox"][1]))
    readers = _gauge("event_streams", "Open GET /api/events streams (dashboards, watch).")
    readers.add_metric([], service.notifications.readers)
    out += [opened, total, fills, pending, failed, readers]

    streams = _gauge("stream_up", "1 while the venue stream is connected.", ("mode", "stream"))
    for m, sink in service.sinks.items():
        for name, (up, _detail, _since) in sink.streams.items():
            streams.add_metric([str(m), name], bool(up))
    age = _gauge("last_quote_age_seconds", "Age of the traded pair's latest quote.", ("pair",))
    now = utcnow()
    for pair in s.valr.pairs:
        quote_age = service.market.age(pair, now)
        if quote_age is not None:
            age.add_metric([pair], quote_age.total_seconds())
    out += [streams, age]

    live = service.clients[Mode.LIVE]
    status = getattr(live, "venue_status", None)
    online = _gauge("venue_online", "1 while VALR's /v1/public/status says online.")
    venue = _gauge("venue_status", "VALR's status text as last read (always 1).", ("status",))
    if status is not None:
        online.add_metric([], status == "online")
        venue.add_metric([str(status)], 1)
    skew = _gauge("clock_skew_seconds", "VALR's clock minus ours, seconds.")
    skew_ms = getattr(live, "clock_skew_ms", None)
    if skew_ms is not None:
        skew.add_metric([], float(skew_ms) / 1000)
    gaps = _counter("fill_gaps_closed", "Orders whose missing fills came from VALR's trade"
                    " history.")  # fmt: skip
    gaps.add_metric([], int(service.fillcheck.gaps_closed))
    points = _counter("equity_points_written", "Equity curve points stored.")
    points.add_metric([], service.equity.written)
    lost = _counter("equity_points_failed", "Equity curve points not stored.")
    lost.add_metric([], service.equity.failed)
    out += [online, venue, skew, gaps, points, lost]
    return out
