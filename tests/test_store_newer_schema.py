"""A database written by a newer release is refused, not run on (heliosd.store.migrations).

An older heliosd on a newer schema would read the mode row and the ledger with code not
written for them. Store.open refuses it before anything reads it, and ``heliosd run`` turns
that into one line and exit 78 (EX_CONFIG: systemd's RestartPreventExitStatus stops the
restart loop), through a real process. The file is left exactly as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from heliosd.core.errors import ConfigError
from heliosd.store import Store
from heliosd.store.migrations import MIGRATIONS
from heliosd.testing import SimHandle, write_config

EXIT_CONFIG = 78


async def newer(db: Path) -> str:
    """A current database, then stamped one schema version ahead; its digest."""
    store = await Store.open(db)
    await store.close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    return hashlib.sha256(db.read_bytes()).hexdigest()


async def test_store_open_refuses_a_newer_schema_and_leaves_the_file_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "heliosd.db"
    digest = await newer(db)
    with pytest.raises(ConfigError) as err:
        await Store.open(db)
    message = err.value.message
    assert f"schema version {len(MIGRATIONS) + 1}" in message
    assert f"newer than this release knows ({len(MIGRATIONS)})" in message
    assert str(db) in message and "heliosd restore" in message
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


async def test_heliosd_run_on_a_newer_schema_says_one_line_and_exits_78(
    sim: SimHandle, short_dir: Path
) -> None:
    config = write_config(short_dir, sim)
    db = config.parent / "state" / "heliosd.db"
    digest = await newer(db)
    result = subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # the one line, nothing else
    assert lines[0].startswith("heliosd: configuration error: ") and str(db) in lines[0]
    assert f"schema version {len(MIGRATIONS) + 1}, newer than this release knows" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sim.sim.orders_received(sim.account) == []
