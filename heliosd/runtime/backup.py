"""``heliosd backup`` and ``heliosd restore``: backups of the database, their pruning, and
putting one back.

**Backups** are SQLite online backups (``sqlite3.Connection.backup``) from a read-only
connection: consistent beside a running daemon's writer (WAL), which a file copy of a live
WAL database is not. A backup is written under a temporary name and renamed into place, so a
file with a backup's name is always complete (pruning counts on that: a half-written file
must never be the "newest").

Backups heliosd names itself live in ``<state_dir>/backups/``: ``pre-live-<stamp>.db``
(before every switch to LIVE, :mod:`heliosd.risk.mode`), ``heliosd-<stamp>.db``
(``heliosctl backup``) and ``manual-<stamp>.db`` (``heliosd backup`` without a path). The
stamp is UTC ``%Y%m%dT%H%M%S%fZ``, so names sort by time. **Pruning** keeps the newest N of
those and deletes the rest; any other file in the directory (an operator's own copy) is never
touched. ``[daemon] keep_backups`` (0 = keep all) prunes after each pre-LIVE backup.

**Restore** writes the store, so it takes the state directory's run lock
(:mod:`heliosd.runtime.runlock`) for its whole duration: it refuses while a daemon runs, and
no daemon can start half way through. It copies the file into the state directory, checks the
copy (``PRAGMA integrity_check``; a heliosd schema version this release knows; every table
and column that version has; the mode row), and only then swaps it in with one
``rename(2)``: at every instant ``heliosd.db`` is either the complete old database or the
complete new one. The replaced database is kept beside it as
``heliosd-replaced-<stamp>.db``, together with its ``-wal`` if one was left (after a
``kill -9``): a stale ``-wal`` next to the restored file would be replayed into it, so none
is ever left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from heliosd.core.errors import HeliosError
from heliosd.core.types import utcnow
from heliosd.runtime.runlock import EXIT_LOCKED, RunLock, StateDirLocked

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/heliosd/heliosd.toml"
# The names heliosd gives its own backups (see the module docstring); only these are pruned.
BACKUP_NAME = re.compile(r"^(pre-live|heliosd|manual)-(\d{8}T\d{12}Z)\.db$")
REPLACED_PREFIX = "heliosd-replaced-"
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(HeliosError):
    """A backup, prune or restore that cannot be done; the message says why."""

    code = "backup_error"


def stamp() -> str:
    """The UTC stamp of a backup's name: sortable, microseconds so two never collide."""
    return utcnow().strftime("%Y%m%dT%H%M%S%fZ")


# --------------------------------------------------------------------------- backup


