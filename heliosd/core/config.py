"""Configuration: TOML -> raw tables -> validated, typed, frozen settings.

Two phases (as style.md asks): ``tomllib`` reads raw data, then each section is validated
field by field. Unknown keys and bad values raise :class:`ConfigError` naming the key and the
file; the daemon exits 78 on it. Secrets are given by reference and resolved at load time:
``{"$env" = "NAME"}``, ``{"$file" = "/path"}`` or ``{"$credential" = "name"}`` (systemd's
``$CREDENTIALS_DIRECTORY``). A secret is wrapped in :class:`Secret`, whose ``repr`` and
``str`` never show the value.

Relative paths are taken relative to the working directory (``make run`` uses ``./var``);
production configs use absolute paths.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from heliosd.core.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Secret:
    """A secret value that never shows itself in logs, reprs, exceptions or JSON."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "inline") -> None:
        self._value = value
        self.origin = origin  # "inline", "$env:NAME", "$file:/path", "$credential:name"

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden from {self.origin}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path = Path("/var/lib/heliosd")
    control_socket: Path = Path("/run/heliosd/heliosd.sock")
    plugin_dirs: tuple[Path, ...] = ()
    log_level: str = "info"
    # Optional TCP control listener, "127.0.0.1:8100"; off unless set. Loopback only.
    http_listen: str | None = None
    http_token: Secret | None = None
    # Unix users allowed on the control socket besides root and the daemon's own uid.
    # Empty = anyone who can open the socket file (mode 0660 limits that to the group).
    allowed_uids: tuple[int, ...] = ()
    socket_mode: int = 0o660
    # Plugins an operator blocks by name (essential plugins cannot be blocked).
    blocked_plugins: tuple[str, ...] = ()
    shutdown_timeout_s: Decimal = Decimal(20)
    # heliosd's own backups kept in backup_dir after each pre-LIVE backup; 0 = keep all.
    keep_backups: int = 20
    # Equity curve points (GET /api/equity) older than this are deleted (hourly).
    equity_retention_days: int = 90

    @property
    def db_path(self) -> Path:
        return self.state_dir / "heliosd.db"

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"


@dataclass(frozen=True)
class ExchangeSettings:
    live: str = "valr"
    paper: str = "paper"


@dataclass(frozen=True)
class ValrSettings:
    rest_url: str = "https://api.valr.com"
    ws_url: str = "wss://api.valr.com"
    api_key: Secret | None = None
    api_secret: Secret | None = None
    subaccount_id: str | None = None
    pairs: tuple[str, ...] = ("BTCZAR", "ETHZAR")
    # A key that can move funds out (Withdraw, Internal Transfer) never sits on a trading
    # box: the credentials gate always refuses one. This key may only be true (kept so old
    # configs still load); ``refused_permissions`` names more permissions to refuse.
    refuse_withdraw_permission: bool = True
    refused_permissions: tuple[str, ...] = ()
    max_clock_skew_s: Decimal = Decimal(2)
    request_timeout_s: Decimal = Decimal(10)
    # VALR's dead-man's switch: after authenticating the account WebSocket, ask VALR to
    # cancel every open order if that socket drops (the daemon died or lost its network).
    cancel_on_disconnect: bool = False
    # LIVE fill-completeness reconciliation: every this many seconds (and when an order
    # reaches a terminal state) stored fills are compared with each order's filled quantity.
    reconcile_interval_s: Decimal = Decimal(30)
    # Label shown wherever LIVE is displayed, e.g. "VALR (simulated)" in the demo.
    label: str = "VALR"

    @property
    def has_credentials(self) -> bool:
        return self.api_key is not None and self.api_secret is not None


@dataclass(frozen=True)
class PaperSettings:
    starting_balances: Mapping[str, Decimal] = field(
        default_factory=lambda: {"ZAR": Decimal(100000)}
    )
    maker_fee_pct: Decimal = Decimal(0)
    taker_fee_pct: Decimal = Decimal("0.1")
    slippage_pct: Decimal = Decimal("0.05")
    # Market orders (and limits that would take) are refused, and resting limits are not
    # matched, on a quote older than this (heliosd's receive time). VALR's BTCZAR and ETHZAR
    # books change many times a minute, so 30 s of silence means a dead feed, not a quiet
    # market, and an honest refusal costs less than a fill at a price that has moved.
    max_quote_age_s: Decimal = Decimal(30)


