"""VALR's clock and status through the real client against the real simulator over HTTP and
WebSocket: the clock offset is measured at start, periodically and after a 401 (whatever
the 401 says), a request is re-signed once with the corrected clock, a skew past the bound
refuses orders; VALR read-only refuses new orders at once (polled, or learnt from a 503 on
the write itself), cancels are still tried."""

from __future__ import annotations

from decimal import Decimal

import pytest

from heliosd.builtin.valr.client import ClockSkewed, VenueReadOnly
from heliosd.core.errors import TransientError
from heliosd.core.types import OrderState, OrderType, PlaceRequest, Side
from heliosd.testing import wait_for
from heliosd.testing.contract import SIM_KEY, SIM_SECRET, fast_valr_tuning, funded_sim, valr_on_sim


def limit(cid: str, price: str = "900000") -> PlaceRequest:
    return PlaceRequest(cid, "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal(price))


async def test_drift_is_recovered_from_a_bare_401_and_a_skew_past_the_bound_refuses() -> None:
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        await wait_for(lambda: client.clock_skew_ms is not None)
        assert abs(client.clock_skew_ms or 0) < 500
        # VALR's clock jumps 90 s ahead and it answers the stale signature with a bare 401
        # (no code, no "timestamp"): the client re-measures and re-signs once.
        sim.faults.clock_offset_ms = 90_000
        sim.faults.stale_timestamp_plain = True
        rows = await client.balances()
        assert [b.currency for b in rows] == ["ZAR"]
        assert abs((client.clock_skew_ms or 0) - 90_000) < 1_000
        # 90 s is past valr.max_clock_skew_s (2 s): a LIVE order is refused, never sent.
        with pytest.raises(ClockSkewed, match=r"clock_skew: .* by 90\.\d s"):
            await client.place(limit("skew-1"))
        assert [a.customer_order_id for a in sim.order_log()] == []


async def test_a_401_during_placement_that_reveals_skew_refuses_instead_of_resending() -> None:
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        await client.pairs()
        await wait_for(lambda: client.clock_skew_ms is not None)
        sim.faults.clock_offset_ms = -120_000
        sim.faults.stale_timestamp_plain = True
        with pytest.raises(ClockSkewed):
            await client.place(limit("skew-2"))
        assert [a.status for a in sim.order_log()] == [401]  # the one refused send only


async def test_skew_is_measured_periodically_without_any_401() -> None:
    tuning = fast_valr_tuning(clock_check_interval_s=0.05, status_poll_s=0.05)
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=tuning, max_clock_skew_s=Decimal(10)) as c,
    ):
        await wait_for(lambda: c.clock_skew_ms is not None)
        sim.faults.clock_offset_ms = 4_000  # inside the sim's 60 s window: nothing fails
        await wait_for(lambda: abs((c.clock_skew_ms or 0) - 4_000) < 500)
        result = await c.place(limit("drift-ok"))  # 4 s < the 10 s bound: sent
        assert result.state is OrderState.PLACED


async def test_read_only_refuses_new_orders_at_once_and_cancels_are_still_tried() -> None:
    tuning = fast_valr_tuning(status_poll_s=0.05)
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=tuning) as client,
    ):
        resting = await client.place(limit("ro-rest"))
        await wait_for(lambda: client.venue_status == "online")
        sim.set_read_only(True)
        await wait_for(lambda: client.venue_status == "read-only")
        with pytest.raises(VenueReadOnly, match="venue_read_only: VALR is read-only"):
            await client.place(limit("ro-1"))
        assert [a.customer_order_id for a in sim.order_log()] == ["ro-rest"]  # never sent
        with pytest.raises(TransientError, match="503"):  # tried, and VALR refused it
            await client.cancel("BTCZAR", exchange_order_id=resting.exchange_order_id)
        assert len(sim.open_orders("0")) == 1
        sim.set_read_only(False)
        # Back online: checked again at the order itself, not only at the next poll.
        assert (await client.place(limit("ro-2"))).state is OrderState.PLACED
        await client.cancel_all()


async def test_a_503_on_the_write_checks_the_status_at_once_no_lookup_window() -> None:
    # Status polled rarely, and a lookup window that would end in OutcomeUnknownError: the
    # answer is the read-only refusal, learnt from /v1/public/status right after the 503.
    tuning = fast_valr_tuning(status_poll_s=3600.0, lookup_window_s=5.0)
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=tuning) as client,
    ):
        await client.pairs()
        await wait_for(lambda: client.venue_status == "online")
        sim.set_read_only(True)
        with pytest.raises(VenueReadOnly, match="VALR refused it with 503"):
            await client.place(limit("ro-503"))
        assert client.venue_status == "read-only"
        assert sim.open_orders("0") == []
