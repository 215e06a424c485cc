"""``heliosd check-config`` and ``heliosd backup`` as an operator runs them, and the daemon's
signal handling (called directly, as uvicorn tests its handlers)."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heliosd.control.ctl_parser import build_parser as build_ctl_parser
from heliosd.core.config import Settings
from heliosd.runtime.cli import _parser as cli_parser
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


async def test_first_signal_stops_gracefully_second_cuts_the_shutdown_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from heliosd.runtime.shutdown import Shutdown

    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    daemon = Daemon(Settings())
    daemon.handle_signal(signal.SIGTERM)
    assert daemon._stop.is_set()
    daemon._shutdown = shutdown = Shutdown([], total_s=1)  # as Daemon.shutdown sets it
    assert not shutdown.forced
    daemon.handle_signal(signal.SIGINT)
    # Never an exit with the store open: the remaining stages are cut, the store still closes
    # (tests/test_shutdown.py, through a real process).
    assert exits == []
    assert shutdown.forced


# --------------------------------------------------------------------------- check-config warnings


def _good_config(tmp_path: Path) -> Path:
    """Everything LIVE needs chosen: notifications, credentials, risk limits, no autostart."""
    key, secret = tmp_path / "key", tmp_path / "secret"
    key.write_text("k" * 64)
    secret.write_text("s" * 64)
    path = tmp_path / "good.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[valr]\napi_key = {{ "$file" = "{key}" }}\napi_secret = {{ "$file" = "{secret}" }}\n'
        "[risk]\nmax_position_pct = 10\nmax_leverage = 1\ndaily_loss_pct = 2\n"
        "max_drawdown_pct = 8\n"
        '[notify]\nurls = ["json://127.0.0.1:9/hook"]\n'
    )
    return path


def test_check_config_ok_for_a_config_ready_for_live(tmp_path: Path) -> None:
    result = run_cli("check-config", str(_good_config(tmp_path)), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout
    assert result.stdout.strip().endswith(")")  # the one ok line, no warning count
    assert ": ok (" in result.stdout


def test_check_config_warns_about_what_will_refuse_live(tmp_path: Path) -> None:
    config = tmp_path / "surprising.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        "[risk]\nmax_leverage = 2\n"
        "[notify]\nurls = []\n"
        "[engine]\nautostart = true\n"
    )
    result = run_cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if ": warning: " in line]
    text = "\n".join(warnings)
    assert "notify.urls is empty: every LIVE switch is refused" in text
    assert "engine.autostart is true but engine.strategy is not set" in text
    assert (
        "[risk] left at the defaults (max_position_pct = 20, daily_loss_pct = 5, "
        "max_drawdown_pct = 15)" in text  # max_leverage was chosen
    )
    assert "valr.api_key and valr.api_secret not set: LIVE is refused" in text
    assert len(warnings) == 4
    assert "ok (" in result.stdout and "4 warning(s)" in result.stdout

    strict = run_cli("check-config", str(config), "--strict")
    assert strict.returncode == 1
    assert "4 warning(s), failing (--strict)" in strict.stderr
    assert "ok (" not in strict.stdout


def test_check_config_warnings_name_keys_never_secrets(tmp_path: Path) -> None:
    config = tmp_path / "usdc.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        '[valr]\npairs = ["BTCUSDC"]\n[engine]\npairs = ["BTCUSDC"]\n'
        '[notify]\nurls = ["json://u:sekrit-token-99@127.0.0.1:9/hook"]\n'
    )
    result = run_cli("check-config", str(config), "--strict")
    assert result.returncode == 1
    assert (
        "risk configuration refuses LIVE (gate risk_config_complete): no configured pair is "
        "quoted in ZAR" in result.stdout
    )
    assert "notify.urls is empty" not in result.stdout
    assert "sekrit" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- help and version


def _options(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every argument of ``parser`` and of each subcommand, with the command it belongs to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path or "(top)", action


@pytest.mark.parametrize("build", [cli_parser, build_ctl_parser], ids=["heliosd", "heliosctl"])
def test_every_option_of_every_subcommand_has_help(build: Any) -> None:
    options = list(_options(build()))
    assert len(options) > 5
    missing = [f"{cmd}: {a.option_strings or a.dest}" for cmd, a in options
               if not a.help or a.help == argparse.SUPPRESS]  # fmt: skip
    assert not missing, missing
    # Every subcommand says what it does in its own --help too.
    for action in build()._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
            assert all(helps.get(name) for name in action.choices), helps


def test_heliosd_help_keeps_its_description_and_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    out = result.stdout
    # Raw layout: the command lines stay lines, nothing reflowed or cut.
    assert "\n  heliosd check-config FILE [--strict]" in out
    assert "exit codes: 0 ok, 1 failure (check-config --strict: warnings), 2 usage," in out
    assert "141 stdout's reader went away (| head)" in out
    sub = run_cli("check-config", "--help")
    assert "--strict" in sub.stdout and "treat warnings" in sub.stdout
