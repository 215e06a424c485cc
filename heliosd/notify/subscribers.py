"""The in-memory event hub (``GET /api/events``): bounded subscribers that never block a
publisher."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from heliosd.core.types import utcnow
from heliosd.notify.outbox import _json_default, _ts


def json_ready(event: Mapping[str, Any]) -> dict[str, Any]:
    """``json.loads(json.dumps(event, default=_json_default))`` without the text in between:
    a new dict of plain values (Decimal and anything unknown as its text, times as ISO text,
    tuples as lists, enums as their values). Published after every fill, so in a burst this
    runs some 20,000 times a second with a reader open; the round trip through text cost
    about three times as much (bench/dashboard.py, the fills interference)."""
    # Plain keys and values (most of them) are taken as they are, without a call each.
    return {
        (k if type(k) is str else _key(k)): (v if type(v) in _PLAIN else _ready(v))
        for k, v in event.items()
    }


_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # as json writes a non-text key: null, true, 1, 1.5
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _ready(value: Any) -> Any:
    kind = type(value)
    if kind is Decimal:  # the commonest: amounts, as their exact text
        return str(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, Mapping):
        return json_ready(value)
    if isinstance(value, (list, tuple)):
        return [_ready(v) for v in value]
    if isinstance(value, str):  # a StrEnum, or another str subclass: its text
        return str.__str__(value)
    if isinstance(value, int):  # an IntEnum: its number (bool, final, is plain above)
        return int(value)
    if isinstance(value, float):
        return float(value)
    return _ready(_json_default(value))


class Subscription:
    """One subscriber's bounded view of the event stream (an async iterator of dicts).

    A slow subscriber never blocks a publisher: when its buffer is full the oldest event is
    dropped, and the next item it reads is ``{"type": "dropped", "at", "count"}`` saying how
    many it missed. Iteration ends after :meth:`close` (or the hub closing) once the buffer is
    drained. Use as ``async with notes.subscribe() as events: async for ev in events: ...``.
    """

    def __init__(self, maxsize: int, on_close: Callable[[Subscription], None]) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._maxsize = max(1, maxsize)
        self._dropped = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._on_close = on_close

    def put(self, item: dict[str, Any]) -> None:
        if self._closed:
            return
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self._dropped += 1
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return {"type": "dropped", "at": _ts(utcnow()), "count": count}
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """The event hub of :class:`heliosd.notify.Notifications` (one of its base classes)."""

    # Set by Notifications.__init__ (heliosd.notify.delivery).
    _subscribers: set[Subscription]
    _closing: bool

    def listening(self) -> bool:
        """Whether anyone subscribes: a publisher may skip building events nobody reads."""
        return bool(self._subscribers)

    def publish(self, event: Mapping[str, Any]) -> None:
        """Fan ``event`` out to every subscriber; never blocks, never raises.

        Shape: ``{"type": <what>, "at": <ISO-8601 UTC>, ...}``; ``at`` is added when missing
        and values are made JSON-ready (Decimal -> str). Notifications appear as
        ``{"type": "notification", "id", "kind", "title", "body", "urgent", "data", "at"}``
        once their outbox row is committed; everything else (orders, fills, verdicts) is
        published by its owner.
        """
        if not self._subscribers:
            return
        item: dict[str, Any] = json_ready(event)
        item.setdefault("type", "event")
        item.setdefault("at", _ts(utcnow()))
        for sub in list(self._subscribers):
            sub.put(item)

    @property
    def readers(self) -> int:
        """Event streams open now (GET /api/events: dashboards, ``heliosctl watch``)."""
        return len(self._subscribers)

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """A new subscriber, registered at once (nothing published after this call is
        missed, except what its bounded buffer drops)."""
        sub = Subscription(maxsize, self._subscribers.discard)
        if self._closing:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub
