"""``heliosd backup``, ``heliosd backup --prune N`` and ``heliosd restore`` as an operator
runs them: real CLI subprocesses on a real SQLite store, and a real daemon process holding
the state directory's lock (restore refused), switching to LIVE (its pre-LIVE backup pruned
to ``[daemon] keep_backups``), then stopped and restored to the PAPER it had before.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from heliosd.runtime.backup import BACKUP_NAME, list_backups
from heliosd.runtime.runlock import EXIT_LOCKED
from heliosd.store import Store
from heliosd.testing import SimHandle, go_live, write_config

NOTIFY = "json://127.0.0.1:9/unused"  # the risk-config gate wants a target; never reached


def heliosd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def one(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def make_store(state: Path) -> Path:
    """A real heliosd database (all migrations), closed: as a stopped daemon leaves it."""
    store = await Store.open(state / "heliosd.db")
    await store.close()
    return state / "heliosd.db"


# --------------------------------------------------------------------------- backup, prune


async def test_backup_prints_its_path_and_prune_keeps_the_newest_n(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = await make_store(state)
    made = []
    for _ in range(4):
        result = heliosd("backup", "--state-dir", str(state))
        assert result.returncode == 0, result.stderr
        path = Path(result.stdout.strip())
        assert path.parent == state / "backups" and BACKUP_NAME.match(path.name), path
        assert (path.stat().st_mode & 0o777) == 0o600
        assert one(path, "SELECT current_mode FROM trading_mode_state") == ("PAPER",)
        made.append(path)
    # Older pre-LIVE and API backups count too; an operator's own file is never touched.
    old_pre_live = state / "backups" / "pre-live-20200101T000000000000Z.db"
    old_api = state / "backups" / "heliosd-20200102T000000000000Z.db"
    mine = state / "backups" / "before-upgrade.db"
    for p in (old_pre_live, old_api, mine):
        p.write_bytes(db.read_bytes())

    result = heliosd("backup", "--prune", "2", "--state-dir", str(state))

    assert result.returncode == 0, result.stderr
    removed = [Path(line.removeprefix("removed ")) for line in result.stdout.splitlines()
               if line.startswith("removed ")]  # fmt: skip
    assert sorted(removed) == sorted([old_pre_live, old_api, made[0], made[1]]), result.stdout
    assert "4 removed, 2 kept" in result.stdout
    assert list_backups(state / "backups") == [made[3], made[2]]
    assert mine.exists()
    assert all(not p.exists() for p in removed)
    # Nothing more to prune: nothing removed, nothing else touched.
    again = heliosd("backup", "--prune", "2", "--state-dir", str(state))
    assert again.returncode == 0 and "0 removed, 2 kept" in again.stdout, again.stdout


def test_prune_refuses_zero_and_backup_without_a_database_fails(tmp_path: Path) -> None:
    zero = heliosd("backup", "--prune", "0", "--state-dir", str(tmp_path))
    assert zero.returncode == 2 and "at least 1" in zero.stderr, zero.stderr
    missing = heliosd("backup", "--state-dir", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert f"no database at {tmp_path / 'none' / 'heliosd.db'}" in missing.stderr


def test_keep_backups_is_validated(tmp_path: Path) -> None:
    config = tmp_path / "heliosd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\nkeep_backups = -1\n')
    result = heliosd("check-config", str(config))
    assert result.returncode == 78
    assert "daemon.keep_backups" in result.stderr and "-1" in result.stderr


# --------------------------------------------------------------------------- restore refusals


async def test_restore_refuses_missing_foreign_corrupt_and_newer_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = await make_store(state)
    good = Path(heliosd("backup", "--state-dir", str(state)).stdout.strip())
    before = digest(db)

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things(id INTEGER PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 3")  # claims heliosd's version, has none of its tables
    conn.commit()
    conn.close()
    unversioned = tmp_path / "unversioned.db"
    sqlite3.connect(unversioned).execute("CREATE TABLE x(a)").connection.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    corrupt = tmp_path / "corrupt.db"
    data = bytearray(good.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for n in range(1, len(data) // page):  # every b-tree page after the first: garbage
        data[n * page : n * page + 64] = os.urandom(64)
    corrupt.write_bytes(bytes(data))

    typo = heliosd("restore", str(good), "--state-dir", str(tmp_path / "stat"))
    assert typo.returncode == 1 and "no state directory at" in typo.stderr, typo.stderr
    assert not (tmp_path / "stat").exists()  # never created

    cases = {
        tmp_path / "absent.db": f"no such file: {tmp_path / 'absent.db'}",
        text: "is not an SQLite database",
        foreign: "is not a heliosd database of schema version 3: missing",
        unversioned: "is not a heliosd database (schema version 0)",
        newer: "schema version 99, newer than this heliosd knows",
        corrupt: "corrupt",
    }
    for path, message in cases.items():
        result = heliosd("restore", str(path), "--state-dir", str(state))
        assert result.returncode == 1, (path, result.stdout, result.stderr)
        assert message in result.stderr, (path, result.stderr)
        assert "Traceback" not in result.stderr
        assert digest(db) == before, path  # nothing was replaced
        leftovers = [p.name for p in state.iterdir()
                     if p.name.startswith((".restore-", "heliosd-replaced-"))]  # fmt: skip
        assert leftovers == [], (path, leftovers)


WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")  # the commit stays in the -wal only
conn.execute("UPDATE trading_mode_state SET updated_by = 'before the crash' WHERE id = 1")
os._exit(0)  # like kill -9: no close, no checkpoint
"""


