"""After an unclean exit in LIVE: reconcile with VALR, say what was found, gate the resume.

The ``unclean_exit`` breaker is tripped by :func:`heliosd.runtime.runstate.begin_run` before
anything
of the new run starts (trading state HALTED: nothing but cancels). This module does the
rest, in the background of a daemon that is otherwise up:

1. Wait for the LIVE account stream to be up. Its connect is the venue's reconciliation: a
   balance snapshot, the fills since the stored watermark replayed, and the open orders
   taken; the stream reports "up" only after all three.
2. Let every replayed fill commit (the sink's drain), then read VALR's open orders and look
   up every LIVE order still open in the store that VALR no longer lists (applying what
   VALR says; one it never saw, still ``new`` or ``sent``, was not placed: failed).
3. Record and notify, in one transaction: an audit row (action ``reconcile``) and an urgent
   ``halt`` notification listing VALR's open orders (ids, and which of them heliosd does
   not know), the fills recovered, and the orders resolved.

Invariant: while ``unclean_exit`` is active, :meth:`Reconciliation.blocked` returns a reason
until step 3 has completed in this process, and the resume is refused with it. A step that
fails (the stream down, VALR answering errors) is recorded and notified once, with the
reason, and retried until it completes; a restart starts over, since the breaker persists.
Trading stays HALTED after completion too: only a person's resume lifts it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from heliosd import store as st
from heliosd.core.errors import HeliosError
from heliosd.core.protocols import Event, ExchangeClient
from heliosd.core.types import Mode, OpenOrder, OrderState, OrderStatus, utcnow
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.sink import VenueSink

log = logging.getLogger(__name__)

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]

ACCOUNT = "account"
# A stream that has not connected yet reports nothing: after PROBE_AFTER_S, and every
# PROBE_EVERY_S after that, VALR is asked directly (one read) so the failure has a reason.
# One that answers while the stream stays down past STREAM_WAIT_S is reported as that.
PROBE_AFTER_S = 5.0
PROBE_EVERY_S = 15.0
STREAM_WAIT_S = 30.0
READ_TIMEOUT_S = 30.0  # one read of VALR (the client retries inside it)
RETRY_S = 1.0  # between looks once something failed (the stream retries its own connects)
POLL_S = 0.05
LISTED = 20  # ids named in the notification; the audit row has them all


@dataclass(frozen=True)
class Findings:
    """What reconciliation found at VALR."""

    open_orders: list[OpenOrder]
    unknown: list[OpenOrder]  # open at VALR, no order of heliosd's
    fills_recovered: int
    resolved: list[dict[str, Any]] = field(default_factory=list)  # local orders looked up

    def as_json(self) -> dict[str, Any]:
        return {
            "open_orders": [_order_json(o) for o in self.open_orders],
            "unknown_orders": [_order_json(o) for o in self.unknown],
            "fills_recovered": self.fills_recovered,
            "resolved_orders": self.resolved,
        }


class Reconciliation:
    """One reconciliation with VALR after an unclean exit (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        sink: VenueSink,
        client: ExchangeClient,
        enqueue: EnqueueFn,
        publish: Callable[[dict[str, Any]], None],
        fills_before: int,
        cause: str,
    ) -> None:
        self._store = store
        self._sink = sink
        self._client = client
        self._enqueue = enqueue
        self._publish = publish
        self._fills_before = fills_before
        self._cause = cause
        self.completed = False
        self.findings: Findings | None = None
        self.problem = ""  # why the latest attempt has not completed

    def blocked(self) -> str | None:
        """Why a resume must wait, or None once reconciliation has completed."""
        if self.completed:
            return None
        why = self.problem or "waiting for the VALR account stream"
        return (
            f"reconciliation with VALR after the unclean exit has not completed ({why}); heliosd"
            " keeps retrying on its own: check the VALR connection (heliosctl health,"
            " live.account), then resume again once the reconciled notification has arrived"
        )

    async def run(self) -> None:
        """Until completed: wait for the stream, collect, record (a failure once)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_probe = started + PROBE_AFTER_S
        reported = False
        while True:
            problem: str | None = None
            state = self._sink.streams.get(ACCOUNT)
            if state is not None and state[0]:
                try:
                    findings = await asyncio.wait_for(self._collect(), READ_TIMEOUT_S)
                except (HeliosError, TimeoutError) as exc:
                    problem = "reading VALR failed: " + _why(exc)
                else:
                    # Completed once it is on record (fail closed: a finding that could
                    # not be recorded is looked for again).
                    if await self._record(findings, ""):
                        self.findings, self.completed, self.problem = findings, True, ""
                        return
                    problem = "its outcome could not be recorded"
            elif not getattr(self._client, "has_credentials", True):
                problem = "no VALR credentials are configured, so the account cannot be read"
            elif state is not None:
                problem = f"the VALR account stream is down: {state[1]}"
            elif loop.time() >= next_probe:
                # A stream that never connected says nothing: ask VALR directly why.
                problem = await self._probe()
                if problem is None and loop.time() - started > STREAM_WAIT_S:
                    problem = f"the VALR account stream has not connected in {STREAM_WAIT_S:.0f} s"
                next_probe = loop.time() + PROBE_EVERY_S
            if problem:
                self.problem = problem
                if not reported:
                    reported = True
                    await self._record(None, problem)
            await asyncio.sleep(RETRY_S if problem else POLL_S)

    async def _probe(self) -> str | None:
        """Why VALR cannot be read, or None if it answers: its clock first (one public
        read, quick to fail), then the account's open orders (signed)."""
        try:
            await asyncio.wait_for(self._client.server_time(), READ_TIMEOUT_S)
            await asyncio.wait_for(self._client.open_orders(), READ_TIMEOUT_S)
        except (HeliosError, TimeoutError) as exc:
            return "VALR does not answer: " + _why(exc)
        return None

    async def _collect(self) -> Findings:
        await self._sink.drain()  # the stream's replayed fills, committed
        venue = await self._client.open_orders()
        exchange_ids, customer_ids = od.open_orders_by_id(venue)
        local = await self._store.read(
            lambda c: od.list_orders(c, open_only=True, limit=100_000, mode=Mode.LIVE)
        )
        resolved = []
        for row in local:
            if row["exchange_order_id"] in exchange_ids or row["customer_order_id"] in customer_ids:
                continue
            status = await self._client.order_status(
                row["pair"], exchange_order_id=row["exchange_order_id"],
                customer_order_id=row["customer_order_id"],
            )  # fmt: skip
            if status is None:
                if OrderState(row["state"]) not in (OrderState.NEW, OrderState.SENT):
                    resolved.append({"id": row["id"], "state": row["state"],
                                     "note": "VALR does not know it"})  # fmt: skip
                    continue
                status = OrderStatus(
                    pair=row["pair"], state=OrderState.FAILED,
                    customer_order_id=row["customer_order_id"],
                    failed_reason="not known to VALR after an unclean exit",
                )  # fmt: skip
            after = await self._sink.apply_order_status(status)
            resolved.append({"id": row["id"], "state": (after or row)["state"]})
        await self._sink.drain()
        unknown = await self._store.read(lambda c: _unknown(c, venue))
        fills = await self._store.read(
            lambda c: c.execute("SELECT COUNT(*) FROM fills WHERE mode = 'LIVE'").fetchone()[0]
        )
        return Findings(venue, unknown, int(fills) - self._fills_before, resolved)

    async def _record(self, findings: Findings | None, problem: str) -> bool:
        """Audit row and notification in one transaction; False if it did not commit."""
        event = reconcile_event(self._cause, findings, problem)
        details = findings.as_json() if findings else {"problem": problem}
        outcome = "completed" if findings else "incomplete"
        enqueue = self._enqueue

        def tx(conn: sqlite3.Connection) -> None:
            st.audit(conn, actor="heliosd", action="reconcile", outcome=outcome,
                     reason=event.body.splitlines()[0], details=details)  # fmt: skip
            enqueue(conn, event)

        try:
            await self._store.write(tx)
        except Exception:
            log.exception("could not record the reconciliation after the unclean exit")
            return False
        self._publish({"type": "reconcile", "outcome": outcome, **details})
        if findings:
            log.warning("unclean exit: reconciled with VALR (%s); trading stays HALTED until"
                        " a person resumes", event.body.splitlines()[0])  # fmt: skip
        else:
            log.warning("unclean exit: reconciliation with VALR not complete yet: %s", problem)
        return True


