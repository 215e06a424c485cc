"""Order routes: place (v1 async, v2 sync), status, open orders, history, cancel.

v1 semantics: validation failures are answered at once (400); an accepted order gets
``202 {"id","customerOrderId"}`` and is processed *after* the response, its outcome
arriving only on the account WebSocket (ORDER_PROCESSED, ORDER_STATUS_UPDATE, ...). Until
then a status lookup answers -1, as it may on VALR.

v2 semantics: processed before answering; ``201 {"id"}`` once it is on the book or done,
else ``400 {"orderId","code","message"}`` (-6 Insufficient Balance; other codes in
``heliosd.sim.errors``).

A customerOrderId already used by one of the account's open orders (or by an accepted v1
order not yet processed) is refused synchronously on both versions: 400 -11502.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.arrivals import ARRIVAL, ArrivalLog, logged
from heliosd.sim.auth import TRADE, VIEW
from heliosd.sim.context import SimState, int_param, json_response, state_of
from heliosd.sim.errors import (
    FAILED_CANCEL_MESSAGE,
    FAILURE_CODES,
    ApiError,
    duplicate_customer_order_id,
    invalid_order,
)
from heliosd.sim.orders import Order
from heliosd.sim.validation import OrderRequest, parse_cancel, parse_limit, parse_market

WRITE = (VIEW, TRADE)


def _parse(state: SimState, kind: str, body: Any) -> OrderRequest:
    specs = state.exchange.specs
    if kind == "limit":
        return parse_limit(body, specs)
    mids = {pair: market.mid for pair, market in state.exchange.markets.items()}
    return parse_market(body, specs, mids)


async def _accept(request: web.Request, kind: str) -> tuple[SimState, str, Order, OrderRequest]:
    """Authenticate, record, validate and create the order (shared by v1 and v2)."""
    state = state_of(request)
    ctx, body = await state.authed_json(request, WRITE)
    arrival = request.get(ARRIVAL)
    if arrival is not None:
        arrival.account = ctx.account_id
    received = state.record(ctx, request.path, body)
    try:
        req = _parse(state, kind, body)
        if state.account(ctx).customer_id_in_use(req.customer_order_id):
            raise duplicate_customer_order_id()
    except ApiError as error:
        received.error = error.body()
        raise
    order = state.exchange.new_order(ctx.account_id, req)
    received.accepted = True
    received.order_id = order.order_id
    received.customer_order_id = order.customer_order_id
    if arrival is not None:
        arrival.order_id = order.order_id
    return state, ctx.account_id, order, req


async def place_v1(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    state, _, order, req = await _accept(request, kind)
    state.later(lambda: state.exchange.execute(order, req))
    payload = {"id": order.order_id}
    if order.customer_order_id is not None:
        payload["customerOrderId"] = order.customer_order_id
    return json_response(payload, 202)


async def place_v2(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    state, _, order, req = await _accept(request, kind)
    reason = state.exchange.execute(order, req)
    if reason:
        raise ApiError(400, FAILURE_CODES[reason], reason, extra={"orderId": order.order_id})
    return json_response({"id": order.order_id}, 201)


def _visible(state: SimState, order: Order | None) -> Order | None:
    """The order as VALR's (lagging) read views show it: None while younger than the lag."""
    lag = state.faults.view_lag_s
    if order is None or lag <= 0:
        return order
    return order if order.created_at <= datetime.now(UTC) - timedelta(seconds=lag) else None


async def order_status(request: web.Request) -> web.Response:
    state = state_of(request)
    ctx, _ = await state.authed(request)
    pair = request.match_info["pair"]
    state.market(pair)
    acct = state.account(ctx)
    if "orderId" in request.match_info:
        order = acct.find_order(request.match_info["orderId"], None)
    else:
        order = acct.find_order(None, request.match_info["customerOrderId"])
    order = _visible(state, order)
    if order is None or order.pair != pair:
        raise invalid_order()
    return json_response(wire.order_status(order))


async def open_orders(request: web.Request) -> web.Response:
    state = state_of(request)
    ctx, _ = await state.authed(request)
    shown = [_visible(state, o) for o in state.account(ctx).open_orders.values()]
    return json_response([wire.open_order(o) for o in shown if o is not None])