@dataclass(frozen=True)
class RiskSettings:
    reference_currency: str = "ZAR"
    max_position_pct: Decimal = Decimal(20)
    max_leverage: Decimal = Decimal(3)
    daily_loss_pct: Decimal = Decimal(5)
    max_drawdown_pct: Decimal = Decimal(15)
    timezone: str = "Africa/Johannesburg"
    enforce_in_paper: bool = True
    # Close positions at market on an emergency stop. Off by default: a human decides.
    flatten_on_emergency_stop: bool = False
    kelly_fraction: Decimal = Decimal("0.5")
    rule_timeout_s: Decimal = Decimal("0.5")
    gate_timeout_s: Decimal = Decimal(10)
    # A LIVE risk-increasing order needs a price at most this old; a holding above dust that
    # cannot be valued this fresh puts the account in REDUCING (stale_prices).
    max_quote_age_s: Decimal = Decimal(10)
    # Holdings worth less than this (reference currency) never block anything (fee dust).
    dust_value: Decimal = Decimal(10)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


EVENT_KINDS = (
    "order",
    "fill",
    "mode_change",
    "live_refused",
    "risk_rejected",
    "halt",
    "emergency_stop",
    "resume",
    "connection_lost",
    "connection_restored",
    "integrity",
    "strategy_error",
    "positions_close",
)


@dataclass(frozen=True)
class NotifySettings:
    # Apprise URLs carry tokens, so each is a Secret.
    urls: tuple[Secret, ...] = ()
    events: tuple[str, ...] = EVENT_KINDS
    # Also notify PAPER orders and fills (off: only LIVE trades are worth a message).
    paper_trades: bool = False
    max_attempts: int = 20
    timeout_s: Decimal = Decimal(10)


@dataclass(frozen=True)
class EngineSettings:
    strategy: str | None = None
    pairs: tuple[str, ...] = ("BTCZAR", "ETHZAR")
    interval_s: Decimal = Decimal(5)
    autostart: bool = False


@dataclass(frozen=True)
class Settings:
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    valr: ValrSettings = field(default_factory=ValrSettings)
    paper: PaperSettings = field(default_factory=PaperSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    plugins: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    def replace(self, **sections: Any) -> Settings:
        return dataclasses.replace(self, **sections)


# The largest [paper] max_quote_age_s accepted: a price an hour old is no market price.
MAX_QUOTE_AGE_S = Decimal(3600)

# --------------------------------------------------------------------------- value parsers

T = TypeVar("T")
Parser = Callable[[Any, str, str], Any]


def _fail(key: str, source: str, message: str) -> ConfigError:
    return ConfigError(message, key=key, source=source)


def p_str(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str):
        raise _fail(key, source, f"must be a string, got {type(value).__name__}")
    return value


def p_opt_str(value: Any, key: str, source: str) -> str | None:
    if value in (None, ""):
        return None
    return p_str(value, key, source)


def p_bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, source, f"must be true or false, got {value!r}")
    return value


def p_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, source, f"must be an integer, got {value!r}")
    return value


