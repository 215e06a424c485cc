"""Account trade history: newest first, skip/limit (<= 100), beforeId, time window, pair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from heliosd.sim import SimConfig, Simulator
from heliosd.sim.probe import Probe, probed_simulator


@pytest.fixture
async def env() -> AsyncIterator[tuple[Simulator, Probe]]:
    async with probed_simulator(SimConfig(price_interval_s=None)) as (sim, probe):
        sim.fund("0", "ZAR", Decimal("10000000"))
        yield sim, probe


async def test_pagination_covers_every_trade_once(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ids = await sim.inject_fills("0", "BTCZAR", 250)
    pages: list[list[str]] = []
    skip = 0
    while True:
        page = (await probe.get(f"/v1/account/tradehistory?skip={skip}&limit=100")).json()
        if not page:
            break
        pages.append([row["id"] for row in page])
        skip += len(page)
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [i for p in pages for i in p] == list(reversed(ids))  # newest first
    sequence_ids = [r["sequenceId"] for r in (await probe.get("/v1/account/tradehistory")).json()]
    assert sequence_ids == sorted(sequence_ids, reverse=True)
    assert all(isinstance(s, int) and s > 2**53 for s in sequence_ids)


async def test_before_id_walks_backwards(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    ids = await sim.inject_fills("0", "BTCZAR", 30)
    seen: list[str] = []
    cursor = ""
    while True:
        query = "limit=7" + (f"&beforeId={cursor}" if cursor else "")
        page = (await probe.get(f"/v1/account/tradehistory?{query}")).json()
        if not page:
            break
        seen += [row["id"] for row in page]
        cursor = page[-1]["id"]
    assert seen == list(reversed(ids))
    unknown = await probe.get("/v1/account/tradehistory?beforeId=nope")
    assert (unknown.status, unknown.json()["code"]) == (400, -11)


async def test_limit_above_100_is_rejected(env: tuple[Simulator, Probe]) -> None:
    _, probe = env
    for query in ("limit=101", "limit=-1", "skip=x"):
        reply = await probe.get(f"/v1/account/tradehistory?{query}")
        assert (reply.status, reply.json()["code"]) == (400, -11), query


async def test_time_window_and_pair_filter(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    await sim.inject_fills("0", "BTCZAR", 3)
    await sim.inject_fills("0", "ETHZAR", 2, Decimal("0.001"))
    now = datetime.now(UTC)
    future = (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    past = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert (await probe.get(f"/v1/account/tradehistory?startTime={future}")).json() == []
    assert len((await probe.get(f"/v1/account/tradehistory?startTime={past}")).json()) == 5
    assert (await probe.get(f"/v1/account/tradehistory?endTime={past}")).json() == []
    eth = (await probe.get("/v1/account/ETHZAR/tradehistory")).json()
    assert [row["currencyPair"] for row in eth] == ["ETHZAR", "ETHZAR"]
    assert (await probe.get("/v1/account/DOGEZAR/tradehistory")).status == 400


async def test_rows_have_valr_fields(env: tuple[Simulator, Probe]) -> None:
    sim, probe = env
    await sim.inject_fills("0", "BTCZAR", 1)
    row = (await probe.get("/v1/account/tradehistory")).json()[0]
    assert list(row) == [
        "price",
        "quantity",
        "currencyPair",
        "tradedAt",
        "side",
        "sequenceId",
        "id",
        "orderId",
        "fee",
        "feeCurrency",
    ]
    assert (row["side"], row["feeCurrency"], row["quantity"]) == ("buy", "BTC", "0.0001")
    assert sim.trades("0")[0] == row
