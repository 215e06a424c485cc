"""The mode read on the hot path: the router reads the mode before every order.

No aiosqlite round trip (~65 us): a second, read-only ``sqlite3`` connection in the
event-loop thread asks ``PRAGMA data_version`` (~1 us), which changes whenever *another*
connection commits, and re-reads the mode row only then. That is also how an operator's
out-of-band ``UPDATE trading_mode_state ...`` is seen on the very next order.

In front of ``data_version`` (~7 us in WAL mode: it opens and closes a read transaction) sits
a cheaper test of the same fact: every commit rewrites the WAL-index header at the start of
the ``-shm`` file, and one ``pread`` of its 96 bytes costs under 1 us. While the header is
byte-for-byte what it was at the last full check, the cached mode stands; any difference (a
commit, a torn read, two header copies that disagree, a short read) takes the full path, as
does a store without a ``-shm`` file. ``pread`` and not ``mmap`` (a truncated mapping would be
SIGBUS); the descriptor stays open until the SQLite connections are closed (closing any
descriptor of a file drops this process's POSIX locks on it, SQLite's included).

Kept because a benchmark shows it matters (bench/RESULTS.md section 9) and
tests/test_store_mode_read.py pins every fallback; docs/internals.md ("The store") has the
measurements.

A LIVE row is trusted only under a sealed, confirmed history row (:meth:`ModeReads.seal`,
keyed by ``mode.key`` beside the database).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from heliosd.core.types import Mode, TradingState


@dataclass(frozen=True, slots=True)
class ModeState:
    """The stored mode and whether it is trustworthy.

    ``verified`` is False when the row says LIVE but no sealed, confirmed switch to LIVE is
    the latest history row: an out-of-band SQL change to LIVE, which the router refuses.
    """

    mode: Mode
    updated_at: str
    updated_by: str
    verified: bool
    data_version: int
    # heliosd.risk.state: what may trade now, why, and the epoch (+1 on every transition).
    trading_state: TradingState = TradingState.HALTED
    state_reason: str = ""
    epoch: int = -1


class ModeReads:
    """The mode read and the LIVE seal of :class:`heliosd.store.Store` (its base class)."""

    # Set by Store.__init__ (heliosd.store.connection).
    _reader: sqlite3.Connection
    _mode_cache: ModeState | None
    _shm: int | None
    _shm_seen: bytes | None
    _seal_key: bytes

    @staticmethod
    def _load_seal_key(path: Path) -> bytes:
        """The key that seals confirmed LIVE switches; created 0600 on first start."""
        try:
            return bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key.hex())
            return key

    def data_version(self) -> int:
        row = self._reader.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def mode_state(self) -> ModeState:
        """The stored mode, re-read only when another connection committed since last time."""
        cached = self._mode_cache
        shm = self._shm
        header = None
        if shm is not None:
            header = os.pread(shm, _WAL_INDEX_HEADER, 0)
            if cached is not None and header == self._shm_seen:
                return cached  # no commit anywhere since the last full read
            # SQLite writes the header's two copies one after the other: trust only a header
            # whose copies agree, else the next call checks again.
            half = _WAL_INDEX_HEADER // 2
            if len(header) != _WAL_INDEX_HEADER or header[:half] != header[half:]:
                header = None
        # The header is read *before* the full check: a commit landing in between makes the
        # next call see a changed header and check again, never miss the commit.
        self._shm_seen = header
        version = self.data_version()
        if cached is not None and cached.data_version == version:
            return cached
        row = self._reader.execute(
            "SELECT current_mode, updated_at, updated_by, trading_state, state_reason, epoch"
            " FROM trading_mode_state WHERE id = 1"
        ).fetchone()
        if row is None:  # somebody deleted the singleton: treat as PAPER and HALTED, never LIVE
            state = ModeState(
                Mode.PAPER, "", "missing row", False, version,
                TradingState.HALTED, "trading_mode_state row missing", -1,
            )  # fmt: skip
        else:
            mode = Mode.LIVE if row[0] == "LIVE" else Mode.PAPER
            verified = True
            if mode is Mode.LIVE:
                verified = self._live_is_sealed(self._reader)
            try:
                trading = TradingState(row[3])
            except ValueError:  # a value typed in by hand that we do not know: strictest
                trading = TradingState.HALTED
            state = ModeState(mode, row[1], row[2], verified, version, trading, row[4],
                              int(row[5]))  # fmt: skip
        self._mode_cache = state
        return state

    def seal(self, new_mode: str, changed_at: str, changed_by: str) -> str:
        msg = f"{new_mode}|{changed_at}|{changed_by}".encode()
        return hmac.new(self._seal_key, msg, hashlib.sha256).hexdigest()

    def _live_is_sealed(self, conn: sqlite3.Connection) -> bool:
        last = conn.execute(
            "SELECT new_mode, changed_at, changed_by, seal FROM trading_mode_history "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if last is None or last[0] != "LIVE" or not last[3]:
            return False
        return hmac.compare_digest(last[3], self.seal(last[0], last[1], last[2]))


# The WAL-index header: two 48-byte copies at the start of the -shm file (sqlite.org/walformat).
_WAL_INDEX_HEADER = 96


def _open_wal_index(path: Path) -> int | None:
    """A read-only descriptor of the ``-shm`` file, or None (mode reads take the full path).

    Never closed before the store's SQLite connections (see the module docstring).
    """
    try:
        return os.open(f"{path}-shm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
