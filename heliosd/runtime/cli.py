"""``heliosd run|demo|sim|check-config|backup|restore``.

Exit codes: 0 ok, 1 failure, 2 usage, 73 another heliosd holds the state directory's lock
(one line on stderr names its pid; nothing was opened or started), 78 configuration error.
systemd's ``RestartPreventExitStatus=78 73`` keeps both from restart-looping: restarting
fixes neither a broken config nor a directory another daemon owns.

``run`` and ``demo`` take the lock (:mod:`heliosd.runtime.runlock`) before anything else; ``backup``
reads the store through a read-only connection and does not, so it works beside a running
daemon; ``restore`` writes the store and takes the lock too (refused while a daemon runs);
``check-config`` and ``sim`` never open the store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heliosd import __version__
from heliosd.core.errors import ConfigError
from heliosd.core.pipes import stdout_gone
from heliosd.runtime.backup_cli import add_parsers as add_backup_parsers
from heliosd.runtime.backup_cli import run as run_backup_command
from heliosd.runtime.configcheck import EXIT_STRICT, config_warnings
from heliosd.runtime.runlock import EXIT_LOCKED, RunLock, StateDirLocked

log = logging.getLogger("heliosd")
# Shown by ``heliosd --help`` as written (RawDescriptionHelpFormatter keeps the lines).
_DESCRIPTION = """\
heliosd: a safety-first trading daemon for the VALR exchange. It starts in PAPER; LIVE
only after every gate passes and an operator types LIVE (heliosctl mode live).

  heliosd run --config /etc/heliosd/heliosd.toml   the daemon (systemd runs this)
  heliosd demo                                     simulator + daemon, offline
  heliosd check-config FILE [--strict]             validate a config, warn about LIVE"""
_EPILOG = """\
exit codes: 0 ok, 1 failure (check-config --strict: warnings), 2 usage,
  73 another heliosd holds the state directory's lock, 78 configuration error,
  141 stdout's reader went away (| head)"""

EXIT_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heliosd", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--version", action="version", version=f"heliosd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon (systemd runs this)")
    run.add_argument("--config", required=True, help="path to heliosd.toml")
    demo = sub.add_parser("demo", help="embedded VALR simulator + daemon in PAPER with the demo")
    demo.add_argument("--state-dir", default="./var",
                      help="state directory: database, socket, logs (default ./var)")  # fmt: skip
    demo.add_argument("--no-engine", action="store_true",
                      help="do not autostart the demo strategy (a recorded engine start in"
                      " the state directory is still restored)")  # fmt: skip
    demo.add_argument("--no-status", action="store_true",
                      help="no status in the terminal title or as status: lines")  # fmt: skip
    demo.add_argument("--sim-port", type=int, default=0,
                      help="port for the embedded simulator (default: any free port)")  # fmt: skip
    # Everything after "sim" goes to heliosd.sim.cli.run_sim, the code path of
    # ``python -m heliosd.sim`` (main dispatches before this parser sees it).
    sub.add_parser("sim", add_help=False,
                   help="run the VALR simulator alone (prints a funded API key; faults: "
                   "heliosd sim --help)")  # fmt: skip
    check = sub.add_parser("check-config", help="validate a config file and its plugins")
    check.add_argument("config", help="path to heliosd.toml")
    check.add_argument("--strict", action="store_true",
                       help="treat warnings (settings that refuse LIVE or surprise) as failures"
                       f" (exit {EXIT_STRICT})")  # fmt: skip
    add_backup_parsers(sub)  # backup, restore: heliosd.runtime.backup_cli
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from heliosd.sim.cli import run_sim

        return run_sim(argv[1:])
    try:
        try:
            args = _parser().parse_args(argv)
        finally:
            sys.stdout.flush()  # --help, --version: a closed pipe fails here, not at exit
    except BrokenPipeError:
        return stdout_gone()
    try:
        if args.command == "run":
            return _run(args.config)
        if args.command == "demo":
            from heliosd.runtime.demo import run_demo

            return run_demo(Path(args.state_dir), engine=not args.no_engine,
                            status=not args.no_status, sim_port=args.sim_port)  # fmt: skip
        if args.command == "check-config":
            return _check(args.config, strict=args.strict)
        if args.command in ("backup", "restore"):
            return run_backup_command(args)
    except ConfigError as exc:
        print(f"heliosd: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except StateDirLocked as exc:
        print(f"heliosd: {exc.message}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout's reader went away (| head): quietly, as SIGPIPE would
        return stdout_gone()
    return 2


def _run(config: str) -> int:
    from heliosd.plugins.manager import load_with_plugins
    from heliosd.runtime.daemon import Daemon
    from heliosd.runtime.logs import setup_logging

    setup_logging("info")  # so plugin loading (paths, sha256) is logged properly
    settings, pm = load_with_plugins(config)  # a broken config is 78 before anything else
    # The lock before anything opens or starts: a second daemon stops here with one line
    # naming the holder (StateDirLocked -> exit 73).
    lock = RunLock(settings.daemon.state_dir)
    try:
        lock.acquire()
        setup_logging(settings.daemon.log_level)
        return asyncio.run(Daemon(settings, pm=pm, lock=lock).run())
    except ConfigError:
        raise
    except OSError as exc:
        log.error("heliosd failed to start: %s", exc)
        return 1


def _check(config: str, *, strict: bool = False) -> int:
    from heliosd.core.config import read_toml
    from heliosd.plugins.manager import collect, load_with_plugins

    settings, pm = load_with_plugins(config)
    registry = collect(pm, settings)
    for name in (settings.exchange.live, settings.exchange.paper):
        if name not in registry.exchanges:
            raise ConfigError(f"no exchange plugin named {name!r}", key="exchange",
                              source=settings.source)  # fmt: skip
    if settings.engine.strategy and settings.engine.strategy not in registry.strategies:
        raise ConfigError(f"no strategy named {settings.engine.strategy!r}",
                          key="engine.strategy", source=settings.source)  # fmt: skip
    warnings = config_warnings(settings, read_toml(config))
    for warning in warnings:
        print(f"{config}: warning: {warning}")
    if strict and warnings:
        print(f"{config}: {len(warnings)} warning(s), failing (--strict)", file=sys.stderr)
        return EXIT_STRICT
    print(
        f"{config}: ok ({len(registry.risk_rules)} risk rules, {len(registry.gates)} gates, "
        f"{len(registry.notifiers)} notifiers, strategies: {', '.join(registry.strategies)})"
        + (f"; {len(warnings)} warning(s)" if warnings else "")
    )
    return 0


def _daemon_settings(config: str) -> Any:
    """Settings from ``[daemon]`` alone: the state directory without the VALR secrets
    (which outside systemd are not even readable: ``$credential`` needs systemd)."""
    from heliosd.core.config import parse_settings, read_toml

    return parse_settings({"daemon": read_toml(config).get("daemon", {})}, config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
