"""How every notification is written: numbers as plain decimals (:func:`_num`), a body from
its non-empty lines (:func:`_lines`), and the :class:`Event` itself, urgent when its kind is
in :data:`URGENT_KINDS` (:func:`_event`). Shared by :mod:`heliosd.notify.notices` and
:mod:`heliosd.notify.trade_notices`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from heliosd.core.protocols import Event
from heliosd.core.types import utcnow

# Stops and integrity alarms: a human should look now.
URGENT_KINDS = frozenset({"halt", "emergency_stop", "integrity"})


def _num(value: Any) -> str:
    """A quantity or price as plain text: no exponent, thousands separated when large."""
    if value is None or value == "":
        return "?"
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if not d.is_finite():
        return str(d)
    if abs(d) >= 1000:
        return f"{d:,f}"
    return f"{d:f}"


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _event(kind: str, title: str, body: str, data: Mapping[str, Any]) -> Event:
    return Event(
        kind=kind,
        title=title,
        body=body,
        at=utcnow(),
        urgent=kind in URGENT_KINDS,
        data={k: v for k, v in data.items() if v is not None},
    )
