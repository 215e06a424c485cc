"""Benchmark 4 (issue 8): ``GET /api/trading/mode`` over the control socket.

A real ``heliosd run`` process (its LIVE venue the simulator, in a third process) answers; this
process is the client, on one keep-alive HTTP/1.1 connection over the Unix socket, reading
and parsing every answer as heliosctl would. Each request reads the mode from the database
(the route's contract), so this is the operator's view of "what mode are we in" end to end.

Prints one JSON line: requests per second and per-request latency (median, p99) over
repeated runs. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median_of, summary
from _daemonproc import UnixHTTP, daemon_process, fail
from _simproc import SimProcess

from heliosd.testing import write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, repeats, warmup = args.requests, args.repeats, 300
    if args.quick:
        n, repeats, warmup = 50, 1, 10
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        config = write_config(Path(tmp), sim.handle)
        proc = daemon_process(config, Path(tmp) / "heliosd.log")
        proc.start()
        try:
            conn = UnixHTTP(proc.socket)
            for _ in range(warmup):
                conn.call("GET", "/api/trading/mode")
            samples: list[float] = []
            rates, medians, p99s = [], [], []
            clock = time.perf_counter_ns
            for _ in range(repeats):
                run = []
                start = clock()
                for _ in range(n):
                    t0 = clock()
                    status, body = conn.call("GET", "/api/trading/mode")
                    run.append((clock() - t0) / 1e6)
                    if status != 200 or body.get("mode") not in ("PAPER", "LIVE"):
                        fail(proc, f"GET /api/trading/mode answered {status} {body}")
                rates.append(n / ((clock() - start) / 1e9))
                s = summary(run)
                medians.append(s["median"])
                p99s.append(s["p99"])
                samples += run
            conn.close()
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.terminate()
    latency = summary(samples)
    emit(
        "control",
        {
            "route": "GET /api/trading/mode",
            "requests": n,
            "repeats": repeats,
            "requests_per_s": round(median_of(rates)),
            "latency_ms": latency,
            "run_medians_ms": medians,
            "run_p99s_ms": p99s,
            "connection": "one keep-alive HTTP/1.1 connection over the Unix socket",
        },
        {"median_under_1ms": latency["median"] < 1},
    )


if __name__ == "__main__":
    main()
