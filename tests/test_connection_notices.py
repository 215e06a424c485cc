"""The live account stream's notifications: a real drop at the simulator is one
connection_lost and one connection_restored (with how long it was down), while the stream
closed by heliosd's own shutdown is not news and writes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from heliosd.core.types import Mode
from heliosd.testing import SimHandle, start_daemon, wait_for, write_config

NOTIFY = "json://127.0.0.1:9/unused"


def notices(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, title FROM outbox WHERE kind LIKE 'connection_%' ORDER BY id"
        ).fetchall()
    return [(k, t) for k, t in rows]


async def test_a_drop_is_lost_then_restored_and_a_shutdown_is_silent(
    sim: SimHandle, short_dir: Path
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    db = config.parent / "state" / "heliosd.db"
    running = await start_daemon(config)
    sink = running.service.sinks[Mode.LIVE]
    try:
        await wait_for(lambda: sink.streams.get("account", (False,))[0], 15)
        sim.sim.drop_ws_connections()
        await wait_for(lambda: len(notices(db)) >= 2, 20)
        lost, restored = notices(db)
        assert lost == ("connection_lost", "VALR account connection lost")
        assert restored[0] == "connection_restored"
        assert restored[1].startswith("VALR account connection restored after ")
    finally:
        await running.stop()
    assert len(notices(db)) == 2  # stopping closed the stream: nothing more to tell
