"""Send permits: an order reaches a venue only under the mode and epoch it was checked in.

The router issues one :class:`Permit` per order, after the risk rules and before the client
is called, for the (mode, epoch) the order was checked under (:mod:`heliosd.risk.state`). The
client re-validates it immediately before every request that could execute the order.

Invariants:

* **P1 -- no send without a valid permit.** :meth:`Permit.begin_send` raises
  :class:`~heliosd.core.errors.PermitRevoked` unless the permit was not revoked and the stored row
  is still at the permit's epoch (and mode, unless the permit is for the core's own
  cross-mode closing orders). The check and the "on the wire" mark are one synchronous step:
  no await can fall between them.
* **P2 -- a check that fails to answer is a refusal.** If reading the row raises, the permit
  is revoked (fail closed).
* **P3 -- revocation ends every wait at once.** Every wait a client makes before a send
  (Retry-After, the account stream becoming ready, a pair-list refresh) goes through
  :meth:`Permit.sleep` or :meth:`Permit.guard`, which raise PermitRevoked as soon as
  :meth:`PermitBoard.revoke_all` runs (and, for a change this process did not make, such as
  an operator's SQL, within :data:`RECHECK_S`).
* **P4 -- a stop knows what is on the wire.** :meth:`PermitBoard.revoke_all` revokes every
  outstanding permit; :meth:`PermitBoard.settle` then waits (bounded) until no request that
  passed :meth:`Permit.begin_send` is still unanswered, and names those that are.

* **P5 -- an unknown outcome stays known as unknown.** A placement that was sent but whose
  answer and lookups were all lost (the router stores it SENT, "outcome unknown") is
  :meth:`Permit.park`-ed, not released: it is no longer on the wire (a stop does not wait
  for it) but :meth:`PermitBoard.parked` still names it, so a stop lists it among its
  unresolved placements until the order's row is settled (the stream or reconciliation
  gives it an exchange id or a final state) or :data:`PARK_KEEP_S` has passed.

* **P6 -- nothing new goes out while a stop commits.** Between an emergency stop's first
  revocation and its latch's commit the stored epoch is still the old one, so a permit
  issued in that window would pass its check. :meth:`PermitBoard.bar` (the stop's first
  step) revokes every outstanding permit *and* refuses every send until
  :meth:`PermitBoard.unbar` (once the latch is durable, whose new epoch makes the old
  permits stale by P1): a permit issued meanwhile is born revoked. So the only placements
  that can reach the venue after a stop began are the ones already on the wire then
  (:meth:`PermitBoard.on_wire`), and the stop's early cancel-all can know whether it may
  have missed one.

So after an emergency stop has committed its latch (a new epoch), revoked the permits and
settled them, every order this process will ever have sent is either answered (and so seen
by the cancel-all and the open-orders check that follow) or named as unresolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from heliosd.core.errors import PermitRevoked
from heliosd.core.types import Mode

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a waiting permit re-reads the row on its own (a change no revoke_all announced).
RECHECK_S = 0.25
# How long a parked permit (P5) is kept when nothing settles its order: reconciliation
# settles a SENT order within seconds to a minute (not-found grace, sweep interval), so an
# hour means something else is wrong, and the board must not grow without bound.
PARK_KEEP_S = 3600.0

Current = Callable[[], tuple[Mode, int]]


class Permit:
    """The right to send one order. See the module docstring."""

    __slots__ = ("_board", "_event", "any_mode", "began", "epoch", "label", "mode", "on_wire",
                 "parked", "released", "revoked")  # fmt: skip

    def __init__(
        self, board: PermitBoard, mode: Mode, epoch: int, *, label: str, any_mode: bool
    ) -> None:
        self._board = board
        self.mode = mode
        self.epoch = epoch
        self.label = label  # the order's customerOrderId, for logs and a stop's answer
        self.any_mode = any_mode
        self.revoked: str | None = None
        self.on_wire = 0  # requests that passed begin_send and have not answered yet
        self.began = False  # a request ever passed begin_send: the order may be at the venue
        self.released = False
        self.parked = False  # sent, outcome unknown (P5)
        self._event: asyncio.Event | None = None

    # ------------------------------------------------------------------ checks

    def problem(self) -> str | None:
        """Why this permit may not send now, or None when it may."""
        if self.revoked is not None:
            return self.revoked
        if self._board.barred is not None:  # P6
            self.revoke(self._board.barred)
            return self.revoked
        try:
            mode, epoch = self._board.current()
        except Exception as exc:  # P2: an unanswerable check is a refusal
            self.revoke(f"the trading state could not be read ({type(exc).__name__}: {exc})")
            return self.revoked
        if epoch != self.epoch:
            return f"the trading state changed (epoch {self.epoch} -> {epoch})"
        if not self.any_mode and mode is not self.mode:
            return f"the mode changed ({self.mode} -> {mode})"
        return None

    def check(self) -> None:
        """Raise PermitRevoked unless the permit is valid now."""
        why = self.problem()
        if why is not None:
            self.revoke(why)
            raise PermitRevoked(f"order {self.label} not sent: {why}", details={"reason": why})

    def begin_send(self) -> None:
        """Check and mark one request as on the wire, in one step (P1). Pair with end_send."""
        self.check()
        self.on_wire += 1
        self.began = True

    def end_send(self) -> None:
        """The request begun by begin_send has answered (or failed)."""
        self.on_wire -= 1
        if self.on_wire <= 0:
            self.on_wire = 0
            self._board._wire_changed()

    # ------------------------------------------------------------------ waits (P3)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise PermitRevoked as soon as the permit is revoked."""
        deadline = time.monotonic() + max(seconds, 0.0)
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            event = self._revoked_event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, RECHECK_S))

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; if the permit is revoked first, cancel it and raise."""
        self.check()
        work = asyncio.ensure_future(awaitable)
        event = self._revoked_event()
        try:
            while not work.done():
                waiter = asyncio.ensure_future(event.wait())
                try:
                    await asyncio.wait({work, waiter}, timeout=RECHECK_S,
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                finally:
                    waiter.cancel()
                if not work.done():
                    self.check()
        except BaseException:
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise
        return work.result()

    # ------------------------------------------------------------------ lifecycle

    def revoke(self, reason: str) -> None:
        if self.revoked is None:
            self.revoked = reason
        if self._event is not None:
            self._event.set()

    def release(self) -> None:
        """The placement is over (answered, refused or given up): forget the permit."""
        self.released = True
        self.on_wire = 0
        self._board._release(self)

    def park(self) -> None:
        """Sent, outcome unknown (P5): off the wire, but named by a stop until resolved."""
        self.parked = True
        self.on_wire = 0
        self._board._park(self)

    def _revoked_event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
            if self.revoked is not None:
                self._event.set()
        return self._event


class PermitBoard:
    """Issues, revokes and settles the permits of one daemon. ``current`` reads the stored
    (mode, epoch), cheaply (``Store.mode_state``)."""

    def __init__(self, current: Current) -> None:
        self.current = current
        self._outstanding: set[Permit] = set()
        self._parked: dict[Permit, float] = {}  # P5: permit -> when parked (monotonic)
        self._quiet = asyncio.Event()
        self._quiet.set()
        self.barred: str | None = None  # P6: why every send is refused, while a stop commits

    def issue(self, mode: Mode, epoch: int, *, label: str, any_mode: bool = False) -> Permit:
        permit = Permit(self, mode, epoch, label=label, any_mode=any_mode)
        self._outstanding.add(permit)
        if self.barred is not None:
            permit.revoke(self.barred)
        return permit

    def outstanding(self) -> list[Permit]:
        return list(self._outstanding)

    def on_wire(self) -> list[Permit]:
        return [p for p in self._outstanding if p.on_wire > 0]

    def revoke_all(self, reason: str) -> None:
        """Revoke every outstanding permit (P4): none of them may begin another send."""
        for permit in list(self._outstanding):
            permit.revoke(reason)

    def bar(self, reason: str) -> None:
        """P6: revoke every outstanding permit and refuse every send until :meth:`unbar`."""
        self.barred = reason
        self.revoke_all(reason)

    def unbar(self) -> None:
        """The stop's latch is durable (or failed to commit): sends are judged by P1 again."""
        self.barred = None

    def parked(self) -> list[Permit]:
        """The placements sent with an unknown outcome (P5), oldest first; those parked
        longer than PARK_KEEP_S are dropped with a warning."""
        cutoff = time.monotonic() - PARK_KEEP_S
        for permit, at in list(self._parked.items()):
            if at < cutoff:
                log.warning("order %s: outcome still unknown after %.0f s; no longer named"
                            " by stops (check it at the venue)", permit.label,
                            PARK_KEEP_S)  # fmt: skip
                self.resolve(permit)
        return list(self._parked)

    def resolve(self, permit: Permit) -> None:
        """The parked placement's order is settled: forget it."""
        self._parked.pop(permit, None)
        permit.parked = False
        permit.released = True

    def revoke_stale(self) -> None:
        """Revoke the permits a committed transition has made stale (another epoch)."""
        for permit in list(self._outstanding):
            if permit.revoked is None and permit.problem() is not None:
                permit.revoke(permit.problem() or "stale")

    async def settle(self, timeout: float) -> list[Permit]:
        """Wait until no permit has a request on the wire, at most ``timeout`` seconds;
        return the permits still on the wire then (empty when everything answered)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.on_wire()
            left = deadline - time.monotonic()
            if not busy or left <= 0:
                return busy
            self._quiet.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), left)

    def _wire_changed(self) -> None:
        if not self.on_wire():
            self._quiet.set()

    def _release(self, permit: Permit) -> None:
        self._outstanding.discard(permit)
        self._wire_changed()

    def _park(self, permit: Permit) -> None:
        self._outstanding.discard(permit)
        self._parked[permit] = time.monotonic()
        self._wire_changed()


__all__ = ["PARK_KEEP_S", "RECHECK_S", "Permit", "PermitBoard"]