async def order_history(request: web.Request) -> web.Response:
    """Finished orders, most recently updated first (``skip``, ``limit`` <= 100)."""
    state = state_of(request)
    ctx, _ = await state.authed(request)
    skip = int_param(request, "skip", 0, 10_000_000)
    limit = int_param(request, "limit", 100, 100)
    finished = [
        o for o in state.account(ctx).orders.values() if not o.is_open and _visible(state, o)
    ]
    finished.sort(key=lambda o: o.updated_at, reverse=True)
    return json_response([wire.order_summary(o) for o in finished[skip : skip + limit]])


async def order_summary(request: web.Request) -> web.Response:
    """One finished order; a live or unknown one is 400 -1 (valid for completed only)."""
    state = state_of(request)
    ctx, _ = await state.authed(request)
    acct = state.account(ctx)
    if "orderId" in request.match_info:
        order = acct.find_order(request.match_info["orderId"], None)
    else:
        order = acct.find_order(None, request.match_info["customerOrderId"])
    order = _visible(state, order)
    if order is None or order.is_open:
        raise invalid_order()
    return json_response(wire.order_summary(order))


async def cancel_v1(request: web.Request) -> web.Response:
    """202 (or 200, ``faults.v1_cancel_status``) with an empty body; the outcome is
    ORDER_STATUS_UPDATE or FAILED_CANCEL_ORDER."""
    state = state_of(request)
    ctx, body = await state.authed_json(request, WRITE)
    req = parse_cancel(body, state.exchange.specs)
    account_id = ctx.account_id

    def run() -> None:
        if state.exchange.cancel(account_id, req.pair, req.order_id, req.customer_order_id):
            return
        ref = req.order_id or req.customer_order_id or ""
        state.exchange.emit_account(account_id, wire.failed_cancel(ref, FAILED_CANCEL_MESSAGE))

    state.later(run)
    return web.Response(status=state.faults.v1_cancel_status)


async def cancel_v2(request: web.Request) -> web.Response:
    """200 ``{"id"}`` (the customerOrderId when cancelled by it); unknown/finished -> -1."""
    state = state_of(request)
    ctx, body = await state.authed_json(request, WRITE)
    req = parse_cancel(body, state.exchange.specs)
    order = state.exchange.cancel(ctx.account_id, req.pair, req.order_id, req.customer_order_id)
    if order is None:
        raise invalid_order()
    return json_response({"id": req.customer_order_id or order.order_id})


async def cancel_all(request: web.Request) -> web.Response:
    state = state_of(request)
    ctx, _ = await state.authed(request, WRITE)
    pair = request.match_info.get("pair")
    if pair is not None:
        state.market(pair)
    cancelled = state.exchange.cancel_all(ctx.account_id, pair)
    return json_response([{"orderId": o.order_id} for o in cancelled])


def _arrivals(request: web.Request) -> ArrivalLog:
    return state_of(request).arrivals


def add_routes(app: web.Application) -> None:
    r = app.router
    # Every placement request is in the order-arrival log (heliosd.sim.arrivals).
    r.add_post("/v1/orders/{kind:limit|market}", logged(_arrivals, place_v1))
    r.add_post("/v2/orders/{kind:limit|market}", logged(_arrivals, place_v2))
    r.add_get("/v1/orders/open", open_orders)
    r.add_get("/v1/orders/history", order_history)
    r.add_get("/v1/orders/history/summary/orderid/{orderId}", order_summary)
    r.add_get("/v1/orders/history/summary/customerorderid/{customerOrderId}", order_summary)
    r.add_get("/v1/orders/{pair}/orderid/{orderId}", order_status)
    r.add_get("/v1/orders/{pair}/customerorderid/{customerOrderId}", order_status)
    # Fixed paths before "/v1/orders/{pair}" so "order" is never taken for a pair.
    r.add_delete("/v1/orders/order", cancel_v1)
    r.add_delete("/v2/orders/order", cancel_v2)
    r.add_delete("/v1/orders", cancel_all)
    r.add_delete("/v1/orders/{pair}", cancel_all)
