"""The database: the single source of truth for mode, orders, fills, breakers and the outbox.

One aiosqlite connection owns every write. Writes are queued as functions of a
``sqlite3.Connection`` and executed by one writer task that group-commits whatever is queued
(measured: one commit per row tops out near 4-5k rows/s; a batch in one
transaction reaches ~100k rows/s). A write counts only after its COMMIT, so ``write`` returns
after the commit; ``submit`` returns a future for callers that must not wait in line (the
fill stream). Each queued function runs inside its own SAVEPOINT, so one failing write rolls
back alone and fails only its own caller.

The hot path (the router reading the mode before every order) does not pay an aiosqlite
round trip (~65 us): a second, read-only ``sqlite3`` connection in the event-loop thread asks
``PRAGMA data_version`` (~1 us), which changes whenever *another* connection commits, and
re-reads the mode row only then. That is also how an operator's out-of-band
``UPDATE trading_mode_state ...`` is seen on the very next order without a restart.

``PRAGMA data_version`` itself costs ~7 us in WAL mode (it opens and closes a read
transaction: shared-memory locks, often fcntl calls), which was the largest single cost of the
pre-trade path (bench/risk_path.py). So in front of it sits a cheaper test of the same fact:
every commit by any connection rewrites the WAL-index header at the start of the ``-shm``
file (its ``iChange`` counter is "incremented with each transaction", sqlite.org/walformat),
and one ``pread`` of those 96 bytes costs under 1 us. While the header is byte-for-byte what it
was at the last full check, nothing committed and the cached mode stands; any difference (a
commit, a torn read, two header copies that disagree, a short read) takes the full
``data_version`` path. Without a ``-shm`` file every call takes the full path. ``pread`` and
not ``mmap``: a mapped ``-shm`` that SQLite truncates would kill the daemon with SIGBUS, a
short read just fails over to the full check. The descriptor stays open until the SQLite
connections are closed: closing any descriptor of a file drops every POSIX lock this process
holds on it, SQLite's ``-shm`` locks included.

Kept because a benchmark shows it matters and tests pin it: without it the risk path is
~5.5 us slower (13.4 -> 19.4 us median here) and past NautilusTrader's RiskEngine in the same
run (bench/RESULTS.md section 9); tests/test_store_mode_read.py checks every fallback above
with headers that never change (so trusting one would miss every commit) and a seeded search
of out-of-band commits, checkpoints and reads.

Durability: WAL with ``synchronous=FULL``: a commit is on disk before the write returns; the
group commit keeps the fsync count low.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from heliosd.core.types import Fill, Mode, Side, TradingState, utcnow
from heliosd.risk.state import sync as sync_trading_state

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]

MIGRATIONS: tuple[str, ...] = (
    # 1: the operator runbook's two tables (docs/operations.md, "Rollback") and the rest of
    # the state.
    """
    CREATE TABLE trading_mode_state(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        current_mode TEXT NOT NULL CHECK (current_mode IN ('PAPER', 'LIVE')),
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
    );
    CREATE TABLE trading_mode_history(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        old_mode TEXT,
        new_mode TEXT NOT NULL CHECK (new_mode IN ('PAPER', 'LIVE')),
        changed_at TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        -- HMAC seal of a gated, confirmed switch to LIVE (see Store.seal); NULL otherwise.
        seal TEXT
    );
    -- Out-of-band SQL changes (the runbook's UPDATE ... SET current_mode = 'PAPER') leave a
    -- history row too, unsealed: a LIVE reached this way is never trusted (ModeState.verified).
    -- heliosd itself writes its history row first, so the trigger stays quiet for its changes.
    CREATE TRIGGER mode_out_of_band AFTER UPDATE OF current_mode ON trading_mode_state
    WHEN NEW.current_mode <> OLD.current_mode AND NOT EXISTS (
        SELECT 1 FROM trading_mode_history
        WHERE id = (SELECT max(id) FROM trading_mode_history)
          AND new_mode = NEW.current_mode AND changed_at = NEW.updated_at)
    BEGIN
        INSERT INTO trading_mode_history(old_mode, new_mode, changed_at, changed_by, reason, seal)
        VALUES (OLD.current_mode, NEW.current_mode,
                strftime('%Y-%m-%dT%H:%M:%f', 'now') || '+00:00',
                'out-of-band SQL', 'changed directly in the database', NULL);
    END;
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE orders(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        customer_order_id TEXT NOT NULL UNIQUE,
        exchange_order_id TEXT,
        mode TEXT NOT NULL,
        pair TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        requested_quantity TEXT NOT NULL,
        quantity TEXT NOT NULL,
        price TEXT,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'manual',
        actor TEXT NOT NULL DEFAULT '',
        verdicts TEXT NOT NULL DEFAULT '[]',
        filled_quantity TEXT NOT NULL DEFAULT '0',
        average_price TEXT,
        fees TEXT NOT NULL DEFAULT '{}',
        failed_reason TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX orders_open ON orders(state) WHERE state IN ('new', 'sent', 'placed',
                                                               'partially_filled');
    CREATE INDEX orders_exchange_id ON orders(exchange_order_id);
    CREATE INDEX orders_created ON orders(created_at);
    CREATE TABLE fills(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL,
        trade_id TEXT NOT NULL,
        order_id INTEGER REFERENCES orders(id),
        customer_order_id TEXT,
        exchange_order_id TEXT,
        pair TEXT NOT NULL,
        side TEXT NOT NULL,
        price TEXT NOT NULL,
        quantity TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_currency TEXT NOT NULL,
        traded_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE(mode, trade_id)
    );
    CREATE INDEX fills_traded ON fills(mode, traded_at);
    CREATE TABLE breakers(
        name TEXT PRIMARY KEY,
        mode TEXT,
        tripped_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        until TEXT,
        cleared_at TEXT,
        cleared_by TEXT,
        clear_reason TEXT
    );
    CREATE TABLE equity_marks(
        mode TEXT NOT NULL,
        kind TEXT NOT NULL,
        day TEXT NOT NULL,
        value TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY(mode, kind, day)
    );
    CREATE TABLE outbox(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        urgent INTEGER NOT NULL DEFAULT 0,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE delivered_at IS NULL;
    """,
    # 2: an order's fills by order id (orders.apply_fills sums them for every fill after an
    # order's first, and GET /api/orders/{id}/fills): without it each was a full scan.
    """
    CREATE INDEX fills_order ON fills(order_id) WHERE order_id IS NOT NULL;
    """,
    # 3: the trading state and its epoch beside the mode (heliosd.risk.state owns them); facts the
    # daemon keeps across restarts (engine on/off, clean or unclean exit); external flows.
    """
    ALTER TABLE trading_mode_state ADD COLUMN trading_state TEXT NOT NULL DEFAULT 'ACTIVE'
        CHECK (trading_state IN ('ACTIVE', 'REDUCING', 'HALTED'));
    ALTER TABLE trading_mode_state ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE trading_mode_state ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    -- key -> JSON value: 'engine' {"running", "strategy", "by", "at"}, 'run' {"pid", "state":
    -- "running"|"clean", "mode", "at"} (a 'running' found at start means an unclean exit).
    CREATE TABLE daemon_state(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        at TEXT NOT NULL
    );
    -- Deposits, withdrawals and transfers (heliosd.core.types.Flow): never profit or loss.
    CREATE TABLE flows(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL,
        flow_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE(mode, flow_id)
    );
    """,
    # 4: the equity curve (heliosd.risk.equity): a point per mode about once a minute and
    # after a fill batch, pruned after [daemon] equity_retention_days. `at` is fixed-width
    # UTC text (microseconds always written), so text order is time order.
    """
    CREATE TABLE equity_points(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL CHECK (mode IN ('PAPER', 'LIVE')),
        at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('minute', 'fill')),
        equity TEXT NOT NULL,
        peak TEXT NOT NULL,
        day_start_equity TEXT NOT NULL,
        daily_pnl TEXT NOT NULL
    );
    CREATE INDEX equity_points_at ON equity_points(mode, at);
    """,
)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


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


class Store:
    """See the module docstring. Create with ``await Store.open(path)``."""

    def __init__(self, path: Path, db: aiosqlite.Connection, reader: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._reader = reader
        self._queue: list[tuple[WriteFn[Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._mode_cache: ModeState | None = None
        self._shm = _open_wal_index(path)
        self._shm_seen: bytes | None = None  # WAL-index header at the last full mode read
        self._seal_key = self._load_seal_key(path.parent / "mode.key")
        self.commits = 0  # for benchmarks and tests: how many group commits ran

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await _in_worker(db, _migrate, db._conn)
        except BaseException:
            await db.close()
            raise
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=2000")
        store = cls(path, db, reader)
        store._writer = asyncio.get_running_loop().create_task(store._write_loop())
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        self._reader.close()
        await self._db.close()
        if self._shm is not None:  # only now: closing it earlier would drop SQLite's locks
            os.close(self._shm)
            self._shm = None

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

    # ------------------------------------------------------------------ writes

    def submit(self, fn: WriteFn[T]) -> asyncio.Future[T]:
        """Queue a write; the future resolves after its COMMIT (or with its exception)."""
        if self._closed:
            raise RuntimeError("store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        self._wake.set()
        return fut

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(conn)`` in a transaction and return its result once committed."""
        return await self.submit(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on the writer's connection (sees every commit)."""
        conn = self._db._conn
        result: T = await _in_worker(self._db, fn, conn)
        return result

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                if self._closed:
                    return
                continue
            batch, self._queue = self._queue, []
            try:
                # aiosqlite's public API runs one statement per thread hop (~65 us each);
                # _execute runs our whole batch in its worker thread in one hop. It has been
                # the core of aiosqlite since its first releases.
                outcomes = await _in_worker(self._db, self._run_batch, batch)
            except BaseException as exc:  # the COMMIT itself failed: nothing was written
                log.error("store commit failed: %s", exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
                if not isinstance(exc, Exception):
                    raise
                continue
            self.commits += 1
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            if self._queue:
                self._wake.set()

    def _run_batch(
        self, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        conn = self._db._conn
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, value))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes

    # ------------------------------------------------------------------ mode (hot path)

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

    # ------------------------------------------------------------------ backup

    async def backup(self, dest: Path) -> Path:
        """A consistent copy through SQLite's online backup API.

        Written as ``.<name>.partial`` and renamed: a file with a backup's name is complete,
        so pruning (heliosd.runtime.backup) never counts a torn one as the newest."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = dest.with_name(f".{dest.name}.partial")
        try:
            target = await aiosqlite.connect(partial)
            try:
                await self._db.backup(target)
            finally:
                await target.close()
            with contextlib.suppress(OSError):
                os.chmod(partial, 0o600)
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return dest


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


async def _in_worker(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in aiosqlite's worker thread in one hop (its internal _execute)."""
    result: T = await db._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            if number == 1:
                conn.execute(
                    "INSERT INTO trading_mode_state(id, current_mode, updated_at, updated_by) "
                    "VALUES (1, 'PAPER', ?, 'heliosd (initial)')",
                    (iso(utcnow()),),
                )
            if number == 3:  # breakers latched before the state existed must show in it
                sync_trading_state(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("store migrated to version %d", number)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows where they end)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


# ---------------------------------------------------------------------- typed queries
# Each is a plain function of a sqlite3.Connection so callers can compose several into one
# transaction through Store.write(lambda conn: ...).


def set_mode(
    store: Store,
    conn: sqlite3.Connection,
    new_mode: Mode,
    *,
    actor: str,
    reason: str,
    confirmed: bool,
) -> str:
    """Update the singleton and append its history row in the caller's transaction."""
    row = conn.execute("SELECT current_mode FROM trading_mode_state WHERE id = 1").fetchone()
    old = row[0] if row else None
    now = iso(utcnow())
    seal = store.seal(str(new_mode), now, actor) if (confirmed and new_mode is Mode.LIVE) else None
    # History first: the out-of-band trigger recognises our own change by this row.
    conn.execute(
        "INSERT INTO trading_mode_history(old_mode, new_mode, changed_at, changed_by, reason, seal)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (old, str(new_mode), now, actor, reason, seal),
    )
    conn.execute(
        "INSERT INTO trading_mode_state(id, current_mode, updated_at, updated_by) "
        "VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET current_mode = excluded.current_mode,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (str(new_mode), now, actor),
    )
    sync_trading_state(conn)  # a mode change is a transition: new epoch (heliosd.risk.state, S2)
    return now


def audit(
    conn: sqlite3.Connection,
    *,
    actor: str,
    action: str,
    outcome: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit(at, actor, action, outcome, reason, details) VALUES (?,?,?,?,?,?)",
        (iso(utcnow()), actor, action, outcome, reason, json.dumps(details or {}, default=str)),
    )


def history(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, old_mode, new_mode, changed_at, changed_by, reason FROM trading_mode_history"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("id", "old_mode", "new_mode", "changed_at", "changed_by", "reason")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def audit_rows(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, at, actor, action, outcome, reason, details FROM audit ORDER BY id DESC"
        " LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for r in rows:
        out.append(
            {
                "id": r[0],
                "at": r[1],
                "actor": r[2],
                "action": r[3],
                "outcome": r[4],
                "reason": r[5],
                "details": json.loads(r[6]),
            }
        )
    return out


# ---------------------------------------------------------------------- batches
# The sqlite3 module releases the GIL around every statement and must take it back after;
# while the event loop is busy that can wait a whole switch interval (5 ms), so the writer
# thread's cost of a batch is set by its number of statements, not rows (bench/fills.py).
# A batch of rows therefore goes as few multi-row statements, of the sizes below (largest
# first): few distinct statement texts (the sqlite3 statement cache holds 128), about
# n/256 + 12 statements for n rows.
_CHUNKS = (256, 64, 16, 4, 1)


def chunks(rows: Sequence[T], per_row: int, conn: sqlite3.Connection) -> Iterator[Sequence[T]]:
    """``rows`` cut into runs of the sizes in ``_CHUNKS``, each binding at most the
    connection's limit of parameters at ``per_row`` parameters a row."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    i, n = 0, len(rows)
    for size in _CHUNKS:
        if size * per_row > limit and size > 1:
            continue
        while n - i >= size:
            yield rows[i : i + size]
            i += size


@functools.lru_cache(maxsize=64)
def _repeated(part: str, n: int) -> str:
    return ",".join([part] * n)


@functools.lru_cache(maxsize=64)
def _multi_row(head: str, row: str, n: int, tail: str) -> str:
    return f"{head} {_repeated(row, n)} {tail}"


def insert_many(
    conn: sqlite3.Connection, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> int:
    """Run ``head row, row, ... tail`` (``head`` ends in VALUES, ``row`` is one row's
    placeholders) for all ``rows``, in order; returns how many rows were written."""
    if not rows:
        return 0
    width = len(rows[0])
    written = 0
    for part in chunks(rows, width, conn):
        sql = _multi_row(head, row, len(part), tail)
        written += conn.execute(sql, [v for r in part for v in r]).rowcount
    return written


def select_in(
    conn: sqlite3.Connection, sql: str, values: Sequence[Any], args: Sequence[Any] = ()
) -> list[Any]:
    """Rows of ``sql`` (holding one ``IN ({})``, after ``args``' placeholders) for all
    ``values``, a few statements for any number of values."""
    out: list[Any] = []
    for part in chunks(values, 1, conn):
        out += conn.execute(sql.format(_repeated("?", len(part))), (*args, *part)).fetchall()
    return out


def insert_fills(
    conn: sqlite3.Connection, mode: Mode, fills: Sequence[tuple[Fill, int | None]]
) -> int:
    """Store each (fill, order id) as :func:`insert_fill` would, in a few statements; an
    already stored trade id is skipped. Returns how many were stored."""
    m, now = str(mode), iso(utcnow())
    rows = [
        (m, f.trade_id, order_id, f.customer_order_id, f.exchange_order_id, f.pair, str(f.side),
         str(f.price), str(f.quantity), str(f.fee), f.fee_currency, iso(f.traded_at), now)
        for f, order_id in fills
    ]  # fmt: skip
    return insert_many(conn, _INSERT_FILL_HEAD, "(?,?,?,?,?,?,?,?,?,?,?,?,?)", rows,
                       "ON CONFLICT(mode, trade_id) DO NOTHING")  # fmt: skip


_INSERT_FILL_HEAD = (
    "INSERT INTO fills(mode, trade_id, order_id, customer_order_id, exchange_order_id, pair,"
    " side, price, quantity, fee, fee_currency, traded_at, recorded_at) VALUES"
)


def stored_trade_ids(conn: sqlite3.Connection, mode: Mode, trade_ids: Sequence[str]) -> set[str]:
    """Which of ``trade_ids`` are already stored for ``mode``."""
    rows = select_in(
        conn, "SELECT trade_id FROM fills WHERE mode = ? AND trade_id IN ({})", trade_ids,
        (str(mode),),
    )  # fmt: skip
    return {r[0] for r in rows}


def insert_fill(conn: sqlite3.Connection, mode: Mode, fill: Fill, order_id: int | None) -> bool:
    """Store a fill once; False when this (mode, trade_id) was already stored."""
    cur = conn.execute(
        _INSERT_FILL_HEAD + " (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(mode, trade_id) DO NOTHING",
        (
            str(mode),
            fill.trade_id,
            order_id,
            fill.customer_order_id,
            fill.exchange_order_id,
            fill.pair,
            str(fill.side),
            str(fill.price),
            str(fill.quantity),
            str(fill.fee),
            fill.fee_currency,
            iso(fill.traded_at),
            iso(utcnow()),
        ),
    )
    return cur.rowcount == 1


def load_fills(conn: sqlite3.Connection, mode: Mode) -> list[Fill]:
    rows = conn.execute(
        "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
        " exchange_order_id, customer_order_id FROM fills WHERE mode = ? ORDER BY id",
        (str(mode),),
    ).fetchall()
    return [_fill_from_row(r) for r in rows]


def load_fills_checked(
    conn: sqlite3.Connection, mode: Mode
) -> tuple[list[Fill], list[tuple[str, str, str]]]:
    """The readable fills of ``mode`` and, for each unreadable row, (trade id, pair, why).

    For the start: stored data never stops it, so a row that does not parse (a side in the
    wrong case, a price that is not a number, an unreadable time) is returned as an error
    for the caller to report, never raised.
    """
    rows = conn.execute(
        "SELECT trade_id, pair, side, price, quantity, fee, fee_currency, traded_at,"
        " exchange_order_id, customer_order_id FROM fills WHERE mode = ? ORDER BY id",
        (str(mode),),
    ).fetchall()
    fills: list[Fill] = []
    errors: list[tuple[str, str, str]] = []
    for r in rows:
        try:
            fills.append(_fill_from_row(r))
        except (ValueError, TypeError, ArithmeticError) as exc:
            errors.append((str(r[0]), str(r[1]), f"stored fill unreadable: {exc!r}"))
    return fills, errors


def _fill_from_row(r: Iterable[Any]) -> Fill:
    t = tuple(r)
    return Fill(
        trade_id=t[0],
        pair=t[1],
        side=Side(t[2]),
        price=Decimal(t[3]),
        quantity=Decimal(t[4]),
        fee=Decimal(t[5]),
        fee_currency=t[6],
        traded_at=parse_dt(t[7]),
        exchange_order_id=t[8],
        customer_order_id=t[9],
    )


def latest_fill_time(conn: sqlite3.Connection, mode: Mode) -> datetime | None:
    # The latest readable time: an unreadable stored time is reported by the start (see
    # load_fills_checked) and must not stop it here.
    rows = conn.execute(
        "SELECT traded_at FROM fills WHERE mode = ? ORDER BY traded_at DESC", (str(mode),)
    )
    for (text,) in rows:
        try:
            return parse_dt(text) if text else None
        except (ValueError, TypeError):
            continue
    return None
