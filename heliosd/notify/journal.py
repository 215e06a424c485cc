"""The journal: one log line per state change and per order outcome.

Each line starts with a stable ``event=<kind>`` key followed by ``key=value`` fields::

    event=mode_change from=PAPER to=LIVE by=uid:1000(alice) reason="after the drill"

so ``grep 'event=order_refused'`` finds every refusal and a script can split the fields.
The same fields ride on the :class:`logging.LogRecord` (``record.event``,
``record.event_fields``, ``record.message_id``), which :mod:`heliosd.runtime.logs` sends to
journald as ``HELIOSD_EVENT=``, ``MESSAGE_ID=`` and ``HELIOSD_<FIELD>=`` when heliosd runs
under systemd. Every kind has a fixed MESSAGE_ID (systemd's catalogue convention: 128 bits
in hex), so ``journalctl MESSAGE_ID=...`` finds one kind whatever its wording becomes.

Rules this module enforces, so no call site has to:

* **One line, always.** A value with a space, quote, ``=``, backslash or any control or
  line-separator character is written as a JSON string (``"a\\nb"``): a newline in an
  operator's reason cannot start a second, forged ``event=`` line.
* **No secrets.** A field named like a secret (``*key``, ``*secret``, ``*token``,
  ``password``, ``url``) is refused at the call (ValueError: a programming error caught by
  the tests), a :class:`heliosd.core.config.Secret` value renders as ``***``, and every value
  passes through the registered-secret redaction of :mod:`heliosd.runtime.logs`.
* **Never in the way.** Logging is called after the state change committed; a failure to
  format a field logs the field as ``<unprintable>`` rather than raise into trading code.

Levels: stops, halts, lost streams, failed or unknown orders at WARNING; integrity alerts
at ERROR; everything else at INFO.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from heliosd.core.config import Secret


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    level: int
    message_id: str  # fixed forever: scripts and journalctl filters rely on it
    what: str  # one line for docs/operations.md


_KINDS = (
    Kind("mode_change", logging.INFO, "a1a26c9b7da54ddba8e1ca1cf82a9e57",
         "the trading mode changed (from, to, by, reason)"),
    Kind("mode_refused", logging.INFO, "41c00c16903a45e7bf7495f971fced11",
         "a switch to LIVE was refused (to, by, reason, why, gates: the failing gates)"),
    Kind("emergency_stop", logging.WARNING, "e734bbf8f563444684309770a5fe04db",
         "an emergency stop latched (by, reason, epoch)"),
    Kind("halt", logging.WARNING, "ed3a53d7d44d4883992b784216c0b4c1",
         "trading halted by an operator or a monitor (breaker, by, reason, until)"),
    Kind("resume", logging.INFO, "fd54ac25aedb4ce4956f8e309de281cc",
         "a resume cleared the latched breakers (by, reason, cleared, epoch)"),
    Kind("trading_state", logging.WARNING, "7a8e95ccd669439494767c79c601ca71",
         "ACTIVE/REDUCING/HALTED changed (from, to, reason, breaker); INFO back to ACTIVE"),
    Kind("order_placed", logging.INFO, "b5dfeafc85734766bf6c68a092a7ef00",
         "the venue accepted an order (order, cid, mode, pair, side, type, quantity, price)"),
    Kind("order_refused", logging.INFO, "0dbc8a83736845128b9dfdf6f128c556",
         "an order was refused: by a risk rule, the venue or a stale permit (rule, reason)"),
    Kind("order_failed", logging.WARNING, "a233a56da5ba43c4a535b6c0db61e015",
         "an order was not placed, or its outcome is unknown (state, reason)"),
    Kind("order_filled", logging.INFO, "ff638bbb6e5845df93116f105bf5e782",
         "a fill was stored (trade, order, quantity, price, fee, fee_currency)"),
    Kind("order_cancelled", logging.INFO, "cab85d8ef1d541d48d80d55c208ddd70",
         "an order is cancelled at the venue (order, cid, filled)"),
    Kind("orders_cancelled", logging.INFO, "5f0c2b7e8d9a4c61b3e2a7d4f1c09e88",
         "many orders cancelled in one batch, e.g. by an emergency stop (mode, count, orders,"
         " cids): one line for the batch"),
    Kind("integrity_alert", logging.ERROR, "1515dc1f94044b24a3e059f3a4c945b7",
         "heliosd does not trust its own state (reason); orders are refused"),
    Kind("stream_lost", logging.WARNING, "aae2dca007da4abcac3e98b752084640",
         "a venue stream disconnected (mode, stream, detail)"),
    Kind("stream_restored", logging.INFO, "247f688f19c44c43b0a6e002dc3e29ed",
         "a venue stream is back (mode, stream, detail)"),
)  # fmt: skip
KINDS: Mapping[str, Kind] = {k.name: k for k in _KINDS}

log = logging.getLogger("heliosd.journal")

# Field names that would only ever hold a secret: refused outright (ValueError).
_SECRET_NAME = re.compile(r"(^|_)(key|secret|token|password|passphrase|url|urls)$")
# A field name is a plain identifier: it becomes a journald field name (upper-cased).
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Values made only of these are written bare; anything else is JSON-quoted.
_BARE = re.compile(r"[A-Za-z0-9_.:+\-/@(),%*#]+")
# Characters str.splitlines() (and so many log readers) treat as line ends, beyond the
# C0 controls json.dumps already escapes.
_LINE_ENDS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029",
                            "\x7f": "\\u007f"})  # fmt: skip


_ACTOR_TEXT = re.compile(r"(.*) \(uid (\d+)\)")  # str(Actor) of a person: "alice (uid 1000)"


def actor_text(actor: object) -> str:
    """``uid:1000(alice)`` for a person on the socket (an Actor, or the ``alice (uid
    1000)`` text stored for one), the name for anything else."""
    if isinstance(actor, str):
        m = _ACTOR_TEXT.fullmatch(actor)
        return f"uid:{m[2]}({m[1]})" if m else actor
    uid = getattr(actor, "uid", None)
    user = getattr(actor, "user", None)
    if isinstance(uid, int) and user is not None:
        return f"uid:{uid}({user})"
    if user is not None:
        return str(user)
    return str(actor)


def _text(value: object) -> str:
    if type(value) is str:  # the common case first: one identity test
        return value
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "uid") and hasattr(value, "user"):
        return actor_text(value)
    return str(value)


def quote(text: str) -> str:
    """``text`` bare if it is a plain token, else a one-line JSON string."""
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False).translate(_LINE_ENDS)


# Field names already checked (a fill's line is written thousands of times a second).
_checked_names: dict[str, str] = {}


def _field_name(given: str) -> str:
    name = _checked_names.get(given)
    if name is not None:
        return name
    name = given.removesuffix("_")  # from_=... : "from" is a Python keyword
    if not _NAME.fullmatch(name) or name == "event":
        raise ValueError(f"journal field name {name!r} is not a plain lower-case name")
    if _SECRET_NAME.search(name):
        raise ValueError(f"journal field {name!r} looks like a secret; never log it")
    _checked_names[given] = name
    return name


def render(kind: str, fields: Mapping[str, object]) -> tuple[str, dict[str, str]]:
    """The message and the (redacted, stringified) fields for one event."""
    from heliosd.runtime.logs import redact  # logs imports nothing of ours but config

    if kind not in KINDS:
        raise ValueError(f"unknown journal event kind {kind!r}")
    out: dict[str, str] = {}
    parts = [f"event={kind}"]
    for given, value in fields.items():
        name = _field_name(given)
        if value is None:
            continue
        try:
            text = out[name] = redact(actor_text(value) if name == "by" else _text(value))
        except Exception:  # a broken __str__ must not break the state change it reports
            text = out[name] = "<unprintable>"
        parts.append(f"{name}={quote(text)}")
    return " ".join(parts), out


def event(kind: str, /, *, level: int | None = None, **fields: object) -> None:
    """Log one journal line for ``kind`` with ``fields`` (None values are left out; a
    trailing underscore is dropped from a name, for ``from_=``)."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown journal event kind {kind!r}")
    lvl = spec.level if level is None else level
    if not log.isEnabledFor(lvl):
        return
    message, clean = render(kind, fields)
    extra = {"event": kind, "event_fields": clean, "message_id": spec.message_id}
    log.log(lvl, "%s", message, extra=extra)


