"""Closing positions on either account: ``POST /api/positions/close``.

After an emergency stop the mode is PAPER, so an ordinary ``heliosctl order SELL`` goes to
the paper account and the LIVE holdings are stranded. A close names the account (``mode``)
explicitly and sells its holdings there, whatever the current mode. It is two steps, like
the switch to LIVE: the first request answers ``confirmation_required`` with the orders it
would send and a token (:mod:`heliosd.control.confirm`: single use, expires, bound to the
caller, to the epoch and to the exact request); the same request with the token sends them.

What a close may send, and nothing else:

* market SELLs only (never a buy), of an asset the account holds, of at most its *free*
  quantity (available, less SELLs not yet acknowledged by the venue, less fills the venue's
  balance does not show yet), truncated to the pair's quantity step; never more than the
  confirmed order said, even if more is held by the time it is confirmed;
* each at least VALR's minimum (base quantity and quote value at the bid) and at most its
  maximum; what cannot be sold is reported in ``remaining`` with why, never forced;
* through the router's closing path (:meth:`heliosd.trading.router.ExecutionRouter.
  submit_closing`), which is the only way an order reaches the client of a mode other than
  the current one: it still stores the order, runs every risk rule (REDUCING lets only
  reducing orders pass, HALTED none), issues a permit bound to the epoch and refuses
  anything that is not a reducing market SELL of a held asset.

Allowed while ACTIVE or REDUCING; refused (``halted``) while HALTED. Every step is audited
(``positions_close``) with the caller, and the outcome is notified (``positions_close``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from heliosd import store as st
from heliosd.control.backend import Actor, CloseRequest
from heliosd.control.confirm import ConfirmTokens
from heliosd.core.config import Settings
from heliosd.core.errors import (
    ConfirmationRequired,
    HaltedError,
    HeliosError,
    InvalidConfirmToken,
    NotFoundError,
    TransientError,
)
from heliosd.core.protocols import Event, MarketView
from heliosd.core.types import (
    ZERO,
    Mode,
    OrderIntent,
    OrderType,
    PairInfo,
    Side,
    TradingState,
)
from heliosd.notify.notices import positions_close_event
from heliosd.risk.account import AccountRisk
from heliosd.risk.ledger import decimal_text
from heliosd.risk.snapshot import RiskSnapshot
from heliosd.store import Store
from heliosd.trading.router import ExecutionRouter

log = logging.getLogger(__name__)

ACTION = "positions_close"
SOURCE = "close"

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]


def _binding(request: CloseRequest) -> str:
    # The exact request a token confirms: the same body, confirm_token aside.
    return json.dumps(["close", str(request.mode), request.pair, request.reason])


def _target(request: CloseRequest) -> str:
    return f"{request.mode} {request.pair or 'all holdings'}"


@dataclass(frozen=True, slots=True)
class Sell:
    pair: str
    quantity: Decimal

    def as_json(self) -> dict[str, str]:
        return {"pair": self.pair, "side": "SELL", "quantity": decimal_text(self.quantity, _Q)}


@dataclass(frozen=True, slots=True)
class Leftover:
    """A holding (or part of one) the close does not sell, and why."""

    pair: str | None
    asset: str
    quantity: Decimal
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"pair": self.pair, "asset": self.asset,
                "quantity": decimal_text(self.quantity, _Q), "why": self.why}  # fmt: skip


_Q = Decimal("1e-18")  # quantities are shown exactly, never rounded for display


class Closer:
    """Plans and sends closes (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        router: ExecutionRouter,
        accounts: Mapping[Mode, AccountRisk],
        market: MarketView,
        enqueue: EnqueueFn | None = None,
        token_ttl_s: float = 60.0,
    ) -> None:
        self._store = store
        self._settings = settings
        self._router = router
        self._accounts = accounts
        self._market = market
        self._enqueue = enqueue
        self._tokens = ConfirmTokens(token_ttl_s)
        # Closes run one at a time: a second one plans with the first one's SELLs already
        # counted against the free holding, so two confirmations never sell it twice.
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ planning

    def plan(self, mode: Mode, pair: str | None) -> tuple[list[Sell], list[Leftover]]:
        """The SELLs a close of ``pair`` (None: every holding) on ``mode``'s account would
        send now, and what it would leave, with why."""
        snap = self._accounts[mode].snapshot()
        if not snap.ready:
            raise TransientError(
                f"the {mode} account's balances are not known yet (the venue has not sent"
                " them); try again in a few seconds"
            )
        if pair is not None:
            info = self._market.pair(pair)
            if info is None:
                raise NotFoundError(
                    f"no pair {pair} is known (the venue does not list it, or its pair list has"
                    " not arrived yet)",
                    details={"field": "pair", "pair": pair},
                )
            return self._plan_pair(info, snap)
        sells: list[Sell] = []
        left: list[Leftover] = []
        routes = self._routes()
        for asset, holding in sorted(snap.holdings.items()):
            if asset == snap.reference or holding.total <= ZERO:
                continue
            info = routes.get(asset)
            if info is None:
                left.append(Leftover(None, asset, holding.total,
                                     f"no known pair sells {asset} for a currency held here;"
                                     " sell it at the venue"))  # fmt: skip
                continue
            s, rest = self._plan_pair(info, snap)
            sells += s
            left += rest
        return sells, left

    def _routes(self) -> dict[str, PairInfo]:
        """For each base asset, the pair a close sells it on: a traded pair (``valr.pairs``,
        in order) quoted in the reference currency first, else the first traded one."""
        reference = self._settings.risk.reference_currency
        routes: dict[str, PairInfo] = {}
        for symbol in self._settings.valr.pairs:
            info = self._market.pair(symbol)
            if info is None or not info.active:
                continue
            known = routes.get(info.base)
            if known is None or (known.quote != reference and info.quote == reference):
                routes[info.base] = info
        return routes

    def _plan_pair(self, info: PairInfo, snap: RiskSnapshot) -> tuple[list[Sell], list[Leftover]]:
        base, pair = info.base, info.symbol
        left: list[Leftover] = []

        def leave(quantity: Decimal, why: str) -> None:
            left.append(Leftover(pair, base, quantity, why))

        holding = snap.holdings.get(base)
        if holding is None or holding.total <= ZERO:
            leave(ZERO, f"the {snap.mode} account holds no {base}")
            return [], left
        pending = snap.pending.get(base)
        in_flight = pending.sell_in_flight if pending is not None else ZERO
        # A fill the venue's balance does not show yet: a sold amount is gone already.
        gone = -holding.unsettled if holding.unsettled < ZERO else ZERO
        free = max(holding.available - in_flight - gone, ZERO)
        if holding.total > free:
            leave(
                holding.total - free,
                "reserved by open orders or by fills the venue has not settled yet (cancel"
                " the orders, then close again)",
            )
        if free <= ZERO:
            return [], left
        quantity = info.round_quantity(free)
        step = free - quantity
        if quantity < info.min_base:
            leave(free, f"below VALR's minimum order of {info.min_base} {base} (dust: it"
                  " cannot be sold on this pair)")  # fmt: skip
            return [], left
        again = "; close again once this order has filled"
        if quantity > info.max_base:
            leave(quantity - info.max_base, f"above VALR's maximum order of {info.max_base}"
                  f" {base}{again}")  # fmt: skip
            quantity = info.max_base
        bid = self._market.price_for(pair, Side.SELL)
        if bid is not None and bid > ZERO:
            if quantity * bid < info.min_quote:
                leave(free, f"worth less than VALR's minimum order value of {info.min_quote}"
                      f" {info.quote} at the bid {bid}")  # fmt: skip
                return [], left
            if quantity * bid > info.max_quote:
                most = info.round_quantity(info.max_quote / bid)
                leave(quantity - most, f"above VALR's maximum order value of"
                      f" {info.max_quote} {info.quote}{again}")  # fmt: skip
                quantity = most
        if step > ZERO:
            leave(step, f"finer than the pair's quantity step (1e-{info.base_decimals} {base})")
        return [Sell(pair, quantity)], left

    def next_step(self) -> str | None:
        """What an emergency stop's answer tells the operator to do next, when the LIVE
        account still holds something a close could sell (above dust), else None."""
        try:
            snap = self._accounts[Mode.LIVE].snapshot()
        except Exception:  # the stop's answer must not fail on a hint
            log.exception("could not read the LIVE account for the stop's next step")
            return None
        routes = self._routes()
        held = [
            f"{decimal_text(h.total, _Q)} {asset}"
            for asset, h in sorted(snap.holdings.items())
            if asset != snap.reference and h.total > ZERO and not h.dust and asset in routes
        ]
        if not held:
            return None
        return (
            f"The LIVE account still holds {', '.join(held)}: the stop does not sell it. To"
            " flatten it: heliosctl close --all --live (POST /api/positions/close"
            ' {"mode": "LIVE", "all": true}), or sell at VALR.'
        )

    # ------------------------------------------------------------------ the route

    async def close(
        self, request: CloseRequest, *, confirm_token: str | None, actor: Actor
    ) -> dict[str, Any]:
        async with self._lock:
            return await self._close(request, confirm_token, actor)

    async def _close(
        self, request: CloseRequest, confirm_token: str | None, actor: Actor
    ) -> dict[str, Any]:
        who = str(actor)
        state = self._store.mode_state()
        if state.trading_state is TradingState.HALTED:
            why = state.state_reason or "halted"
            await self._audit(who, "refused_halted", request, {"trading_state": "HALTED",
                                                               "why": why})  # fmt: skip
            raise HaltedError(
                f"Cannot close positions: trading is HALTED ({why}): nothing but cancels;"
                " resume first",
                details={"trading_state": str(state.trading_state), "reason": why},
            )
        binding = _binding(request)
        if confirm_token is None:
            sells, left = self.plan(request.mode, request.pair)
            if not sells:
                details = {"remaining": [x.as_json() for x in left]}
                await self._audit(who, "nothing_to_close", request, details)
                return {"orders": [], "remaining": details["remaining"]}
            token = self._tokens.issue(actor, state.epoch, binding=binding, payload=sells)
            orders = [s.as_json() for s in sells]
            ttl = int(self._tokens.ttl_s)
            await self._audit(who, "confirmation_issued", request, {"orders": orders})
            raise ConfirmationRequired(
                f"Closing {_target(request)} sends {len(sells)} market SELL"
                f"{'s' if len(sells) != 1 else ''} on the {request.mode} account. Repeat the"
                f" same request with confirm_token within {ttl} s to send them.",
                details={"confirm_token": token, "expires_in": ttl, "orders": orders,
                         "remaining": [x.as_json() for x in left], "mode": str(request.mode)},
            )  # fmt: skip

        taken = self._tokens.take(confirm_token)
        problem = (
            "it is unknown, already used or expired"
            if taken is None
            else taken.problem(actor, binding, state.epoch)
        )
        if problem is not None or taken is None:
            await self._audit(who, "invalid_token", request, {"problem": problem})
            raise InvalidConfirmToken(
                f"confirm_token does not confirm this close: {problem}; send the request"
                " without it for a new one",
                details={"epoch": state.epoch},
            )
        confirmed: list[Sell] = list(taken.payload)
        return await self._send(request, confirmed, who)

    async def _send(
        self, request: CloseRequest, confirmed: Sequence[Sell], who: str
    ) -> dict[str, Any]:
        # Planned again now: a fill or an order since the first answer may have changed what
        # is free. Each SELL is the smaller of what was confirmed and what is free now.
        now, left = self.plan(request.mode, request.pair)
        free = {s.pair: s.quantity for s in now}
        confirmed_pairs = {s.pair for s in confirmed}
        remaining: list[Leftover] = [x for x in left if x.pair not in confirmed_pairs]

        def leave(sell: Sell, quantity: Decimal, why: str) -> None:
            info = self._market.pair(sell.pair)
            base = info.base if info is not None else sell.pair
            remaining.append(Leftover(sell.pair, base, quantity, why))

        sends: list[Sell] = []
        for sell in confirmed:
            can = free.get(sell.pair, ZERO)
            if can <= ZERO:
                why = next((x.why for x in left if x.pair == sell.pair), "no longer free")
                leave(sell, sell.quantity, f"not sent: {why} (it changed since the confirmation)")
                continue
            remaining += [x for x in left if x.pair == sell.pair]
            if can < sell.quantity:
                leave(sell, sell.quantity - can, "not sent: no longer free since the confirmation")
            sends.append(Sell(sell.pair, min(can, sell.quantity)))
        await self._audit(who, "confirmed", request, {"orders": [s.as_json() for s in sends]})
        rows: list[dict[str, Any]] = []
        for sell in sends:
            why = f"close {request.mode}: {request.reason or 'no reason given'}"
            intent = OrderIntent(
                sell.pair, Side.SELL, OrderType.MARKET, sell.quantity, None, why, SOURCE
            )
            try:
                row = await self._router.submit_closing(intent, actor=who, mode=request.mode)
            except HeliosError as exc:
                order = exc.details.get("order")
                if isinstance(order, dict):
                    rows.append(order)
                leave(sell, sell.quantity, f"not sold: {exc.message}")
                continue
            rows.append(row)
            sent = Decimal(str(row.get("quantity") or sell.quantity))
            if sent < sell.quantity:
                leave(sell, sell.quantity - sent, "capped by the risk rules; close again")
        out = {"orders": rows, "remaining": [x.as_json() for x in remaining]}
        summary = [{"id": r.get("id"), "pair": r.get("pair"), "quantity": r.get("quantity"),
                    "state": r.get("state")} for r in rows]  # fmt: skip
        event = positions_close_event(
            mode=request.mode, target=_target(request), actor=who, reason=request.reason,
            orders=summary, remaining=out["remaining"],
        )  # fmt: skip

        def done(conn: sqlite3.Connection) -> None:
            st.audit(conn, actor=who, action=ACTION, outcome="sent", reason=request.reason,
                     details={"mode": str(request.mode), "pair": request.pair,
                              "orders": summary, "remaining": out["remaining"]})  # fmt: skip
            if self._enqueue is not None:
                self._enqueue(conn, event)

        await self._store.write(done)
        return out

    async def _audit(
        self, who: str, outcome: str, request: CloseRequest, details: dict[str, Any]
    ) -> None:
        full = {"mode": str(request.mode), "pair": request.pair, **details}
        await self._store.write(lambda c: st.audit(
            c, actor=who, action=ACTION, outcome=outcome, reason=request.reason, details=full
        ))  # fmt: skip
