"""The doctor's checks of this installation: the config file, the state and backup
directories (writable, free space), the notifiers (a test message on request), the risk
configuration, the loaded plugins and the engine's strategy.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from heliosd.builtin.gates import RiskConfigComplete
from heliosd.core.config import parse_settings, read_toml
from heliosd.core.errors import ConfigError, HeliosError
from heliosd.core.protocols import Event
from heliosd.core.types import utcnow
from heliosd.plugins.manager import core_changes
from heliosd.runtime.configcheck import config_warnings
from heliosd.runtime.doctor_check import (
    FAIL,
    NOTIFY_MARGIN_S,
    OK,
    SKIPPED_NOTIFY,
    WARN,
    DoctorContext,
    Finding,
)

# Free space on the state and backup directories' filesystems: below WARN the next backups
# and a growing database may not fit; below FAIL SQLite may refuse writes mid-trade.
DISK_WARN_BYTES: Final = 1 << 30  # 1 GiB
DISK_FAIL_BYTES: Final = 100 << 20  # 100 MiB


# --------------------------------------------------------------------------- config


async def check_config(ctx: DoctorContext) -> Finding:
    """The running settings loaded (or the daemon would not run); the file on disk must
    still load (a restart reads it), and ``heliosd check-config``'s warnings are warnings."""
    s = ctx.settings
    source = s.source
    on_disk = not source.startswith("<")
    raw: Mapping[str, Any] = {}
    notes: list[str] = []
    if on_disk:
        try:
            raw = await asyncio.to_thread(read_toml, source)
            fresh = await asyncio.to_thread(parse_settings, raw, source, ctx.config_sections)
        except ConfigError as exc:
            return Finding(
                FAIL,
                f"the config file no longer loads: {exc.message}",
                f"fix the file (heliosd check-config {source}): a restart would exit 78",
            )
        changed = core_changes(s, fresh)
        if changed:
            notes.append(
                f"{source} differs from the running settings ({', '.join(changed)}):"
                " a restart applies it"
            )
    notes = config_warnings(s, raw) + notes
    if notes:
        return Finding(
            WARN,
            "; ".join(notes),
            f"heliosd check-config {source} lists these; change the config, then restart",
        )
    return Finding(OK, f"{source}: valid, no warnings")


# --------------------------------------------------------------------------- disk


def probe_dir(
    path: Path, *, warn_below: int = DISK_WARN_BYTES, fail_below: int = DISK_FAIL_BYTES
) -> Finding:
    """Writable (a file really written and removed) with free space above the bounds."""
    where = path
    made_later = ""
    if not path.exists():
        # The backup directory appears with the first backup: its parent must take it.
        where = next((p for p in path.parents if p.exists()), Path("/"))
        made_later = f" (does not exist yet: created in {where} by the first backup)"
    if not where.is_dir():
        return Finding(FAIL, f"{where} is not a directory", "point the config at a directory")
    try:
        fd, name = tempfile.mkstemp(dir=where, prefix=".heliosd-doctor-")
        try:
            os.write(fd, b"doctor\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Finding(
            FAIL,
            f"{where} is not writable ({exc.strerror or exc}){made_later}",
            f"make {where} writable by the daemon's user (uid {os.geteuid()})",
        )
    stats = os.statvfs(where)
    free = stats.f_bavail * stats.f_frsize
    text = f"{path} writable{made_later}, {_size(free)} free"
    fix = (
        f"free space on the filesystem of {where} (old backups: daemon.keep_backups prunes"
        " them; heliosd's own are heliosd-*.db in the backup directory)"
    )
    if free < fail_below:
        return Finding(FAIL, f"{text} (under {_size(fail_below)})", fix)
    if free < warn_below:
        return Finding(WARN, f"{text} (under {_size(warn_below)})", fix)
    return Finding(OK, text)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


async def check_state_dir(ctx: DoctorContext) -> Finding:
    return await asyncio.to_thread(probe_dir, ctx.settings.daemon.state_dir)


async def check_backup_dir(ctx: DoctorContext) -> Finding:
    return await asyncio.to_thread(probe_dir, ctx.settings.daemon.backup_dir)


# --------------------------------------------------------------------------- notify


def _test_event(ctx: DoctorContext) -> Event:
    body = (
        f"A test notification from heliosd doctor, asked by {ctx.actor}. If you read this,"
        " stops and fills will reach you here too."
    )
    return Event("doctor", "heliosd doctor: test notification", body, utcnow())


