"""Server-sent event framing for GET /api/events: one event as bytes, the markers the
pump queues at the end of a stream or when its reader is too slow, and closing a
subscription.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from heliosd.control.app_json import dumps

log = logging.getLogger(__name__)


_END: Final = object()
_OVERFLOW: Final = object()
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def format_event(event: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>\\ndata: <json>\\n\\n`` (json is one line)."""
    kind = str(event.get("type") or event.get("kind") or "message")
    if not _EVENT_TYPE.fullmatch(kind):
        kind = "message"
    return f"event: {kind}\ndata: {dumps(dict(event))}\n\n".encode()


async def _close_stream(stream: object) -> None:
    """Unsubscribe: async generators have ``aclose``, subscription objects ``close``."""
    closer = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if closer is None:
        return
    try:
        result = closer()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("closing an event subscription failed")
