"""``heliosctl doctor`` / ``GET /api/doctor`` against real parts: a real ``heliosd run``
process with the simulator as its LIVE venue, ``heliosctl`` as a real subprocess, a real
notification receiver; and the runner's fail-closed rule on a real daemon's context."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from heliosd.control import schema as sc
from heliosd.core.config import EngineSettings
from heliosd.runtime.doctor import (
    CHECKS,
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    FAIL,
    OK,
    Check,
    DoctorContext,
    Finding,
    probe_dir,
    run_doctor,
)
from heliosd.testing import NotifyReceiver, RunningDaemon, SimHandle, start_daemon, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Every limit chosen, so `heliosd check-config` has nothing to warn about.
RISK = "max_position_pct = 20\nmax_leverage = 3\ndaily_loss_pct = 5\nmax_drawdown_pct = 15"
NAMES = [c.name for c in CHECKS]


async def heliosctl(socket: Path, *args: str) -> tuple[int, str, str]:
    """heliosctl as a real process (async: the simulator runs in this test's loop)."""
    script = Path(sys.executable).with_name("heliosctl")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "heliosd.control.ctl"]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--socket", str(socket), *args,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["checks"]}


async def streams_up(proc: Any) -> dict[str, Any]:
    """The doctor's answer once both streams are up (they connect after the start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        status, body = await proc.arequest("GET", "/api/doctor")
        assert status == 200, body
        checks = by_name(body)
        if all(checks[n]["status"] == OK for n in ("trade_stream", "account_stream")):
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.2)


def line_of(out: str, name: str) -> str:
    [line] = [ln for ln in out.splitlines() if ln.split()[1:2] == [name]]
    return line


@pytest.mark.timeout(240)
async def test_doctor_ok_then_each_venue_fault_fails_it(
    sim: SimHandle, short_dir: Path, heliosd_process: Any, notify_receiver: NotifyReceiver
) -> None:
    config = write_config(
        short_dir, sim, notify_url=notify_receiver.url("/doctor"), risk_extra=RISK
    )
    proc = heliosd_process(config)
    await proc.astart()
    body = await streams_up(proc)
    assert [c["name"] for c in body["checks"]] == NAMES
    assert set(body) >= {"ok", "checks"} and body["ok"] is True, body
    for check in body["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in ("ok", "warn"), check

    # All ok: exit 0, one line per check, the key's permissions shown, notify skipped.
    code, out, err = await heliosctl(proc.socket, "doctor")
    assert code == 0, (out, err)
    for name in NAMES:
        assert line_of(out, name).split()[0] in ("ok", "warn"), out
    for name in ("config", "venue_online", "valr_credentials", "clock_skew", "trade_stream",
                 "account_stream", "risk_config_complete", "plugins", "engine"):  # fmt: skip
        assert line_of(out, name).startswith("ok "), out
    assert "permissions: Trade, View access" in line_of(out, "valr_credentials")
    assert line_of(out, "notify").endswith("skipped (use --notify)")
    assert "ready: no check failed" in out
    assert notify_receiver.hits == 0  # nothing sent without --notify

    # --notify: one test message through the configured URL, really delivered.
    code, out, err = await heliosctl(proc.socket, "doctor", "--notify", "--json")
    assert code == 0, (out, err)
    notify = by_name(json.loads(out))["notify"]
    assert notify["status"] == OK and "delivered" in notify["detail"], notify
    [post] = await notify_receiver.wait_for(1)
    assert post.path == "/doctor" and "test notification" in post.json["title"]

    # A receiver that refuses: the notify check fails, and so does the command.
    notify_receiver.fail(1, status=500)
    code, out, err = await heliosctl(proc.socket, "doctor", "--notify")
    assert code == 1, (out, err)
    assert line_of(out, "notify").startswith("FAIL"), out
    assert "not delivered" in line_of(out, "notify") and "fix:" in line_of(out, "notify")

    # VALR in maintenance (read-only): the venue check fails, exit non-zero.
    sim.sim.set_read_only(True)
    try:
        code, out, err = await heliosctl(proc.socket, "doctor")
    finally:
        sim.sim.set_read_only(False)
    assert code == 1, (out, err)
    venue = line_of(out, "venue_online")
    assert venue.startswith("FAIL") and "VALR is read-only, not online" in venue, out
    assert "fix: wait until VALR is online again" in venue
    assert "NOT READY: 1 check(s) failed" in out, out

    # This machine's clock 10 minutes off VALR's (bound valr.max_clock_skew_s = 2 s).
    sim.sim.apply_faults({"clock_offset_ms": 600_000})
    try:
        code, out, err = await heliosctl(proc.socket, "doctor", "--json")
        assert code == 1, (out, err)
        clock = by_name(json.loads(out))["clock_skew"]
        assert clock["status"] == FAIL and clock["detail"].startswith("clock skew 600.0 s"), clock
        assert "NTP" in clock["fix"]
    finally:
        sim.sim.apply_faults({"clock_offset_ms": 0})
    code, out, err = await heliosctl(proc.socket, "doctor")
    assert code == 0, (out, err)  # healthy again: every check reads the venue afresh
    assert await proc.aterminate() == 0


@pytest.mark.timeout(180)
async def test_a_key_that_can_withdraw_fails_the_doctor(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    key, secret = sim.add_key("withdrawing", ("View access", "Trade", "Withdraw"))
    withdrawing = dataclasses.replace(sim, key=key, secret=secret)
    config = write_config(short_dir, withdrawing, risk_extra=RISK)  # no notify URL either
    proc = heliosd_process(config)
    await proc.astart()
    code, out, err = await heliosctl(proc.socket, "doctor")
    assert code == 1, (out, err)
    creds = line_of(out, "valr_credentials")
    assert creds.startswith("FAIL") and "API key has Withdraw permission" in creds, out
    assert "never Withdraw or Transfer" in creds
    # Without a URL: the notify check warns, the risk-config gate's check fails.
    assert line_of(out, "notify").startswith("warn"), out
    assert line_of(out, "risk_config_complete").startswith("FAIL"), out
    assert await proc.aterminate() == 0


DROPIN = """\
from heliosd import hookimpl


