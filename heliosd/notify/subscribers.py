"""The in-memory event hub (``GET /api/events``): bounded subscribers that never block a
publisher, each with a budget of bulk events (fills, orders) a second, so that a reader
never costs a burst of fills more than that budget's worth (invariants: Subscription)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

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


# What a burst publishes thousands of a second, and what the database holds each of
# (GET /api/fills, /api/orders): a reader's share of these is budgeted, nothing else is.
BULK_TYPES: Final = frozenset({"fill", "order"})
# Bulk events one reader takes a second (and at once, after a quiet second). A person, a
# page (it lists the last 200) or `heliosctl watch` reads far fewer; a burst of 20,000 fills
# a second framed for a reader cost the daemon about a sixth of its fill rate
# (bench/dashboard.py, the fills interference).
BULK_PER_S: Final = 1000.0
# A drop is reported within this long even when nothing follows it (a burst that ends).
DROP_REPORT_S: Final = 0.25


class _Missed:
    """Where events were dropped, in the buffer's order: read as one ``dropped`` item."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 1


class Subscription:
    """One subscriber's bounded view of the event stream (an async iterator of dicts).

    A subscriber never blocks a publisher. Invariants, per subscriber
    (tests/test_event_budget.py searches for violations):

    1. What it reads is what was published while it was subscribed, in publish order, each
       event once, except that each run of events it missed is one
       ``{"type": "dropped", "at", "count"}`` item in the run's place, ``count`` the run's
       length.
    2. Bulk events (:data:`BULK_TYPES`) taken in any ``t`` seconds are at most
       ``bulk_per_s * (t + 1)``; the rest are missed.
    3. When the buffer holds ``maxsize`` events, the oldest bulk event goes: any other
       event (a halt, a stop, a mode change, a notification) is missed only when ``maxsize``
       of them wait.
    4. A miss is readable within :data:`DROP_REPORT_S` even if nothing is published after it.

    Iteration ends after :meth:`close` (or the hub closing) once the buffer is drained. Use
    as ``async with notes.subscribe() as events: async for ev in events: ...``.
    """

    def __init__(
        self,
        maxsize: int,
        on_close: Callable[[Subscription], None],
        *,
        bulk_per_s: float = BULK_PER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: deque[dict[str, Any] | _Missed] = deque()
        self._events = 0  # events in _items (a _Missed takes no room: at most one per gap)
        self._maxsize = max(1, maxsize)
        self._ready = asyncio.Event()
        self._closed = False
        self._on_close = on_close
        self._rate = bulk_per_s
        self._monotonic = monotonic
        self._tokens = bulk_per_s  # a token bucket holding one second's budget
        self._refilled = monotonic()
        self._report: asyncio.TimerHandle | None = None

    def admit_bulk(self) -> bool:
        """Take one bulk event from the budget; when it is spent, the event is missed here."""
        if self._closed:
            return False
        now = self._monotonic()
        level = self._tokens + (now - self._refilled) * self._rate
        items = self._items
        if level < 1.0 and items and type(items[-1]) is _Missed:
            # The fast path of a burst past the budget (most of its fills): no token, and the
            # run of misses at the tail goes on. The bucket's level is a function of the time
            # since _refilled, so leaving the bucket alone here changes nothing.
            items[-1].count += 1
            return False
        tokens = min(self._rate, level)
        self._refilled = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self._missed_at(len(items))
        return False

    def put(self, item: dict[str, Any]) -> None:
        if self._closed:
            return
        if self._events >= self._maxsize:
            self._evict()
        self._items.append(item)
        self._events += 1
        self._ready.set()

    def _evict(self) -> None:
        items = self._items
        at = next((i for i, e in enumerate(items) if isinstance(e, dict)
                   and e.get("type") in BULK_TYPES), None)  # fmt: skip
        if at is None:  # no bulk event waits: the oldest event goes
            at = next(i for i, e in enumerate(items) if isinstance(e, dict))
        del items[at]
        self._events -= 1
        self._missed_at(at)

    def _missed_at(self, at: int) -> None:
        """One more event missed at position ``at`` of the buffer (a neighbouring report
        counts it; otherwise a new one goes there)."""
        items = self._items
        before = items[at - 1] if at > 0 else None
        after = items[at] if at < len(items) else None
        if isinstance(before, _Missed):
            before.count += 1
            if isinstance(after, _Missed):  # the event between two runs went: one run now
                before.count += after.count
                del items[at]
        elif isinstance(after, _Missed):
            after.count += 1
        else:
            items.insert(at, _Missed())
        if self._report is None:
            # Read in its place, or woken by this timer if nothing follows (a burst that
            # ended): waking the reader for each miss would cost a burst what the budget saves.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): readable at once
                self._ready.set()
            else:
                self._report = loop.call_later(DROP_REPORT_S, self._report_due)

    def _report_due(self) -> None:
        self._report = None
        self._ready.set()

    def take(self) -> dict[str, Any] | None:
        """The next item, or None when nothing waits."""
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, _Missed):
            return {"type": "dropped", "at": _ts(utcnow()), "count": item.count}
        self._events -= 1
        return item

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._report is not None:
                self._report.cancel()
                self._report = None
            self._ready.set()
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            item = self.take()
            if item is not None:
                return item
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

    def publish(self, event: Mapping[str, Any]) -> None:
        """Fan ``event`` out to every subscriber; never blocks, never raises.

        Shape: ``{"type": <what>, "at": <ISO-8601 UTC>, ...}``; ``at`` is added when missing
        and values are made JSON-ready (Decimal -> str). Notifications appear as
        ``{"type": "notification", "id", "kind", "title", "body", "urgent", "data", "at"}``
        once their outbox row is committed; everything else (orders, fills, verdicts) is
        published by its owner. A bulk event (:data:`BULK_TYPES`) reaches only the
        subscribers whose budget admits it (see :class:`Subscription`).
        """
        self.publish_lazy(str(event.get("type") or "event"), lambda: event)

    def publish_lazy(self, kind: str, build: Callable[[], Mapping[str, Any]]) -> None:
        """:meth:`publish` the event ``build()`` returns, of type ``kind``, building it only
        if some subscriber takes it: in a burst of fills, building the events a spent
        budget would drop was most of a reader's cost."""
        if not self._subscribers:
            return
        if kind in BULK_TYPES:
            subs = [sub for sub in self._subscribers if sub.admit_bulk()]
            if not subs:
                return
        else:
            subs = list(self._subscribers)
        item: dict[str, Any] = json_ready(build())
        item.setdefault("type", "event")
        item.setdefault("at", _ts(utcnow()))
        for sub in subs:
            sub.put(item)

    @property
    def readers(self) -> int:
        """Event streams open now (GET /api/events: dashboards, ``heliosctl watch``)."""
        return len(self._subscribers)

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """A new subscriber, registered at once (nothing published after this call is
        missed, except what its bounded buffer drops)."""
        sub = Subscription(maxsize, self._subscribers.discard, bulk_per_s=BULK_PER_S)
        if self._closing:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub
