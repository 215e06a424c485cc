"""Benchmark (issue 16): what one refresh of an open dashboard page costs the daemon, per call.

After ``fills.run``'s burst and paced stream (so the store holds their fills), each of the
page's refresh calls (``_dashload.PAGE_CALLS``, the 11 that app.js makes after events) is
asked ``--calls`` times over the daemon's Unix socket from a thread of this process. The
daemon runs in this process too (as in ``fills.py``), so its CPU is this process's CPU less
the calling thread's own (``time.thread_time``). Why a per-call figure: the fills
interference (``dashboard.py --only-fills``) cannot resolve a cost this small on a noisy
2-core box, while this can, and it says which call to look at first.

    .venv/bin/python bench/refresh_cost.py            # ~30 s, one JSON line
    .venv/bin/python bench/refresh_cost.py --quick    # the smoke test's size
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fills as fills_bench
from _common import emit
from _daemonproc import UnixHTTP
from _dashload import PAGE_CALLS
from _simproc import SimProcess

WARMUP = 5


def cost_of(socket: Path, path: str, calls: int) -> dict[str, Any]:
    """Daemon CPU and wall time per ``GET path``, medians of 5 blocks of ``calls / 5``."""
    conn = UnixHTTP(socket)
    try:
        for _ in range(WARMUP):
            status, _ = conn.call("GET", path)
        cpus, walls = [], []
        block = max(1, calls // 5)
        for _ in range(5):
            own0, all0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
            for _ in range(block):
                status, body = conn.call("GET", path)
                if status not in (200, 503):  # /api/health: 503 while something is unhealthy
                    raise RuntimeError(f"GET {path}: {status} {body}")
            own1, all1, wall1 = time.thread_time(), time.process_time(), time.perf_counter()
            cpus.append(((all1 - all0) - (own1 - own0)) / block * 1e3)
            walls.append((wall1 - wall0) / block * 1e3)
    finally:
        conn.close()
    return {"daemon_cpu_ms": round(statistics.median(cpus), 3),
            "wall_ms": round(statistics.median(walls), 3)}  # fmt: skip


async def measure(sim: SimProcess, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    calls: dict[str, Any] = {}

    async def on_ready(socket: Path) -> Callable[[], Awaitable[None]]:
        async def after() -> None:  # the fills are stored; the daemon is still up
            for path in PAGE_CALLS:
                calls[path] = await asyncio.to_thread(cost_of, socket, path, args.calls)

        return after

    fargs = argparse.Namespace(fills=args.fills, paced_fills=args.paced_fills, rate=10_000,
                               batch=50, repeats=1, sweep=[])  # fmt: skip
    figures = await fills_bench.run(sim, fargs, work, on_ready=on_ready)
    refresh = sum(c["daemon_cpu_ms"] for c in calls.values())
    return {"fills_stored": figures["stored"], "calls_each": args.calls, "calls": calls,
            "refresh_daemon_cpu_ms": round(refresh, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--fills", type=int, default=20_000, help="the burst before")
    parser.add_argument("--paced-fills", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=40, help="calls of each page request")
    args = parser.parse_args()
    if args.quick:
        args.fills, args.paced_fills, args.calls = 300, 200, 5
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        figures = asyncio.run(measure(sim, args, Path(tmp)))
    # No target of its own: issue 16's is the fills interference. This is its accounting.
    emit("refresh_cost", figures, {"every_call_answered": len(figures["calls"]) == len(PAGE_CALLS)})


if __name__ == "__main__":
    main()
