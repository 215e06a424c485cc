"""The contract of heliosd/trading/router.py (with router_risk.py and router_reports.py):
ExecutionRouter.submit / submit_closing / evaluate.

Real parts: the project's Store on a SQLite file in tmp_path, real Ledgers, MarketData,
Breakers, OrderCounters with AccountRisk and the built-in rules (bench/risk_path.py's Rig).
The only double is the exchange client at the venue boundary; it reads the database while
the router is calling it, so "stored before sent" is seen, not assumed.

Pinned here: the mode is read at execution time and picks the client per order; the order
row exists (state new, its verdicts) before the client runs; every venue outcome (placed,
refused, transient, auth, unknown, a client that breaks its contract, a revoked permit) is
stored, journaled once to the listener and raised as documented, with the permit released
or parked; a store that cannot record the order sends nothing; a LIVE row nobody sealed
refuses everything and raises the alert; verdicts combine (smallest cap, any reject,
fail-closed rule answers); the latch reads halting breakers from the cache; LIVE refusals
and answers enqueue their notice in the order's own transaction; submit_closing's
market-SELL-of-the-holding rule, judged on the named account's ledger.

Covered elsewhere (not repeated here):
- tests/test_router_permits.py: stops and halts racing an order (epoch moved -> stored
  rejected, permits revoked in the client's wait, P6), HALTED/REDUCING through submit, the
  closing path's refusals of a buy/limit/oversized sell and its integrity check.
- tests/test_router_scenarios.py: every built-in rule through evaluate over a grid (fail
  closed, caps within the pair, emergency and plugin breakers' latch).
- tests/test_router_verdicts.py: hand-built verdicts (string actions, float/NaN/zero caps)
  through a daemon.
- tests/test_risk_path.py: a rule that raises synchronously, rule names, shared valuations.
- tests/test_account_e2e.py: buys submitted together are not all accepted uncapped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heliosd.core.config import parse_settings
from heliosd.core.errors import (
    AuthError,
    ExchangeRejected,
    HeliosError,
    ModeIntegrityError,
    OutcomeUnknownError,
    PermitRevoked,
    RiskRejected,
    TransientError,
)
from heliosd.core.protocols import Event
from heliosd.core.types import (
    Balance,
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    PlaceResult,
    Side,
    Verdict,
    VerdictAction,
)
from heliosd.risk.account import AccountRisk
from heliosd.risk.breakers import DAILY_LOSS, trip_sql
from heliosd.risk.ledger import Ledger
from heliosd.risk.state import OPERATOR_HALT, UNCLEAN_EXIT
from heliosd.store import set_mode
from heliosd.testing import wait_for
from heliosd.trading import orders as od
from heliosd.trading.router import ExecutionRouter

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import risk_path  # type: ignore[import-not-found]  # noqa: E402

D = Decimal
FEW = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Venue:
    """The exchange-client double of one mode. ``answer`` decides each placement (return a
    PlaceResult or raise); the stored row and the permit board are read while it runs."""

    def __init__(self, rig: Rig, mode: Mode, *, honours: bool = True) -> None:
        self.rig = rig
        self.name = f"venue-{mode}"
        self.honours_permits = honours
        self.requests: list[PlaceRequest] = []
        self.rows_seen: list[dict[str, Any]] = []  # the stored order while place() ran
        self.on_wire_seen: list[int] = []
        self.placing_seen: list[set[str]] = []
        self.answer: Callable[[PlaceRequest], PlaceResult] = self.placed

    def placed(self, request: PlaceRequest) -> PlaceResult:
        return PlaceResult(OrderState.PLACED, f"{self.name}-{len(self.requests)}")

    async def place(self, request: PlaceRequest) -> PlaceResult:
        self.requests.append(request)
        cid = request.customer_order_id
        self.rows_seen.append(await self.rig.store.read(lambda c: od.order_json(c.execute(
            od._SELECT + " WHERE customer_order_id = ?", (cid,)
        ).fetchone())))  # fmt: skip
        self.on_wire_seen.append(len(self.rig.router.permits.on_wire()))
        self.placing_seen.append(set(self.rig.counters.placing))
        return self.answer(request)


class Timings:
    def __init__(self) -> None:
        self.risk: list[float] = []
        self.trips: list[tuple[Mode, str]] = []

    def observe_risk_path(self, seconds: float) -> None:
        self.risk.append(seconds)

    def observe_round_trip(self, mode: Mode, outcome: str, seconds: float) -> None:
        self.trips.append((mode, outcome))


class Rig:
    def __init__(self, base: risk_path.Rig) -> None:
        self.base = base
        self.store = base.store
        s = base.settings
        ref, tz, pairs = s.risk.reference_currency, s.risk.tz, base.market.pairs()
        self.paper = base.ledger  # ZAR 1,000,000, BTC 0.1, ETH 2
        self.live = Ledger(Mode.LIVE, ref, tz, pairs, base.market)
        self.live.set_balances([Balance("ZAR", D(500_000)), Balance("BTC", D("0.5"))],
                               snapshot=True)  # fmt: skip
        self.ledgers: Any = {Mode.PAPER: self.paper, Mode.LIVE: self.live}
        self.venues = {m: Venue(self, m) for m in Mode}
        self.counters = od.OrderCounters()
        for mode, ledger in self.ledgers.items():
            self.counters.accounts[mode] = AccountRisk(mode, ledger, base.market)
        self.events: list[tuple[str, dict[str, Any], str | None]] = []  # kind, data, row state
        self.orders: list[tuple[dict[str, Any], str]] = []
        self.alerts: list[str] = []
        self.timings = Timings()

        def enqueue(conn: sqlite3.Connection, event: Event) -> None:
            # The order's row as the enqueuing transaction sees it (the same transaction).
            found = conn.execute(
                "SELECT state FROM orders WHERE id = ?", (event.data.get("order_id"),)
            ).fetchone()
            self.events.append((event.kind, dict(event.data), found and found[0]))

        async def alert(reason: str) -> None:
            self.alerts.append(reason)

        clients: Any = self.venues
        self.router = ExecutionRouter(
            store=base.store, settings=s, clients=clients, ledgers=self.ledgers,
            market=base.market, breakers=base.breakers, counters=self.counters, rules=(),
            enqueue=enqueue, on_order=lambda row, mode: self.orders.append((row, mode)),
            on_integrity=alert, timings=self.timings,
        )  # fmt: skip

    async def rows(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: od.list_orders(c, open_only=False, limit=100)[::-1])

    async def go_live(self) -> None:
        """A confirmed, sealed switch: the LIVE the router trusts."""
        await self.store.write(lambda c: set_mode(self.store, c, Mode.LIVE, actor="op",
                                                  reason="test", confirmed=True))  # fmt: skip

    async def go_paper(self) -> None:
        await self.store.write(lambda c: set_mode(self.store, c, Mode.PAPER, actor="op",
                                                  reason="test", confirmed=True))  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with risk_path.Rig(tmp_path) as base:
        yield Rig(base)


def buy(qty: str = "0.001", price: str | None = "1000000") -> OrderIntent:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderIntent("BTCZAR", Side.BUY, kind, D(qty), None if price is None else D(price),
                       "test", "manual")  # fmt: skip


def market_sell(qty: str) -> OrderIntent:
    return OrderIntent("BTCZAR", Side.SELL, OrderType.MARKET, D(qty), None, "close", "manual")


class Fixed:
    """A rule that gives every order the same verdict."""

    def __init__(self, name: str, verdict: Verdict) -> None:
        self.name = name
        self.verdict = verdict

    def check(self, intent: OrderIntent, ctx: Any) -> Verdict:
        return self.verdict


# --------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize("honours", [True, False], ids=["honours_permits", "plugin_client"])
async def test_the_order_is_stored_new_with_its_verdicts_before_the_client_is_called(
    rig: Rig, honours: bool
) -> None:
    venue = rig.venues[Mode.PAPER]
    venue.honours_permits = honours
    rig.router.rules = rig.base.router.rules  # the built-in limits: their verdicts are stored
    epoch = rig.store.mode_state().epoch
    row = await rig.router.submit(buy(), actor="op")

    [request] = venue.requests
    [seen] = venue.rows_seen
    # While the client ran, the row was already durable: state new, the checked quantity and
    # every verdict, under the same customer order id the request carries.
    assert seen["state"] == "new" and seen["mode"] == "PAPER"
    assert seen["customer_order_id"] == request.customer_order_id == row["customer_order_id"]
    assert seen["quantity"] == "0.001" and seen["verdicts"] == row["verdicts"]
    assert {v["rule"] for v in seen["verdicts"]} >= {"position_limit", "leverage_limit"}
    assert venue.placing_seen == [{request.customer_order_id}]  # reconciliation keeps off it
    # A client that does not declare honours_permits is on the wire for its whole call.
    assert venue.on_wire_seen == [0 if honours else 1]
    assert request.permit is not None
    assert (request.permit.mode, request.permit.epoch) == (Mode.PAPER, epoch)
    assert (request.quantity, request.price) == (D("0.001"), D(1_000_000))
    # Afterwards: the venue's answer recorded, nothing left placing or outstanding.
    assert (row["state"], row["exchange_order_id"]) == ("placed", "venue-PAPER-1")
    assert rig.counters.placing == set() and rig.router.permits.outstanding() == []
    assert rig.router.permits.parked() == []
    assert rig.orders == [(row, "PAPER")]  # the listener hears the order once, final
    assert len(rig.timings.risk) == 1 and rig.timings.trips == [(Mode.PAPER, "placed")]
    assert rig.venues[Mode.LIVE].requests == []


async def test_each_order_goes_to_the_client_of_the_mode_the_database_holds_now(
    rig: Rig,
) -> None:
    modes = []
    for switch in (None, rig.go_live, rig.go_paper, rig.go_live):
        if switch is not None:
            await switch()
        state = rig.store.mode_state()
        row = await rig.router.submit(buy(), actor="op")
        modes.append(row["mode"])
        venue = rig.venues[state.mode]
        permit = venue.requests[-1].permit
        assert permit is not None and (permit.mode, permit.epoch) == (state.mode, state.epoch)
        assert venue.requests[-1].customer_order_id == row["customer_order_id"]
    assert modes == ["PAPER", "LIVE", "PAPER", "LIVE"]
    assert [len(rig.venues[m].requests) for m in (Mode.PAPER, Mode.LIVE)] == [2, 2]
    # Each switch is a new epoch, and each order carried the epoch it was checked under.
    epochs = [r.permit.epoch for m in Mode for r in rig.venues[m].requests if r.permit]
    assert len(set(epochs)) == 4
    # Distinct, venue-safe customer order ids.
    cids = [r["customer_order_id"] for r in await rig.rows()]
    assert len(set(cids)) == 4
    assert all(len(c) <= 50 and c.replace("-", "").isalnum() for c in cids)


async def test_a_capped_order_sends_and_stores_the_capped_quantity(rig: Rig) -> None:
    rig.router.rules = rig.base.router.rules
    row = await rig.router.submit(buy("0.5", price=None), actor="op")  # ~600k of ~1.1M ZAR
    [request] = rig.venues[Mode.PAPER].requests
    assert row["requested_quantity"] == "0.5"
    assert D(row["quantity"]) == request.quantity < D("0.5")
    caps = [v for v in row["verdicts"] if v["action"] == "cap"]
    assert caps and min(D(v["quantity"]) for v in caps) == request.quantity


# --------------------------------------------------------------------------- venue outcomes


def _raise(exc: BaseException) -> Callable[[PlaceRequest], PlaceResult]:
    def answer(request: PlaceRequest) -> PlaceResult:
        raise exc

    return answer


OUTCOMES = [
    pytest.param(_raise(ExchangeRejected("Insufficient Balance", venue_code=105)), "failed",
                 ExchangeRejected, "Insufficient Balance", False, id="venue_refused"),
    pytest.param(_raise(TransientError("503 from venue")), "failed", TransientError,
                 "503 from venue", False, id="transient"),
    pytest.param(_raise(AuthError("key lacks trade")), "failed", AuthError, "key lacks trade",
                 False, id="auth"),
    pytest.param(_raise(OutcomeUnknownError("timed out after send")), "sent", None, None, True,
                 id="outcome_unknown"),
    pytest.param(_raise(PermitRevoked("order not sent: drill")), "rejected", PermitRevoked,
                 "order not sent: drill", False, id="permit_revoked"),
    pytest.param(_raise(KeyError("bug")), "sent", TransientError, None, True,
                 id="client_broke_contract",
                 marks=pytest.mark.logs_exception("raised on place()")),
    pytest.param(lambda r: PlaceResult(OrderState.FAILED, None, "Post only order cancelled"),
                 "failed", None, "Post only order cancelled", False, id="answered_failed"),
    pytest.param(lambda r: PlaceResult(OrderState.FILLED, "x-9"), "filled", None, None, False,
                 id="filled_at_once"),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "state", "raises", "failed_reason", "parked"), OUTCOMES)
async def test_every_venue_outcome_is_stored_reported_once_and_raised_as_documented(
    rig: Rig,
    answer: Callable[[PlaceRequest], PlaceResult],
    state: str,
    raises: type[HeliosError] | None,
    failed_reason: str | None,
    parked: bool,
) -> None:
    venue = rig.venues[Mode.PAPER]
    venue.answer = answer
    if raises is None:
        row = await rig.router.submit(buy(), actor="op")
    else:
        with pytest.raises(raises) as info:
            await rig.router.submit(buy(), actor="op")
        assert type(info.value) is raises
        row = info.value.details["order"]
        if raises is ExchangeRejected:
            assert info.value.venue_code == 105  # type: ignore[attr-defined]
        if failed_reason is None:  # a broken client: the caller is told the outcome is unknown
            assert "exchange client failed: KeyError" in info.value.message
    assert len(venue.requests) == 1  # the router never resends on its own
    [stored] = await rig.rows()
    assert stored == row and row["state"] == state
    assert row["failed_reason"] == (failed_reason or "")
    assert rig.orders == [(row, "PAPER")]
    assert rig.counters.placing == set() and rig.router.permits.outstanding() == []
    # Sent with an unknown outcome: parked (a stop still names it), not forgotten (P5).
    assert [p.label for p in rig.router.permits.parked()] == (
        [row["customer_order_id"]] if parked else []
    )
    # A placement a revoked permit kept off the wire is not a round trip.
    assert rig.timings.trips == ([] if raises is PermitRevoked else [(Mode.PAPER, state)])


async def test_an_order_the_store_cannot_record_is_never_sent(rig: Rig) -> None:
    await rig.store.write(lambda c: c.execute(
        "CREATE TRIGGER no_orders BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'disk'); END"
    ))  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="disk"):
        await rig.router.submit(buy(), actor="op")
    assert rig.venues[Mode.PAPER].requests == []
    assert rig.router.permits.outstanding() == [] and rig.orders == []
    # The reservation made at evaluation was released: the account reserves nothing.
    assert rig.counters.accounts[Mode.PAPER].pending_json() == {}
    await rig.store.write(lambda c: c.execute("DROP TRIGGER no_orders"))
    assert (await rig.router.submit(buy(), actor="op"))["state"] == "placed"


# --------------------------------------------------------------------------- integrity


async def test_a_live_row_nobody_sealed_refuses_every_order_and_raises_the_alert(
    rig: Rig,
) -> None:
    await rig.store.write(lambda c: c.execute(
        "UPDATE trading_mode_state SET current_mode = 'LIVE'"
    ))  # fmt: skip
    assert not rig.store.mode_state().verified
    for intent in (buy(), market_sell("0.01")):  # a reducing sell too
        with pytest.raises(ModeIntegrityError, match="no confirmed switch to LIVE") as info:
            await rig.router.submit(intent, actor="op")
        row = info.value.details["order"]
        assert (row["mode"], row["state"]) == ("LIVE", "rejected")
        assert [v["rule"] for v in row["verdicts"]] == ["mode_integrity"]
        assert rig.alerts and "no confirmed switch to LIVE" in rig.alerts[-1]
    assert all(v.requests == [] for v in rig.venues.values())
    assert [r["state"] for r in await rig.rows()] == ["rejected", "rejected"]
    # The sealed switch through heliosd restores trust: the next order goes out on LIVE.
    await rig.go_live()
    assert (await rig.router.submit(buy(), actor="op"))["mode"] == "LIVE"


async def test_an_untrusted_live_row_raises_one_alert_not_one_per_refused_order(
    rig: Rig,
) -> None:
    """Found by this file: the alert was keyed on PRAGMA data_version, which every commit
    moves, so each refused order raised it again (an audit row and an urgent notice each)."""
    await rig.store.write(lambda c: c.execute(
        "UPDATE trading_mode_state SET current_mode = 'LIVE'"
    ))  # fmt: skip
    for _ in range(3):
        with pytest.raises(ModeIntegrityError):
            await rig.router.submit(buy(), actor="op")
    assert len(rig.alerts) == 1, rig.alerts


# --------------------------------------------------------------------------- verdicts combined


def _expected(requested: Decimal, verdicts: list[Verdict]) -> Decimal | None:
    """The combination rule, stated plainly: any reject (or a cap to nothing) rejects;
    otherwise the smallest cap below the request wins."""
    quantity = requested
    for v in verdicts:
        if v.action is VerdictAction.REJECT:
            return None
        if v.action is VerdictAction.CAP:
            if v.quantity is None or v.quantity <= 0:
                return None
            quantity = min(quantity, v.quantity)
    return quantity


VERDICT = st.one_of(
    st.builds(lambda: Verdict.accept("a")),
    st.builds(lambda q: Verdict.cap("c", q, "cap"),
              st.decimals(min_value=0, max_value=3, places=3)),
    st.builds(lambda r: Verdict.reject("r", r), st.sampled_from(["x", "y"])),
)  # fmt: skip


@FEW
@given(verdicts=st.lists(VERDICT, max_size=5), requested=st.sampled_from(["0.5", "1", "2"]))
async def test_verdicts_combine_to_the_smallest_cap_and_any_reject_rejects(
    rig: Rig, verdicts: list[Verdict], requested: str
) -> None:
    rig.router.rules = [Fixed(f"rule{i}", v) for i, v in enumerate(verdicts)]
    intent = buy(requested)
    evaluation = await rig.router.evaluate(intent)
    assert evaluation.mode is Mode.PAPER
    assert evaluation.verdicts == tuple(verdicts)  # every verdict kept, in rule order
    expected = _expected(intent.quantity, verdicts)
    assert evaluation.quantity == expected
    if expected is None:
        refusals = [v for v in verdicts if v.action is not VerdictAction.ACCEPT
                    and (v.action is VerdictAction.REJECT or not v.quantity)]  # fmt: skip
        assert evaluation.reason == "; ".join(
            f"{v.rule}: {v.reason or 'capped to nothing'}" for v in refusals
        )
    else:
        assert evaluation.reason == "" and D(0) < expected <= intent.quantity


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (lambda: asyncio.sleep(5), "rule slow timed out after 0.05 s"),
        (lambda: _failing(), "rule slow failed: feed down"),
        (lambda: _returns(None), "rule slow returned no verdict"),
        (lambda: _returns("accept"), "rule slow returned no verdict"),
    ],
    ids=["timeout", "raises", "none", "not_a_verdict"],
)
async def test_an_awaited_rule_that_fails_to_answer_rejects_the_order(
    tmp_path: Path, check: Callable[[], Awaitable[Any]], reason: str
) -> None:
    async with risk_path.Rig(tmp_path) as base:
        base.settings = parse_settings({
            "daemon": {"state_dir": str(tmp_path), "control_socket": str(tmp_path / "s.sock")},
            "risk": {"rule_timeout_s": "0.05"},
        })  # fmt: skip
        rig = Rig(base)

        class Slow:
            name = "slow"

            def check(self, intent: OrderIntent, ctx: Any) -> Awaitable[Any]:
                return check()

        rig.router.rules = [Fixed("fine", Verdict.accept("fine")), Slow()]
        with pytest.raises(RiskRejected) as info:
            await rig.router.submit(buy(), actor="op")
        row = info.value.details["order"]
        assert row["state"] == "rejected"
        assert [(v["rule"], v["action"]) for v in row["verdicts"]] == [
            ("fine", "accept"), ("slow", "reject"),
        ]  # fmt: skip
        assert row["verdicts"][1]["reason"] == reason
        assert info.value.message == f"Order refused by risk rules: slow: {reason}"
        assert rig.venues[Mode.PAPER].requests == []


async def _failing() -> Verdict:
    raise RuntimeError("feed down")


async def _returns(value: object) -> Any:
    return value


async def test_a_sync_rule_that_returns_no_verdict_rejects_the_order(rig: Rig) -> None:
    class Silent:
        name = "silent"

        def check(self, intent: OrderIntent, ctx: Any) -> Any:
            return None

    rig.router.rules = [Silent()]
    evaluation = await rig.router.evaluate(buy())
    assert evaluation.quantity is None
    assert evaluation.reason == "silent: rule silent returned no verdict"


async def test_rules_see_the_mode_the_order_is_evaluated_for(rig: Rig) -> None:
    seen: list[Mode] = []

    class Spy:
        name = "spy"

        def check(self, intent: OrderIntent, ctx: Any) -> Verdict:
            seen.append(ctx.mode)
            assert ctx.ledger is rig.ledgers[ctx.mode]
            assert ctx.now.tzinfo is not None
            return Verdict.accept("spy")

    rig.router.rules = [Spy()]
    assert (await rig.router.evaluate(buy())).mode is Mode.PAPER
    assert (await rig.router.evaluate(buy(), Mode.LIVE)).mode is Mode.LIVE
    await rig.go_live()
    assert (await rig.router.evaluate(buy())).mode is Mode.LIVE
    assert seen == [Mode.PAPER, Mode.LIVE, Mode.LIVE]


# --------------------------------------------------------------------------- the latch


@pytest.mark.parametrize("name", [OPERATOR_HALT, UNCLEAN_EXIT])
async def test_a_halting_breaker_in_the_cache_refuses_even_reductions(rig: Rig, name: str) -> None:
    """The row still says ACTIVE (the trip's commit not yet re-read); the cache alone is
    enough to refuse everything, a sell of a holding included."""
    rig.base.breakers.committed_trip(name, "ops look", None)
    assert rig.store.mode_state().trading_state.value == "ACTIVE"
    for intent in (buy(), market_sell("0.01")):
        evaluation = await rig.router.evaluate(intent)
        assert evaluation.quantity is None
        assert [v.rule for v in evaluation.verdicts] == ["halted"]
        assert evaluation.reason == (
            f"halted: trading is HALTED ({name}: ops look): nothing but cancels"
        )


async def test_a_tripped_plugin_breaker_passes_only_reductions(rig: Rig) -> None:
    rig.base.breakers.committed_trip("vol_spike", "volatility", None)
    refused = await rig.router.evaluate(buy())
    assert refused.quantity is None
    assert [v.rule for v in refused.verdicts] == ["breaker:vol_spike"]
    reducing = await rig.router.evaluate(market_sell("0.1"))  # all of the 0.1 BTC held
    assert reducing.quantity == D("0.1") and reducing.verdicts == ()


# --------------------------------------------------------------------------- notices


async def test_live_refusals_and_answers_enqueue_their_notice_with_the_order_paper_none(
    rig: Rig,
) -> None:
    rig.router.rules = [Fixed("nope", Verdict.reject("nope", "too risky"))]
    with pytest.raises(RiskRejected):
        await rig.router.submit(buy(), actor="op")  # PAPER: no notice
    rig.router.rules = ()
    await rig.router.submit(buy(), actor="op")
    assert rig.events == []

    await rig.go_live()
    rig.router.rules = [Fixed("nope", Verdict.reject("nope", "too risky"))]
    with pytest.raises(RiskRejected) as info:
        await rig.router.submit(buy(), actor="op")
    refused = info.value.details["order"]
    rig.router.rules = ()
    placed = await rig.router.submit(buy(), actor="op")
    # Each notice is enqueued inside the transaction that writes its row (it sees the row).
    assert [(kind, data["order_id"], state) for kind, data, state in rig.events] == [
        ("risk_rejected", refused["id"], "rejected"),
        ("order", placed["id"], "placed"),
    ]
    assert rig.events[0][1]["verdicts"] == [
        {"rule": "nope", "action": "reject", "reason": "too risky"}
    ]


# --------------------------------------------------------------------------- submit_closing


async def test_a_closing_order_is_judged_on_the_named_accounts_holding_and_sent_there(
    rig: Rig,
) -> None:
    """PAPER is the mode; LIVE holds 0.5 BTC and PAPER 0.1. A market sell of 0.3 closes on
    LIVE (sent to the LIVE client, its permit bound to the epoch, not the mode) and is
    refused on PAPER, whose holding it exceeds."""
    rig.router.rules = [Fixed("fine", Verdict.accept("fine"))]
    epoch = rig.store.mode_state().epoch
    row = await rig.router.submit_closing(market_sell("0.3"), actor="op", mode=Mode.LIVE)
    assert (row["mode"], row["state"], row["quantity"]) == ("LIVE", "placed", "0.3")
    [request] = rig.venues[Mode.LIVE].requests
    assert request.permit is not None and request.permit.any_mode
    assert (request.permit.mode, request.permit.epoch) == (Mode.LIVE, epoch)
    # Stored with who closed what, and the rules' verdicts after it.
    first, *rest = row["verdicts"]
    assert (first["rule"], first["action"]) == ("closing", "accept")
    assert first["reason"] == "closes a LIVE holding by op (mode now PAPER)"
    assert [v["rule"] for v in rest] == ["fine"]

    with pytest.raises(RiskRejected, match="closing order must reduce a PAPER holding") as info:
        await rig.router.submit_closing(market_sell("0.3"), actor="op", mode=Mode.PAPER)
    refused = info.value.details["order"]
    assert "must reduce a PAPER holding of BTCZAR" in refused["verdicts"][0]["reason"]
    assert (refused["mode"], refused["state"]) == ("PAPER", "rejected")
    assert [v["rule"] for v in refused["verdicts"]] == ["closing"]  # refused before any rule
    assert rig.venues[Mode.PAPER].requests == []
    assert len(rig.timings.risk) == 1  # only the evaluated order was timed
    # Exactly the PAPER holding is a close.
    exact = await rig.router.submit_closing(market_sell("0.1"), actor="op", mode=Mode.PAPER)
    assert (exact["mode"], exact["state"]) == ("PAPER", "placed")


async def test_a_closing_order_still_takes_the_rules_and_the_latch(rig: Rig) -> None:
    rig.router.rules = [Fixed("veto", Verdict.reject("veto", "not now"))]
    with pytest.raises(RiskRejected, match="veto: not now"):
        await rig.router.submit_closing(market_sell("0.1"), actor="op", mode=Mode.LIVE)
    rig.router.rules = ()
    until = None
    await rig.store.write(lambda c: trip_sql(c, DAILY_LOSS, mode=Mode.LIVE, reason="5%",
                                             until=until))  # fmt: skip
    # REDUCING: a close passes (it reduces) ...
    row = await rig.router.submit_closing(market_sell("0.1"), actor="op", mode=Mode.LIVE)
    assert row["state"] == "placed"
    # ... HALTED: nothing does, closing orders included.
    await rig.store.write(lambda c: trip_sql(c, OPERATOR_HALT, mode=None, reason="ops"))
    with pytest.raises(RiskRejected, match=r"trading is HALTED \(halt: ops"):
        await rig.router.submit_closing(market_sell("0.1"), actor="op", mode=Mode.LIVE)
    assert len(rig.venues[Mode.LIVE].requests) == 1


async def test_a_refused_closing_order_reserves_nothing(rig: Rig) -> None:
    with pytest.raises(RiskRejected):
        await rig.router.submit_closing(market_sell("0.6"), actor="op", mode=Mode.LIVE)
    assert rig.counters.accounts[Mode.LIVE].pending_json() == {}
    assert rig.router.permits.outstanding() == []


# --------------------------------------------------------------------------- cancelled on the wire


@pytest.mark.parametrize("on_wire", [True, False], ids=["sent", "never_sent"])
async def test_a_placement_cancelled_on_the_wire_is_outcome_unknown_not_forgotten(
    rig: Rig, on_wire: bool
) -> None:
    """A submit cancelled (a shutdown, the engine stopping) while its request is out may
    have reached the venue: the permit is parked and the row stored SENT, so a stop names it
    among its unresolved placements and reconciliation settles it. One cancelled before any
    request went out is simply released (found by this file: both were released)."""
    venue = rig.venues[Mode.PAPER]
    venue.honours_permits = not on_wire  # a plugin client: its whole place() is on the wire
    inside = asyncio.Event()

    async def hangs(request: PlaceRequest) -> PlaceResult:
        venue.requests.append(request)
        inside.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    venue.place = hangs  # type: ignore[method-assign]
    task = asyncio.ensure_future(rig.router.submit(buy(), actor="op"))
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [request] = venue.requests
    board = rig.router.permits
    assert board.outstanding() == [] and rig.counters.placing == set()
    if on_wire:
        assert board.parked() == [request.permit]

        async def stored_sent() -> bool:
            return [r["state"] for r in await rig.rows()] == ["sent"]

        await wait_for(stored_sent, 5, "the row stored SENT")
    else:
        assert board.parked() == []
        assert [r["state"] for r in await rig.rows()] == ["new"]
