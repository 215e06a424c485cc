"""The staged shutdown (heliosd.runtime.shutdown), through a real ``heliosd run`` process.

SIGTERM while a LIVE placement is held in flight by the simulator: the control API answers
503 ``shutting_down`` to new orders but still answers reads, the placement gets its answer
and is stored, the process exits 0 and the SQLite file is consistent with the run recorded
clean. A second SIGTERM while a stage waits: the process exits promptly (1), having closed
the store. The stages' worst case fits the systemd unit's TimeoutStopSec, and an in-process
daemon removes its signal handlers when it returns.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import time
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import DaemonSettings, load_settings
from heliosd.runtime.service import Service
from heliosd.runtime.shutdown import BUDGETS, FORCED, worst_case_s
from heliosd.runtime.shutdown_stages import service_stages
from heliosd.sim.config import RouteDelay
from heliosd.testing import NotifyReceiver, SimHandle, go_live, start_daemon, write_config

ROOT = Path(__file__).resolve().parent.parent
UNITS = [ROOT / "systemd" / "heliosd.service", ROOT / "systemd" / "heliosd@.service"]
PRODUCTION_CONFIG = ROOT / "etc" / "heliosd.toml"
# Python's exit after the last stage (logging flushed, interpreter torn down) and systemd's
# own bookkeeping: what is left of TimeoutStopSec after the stages' worst case.
EXIT_MARGIN_S = 5.0


def slow(test: Any) -> Any:
    """A real daemon process: marked slow, and bounded."""
    return pytest.mark.slow(pytest.mark.timeout(90)(test))


NOTIFY = "json://127.0.0.1:9/unused"  # the LIVE gates want a notification target
BUY = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001", "reason": "t"}
HALT = {"reason": "during shutdown"}


def timeout_stop_sec(unit: Path) -> float:
    [value] = re.findall(r"^TimeoutStopSec=(\d+)s?\s*$", unit.read_text(), re.MULTILINE)
    return float(value)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_the_stage_budgets_fit_inside_timeout_stop_sec(unit: Path) -> None:
    stop = timeout_stop_sec(unit)
    with PRODUCTION_CONFIG.open("rb") as fh:
        configured = float(tomllib.load(fh)["daemon"]["shutdown_timeout_s"])
    for total in (float(DaemonSettings().shutdown_timeout_s), configured):
        assert worst_case_s(total) + EXIT_MARGIN_S <= stop, (total, worst_case_s(total))
    # Even an overall cap set far too high cannot stretch the stages past their budgets.
    assert worst_case_s(10_000) + EXIT_MARGIN_S <= stop
    assert sum(BUDGETS.values()) + EXIT_MARGIN_S <= stop
    # A second signal still leaves the store its whole budget.
    assert FORCED["close_store"] == BUDGETS["close_store"]


def test_the_daemon_runs_the_stages_the_budgets_name(short_dir: Path) -> None:
    config = write_config(short_dir, None)
    stages = service_stages(Service(load_settings(config)))
    assert [(s.name, s.budget_s) for s in stages] == list(BUDGETS.items())
    assert [s.name for s in stages if s.always] == ["close_store"]


async def test_signal_handlers_are_removed_when_run_returns(
    sim: SimHandle, short_dir: Path
) -> None:
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGTERM)
    running = await start_daemon(write_config(short_dir, sim))
    # While it runs, the loop owns SIGTERM/SIGINT/SIGHUP ...
    assert signal.getsignal(signal.SIGTERM) is not before
    assert await running.stop() == 0
    # ... and once run() returned, none of them: removing finds nothing to remove.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert loop.remove_signal_handler(signum) is False, signum
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --------------------------------------------------------------------------- real processes


def read(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def run_marker(db: Path) -> str:
    [(value,)] = read(db, "SELECT value FROM daemon_state WHERE key = 'run'")
    return str(json.loads(value)["state"])


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def live_with_a_held_placement(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, delay_s: float, notify: str = NOTIFY
) -> tuple[Any, Path, asyncio.Task[tuple[int, Any]]]:
    """A LIVE daemon process with one market BUY held ``delay_s`` before VALR sees it."""
    config = write_config(short_dir, sim, notify_url=notify)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    sim.sim.faults.route_delays = [RouteDelay("/v2/orders", delay_s, method="POST")]
    placing = asyncio.ensure_future(proc.arequest("POST", "/api/orders", BUY))
    # The router stores the order (sent) before it calls VALR: then it is on the wire.
    await wait_until(lambda: read(db, "SELECT COUNT(*) FROM orders")[0][0] == 1, 10, "stored")
    await asyncio.sleep(0.3)
    assert not sim.sim.orders_received(sim.account)  # held by the simulator
    assert not placing.done()
    return proc, db, placing


@slow
async def test_sigterm_with_an_order_in_flight_refuses_new_orders_and_stores_its_outcome(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    proc, db, placing = await live_with_a_held_placement(sim, short_dir, heliosd_process, 2.5)
    proc.proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: "signal SIGTERM: shutting down" in proc.logs(), 5, "shutdown")

    # During the shutdown: no new orders (nor any other change), reads still answer.
    status, body = await proc.arequest("POST", "/api/orders", BUY)
    assert status == 503, body
    assert body["error"] == "shutting_down", body
    assert "shutting down" in body["message"]
    status, body = await proc.arequest("POST", "/api/trading/mode", {"mode": "LIVE"})
    assert (status, body["error"]) == (503, "shutting_down"), body
    status, body = await proc.arequest("GET", "/api/orders")
    assert status == 200 and len(body["orders"]) == 1, body
    status, body = await proc.arequest("GET", "/api/health")
    assert body.get("error") != "shutting_down", body

    # The placement in flight was let finish: answered to its caller, and stored.
    status, body = await asyncio.wait_for(placing, 15)
    assert status == 201, body
    assert await asyncio.to_thread(proc.proc.wait, 30) == 0
    # Checked before this test opens the file: its last connection closed, the WAL merged.
    assert not Path(f"{db}-wal").exists()
    assert len(sim.sim.orders_received(sim.account)) == 1  # only the order before SIGTERM
    assert read(db, "PRAGMA integrity_check") == [("ok",)]
    [(order_id, state, exchange_id, filled)] = read(
        db, "SELECT id, state, exchange_order_id, filled_quantity FROM orders"
    )
    assert state == "filled" and exchange_id, (state, exchange_id)
    # Its fills, received from the account stream during the shutdown, drained and stored.
    fills = read(db, f"SELECT quantity FROM fills WHERE mode = 'LIVE' AND order_id = {order_id}")
    assert fills and sum(Decimal(q) for (q,) in fills) == Decimal(filled) > 0, (fills, filled)
    assert run_marker(db) == "clean"
    logs = proc.logs()
    for stage in BUDGETS:
        assert re.search(rf"shutdown stage {stage} done in \d+\.\d\d s", logs), (stage, logs)
    assert "store closed" in logs


@slow
async def test_a_second_sigterm_cuts_a_waiting_stage_short_and_still_closes_the_store(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    proc, db, placing = await live_with_a_held_placement(sim, short_dir, heliosd_process, 30)
    proc.proc.send_signal(signal.SIGTERM)
    # settle_placements waits (up to its budget) for the held placement ...
    await wait_until(lambda: "shutdown stage stop_accepting done" in proc.logs(), 5, "stage 2")
    await asyncio.sleep(0.5)
    assert proc.proc.poll() is None
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)  # ... and a second SIGTERM ends the wait
    code = await asyncio.to_thread(proc.proc.wait, 15)
    took = time.monotonic() - started
    wal_left = Path(f"{db}-wal").exists()  # before this test opens the file itself
    placing.cancel()
    logs = proc.logs()
    assert code == 1, logs
    # Well inside the stage's own 6 s: forced stages are skipped or cut to a second, while
    # the store still gets its close.
    assert took < BUDGETS["settle_placements"] - 1, (took, logs)
    assert "stage settle_placements abandoned" in logs and "a second SIGTERM" in logs, logs
    assert "store closed" in logs, logs
    assert "shutdown was not orderly" in logs, logs
    assert not wal_left, logs  # the store was closed, its WAL merged into the file
    assert read(db, "PRAGMA integrity_check") == [("ok",)]
    # Not recorded clean: the next LIVE start halts and reconciles the unanswered order.
    assert run_marker(db) == "running"
    # The held order is stored as it was when the shutdown gave up on it (not yet answered).
    [(state,)] = read(db, "SELECT state FROM orders")
    assert state in ("new", "sent"), state


async def test_the_closed_gate_refuses_writes_and_event_streams_but_not_reads_or_auth(
    sim: SimHandle, short_dir: Path
) -> None:
    """The gate's choices, on the daemon's own socket and TCP listener: once closed (as the
    first shutdown stage closes it), writes and new event streams get 503 shutting_down,
    reads answer, and an unidentified TCP caller still gets 401 first."""
    import aiohttp

    config = write_config(
        short_dir, sim, daemon_extra='http_listen = "127.0.0.1:0"\nhttp_token = "t0ken"'
    )
    running = await start_daemon(config)
    try:
        running.service.gate.close()
        status, body = await running.request("POST", "/api/orders", BUY)
        assert (status, body["error"]) == (503, "shutting_down"), body
        assert body["details"]["since"], body
        status, body = await running.request("POST", "/api/trading/resume", HALT)
        assert (status, body["error"]) == (503, "shutting_down"), body
        # What only takes risk away still answers, shutdown or not.
        status, body = await running.request("POST", "/api/trading/emergency-stop", HALT)
        assert status == 200 and body["halted"] is True, body
        status, body = await running.request("DELETE", "/api/orders/999999")
        assert body.get("error") != "shutting_down", body
        status, body = await running.request("GET", "/api/events")
        assert (status, body["error"]) == (503, "shutting_down"), body
        for path in ("/api/health", "/api/orders", "/api/trading/mode", "/api/positions"):
            status, body = await running.request("GET", path)
            assert status == 200, (path, body)
        host, port = running.service.control.tcp_address
        async with aiohttp.ClientSession() as http:
            url = f"http://{host}:{port}/api/orders"
            async with http.post(url, json=BUY) as resp:
                assert resp.status == 401  # who asks is checked before anything else
            headers = {"Authorization": "Bearer t0ken"}
            async with http.post(url, json=BUY, headers=headers) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "shutting_down"
        # Nothing of it reached the venue or the store.
        assert not sim.sim.orders_received(sim.account)
        status, body = await running.request("GET", "/api/orders")
        assert body["orders"] == [], body
    finally:
        assert await running.stop() == 0


def outbox(db: Path, kind: str) -> list[tuple[Any, ...]]:
    return read(db, f"SELECT delivered_at, attempts FROM outbox WHERE kind = '{kind}'")


@slow
async def test_the_outbox_is_flushed_at_shutdown_and_what_fails_waits_for_the_next_start(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    proc, db, placing = await live_with_a_held_placement(
        sim, short_dir, heliosd_process, 1.0, notify=notify_receiver.url()
    )
    await notify_receiver.wait_for(1)  # the switch to LIVE: the receiver works
    before = len(notify_receiver.posts)
    # The account stream lags the placement's answer by a second: the order's messages are
    # held back and arrive after the answer (VALR answers before it pushes the fill).
    for kind in ("NEW_ACCOUNT_TRADE", "ORDER_STATUS_UPDATE", "ORDER_PROCESSED",
                 "OPEN_ORDERS_UPDATE", "BALANCE_UPDATE"):  # fmt: skip
        sim.sim.drop_account_messages(kind, 50)
    proc.proc.send_signal(signal.SIGTERM)
    assert (await asyncio.wait_for(placing, 15))[0] == 201
    await asyncio.sleep(1.0)
    sim.sim.faults.drop_account_messages.clear()
    sim.sim.redeliver_dropped(sim.account)
    assert await asyncio.to_thread(proc.proc.wait, 30) == 0
    # The market order was given the time to fill: its fill was stored and its notification
    # sent before the exit. (It fills only after the SIGTERM: its placement was held.)
    rows = outbox(db, "fill")
    assert len(rows) == 1 and rows[0][0] is not None, (rows, proc.logs())
    assert len(notify_receiver.posts) > before
    [(state,)] = read(db, "SELECT state FROM orders")
    assert state == "filled", state
    assert "not yet final" not in proc.logs()

    # Now the receiver fails: the next shutdown's notification is tried, and stays queued.
    await proc.astart()
    notify_receiver.fail()
    status, body = await proc.arequest("POST", "/api/orders", BUY)
    assert status == 201, body
    await wait_until(lambda: len(outbox(db, "fill")) == 2, 10, "second fill queued")
    assert await proc.aterminate() == 0  # an undelivered notification is not a failure
    rows = outbox(db, "fill")
    undelivered = [attempts for delivered_at, attempts in rows if delivered_at is None]
    assert len(undelivered) == 1 and undelivered[0] >= 1, rows
    notify_receiver.recover()
    await proc.astart()  # ... and goes out after the next start
    await wait_until(lambda: all(d is not None for d, _ in outbox(db, "fill")), 20, "sent")
    assert await proc.aterminate() == 0
