"""The store's mode read (``Store.mode_state``): its fast path and every fallback.

The fast path compares the WAL-index header at the start of the ``-shm`` file, read with one
``pread``, with the one seen at the last full read; only a difference costs the full
``PRAGMA data_version`` check (bench/RESULTS.md section 9: the risk path is ~5.5 us slower
without it, which moves it past NautilusTrader's RiskEngine). The property it must keep:
**a commit by any other connection is seen on the very next read**, so an operator's SQL
change to PAPER takes effect on the next order. Each fallback (no ``-shm``, a short read, two
header copies that disagree) must fall back to the full check, never to the cache; a seeded
search interleaves out-of-band commits, checkpoints (which rewrite the ``-shm``) and reads.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from heliosd import store as store_module
from heliosd.core.types import Mode
from heliosd.store import _WAL_INDEX_HEADER, Store


@pytest.fixture
def other(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The operator's own sqlite3 session on the daemon's database (opened once it exists)."""
    conns: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "heliosd.db", isolation_level=None)
        conns.append(conn)
        return conn

    yield connect  # type: ignore[misc]
    for c in conns:
        c.close()


def flip(conn: sqlite3.Connection, mode: str) -> None:
    conn.execute("UPDATE trading_mode_state SET current_mode = ? WHERE id = 1", (mode,))


async def test_the_fast_path_answers_from_the_cache_until_another_connection_commits(
    tmp_path: Path, other: object
) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        assert s._shm is not None, "the -shm file is open: the fast path is in use"
        first = s.mode_state()
        assert s.mode_state() is first  # nothing committed: the very same cached object
        conn = other()  # type: ignore[operator]
        flip(conn, "LIVE")
        seen = s.mode_state()
        assert seen is not first and seen.mode is Mode.LIVE and not seen.verified
        flip(conn, "PAPER")
        assert s.mode_state().mode is Mode.PAPER
    finally:
        await s.close()


# Each crafted header stays the same whatever is committed, as a header read at the wrong
# moment could: trusting it (comparing it with the last one seen) would miss every commit.
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"\x01" * (_WAL_INDEX_HEADER // 2), id="short read"),
        pytest.param(b"", id="empty read (-shm truncated)"),
        pytest.param(b"\x01" * 48 + b"\x02" * 48, id="the two copies disagree (a torn write)"),
    ],
)
async def test_a_header_it_cannot_trust_takes_the_full_check(
    tmp_path: Path, other: object, monkeypatch: pytest.MonkeyPatch, header: bytes
) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        s.mode_state()
        real = os.pread

        def pread(fd: int, n: int, offset: int) -> bytes:
            data = real(fd, n, offset)
            return header if fd == s._shm else data  # type: ignore[return-value]

        monkeypatch.setattr(store_module.os, "pread", pread)
        conn = other()  # type: ignore[operator]
        for mode in ("LIVE", "PAPER", "LIVE"):
            flip(conn, mode)
            assert s.mode_state().mode is Mode(mode)  # seen every time, never the cache
        # And with nothing committed it still answers (the full check, every call).
        assert s.mode_state().mode is Mode.LIVE
    finally:
        await s.close()


async def test_without_a_shm_file_every_read_takes_the_full_check(
    tmp_path: Path, other: object
) -> None:
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        fd = s._shm
        s._shm = None  # as when the -shm could not be opened at start
        conn = other()  # type: ignore[operator]
        for mode in ("LIVE", "PAPER"):
            flip(conn, mode)
            assert s.mode_state().mode is Mode(mode)
        s._shm = fd
    finally:
        await s.close()


async def test_a_seeded_search_never_finds_a_commit_the_next_read_misses(
    tmp_path: Path, other: object
) -> None:
    """Random out-of-band commits (mode flips, unrelated rows), WAL checkpoints of every
    kind (they rewrite the -shm header and may reset the WAL), our own writes, and reads.
    After every step the read must say what the database says."""
    seed = int(os.environ.get("HELIOSD_SEED") or random.randrange(2**32))
    print(f"mode-read search seed {seed} (rerun: HELIOSD_SEED={seed})")
    rng = random.Random(seed)
    s = await Store.open(tmp_path / "heliosd.db")
    try:
        conn = other()  # type: ignore[operator]
        for step in range(400):
            action = rng.choice(("flip", "flip", "other_row", "checkpoint", "ours", "read"))
            if action == "flip":
                flip(conn, rng.choice(("LIVE", "PAPER")))
            elif action == "other_row":
                conn.execute(
                    "INSERT INTO audit(at, actor, action, outcome) VALUES ('t', 'x', 'y', 'z')"
                )
            elif action == "checkpoint":
                kind = rng.choice(("PASSIVE", "FULL", "RESTART", "TRUNCATE"))
                conn.execute(f"PRAGMA wal_checkpoint({kind})")
            elif action == "ours":
                await s.write(lambda c: c.execute("UPDATE trading_mode_state SET updated_by ="
                                                  " updated_by WHERE id = 1"))  # fmt: skip
            truth = conn.execute("SELECT current_mode FROM trading_mode_state").fetchone()[0]
            assert s.mode_state().mode is Mode(truth), (seed, step, action)
    finally:
        await s.close()
