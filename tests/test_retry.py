"""heliosd.core.retry: one backoff formula for VALR reads and writes, stream reconnects and
notification delivery."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from heliosd.core.config import NotifySettings
from heliosd.core.retry import RetryPolicy, delays
from heliosd.notify import Notifications
from heliosd.store import Store


@given(
    base=st.floats(min_value=0.001, max_value=10),
    ceiling=st.floats(min_value=0.001, max_value=3600),
    attempt=st.integers(min_value=1, max_value=10_000),
)
def test_a_wait_is_between_half_and_all_of_the_capped_doubling(
    base: float, ceiling: float, attempt: int
) -> None:
    policy = RetryPolicy(base_delay_s=base, max_delay_s=ceiling)
    cap = min(ceiling, base * 2.0 ** min(attempt - 1, 32))
    wait = policy.delay(attempt, None)
    assert cap / 2 <= wait <= cap  # never above the cap, however long a stream retries


def test_the_venues_retry_after_wins_and_is_never_negative() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=2)
    assert policy.delay(1, 7.5) == 7.5
    assert policy.delay(3, -1.0) == 0.0


def test_stream_delays_grow_to_the_ceiling_and_stay_there() -> None:
    waits = list(itertools.islice(delays(RetryPolicy(base_delay_s=1, max_delay_s=8)), 12))
    assert waits[0] <= 1 and all(4 <= w <= 8 for w in waits[4:])


async def test_notification_backoff_uses_the_same_policy(tmp_path: Path) -> None:
    """The outbox's waits follow the shared formula (no fake tenacity RetryCallState)."""
    store = await Store.open(tmp_path / "heliosd.db")
    try:
        outbox = Notifications(store, [], NotifySettings(), retry_initial_s=2.0,
                               retry_max_s=600.0)  # fmt: skip
        for attempt in range(1, 15):
            cap = min(600.0, 2.0 * 2.0 ** (attempt - 1))
            assert cap / 2 <= outbox._backoff(attempt) <= cap
    finally:
        await store.close()
