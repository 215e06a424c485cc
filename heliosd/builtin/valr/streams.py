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

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.retry import ValrTuning
from heliosd.core.errors import AuthError, HeliosError, TransientError
from heliosd.core.protocols import ExchangeEvents
from heliosd.core.retry import RetryPolicy, delays
from heliosd.core.types import Quote, utcnow

log = logging.getLogger(__name__)
# The websockets library logs handshake headers (our API key and signature) and frame
# contents at DEBUG. Its logger is pinned to INFO so a debug log level never leaks them.
_ws_log = logging.getLogger(f"{__name__}.websockets")
_ws_log.setLevel(logging.INFO)

Sign = Callable[[str, str], dict[str, str]]  # (verb, path) -> auth headers
Reconcile = Callable[[ExchangeEvents], Awaitable[None]]
Handler = Callable[[Any], Awaitable[None]]

PING = json.dumps({"type": "PING"})
ARM_CANCEL_ON_DISCONNECT = json.dumps(
    {"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": True}}
)
# Every frame is decoded with msgspec: 1.2-1.9 us for a 360-470 byte account message against
# 4.9-5.2 us with json (three messages per fill; bench/fills.py). Same dicts, lists, str,
# int (any size), float; it refuses NaN/Infinity, which json would accept: such a message
# is skipped as unreadable. Its DecodeError is a ValueError.
_decode = msgspec.json.Decoder().decode
_PARSE_ERRORS = (parse.ParseError, AttributeError, TypeError, KeyError, IndexError)


# Not a network failure but a programming error (ours, or an API of a library we call the
# wrong way: websockets older than 17.1 raise TypeError for reconnect_delays=): retrying it
# would log the same failure forever while the stream stays down. The stream stops instead,
# loudly (CRITICAL, with the traceback), and every order that needs it is refused at once
# with the reason (StreamBroken), until the daemon is restarted on fixed code.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    TypeError, AttributeError, NameError, ImportError, AssertionError,
)  # fmt: skip


class StreamBroken(TransientError):
    """The stream stopped on a programming error; it will not reconnect by itself."""

    code = "stream_broken"


class _Reconnect(Exception):
    """End this connection and let the loop open a new one (``detail`` says why)."""


