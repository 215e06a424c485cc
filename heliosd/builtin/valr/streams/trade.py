"""``/ws/trade``: :class:`TradeStream`, the book top and last price of each configured pair
(one SUBSCRIBE per connection) delivered as quotes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from websockets.asyncio.client import ClientConnection

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.retry import ValrTuning
from heliosd.builtin.valr.streams.reconnect import _PARSE_ERRORS, Sign, _Stream
from heliosd.core.protocols import ExchangeEvents
from heliosd.core.types import Quote, utcnow


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
