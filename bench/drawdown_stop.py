"""Benchmark (issue 12): drawdown stop latency, price update to PAPER and every order cancelled.

A real ``heliosd run`` process trades LIVE against the simulator (another process). Each run
starts a fresh daemon (fresh state directory, so the peak and the day's start are this
run's), switches it to LIVE through the gates, buys BTC worth most of the account
(``max_position_pct = 100``; in 9 market buys, see below), places ``--orders`` resting limit
bids (100) through the control socket, and raises the price 10% so the equity peak is above
the start of the day. Then the simulator moves BTCZAR in one update to 81% of that high:
equity falls at least 16% from its peak (the 15% drawdown limit) but only about 9% on the
day (the daily-loss limit is 12% here, so only the drawdown monitor trips).

The clock starts in the simulator process just before that price update is pushed
(``CLOCK_MONOTONIC``, shared by every process on the machine) and stops when both are true:
the simulator lists no open order for the account (polled in its own loop every 0.5 ms)
and the daemon's database says PAPER (polled by this process through a read-only SQLite
connection). Each run is verified: the drawdown breaker and the emergency stop are latched
in SQLite and the simulator holds no open order. Prints one JSON line; ``--quick`` is a
smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from _common import emit, summary
from _daemonproc import UnixHTTP, daemon_process, fail

from heliosd.sim.probe import Probe
from heliosd.testing import DaemonProcess, SimHandle, start_sim, write_config

PAIR = "BTCZAR"
START = Decimal(1_000_000)
HIGH = (START * Decimal("1.1")).quantize(Decimal(1))  # the new peak
CRASH = (HIGH * Decimal("0.81")).quantize(Decimal(1))  # equity about 16% under its peak
BUY_BTC = Decimal("0.09")  # ~90k ZAR of ~110k equity
BUY_PIECES = 9
FUND_ZAR = Decimal(110_000)
NOTIFY = '[notify]\nurls = ["json://127.0.0.1:9/unused"]\nevents = ["emergency_stop"]\n'
RISK = "max_position_pct = 100\ndaily_loss_pct = 12\nmax_drawdown_pct = 15"
TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------- the simulator


def _child(conn: Connection) -> None:
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    handle = await start_sim(funded=FUND_ZAR)
    sim = handle.sim
    conn.send({"rest": sim.rest_url, "ws": sim.ws_url, "key": handle.key,
               "secret": handle.secret})  # fmt: skip
    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession()
    probe = Probe(session, sim.rest_url, sim.ws_url, handle.key, handle.secret)
    try:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            kind = cmd[0]
            if kind == "stop":
                break
            if kind == "price":
                sim.set_price(PAIR, Decimal(cmd[1]))
                conn.send(None)
            elif kind == "open":
                conn.send(len(sim.open_orders(handle.account)))
            elif kind == "btc":
                available, reserved = sim.balances(handle.account).get("BTC", (0, 0))
                conn.send(str(Decimal(available) + Decimal(reserved)))
            elif kind == "sell_all":  # back to flat between runs, as an operator on VALR
                conn.send(await _sell_all(sim, probe, handle.account))
            elif kind == "crash":
                conn.send(await _crash_and_watch(sim, handle.account, cmd[1]))
    finally:
        await session.close()
        await sim.stop()


async def _sell_all(sim: Any, probe: Probe, account: str) -> str:
    """Sell the account's BTC through signed REST (as an operator would on VALR's site)."""
    available, _ = sim.balances(account).get("BTC", (Decimal(0), Decimal(0)))
    qty = Decimal(available).quantize(Decimal("1e-8"))
    if qty >= Decimal("0.0001"):
        await probe.call("POST", "/v2/orders/market",
                         {"pair": PAIR, "side": "SELL", "baseAmount": str(qty)})  # fmt: skip
    return str(qty)


async def _crash_and_watch(sim: Any, account: str, price: str) -> tuple[int, int | None]:
    """Push the crash; return (t0, t_flat) in CLOCK_MONOTONIC ns (None: not flat in time)."""
    t0 = time.monotonic_ns()
    sim.set_price(PAIR, Decimal(price))
    deadline = time.monotonic() + TIMEOUT_S
    while sim.open_orders(account):
        if time.monotonic() > deadline:
            return t0, None
        await asyncio.sleep(0.0005)
    return t0, time.monotonic_ns()


class Sim:
    def __enter__(self) -> Sim:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=_child, args=(child,), daemon=True)
        self.proc.start()
        info = self.conn.recv()
        self.handle = SimHandle(SimpleNamespace(rest_url=info["rest"], ws_url=info["ws"]),
                                info["key"], info["secret"])  # fmt: skip
        return self

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()


# ---------------------------------------------------------------------------- one run


def call(proc: DaemonProcess, conn: UnixHTTP, method: str, path: str, body: Any = None,
         want: int = 200) -> Any:  # fmt: skip
    status, answer = conn.call(method, path, body)
    if status != want:
        fail(proc, f"{method} {path} answered {status} {answer}")
    return answer


def wait(proc: DaemonProcess, check: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            fail(proc, f"not within {TIMEOUT_S} s: {what}")
        time.sleep(0.01)


def db_row(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def one_run(sim: Sim, tmp: Path, n: int) -> dict[str, Any]:
    sim.ask("price", str(START))
    sim.ask("sell_all")
    config = write_config(tmp, sim.handle, extra=NOTIFY, risk_extra=RISK)
    db = config.parent / "state" / "heliosd.db"
    proc = daemon_process(config, tmp / "heliosd.log")
    proc.start()
    try:
        conn = UnixHTTP(proc.socket)
        wait(proc, lambda: _streams_up(conn), "VALR streams up")
        answer = conn.call("POST", "/api/trading/mode", {"mode": "LIVE"})[1]
        token = answer.get("details", {}).get("confirm_token")
        if not token:
            fail(proc, f"LIVE switch refused: {answer}")
        call(proc, conn, "POST", "/api/trading/mode",
             {"mode": "LIVE", "confirm_token": token, "reason": "bench"})  # fmt: skip
        # In pieces of ~9% of equity: with one buy of 0.09 BTC (82% of equity) main at 4111847
        # recorded a LIVE peak of 110,000 + 90,000 ZAR, as if the coin had arrived before the
        # quote currency left, and the drawdown stop tripped on the next order (reported to
        # the lead; not reproduced yet with an 18% buy in tests/interleavings).
        for _ in range(BUY_PIECES):
            call(proc, conn, "POST", "/api/orders", {"pair": PAIR, "side": "BUY",
                 "type": "MARKET", "quantity": str(BUY_BTC / BUY_PIECES), "reason": "bench"},
                 want=201)  # fmt: skip
        bid = {"pair": PAIR, "side": "BUY", "type": "LIMIT", "quantity": "0.0001",
               "price": "600000", "reason": "bench"}  # fmt: skip
        for _ in range(n):
            call(proc, conn, "POST", "/api/orders", bid, want=201)
        sim.ask("price", str(HIGH))
        wait(proc, lambda: _peak_raised(conn), "the equity peak follows the price up")
        if sim.ask("open") != n:
            fail(proc, f"{sim.ask('open')} of {n} bids open at the simulator")
        t0, t_flat = sim.ask("crash", str(CRASH))
        while db_row(db, "SELECT current_mode FROM trading_mode_state") != ("PAPER",):
            if (time.monotonic_ns() - t0) / 1e9 > TIMEOUT_S:
                fail(proc, "the daemon never went PAPER after the crash")
            time.sleep(0.0005)
        t_paper = time.monotonic_ns()
        if t_flat is None:
            fail(proc, f"{sim.ask('open')} orders still open at the simulator after the crash")
        assert t_flat is not None
        latched = db_row(db, "SELECT count(*) FROM breakers WHERE cleared_at IS NULL AND name"
                             " IN ('drawdown', 'emergency')")  # fmt: skip
        stopped_by = db_row(db, "SELECT group_concat(name) FROM breakers WHERE cleared_at IS NULL")
        # Nothing moved money in or out of the account: any flow row is one the daemon inferred
        # from the earlier runs' trades on the same account (the 2026-12-03 failure, issue 13).
        flows = db_row(db, "SELECT count(*) FROM flows")[0]
        conn.close()
        return {
            "ms": (max(t_flat, t_paper) - t0) / 1e6,
            "cancelled_ms": (t_flat - t0) / 1e6,
            "paper_ms": (t_paper - t0) / 1e6,
            "latched": stopped_by[0] if latched and latched[0] >= 1 else None,
            "open_after": sim.ask("open"),
            "flows": flows,
        }
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate()


def _streams_up(conn: UnixHTTP) -> bool:
    _, body = conn.call("GET", "/api/health")
    streams = body.get("streams", {}) if isinstance(body, dict) else {}
    return all(streams.get(s, {}).get("up") for s in ("live.account", "live.trade"))


def _peak_raised(conn: UnixHTTP) -> bool:
    _, body = conn.call("GET", "/api/pnl")
    live = body.get("live", {}) if isinstance(body, dict) else {}
    peak, start = live.get("peak_equity"), live.get("day_start_equity")
    return bool(peak and start) and Decimal(peak) > Decimal(start) * Decimal("1.05")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    n, runs = (10, 1) if args.quick else (args.orders, args.runs)
    results = []
    with Sim() as sim:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
                results.append(one_run(sim, Path(tmp), n))
    total = [r["ms"] for r in results]
    latency = summary(total)
    verified = all(r["latched"] and r["open_after"] == 0 and r["flows"] == 0 for r in results)
    emit(
        "drawdown_stop",
        {
            "open_orders": n,
            "runs": runs,
            "crash": f"BTCZAR {HIGH} -> {CRASH} in one update (equity >= 16% under peak)",
            "latency_ms": latency,
            "cancelled_ms": summary([r["cancelled_ms"] for r in results]),
            "paper_ms": summary([r["paper_ms"] for r in results]),
            "runs_ms": [round(x, 1) for x in total],
            "latched": sorted({str(r["latched"]) for r in results}),
            "flows_recorded": [r["flows"] for r in results],
            "verified": "0 open at the simulator, mode PAPER, drawdown/emergency latched,"
            " no flow inferred"
            if verified
            else "NOT VERIFIED: see latched/open_after/flows_recorded",
        },
        {"p99_under_50ms": latency["p99"] < 50, "verified": verified},
    )


if __name__ == "__main__":
    main()
