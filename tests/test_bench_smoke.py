"""Every benchmark runs end to end at a tiny size (``--quick``) and prints its one JSON line.

Not timing assertions: the figures of a 2-core CI box under load mean nothing at these sizes.
What is asserted is that each benchmark really did its work -- the checks it makes of the
system (fills stored and applied, orders cancelled at the simulator, READY received) passed,
and the line carries the machine it ran on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def run_bench(name: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), "--quick", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # one JSON line, nothing else on stdout
    result: dict[str, Any] = json.loads(lines[0])
    assert result["machine"]["cores"] >= 1
    assert set(result["targets"]) and result["all_targets_met"] == all(result["targets"].values())
    return result


def test_risk_path_evaluates_a_mixed_stream_and_submits() -> None:
    r = run_bench("risk_path.py", "--peer", "/nonexistent/python")
    assert r["rules"] == [
        "position_limit", "leverage_limit", "daily_loss_limit", "drawdown_limit", "fresh_prices"
    ]  # fmt: skip
    mix = r["evaluate"]["mix"]
    assert mix["accepted"] and mix["capped"] and mix["rejected"]  # the stream is realistic
    assert sum(mix.values()) == r["evaluate"]["orders"]
    assert r["evaluate"]["latency_us"]["median"] > 0
    assert [s["concurrency"] for s in r["submit"]] == [1, 64]
    assert r["store_commits"] > 0  # submit really stored the orders
    # A missing peer degrades with a message that says what to do, never a crash.
    assert "make bench-peers" in r["nautilus"]["error"]
    assert r["targets"]["ratio_at_most_1_5"] is False


def test_fills_are_counted_only_once_durable_and_applied() -> None:
    r = run_bench("fills.py")
    # 300 in the burst + 200 paced + 200 at the sweep's one rate, all in SQLite
    assert r["stored"] == r["applied"] == 700
    assert r["burst"][0]["fills"] == 300
    assert r["paced"]["fills"] == 200
    assert [(p["rate_per_s"], p["fills"]) for p in r["paced_sweep"]] == [(2000, 200)]
    assert r["group_commits"] < r["stored"]  # fills share commits


def test_emergency_stop_cancels_every_order_at_the_simulator() -> None:
    r = run_bench("emergency_stop.py")
    assert r["cancelled_orders"] == [20]
    assert r["latency_ms"]["median"] > 0


def test_control_answers_the_mode_on_a_keep_alive_connection() -> None:
    r = run_bench("control.py")
    assert r["route"] == "GET /api/trading/mode"
    assert r["requests_per_s"] > 0


def test_monitor_pass_values_every_asset_and_runs_the_monitors() -> None:
    r = run_bench("monitor_pass.py")
    assert r["assets"] == 50 and r["cross_rate_assets"] == 10
    assert r["dust_per_pass"] == 5  # the dust rule applied on every pass
    assert r["latency_us"]["median"] > 0


def test_startup_reaches_ready_through_sd_notify() -> None:
    r = run_bench("startup.py")
    assert 0 < r["sim"]["ready_s"]["median"] < 30
    assert r["sim"]["rss_mb"]["median"] > 10  # a real Python process, measured from /proc


def test_dashboard_loads_the_page_streams_events_and_scrapes_next_to_the_benchmarks() -> None:
    # Two daemons, four simulators, a browser and the bridge: more than the others' minute.
    r = run_bench("dashboard.py", timeout=180)
    http = r["http"]
    # Page + 2 assets + the page's 11 first API calls, all side by side (app.js)
    assert http["bridge"]["requests_per_load"] == http["socket"]["requests_per_load"] == 14
    assert http["bridge"]["first_load_ms"]["median"] > 0
    if CHROMIUM is not None:  # the page drew its data: the mode and the resting seed orders
        assert r["browser"]["first_load_ms"]["median"] > 0
        assert r["browser"]["open_orders_drawn"] == 3
    else:
        assert "Chromium" in r["browser"]["error"]
    assert r["metrics"]["bytes"] > 0 and r["metrics"]["latency_ms"]["median"] > 0
    sse = r["sse"]
    # The reader really received the stream, near the asked-for rate (a loaded box is slow to
    # send, never fast), and a window without a reader received nothing.
    assert all((w["events"] > 0) == w["reader"] for w in sse["windows"]), sse["windows"]
    assert 20 <= sse["delivered_events_per_s"] <= 150, sse
    # The page's refreshes ran (11 calls each), every call answered.
    page = sse["page_windows"][0]["page"]
    assert page["refreshes"] > 0 and page["requests"] >= 11 and page["failures"] == 0, page
    for part in ("risk_path", "fills"):
        load = r["interference"][part]["load"]
        assert load and load[0]["scrapes"] > 0 and load[0]["scrape_failures"] == 0, load
    fills = r["interference"]["fills"]
    assert fills["fills_per_s"]["quiet"][0] > 0
    # The control asked the daemon nothing (no stream, no scrape) and spun what the loaded
    # run's loader took of a core once ready.
    control = fills["control"]["load"][0]
    assert control["burn_wakes"] > 0 and "events" not in control and "scrapes" not in control
    assert 0 < fills["loader_cpu_share"][0] < 1, fills["loader_cpu_share"]
    assert fills["loaded_over_control"]["fills_per_s"]["loaded"] == fills["fills_per_s"]["loaded"]


def test_refresh_cost_asks_every_page_call_after_the_fills_are_stored() -> None:
    r = run_bench("refresh_cost.py")
    assert r["fills_stored"] == 500  # fills.run's burst and paced stream, both stored
    assert len(r["calls"]) == 11 and r["all_targets_met"], r["calls"]
    assert all(c["wall_ms"] > 0 for c in r["calls"].values()), r["calls"]
    assert r["refresh_daemon_cpu_ms"] > 0


@pytest.mark.parametrize(
    "name",
    [
        "risk_path.py",
        "fills.py",
        "emergency_stop.py",
        "control.py",
        "startup.py",
        "monitor_pass.py",
        "dashboard.py",
        "refresh_cost.py",
    ],
)
def test_every_benchmark_documents_itself(name: str) -> None:
    text = (BENCH / name).read_text()
    assert text.startswith('"""Benchmark') and "--quick" in text
