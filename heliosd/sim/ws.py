"""The ``/ws/account`` and ``/ws/trade`` WebSocket endpoints.

Authentication is the REST headers on the upgrade request, signed over
``timestamp + "GET" + "/ws/account"`` (or ``/ws/trade``) with an empty body. Any auth
failure answers the upgrade with HTTP **401** and the REST error body (VALR's behaviour is
undocumented); no socket is opened.

Account stream: ``{"type":"AUTHENTICATED"}`` (unless ``no_account_authenticated``), then
one BALANCE_UPDATE per asset with a non-zero total and one OPEN_ORDERS_UPDATE, then events
as they happen. The snapshot and the registration for live events happen without an
``await`` in between, so nothing can fall in the gap.

Trade stream: keys optional. With valid keys the server sends AUTHENTICATED (unless
``no_trade_authenticated``: VALR's sending it there is unproven); without,
the socket is closed (1008) after ``SimConfig.unauth_timeout_s`` (VALR: 15 minutes).
``{"type":"SUBSCRIBE","subscriptions":[{"event","pairs"}]}`` *replaces* each named event's
pair set (``"pairs":[]`` unsubscribes), is answered ``{"type":"SUBSCRIBED"}`` and is
followed at once by a snapshot (order book / market summary) for every pair named.
``UNSUBSCRIBE`` removes the pairs named (all of the event's without ``pairs``) and is
answered ``{"type":"UNSUBSCRIBED"}``. Events the sim does not produce, and unknown pairs,
are accepted and ignored.

Dead-man's switch: ``{"type":"CANCEL_ON_DISCONNECT","payload":{"cancelOnDisconnect":true}}``
on an account socket arms it for that socket only, answered
``{"type":"CANCEL_ON_DISCONNECT_UPDATE","data":{"cancelOnDisconnect":"true"}}`` (a string,
as VALR answers); ``false`` (or anything but JSON ``true``) disarms it, answered ``"false"``.
When an armed socket ends for any reason (client close, TCP abort, the sim dropping it),
every open order of its account is cancelled, as one cancel-all.

Both streams answer ``{"type":"PING"}`` with ``{"type":"PONG"}``; other client messages
(including account-stream SUBSCRIBE for MARGIN_INFO) are ignored. permessage-deflate is not
negotiated (VALR does not document it), so every frame is plain JSON text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from heliosd.builtin.valr.signing import HEADER_API_KEY
from heliosd.sim import wire
from heliosd.sim.auth import AuthContext, authenticate
from heliosd.sim.context import SimState, json_response, state_of
from heliosd.sim.errors import ApiError
from heliosd.sim.streams import TRADE_EVENTS, Outbox, TradeSubscriber
from heliosd.sim.wire import dumps

AUTHENTICATED = dumps({"type": "AUTHENTICATED"})
PONG = dumps({"type": "PONG"})
SUBSCRIBED = dumps({"type": "SUBSCRIBED"})
UNSUBSCRIBED = dumps({"type": "UNSUBSCRIBED"})


def _authenticate(state: SimState, request: web.Request) -> AuthContext:
    return authenticate(
        request.headers,
        "GET",
        request.raw_path,
        "",
        state.exchange.keys,
        state.exchange.accounts,
        state.config.timestamp_window_ms,
        offset_ms=state.faults.clock_offset_ms,
        plain_stale=state.faults.stale_timestamp_plain,
    )


def _unauthorised(error: ApiError) -> web.Response:
    return json_response(error.body(), 401)


def _parse(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


async def account_stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    try:
        ctx = _authenticate(state, request)
    except ApiError as error:
        return _unauthorised(error)
    ws = web.WebSocketResponse(autoping=True, compress=False)
    await ws.prepare(request)
    box = Outbox(ws, request)
    if not state.faults.no_account_authenticated:
        box.push(AUTHENTICATED)
    if not state.faults.pause_account_stream:
        for message in state.exchange.snapshot(ctx.account_id):
            if state.faults.drop_account_messages and state.hub.drops(message.get("type")):
                state.hub.keep_dropped(ctx.account_id, dumps(message))
                continue
            box.push(state.hub.garble(dumps(message)))
    state.hub.add_account_socket(ctx.account_id, box)
    box.start()
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                parsed = _parse(msg.data)
                kind = parsed.get("type") if parsed is not None else None
                if kind == "PING":
                    box.push(PONG)
                elif kind == "CANCEL_ON_DISCONNECT" and parsed is not None:
                    box.cancel_on_disconnect = _armed(parsed)
                    box.push(_cod_update(box.cancel_on_disconnect))
    finally:
        state.hub.remove_account_socket(ctx.account_id, box)
        if box.cancel_on_disconnect:  # before any await: it happens however the socket ended
            cancelled = state.exchange.cancel_all(ctx.account_id)
            state.disconnect_cancels.append((ctx.account_id, len(cancelled)))
        await box.stop()
    return ws


def _armed(message: dict[str, Any]) -> bool:
    payload = message.get("payload")
    return isinstance(payload, dict) and payload.get("cancelOnDisconnect") is True


def _cod_update(armed: bool) -> str:
    flag = "true" if armed else "false"  # VALR answers a string, not a JSON boolean
    return dumps({"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": flag}})


async def trade_stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    authenticated = HEADER_API_KEY in request.headers
    if authenticated:
        try:
            _authenticate(state, request)
        except ApiError as error:
            return _unauthorised(error)
    ws = web.WebSocketResponse(autoping=True, compress=False)
    await ws.prepare(request)
    box = Outbox(ws, request)
    sub = TradeSubscriber(box)
    timer: asyncio.TimerHandle | None = None
    if authenticated:
        if not state.faults.no_trade_authenticated:
            box.push(AUTHENTICATED)
    else:
        # VALR closes unauthenticated connections after 15 minutes regardless of activity.
        timer = asyncio.get_running_loop().call_later(
            state.config.unauth_timeout_s,
            lambda: state.hub.spawn(
                box.close(WSCloseCode.POLICY_VIOLATION, b"unauthenticated session expired")
            ),
        )
    state.hub.add_trade_socket(sub)
    box.start()
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                parsed = _parse(msg.data)
                if parsed is not None:
                    _on_trade_message(state, sub, parsed)
    finally:
        if timer is not None:
            timer.cancel()
        state.hub.remove_trade_socket(sub)
        await box.stop()
    return ws


def _on_trade_message(state: SimState, sub: TradeSubscriber, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "PING":
        sub.box.push(PONG)
        return
    if kind not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return
    requested = message.get("subscriptions")
    if not isinstance(requested, list):
        return
    snapshots: list[str] = []
    for item in requested:
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            continue
        event: str = item["event"]
        raw_pairs = item.get("pairs")
        pairs = [p for p in raw_pairs if isinstance(p, str)] if isinstance(raw_pairs, list) else []
        if kind == "SUBSCRIBE":
            state.hub.set_pairs(sub, event, pairs)
            snapshots += _snapshots(state, event, pairs)
        else:
            current = sub.subscriptions.get(event, set())
            keep = current - set(pairs) if raw_pairs is not None else set()
            state.hub.set_pairs(sub, event, keep)
    sub.box.push(SUBSCRIBED if kind == "SUBSCRIBE" else UNSUBSCRIBED)
    for text in snapshots:
        sub.box.push(state.hub.garble(text))


def _snapshots(state: SimState, event: str, pairs: list[str]) -> list[str]:
    if event not in TRADE_EVENTS:
        return []
    out: list[str] = []
    for pair in pairs:
        market = state.exchange.markets.get(pair)
        if market is None:
            continue
        if event == "AGGREGATED_ORDERBOOK_UPDATE":
            out.append(dumps(wire.ws_order_book(market)))
        elif event == "MARKET_SUMMARY_UPDATE":
            out.append(dumps(wire.ws_market_summary(market)))
    return out


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/account", account_stream)
    app.router.add_get("/ws/trade", trade_stream)
