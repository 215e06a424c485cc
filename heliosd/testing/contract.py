"""The exchange contract suite: behaviour every ExchangeClient must show, run per venue.

A venue's test module subclasses :class:`ExchangeContract` (as ``Test<Venue>Contract``) and
provides a fixture ``exchange_under_test`` yielding an :class:`ExchangeUnderTest`: a started
client, the :class:`RecordingEvents` sink it delivers to, and a way to fund it. Like devpi's
storage-backend reruns, the same assertions then hold for the paper venue and for VALR (over
the simulator).

:class:`RecordingEvents` records what a client delivers and dedupes fills by trade id, the
way the core does, so tests can assert "exactly once" on the deduped set and still count
raw deliveries. :func:`valr_on_sim` builds a ValrClient on a real simulator (used by the
VALR tests and by anyone who needs a live-like venue in a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from heliosd.core.config import Secret, Settings, ValrSettings
from heliosd.core.errors import ExchangeRejected
from heliosd.core.protocols import ExchangeClient
from heliosd.core.types import (
    Balance,
    Fill,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PlaceRequest,
    Quote,
    Side,
)

# --------------------------------------------------------------------------- events sink


class RecordingEvents:
    """An ExchangeEvents sink that remembers everything; fills are deduped by trade id."""

    def __init__(self) -> None:
        self.fills: dict[str, Fill] = {}
        self.fill_deliveries = 0
        self.statuses: list[OrderStatus] = []
        self.open_orders: list[Sequence[OpenOrder]] = []
        self.balances: dict[str, Balance] = {}
        self.balance_snapshots = 0
        self.quotes: dict[str, Quote] = {}
        self.connections: list[tuple[str, bool, str]] = []
        self.up: dict[str, bool] = {}
        self._changed = asyncio.Event()

    def _touch(self) -> None:
        self._changed.set()

    async def on_fill(self, fill: Fill) -> None:
        self.fill_deliveries += 1
        self.fills.setdefault(fill.trade_id, fill)
        self._touch()

    async def on_order_status(self, status: OrderStatus) -> None:
        self.statuses.append(status)
        self._touch()

    async def on_open_orders(self, orders: Sequence[OpenOrder]) -> None:
        self.open_orders.append(list(orders))
        self._touch()

    async def on_balances(self, balances: Sequence[Balance], *, snapshot: bool) -> None:
        if snapshot:
            self.balance_snapshots += 1
            self.balances = {}
        for bal in balances:
            self.balances[bal.currency] = bal
        self._touch()

    async def on_quote(self, quote: Quote) -> None:
        self.quotes[quote.pair] = quote
        self._touch()

    async def on_connection(self, stream: str, up: bool, detail: str) -> None:
        self.connections.append((stream, up, detail))
        self.up[stream] = up
        self._touch()

    def fill_watermark(self) -> datetime | None:
        return max((f.traded_at for f in self.fills.values()), default=None)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked after every event); TimeoutError if not."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()


# --------------------------------------------------------------------------- contract


@dataclass
class ExchangeUnderTest:
    """What the contract suite needs from a venue's fixture.

    ``fund(currency, amount)`` credits the client's account; ``unfunded`` is a started client
    of the same venue on an account holding nothing; ``pair`` is a pair the venue quotes at
    about ``price`` (quote currency per base).
    """

    client: ExchangeClient
    events: RecordingEvents
    unfunded: ExchangeClient
    fund: Callable[[str, Decimal], Awaitable[None]]
    pair: str = "BTCZAR"
    price: Decimal = Decimal(1000000)
    extra: dict[str, Any] = field(default_factory=dict)


def new_customer_order_id() -> str:
    return f"ct-{uuid.uuid4().hex[:20]}"


class ExchangeContract:
    """Subclass as ``Test<Venue>Contract`` and provide the ``exchange_under_test`` fixture."""

    async def test_implements_every_protocol_member(
        self, exchange_under_test: ExchangeUnderTest
    ) -> None:
        # runtime_checkable: every method and attribute of ExchangeClient is present.
        assert isinstance(exchange_under_test.client, ExchangeClient)

    async def test_clock_skew_is_venue_minus_local_seconds(
        self, exchange_under_test: ExchangeUnderTest
    ) -> None:
        client = exchange_under_test.client
        before = time.time()
        server = await client.server_time()
        after = time.time()
        assert server.utcoffset() == timedelta(0)
        skew = client.clock_skew()
        assert isinstance(skew, float)
        # The suite's venues run on this host's clock: known after server_time(), near 0,
        # and agreeing (sign included) with our own comparison of the two clocks.
        assert math.isfinite(skew)
        assert abs(skew) < 0.5
        compared = server.timestamp() - (before + after) / 2
        assert abs(skew - compared) < 0.5 + (after - before)

    async def test_pairs_have_limits(self, exchange_under_test: ExchangeUnderTest) -> None:
        pairs = await exchange_under_test.client.pairs()
        info = pairs[exchange_under_test.pair]
        assert info.symbol == exchange_under_test.pair
        assert Decimal(0) < info.min_base < info.max_base
        assert Decimal(0) < info.min_quote < info.max_quote
        assert info.tick_size > 0
        assert info.base_decimals >= 0

    async def test_place_status_cancel_round_trip(
        self, exchange_under_test: ExchangeUnderTest
    ) -> None:
        ex = exchange_under_test
        cid = new_customer_order_id()
        far_below = (ex.price / 2).quantize(Decimal(1))
        result = await ex.client.place(
            PlaceRequest(cid, ex.pair, Side.BUY, OrderType.LIMIT, Decimal("0.001"), far_below)
        )
        assert result.state is OrderState.PLACED
        assert result.exchange_order_id
        status = await ex.client.order_status(ex.pair, customer_order_id=cid)
        assert status is not None
        assert status.state is OrderState.PLACED
        assert status.exchange_order_id == result.exchange_order_id
        assert status.remaining_quantity == Decimal("0.001")
        assert [o.customer_order_id for o in await ex.client.open_orders()] == [cid]
        await ex.client.cancel(ex.pair, exchange_order_id=result.exchange_order_id)
        after = await ex.client.order_status(ex.pair, exchange_order_id=result.exchange_order_id)
        assert after is not None
        assert after.state is OrderState.CANCELLED
        assert await ex.client.open_orders() == []

    async def test_cancel_all_leaves_no_open_orders(
        self, exchange_under_test: ExchangeUnderTest
    ) -> None:
        ex = exchange_under_test
        for i in range(3):
            price = (ex.price / 2 - i).quantize(Decimal(1))
            await ex.client.place(
                PlaceRequest(
                    new_customer_order_id(),
                    ex.pair,
                    Side.BUY,
                    OrderType.LIMIT,
                    Decimal("0.001"),
                    price,
                )
            )
        assert len(await ex.client.open_orders()) == 3
        assert await ex.client.cancel_all() == 3
        assert await ex.client.open_orders() == []

    async def test_buy_fills_once_on_events(self, exchange_under_test: ExchangeUnderTest) -> None:
        ex = exchange_under_test
        cid = new_customer_order_id()
        result = await ex.client.place(
            PlaceRequest(cid, ex.pair, Side.BUY, OrderType.MARKET, Decimal("0.002"))
        )
        assert result.state in (OrderState.FILLED, OrderState.SENT)
        await ex.events.wait_for(
            lambda: any(
                f.customer_order_id == cid
                or (
                    result.exchange_order_id is not None
                    and f.exchange_order_id == result.exchange_order_id
                )
                for f in ex.events.fills.values()
            )
        )
        await asyncio.sleep(0.2)  # let any duplicate delivery arrive before counting
        mine = [
            f for f in ex.events.fills.values() if f.exchange_order_id == result.exchange_order_id
        ]
        # VALR's market BUY by base amount delivers that amount *after* a base-currency fee,
        # so the gross fill may exceed the request by the fee rate; allow 1% either way.
        total = sum((f.quantity for f in mine), Decimal(0))
        assert Decimal("0.00198") <= total <= Decimal("0.00202")
        assert all(f.side is Side.BUY and f.pair == ex.pair for f in mine)
        assert ex.events.fill_deliveries == len(ex.events.fills)  # each fill delivered once

    async def test_zero_balance_is_rejected(self, exchange_under_test: ExchangeUnderTest) -> None:
        ex = exchange_under_test
        with pytest.raises(ExchangeRejected) as caught:
            await ex.unfunded.place(
                PlaceRequest(
                    new_customer_order_id(),
                    ex.pair,
                    Side.BUY,
                    OrderType.LIMIT,
                    Decimal("0.001"),
                    (ex.price / 2).quantize(Decimal(1)),
                )
            )
        assert "insufficient balance" in caught.value.message.lower()


# --------------------------------------------------------------------------- VALR on the sim


def valr_settings(
    rest_url: str, ws_url: str, key: str | None, secret: str | None, **valr: Any
) -> Settings:
    """Settings pointing the VALR client at a simulator (no credentials when key is None)."""
    return Settings(
        valr=ValrSettings(
            rest_url=rest_url,
            ws_url=ws_url,
            api_key=Secret(key) if key else None,
            api_secret=Secret(secret) if secret else None,
            **valr,
        )
    )


SIM_KEY, SIM_SECRET = "a1" * 32, "b2" * 32  # the funded primary account "0"


def fast_valr_tuning(**overrides: Any) -> Any:
    """ValrTuning with test-sized waits (retries in ms, PING every second)."""
    from heliosd.builtin.valr.retry import RetryPolicy, ValrTuning

    quick = RetryPolicy(max_attempts=4, max_total_s=5, base_delay_s=0.01, max_delay_s=0.05)
    values: dict[str, Any] = {
        "read_policy": quick,
        "write_policy": quick,
        "lookup_policy": quick,
        "lookup_grace_s": 0.01,
        "lookup_window_s": 0.3,
        "ping_interval_s": 1.0,
        "auth_timeout_s": 2.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "ready_timeout_s": 5.0,
        "reconcile_overlap_s": 1.0,
    }
    values.update(overrides)
    return ValrTuning(**values)


@contextlib.asynccontextmanager
async def funded_sim(
    zar: Decimal = Decimal(100000), *, seed: int = 1, **config: Any
) -> AsyncIterator[Any]:
    """A started simulator (prices still unless ``price_interval_s`` is given) whose primary
    account "0" holds ``zar`` and answers to ``SIM_KEY``/``SIM_SECRET``."""
    from heliosd.sim import SimConfig, Simulator

    config.setdefault("price_interval_s", None)
    sim = Simulator(SimConfig(seed=seed, **config))
    await sim.start()
    try:
        sim.add_account("0")
        sim.add_api_key(SIM_KEY, SIM_SECRET, account_id="0")
        if zar:
            sim.fund("0", "ZAR", zar)
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def valr_on_sim(
    sim: Any,
    key: str,
    secret: str,
    *,
    events: RecordingEvents | None = None,
    tuning: Any = None,
    start: bool = True,
    wait_ready: bool = True,
    **valr: Any,
) -> AsyncIterator[Any]:
    """A ValrClient (started, account stream reconciled) on ``sim`` with the given key."""
    from heliosd.builtin.valr.client import ValrClient

    client = ValrClient(valr_settings(sim.rest_url, sim.ws_url, key, secret, **valr), tuning=tuning)
    sink = events or RecordingEvents()
    try:
        if start:
            await client.start(sink)
            if wait_ready:
                await sink.wait_for(lambda: sink.up.get("account") is True, within=10)
        yield client
    finally:
        await client.close()
