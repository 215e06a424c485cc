"""External flows from VALR's transaction history: the parser on fixtures in VALR's shape,
and the real client paging the simulator's ledger over HTTP after real deposits,
withdrawals, transfers and trades."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heliosd.builtin.valr import flows
from heliosd.core.errors import TransientError
from heliosd.core.types import Flow, OrderType, PlaceRequest, Side
from heliosd.testing.contract import SIM_KEY, SIM_SECRET, fast_valr_tuning, funded_sim, valr_on_sim

FIXTURES = Path(__file__).parent / "fixtures" / "valr"


def at(second: int) -> datetime:
    return datetime(2026, 3, 1, 12, 0, second, tzinfo=UTC)


def test_mixed_ledger_fixture(caplog: pytest.LogCaptureFixture) -> None:
    rows = json.loads((FIXTURES / "ledger" / "transactionhistory_mixed.json").read_text())["rows"]
    with caplog.at_level(logging.DEBUG, logger="heliosd.builtin.valr.flows"):
        found, bad = flows.flows_of(rows)
    assert bad == 4
    by_id = {f.flow_id: f for f in found}
    assert by_id == {
        "tx-withdraw-crypto": Flow(
            "tx-withdraw-crypto", "BTC", Decimal("-0.05"), "withdrawal", at(9)
        ),
        "tx-transfer-out": Flow("tx-transfer-out", "ZAR", Decimal(-2000), "transfer_out", at(8)),
        "tx-ws-shape": Flow("tx-ws-shape", "ETH", Decimal("1.25"), "deposit", at(5)),
        "tx-transfer-in": Flow("tx-transfer-in", "ZAR", Decimal(3000), "transfer_in", at(4)),
        "tx-deposit": Flow("tx-deposit", "ZAR", Decimal("100000.50"), "deposit", at(3)),
        "tx-reversal": Flow("tx-reversal", "ZAR", Decimal(750), "deposit", at(2)),
        "tx-withdraw-fiat": Flow("tx-withdraw-fiat", "ZAR", Decimal(-750), "withdrawal", at(1)),
    }  # fmt: skip
    assert all(isinstance(f.amount, Decimal) for f in found)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert "lots" not in caplog.text  # a row's contents are never logged
    assert any("unknown type" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)  # fmt: skip


def test_the_simulators_ledger_fixture() -> None:
    rows = json.loads((FIXTURES / "rest_account_transactionhistory.json").read_text())
    found, bad = flows.flows_of(rows)
    assert bad == 0
    assert [(f.currency, f.amount, f.kind) for f in found] == [
        ("BTC", Decimal("-0.001"), "withdrawal"),  # the fee is not part of the flow
        ("ZAR", Decimal(5000), "deposit"),
    ]


async def test_paging_refuses_a_history_that_does_not_advance() -> None:
    page = [
        {"transactionType": {"type": "FIAT_DEPOSIT"}, "creditCurrency": "ZAR",
         "creditValue": "1", "eventAt": "2026-03-01T12:00:00Z", "id": f"r{i}"}
        for i in range(flows.PAGE)
    ]  # fmt: skip
    calls: list[Any] = []

    async def get(path: str, *, query: Any) -> Any:
        calls.append(query)
        return page  # ignores beforeId: the same full page for ever

    with pytest.raises(TransientError, match="did not advance"):
        await flows.fetch(get, None)
    assert len(calls) == 2

    async def not_a_list(path: str, *, query: Any) -> Any:
        return {"oops": True}

    with pytest.raises(TransientError, match="unreadable"):
        await flows.fetch(not_a_list, None)


async def test_client_reads_real_flows_from_the_simulator() -> None:
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        sim.add_account("7")
        assert await client.transaction_history(None) == []
        sim.deposit("0", "ZAR", Decimal("2500.25"))
        await client.place(
            PlaceRequest("flow-trade", "BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.001"))
        )
        sim.withdraw("0", "ZAR", Decimal("1000"), fee=Decimal("5"))
        sim.transfer("0", "7", "ZAR", Decimal("300"))
        sim.transfer("7", "0", "ZAR", Decimal("100"))
        got = await client.transaction_history(None)
        assert [(f.kind, f.currency, f.amount) for f in got] == [
            ("deposit", "ZAR", Decimal("2500.25")),
            ("withdrawal", "ZAR", Decimal(-1000)),
            ("transfer_out", "ZAR", Decimal(-300)),
            ("transfer_in", "ZAR", Decimal(100)),
        ]
        assert len({f.flow_id for f in got}) == 4
        assert [f.at for f in got] == sorted(f.at for f in got)
        # ``since`` is inclusive.
        later = await client.transaction_history(got[2].at)
        assert [f.flow_id for f in later] == [f.flow_id for f in got if f.at >= got[2].at]
        assert await client.transaction_history(got[-1].at + timedelta(seconds=1)) == []


async def test_client_pages_until_complete() -> None:
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, tuning=fast_valr_tuning()) as client,
    ):
        for i in range(450):
            sim.deposit("0", "ZAR", Decimal(i + 1))
        before = sim.request_counts().get("GET /v1/account/transactionhistory", 0)
        got = await client.transaction_history(None)
        assert len(got) == 450
        assert sum(f.amount for f in got) == Decimal(450 * 451 // 2)
        assert sim.request_counts()["GET /v1/account/transactionhistory"] - before == 3


async def test_a_deposit_reaches_the_account_stream() -> None:
    from heliosd.testing import wait_for
    from heliosd.testing.contract import RecordingEvents

    events = RecordingEvents()
    async with (
        funded_sim() as sim,
        valr_on_sim(sim, SIM_KEY, SIM_SECRET, events=events, tuning=fast_valr_tuning()),
    ):
        sim.deposit("0", "ZAR", Decimal(1))
        zar = events.balances.get
        await wait_for(lambda: (b := zar("ZAR")) is not None and b.available == Decimal(100001))


async def test_paper_has_no_flows() -> None:
    from heliosd.builtin.paper import PaperExchange

    assert await PaperExchange.transaction_history(object.__new__(PaperExchange), None) == []
    assert PaperExchange.honours_permits is True


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_type = st.sampled_from(
    [*sorted(flows.DEPOSITS | flows.WITHDRAWALS | flows.TRANSFERS | flows.NOT_FLOWS), "NEW_THING"]
)
_rowish = st.fixed_dictionaries(
    {"transactionType": st.one_of(st.fixed_dictionaries({"type": _type}), _json)},
    optional={
        "creditCurrency": st.one_of(st.just("ZAR"), _json),
        "creditValue": st.one_of(st.just("12.5"), st.just("-1"), st.just("NaN"), _json),
        "debitCurrency": st.one_of(st.just("BTC"), _json),
        "debitValue": st.one_of(st.just("0.01"), st.just("0"), _json),
        "eventAt": st.one_of(st.just("2026-03-01T12:00:00Z"), _json),
        "id": st.one_of(st.just("row-1"), st.integers(), _json),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_rowish, _json), max_size=8))
def test_any_ledger_page_is_read_without_crashing(rows: list[Any]) -> None:
    """Whatever VALR sends in a page, reading it never raises; every flow it yields is
    well-formed (a non-zero Decimal, signed by its kind, an aware time)."""
    found, bad = flows.flows_of(rows)
    assert 0 <= bad <= len(rows) and len(found) <= len(rows) - bad
    for flow in found:
        assert isinstance(flow.amount, Decimal) and flow.amount.is_finite() and flow.amount
        assert (flow.amount > 0) == (flow.kind in ("deposit", "transfer_in"))
        assert flow.kind in ("deposit", "withdrawal", "transfer_in", "transfer_out")
        assert flow.at.tzinfo is not None and flow.flow_id and flow.currency
