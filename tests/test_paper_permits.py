"""The paper venue honours send permits: a revoked or stale permit books nothing, a valid
one is marked on the wire for exactly the placement and released after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from heliosd.builtin.paper import PaperExchange
from heliosd.core.config import PaperSettings
from heliosd.core.errors import PermitRevoked
from heliosd.core.types import Mode, OrderState, OrderType, PlaceRequest, Quote, Side
from heliosd.testing.contract import RecordingEvents
from heliosd.trading.marketdata import MarketData
from heliosd.trading.permits import PermitBoard


async def started() -> tuple[PaperExchange, RecordingEvents]:
    market = MarketData()
    market.update(Quote("BTCZAR", Decimal(999000), Decimal(1000000), None, datetime.now(UTC)))
    ex = PaperExchange(market, PaperSettings(starting_balances={"ZAR": Decimal(100000)}))
    events = RecordingEvents()
    await ex.start(events)
    return ex, events


async def funds(ex: PaperExchange) -> dict[str, tuple[Decimal, Decimal]]:
    return {b.currency: (b.available, b.reserved) for b in await ex.balances()}


def request(cid: str, board: PermitBoard, *, epoch: int = 1) -> PlaceRequest:
    permit = board.issue(Mode.PAPER, epoch, label=cid)
    return PlaceRequest(
        cid, "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.01"), Decimal(900000), permit=permit
    )


async def test_revoked_or_stale_permits_book_nothing() -> None:
    ex, rec = await started()
    before = await funds(ex)
    board = PermitBoard(lambda: (Mode.PAPER, 1))
    revoked = request("p-revoked", board)
    board.revoke_all("emergency stop")
    with pytest.raises(PermitRevoked, match="emergency stop"):
        await ex.place(revoked)
    with pytest.raises(PermitRevoked, match="mode changed"):
        await ex.place(request("p-mode", PermitBoard(lambda: (Mode.LIVE, 1))))
    with pytest.raises(PermitRevoked, match="epoch"):
        await ex.place(request("p-epoch", PermitBoard(lambda: (Mode.PAPER, 2))))
    for _ in range(5):
        await asyncio.sleep(0)
    assert await funds(ex) == before
    assert await ex.open_orders() == []
    assert rec.statuses == [] and rec.fills == {}
    await ex.close()


async def test_a_valid_permit_places_and_ends_its_send() -> None:
    ex, _ = await started()
    board = PermitBoard(lambda: (Mode.PAPER, 1))
    req = request("p-ok", board)
    result = await ex.place(req)
    assert result.state is OrderState.PLACED
    assert req.permit is not None and req.permit.on_wire == 0 and req.permit.revoked is None
    assert await board.settle(1) == []
    await ex.close()
