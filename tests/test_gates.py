"""The pre-LIVE gates against real parts: the VALR client talking to the simulator over HTTP,
the paper exchange, real ledgers, a real store; and the mode orchestrator end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pluggy
import pytest
from aiohttp import web

from heliosd.builtin import gates as gates_module
from heliosd.builtin.gates import (
    GATE_NAMES,
    ClockSkew,
    EngineStopped,
    NoOpenPositions,
    NoPendingOrders,
    RiskConfigComplete,
    ValrCredentials,
    VenueOnline,
    builtin_gates,
    format_quantity,
)
from heliosd.builtin.paper import PaperExchange
from heliosd.builtin.valr.client import ValrClient
from heliosd.control.backend import Actor
from heliosd.core.config import (
    NotifySettings,
    PaperSettings,
    RiskSettings,
    Secret,
    Settings,
    parse_settings,
)
from heliosd.core.errors import ConfigError, ConfirmationRequired, GateRejected, InvalidConfirmToken
from heliosd.core.protocols import Gate, GateContext
from heliosd.core.types import (
    GateResult,
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    Quote,
    Side,
)
from heliosd.plugins import hookspecs
from heliosd.risk.ledger import Ledger
from heliosd.risk.mode import ModeOrchestrator
from heliosd.store import Store
from heliosd.testing import SimHandle
from heliosd.testing.contract import RecordingEvents, fast_valr_tuning, valr_settings
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData

D = Decimal
OPERATOR = Actor(uid=1000, user="operator")


class StoreOrders:
    """The store's open orders as the gate sees them (OrderQuery over the real SQLite file)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def open_orders(self, mode: Mode | None = None) -> Sequence[Mapping[str, Any]]:
        return await self._store.read(
            lambda c: od.list_orders(c, open_only=True, limit=1000, mode=mode)
        )


@dataclass
class World:
    sim: SimHandle
    settings: Settings
    market: MarketData
    store: Store
    live: ValrClient
    paper: PaperExchange
    paper_ledger: Ledger
    live_ledger: Ledger
    tmp: Path
    clients: list[ValrClient] = dataclasses.field(default_factory=list)
    engine_running: bool = False

    def client(self, key: str | None, secret: str | None, **valr: Any) -> ValrClient:
        client = ValrClient(
            valr_settings(self.sim.sim.rest_url, self.sim.sim.ws_url, key, secret, **valr),
            market=self.market,
            tuning=fast_valr_tuning(),
        )
        self.clients.append(client)
        return client

    def ctx(self, **changes: Any) -> GateContext:
        ctx = GateContext(
            settings=self.settings,
            live=self.live,
            paper=self.paper,
            paper_ledger=self.paper_ledger,
            live_ledger=self.live_ledger,
            market=self.market,
            orders=StoreOrders(self.store),
            pairs=self.market.pairs(),
            engine_running=self.engine_running,
        )
        return dataclasses.replace(ctx, **changes)


def complete_settings(sim: SimHandle, **valr: Any) -> Settings:
    base = valr_settings(sim.sim.rest_url, sim.sim.ws_url, sim.key, sim.secret, **valr)
    return base.replace(notify=NotifySettings(urls=(Secret("json://127.0.0.1:9/"),)))


def quote(pair: str, mid: Decimal) -> Quote:
    """A book 0.1 % wide around ``mid``."""
    half = mid / 2000
    return Quote(pair, mid - half, mid + half, mid, datetime.now(UTC))


def ledger(mode: Mode, market: MarketData, starting: Mapping[str, Decimal] | None) -> Ledger:
    return Ledger(mode, "ZAR", RiskSettings().tz, market.pairs(), market, starting)


@pytest.fixture
async def world(sim: SimHandle, tmp_path: Path) -> AsyncIterator[World]:
    settings = complete_settings(sim)
    market = MarketData()
    market.update(quote("BTCZAR", D(1000000)))
    market.update(quote("ETHZAR", D(50000)))
    store = await Store.open(tmp_path / "heliosd.db")
    paper = PaperExchange(market, PaperSettings(starting_balances={"ZAR": D(100000)}))
    await paper.start(RecordingEvents())
    live = ValrClient(settings, market=market, tuning=fast_valr_tuning())
    w = World(
        sim=sim,
        settings=settings,
        market=market,
        store=store,
        live=live,
        paper=paper,
        paper_ledger=ledger(Mode.PAPER, market, {"ZAR": D(100000)}),
        live_ledger=ledger(Mode.LIVE, market, None),
        tmp=tmp_path,
        clients=[live],
    )
    try:
        yield w
    finally:
        for client in w.clients:
            await client.close()
        await paper.close()
        await store.close()


