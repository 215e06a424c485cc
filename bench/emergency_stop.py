"""Benchmark 3 (issues 8, 12): emergency stop with 500 open orders and 20 placements in flight.

A real ``heliosd run`` process, its LIVE venue the simulator (another process). Before each
run the daemon is switched to LIVE (gates, confirmation token) and 500 resting limit bids
are placed through its control socket (``POST /api/orders``), so they are the live
account's open orders *and* the daemon's own stored orders, as in production; they are
left to age past the reconciliation grace (``heliosd.trading.reconcile.RECENT_S``) before the stop.

Two clocks start when ``POST /api/trading/emergency-stop`` is sent on the control socket:
``latency_ms`` stops at its answer (the target); ``settled_ms`` when the daemon's database
no longer holds a LIVE order in an open state (the orders' own rows say cancelled), read
through a separate SQLite connection every few milliseconds. The answer counts only if
every order is cancelled at the simulator, the mode is PAPER and the stop is latched in the
database; ``POST /api/trading/resume`` clears the latch between runs.

Placements in flight (issue 12, ``--inflight 20``, the default): just before each stop, half
of them are sent through the control socket while the simulator answers every
``POST /v2/orders...`` with 429 and ``Retry-After: 2`` (``POST /sim/faults`` with
``rate_limits``, one 429 each), and the stop is sent once all of those have had their 429,
so they sit inside the client's Retry-After; the other half are sent at the same instant as
the stop. The stop must not wait out the Retry-After: the clock is the same, and on top of
the checks above the run is verified only if, once every placement has answered (bounded),
no order is open at the simulator, none is open in the database, and the simulator's
order-arrival log (``GET /sim/order-log``) shows no placement that arrived after the stop's
answer. A run that fails a check is counted in ``unverified`` with what was wrong (a
target miss, not a crash). A simulator without ``/sim/faults`` (older than the order-arrival
log) runs without the in-flight placements and says so.

``--foreign`` places the orders through the simulator's own signed REST instead (orders
the daemon never stored: only the cancel path is measured, the earlier form of this
benchmark). Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
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
AGE_S = 2.2  # past trading.reconcile.RECENT_S (2 s): reconciliation judges orders this old
SETTLE_TIMEOUT_S = 60.0
RETRY_AFTER_S = 2


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


def sim_admin(sim: SimProcess, method: str, path: str, body: Any = None) -> Any:
    """The simulator's own ``/sim/`` routes (unsigned, never faulted); None if it has none."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{sim.handle.sim.rest_url}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


