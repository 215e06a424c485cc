"""Secrets in the config: a value that never shows itself, and how a reference is resolved.

A secret is given inline (tests only) or by reference: ``{"$env" = "NAME"}``,
``{"$file" = "/path"}`` or ``{"$credential" = "NAME"}`` (systemd's
``$CREDENTIALS_DIRECTORY``). :func:`resolve_secret` is the config decoder's hook for the
:class:`Secret` type; its errors describe the reference, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


_FORMS = 'must be a string or one of {"$env"=...}, {"$file"=...}, {"$credential"=...}'


def resolve_secret(value: Any) -> Secret:
    """A literal string or a resolved reference; ValueError (without the value) otherwise.

    Blank means "not set" and is handled by the caller (the key's type is ``Secret | None``).
    """
    if isinstance(value, str):
        return Secret(value, "inline")
    if not (isinstance(value, dict) and len(value) == 1):
        raise ValueError(_FORMS)
    ((kind, ref),) = value.items()
    if kind not in ("$env", "$file", "$credential"):
        raise ValueError(_FORMS)  # the reference's text may be the secret itself: not shown
    if not isinstance(ref, str):
        raise ValueError(f"{kind} must be given a string, got {type(ref).__name__}")
    if kind == "$env":
        if ref not in os.environ:
            raise ValueError(f"environment variable {ref} is not set")
        return Secret(os.environ[ref].strip(), f"$env:{ref}")
    if kind == "$credential":
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise ValueError("$credential needs systemd's CREDENTIALS_DIRECTORY")
        path = Path(cred_dir) / ref
    else:
        path = Path(ref).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return Secret(text, f"{kind}:{ref}")
