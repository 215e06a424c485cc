"""GET /metrics through prometheus_client, and the shipped Alertmanager rules.

Real parts: a daemon in process on the simulator (real HTTP and WebSocket on loopback), its
real Unix socket, Prometheus' own ``promtool`` (Debian's ``prometheus`` package, installed by
.ci/run when missing) to lint the exposition and to check and unit-test
etc/heliosd-alerts.yml. Without promtool those tests skip, and the rules are still read as
YAML and every ``heliosd_*`` name in them checked against what a real daemon exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from heliosd.core.types import Side
from heliosd.sim.config import RouteDelay
from heliosd.testing import SimHandle, go_live, start_daemon, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "etc" / "heliosd-alerts.yml"
RULES_TEST = ROOT / "tests" / "data" / "heliosd-alerts.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
BUY = {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001", "reason": "t"}
PAPER = '[paper]\nstarting_balances = { ZAR = "100000" }\n'


async def scrape(socket: Path) -> str:
    connector = aiohttp.UnixConnector(path=str(socket))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get("http://heliosd/metrics") as resp,
    ):
        assert resp.status == 200
        return await resp.text()


def samples(text: str) -> list[Sample]:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def one(found: list[Sample], name: str, **labels: str) -> float:
    hits = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(hits) == 1, (name, labels, [s for s in found if s.name == name])
    return float(hits[0])


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


async def test_order_timings_are_a_histogram_and_a_summary_of_real_orders(
    sim: SimHandle, short_dir: Path
) -> None:
    # The LIVE gates want a notification target (nothing listens there).
    config = write_config(short_dir, sim, notify_url="json://127.0.0.1:9/unused")
    running = await start_daemon(config)
    try:
        await go_live(running.request)
        sim.sim.set_price("BTCZAR", Decimal(1200000))
        await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
        before = samples(await scrape(running.socket))
        assert one(before, "heliosd_risk_path_seconds_count") == 0
        assert not [s for s in before if s.name == "heliosd_order_round_trip_seconds_count"]

        # VALR holds the placement 0.3 s: the round trip is at least that, the risk path not.
        sim.sim.faults.route_delays = [RouteDelay("/v2/orders", 0.3, method="POST")]
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201, body
        outcome = body["order"]["state"]
        sim.sim.faults.route_delays = []
        status, body = await running.request("POST", "/api/orders", BUY)
        assert status == 201 and body["order"]["state"] == outcome, body

        after = samples(await scrape(running.socket))
        live = {"mode": "LIVE", "outcome": outcome}
        assert one(after, "heliosd_order_round_trip_seconds_count", **live) == 2
        total = one(after, "heliosd_order_round_trip_seconds_sum", **live)
        assert 0.3 <= total < 10, total
        # One answered within 0.25 s, the held one not; both within 2.5 s.
        bucket = "heliosd_order_round_trip_seconds_bucket"
        assert one(after, bucket, le="0.25", **live) == 1
        assert one(after, bucket, le="2.5", **live) == 2
        assert one(after, bucket, le="+Inf", **live) == 2
        assert one(after, "heliosd_risk_path_seconds_count") == 2
        risk = one(after, "heliosd_risk_path_seconds_sum")
        assert 0 < risk < 0.3, risk  # the venue's delay is not in the risk path

        # A refusal by the risk rules is timed on the risk path, never as a round trip.
        status, body = await running.request("POST", "/api/trading/halt", {"reason": "t"})
        assert status == 200, body
        status, body = await running.request("POST", "/api/orders", BUY)
        assert (status, body["error"]) == (422, "risk_rejected"), body
        refused = samples(await scrape(running.socket))
        assert one(refused, "heliosd_risk_path_seconds_count") == 3
        assert one(refused, "heliosd_order_round_trip_seconds_count", **live) == 2
    finally:
        await running.stop()


def test_label_values_the_format_escapes_read_back_whole() -> None:
    from prometheus_client.core import GaugeMetricFamily

    from heliosd.runtime.metrics import DaemonMetrics

    odd = 'read "only" \\ maybe\nsoon'
    fam = GaugeMetricFamily("heliosd_venue_status", 'a "help"\nline', labels=("status",))
    fam.add_metric([odd], 1)
    found = samples(DaemonMetrics().render([fam]).decode())
    assert one(found, "heliosd_venue_status", status=odd) == 1


async def test_a_real_scrape_reads_back_and_passes_promtool_check_metrics(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        await _paper_buy(running, sim)
        text = await scrape(running.socket)
    finally:
        await running.stop()
    found = samples(text)
    assert one(found, "heliosd_mode", mode="PAPER") == 1
    assert one(found, "heliosd_order_round_trip_seconds_count", mode="PAPER",
               outcome="filled") == 1  # fmt: skip
    if PROMTOOL is None:
        pytest.skip("promtool not installed: the exposition was read back, not linted")
    linted = promtool("check", "metrics", stdin=text)
    assert linted.returncode == 0, (linted.stdout, linted.stderr)


async def _paper_buy(running: Any, sim: SimHandle) -> None:
    sim.sim.set_price("BTCZAR", Decimal(1200000))
    await wait_for(lambda: running.service.market.price_for("BTCZAR", Side.BUY) is not None)
    status, body = await running.request("POST", "/api/orders", BUY)
    assert status == 201, body


def rule_names() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
    assert len(exprs) >= 7
    return {name for expr in exprs for name in re.findall(r"\bheliosd_[a-z_]+", expr)}


async def test_every_metric_the_shipped_rules_name_is_one_the_daemon_exports(
    sim: SimHandle, short_dir: Path
) -> None:
    doc = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    # The alerts the operator's guide promises.
    assert {"HeliosdStreamDown", "HeliosdPriceStale", "HeliosdHalted", "HeliosdDown",
            "HeliosdDrawdownNearStop", "HeliosdOutboxBacklog",
            "HeliosdClockSkew"} <= alerts  # fmt: skip
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    try:
        await _paper_buy(running, sim)
        families = list(text_string_to_metric_families(await scrape(running.socket)))
    finally:
        await running.stop()
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    missing = rule_names() - exported
    assert not missing, f"the rules name metrics the daemon does not export: {missing}"


@needs_promtool
def test_promtool_checks_the_shipped_rules_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    assert "SUCCESS" in checked.stdout, checked.stdout
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, (tested.stdout, tested.stderr)


def test_the_unit_tests_cover_every_shipped_alert() -> None:
    doc = yaml.safe_load(RULES_TEST.read_text())
    tested = {case["alertname"] for t in doc["tests"] for case in t["alert_rule_test"]
              if case.get("exp_alerts")}  # fmt: skip
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert tested == alerts, alerts ^ tested


@needs_promtool
def test_the_documented_scrape_config_for_several_instances_passes_promtool(
    tmp_path: Path,
) -> None:
    example = (ROOT / "etc" / "prometheus-heliosd.yml").read_text()
    # The operator's guide shows this very file.
    assert example in (ROOT / "docs" / "operations.md").read_text()
    # promtool opens the token and rule files the config names: give it them, here.
    (tmp_path / "heliosd").mkdir()
    for name in ("main", "hedge"):
        (tmp_path / "heliosd" / f"{name}.token").write_text("t0ken\n")
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "rules" / "heliosd-alerts.yml")
    config = tmp_path / "prometheus.yml"
    config.write_text(example.replace("/etc/prometheus/", f"{tmp_path}/"))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    jobs = [c["job_name"] for c in yaml.safe_load(example)["scrape_configs"]]
    assert len(jobs) == len(set(jobs)) == 2, jobs
    # Every job is one the shipped HeliosdDown alert watches.
    assert all(re.fullmatch("heliosd.*", job) for job in jobs), jobs


async def test_an_event_stream_reader_that_leaves_is_dropped_within_seconds(
    sim: SimHandle, short_dir: Path
) -> None:
    """A quiet stream (no events, the heartbeat 15 s away) notices its reader left: the
    subscriber, and heliosd_event_streams, go back to 0 without waiting for a write."""
    running = await start_daemon(write_config(short_dir, sim, extra=PAPER))
    notifications = running.service.notifications
    try:
        connector = aiohttp.UnixConnector(path=str(running.socket))
        async with aiohttp.ClientSession(connector=connector) as http:
            resp = await http.get("http://heliosd/api/events")
            assert resp.status == 200
            assert (await resp.content.readline()).startswith(b": connected")
            assert notifications.readers == 1
            assert one(samples(await scrape(running.socket)), "heliosd_event_streams") == 1
            resp.close()  # the reader leaves, saying nothing
        await wait_for(lambda: notifications.readers == 0, 5)
        assert one(samples(await scrape(running.socket)), "heliosd_event_streams") == 0
    finally:
        await running.stop()