async def check(gate: Gate, ctx: GateContext) -> GateResult:
    result = await gate.check(ctx)
    assert result.name == gate.name
    return result


# --------------------------------------------------------------------------- all pass


async def test_every_gate_passes_on_a_clean_setup(world: World) -> None:
    ctx = world.ctx()
    results = [await check(g, ctx) for g in builtin_gates()]
    assert [(r.name, r.ok, r.reason) for r in results] == [(n, True, "") for n in GATE_NAMES]


def test_the_plugin_registers_the_seven_gates() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(gates_module)
    registered: list[Gate] = []
    pm.hook.heliosd_register_gates(register=registered.append, config=Settings())
    assert [g.name for g in registered] == list(GATE_NAMES)
    assert GATE_NAMES == (
        "no_open_positions", "no_pending_orders", "valr_credentials", "risk_config_complete",
        "clock_skew", "venue_online", "engine_stopped",
    )  # fmt: skip


def test_quantities_show_at_least_four_decimals() -> None:
    assert format_quantity(D("0.01")) == "0.0100"
    assert format_quantity(D("0.5")) == "0.5000"
    assert format_quantity(D("2")) == "2.0000"
    assert format_quantity(D("0.00012345")) == "0.00012345"
    assert format_quantity(D("-0.25")) == "-0.2500"


# --------------------------------------------------------------------------- positions


async def test_a_coin_balance_on_the_live_account_is_an_open_position(world: World) -> None:
    world.sim.sim.fund("0", "BTC", D("0.01"))
    result = await check(NoOpenPositions(), world.ctx())
    assert not result.ok
    assert result.reason == "open positions exist (BTCZAR 0.0100 live)"


async def test_dust_below_the_minimum_order_is_not_a_position(world: World) -> None:
    # 0.00005 BTC is under BTCZAR's 0.0001 minimum: VALR would not take an order to sell it.
    world.sim.sim.fund("0", "BTC", D("0.00005"))
    # 0.0001 ETH at 50,000 ZAR is worth 5 ZAR, under the 10 ZAR minimum total.
    world.sim.sim.fund("0", "ETH", D("0.0001"))
    assert (await check(NoOpenPositions(), world.ctx())).ok


async def test_paper_and_live_positions_are_both_listed_and_labelled(world: World) -> None:
    world.sim.sim.fund("0", "BTC", D("0.01"))
    paper_ledger = ledger(Mode.PAPER, world.market, {"ZAR": D(100000), "ETH": D("0.5")})
    result = await check(NoOpenPositions(), world.ctx(paper_ledger=paper_ledger))
    assert result.reason == "open positions exist (BTCZAR 0.0100 live; ETHZAR 0.5000 paper)"


async def test_a_paper_position_from_fills_counts(world: World) -> None:
    from heliosd.core.types import Fill

    world.paper_ledger.apply_fill(
        Fill("t1", "BTCZAR", Side.BUY, D(1000000), D("0.0025"), D(0), "ZAR", datetime.now(UTC))
    )
    result = await check(NoOpenPositions(), world.ctx())
    assert result.reason == "open positions exist (BTCZAR 0.0025 paper)"


async def test_positions_fail_closed_when_the_live_account_cannot_be_read(world: World) -> None:
    unknown = world.client("c" * 64, "d" * 64)
    result = await check(NoOpenPositions(), world.ctx(live=unknown))
    assert not result.ok
    assert result.reason.startswith("cannot check live positions (")
    assert "API-key is invalid" in result.reason


async def test_positions_fail_closed_for_a_pair_without_limits(world: World) -> None:
    settings = world.settings.replace(valr=world.settings.valr.replace(pairs=("BTCZAR", "XRPZAR")))
    result = await check(NoOpenPositions(), world.ctx(settings=settings))
    assert result.reason == "cannot check open positions (no pair limits for XRPZAR)"


# --------------------------------------------------------------------------- orders


