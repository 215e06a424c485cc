"""``heliosd restore``: putting a backup in place of the database.

**Restore** writes the store, so it takes the state directory's run lock
(:mod:`heliosd.runtime.runlock`) for its whole duration: it refuses while a daemon runs, and
no daemon can start half way through. It copies the file into the state directory, checks the
copy (``PRAGMA integrity_check``; a heliosd schema version this release knows; every table
and column that version has; the mode row), and only then swaps it in with one
``rename(2)``: at every instant ``heliosd.db`` is either the complete old database or the
complete new one. A copy whose mode is LIVE is set to PAPER in the same transaction as the
restore's audit row (a history row says so, and the epoch moves): a restore is a recovery,
and what the account at VALR holds since the backup is unknown to it, so LIVE is reached
again only through the gates and a confirmation. The replaced database is kept beside it as
``heliosd-replaced-<stamp>.db``, together with its ``-wal`` if one was left (after a
``kill -9``): a stale ``-wal`` next to the restored file would be replayed into it, so none
is ever left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from heliosd.core.types import utcnow
from heliosd.runtime.backup import BackupError, _fsync, _fsync_dir, copy_database, stamp
from heliosd.runtime.backup_check import Summary, check_database, summarize
from heliosd.runtime.runlock import RunLock
from heliosd.store.aside import connect_read_only
from heliosd.store.timestamps import iso

REPLACED_PREFIX = "heliosd-replaced-"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Restored:
    source: Path
    db: Path
    replaced: Path | None
    summary: Summary
    was_live: bool = False  # the backup's mode was LIVE; the restored copy is PAPER


def restore(state_dir: Path, source: Path, *, actor: str = "") -> Restored:
    """Put the backup ``source`` in place of ``<state_dir>/heliosd.db`` (see the module
    docstring). Raises BackupError (nothing changed) or StateDirLocked (a daemon runs)."""
    source = Path(source)
    if not source.exists():
        raise BackupError(f"no such file: {source}")
    if not source.is_file():
        raise BackupError(f"not a regular file: {source}")
    try:
        with source.open("rb") as fh:
            magic = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from None
    if magic != SQLITE_MAGIC:
        raise BackupError(f"{source} is not an SQLite database (no SQLite header)")
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        # Never create one: a mistyped directory would get a database nobody runs on.
        raise BackupError(
            f"no state directory at {state_dir} (create it, owned by the daemon's user, or"
            " start heliosd once)"
        )
    lock = RunLock(state_dir)
    lock.acquire()  # StateDirLocked: a daemon is running on it, nothing was touched
    try:
        return _restore_locked(state_dir, source, actor)
    finally:
        lock.release()


def _restore_locked(state_dir: Path, source: Path, actor: str) -> Restored:
    db = state_dir / "heliosd.db"
    when = stamp()
    tmp = state_dir / f".restore-{when}.db"
    try:
        # Check the copy, not the source: what is checked is exactly what is swapped in.
        copy_database(source, tmp)
        os.chmod(tmp, 0o600)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            version = check_database(conn, str(source))
            conn.execute("BEGIN IMMEDIATE")
            was_live = _to_paper(conn, version, actor)
            conn.execute(
                "INSERT INTO audit(at, actor, action, outcome, reason, details)"
                " VALUES (?,?,?,?,?,?)",
                (utcnow().isoformat(), actor, "restore", "restored", "heliosd restore",
                 json.dumps({"from": str(source), "was_live": was_live})),
            )  # fmt: skip
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=DELETE")  # one file: nothing beside it to move
        finally:
            conn.close()
        _own_like(tmp, state_dir)
        _fsync(tmp)
        replaced = _set_aside(db, state_dir / f"{REPLACED_PREFIX}{when}.db")
        os.replace(tmp, db)  # the one step that changes what heliosd.db is
        _fsync_dir(state_dir)
    except sqlite3.Error as exc:
        raise BackupError(f"{source} is corrupt or not a heliosd database: {exc}") from None
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    conn = connect_read_only(db)
    try:
        summary = summarize(conn, version)
        restored_live = _live_counts(conn)
    finally:
        conn.close()
    if replaced is not None:
        with contextlib.suppress(sqlite3.Error):
            old = connect_read_only(replaced)
            try:
                replaced_live = _live_counts(old)
            finally:
                old.close()
            summary.live_beyond = (max(0, replaced_live[0] - restored_live[0]),
                                   max(0, replaced_live[1] - restored_live[1]))  # fmt: skip
    return Restored(source, db, replaced, summary, was_live)


TO_PAPER = ("heliosd restore: a restored database starts on PAPER (what VALR holds since the"
            " backup is unknown to it); switch to LIVE through the gates")  # fmt: skip


def _to_paper(conn: sqlite3.Connection, version: int, actor: str) -> bool:
    """Set a LIVE copy to PAPER, with its history row (written first, so the out-of-band
    trigger sees the switch recorded) and a new epoch; True when it was LIVE."""
    row = conn.execute("SELECT current_mode FROM trading_mode_state WHERE id = 1").fetchone()
    if row is None or row[0] != "LIVE":
        return False
    now = iso(utcnow())  # as set_mode writes it: the trigger compares it to updated_at
    who = actor or "heliosd restore"
    conn.execute(
        "INSERT INTO trading_mode_history(old_mode, new_mode, changed_at, changed_by, reason)"
        " VALUES ('LIVE', 'PAPER', ?, ?, ?)", (now, who, TO_PAPER),
    )  # fmt: skip
    conn.execute(
        "UPDATE trading_mode_state SET current_mode = 'PAPER', updated_at = ?, updated_by = ?"
        " WHERE id = 1", (now, who),
    )  # fmt: skip
    if version >= 3:  # the epoch exists from migration 3 on (older files get it at start)
        conn.execute("UPDATE trading_mode_state SET epoch = epoch + 1 WHERE id = 1")
    return True


def _live_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(switches to LIVE, LIVE orders) a database records."""
    (switches,) = conn.execute(
        "SELECT COUNT(*) FROM trading_mode_history WHERE new_mode = 'LIVE'"
    ).fetchone()
    (orders,) = conn.execute("SELECT COUNT(*) FROM orders WHERE mode = 'LIVE'").fetchone()
    return int(switches), int(orders)


def _set_aside(db: Path, aside: Path) -> Path | None:
    """Keep the current database as ``aside`` (with any ``-wal``/``-shm``/``-journal`` it has,
    under the matching names, so it stays openable as it was); None when there is none."""
    sidecars = [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    if not db.exists():
        # Files of a database that is gone would be replayed into the restored one.
        for side in sidecars:
            if side.exists():
                os.replace(side, Path(f"{aside}{side.name[len(db.name) :]}"))
        return None
    # Fold a left-over WAL into the file first (best effort: a damaged one stays beside it).
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(db)
        try:
            # A read first: it opens the WAL, so the close below can delete it.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    try:
        os.link(db, aside)  # heliosd.db stays in place until the swap
    except OSError:
        import shutil

        shutil.copy2(db, aside)
    for side in sidecars:
        if side.exists():
            os.replace(side, Path(f"{aside}{side.name[len(db.name) :]}"))
    return aside


def _own_like(path: Path, state_dir: Path) -> None:
    """Run as root, the restored file must still belong to the daemon's user (the state
    directory's owner), or the next start cannot open it."""
    if os.geteuid() != 0:
        return
    st = state_dir.stat()
    os.chown(path, st.st_uid, st.st_gid)
