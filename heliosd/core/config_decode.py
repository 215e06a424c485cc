"""Raw TOML values -> typed values with msgspec, failing with a ConfigError that names the key.

A config type is an ordinary type (a ``msgspec.Struct`` for a section) whose ``Annotated``
metadata says what msgspec cannot:

- ``msgspec.Meta`` constraints (``ge``, ``pattern``, ...) are msgspec's own; a Meta's
  ``extra={"error": "... {value!r}"}`` is the message when the constraint fails and
  ``extra={"shape": "..."}`` the message when the value has the wrong shape;
- :class:`Before` turns the TOML spelling into the typed one before msgspec sees it
  (``"0660"`` -> ``0o660``, ``""`` -> unset);
- :class:`Check` (and :class:`Range`, the bounds of a ``Decimal``, which ``Meta`` cannot
  carry) validates the decoded value.

``Before`` and ``Check`` apply to a whole value: the type given to :func:`decode_value`, a
field of a Struct, a field of a Struct field (the sections of ``Settings``); not to the
items of a list or table. ``Path`` and ``Secret`` are decoded by :func:`dec_hook`.

msgspec's errors (``Expected `int`, got `str` - at `$.risk.max_leverage```) are turned into
the messages heliosd has always given (``[risk.max_leverage] must be an integer, got 'x'``).
No message shows the value of a ``Secret``.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import msgspec

from heliosd.core.errors import ConfigError
from heliosd.core.secret import Secret, resolve_secret


class Invalid(ValueError):
    """A value refused by a Before or Check; ``at`` names a part of it (a table's key)."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


class Before:
    """Rewrite the raw TOML value before msgspec decodes it; raise :class:`Invalid` to refuse."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn


class Check:
    """Validate the decoded value; raise :class:`Invalid` (or ValueError) to refuse it."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn


class Range(Check):
    """Bounds of a Decimal (finite, then gt/ge/lt/le), with an optional message template."""

    __slots__ = ()

    def __init__(
        self,
        *,
        gt: int | None = None,
        ge: int | None = None,
        lt: int | None = None,
        le: int | None = None,
        error: str | None = None,
    ) -> None:
        words = [
            f"{word} {bound}"
            for word, bound in (("above", gt), ("at least", ge), ("below", lt), ("at most", le))
            if bound is not None
        ]
        template = error or f"must be {' and '.join(words)}, got {{value}}"

        def check(value: Decimal) -> None:
            finite(value)
            if (
                (gt is not None and not value > gt)
                or (ge is not None and not value >= ge)
                or (lt is not None and not value < lt)
                or (le is not None and not value <= le)
            ):
                raise Invalid(template.format(value=value))

        super().__init__(check)


def finite(value: Decimal) -> None:
    # msgspec reads "nan" and TOML's nan/inf as Decimals; no amount or duration is one.
    if not value.is_finite():
        raise Invalid(f"must be finite, got {value}")


def dec_hook(tp: Any, obj: Any) -> Any:
    """msgspec's decode hook for the types it does not know."""
    if tp is Secret:
        return resolve_secret(obj)
    if tp is Path:
        if not isinstance(obj, str):
            raise ValueError(f"must be a string, got {type(obj).__name__}")
        return Path(obj).expanduser()
    raise NotImplementedError(f"no decoder for {tp!r}")


def decode_value(tp: Any, value: Any, key: str, source: str) -> Any:
    """``value`` decoded as ``tp``; ConfigError naming ``key`` (or the part of it) if refused."""
    prepared = _before(tp, value, key, source)
    try:
        out = msgspec.convert(prepared, tp, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), tp, (value, prepared), key, source) from None
    _check(tp, out, prepared, key, source)
    return out


