"""A real heliosd process: switched, SIGTERMed, kill -9ed, restarted; mode and history intact.

Also: the operator runbook's out-of-band SQL change is seen without a restart, sd_notify
messages arrive on a real datagram socket, and the control socket is not world-accessible.
"""

from __future__ import annotations

import socket
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from heliosd.testing import SimHandle, go_live, write_config

pytestmark = pytest.mark.slow

NOTIFY = "json://127.0.0.1:9/unused"  # a notification target (gate needs one); never reached


async def history(proc: Any) -> list[tuple[str, str]]:
    status, body = await proc.arequest("GET", "/api/trading/mode/history")
    assert status == 200
    return [(h["old_mode"], h["new_mode"]) for h in body["history"]]


async def test_mode_survives_sigterm_and_kill9(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert status == 200 and body["mode"] == "PAPER"
    body = await go_live(proc.arequest)
    assert body["mode"] == "LIVE"
    uid_user = body["updated_by"]
    assert "uid" in uid_user  # SO_PEERCRED identity recorded

    assert await proc.aterminate() == 0  # SIGTERM drains and exits 0
    await proc.astart()
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert body["mode"] == "LIVE" and body["verified"] is True
    assert await history(proc) == [("PAPER", "LIVE")]

    await proc.akill9()
    await proc.astart()
    assert (await proc.arequest("GET", "/api/trading/mode"))[1]["mode"] == "LIVE"
    status, body = await proc.arequest(
        "POST", "/api/trading/mode", {"mode": "PAPER", "reason": "done"}
    )
    assert status == 200 and body["mode"] == "PAPER"
    await proc.akill9()
    await proc.astart()
    assert (await proc.arequest("GET", "/api/trading/mode"))[1]["mode"] == "PAPER"
    assert await history(proc) == [("LIVE", "PAPER"), ("PAPER", "LIVE")]
    assert await proc.aterminate() == 0


async def test_out_of_band_sql_is_seen_on_next_read(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim, notify_url=NOTIFY)
    proc = heliosd_process(config)
    await proc.astart()
    await go_live(proc.arequest)
    db = config.parent / "state" / "heliosd.db"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE trading_mode_state SET current_mode = 'PAPER' WHERE id = 1")
    conn.commit()
    assert (await proc.arequest("GET", "/api/trading/mode"))[1]["mode"] == "PAPER"
    # A hand-made LIVE is shown as such but not trusted, and orders are refused.
    conn.execute("UPDATE trading_mode_state SET current_mode = 'LIVE' WHERE id = 1")
    conn.commit()
    conn.close()
    status, body = await proc.arequest("GET", "/api/trading/mode")
    assert body["mode"] == "LIVE" and body["verified"] is False
    status, body = await proc.arequest(
        "POST",
        "/api/orders",
        {"pair": "BTCZAR", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
    )
    assert status in (409, 422), body
    assert "confirmed switch to LIVE" in body["message"]
    assert len(sim.sim.orders_received(sim.account)) == 0  # nothing reached the venue
    # ... and the operator is told, urgently, with what to do (committed to the outbox).
    with sqlite3.connect(db) as check:
        alerts = check.execute(
            "SELECT title, body, urgent FROM outbox WHERE kind = 'integrity'"
        ).fetchall()
    assert [(t, u) for t, _, u in alerts] == [("INTEGRITY ALERT", 1)]
    assert "no confirmed switch to LIVE is recorded" in alerts[0][1]
    assert "heliosctl mode paper" in alerts[0][1]
    assert await proc.aterminate() == 0


async def test_sd_notify_and_socket_permissions(
    sim: SimHandle, short_dir: Path, heliosd_process: Any
) -> None:
    config = write_config(short_dir, sim)
    notify_path = short_dir / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(20)
    try:
        proc = heliosd_process(config)
        await proc.astart(env={"NOTIFY_SOCKET": str(notify_path)})
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(receiver.recv(4096).decode())
        sock_path = config.parent / "state" / "heliosd.sock"
        mode = stat.S_IMODE(sock_path.stat().st_mode)
        assert mode == 0o660, oct(mode)
        assert await proc.aterminate() == 0
        while not any("STOPPING=1" in m for m in messages):
            messages.append(receiver.recv(4096).decode())
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in messages)
    finally:
        receiver.close()


async def test_broken_config_exits_78_naming_the_key(short_dir: Path) -> None:
    import subprocess
    import sys

    config = short_dir / "bad.toml"
    config.write_text("[risk]\nmax_leverag = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert "risk.max_leverag" in result.stderr and str(config) in result.stderr