class _SignedConnect(connect):
    """``connect`` that signs the upgrade request anew on every (re)connection attempt."""

    def __init__(self, uri: str, *, sign: Sign | None, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._sign = sign
        self._path = urlsplit(uri).path

    async def connect(self) -> ClientConnection:
        if self._sign is not None:
            self.additional_headers = self._sign("GET", self._path)
        return await super().connect()


def _backoff(tuning: ValrTuning) -> Callable[[], Iterator[float]]:
    """Reconnect delays: the shared retry policy (heliosd.core.retry), from the tuning's
    bounds."""
    policy = RetryPolicy(
        base_delay_s=tuning.reconnect_initial_s, max_delay_s=tuning.reconnect_max_s
    )
    return lambda: delays(policy)


class _Stream:
    """Reconnect loop, keep-alive and message dispatch shared by both streams."""

    name = "stream"
    # Wait for AUTHENTICATED (or a first message) after a signed connect: account only.
    waits_for_auth = False
    # Types VALR documents that this client does not act on: dropped without a warning.
    ignored: Collection[str] = frozenset({"AUTHENTICATED", "PONG", "SUBSCRIBED", "UNSUBSCRIBED"})

    def __init__(
        self, url: str, events: ExchangeEvents, tuning: ValrTuning, *, sign: Sign | None
    ) -> None:
        self._url = url
        self._events = events
        self._tuning = tuning
        self._sign = sign
        self._task: asyncio.Task[None] | None = None
        self._up = False
        # Why the last connection attempt failed, when it was the credentials.
        self.last_error: HeliosError | None = None
        self.broken: StreamBroken | None = None  # stopped on a programming error: see above
        self._last_pong = 0.0
        self._quiet = False  # not reading (reconciling): do not judge missing PONGs
        self._handlers: dict[str, Handler] = {}
        self.connections = 0  # sessions opened so far (for health views and tests)
        # time.monotonic() of the last message of any kind (PONGs too): how fresh the socket
        # is, for `heliosctl doctor`; None before the first.
        self.last_message_at: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"valr-{self.name}-stream"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._went_down("client closed")

    @property
    def up(self) -> bool:
        return self._up

    # ------------------------------------------------------------------ the loop

    def _process_exception(self, exc: Exception) -> Exception | None:
        """Every connection failure is retried with backoff; refusals are worth a warning.
        A programming error is raised, not retried (PROGRAMMING_ERRORS)."""
        if isinstance(exc, PROGRAMMING_ERRORS):
            return exc
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            log.warning(
                "VALR %s stream: handshake refused with HTTP %d; retrying with backoff",
                self.name,
                status,
            )
            if status in (401, 403):
                self.last_error = AuthError(
                    f"VALR refused the {self.name} stream's credentials (HTTP {status})"
                )
        else:
            log.info("VALR %s stream: connect failed (%s)", self.name, type(exc).__name__)
        return None

    async def _run(self) -> None:
        delays = _backoff(self._tuning)()
        while True:
            try:
                async for ws in _SignedConnect(
                    self._url,
                    sign=self._sign,
                    ping_interval=None,  # VALR wants its own JSON PING message
                    process_exception=self._process_exception,
                    reconnect_delays=_backoff(self._tuning),
                    open_timeout=self._tuning.auth_timeout_s,
                    close_timeout=2,
                    max_size=2**22,
                    logger=_ws_log,
                ):
                    detail, failed = "connection closed by VALR", False
                    try:
                        await self._session(ws)
                    except ConnectionClosed as exc:
                        code = exc.rcvd.code if exc.rcvd is not None else "none"
                        detail = f"connection closed (code {code})"
                    except _Reconnect as exc:
                        detail, failed = str(exc), True
                    except HeliosError as exc:
                        detail, failed = f"reconciliation failed: {exc.message}", True
                        log.warning("VALR %s stream: %s", self.name, detail)
                    except Exception:
                        detail, failed = "event handling failed", True
                        log.exception(
                            "VALR %s stream: event handling failed; reconnecting to reconcile",
                            self.name,
                        )
                    await self._went_down(detail)
                    if failed:
                        await asyncio.sleep(next(delays))
                    else:
                        delays = _backoff(self._tuning)()
            except asyncio.CancelledError:
                raise
            except PROGRAMMING_ERRORS as exc:
                self.broken = StreamBroken(
                    f"the VALR {self.name} stream stopped: {type(exc).__name__}: {exc} (a"
                    " programming error, not a network failure: not retried; restart heliosd"
                    " once it is fixed)"
                )
                log.critical("VALR %s stream: %s", self.name, self.broken.message, exc_info=exc)
                await self._went_down(f"stream broken ({type(exc).__name__})")
                return
            except Exception:  # a bug in this loop: report it, never stop streaming
                log.exception("VALR %s stream loop failed; restarting", self.name)
                await self._went_down("stream loop failed")
                await asyncio.sleep(next(delays))

    async def _session(self, ws: ClientConnection) -> None:
        self.connections += 1
        self._last_pong = asyncio.get_running_loop().time()
        pinger = asyncio.get_running_loop().create_task(self._keepalive(ws))
        try:
            if self._sign is not None and self.waits_for_auth:
                await self._await_authenticated(ws)
            detail = await self._on_open(ws)
            self._up, self.last_error = True, None
            await self._events.on_connection(self.name, True, detail)
            async for raw in ws:
                await self._handle(raw)
        finally:
            pinger.cancel()

    async def _await_authenticated(self, ws: ClientConnection) -> None:
        """Until VALR's AUTHENTICATED, or its first other message (on ``/ws/account`` the
        balance and open-order snapshot VALR pushes on connect [VALR's API reference,
        one source]: only an authenticated socket gets it), handled in order; or, after
        ``auth_timeout_s`` of silence, carry on with a warning. Nothing here is trusted
        with the credentials: the signed upgrade was accepted, and the REST reconciliation
        that follows fails with an AuthError if VALR refuses them. A socket closed first
        reconnects."""
        try:
            async with asyncio.timeout(self._tuning.auth_timeout_s):
                async for raw in ws:
                    if _type_of(raw) == "AUTHENTICATED":
                        return
                    await self._handle(raw)
                    return
        except TimeoutError:
            log.warning(
                "VALR %s stream: no AUTHENTICATED nor any message %.1f s after connecting;"
                " carrying on (VALR accepted the signed connection)",
                self.name,
                self._tuning.auth_timeout_s,
            )
            return
        raise _Reconnect("closed before AUTHENTICATED")

    async def _on_open(self, ws: ClientConnection) -> str:
        """Per-stream work after authentication; returns the on_connection detail."""
        raise NotImplementedError

    async def _keepalive(self, ws: ClientConnection) -> None:
        interval = self._tuning.ping_interval_s
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(interval)
                if self._quiet:
                    self._last_pong = loop.time()
                elif loop.time() - self._last_pong > 2 * interval:
                    log.warning(
                        "VALR %s stream: no PONG for %.1f s; reconnecting",
                        self.name,
                        loop.time() - self._last_pong,
                    )
                    ws.transport.abort()
                    return
                await ws.send(PING)
        except ConnectionClosed:
            return

    async def _went_down(self, detail: str) -> None:
        if not self._up:
            return
        self._up = False
        self._on_down()
        try:
            await self._events.on_connection(self.name, False, detail)
        except Exception:
            log.exception("VALR %s stream: on_connection failed", self.name)

    def _on_down(self) -> None:
        """Per-stream state to clear when the connection is lost."""

    # ------------------------------------------------------------------ messages

    async def _handle(self, raw: str | bytes) -> None:
        """Decode once, dispatch by ``type``; anything unreadable is skipped with a warning."""
        self.last_message_at = time.monotonic()
        try:
            msg = _decode(raw)
            kind = msg["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("VALR %s stream: skipped an unreadable message", self.name)
            self._lost_message()
            return
        if not isinstance(kind, str):
            log.warning("VALR %s stream: skipped a message without a type", self.name)
            self._lost_message()
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            await handler(msg)
        elif kind == "PONG":
            self._last_pong = asyncio.get_running_loop().time()
        elif kind not in self.ignored:
            log.warning("VALR %s stream: skipped a message of unknown type %.40r", self.name, kind)
            self._lost_message()

    def _skip(self, kind: str, exc: BaseException) -> None:
        log.warning("VALR %s stream: skipped a %s message (%s)", self.name, kind, exc)
        self._lost_message()

    def _lost_message(self) -> None:
        """A skipped message may have carried something that matters; see subclasses."""


# After an unreadable account message, wait this long before reconciling through REST, so a
# burst of bad messages costs a single catch-up.
CATCH_UP_DELAY_S = 0.5


def _type_of(raw: str | bytes) -> Any:
    try:
        msg = _decode(raw)
    except ValueError:
        return None
    return msg.get("type") if isinstance(msg, dict) else None


class AccountStream(_Stream):
    """``/ws/account``: fills, order updates, open orders and balances, reconciled through
    REST after every (re)connect before :attr:`ready` is set."""

    name = "account"
    waits_for_auth = True
    # NEW_ACCOUNT_HISTORY_RECORD (the ledger row VALR pushes with each trade, among others)
    # is deliberately not a fill source. Fills are exactly-once by VALR's trade id, and that
    # row's ``id`` is a ledger-row id that is not documented to equal the trade id
    # (VALR's API reference lists it with no trade id; its shape is unverified,
    # one source), so counting fills from it besides NEW_ACCOUNT_TRADE could count a trade
    # twice; and it carries nothing a fill needs that NEW_ACCOUNT_TRADE lacks. A fill whose
    # NEW_ACCOUNT_TRADE is lost is recovered by the fill check from VALR's trade history
    # (heliosd.trading.fillcheck), keyed by the trade id.
    ignored = frozenset(
        {
            *_Stream.ignored,
            "NEW_ACCOUNT_HISTORY_RECORD",
            "MODIFY_ORDER_OUTCOME",
            "INSTANT_ORDER_COMPLETED",
            "NEW_PENDING_RECEIVE",
            "SEND_STATUS_UPDATE",
            "OPEN_POSITION_UPDATE",
            "REDUCE_POSITION",
            "POSITION_CLOSED",
            "ADD_CONDITIONAL_ORDER",
            "REMOVE_CONDITIONAL_ORDER",
            "MARGIN_INFO",
            "LEVERAGE_UPDATED",
        }
    )

    def __init__(
        self,
        url: str,
        events: ExchangeEvents,
        tuning: ValrTuning,
        *,
        sign: Sign,
        reconcile: Reconcile,
        cancel_on_disconnect: bool = False,
    ) -> None:
        super().__init__(url, events, tuning, sign=sign)
        self._reconcile = reconcile
        self._cancel_on_disconnect = cancel_on_disconnect
        # VALR confirmed the dead-man's switch on the current connection (never while down).
        self.cancel_on_disconnect_armed = False
        self._catch_up: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # connected and reconciled: orders may be placed
        # BALANCE_UPDATE rows not yet delivered (see _on_balance), by currency.
        self._balances: dict[str, Any] = {}
        self._balance_task: asyncio.Task[None] | None = None
        self._handlers = {
            "NEW_ACCOUNT_TRADE": self._on_trade,
            "ORDER_STATUS_UPDATE": self._on_status,
            "ORDER_PROCESSED": self._on_processed,
            "OPEN_ORDERS_UPDATE": self._on_open_orders,
            "BALANCE_UPDATE": self._on_balance,
            "FAILED_CANCEL_ORDER": self._on_failed_cancel,
            "CANCEL_ON_DISCONNECT_UPDATE": self._on_cancel_on_disconnect,
        }

    async def _on_open(self, ws: ClientConnection) -> str:
        if self._cancel_on_disconnect:
            # First, so orders resting from before this connection are covered at once. The
            # answer is read after the reconciliation below, with everything else.
            await ws.send(ARM_CANCEL_ON_DISCONNECT)
        # Reconcile before reading further: events arriving meanwhile wait in the socket
        # buffer and are applied afterwards, in order (each OPEN_ORDERS_UPDATE is a full
        # snapshot and each BALANCE_UPDATE a full row, so the latest always wins).
        self._quiet = True
        try:
            await self._reconcile(self._events)
        finally:
            self._quiet = False
        self.ready.set()
        return "connected and reconciled"

    def _on_down(self) -> None:
        self.ready.clear()
        self.cancel_on_disconnect_armed = False  # VALR's switch belonged to that socket

    async def _on_cancel_on_disconnect(self, msg: Any) -> None:
        # VALR answers {"cancelOnDisconnect": "true"}, a string (its docs' example, one
        # source, marked experimental); a JSON true is accepted too. Where the flag sits is
        # not documented beyond the example: under "data" as VALR's other answers, else at
        # the top level. Anything else means the switch is not armed.
        data = msg.get("data") if isinstance(msg, dict) else None
        holder = data if isinstance(data, dict) else msg
        flag = holder.get("cancelOnDisconnect") if isinstance(holder, dict) else None
        armed = flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")
        self.cancel_on_disconnect_armed = armed
        if armed:
            log.info("VALR account stream: cancel-on-disconnect armed")
        elif self._cancel_on_disconnect:
            log.warning(
                "VALR account stream: cancel-on-disconnect NOT armed (VALR answered %.40r);"
                " open orders will stay at VALR if this daemon loses its connection",
                flag,
            )

    async def stop(self) -> None:
        for task in (self._catch_up, self._balance_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().stop()

    async def _went_down(self, detail: str) -> None:
        # Rows the venue sent before the connection ended are still its word: delivered
        # before the gap is reported (and before the reconnect's snapshot).
        try:
            await self._deliver_balances()
        except Exception:
            log.exception("VALR account stream: balance delivery failed")
        await super()._went_down(detail)

    def _lost_message(self) -> None:
        """A skipped account message may have been a fill: reconcile through REST soon.

        One catch-up at a time, a moment later (a burst of garbage costs one catch-up). It
        does not block orders: everything it delivers is idempotent (fills are keyed by
        trade id, open orders and balances are snapshots)."""
        if self._catch_up is not None and not self._catch_up.done():
            return
        self._catch_up = asyncio.get_running_loop().create_task(self._catch_up_later())

    async def _catch_up_later(self) -> None:
        await asyncio.sleep(CATCH_UP_DELAY_S)
        try:
            await self._reconcile(self._events)
        except Exception as exc:  # the next reconnect reconciles anyway
            log.warning("VALR account stream: catch-up after a skipped message failed: %s", exc)

    async def _on_trade(self, msg: Any) -> None:
        try:
            fill = parse.fill(msg["data"], lenient=True)
        except _PARSE_ERRORS as exc:
            return self._skip("NEW_ACCOUNT_TRADE", exc)
        await self._events.on_fill(fill)

    async def _on_status(self, msg: Any) -> None:
        await self._deliver_balances()  # the venue's order: balances said before this first
        try:
            status = parse.order_status(msg["data"], lenient=True)
        except _PARSE_ERRORS as exc:
            return self._skip("ORDER_STATUS_UPDATE", exc)
        await self._events.on_order_status(status)

    async def _on_processed(self, msg: Any) -> None:
        await self._deliver_balances()  # the venue's order: balances said before this first
        try:
            status = parse.order_processed_failure(msg["data"])
        except _PARSE_ERRORS as exc:
            return self._skip("ORDER_PROCESSED", exc)
        if status is not None:
            await self._events.on_order_status(status)

    async def _on_open_orders(self, msg: Any) -> None:
        await self._deliver_balances()  # the venue's order: balances said before this first
        try:
            data = msg["data"]
            if not isinstance(data, list):
                raise parse.ParseError("data is not a list")
            orders = [parse.open_order(row, lenient=True) for row in data]
        except _PARSE_ERRORS as exc:
            return self._skip("OPEN_ORDERS_UPDATE", exc)
        await self._events.on_open_orders(orders)

    async def _on_balance(self, msg: Any) -> None:
        # Each BALANCE_UPDATE is a currency's full row: of several for one currency in a
        # burst (two per fill), only the last matters. So rows wait, latest per currency,
        # until this loop turn's messages are read (or another kind of event comes), then
        # are parsed and delivered in one call: a 20,000-fill burst delivers a few hundred
        # balance calls, not 40,000 (bench/fills.py).
        data = msg.get("data") if isinstance(msg, dict) else None
        cur = data.get("currency") if isinstance(data, dict) else None
        key = cur.get("shortName") or cur.get("symbol") if isinstance(cur, dict) else cur
        if not isinstance(key, str) or not key:
            try:
                parse.balance(data)  # type: ignore[arg-type]  # names what is missing
            except _PARSE_ERRORS as exc:
                return self._skip("BALANCE_UPDATE", exc)
            return self._skip("BALANCE_UPDATE", parse.ParseError("currency is missing"))
        pending = self._balances
        pending.pop(key, None)  # re-inserted last: delivered in the order last updated
        pending[key] = data
        if len(pending) == 1 and self._balance_task is None:
            self._balance_task = asyncio.get_running_loop().create_task(self._balances_later())

    async def _balances_later(self) -> None:
        try:
            await self._deliver_balances()
        except Exception:  # the sink failed: a catch-up re-reads the balances snapshot
            log.exception("VALR account stream: balance delivery failed; catching up")
            self._lost_message()
        finally:
            self._balance_task = None

    async def _deliver_balances(self) -> None:
        """Deliver the balance rows waiting (parsed now); called before any other event but
        fills (whose application does not read venue balances) so the order holds."""
        if not self._balances:
            return
        rows, self._balances = self._balances, {}
        balances = []
        for data in rows.values():
            try:
                balances.append(parse.balance(data))
            except _PARSE_ERRORS as exc:
                self._skip("BALANCE_UPDATE", exc)
        if balances:
            await self._events.on_balances(balances, snapshot=False)

    async def _on_failed_cancel(self, msg: Any) -> None:
        data = msg.get("data") if isinstance(msg, dict) else None
        order_id = data.get("orderId") if isinstance(data, dict) else None
        log.warning("VALR could not cancel order %s", order_id)


class TradeStream(_Stream):
    """``/ws/trade``: top of book and last price per configured pair -> ``on_quote``."""

    name = "trade"
    ignored = frozenset({*_Stream.ignored, "NEW_TRADE", "NEW_TRADE_BUCKET", "MARK_PRICE_UPDATE"})

    def __init__(
        self,
        url: str,
        events: ExchangeEvents,
        tuning: ValrTuning,
        *,
        sign: Sign | None,
        pairs: Collection[str],
    ) -> None:
        super().__init__(url, events, tuning, sign=sign)
        self._pairs = list(pairs)
        # pair -> [bid, ask, last]: a quote combines the book top and the last trade.
        self._state: dict[str, list[Any]] = {}
        self._handlers = {
            "AGGREGATED_ORDERBOOK_UPDATE": self._on_book,
            "MARKET_SUMMARY_UPDATE": self._on_summary,
        }

    async def _on_open(self, ws: ClientConnection) -> str:
        pairs = self._pairs
        await ws.send(
            json.dumps(
                {
                    "type": "SUBSCRIBE",
                    "subscriptions": [
                        {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": pairs},
                        {"event": "MARKET_SUMMARY_UPDATE", "pairs": pairs},
                    ],
                }
            )
        )
        return f"subscribed to {', '.join(pairs)}"

    def _on_down(self) -> None:
        self._state.clear()  # a book from before the gap is stale

    def _slot(self, msg: Any) -> tuple[str, list[Any]]:
        pair = msg.get("currencyPairSymbol")
        if not isinstance(pair, str):
            data = msg.get("data")
            pair = data.get("currencyPair") if isinstance(data, dict) else None
        if not isinstance(pair, str) or not pair:
            raise parse.ParseError("currencyPairSymbol is missing")
        slot = self._state.get(pair)
        if slot is None:
            slot = self._state[pair] = [None, None, None]
        return pair, slot

    async def _on_book(self, msg: Any) -> None:
        try:
            pair, slot = self._slot(msg)
            slot[0], slot[1] = parse.book_top(msg["data"])
        except _PARSE_ERRORS as exc:
            return self._skip("AGGREGATED_ORDERBOOK_UPDATE", exc)
        await self._events.on_quote(Quote(pair, slot[0], slot[1], slot[2], utcnow()))

    async def _on_summary(self, msg: Any) -> None:
        try:
            pair, slot = self._slot(msg)
            slot[2] = parse.market_summary(msg["data"], pair).last
        except _PARSE_ERRORS as exc:
            return self._skip("MARKET_SUMMARY_UPDATE", exc)
        await self._events.on_quote(Quote(pair, slot[0], slot[1], slot[2], utcnow()))
