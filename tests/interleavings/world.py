"""The world the interleaving search drives: one simulator, one ``heliosd run`` process.

The simulator runs in the test's event loop (so reading its books is atomic with respect to
the requests it serves); the daemon is a separate process reached over its real Unix socket
from worker threads, so many control requests can be in flight at once while the test loop
keeps serving the daemon's REST and WebSocket traffic. Everything observed comes from the
real parts: the simulator's own books (``orders_received`` with the instant each place
request reached the venue, ``open_orders``, ``trades``), the daemon's SQLite file through a
read-only connection of our own, and the control API.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from heliosd.core.config import Secret
from heliosd.testing import DaemonProcess, SimHandle, write_config

PAIR = "BTCZAR"
BTC_MIN = Decimal("0.0001")
# A notification URL is a LIVE gate; nothing listens on port 9 of loopback.
NOTIFY = "json://127.0.0.1:9/unused"
OPEN_STATES = ("new", "sent", "placed", "partially_filled")
SETTLE_S = 20.0  # the longest we wait for the daemon and the venue to agree

# The demo strategy with tiny windows, so a few price moves make the engine trade. Only the
# stop's own events are notified (to a URL nobody answers): hundreds of order messages
# retrying in the daemon would only load the machine.
ENGINE = f"""
[notify]
urls = ["{NOTIFY}"]
events = ["emergency_stop", "resume"]

[engine]
strategy = "demo"
pairs = ["BTCZAR"]
interval_s = 0.2

