"""Shared helpers of the fault tests (issue 8, items 6-9).

Everything here observes real parts: the simulator's own books (``sim.trades``,
``sim.orders_received``, ``sim.balances``), the daemon's SQLite file opened read-only beside
it, and the control API. ``no_logged_errors`` (autouse) fails a test in which anything in
this process logged at ERROR or with a traceback, unless the test names what it expects with
``@pytest.mark.expect_errors("regex", ...)`` (matched against ``"logger: message
(exception)"``): a fault test whose daemon quietly logs an
exception has found something.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosd.core.config import Secret
from heliosd.testing import SimHandle, wait_for

# A notification target (the LIVE gate wants one); port 9 on loopback is never answered.
NOTIFY = "json://127.0.0.1:9/unused"
BTC_MIN = Decimal("0.0001")  # the simulator's BTCZAR minimum order


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_errors(*patterns): ERROR records ('logger: message') this test expects"
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_logged_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if this process logged an unexpected ERROR (or any traceback)."""
    marker = request.node.get_closest_marker("expect_errors")
    expected = [re.compile(p) for p in (marker.args if marker else ())]
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    lines = [
        f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
        for r in handler.records
    ]
    unexpected = [line for line in lines if not any(p.search(line) for p in expected)]
    assert not unexpected, f"unexpected errors logged: {unexpected}"


wait_until = wait_for  # heliosd.testing.wait_for: sync or async checks


def read_db(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the daemon's database, through a read-only connection of our own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def sim_base_total(sim: SimHandle, currency: str = "BTC") -> Decimal:
    available, reserved = sim.sim.balances(sim.account).get(currency, (Decimal(0), Decimal(0)))
    return available + reserved


def net_base_from_fills(rows: list[tuple[Any, ...]], currency: str = "BTC") -> Decimal:
    """Base held according to stored fills (side, quantity, fee, fee_currency) rows: a buy
    adds its quantity, a sell removes it; a fee charged in the base currency leaves too."""
    total = Decimal(0)
    for side, quantity, fee, fee_currency in rows:
        qty = Decimal(quantity)
        total += qty if side == "BUY" else -qty
        if fee_currency == currency:
            total -= Decimal(fee)
    return total


def duplicates(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    return sorted({v for v in values if v in seen or seen.add(v)}, key=str)


async def operator_sell(sim: SimHandle, quantity: Decimal) -> None:
    """Sell at the venue with a second key of the same account, as an operator might on
    VALR's site: a real signed request, a real trade the daemon has to notice."""
    from heliosd.builtin.valr.rest import ValrRest

    key, secret = sim.extra_keys.get("operator") or sim.add_key(
        "operator", ("View access", "Trade")
    )
    rest = ValrRest(sim.sim.rest_url, api_key=Secret(key), api_secret=Secret(secret))
    try:
        await rest.request(
            "POST",
            "/v2/orders/market",
            body={"side": "SELL", "baseAmount": format(quantity, "f"), "pair": "BTCZAR"},
        )
    finally:
        await rest.close()