def p_decimal(value: Any, key: str, source: str) -> Decimal:
    """Amounts are decimal strings or numbers; floats are read via their text (no binary noise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(key, source, f"must be a number or a decimal string, got {value!r}")
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise _fail(key, source, f"is not a decimal number: {value!r}") from None
    if not out.is_finite():
        raise _fail(key, source, f"must be finite, got {value!r}")
    return out


def p_path(value: Any, key: str, source: str) -> Path:
    return Path(p_str(value, key, source)).expanduser()


def p_paths(value: Any, key: str, source: str) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _fail(key, source, "must be a list of paths")
    return tuple(p_path(v, f"{key}[{i}]", source) for i, v in enumerate(value))


def p_strs(value: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(key, source, "must be a list of strings")
    return tuple(p_str(v, f"{key}[{i}]", source) for i, v in enumerate(value))


def p_pairs(value: Any, key: str, source: str) -> tuple[str, ...]:
    pairs = p_strs(value, key, source)
    for i, pair in enumerate(pairs):
        if not pair.isalnum() or pair.upper() != pair:
            raise _fail(f"{key}[{i}]", source, f"is not a pair symbol like BTCZAR: {pair!r}")
    return pairs


def p_ints(value: Any, key: str, source: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _fail(key, source, "must be a list of integers")
    return tuple(p_int(v, f"{key}[{i}]", source) for i, v in enumerate(value))


def p_log_level(value: Any, key: str, source: str) -> str:
    level = p_str(value, key, source).lower()
    if level not in LOG_LEVELS:
        raise _fail(key, source, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def p_timezone(value: Any, key: str, source: str) -> str:
    name = p_str(value, key, source)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(key, source, f"unknown time zone {name!r}") from None
    return name


def p_currency(value: Any, key: str, source: str) -> str:
    code = p_str(value, key, source)
    if not code.isalnum() or code.upper() != code or not 2 <= len(code) <= 10:
        raise _fail(key, source, f"is not a currency code like ZAR: {code!r}")
    return code


def p_balances(value: Any, key: str, source: str) -> Mapping[str, Decimal]:
    if not isinstance(value, dict):
        raise _fail(key, source, 'must be a table like { ZAR = "100000", BTC = "0" }')
    out: dict[str, Decimal] = {}
    for cur, amount in value.items():
        sub = f"{key}.{cur}"
        out[p_currency(cur, sub, source)] = p_decimal(amount, sub, source)
        if out[cur] < 0:
            raise _fail(sub, source, "must not be negative")
    return out


def p_mode_octal(value: Any, key: str, source: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise _fail(key, source, f'must be an octal mode like "0660", got {value!r}') from None
    mode = p_int(value, key, source)
    if mode & 0o007:
        raise _fail(key, source, "must not give any access to other users (world bits set)")
    return mode


def p_secret(value: Any, key: str, source: str) -> Secret | None:
    """A literal string, or a reference: {"$env"=NAME} | {"$file"=PATH} | {"$credential"=NAME}."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return Secret(value, "inline")
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        ref = p_str(ref, f"{key}.{kind}", source)
        if kind == "$env":
            if ref not in os.environ:
                raise _fail(key, source, f"environment variable {ref} is not set")
            return Secret(os.environ[ref].strip(), f"$env:{ref}")
        if kind in ("$file", "$credential"):
            if kind == "$credential":
                cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
                if not cred_dir:
                    raise _fail(key, source, "$credential needs systemd's CREDENTIALS_DIRECTORY")
                path = Path(cred_dir) / ref
            else:
                path = Path(ref).expanduser()
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _fail(
                    key, source, f"cannot read secret file {path}: {exc.strerror}"
                ) from None
            return Secret(text, f"{kind}:{ref}")
    raise _fail(
        key, source, 'must be a string or one of {"$env"=...}, {"$file"=...}, {"$credential"=...}'
    )


def p_secrets(value: Any, key: str, source: str) -> tuple[Secret, ...]:
    if not isinstance(value, list):
        raise _fail(key, source, "must be a list")
    out = []
    for i, item in enumerate(value):
        secret = p_secret(item, f"{key}[{i}]", source)
        if secret is not None:
            out.append(secret)
    return tuple(out)


def p_events(value: Any, key: str, source: str) -> tuple[str, ...]:
    events = p_strs(value, key, source)
    for i, ev in enumerate(events):
        if ev not in EVENT_KINDS:
            raise _fail(
                f"{key}[{i}]", source, f"unknown event {ev!r}; known: {', '.join(EVENT_KINDS)}"
            )
    return events