[demo_strategy]
short_window = 2
long_window = 3
threshold_bps = 0
"""


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_db(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the daemon's database through a read-only connection of our own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def columns(path: Path, table: str) -> set[str]:
    return {row[1] for row in read_db(path, f"PRAGMA table_info({table})")}


@dataclass
class StopRecord:
    """One emergency stop as the test saw it."""

    sent_at: datetime
    answered_at: datetime  # taken after the answer arrived: at or after the real answer
    status: int
    body: Any
    venue_open: list[dict[str, Any]]  # the venue's open orders at the moment of the answer
    step: int


@dataclass
class Step:
    number: int
    action: str
    detail: str = ""
    outcome: str = ""

    def __str__(self) -> str:
        parts = [f"{self.number:3d} {self.action}"]
        if self.detail:
            parts.append(self.detail)
        if self.outcome:
            parts.append(f"-> {self.outcome}")
        return " ".join(parts)


@dataclass
class World:
    sim: SimHandle
    proc: DaemonProcess
    db: Path
    seed: int
    steps: list[Step] = field(default_factory=list)
    stops: list[StopRecord] = field(default_factory=list)
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    checks: Counter[str] = field(default_factory=Counter)
    fault_timers: list[asyncio.TimerHandle] = field(default_factory=list)
    restarts: int = 0
    # (instant, epoch) of every GET /api/trading/mode that carried an epoch, oldest first.
    epochs: list[tuple[datetime, int]] = field(default_factory=list)

    # ------------------------------------------------------------------ building

    @classmethod
    async def create(cls, sim: SimHandle, directory: Path, seed: int) -> World:
        loop = asyncio.get_running_loop()
        # Placements may sit in a Retry-After for seconds each; the stop must never queue
        # behind them for a worker thread of ours (that would time the harness, not heliosd).
        loop.set_default_executor(ThreadPoolExecutor(max_workers=64))
        sim.sim.fund(sim.account, "ZAR", Decimal(900_000))  # 1,000,000 ZAR in all
        config = write_config(directory, sim, extra=ENGINE, valr_extra="reconcile_interval_s = 1")
        proc = DaemonProcess(
            config, config.parent / "state" / "heliosd.sock", log_path=directory / "heliosd.log"
        )
        world = cls(sim, proc, config.parent / "state" / "heliosd.db", seed)
        await proc.astart()
        await world.wait_streams()
        return world

    async def close(self) -> None:
        for timer in self.fault_timers:
            timer.cancel()
        self.clear_faults()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=SETTLE_S)
        if self.proc.proc is not None and self.proc.proc.poll() is None:
            with contextlib.suppress(Exception):
                await self.proc.aterminate()
            if self.proc.proc.poll() is None:
                await self.proc.akill9()

    # ------------------------------------------------------------------ the daemon

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.proc.arequest(method, path, body)

    def fire(self, method: str, path: str, body: Any = None) -> asyncio.Task[Any]:
        """A request left in flight across steps (its outcome is whatever the store says)."""

        async def send() -> Any:
            try:
                return await self.proc.arequest(method, path, body)
            except Exception as exc:  # the daemon was killed under it, or it timed out
                return exc

        task = asyncio.get_running_loop().create_task(send())
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task

    async def mode(self) -> dict[str, Any]:
        status, body = await self.request("GET", "/api/trading/mode")
        assert status == 200, (status, body)
        if isinstance(body.get("epoch"), int):
            self.epochs.append((now(), body["epoch"]))
        return dict(body)

    async def streams_up(self) -> bool:
        with contextlib.suppress(Exception):
            _, body = await self.request("GET", "/api/health")
            streams = body.get("streams", {}) if isinstance(body, dict) else {}
            return all(streams.get(s, {}).get("up") for s in ("live.account", "live.trade"))
        return False

    async def wait_streams(self) -> None:
        await self.until(self.streams_up, "the daemon's VALR streams are up")

    async def kill9_restart(self) -> None:
        await self.proc.akill9()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=SETTLE_S)
        self.restarts += 1
        await self.proc.astart()
        await self.wait_streams()

    # ------------------------------------------------------------------ the venue

    @property
    def account(self) -> Any:
        return self.sim.sim.exchange.accounts[self.sim.account]

    def arrivals(self) -> list[tuple[str, datetime]]:
        """(customerOrderId, instant) of every placement that reached a place handler, from
        the simulator's order-arrival log (logged when the handler starts, before
        authentication: the earliest instant the venue had it). The operator's own orders
        (second key) carry no customerOrderId and are left out."""
        return [
            (a.customer_order_id, a.arrived_at)
            for a in self.sim.sim.order_log(after=0)
            if a.customer_order_id and a.account in (None, self.sim.account)
        ]

    def venue_open(self) -> list[dict[str, Any]]:
        return list(self.sim.sim.open_orders(self.sim.account))

    def venue_btc(self) -> Decimal:
        available, reserved = self.sim.sim.balances(self.sim.account).get(
            "BTC", (Decimal(0), Decimal(0))
        )
        return Decimal(available) + Decimal(reserved)

    def mid(self) -> Decimal:
        return Decimal(self.sim.sim.exchange.markets[PAIR].mid)

    def fault_for(self, seconds: float, **switches: Any) -> None:
        """Turn simulator faults on now and off again after ``seconds`` (loop timers)."""
        faults = self.sim.sim.faults
        for name, value in switches.items():
            setattr(faults, name, value)
        defaults = type(faults)()
        undo = {name: getattr(defaults, name) for name in switches}

        def off() -> None:
            for name, value in undo.items():
                setattr(faults, name, value)

        self.fault_timers.append(asyncio.get_running_loop().call_later(seconds, off))

    def clear_faults(self) -> None:
        faults = self.sim.sim.faults
        defaults = type(faults)()
        for name in vars(defaults):
            setattr(faults, name, getattr(defaults, name))

    def faults_active(self) -> bool:
        return vars(self.sim.sim.faults) != vars(type(self.sim.sim.faults)())

    async def operator_sell(self, quantity: Decimal) -> None:
        """Sell at the venue with a second key of the account (as on VALR's own site)."""
        from heliosd.builtin.valr.rest import NotExecuted, ValrRest

        key, secret = self.sim.extra_keys.get("operator") or self.sim.add_key(
            "operator", ("View access", "Trade")
        )
        rest = ValrRest(self.sim.sim.rest_url, api_key=Secret(key), api_secret=Secret(secret))
        body = {"side": "SELL", "baseAmount": format(quantity, "f"), "pair": PAIR}
        # A person waits for VALR to recover before selling by hand: the search's faults are
        # off for this sell (a 5xx may have executed, so it could not be retried safely).
        self.clear_faults()
        try:
            # The search's own faults (429, refused connections) hit this person too; like
            # a person on VALR's site they try again. Only what VALR certainly did not act on
            # (NotExecuted) is retried, so the sell never happens twice; anything else is a
            # harness failure worth seeing.
            for attempt in range(50):
                try:
                    await rest.request("POST", "/v2/orders/market", body=body)
                    return
                except NotExecuted:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await rest.close()

    # ------------------------------------------------------------------ waiting

    async def until(
        self,
        check: Callable[[], Awaitable[bool]] | Callable[[], bool],
        what: str,
        timeout: float = SETTLE_S,
    ) -> None:
        """Poll ``check`` until true; AssertionError naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            answer = check()
            if not isinstance(answer, bool):
                answer = await answer
            if answer:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            await asyncio.sleep(0.05)

    async def quiesce(self) -> None:
        """No fault on, nothing of ours in flight, streams up: the point where I3/I4 apply."""
        for timer in self.fault_timers:
            timer.cancel()
        self.fault_timers.clear()
        self.clear_faults()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=SETTLE_S)
        await self.wait_streams()

    def report(self, problems: list[str]) -> str:
        lines = [
            f"interleaving search: invariant violated (seed {self.seed}; reproduce with "
            f"HELIOSD_SEED={self.seed} or pytest --seed {self.seed})",
            *(f"  ! {p}" for p in problems),
            "steps:",
            *(f"  {s}" for s in self.steps),
            "--- daemon log (tail) ---",
            self.proc.logs(),
        ]
        return "\n".join(lines)
