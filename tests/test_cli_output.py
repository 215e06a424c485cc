"""heliosctl and heliosd output as people and scripts meet it: real CLI processes against a
real daemon process (heliosd.testing.DaemonProcess) whose LIVE venue is the simulator.

Tables round amounts to the currency's decimals and never print an exponent while
``--json`` keeps the exact values; orders explain a fee taken in the base currency (NET);
``watch`` prints one line per event; a reader that goes away ends a command quietly;
``--version`` and ``/api/health`` say which heliosd this is; a LIVE switch on the simulator
says "simulator (not real money)" at the prompt and in the notification.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd import __version__
from heliosd.core.config import ValrSettings
from heliosd.core.venue import is_simulator
from heliosd.testing import DaemonProcess, NotifyReceiver, SimHandle, wait_for, write_config

CTL = [sys.executable, "-m", "heliosd.control.ctl"]
HELIOSD = [sys.executable, "-m", "heliosd.runtime.cli"]
WATCH_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  [a-z_]+ +\S.*$")


def places(value: Any, n: int) -> str:
    """What a person should read: ``value`` to ``n`` decimals, plain digits."""
    return format(Decimal(value).quantize(Decimal(1).scaleb(-n)), "f")


async def ctl(proc: DaemonProcess, *args: str) -> tuple[int, str, str]:
    """One heliosctl process, as typed in a shell (the simulator keeps running meanwhile)."""
    child = await asyncio.create_subprocess_exec(
        *CTL, "--socket", str(proc.socket), *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    return child.returncode or 0, out.decode(), err.decode()


async def ctl_json(proc: DaemonProcess, *args: str) -> Any:
    code, out, err = await ctl(proc, "--json", *args)
    assert code == 0, (args, out, err)
    return json.loads(out)


until = wait_for


@pytest.fixture
async def proc(
    sim: SimHandle, short_dir: Path, heliosd_process: Callable[[Path], DaemonProcess]
) -> DaemonProcess:
    config = write_config(short_dir, sim, notify_url="json://127.0.0.1:9/hook")
    running = heliosd_process(config)
    await running.astart()

    async def streams_up() -> bool:
        health = await ctl_json(running, "health")
        return bool(health["streams"]) and all(s["up"] for s in health["streams"].values())

    await until(streams_up, 20, "the simulator's streams")
    return running


async def paper_buy(proc: DaemonProcess, quantity: str = "0.0001") -> dict[str, Any]:
    code, out, err = await ctl(proc, "order", "BUY", "BTCZAR", quantity, "--reason", "t")
    assert code == 0, out + err

    async def filled() -> Any:
        orders = (await ctl_json(proc, "orders", "--limit", "1"))["orders"]
        return orders[0] if orders and orders[0]["state"] == "filled" else None

    order: dict[str, Any] = await until(filled, 20, "the paper fill")
    return order


# --------------------------------------------------------------------------- tables


async def test_orders_table_rounds_and_explains_a_base_fee(proc: DaemonProcess) -> None:
    order = await paper_buy(proc)
    # --json keeps the exact figures: the paper venue takes a BUY's fee in BTC, so the
    # order bought more than it asked to hold.
    exact_fee = Decimal(order["fees"]["BTC"])
    assert exact_fee > 0
    assert Decimal(order["filled_quantity"]) - exact_fee == Decimal(order["quantity"])

    code, out, err = await ctl(proc, "orders")
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:10] == ["ID", "CREATED_AT", "MODE", "PAIR", "SIDE", "TYPE", "QUANTITY",
                           "PRICE", "STATE", "FILLED"]  # fmt: skip
    assert {"NET", "AVG_PRICE", "FEE"} <= set(header)
    row = lines[1]
    assert "0.00010000" in row  # QUANTITY in BTC's 8 decimals
    assert places(order["filled_quantity"], 8) in row
    assert f"{places(exact_fee, 8)} BTC" in row  # the fee, with its currency, never 1.1E-7
    assert places(order["average_price"], 2) in row  # a ZAR price in cents
    assert "E-" not in out and "E+" not in out
    assert "NET is FILLED less a fee taken in the base currency" in out


async def test_positions_table_rounds_and_an_empty_mode_says_so(proc: DaemonProcess) -> None:
    await paper_buy(proc)
    code, out, _ = await ctl(proc, "positions")
    assert code == 0
    assert "live  -" not in out
    assert "live:\n(no positions)" in out
    paper = out.split("paper:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    cols = paper[0].split()
    row = dict(zip(cols, paper[1].split(), strict=True))
    assert re.fullmatch(r"\d+\.\d{8}", row["QUANTITY"])  # BTC
    assert re.fullmatch(r"-?\d+\.\d{2}", row["NOTIONAL"])  # ZAR
    assert re.fullmatch(r"-?\d+\.\d{2}", row["FEES"]) and row["CURRENCY"] == "ZAR"
    exact = (await ctl_json(proc, "positions"))["paper"][0]
    assert places(exact["quantity"], 8) == row["QUANTITY"]


# --------------------------------------------------------------------------- watch


async def test_watch_one_line_per_event_and_json_lines(proc: DaemonProcess) -> None:
    people = asyncio.create_task(ctl(proc, "watch", "--count", "3"))
    scripts = asyncio.create_task(ctl(proc, "--json", "watch", "--count", "3"))
    await asyncio.sleep(1.0)  # both subscribed
    await paper_buy(proc)
    code, out, err = await asyncio.wait_for(people, 30)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert WATCH_LINE.match(line), line
        assert "{" not in line  # no raw JSON for people
    fill = next(line for line in lines if "  fill " in line)
    assert re.search(r"BUY 0\.0001\d{4} BTCZAR @ \d+\.\d\d fee 0\.\d{8} BTC$", fill), fill
    code, out, _ = await asyncio.wait_for(scripts, 30)
    assert code == 0
    events = [json.loads(x) for x in out.splitlines()]
    assert {e["type"] for e in events} <= {"order", "fill"} and len(events) == 3


# --------------------------------------------------------------------------- pipes


def run_into_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` with stdout a pipe whose reader is already gone (``| head`` that ended)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60, check=False)  # fmt: skip
    finally:
        os.close(write_end)


def assert_quiet(done: subprocess.CompletedProcess[bytes]) -> None:
    assert done.returncode in (0, 141), (done.returncode, done.stderr)
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr
    assert b"Exception ignored" not in done.stderr


async def test_a_reader_that_goes_away_ends_quietly(proc: DaemonProcess) -> None:
    await paper_buy(proc)
    for argv in (
        [*CTL, "--socket", str(proc.socket), "orders"],
        [*CTL, "--socket", str(proc.socket), "--json", "orders"],
        [*CTL, "--version"],
        [*CTL, "--help"],
        [*HELIOSD, "--help"],
        [*HELIOSD, "--version"],
    ):
        assert_quiet(await asyncio.to_thread(run_into_closed_pipe, argv))

    # `heliosctl watch | head -1`: one line read, then the reader closes; the next event ends it.
    watch = subprocess.Popen([*CTL, "--socket", str(proc.socket), "watch"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        await asyncio.sleep(1.0)
        await paper_buy(proc)
        assert proc.proc is not None
        first = await asyncio.to_thread(watch.stdout.readline)  # type: ignore[union-attr]
        assert WATCH_LINE.match(first.decode().rstrip("\n"))
        watch.stdout.close()  # type: ignore[union-attr]
        await paper_buy(proc)  # more events: the next write meets the closed pipe
        code = await asyncio.to_thread(watch.wait, 30)
        err = watch.stderr.read()  # type: ignore[union-attr]
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
    assert code == 141, err
    assert b"Traceback" not in err and b"Exception ignored" not in err, err


# --------------------------------------------------------------------------- version


async def test_version_on_both_tools_and_in_health(proc: DaemonProcess) -> None:
    for argv, name in ((CTL, "heliosctl"), (HELIOSD, "heliosd")):
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=False)
        assert done.returncode == 0
        assert done.stdout.strip() == f"{name} {__version__}"
    assert (await ctl_json(proc, "health"))["version"] == __version__
    code, out, _ = await ctl(proc, "health")
    assert code == 0 and re.search(rf"^version +{re.escape(__version__)}$", out, re.M)


# --------------------------------------------------------------------------- LIVE honesty


def typed_at_a_terminal(argv: list[str], typed: str) -> tuple[int, str, str]:
    """Run ``argv`` with a terminal as stdin (a pty) and ``typed`` as what the person types."""
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)  # fmt: skip
        os.write(master, typed.encode())
        out, err = child.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    return child.returncode, out.decode(), err.decode()


async def test_live_on_the_simulator_says_not_real_money(
    sim: SimHandle, short_dir: Path, heliosd_process: Callable[[Path], DaemonProcess]
) -> None:
    async with NotifyReceiver() as receiver:
        proc = heliosd_process(write_config(short_dir, sim, notify_url=receiver.url()))
        await proc.astart()
        mode = await ctl_json(proc, "mode")
        assert mode["live_is_simulator"] is True  # plain http on loopback: the simulator
        code, out, err = await asyncio.to_thread(
            typed_at_a_terminal,
            [*CTL, "--socket", str(proc.socket), "mode", "live", "--reason", "honesty"],
            "LIVE\n",
        )
        assert code == 0, out + err
        assert "Switching LIVE to the simulator (not real money)" in out
        assert "real money. Type" not in out  # not the real-money prompt
        assert (await ctl_json(proc, "mode"))["mode"] == "LIVE"
        posts = await receiver.wait_for(
            lambda ps: any("LIVE" in str(p.json.get("title")) for p in ps), 20
        )
        title = next(str(p.json["title"]) for p in posts if "LIVE" in str(p.json.get("title")))
        assert title.endswith("PAPER -> LIVE: simulator (not real money)"), title
        assert "orders are real" not in title


def test_only_plain_loopback_urls_are_the_simulator() -> None:
    sim = ValrSettings(rest_url="http://127.0.0.1:8765", ws_url="ws://127.0.0.1:8765")
    assert is_simulator(sim)
    assert is_simulator(ValrSettings(rest_url="http://localhost:1", ws_url="ws://[::1]:1"))
    # The real VALR, and TLS on loopback (a proxy may forward it to VALR): real money.
    assert not is_simulator(ValrSettings())
    assert not is_simulator(ValrSettings(rest_url="https://127.0.0.1", ws_url="wss://127.0.0.1"))
    assert not is_simulator(ValrSettings(rest_url="http://127.0.0.1", ws_url="wss://api.valr.com"))
    assert not is_simulator(ValrSettings(rest_url="http://10.0.0.5:80", ws_url="ws://10.0.0.5"))


def test_watch_says_how_many_events_the_stream_left_out_and_where_they_are() -> None:
    from heliosd.control.display import event_line

    line = event_line("dropped", {"type": "dropped", "count": 47,
                                  "at": "2026-12-04T20:00:01.000000+00:00"})  # fmt: skip
    assert "dropped" in line and "47 events not shown" in line and "/api/fills" in line
