"""The schema: numbered migration scripts, applied in order at every open.

``PRAGMA user_version`` holds the number of the last one applied; each runs in its own
``BEGIN IMMEDIATE`` transaction, so a failed migration leaves the database as it was.
"""

from __future__ import annotations

import logging
import sqlite3

from heliosd.core.errors import ConfigError
from heliosd.core.types import utcnow
from heliosd.risk.state import sync as sync_trading_state
from heliosd.store.timestamps import iso

# The package's logger name, as before the split: operators filter logs by it.
log = logging.getLogger("heliosd.store")

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


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        # Written by a newer release: running on a schema this code was not written for
        # could misread the mode or the ledger. Refused before anything reads it; exit 78,
        # so systemd does not restart into the same refusal (docs/operations.md).
        path = conn.execute("PRAGMA database_list").fetchone()[2] or "the database"
        raise ConfigError(
            f"{path} has schema version {version}, newer than this release knows"
            f" ({len(MIGRATIONS)}): it was written by a newer heliosd. Run that release, or"
            " restore the backup taken before the upgrade (heliosd restore)"
        )
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
