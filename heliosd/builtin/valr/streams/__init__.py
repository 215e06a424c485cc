"""VALR's two WebSocket streams: ``/ws/account`` (fills, orders, balances) and ``/ws/trade``
(prices), each a task that never dies.

Each stream is the websockets library's ``async for ws in connect(...)`` reconnect loop with
exponential backoff; the auth headers are signed afresh for every connection attempt (the
timestamp must be current). Per connection:

1. account: wait for ``AUTHENTICATED``, or any first message, within ``auth_timeout_s``;
   without either, carry on with a warning (see :meth:`_Stream._await_authenticated`).
   trade: no wait at all, AUTHENTICATED is accepted (and ignored) whenever it comes. That
   VALR sends AUTHENTICATED on a signed ``/ws/trade`` is unproven (a community SDK ignores
   it on both streams [inference]); on ``/ws/account`` its type is known from client
   libraries (its type only), not that it always comes first, so neither stream may
   depend on it;
2. account: with ``cancel_on_disconnect``, send VALR's CANCEL_ON_DISCONNECT (its answer,
   CANCEL_ON_DISCONNECT_UPDATE, sets :attr:`AccountStream.cancel_on_disconnect_armed`);
   reconcile through REST *before* reading on (balances snapshot, fills since the
   watermark, open orders), then set :attr:`AccountStream.ready`; trade: SUBSCRIBE;
3. report ``on_connection(stream, True, ...)`` and deliver events in arrival order;
4. a ``{"type":"PING"}`` every ``ping_interval_s``; no ``PONG`` for two intervals means the
   socket is dead: it is aborted and the loop reconnects.

A message that is not JSON, has an unknown type or lacks a field is logged at warning
(never its payload) and skipped. If the events sink raises, the fill or update may be lost,
so the stream logs it and reconnects: the reconciliation that follows re-delivers what was
missed.
"""

from __future__ import annotations

from heliosd.builtin.valr.streams.account import (
    ARM_CANCEL_ON_DISCONNECT as ARM_CANCEL_ON_DISCONNECT,
)
from heliosd.builtin.valr.streams.account import CATCH_UP_DELAY_S as CATCH_UP_DELAY_S
from heliosd.builtin.valr.streams.account import AccountStream as AccountStream
from heliosd.builtin.valr.streams.account import Reconcile as Reconcile
from heliosd.builtin.valr.streams.reconnect import PING as PING
from heliosd.builtin.valr.streams.reconnect import PROGRAMMING_ERRORS as PROGRAMMING_ERRORS
from heliosd.builtin.valr.streams.reconnect import Handler as Handler
from heliosd.builtin.valr.streams.reconnect import Sign as Sign
from heliosd.builtin.valr.streams.reconnect import StreamBroken as StreamBroken
from heliosd.builtin.valr.streams.trade import TradeStream as TradeStream