async def check_notify(ctx: DoctorContext) -> Finding:
    """Opt-in: one test message through every notifier (Apprise: every URL)."""
    urls = len(ctx.settings.notify.urls)
    if not urls and not ctx.notifiers:
        return Finding(
            WARN,
            "no notification URL: [notify] urls is empty",
            "add an Apprise URL to [notify] urls (LIVE is refused without one)",
        )
    if not ctx.notify:
        return Finding(OK, SKIPPED_NOTIFY)
    if not ctx.notifiers:
        return Finding(
            FAIL,
            f"{urls} URL(s) configured but no notifier is loaded to send them",
            "check that the apprise plugin is not in daemon.blocked_plugins",
        )
    event = _test_event(ctx)
    timeout = float(ctx.settings.notify.timeout_s) + NOTIFY_MARGIN_S
    failed: list[str] = []
    sent: list[str] = []
    for notifier in ctx.notifiers:
        name = str(getattr(notifier, "name", type(notifier).__name__))
        try:
            await asyncio.wait_for(notifier.send(event), timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            failed.append(f"{name}: timed out after {timeout:g} s")
        except HeliosError as exc:
            failed.append(f"{name}: {exc.message}")
        except Exception as exc:
            # Phrased as the outbox phrases a notifier's failure (messages carry no secrets).
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            sent.append(name)
    if failed:
        return Finding(
            FAIL,
            f"test notification not delivered ({'; '.join(failed)})",
            "check the [notify] urls (the receiving service, its token, the network)",
        )
    return Finding(OK, f"test notification delivered ({urls} URL(s); via {', '.join(sent)})")


# --------------------------------------------------------------------------- risk, plugins


async def check_risk_config(ctx: DoctorContext) -> Finding:
    """The ``risk_config_complete`` gate."""
    result = await RiskConfigComplete().check(ctx.gates)
    if result.ok:
        return Finding(OK, "limits, reference currency and notification URL set")
    return Finding(
        FAIL,
        result.reason,
        "set what it names ([risk] limits, [valr] pairs, [notify] urls: docs/configuration.md),"
        " then restart",
    )


def _file_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


async def check_plugins(ctx: DoctorContext) -> Finding:
    """Which plugins are loaded; a drop-in whose file changed since it was loaded warns."""
    records = list(ctx.plugins)
    dropins = [r for r in records if r.kind == "dropin"]
    shown: list[str] = []
    drifted: list[str] = []
    for r in dropins:
        shown.append(f"{r.name} sha256 {(r.sha256 or '?')[:12]}")
        on_disk = await asyncio.to_thread(_file_sha256, r.path) if r.path else None
        if on_disk is None:
            drifted.append(f"{r.name}: {r.path} is gone or unreadable")
        elif on_disk != r.sha256:
            drifted.append(f"{r.name}: {r.path} changed since it was loaded (now {on_disk[:12]})")
    kinds = {k: sum(1 for r in records if r.kind == k) for k in ("builtin", "entrypoint")}
    detail = (
        f"{len(records)} loaded ({kinds['builtin']} built-in, {kinds['entrypoint']} entry"
        f" point, {len(dropins)} drop-in)"
    )
    if shown:
        detail += f"; drop-ins: {', '.join(shown)}"
    if drifted:
        return Finding(
            WARN,
            f"{detail}; {'; '.join(drifted)}",
            "reload the drop-ins (systemctl reload heliosd: SIGHUP) or restore the files",
        )
    return Finding(OK, detail)


async def check_engine(ctx: DoctorContext) -> Finding:
    """With ``engine.autostart`` on, the configured strategy must be loaded."""
    e = ctx.settings.engine
    loaded = ", ".join(sorted(ctx.strategies)) or "none"
    state = "running" if ctx.engine_running else "stopped"
    if not e.autostart:
        if e.strategy and e.strategy not in ctx.strategies:
            return Finding(
                WARN,
                f"engine.strategy {e.strategy!r} is not loaded (loaded: {loaded})",
                "install or drop in the strategy's plugin, or fix engine.strategy",
            )
        return Finding(OK, f"autostart off; engine {state}")
    if not e.strategy:
        return Finding(
            FAIL,
            "engine.autostart is true but engine.strategy is not set",
            "name a strategy in engine.strategy, or set engine.autostart = false",
        )
    if e.strategy not in ctx.strategies:
        return Finding(
            FAIL,
            f"engine.strategy {e.strategy!r} is not loaded (loaded: {loaded})",
            "install or drop in the strategy's plugin, or fix engine.strategy",
        )
    return Finding(OK, f"autostart on, strategy {e.strategy!r} loaded; engine {state}")
