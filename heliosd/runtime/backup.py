"""``heliosd backup``: backups of the database and their pruning.

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

Checking a file and restoring one are :mod:`heliosd.runtime.backup_check` and
:mod:`heliosd.runtime.backup_restore`; the commands are :mod:`heliosd.runtime.backup_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
from pathlib import Path

from heliosd.core.errors import HeliosError
from heliosd.core.types import utcnow
from heliosd.store.aside import connect_read_only

log = logging.getLogger(__name__)

# The names heliosd gives its own backups (see the module docstring); only these are pruned.
BACKUP_NAME = re.compile(r"^(pre-live|heliosd|manual)-(\d{8}T\d{12}Z)\.db$")


class BackupError(HeliosError):
    """A backup, prune or restore that cannot be done; the message says why."""

    code = "backup_error"


def stamp() -> str:
    """The UTC stamp of a backup's name: sortable, microseconds so two never collide."""
    return utcnow().strftime("%Y%m%dT%H%M%S%fZ")


# --------------------------------------------------------------------------- backup


def copy_database(src: Path, dest: Path) -> None:
    """``src`` copied to ``dest`` through SQLite's online backup API, reading ``src`` on a
    read-only connection (consistent even while the daemon writes it)."""
    source = connect_read_only(src)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


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
        copy_database(src, partial)
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        _fsync(path)


__all__ = [
    "BACKUP_NAME",
    "BackupError",
    "list_backups",
    "online_backup",
    "prune",
    "prune_after_backup",
    "stamp",
]
