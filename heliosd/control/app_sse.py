"""Server-sent events for GET /api/events: the pump that moves a backend's stream into the
response's queue, the writer that frames and sends what is queued, and closing a
subscription.

How a stream is written (the invariant a reader can rely on): every event the backend's
stream yields is written, in order, exactly once, until the stream ends, the reader leaves,
or the reader falls ``backlog`` events behind (then one ``overflow`` event and the end).
An event is written as soon as the writer runs, together with everything queued behind it
(at most :data:`SSE_BATCH` events a write): a burst of fills is published a group commit at
a time, and a write (one send, one wake-up of the reading process) per event cost the
daemon more than framing them. Waiting a few milliseconds for more to gather was tried and
dropped: once the hub budgets a reader's fills (heliosd.notify.subscribers) it saved nothing
in a burst, and at 100 events a second its timers cost about one point of a core
(bench/RESULTS.md section 10).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import msgspec
from aiohttp import web

from heliosd.control.app_json import _to_json

log = logging.getLogger(__name__)

# The most events one write carries, so that framing a long backlog never holds the event
# loop for long (about 3 us an event).
SSE_BATCH: Final = 500

_END: Final = object()
_OVERFLOW: Final = object()
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


# The event hub has made every value plain already (heliosd.notify.subscribers.json_ready);
# the hook covers another backend's stream. msgspec writes compact one-line JSON, as
# json.dumps did, in a seventh of the time (a busy stream frames thousands a second); a float
# that is not a number becomes null, which JSON.parse reads (json.dumps wrote NaN).
_ENCODER: Final = msgspec.json.Encoder(enc_hook=_to_json, decimal_format="string")


def format_event(event: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>\\ndata: <json>\\n\\n`` (json is one line)."""
    kind = str(event.get("type") or event.get("kind") or "message")
    if not _EVENT_TYPE.fullmatch(kind):
        kind = "message"
    body = event if type(event) is dict else dict(event)
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), _ENCODER.encode(body))


_OVERFLOW_FRAME: Final = format_event({"type": "overflow", "message": "reader too slow"})


async def pump_events(
    stream: AsyncIterator[Mapping[str, Any]], queue: asyncio.Queue[object], backlog: int
) -> None:
    """Move ``stream``'s events into ``queue`` (a task of its own, so that the writer can
    wait with a timeout without cancelling the stream), then ``_END``. A reader ``backlog``
    events behind gets ``_OVERFLOW`` instead, and the stream is closed."""
    try:
        async for event in stream:
            if queue.qsize() >= backlog:
                queue.put_nowait(_OVERFLOW)
                return
            queue.put_nowait(event)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event stream failed; closing the SSE response")
    finally:
        queue.put_nowait(_END)
        await _close_stream(stream)


async def write_events(
    request: web.Request,
    resp: web.StreamResponse,
    queue: asyncio.Queue[object],
    heartbeat_s: float,
    left_check_s: float,
) -> None:
    """Write ``queue``'s events to ``resp`` until ``_END`` or ``_OVERFLOW``, or until the
    reader leaves (see the module docstring for when and how much is written)."""
    await resp.write(b": connected\n\n")
    beat = time.monotonic() + heartbeat_s
    while True:
        if queue.empty():
            try:
                wait = min(left_check_s, max(0.0, beat - time.monotonic()))
                # asyncio.timeout, not wait_for: on 3.11 wait_for wraps the get in a task of
                # its own, a few loop turns for every event of a quiet stream.
                async with asyncio.timeout(wait):
                    first = await queue.get()
            except TimeoutError:
                # A reader that left is noticed here, within a second, not at the next
                # write: a quiet stream would otherwise keep its subscriber (and, through
                # the dashboard bridge, a connection) until the heartbeat.
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                if time.monotonic() >= beat:
                    await resp.write(b": heartbeat\n\n")
                    beat = time.monotonic() + heartbeat_s
                continue
            # One turn of the loop before framing: the rest of what woke us (a group commit's
            # fills are published in the same turn) joins this write instead of the next.
            await asyncio.sleep(0)
        else:
            first = queue.get_nowait()
        frames, ended = _frames(first, queue)
        if frames:
            await resp.write(b"".join(frames))
            beat = time.monotonic() + heartbeat_s
        if ended:
            return


def _frames(first: object, queue: asyncio.Queue[object]) -> tuple[list[bytes], bool]:
    """``first`` and what is queued behind it (at most SSE_BATCH events), framed; and whether
    the stream ends after them."""
    frames: list[bytes] = []
    item = first
    while True:
        if item is _END:
            return frames, True
        if item is _OVERFLOW:
            frames.append(_OVERFLOW_FRAME)
            return frames, True
        assert isinstance(item, Mapping)
        frames.append(format_event(item))
        if len(frames) >= SSE_BATCH or queue.empty():
            return frames, False
        item = queue.get_nowait()


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
