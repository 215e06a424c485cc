"""The exchange contract suite (heliosd.testing.contract) against the paper venue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from heliosd.builtin.paper import PaperExchange
from heliosd.core.config import PaperSettings
from heliosd.core.types import Quote
from heliosd.testing.contract import ExchangeContract, ExchangeUnderTest, RecordingEvents
from heliosd.trading.marketdata import MarketData


@pytest.fixture
async def exchange_under_test() -> AsyncIterator[ExchangeUnderTest]:
    market = MarketData()
    market.update(
        Quote("BTCZAR", Decimal(999000), Decimal(1000000), Decimal(999500), datetime.now(UTC))
    )
    events = RecordingEvents()
    client = PaperExchange(market, PaperSettings(starting_balances={"ZAR": Decimal(100000)}))
    unfunded = PaperExchange(market, PaperSettings(starting_balances={}))
    await client.start(events)
    await unfunded.start(RecordingEvents())

    async def fund(currency: str, amount: Decimal) -> None:
        # Paper money comes only from [paper] starting_balances (a deposit would not survive
        # a restart, which rebuilds balances from fills): a contract test needing it must say.
        pytest.fail("the paper venue is funded by [paper] starting_balances only")

    try:
        yield ExchangeUnderTest(
            client=client,
            events=events,
            unfunded=unfunded,
            fund=fund,
            pair="BTCZAR",
            price=Decimal(1000000),
        )
    finally:
        await client.close()
        await unfunded.close()


class TestPaperContract(ExchangeContract):
    """Every ExchangeContract test, on the paper venue."""