# Attributes event() puts on a record: already in its message, so the line formatter does
# not append them again (heliosd.runtime.logs).
RECORD_ATTRS = frozenset({"event", "event_fields", "message_id"})


def refusal(verdicts: Any) -> tuple[str, str]:
    """(rules, reasons) of an order's rejecting verdicts, from stored ``verdicts`` JSON."""
    rules: list[str] = []
    reasons: list[str] = []
    for v in verdicts or ():
        if isinstance(v, Mapping) and str(v.get("action", "")).lower() == "reject":
            rules.append(str(v.get("rule", "?")))
            reasons.append(str(v.get("reason", "")))
    return ",".join(rules) or "?", "; ".join(r for r in reasons if r)


def order(kind: str, row: Mapping[str, Any], /, **fields: Any) -> None:
    """:func:`event` for an order row: its id, customer id, mode, pair, side, type,
    quantity and price, then ``fields``."""
    event(kind, order=row.get("id"), cid=row.get("customer_order_id"), mode=row.get("mode"),
          pair=row.get("pair"), side=row.get("side"), type=row.get("type"),
          quantity=row.get("quantity"), price=row.get("price"), **fields)  # fmt: skip


class Once:
    """Remembers the last ``size`` keys: :meth:`add` is True only the first time. A venue
    reports a cancelled order more than once (the stream, a lookup, reconciliation); the
    journal says it once."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: dict[object, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def add(self, key: object) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            del self._seen[next(iter(self._seen))]
        return True


__all__ = [
    "KINDS",
    "RECORD_ATTRS",
    "Kind",
    "Once",
    "actor_text",
    "event",
    "order",
    "quote",
    "refusal",
    "render",
]  # fmt: skip
