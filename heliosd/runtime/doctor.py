"""``heliosctl doctor`` / ``GET /api/doctor``: is this running daemon ready to go LIVE?

Contract (docs/api.md, "Doctor"): the answer is ``{"ok": bool, "checks": [{"name",
"status": "ok"|"warn"|"fail", "detail", "fix"}]}``, one entry per check of :data:`CHECKS`
in that order; ``ok`` is false when any check failed (warnings do not count).

Every check is fail-closed: it runs under a timeout, and a check that raises or times out
is ``fail`` with the error as its detail. Where a pre-LIVE gate asks the same question
(credentials, risk configuration, clock skew, VALR's status) the check calls the gate's own
code in :mod:`heliosd.builtin.gates`, so the doctor can never pass what a LIVE switch would
refuse, or the other way round. Nothing here changes state; only ``notify=True`` has an
effect outside the daemon (one test message through every notifier).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from heliosd.builtin.gates import ClockSkew, RiskConfigComplete, VenueOnline, credentials_verdict
from heliosd.core.config import Settings, parse_settings, read_toml
from heliosd.core.errors import ConfigError, HeliosError
from heliosd.core.protocols import Event, GateContext, Notifier
from heliosd.core.types import utcnow
from heliosd.plugins.manager import PluginRecord, SectionParser, core_changes
from heliosd.runtime.configcheck import config_warnings

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"

# Free space on the state and backup directories' filesystems: below WARN the next backups
# and a growing database may not fit; below FAIL SQLite may refuse writes mid-trade.
DISK_WARN_BYTES: Final = 1 << 30  # 1 GiB
DISK_FAIL_BYTES: Final = 100 << 20  # 100 MiB
# The test notification may take Apprise's own timeout per URL; this much more for the rest.
NOTIFY_MARGIN_S: Final = 5.0
SKIPPED_NOTIFY: Final = "skipped (use --notify)"


@dataclass(frozen=True, slots=True)
class Finding:
    """What one check found."""

    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class DoctorContext:
    """What the checks look at: the running daemon's parts, taken when the doctor is asked."""

    settings: Settings
    gates: GateContext
    live: Any  # the LIVE exchange client
    live_streams: Mapping[str, tuple[bool, str, str]]  # stream -> (up, detail, since)
    notifiers: Sequence[Notifier]
    plugins: Sequence[PluginRecord]
    strategies: Collection[str]
    config_sections: Mapping[str, SectionParser]
    engine_running: bool = False
    notify: bool = False
    actor: str = "heliosd"


