"""The router's send permit and trading-state latch, through real parts (the bench rig: a
real SQLite file, ledger, market data and the essential limits) with client doubles that
block inside place() where a stop can land.

The property: an order checked at epoch N never reaches a client's wire after a transition
committed N+1. Each place a stop can land is tried: while a risk rule is still awaiting
(the order is stored REJECTED, the client is never called), while an honouring client waits
before its send (Retry-After, stream ready: the wait ends at once), and while a plugin
client that does not honour permits is inside place() (the stop's settle waits for it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import risk_path  # type: ignore[import-not-found]  # noqa: E402

from heliosd import orders as od  # noqa: E402
from heliosd.breakers import clear_sql, trip_sql  # noqa: E402
from heliosd.errors import PermitRevoked, RiskRejected  # noqa: E402
from heliosd.router import ExecutionRouter  # noqa: E402
from heliosd.types import (  # noqa: E402
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    PlaceResult,
    Side,
    Verdict,
)


class WireClient:
    """Records every request that reached its (pretend) wire, with the permit's epoch and
    the stored epoch at that instant. ``gate`` holds place() before the wire send."""

    name = "wire"

    def __init__(self, store: Any, *, honours: bool) -> None:
        self.store = store
        self.honours_permits = honours
        self.sent: list[tuple[str, int, int]] = []
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()
        self.calls = 0

    async def place(self, request: PlaceRequest) -> PlaceResult:
        self.calls += 1
        permit = request.permit
        assert permit is not None
        if self.gate is not None:
            self.waiting.set()
            if self.honours_permits:
                await permit.guard(self.gate.wait())  # a stream-ready style wait
            else:
                await self.gate.wait()  # a plugin client that knows nothing of permits
        if self.honours_permits:
            permit.begin_send()
        try:
            self.sent.append((request.customer_order_id, permit.epoch,
                              self.store.mode_state().epoch))  # fmt: skip
        finally:
            if self.honours_permits:
                permit.end_send()
        return PlaceResult(OrderState.PLACED, f"x-{len(self.sent)}")


class HeldRule:
    """An async risk rule that waits until the test lets it answer."""

    name = "held"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    def check(self, intent: Any, ctx: Any) -> Any:
        async def answer() -> Verdict:
            self.entered.set()
            await self.release.wait()
            return Verdict.accept(self.name)

        return answer()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Any]:
    async with risk_path.Rig(tmp_path) as r:
        yield r


def router_for(rig: Any, client: Any, rules: tuple[Any, ...] = ()) -> ExecutionRouter:
    r: ExecutionRouter = rig.router
    return ExecutionRouter(
        store=rig.store, settings=rig.settings, clients={Mode.PAPER: client, Mode.LIVE: client},
        ledgers=r._ledgers, market=rig.market, breakers=rig.breakers,
        counters=od.OrderCounters(), rules=(*r.rules, *rules),
    )  # fmt: skip


def buy(qty: str = "0.001") -> OrderIntent:
    return OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal(qty), None, "t", "manual")


def sell(qty: str = "0.01") -> OrderIntent:
    return OrderIntent("BTCZAR", Side.SELL, OrderType.MARKET, Decimal(qty), None, "t", "manual")


async def stop(rig: Any, router: ExecutionRouter, name: str = "emergency") -> int:
    """What an emergency stop does first: commit the latch (new epoch), revoke the permits."""
    await rig.store.write(lambda c: trip_sql(c, name, mode=None, reason="drill"))
    rig.breakers.committed_trip(name, "drill", None)
    router.permits.revoke_all(f"{name}: drill")
    epoch: int = rig.store.mode_state().epoch
    return epoch


async def stored(rig: Any, cid: str) -> dict[str, Any]:
    rows = await rig.store.read(lambda c: od.list_orders(c, open_only=False, limit=1000))
    [row] = [r for r in rows if r["customer_order_id"] == cid]
    return row


async def test_a_stop_while_the_rules_run_means_the_order_is_stored_rejected_never_sent(
    rig: Any,
) -> None:
    client = WireClient(rig.store, honours=True)
    held = HeldRule()
    router = router_for(rig, client, (held,))
    work = asyncio.ensure_future(router.submit(buy(), actor="t"))
    await held.entered.wait()
    checked_at = rig.store.mode_state().epoch
    await stop(rig, router)
    held.release.set()
    with pytest.raises(PermitRevoked) as info:
        await work
    row = info.value.details["order"]
    assert row["state"] == "rejected"
    assert f"epoch {checked_at} -> {checked_at + 1}" in info.value.message
    assert row["verdicts"][-1]["rule"] == "trading_state"
    assert client.calls == 0 and client.sent == []


@pytest.mark.parametrize("honours", [True, False])
async def test_an_order_waiting_inside_the_client_never_reaches_the_wire_after_a_stop(
    rig: Any, honours: bool
) -> None:
    client = WireClient(rig.store, honours=honours)
    client.gate = asyncio.Event()
    router = router_for(rig, client)
    work = asyncio.ensure_future(router.submit(buy(), actor="t"))
    await client.waiting.wait()
    await stop(rig, router)
    if honours:
        # The wait ends at once on the revocation: never sent, stored rejected.
        with pytest.raises(PermitRevoked) as info:
            await work
        assert info.value.details["order"]["state"] == "rejected"
        row = await stored(rig, info.value.details["order"]["customer_order_id"])
        assert "not sent" in row["failed_reason"]
        assert client.sent == []
        assert router.permits.on_wire() == []
    else:
        # A client that cannot be told: the whole place() is on the wire, and a stop's
        # settle sees it (and names it) until it answers.
        [permit] = router.permits.on_wire()
        assert await router.permits.settle(0) == [permit]
        client.gate.set()
        row = await work
        assert await router.permits.settle(1) == []
        assert row["state"] == "placed"
    # And the next order is checked at the new epoch and refused by the latch.
    client.gate = None
    with pytest.raises(RiskRejected, match="emergency stop"):
        await router.submit(buy(), actor="t")


async def test_halted_refuses_even_reducing_orders_and_reducing_passes_only_reductions(
    rig: Any,
) -> None:
    client = WireClient(rig.store, honours=True)
    router = router_for(rig, client)
    await stop(rig, router, "halt")
    with pytest.raises(RiskRejected, match=r"trading is HALTED \(halt: drill\): nothing but"):
        await router.submit(sell(), actor="t")
    await rig.store.write(lambda c: clear_sql(c, ["halt"], actor="t", reason="ok"))
    rig.breakers.committed_clear(["halt"])
    await stop(rig, router, "daily_loss")
    with pytest.raises(RiskRejected, match="breaker:daily_loss"):
        await router.submit(buy(), actor="t")
    row = await router.submit(sell(), actor="t")  # reduces the 0.1 BTC holding
    assert row["state"] == "placed"
    assert [s[1] for s in client.sent] == [rig.store.mode_state().epoch]


async def test_the_closing_path_crosses_modes_but_not_epochs_and_only_reduces(rig: Any) -> None:
    client = WireClient(rig.store, honours=True)
    router = router_for(rig, client)
    with pytest.raises(RiskRejected, match="closing order must reduce"):
        await router.submit_closing(buy("0.001"), actor="t", mode=Mode.PAPER)
    await stop(rig, router)  # REDUCING
    row = await router.submit_closing(sell(), actor="t", mode=Mode.PAPER)
    assert row["state"] == "placed"
    assert client.sent[-1][1] == rig.store.mode_state().epoch
    await stop(rig, router, "halt")
    with pytest.raises(RiskRejected, match="HALTED"):
        await router.submit_closing(sell(), actor="t", mode=Mode.PAPER)
