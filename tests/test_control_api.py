"""The control API over a real Unix socket, against a small in-memory backend.

This is the HTTP layer's unit test: MemoryBackend implements ControlBackend with real, simple
behaviour (orders in a dict, a mode that flips, gates that can be told to fail); the daemon's
own end-to-end tests run the same routes against the real daemon.

MemoryBackend and the ``served`` helpers are imported by test_heliosctl.py and
test_control_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from heliosd import __version__
from heliosd.control.app import build_app, registered_routes
from heliosd.control.backend import JSON, Actor, OrderRequest
from heliosd.control.openapi import OPERATIONS
from heliosd.control.server import ControlServer
from heliosd.core.config import DaemonSettings, Settings
from heliosd.core.errors import (
    AuthError,
    ConfirmationRequired,
    ExchangeRejected,
    GateRejected,
    HaltedError,
    InvalidConfirmToken,
    NotFoundError,
    RiskRejected,
    TransientError,
)
from heliosd.core.types import Mode

# --------------------------------------------------------------------------- the backend


class _Subscription:
    """One GET /api/events reader; subscribed at creation so no event is missed."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.queue: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
        backend.subscribers.append(self)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Mapping[str, Any]:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def close(self) -> None:  # sync, like heliosd.notify.Subscription
        if self in self.backend.subscribers:
            self.backend.subscribers.remove(self)