def _unknown(conn: sqlite3.Connection, venue: list[OpenOrder]) -> list[OpenOrder]:
    """VALR's open orders that match no LIVE order of heliosd's (by either id)."""
    out = []
    for o in venue:
        row = conn.execute(
            "SELECT 1 FROM orders WHERE mode = 'LIVE' AND (exchange_order_id = ?"
            " OR (customer_order_id = ? AND ? IS NOT NULL)) LIMIT 1",
            (o.exchange_order_id, o.customer_order_id, o.customer_order_id),
        ).fetchone()
        if row is None:
            out.append(o)
    return out


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, HeliosError) else "timed out"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _order_json(o: OpenOrder) -> Mapping[str, Any]:
    return {
        "exchange_order_id": o.exchange_order_id, "customer_order_id": o.customer_order_id,
        "pair": o.pair, "side": str(o.side), "price": None if o.price is None else str(o.price),
        "remaining_quantity": str(o.remaining_quantity),
    }  # fmt: skip


def reconcile_event(cause: str, findings: Findings | None, problem: str) -> Event:
    """The urgent notification of a reconciliation's outcome (kind ``halt``: the operator
    filters it with the other halts)."""
    resume = 'When satisfied: heliosctl resume --reason "..."'
    if findings is None:
        title = "HALTED (LIVE): unclean exit, VALR not reconciled yet"
        body = "\n".join((
            f"Reconciliation with VALR has not completed: {problem}.",
            f"Cause: {cause}.",
            "Trading is HALTED (nothing but cancels). heliosd keeps retrying; a resume is"
            " refused until it completes.",
        ))  # fmt: skip
    else:
        ids = [o.exchange_order_id for o in findings.open_orders]
        listed = ", ".join(ids[:LISTED]) + (f" and {len(ids) - LISTED} more" if len(ids) > LISTED
                                            else "")  # fmt: skip
        unknown = [o.exchange_order_id for o in findings.unknown]
        title = "HALTED (LIVE): unclean exit, reconciled with VALR"
        body = "\n".join(part for part in (
            f"Reconciled with VALR: {_count(len(ids), 'open order')} at VALR,"
            f" {_count(findings.fills_recovered, 'fill')} recovered,"
            f" {_count(len(findings.resolved), 'stored order')} resolved.",
            f"Open at VALR: {listed}." if ids else "",
            f"Not placed by heliosd: {', '.join(unknown[:LISTED])}." if unknown else "",
            f"Cause: {cause}.",
            "Trading stays HALTED (nothing but cancels) until a person resumes. " + resume,
        ) if part)  # fmt: skip
    data: dict[str, Any] = {"mode": str(Mode.LIVE), "breaker": "unclean_exit",
                            "completed": findings is not None}  # fmt: skip
    if findings is not None:
        data |= {
            "open_orders": [o.exchange_order_id for o in findings.open_orders],
            "unknown_orders": [o.exchange_order_id for o in findings.unknown],
            "fills_recovered": findings.fills_recovered,
        }
    else:
        data["problem"] = problem
    return Event(kind="halt", title=title, body=body, at=utcnow(), urgent=True, data=data)


__all__ = ["Findings", "Reconciliation", "reconcile_event"]