async def test_a_resting_order_at_valr_is_pending_and_counted_once(world: World) -> None:
    await world.live.place(
        PlaceRequest("hd-rest1", "BTCZAR", Side.BUY, OrderType.LIMIT, D("0.001"), D(900000))
    )
    await world.live.place(
        PlaceRequest("hd-rest2", "BTCZAR", Side.BUY, OrderType.LIMIT, D("0.001"), D(890000))
    )
    # heliosd's own row of the first order (LIVE, placed) is the same order, not a third.
    intent = OrderIntent("BTCZAR", Side.BUY, OrderType.LIMIT, D("0.001"), D(900000))
    await world.store.write(
        lambda c: od.insert_order(c, od.NewOrder(Mode.LIVE, intent, intent.quantity, (), "t",
                                                 OrderState.PLACED, "hd-rest1"))
    )  # fmt: skip
    assert len(world.sim.sim.open_orders("0")) == 2
    result = await check(NoPendingOrders(), world.ctx())
    assert not result.ok
    assert result.reason == "pending orders exist (2 open on BTCZAR at VALR)"


async def test_paper_orders_resting_or_stored_are_pending(world: World) -> None:
    await world.paper.place(
        PlaceRequest("hd-paper1", "ETHZAR", Side.BUY, OrderType.LIMIT, D("0.1"), D(40000))
    )
    intent = OrderIntent("ETHZAR", Side.BUY, OrderType.LIMIT, D("0.1"), D(40000))
    for cid, state in (("hd-paper1", OrderState.PLACED), ("hd-paper2", OrderState.SENT)):
        await world.store.write(
            lambda c, cid=cid, state=state: od.insert_order(
                c, od.NewOrder(Mode.PAPER, intent, intent.quantity, (), "t", state, cid)
            )
        )
    # A finished order is not pending.
    await world.store.write(
        lambda c: od.insert_order(c, od.NewOrder(Mode.PAPER, intent, intent.quantity, (), "t",
                                                 OrderState.FILLED, "hd-paper3"))
    )  # fmt: skip
    result = await check(NoPendingOrders(), world.ctx())
    assert result.reason == (
        "pending orders exist (1 open on ETHZAR at the paper venue; 1 open on ETHZAR in paper)"
    )


# --------------------------------------------------------------------------- credentials


async def test_an_unknown_key_is_invalid_with_valrs_message(world: World) -> None:
    result = await check(ValrCredentials(), world.ctx(live=world.client("c" * 64, "d" * 64)))
    assert not result.ok
    assert result.reason == "invalid VALR credentials (API-key is invalid)"


async def test_missing_credentials_are_invalid(world: World) -> None:
    result = await check(ValrCredentials(), world.ctx(live=world.client(None, None)))
    assert not result.ok
    assert result.reason.startswith("invalid VALR credentials (")


async def test_a_key_without_trade_permission_is_refused(world: World) -> None:
    key, secret = world.sim.add_key("viewer", ("View access",))
    result = await check(ValrCredentials(), world.ctx(live=world.client(key, secret)))
    assert (result.ok, result.reason) == (False, "API key lacks Trade permission")


async def test_a_key_that_can_withdraw_is_refused(world: World) -> None:
    key, secret = world.sim.add_key("withdrawer", ("View access", "Trade", "Withdraw"))
    result = await check(ValrCredentials(), world.ctx(live=world.client(key, secret)))
    assert (result.ok, result.reason) == (False, "API key has Withdraw permission")


async def test_a_key_that_can_transfer_out_is_refused_and_only_stricter_is_configurable(
    world: World,
) -> None:
    key, secret = world.sim.add_key("mover", ("View access", "Trade", "Internal Transfer"))
    result = await check(ValrCredentials(), world.ctx(live=world.client(key, secret)))
    assert (result.ok, result.reason) == (False, "API key has Internal Transfer permission")
    # Stricter: valr.refused_permissions refuses more.
    key, secret = world.sim.add_key("linker", ("View access", "Trade", "Link bank account"))
    strict = world.settings.replace(
        valr=world.settings.valr.replace(refused_permissions=("Link Bank Account",))
    )
    result = await check(
        ValrCredentials(), world.ctx(live=world.client(key, secret), settings=strict)
    )
    assert (result.ok, result.reason) == (False, "API key has Link bank account permission")
    # Looser is not possible: the old switch may no longer be turned off.
    with pytest.raises(ConfigError, match=r"refuse_withdraw_permission\] cannot be false"):
        parse_settings({"valr": {"refuse_withdraw_permission": False}})


