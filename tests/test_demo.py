"""``heliosd demo`` as an operator meets it: a real process driven by the real heliosctl.

What ``make run`` starts, minus the terminal: the embedded simulator, the local notification
receiver and the daemon in PAPER with the demo strategy. heliosctl (a separate process each
time, as typed in a shell) checks the engine runs, switches to LIVE on the simulator's
account with the typed-out confirmation, pulls the emergency stop, and SIGINT ends the demo
with exit code 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_cli_output import HELIOSD, run_into_closed_pipe, typed_at_a_terminal

from heliosd.runtime.demo import DEMO_LABEL


class Demo:
    def __init__(self, state_dir: Path, log_path: Path) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "heliosd.sock"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "heliosd.runtime.cli",
                    "demo",
                    "--state-dir",
                    str(self.state_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"demo exited early: {self.logs()}"
            if self.socket.exists() and self.ctl("health")[0] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"demo not healthy after {timeout} s: {self.logs()}")

    def ctl(self, *args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "heliosd.control.ctl", "--socket", str(self.socket), *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def ctl_json(self, *args: str) -> Any:
        code, out, err = self.ctl(*args, "--json")
        assert code == 0, (args, out, err, self.logs())
        return json.loads(out)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def demo(short_dir: Path) -> Iterator[Demo]:
    running = Demo(short_dir / "var", short_dir / "demo.log")
    try:
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_demo_tour_paper_live_stop_and_sigint(demo: Demo) -> None:
    demo.start()

    mode = demo.ctl_json("mode")
    assert mode["mode"] == "PAPER"
    assert mode["live_venue"] == DEMO_LABEL  # LIVE here is the simulator, and says so
    code, out, _ = demo.ctl("mode")
    assert code == 0 and "PAPER" in out

    wait_until(lambda: demo.ctl_json("engine", "status")["running"], 10, "the engine")
    engine = demo.ctl_json("engine", "status")
    assert engine["strategy"] == "demo"
    assert engine["strategies"]["demo"]["running"] is True
    assert set(engine["pairs"]) == {"BTCZAR", "ETHZAR"}

    # The gates refuse LIVE while the engine runs: the operator stops it first.
    code, _, err = demo.ctl("mode", "live", "--confirm", "LIVE")
    assert code == 1
    assert "engine is running" in err
    assert demo.ctl_json("engine", "stop")["running"] is False
    # The strategy may already have bought in PAPER: flatten, as the gates demand.
    for row in demo.ctl_json("positions")["paper"]:
        if Decimal(row["quantity"]) > 0:
            code, out, err = demo.ctl("order", "SELL", row["pair"], row["quantity"])
            assert code == 0, out + err
    wait_until(
        lambda: all(Decimal(r["quantity"]) == 0 for r in demo.ctl_json("positions")["paper"]),
        10,
        "flat paper positions",
    )

    # Typed at a terminal, as a person would: the prompt says what LIVE is here.
    code, out, err = typed_at_a_terminal(
        [sys.executable, "-m", "heliosd.control.ctl", "--socket", str(demo.socket),
         "mode", "live", "--reason", "demo tour"],
        "LIVE\n",
    )  # fmt: skip
    assert code == 0, out + err
    assert "All gates passed." in out
    assert f"Switching LIVE to the simulator (not real money) ({DEMO_LABEL})" in out
    assert "with real money" not in out
    mode = demo.ctl_json("mode")
    assert mode["mode"] == "LIVE"
    assert mode["verified"] is True
    assert mode["live_venue"] == DEMO_LABEL
    history = demo.ctl_json("history")["history"]
    assert history[0]["new_mode"] == "LIVE" and history[0]["reason"] == "demo tour"

    # The README's first live trade: a buy on the LIVE account (the simulator) to flatten.
    code, out, err = demo.ctl("order", "BUY", "BTCZAR", "0.001", "--reason", "tour buy")
    assert code == 0, out + err
    wait_until(
        lambda: any(Decimal(r["quantity"]) > 0 for r in demo.ctl_json("positions")["live"]),
        10,
        "a LIVE holding",
    )

    stop = demo.ctl_json("stop", "--reason", "demo tour over")
    assert stop["halted"] is True
    assert stop["mode"] == "PAPER"
    assert stop["remaining_open_orders"] == 0
    assert "heliosctl close --all --live" in stop["next_step"]  # the README's next step
    mode = demo.ctl_json("mode")
    assert mode["mode"] == "PAPER" and mode["halted"] is True

    # Flatten the LIVE account after the stop, as the README does: the close is typed at a
    # terminal (the account's name), reaches the simulator, and leaves LIVE flat.
    code, out, err = typed_at_a_terminal(
        [sys.executable, "-m", "heliosd.control.ctl", "--socket", str(demo.socket),
         "close", "--all", "--live", "--reason", "tour flatten"],
        "LIVE\n",
    )  # fmt: skip
    assert code == 0, out + err
    assert "BTCZAR" in out and "SELL" in out
    wait_until(
        lambda: all(Decimal(r["quantity"]) == 0 for r in demo.ctl_json("positions")["live"]
                    if r["pair"] == "BTCZAR"),
        10,
        "a flat LIVE BTCZAR",
    )  # fmt: skip

    # The stop reached the demo's notification receiver (real Apprise delivery).
    received = demo.state_dir / "notifications.log"
    wait_until(
        lambda: received.exists() and "EMERGENCY STOP" in received.read_text(),
        10,
        "the emergency-stop notification",
    )
    # The switch's notification says the simulator, not real money; no order reason
    # leaks an internal plan name.
    notices = received.read_text()
    assert "PAPER -> LIVE: simulator (not real money)" in notices
    assert "orders are real" not in notices
    assert "Phase 5" not in json.dumps(demo.ctl_json("orders"))

    assert demo.proc is not None
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(30) == 0, demo.logs()
    assert not demo.socket.exists()
    logs = demo.logs()
    assert "heliosd stopped" in logs
    # Nothing went wrong on the way, quietly or loudly. The journal's stop and state lines
    # are WARNINGs by design (an emergency stop is one): what the tour did, not a fault.
    assert not [
        line for line in logs.splitlines()
        if (" ERROR " in line or " WARNING " in line) and " heliosd.journal event=" not in line
    ]  # fmt: skip
    assert "Traceback" not in logs


def test_demo_whose_reader_went_away_stops_quietly(short_dir: Path) -> None:
    """`heliosd demo | head -1` once head has its line: the next status write stops the
    demo as Ctrl-C would, exit 0, no traceback."""
    done = run_into_closed_pipe(
        [*HELIOSD, "demo", "--state-dir", str(short_dir / "var"), "--no-engine"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logs = done.stderr.decode(errors="replace")
    assert "stdout closed: stopping the demo" in logs
    assert "heliosd stopped" in logs
    assert "Traceback" not in logs and "Exception ignored" not in logs


def test_demo_status_is_the_terminal_title_and_a_line_of_its_own(short_dir: Path) -> None:
    """On a terminal the status goes to the window title every second and prints as a
    whole line of its own (never redrawn in place, where log lines would run into it)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*HELIOSD, "demo", "--state-dir", str(short_dir / "var"), "--no-engine"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(b"\x1b]0;heliosd demo: ") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        with contextlib.suppress(OSError):
            while select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = seen.decode(errors="replace")
    assert "\x1b]0;heliosd demo: PAPER | equity 100,000.00 ZAR" in text
    lines = text.replace("\r\n", "\n").split("\n")
    status = [line for line in lines if "status: PAPER | equity" in line]
    assert status, text[-2000:]
    # The line is whole: nothing of a log record before it on the same line.
    assert all(line.split("\x07")[-1].startswith("status: ") for line in status)
    assert "\r\x1b[2K" not in text  # no redraw in place
    assert "\x1b]0;\x07" in text  # the title given back on the way out
