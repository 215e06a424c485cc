"""The exchange contract suite (heliosd.testing.contract) against ValrClient + the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from heliosd.testing.contract import (
    SIM_KEY,
    SIM_SECRET,
    ExchangeContract,
    ExchangeUnderTest,
    RecordingEvents,
    fast_valr_tuning,
    funded_sim,
    valr_on_sim,
)

EMPTY_KEY, EMPTY_SECRET = "e" * 64, "f" * 64


@pytest.fixture
async def exchange_under_test() -> AsyncIterator[ExchangeUnderTest]:
    async with funded_sim(seed=3) as sim:
        sim.add_account("42")
        sim.add_api_key(EMPTY_KEY, EMPTY_SECRET, account_id="42")
        events = RecordingEvents()
        tuning = fast_valr_tuning()
        async with (
            valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=tuning) as client,
            valr_on_sim(sim, EMPTY_KEY, EMPTY_SECRET, tuning=tuning) as unfunded,
        ):

            async def fund(currency: str, amount: Decimal) -> None:
                sim.fund("0", currency, amount)

            yield ExchangeUnderTest(
                client=client,
                events=events,
                unfunded=unfunded,
                fund=fund,
                pair="BTCZAR",
                price=Decimal(1000000),
            )


class TestValrContract(ExchangeContract):
    """Every ExchangeContract test, on VALR as the simulator plays it."""
