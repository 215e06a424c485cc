"""Configuration: TOML -> raw tables -> typed, frozen settings (msgspec Structs).

Two phases (as style.md asks): ``tomllib`` reads raw data, then ``msgspec.convert`` decodes
the core sections into the Structs below, whose annotations carry every rule (types,
``Meta`` constraints, the checks of :mod:`heliosd.core.config_decode`); the few rules that
relate two keys are in :func:`_validate`. Unknown sections and keys and bad values raise
:class:`ConfigError` naming the key and the file; the daemon exits 78 on it. Secrets are
given by reference and resolved at load time (:mod:`heliosd.core.secret`); a
:class:`Secret`'s ``repr`` and ``str`` never show the value.

Relative paths are taken relative to the working directory (``make run`` uses ``./var``);
production configs use absolute paths.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Meta

from heliosd.core.config_decode import Check, Range, decode_value
from heliosd.core.config_values import (
    EVENT_KINDS,
    LOG_LEVELS,
    Amount,
    Balances,
    Currency,
    Events,
    HttpListen,
    LogLevel,
    OctalMode,
    OptSecret,
    OptStr,
    Pairs,
    Parser,
    Paths,
    RestUrl,
    Secrets,
    TimeZone,
    WsUrl,
    p_balances,
    p_bool,
    p_currency,
    p_decimal,
    p_events,
    p_http_listen,
    p_int,
    p_ints,
    p_log_level,
    p_mode_octal,
    p_opt_str,
    p_pairs,
    p_path,
    p_paths,
    p_secret,
    p_secrets,
    p_str,
    p_strs,
    p_timezone,
)
from heliosd.core.errors import ConfigError
from heliosd.core.secret import Secret

__all__ = [
    "EVENT_KINDS",
    "LOG_LEVELS",
    "MAX_QUOTE_AGE_S",
    "SECTIONS",
    "DaemonSettings",
    "EngineSettings",
    "ExchangeSettings",
    "NotifySettings",
    "PaperSettings",
    "Parser",
    "RiskSettings",
    "Secret",
    "Settings",
    "ValrSettings",
    "load_settings",
    "p_balances",
    "p_bool",
    "p_currency",
    "p_decimal",
    "p_events",
    "p_http_listen",
    "p_int",
    "p_ints",
    "p_log_level",
    "p_mode_octal",
    "p_opt_str",
    "p_pairs",
    "p_path",
    "p_paths",
    "p_secret",
    "p_secrets",
    "p_str",
    "p_strs",
    "p_timezone",
    "parse_settings",
    "read_toml",
    "risk_config_problems",
    "section_keys",
]

# The largest max_quote_age_s accepted: a price an hour old is no market price.
MAX_QUOTE_AGE_S = Decimal(3600)
_QUOTE_AGE = Range(gt=0, le=int(MAX_QUOTE_AGE_S))
_PERCENT = Range(gt=0, le=100)
_POSITIVE = Range(gt=0)
_FEE = Range(gt=-1, lt=10, error="must be a percentage between -1 and 10, got {value}")
_SLIPPAGE = Range(ge=0, lt=10, error="must be in [0, 10), got {value}")
_FRACTION = Range(gt=0, le=1, error="must be in (0, 1], got {value}")
_NOT_NEGATIVE = Range(ge=0, error="must be zero or more, got {value}")


def _refuse_false(value: bool) -> None:
    if not value:
        raise ValueError(
            "cannot be false: a key that can withdraw or transfer funds out is always refused"
            " (the gate can only be made stricter, with valr.refused_permissions)"
        )


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A table of the config: immutable, and an unknown key in the file is an error."""

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (the Struct's ``dataclasses.replace``); not validated."""
        return msgspec.structs.replace(self, **changes)


# --------------------------------------------------------------------------- sections


class DaemonSettings(_Section, frozen=True):
    state_dir: Path = Path("/var/lib/heliosd")
    control_socket: Path = Path("/run/heliosd/heliosd.sock")
    plugin_dirs: Paths = ()
    log_level: LogLevel = "info"
    # Optional TCP control listener, "127.0.0.1:8100"; off unless set. Loopback only.
    http_listen: HttpListen = None
    http_token: OptSecret = None
    # Unix users allowed on the control socket besides root and the daemon's own uid.
    # Empty = anyone who can open the socket file (mode 0660 limits that to the group).
    allowed_uids: tuple[int, ...] = ()
    socket_mode: OctalMode = 0o660
    # Plugins an operator blocks by name (essential plugins cannot be blocked).
    blocked_plugins: tuple[str, ...] = ()
    shutdown_timeout_s: Amount = Decimal(20)
    # heliosd's own backups kept in backup_dir after each pre-LIVE backup; 0 = keep all.
    keep_backups: Annotated[
        int, Meta(ge=0, extra={"error": "must be zero (keep all) or more, got {value}"})
    ] = 20
    # Equity curve points (GET /api/equity) older than this are deleted (hourly).
    equity_retention_days: Annotated[
        int, Meta(ge=1, extra={"error": "must be at least 1, got {value}"})
    ] = 90

    @property
    def db_path(self) -> Path:
        return self.state_dir / "heliosd.db"

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"


class ExchangeSettings(_Section, frozen=True):
    live: str = "valr"
    paper: str = "paper"


class ValrSettings(_Section, frozen=True):
    rest_url: RestUrl = "https://api.valr.com"
    ws_url: WsUrl = "wss://api.valr.com"
    api_key: OptSecret = None
    api_secret: OptSecret = None
    subaccount_id: OptStr = None
    pairs: Pairs = ("BTCZAR", "ETHZAR")
    # A key that can move funds out (Withdraw, Internal Transfer) never sits on a trading
    # box: the credentials gate always refuses one. This key may only be true (kept so old
    # configs still load); ``refused_permissions`` names more permissions to refuse.
    refuse_withdraw_permission: Annotated[bool, Check(_refuse_false)] = True
    refused_permissions: tuple[str, ...] = ()
    max_clock_skew_s: Amount = Decimal(2)
    request_timeout_s: Annotated[Decimal, _POSITIVE] = Decimal(10)
    # VALR's dead-man's switch: after authenticating the account WebSocket, ask VALR to
    # cancel every open order if that socket drops (the daemon died or lost its network).
    cancel_on_disconnect: bool = False
    # LIVE fill-completeness reconciliation: every this many seconds (and when an order
    # reaches a terminal state) stored fills are compared with each order's filled quantity.
    reconcile_interval_s: Annotated[Decimal, _POSITIVE] = Decimal(30)
    # Label shown wherever LIVE is displayed, e.g. "VALR (simulated)" in the demo.
    label: str = "VALR"

    @property
    def has_credentials(self) -> bool:
        return self.api_key is not None and self.api_secret is not None


class PaperSettings(_Section, frozen=True):
    starting_balances: Balances = msgspec.field(default_factory=lambda: {"ZAR": Decimal(100000)})
    maker_fee_pct: Annotated[Decimal, _FEE] = Decimal(0)
    taker_fee_pct: Annotated[Decimal, _FEE] = Decimal("0.1")
    slippage_pct: Annotated[Decimal, _SLIPPAGE] = Decimal("0.05")
    # Market orders (and limits that would take) are refused, and resting limits are not
    # matched, on a quote older than this (heliosd's receive time). VALR's BTCZAR and ETHZAR
    # books change many times a minute, so 30 s of silence means a dead feed, not a quiet
    # market, and an honest refusal costs less than a fill at a price that has moved.
    # 0 cannot mean "off": fills at a price of unknown age are the defect this key prevents.
    # The upper bound keeps a huge value from switching the check off in all but name.
    max_quote_age_s: Annotated[Decimal, _QUOTE_AGE] = Decimal(30)


class RiskSettings(_Section, frozen=True):
    reference_currency: Currency = "ZAR"
    max_position_pct: Annotated[Decimal, _PERCENT] = Decimal(20)
    max_leverage: Annotated[Decimal, _PERCENT] = Decimal(3)
    daily_loss_pct: Annotated[Decimal, _PERCENT] = Decimal(5)
    max_drawdown_pct: Annotated[Decimal, _PERCENT] = Decimal(15)
    timezone: TimeZone = "Africa/Johannesburg"
    enforce_in_paper: bool = True
    # Close positions at market on an emergency stop. Off by default: a human decides.
    flatten_on_emergency_stop: bool = False
    kelly_fraction: Annotated[Decimal, _FRACTION] = Decimal("0.5")
    rule_timeout_s: Annotated[Decimal, _POSITIVE] = Decimal("0.5")
    gate_timeout_s: Annotated[Decimal, _POSITIVE] = Decimal(10)
    # A LIVE risk-increasing order needs a price at most this old; a holding above dust that
    # cannot be valued this fresh puts the account in REDUCING (stale_prices).
    max_quote_age_s: Annotated[Decimal, _QUOTE_AGE] = Decimal(10)
    # Holdings worth less than this (reference currency) never block anything (fee dust).
    dust_value: Annotated[Decimal, _NOT_NEGATIVE] = Decimal(10)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class NotifySettings(_Section, frozen=True):
    # Apprise URLs carry tokens, so each is a Secret.
    urls: Secrets = ()
    events: Events = EVENT_KINDS
    # Also notify PAPER orders and fills (off: only LIVE trades are worth a message).
    paper_trades: bool = False
    max_attempts: Annotated[int, Meta(ge=1, extra={"error": "must be at least 1, got {value}"})] = (
        20
    )
    timeout_s: Amount = Decimal(10)


class EngineSettings(_Section, frozen=True):
    strategy: OptStr = None
    pairs: Pairs = ("BTCZAR", "ETHZAR")
    interval_s: Annotated[Decimal, _POSITIVE] = Decimal(5)
    autostart: bool = False


class Settings(_Section, frozen=True):
    daemon: DaemonSettings = msgspec.field(default_factory=DaemonSettings)
    exchange: ExchangeSettings = msgspec.field(default_factory=ExchangeSettings)
    valr: ValrSettings = msgspec.field(default_factory=ValrSettings)
    paper: PaperSettings = msgspec.field(default_factory=PaperSettings)
    risk: RiskSettings = msgspec.field(default_factory=RiskSettings)
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    # Each plugin section's parsed object, by section name (heliosd_config_sections).
    plugins: Mapping[str, Any] = msgspec.field(default_factory=dict)
    source: str = "<defaults>"


SECTIONS: dict[str, type[_Section]] = {
    "daemon": DaemonSettings,
    "exchange": ExchangeSettings,
    "valr": ValrSettings,
    "paper": PaperSettings,
    "risk": RiskSettings,
    "notify": NotifySettings,
    "engine": EngineSettings,
}


def section_keys() -> dict[str, tuple[str, ...]]:
    """Every documented key, by section (docs/configuration.md is checked against this)."""
    return {name: cls.__struct_fields__ for name, cls in SECTIONS.items()}


# --------------------------------------------------------------------------- loading


def _validate(settings: Settings) -> None:
    """The rules that relate two keys (each key's own rules are in its annotation)."""
    src = settings.source
    r = settings.risk
    if r.daily_loss_pct >= r.max_drawdown_pct:
        # A daily-loss halt that can only fire after the drawdown emergency stop is a typo.
        raise ConfigError(
            f"must be below risk.max_drawdown_pct ({r.daily_loss_pct} >= {r.max_drawdown_pct})",
            key="risk.daily_loss_pct",
            source=src,
        )
    v = settings.valr
    if (v.api_key is None) != (v.api_secret is None):
        raise ConfigError(
            "api_key and api_secret must be given together", key="valr.api_secret", source=src
        )
    if settings.daemon.http_listen and settings.daemon.http_token is None:
        raise ConfigError(
            "is required when daemon.http_listen is set", key="daemon.http_token", source=src
        )


def parse_settings(
    data: Mapping[str, Any],
    source: str = "<config>",
    plugin_sections: Mapping[str, Callable[[Mapping[str, Any], str], Any]] | None = None,
) -> Settings:
    """Validate raw TOML data into Settings; raises ConfigError naming the key and source."""
    core: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    plugin_sections = plugin_sections or {}
    for name, raw in data.items():
        if name in SECTIONS:
            core[name] = raw
        elif name in plugin_sections:
            if not isinstance(raw, dict):
                raise ConfigError("must be a table", key=name, source=source)
            plugins[name] = plugin_sections[name](raw, source)
        else:
            known = ", ".join([*SECTIONS, *plugin_sections])
            raise ConfigError(f"unknown section; known sections: {known}", key=name, source=source)
    settings: Settings = decode_value(Settings, core, "", source)
    settings = settings.replace(plugins=plugins, source=source)
    _validate(settings)
    return settings


def load_settings(
    path: str | os.PathLike[str],
    plugin_sections: Mapping[str, Callable[[Mapping[str, Any], str], Any]] | None = None,
) -> Settings:
    """Read and validate a TOML file. Every problem is a ConfigError (exit 78)."""
    return parse_settings(read_toml(path), str(path), plugin_sections)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's raw tables; a missing, unreadable or malformed file is a ConfigError."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None


def risk_config_problems(settings: Settings) -> list[str]:
    """What makes the risk configuration incomplete for LIVE (docs/configuration.md, [risk])."""
    r = settings.risk
    problems: list[str] = []
    if not Decimal(0) < r.max_position_pct <= 100:
        problems.append(f"max_position_pct {r.max_position_pct} not in (0, 100]")
    if not Decimal(1) <= r.max_leverage <= 10:
        problems.append(f"max_leverage {r.max_leverage} not in [1, 10]")
    if not Decimal(0) < r.daily_loss_pct < r.max_drawdown_pct <= 90:
        problems.append(
            f"need 0 < daily_loss_pct ({r.daily_loss_pct}) < max_drawdown_pct "
            f"({r.max_drawdown_pct}) <= 90"
        )
    if not any(p.endswith(r.reference_currency) for p in settings.valr.pairs):
        problems.append(f"no configured pair is quoted in {r.reference_currency}")
    if not settings.notify.urls:
        problems.append("no notification URL in [notify] urls")
    return problems
