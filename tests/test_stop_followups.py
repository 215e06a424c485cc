"""What a stop leaves to follow up, on a real daemon (LIVE venue: the simulator):

- a placement still on the wire when the stop's bounded wait runs out is named in
  ``unresolved_placements`` and cancelled once it resolves;
- a daily-loss breaker's ``until`` passing syncs the trading state (ACTIVE, new epoch)
  without anyone asking.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import Decimal
from typing import Any

from heliosd.control.backend import Actor
from heliosd.core.types import Mode, OrderType, PlaceRequest, PlaceResult, Side, utcnow
from heliosd.testing import RunningDaemon, eventually


class StuckClient:
    """A plugin client that knows nothing of permits and hangs inside place() until told."""

    honours_permits = False

    def __init__(self, real: Any) -> None:
        self._real = real
        self.release = asyncio.Event()
        self.inside = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def place(self, request: PlaceRequest) -> PlaceResult:
        self.inside.set()
        await self.release.wait()
        # It sends whatever happened meanwhile (the real paper client would refuse a revoked
        # permit, so it never sees one).
        result: PlaceResult = await self._real.place(dataclasses.replace(request, permit=None))
        return result


async def test_a_placement_the_stop_could_not_wait_out_is_named_then_cancelled(
    daemon: RunningDaemon,
) -> None:
    service = daemon.service
    await eventually(lambda: _has_price(service))
    stuck = StuckClient(service.clients[Mode.PAPER])
    service.clients[Mode.PAPER] = stuck
    actor = Actor(None, "test")
    from heliosd.control.backend import OrderRequest

    request = OrderRequest("BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.0001"),
                           Decimal("500000"), "t")  # fmt: skip
    placing = asyncio.ensure_future(service.backend.place_order(request, actor=actor))
    await stuck.inside.wait()
    [permit] = service.permits.on_wire()

    answer = await service.backend.emergency_stop(reason="drill", actor=actor)
    assert answer["unresolved_placements"] == [permit.label]
    assert answer["trading_state"] == "REDUCING"

    stuck.release.set()  # it resolves: the venue accepted it, after the stop had answered
    placed = (await placing)["order"]
    assert placed["customer_order_id"] == permit.label

    async def cancelled() -> bool:
        row = (await service.backend.get_order(placed["id"]))["order"]
        return bool(row["state"] == "cancelled")

    await eventually(cancelled)


async def test_after_a_resume_the_follow_up_cancels_only_the_late_placement(
    daemon: RunningDaemon,
) -> None:
    """The follow-up must not cancel account-wide once a person has resumed: the orders
    placed since are nobody's stop."""
    service = daemon.service
    await eventually(lambda: _has_price(service))
    stuck = StuckClient(service.clients[Mode.PAPER])
    real = stuck._real
    service.clients[Mode.PAPER] = stuck
    actor = Actor(None, "test")
    late = asyncio.ensure_future(service.backend.place_order(_bid("500000"), actor=actor))
    await stuck.inside.wait()
    answer = await service.backend.emergency_stop(reason="drill", actor=actor)
    [label] = answer["unresolved_placements"]
    await service.backend.resume(reason="drill over", actor=actor)
    service.clients[Mode.PAPER] = real  # new orders take the ordinary path
    fresh = (await service.backend.place_order(_bid("500001"), actor=actor))["order"]
    assert fresh["state"] == "placed", fresh

    stuck.release.set()
    late_row = (await late)["order"]
    assert late_row["customer_order_id"] == label

    async def late_cancelled() -> bool:
        row = (await service.backend.get_order(late_row["id"]))["order"]
        return bool(row["state"] == "cancelled")

    await eventually(late_cancelled)
    await eventually(lambda: _followed_up(service))
    assert (await service.backend.get_order(fresh["id"]))["order"]["state"] == "placed"
    [follow] = [
        a for a in (await service.backend.audit(50))["audit"] if a["outcome"] == "follow_up"
    ]
    assert follow["details"]["latched"] is False  # resumed: no account-wide cancel


async def _followed_up(service: Any) -> bool:
    audit = (await service.backend.audit(50))["audit"]
    return any(a["outcome"] == "follow_up" for a in audit)


def _bid(price: str) -> Any:
    from heliosd.control.backend import OrderRequest

    return OrderRequest("BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.0001"), Decimal(price),
                        "t")  # fmt: skip


async def test_a_daily_loss_breaker_whose_until_passes_leaves_the_row_active(
    daemon: RunningDaemon,
) -> None:
    service = daemon.service
    until = utcnow() + timedelta(milliseconds=300)
    await service.stops.halt(Mode.PAPER, "daily_loss", "5%", until)  # the monitors' path
    tripped = service.store.mode_state()
    assert tripped.trading_state == "REDUCING"

    async def active() -> bool:
        now = service.store.mode_state()
        return bool(now.trading_state == "ACTIVE" and now.epoch == tripped.epoch + 1)

    await eventually(active)
    _, mode = await daemon.request("GET", "/api/trading/mode")
    assert (mode["trading_state"], mode["halted"]) == ("ACTIVE", False)


async def _has_price(service: Any) -> bool:
    return service.market.mark("BTCZAR") is not None
