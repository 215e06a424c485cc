"""journald's native protocol: each record one datagram of ``KEY=value`` fields.

Under systemd, stderr is journald's stream, which stores a line and nothing else: a journal
event's ``MESSAGE_ID`` and fields cannot travel that way. When journald's socket is there,
:func:`heliosd.runtime.logs.setup_logging` installs :class:`JournaldHandler` instead, which
sends each record as journald's native datagram (the protocol of ``sd_journal_send``,
systemd.journal-fields(7)):

* every record: ``MESSAGE`` (the line as the stream would have carried it, without the
  ``<N>`` prefix), ``PRIORITY``, ``SYSLOG_IDENTIFIER=heliosd``, ``HELIOSD_LOGGER``;
* a journal event (:mod:`heliosd.notify.journal`) also: ``MESSAGE_ID`` (fixed per kind),
  ``HELIOSD_EVENT`` and one ``HELIOSD_<FIELD>`` per field (``HELIOSD_BY``,
  ``HELIOSD_REASON``...), so ``journalctl -u heliosd HELIOSD_EVENT=order_refused`` works.

A value containing a newline uses the protocol's length-prefixed form, so it is stored whole
and cannot start another field. Values are the already-redacted ones. When a send fails (no
journald, a record too large for one datagram), the record goes to the stream handler it
was given instead: a log line is never lost to the transport.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from heliosd.runtime import logs

SOCKET = logs.JOURNAL_SOCKET

_PREFIX = re.compile(r"<\d>")


def field_name(name: str) -> str:
    """``HELIOSD_<NAME>``: journald accepts A-Z, 0-9 and _, at most 64 characters."""
    return ("HELIOSD_" + re.sub(r"[^A-Z0-9_]", "_", name.upper()))[:64]


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """One native datagram; a value with a newline is sent length-prefixed (binary-safe)."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def record_fields(record: logging.LogRecord, message: str) -> list[tuple[str, str]]:
    fields = [
        ("MESSAGE", message),
        ("PRIORITY", str(logs.priority(record.levelno))),
        ("SYSLOG_IDENTIFIER", "heliosd"),
        ("HELIOSD_LOGGER", record.name),
    ]
    kind = getattr(record, "event", None)
    message_id = getattr(record, "message_id", None)
    extra = getattr(record, "event_fields", None)
    if isinstance(kind, str) and isinstance(message_id, str) and isinstance(extra, dict):
        fields += [("MESSAGE_ID", message_id), ("HELIOSD_EVENT", kind)]
        fields += [(field_name(k), logs.redact(str(v))) for k, v in extra.items()]
    return fields


class JournaldHandler(logging.Handler):
    """Sends records to journald's native socket; ``fallback`` gets what cannot be sent."""

    def __init__(self, fallback: logging.Handler, path: Path = SOCKET) -> None:
        super().__init__()
        self.fallback = fallback
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.setFormatter(logs.LineFormatter(journald=True))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _PREFIX.sub("", self.format(record), count=1)
            self._sock.sendto(encode(record_fields(record, line)), str(self.path))
        except Exception:  # too large, journald restarting, no socket: the stream says it
            self.fallback.handle(record)

    def close(self) -> None:
        self._sock.close()
        self.fallback.close()
        super().close()
