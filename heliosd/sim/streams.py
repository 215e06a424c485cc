"""Fan-out of engine events to WebSocket connections, with the WS fault modes.

Each message is serialised once and queued on every interested socket's ``Outbox``; one
writer task per socket drains its queue, so the engine never awaits a slow client and the
order of messages on a socket is the order the engine produced them.

Faults applied here (``FaultConfig``):

* ``pause_account_stream``: account events are dropped, never queued (a paused client
  misses them for good and must reconcile through REST). Control replies still flow.
* ``garble_rate``: each pushed event (not AUTHENTICATED/SUBSCRIBED/PONG) is, with that
  probability, replaced by a truncated frame, a non-JSON frame, or an unknown ``type``.
* ``drop_account_messages``: the next N account messages of a type are dropped at the
  source (no socket of the account gets them), counted in ``dropped_account_messages``,
  and kept: :meth:`StreamHub.redeliver_dropped` sends them later (a message arriving late).
* ``garble_maker_rewards``: the next N ``NEW_ACCOUNT_TRADE`` messages with a ``makerReward``
  carry an unreadable one instead, counted in ``garbled_maker_rewards``.
* ``drop_all`` / ``drop_account_sockets``: close sockets now, with a close frame (1001) or
  by aborting TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiohttp import WSCloseCode, web

from heliosd.sim.config import FaultConfig
from heliosd.sim.wire import dumps

TRADE_EVENTS = frozenset({"AGGREGATED_ORDERBOOK_UPDATE", "MARKET_SUMMARY_UPDATE", "NEW_TRADE"})


class Outbox:
    """One socket's outgoing queue and the task that writes it."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self._transport = request.transport
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Armed by the client's CANCEL_ON_DISCONNECT (account sockets only).
        self.cancel_on_disconnect = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def push(self, text: str) -> None:
        self._queue.append(text)
        self._wake.set()

    def extend(self, texts: list[str]) -> None:
        self._queue.extend(texts)
        self._wake.set()

    async def _run(self) -> None:
        queue, ws = self._queue, self.ws
        try:
            while not ws.closed:
                while queue:
                    await ws.send_str(queue.popleft())
                self._wake.clear()
                await self._wake.wait()
        except (ConnectionError, RuntimeError):
            return  # the peer went away mid-write; the reader side cleans up

    async def close(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"") -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class TradeSubscriber:
    """A trade-stream socket and the pairs it wants per event."""

    def __init__(self, box: Outbox) -> None:
        self.box = box
        self.subscriptions: dict[str, set[str]] = {}


