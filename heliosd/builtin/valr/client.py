"""``ValrClient``: the VALR exchange behind :class:`heliosd.core.protocols.ExchangeClient`.

REST goes through :class:`~heliosd.builtin.valr.rest.ValrRest` (signed, server-time offset,
errors translated); prices and account events come from the two WebSocket streams in
:mod:`heliosd.builtin.valr.streams`.

Placing orders is :mod:`heliosd.builtin.valr.placing`, a part of this class: what is re-sent
and when, and send permits (``honours_permits = True``): ``permit.begin_send()`` immediately
before every request that could execute the order, every wait before a send (Retry-After,
stream ready, pair refresh, first clock measurement) ended at once by a revocation, and
:class:`~heliosd.core.errors.PermitRevoked` out of ``place`` meaning the order was never sent.
Lookups after a lost answer are reads and are not guarded.

Dead-man's switch (``[valr] cancel_on_disconnect``): after every (re)connect of the account
stream the client asks VALR to cancel all open orders if that socket drops
(:class:`~heliosd.builtin.valr.streams.AccountStream`);
:attr:`ValrClient.cancel_on_disconnect_armed` says whether VALR confirmed it for the current
connection.

Clock and venue status (one background task, :meth:`ValrClient._watch`): the clock offset
is measured from ``GET /v1/public/time`` at start and every ``clock_check_interval_s`` (and
by the REST layer after any 401), and ``GET /v1/public/status`` is read every
``status_poll_s``; :attr:`ValrClient.venue_status` is its last answer. VALR facts relied on:
``/v1/public/status`` answers ``{"status": "online"}`` or ``{"status": "read-only"}``, and
while read-only every non-GET request answers 503 [VALR's API docs and CCXT's connector
agree; high confidence]. So ``place`` refuses at once (:class:`VenueReadOnly`, never sent)
while the last status seen, checked again right then, is not ``online``; and a 503 on an
order placement is followed at once by a status read: if VALR says read-only, that 503 was
the maintenance refusal and the order was not executed (one lookup by customerOrderId
confirms; no lookup window). Cancels are always tried. ``place`` also refuses while the
measured clock skew is above ``valr.max_clock_skew_s`` (:class:`ClockSkewed`).

Without credentials the client still streams prices; every account method raises
``AuthError("VALR credentials are not configured")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import datetime

from heliosd.builtin.valr import parse
from heliosd.builtin.valr.account_reads import FUTURES_NOT_ENABLED as FUTURES_NOT_ENABLED
from heliosd.builtin.valr.account_reads import MARGIN_NOT_ENABLED as MARGIN_NOT_ENABLED
from heliosd.builtin.valr.account_reads import ORDER_NOT_FOUND as ORDER_NOT_FOUND
from heliosd.builtin.valr.account_reads import _AccountReads, _parsed
from heliosd.builtin.valr.placing import _Placing
from heliosd.builtin.valr.rest import NotExecuted, ValrRest, path_segment
from heliosd.builtin.valr.retry import ValrTuning
from heliosd.builtin.valr.streams import AccountStream, TradeStream
from heliosd.core.config import Settings
from heliosd.core.errors import ExchangeRejected, HeliosError, TransientError
from heliosd.core.protocols import ExchangeContext, ExchangeEvents, MarketView
from heliosd.core.types import PairInfo, utcnow

log = logging.getLogger(__name__)

ONLINE = "online"
VENUE_READ_ONLY = "venue_read_only"
CLOCK_SKEW = "clock_skew"


class VenueReadOnly(ExchangeRejected):
    """VALR is not ``online`` (maintenance, read-only): the order was not sent, or VALR
    refused it with the read-only 503 before executing it."""


class ClockSkewed(ExchangeRejected):
    """This machine's clock differs from VALR's by more than ``valr.max_clock_skew_s``."""


class ValrClient(_Placing, _AccountReads):
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
        # VALR's /v1/public/status text as last read (None: not read yet).
        self.venue_status: str | None = None

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
        self._time_sync = asyncio.get_running_loop().create_task(self._watch())
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

    async def _watch(self) -> None:
        """Measure the clock offset and read VALR's status at start, then periodically."""
        next_clock = 0.0
        while True:
            if time.monotonic() >= next_clock:
                try:
                    await self._rest.sync_time()
                    next_clock = time.monotonic() + self.tuning.clock_check_interval_s
                except HeliosError as exc:
                    # Not fatal: every signed request re-measures first if none succeeded.
                    log.warning("could not read VALR server time: %s", exc.message)
                    next_clock = time.monotonic() + self.tuning.status_poll_s
            await self.check_status()
            await asyncio.sleep(self.tuning.status_poll_s)

    async def check_status(self) -> str | None:
        """Read ``GET /v1/public/status`` once (no retries: it answers a question now) and
        remember it in :attr:`venue_status`; None and the previous value kept when it
        cannot be read."""
        try:
            return await self.read_status()
        except HeliosError as exc:
            log.warning("could not read VALR's status: %s", exc.message)
            return None

    async def read_status(self) -> str:
        """:meth:`check_status` that says why it could not read the status: a
        :class:`~heliosd.core.errors.HeliosError` (VALR unreachable, or an answer without a
        status text). The pre-LIVE ``venue_online`` gate asks this: not knowing is a refusal,
        and the refusal names the reason."""
        payload = await self._rest.request("GET", "/v1/public/status", auth=False)
        try:
            status = parse.obj(payload, "status").get("status")
        except parse.ParseError as exc:
            raise TransientError(f"VALR sent an unreadable status ({exc})") from None
        if not isinstance(status, str) or not status.strip():
            raise TransientError(f"VALR sent an unreadable status ({payload!r:.80})")
        status = status.strip().lower()
        if status != self.venue_status:
            # The first reading of "online" is the normal start, not news.
            first_online = self.venue_status is None and status == "online"
            log.log(logging.INFO if first_online else logging.WARNING, "VALR status: %s (was %s)",
                    status, self.venue_status or "unknown")  # fmt: skip
        self.venue_status = status
        return status

    def _read_only_refusal(self, status: str, sent: bool) -> VenueReadOnly:
        what = "VALR refused it with 503" if sent else "not sent"
        return VenueReadOnly(
            f"{VENUE_READ_ONLY}: VALR is {status} (maintenance), so new orders are refused"
            f" ({what}); cancels are still tried",
            details={"local": not sent, "reason": VENUE_READ_ONLY, "venue_status": status},
        )

    async def _refuse_if_unsafe(self) -> None:
        """Before an order is sent: VALR not online, or the clock skewed past the bound."""
        if self.venue_status not in (None, ONLINE):
            fresh = await self.check_status()  # back online since the last poll?
            status = fresh or self.venue_status or "unknown"
            if status != ONLINE:
                raise self._read_only_refusal(status, sent=False)
        self._check_skew()

    def _check_skew(self) -> None:
        """ClockSkewed when the measured offset is above ``valr.max_clock_skew_s``."""
        offset = self._rest.clock_offset_s
        limit = float(self._valr.max_clock_skew_s)
        if offset is not None and abs(offset) > limit:
            raise ClockSkewed(
                f"{CLOCK_SKEW}: this machine's clock differs from VALR's by {abs(offset):.1f} s"
                f" (limit valr.max_clock_skew_s = {limit:g} s); LIVE orders are refused until"
                " it is corrected (check NTP)",
                details={"local": True, "reason": CLOCK_SKEW, "clock_skew_s": offset},
            )

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

    def last_message_age_s(self, stream: str) -> float | None:
        """Seconds since the ``trade`` or ``account`` stream last received any message (its
        PONGs too); None when that stream does not run or has received nothing yet."""
        found = {"trade": self._trade, "account": self._account}.get(stream)
        if found is None or found.last_message_at is None:
            return None
        return max(0.0, time.monotonic() - found.last_message_at)

    # ------------------------------------------------------------------ clock

    @property
    def clock_skew_ms(self) -> int | None:
        """Server time minus local time in ms as last measured; None before any."""
        offset = self._rest.clock_offset_s
        return None if offset is None else round(offset * 1000)

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

    # ------------------------------------------------------------------ cancels

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
