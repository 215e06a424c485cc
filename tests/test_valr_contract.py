"""The exchange contract suite (heliosd.testing_contract) against ValrClient + the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from heliosd.builtin.valr.retry import RetryPolicy, ValrTuning
from heliosd.sim import SimConfig, Simulator
from heliosd.testing_contract import (
    ExchangeContract,
    ExchangeUnderTest,
    RecordingEvents,
    valr_on_sim,
)

KEY, SECRET = "k" * 64, "s" * 64
EMPTY_KEY, EMPTY_SECRET = "e" * 64, "f" * 64
QUICK = RetryPolicy(max_attempts=4, max_total_s=5, base_delay_s=0.01, max_delay_s=0.05)
FAST = ValrTuning(
    read_policy=QUICK,
    write_policy=QUICK,
    lookup_policy=QUICK,
    lookup_grace_s=0.01,
    ping_interval_s=1.0,
    auth_timeout_s=2.0,
    reconnect_initial_s=0.05,
    reconnect_max_s=0.2,
)


@pytest.fixture
async def exchange_under_test() -> AsyncIterator[ExchangeUnderTest]:
    sim = Simulator(SimConfig(seed=3, price_interval_s=None))
    await sim.start()
    try:
        sim.add_account("0")
        sim.add_api_key(KEY, SECRET, account_id="0")
        sim.add_account("42")
        sim.add_api_key(EMPTY_KEY, EMPTY_SECRET, account_id="42")
        sim.fund("0", "ZAR", Decimal(100000))
        events = RecordingEvents()
        async with (
            valr_on_sim(sim, KEY, SECRET, events=events, tuning=FAST) as client,
            valr_on_sim(sim, EMPTY_KEY, EMPTY_SECRET, tuning=FAST) as unfunded,
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
    finally:
        await sim.stop()


class TestValrContract(ExchangeContract):
    pass
