"""Account routes: key info, balances, trade history, fees, margin and positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from heliosd.sim import wire
from heliosd.sim.accounts import Balance
from heliosd.sim.context import int_param, json_response, state_of, time_param
from heliosd.sim.errors import invalid_request


async def api_key_current(request: web.Request) -> web.Response:
    ctx, _ = await state_of(request).authed(request)
    return json_response(wire.api_key_info(ctx.key))


async def balances(request: web.Request) -> web.Response:
    state = state_of(request)
    ctx, _ = await state.authed(request)
    acct = state.account(ctx)
    exclude_zero = request.query.get("excludeZeroBalances", "").lower() == "true"
    # Without the filter VALR lists every currency it supports, zero rows included.
    codes = list(dict.fromkeys([*state.config.currencies(), *acct.balances]))
    rows = []
    for code in codes:
        bal = acct.balances.get(code) or Balance()
        if exclude_zero and not bal.total:
            continue
        rows.append(wire.balance_row(code, bal))
    return json_response(rows)


async def trade_history(request: web.Request) -> web.Response:
    """Newest first; ``skip``/``limit`` (<= 100, more is -11), ``startTime``/``endTime``
    (ISO-8601, inclusive), ``beforeId`` (a trade id: only older trades; unknown is -11)."""
    state = state_of(request)
    ctx, _ = await state.authed(request)
    pair = request.match_info.get("pair")
    if pair is not None:
        state.market(pair)
    skip = int_param(request, "skip", 0, 10_000_000)
    limit = int_param(request, "limit", 100, 100)
    start, end = time_param(request, "startTime"), time_param(request, "endTime")
    before_id = request.query.get("beforeId")
    rows = state.exchange.trade_rows(ctx.account_id, pair)
    if state.faults.view_lag_s > 0:  # VALR's history view lags its matching engine
        cutoff = datetime.now(UTC) - timedelta(seconds=state.faults.view_lag_s)
        rows = (t for t in rows if t.traded_at <= cutoff)
    if before_id is not None:
        ordered = list(rows)
        index = next((i for i, t in enumerate(ordered) if t.trade_id == before_id), None)
        if index is None:
            raise invalid_request()
        rows = iter(ordered[index + 1 :])
    page = []
    for trade in rows:
        if end is not None and trade.traded_at > end:
            continue
        if start is not None and trade.traded_at < start:
            break  # newest first: everything after this is older still
        if skip:
            skip -= 1
            continue
        page.append(wire.account_trade(trade))
        if len(page) >= limit:
            break
    return json_response(page)


async def trade_fees(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.authed(request)
    cfg = state.config
    # The maker rate in force: negative while maker rebates are paid (maker_rebate_bps).
    maker_pct = state.exchange.maker_fee_rate * 100
    return json_response(wire.fees(state.exchange.specs, maker_pct, cfg.taker_fee_pct))


async def margin_status(request: web.Request) -> web.Response:
    await state_of(request).authed(request)
    return json_response(wire.margin_status_v1())


async def open_positions(request: web.Request) -> web.Response:
    await state_of(request).authed(request)
    return json_response([])  # spot only: no positions, as for an unscoped primary key


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/account/api-keys/current", api_key_current)
    app.router.add_get("/v1/account/balances", balances)
    app.router.add_get("/v1/account/tradehistory", trade_history)
    app.router.add_get("/v1/account/fees/trade", trade_fees)
    app.router.add_get("/v1/account/{pair}/tradehistory", trade_history)
    app.router.add_get("/v1/margin/status", margin_status)
    app.router.add_get("/v1/positions/open", open_positions)
