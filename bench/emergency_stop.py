"""Benchmark 3 (issue 8): emergency stop with 500 open orders at the venue.

A real ``heliosd run`` process, its LIVE venue the simulator (another process). Before each
run the daemon is switched to LIVE (gates, confirmation token) and 500 resting limit bids
are placed through its control socket (``POST /api/orders``), so they are the live
account's open orders *and* the daemon's own stored orders, as in production; they are
left to age past the reconciliation grace (``venue.RECENT_S``) before the stop.

Two clocks start when ``POST /api/trading/emergency-stop`` is sent on the control socket:
``latency_ms`` stops at its answer (the target); ``settled_ms`` when the daemon's database
no longer holds a LIVE order in an open state (the orders' own rows say cancelled), read
through a separate SQLite connection every few milliseconds. The answer counts only if
every order is cancelled at the simulator, the mode is PAPER and the stop is latched in the
database; ``POST /api/trading/resume`` clears the latch between runs.

``--foreign`` places the orders through the simulator's own signed REST instead (orders
the daemon never stored: only the cancel path is measured, the earlier form of this
benchmark). Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, summary
from _daemonproc import UnixHTTP, daemon_process, fail
from _simproc import PAIR, QUANTITY, RESTING_PRICE, SimProcess

from heliosd.testing import DaemonProcess, write_config

# A LIVE switch needs a notification URL (a gate). Nothing listens there, so only the
# stop's own events are notified: 1,000 order messages per run failing and retrying in the
# daemon would load the machine the figures are taken on.
NOTIFY = '[notify]\nurls = ["json://127.0.0.1:9/unused"]\nevents = ["emergency_stop", "resume"]\n'
OPEN_STATES = "('new', 'sent', 'placed', 'partially_filled')"
AGE_S = 2.2  # past venue.RECENT_S (2 s): reconciliation judges orders this old
SETTLE_TIMEOUT_S = 60.0


def go_live(proc: DaemonProcess, conn: UnixHTTP) -> None:
    status, body = conn.call("POST", "/api/trading/mode", {"mode": "LIVE"})
    token = body.get("details", {}).get("confirm_token")
    if status != 409 or not token:
        fail(proc, f"LIVE switch answered {status} {body}")
    confirm = {"mode": "LIVE", "confirm_token": token, "reason": "bench"}
    status, body = conn.call("POST", "/api/trading/mode", confirm)
    if status != 200:
        fail(proc, f"LIVE confirmation answered {status} {body}")


def place_through_daemon(proc: DaemonProcess, conn: UnixHTTP, n: int) -> None:
    order = {"pair": PAIR, "side": "BUY", "type": "LIMIT", "quantity": str(QUANTITY),
             "price": RESTING_PRICE, "reason": "bench"}  # fmt: skip
    for _ in range(n):
        status, body = conn.call("POST", "/api/orders", order)
        if status != 201:
            fail(proc, f"order answered {status} {body}")


def open_local(db: Path) -> int:
    with sqlite3.connect(db) as check:
        row = check.execute(
            f"SELECT count(*) FROM orders WHERE mode = 'LIVE' AND state IN {OPEN_STATES}"
        ).fetchone()
    return int(row[0])


def wait_settled(proc: DaemonProcess, db: Path, t0: int) -> float:
    """Milliseconds from ``t0`` (perf_counter_ns) until no LIVE order is open in the DB."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while open_local(db):
        if time.monotonic() > deadline:
            fail(proc, f"{open_local(db)} LIVE orders still open in the DB after the stop")
        time.sleep(0.002)
    return (time.perf_counter_ns() - t0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--foreign", action="store_true", help="orders placed at the simulator, not the daemon"
    )
    args = parser.parse_args()
    n, runs = (20, 1) if args.quick else (args.orders, args.runs)
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        config = write_config(Path(tmp), sim.handle, extra=NOTIFY)
        db = config.parent / "state" / "heliosd.db"
        proc = daemon_process(config, Path(tmp) / "heliosd.log")
        proc.start()
        latencies: list[float] = []
        settled: list[float] = []
        cancelled: list[int] = []
        try:
            conn = UnixHTTP(proc.socket)
            for _ in range(runs):
                if args.foreign:
                    placed = sim.ask(("rest", n))
                else:
                    go_live(proc, conn)
                    place_through_daemon(proc, conn, n)
                    placed = n
                    time.sleep(AGE_S)
                open_before = sim.ask(("open",))
                if placed != n or open_before != n:
                    fail(proc, f"placed {placed} of {n}; {open_before} open at the simulator")
                t0 = time.perf_counter_ns()
                status, body = conn.call("POST", "/api/trading/emergency-stop",
                                         {"reason": "bench"})  # fmt: skip
                latencies.append((time.perf_counter_ns() - t0) / 1e6)
                if not args.foreign:
                    settled.append(wait_settled(proc, db, t0))
                check_stopped(proc, sim, db, status, body)
                cancelled.append(body["cancelled_orders"])
                status, body = conn.call("POST", "/api/trading/resume", {"reason": "bench run"})
                if status != 200:
                    fail(proc, f"resume answered {status} {body}")
            conn.close()
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.terminate()
    latency = summary(latencies)
    result: dict[str, Any] = {
        "open_orders": n,
        "placed": "simulator REST (foreign)" if args.foreign else "daemon, LIVE",
        "runs": runs,
        "latency_ms": latency,
        "runs_ms": [round(x, 1) for x in latencies],
    }
    if settled:
        result["settled_ms"] = summary(settled)
        result["settled_runs_ms"] = [round(x, 1) for x in settled]
    result["cancelled_orders"] = cancelled
    result["verified"] = "0 open at the simulator, mode PAPER, emergency breaker latched in SQLite"
    emit("emergency_stop", result, {"p99_under_100ms": latency["p99"] < 100})


def check_stopped(
    proc: DaemonProcess, sim: SimProcess, db: Path, status: int, body: dict[str, Any]
) -> None:
    open_after = sim.ask(("open",))
    with sqlite3.connect(db) as check:
        mode = check.execute("SELECT current_mode FROM trading_mode_state").fetchone()
        latch = check.execute(
            "SELECT count(*) FROM breakers WHERE name = 'emergency' AND cleared_at IS NULL"
        ).fetchone()
    ok = (status == 200 and body.get("halted") is True and body.get("mode") == "PAPER"
          and body.get("remaining_open_orders") == 0 and open_after == 0
          and mode == ("PAPER",) and latch == (1,))  # fmt: skip
    if not ok:
        fail(proc, f"stop answered {status} {body}; {open_after} open; mode {mode};"
                   f" latched {latch}")  # fmt: skip


if __name__ == "__main__":
    main()