async def test_restore_after_a_crash_keeps_the_replaced_wal_and_leaves_none(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    db = await make_store(state)
    good = Path(heliosd("backup", "--state-dir", str(state)).stdout.strip())
    subprocess.run([sys.executable, "-c", WRITER, str(db)], check=True, timeout=30)
    wal = Path(f"{db}-wal")
    assert wal.exists() and wal.stat().st_size > 0  # a committed write only in the WAL

    result = heliosd("restore", str(good), "--state-dir", str(state))

    assert result.returncode == 0, result.stderr
    replaced = next(state.glob("heliosd-replaced-*.db"))
    # The crashed database's last commit is kept (folded into the kept file) ...
    assert one(replaced, "SELECT updated_by FROM trading_mode_state") == ("before the crash",)
    # ... and none of its WAL is beside the restored file, which is the backup's state.
    assert not wal.exists() and not Path(f"{db}-shm").exists()
    assert one(db, "SELECT updated_by FROM trading_mode_state") == ("heliosd (initial)",)


# --------------------------------------------------------------------------- the daemon


@pytest.mark.slow
async def test_a_live_switch_prunes_restore_waits_for_the_daemon_and_brings_back_paper(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY, daemon_extra="keep_backups = 2")
    state = config.parent / "state"
    db = state / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    assert proc.proc is not None
    # Two manual backups beside the running daemon (a read-only connection: no lock needed).
    manual = []
    for _ in range(2):
        result = heliosd("backup", "--config", str(config))
        assert result.returncode == 0, result.stderr
        manual.append(Path(result.stdout.strip()))

    switched = await go_live(proc.arequest)

    pre_live = Path(switched["backup"])
    assert pre_live.name.startswith("pre-live-") and pre_live.exists()
    # keep_backups = 2: the pre-LIVE backup and the newest manual one are left.
    assert list_backups(state / "backups") == [pre_live, manual[1]]
    assert one(pre_live, "SELECT current_mode FROM trading_mode_state") == ("PAPER",)

    # While the daemon holds the state directory, restore refuses and touches nothing.
    before = digest(db)
    refused = heliosd("restore", str(pre_live), "--config", str(config))
    assert refused.returncode == EXIT_LOCKED, refused.stderr
    assert f"pid {proc.proc.pid}" in refused.stderr and "stop it first" in refused.stderr
    assert "nothing was restored" in refused.stderr
    assert digest(db) == before
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert status == 200 and body["mode"] == "LIVE", body
    live_epoch = body["epoch"]

    assert await proc.aterminate() == 0
    restored = heliosd("restore", str(pre_live), "--config", str(config))

    assert restored.returncode == 0, restored.stderr
    out = restored.stdout
    replaced = Path(re.search(r"replaced database kept as (\S+)", out).group(1))  # type: ignore[union-attr]
    assert replaced.parent == state and replaced.name.startswith("heliosd-replaced-")
    assert one(replaced, "SELECT current_mode FROM trading_mode_state") == ("LIVE",)
    assert "mode: PAPER" in out and "trading state: ACTIVE" in out, out
    expected_epoch = one(pre_live, "SELECT epoch FROM trading_mode_state")[0]
    assert expected_epoch < live_epoch
    assert f"epoch: {expected_epoch}" in out and "stops and breakers: none active" in out, out
    assert "1 more switch(es) to LIVE" in out, out  # the replaced one had gone LIVE since
    assert not Path(f"{db}-wal").exists()  # no stale WAL beside the restored file
    assert (db.stat().st_mode & 0o777) == 0o600
    assert one(db, "SELECT action, outcome FROM audit ORDER BY id DESC LIMIT 1") == (
        "restore", "restored")  # fmt: skip

    await proc.astart()
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert status == 200 and body["mode"] == "PAPER", body
    assert body["trading_state"] == "ACTIVE", body
    status, body = await proc.arequest("GET", "/api/trading/mode/history")
    assert status == 200 and body["history"] == [], body  # the LIVE switch is not in it
    assert await proc.aterminate() == 0


@pytest.mark.slow
async def test_a_restored_live_backup_starts_on_paper_and_says_so(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    """A backup taken while LIVE (sealed, the daemon stopped cleanly) is restored as PAPER:
    a restore is a recovery, and what VALR holds since the backup is unknown to the file,
    so LIVE is reached again only through the gates. Before, the next start traded LIVE."""
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    assert await proc.aterminate() == 0
    taken = heliosd("backup", str(short_dir / "live.db"), "--config", str(config))
    assert taken.returncode == 0, taken.stderr
    backup = Path(taken.stdout.strip())
    assert one(backup, "SELECT current_mode FROM trading_mode_state") == ("LIVE",)
    (epoch,) = one(backup, "SELECT epoch FROM trading_mode_state")
    (history,) = one(backup, "SELECT COUNT(*) FROM trading_mode_history")

    restored = heliosd("restore", str(backup), "--config", str(config))

    assert restored.returncode == 0, restored.stderr
    out = restored.stdout
    assert "mode: PAPER (the backup was LIVE: set to PAPER;" in out, out
    assert f"epoch: {epoch + 1}" in out, out
    assert one(db, "SELECT current_mode, epoch FROM trading_mode_state") == ("PAPER", epoch + 1)
    last = one(db, "SELECT old_mode, new_mode, reason, seal FROM trading_mode_history"
                   " ORDER BY id DESC LIMIT 1")  # fmt: skip
    assert last[:2] == ("LIVE", "PAPER") and "restored database starts on PAPER" in last[2]
    assert last[3] is None
    # One row more, the restore's own: the out-of-band trigger found it and wrote none.
    assert one(db, "SELECT COUNT(*) FROM trading_mode_history") == (history + 1,)
    (details,) = one(db, "SELECT details FROM audit WHERE action = 'restore'")
    assert '"was_live": true' in details

    await proc.astart()
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert status == 200 and body["mode"] == "PAPER" and body["trading_state"] == "ACTIVE", body
    status, body = await proc.arequest("POST", "/api/trading/mode", {"mode": "LIVE"})
    assert status == 409 and body["error"] == "confirmation_required", body  # the gates again
    assert await proc.aterminate() == 0
