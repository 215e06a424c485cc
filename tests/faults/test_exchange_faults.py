"""Issue 8 item 7: the venue misbehaves while money moves; afterwards every book agrees.

An in-process daemon trades LIVE against the simulator while the simulator drops every
WebSocket every couple of seconds, answers 10% of REST calls with 429 and 10% with a 5xx
(half of those after the request took effect), and for stretches delays every answer past
the client's timeout. Fills arrive steadily (``inject_fills`` in small batches) and market
orders are placed through the control API. Then the faults stop, and once reconciliation has
run (bounded polling):

* every venue trade is stored exactly once as a LIVE fill (trade ids equal, no duplicate);
* each intended order was accepted by the venue at most once (customerOrderId), every order
  the venue accepted is stored and filled, and no order the venue executed is stored as
  failed;
* the base held according to the stored fills, the ledger's position and the ledger's
  balances equal the simulator's balances.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.types import Mode
from heliosd.testing import RunningDaemon, SimHandle, go_live, start_daemon, write_config

from .conftest import (
    NOTIFY,
    net_base_from_fills,
    read_db,
    sim_base_total,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FAULT_SECONDS = 8.0
DEPOSIT = Decimal("0.05")
TIMEOUT_S = 1  # valr.request_timeout_s for this daemon: the delays below exceed it


def fast_timeout_config(directory: Path, sim: SimHandle) -> Path:
    path = write_config(directory, sim, notify_url=NOTIFY)
    text = path.read_text()
    assert "request_timeout_s = 5" in text
    path.write_text(text.replace("request_timeout_s = 5", f"request_timeout_s = {TIMEOUT_S}"))
    return path


async def streams_up(running: RunningDaemon) -> bool:
    sinks = running.service.sinks[Mode.LIVE].streams
    return all(sinks.get(s, (False,))[0] for s in ("account", "trade"))


async def place_orders(running: RunningDaemon, rng: random.Random, stop: asyncio.Event,
                       answers: list[tuple[int, Any]]) -> None:  # fmt: skip
    """Market orders one after another, BUY or (when the venue's balance allows) SELL."""
    while not stop.is_set():
        qty = Decimal(rng.choice(["0.0005", "0.001"]))
        side = "BUY" if rng.random() < 0.6 else "SELL"
        body = {"pair": "BTCZAR", "side": side, "type": "MARKET", "quantity": str(qty),
                "reason": "fault test"}  # fmt: skip
        answers.append(await running.request("POST", "/api/orders", body))
        await asyncio.sleep(rng.uniform(0.05, 0.3))


async def inject_steadily(sim: SimHandle, rng: random.Random, stop: asyncio.Event) -> int:
    n = 0
    while not stop.is_set():
        batch = rng.randint(1, 4)
        await sim.sim.inject_fills(sim.account, "BTCZAR", batch)
        n += batch
        await asyncio.sleep(0.1)
    return n


async def delay_stretches(sim: SimHandle, stop: asyncio.Event) -> int:
    """Every ~2 s, 0.7 s during which each REST answer takes longer than the timeout."""
    stretches = 0
    while not stop.is_set():
        await asyncio.sleep(1.3)
        sim.sim.faults.delay_s = TIMEOUT_S * 1.5
        stretches += 1
        await asyncio.sleep(0.7)
        sim.sim.faults.delay_s = 0.0
    return stretches


def disagreements(sim: SimHandle, running: RunningDaemon, db: Path) -> list[str]:
    problems = []
    fills = read_db(db, "SELECT trade_id, side, quantity, fee, fee_currency FROM fills"
                        " WHERE mode = 'LIVE'")  # fmt: skip
    stored = Counter(f[0] for f in fills)
    twice = [t for t, n in stored.items() if n > 1]
    if twice:
        problems.append(f"fills stored twice: {twice}")
    venue = {t["id"] for t in sim.sim.trades(sim.account)}
    if set(stored) != venue:
        problems.append(f"fills lost: {len(venue - set(stored))},"
                        f" invented: {len(set(stored) - venue)}")  # fmt: skip

    received = sim.sim.orders_received(sim.account)
    accepted = Counter(r["customerOrderId"] for r in received if r["accepted"])
    placed_twice = [c for c, n in accepted.items() if n > 1]
    if placed_twice:
        problems.append(f"orders placed more than once: {placed_twice}")
    sql = "SELECT customer_order_id, state, failed_reason FROM orders WHERE mode = 'LIVE'"
    states = {r[0]: r[1:] for r in read_db(db, sql)}
    for cid in accepted:
        state = states.get(cid, ("missing", ""))
        if state[0] != "filled":
            tries = [(r["accepted"], r["error"]) for r in received if r["customerOrderId"] == cid]
            problems.append(f"order {cid} executed at the venue but stored as {state}; the"
                            f" venue received {tries}")  # fmt: skip

    held = sim_base_total(sim)
    from_fills = DEPOSIT + net_base_from_fills([f[1:] for f in fills])
    if from_fills != held:
        problems.append(f"deposit + stored fills say {from_fills} BTC, the venue holds {held}")
    ledger = running.service.ledgers[Mode.LIVE]
    if ledger.position("BTCZAR") != held:
        problems.append(f"ledger position {ledger.position('BTCZAR')}, venue {held}")
    for currency, (available, reserved) in sim.sim.balances(sim.account).items():
        mine = ledger.balances().get(currency)
        if mine is None or mine.total != available + reserved:
            problems.append(f"ledger {currency} {mine}, venue {available + reserved}")
    return problems


# The simulator's aiohttp server logs an answer it could not write to a client that had
# already timed out (TCP on loopback; the daemon's own server is on a Unix socket). Nothing
# else may log an error.
@pytest.mark.expect_errors(
    r"^aiohttp\.server: Error handling request from 127\.0\.0\.1 \(ConnectionResetError"
)
async def test_fills_exactly_once_and_orders_at_most_once_under_venue_faults(
    sim: SimHandle, short_dir: Path
) -> None:
    sim.sim.fund(sim.account, "ZAR", Decimal(900_000))
    running = await start_daemon(fast_timeout_config(short_dir, sim))
    db = running.service.settings.daemon.db_path
    try:
        await wait_until(lambda: streams_up(running), 15, "streams up")
        await go_live(running.request)
        # Something to sell from the start (after the switch: the gate wants a flat account).
        # A deposit is no fill: the stored fills account for the base moved since.
        sim.sim.fund(sim.account, "BTC", DEPOSIT)
        connections_before = sim.sim.hub.account_socket_count()
        assert connections_before == 1

        rng = random.Random(7)
        faults = sim.sim.faults
        faults.drop_ws_every_s = 2.0
        faults.http_429_rate = 0.1
        faults.http_5xx_rate = 0.1
        faults.http_5xx_after_rate = 0.5
        stop = asyncio.Event()
        answers: list[tuple[int, Any]] = []
        loop = asyncio.get_running_loop()
        orders = loop.create_task(place_orders(running, rng, stop, answers))
        injected = loop.create_task(inject_steadily(sim, rng, stop))
        delays = loop.create_task(delay_stretches(sim, stop))
        await asyncio.sleep(FAULT_SECONDS)
        # Each order under these faults takes ~1-2 s (a lost answer is looked up for twice
        # the timeout); on a loaded machine 8 s gave as few as 4. Keep the faults on until
        # enough orders got through (bounded), rather than fail on the machine's load.
        extra = loop.time() + 15
        while sum(s == 201 for s, _ in answers) < 5 and loop.time() < extra:
            await asyncio.sleep(0.2)
        stop.set()
        n_injected, n_delays = await injected, await delays
        faults.drop_ws_every_s = None
        faults.http_429_rate = faults.http_5xx_rate = 0.0
        faults.delay_s = 0.0
        await asyncio.wait_for(orders, 60)  # the last order finishes its lookups

        # The faults really happened and the daemon kept going through them.
        assert n_injected > 100 and n_delays >= 3
        statuses = Counter(status for status, _ in answers)
        assert statuses[201] >= 5, (statuses, answers)
        assert set(statuses) <= {201, 422, 503}, answers  # never a 500
        assert running.service.sinks[Mode.LIVE].fills_applied > 0

        loop_deadline = loop.time() + 40
        while problems := disagreements(sim, running, db):
            if loop.time() > loop_deadline:
                raise AssertionError(problems)
            await asyncio.sleep(0.2)
        assert not running.task.done()
        status, health = await running.request("GET", "/api/health")
        assert status == 200, health
    finally:
        await running.stop()
