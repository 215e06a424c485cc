"""Benchmark 3 (issue 8): emergency stop with 500 open orders at the venue.

A real ``heliosd run`` process, its LIVE venue the simulator (another process). Before each
run the simulator's account gets 500 resting limit bids, placed through the simulator's own
signed REST with the daemon's key, so they are the live account's open orders. The clock
runs from sending ``POST /api/trading/emergency-stop`` on the control socket to its answer;
the answer counts only if every order is cancelled at the simulator, the mode is PAPER and
the stop is latched in the database -- all three are checked after every run (the orders at
the simulator, the rows through a separate SQLite connection). ``POST /api/trading/resume``
clears the latch between runs.

Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, summary
from _daemonproc import UnixHTTP, daemon_process, fail
from _simproc import SimProcess

from heliosd.testing import write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    n, runs = (20, 1) if args.quick else (args.orders, args.runs)
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        config = write_config(Path(tmp), sim.handle)
        db = config.parent / "state" / "heliosd.db"
        proc = daemon_process(config, Path(tmp) / "heliosd.log")
        proc.start()
        latencies: list[float] = []
        cancelled: list[int] = []
        try:
            conn = UnixHTTP(proc.socket)
            for _ in range(runs):
                placed = sim.ask(("rest", n))
                open_before = sim.ask(("open",))
                if placed != n or open_before != n:
                    fail(proc, f"placed {placed} of {n}; {open_before} open at the simulator")
                t0 = time.perf_counter_ns()
                status, body = conn.call("POST", "/api/trading/emergency-stop",
                                         {"reason": "bench"})  # fmt: skip
                latencies.append((time.perf_counter_ns() - t0) / 1e6)
                open_after = sim.ask(("open",))
                with sqlite3.connect(db) as check:
                    mode = check.execute("SELECT current_mode FROM trading_mode_state").fetchone()
                    latch = check.execute(
                        "SELECT count(*) FROM breakers WHERE name = 'emergency'"
                        " AND cleared_at IS NULL"
                    ).fetchone()
                ok = (status == 200 and body.get("halted") is True and body.get("mode") == "PAPER"
                      and body.get("remaining_open_orders") == 0 and open_after == 0
                      and mode == ("PAPER",) and latch == (1,))  # fmt: skip
                if not ok:
                    fail(proc, f"stop answered {status} {body}; {open_after} open; mode {mode};"
                               f" latched {latch}")  # fmt: skip
                cancelled.append(body["cancelled_orders"])
                status, body = conn.call("POST", "/api/trading/resume", {"reason": "bench run"})
                if status != 200:
                    fail(proc, f"resume answered {status} {body}")
            conn.close()
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.terminate()
    latency = summary(latencies)
    emit(
        "emergency_stop",
        {
            "open_orders": n,
            "runs": runs,
            "latency_ms": latency,
            "runs_ms": [round(x, 1) for x in latencies],
            "cancelled_orders": cancelled,
            "verified": "0 open at the simulator, mode PAPER, emergency breaker latched in SQLite",
        },
        {"p99_under_100ms": latency["p99"] < 100},
    )


if __name__ == "__main__":
    main()
