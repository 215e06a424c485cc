"""Logging: one line per record on stderr, journald-aware, with secrets redacted.

Two line shapes, chosen by :func:`setup_logging`:

- on a terminal or a file:
  ``2025-01-31T10:00:00.123Z INFO heliosd.trading.router message key=value``
- when stderr is journald's stream (``$JOURNAL_STREAM`` names stderr's device and inode):
  ``<6>heliosd.trading.router message key=value`` -- the ``<N>`` prefix is the syslog priority
  journald stores, and journald stamps the time itself.

A record is always one line (journald would split a multi-line message into several
entries): newlines in the message become ``\\n`` and a traceback becomes an ``exc="..."``
field. ``extra={...}`` items are appended as ``key=value`` fields, except a journal event's
(:mod:`heliosd.notify.journal`), whose message carries them already.

Apprise's INFO chatter ("Notifying 1 service(s)") is logged at DEBUG (:class:`DemoteChatter`).

Every text registered with :func:`register_secret` is replaced by ``***`` in the message, its
arguments, extras and exception text before anything is written (:class:`RedactingFilter`,
and again over the finished line). Config loading registers every :class:`Secret` through
:func:`register_settings_secrets`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from heliosd.core.config import Secret
from heliosd.notify.journal import RECORD_ATTRS

REDACTED = "***"
# journald's native socket (systemd.journal-fields(7)); see heliosd.runtime.journald.
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)

_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def register_secret(value: str) -> None:
    """Redact ``value`` wherever it would appear in a log line from now on.

    Whitespace around the value is ignored (secret files end with a newline); an empty value
    is not registered.
    """
    global _pattern
    value = value.strip()
    if not value:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_settings_secrets(settings: object) -> int:
    """Register every :class:`Secret` reachable from ``settings``; returns how many."""
    found: list[Secret] = []
    seen: set[int] = set()

    def walk(obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Secret):
            found.append(obj)
        elif isinstance(obj, msgspec.Struct):  # the core sections
            for name in obj.__struct_fields__:
                walk(getattr(obj, name))
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # plugin sections
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, Mapping):
            for item in obj.values():
                walk(item)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for item in obj:
                walk(item)

    walk(settings)
    for secret in found:
        register_secret(secret.reveal())
    return len(found)


def forget_secrets() -> None:
    """Drop every registered secret (tests only)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record so no registered secret survives in it. Never drops a record.

    The message is rendered with its arguments first (a secret may be an argument), and an
    exception is rendered to text so the traceback's messages are redacted too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: still log something, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=\\' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def priority(levelno: int) -> int:
    """The syslog priority journald records for a logging level."""
    for threshold, prio in _PRIORITIES:
        if levelno >= threshold:
            return prio
    return 7  # debug


class LineFormatter(logging.Formatter):
    """One record, one line; see the module docstring for the two shapes."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        parts = [message]
        for key, value in record.__dict__.items():
            # A journal event's fields are in its message already (heliosd.notify.journal).
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in RECORD_ATTRS:
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={_quote(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={_quote(record.stack_info)}")
        body = " ".join(parts)
        if self.journald:
            line = f"<{priority(record.levelno)}>{record.name} {body}"
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            millis = int(record.msecs)
            line = f"{stamp}.{millis:03d}Z {record.levelname} {record.name} {body}"
        return redact(line)


# Libraries whose INFO lines are chatter, not news: Apprise says "Notifying 1 service(s)"
# for every notification; the journal line of what caused it is the news.
CHATTY_LOGGERS = ("apprise",)


class DemoteChatter(logging.Filter):
    """Turns the INFO records of :data:`CHATTY_LOGGERS` into DEBUG records, shown only when
    the root level is DEBUG. Their warnings and errors pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or record.levelno <= logging.DEBUG:
            return True
        if record.name.split(".", 1)[0] not in CHATTY_LOGGERS:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def stderr_is_journald() -> bool:
    """True when stderr is the journald stream systemd connected ($JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def setup_logging(
    level: str, *, journald: bool | None = None, journal_socket: Path | None = JOURNAL_SOCKET
) -> logging.Handler:
    """Configure the root logger: one redacting, single-line handler on ``sys.stderr``.

    ``level`` is a level name in any case (``info``). ``journald=None`` detects it from
    ``$JOURNAL_STREAM``. Under journald, when ``journal_socket`` exists, records go there in
    journald's native protocol with their fields (:mod:`heliosd.runtime.journald`; the
    stream is the fallback); ``journal_socket=None`` keeps to the stream. Calling again
    replaces the handler this function installed before (other handlers, such as a test's
    capture, are left alone). Returns the handler.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if journald is None:
        journald = stderr_is_journald()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_heliosd", False)]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(journald=journald))
    if journald and journal_socket is not None and journal_socket.is_socket():
        from heliosd.runtime.journald import JournaldHandler  # it builds on this module

        handler = JournaldHandler(handler, journal_socket)
    handler.addFilter(DemoteChatter())
    handler.addFilter(RedactingFilter())
    handler._heliosd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    # Library warnings (deprecations, unclosed sessions) go through the same line format.
    logging.captureWarnings(True)
    return handler
