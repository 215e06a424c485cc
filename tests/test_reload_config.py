"""SIGHUP re-reads the config file: a drop-in's edited section decides the next order.

Real ``heliosd run`` processes with the example rule ``plugins/max_open_orders.py`` in a
plugin directory and its ``[max_open_orders]`` section in the config file. The section is
edited, SIGHUP sent, and orders placed over the control socket are refused or accepted per
the NEW value; a broken file (bad TOML, a failing validation, an unknown key, a refused
drop-in, no file at all) changes nothing and the daemon keeps running; a changed core key
is reported as not applied (by name, never by value); every reload leaves an audit row
that GET /api/audit shows.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import Secret, Settings, load_settings
from heliosd.core.errors import ConfigError
from heliosd.plugins.manager import (
    core_changes,
    load_with_plugins,
    plugin_records,
    reload_config,
)
from heliosd.testing import SimHandle, eventually, write_config

EXAMPLES = Path(__file__).resolve().parent.parent / "plugins"
NOTIFY = "json://127.0.0.1:9/unused"  # the LIVE gates want one; never reached here
RULE = "max_open_orders"


@pytest.fixture
def plugin_dir(short_dir: Path) -> Path:
    """The rule installed in an operator-like plugin dir (heliosd.testing's, plus the file)."""
    path = short_dir / "plugins"
    path.mkdir()
    path.chmod(0o755)
    target = path / f"{RULE}.py"
    shutil.copyfile(EXAMPLES / f"{RULE}.py", target)
    target.chmod(0o644)  # install -m 0644
    return path


class ConfigFile:
    """The daemon's config file: the test config plus a [max_open_orders] section."""

    def __init__(self, short_dir: Path, sim: SimHandle, plugin_dir: Path) -> None:
        self.path = write_config(short_dir, sim, notify_url=NOTIFY)
        self.base = self.path.read_text().replace(
            "[daemon]\n", f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n', 1
        )

    def write(self, section: str, *, risk: str = "") -> None:
        text = self.base.replace("[risk]\n", f"[risk]\n{risk}\n", 1) if risk else self.base
        self.path.write_text(f"{text}\n[{RULE}]\n{section}\n")


def buy() -> dict[str, str]:
    """A limit BUY far below the market: it rests on the paper book and stays open."""
    return {"pair": "BTCZAR", "side": "BUY", "type": "LIMIT", "quantity": "0.001",
            "price": "900000", "reason": "reload test"}  # fmt: skip


async def wait_for_prices(proc: Any) -> None:
    """The built-in limits value an order at the market: wait until BTCZAR has a mark."""

    async def marked() -> bool:
        status, body = await proc.arequest("GET", "/api/risk")
        return status == 200 and (body["pairs"].get("BTCZAR") or {}).get("mark") is not None

    await eventually(marked)


async def accepted(proc: Any) -> None:
    status, body = await proc.arequest("POST", "/api/orders", buy())
    assert status == 201, body
    assert body["order"]["state"] == "placed", body


async def refused_at(proc: Any, limit: int, open_now: int) -> None:
    status, body = await proc.arequest("POST", "/api/orders", buy())
    assert status == 422, body
    assert body["message"] == (
        f"Order refused by risk rules: {RULE}: {open_now} orders already open in PAPER "
        f"(limit {limit}); cancel some or wait for fills"
    )


async def reload_rows(proc: Any) -> list[dict[str, Any]]:
    status, body = await proc.arequest("GET", "/api/audit?limit=100")
    assert status == 200, body
    return [row for row in body["audit"] if row["action"] == "reload"]


async def sighup(proc: Any) -> dict[str, Any]:
    """Send SIGHUP and return the audit row of that reload (GET /api/audit, newest first)."""
    before = len(await reload_rows(proc))
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGHUP)

    async def newer() -> dict[str, Any] | None:
        rows = await reload_rows(proc)
        return rows[0] if len(rows) > before else None

    row: dict[str, Any] = await eventually(newer)
    assert row["actor"] == "SIGHUP"
    assert proc.proc.poll() is None, proc.logs()  # still running, whatever the outcome
    return row


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
async def test_an_edited_section_decides_the_next_order_after_sighup(
    sim: SimHandle, short_dir: Path, plugin_dir: Path, heliosd_process: Any
) -> None:
    config = ConfigFile(short_dir, sim, plugin_dir)
    config.write("max_open = 4")
    proc = heliosd_process(config.path)
    await proc.astart()
    try:
        await wait_for_prices(proc)
        for _ in range(3):
            await accepted(proc)

        # Tightened in the file: the fourth order, within the old limit, is refused.
        config.write("max_open = 3")
        row = await sighup(proc)
        assert row["outcome"] == "ok", row
        assert row["details"]["file"] == str(config.path)
        assert row["details"]["not_applied"] == []
        [dropin] = row["details"]["dropins"]
        assert dropin["name"] == f"heliosd_dropin_{RULE}"
        assert dropin["path"] == str(plugin_dir / f"{RULE}.py")
        assert RULE in row["details"]["risk_rules"]
        await refused_at(proc, limit=3, open_now=3)

        # Loosened again: the same order now passes, up to the new limit.
        config.write("max_open = 5")
        assert (await sighup(proc))["outcome"] == "ok"
        await accepted(proc)
        await accepted(proc)
        await refused_at(proc, limit=5, open_now=5)

        # A core key changed in the file (here tighter, and a secret rotated) is not applied:
        # reported by name, never by value; the section edited with it still applies.
        key_file = config.path.parent / "valr_api_key"
        rotated = "rotated-key-value-never-logged"
        key_file.write_text(rotated)
        config.write("max_open = 6", risk="max_position_pct = 0.5")
        row = await sighup(proc)
        assert row["outcome"] == "ok", row
        assert row["details"]["not_applied"] == ["valr.api_key", "risk.max_position_pct"]
        assert row["reason"] == ("not applied until a restart: valr.api_key, risk.max_position_pct")
        status, risk = await proc.arequest("GET", "/api/risk")
        assert status == 200, risk
        assert risk["limits"]["max_position_pct"]["limit"] == "20"  # the running value
        await accepted(proc)  # 0.9% of equity: refused if max_position_pct = 0.5 applied
        await refused_at(proc, limit=6, open_now=6)
        logs = proc.logs()
        for key in ("valr.api_key", "risk.max_position_pct"):
            assert f"{key} changed in {config.path}; restart heliosd to apply" in logs
        assert rotated not in logs
        assert rotated not in str(await reload_rows(proc))
    finally:
        assert await proc.aterminate() == 0


