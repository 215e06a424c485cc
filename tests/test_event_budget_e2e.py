"""The event stream's bulk budget end to end: a real daemon, the simulator's account stream,
a burst of real fills, a halt in the middle of it, and a reader on the real control socket.

What the operator relies on: a halt (or any event that is not a fill or an order) reaches an
open dashboard even in a burst of thousands of fills; the reader gets no more fills than its
budget, and every fill is either read once or counted in a ``dropped`` report.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from test_event_stream import ChunkedReader

import heliosd.notify.subscribers as subscribers
from heliosd.core.types import Mode
from heliosd.testing import SimHandle, start_daemon, write_config
from heliosd.testing.waiting import wait_for

BURST = 3000
BUDGET = 200.0  # bulk events a second for the test's reader (the daemon's is BULK_PER_S)


def tally(reader: ChunkedReader) -> tuple[list[str], int, list[str]]:
    """(trade ids of the fills read, the sum of the dropped reports, the other types read)."""
    fills, missed, other = [], 0, []
    for event in reader.events():
        if event["type"] == "fill":
            fills.append(event["trade_id"])
        elif event["type"] == "dropped":
            missed += event["count"]
        else:
            other.append(event["type"])
    return fills, missed, other


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_halt_in_a_burst_of_fills_reaches_the_reader_and_every_fill_is_counted(
    sim: SimHandle, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscribers, "BULK_PER_S", BUDGET)
    sim.sim.fund(sim.account, "ZAR", Decimal(1_000_000))  # what the burst buys, before start
    running = await start_daemon(write_config(short_dir, sim))
    loop = asyncio.get_running_loop()
    try:
        sink = running.service.sinks[Mode.LIVE]
        await wait_for(lambda: sink.streams.get("account", (False,))[0], 15, "account up")
        reader = await ChunkedReader.open(running.socket)
        reading = asyncio.create_task(reader.frames_until(lambda _f: False, timeout=110))
        applied = sink.fills_applied
        started = loop.time()
        ids = await sim.sim.inject_fills(sim.account, "BTCZAR", BURST)
        # The halt goes in while the burst is being applied (the daemon is still taking it).
        await wait_for(lambda: sink.fills_applied > applied, 60, "the burst's first fills")
        status, _ = await running.request("POST", "/api/trading/halt", {"reason": "mid-burst"})
        assert status == 200
        at_halt = sink.fills_applied - applied
        await wait_for(lambda: sink.fills_applied - applied >= BURST, 60, "the whole burst")
        elapsed = loop.time() - started

        # Every fill read or counted (a report is due within DROP_REPORT_S of its miss).
        def accounted() -> int:
            fills, missed, _ = tally(reader)
            return len(fills) + missed

        await wait_for(lambda: accounted() >= BURST, 10, "every fill read or counted")
        fills, missed, _ = tally(reader)
        assert len(fills) + missed == BURST, (len(fills), missed)
        assert len(set(fills)) == len(fills) and set(fills) <= set(ids)  # each once, ours
        assert [t for t in ids if t in set(fills)] == fills  # in the venue's order
        assert 0 < len(fills) <= BUDGET * (elapsed + 1) + 1, (len(fills), elapsed)
        if elapsed < BURST / BUDGET - 1:  # faster than the budget could deliver: some missed
            assert missed > 0
        print(f"burst {elapsed:.2f} s: {len(fills)} fills read, {missed} counted missed,"
              f" the halt answered after {at_halt} fills")  # fmt: skip
        # Published before the halt's answer; written within the coalescing window.
        await wait_for(lambda: "halt" in tally(reader)[2], 5, "the halt event on the stream")
        reading.cancel()
        reader.close()
    finally:
        await running.stop()