# --------------------------------------------------------------------------- risk config


async def test_incomplete_risk_configuration_says_what_is_missing(world: World) -> None:
    no_urls = world.settings.replace(notify=NotifySettings())
    result = await check(RiskConfigComplete(), world.ctx(settings=no_urls))
    assert result.reason == "risk configuration incomplete (no notification URL in [notify] urls)"

    loose = world.settings.replace(risk=RiskSettings(max_leverage=D(20), daily_loss_pct=D(20)))
    result = await check(RiskConfigComplete(), world.ctx(settings=loose))
    assert result.reason.startswith("risk configuration incomplete (max_leverage 20 not in")
    assert "daily_loss_pct (20) < max_drawdown_pct (15)" in result.reason


# --------------------------------------------------------------------------- clock


@pytest.fixture
async def skewed_valr() -> AsyncIterator[Any]:
    """A loopback server answering /v1/public/time ``skew`` seconds off (VALR's format)."""
    state = {"skew": 0.0}

    async def server_time(_: web.Request) -> web.Response:
        now = datetime.now(UTC) + timedelta(seconds=state["skew"])
        text = now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        return web.json_response({"epochTime": int(now.timestamp()), "time": text})

    app = web.Application()
    app.router.add_get("/v1/public/time", server_time)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("skew", [3.2, -3.2])
async def test_clock_skew_beyond_the_limit_is_refused(
    world: World, skewed_valr: Any, skew: float
) -> None:
    state, url = skewed_valr
    state["skew"] = skew
    client = ValrClient(valr_settings(url, "ws://127.0.0.1:9", None, None),
                        tuning=fast_valr_tuning())  # fmt: skip
    world.clients.append(client)
    result = await check(ClockSkew(), world.ctx(live=client))
    assert (result.ok, result.reason) == (False, "clock skew 3.2 s")


async def test_clock_skew_within_the_limit_passes(world: World, skewed_valr: Any) -> None:
    state, url = skewed_valr
    state["skew"] = 1.5
    client = ValrClient(valr_settings(url, "ws://127.0.0.1:9", None, None),
                        tuning=fast_valr_tuning())  # fmt: skip
    world.clients.append(client)
    assert (await check(ClockSkew(), world.ctx(live=client))).ok


async def test_clock_skew_fails_closed_when_valr_cannot_be_asked(world: World) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    client = ValrClient(valr_settings("http://127.0.0.1:9", "ws://127.0.0.1:9", None, None),
                        tuning=fast_valr_tuning())  # fmt: skip
    world.clients.append(client)
    result = await check(ClockSkew(), world.ctx(live=client))
    assert not result.ok
    assert result.reason.startswith("cannot check clock skew (")


class WithoutClockSkew:
    """A third-party client written before ``ExchangeClient`` declared ``clock_skew()``: it
    only answers ``server_time()`` (through a real VALR client on the skewed server)."""

    name = "legacy"

    def __init__(self, inner: ValrClient) -> None:
        self._inner = inner

    async def server_time(self) -> datetime:
        return await self._inner.server_time()


class OwnFigure(WithoutClockSkew):
    """A client with its own skew figure, which may disagree with ``server_time()``."""

    def __init__(self, inner: ValrClient, figure: float) -> None:
        super().__init__(inner)
        self.figure = figure

    def clock_skew(self) -> float:
        return self.figure


def skewed_client(world: World, url: str) -> ValrClient:
    client = ValrClient(valr_settings(url, "ws://127.0.0.1:9", None, None),
                        tuning=fast_valr_tuning())  # fmt: skip
    world.clients.append(client)
    return client


@pytest.mark.parametrize(("skew", "ok"), [(3.2, False), (-3.2, False), (1.5, True)])
async def test_clock_skew_of_a_client_without_the_method_is_measured_by_comparison(
    world: World, skewed_valr: Any, skew: float, ok: bool
) -> None:
    state, url = skewed_valr
    state["skew"] = skew
    legacy = WithoutClockSkew(skewed_client(world, url))
    result = await check(ClockSkew(), world.ctx(live=legacy))
    assert (result.ok, result.reason) == ((True, "") if ok else (False, "clock skew 3.2 s"))


