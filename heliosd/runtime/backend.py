"""The control API's backend: :class:`heliosd.control.backend.ControlBackend` over the running
system's parts (the very objects that trade), handed over explicitly by the service once
they are all built.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import pluggy

from heliosd import store as st
from heliosd.control.backend import Actor, CloseRequest, OrderRequest
from heliosd.core.config import Settings
from heliosd.core.errors import NotFoundError
from heliosd.core.protocols import ExchangeClient, GateContext
from heliosd.core.types import Mode, OrderIntent, OrderState, TradingState, utcnow
from heliosd.core.venue import is_simulator
from heliosd.plugins.manager import Registry, plugin_records
from heliosd.risk.ledger import decimal_text
from heliosd.risk.mode import mode_json
from heliosd.store import Store, iso
from heliosd.trading import orders as od

if TYPE_CHECKING:
    from heliosd.notify import Notifications
    from heliosd.risk.account import AccountRisk
    from heliosd.risk.breakers import Breakers
    from heliosd.risk.equity import EquityRecorder
    from heliosd.risk.ledger import Ledger
    from heliosd.risk.mode import ModeOrchestrator
    from heliosd.risk.runner import MonitorRunner
    from heliosd.risk.stops import Stops
    from heliosd.runtime.metrics import DaemonMetrics
    from heliosd.trading.close import Closer
    from heliosd.trading.engine import Engine
    from heliosd.trading.fillcheck import FillCheck
    from heliosd.trading.marketdata import MarketData
    from heliosd.trading.router import ExecutionRouter
    from heliosd.trading.sink import VenueSink


async def store_alive(store: Store) -> bool:
    """The store's writer runs and the store answers a read within 5 s (the watchdog's and
    GET /api/health's test): a dead writer commits nothing, however well reads answer."""
    if not store.writer_alive:
        return False
    try:
        await asyncio.wait_for(store.read(lambda c: c.execute("SELECT 1").fetchone()), 5)
    except Exception:
        return False
    return True


