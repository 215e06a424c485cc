"""``ValrClient``: the VALR exchange behind :class:`heliosd.protocols.ExchangeClient`.

REST goes through :class:`~heliosd.builtin.valr.rest.ValrRest` (signed, server-time offset,
errors translated); prices and account events come from the two WebSocket streams in
:mod:`heliosd.builtin.valr.streams`.

Placing an order is the one place where a retry can cost money, so it follows a fixed rule
(design.md §9):

* A request VALR certainly did not execute is re-sent, bounded: a **429** (VALR's limiter
  answers before the request reaches the matching engine, and the simulator models it the
  same way) or a connection that was refused before anything was sent.
* A request whose answer was lost (timeout, dropped connection, 5xx) may have been executed,
  or may still be executed: a delayed request can reach the matching engine after we asked.
  It is **never sent again**. We look the order up by ``customerOrderId`` repeatedly, for
  twice the request timeout, and return its real state; if VALR does not list it by then,
  or the lookups fail, the caller gets :class:`~heliosd.errors.OutcomeUnknownError` and the order
  stays "sent" until the account stream or reconciliation settles it. A resend would not be
  safe even with the same customerOrderId: VALR refuses a duplicate only among *open*
  orders, so a filled market order could execute twice (found by tests/faults).

Send permits (``PlaceRequest.permit``, :mod:`heliosd.permits`; the client declares
``honours_permits = True``). With a permit, :meth:`ValrClient.place` guarantees:

* ``permit.begin_send()`` runs immediately before every request that could execute the order
  (the first POST, every resend after a 429 or a refused connection, and the resend after a
  timestamp rejection re-checks it), as the last step before the request is handed to the
  HTTP library; ``permit.end_send()`` runs once that request answered or failed.
* Every wait before a send ends the moment the permit is revoked: the Retry-After or backoff
  wait is ``permit.sleep``; the pair-list refresh, the first clock measurement and the wait
  for the account stream to be connected and reconciled are ``permit.guard``-ed.
* A revoked permit raises :class:`~heliosd.errors.PermitRevoked` out of ``place``: the order
  was never sent (a 429 is answered before VALR's matching engine).
* Lookups after a lost answer are reads, not sends: they are not guarded, so a stop that
  revokes the permit still learns how the order ended.

Without a permit (``None``: tools and tests) ``place`` behaves the same minus the checks.

Dead-man's switch (``[valr] cancel_on_disconnect``): after every (re)connect of the account
stream the client asks VALR to cancel all open orders if that socket drops
(:class:`~heliosd.builtin.valr.streams.AccountStream`);
:attr:`ValrClient.cancel_on_disconnect_armed` says whether VALR confirmed it for the current
connection.

Without credentials the client still streams prices; every account method raises
``AuthError("VALR credentials are not configured")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, TypeVar

from heliosd.builtin.valr import flows, parse
from heliosd.builtin.valr.rest import (
    NOT_CONFIGURED,
    NotExecuted,
    ValrRest,
    path_segment,
)
from heliosd.builtin.valr.retry import ValrTuning, read_retrying
from heliosd.builtin.valr.streams import AccountStream, TradeStream
from heliosd.config import Settings
from heliosd.errors import (
    AuthError,
    ExchangeRejected,
    HeliosError,
    OutcomeUnknownError,
    TransientError,
)
from heliosd.permits import Permit
from heliosd.protocols import ExchangeContext, ExchangeEvents, MarketView
from heliosd.types import (
    ApiKeyInfo,
    Balance,
    Fill,
    Flow,
    FuturesPosition,
    OpenOrder,
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    PlaceRequest,
    PlaceResult,
    Side,
    utcnow,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DUPLICATE_CUSTOMER_ORDER_ID = -11502
ORDER_NOT_FOUND = -1
FUTURES_NOT_ENABLED = -19227
MARGIN_NOT_ENABLED = -19213
HISTORY_PAGE = 100


def wire_decimal(value: Decimal) -> str:
    """Plain decimal text for a request body (never an exponent)."""
    return format(value, "f")


def plain(value: Decimal) -> str:
    """Decimal text for people: no exponent, no trailing zeros ("9", "0.0001")."""
    return format(value.normalize(), "f")


def _is_not_found(exc: ExchangeRejected) -> bool:
    return exc.venue_code == ORDER_NOT_FOUND or exc.details.get("status") == 404


async def _guarded(permit: Permit | None, start: Callable[[], Awaitable[T]]) -> T:
    """Await ``start()``; with a permit, revocably (and not at all if already revoked)."""
    if permit is None:
        return await start()
    permit.check()
    return await permit.guard(start())


def _parsed(fn: Callable[[Any], T], payload: Any, what: str) -> T:
    """Parse a REST answer; an unreadable one is transient (worth a retry, not a guess)."""
    try:
        return fn(payload)
    except (parse.ParseError, AttributeError, TypeError, KeyError) as exc:
        raise TransientError(f"VALR sent an unreadable {what}: {exc}") from None


class ValrClient:
    """The ``valr`` exchange client. See the module docstring for the write rules."""

    name = "valr"
    honours_permits = True

    def __init__(
        self,
        settings: Settings,
        *,
        market: MarketView | None = None,
        tuning: ValrTuning | None = None,
    ) -> None:
        self._valr = settings.valr
        self._market = market
        self.tuning = tuning or ValrTuning()
        self._rest = ValrRest(
            self._valr.rest_url,
            api_key=self._valr.api_key,
            api_secret=self._valr.api_secret,
            subaccount_id=self._valr.subaccount_id,
            timeout_s=float(self._valr.request_timeout_s),
            read_policy=self.tuning.read_policy,
        )
        self._pairs: dict[str, PairInfo] = {}
        self._pairs_at = -float("inf")
        self._pairs_lock = asyncio.Lock()
        self._account: AccountStream | None = None
        self._trade: TradeStream | None = None
        self._time_sync: asyncio.Task[None] | None = None
        self._started_at = utcnow()

    @classmethod
    def from_context(cls, ctx: ExchangeContext) -> ValrClient:
        return cls(ctx.settings, market=ctx.market)

    # ------------------------------------------------------------------ lifecycle

    @property
    def has_credentials(self) -> bool:
        return self._rest.has_credentials

    async def start(self, events: ExchangeEvents) -> None:
        """Start the streams (the account stream only with credentials) and measure the
        clock offset in the background. Returns at once, never waiting on the network (a
        venue that accepts connections and never answers must not hold up startup);
        connection state arrives via ``on_connection``.

        Until the first measurement :meth:`clock_skew` is ``inf`` (the skew gate fails
        closed), the streams sign with local time, and a signed REST request measures
        first."""
        self._started_at = utcnow()
        self._time_sync = asyncio.get_running_loop().create_task(self._sync_time_at_start())
        ws_url = self._valr.ws_url.rstrip("/")
        sign = self._rest.signed_headers if self.has_credentials else None
        self._trade = TradeStream(
            f"{ws_url}/ws/trade", events, self.tuning, sign=sign, pairs=self._valr.pairs
        )
        self._trade.start()
        if self.has_credentials:
            self._account = AccountStream(
                f"{ws_url}/ws/account",
                events,
                self.tuning,
                sign=self._rest.signed_headers,
                reconcile=self._reconcile,
                cancel_on_disconnect=self._valr.cancel_on_disconnect,
            )
            self._account.start()

    async def _sync_time_at_start(self) -> None:
        try:
            await self._rest.sync_time()
        except HeliosError as exc:
            # Not fatal: every signed request re-measures first if this did not succeed.
            log.warning("could not read VALR server time at start: %s", exc.message)

    async def close(self) -> None:
        if self._time_sync is not None:
            self._time_sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._time_sync
        for stream in (self._account, self._trade):
            if stream is not None:
                await stream.stop()
        await self._rest.close()

    @property
    def cancel_on_disconnect_armed(self) -> bool:
        """VALR confirmed CANCEL_ON_DISCONNECT on the account socket that is up now (False
        when it is off, not confirmed, or the socket is down)."""
        return self._account is not None and self._account.cancel_on_disconnect_armed

    # ------------------------------------------------------------------ clock

    def clock_skew(self) -> float:
        """Server time minus local time in seconds, as last measured; ``inf`` before the first
        measurement (so a skew gate fails closed)."""
        offset = self._rest.clock_offset_s
        return float("inf") if offset is None else offset

    async def server_time(self) -> datetime:
        """VALR's time now (and a fresh clock-offset measurement)."""
        return await self._rest.sync_time()

    # ------------------------------------------------------------------ public data

    async def pairs(self) -> Mapping[str, PairInfo]:
        """All of VALR's pairs with their limits, cached for ``pairs_ttl_s``. A failed refresh
        keeps serving the previous list (limits change rarely); no list at all raises."""
        if time.monotonic() - self._pairs_at < self.tuning.pairs_ttl_s:
            return self._pairs
        async with self._pairs_lock:
            if time.monotonic() - self._pairs_at < self.tuning.pairs_ttl_s:
                return self._pairs
            try:
                payload = await self._rest.get("/v1/public/pairs", auth=False)
                rows = _parsed(lambda p: parse.rows(p, "pairs"), payload, "pair list")
            except TransientError as exc:
                if not self._pairs:
                    raise
                log.warning("VALR pair refresh failed, keeping the cached limits: %s", exc)
                return self._pairs
            fresh: dict[str, PairInfo] = {}
            for row in rows:
                try:
                    info = parse.pair_info(row)
                except parse.ParseError as exc:
                    log.warning("skipping an unreadable VALR pair row: %s", exc)
                    continue
                fresh[info.symbol] = info
            self._pairs, self._pairs_at = fresh, time.monotonic()
            return fresh

    async def pair(self, symbol: str) -> PairInfo:
        info = (await self.pairs()).get(symbol)
        if info is None:
            raise ExchangeRejected(f"{symbol} is not a VALR pair", details={"local": True})
        return info

    async def market_summary(self, pair: str) -> parse.MarketSummary:
        payload = await self._rest.get(f"/v1/public/{path_segment(pair)}/marketsummary", auth=False)
        return _parsed(
            lambda p: parse.market_summary(parse.obj(p, "summary"), pair), payload, "summary"
        )

    # ------------------------------------------------------------------ account reads

    def _require_credentials(self) -> None:
        if not self.has_credentials:
            raise AuthError(NOT_CONFIGURED)

    async def check_credentials(self) -> ApiKeyInfo:
        """The key's label and permissions (``GET /v1/account/api-keys/current``)."""
        self._require_credentials()
        payload = await self._rest.get("/v1/account/api-keys/current")
        return _parsed(lambda p: parse.api_key_info(parse.obj(p, "key")), payload, "key info")

    async def balances(self) -> list[Balance]:
        self._require_credentials()
        payload = await self._rest.get(
            "/v1/account/balances", query=[("excludeZeroBalances", "true")]
        )
        return _parsed(
            lambda p: [parse.balance(r) for r in parse.rows(p, "balances")], payload, "balances"
        )

    async def open_orders(self) -> list[OpenOrder]:
        self._require_credentials()
        payload = await self._rest.get("/v1/orders/open")
        return _parsed(
            lambda p: [parse.open_order(r) for r in parse.rows(p, "open orders")],
            payload,
            "open-order list",
        )

    async def positions(self) -> list[FuturesPosition]:
        """Open futures positions; an account without futures has none."""
        self._require_credentials()
        try:
            payload = await self._rest.get("/v1/positions/open")
        except ExchangeRejected as exc:
            if exc.venue_code == FUTURES_NOT_ENABLED:
                return []
            raise
        return _parsed(
            lambda p: [parse.futures_position(r) for r in parse.rows(p, "positions")],
            payload,
            "position list",
        )

    async def margin_status(self) -> parse.MarginStatus | None:
        """``/v1/margin/status``; None when margin is not enabled on the account."""
        self._require_credentials()
        try:
            payload = await self._rest.get("/v1/margin/status")
        except ExchangeRejected as exc:
            if exc.venue_code == MARGIN_NOT_ENABLED:
                return None
            raise
        return _parsed(
            lambda p: parse.margin_status(parse.obj(p, "margin")), payload, "margin status"
        )

    async def order_status(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> OrderStatus | None:
        """The order's state; None when VALR does not know it. Tries the live status route,
        then the history summary (finished orders), as valr-api.md §4.3 advises.

        VALR's routes take one reference: with both, the exchange order id is used (the
        venue's own key; callers pass a stored row's two ids as they are)."""
        self._require_credentials()
        if exchange_order_id is None and customer_order_id is None:
            raise ValueError("give exchange_order_id or customer_order_id")
        if exchange_order_id is not None:
            kind, ref = "orderid", path_segment(exchange_order_id)
        else:
            kind, ref = "customerorderid", path_segment(customer_order_id or "")
        for path in (
            f"/v1/orders/{path_segment(pair)}/{kind}/{ref}",
            f"/v1/orders/history/summary/{kind}/{ref}",
        ):
            try:
                payload = await self._rest.get(path)
            except ExchangeRejected as exc:
                if _is_not_found(exc):
                    continue
                raise
            return _parsed(
                lambda p: parse.order_status(parse.obj(p, "status")), payload, "order status"
            )
        return None

    async def trade_history(self, *, since: datetime | None = None) -> list[Fill]:
        """The account's fills since ``since`` (inclusive), oldest first, without duplicates.

        Pages backwards with ``beforeId`` (VALR lists newest first), so trades arriving while
        we page cannot shift a page and hide a row.
        """
        self._require_credentials()
        base: list[tuple[str, str]] = [("limit", str(HISTORY_PAGE))]
        if since is not None:
            base.append(("startTime", since.isoformat().replace("+00:00", "Z")))
        fills: dict[str, tuple[datetime, int, Fill]] = {}
        before: str | None = None
        for _ in range(self.tuning.history_max_pages):
            query = [*base, ("beforeId", before)] if before else base
            payload = await self._rest.get("/v1/account/tradehistory", query=query)
            rows = _parsed(lambda p: parse.rows(p, "trade history"), payload, "trade history")
            for row in rows:
                fill = _parsed(parse.fill, row, "trade")
                seq = row.get("sequenceId")
                fills[fill.trade_id] = (fill.traded_at, seq if isinstance(seq, int) else 0, fill)
            if len(rows) < HISTORY_PAGE:
                break
            before = str(rows[-1].get("id"))
        else:
            log.warning(
                "VALR trade history longer than %d pages; older fills were not fetched",
                self.tuning.history_max_pages,
            )
        ordered = sorted(fills.values(), key=lambda item: (item[0], item[1]))
        return [f for at, _, f in ordered if since is None or at >= since]

    async def transaction_history(self, since: datetime | None = None) -> list[Flow]:
        """Deposits, withdrawals and transfers since ``since`` (inclusive; all history when
        None), oldest first, from ``GET /v1/account/transactionhistory``, paged until
        complete. Trade and fee rows are skipped; see :mod:`heliosd.builtin.valr.flows`."""
        self._require_credentials()
        return await flows.fetch(self._rest.get, since)

    # ------------------------------------------------------------------ orders

    def _order_body(self, request: PlaceRequest, pair: PairInfo) -> tuple[str, dict[str, Any]]:
        """Validate and round ``request`` against the pair's limits; return (path, body).

        Quantity is truncated to the base decimals (VALR truncates too). A limit price is
        moved onto the tick grid in the direction that never worsens it for us: down for a
        buy, up for a sell. Violations raise ExchangeRejected locally, before any request.
        """

        def reject(message: str, venue_code: int | None = None) -> ExchangeRejected:
            return ExchangeRejected(message, venue_code=venue_code, details={"local": True})

        # VALR's own texts and codes for the size limits (valr-api.md -12007; the maximum's
        # text is the simulator's): refused here, before a request, the operator reads what
        # VALR would have said, and what the paper venue says for the same order.
        def below_minimum() -> ExchangeRejected:
            return reject(
                f"Minimum order size not met . Minimum amount: {plain(pair.min_base)} "
                f"{pair.base}, minimum total: {plain(pair.min_quote)} {pair.quote}",
                -12007,
            )

        def above_maximum() -> ExchangeRejected:
            return reject(
                f"Maximum order size exceeded . Maximum amount: {plain(pair.max_base)} "
                f"{pair.base}, maximum total: {plain(pair.max_quote)} {pair.quote}",
                -11,
            )

        symbol = pair.symbol
        if not pair.active:
            raise reject(f"{symbol} is not active on VALR")
        qty = pair.round_quantity(request.quantity)
        if qty <= 0 or qty < pair.min_base:
            raise below_minimum()
        if qty > pair.max_base:
            raise above_maximum()
        price: Decimal | None
        if request.type is OrderType.LIMIT:
            if request.price is None or request.price <= 0:
                raise reject("A limit order needs a positive price")
            rounding = ROUND_FLOOR if request.side is Side.BUY else ROUND_CEILING
            ticks = (request.price / pair.tick_size).to_integral_value(rounding=rounding)
            price = ticks * pair.tick_size
            if price <= 0:
                raise reject(f"Price {request.price} is below one tick ({pair.tick_size})")
        else:
            # A market order's notional is an estimate at the current touch, when we have one.
            price = self._market.price_for(symbol, request.side) if self._market else None
        if price is not None:
            notional = qty * price
            if notional < pair.min_quote:
                raise below_minimum()
            if notional > pair.max_quote:
                raise above_maximum()
        if request.type is OrderType.LIMIT:
            assert price is not None
            return "/v2/orders/limit", {
                "side": request.side.value,
                "quantity": wire_decimal(qty),
                "price": wire_decimal(price),
                "pair": symbol,
                "postOnly": False,
                "customerOrderId": request.customer_order_id,
                "timeInForce": "GTC",
            }
        return "/v2/orders/market", {
            "side": request.side.value,
            "baseAmount": wire_decimal(qty),
            "pair": symbol,
            "customerOrderId": request.customer_order_id,
        }

    async def place(self, request: PlaceRequest) -> PlaceResult:
        """Place one order with VALR's synchronous (v2) endpoints. See the module docstring
        for what is retried and when OutcomeUnknownError is raised."""
        self._require_credentials()
        permit = request.permit
        info = await _guarded(permit, lambda: self.pair(request.pair))
        path, body = self._order_body(request, info)
        await _guarded(permit, self._wait_ready)
        if self._rest.clock_offset_s is None:
            # Measured before the send (revocably): a failure here means nothing was sent.
            await _guarded(permit, self._rest.sync_time)
        cid = request.customer_order_id
        while True:
            try:
                answer = await self._write("POST", path, body, permit=permit)
            except TransientError as exc:
                if isinstance(exc, NotExecuted):
                    raise
                log.warning("placing %s: answer lost (%s); looking it up", cid, exc.message)
                status = await self._find_after_lost_answer(request)
                if status is not None:
                    return self._result(request, status)
                raise OutcomeUnknownError(
                    f"placing {cid}: VALR's answer was lost and VALR does not list the order;"
                    " it is not sent again (a delayed request could still execute); the"
                    " account stream or reconciliation will settle it",
                    details={"customer_order_id": cid},
                ) from None
            order_id = answer.get("id") if isinstance(answer, dict) else None
            if not isinstance(order_id, str):
                raise OutcomeUnknownError(
                    f"placing {cid}: VALR accepted it without an order id",
                    details={"customer_order_id": cid},
                )
            if request.type is OrderType.LIMIT:
                return PlaceResult(OrderState.PLACED, order_id)
            # A v2 market order is done when 201 arrives; its status says how it went.
            try:
                status = await self.order_status(request.pair, exchange_order_id=order_id)
            except TransientError:
                return PlaceResult(OrderState.SENT, order_id)
            if status is None:
                return PlaceResult(OrderState.SENT, order_id)
            return self._result(request, status)

    @staticmethod
    def _result(request: PlaceRequest, status: OrderStatus) -> PlaceResult:
        """PlaceResult from a looked-up status: terminal states as they are; an order still
        working is PLACED (limit, resting) or SENT (market, outcome follows)."""
        state = status.state
        if not state.is_terminal:
            state = OrderState.PLACED if request.type is OrderType.LIMIT else OrderState.SENT
        return PlaceResult(state, status.exchange_order_id, status.failed_reason)

    async def _find_after_lost_answer(self, request: PlaceRequest) -> OrderStatus | None:
        """Look the order up until VALR lists it or the lookup window has passed.

        The window defaults to twice the request timeout: long enough for a request we
        stopped waiting for to have reached VALR, short enough to answer the caller."""
        window = self.tuning.lookup_window_s
        if window is None:
            window = 2 * float(self._valr.request_timeout_s)
        deadline = time.monotonic() + window
        while True:
            status = await self._lookup_written(request)
            if status is not None or time.monotonic() >= deadline:
                return status

    async def _lookup_written(self, request: PlaceRequest) -> OrderStatus | None:
        """After a lost answer: the order's status, None if VALR never saw it, or
        OutcomeUnknownError if we cannot find out."""
        await asyncio.sleep(self.tuning.lookup_grace_s)
        cid = request.customer_order_id
        try:
            async for attempt in read_retrying(self.tuning.lookup_policy):
                with attempt:
                    return await self.order_status(request.pair, customer_order_id=cid)
        except TransientError as exc:
            raise OutcomeUnknownError(
                f"placing {cid}: outcome unknown, the lookup failed too ({exc.message})",
                details={"customer_order_id": cid},
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write(
        self,
        verb: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        permit: Permit | None = None,
    ) -> Any:
        """One write. Re-sent only when VALR certainly did not execute it (a 429 or a refused
        connection), bounded by ``write_policy``; anything else is raised to the caller.
        With a ``permit``, every send is permitted and every wait revocable (module
        docstring)."""
        policy = self.tuning.write_policy
        deadline = time.monotonic() + policy.max_total_s
        attempt = 0
        while True:
            attempt += 1
            try:
                if permit is None:
                    return await self._rest.request(verb, path, body=body)
                return await self._permitted(permit, verb, path, body)
            except NotExecuted as exc:
                delay = policy.delay(attempt, exc.retry_after)
                if attempt >= policy.max_attempts or time.monotonic() + delay > deadline:
                    raise
                log.info("%s %s not executed (%s); again in %.1f s", verb, path, exc, delay)
                if permit is None:
                    await asyncio.sleep(delay)
                else:
                    await permit.sleep(delay)

    async def _permitted(
        self, permit: Permit, verb: str, path: str, body: Mapping[str, Any] | None
    ) -> Any:
        """One request under ``permit``: begin_send right before it leaves (a re-send after
        a timestamp rejection re-checks), end_send once it answered or failed."""
        begun = False

        def gate() -> None:
            nonlocal begun
            if begun:
                permit.check()
            else:
                permit.begin_send()
                begun = True

        try:
            return await self._rest.request(verb, path, body=body, gate=gate)
        finally:
            if begun:
                permit.end_send()

    async def _wait_ready(self) -> None:
        """Orders wait while the account stream (re)connects and reconciles, so a fill can
        never arrive for an order placed against an unreconciled view."""
        stream = self._account
        if stream is None or stream.ready.is_set():
            return
        try:
            async with asyncio.timeout(self.tuning.ready_timeout_s):
                await stream.ready.wait()
        except TimeoutError:
            if isinstance(stream.last_error, AuthError):
                raise stream.last_error from None
            raise TransientError(
                "the VALR account stream is not connected and reconciled; order not sent",
                retry_after=self.tuning.reconnect_initial_s,
            ) from None

    async def cancel(
        self,
        pair: str,
        *,
        exchange_order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> None:
        """Cancel one order (``DELETE /v2/orders/order``, synchronous). A lost answer is
        resolved by a status lookup: an order already finished counts as done. With both
        ids, the exchange order id is sent (VALR refuses a body naming both)."""
        self._require_credentials()
        if exchange_order_id is None and customer_order_id is None:
            raise ValueError("give exchange_order_id or customer_order_id")
        if exchange_order_id is not None:
            customer_order_id = None
        body = (
            {"orderId": exchange_order_id, "pair": pair}
            if exchange_order_id is not None
            else {"customerOrderId": customer_order_id, "pair": pair}
        )
        try:
            await self._write("DELETE", "/v2/orders/order", body)
        except TransientError as exc:
            if isinstance(exc, NotExecuted):
                raise
            status = await self.order_status(
                pair, exchange_order_id=exchange_order_id, customer_order_id=customer_order_id
            )
            if status is None or not status.state.is_terminal:
                raise
            log.info("cancel answer lost, but the order is %s", status.state.value)

    async def cancel_all(self) -> int:
        """Cancel every open order of the account (``DELETE /v1/orders``); returns the count."""
        self._require_credentials()
        answer = await self._write("DELETE", "/v1/orders")
        return len(answer) if isinstance(answer, list) else 0

    # ------------------------------------------------------------------ reconciliation

    async def _reconcile(self, events: ExchangeEvents) -> None:
        """Run after every (re)connect of the account stream, before it is marked ready:
        a balance snapshot, the fills missed since the watermark, then the open orders.

        Without a watermark (nothing durable yet) fills are replayed from when this client
        started: every order it placed is younger, and the account's older history predates
        this daemon's orders (replaying it would invent fills the ledger never ordered).
        """
        await events.on_balances(await self.balances(), snapshot=True)
        since = events.fill_watermark() or self._started_at
        since -= timedelta(seconds=self.tuning.reconcile_overlap_s)
        for fill in await self.trade_history(since=since):
            await events.on_fill(fill)
        await events.on_open_orders(await self.open_orders())
