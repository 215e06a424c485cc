"""Retry policy, the one place that decides how long heliosd waits between tries of
anything: VALR reads (:func:`read_retrying`), resends of a VALR write (only what VALR
certainly did not execute: a 429, a refused connection; :mod:`heliosd.builtin.valr.placing`
decides that and looks anything else up by ``customerOrderId`` first), stream reconnects
(:func:`delays`, fed to websockets' own reconnect loop) and notification delivery
(:mod:`heliosd.notify`). One formula: exponential from ``base_delay_s`` to ``max_delay_s``
with jitter over the upper half, or the venue's ``Retry-After`` when it gave one.

tenacity costs ~35 µs per call even on success (measured on a 2-core machine), so it wraps
network I/O only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_any
from tenacity.stop import stop_after_attempt, stop_before_delay

from heliosd.core.errors import OutcomeUnknownError, TransientError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying one operation.

    ``max_attempts`` counts the first try; ``max_total_s`` bounds the whole operation including
    waits (a wait that would cross it stops retrying instead). Without a ``retry_after`` from
    the venue, waits grow exponentially from ``base_delay_s`` up to ``max_delay_s``, with full
    jitter so that many clients do not retry in step.
    """

    max_attempts: int = 5
    max_total_s: float = 30.0
    base_delay_s: float = 0.25
    max_delay_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        # The exponent is capped: a stream may retry for days, and 2.0**1024 overflows.
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempt - 1, 32))
        return random.uniform(ceiling / 2, ceiling)


def is_retryable(exc: BaseException) -> bool:
    """Transient failures are retried; an unknown write outcome never is."""
    return isinstance(exc, TransientError) and not isinstance(exc, OutcomeUnknownError)


def read_retrying(policy: RetryPolicy) -> AsyncRetrying:
    """A tenacity controller for idempotent reads: retries TransientError, honours
    ``retry_after``, bounded by attempts and by total time; re-raises the last error."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        return policy.delay(state.attempt_number, retry_after)

    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait,
        stop=stop_any(
            stop_after_attempt(policy.max_attempts), stop_before_delay(policy.max_total_s)
        ),
        reraise=True,
    )


def delays(policy: RetryPolicy) -> Iterator[float]:
    """The waits before try 2, 3, ... of ``policy`` without a limit (stream reconnects)."""
    attempt = 0
    while True:
        attempt += 1
        yield policy.delay(attempt, None)


__all__ = ["RetryPolicy", "delays", "is_retryable", "read_retrying"]