@dataclass
class MemoryBackend:
    """ControlBackend with real, simple behaviour, for testing the HTTP layer."""

    mode: Mode = Mode.PAPER
    updated_by: str = "init"
    updated_at: str = "2024-01-01T00:00:00+00:00"
    halted: bool = False
    halt_reason: str | None = None
    engine_running: bool = False
    failing_gates: dict[str, str] = field(default_factory=dict)
    gate_names: tuple[str, ...] = ("no_positions", "credentials", "risk_config")
    tokens: dict[str, datetime] = field(default_factory=dict)
    history: list[JSON] = field(default_factory=list)
    audit_rows: list[JSON] = field(default_factory=list)
    orders: dict[int, JSON] = field(default_factory=dict)
    max_quantity: Decimal = Decimal(1)
    healthy: bool = True
    fail_next: BaseException | None = None
    actors: list[Actor] = field(default_factory=list)
    subscribers: list[_Subscription] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _enter(self, name: str, arg: Any = None, actor: Actor | None = None) -> None:
        self.calls.append((name, arg))
        if actor is not None:
            self.actors.append(actor)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def publish(self, event: Mapping[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(event)

    def end_streams(self) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)

    def _audit(self, actor: Actor, action: str, outcome: str, reason: str) -> None:
        row = {
            "id": len(self.audit_rows) + 1,
            "at": datetime.now(UTC).isoformat(),
            "actor": str(actor),
            "action": action,
            "outcome": outcome,
            "reason": reason,
        }
        self.audit_rows.append(row)

    def _switch(self, new: Mode, actor: Actor, reason: str) -> None:
        self.history.append(
            {
                "id": len(self.history) + 1,
                "old_mode": self.mode.value,
                "new_mode": new.value,
                "changed_at": datetime.now(UTC).isoformat(),
                "changed_by": str(actor),
                "reason": reason,
            }
        )
        self.mode, self.updated_by = new, str(actor)
        self.updated_at = datetime.now(UTC).isoformat()

    # --- mode
    async def get_mode(self) -> JSON:
        self._enter("get_mode")
        return {
            "mode": self.mode.value,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "halted": self.halted,
            "halt_reason": self.halt_reason,
        }

    async def set_mode(
        self, mode: Mode, *, confirm_token: str | None, reason: str, actor: Actor
    ) -> JSON:
        self._enter("set_mode", (mode, confirm_token, reason), actor)
        if mode is Mode.PAPER:
            self._switch(Mode.PAPER, actor, reason)
            self._audit(actor, "mode", "switched", reason)
            return {**await self.get_mode(), "open_live_orders": []}
        if self.halted:
            raise HaltedError(f"trading is halted: {self.halt_reason}")
        gates = [
            {"name": n, "ok": n not in self.failing_gates, "reason": self.failing_gates.get(n, "")}
            for n in self.gate_names
        ]
        failed = [g["reason"] for g in gates if not g["ok"]]
        if failed:
            self._audit(actor, "mode", "gate_rejected", reason)
            raise GateRejected(
                "Cannot switch to LIVE: " + "; ".join(failed), details={"gates": gates}
            )
        if confirm_token is None:
            token = secrets.token_urlsafe(16)
            self.tokens[token] = datetime.now(UTC) + timedelta(seconds=60)
            raise ConfirmationRequired(
                "All gates passed; confirm to switch to LIVE",
                details={"gates": gates, "confirm_token": token, "expires_in": 60},
            )
        expiry = self.tokens.pop(confirm_token, None)
        if expiry is None or expiry < datetime.now(UTC):
            raise InvalidConfirmToken("unknown, spent or expired confirmation token")
        self._switch(Mode.LIVE, actor, reason)
        self._audit(actor, "mode", "switched", reason)
        return await self.get_mode()

    async def mode_history(self, limit: int) -> JSON:
        self._enter("mode_history", limit)
        return {"history": list(reversed(self.history))[:limit]}

    async def audit(self, limit: int) -> JSON:
        self._enter("audit", limit)
        return {"audit": list(reversed(self.audit_rows))[:limit]}

    # --- stops
    async def emergency_stop(self, *, reason: str, actor: Actor) -> JSON:
        self._enter("emergency_stop", reason, actor)
        cancelled = 0
        for order in self.orders.values():
            if order["state"] in ("new", "sent", "placed", "partially_filled"):
                order["state"] = "cancelled"
                cancelled += 1
        self.halted, self.halt_reason, self.engine_running = True, reason or "emergency", False
        if self.mode is Mode.LIVE:
            self._switch(Mode.PAPER, actor, "emergency stop")
        return {
            "halted": True,
            "mode": "PAPER",
            "cancelled_orders": cancelled,
            "remaining_open_orders": 0,
            "reason": reason,
        }

    async def resume(self, *, reason: str, actor: Actor) -> JSON:
        self._enter("resume", reason, actor)
        self.halted, self.halt_reason = False, None
        return {"halted": False, "reason": reason}

    # --- engine
    async def engine_status(self) -> JSON:
        self._enter("engine_status")
        return {"running": self.engine_running, "strategy": "demo"}

    async def engine_start(self, *, actor: Actor) -> JSON:
        self._enter("engine_start", None, actor)
        if self.halted:
            raise HaltedError(f"trading is halted: {self.halt_reason}")
        self.engine_running = True
        return {"running": True}

    async def engine_stop(self, *, actor: Actor) -> JSON:
        self._enter("engine_stop", None, actor)
        self.engine_running = False
        return {"running": False}

    # --- orders and ledger
    async def list_orders(self, *, state: str, limit: int) -> JSON:
        self._enter("list_orders", (state, limit))
        rows = sorted(self.orders.values(), key=lambda o: o["id"], reverse=True)
        if state == "open":
            rows = [o for o in rows if o["state"] in ("new", "sent", "placed", "partially_filled")]
        return {"orders": rows[:limit]}

    async def get_order(self, order_id: int) -> JSON:
        self._enter("get_order", order_id)
        if order_id not in self.orders:
            raise NotFoundError(f"no order {order_id}")
        return {"order": self.orders[order_id]}

    async def place_order(self, request: OrderRequest, *, actor: Actor) -> JSON:
        self._enter("place_order", request, actor)
        if request.quantity > self.max_quantity:
            raise RiskRejected(
                f"quantity {request.quantity} above the limit {self.max_quantity}",
                details={"verdicts": [{"rule": "max_qty", "action": "reject"}]},
            )
        now = datetime.now(UTC).isoformat()
        order_id = len(self.orders) + 1
        order: JSON = {
            "id": order_id,
            "customer_order_id": f"h-{order_id}",
            "exchange_order_id": None,
            "mode": self.mode.value,
            "pair": request.pair,
            "side": request.side,
            "type": request.type,
            "requested_quantity": request.quantity,
            "quantity": request.quantity,
            "price": request.price,
            "state": "placed" if request.price is not None else "filled",
            "reason": request.reason,
            "verdicts": [{"rule": "max_qty", "action": "accept", "reason": ""}],
            "filled_quantity": Decimal(0) if request.price is not None else request.quantity,
            "average_price": None,
            "created_at": now,
            "updated_at": now,
        }
        self.orders[order_id] = order
        if request.pair == "DOGEZAR":  # the venue refuses this one at once
            order["state"] = "failed"
            raise ExchangeRejected("Insufficient Balance", details={"order": order})
        return {"order": order}

    async def cancel_order(self, order_id: int, *, actor: Actor) -> JSON:
        self._enter("cancel_order", order_id, actor)
        if order_id not in self.orders:
            raise NotFoundError(f"no order {order_id}")
        self.orders[order_id]["state"] = "cancelled"
        return {"order": self.orders[order_id]}

    async def positions(self) -> JSON:
        self._enter("positions")
        return {"positions": [{"mode": "PAPER", "pair": "BTCZAR", "quantity": Decimal("0.01")}]}

    async def pnl(self) -> JSON:
        self._enter("pnl")
        return {"realized": Decimal("12.50"), "unrealized": Decimal("-3.1"), "daily": Decimal(0)}

    async def risk(self) -> JSON:
        self._enter("risk")
        return {"drawdown_pct": Decimal("1.5"), "breakers": [], "limits": {"max_position_pct": 20}}

    # --- introspection
    async def plugins(self) -> JSON:
        self._enter("plugins")
        return {"plugins": [{"name": "paper", "source": "builtin", "sha256": None}]}

    async def health(self) -> tuple[bool, JSON]:
        self._enter("health")
        return self.healthy, {"store": "ok", "feeds": "ok" if self.healthy else "stale"}

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        return _Subscription(self)


class BackupBackend(MemoryBackend):
    """A backend offering the optional backup method."""

    async def backup(self, *, actor: Actor) -> JSON:
        self._enter("backup", None, actor)
        return {"path": "/var/lib/heliosd/backups/heliosd-1.db", "bytes": 4096}


# --------------------------------------------------------------------------- serving


@dataclass
class Served:
    backend: MemoryBackend
    server: ControlServer
    settings: Settings
    session: aiohttp.ClientSession

    @property
    def socket(self) -> Path:
        return self.settings.daemon.control_socket

    async def call(
        self, method: str, path: str, body: Any = None, *, data: bytes | None = None
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"json": body} if data is None else {"data": data}
        async with self.session.request(method, f"http://heliosd{path}", **kwargs) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()


def short_dir() -> Path:
    """AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="hc", dir="/tmp"))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def settings_for(sock_dir: Path, **daemon: Any) -> Settings:
    return Settings(
        daemon=DaemonSettings(
            state_dir=sock_dir, control_socket=sock_dir / "heliosd.sock", **daemon
        )
    )


async def serve(
    backend: MemoryBackend, settings: Settings, **app_kwargs: Any
) -> tuple[ControlServer, aiohttp.ClientSession]:
    server = ControlServer()
    await server.start(build_app(backend, settings=settings, **app_kwargs), settings)
    connector = aiohttp.UnixConnector(path=str(settings.daemon.control_socket))
    return server, aiohttp.ClientSession(connector=connector)


@pytest.fixture
async def served(sock_dir: Path) -> AsyncIterator[Served]:
    backend = MemoryBackend()
    settings = settings_for(sock_dir)
    server, session = await serve(backend, settings, sse_heartbeat_s=0.2)
    yield Served(backend, server, settings, session)
    await session.close()
    await server.stop()


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A logged error fails the test unless the test cleared it after checking it."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _bad(status_body: tuple[int, Any], field_or_text: str, status: int = 400) -> JSON:
    got_status, body = status_body
    assert got_status == status, body
    assert body["error"] == "bad_request"
    assert field_or_text in body["message"], body
    assert isinstance(body["details"], dict)
    return body  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- mode


async def test_get_mode_answers_the_contract_shape(served: Served) -> None:
    status, body = await served.call("GET", "/api/trading/mode")
    assert status == 200
    assert {"mode", "updated_at", "updated_by", "halted", "halt_reason"} <= body.keys()
    assert body["mode"] == "PAPER"
    assert body["halted"] is False


async def test_switch_to_live_gates_then_confirmation_token_then_switch(served: Served) -> None:
    b = served.backend
    b.failing_gates = {
        "no_positions": "open positions exist (BTCZAR 0.0100)",
        "credentials": "API key has Withdraw permission",
    }
    status, body = await served.call("POST", "/api/trading/mode", {"mode": "LIVE", "reason": "go"})
    assert status == 409
    assert body["error"] == "gate_rejected"
    assert body["message"] == (
        "Cannot switch to LIVE: open positions exist (BTCZAR 0.0100); "
        "API key has Withdraw permission"
    )
    assert [g["ok"] for g in body["details"]["gates"]] == [False, False, True]

    b.failing_gates = {}
    status, body = await served.call("POST", "/api/trading/mode", {"mode": "live"})
    assert status == 409
    assert body["error"] == "confirmation_required"
    token = body["details"]["confirm_token"]
    assert body["details"]["expires_in"] == 60
    assert len(body["details"]["gates"]) == 3

    wrong = {"mode": "LIVE", "confirm_token": "nope"}
    status, body = await served.call("POST", "/api/trading/mode", wrong)
    assert (status, body["error"]) == (409, "invalid_confirm_token")
    assert b.mode is Mode.PAPER

    confirm = {"mode": "LIVE", "confirm_token": token, "reason": "plan step 4"}
    status, body = await served.call("POST", "/api/trading/mode", confirm)
    assert status == 200
    assert body["mode"] == "LIVE"
    assert b.history[-1]["reason"] == "plan step 4"
    assert b.actors[-1].uid == os.geteuid()
    assert b.actors[-1].via == "unix"

    # Single use.
    status, body = await served.call("POST", "/api/trading/mode", confirm)
    assert (status, body["error"]) == (409, "invalid_confirm_token")

    status, body = await served.call("GET", "/api/trading/mode/history?limit=1")
    assert status == 200
    assert [h["new_mode"] for h in body["history"]] == ["LIVE"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"mode": "LIEV"}, "mode must be PAPER or LIVE, got 'LIEV'"),
        ({"mode": 1}, "mode must be PAPER or LIVE, got number"),
        ({"reason": "x"}, "missing required field mode"),
        ({"mode": "PAPER", "reason": 5}, "reason must be a string, got number"),
        ({"mode": "PAPER", "confirm_token": ["x"]}, "confirm_token must be a string"),
        ({"mode": "PAPER", "colour": "red", "force": True}, "unknown fields 'colour', 'force'"),
        ({"mode": "PAPER", "reason": "x" * 1001}, "reason must be at most 1000 characters"),
    ],
)
async def test_mode_body_validation(served: Served, body: JSON, text: str) -> None:
    _bad(await served.call("POST", "/api/trading/mode", body), text)
    assert served.backend.calls == []  # refused before reaching the backend


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b'{"mode": "PAPER"', "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object, got array"),
        (b'"PAPER"', "request body must be a JSON object, got string"),
        (b"", "request body is required"),
        (b"\xff\xfe", "request body is not valid JSON"),
        (b'{"mode": NaN}', "request body is not valid JSON"),
    ],
)
async def test_malformed_bodies_are_400(served: Served, data: bytes, text: str) -> None:
    body = _bad(await served.call("POST", "/api/trading/mode", data=data), text)
    assert body["details"]["field"] == "body"


async def test_oversized_body_is_413_json_and_the_server_keeps_serving(served: Served) -> None:
    data = b'{"mode": "PAPER", "reason": "' + b"x" * (70 * 1024) + b'"}'
    status, body = await served.call("POST", "/api/trading/mode", data=data)
    assert status == 413
    assert body["error"] == "payload_too_large"
    assert (await served.call("GET", "/api/trading/mode"))[0] == 200


async def test_switch_to_paper_records_who_and_why(served: Served) -> None:
    served.backend.mode = Mode.LIVE
    status, body = await served.call("POST", "/api/trading/mode", {"mode": "paper", "reason": "r"})
    assert status == 200
    assert body["mode"] == "PAPER"
    assert body["open_live_orders"] == []
    status, body = await served.call("GET", "/api/audit")
    assert status == 200
    assert body["audit"][0]["outcome"] == "switched"


# --------------------------------------------------------------------------- stops, engine


async def test_emergency_stop_resume_and_engine(served: Served) -> None:
    assert (await served.call("POST", "/api/autonomous-engine/start"))[0] == 200
    status, body = await served.call("GET", "/api/autonomous-engine/status")
    assert status == 200
    assert body["running"] is True
    await served.call("POST", "/api/orders", _limit_order())

    status, body = await served.call("POST", "/api/trading/emergency-stop")  # no body at all
    assert status == 200
    assert body == {
        "halted": True,
        "mode": "PAPER",
        "cancelled_orders": 1,
        "remaining_open_orders": 0,
        "reason": "",
    }
    status, body = await served.call("POST", "/api/autonomous-engine/start", {})
    assert (status, body["error"]) == (409, "halted")
    assert "halted" in body["message"]

    _bad(await served.call("POST", "/api/trading/resume", {}), "reason is required")
    _bad(await served.call("POST", "/api/trading/resume", {"reason": "  "}), "reason is required")
    _bad(await served.call("POST", "/api/autonomous-engine/stop", {"now": 1}), "unknown field")
    status, body = await served.call("POST", "/api/trading/resume", {"reason": "checked"})
    assert status == 200
    assert served.backend.halted is False
    assert (await served.call("POST", "/api/autonomous-engine/stop"))[0] == 200
    assert served.backend.engine_running is False


async def test_emergency_stop_passes_the_reason(served: Served) -> None:
    status, body = await served.call("POST", "/api/trading/emergency-stop", {"reason": "drawdown"})
    assert status == 200
    assert body["reason"] == "drawdown"
    assert served.backend.halt_reason == "drawdown"


# --------------------------------------------------------------------------- orders


def _limit_order(**over: Any) -> JSON:
    return {
        "pair": "BTCZAR",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.01",
        "price": "1000000",
        **over,
    }


async def test_place_order_lower_case_and_decimal_exactness(served: Served) -> None:
    body = {"pair": "btczar", "side": "buy", "type": "market", "quantity": 0.1, "reason": "r"}
    status, answer = await served.call("POST", "/api/orders", body)
    assert status == 201, answer
    request = served.backend.calls[-1][1]
    assert isinstance(request, OrderRequest)
    # A JSON number is read exactly: 0.1 stays Decimal("0.1"), never a binary float.
    assert request.quantity == Decimal("0.1")
    assert request.pair == "BTCZAR"
    assert answer["order"]["quantity"] == "0.1"
    assert answer["order"]["side"] == "BUY"

    status, answer = await served.call("POST", "/api/orders", _limit_order(quantity=2))
    assert status == 422
    assert answer["error"] == "risk_rejected"
    assert answer["details"]["verdicts"][0]["action"] == "reject"

    status, answer = await served.call("POST", "/api/orders", _limit_order(pair="DOGEZAR"))
    assert status == 422
    assert answer["error"] == "exchange_rejected"
    assert answer["message"] == "Insufficient Balance"
    assert answer["details"]["order"]["state"] == "failed"
    failed_id = answer["details"]["order"]["id"]

    status, answer = await served.call("GET", "/api/orders")
    assert status == 200
    assert [o["id"] for o in answer["orders"]] == [failed_id, 1]
    status, answer = await served.call("GET", f"/api/orders/{failed_id}")
    assert status == 200
    assert answer["order"]["pair"] == "DOGEZAR"


@pytest.mark.parametrize(
    ("over", "text"),
    [
        ({"price": None}, "price is required for a LIMIT order"),
        ({"type": "MARKET"}, "price is not allowed on a MARKET order"),
        ({"type": "STOP"}, "type must be MARKET or LIMIT, got 'STOP'"),
        ({"side": "HOLD"}, "side must be BUY or SELL, got 'HOLD'"),
        ({"side": None}, "side must be BUY or SELL, got null"),
        ({"pair": None}, "pair must be a pair symbol"),
        ({"quantity": None}, "quantity must be a positive decimal string, got null"),
        ({"reason": None}, "reason must be a string, got null"),
        ({"quantity": "0.0000000000000000001"}, "quantity is out of range"),
        ({"quantity": "12345678901234567"}, "quantity is out of range"),
        ({"quantity": "-1"}, "quantity must be a positive decimal string"),
        ({"quantity": "0"}, "quantity must be positive"),
        ({"quantity": 0}, "quantity must be positive"),
        ({"quantity": "abc"}, "quantity must be a positive decimal string"),
        ({"quantity": "1e5"}, "quantity must be a positive decimal string"),
        ({"quantity": " 1"}, "quantity must be a positive decimal string"),
        ({"quantity": True}, "quantity must be a positive decimal string, got boolean"),
        ({"quantity": [1]}, "quantity must be a positive decimal string, got array"),
        ({"quantity": 1e300}, "quantity is out of range"),
        ({"price": "-5"}, "price must be a positive decimal string"),
        ({"pair": 7}, 'pair must be a pair symbol like "BTCZAR", got number'),
        ({"pair": "BTC/ZAR"}, "pair must be a pair symbol"),
        ({"leverage": 10}, "unknown field 'leverage'"),
    ],
)
async def test_order_validation(served: Served, over: JSON, text: str) -> None:
    body = _bad(await served.call("POST", "/api/orders", _limit_order(**over)), text)
    assert body["details"].get("field") or body["details"].get("fields")
    assert served.backend.calls == []


async def test_list_orders_params_and_order_ids(served: Served) -> None:
    for _ in range(3):
        await served.call("POST", "/api/orders", _limit_order())
    await served.call("DELETE", "/api/orders/2")
    status, body = await served.call("GET", "/api/orders?state=open&limit=1")
    assert status == 200
    assert [o["id"] for o in body["orders"]] == [3]
    assert served.backend.calls[-1] == ("list_orders", ("open", 1))
    await served.call("GET", "/api/orders")
    assert served.backend.calls[-1] == ("list_orders", ("all", 100))

    _bad(await served.call("GET", "/api/orders?limit=0"), "limit must be an integer from 1 to")
    _bad(await served.call("GET", "/api/orders?limit=1001"), "limit must be an integer")
    _bad(await served.call("GET", "/api/orders?limit=ten"), "limit must be an integer")
    _bad(await served.call("GET", "/api/orders?state=closed"), "state must be open or all")
    _bad(await served.call("GET", "/api/orders?stat=open"), "unknown query parameter 'stat'")
    _bad(await served.call("GET", "/api/audit?limit=-1"), "limit must be an integer")
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999999"):
        _bad(await served.call("GET", f"/api/orders/{bad}"), "order id must be a positive integer")
    _bad(await served.call("DELETE", "/api/orders/x"), "order id must be a positive integer")
    status, body = await served.call("GET", "/api/orders/999")
    assert (status, body["error"], body["message"]) == (404, "not_found", "no order 999")
    status, body = await served.call("DELETE", "/api/orders/999")
    assert status == 404


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (AuthError("VALR refused the API key"), 502, "exchange_auth"),
        (TransientError("VALR answered 503", retry_after=2.0), 503, "exchange_unavailable"),
        (NotFoundError("no such thing"), 404, "not_found"),
        (HaltedError("halted by drawdown"), 409, "halted"),
    ],
)
async def test_backend_errors_map_to_status_and_code(
    served: Served, exc: Exception, status: int, code: str
) -> None:
    served.backend.fail_next = exc
    got, body = await served.call("GET", "/api/positions")
    assert (got, body["error"], body["message"]) == (status, code, str(exc))
    if isinstance(exc, TransientError):
        assert body["details"]["retry_after"] == 2.0


@pytest.mark.logs_exception("internal error on")
async def test_unexpected_error_is_500_without_traceback_and_is_logged(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.backend.fail_next = RuntimeError("db password hunter2 leaked in a message")
    async with served.session.get("http://heliosd/api/pnl") as resp:
        text = await resp.text()
        assert resp.status == 500
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert (await served.call("GET", "/api/pnl"))[1]["realized"] == "12.50"
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "GET /api/pnl" in records[0].getMessage()
    caplog.clear()


async def test_unknown_route_and_wrong_method_are_json(served: Served) -> None:
    status, body = await served.call("GET", "/api/nope")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await served.call("GET", "/")
    assert (status, body["error"]) == (404, "not_found")
    async with served.session.put("http://heliosd/api/trading/mode", json={}) as resp:
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]
        body = await resp.json()
    assert body["error"] == "method_not_allowed"
    assert "POST" in body["details"]["allowed"]
    status, body = await served.call("POST", "/api/health")
    assert status == 405


# --------------------------------------------------------------------------- ledger, health


async def test_ledger_views_serialise_decimals_as_strings(served: Served) -> None:
    assert (await served.call("GET", "/api/pnl"))[1] == {
        "realized": "12.50",
        "unrealized": "-3.1",
        "daily": "0",
    }
    status, body = await served.call("GET", "/api/positions")
    assert status == 200
    assert body["positions"][0]["quantity"] == "0.01"
    status, body = await served.call("GET", "/api/risk")
    assert status == 200
    assert body["drawdown_pct"] == "1.5"
    status, body = await served.call("GET", "/api/plugins")
    assert status == 200
    assert body["plugins"][0]["name"] == "paper"


async def test_health_is_200_or_503(served: Served) -> None:
    # Every answer also says which heliosd answered, whatever the backend reports.
    ok = {"store": "ok", "feeds": "ok", "version": __version__}
    assert await served.call("GET", "/api/health") == (200, ok)
    served.backend.healthy = False
    stale = {"store": "ok", "feeds": "stale", "version": __version__}
    assert await served.call("GET", "/api/health") == (503, stale)


async def test_plugin_info_answers_plugins_when_given(sock_dir: Path) -> None:
    async def info() -> JSON:
        return {"plugins": [{"name": "drop-in", "sha256": "ab" * 32}]}

    server, session = await serve(MemoryBackend(), settings_for(sock_dir), plugin_info=info)
    try:
        async with session.get("http://heliosd/api/plugins") as resp:
            assert (await resp.json())["plugins"][0]["name"] == "drop-in"
    finally:
        await session.close()
        await server.stop()


# --------------------------------------------------------------------------- OpenAPI


async def test_openapi_documents_exactly_the_registered_routes(served: Served) -> None:
    status, doc = await served.call("GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for backend in (MemoryBackend(), BackupBackend()):
        app = build_app(backend, settings=Settings())
        served_routes = set(registered_routes(app))
        if isinstance(backend, BackupBackend):
            assert ("POST", "/api/backup") in served_routes
        else:
            assert served_routes == documented
        assert served_routes <= set(OPERATIONS)
    # Every operation names its responses and every path parameter is declared.
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"]
            assert "500" in op["responses"]
            if "{id}" in path:
                assert any(p["name"] == "id" for p in op["parameters"])


def test_build_document_refuses_an_undocumented_route() -> None:
    from heliosd.control.openapi import build_document

    with pytest.raises(ValueError, match="GET /api/secret"):
        build_document([("GET", "/api/secret")])


# --------------------------------------------------------------------------- events


async def _read_event_block(resp: aiohttp.ClientResponse) -> str:
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
        if line == "\n":
            if lines:
                return "".join(lines)
            continue
        lines.append(line)


async def test_events_stream_server_sent_events_with_heartbeats(served: Served) -> None:
    async with served.session.get("http://heliosd/api/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert await _read_event_block(resp) == ": connected\n"
        served.backend.publish({"type": "order_filled", "order_id": 1, "qty": Decimal("0.5")})
        block = await _read_event_block(resp)
        assert (
            block == 'event: order_filled\ndata: {"type":"order_filled","order_id":1,"qty":"0.5"}\n'
        )
        served.backend.publish({"kind": "bad\nname", "x": 1})
        assert (await _read_event_block(resp)).startswith("event: message\n")
        assert await _read_event_block(resp) == ": heartbeat\n"  # heartbeat_s is 0.2 here
        served.backend.end_streams()
        assert await asyncio.wait_for(resp.content.read(), 5) == b""
    assert served.backend.subscribers == []


class GeneratorEventsBackend(MemoryBackend):
    """events() as an async generator: the API must close it when the reader leaves."""

    closed: bool = False

    async def _gen(self) -> AsyncIterator[Mapping[str, Any]]:
        try:
            yield {"type": "hello"}
            await asyncio.Event().wait()
        finally:
            self.closed = True

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        return self._gen()


async def test_event_stream_is_closed_when_the_reader_leaves(sock_dir: Path) -> None:
    backend = GeneratorEventsBackend()
    server, session = await serve(backend, settings_for(sock_dir), sse_heartbeat_s=0.05)
    try:
        async with session.get("http://heliosd/api/events") as resp:
            assert await _read_event_block(resp) == ": connected\n"
            assert (await _read_event_block(resp)).startswith("event: hello\n")
        # The next heartbeat write fails and the handler closes the backend's generator.
        for _ in range(100):
            if backend.closed:
                break
            await asyncio.sleep(0.02)
        assert backend.closed
    finally:
        await session.close()
        await server.stop()


async def test_server_stop_ends_open_event_streams_promptly(served: Served) -> None:
    async with served.session.get("http://heliosd/api/events") as resp:
        assert await _read_event_block(resp) == ": connected\n"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await served.server.stop()
        assert loop.time() - started < 2
        assert served.backend.subscribers == []
    assert not served.socket.exists()


# --------------------------------------------------------------------------- document == decoder


def _amount_accepted(raw: bytes) -> bool:
    import msgspec

    from heliosd.control.app import BadRequest, parse_amount

    try:
        parse_amount("quantity", msgspec.Raw(raw))
    except BadRequest:
        return False
    return True


def test_amounts_the_document_allows_are_exactly_the_ones_the_api_accepts() -> None:
    """A search for disagreement between the quantity schema and the decoder's rules."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from heliosd.control.openapi import SCHEMAS

    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    quantity = SCHEMAS["OrderRequestBody"]["properties"]["quantity"]
    validator = jsonschema_rs.validator_for(quantity)
    texts = st.text(alphabet="0123456789.", max_size=42) | st.from_regex(
        r"0{0,3}[0-9]{0,18}\.?[0-9]{0,20}", fullmatch=True
    )
    numbers = st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.floats(
        allow_nan=False, allow_infinity=False
    ).map(repr)

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.one_of(texts.map(lambda t: json.dumps(t)), numbers))
    def agree(raw: str) -> None:
        value = json.loads(raw)
        assert validator.is_valid(value) == _amount_accepted(raw.encode()), raw

    agree()
