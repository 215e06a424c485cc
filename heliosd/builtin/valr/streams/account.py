"""``/ws/account``: :class:`AccountStream` (fills, order updates, open orders, balances),
its dead-man's switch (CANCEL_ON_DISCONNECT), the REST reconciliation before it is ready,
and the catch-up after a skipped message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.retry import ValrTuning
from heliosd.builtin.valr.streams.reconnect import _PARSE_ERRORS, Sign, _Stream
from heliosd.core.protocols import ExchangeEvents

log = logging.getLogger("heliosd.builtin.valr.streams")  # one logger for both streams

Reconcile = Callable[[ExchangeEvents], Awaitable[None]]

ARM_CANCEL_ON_DISCONNECT = json.dumps(
    {"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": True}}
)


# After an unreadable account message, wait this long before reconciling through REST, so a
# burst of bad messages costs a single catch-up.
CATCH_UP_DELAY_S = 0.5


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