def online_backup(src: Path, dest: Path) -> Path:
    """A consistent copy of the database ``src`` at ``dest`` (0600), through SQLite's online
    backup API on a read-only connection; written as ``.<name>.partial`` and renamed."""
    if not src.is_file():
        raise BackupError(f"no database at {src}")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = dest.with_name(f".{dest.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    try:
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        os.chmod(partial, 0o600)
        _fsync(partial)
        os.replace(partial, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {src} failed: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return dest


def list_backups(backup_dir: Path) -> list[Path]:
    """heliosd's own backups in ``backup_dir``, newest first (by the stamp in the name)."""
    try:
        entries = list(backup_dir.iterdir())
    except FileNotFoundError:
        return []
    named = [(m.group(2), p) for p in entries if (m := BACKUP_NAME.match(p.name)) and p.is_file()]
    named.sort(key=lambda item: (item[0], item[1].name), reverse=True)
    return [p for _, p in named]


def prune(backup_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` of heliosd's backups; returns what was removed.
    ``keep`` 0 keeps everything (the config's "off")."""
    if keep < 0:
        raise BackupError(f"keep must be zero or more, got {keep}")
    if keep == 0:
        return []
    removed = []
    for path in list_backups(backup_dir)[keep:]:
        with contextlib.suppress(FileNotFoundError):  # a concurrent prune got there first
            path.unlink()
            removed.append(path)
    return removed


async def prune_after_backup(backup_dir: Path, keep: int) -> None:
    """The automatic prune after a pre-LIVE backup: housekeeping, so a failure is logged and
    never stops the switch it follows."""
    try:
        removed = await asyncio.to_thread(prune, backup_dir, keep)
    except (OSError, BackupError) as exc:
        log.warning("pruning %s failed: %s", backup_dir, exc)
        return
    if removed:
        log.info("pruned %d old backups (keep_backups = %d): %s", len(removed), keep,
                 ", ".join(p.name for p in removed))  # fmt: skip


# --------------------------------------------------------------------------- checking a file


@dataclass
class Summary:
    """What a heliosd database holds that decides how the next start behaves."""

    schema_version: int
    mode: str
    sealed: bool | None  # LIVE only: sealed under this state directory's mode.key
    trading_state: str
    state_reason: str
    epoch: int
    breakers: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    # LIVE switches and LIVE orders the replaced database has beyond this one's (restore only)
    live_beyond: tuple[int, int] = (0, 0)


def expected_schema(version: int) -> dict[str, set[str]]:
    """{table: columns} that migrations 1..``version`` create (run on an in-memory db)."""
    from heliosd.store import MIGRATIONS, _statements

    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            for statement in _statements(script):
                conn.execute(statement)
        return _schema(conn)
    finally:
        conn.close()


def _schema(conn: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )]  # fmt: skip
    return {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}


def check_database(conn: sqlite3.Connection, what: str) -> int:
    """Raise BackupError unless ``conn`` is an intact heliosd database this release can run
    on; returns its schema version."""
    from heliosd.store import MIGRATIONS

    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is corrupt or not an SQLite database: {exc}") from None
    if problems != ["ok"]:
        raise BackupError(f"{what} is corrupt: integrity_check: {'; '.join(problems[:5])}")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    known = len(MIGRATIONS)
    if version == 0:
        raise BackupError(f"{what} is not a heliosd database (schema version 0)")
    if version > known:
        raise BackupError(
            f"{what} has schema version {version}, newer than this heliosd knows ({known}):"
            " it was written by a newer release; install that release to restore it"
        )
    have = _schema(conn)
    missing = []
    for table, columns in expected_schema(version).items():
        if table not in have:
            missing.append(table)
        elif lost := sorted(columns - have[table]):
            missing.append(f"{table}({', '.join(lost)})")
    if missing:
        raise BackupError(
            f"{what} is not a heliosd database of schema version {version}: missing"
            f" {', '.join(sorted(missing))}"
        )
    if conn.execute("SELECT 1 FROM trading_mode_state WHERE id = 1").fetchone() is None:
        raise BackupError(f"{what} has no trading mode row (trading_mode_state id 1)")
    return version


def summarize(conn: sqlite3.Connection, version: int, seal_key: bytes | None) -> Summary:
    """The mode, trading state, epoch, active breakers, run marker and engine choice."""
    if version >= 3:
        row = conn.execute(
            "SELECT current_mode, trading_state, state_reason, epoch FROM trading_mode_state"
            " WHERE id = 1"
        ).fetchone()
        mode, state, reason, epoch = str(row[0]), str(row[1]), str(row[2]), int(row[3])
    else:  # no stored state before migration 3; it derives one at the next start
        row = conn.execute("SELECT current_mode FROM trading_mode_state WHERE id = 1").fetchone()
        mode, state, reason, epoch = str(row[0]), "(derived at the next start)", "", 0
    sealed = None
    if mode == "LIVE":
        last = conn.execute(
            "SELECT new_mode, changed_at, changed_by, seal FROM trading_mode_history"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        sealed = bool(
            seal_key is not None and last is not None and last[0] == "LIVE" and last[3]
            and hmac.compare_digest(str(last[3]), _seal(seal_key, last[0], last[1], last[2]))
        )  # fmt: skip
    now = utcnow()
    rows = conn.execute(
        "SELECT name, reason, tripped_at, until FROM breakers WHERE cleared_at IS NULL"
        " ORDER BY name"
    ).fetchall()
    breakers = [
        {"name": n, "reason": r, "tripped_at": t, "until": u}
        for n, r, t, u in rows
        if not _expired(u, now)
    ]
    run = engine = None
    if version >= 3:
        run, engine = _state_row(conn, "run"), _state_row(conn, "engine")
    return Summary(version, mode, sealed, state, reason, epoch, breakers, run, engine)


def _expired(until: str | None, now: datetime) -> bool:
    """A daily-loss breaker past its ``until`` no longer counts (heliosd.risk.state); an
    unreadable time counts as active, the stricter reading."""
    if until is None:
        return False
    try:
        return datetime.fromisoformat(until) <= now
    except (TypeError, ValueError):
        return False


def _state_row(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seal(key: bytes, new_mode: str, changed_at: str, changed_by: str) -> str:
    # The same HMAC as heliosd.store.Store.seal: a LIVE is trusted only under this key.
    msg = f"{new_mode}|{changed_at}|{changed_by}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def _seal_key(state_dir: Path) -> bytes | None:
    try:
        return bytes.fromhex((state_dir / "mode.key").read_text().strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class Restored:
    source: Path
    db: Path
    replaced: Path | None
    summary: Summary


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
        _copy_in(source, tmp)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            version = check_database(conn, str(source))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO audit(at, actor, action, outcome, reason, details)"
                " VALUES (?,?,?,?,?,?)",
                (utcnow().isoformat(), actor, "restore", "restored", "heliosd restore",
                 json.dumps({"from": str(source)})),
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
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        summary = summarize(conn, version, _seal_key(state_dir))
        restored_live = _live_counts(conn)
    finally:
        conn.close()
    if replaced is not None:
        with contextlib.suppress(sqlite3.Error):
            old = sqlite3.connect(f"file:{replaced}?mode=ro", uri=True)
            try:
                replaced_live = _live_counts(old)
            finally:
                old.close()
            summary.live_beyond = (max(0, replaced_live[0] - restored_live[0]),
                                   max(0, replaced_live[1] - restored_live[1]))  # fmt: skip
    return Restored(source, db, replaced, summary)


def _live_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(switches to LIVE, LIVE orders) a database records."""
    (switches,) = conn.execute(
        "SELECT COUNT(*) FROM trading_mode_history WHERE new_mode = 'LIVE'"
    ).fetchone()
    (orders,) = conn.execute("SELECT COUNT(*) FROM orders WHERE mode = 'LIVE'").fetchone()
    return int(switches), int(orders)


def _copy_in(source: Path, tmp: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(tmp, 0o600)


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        _fsync(path)


# --------------------------------------------------------------------------- the commands


def add_parsers(sub: Any) -> None:
    """``backup`` and ``restore`` on ``heliosd``'s subcommand parser."""
    backup = sub.add_parser(
        "backup", help="online backup of the database (to PATH, or to <state_dir>/backups/)"
    )
    backup.add_argument("path", nargs="?", help="where to write it (default: "
                        "<state_dir>/backups/manual-<UTC stamp>.db)")  # fmt: skip
    backup.add_argument("--prune", type=int, metavar="N",
                        help="take no backup: keep the newest N of heliosd's backups in"
                        " <state_dir>/backups/ and delete the older ones")  # fmt: skip
    _where(backup)
    restore_p = sub.add_parser(
        "restore", help="replace the database with a backup (the daemon must be stopped)"
    )
    restore_p.add_argument("file", help="the backup to restore (a heliosd database)")
    _where(restore_p)


def _where(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", help=f"heliosd.toml whose [daemon] names the state"
                       f" directory (default {DEFAULT_CONFIG})")  # fmt: skip
    group.add_argument("--state-dir", help="the state directory itself")


def _daemon(args: argparse.Namespace) -> Any:
    """``[daemon]`` settings: from ``--state-dir``, or ``[daemon]`` of the config alone (the
    VALR secrets are not read: outside systemd ``$credential`` cannot resolve)."""
    from heliosd.core.config import parse_settings, read_toml

    if args.state_dir is not None:
        return parse_settings({"daemon": {"state_dir": args.state_dir}}).daemon
    config = args.config or DEFAULT_CONFIG
    return parse_settings({"daemon": read_toml(config).get("daemon", {})}, config).daemon


def run(args: argparse.Namespace) -> int:
    """``heliosd backup`` / ``heliosd restore``; ConfigError is the caller's (exit 78)."""
    daemon = _daemon(args)
    try:
        if args.command == "restore":
            return _restore_command(daemon.state_dir, Path(args.file))
        if args.prune is not None:
            if args.path is not None:
                print("heliosd: backup --prune takes no PATH", file=sys.stderr)
                return 2
            if args.prune < 1:
                print("heliosd: --prune N needs N of at least 1 (to keep every backup,"
                      " do not prune)", file=sys.stderr)  # fmt: skip
                return 2
            removed = prune(daemon.backup_dir, args.prune)
            for path in removed:
                print(f"removed {path}")
            kept = len(list_backups(daemon.backup_dir))
            print(f"{len(removed)} removed, {kept} kept in {daemon.backup_dir}")
            return 0
        dest = Path(args.path) if args.path else daemon.backup_dir / f"manual-{stamp()}.db"
        print(online_backup(daemon.db_path, dest))
        return 0
    except BackupError as exc:
        print(f"heliosd: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"heliosd: {exc}", file=sys.stderr)
        return 1


def _restore_command(state_dir: Path, source: Path) -> int:
    try:
        done = restore(state_dir, source, actor=_who())
    except StateDirLocked as exc:
        holder = f"pid {exc.pid}" if exc.pid is not None else "pid unknown"
        print(f"heliosd: a heliosd ({holder}) is running on {state_dir}; stop it first"
              " (systemctl stop heliosd): nothing was restored", file=sys.stderr)  # fmt: skip
        return EXIT_LOCKED
    for line in describe(done):
        print(line)
    return 0


def _who() -> str:
    uid = os.getuid()
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name}), heliosd restore"
    except KeyError:
        return f"uid {uid}, heliosd restore"


def describe(done: Restored) -> list[str]:
    """What an operator needs to know about the restored database before starting it."""
    s = done.summary
    lines = [f"restored {done.source} -> {done.db}"]
    lines.append(f"replaced database kept as {done.replaced}" if done.replaced
                 else "there was no database to replace")  # fmt: skip
    lines.append(f"schema version: {s.schema_version}")
    mode = s.mode
    if s.sealed is True:
        mode += (
            " (sealed: the next start is LIVE on what this database knows; if the"
            " VALR account changed since, set PAPER first: operations.md, Rollback)"
        )
    elif s.sealed is False:
        mode += (" (not sealed by this state directory's mode.key: the router refuses every"
                 " order until switched to PAPER)")  # fmt: skip
    lines.append(f"mode: {mode}")
    reason = f" ({s.state_reason})" if s.state_reason else ""
    lines.append(f"trading state: {s.trading_state}{reason}")
    lines.append(f"epoch: {s.epoch}")
    if s.breakers:
        lines.append("stops and breakers:")
        for b in s.breakers:
            until = f", until {b['until']}" if b["until"] else ""
            lines.append(f"  {b['name']}: {b['reason']} (since {b['tripped_at']}{until})")
    else:
        lines.append("stops and breakers: none active")
    if s.engine is not None:
        running = "running" if s.engine.get("running") is True else "stopped"
        strategy = s.engine.get("strategy") or "-"
        lines.append(f"engine: {running} (strategy {strategy}); a start restores that")
    else:
        lines.append("engine: no recorded choice (engine.autostart decides)")
    switches, orders = s.live_beyond
    if switches or orders:
        # The restored file cannot know what the replaced one traded after it was taken.
        lines.append(
            f"WARNING: the replaced database recorded {switches} more switch(es) to LIVE and"
            f" {orders} more LIVE order(s) than the restored one: VALR may hold orders and"
            " balances this database does not know. Check the account at VALR before going"
            " LIVE again."
        )
    if s.run is not None and s.run.get("state") != "clean":
        lines.append(
            "run marker: 'running' (the backup was taken while a daemon ran): the next start"
            " treats it as an unclean exit" + (", HALTED until reconciled with VALR"
                                               if s.mode == "LIVE" else "")
        )  # fmt: skip
    return lines


__all__ = [
    "BACKUP_NAME",
    "BackupError",
    "Restored",
    "Summary",
    "add_parsers",
    "check_database",
    "describe",
    "list_backups",
    "online_backup",
    "prune",
    "prune_after_backup",
    "restore",
    "run",
    "stamp",
]
