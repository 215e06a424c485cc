"""The ``heliosd backup`` and ``heliosd restore`` commands: their arguments, the state
directory they act on (``--state-dir`` or a config's ``[daemon]``), their output and exit
codes, and :func:`describe`, what an operator reads about a restored database.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from heliosd.runtime.backup import BackupError, list_backups, online_backup, prune, stamp
from heliosd.runtime.backup_restore import Restored, restore
from heliosd.runtime.runlock import EXIT_LOCKED, StateDirLocked

DEFAULT_CONFIG = "/etc/heliosd/heliosd.toml"


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
    mode = s.mode  # never LIVE: restore sets a LIVE copy to PAPER (backup_restore)
    if done.was_live:
        mode += " (the backup was LIVE: set to PAPER; switch to LIVE through the gates)"
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