@pytest.mark.slow
async def test_a_broken_file_on_sighup_changes_nothing_and_the_daemon_keeps_running(
    sim: SimHandle, short_dir: Path, plugin_dir: Path, heliosd_process: Any
) -> None:
    config = ConfigFile(short_dir, sim, plugin_dir)
    config.write("max_open = 2")
    proc = heliosd_process(config.path)
    await proc.astart()
    try:
        await wait_for_prices(proc)
        await accepted(proc)
        await accepted(proc)
        await refused_at(proc, limit=2, open_now=2)

        source = str(config.path)
        broken = [
            # (what the file holds, the key the error names, words of the error)
            ("max_open = 0", f"{RULE}.max_open", "must be at least 1"),
            ("max_open = ", "", "invalid TOML"),
            ("max_open = 9\nmax_opne = 9", f"{RULE}.max_opne", "unknown key"),
        ]
        for section, key, words in broken:
            config.write(section)
            row = await sighup(proc)
            assert row["outcome"] == "refused", row
            assert row["details"] == {"file": source, "key": key}
            assert words in row["reason"] and source in row["reason"]
            if key:
                assert f"[{key}]" in row["reason"]
            await refused_at(proc, limit=2, open_now=2)  # the old limit, not 9 or a default

        # A core key that fails validation refuses the whole reload too.
        config.write("max_open = 9", risk="max_leverage = 0")
        row = await sighup(proc)
        assert (row["outcome"], row["details"]["key"]) == ("refused", "risk.max_leverage")
        await refused_at(proc, limit=2, open_now=2)

        # A valid edit together with a drop-in that is refused: neither applies (all or nothing).
        config.write("max_open = 9")
        bad = plugin_dir / "zz_loose.py"
        bad.write_text("x = 1\n")
        bad.chmod(0o666)
        row = await sighup(proc)
        assert row["outcome"] == "refused" and "zz_loose.py" in row["reason"], row
        await refused_at(proc, limit=2, open_now=2)
        status, body = await proc.arequest("GET", "/api/plugins")
        assert status == 200, body
        assert [p["name"] for p in body["plugins"] if p["kind"] == "dropin"] == [
            f"heliosd_dropin_{RULE}"
        ]
        bad.unlink()

        # A drop-in that exits at import costs the reload, not the daemon.
        bad = plugin_dir / "zz_exit.py"
        bad.write_text("import sys\n\nsys.exit(3)\n")
        bad.chmod(0o644)
        row = await sighup(proc)
        assert row["outcome"] == "refused", row
        assert row["reason"] == f"{config.path}: reload failed: SystemExit: 3"
        await refused_at(proc, limit=2, open_now=2)
        bad.unlink()

        # No file at all.
        moved = config.path.with_suffix(".moved")
        config.path.rename(moved)
        row = await sighup(proc)
        assert row["outcome"] == "refused" and "file not found" in row["reason"], row
        await refused_at(proc, limit=2, open_now=2)
        moved.rename(config.path)

        assert proc.log_path is not None
        logs = proc.log_path.read_text()  # all of it: logs() is the tail, for failure messages
        assert f"reload refused, nothing changed, still running as before: {source}: " in logs
        assert f"[{RULE}.max_open] must be at least 1" in logs
        assert f"[{RULE}.max_opne] unknown key" in logs

        # Fixed: the file's value applies at last.
        config.write("max_open = 3")
        assert (await sighup(proc))["outcome"] == "ok"
        await accepted(proc)
        await refused_at(proc, limit=3, open_now=3)
    finally:
        assert await proc.aterminate() == 0