CheckFn = Callable[[DoctorContext], Awaitable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn
    # What to do when the check itself raises or times out.
    fix: str = "see the daemon's log (journalctl -u heliosd) for the error"

    def timeout_s(self, settings: Settings) -> float:
        if self.name == NOTIFY:
            urls = max(1, len(settings.notify.urls))
            return float(settings.notify.timeout_s) * urls + NOTIFY_MARGIN_S
        return float(settings.risk.gate_timeout_s)


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


# --------------------------------------------------------------------------- VALR


async def check_venue(ctx: DoctorContext) -> Finding:
    """The ``venue_online`` gate: VALR's ``/v1/public/status`` read now says online."""
    v = ctx.settings.valr
    result = await VenueOnline().check(ctx.gates)
    if result.ok:
        return Finding(OK, f"{v.label} at {v.rest_url} is online")
    if result.reason.startswith("cannot check"):
        fix = f"check that this machine reaches {v.rest_url} (DNS, firewall, proxy)"
    else:
        fix = f"wait until {v.label} is online again (maintenance): LIVE orders are refused"
    return Finding(FAIL, result.reason, fix)


async def check_credentials(ctx: DoctorContext) -> Finding:
    """The ``valr_credentials`` gate, and the key's permissions shown."""
    v = ctx.settings.valr
    if not v.has_credentials:
        return Finding(
            FAIL,
            "valr.api_key and valr.api_secret are not both set",
            "create a VALR API key with View access and Trade only; set both keys",
        )
    result, info = await credentials_verdict(ctx.gates)
    shown = ""
    if info is not None:
        names = ", ".join(sorted(info.permissions)) or "none"
        shown = f"key {info.label!r}, permissions: {names}"
    if result.ok:
        return Finding(OK, shown)
    detail = f"{result.reason} ({shown})" if shown else result.reason
    if info is None:
        fix = "check valr.api_key / valr.api_secret (a deleted or mistyped key fails here)"
    else:
        fix = (
            "create a VALR API key with View access and Trade only (never Withdraw or"
            " Transfer), set it in valr.api_key / valr.api_secret, and restart"
        )
    return Finding(FAIL, detail, fix)


async def check_clock(ctx: DoctorContext) -> Finding:
    """The ``clock_skew`` gate: VALR's server time against ours, measured now."""
    limit = float(ctx.settings.valr.max_clock_skew_s)
    result = await ClockSkew().check(ctx.gates)
    where = f"limit valr.max_clock_skew_s = {limit:g} s"
    if result.ok:
        skew = getattr(ctx.live, "clock_skew_ms", None)
        measured = f"{skew} ms" if isinstance(skew, int) else "within bounds"
        return Finding(OK, f"clock skew {measured} ({where})")
    return Finding(
        FAIL,
        f"{result.reason} ({where})",
        "synchronise this machine's clock (NTP: timedatectl set-ntp true; chronyc tracking)",
    )


# --------------------------------------------------------------------------- streams


def _stream(ctx: DoctorContext, name: str) -> tuple[bool, str, str]:
    return ctx.live_streams.get(name, (False, "never connected", ""))


def _since(since: str) -> str:
    return f" since {since}" if since else ""


async def check_trade_stream(ctx: DoctorContext) -> Finding:
    """Prices: the trade stream is up and has heard from VALR lately."""
    up, detail, since = _stream(ctx, "trade")
    url = ctx.settings.valr.ws_url
    if not up:
        return Finding(
            FAIL,
            f"trade stream down{_since(since)}: {detail}",
            f"check that this machine reaches {url}; the client reconnects by itself",
        )
    age_of: Any = getattr(ctx.live, "last_message_age_s", None)
    if not callable(age_of):
        return Finding(OK, f"trade stream up{_since(since)}")
    age: Any = age_of("trade")
    if not isinstance(age, int | float):
        return Finding(
            FAIL,
            f"trade stream up{_since(since)} but no message received yet",
            "wait a few seconds and ask again; if it stays silent, restart heliosd",
        )
    bound = float(ctx.settings.risk.max_quote_age_s)
    text = f"trade stream up{_since(since)}, last message {age:.1f} s ago"
    if age > bound:
        return Finding(
            WARN,
            f"{text} (over risk.max_quote_age_s = {bound:g} s)",
            "prices this old refuse LIVE orders; if it stays silent, restart heliosd",
        )
    return Finding(OK, text)


async def check_account_stream(ctx: DoctorContext) -> Finding:
    """Fills and balances: the account stream is up (it only runs with credentials)."""
    if not ctx.settings.valr.has_credentials:
        return Finding(
            FAIL,
            "account stream not running: no VALR credentials",
            "set valr.api_key and valr.api_secret",
        )
    up, detail, since = _stream(ctx, "account")
    if not up:
        return Finding(
            FAIL,
            f"account stream down{_since(since)}: {detail}",
            f"check the credentials and that this machine reaches {ctx.settings.valr.ws_url}",
        )
    return Finding(OK, f"account stream up{_since(since)}")


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


# --------------------------------------------------------------------------- running

CONFIG = "config"
STATE_DIR = "state_dir"
BACKUP_DIR = "backup_dir"
TRADE_STREAM = "trade_stream"
ACCOUNT_STREAM = "account_stream"
NOTIFY = "notify"
PLUGINS = "plugins"
ENGINE = "engine"

# In the order they are reported. The gate-backed checks carry the gate's name.
CHECKS: Final[tuple[Check, ...]] = (
    Check(CONFIG, check_config),
    Check(STATE_DIR, check_state_dir),
    Check(BACKUP_DIR, check_backup_dir),
    Check("venue_online", check_venue),
    Check("valr_credentials", check_credentials),
    Check("clock_skew", check_clock),
    Check(TRADE_STREAM, check_trade_stream),
    Check(ACCOUNT_STREAM, check_account_stream),
    Check(NOTIFY, check_notify),
    Check("risk_config_complete", check_risk_config),
    Check(PLUGINS, check_plugins),
    Check(ENGINE, check_engine),
)


async def _run_one(check: Check, ctx: DoctorContext) -> CheckResult:
    timeout = check.timeout_s(ctx.settings)
    try:
        found = await asyncio.wait_for(check.run(ctx), timeout)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return CheckResult(check.name, FAIL, f"check timed out after {timeout:g} s", check.fix)
    except HeliosError as exc:
        return CheckResult(check.name, FAIL, f"check failed: {exc.message}", check.fix)
    except Exception as exc:
        log.exception("doctor check %s raised", check.name)
        return CheckResult(
            check.name, FAIL, f"check failed: {type(exc).__name__}: {exc}", check.fix
        )
    if found.status not in (OK, WARN, FAIL):  # a check's bug must not read as a pass
        return CheckResult(check.name, FAIL, f"check gave status {found.status!r}", check.fix)
    return CheckResult(check.name, found.status, found.detail, found.fix)


async def run_doctor(ctx: DoctorContext, checks: Sequence[Check] = CHECKS) -> dict[str, Any]:
    """Every check, concurrently, each under its own timeout; the answer of GET /api/doctor."""
    results = await asyncio.gather(*(_run_one(c, ctx) for c in checks))
    return {
        "ok": all(r.status != FAIL for r in results),
        "checks": [r.as_json() for r in results],
    }


__all__ = [
    "CHECKS",
    "DISK_FAIL_BYTES",
    "DISK_WARN_BYTES",
    "Check",
    "CheckResult",
    "DoctorContext",
    "Finding",
    "probe_dir",
    "run_doctor",
]