async def test_clock_skew_unknown_to_the_client_falls_back_to_comparison(
    world: World, skewed_valr: Any
) -> None:
    state, url = skewed_valr
    state["skew"] = 3.2
    unknown = OwnFigure(skewed_client(world, url), float("inf"))
    result = await check(ClockSkew(), world.ctx(live=unknown))
    assert (result.ok, result.reason) == (False, "clock skew 3.2 s")


async def test_clock_skew_the_client_reports_is_preferred(world: World, skewed_valr: Any) -> None:
    state, url = skewed_valr
    state["skew"] = 0.0  # by our own comparison all is well ...
    knows_better = OwnFigure(skewed_client(world, url), -5.0)  # ... the client knows better
    result = await check(ClockSkew(), world.ctx(live=knows_better))
    assert (result.ok, result.reason) == (False, "clock skew 5.0 s")


# --------------------------------------------------------------------------- venue status


async def test_venue_read_only_refuses_even_when_the_last_poll_said_online(world: World) -> None:
    assert (await check(VenueOnline(), world.ctx())).ok
    assert world.live.venue_status == "online"
    world.sim.sim.set_read_only(True)  # maintenance starts after the client's last poll
    result = await check(VenueOnline(), world.ctx())
    assert (result.ok, result.reason) == (False, "VALR is read-only, not online")
    assert world.live.venue_status == "read-only"  # the gate's read is the client's too
    world.sim.sim.set_read_only(False)
    assert (await check(VenueOnline(), world.ctx())).ok


async def test_venue_status_fails_closed_when_valr_cannot_be_asked(world: World) -> None:
    client = ValrClient(valr_settings("http://127.0.0.1:9", "ws://127.0.0.1:9", None, None),
                        tuning=fast_valr_tuning())  # fmt: skip
    world.clients.append(client)
    result = await check(VenueOnline(), world.ctx(live=client))
    assert not result.ok
    assert result.reason.startswith("cannot check VALR status ("), result.reason


