"""The control API's lists keep *read-after-submit*: a list answered after a write was
submitted shows it, even while the writer is busy committing an earlier batch (a fills
burst). Through a real daemon, its socket and its SQLite file: the writer is held in one
batch, a fill and an audit row are submitted behind it, and the lists are asked for then.

``Store.read`` alone does not keep this: its read queues in the writer's thread behind the
batch in flight, ahead of the batch that holds the new rows, and answers without them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from heliosd import store as st
from heliosd.core.types import Fill, Mode, Side
from heliosd.testing import SimHandle, start_daemon, write_config


async def test_lists_asked_while_a_batch_commits_show_the_writes_submitted_before(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim))
    store = running.service.store
    entered, release = threading.Event(), threading.Event()

    def held(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)

    fill = Fill(trade_id="t-after-submit", pair="BTCZAR", side=Side.BUY,
                price=Decimal("1000000"), quantity=Decimal("0.01"), fee=Decimal("0.00001"),
                fee_currency="BTC", traded_at=datetime.now(UTC))  # fmt: skip
    try:
        busy = store.submit(held)
        assert await asyncio.to_thread(entered.wait, 10)
        rows = [
            store.submit(lambda c: st.insert_fill(c, Mode.PAPER, fill, None)),
            store.submit(lambda c: st.audit(c, actor="t", action="after-submit", outcome="ok")),
        ]
        asked = [
            asyncio.ensure_future(running.request("GET", "/api/fills?mode=PAPER")),
            asyncio.ensure_future(running.request("GET", "/api/audit?limit=5")),
        ]
        await asyncio.sleep(0.2)  # the requests reach the daemon while the batch is held
        assert not any(a.done() for a in asked), "a list answered before its writes settled"
    finally:
        release.set()
    try:
        await busy
        await asyncio.gather(*rows)
        (fs, fills), (as_, audit) = await asyncio.wait_for(asyncio.gather(*asked), 10)
        assert fs == 200 and [f["trade_id"] for f in fills["fills"]] == ["t-after-submit"], fills
        assert as_ == 200 and "after-submit" in [r["action"] for r in audit["audit"]], audit
    finally:
        await running.stop()
