"""Notifications: event -> outbox row (in the cause's transaction) -> delivery task.

Contract:

* An event worth telling an operator is written to the ``outbox`` table *inside the
  transaction of what caused it* (:func:`enqueue`, or :meth:`Notifications.record` which also
  applies the ``[notify]`` filters). A mode change and its notification commit together or not
  at all; a crash after the commit still delivers the notification after the restart.
* :class:`Notifications` runs one delivery task. It sends due rows oldest first to every
  notifier (each ``send`` under ``notify.timeout_s``), marks them delivered, or records the
  error and schedules a retry with exponential backoff and jitter. The retry state lives in
  the row (``attempts``, ``next_attempt_at``, ``last_error``), so it survives restarts. After
  ``notify.max_attempts`` the row is left undelivered with its ``last_error`` and logged at
  error level. Delivery is at least once: a crash between a send and its commit resends.
* Trading never waits on a notification: enqueueing is one INSERT in a transaction the caller
  makes anyway, and delivery runs in its own task, so a failing or hanging receiver only
  delays notifications.
* Everything also fans out in memory to subscribers (``GET /api/events``): see
  :meth:`Notifications.publish` and :meth:`Notifications.subscribe`.

Filtering is decided here, not by each caller: :func:`enqueue` always writes (for callers that
have decided), :meth:`Notifications.record` (the ``EnqueueFn`` the daemon hands to the mode
orchestrator and the router) writes only what :func:`wants` accepts.

The event builders (one per kind in ``heliosd.core.config.EVENT_KINDS``) live in
:mod:`heliosd.notify.notices` and are re-exported here.

Who owns what: :mod:`~heliosd.notify.outbox` (rows), :mod:`~heliosd.notify.filters`
(:func:`wants`), :mod:`~heliosd.notify.delivery` (:class:`Notifications`),
:mod:`~heliosd.notify.subscribers` (the event hub), :mod:`~heliosd.notify.notices` (what each
notification says, with :mod:`~heliosd.notify.trade_notices` for orders and fills and
:mod:`~heliosd.notify.notice_format` for what they share), :mod:`~heliosd.notify.journal`
(the ``event=`` log lines). Every name
imported from ``heliosd.notify`` before the split is re-exported here.
"""

from __future__ import annotations

from heliosd.core.config import EVENT_KINDS
from heliosd.notify.delivery import Notifications
from heliosd.notify.filters import TRADE_KINDS, wants
from heliosd.notify.notices import (
    URGENT_KINDS,
    connection_lost_event,
    connection_restored_event,
    emergency_stop_event,
    fill_event,
    fills_event,
    halt_event,
    integrity_event,
    live_refused_event,
    mode_change_event,
    order_event,
    positions_close_event,
    resume_event,
    risk_rejected_event,
    strategy_error_event,
)
from heliosd.notify.outbox import _dumps, enqueue, enqueue_many
from heliosd.notify.subscribers import Subscription

__all__ = [
    "EVENT_KINDS",
    "TRADE_KINDS",
    "URGENT_KINDS",
    "Notifications",
    "Subscription",
    "_dumps",
    "connection_lost_event",
    "connection_restored_event",
    "emergency_stop_event",
    "enqueue",
    "enqueue_many",
    "fill_event",
    "fills_event",
    "halt_event",
    "integrity_event",
    "live_refused_event",
    "mode_change_event",
    "order_event",
    "positions_close_event",
    "resume_event",
    "risk_rejected_event",
    "strategy_error_event",
    "wants",
]