async def test_venue_status_fails_closed_on_an_answer_without_a_status(world: World) -> None:
    async def status(request: web.Request) -> web.Response:
        return web.json_response({"state": "online"})  # not VALR's key: unknown, not online

    app = web.Application()
    app.router.add_get("/v1/public/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = skewed_client(world, f"http://127.0.0.1:{port}")
        result = await check(VenueOnline(), world.ctx(live=client))
        assert (result.ok, result.reason.split(" (")[0]) == (False, "cannot check VALR status")
        assert "unreadable status" in result.reason
    finally:
        await runner.cleanup()


async def test_a_live_client_that_reports_no_status_is_refused(world: World) -> None:
    legacy = WithoutClockSkew(world.live)  # answers server_time() only
    result = await check(VenueOnline(), world.ctx(live=legacy))
    assert (result.ok, result.reason) == (
        False, "cannot check VALR status (the live client reports none)",
    )  # fmt: skip


# --------------------------------------------------------------------------- engine


async def test_a_running_engine_refuses(world: World) -> None:
    result = await check(EngineStopped(), world.ctx(engine_running=True))
    assert (result.ok, result.reason) == (False, "engine is running")


# --------------------------------------------------------------------------- orchestrator


class Exploding:
    name = "exploding"

    async def check(self, ctx: GateContext) -> GateResult:
        raise RuntimeError("boom")


class Hanging:
    name = "hanging"

    async def check(self, ctx: GateContext) -> GateResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def orchestrator(
    world: World, extra: Sequence[Gate] = (), timeout: float = 5.0
) -> ModeOrchestrator:
    gates = [*builtin_gates(), *extra]
    return ModeOrchestrator(
        world.store,
        gates=lambda: gates,
        gate_context=lambda: world.ctx(engine_running=world.engine_running),
        gate_timeout_s=timeout,
        backup_dir=world.tmp / "backups",
    )


async def history(store: Store) -> list[dict[str, Any]]:
    from heliosd import store as st

    return await store.read(lambda c: st.history(c, 10))


async def test_refused_switch_leaves_paper_and_lists_every_gate(world: World) -> None:
    world.sim.sim.fund("0", "BTC", D("0.01"))
    world.engine_running = True
    orch = orchestrator(world)
    with pytest.raises(GateRejected) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    assert info.value.message == (
        "Cannot switch to LIVE: open positions exist (BTCZAR 0.0100 live); engine is running"
    )
    gates = {g["name"]: (g["ok"], g["reason"]) for g in info.value.details["gates"]}
    assert set(gates) == set(GATE_NAMES)
    assert gates["no_pending_orders"] == (True, "")
    assert world.store.mode_state().mode is Mode.PAPER
    assert await history(world.store) == []


async def test_all_gates_pass_then_confirm_switches_to_live_once(world: World) -> None:
    orch = orchestrator(world)
    with pytest.raises(ConfirmationRequired) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go live", actor=OPERATOR)
    token = info.value.details["confirm_token"]
    assert all(g["ok"] for g in info.value.details["gates"])
    assert world.store.mode_state().mode is Mode.PAPER

    answer = await orch.switch(Mode.LIVE, confirm_token=token, reason="go live", actor=OPERATOR)
    assert answer["mode"] == "LIVE"
    assert answer["changed"] is True
    state = world.store.mode_state()
    assert (state.mode, state.verified) == (Mode.LIVE, True)
    assert Path(answer["backup"]).exists()
    assert [(h["old_mode"], h["new_mode"]) for h in await history(world.store)] == [
        ("PAPER", "LIVE")
    ]

    # Back to PAPER (always allowed); the spent token does not bring LIVE back.
    await orch.switch(Mode.PAPER, confirm_token=None, reason="done", actor=OPERATOR)
    with pytest.raises(InvalidConfirmToken):
        await orch.switch(Mode.LIVE, confirm_token=token, reason="again", actor=OPERATOR)
    assert world.store.mode_state().mode is Mode.PAPER


async def test_confirmation_re_runs_the_gates(world: World) -> None:
    orch = orchestrator(world)
    with pytest.raises(ConfirmationRequired) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    # Between the two requests a position appears on the live account.
    world.sim.sim.fund("0", "BTC", D("0.01"))
    with pytest.raises(GateRejected, match=r"open positions exist \(BTCZAR 0\.0100 live\)"):
        await orch.switch(
            Mode.LIVE, confirm_token=info.value.details["confirm_token"], reason="go",
            actor=OPERATOR,
        )  # fmt: skip
    assert world.store.mode_state().mode is Mode.PAPER


async def test_a_gate_that_raises_or_hangs_refuses(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    orch = orchestrator(world, extra=[Exploding(), Hanging()], timeout=0.5)
    with (
        caplog.at_level(logging.WARNING, logger="heliosd.risk.mode"),
        pytest.raises(GateRejected) as info,
    ):
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    assert info.value.message == (
        "Cannot switch to LIVE: gate exploding failed: RuntimeError: boom; "
        "gate hanging timed out after 0.5 s"
    )
    assert [r.getMessage() for r in caplog.records] == ["gate exploding raised RuntimeError: boom"]
    assert world.store.mode_state().mode is Mode.PAPER


@pytest.mark.logs_exception("prune blew up")
async def test_a_failing_after_backup_hook_never_fails_the_switch(world: World) -> None:
    """Pruning old backups runs after the pre-LIVE backup; housekeeping that breaks (here a
    hook that raises) is logged and the confirmed switch still happens."""
    seen: list[Path] = []

    async def broken(path: Path) -> None:
        seen.append(path)
        raise RuntimeError("prune blew up")

    orch = ModeOrchestrator(
        world.store, gates=builtin_gates, gate_timeout_s=5.0, backup_dir=world.tmp / "backups",
        gate_context=lambda: world.ctx(engine_running=False), after_backup=broken,
    )  # fmt: skip
    with pytest.raises(ConfirmationRequired) as info:
        await orch.switch(Mode.LIVE, confirm_token=None, reason="go", actor=OPERATOR)
    token = info.value.details["confirm_token"]
    answer = await orch.switch(Mode.LIVE, confirm_token=token, reason="go", actor=OPERATOR)
    assert answer["mode"] == "LIVE" and seen == [Path(answer["backup"])]
    assert world.store.mode_state().mode is Mode.LIVE
