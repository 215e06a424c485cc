"""The simulator's admin routes (not VALR's): faults, the order-arrival log, money moves.

A test that drives a daemon *process* against a simulator in another process changes the
simulator's behaviour here, over plain HTTP on the same port (no signature: these routes
exist only on the simulator, and the fault middleware never applies to them). Every answer
is JSON; a bad body is 400 ``{"error": "bad_request", "message": "<what is wrong>"}`` and
changes nothing.

=======================  ==================================================================
``GET /sim/faults``      the current faults (the shape below)
``POST /sim/faults``     change some: any subset of the keys; ``"reset": true`` first puts
                         every fault back to its default; answers the new state
``POST /sim/drop-sockets``  ``{"stream": "account"|"trade"|"all", "mode": "close"|"abort",
                         "account": "0"}`` (all optional; default account sockets of every
                         account, mode ``ws_drop_mode``) -> ``{"dropped": n}``
``POST /sim/redeliver-dropped``  ``{"account": "0"}`` (optional: every account): send the
                         account messages ``drop_account_messages`` removed, now and in
                         their order, to the account's open sockets (a message arriving
                         late) -> ``{"redelivered": n}``; each is sent once
``GET /sim/order-log``   ``?after=SEQ`` -> ``{"orders": [ARRIVAL...], "last_seq": n}``
``POST /sim/transactions``  ``{"kind": "deposit"|"withdrawal"|"transfer_in"|"transfer_out",
                         "currency": "ZAR", "amount": "100", "account": "0", "fee": "0",
                         "type": "<VALR transaction type>"}`` -> 201 ``{"transaction": ROW}``
``GET /sim/accounts/{id}``  ``{"balances": {CUR: {"available", "reserved"}},
                         "open_orders": [...], "trades": [...] (newest first, trade-history
                         rows), "cancel_on_disconnect_sockets": n, "disconnect_cancels": n}``
=======================  ==================================================================

Fault state (``GET`` answer; ``POST`` takes the same keys, lists replace, the message-drop
map merges with a count of 0 removing a type)::

    {"http_429_rate": 0.0, "http_5xx_rate": 0.0, "http_5xx_after_rate": 0.5,
     "retry_after_s": 1, "delay_s": 0.0, "delay_after_s": 0.0, "drop_ws_every_s": null,
     "ws_drop_mode": "close", "pause_account_stream": false, "garble_rate": 0.0,
     "read_only": false, "view_lag_s": 0.0, "v1_cancel_status": 202,
     "clock_offset_ms": 0, "stale_timestamp_plain": false,
     "maker_rebate_bps": 0, "maker_reward_shape": "reward", "garble_maker_rewards": 0,
     "no_trade_authenticated": false, "no_account_authenticated": false,
     "rate_limits": [{"prefix": "/v2/orders", "count": 1, "retry_after_s": 2,
                      "method": "POST", "hits": 0}],
     "route_delays": [{"prefix": "/v2/orders", "delay_s": 1.5, "method": null,
                       "after": false}],
     "drop_account_messages": {"NEW_ACCOUNT_TRADE": 1},
     "dropped_account_messages": {"NEW_ACCOUNT_TRADE": 0}, "garbled_maker_rewards": 0}

``maker_rebate_bps`` (an integer from 0 to 100) pays maker fills that many basis points as a
``makerReward``; ``maker_reward_shape`` is ``"reward"``, ``"both"`` or ``"fee"`` (see
:class:`heliosd.sim.config.FaultConfig`).

ARRIVAL is :meth:`heliosd.sim.arrivals.OrderArrival.to_json`.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.config import (
    MAKER_REWARD_SHAPES,
    MAX_MAKER_REBATE_BPS,
    FaultConfig,
    RateLimitRule,
    RouteDelay,
)
from heliosd.sim.context import json_response, state_of
from heliosd.sim.transactions import move_funds, transaction_row

_RATES = ("http_429_rate", "http_5xx_rate", "http_5xx_after_rate", "garble_rate")
_SECONDS = ("delay_s", "delay_after_s", "view_lag_s")
_FLAGS = (
    "pause_account_stream", "read_only", "stale_timestamp_plain", "no_trade_authenticated",
    "no_account_authenticated",
)  # fmt: skip
_READ_ONLY_KEYS = ("dropped_account_messages", "garbled_maker_rewards")


class BadRequest(ValueError):
    """A body the admin routes refuse; the message says what is wrong."""


def faults_json(faults: FaultConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(faults):
        value = getattr(faults, f.name)
        if f.name in ("rate_limits", "route_delays"):
            value = [dataclasses.asdict(item) for item in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{name} must be a number")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name} must be {bounds}")
    return float(value)


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadRequest(f"{name} must be an integer of at least {low}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def _method(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isalpha():
        raise BadRequest(f"{name} must be an HTTP method or null")
    return value.upper()


def _prefix(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise BadRequest(f"{name} must be a path prefix starting with /")
    return value


def _items(name: str, value: Any, keys: set[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest(f"{name} must be a list of objects")
    for item in value:
        unknown = set(item) - keys
        if unknown:
            raise BadRequest(f"{name}: unknown key {sorted(unknown)[0]!r}")
    return value


def apply_faults(faults: FaultConfig, data: Any) -> None:
    """Validate ``data`` completely, then apply it to ``faults`` in place (all or nothing)."""
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    names = {f.name for f in dataclasses.fields(faults)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "reset":
            if not isinstance(value, bool):
                raise BadRequest("reset must be true or false")
        elif key not in names or key in _READ_ONLY_KEYS:
            raise BadRequest(f"unknown or read-only fault {key!r}")
        elif key in _RATES:
            changes[key] = _number(key, value, 0.0, 1.0)
        elif key in _SECONDS:
            changes[key] = _number(key, value, 0.0)
        elif key in _FLAGS:
            if not isinstance(value, bool):
                raise BadRequest(f"{key} must be true or false")
            changes[key] = value
        elif key == "retry_after_s":
            changes[key] = _integer(key, value, 1)
        elif key == "maker_rebate_bps":
            changes[key] = _integer(key, value, 0)
            if value > MAX_MAKER_REBATE_BPS:
                raise BadRequest(f"maker_rebate_bps must be at most {MAX_MAKER_REBATE_BPS}")
        elif key == "maker_reward_shape":
            if value not in MAKER_REWARD_SHAPES:
                raise BadRequest("maker_reward_shape must be 'reward', 'both' or 'fee'")
            changes[key] = value
        elif key == "garble_maker_rewards":
            changes[key] = _integer(key, value, 0)
        elif key == "drop_ws_every_s":
            changes[key] = None if value is None else _number(key, value, 0.05)
        elif key == "clock_offset_ms":
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadRequest("clock_offset_ms must be an integer (milliseconds)")
            changes[key] = value
        elif key == "v1_cancel_status":
            if value not in (200, 202) or isinstance(value, bool):
                raise BadRequest("v1_cancel_status must be 200 or 202")
            changes[key] = value
        elif key == "ws_drop_mode":
            if value not in ("close", "abort"):
                raise BadRequest("ws_drop_mode must be 'close' or 'abort'")
            changes[key] = value
        elif key == "rate_limits":
            items = _items(key, value, {"prefix", "count", "retry_after_s", "method", "hits"})
            changes[key] = [
                RateLimitRule(
                    prefix=_prefix(f"{key}.prefix", item.get("prefix")),
                    count=_integer(f"{key}.count", item.get("count", 1), 0),
                    retry_after_s=_integer(f"{key}.retry_after_s", item.get("retry_after_s", 1), 0),
                    method=_method(f"{key}.method", item.get("method")),
                )
                for item in items
            ]
        elif key == "route_delays":
            items = _items(key, value, {"prefix", "delay_s", "method", "after"})
            changes[key] = [
                RouteDelay(
                    prefix=_prefix(f"{key}.prefix", item.get("prefix")),
                    delay_s=_number(f"{key}.delay_s", item.get("delay_s"), 0.0),
                    method=_method(f"{key}.method", item.get("method")),
                    after=_flag(f"{key}.after", item.get("after", False)),
                )
                for item in items
            ]
        elif key == "drop_account_messages":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise BadRequest(f"{key} must map message types to counts")
            changes[key] = {k: _integer(f"{key}.{k}", n, 0) for k, n in value.items()}
    if data.get("reset"):
        reset_faults(faults)
    for key, value in changes.items():
        if key == "drop_account_messages":
            for kind, count in value.items():
                if count:
                    faults.drop_account_messages[kind] = count
                else:
                    faults.drop_account_messages.pop(kind, None)
        else:
            setattr(faults, key, value)


def reset_faults(faults: FaultConfig) -> None:
    """Every fault back to its default, in place (the middleware and hub share the object)."""
    fresh = FaultConfig()
    for f in dataclasses.fields(faults):
        setattr(faults, f.name, getattr(fresh, f.name))


def _bad(message: str) -> web.Response:
    return json_response({"error": "bad_request", "message": message}, 400)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None


async def get_faults(request: web.Request) -> web.Response:
    return json_response(faults_json(state_of(request).faults))


async def post_faults(request: web.Request) -> web.Response:
    faults = state_of(request).faults
    try:
        apply_faults(faults, await _body(request))
    except BadRequest as exc:
        return _bad(str(exc))
    return json_response(faults_json(faults))


async def drop_sockets(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        data = await _body(request)
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        stream = data.get("stream", "account")
        mode = data.get("mode")
        account = data.get("account")
        if stream not in ("account", "trade", "all"):
            raise BadRequest("stream must be 'account', 'trade' or 'all'")
        if mode not in (None, "close", "abort"):
            raise BadRequest("mode must be 'close' or 'abort'")
        if account is not None and not isinstance(account, str):
            raise BadRequest("account must be an account id string")
    except BadRequest as exc:
        return _bad(str(exc))
    dropped = 0
    if stream in ("account", "all"):
        dropped += state.hub.drop_account_sockets(account, mode)
    if stream in ("trade", "all"):
        dropped += state.hub.drop_trade_sockets(mode)
    return json_response({"dropped": dropped})


async def redeliver_dropped(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        data = await _body(request)
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        account = data.get("account")
        if account is not None and not isinstance(account, str):
            raise BadRequest("account must be an account id string")
    except BadRequest as exc:
        return _bad(str(exc))
    return json_response({"redelivered": state.hub.redeliver_dropped(account)})


async def order_log(request: web.Request) -> web.Response:
    raw = request.query.get("after", "0")
    if not (raw.isascii() and raw.isdigit()):
        return _bad("after must be a sequence number")
    log = state_of(request).arrivals
    return json_response(
        {"orders": [a.to_json() for a in log.after(int(raw))], "last_seq": len(log.entries)}
    )


async def post_transaction(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        data = await _body(request)
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        unknown = set(data) - {"kind", "currency", "amount", "account", "fee", "type"}
        if unknown:
            raise BadRequest(f"unknown key {sorted(unknown)[0]!r}")
        amount = _decimal("amount", data.get("amount"))
        fee = _decimal("fee", data.get("fee", "0"))
        account, tx_type = data.get("account", "0"), data.get("type")
        if not isinstance(account, str) or (tx_type is not None and not isinstance(tx_type, str)):
            raise BadRequest("account and type must be strings")
        tx = move_funds(
            state.exchange, account, str(data.get("kind")), str(data.get("currency")), amount,
            fee=fee, tx_type=tx_type,
        )  # fmt: skip
    except ValueError as exc:  # BadRequest, or move_funds refusing
        return _bad(str(exc))
    return json_response({"transaction": transaction_row(tx)}, 201)


def _decimal(name: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadRequest(f"{name} must be a decimal string") from None
    if not number.is_finite():
        raise BadRequest(f"{name} must be finite")
    return number


async def account_view(request: web.Request) -> web.Response:
    state = state_of(request)
    account_id = request.match_info["account"]
    acct = state.exchange.accounts.get(account_id)
    if acct is None:
        return json_response({"error": "not_found", "message": "no such account"}, 404)
    return json_response(
        {
            "balances": {
                cur: {"available": wire.dec(b.available), "reserved": wire.dec(b.reserved)}
                for cur, b in acct.balances.items()
            },
            "open_orders": [wire.open_order(o) for o in acct.open_orders.values()],
            "trades": [wire.account_trade(t) for t in state.exchange.trade_rows(account_id)],
            "cancel_on_disconnect_sockets": state.hub.armed_account_sockets(account_id),
            "disconnect_cancels": sum(1 for a, _ in state.disconnect_cancels if a == account_id),
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/sim/faults", get_faults)
    r.add_post("/sim/faults", post_faults)
    r.add_post("/sim/drop-sockets", drop_sockets)
    r.add_post("/sim/redeliver-dropped", redeliver_dropped)
    r.add_get("/sim/order-log", order_log)
    r.add_post("/sim/transactions", post_transaction)
    r.add_get("/sim/accounts/{account}", account_view)