@pytest.mark.slow
async def test_systemd_sees_each_reload_begin_and_end(
    sim: SimHandle, short_dir: Path, plugin_dir: Path, heliosd_process: Any
) -> None:
    """RELOADING=1 then READY=1 on every SIGHUP, refused or not: `systemctl reload` returns
    once the reload is over, and the unit never stays in "reloading"."""
    config = ConfigFile(short_dir, sim, plugin_dir)
    config.write("max_open = 2")
    notify_path = short_dir / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(20)

    async def until(field: str) -> list[str]:
        seen: list[str] = []
        while not any(field in m.split("\n") for m in seen):
            seen.append((await asyncio.to_thread(receiver.recv, 4096)).decode())
        return seen

    try:
        proc = heliosd_process(config.path)
        await proc.astart(env={"NOTIFY_SOCKET": str(notify_path)})
        await until("READY=1")
        for section, outcome in (("max_open = 3", "ok"), ("max_open = 0", "refused")):
            config.write(section)
            assert (await sighup(proc))["outcome"] == outcome
            seen = await until("READY=1")
            [reloading] = [m for m in seen if "RELOADING=1" in m.split("\n")]
            assert "MONOTONIC_USEC=" in reloading
            assert seen.index(reloading) < len(seen) - 1  # READY=1 came after it
        assert await proc.aterminate() == 0
    finally:
        receiver.close()


# --------------------------------------------------------------------------- the loader itself


def _load(config: Path) -> tuple[Settings, Any]:
    return load_with_plugins(config, builtins=())


def _config(tmp_path: Path, plugin_dir: Path, body: str) -> Path:
    path = tmp_path / "heliosd.toml"
    path.write_text(f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n{body}')
    return path


def test_a_crashing_section_parser_is_a_refusal_naming_the_section(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    config = _config(tmp_path, plugin_dir, "")
    running, pm = _load(config)
    assert plugin_records(pm) == []

    # A new drop-in whose parser raises something other than a ConfigError.
    (plugin_dir / "crash.py").write_text(
        "from heliosd import hookimpl\n\n"
        "def parse(raw, source):\n    return raw['missing']\n\n"
        "@hookimpl\ndef heliosd_config_sections():\n    return {'crash': parse}\n"
    )
    (plugin_dir / "crash.py").chmod(0o644)
    config.write_text(config.read_text() + "\n[crash]\nx = 1\n")
    with pytest.raises(ConfigError) as caught:
        reload_config(pm, running)
    assert caught.value.key == "crash"
    assert caught.value.source == str(config)
    assert "the parser of [crash] failed: KeyError" in str(caught.value)
    assert plugin_records(pm) == []  # the new drop-in was taken out again
    assert "heliosd_dropin_crash" not in sys.modules


def test_core_changes_name_keys_not_values(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[valr]\napi_key = "old-key"\napi_secret = "s"\n[risk]\nmax_leverage = 3\n')
    running = load_settings(path)
    path.write_text('[valr]\napi_key = "new-key"\napi_secret = "s"\n[risk]\nmax_leverage = 3.0\n')
    fresh = load_settings(path)
    # 3 and 3.0 are the same limit; the key's value changed and is not shown.
    assert core_changes(running, fresh) == ("valr.api_key",)
    assert isinstance(fresh.valr.api_key, Secret)
    assert core_changes(running, running) == ()