class InFlight:
    """``n`` placements through their own control connections, half in a Retry-After."""

    def __init__(self, proc: DaemonProcess, sim: SimProcess, n: int) -> None:
        self.proc, self.sim, self.n = proc, sim, n
        self.retrying = n // 2
        self.threads: list[threading.Thread] = []
        self.answers: list[Any] = []
        self.go = threading.Event()

    def _place(self, wait_for_go: bool) -> None:
        order = {"pair": PAIR, "side": "BUY", "type": "LIMIT", "quantity": str(QUANTITY),
                 "price": RESTING_PRICE, "reason": "bench in flight"}  # fmt: skip
        if wait_for_go:
            self.go.wait()
        try:
            conn = UnixHTTP(self.proc.socket)
            self.answers.append(conn.call("POST", "/api/orders", order)[0])
            conn.close()
        except Exception as exc:  # counted, not raised: the stop is what is measured
            self.answers.append(repr(exc))

    def start_retrying(self) -> None:
        """Send the first half into a 429 each; return once all of them had it."""
        sim_admin(self.sim, "POST", "/sim/faults", {"reset": True, "rate_limits": [
            {"prefix": "/v2/orders", "count": self.retrying, "retry_after_s": RETRY_AFTER_S,
             "method": "POST"}]})  # fmt: skip
        for _ in range(self.retrying):
            self._spawn(False)
        deadline = time.monotonic() + 10
        while True:
            limits = sim_admin(self.sim, "GET", "/sim/faults")["rate_limits"]
            if limits and limits[0]["hits"] >= self.retrying:
                break
            if time.monotonic() > deadline:
                fail(self.proc, f"only {limits} of {self.retrying} placements got their 429")
            time.sleep(0.002)
        for _ in range(self.n - self.retrying):  # released together with the stop
            self._spawn(True)

    def _spawn(self, wait_for_go: bool) -> None:
        thread = threading.Thread(target=self._place, args=(wait_for_go,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self) -> list[str]:
        """Wait (bounded) for every placement to answer; what went wrong, if anything."""
        deadline = time.monotonic() + RETRY_AFTER_S + 10
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        sim_admin(self.sim, "POST", "/sim/faults", {"reset": True})
        alive = sum(t.is_alive() for t in self.threads)
        return [f"{alive} placements never answered"] if alive else []


def arrived_after(sim: SimProcess, answered_at: datetime) -> list[str]:
    log = sim_admin(sim, "GET", "/sim/order-log?after=0") or {"orders": []}
    return [
        str(o.get("customer_order_id"))
        for o in log["orders"]
        if datetime.fromisoformat(o["arrived_at"].replace("Z", "+00:00")) > answered_at
    ]


def open_local(db: Path) -> int:
    with sqlite3.connect(db) as check:
        row = check.execute(
            f"SELECT count(*) FROM orders WHERE mode = 'LIVE' AND state IN {OPEN_STATES}"
        ).fetchone()
    return int(row[0])


def wait_settled(proc: DaemonProcess, db: Path, t0: int, soft: bool = False) -> float:
    """Milliseconds from ``t0`` (perf_counter_ns) until no LIVE order is open in the DB
    (``soft``: give up after a while instead of failing; check_stopped reports it)."""
    deadline = time.monotonic() + (5 if soft else SETTLE_TIMEOUT_S)
    while open_local(db):
        if time.monotonic() > deadline:
            if soft:
                break
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
    parser.add_argument(
        "--inflight",
        type=int,
        default=None,
        help="placements in flight at a stop, half in a 429 (default 20; 0 with --quick)",
    )
    args = parser.parse_args()
    n, runs = (20, 1) if args.quick else (args.orders, args.runs)
    default = 0 if args.quick else 20  # the smoke test's counts are of resting orders only
    inflight = 0 if args.foreign else (default if args.inflight is None else args.inflight)
    unverified: list[str] = []
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
            if inflight and sim_admin(sim, "GET", "/sim/faults") is None:
                sys.stderr.write("simulator without /sim/faults: no placements in flight\n")
                inflight = 0
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
                flight = InFlight(proc, sim, inflight) if inflight else None
                if flight is not None:
                    flight.start_retrying()
                    flight.go.set()
                t0 = time.perf_counter_ns()
                status, body = conn.call("POST", "/api/trading/emergency-stop",
                                         {"reason": "bench"})  # fmt: skip
                latencies.append((time.perf_counter_ns() - t0) / 1e6)
                answered_at = datetime.now(UTC)
                problems = flight.finish() if flight is not None else []
                if flight is not None:
                    late = arrived_after(sim, answered_at)
                    if late:
                        problems.append(f"{len(late)} placements reached the simulator after"
                                        f" the stop answered {body}")  # fmt: skip
                if not args.foreign:
                    settled.append(wait_settled(proc, db, t0, soft=bool(inflight)))
                problems += check_stopped(proc, sim, db, status, body, soft=bool(inflight))
                unverified += [f"run {len(latencies)}: {p}" for p in problems]
                cancelled.append(body["cancelled_orders"])
                status, body = conn.call("POST", "/api/trading/resume", {"reason": "bench run"})
                if status != 200:
                    fail(proc, f"resume answered {status} {body}")
                if problems:  # orders a broken stop left resting: clear them for the next run
                    conn.call("POST", "/api/trading/emergency-stop", {"reason": "bench cleanup"})
                    conn.call("POST", "/api/trading/resume", {"reason": "bench cleanup"})
            conn.close()
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.terminate()
    latency = summary(latencies)
    result: dict[str, Any] = {
        "open_orders": n,
        "placed": "simulator REST (foreign)" if args.foreign else "daemon, LIVE",
        "in_flight": {
            "placements": inflight,
            "in_retry_after": inflight // 2,
            "retry_after_s": RETRY_AFTER_S,
        }
        if inflight
        else None,
        "runs": runs,
        "latency_ms": latency,
        "runs_ms": [round(x, 1) for x in latencies],
    }
    if settled:
        result["settled_ms"] = summary(settled)
        result["settled_runs_ms"] = [round(x, 1) for x in settled]
    result["cancelled_orders"] = cancelled
    result["verified"] = (
        "0 open at the simulator and in SQLite, mode PAPER, emergency breaker latched"
        + (", no placement arrived after the answer" if inflight else "")
        if not unverified
        else "NOT VERIFIED: see unverified"
    )
    result["unverified"] = unverified
    emit("emergency_stop", result,
         {"p99_under_100ms": latency["p99"] < 100, "all_verified": not unverified})  # fmt: skip


def check_stopped(
    proc: DaemonProcess,
    sim: SimProcess,
    db: Path,
    status: int,
    body: dict[str, Any],
    soft: bool = False,
) -> list[str]:
    """What is wrong after a stop (empty: nothing); ``soft`` reports instead of exiting."""
    open_after = sim.ask(("open",))
    with sqlite3.connect(db) as check:
        mode = check.execute("SELECT current_mode FROM trading_mode_state").fetchone()
        latch = check.execute(
            "SELECT count(*) FROM breakers WHERE name = 'emergency' AND cleared_at IS NULL"
        ).fetchone()
    ok = (status == 200 and body.get("halted") is True and body.get("mode") == "PAPER"
          and body.get("remaining_open_orders") == 0 and open_after == 0
          and mode == ("PAPER",) and latch == (1,))  # fmt: skip
    if ok:
        return []
    what = f"stop answered {status} {body}; {open_after} open; mode {mode}; latched {latch}"
    if not soft:
        fail(proc, what)
    return [what]


if __name__ == "__main__":
    main()