# --------------------------------------------------------------------------- types


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """The type under Annotated and ``| None``, and the metadata met on the way."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(tp) is Annotated:
            metadata.extend(tp.__metadata__)
            tp = tp.__origin__
            continue
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp, metadata


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _child(tp: Any, step: str | int) -> Any:
    """The type at ``step`` (a field, an index, a table key) inside the unwrapped ``tp``."""
    if _is_struct(tp):
        return _fields(tp).get(str(step), Any)
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (tuple, list, set, frozenset) and args:
        return args[0]
    if typing.get_origin(tp) in (dict, Mapping) and len(args) == 2:
        return args[1]
    return Any


# --------------------------------------------------------------------------- before / check


def _before(tp: Any, raw: Any, key: str, source: str) -> Any:
    inner, metadata = _unwrap(tp)
    for meta in metadata:
        if isinstance(meta, Before):
            try:
                raw = meta.fn(raw)
            except ValueError as exc:
                raise _refused(exc, key, source) from None
    if _is_struct(inner) and isinstance(raw, dict):
        fields = _fields(inner)
        raw = {
            name: _before(fields[name], value, _join(key, name), source)
            if name in fields
            else value
            for name, value in raw.items()
        }
    return raw


def _check(tp: Any, value: Any, raw: Any, key: str, source: str) -> None:
    inner, metadata = _unwrap(tp)
    if value is None:
        return  # an optional key left unset
    for meta in metadata:
        if isinstance(meta, Check):
            try:
                meta.fn(value)
            except ValueError as exc:
                raise _refused(exc, key, source) from None
    if _is_struct(inner) and isinstance(raw, dict):
        fields = _fields(inner)
        for name in raw:  # only what the file gave: the defaults are known to be valid
            _check(fields[name], getattr(value, name), raw[name], _join(key, name), source)


def _refused(exc: ValueError, key: str, source: str) -> ConfigError:
    at = exc.at if isinstance(exc, Invalid) else ""
    message = exc.message if isinstance(exc, Invalid) else str(exc)
    return ConfigError(message, key=_join(key, at) if at else key, source=source)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


# --------------------------------------------------------------------------- msgspec errors

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_TYPE_ERROR = re.compile(r"Expected `(\w+)(?: \| null)?`, got `(\w+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`")
_NOUNS: dict[Any, str] = {str: "strings", int: "integers", Path: "paths"}
_MISSING = object()


def _translate(text: str, tp: Any, data: tuple[Any, Any], key: str, source: str) -> ConfigError:
    """msgspec's ``message - at `$.a.b[0]``` as a ConfigError for key ``a.b[0]``.

    ``data`` is the value as given and as msgspec saw it (after the Before hooks): a message
    shows the value as given where it is still there (``"LOUD"``, not ``"loud"``).
    """
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$`"
    given, value = data
    for step in _STEP.finditer(where[1:-1]):
        inner, _ = _unwrap(tp)
        name, index = step.group(1), step.group(2)
        if name is not None:
            at: str | int = name
            key = _join(key, name)
        elif index is not None:
            at = int(index)
            key = f"{key}[{index}]"
        else:  # msgspec does not say which key of a table: find the first value refused
            at = _refused_key(value, _child(inner, ""))
            key = _join(key, str(at))
        tp = _child(inner, at)
        value, given = _item(value, at), _item(given, at)
    inner, metadata = _unwrap(tp)
    if given is not _MISSING:
        value = given
    unknown = _UNKNOWN.fullmatch(message)
    if unknown and _is_struct(inner):
        known = ", ".join(_fields(inner))
        return ConfigError(
            f"unknown key; known keys of [{key}]: {known}",
            key=_join(key, unknown.group(1)),
            source=source,
        )
    return ConfigError(_message(message, inner, metadata, value), key=key, source=source)


def _message(message: str, tp: Any, metadata: list[Any], value: Any) -> str:
    extra: dict[str, Any] = {}
    for meta in metadata:
        if isinstance(meta, msgspec.Meta) and meta.extra:
            extra.update(meta.extra)
    if tp is Secret:
        value = "<hidden>"  # never a secret's text in an error, even a malformed one
    wrong_type = _TYPE_ERROR.fullmatch(message)
    if wrong_type and "shape" in extra:
        return str(extra["shape"])
    if wrong_type:
        expected = wrong_type.group(1)
        if expected == "array":
            element, _ = _unwrap(_child(tp, 0))
            noun = _NOUNS.get(element)
            return f"must be a list of {noun}" if noun else "must be a list"
        texts = {
            "str": f"must be a string, got {type(value).__name__}",
            "bool": f"must be true or false, got {value!r}",
            "int": f"must be an integer, got {value!r}",
            "decimal": f"must be a number or a decimal string, got {value!r}",
            "object": "must be a table",
        }
        return texts.get(expected, f"must be a {expected}, got {type(value).__name__}")
    if message == "Invalid decimal string":
        return f"is not a decimal number: {value!r}"
    if "error" in extra:
        return str(extra["error"]).format(value=value)
    return message  # a decode hook's own message, or one of msgspec's without a value


def _item(container: Any, at: str | int) -> Any:
    if isinstance(container, dict):
        return container.get(at, _MISSING)
    if isinstance(container, list | tuple) and isinstance(at, int) and at < len(container):
        return container[at]
    return _MISSING


def _refused_key(table: Any, tp: Any) -> str:
    for name, value in table.items() if isinstance(table, dict) else ():
        try:
            msgspec.convert(value, tp, dec_hook=dec_hook)
        except msgspec.ValidationError:
            return str(name)
    return "..."
