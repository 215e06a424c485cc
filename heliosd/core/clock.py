"""The core's wall clock: one for the whole process, which a test can hold and move.

Every module reads the time through :func:`heliosd.core.types.utcnow` (which asks
:func:`now`), so a test never monkeypatches a name: it installs a :class:`ManualClock` with
:func:`use` and moves it (``advance``, ``set``), and every module sees the same time, however
it imported ``utcnow``. Monotonic time (timeouts, backoff, rate budgets) stays on
``time.monotonic``/the event loop's clock: it measures waits, not when something happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

Source = Callable[[], datetime]


def system() -> datetime:
    """The real time, UTC, timezone-aware."""
    return datetime.now(UTC)


_source: Source = system


def now() -> datetime:
    """The current time of the installed source (the system clock unless a test holds it)."""
    return _source()


class ManualClock:
    """A clock that stands still until moved. Calling it answers the time it shows."""

    def __init__(self, start: datetime | None = None, *, tick: timedelta | None = None) -> None:
        self.at: datetime
        self.set(system() if start is None else start)
        # Moved by this much after every reading: a sequence of events stamped one after
        # another, each later than the one before (0: every reading is the same).
        self.tick = timedelta(0) if tick is None else tick

    def __call__(self) -> datetime:
        at = self.at
        self.at = at + self.tick
        return at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:  # the core's times are all aware (a naive one would not compare)
            raise ValueError("a ManualClock shows UTC-aware times")
        self.at = at


@contextmanager
def use(source: Source) -> Iterator[Source]:
    """Install ``source`` as the process's clock for the ``with`` block (tests only)."""
    global _source
    before = _source
    _source = source
    try:
        yield source
    finally:
        _source = before
