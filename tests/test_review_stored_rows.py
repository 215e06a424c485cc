"""Review findings: stored rows that still stop a start (issue 13, "startup never fails on
stored data"). A real daemon process on a real SQLite file, against the simulator; each case
is an xfail(strict) that flips when a start reports the row instead of crashing on it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import SimHandle, write_config

NOTIFY = "json://127.0.0.1:9/unused"
NOW = "2026-01-01T00:00:00+00:00"

FILL = (
    "INSERT INTO fills(mode, trade_id, pair, side, price, quantity, fee, fee_currency,"
    " traded_at, recorded_at) VALUES ('PAPER', ?, 'BTCZAR', ?, ?, '0.001', '0', 'ZAR', ?, ?)"
)
ORDER = (
    "INSERT INTO orders(customer_order_id, mode, pair, side, type, requested_quantity,"
    " quantity, price, state, created_at, updated_at) VALUES ('odd-order', ?, 'BTCZAR', 'BUY',"
    " 'LIMIT', ?, ?, '900000', 'placed', ?, ?)"
)

CASES: dict[str, tuple[str, tuple[Any, ...], str]] = {
    # store.load_fills -> _fill_from_row: Side('buy') raises ValueError before the ledger's
    # error reporting ever sees the row.
    "fill side in lower case": (
        FILL,
        ("odd-1", "buy", "1200000", NOW, NOW),
        "store/fills.py _fill_from_row: Side(t[2])",
    ),
    # Decimal('n/a') raises decimal.InvalidOperation in _fill_from_row.
    "fill price not a number": (
        FILL,
        ("odd-2", "BUY", "n/a", NOW, NOW),
        "store/fills.py _fill_from_row: Decimal(t[3])",
    ),
    # parse_dt('yesterday') raises in _fill_from_row.
    "fill time unreadable": (
        FILL,
        ("odd-3", "BUY", "1200000", "yesterday", NOW),
        "store/fills.py _fill_from_row: parse_dt(t[7])",
    ),
    # An open order whose quantity is not a number: Exposure.track / _open_order Decimal().
    "open order quantity not a number": (
        ORDER,
        ("PAPER", "x", "x", NOW, NOW),
        "risk/exposure.py track, runtime/restore.py open_order",
    ),
    # An open order in a mode spelled by hand: OrderCounters.track Mode('live').
    "open order mode in lower case": (
        ORDER,
        ("live", "0.001", "0.001", NOW, NOW),
        "trading/orders/counters.py OrderCounters.track: Mode(order['mode'])",
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "case",
    list(CASES),
)
async def test_a_malformed_stored_row_does_not_stop_the_start(
    case: str, sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    sql, params, _where = CASES[case]
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    assert await proc.aterminate() == 0
    db = config.parent / "state" / "heliosd.db"
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)
    await proc.astart()  # before a fix: the process exits with a traceback (a crash loop)
    try:
        status, health = await proc.arequest("GET", "/api/health")
        assert status == 200, health
    finally:
        await proc.aterminate()


NON_FINITE: dict[str, tuple[str, str, str, str, str]] = {
    # Decimal('NaN') parses; a quiet NaN fee raises nothing in the ledger's sums, so it is
    # booked: fees, the quote balance and equity become NaN instead of a reported error.
    "fee NaN": ("odd-nan", "BUY", "1200000", "0.001", "NaN"),
    # Infinity passes `quantity <= 0 or price <= 0`.
    "quantity Infinity": ("odd-inf", "BUY", "1200000", "Infinity", "0"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "case",
    list(NON_FINITE),
)
async def test_a_stored_fill_with_a_non_finite_figure_is_reported_not_booked(
    case: str, sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    trade_id, side, price, quantity, fee = NON_FINITE[case]
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    assert await proc.aterminate() == 0
    db = config.parent / "state" / "heliosd.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO fills(mode, trade_id, pair, side, price, quantity, fee, fee_currency,"
            " traded_at, recorded_at) VALUES ('PAPER', ?, 'BTCZAR', ?, ?, ?, ?, 'ZAR', ?, ?)",
            (trade_id, side, price, quantity, fee, NOW, NOW),
        )
    await proc.astart()
    try:
        status, health = await proc.arequest("GET", "/api/health")
        assert status == 200, health
        errors = health.get("ledger_errors", {}).get("PAPER", [])
        assert [e["trade_id"] for e in errors] == [trade_id], health
    finally:
        await proc.aterminate()
