"""The VALR client's retry policies: the one place that decides what is retried and how long.

Only reads are retried blindly (a GET has no effect, so a second one is always safe). Writes
go through :mod:`heliosd.builtin.valr.client`'s placement logic, which retries only what is
known not to have been executed (a 429, a refused connection) and looks anything else up by
``customerOrderId`` first.

tenacity costs ~35 µs per call even on success (measured on a 2-core machine), so it wraps
network I/O only.
"""

from __future__ import annotations

import random
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


@dataclass(frozen=True, slots=True)
class ValrTuning:
    """Timing bounds of the VALR client. Production uses the defaults; tests shrink them.

    * ``read_policy``: GET retries.
    * ``write_policy``: resends of a write VALR certainly did not execute (429, refused
      connection), bounded by attempts and total time.
    * ``lookup_policy`` / ``lookup_grace_s`` / ``lookup_window_s``: after a write whose
      answer was lost, wait ``lookup_grace_s`` (so a request still in flight lands first),
      look the order up by customerOrderId within ``lookup_policy``, and keep looking until
      VALR lists it or ``lookup_window_s`` has passed. The order is never sent again.
    * ``ping_interval_s``: PING period on each socket; no PONG for two periods = dead.
    * ``auth_timeout_s``: the WebSocket opening handshake's bound, and how long the account
      stream waits for AUTHENTICATED (or a first message) before carrying on without it.
    * ``reconnect_initial_s`` / ``reconnect_max_s``: reconnect backoff (doubling, jittered).
    * ``ready_timeout_s``: how long ``place()`` waits for the account stream to be connected
      and reconciled before giving up with a TransientError.
    * ``reconcile_overlap_s``: trade history is fetched from the fill watermark minus this,
      so a fill at the watermark's instant is never missed (duplicates are deduped).
    * ``not_found_grace_s``: how old an order must be before VALR not knowing it means it
      was never placed (VALR's read views lag its engine; a request may still be in flight).
      None: twice ``valr.request_timeout_s``.
    * ``pairs_ttl_s``: how long pair limits are cached.
    * ``history_page_size``: rows asked for per trade-history page (VALR's maximum is 100;
      tests make it small to prove that a fetch pages on until complete).
    * ``clock_check_interval_s``: how often the clock offset is measured again from
      ``/v1/public/time`` (besides at start and after any 401).
    * ``status_poll_s``: how often ``/v1/public/status`` is read (besides after a 503 on a
      write, and before refusing an order on a status seen earlier).
    """

    read_policy: RetryPolicy = RetryPolicy()
    write_policy: RetryPolicy = RetryPolicy(max_attempts=6, max_total_s=60.0)
    lookup_policy: RetryPolicy = RetryPolicy(max_attempts=6, max_total_s=30.0)
    lookup_grace_s: float = 0.5
    lookup_window_s: float | None = None  # None: twice valr.request_timeout_s
    ping_interval_s: float = 30.0
    auth_timeout_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 60.0
    ready_timeout_s: float = 10.0
    reconcile_overlap_s: float = 5.0
    not_found_grace_s: float | None = None  # None: twice valr.request_timeout_s
    pairs_ttl_s: float = 300.0
    history_page_size: int = 100
    clock_check_interval_s: float = 60.0
    status_poll_s: float = 10.0
