"""The VALR client's timing bounds (:class:`ValrTuning`). The retry policy itself is
:mod:`heliosd.core.retry`, shared with the streams and notification delivery; its names are
re-exported here for the VALR modules and plugins that imported them from this module."""

from __future__ import annotations

from dataclasses import dataclass

from heliosd.core.retry import RetryPolicy, delays, is_retryable, read_retrying


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


__all__ = ["RetryPolicy", "ValrTuning", "delays", "is_retryable", "read_retrying"]
