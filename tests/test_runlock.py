"""One daemon per state directory (heliosd.runtime.runlock), through real processes.

A second ``heliosd run`` (or ``heliosd demo``) on a locked state directory exits 73 after
exactly one line naming the holder's pid: no traceback, nothing written to the first
daemon's store, no engine started, nothing sent to the venue. A seeded race of many
processes for one lock looks for two holders at once.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from heliosd.runtime.runlock import EXIT_LOCKED, LOCK_NAME, RunLock, StateDirLocked
from heliosd.testing import SimHandle, config_text, write_config

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("HELIOSD_LOCK_SEED", "1207"))


def heliosd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_lock_is_exclusive_names_its_holder_and_is_released(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path / "state"), RunLock(tmp_path / "state")
    first.acquire()
    first.acquire()  # idempotent for its holder
    assert (tmp_path / "state" / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(StateDirLocked) as err:
        second.acquire()
    assert err.value.pid == os.getpid()
    assert f"pid {os.getpid()}" in err.value.message
    assert not second.held
    first.release()
    second.acquire()  # released means free
    assert second.held
    second.release()


RACER = textwrap.dedent(
    """
    import os, random, sys, time
    from heliosd.runtime.runlock import RunLock, StateDirLocked
    state, seed, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    won = 0
    for _ in range(rounds):
        time.sleep(rng.uniform(0, 0.004))
        lock = RunLock(state)
        try:
            lock.acquire()
        except StateDirLocked:
            continue
        # Two holders at once would both get here: the second's O_EXCL create fails.
        fd = os.open(os.path.join(state, "holder"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        time.sleep(rng.uniform(0, 0.003))
        os.close(fd)
        os.unlink(os.path.join(state, "holder"))
        lock.release()
        won += 1
    print(won)
    """
)


def test_a_seeded_race_of_processes_never_finds_two_holders(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    state = tmp_path / "state"
    state.mkdir()
    seeds = [str(rng.randrange(10**9)) for _ in range(6)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(state), seed, "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    ]
    results = [p.communicate(timeout=60) for p in racers]
    for p, (_, err) in zip(racers, results, strict=True):
        assert p.returncode == 0, f"seed {SEED}: a racer failed (two holders?): {err}"
    wins = [int(out) for out, _ in results]
    assert sum(wins) > 0, f"seed {SEED}: nobody ever held the lock"
    assert not (state / "holder").exists()


async def test_a_second_daemon_exits_73_naming_the_first_and_touches_nothing(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim)
    first = heliosd_process(config)
    await first.astart()
    assert first.proc is not None
    state = config.parent / "state"
    db = state / "heliosd.db"
    # The second daemon would start the demo strategy at once and has its own socket: if
    # it got past the lock it would leave a trace in the store and at the venue.
    other = short_dir / "second.toml"
    other.write_text(
        config_text(
            state, sim=sim, daemon_extra=f'control_socket = "{short_dir / "2.sock"}"'
        ).replace(f'control_socket = "{state / "heliosd.sock"}"\n', "")
        + '\n[engine]\nstrategy = "demo"\nautostart = true\ninterval_s = 1\n'
    )
    before = rows(db, "SELECT key, value FROM daemon_state ORDER BY key")
    audit_before = rows(db, "SELECT COUNT(*) FROM audit")

    result = heliosd("run", "--config", str(other))

    assert result.returncode == EXIT_LOCKED, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"pid {first.proc.pid}" in lines[0] and str(state) in lines[0], lines
    assert "Traceback" not in result.stderr + result.stdout
    assert not (short_dir / "2.sock").exists()
    # The first daemon's store: no marker, engine row, audit row or order of the second's.
    assert rows(db, "SELECT key, value FROM daemon_state ORDER BY key") == before
    assert rows(db, "SELECT COUNT(*) FROM audit") == audit_before
    assert rows(db, "SELECT COUNT(*) FROM orders") == [(0,)]
    assert sim.sim.orders_received(sim.account) == []
    status, body = await first.arequest("GET", "/api/autonomous-engine/status")
    assert status == 200 and body["running"] is False, body
    assert (state / LOCK_NAME).read_text() == f"{first.proc.pid}\n"

    # Offline reads do not fight the daemon: a backup works beside it.
    backup = heliosd("backup", str(short_dir / "copy.db"), "--config", str(config))
    assert backup.returncode == 0, backup.stderr
    assert await first.aterminate() == 0
    # Once the first is gone the directory is free again.
    second = heliosd_process(config)
    await second.astart()
    assert await second.aterminate() == 0


def test_a_second_demo_exits_73_before_starting_anything(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "var")
    lock.acquire()
    try:
        result = heliosd("demo", "--state-dir", str(tmp_path / "var"), "--no-status")
    finally:
        lock.release()
    assert result.returncode == EXIT_LOCKED, result.stderr
    assert result.stderr.splitlines() == [
        f"heliosd: another heliosd (pid {os.getpid()}) is running on {tmp_path / 'var'} (it"
        f" holds {tmp_path / 'var' / LOCK_NAME}); not starting"
    ]
    assert not (tmp_path / "var" / "heliosd.db").exists()
    assert not (tmp_path / "var" / "notifications.log").exists()