class StreamHub:
    """Implements the engine's ``EventSink`` on top of the live sockets."""

    def __init__(self, faults: FaultConfig, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed * 31 + 7)
        self._accounts: dict[str, set[Outbox]] = {}
        self._trade: set[TradeSubscriber] = set()
        self._index: dict[tuple[str, str], set[TradeSubscriber]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # (account, text) of each message drop_account_messages removed, for redelivery.
        self._dropped: list[tuple[str, str]] = []

    # -- EventSink ----------------------------------------------------------------------

    def wants_account(self, account_id: str) -> bool:
        return bool(self._accounts.get(account_id)) and not self.faults.pause_account_stream

    def account(self, account_id: str, message: dict[str, Any]) -> None:
        if self.faults.pause_account_stream:
            return
        boxes = self._accounts.get(account_id)
        if boxes:
            if self.faults.drop_account_messages and self.drops(message.get("type")):
                self._dropped.append((account_id, dumps(message)))
                return
            if self.faults.garble_maker_rewards:
                message = self.garble_reward(message)
            text = dumps(message)
            for box in boxes:
                box.push(self.garble(text))

    def account_texts(self, account_id: str, texts: list[str]) -> None:
        if self.faults.pause_account_stream:
            return
        if self.faults.drop_account_messages and self._accounts.get(account_id):
            kept = []
            for text in texts:
                if self.drops(_type_of(text)):
                    self._dropped.append((account_id, text))
                else:
                    kept.append(text)
            texts = kept
        for box in self._accounts.get(account_id, ()):
            if self.faults.garble_rate > 0:
                box.extend([self.garble(text) for text in texts])
            else:
                box.extend(texts)

    def wants_market(self, event: str, pair: str) -> bool:
        return bool(self._index.get((event, pair)))

    def market(self, event: str, pair: str, message: dict[str, Any]) -> None:
        subscribers = self._index.get((event, pair))
        if subscribers:
            text = dumps(message)
            for sub in subscribers:
                sub.box.push(self.garble(text))

    # -- faults -------------------------------------------------------------------------

    def drops(self, kind: object) -> bool:
        """Whether an account message of ``kind`` is to be dropped (and count it if so)."""
        pending = self.faults.drop_account_messages
        left = pending.get(kind) if isinstance(kind, str) else None
        if not left:
            return False
        assert isinstance(kind, str)
        if left <= 1:
            del pending[kind]
        else:
            pending[kind] = left - 1
        dropped = self.faults.dropped_account_messages
        dropped[kind] = dropped.get(kind, 0) + 1
        return True

    def garble_reward(self, message: dict[str, Any]) -> dict[str, Any]:
        """``message`` with an unreadable ``makerReward`` when one is due (and counted)."""
        data = message.get("data")
        if message.get("type") != "NEW_ACCOUNT_TRADE" or not isinstance(data, dict):
            return message
        if "makerReward" not in data:
            return message
        self.faults.garble_maker_rewards -= 1
        self.faults.garbled_maker_rewards += 1
        # A copy: the engine's own objects (and the REST rows built from the trade) stay right.
        return {**message, "data": {**data, "makerReward": "0.0I"}}

    def keep_dropped(self, account_id: str, text: str) -> None:
        """Remember a message dropped elsewhere (the connect snapshot) for redelivery."""
        self._dropped.append((account_id, text))

    def redeliver_dropped(self, account_id: str | None = None) -> int:
        """Send the dropped messages (of one account, or all) to their account's open
        sockets now, in the order they were dropped; each is sent once (a message with no
        socket to go to is gone). Returns how many were sent."""
        sent, kept = 0, []
        for owner, text in self._dropped:
            if account_id is not None and owner != account_id:
                kept.append((owner, text))
                continue
            boxes = self._accounts.get(owner, ())
            for box in boxes:
                box.push(text)
            sent += bool(boxes)
        self._dropped = kept
        return sent

    def drop_account_sockets(self, account_id: str | None = None, mode: str | None = None) -> int:
        """Close the account sockets (of one account, or all) now; returns how many."""
        groups = (
            [self._accounts.get(account_id, set())]
            if account_id is not None
            else list(self._accounts.values())
        )
        boxes = [box for group in groups for box in group]
        for box in boxes:
            self._drop(box, mode or self.faults.ws_drop_mode)
        return len(boxes)

    def drop_trade_sockets(self, mode: str | None = None) -> int:
        """Close every trade socket now; returns how many."""
        boxes = [sub.box for sub in self._trade]
        for box in boxes:
            self._drop(box, mode or self.faults.ws_drop_mode)
        return len(boxes)

    def _drop(self, box: Outbox, mode: str) -> None:
        if mode == "abort":
            box.abort()
        else:
            self.spawn(box.close(WSCloseCode.GOING_AWAY, b"sim: connection dropped"))

    def garble(self, text: str) -> str:
        rate = self.faults.garble_rate
        if rate <= 0 or self._rng.random() >= rate:
            return text
        kind = self._rng.randrange(3)
        if kind == 0:
            return text[: max(1, len(text) // 2)]  # truncated JSON
        if kind == 1:
            return "\x00garbled\xff" + text[-8:]  # not JSON at all
        return dumps({"type": "SIM_UNKNOWN_EVENT", "data": {"garbled": True}})

    def drop_all(self) -> None:
        """Close every account and trade socket now (``FaultConfig.ws_drop_mode``)."""
        boxes = [box for group in self._accounts.values() for box in group]
        boxes += [sub.box for sub in self._trade]
        for box in boxes:
            self._drop(box, self.faults.ws_drop_mode)

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close_all(self, timeout: float = 1.0) -> None:
        """Close every socket for shutdown; one whose peer stopped reading is aborted
        after ``timeout`` so stopping the simulator never hangs on a stuck client."""
        boxes = [box for group in self._accounts.values() for box in group]
        boxes += [sub.box for sub in self._trade]

        async def close(box: Outbox) -> None:
            try:
                await asyncio.wait_for(box.close(WSCloseCode.GOING_AWAY, b"sim stopping"), timeout)
            except TimeoutError:
                box.abort()

        await asyncio.gather(*(close(box) for box in boxes))
        for task in list(self._tasks):
            task.cancel()

    # -- registry -----------------------------------------------------------------------

    def add_account_socket(self, account_id: str, box: Outbox) -> None:
        self._accounts.setdefault(account_id, set()).add(box)

    def remove_account_socket(self, account_id: str, box: Outbox) -> None:
        boxes = self._accounts.get(account_id)
        if boxes is not None:
            boxes.discard(box)
            if not boxes:
                del self._accounts[account_id]

    def add_trade_socket(self, sub: TradeSubscriber) -> None:
        self._trade.add(sub)

    def remove_trade_socket(self, sub: TradeSubscriber) -> None:
        self._trade.discard(sub)
        for event in list(sub.subscriptions):
            self.set_pairs(sub, event, ())

    def set_pairs(self, sub: TradeSubscriber, event: str, pairs: Iterable[str]) -> None:
        """Replace ``event``'s pair set (an empty set unsubscribes)."""
        new = set(pairs)
        for pair in sub.subscriptions.get(event, set()) - new:
            group = self._index.get((event, pair))
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._index[(event, pair)]
        for pair in new:
            self._index.setdefault((event, pair), set()).add(sub)
        if new:
            sub.subscriptions[event] = new
        else:
            sub.subscriptions.pop(event, None)

    def account_socket_count(self) -> int:
        return sum(len(group) for group in self._accounts.values())

    def armed_account_sockets(self, account_id: str) -> int:
        """Account sockets of ``account_id`` armed with CANCEL_ON_DISCONNECT."""
        return sum(1 for box in self._accounts.get(account_id, ()) if box.cancel_on_disconnect)

    def trade_socket_count(self) -> int:
        return len(self._trade)


def _type_of(text: str) -> object:
    """The ``type`` of a serialised message (only parsed while drops are pending)."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message.get("type") if isinstance(message, dict) else None
