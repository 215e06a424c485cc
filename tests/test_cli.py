"""``heliosd check-config`` and ``heliosd backup`` as an operator runs them, and the daemon's
signal handling (called directly, as uvicorn tests its handlers)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import Settings
from heliosd.runtime.cli import main
from heliosd.runtime.daemon import Daemon

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_check_config_accepts_the_shipped_demo_config() -> None:
    result = run_cli("check-config", str(ROOT / "etc" / "demo.toml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "risk rules" in result.stdout


def test_check_config_names_the_key_and_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[engine]\nstrategy = "no-such-strategy"\n')
    result = run_cli("check-config", str(bad))
    assert result.returncode == 78
    assert "engine.strategy" in result.stderr
    bad.write_text("[valr]\npairs = ['btczar']\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 78
    assert "valr.pairs[0]" in result.stderr


def test_backup_is_a_consistent_copy_while_another_connection_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = state / "heliosd.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE trading_mode_state(id INTEGER PRIMARY KEY, current_mode TEXT)")
    conn.execute("INSERT INTO trading_mode_state VALUES (1, 'LIVE')")
    conn.commit()
    conn.execute("BEGIN")
    conn.execute("UPDATE trading_mode_state SET current_mode = 'PAPER'")  # not committed
    config = tmp_path / "heliosd.toml"
    # The production shape: secrets from systemd credentials, which a shell does not have.
    config.write_text(
        f'[daemon]\nstate_dir = "{state}"\n[valr]\napi_key = {{ "$credential" = "k" }}\n'
        'api_secret = { "$credential" = "s" }\n'
    )
    dest = tmp_path / "backups" / "copy.db"
    assert main(["backup", str(dest), "--config", str(config)]) == 0
    conn.rollback()
    conn.close()
    copy = sqlite3.connect(dest)
    assert copy.execute("SELECT current_mode FROM trading_mode_state").fetchone() == ("LIVE",)
    copy.close()
    assert (dest.stat().st_mode & 0o777) == 0o600


def test_backup_without_a_database_fails_clearly(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "heliosd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "none"}"\n')
    assert main(["backup", str(tmp_path / "x.db"), "--config", str(config)]) == 1
    assert "no database" in capsys.readouterr().err


async def test_first_signal_stops_gracefully_second_forces_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    daemon = Daemon(Settings())
    daemon.handle_signal(signal.SIGTERM)
    assert daemon._stop.is_set()
    assert exits == []
    daemon.handle_signal(signal.SIGINT)
    assert exits == [1]
