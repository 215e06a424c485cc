"""Issue 8 item 6: kill -9 at random points, restart, and nothing disagrees.

A real ``heliosd run`` process trades against the simulator in this test's loop. A seeded
RNG picks, each round, what is going on when the process is killed: a mode switch being
confirmed or undone, market orders in flight through the control API, fills streaming in
(``inject_fills``), or all of it at once cut after a random number of milliseconds. After
every restart, once reconciliation has had its chance (bounded polling), the database and
the venue must agree:

* ``trading_mode_state`` is the ``new_mode`` of the newest ``trading_mode_history`` row;
* every LIVE fill is stored once, and the stored set is exactly the simulator's trades;
* no customerOrderId reached the simulator twice, and each one that did is one stored order;
* no market order stays open for ever (each ends filled or failed);
* the base held according to the stored fills, and the ledger's position, equal the
  simulator's BTC balance.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import DaemonProcess, SimHandle, go_live, write_config

from .conftest import (
    BTC_MIN,
    NOTIFY,
    duplicates,
    net_base_from_fills,
    operator_sell,
    read_db,
    sim_base_total,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(110)]

ROUNDS = 8  # each of the four scenarios twice
# Fixed so a failure reproduces; HELIOSD_FAULT_SEED explores other kill points.
SEED = int(os.environ.get("HELIOSD_FAULT_SEED", "20240806"))
SETTLE_S = 20.0


class Round:
    """One life of the daemon process, from start to kill -9."""

    def __init__(self, sim: SimHandle, proc: DaemonProcess, rng: random.Random) -> None:
        self.sim = sim
        self.proc = proc
        self.rng = rng
        self.inflight: list[asyncio.Task[Any]] = []

    async def mode(self) -> str:
        status, body = await self.proc.arequest("GET", "/api/trading/mode")
        assert status == 200, body
        return str(body["mode"])

    async def flatten_live_account(self) -> None:
        """Sell what the account holds at the venue (second key) so the LIVE gate can pass,
        then wait until the daemon's LIVE ledger has seen it."""
        held = sim_base_total(self.sim)
        if held >= BTC_MIN:
            await operator_sell(self.sim, held.quantize(Decimal("1e-8")))
        await wait_until(self.live_position_matches, SETTLE_S, "LIVE ledger sees the sale")

    async def live_position_matches(self) -> bool:
        return await live_position(self.proc) == sim_base_total(self.sim)

    async def ensure_live(self) -> None:
        if await self.mode() == "LIVE":
            return
        await self.flatten_live_account()
        await go_live(self.proc.arequest)

    def fire(self, method: str, path: str, body: Any = None) -> None:
        """A request that may be cut by the kill: its outcome is whatever the DB says."""

        async def send() -> Any:
            try:
                return await self.proc.arequest(method, path, body)
            except Exception as exc:  # the daemon died under it: expected here
                return exc

        self.inflight.append(asyncio.get_running_loop().create_task(send()))

    def fire_orders(self, n: int) -> None:
        held = sim_base_total(self.sim)
        for _ in range(n):
            qty = Decimal(self.rng.choice(["0.0005", "0.001", "0.002"]))
            side = "SELL" if held >= qty + BTC_MIN and self.rng.random() < 0.5 else "BUY"
            held += -qty if side == "SELL" else qty
            body = {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": str(qty),
                    "reason": "crash test"}  # fmt: skip
            self.fire("POST", "/api/orders", body)

    async def inject(self, bursts: int) -> None:
        for _ in range(bursts):
            await self.sim.sim.inject_fills(self.sim.account, "BTCZAR", self.rng.randint(3, 25))
            await asyncio.sleep(self.rng.uniform(0, 0.04))

    async def kill(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.proc.akill9()
        await asyncio.gather(*self.inflight)

    # ------------------------------------------------------------------ scenarios

    async def during_switch(self) -> str:
        if await self.mode() == "PAPER":
            await self.flatten_live_account()
            status, body = await self.proc.arequest(
                "POST", "/api/trading/mode", {"mode": "LIVE", "reason": "crash test"}
            )
            assert status == 409 and body["error"] == "confirmation_required", body
            token = body["details"]["confirm_token"]
            self.fire("POST", "/api/trading/mode",
                      {"mode": "LIVE", "confirm_token": token, "reason": "crash test"})  # fmt: skip
        else:
            self.fire("POST", "/api/trading/mode", {"mode": "PAPER", "reason": "crash test"})
        await self.kill(self.rng.uniform(0, 0.06))
        return "during a mode switch"

    async def orders_in_flight(self) -> str:
        await self.ensure_live()
        self.fire_orders(self.rng.randint(2, 5))
        await self.kill(self.rng.uniform(0, 0.3))
        return "with orders in flight"

    async def fills_streaming(self) -> str:
        await self.inject(self.rng.randint(1, 5))
        await self.kill(self.rng.uniform(0, 0.05))
        return "while fills stream in"

    async def everything_at_once(self) -> str:
        if await self.mode() == "LIVE":
            self.fire_orders(self.rng.randint(1, 3))
            if self.rng.random() < 0.5:
                self.fire("POST", "/api/trading/mode", {"mode": "PAPER", "reason": "mixed"})
        injecting = asyncio.get_running_loop().create_task(self.inject(self.rng.randint(1, 4)))
        await self.kill(self.rng.uniform(0.02, 0.5))
        await injecting
        return "mid-everything"


async def live_position(proc: DaemonProcess) -> Decimal:
    status, body = await proc.arequest("GET", "/api/positions")
    assert status == 200, body
    rows = [r for r in body["live"] if r["pair"] == "BTCZAR"]
    return Decimal(rows[0]["quantity"]) if rows else Decimal(0)


async def streams_up(proc: DaemonProcess) -> bool:
    _, body = await proc.arequest("GET", "/api/health")  # 503 while a stream is down
    streams = body.get("streams", {}) if isinstance(body, dict) else {}
    return all(streams.get(s, {}).get("up") for s in ("live.account", "live.trade"))


async def disagreements(sim: SimHandle, proc: DaemonProcess, db: Path) -> list[str]:
    """Everything on which the database, the ledger and the venue disagree (empty: none)."""
    problems = []
    state = read_db(db, "SELECT current_mode FROM trading_mode_state")
    newest = read_db(db, "SELECT new_mode FROM trading_mode_history ORDER BY id DESC LIMIT 1")
    expected_mode = newest[0][0] if newest else "PAPER"
    if (state[0][0] if state else "PAPER") != expected_mode:
        problems.append(f"mode state {state} but newest history row says {expected_mode}")

    fills = read_db(db, "SELECT trade_id, side, quantity, fee, fee_currency FROM fills"
                        " WHERE mode = 'LIVE'")  # fmt: skip
    stored = [f[0] for f in fills]
    if duplicates(stored):
        problems.append(f"fills stored twice: {duplicates(stored)}")
    venue = {t["id"] for t in sim.sim.trades(sim.account)}
    if set(stored) != venue:
        problems.append(f"fills lost: {len(venue - set(stored))},"
                        f" invented: {len(set(stored) - venue)}")  # fmt: skip

    received = [r["customerOrderId"] for r in sim.sim.orders_received(sim.account)]
    ours = [c for c in received if c]  # the operator's own orders carry none
    if duplicates(ours):
        problems.append(f"customerOrderId sent twice to the venue: {duplicates(ours)}")
    orders = read_db(db, "SELECT customer_order_id, mode, state FROM orders")
    by_cid: dict[str, list[tuple[str, str]]] = {}
    for cid, mode, order_state in orders:
        by_cid.setdefault(cid, []).append((mode, order_state))
    for cid in set(ours):
        if [m for m, _ in by_cid.get(cid, [])] != ["LIVE"]:
            problems.append(f"order {cid} reached the venue but is stored as {by_cid.get(cid)}")
    stuck = [(cid, s) for cid, rows in by_cid.items() for m, s in rows
             if m == "LIVE" and s in ("new", "sent", "placed", "partially_filled")]  # fmt: skip
    if stuck:
        problems.append(f"market orders still open: {stuck}")

    held = sim_base_total(sim)
    from_fills = net_base_from_fills([f[1:] for f in fills])
    if from_fills != held:
        problems.append(f"stored fills say {from_fills} BTC, the venue holds {held}")
    position = await live_position(proc)
    if position != held:
        problems.append(f"ledger position {position} BTC, the venue holds {held}")
    return problems


async def resume_after_unclean_exit(proc: DaemonProcess, db: Path) -> None:
    """A kill -9 in LIVE comes up HALTED (``unclean_exit``) until it has reconciled with VALR
    and a person resumes: resume as the operator would, so the next round trades again."""
    [(reason,)] = read_db(db, "SELECT state_reason FROM trading_mode_state")
    if "unclean_exit" not in reason:
        return

    async def resumed() -> bool:
        status, _ = await proc.arequest("POST", "/api/trading/resume", {"reason": "crash test"})
        return status == 200  # refused (409) until the reconciliation has completed

    await wait_until(
        resumed, SETTLE_S, "resumed after the unclean exit's reconciliation", interval=0.25
    )


async def settle(sim: SimHandle, proc: DaemonProcess, db: Path, context: str) -> None:
    """Wait (bounded) until nothing disagrees; fail with what still does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while True:
        try:
            problems = await disagreements(sim, proc, db)
        except Exception as exc:
            died = proc.proc.poll() if proc.proc else None  # e.g. -7: SIGBUS
            raise AssertionError(
                f"after a kill -9 {context}: {exc!r}; daemon exit status {died}\n{proc.logs()}"
            ) from exc
        if not problems:
            return
        if loop.time() > deadline:
            raise AssertionError(f"after a kill -9 {context}: {problems}\n{proc.logs()}")
        await asyncio.sleep(0.1)


async def test_kill9_at_random_points_keeps_state_and_history_consistent(
    sim: SimHandle, short_dir: Path, heliosd_process: Callable[[Path], DaemonProcess]
) -> None:
    sim.sim.fund(sim.account, "ZAR", Decimal(900_000))  # 1,000,000 ZAR in all
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    rng = random.Random(SEED)
    context = "(first start)"
    outcomes: list[str] = []
    # Each kind of kill point twice, in a seeded order.
    plan = ["during_switch", "orders_in_flight", "fills_streaming", "everything_at_once"] * 2
    rng.shuffle(plan)
    for _ in range(ROUNDS):
        await proc.astart()
        await wait_until(lambda: streams_up(proc), SETTLE_S, "VALR streams up after restart")
        await settle(sim, proc, db, context)
        await resume_after_unclean_exit(proc, db)
        r = Round(sim, proc, rng)
        scenario: Callable[[], Awaitable[str]] = getattr(r, plan.pop())
        context = await scenario()
        outcomes.append(context)
    await proc.astart()
    await wait_until(lambda: streams_up(proc), SETTLE_S, "VALR streams up after restart")
    await settle(sim, proc, db, context)
    assert await proc.aterminate() == 0

    # The rounds really exercised something: trades at the venue, switches, orders.
    assert len(sim.sim.trades(sim.account)) > 20, outcomes
    assert read_db(db, "SELECT COUNT(*) FROM trading_mode_history")[0][0] >= 1, outcomes
    assert sim.sim.orders_received(sim.account), outcomes
    log_text = proc.log_path.read_text(errors="replace") if proc.log_path else ""
    bad = [line for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not bad, bad