class ServiceBackend:
    """Every control API method, each driving exactly one of the parts below.

    The lists an operator reads (mode history, audit, orders, fills) go through
    ``Store.read``, which sees every write submitted before the request (an order's fill,
    answered ``filled`` before its row commits), in a burst of fills too."""

    def __init__(
        self,
        *,
        settings: Settings,
        pm: pluggy.PluginManager,
        registry: Registry,
        store: Store,
        market: MarketData,
        breakers: Breakers,
        notifications: Notifications,
        ledgers: Mapping[Mode, Ledger],
        accounts: Mapping[Mode, AccountRisk],
        clients: Mapping[Mode, ExchangeClient],
        sinks: Mapping[Mode, VenueSink],
        router: ExecutionRouter,
        stops: Stops,
        closer: Closer,
        engine: Engine,
        orchestrator: ModeOrchestrator,
        equity: EquityRecorder,
        fillcheck: FillCheck,
        runner: MonitorRunner,
        gate_context: Callable[[], GateContext],
        started_at: datetime,
        metrics: DaemonMetrics,
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.registry = registry
        self.store = store
        self.market = market
        self.breakers = breakers
        self.notifications = notifications
        self.ledgers = ledgers
        self.accounts = accounts
        self.clients = clients
        self.sinks = sinks
        self.router = router
        self.stops = stops
        self.closer = closer
        self.engine = engine
        self.orchestrator = orchestrator
        self.equity = equity
        self.fillcheck = fillcheck
        self.runner = runner
        self.gate_context = gate_context
        self.started_at = started_at
        self.metrics = metrics

    async def get_mode(self) -> dict[str, Any]:
        state = self.store.mode_state()
        halt = self.breakers.halt_reason()
        # halted: any breaker, or the row says REDUCING/HALTED (trading_state, epoch and
        # state_reason come from mode_json).
        halted = halt is not None or state.trading_state is not TradingState.ACTIVE
        return {
            **mode_json(state), "halted": halted,
            "halt_reason": halt or state.state_reason or "",
            "live_venue": self.settings.valr.label,
            "live_is_simulator": is_simulator(self.settings.valr),
        }  # fmt: skip

    async def set_mode(
        self, mode: Mode, *, confirm_token: str | None, reason: str, actor: Actor
    ) -> dict[str, Any]:
        result = await self.orchestrator.switch(
            mode, confirm_token=confirm_token, reason=reason or "no reason given", actor=actor
        )
        return {**await self.get_mode(), **result}

    async def mode_history(self, limit: int) -> dict[str, Any]:
        return {"history": await self.store.read(lambda c: st.history(c, limit))}

    async def audit(self, limit: int) -> dict[str, Any]:
        return {"audit": await self.store.read(lambda c: st.audit_rows(c, limit))}

    async def emergency_stop(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        return await self.stops.emergency_stop(reason=reason, actor=actor)

    async def resume(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        result = await self.stops.resume(reason=reason, actor=actor)
        return {"halted": False, **result, **await self.get_mode()}

    async def halt(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        result = await self.stops.operator_halt(reason=reason, actor=actor)
        return {**await self.get_mode(), **result}

    async def engine_status(self) -> dict[str, Any]:
        return dict(self.engine.status())

    async def engine_start(self, *, actor: Actor) -> dict[str, Any]:
        return dict(await self.engine.start(self.settings.engine.strategy, actor=str(actor)))

    async def engine_stop(self, *, actor: Actor) -> dict[str, Any]:
        return dict(await self.engine.stop(actor=str(actor)))

    async def list_orders(self, *, state: str, limit: int) -> dict[str, Any]:
        open_only = state == "open"
        rows = await self.store.read(
            lambda c: od.with_fees(c, od.list_orders(c, open_only=open_only, limit=limit))
        )
        return {"orders": rows}

    async def get_order(self, order_id: int) -> dict[str, Any]:
        try:
            return {"order": await self.store.read(lambda c: od.get_order_row(c, order_id))}
        except KeyError:
            raise NotFoundError(f"no order {order_id}") from None

    async def order_fills(self, order_id: int) -> dict[str, Any]:
        """Stored fills of one order; for LIVE, checked against VALR's own trade history."""
        row = (await self.get_order(order_id))["order"]
        fills = await self.store.read(partial(od.fills_of_order, order_id=order_id))
        out: dict[str, Any] = {"order_id": order_id, "mode": row["mode"], "venue_checked": False,
                               "fills": [od.fill_json(f) for f in fills]}  # fmt: skip
        if row["mode"] == "LIVE" and fills:
            since = min(f.traded_at for f in fills)
            history = await self.clients[Mode.LIVE].trade_history(since=since)
            known = {f.trade_id for f in history}
            for item in out["fills"]:
                item["in_venue_history"] = item["trade_id"] in known
            out["venue_checked"] = True
        return out

    async def recent_fills(self, limit: int, mode: Mode | None) -> dict[str, Any]:
        found = await self.store.read(partial(od.recent_fills, limit=limit, mode=mode))
        return {"fills": [{"order_id": order_id, "mode": m, **od.fill_json(fill)}
                          for fill, order_id, m in found]}  # fmt: skip

    async def place_order(self, request: OrderRequest, *, actor: Actor) -> dict[str, Any]:
        intent = OrderIntent(
            pair=request.pair, side=request.side, type=request.type, quantity=request.quantity,
            price=request.price, reason=request.reason, source="manual",
        )  # fmt: skip
        return {"order": await self.router.submit(intent, actor=str(actor))}

    async def cancel_order(self, order_id: int, *, actor: Actor) -> dict[str, Any]:
        row = (await self.get_order(order_id))["order"]
        if not OrderState(row["state"]).is_open:
            return {"order": row, "cancelled": False}
        client = self.clients[Mode(row["mode"])]
        await client.cancel(row["pair"], exchange_order_id=row["exchange_order_id"],
                            customer_order_id=row["customer_order_id"])  # fmt: skip
        status = await client.order_status(
            row["pair"],
            exchange_order_id=row["exchange_order_id"],
            customer_order_id=row["customer_order_id"],
        )
        if status is not None:
            await self.sinks[Mode(row["mode"])].apply_order_status(status)
        await self.store.write(
            lambda c: st.audit(
                c,
                actor=str(actor),
                action="cancel_order",
                outcome="sent",
                details={"order": order_id},
            )
        )
        return {**await self.get_order(order_id), "cancelled": True}

    async def positions(self) -> dict[str, Any]:
        return {m.value.lower(): self.accounts[m].positions_json() for m in Mode} | {
            "mode": str(self.store.mode_state().mode)
        }

    async def close_positions(
        self, request: CloseRequest, *, confirm_token: str | None, actor: Actor
    ) -> dict[str, Any]:
        return await self.closer.close(request, confirm_token=confirm_token, actor=actor)

    async def pnl(self) -> dict[str, Any]:
        now = utcnow()
        out: dict[str, Any] = {"mode": str(self.store.mode_state().mode)}
        for m in Mode:
            snap = self.accounts[m].snapshot(now)
            out[m.value.lower()] = {
                **self.ledgers[m].pnl_json(now),
                "pending_buy_value": decimal_text(snap.pending_buy_value),
                "stale": list(snap.stale),
            }
        return out

    async def risk(self) -> dict[str, Any]:
        mode = self.store.mode_state().mode
        r = self.settings.risk
        account = self.accounts[mode]
        snap = account.snapshot()
        equity = snap.equity
        largest = Decimal(0)
        # Per asset, as the position limit counts it: held (with fills the venue's balance
        # does not show yet) plus pending BUYs.
        if equity > 0:
            for asset in set(snap.holdings) | set(snap.pending):
                if asset == snap.reference:
                    continue
                h = snap.holdings.get(asset)
                p = snap.pending.get(asset)
                price = h.price.value if h is not None else account.pricer.price(asset).value
                if price is None:
                    continue
                held = (h.total + max(h.unsettled, Decimal(0))) if h is not None else Decimal(0)
                value = held * price + (max(p.buy_value, p.buy_quantity * price) if p else 0)
                largest = max(largest, abs(value) / equity * 100)
        gross = snap.gross_exposure + snap.pending_buy_value
        leverage = gross / equity if equity > 0 else Decimal(0)

        def q(x: Decimal) -> str:
            return str(x.quantize(Decimal("0.01")))

        return {
            "mode": str(mode), "reference_currency": r.reference_currency, "equity": q(equity),
            "limits": {
                "max_position_pct": {"limit": str(r.max_position_pct), "use": q(largest)},
                "max_leverage": {"limit": str(r.max_leverage), "use": q(leverage)},
                "daily_loss_pct": {"limit": str(r.daily_loss_pct), "use": q(snap.daily_loss_pct)},
                "max_drawdown_pct": {"limit": str(r.max_drawdown_pct),
                                     "use": q(snap.drawdown_pct)},
            },
            "pending": account.pending_json(),
            "pending_buy_value": q(snap.pending_buy_value),
            "flows_today": q(snap.flows_today),
            "stale": list(snap.stale),
            "breakers": self.breakers.as_json(),
            "halted": self.breakers.halt_reason() is not None,
            "pairs": self._pairs_json(),
            "rules": [getattr(x, "name", "?") for x in self.router.rules],
        }  # fmt: skip

    def _pairs_json(self) -> dict[str, dict[str, Any]]:
        """Each traded pair's venue limits and current prices (live-smoke sizes from these)."""
        out: dict[str, dict[str, Any]] = {}
        for symbol in self.settings.valr.pairs:
            info = self.market.pair(symbol)
            if info is None:
                continue
            quote = self.market.quote(symbol)
            mark = self.market.mark(symbol)
            out[symbol] = {
                "base": info.base, "quote": info.quote, "min_base": str(info.min_base),
                "max_base": str(info.max_base), "min_quote": str(info.min_quote),
                "max_quote": str(info.max_quote), "tick_size": str(info.tick_size),
                "base_decimals": info.base_decimals, "active": info.active,
                "bid": None if quote is None or quote.bid is None else str(quote.bid),
                "ask": None if quote is None or quote.ask is None else str(quote.ask),
                "mark": None if mark is None else str(mark),
            }  # fmt: skip
        return out

    async def plugins(self) -> dict[str, Any]:
        return {
            "plugins": [r.as_json() for r in plugin_records(self.pm)],
            "risk_rules": [getattr(x, "name", "?") for x in self.router.rules],
            "gates": [getattr(x, "name", "?") for x in self.registry.gates],
            "monitors": [getattr(x, "name", "?") for x in self.registry.monitors],
            "strategies": sorted(self.registry.strategies),
            "exchanges": sorted(self.registry.exchanges),
            "notifiers": [getattr(x, "name", "?") for x in self.registry.notifiers],
        }

    async def health(self) -> tuple[bool, dict[str, Any]]:
        store_ok = await store_alive(self.store)
        live = self.clients[Mode.LIVE]
        streams = {
            f"{str(m).lower()}.{name}": {"up": up, "detail": detail, "since": since}
            for m, sink in self.sinks.items() for name, (up, detail, since) in sink.streams.items()
        }  # fmt: skip
        body = {
            "status": "ok" if store_ok else "degraded", "store": store_ok,
            "mode": str(self.store.mode_state().mode), "streams": streams,
            "started_at": iso(self.started_at), "halted": self.breakers.halt_reason() is not None,
            "ledger_errors": {str(m): [e.as_json() for e in self.ledgers[m].errors]
                              for m in Mode if self.ledgers[m].errors},
            # VALR's dead-man's switch confirmed on the live account socket now.
            "cancel_on_disconnect": bool(
                getattr(self.clients[Mode.LIVE], "cancel_on_disconnect_armed", False)
            ),
            **self.runner.health(),
            # VALR's /v1/public/status as last read and the measured clock offset (venue
            # minus local, ms); both null when unknown (or for a venue without them).
            "venue_status": getattr(live, "venue_status", None),
            "clock_skew_ms": getattr(live, "clock_skew_ms", None),
            # Fill gaps found and closed from VALR's trade history since start (fillcheck).
            "fill_gaps_closed": self.fillcheck.gaps_closed,
        }  # fmt: skip
        return store_ok, body

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        return self.notifications.subscribe()

    async def equity_points(self, mode: Mode, since: datetime | None) -> dict[str, Any]:
        return await self.equity.points(mode, since)

    async def scrape(self) -> bytes:
        return await self.metrics.exposition(self)

    async def backup(self, *, actor: Actor) -> dict[str, Any]:
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        path = await self.store.backup(self.settings.daemon.backup_dir / f"heliosd-{stamp}.db")
        await self.store.write(
            lambda c: st.audit(
                c, actor=str(actor), action="backup", outcome="written", details={"path": str(path)}
            )
        )
        return {"backup": str(path)}

    def doctor_context(self, *, notify: bool = False, actor: str = "heliosd") -> Any:
        """What ``heliosctl doctor`` checks (:mod:`heliosd.runtime.doctor`), taken now."""
        from heliosd.plugins.manager import config_sections
        from heliosd.runtime.doctor import DoctorContext

        return DoctorContext(
            settings=self.settings, gates=self.gate_context(), live=self.clients[Mode.LIVE],
            live_streams=dict(self.sinks[Mode.LIVE].streams), notifiers=self.registry.notifiers,
            plugins=plugin_records(self.pm), strategies=set(self.registry.strategies),
            config_sections=config_sections(self.pm), engine_running=self.engine.running,
            notify=notify, actor=actor,
        )  # fmt: skip

    async def doctor(self, *, notify: bool, actor: Actor) -> dict[str, Any]:
        from heliosd.runtime.doctor import run_doctor

        return await run_doctor(self.doctor_context(notify=notify, actor=str(actor)))
