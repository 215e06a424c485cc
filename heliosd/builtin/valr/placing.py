"""Placing orders on VALR: the part of :class:`~heliosd.builtin.valr.client.ValrClient` that
sends requests which could execute an order.

Placing an order is the one place where a retry can cost money, so it follows a fixed rule:

* A request VALR certainly did not execute is re-sent, bounded: a **429** (VALR's limiter
  answers before the request reaches the matching engine, and the simulator models it the
  same way) or a connection that was refused before anything was sent.
* A request whose answer was lost (timeout, dropped connection, 5xx) may have been executed,
  or may still be executed: a delayed request can reach the matching engine after we asked.
  It is **never sent again**. We look the order up by ``customerOrderId`` repeatedly, for
  twice the request timeout, and return its real state; if VALR does not list it by then,
  or the lookups fail, the caller gets :class:`~heliosd.core.errors.OutcomeUnknownError`
  and the order stays "sent" until the account stream or reconciliation settles it. A
  resend would not be
  safe even with the same customerOrderId: VALR refuses a duplicate only among *open*
  orders, so a filled market order could execute twice (found by tests/faults).

Send permits (``PlaceRequest.permit``, :mod:`heliosd.trading.permits`; the client declares
``honours_permits = True``). With a permit, :meth:`ValrClient.place` guarantees:

* ``permit.begin_send()`` runs immediately before every request that could execute the order
  (the first POST, every resend after a 429, a refused connection or a 401 re-signed
  after a clock re-measurement), as the last step before the request is handed to the HTTP
  library; ``permit.end_send()`` runs once that request answered or certainly was not
  executed. A request whose answer was lost stays on the wire through the lookups below, so
  a stop's ``PermitBoard.settle`` names it until its outcome is known.
* Every wait before a send ends the moment the permit is revoked: the Retry-After or backoff
  wait is ``permit.sleep``; the pair-list refresh, the clock measurements (the first, and
  the re-measurement after a 401, during which the rejected request is not
  on the wire) and the wait for the account stream to be connected and reconciled are
  ``permit.guard``-ed.
* A revoked permit raises :class:`~heliosd.core.errors.PermitRevoked` out of ``place``: the order
  was never sent (a 429 is answered before VALR's matching engine).
* Lookups after a lost answer are reads, not sends: they are not guarded, so a stop that
  revokes the permit still learns how the order ended.

Without a permit (``None``: tools and tests) ``place`` behaves the same minus the checks.

The order's request body, validated and rounded against the pair's limits before any request,
is :mod:`heliosd.builtin.valr.order_body` (a base class of ``_Placing``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from heliosd.builtin.valr.order_body import _OrderBody
from heliosd.builtin.valr.order_body import plain as plain
from heliosd.builtin.valr.order_body import wire_decimal as wire_decimal
from heliosd.builtin.valr.rest import NotExecuted, ValrRest
from heliosd.builtin.valr.retry import ValrTuning, read_retrying
from heliosd.builtin.valr.streams import AccountStream
from heliosd.core.config import ValrSettings
from heliosd.core.errors import AuthError, ExchangeRejected, OutcomeUnknownError, TransientError
from heliosd.core.types import (
    OrderState,
    OrderStatus,
    OrderType,
    PairInfo,
    PlaceRequest,
    PlaceResult,
)
from heliosd.trading.permits import Permit

log = logging.getLogger("heliosd.builtin.valr.client")  # one logger for the whole client

T = TypeVar("T")


async def _guarded(permit: Permit | None, start: Callable[[], Awaitable[T]]) -> T:
    """Await ``start()``; with a permit, revocably (and not at all if already revoked)."""
    if permit is None:
        return await start()
    permit.check()
    return await permit.guard(start())


class _Placing(_OrderBody):
    """Placement, writes and their waits; mixed into ValrClient, which owns the state."""

    _rest: ValrRest
    _valr: ValrSettings
    _account: AccountStream | None
    tuning: ValrTuning

    if TYPE_CHECKING:

        def _require_credentials(self) -> None: ...

        async def _refuse_if_unsafe(self) -> None: ...

        def _check_skew(self) -> None: ...

        async def check_status(self) -> str | None: ...

        def _read_only_refusal(self, status: str, sent: bool) -> ExchangeRejected: ...

        async def pair(self, symbol: str) -> PairInfo: ...

        async def order_status(
            self,
            pair: str,
            *,
            exchange_order_id: str | None = None,
            customer_order_id: str | None = None,
        ) -> OrderStatus | None: ...

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
        # VALR read-only or the clock skewed past the bound: refused now, never sent.
        await _guarded(permit, self._refuse_if_unsafe)
        cid = request.customer_order_id
        while True:
            try:
                # A 401 re-measures the clock; a skew found past the bound then refuses the
                # order (that 401 was not executed) instead of re-signing it.
                answer = await self._write(
                    "POST", path, body, permit=permit, recheck=self._check_skew
                )
            except TransientError as exc:
                if isinstance(exc, NotExecuted):
                    raise
                log.warning("placing %s: answer lost (%s); looking it up", cid, exc.message)
                # _permitted left that request on the wire (one request at a time per
                # permit, so on_wire says so): it ends when the lookups do, so a stop's
                # settle() names the order meanwhile.
                held = permit is not None and permit.on_wire > 0
                try:
                    if exc.details.get("status") == 503:
                        refused = await self._after_503(request)
                        if isinstance(refused, OrderStatus):
                            return self._result(request, refused)
                        if refused is not None:
                            raise refused from None
                    status = await self._find_after_lost_answer(request)
                finally:
                    if held:
                        assert permit is not None
                        permit.end_send()
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

    async def _after_503(self, request: PlaceRequest) -> OrderStatus | ExchangeRejected | None:
        """A 503 on a placement: read VALR's status at once. Read-only means VALR refused
        every write with 503 before executing it [VALR's docs and CCXT agree], so the order
        was not executed: one lookup confirms (its status if VALR lists it after all), then
        the refusal. None when VALR is online or its status is unreadable (an ordinary lost
        answer: the lookups decide)."""
        status = await self.check_status()
        if status is None or status == "online":
            return None
        try:
            found = await self.order_status(
                request.pair, customer_order_id=request.customer_order_id
            )
        except TransientError:
            found = None  # reads work in read-only mode; a failing one changes nothing here
        if found is not None:
            return found
        log.warning("placing %s: VALR is %s; the 503 was its refusal", request.customer_order_id,
                    status)  # fmt: skip
        return self._read_only_refusal(status, sent=True)

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
        recheck: Callable[[], None] | None = None,
    ) -> Any:
        """One write. Re-sent only when VALR certainly did not execute it (a 429 or a refused
        connection), bounded by ``write_policy``; anything else is raised to the caller.
        With a ``permit``, every send is permitted and every wait revocable (module
        docstring). ``recheck`` runs after a clock re-measurement, before the re-send."""

        async def remeasure(measure: Awaitable[datetime]) -> datetime:
            out = await measure
            if recheck is not None:
                recheck()
            return out

        policy = self.tuning.write_policy
        deadline = time.monotonic() + policy.max_total_s
        attempt = 0
        while True:
            attempt += 1
            try:
                if permit is None:
                    return await self._rest.request(verb, path, body=body, remeasure=remeasure)
                return await self._permitted(permit, verb, path, body, recheck)
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
        self,
        permit: Permit,
        verb: str,
        path: str,
        body: Mapping[str, Any] | None,
        recheck: Callable[[], None] | None = None,
    ) -> Any:
        """One request under ``permit``: begin_send right before it leaves, end_send once
        VALR answered or certainly did not act on it.

        A 401 was not executed, so it is off the wire while the clock is
        re-measured (revocably, ``permit.guard``); the re-send begins again. A lost answer
        (timeout, dropped connection, 5xx; not NotExecuted) **stays on the wire**: VALR may
        still execute it, so only the caller's lookups can end it (``place``)."""
        begun = False

        def gate() -> None:
            nonlocal begun
            permit.begin_send()
            begun = True

        async def remeasure(measure: Awaitable[datetime]) -> datetime:
            nonlocal begun
            if begun:  # the rejected request was not executed
                begun = False
                permit.end_send()
            out = await permit.guard(measure)
            if recheck is not None:
                recheck()
            return out

        lost = False
        try:
            return await self._rest.request(verb, path, body=body, gate=gate, remeasure=remeasure)
        except NotExecuted:
            raise
        except TransientError:
            lost = begun
            raise
        finally:
            if begun and not lost:
                permit.end_send()

    async def _wait_ready(self) -> None:
        """Orders wait while the account stream (re)connects and reconciles, so a fill can
        never arrive for an order placed against an unreconciled view."""
        stream = self._account
        if stream is None or stream.ready.is_set():
            return
        if stream.broken is not None:  # it will not come back by itself: refuse at once
            raise stream.broken
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
