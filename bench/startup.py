"""Benchmark 5 (issue 8): time from exec to READY=1, and resident memory after start.

``python -m heliosd.runtime.cli run --config FILE`` is exec'd with ``NOTIFY_SOCKET`` naming a
datagram
socket this benchmark binds, as systemd does for ``Type=notify``; the clock runs from just
before the exec to the arrival of the datagram holding ``READY=1``. RSS is VmRSS from
``/proc/<pid>/status`` right after READY. Each run is stopped with SIGTERM.

Two venue situations, because startup must not wait on the network:

* ``sim``: the LIVE venue is the simulator (another process), answering at once. The first
  run creates the database (migrations); later runs restart on it.
* ``venue_hangs``: the venue's address accepts TCP connections and never answers (a
  listening loopback socket nobody accepts from), as a venue that is down can behave. If
  READY waits for it, this run shows it.

Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, rss_mb, summary
from _simproc import SimProcess

from heliosd.testing import config_text, write_config


def start_once(config: Path, work: Path, timeout: float = 60) -> dict[str, Any]:
    notify = work / "notify.sock"
    notify.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(timeout)
    log = (work / "heliosd.log").open("ab")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        while True:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                raise RuntimeError(f"no READY=1 within {timeout} s") from None
            if b"READY=1" in data.split(b"\n"):
                ready = time.perf_counter() - t0
                break
        rss = rss_mb(proc.pid)
    finally:
        sock.close()
        log.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    if code != 0:
        raise RuntimeError(f"heliosd exited {code}: {(work / 'heliosd.log').read_text()[-2000:]}")
    return {"ready_s": ready, "rss_mb": rss}


def series(config: Path, work: Path, runs: int) -> dict[str, Any]:
    results = [start_once(config, work) for _ in range(runs)]
    return {
        "runs": runs,
        "first_start_s": round(results[0]["ready_s"], 3),
        "ready_s": summary([r["ready_s"] for r in results]),
        "rss_mb": summary([r["rss_mb"] for r in results], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one run, no hanging-venue run (smoke test)"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    figures: dict[str, Any] = {}
    with SimProcess() as sim, tempfile.TemporaryDirectory(prefix="hd-", dir="/tmp") as tmp:
        work = Path(tmp) / "sim"
        figures["sim"] = series(write_config(work, sim.handle), work, runs)
        if not args.quick:
            figures["venue_hangs"] = hanging_venue(Path(tmp))
    ready = figures["sim"]["ready_s"]["median"]
    rss = figures["sim"]["rss_mb"]["median"]
    targets = {"ready_under_1s": ready < 1, "rss_under_80mb": rss < 80}
    if "venue_hangs" in figures:
        hung = figures["venue_hangs"]["ready_s"]["median"]
        targets["ready_under_1s_when_venue_hangs"] = hung < 1
    emit("startup", figures, targets)


def hanging_venue(tmp: Path) -> dict[str, Any]:
    """One start whose venue accepts TCP connections and never answers."""
    hang = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    port = hang.getsockname()[1]
    try:
        work = tmp / "hang"
        work.mkdir()
        config = work / "heliosd.toml"
        venue = f'[valr]\nrest_url = "http://127.0.0.1:{port}"\nws_url = "ws://127.0.0.1:{port}"\n'
        config.write_text(config_text(work / "state").replace("[valr]\n", venue))
        return series(config, work, 1)
    finally:
        hang.close()


if __name__ == "__main__":
    main()