def p_http_listen(value: Any, key: str, source: str) -> str | None:
    text = p_opt_str(value, key, source)
    if text is None or text.lower() == "off":
        return None
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1") or not port.isdigit():
        raise _fail(key, source, f"must be a loopback address like 127.0.0.1:8100, got {text!r}")
    return text


_PARSERS: dict[type, dict[str, Parser]] = {
    DaemonSettings: {
        "state_dir": p_path,
        "control_socket": p_path,
        "plugin_dirs": p_paths,
        "log_level": p_log_level,
        "http_listen": p_http_listen,
        "http_token": p_secret,
        "allowed_uids": p_ints,
        "socket_mode": p_mode_octal,
        "blocked_plugins": p_strs,
        "shutdown_timeout_s": p_decimal,
        "keep_backups": p_int,
        "equity_retention_days": p_int,
    },
    ExchangeSettings: {"live": p_str, "paper": p_str},
    ValrSettings: {
        "rest_url": p_str,
        "ws_url": p_str,
        "api_key": p_secret,
        "api_secret": p_secret,
        "subaccount_id": p_opt_str,
        "pairs": p_pairs,
        "refuse_withdraw_permission": p_bool,
        "refused_permissions": p_strs,
        "max_clock_skew_s": p_decimal,
        "request_timeout_s": p_decimal,
        "cancel_on_disconnect": p_bool,
        "reconcile_interval_s": p_decimal,
        "label": p_str,
    },
    PaperSettings: {
        "starting_balances": p_balances,
        "maker_fee_pct": p_decimal,
        "taker_fee_pct": p_decimal,
        "slippage_pct": p_decimal,
        "max_quote_age_s": p_decimal,
    },
    RiskSettings: {
        "reference_currency": p_currency,
        "max_position_pct": p_decimal,
        "max_leverage": p_decimal,
        "daily_loss_pct": p_decimal,
        "max_drawdown_pct": p_decimal,
        "timezone": p_timezone,
        "enforce_in_paper": p_bool,
        "flatten_on_emergency_stop": p_bool,
        "kelly_fraction": p_decimal,
        "rule_timeout_s": p_decimal,
        "gate_timeout_s": p_decimal,
        "max_quote_age_s": p_decimal,
        "dust_value": p_decimal,
    },
    NotifySettings: {
        "urls": p_secrets,
        "events": p_events,
        "paper_trades": p_bool,
        "max_attempts": p_int,
        "timeout_s": p_decimal,
    },
    EngineSettings: {
        "strategy": p_opt_str,
        "pairs": p_pairs,
        "interval_s": p_decimal,
        "autostart": p_bool,
    },
}

