"""The value types of the config, and the ``p_*`` parsers plugins build their sections from.

Each rule is written once, as an annotated type (see :mod:`heliosd.core.config_decode`):
the core sections use the type for their fields and ``p_X(value, key, source)`` decodes one
value with the same type, so a plugin's key is refused with the same words as a core one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta

from heliosd.core.config_decode import Before, Check, Invalid, decode_value, finite
from heliosd.core.secret import Secret

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

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


def _one_of(names: tuple[str, ...]) -> str:
    return f"^(?:{'|'.join(re.escape(n) for n in names)})$"


def _blank_is_unset(value: Any) -> Any:
    return None if value == "" else value


def _off_is_unset(value: Any) -> Any:
    return None if isinstance(value, str) and value.lower() in ("", "off") else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _drop_blanks(value: Any) -> Any:
    # An unset entry ("" from an optional reference) is skipped, not an error.
    return [v for v in value if v != ""] if isinstance(value, list) else value


def _octal(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return int(value, 8)
    except ValueError:
        raise Invalid(f'must be an octal mode like "0660", got {value!r}') from None


def _private_mode(mode: int) -> None:
    if mode & 0o007:
        raise Invalid("must not give any access to other users (world bits set)")


def _zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}") from None


_CURRENCY = r"^[A-Z0-9]{2,10}$"


def _balances(table: Mapping[str, Decimal]) -> None:
    for currency, amount in table.items():
        if not re.fullmatch(_CURRENCY, currency):
            raise Invalid(f"is not a currency code like ZAR: {currency!r}", at=currency)
        try:
            finite(amount)
        except Invalid as exc:
            raise Invalid(exc.message, at=currency) from None
        if amount < 0:
            raise Invalid("must not be negative", at=currency)


# --------------------------------------------------------------------------- types

# Money, rates and durations: exact decimals. A TOML float is read via its shortest text
# (0.1 is one tenth), booleans are refused, and so are NaN and the infinities.
Amount = Annotated[Decimal, Check(finite)]
OptStr = Annotated[str | None, Before(_blank_is_unset)]
Pair = Annotated[
    str,
    Meta(pattern=r"^[A-Z0-9]+$", extra={"error": "is not a pair symbol like BTCZAR: {value!r}"}),
]
Pairs = tuple[Pair, ...]
Currency = Annotated[
    str, Meta(pattern=_CURRENCY, extra={"error": "is not a currency code like ZAR: {value!r}"})
]
TimeZone = Annotated[str, Check(_zone)]
LogLevel = Annotated[
    str,
    Before(_lower),
    Meta(
        pattern=_one_of(LOG_LEVELS),
        extra={"error": f"must be one of {', '.join(LOG_LEVELS)}, got {{value!r}}"},
    ),
]
Event = Annotated[
    str,
    Meta(
        pattern=_one_of(EVENT_KINDS),
        extra={"error": f"unknown event {{value!r}}; known: {', '.join(EVENT_KINDS)}"},
    ),
]
Events = tuple[Event, ...]
Paths = Annotated[tuple[Path, ...], Before(_one_or_many)]
OctalMode = Annotated[int, Before(_octal), Check(_private_mode)]
HttpListen = Annotated[
    Annotated[
        str,
        Meta(
            pattern=r"^(?:127\.0\.0\.1|localhost|\[::1\]|::1):[0-9]+$",
            extra={"error": "must be a loopback address like 127.0.0.1:8100, got {value!r}"},
        ),
    ]
    | None,
    Before(_off_is_unset),
]
OptSecret = Annotated[Secret | None, Before(_blank_is_unset)]
Secrets = Annotated[tuple[Secret, ...], Before(_drop_blanks)]
Balances = Annotated[
    Mapping[str, Decimal],
    Meta(extra={"shape": 'must be a table like { ZAR = "100000", BTC = "0" }'}),
    Check(_balances),
]


def _starts_with(*schemes: str) -> Meta:
    return Meta(
        pattern="^(?:" + "|".join(re.escape(s) for s in schemes) + ")",
        extra={"error": f"must start with {' or '.join(schemes)}, got {{value!r}}"},
    )


RestUrl = Annotated[str, _starts_with("https://", "http://")]
WsUrl = Annotated[str, _starts_with("wss://", "ws://")]


# --------------------------------------------------------------------------- p_* parsers
# For plugins' own sections: p_X(raw value, "section.key", source) -> typed value, or a
# ConfigError naming the key (``key[i]`` for an item of a list).

Parser = Callable[[Any, str, str], Any]


def p_str(value: Any, key: str, source: str) -> str:
    return cast(str, decode_value(str, value, key, source))


def p_opt_str(value: Any, key: str, source: str) -> str | None:
    return cast("str | None", decode_value(OptStr, value, key, source))


def p_bool(value: Any, key: str, source: str) -> bool:
    return cast(bool, decode_value(bool, value, key, source))


def p_int(value: Any, key: str, source: str) -> int:
    return cast(int, decode_value(int, value, key, source))


def p_decimal(value: Any, key: str, source: str) -> Decimal:
    """Amounts are decimal strings or numbers; floats are read via their text (no binary noise)."""
    return cast(Decimal, decode_value(Amount, value, key, source))


def p_path(value: Any, key: str, source: str) -> Path:
    return cast(Path, decode_value(Path, value, key, source))


def p_paths(value: Any, key: str, source: str) -> tuple[Path, ...]:
    return cast("tuple[Path, ...]", decode_value(Paths, value, key, source))


def p_strs(value: Any, key: str, source: str) -> tuple[str, ...]:
    return cast("tuple[str, ...]", decode_value(tuple[str, ...], value, key, source))


def p_pairs(value: Any, key: str, source: str) -> tuple[str, ...]:
    return cast("tuple[str, ...]", decode_value(Pairs, value, key, source))


def p_ints(value: Any, key: str, source: str) -> tuple[int, ...]:
    return cast("tuple[int, ...]", decode_value(tuple[int, ...], value, key, source))


def p_log_level(value: Any, key: str, source: str) -> str:
    return cast(str, decode_value(LogLevel, value, key, source))


def p_timezone(value: Any, key: str, source: str) -> str:
    return cast(str, decode_value(TimeZone, value, key, source))


def p_currency(value: Any, key: str, source: str) -> str:
    return cast(str, decode_value(Currency, value, key, source))


def p_balances(value: Any, key: str, source: str) -> Mapping[str, Decimal]:
    return cast("Mapping[str, Decimal]", decode_value(Balances, value, key, source))


def p_mode_octal(value: Any, key: str, source: str) -> int:
    return cast(int, decode_value(OctalMode, value, key, source))


def p_secret(value: Any, key: str, source: str) -> Secret | None:
    """A literal string, or a reference: {"$env"=NAME} | {"$file"=PATH} | {"$credential"=NAME}."""
    return cast("Secret | None", decode_value(OptSecret, value, key, source))


def p_secrets(value: Any, key: str, source: str) -> tuple[Secret, ...]:
    return cast("tuple[Secret, ...]", decode_value(Secrets, value, key, source))


def p_events(value: Any, key: str, source: str) -> tuple[str, ...]:
    return cast("tuple[str, ...]", decode_value(Events, value, key, source))


def p_http_listen(value: Any, key: str, source: str) -> str | None:
    return cast("str | None", decode_value(HttpListen, value, key, source))
