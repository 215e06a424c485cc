"""The delivery task: due outbox rows to every notifier, with retries that survive restarts.

It sends due rows oldest first to every notifier (each ``send`` under ``notify.timeout_s``),
marks them delivered, or records the error and schedules a retry with exponential backoff
and jitter; the retry state lives in the row. See :mod:`heliosd.notify` for the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from heliosd.core.config import NotifySettings
from heliosd.core.protocols import Event, Notifier
from heliosd.core.retry import RetryPolicy
from heliosd.core.types import utcnow
from heliosd.notify.filters import wants
from heliosd.notify.outbox import (
    _due_rows,
    _max_id,
    _next_due,
    _Row,
    _rows_after,
    _ts,
    enqueue,
    enqueue_many,
)
from heliosd.notify.subscribers import EventHub, Subscription

if TYPE_CHECKING:
    from heliosd.store import Store

# The package's logger name, as before the split: operators filter logs by it.
log = logging.getLogger("heliosd.notify")

_LATE = timedelta(minutes=1)
_ERROR_CHARS = 1000  # last_error is for people; a notifier's essay is cut here


class Notifications(EventHub):
    """The outbox delivery task and the in-memory event hub.

    Lifecycle: construct, :meth:`start` (needs a running loop), :meth:`close` before the
    store closes. All methods except :meth:`record` must be called from the event loop's
    thread; :meth:`record` runs in the store's writer thread.

    ``retry_initial_s``/``retry_max_s`` shape the backoff (heliosd.core.retry's one formula:
    attempt n waits between half and all of ``min(max, initial * 2**(n-1))``); ``poll_s`` bounds how
    long a committed row can wait when nobody called :meth:`wake`.
    """

    def __init__(
        self,
        store: Store,
        notifiers: Sequence[Notifier],
        settings: NotifySettings,
        *,
        retry_initial_s: float = 2.0,
        retry_max_s: float = 600.0,
        poll_s: float = 2.0,
        retention: timedelta = timedelta(days=30),
        batch: int = 100,
    ) -> None:
        self._store = store
        self._notifiers = list(notifiers)
        self._settings = settings
        self._timeout = float(settings.timeout_s)
        self._retry = RetryPolicy(base_delay_s=retry_initial_s, max_delay_s=retry_max_s)
        self._poll_s = poll_s
        self._retention = retention
        self._batch = batch
        self._wake_ev = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nudged = False
        self._closing = False
        self._subscribers: set[Subscription] = set()
        self._published_id: int | None = None
        # Notifier indexes that already took a row in this process, so a retry after a
        # partial failure does not resend to the ones that succeeded (lost on restart).
        self._sent: dict[int, set[int]] = {}
        self._last_prune = float("-inf")
        self._failing = False  # the last send failed: flush the backlog on the next success
        self.delivered = 0  # counters for /api/health and tests
        self.failures = 0

    # ------------------------------------------------------------------ producers

    def wants(self, event: Event) -> bool:
        """See :func:`wants`."""
        return wants(self._settings, event)

    def record(self, conn: sqlite3.Connection, event: Event) -> int | None:
        """Enqueue ``event`` in the caller's transaction if ``[notify]`` wants it.

        This is the ``EnqueueFn`` the mode orchestrator and the router take. Returns the row
        id, or None when filtered out. It nudges the delivery task itself (thread-safely), so
        callers need not call :meth:`wake`.
        """
        if not self.wants(event):
            return None
        row_id = enqueue(conn, event)
        self._nudge()
        return row_id

    def record_many(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        """:meth:`record` for a batch (one statement for all the wanted events)."""
        wanted = [e for e in events if self.wants(e)]
        if wanted:
            enqueue_many(conn, wanted)
            self._nudge()

    def _nudge(self) -> None:
        """Wake the delivery task from the writer thread, once per burst, not per row: a
        batch of 500 fills would otherwise write 500 times to the loop's self-pipe. The flag
        is set only here (writer thread) and cleared on the loop before waking; a row
        enqueued after the clear schedules a new wake-up, so none is missed. The wake runs
        after the current write batch; the poll interval covers the rare miss."""
        loop = self._loop
        if self._nudged or loop is None or loop.is_closed():
            return
        self._nudged = True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._nudge_arrived)

    def _nudge_arrived(self) -> None:
        self._nudged = False
        self.wake()

    async def notify(self, event: Event) -> int | None:
        """Enqueue ``event`` in a transaction of its own (for events with no other write,
        e.g. a lost connection) and nudge delivery. Returns the row id or None if filtered."""
        if not self.wants(event):
            return None
        row_id = await self._store.write(lambda conn: enqueue(conn, event))
        self.wake()
        return row_id

    def wake(self) -> None:
        """Tell the delivery task that rows were committed (call after ``store.write``)."""
        self._wake_ev.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Launch the delivery task (idempotent)."""
        if self._task is not None:
            return
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="heliosd-notify")

    async def close(self, grace_s: float | None = None) -> None:
        """Stop delivery within ``grace_s`` (default: one send timeout plus a second).

        A send in flight is abandoned (its row stays due and is sent after the restart).
        Subscribers' streams end. Call before the store closes.
        """
        self._closing = True
        self._loop = None
        self.wake()
        for sub in list(self._subscribers):
            sub.close()
        task, self._task = self._task, None
        if task is None:
            return
        limit = self._timeout + 1.0 if grace_s is None else grace_s
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ the task

    def _stopping(self) -> bool:
        # A method, not the attribute: mypy would narrow the attribute across awaits.
        return self._closing

    async def _run(self) -> None:
        while not self._stopping():
            self._wake_ev.clear()
            delay = self._poll_s
            try:
                await self._publish_committed()
                await self._deliver_due()
                delay = await self._next_delay()
                await self._prune()
            except Exception:
                if self._stopping():
                    break
                # Never die: a broken pass (disk full, locked DB) is retried after a poll.
                log.exception("notification delivery pass failed; retrying in %.0f s", delay)
            if self._stopping():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_ev.wait(), max(0.0, delay))

    async def _publish_committed(self) -> None:
        if self._published_id is None:
            # Start after what is already there: a restart does not replay old events.
            self._published_id = await self._store.read(_max_id)
            # A (re)start retries the whole backlog now, oldest first, instead of each row
            # waiting out the backoff it had when the last process stopped.
            await self._pull_backlog_forward()
            return
        if not self._subscribers:
            # Nobody to tell: skip past what is committed instead of reading it back (a burst
            # of 20,000 fills is 20,000 outbox rows, read on the writer's connection). Only
            # if still nobody listens once the read is back: a subscriber that came meanwhile
            # gets the rows.
            top = await self._store.read(_max_id)
            if not self._subscribers:
                self._published_id = max(self._published_id, top)
                return
        while True:
            after = self._published_id
            rows = await self._store.read(
                functools.partial(_rows_after, after_id=after, limit=self._batch)
            )
            for row in rows:
                ev = row.event
                self.publish(
                    {
                        "type": "notification",
                        "at": _ts(ev.at),
                        "id": row.id,
                        "kind": ev.kind,
                        "title": ev.title,
                        "body": ev.body,
                        "urgent": ev.urgent,
                        "data": dict(ev.data),
                    }
                )
                self._published_id = row.id
            if len(rows) < self._batch:
                return

    async def _deliver_due(self) -> None:
        max_attempts = self._settings.max_attempts
        while not self._closing:
            now = _ts(utcnow())
            rows = await self._store.read(
                functools.partial(_due_rows, now=now, max_attempts=max_attempts, limit=self._batch)
            )
            for row in rows:
                if self._stopping():
                    return
                await self._deliver(row)
            if len(rows) < self._batch:
                return

    async def _deliver(self, row: _Row) -> None:
        done = self._sent.setdefault(row.id, set())
        pending = [(i, n) for i, n in enumerate(self._notifiers) if i not in done]
        event = _late(row.event, utcnow())
        outcomes = await asyncio.gather(*(self._send(n, event) for _, n in pending))
        errors: list[str] = []
        for (index, notifier), error in zip(pending, outcomes, strict=True):
            if error is None:
                done.add(index)
            else:
                errors.append(f"{_name(notifier)}: {error}")
        now = utcnow()
        attempts = row.attempts + 1
        if not errors:
            self._sent.pop(row.id, None)
            # With no notifier configured the row is closed at once (kept for the record).
            note = None if self._notifiers else "no notifier configured"
            await self._store.write(
                lambda c: c.execute(
                    "UPDATE outbox SET delivered_at = ?, attempts = ?, last_error = ? WHERE id = ?",
                    (_ts(now), attempts, note, row.id),
                )
            )
            self.delivered += 1
            if self._failing:
                # The receivers are back: flush the backlog now, oldest first, rather than
                # each row at the end of its own backoff (up to retry_max_s away).
                self._failing = False
                await self._pull_backlog_forward()
            return
        self.failures += 1
        self._failing = True
        error_text = "; ".join(errors)[:_ERROR_CHARS]
        if attempts >= self._settings.max_attempts:
            self._sent.pop(row.id, None)
            next_at = now
            log.error(
                "notification %d (%s) given up after %d attempts: %s",
                row.id,
                row.event.kind,
                attempts,
                error_text,
            )
        else:
            delay = self._backoff(attempts)
            next_at = now + timedelta(seconds=delay)
            log.warning(
                "notification %d (%s) attempt %d failed, retrying in %.1f s: %s",
                row.id,
                row.event.kind,
                attempts,
                delay,
                error_text,
            )
        await self._store.write(
            lambda c: c.execute(
                "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (attempts, error_text, _ts(next_at), row.id),
            )
        )

    async def _pull_backlog_forward(self) -> None:
        now = _ts(utcnow())
        await self._store.write(
            lambda c: c.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE delivered_at IS NULL"
                " AND attempts < ? AND next_attempt_at > ?",
                (now, self._settings.max_attempts, now),
            )
        )

    async def _send(self, notifier: Notifier, event: Event) -> str | None:
        """One notifier, one event: None when sent, else a secret-free reason."""
        try:
            await asyncio.wait_for(notifier.send(event), self._timeout)
        except TimeoutError:
            return f"timed out after {self._timeout:g} s"
        except Exception as exc:
            # Notifier errors are ours to phrase (errors.py: messages carry no secrets).
            return f"{type(exc).__name__}: {exc}"
        return None

    def _backoff(self, attempts: int) -> float:
        return self._retry.delay(attempts, None)

    async def _next_delay(self) -> float:
        due = await self._store.read(lambda c: _next_due(c, self._settings.max_attempts))
        if due is None:
            return self._poll_s
        wait = (datetime.fromisoformat(due) - utcnow()).total_seconds()
        return min(self._poll_s, max(0.0, wait))

    async def _prune(self) -> None:
        """Delete delivered rows older than ``retention`` (hourly); undelivered rows stay."""
        now = time.monotonic()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        cutoff = _ts(utcnow() - self._retention)
        deleted = await self._store.write(
            lambda c: (
                c.execute(
                    "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                    (cutoff,),
                ).rowcount
            )
        )
        if deleted:
            log.info("pruned %d delivered notifications older than %s", deleted, self._retention)


def _late(event: Event, now: datetime) -> Event:
    """``event`` with its time appended to the body when it is delivered over a minute
    late (after an outage, or out of order behind a retried row), so the reader can tell."""
    if now - event.at <= _LATE:
        return event
    stamp = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    note = f"(Happened at {stamp} UTC; delivered late.)"
    return replace(event, body=f"{event.body}\n{note}" if event.body else note)


def _name(notifier: Notifier) -> str:
    return str(getattr(notifier, "name", type(notifier).__name__))
