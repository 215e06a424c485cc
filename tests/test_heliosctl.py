"""heliosctl against the real control app on a real Unix socket (MemoryBackend behind it)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_control_api import (
    BackupBackend,
    MemoryBackend,
    no_unexpected_errors,
    serve,
    settings_for,
    sock_dir,
)

from heliosd.control.ctl import main
from heliosd.control.ctl_render import render, table
from heliosd.control.server import ControlServer
from heliosd.core.errors import TransientError
from heliosd.core.types import Mode

__all__ = ["no_unexpected_errors", "sock_dir"]  # fixtures shared with test_control_api

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    """Operator input typed at a terminal."""

    def isatty(self) -> bool:
        return True


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Ctl:
    backend: MemoryBackend
    socket: Path
    server: ControlServer

    async def __call__(self, *argv: str, typed: str | None = None, tty: bool = False) -> Result:
        stdin: io.StringIO = Terminal(typed or "") if tty else io.StringIO(typed or "")
        out, err = io.StringIO(), io.StringIO()
        # main() blocks on its socket; the server needs this loop, so main runs in a thread.
        code = await asyncio.to_thread(
            main, ["--socket", str(self.socket), *argv], stdin=stdin, stdout=out, stderr=err
        )
        return Result(code, out.getvalue(), err.getvalue())


async def _start(sock_dir: Path, backend: MemoryBackend) -> AsyncIterator[Ctl]:
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings, sse_heartbeat_s=0.2)
    await session.close()
    yield Ctl(backend, settings.daemon.control_socket, server)
    await server.stop()


@pytest.fixture
async def ctl(sock_dir: Path) -> AsyncIterator[Ctl]:
    async for c in _start(sock_dir, MemoryBackend()):
        yield c


# --------------------------------------------------------------------------- mode


async def test_mode_shows_a_table_and_json(ctl: Ctl) -> None:
    r = await ctl("mode")
    assert r.code == 0
    assert r.out.splitlines()[0].split() == ["mode", "PAPER"]
    assert "halted" in r.out
    r = await ctl("--json", "mode")
    assert r.code == 0
    assert r.json()["mode"] == "PAPER"
    r = await ctl("mode", "--json")  # global options after the command work too
    assert r.json()["halted"] is False


async def test_mode_live_gate_failure_shows_the_gate_table(ctl: Ctl) -> None:
    ctl.backend.failing_gates = {"no_positions": "open positions exist (BTCZAR 0.0100)"}
    r = await ctl("mode", "live", "--reason", "go", tty=True, typed="LIVE\n")
    assert r.code == 1
    assert "Cannot switch to LIVE: open positions exist (BTCZAR 0.0100)" in r.err
    rows = [line.split(None, 2) for line in r.err.splitlines()[1:]]
    assert rows[0] == ["NAME", "OK", "REASON"]
    assert rows[1] == ["no_positions", "FAIL", "open positions exist (BTCZAR 0.0100)"]
    assert rows[2][:2] == ["credentials", "ok"]
    assert ctl.backend.mode is Mode.PAPER


async def test_mode_live_typed_confirmation(ctl: Ctl) -> None:
    r = await ctl("mode", "live", "--reason", "plan step 4", tty=True, typed="LIVE\n")
    assert r.code == 0, r.err
    assert "Type LIVE to confirm" in r.out
    assert "credentials" in r.out  # the gate table was shown first
    assert ctl.backend.mode is Mode.LIVE
    assert ctl.backend.history[-1]["reason"] == "plan step 4"


@pytest.mark.parametrize("typed", ["live\n", "yes\n", "", "LIVE LIVE\n"])
async def test_mode_live_anything_but_LIVE_aborts(ctl: Ctl, typed: str) -> None:
    r = await ctl("mode", "live", tty=True, typed=typed)
    assert r.code == 1
    assert "aborted" in r.err
    assert ctl.backend.mode is Mode.PAPER


async def test_mode_live_without_a_terminal_needs_confirm(ctl: Ctl) -> None:
    r = await ctl("mode", "live", typed="LIVE\n")  # piped stdin is not a terminal
    assert r.code == 1
    assert "--confirm LIVE" in r.err
    assert ctl.backend.mode is Mode.PAPER

    r = await ctl("--json", "mode", "live", tty=True, typed="LIVE\n")  # --json never prompts
    assert r.code == 1
    assert r.json()["error"] == "confirmation_required"
    assert ctl.backend.mode is Mode.PAPER

    r = await ctl("mode", "live", "--confirm", "yes")
    assert r.code == 2
    assert ctl.backend.calls == [("set_mode", (Mode.LIVE, None, ""))] * 2

    r = await ctl("--json", "mode", "live", "--confirm", "LIVE", "--reason", "scripted")
    assert r.code == 0, r.err
    assert r.json()["mode"] == "LIVE"
    assert ctl.backend.history[-1]["reason"] == "scripted"


async def test_mode_live_yes_i_typed_live_and_paper(ctl: Ctl) -> None:
    r = await ctl("mode", "live", "--yes-i-typed-live")
    assert r.code == 0, r.err
    assert ctl.backend.mode is Mode.LIVE
    r = await ctl("mode", "paper", "--reason", "done")
    assert r.code == 0
    assert ctl.backend.mode is Mode.PAPER
    r = await ctl("history")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "CHANGED_AT", "OLD_MODE", "NEW_MODE", "CHANGED_BY", "REASON"]
    assert lines[1].split()[2:4] == ["LIVE", "PAPER"]
    assert lines[1].endswith("done")
    r = await ctl("audit", "--limit", "1")
    assert r.code == 0
    assert ctl.backend.calls[-1] == ("audit", 1)
    assert "switched" in r.out


async def test_mode_live_token_expired_between_prompt_and_answer(ctl: Ctl) -> None:
    ctl.backend.tokens.clear()
    original = ctl.backend.set_mode

    async def expire_then_set(mode: Mode, **kw: Any) -> Any:
        ctl.backend.tokens.clear()  # the operator took longer than 60 s
        return await original(mode, **kw)

    ctl.backend.set_mode = expire_then_set  # type: ignore[method-assign]
    r = await ctl("mode", "live", "--confirm", "LIVE")
    assert r.code == 1
    assert "unknown, spent or expired" in r.err


# --------------------------------------------------------------------------- stops, engine


async def test_stop_resume_and_engine(ctl: Ctl) -> None:
    assert (await ctl("engine", "start")).code == 0
    r = await ctl("engine", "status")
    assert r.code == 0
    assert "running" in r.out
    assert "yes" in r.out
    r = await ctl("stop", "--reason", "manual test")
    assert r.code == 0
    assert "cancelled_orders" in r.out
    assert ctl.backend.halt_reason == "manual test"
    r = await ctl("engine", "start")
    assert r.code == 1
    assert "halted" in r.err
    assert (await ctl("resume")).code == 2  # --reason is required
    r = await ctl("resume", "--reason", "checked the books")
    assert r.code == 0
    assert ctl.backend.halted is False
    assert (await ctl("engine", "stop")).code == 0
    assert ctl.backend.engine_running is False


# --------------------------------------------------------------------------- orders


async def test_order_orders_and_cancel(ctl: Ctl) -> None:
    r = await ctl("order", "buy", "BTCZAR", "0.01", "--reason", "test")
    assert r.code == 0, r.err
    assert r.out.startswith("order 1 filled: PAPER BUY 0.01000000 BTCZAR MARKET")  # BTC: 8
    r = await ctl("order", "SELL", "BTCZAR", "0.02", "--limit", "1500000")
    assert r.code == 0
    assert "@ 1500000.00" in r.out  # ZAR: 2 decimals
    request = ctl.backend.calls[-1][1]
    assert request.price == Decimal(1500000)
    assert request.quantity == Decimal("0.02")

    r = await ctl("orders", "--open")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "CREATED_AT", "MODE"]
    assert len(lines) == 2
    assert lines[1].split()[0] == "2"
    assert (await ctl("cancel", "2")).code == 0
    assert ctl.backend.orders[2]["state"] == "cancelled"
    r = await ctl("--json", "orders", "--limit", "5")
    assert [o["id"] for o in r.json()["orders"]] == [2, 1]

    r = await ctl("cancel", "99")
    assert r.code == 1
    assert "no order 99" in r.err
    assert (await ctl("cancel", "abc")).code == 2
    assert (await ctl("order", "HOLD", "BTCZAR", "1")).code == 2


async def test_order_refusals_exit_1_with_the_message(ctl: Ctl) -> None:
    r = await ctl("order", "BUY", "BTCZAR", "5")
    assert r.code == 1
    assert "quantity 5 above the limit 1" in r.err
    r = await ctl("order", "BUY", "BTCZAR", "-1")
    assert r.code == 1
    assert "quantity must be a positive decimal string" in r.err
    r = await ctl("order", "BUY", "DOGEZAR", "0.1")
    assert r.code == 1
    assert "Insufficient Balance" in r.err
    assert "failed" in r.err  # the refused order is shown too
    r = await ctl("--json", "order", "BUY", "DOGEZAR", "0.1")
    assert r.code == 1
    assert r.json()["details"]["order"]["state"] == "failed"


# --------------------------------------------------------------------------- views


async def test_views_and_health(ctl: Ctl) -> None:
    r = await ctl("pnl")
    assert r.code == 0
    assert r.out.split() == ["realized", "12.50", "unrealized", "-3.1", "daily", "0"]
    r = await ctl("positions")
    assert r.code == 0
    assert "BTCZAR" in r.out
    assert "0.01" in r.out
    r = await ctl("risk")
    assert r.code == 0
    assert "limits.max_position_pct  20" in r.out
    assert (await ctl("plugins")).code == 0
    r = await ctl("health")
    assert r.code == 0
    assert r.out.rstrip().endswith("healthy")
    ctl.backend.healthy = False
    r = await ctl("health")
    assert r.code == 4
    assert "UNHEALTHY" in r.out
    assert "stale" in r.out


async def test_server_errors_exit_4(ctl: Ctl) -> None:
    ctl.backend.fail_next = TransientError("VALR answered 503")
    r = await ctl("positions")
    assert r.code == 4
    assert "VALR answered 503" in r.err


# --------------------------------------------------------------------------- watch, backup


async def test_watch_prints_one_line_per_event(ctl: Ctl) -> None:
    task = asyncio.create_task(ctl("watch", "--count", "2"))
    while not ctl.backend.subscribers:
        await asyncio.sleep(0.01)
    ctl.backend.publish({"type": "order_filled", "at": "2024-05-01T10:00:00+00:00", "id": 1})
    ctl.backend.publish({"type": "halted", "message": "drawdown 15%"})
    r = await asyncio.wait_for(task, 10)
    assert r.code == 0
    lines = r.out.splitlines()
    assert len(lines) == 2
    # Time to the second in UTC, the type, then the fields that matter (scalars as k=v).
    assert lines[0] == "2024-05-01 10:00:00Z  order_filled     id=1"
    assert lines[1].split(None, 2)[2] == "halted           drawdown 15%"


async def test_watch_json_lines_and_stream_end(ctl: Ctl) -> None:
    task = asyncio.create_task(ctl("--json", "watch"))
    while not ctl.backend.subscribers:
        await asyncio.sleep(0.01)
    ctl.backend.publish({"type": "fill", "qty": "0.1"})
    await asyncio.sleep(0.3)  # at least one heartbeat passes unseen
    ctl.backend.end_streams()
    r = await asyncio.wait_for(task, 10)
    assert r.code == 3
    assert "closed the event stream" in r.err
    assert [json.loads(x) for x in r.out.splitlines()] == [
        {"type": "fill", "data": {"type": "fill", "qty": "0.1"}}
    ]


async def test_backup_falls_back_to_instructions(ctl: Ctl, sock_dir: Path) -> None:
    r = await ctl("backup")
    assert r.code == 1
    assert "heliosd backup PATH" in r.err


async def test_backup_through_the_api(sock_dir: Path) -> None:
    async for c in _start(sock_dir, BackupBackend()):
        r = await c("backup")
        assert r.code == 0
        assert "heliosd-1.db" in r.out


# --------------------------------------------------------------------------- no daemon


async def test_daemon_not_running_exits_3(sock_dir: Path) -> None:
    path = sock_dir / "absent.sock"
    out, err = io.StringIO(), io.StringIO()
    code = main(["--socket", str(path), "mode"], stdout=out, stderr=err)
    assert code == 3
    assert err.getvalue().strip() == f"heliosctl: heliosd is not running (no socket at {path})"

    stale = sock_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    err = io.StringIO()
    assert main(["--socket", str(stale), "health"], stdout=out, stderr=err) == 3
    assert "connection refused" in err.getvalue()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["orders", "--limit", "0"]) == 2
    assert main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


async def test_socket_from_the_environment_and_as_a_subprocess(ctl: Ctl) -> None:
    script = Path(sys.executable).with_name("heliosctl")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "heliosd.control.ctl"]
    env = {**os.environ, "HELIOSCTL_SOCKET": str(ctl.socket)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        "--json",
        "mode",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert json.loads(out)["mode"] == "PAPER"


# --------------------------------------------------------------------------- rendering


def test_table_aligns_columns_and_render_flattens() -> None:
    text = table([{"a": 1, "bb": None}, {"a": "long value", "c": True}])
    assert text.splitlines() == [
        "A           BB  C",
        "1           -   -",
        "long value  -   yes",
    ]
    assert table([]) == "(none)"
    assert render({"x": {"y": 1}, "rows": [{"k": "v"}]}) == "x.y  1\n\nrows:\nK\nv"


# --------------------------------------------------------------------------- amounts for people


class TinyAmountsBackend(MemoryBackend):
    """Answers as the daemon can give them: exact decimal text, exponents included."""

    async def positions(self) -> Any:
        return {
            "mode": "PAPER",
            "paper": [{"pair": "BTCZAR", "asset": "BTC", "quantity": "1E-11",
                       "average_cost": "1000000.125", "notional": "0.00001", "fees": "2.5E+1",
                       "currency": "ZAR", "external": False}],
            "live": [],
        }  # fmt: skip

    async def pnl(self) -> Any:
        return {"paper": {"reference_currency": "ZAR", "equity": "100001.1929827",
                          "fees": "3E-7", "drawdown_pct": "0.0048"}}  # fmt: skip

    async def list_orders(self, *, state: str, limit: int) -> Any:
        return {"orders": [{
            "id": 7, "created_at": "2026-12-03T06:00:36.841172+00:00", "mode": "PAPER",
            "pair": "ETHZAR", "side": "SELL", "type": "LIMIT", "quantity": "0.5",
            "price": "50000.005", "state": "partially_filled", "filled_quantity": "1E-11",
            "average_price": "5E+4", "reason": "r", "failed_reason": "",
            "fees": {"ZAR": "1E-9"},
        }]}  # fmt: skip


async def test_tables_round_to_the_currency_and_never_print_an_exponent(sock_dir: Path) -> None:
    async for c in _start(sock_dir, TinyAmountsBackend()):
        r = await c("positions")
        assert r.code == 0
        header, row = r.out.split("paper:\n")[1].split("\n\n")[0].splitlines()
        cells = dict(zip(header.split(), row.split(), strict=True))
        assert cells["QUANTITY"] == "0.00000000"  # 1E-11 BTC, to BTC's 8 decimals
        assert cells["AVERAGE_COST"] == "1000000.12"  # ZAR cents, half to even
        assert cells["NOTIONAL"] == "0.00" and cells["FEES"] == "25.00"
        assert "live:\n(no positions)" in r.out
        assert "E-" not in r.out and "E+" not in r.out
        r = await c("--json", "positions")
        assert r.json()["paper"][0]["quantity"] == "1E-11"  # scripts get the exact text

        r = await c("pnl")
        assert "paper.equity              100001.19" in r.out
        assert "paper.fees                0.00\n" in r.out
        assert "paper.drawdown_pct        0.0048" in r.out  # a percentage, not money

        r = await c("orders")
        row = r.out.splitlines()[1]
        assert "2026-12-03 06:00:36Z" in row  # to the second, UTC
        assert "0.50000000" in row and "50000.00" in row  # quantity in ETH, price in ZAR
        assert "0.00000000" in row  # filled 1E-11
        assert "0.00 ZAR" in row  # the fee, with its currency
        assert "E-" not in r.out and "E+" not in r.out
        assert "NET is FILLED" not in r.out  # no base-currency fee, no note


def test_exponents_outside_known_columns_print_plain() -> None:
    assert render({"value": "1E-11"}) == "value  0.00000000001"
    assert table([{"x": "2.5E+3"}]) == "X\n2500"


class SlowDoctorBackend(MemoryBackend):
    """A doctor that takes longer than the client's ordinary timeout (its checks are each
    bounded by the daemon: the notify check by notify.timeout_s per URL)."""

    async def doctor(self, *, notify: bool, actor: Any) -> dict[str, Any]:
        await asyncio.sleep(0.6)
        return {"ok": True, "checks": [{"name": "config", "status": "ok", "detail": "fine"}]}

    async def pnl(self) -> Any:
        await asyncio.sleep(0.6)
        return await super().pnl()


async def test_doctor_waits_longer_than_the_client_timeout_other_commands_do_not(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heliosd.control.client import ControlClient

    monkeypatch.setattr(ControlClient.__init__, "__kwdefaults__", {"timeout": 0.3})
    async for c in _start(sock_dir, SlowDoctorBackend()):
        r = await c("doctor")
        assert r.code == 0, r.err
        assert "config" in r.out
        r = await c("pnl")  # an ordinary command keeps the client's timeout
        assert r.code != 0 and "did not answer within 0.3 s" in r.err, r