class Idle:
    name = "doctor_idle"

    def on_market(self, snapshot, ctx):
        return []


@hookimpl
def heliosd_register_strategies(register, config):
    register(Idle())
"""
ENGINE = '[engine]\nstrategy = "doctor_idle"\nautostart = true\ninterval_s = 60\n'


@pytest.mark.logs_exception("doctor check boom raised")
async def test_a_check_that_raises_or_hangs_fails(
    sim: SimHandle, short_dir: Path, plugin_dir: Path
) -> None:
    dropin = plugin_dir / "doctor_probe.py"
    dropin.write_text(DROPIN)
    dropin.chmod(0o644)
    config = write_config(short_dir, sim, risk_extra=RISK, extra=ENGINE,
                          daemon_extra=f'plugin_dirs = ["{plugin_dir}"]')  # fmt: skip
    running: RunningDaemon = await start_daemon(config)
    try:
        # Served: the answer is the document's Doctor; a bad notify value is refused.
        status, body = await running.request("GET", "/api/doctor")
        assert status == 200, body
        assert msgspec.convert(body, sc.Doctor).checks[0].name == "config"
        _, doc = await running.request("GET", "/api/openapi.json")
        assert doc["paths"]["/api/doctor"]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"] == {"$ref": "#/components/schemas/Doctor"}  # fmt: skip
        status, body = await running.request("GET", "/api/doctor?notify=yes")
        assert (status, body["details"]["field"]) == (400, "notify"), body

        # The drop-in's hash as loaded; an edit on disk since then is a warning.
        digest = hashlib.sha256(DROPIN.encode()).hexdigest()
        found = by_name(await run_doctor(running.service.backend.doctor_context()))
        plugins = found["plugins"]
        assert found["engine"]["status"] == OK, found["engine"]
        assert "autostart on, strategy 'doctor_idle' loaded" in found["engine"]["detail"]
        # The same check when the strategy is missing, or none is named: fail.
        ctx = running.service.backend.doctor_context()
        engine_only = [c for c in CHECKS if c.name == "engine"]
        gone = await run_doctor(dataclasses.replace(ctx, strategies=frozenset()), engine_only)
        assert gone["ok"] is False and "'doctor_idle' is not loaded" in gone["checks"][0]["detail"]
        unnamed = ctx.settings.replace(engine=EngineSettings(autostart=True))
        body = await run_doctor(dataclasses.replace(ctx, settings=unnamed), engine_only)
        assert body["checks"][0]["status"] == FAIL and "not set" in body["checks"][0]["detail"]
        assert plugins["status"] == OK and f"sha256 {digest[:12]}" in plugins["detail"], plugins
        assert "1 drop-in" in plugins["detail"]
        dropin.write_text(DROPIN + "# edited\n")
        plugins = by_name(await run_doctor(running.service.backend.doctor_context()))["plugins"]
        assert plugins["status"] == "warn" and "changed since it was loaded" in plugins["detail"]
        assert "SIGHUP" in plugins["fix"]

        ctx: DoctorContext = running.service.backend.doctor_context()

        async def raises(_: DoctorContext) -> Finding:
            raise RuntimeError("disk on fire")

        async def hangs(_: DoctorContext) -> Finding:
            await asyncio.sleep(60)
            return Finding(OK, "never")

        async def invents(_: DoctorContext) -> Finding:
            return Finding("fine", "a status the contract does not have")  # type: ignore[arg-type]

        class Quick(Check):
            def timeout_s(self, settings: Any) -> float:
                return 0.2

        checks = (*CHECKS, Check("boom", raises), Quick("stuck", hangs), Check("odd", invents))
        body = await run_doctor(ctx, checks)
        found = by_name(body)
        assert body["ok"] is False
        assert found["boom"]["status"] == FAIL
        assert found["boom"]["detail"] == "check failed: RuntimeError: disk on fire"
        assert found["boom"]["fix"]
        assert found["stuck"] == {"name": "stuck", "status": FAIL,
                                  "detail": "check timed out after 0.2 s",
                                  "fix": found["stuck"]["fix"]}  # fmt: skip
        assert found["odd"]["status"] == FAIL
        # The real checks still answered beside them.
        assert [c["name"] for c in body["checks"]][: len(NAMES)] == NAMES

        # Free space against the bounds, on this real filesystem (its free space moves a
        # little between the two readings: the bounds are far from it).
        state = running.service.settings.daemon.state_dir
        stats = os.statvfs(state)
        free = stats.f_bavail * stats.f_frsize
        assert probe_dir(state, warn_below=free // 2, fail_below=free // 4).status == OK
        low = probe_dir(state, warn_below=free * 2, fail_below=free // 4)
        assert low.status == "warn" and "under" in low.detail and low.fix, low
        none = probe_dir(state, warn_below=free * 4, fail_below=free * 2)
        assert none.status == FAIL and "writable" in none.detail, none
        assert (DISK_WARN_BYTES, DISK_FAIL_BYTES) == (1 << 30, 100 << 20)
        a_file = state / "heliosd.db"
        assert probe_dir(a_file).status == FAIL

        # A state directory that cannot be written to fails its check (not root: root writes).
        if os.geteuid() != 0:
            state.chmod(0o500)
            try:
                found = by_name(await run_doctor(running.service.backend.doctor_context()))
            finally:
                state.chmod(0o700)
            assert found["state_dir"]["status"] == FAIL
            assert "not writable" in found["state_dir"]["detail"]
    finally:
        await running.stop()
