"""External flows: deposits, withdrawals and transfers, recorded once and never counted as P&L.

:class:`FlowWatcher` watches one mode's venue balances (the LIVE account; a paper account
has no flows). Invariants:

* **F1 -- every balance change is explained.** The watcher keeps an *anchor*: the venue's
  totals at the last moment everything was explained, plus the balance effect of every fill
  applied since (``note_fill``, the ledger's own fee rule: a BUY adds ``quantity - base fee``
  of the base and takes ``quantity * price + quote fee`` of the quote). The *residual* is what
  the venue says minus what the anchor and fills explain. A zero residual moves the anchor.
* **F1a -- a fill the first anchor already shows is not counted.** The first look at the
  totals comes with the time of the venue's full balance snapshot they rest on
  (``shown_until``; the ledger's :attr:`~heliosd.risk.ledger.Ledger.snapshot_at`). By the
  ledger's own rule ("Unsettled fills") such a snapshot shows every fill traded at or before
  it, so a fill traded then or earlier is in the first anchor and is not counted: the
  catch-up of trades made before this process first read the balances (a fresh state
  directory on an account with history, or a trade made by hand just before the start;
  bench/drawdown_stop.py's second run once read its first run's trades, +0.09 BTC and
  -89,595 ZAR, as inferred flows). Every later fill is counted, whatever later snapshot
  shows it: its balance change entered the totals after the first anchor, so it is part of
  a residual, which the fill explains (within the grace) or reverses (a fill the fill check
  recovers after its balance change was inferred as a flow, F2's last paragraph). A cut at
  a later snapshot would leave such an inferred flow standing. One rule for "shown" in the
  ledger and here: should VALR's snapshot lag its own trade record, both are wrong together,
  and the balance change, when it arrives, is a residual (F2) the history denies (F2b), so
  a loss in it still counts. Not covered: a balance row between the first snapshot and the
  first look that shows a trade whose fill comes later (the first look follows the first
  snapshot within a loop turn): its fill then reads as the opposite inferred flows.
* **F2 -- the rule for a residual.** A residual first waits ``GRACE_S`` (VALR's balance
  update and its trade event arrive in either order, and a trade missed while the stream was
  down arrives with the reconciliation). While it waits its value is *pending*: the
  baselines move by it provisionally (:mod:`heliosd.risk.marks`, M2), so it trips nothing.
  If it is still there after the grace:

  1. with the venue's transaction history available (``transaction_history(since)``),
     the flows it lists are recorded, and whatever they explain is settled; a residual the
     history does not explain is asked about again after each grace, up to
     ``HISTORY_TRIES`` times (the history can lag the balance), and then recorded as
     ``inferred``;
  2. without history (no such method, or it fails), the residual is recorded at once as an
     ``inferred`` flow per currency, ``flow_id`` ``inferred:<currency>:<iso time>:<8 hex>``.

  A fill that arrives later than all of that produces the opposite residual and is recorded
  as the opposite inferred flow: at unchanged prices the two cancel in value, so the
  baselines end where they should.
* **F2a -- nothing noted is lost while a residual is resolved.** Resolving awaits the venue's
  history; fills applied and balances reported meanwhile are not part of the residual being
  resolved. Resolution moves the anchor by exactly that residual and keeps the fills noted
  since, so a fill applied during the await is still explained by its balance change (it
  was once dropped with the anchor reset to the totals of before the await, and the fill's
  balance change was then recorded as an inferred deposit and withdrawal).
* **F2b -- what the venue's own history denies never hides a loss.** When the history
  answered and, after every try, does not list a residual, the venue says no deposit,
  withdrawal or transfer happened: the change is more likely a trade heliosd did not see
  (made by hand, or missed), whose legs net to that trade's profit or loss. Such a batch of
  inferred flows moves the baselines only by the positive part of its net value: an
  unexplained gain is kept out of P&L (it cannot trip anything), an unexplained loss stays
  a loss and the stops see it. Should the history list it later after all, that listing is
  recorded as a flow of its own and moves the baselines then, once. Without a history (no
  such method, or it failed), a residual is a flow at full value, as item 2 says: an
  unexplained balance change is then more likely a deposit or withdrawal than a trade.
* **F3 -- recorded once.** Flows go to the ``flows`` table (``UNIQUE(mode, flow_id)``); only
  a flow whose row is new moves the baselines, so history read twice counts once.
* **F4 -- value at recording.** A flow's value is its amount times the asset's price at the
  moment it is recorded (0 when the asset has no price; the row keeps the amount).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from heliosd.core.types import ZERO, Fill, Flow, Mode, PairInfo, Side, utcnow
from heliosd.store import Store, iso

log = logging.getLogger(__name__)

GRACE_S = 5.0
HISTORY_TRIES = 3
# How far before the anchor the history is read (clocks differ; rows are deduplicated).
HISTORY_MARGIN = timedelta(minutes=5)

History = Callable[..., Awaitable[Sequence[Flow]]]
Valuer = Callable[[str], Decimal | None]


def insert_flows_sql(
    conn: sqlite3.Connection, mode: Mode, flows: Sequence[tuple[Flow, Decimal | None]]
) -> list[bool]:
    """Insert each ``(flow, value)``; True for the ones not stored before (F3)."""
    now = iso(utcnow())
    out = []
    for flow, value in flows:
        cur = conn.execute(
            "INSERT INTO flows(mode, flow_id, currency, amount, kind, value, at, recorded_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(mode, flow_id) DO NOTHING",
            (str(mode), flow.flow_id, flow.currency, str(flow.amount), flow.kind,
             None if value is None else str(value), iso(flow.at), now),
        )  # fmt: skip
        out.append(cur.rowcount == 1)
    return out


def load_flows_sql(conn: sqlite3.Connection, mode: Mode, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT flow_id, currency, amount, kind, value, at, recorded_at FROM flows"
        " WHERE mode = ? ORDER BY id DESC LIMIT ?",
        (str(mode), limit),
    ).fetchall()
    keys = ("flow_id", "currency", "amount", "kind", "value", "at", "recorded_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def flows_value_since(conn: sqlite3.Connection, mode: Mode, since: str) -> Decimal:
    """The value of ``mode``'s flows recorded at or after ``since`` (ISO time) that the
    venue's history listed: inferred ones moved the baselines by their batch's positive net
    only (F2b), which the rows do not keep, and mostly net to nothing."""
    rows = conn.execute(
        "SELECT value FROM flows WHERE mode = ? AND recorded_at >= ? AND value IS NOT NULL"
        " AND kind != 'inferred'",
        (str(mode), since),
    ).fetchall()
    return sum((Decimal(v) for (v,) in rows), ZERO)


def fill_effect(fill: Fill, info: PairInfo) -> dict[str, Decimal]:
    """What ``fill`` does to the account's totals (the ledger's fee rule)."""
    sign = 1 if fill.side is Side.BUY else -1
    base_fee = fill.fee if fill.fee_currency == info.base else ZERO
    quote_fee = fill.fee if fill.fee_currency == info.quote else ZERO
    out = {
        info.base: sign * fill.quantity - base_fee,
        info.quote: -sign * fill.quantity * fill.price - quote_fee,
    }
    if fill.fee and fill.fee_currency not in (info.base, info.quote):
        out[fill.fee_currency] = out.get(fill.fee_currency, ZERO) - fill.fee
    return out


class FlowWatcher:
    """F1-F4 for one mode. Call :meth:`note_fill` for each applied fill, :meth:`check` with
    the venue's totals whenever they may have changed and about once a second."""

    def __init__(
        self,
        mode: Mode,
        store: Store,
        *,
        value: Valuer,
        on_flow: Callable[[Decimal], None],
        on_pending: Callable[[Decimal], None],
        history: History | None = None,
        pair_info: Callable[[str], PairInfo | None],
        clock: Callable[[], float] = time.monotonic,
        grace_s: float = GRACE_S,
    ) -> None:
        self.mode = mode
        self._store = store
        self._value = value
        self._on_flow = on_flow
        self._on_pending = on_pending
        self._history = history
        self._pair_info = pair_info
        self._clock = clock
        self.grace_s = grace_s
        self._anchor: dict[str, Decimal] | None = None
        self._anchor_at = utcnow()
        # F1a: the snapshot time the first anchor rests on (None: not known, so every fill
        # counts).
        self._shown_until: datetime | None = None
        self._fills: dict[str, Decimal] = {}
        self._since: float | None = None  # when the current residual was first seen
        self._tries = 0
        self._busy = False
        self.recorded = 0
        self.unexplained: dict[str, Decimal] = {}
        self.catching_up = False

    def note_fill(self, fill: Fill) -> None:
        shown = self._shown_until
        if shown is not None and fill.traded_at <= shown:
            # F1a: in the snapshot the first anchor rests on already.
            log.debug("%s flows: fill %s traded at %s is in the balances of %s", self.mode,
                      fill.trade_id, iso(fill.traded_at), iso(shown))  # fmt: skip
            return
        info = self._pair_info(fill.pair)
        if info is None:
            log.warning("flows: fill %s in unknown pair %s not counted", fill.trade_id, fill.pair)
            return
        for currency, delta in fill_effect(fill, info).items():
            self._fills[currency] = self._fills.get(currency, ZERO) + delta

    def residual(self, totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
        anchor = self._anchor or {}
        out = {}
        for currency in set(totals) | set(anchor) | set(self._fills):
            diff = (
                totals.get(currency, ZERO)
                - anchor.get(currency, ZERO)
                - self._fills.get(currency, ZERO)
            )
            if diff:
                out[currency] = diff
        return out

    def _settle(self, totals: Mapping[str, Decimal]) -> None:
        self._anchor = dict(totals)
        self._anchor_at = utcnow()
        self._fills = {}
        self._since = None
        self._tries = 0
        self.unexplained = {}
        self._on_pending(ZERO)

    def observe(
        self, totals: Mapping[str, Decimal], *, shown_until: datetime | None = None
    ) -> bool:
        """The synchronous half of :meth:`check`: settle or mark the residual pending, at
        once, before anyone computes a figure from these totals (M2). True when a residual
        is past its grace and :meth:`check` should resolve it. ``shown_until``: the time of
        the full balance snapshot ``totals`` rest on (read on the first look, F1a)."""
        if self._busy:
            return False
        if self._anchor is None:
            self._settle(totals)
            self._shown_until = shown_until
            return False
        residual = self.residual(totals)
        if not residual:
            if self._since is not None:
                log.info("%s balance change explained by fills", self.mode)
            self._settle(totals)
            return False
        self.unexplained = residual
        self._on_pending(self._worth(residual))
        now = self._clock()
        if self._since is None:
            self._since = now
            return False
        return now - self._since >= self.grace_s

    async def check(
        self, totals: Mapping[str, Decimal], *, shown_until: datetime | None = None
    ) -> None:
        """One look at the venue's totals (never raises on a store or venue error)."""
        if not self.observe(totals, shown_until=shown_until):
            return
        residual = dict(self.unexplained)
        self._busy = True
        try:
            await self._resolve(totals, residual)
        except Exception:
            log.exception("%s flows: could not record the balance change %s", self.mode,
                          residual)  # fmt: skip
        finally:
            self._busy = False

    async def _resolve(self, totals: Mapping[str, Decimal], residual: dict[str, Decimal]) -> None:
        resolving = dict(residual)  # what this resolution explains, whatever happens meanwhile
        history: Sequence[Flow] | None = None
        if self._history is not None:
            try:
                history = await asyncio.wait_for(
                    self._history(since=self._anchor_at - HISTORY_MARGIN), 15
                )
            except Exception as exc:
                log.warning("%s transaction history unavailable (%s: %s); inferring flows",
                            self.mode, type(exc).__name__, exc)  # fmt: skip
        if history is not None:
            new = await self.record(list(history))
            for flow in new:
                residual[flow.currency] = residual.get(flow.currency, ZERO) - flow.amount
            residual = {c: v for c, v in residual.items() if v}
            self._tries += 1
            if residual and self._tries < HISTORY_TRIES:
                # Not explained yet: keep the rest pending, ask again after another grace.
                self._since = self._clock()
                self._anchor_at_keep(new)
                self.unexplained = residual
                self._on_pending(self._worth(residual))
                return
        if residual:
            at = utcnow()
            inferred = [
                # Its own id: a second inference in the same microsecond is not "recorded".
                Flow(f"inferred:{c}:{iso(at)}:{uuid.uuid4().hex[:8]}", c, amount, "inferred", at)
                for c, amount in sorted(residual.items())
            ]
            await self.record(inferred, inferred=history is not None)
        self._explained(resolving)

    def _explained(self, residual: Mapping[str, Decimal]) -> None:
        """F2a: the anchor moves by what was resolved; fills noted since stay noted."""
        anchor = self._anchor if self._anchor is not None else {}
        for currency, amount in residual.items():
            anchor[currency] = anchor.get(currency, ZERO) + amount
        self._anchor = anchor
        self._anchor_at = utcnow()
        self._since = None
        self._tries = 0
        self.unexplained = {}
        self._on_pending(ZERO)

    def _anchor_at_keep(self, new: list[Flow]) -> None:
        # Flows recorded meanwhile are explained: fold them into the anchor, so the residual
        # left pending is only what is still unexplained.
        anchor = self._anchor if self._anchor is not None else {}
        for flow in new:
            anchor[flow.currency] = anchor.get(flow.currency, ZERO) + flow.amount
        self._anchor = anchor

    async def record(self, flows: list[Flow], *, inferred: bool = False) -> list[Flow]:
        """Store ``flows`` (F3) and move the baselines by the value of each new one (F4), or,
        for ``inferred`` ones the history denies, by the positive part of their net value
        (F2b); returns the new ones."""
        if not flows:
            return []
        valued = [(f, self._priced(f.currency, f.amount)) for f in flows]
        mode = self.mode
        fresh = await self._store.write(lambda c: insert_flows_sql(c, mode, valued))
        new = []
        net = ZERO
        for (flow, value), is_new in zip(valued, fresh, strict=True):
            if not is_new:
                continue
            new.append(flow)
            self.recorded += 1
            worth = value if value is not None else ZERO
            if inferred:
                net += worth
                log.warning("%s %s of %s %s recorded (worth %s)", mode, flow.kind,
                            flow.amount, flow.currency, value)  # fmt: skip
                continue
            log.warning("%s %s of %s %s recorded (worth %s): not profit or loss", mode,
                        flow.kind, flow.amount, flow.currency, value)  # fmt: skip
            self._on_flow(worth)
        if inferred and new:
            if net < 0:
                log.warning("%s unexplained balance change worth %s counts as a loss (no "
                            "deposit or withdrawal explains it)", mode, net)  # fmt: skip
            self._on_flow(max(net, ZERO))
        return new

    async def catch_up(self, since: datetime) -> list[Flow]:
        """Record what the history lists since ``since`` (flows while heliosd was down).

        While it runs, :attr:`catching_up` is true: the baselines do not yet know those
        flows, so no figure may be judged or marked from them (the monitor pass waits; a
        withdrawal made while heliosd was down would otherwise read as a drawdown, and a
        deposit would raise the peak twice). Bounded by the history read's timeout."""
        if self._history is None:
            return []
        self.catching_up = True
        try:
            history = await asyncio.wait_for(self._history(since=since), 15)
            return await self.record([f for f in history if f.at > since])
        except Exception as exc:
            log.warning("%s transaction history unavailable at start (%s): flows made while"
                        " heliosd was down count as profit or loss", self.mode, exc)  # fmt: skip
            return []
        finally:
            self.catching_up = False

    def _priced(self, currency: str, amount: Decimal) -> Decimal | None:
        price = self._value(currency)
        return None if price is None else amount * price

    def _worth(self, residual: Mapping[str, Decimal]) -> Decimal:
        return sum((self._priced(c, a) or ZERO for c, a in residual.items()), ZERO)


def split_pair(
    pair: str, pairs: Mapping[str, PairInfo], currencies: Sequence[str]
) -> PairInfo | None:
    """A pair's currencies: from the known pairs, else by a known quote currency suffix."""
    info = pairs.get(pair)
    if info is not None:
        return info
    for quote in currencies:
        if pair.endswith(quote) and len(pair) > len(quote):
            return PairInfo(pair, pair[: -len(quote)], quote, ZERO, ZERO, ZERO, ZERO, ZERO, 8)
    return None


__all__ = [
    "GRACE_S",
    "FlowWatcher",
    "fill_effect",
    "flows_value_since",
    "insert_flows_sql",
    "load_flows_sql",
    "split_pair",
]
