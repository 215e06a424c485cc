"""What ``[notify]`` asks for: one decision for every producer (:func:`wants`)."""

from __future__ import annotations

from heliosd.core.config import NotifySettings
from heliosd.core.protocols import Event
from heliosd.core.types import Mode

# Kinds about individual trades: in PAPER they are noise unless notify.paper_trades is set.
TRADE_KINDS = frozenset({"order", "fill", "risk_rejected"})


def wants(settings: NotifySettings, event: Event) -> bool:
    """Whether ``[notify]`` asks for this event.

    ``events`` lists the kinds wanted. Trade kinds (order, fill, risk_rejected) in PAPER are
    dropped unless ``paper_trades`` is set. The mode comes from ``event.data["mode"]``; an
    event without one counts as LIVE (when unsure, tell the operator).
    """
    if event.kind not in settings.events:
        return False
    if event.kind in TRADE_KINDS and not settings.paper_trades:
        return str(event.data.get("mode", Mode.LIVE)).upper() != Mode.PAPER
    return True
