"""``Simulator``: one protocol-faithful VALR exchange on a loopback port.

REST on ``rest_url`` (``/v1/...``, ``/v2/...``), WebSockets on ``ws_url`` + ``/ws/account``
and ``/ws/trade``, all served by one aiohttp server. Tests drive it through the methods
below and observe it only through the protocol, the way heliosd's client will.

Usage::

    sim = Simulator(SimConfig(seed=1, price_interval_s=None))
    await sim.start()                      # ephemeral port
    sim.add_api_key("k" * 64, "s" * 64)    # account "0", View access + Trade
    sim.fund("0", "ZAR", Decimal("100000"))
    ...
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.accounts import ApiKey
from heliosd.sim.admin import apply_faults, faults_json, reset_faults
from heliosd.sim.app import make_app
from heliosd.sim.arrivals import OrderArrival
from heliosd.sim.config import FaultConfig, RateLimitRule, RouteDelay, SimConfig
from heliosd.sim.context import SimState
from heliosd.sim.inject import inject_fills
from heliosd.sim.matching import Exchange
from heliosd.sim.prices import PricePath
from heliosd.sim.streams import StreamHub
from heliosd.sim.transactions import Transaction, move_funds

log = logging.getLogger(__name__)

DEFAULT_PERMISSIONS = ("View access", "Trade")


class Simulator:
    """A simulated VALR. Not thread-safe: use it from the event loop that started it."""

    def __init__(self, config: SimConfig | None = None, faults: FaultConfig | None = None):
        self.config = config or SimConfig()
        self.faults = faults or FaultConfig()
        self.hub = StreamHub(self.faults, self.config.seed)
        self.exchange = Exchange(self.config, self.hub, self.faults)
        self.prices = PricePath(
            {p: m.mid for p, m in self.exchange.markets.items()},
            seed=self.config.seed,
            volatility_bps=self.config.volatility_bps,
            csv_path=self.config.price_csv,
        )
        self._state = SimState(self.config, self.faults, self.exchange, self.hub)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.host = "127.0.0.1"
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(make_app(self._state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])
        loop = asyncio.get_running_loop()
        if self.config.price_interval_s:
            self._tasks.append(loop.create_task(self._tick_loop(self.config.price_interval_s)))
        self._tasks.append(loop.create_task(self._drop_loop()))
        log.info("VALR simulator listening on %s", self.rest_url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._state.cancel_pending()
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- accounts -----------------------------------------------------------------------

    def add_account(self, account_id: str = "0", label: str = "") -> None:
        self.exchange.add_account(account_id, label)

    def add_api_key(
        self,
        key: str,
        secret: str,
        permissions: tuple[str, ...] | list[str] = DEFAULT_PERMISSIONS,
        account_id: str = "0",
        label: str = "test",
    ) -> None:
        self.exchange.add_api_key(
            ApiKey(key, secret, tuple(permissions), account_id, label, datetime.now(UTC))
        )

    def fund(self, account_id: str, currency: str, amount: Decimal) -> None:
        """Credit ``amount`` (pushes a BALANCE_UPDATE to connected account sockets). This is
        a starting balance: it records no transaction-history row (``deposit`` does)."""
        self.exchange.fund(account_id, currency, amount)

    # The observers below answer "nothing" for an account the sim has never seen, so a
    # test can assert on an account before anything happened to it.

    def balances(self, account_id: str) -> dict[str, tuple[Decimal, Decimal]]:
        """``{currency: (available, reserved)}`` for every currency the account touched."""
        acct = self.exchange.accounts.get(account_id)
        if acct is None:
            return {}
        return {cur: (bal.available, bal.reserved) for cur, bal in acct.balances.items()}

    def request_counts(self) -> dict[str, int]:
        """``{"GET /v1/orders/{pair}/orderid/{orderId}": n, ...}``: REST requests answered
        so far (past the fault injection), by method and route pattern."""
        return dict(self._state.requests)

    def open_orders(self, account_id: str) -> list[dict[str, Any]]:
        """Exactly what ``GET /v1/orders/open`` returns."""
        acct = self.exchange.accounts.get(account_id)
        return [] if acct is None else [wire.open_order(o) for o in acct.open_orders.values()]

    def trades(self, account_id: str) -> list[dict[str, Any]]:
        """Every account trade, newest first, as ``GET /v1/account/tradehistory`` rows."""
        if account_id not in self.exchange.accounts:
            return []
        return [wire.account_trade(t) for t in self.exchange.trade_rows(account_id)]

    def orders_received(self, account_id: str) -> list[dict[str, Any]]:
        """Every authenticated place request with a JSON body, oldest first (rejected ones too:
        ``accepted`` is False and ``error`` holds the answer). Requests refused by a
        fault before the handler ran are not here; ones whose answer a fault replaced
        after it ran are."""
        acct = self.exchange.accounts.get(account_id)
        if acct is None:
            return []
        return [
            {
                "route": r.route,
                "receivedAt": wire.iso(r.received_at),
                "accepted": r.accepted,
                "orderId": r.order_id,
                "customerOrderId": r.customer_order_id,
                "body": r.body,
                "error": dict(r.error),
            }
            for r in acct.received
        ]

    # -- market -------------------------------------------------------------------------

    def set_price(self, pair: str, price: Decimal) -> None:
        """Move the mid now: re-quote, fill crossed resting orders, push book + summary."""
        self.prices.moved_to(pair, price)
        self.exchange.set_price(pair, price)

    def tick(self) -> None:
        """Advance every pair one step of the price path (what the ticker task does)."""
        for pair in self.exchange.markets:
            self.exchange.set_price(pair, self.prices.next(pair), trade=True)

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.tick()

    def order_log(self, after: int = 0) -> list[OrderArrival]:
        """Every placement request that reached a place handler, in arrival order (entries
        after sequence number ``after``); see ``heliosd.sim.arrivals``."""
        return self._state.arrivals.after(after)

    def deposit(
        self, account_id: str, currency: str, amount: Decimal, *, tx_type: str | None = None
    ) -> Transaction:
        """Money in from outside (default ``FIAT_DEPOSIT``): balance, BALANCE_UPDATE and a
        transaction-history row."""
        return move_funds(self.exchange, account_id, "deposit", currency, amount, tx_type=tx_type)

    def withdraw(
        self,
        account_id: str,
        currency: str,
        amount: Decimal,
        *,
        fee: Decimal = Decimal(0),
        tx_type: str | None = None,
    ) -> Transaction:
        """Money out (default ``FIAT_WITHDRAWAL``); ValueError if not available."""
        return move_funds(
            self.exchange, account_id, "withdrawal", currency, amount, fee=fee, tx_type=tx_type
        )

    def transfer(self, from_id: str, to_id: str, currency: str, amount: Decimal) -> None:
        """An internal transfer between two accounts (an INTERNAL_TRANSFER row on each)."""
        move_funds(self.exchange, from_id, "transfer_out", currency, amount)
        move_funds(self.exchange, to_id, "transfer_in", currency, amount)

    def cancel_on_disconnect_sockets(self, account_id: str) -> int:
        """Account sockets of ``account_id`` armed with CANCEL_ON_DISCONNECT now."""
        return self.hub.armed_account_sockets(account_id)

    def disconnect_cancels(self) -> list[tuple[str, int]]:
        """(account, orders cancelled) each time an armed account socket ended."""
        return list(self._state.disconnect_cancels)

    # -- faults -------------------------------------------------------------------------
    # Everything here is also reachable over HTTP (``heliosd.sim.admin``).

    def drop_ws_connections(self) -> None:
        """Close every account and trade socket now (``faults.ws_drop_mode``)."""
        self.hub.drop_all()

    def drop_account_sockets(self, account_id: str | None = None, mode: str | None = None) -> int:
        """Close the account sockets (of one account, or all) now, with a close frame
        (``"close"``) or by cutting TCP (``"abort"``); returns how many."""
        return self.hub.drop_account_sockets(account_id, mode)

    def rate_limit(
        self, prefix: str, count: int = 1, retry_after_s: int = 1, method: str | None = None
    ) -> RateLimitRule:
        """Answer the next ``count`` requests on ``prefix`` with 429 + ``Retry-After``."""
        rule = RateLimitRule(prefix, count, retry_after_s, method.upper() if method else None)
        self.faults.rate_limits.append(rule)
        return rule

    def delay_route(
        self, prefix: str, seconds: float, *, method: str | None = None, after: bool = False
    ) -> RouteDelay:
        """Hold requests on ``prefix`` ``seconds`` before the handler (or after, ``after``)."""
        delay = RouteDelay(prefix, seconds, method.upper() if method else None, after)
        self.faults.route_delays.append(delay)
        return delay

    def drop_account_messages(self, kind: str, count: int = 1) -> None:
        """Drop the next ``count`` account-stream messages of type ``kind`` at the source."""
        pending = self.faults.drop_account_messages
        pending[kind] = pending.get(kind, 0) + count

    def redeliver_dropped(self, account_id: str | None = None) -> int:
        """Send the messages ``drop_account_messages`` removed (of one account, or all) to
        the account's open sockets now: each arrives late, once. Returns how many."""
        return self.hub.redeliver_dropped(account_id)

    def set_read_only(self, on: bool = True) -> None:
        """VALR's maintenance mode: status ``read-only``, every non-GET answers 503."""
        self.faults.read_only = on

    def apply_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The ``POST /sim/faults`` body, applied (ValueError when refused); the new state."""
        apply_faults(self.faults, changes)
        return faults_json(self.faults)

    def fault_state(self) -> dict[str, Any]:
        """What ``GET /sim/faults`` answers."""
        return faults_json(self.faults)

    def reset_faults(self) -> None:
        reset_faults(self.faults)

    async def _drop_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            every = self.faults.drop_ws_every_s
            now = time.monotonic()
            if not every:
                last = now
            elif now - last >= every:
                last = now
                self.drop_ws_connections()

    # -- benchmarks ---------------------------------------------------------------------

    async def inject_fills(
        self, account_id: str, pair: str, n: int, quantity: Decimal = Decimal("0.0001")
    ) -> list[str]:
        """Create ``n`` real fills for the account (see ``heliosd.sim.inject``); returns
        the trade ids. The account must be funded with enough quote currency."""
        return inject_fills(self.exchange, account_id, pair, n, quantity)
