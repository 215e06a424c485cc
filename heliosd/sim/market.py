"""One pair's order book: the synthetic market maker's quotes plus resting client orders.

The market maker quotes ``mm_levels`` price levels each side of the mid, ``half_spread``
away from it and ``level_step`` apart, each worth about ``mm_level_notional`` of quote.
Every re-quote restores its full depth: it stands for the rest of the market, so clients
can always trade, and a client's resting order only ever fills when the market moves
through it (VALR documents no rule; this is the simplest honest one).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from heliosd.sim.config import PairSpec, SimConfig
from heliosd.sim.orders import ZERO, Order, PublicTrade

BPS = Decimal(10_000)


@dataclass(slots=True)
class Level:
    """A market-maker price level (``quantity`` shrinks as takers hit it)."""

    price: Decimal
    quantity: Decimal


def floor_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(ROUND_FLOOR) * tick


def ceil_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(ROUND_CEILING) * tick


class Market:
    """Book and statistics for one pair. Mutated only by the matching engine."""

    def __init__(self, spec: PairSpec, config: SimConfig, start_price: Decimal) -> None:
        self.spec = spec
        self._config = config
        self.mid = floor_to_tick(start_price, spec.tick_size)
        self.previous_close = self.mid
        self.last_traded_price = self.mid
        self.high = self.mid
        self.low = self.mid
        self.base_volume = ZERO
        self.quote_volume = ZERO
        self.sequence = 0
        self.last_change = datetime.now(UTC)
        self.mm_asks: list[Level] = []  # ascending
        self.mm_bids: list[Level] = []  # descending
        self.resting: dict[str, Order] = {}  # client limit orders on the book
        self.tape: deque[PublicTrade] = deque(maxlen=1000)
        self.requote(self.mid)

    # -- market maker -------------------------------------------------------------------

    def requote(self, mid: Decimal) -> None:
        spec, cfg = self.spec, self._config
        tick = spec.tick_size
        self.mid = max(floor_to_tick(mid, tick), tick)
        half = Decimal(cfg.mm_half_spread_bps) / BPS
        step = Decimal(cfg.mm_level_step_bps) / BPS
        best_ask = ceil_to_tick(self.mid * (1 + half), tick)
        best_bid = floor_to_tick(self.mid * (1 - half), tick)
        if best_bid >= best_ask:  # tiny prices: keep at least one tick of spread
            best_bid = best_ask - tick
        asks: list[Level] = []
        bids: list[Level] = []
        for i in range(cfg.mm_levels):
            ask = max(ceil_to_tick(best_ask * (1 + step * i), tick), best_ask + tick * i)
            bid = min(floor_to_tick(best_bid * (1 - step * i), tick), best_bid - tick * i)
            asks.append(Level(ask, self._level_quantity(ask)))
            if bid > 0:
                bids.append(Level(bid, self._level_quantity(bid)))
        self.mm_asks, self.mm_bids = asks, bids
        self.changed()

    def _level_quantity(self, price: Decimal) -> Decimal:
        qty = (self._config.mm_level_notional / price).quantize(
            self.spec.base_quantum, rounding=ROUND_DOWN
        )
        return max(qty, self.spec.min_base)

    def changed(self) -> None:
        self.sequence += 1
        self.last_change = datetime.now(UTC)

    # -- queries ------------------------------------------------------------------------

    def best_ask(self) -> Decimal | None:
        # The first market-maker level with size left (takers may have emptied the top).
        prices = [lv.price for lv in self.mm_asks if lv.quantity > 0][:1]
        prices += [o.price for o in self.resting.values() if o.side == "sell"]
        return min(prices) if prices else None

    def best_bid(self) -> Decimal | None:
        prices = [lv.price for lv in self.mm_bids if lv.quantity > 0][:1]
        prices += [o.price for o in self.resting.values() if o.side == "buy"]
        return max(prices) if prices else None

    def aggregated(self, side: str, depth: int = 40) -> list[tuple[Decimal, Decimal, int]]:
        """``(price, quantity, orderCount)`` levels, best first, MM and clients merged."""
        levels: dict[Decimal, list[Decimal | int]] = {}
        mm = self.mm_asks if side == "sell" else self.mm_bids
        for lv in mm:
            if lv.quantity > 0:
                levels[lv.price] = [lv.quantity, 1]
        for order in self.resting.values():
            if order.side == side:
                entry = levels.setdefault(order.price, [ZERO, 0])
                entry[0] = Decimal(entry[0]) + order.remaining
                entry[1] = int(entry[1]) + 1
        ordered = sorted(levels.items(), reverse=(side == "buy"))
        return [(price, Decimal(q), int(n)) for price, (q, n) in ordered[:depth]]

    def record_public_trade(self, trade: PublicTrade) -> None:
        self.tape.append(trade)
        self.last_traded_price = trade.price
        self.high = max(self.high, trade.price)
        self.low = min(self.low, trade.price)
        self.base_volume += trade.quantity
        self.quote_volume += trade.quantity * trade.price

    def change_from_previous(self) -> Decimal:
        if not self.previous_close:
            return ZERO
        change = (self.last_traded_price - self.previous_close) / self.previous_close * 100
        return change.quantize(Decimal("0.01"))
