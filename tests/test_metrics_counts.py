"""heliosd.runtime.metrics.FillCounts: ``heliosd_fills_total`` counted incrementally.

A scrape counted the whole fills table (58 ms at a million fills); it now counts only the
rows after the last id it saw. A seeded sequence of inserts in both modes between scrapes,
with scrapes overlapping, must give exactly what a full count gives, every time."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from heliosd.runtime.metrics import FillCounts
from heliosd.store import Store
from heliosd.store.aside import AsideReader
from heliosd.testing import search_seed

COLS = ("mode, trade_id, order_id, customer_order_id, exchange_order_id, pair, side, price,"
        " quantity, fee, fee_currency, traded_at, recorded_at")  # fmt: skip
NOW = "2026-12-04T00:00:00.000000+00:00"


def insert(db: Path, rng: random.Random, start: int) -> int:
    n = rng.randrange(0, 40)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO fills({COLS}) VALUES ({','.join('?' * 13)})",
            [(rng.choice(["LIVE", "PAPER"]), f"t{start + i}", None, f"c{start + i}", None,
              "BTCZAR", "BUY", "1", "1", "0", "ZAR", NOW, NOW) for i in range(n)],
        )  # fmt: skip
    return start + n


def full(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return sorted(
        (str(m), int(n)) for m, n in conn.execute("SELECT mode, count(*) FROM fills GROUP BY mode")
    )


async def scrape(reader: AsideReader, counts: FillCounts) -> list[tuple[str, int]]:
    async with counts.lock:  # as metrics.gather does, on the store's kept aside connection
        return await reader.read(counts.read)


async def test_incremental_counts_equal_a_full_count_through_overlapping_scrapes(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    seed = search_seed(pytestconfig, 1204)
    rng = random.Random(seed)
    db = tmp_path / "heliosd.db"
    await (await Store.open(db)).close()
    counts, start = FillCounts(), 0
    reader = AsideReader(db)
    try:
        assert await scrape(reader, counts) == []
        for step in range(30):
            start = insert(db, rng, start)
            scrapes = (scrape(reader, counts) for _ in range(rng.randrange(1, 4)))
            answers = await asyncio.gather(*scrapes)
            with sqlite3.connect(db) as conn:
                expected = full(conn)
            assert all(a == expected for a in answers), f"seed {seed}, step {step}: {answers}"
    finally:
        await reader.close()