SECTIONS: dict[str, type] = {
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
    return {name: tuple(_PARSERS[cls]) for name, cls in SECTIONS.items()}


def _parse_section(cls: type[T], raw: Any, name: str, source: str) -> T:
    if not isinstance(raw, dict):
        raise _fail(name, source, "must be a table")
    parsers = _PARSERS[cls]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in parsers:
            raise _fail(full, source, f"unknown key; known keys of [{name}]: {', '.join(parsers)}")
        values[key] = parsers[key](value, full, source)
    return cls(**values)


def _check_positive(value: Decimal, key: str, source: str, *, upper: Decimal | None = None) -> None:
    if value <= 0 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise _fail(key, source, f"must be above 0{bound}, got {value}")


def _validate(settings: Settings) -> None:
    src = settings.source
    r = settings.risk
    _check_positive(r.max_position_pct, "risk.max_position_pct", src, upper=Decimal(100))
    _check_positive(r.max_leverage, "risk.max_leverage", src, upper=Decimal(100))
    _check_positive(r.daily_loss_pct, "risk.daily_loss_pct", src, upper=Decimal(100))
    _check_positive(r.max_drawdown_pct, "risk.max_drawdown_pct", src, upper=Decimal(100))
    if r.daily_loss_pct >= r.max_drawdown_pct:
        # A daily-loss halt that can only fire after the drawdown emergency stop is a typo.
        raise _fail(
            "risk.daily_loss_pct", src,
            f"must be below risk.max_drawdown_pct ({r.daily_loss_pct} >= {r.max_drawdown_pct})",
        )  # fmt: skip
    _check_positive(r.rule_timeout_s, "risk.rule_timeout_s", src)
    _check_positive(r.gate_timeout_s, "risk.gate_timeout_s", src)
    _check_positive(r.max_quote_age_s, "risk.max_quote_age_s", src, upper=MAX_QUOTE_AGE_S)
    if r.dust_value < 0:
        raise _fail("risk.dust_value", src, f"must be zero or more, got {r.dust_value}")
    if not Decimal(0) < r.kelly_fraction <= Decimal(1):
        raise _fail("risk.kelly_fraction", src, f"must be in (0, 1], got {r.kelly_fraction}")
    p = settings.paper
    for key, val in (("maker_fee_pct", p.maker_fee_pct), ("taker_fee_pct", p.taker_fee_pct)):
        if not Decimal(-1) < val < Decimal(10):
            raise _fail(f"paper.{key}", src, f"must be a percentage between -1 and 10, got {val}")
    if not Decimal(0) <= p.slippage_pct < Decimal(10):
        raise _fail("paper.slippage_pct", src, f"must be in [0, 10), got {p.slippage_pct}")
    # 0 cannot mean "off": fills at a price of unknown age are the defect this key prevents.
    # The upper bound keeps a huge value from switching the check off in all but name.
    _check_positive(p.max_quote_age_s, "paper.max_quote_age_s", src, upper=MAX_QUOTE_AGE_S)
    _check_positive(settings.engine.interval_s, "engine.interval_s", src)
    _check_positive(settings.valr.request_timeout_s, "valr.request_timeout_s", src)
    _check_positive(settings.valr.reconcile_interval_s, "valr.reconcile_interval_s", src)
    if settings.daemon.keep_backups < 0:
        keep = settings.daemon.keep_backups
        raise _fail("daemon.keep_backups", src, f"must be zero (keep all) or more, got {keep}")
    if settings.daemon.equity_retention_days < 1:
        days = settings.daemon.equity_retention_days
        raise _fail("daemon.equity_retention_days", src, f"must be at least 1, got {days}")
    if settings.notify.max_attempts < 1:
        raise _fail("notify.max_attempts", src, "must be at least 1")
    v = settings.valr
    if not v.refuse_withdraw_permission:
        raise _fail(
            "valr.refuse_withdraw_permission", src,
            "cannot be false: a key that can withdraw or transfer funds out is always refused"
            " (the gate can only be made stricter, with valr.refused_permissions)",
        )  # fmt: skip
    if (v.api_key is None) != (v.api_secret is None):
        raise _fail("valr.api_secret", src, "api_key and api_secret must be given together")
    for key, url, schemes in (
        ("valr.rest_url", v.rest_url, ("https://", "http://")),
        ("valr.ws_url", v.ws_url, ("wss://", "ws://")),
    ):
        if not url.startswith(schemes):
            raise _fail(key, src, f"must start with {' or '.join(schemes)}, got {url!r}")
    if settings.daemon.http_listen and settings.daemon.http_token is None:
        raise _fail("daemon.http_token", src, "is required when daemon.http_listen is set")


def parse_settings(
    data: Mapping[str, Any],
    source: str = "<config>",
    plugin_sections: Mapping[str, Callable[[Mapping[str, Any], str], Any]] | None = None,
) -> Settings:
    """Validate raw TOML data into Settings; raises ConfigError naming the key and source."""
    sections: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    plugin_sections = plugin_sections or {}
    for name, raw in data.items():
        if name in SECTIONS:
            sections[name] = _parse_section(SECTIONS[name], raw, name, source)
        elif name in plugin_sections:
            if not isinstance(raw, dict):
                raise _fail(name, source, "must be a table")
            plugins[name] = plugin_sections[name](raw, source)
        else:
            known = ", ".join([*SECTIONS, *plugin_sections])
            raise _fail(name, source, f"unknown section; known sections: {known}")
    settings = Settings(**sections, plugins=plugins, source=source)
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
