"""Every built-in risk rule through ExecutionRouter.evaluate over a grid of scenarios.

Real parts: the bench's Store file and order stream, real Ledgers and MarketData, the rules
the real plugin manager registers. The grid crosses settings, account states (funded, long,
short, empty, not yet known, negative equity), breakers, pairs (unknown, unpriced, quoted in
another currency, priced by last trade only) and order shapes (zero, negative and huge
quantities, limit prices at, under, over the market, zero and negative).

The tests assert what must hold for every answer (fail closed, caps within the pair's
limits, the latch) and that an answer does not depend on what was asked before (the rules
keep texts of the last figures between orders).

Run as a script, it writes one canonical line per evaluation (every field's repr, the
verdict's repr and its stored JSON) for the heliosd on ``PYTHONPATH``::

    PYTHONPATH=/path/to/old/tree .venv/bin/python tests/test_router_scenarios.py old.txt
    PYTHONPATH=. .venv/bin/python tests/test_router_scenarios.py new.txt && cmp old.txt new.txt

which is how "verdicts byte-identical before and after" is checked when the risk path is
optimised (``--full``: the whole grid and 20,000 bench orders, 575,520 evaluations, ~30 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import risk_path  # type: ignore[import-not-found]  # noqa: E402

from heliosd.builtin.limits import essential_rules  # noqa: E402
from heliosd.core.config import parse_settings  # noqa: E402
from heliosd.core.types import (  # noqa: E402
    Balance,
    Mode,
    OrderIntent,
    OrderType,
    PairInfo,
    Quote,
    Side,
    VerdictAction,
    reduces_position,
)
from heliosd.plugins.manager import collect, make_plugin_manager  # noqa: E402
from heliosd.risk.breakers import Breakers  # noqa: E402
from heliosd.risk.ledger import Ledger  # noqa: E402
from heliosd.store import Store  # noqa: E402
from heliosd.trading import orders as od  # noqa: E402
from heliosd.trading.marketdata import DEFAULT_PAIRS, MarketData  # noqa: E402
from heliosd.trading.router import ExecutionRouter  # noqa: E402

D = Decimal
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, 22, 0, tzinfo=UTC)
PAST = datetime(2020, 1, 1, tzinfo=UTC)

PAIRS: dict[str, PairInfo] = {
    **DEFAULT_PAIRS,
    "ETHBTC": PairInfo("ETHBTC", "ETH", "BTC", D("0.001"), D(100), D("0.0001"), D(10),
                       D("0.000001"), 6),
    "ADAZAR": PairInfo("ADAZAR", "ADA", "ZAR", D(1), D(1000000), D(10), D(5000000), D("0.01"), 0),
    "DOGEZAR": PairInfo("DOGEZAR", "DOGE", "ZAR", D(1), D(1000000), D(10), D(5000000),
                        D("0.01"), 2),  # no quote at all
    "SOLUSDC": PairInfo("SOLUSDC", "SOL", "USDC", D("0.01"), D(1000), D(1), D(100000),
                        D("0.01"), 4),  # no USDCZAR mark to value it
    "LASTZAR": PairInfo("LASTZAR", "LAST", "ZAR", D("0.1"), D(1000), D(10), D(5000000), D(1), 3),
}  # fmt: skip
QUOTES = [
    ("BTCZAR", "1199000", "1201000", "1199000"),
    ("ETHZAR", "59900", "60100", "60000"),
    ("ETHBTC", "0.0499", "0.0501", None),
    ("ADAZAR", "9.5", "9.7", None),
    ("SOLUSDC", "150.5", "151", None),
    ("LASTZAR", None, None, "123.4567"),  # last trade only
]
ACCOUNTS: dict[str, dict[str, str] | None] = {
    "bench": {"ZAR": "1000000", "BTC": "0.1", "ETH": "2"},
    "long": {"ZAR": "50000", "BTC": "1.5", "ETH": "0", "ADA": "100000"},
    "short": {"ZAR": "2000000", "BTC": "-0.5", "ETH": "-3"},
    "empty": {"ZAR": "0", "BTC": "0"},
    "unknown": None,  # balances never received: the ledger is not ready
    "negative": {"ZAR": "-100000", "BTC": "0.01"},
    "small": {"ZAR": "1000"},
    "odd": {"ZAR": "123456.789", "BTC": "0.00012345", "ETH": "1.1", "SOL": "10", "DOGE": "5"},
}
SETTINGS: list[dict[str, str]] = [
    {},
    {"max_position_pct": "5", "max_leverage": "1"},
    {"max_position_pct": "50", "max_leverage": "2"},
    {"max_position_pct": "100", "max_leverage": "0.5"},
    {"max_position_pct": "12.5", "max_leverage": "3.25"},
]
BREAKERS: dict[str, list[tuple[str, str, datetime | None]]] = {
    "none": [],
    "emergency": [("emergency", "operator pressed stop", None)],
    "daily": [("daily_loss", "loss 5.2% of day-start equity", FUTURE)],
    "drawdown": [("drawdown", "", None)],
    "custom": [("vol_spike", "volatility", FUTURE)],
    "expired": [("daily_loss", "old", PAST), ("drawdown", "dd", None)],
    "all": [("emergency", "e", None), ("daily_loss", "d", FUTURE), ("drawdown", "", None),
            ("vol_spike", "v", None)],
}  # fmt: skip
QUANTITIES = ["0", "-1", "0.00000001", "0.0001", "0.001", "0.01", "0.05", "0.1", "0.2", "0.5",
              "1", "2", "3", "100", "1000", "0.123456789123", "1E+1", "5.000"]  # fmt: skip
RULES = ["position_limit", "leverage_limit", "daily_loss_limit", "drawdown_limit"]


def grid() -> list[OrderIntent]:
    out = []
    for pair in [*PAIRS, "XRPZAR"]:
        ref = {"BTCZAR": D(1200000), "ETHZAR": D(60000), "ETHBTC": D("0.05")}.get(pair, D(100))
        prices: list[Decimal | None] = [None, ref, ref * D("0.9"), ref * D("1.1"), D(0), D(-1)]
        for side in Side:
            for q in QUANTITIES:
                for i, price in enumerate(prices):
                    kind = OrderType.MARKET if i == 0 else OrderType.LIMIT
                    out.append(OrderIntent(pair, side, kind, D(q), price, "grid", "manual"))
        # A MARKET order that carries a price (which must not value it).
        out.append(OrderIntent(pair, Side.BUY, OrderType.MARKET, D("0.5"), ref * 2, "", "x"))
    return out


def market() -> MarketData:
    m = MarketData(PAIRS)
    for pair, bid, ask, last in QUOTES:
        m.update(Quote(pair, D(bid) if bid else None, D(ask) if ask else None,
                       D(last) if last else None, NOW))  # fmt: skip
    return m


@dataclass
class World:
    """One router over one account, settings and set of tripped breakers."""

    name: str
    router: ExecutionRouter
    ledger: Ledger
    market: MarketData
    enforce: bool
    breakers: list[str]


def worlds(store: Store, state_dir: Path, *, full: bool) -> Iterator[World]:
    for si, overrides in enumerate(SETTINGS if full else SETTINGS[:2]):
        for enforce in (True, False):
            settings = parse_settings({
                "daemon": {"state_dir": str(state_dir),
                           "control_socket": str(state_dir / "s.sock")},
                "risk": {**overrides, "enforce_in_paper": enforce},
            })  # fmt: skip
            rules = collect(make_plugin_manager(settings), settings).risk_rules
            for account, balances in ACCOUNTS.items():
                for latch, tripped in BREAKERS.items():
                    # Every breaker set under the default settings; other settings and
                    # unenforced PAPER only with none and all of them tripped.
                    if (si or not enforce) and latch not in ("none", "all"):
                        continue
                    m = market()
                    ledger = Ledger(Mode.LIVE, "ZAR", settings.risk.tz, PAIRS, m, None)
                    if balances is not None:
                        ledger.set_balances([Balance(c, D(v)) for c, v in balances.items()],
                                            snapshot=True)  # fmt: skip
                    breakers = Breakers(store)
                    for name, reason, until in tripped:
                        breakers.committed_trip(name, reason, until)
                    router = ExecutionRouter(
                        store=store, settings=settings, clients={},
                        ledgers={Mode.PAPER: ledger, Mode.LIVE: ledger}, market=m,
                        breakers=breakers, counters=od.OrderCounters(), rules=rules,
                    )  # fmt: skip
                    names = [n for n, _, until in tripped if until is None or until > NOW]
                    yield World(f"{si}/{enforce}/{account}/{latch}", router, ledger, m,
                                enforce, names)  # fmt: skip


def line(tag: str, intent: OrderIntent, ev: Any) -> str:
    """Everything an evaluation says, byte for byte (Decimal exponents included)."""
    verdicts = [
        [v.rule, repr(v.action), v.reason, repr(v.quantity), type(v.details).__name__,
         [(k, repr(x)) for k, x in v.details.items()], repr(v), json.dumps(v.as_json())]
        for v in ev.verdicts
    ]  # fmt: skip
    return json.dumps([tag, repr(intent), repr(ev.mode), repr(ev.quantity), ev.reason, verdicts])


@dataclass
class Rig:
    store: Store
    bench: risk_path.Rig
    state_dir: Path


async def open_rig(state_dir: Path) -> Rig:
    (state_dir / "bench").mkdir(parents=True)
    bench = await risk_path.Rig(state_dir / "bench").__aenter__()
    return Rig(bench.store, bench, state_dir)


async def evaluations(
    rig: Rig, *, full: bool
) -> AsyncIterator[tuple[str, World | None, OrderIntent, Any]]:
    """The bench stream (mode read from SQLite), then the grid in every world."""
    stream = risk_path.intents(risk_path.order_stream(20_000 if full else 1_000))
    for i, intent in enumerate(stream):
        yield f"stream{i}", None, intent, await rig.bench.router.evaluate(intent)
    # The tests take every 7th order shape (7 is prime to the 6 prices and 18 quantities, so
    # the sample still crosses them all); the script takes the whole grid.
    intents = grid()[:: 1 if full else 7]
    for world in worlds(rig.store, rig.state_dir, full=full):
        for mode in (Mode.LIVE, Mode.PAPER):
            if mode is Mode.PAPER and world.enforce and world.breakers:
                continue  # enforced PAPER runs the same rules as LIVE
            for j, intent in enumerate(intents):
                ev = await world.router.evaluate(intent, mode)
                yield f"{world.name}/{mode}/{j}", world, intent, ev


# --------------------------------------------------------------------------- the tests


def check_answer(world: World, intent: OrderIntent, ev: Any) -> None:
    """What must hold for every evaluation, whatever the scenario."""
    actions = [v.action for v in ev.verdicts]
    assert all(type(a) is VerdictAction for a in actions), ev
    json.dumps([v.as_json() for v in ev.verdicts])  # stored with the order: must serialise
    rules_ran = ev.mode is Mode.LIVE or world.enforce
    assert [v.rule for v in ev.verdicts if v.rule in RULES] == (RULES if rules_ran else [])
    if ev.quantity is None:  # refused: say why, and only because something refused it
        assert ev.reason, ev
        caps = [v.quantity for v in ev.verdicts if v.action is VerdictAction.CAP]
        assert VerdictAction.REJECT in actions or any(q is None or q <= 0 for q in caps), ev
        return
    assert VerdictAction.REJECT not in actions and not ev.reason, ev
    assert ev.quantity <= intent.quantity, ev
    if rules_ran:  # unenforced PAPER runs no rule at all: the paper venue judges the order
        assert ev.quantity > 0, ev
    caps = [v.quantity for v in ev.verdicts if v.action is VerdictAction.CAP]
    if ev.quantity < intent.quantity:
        assert caps and ev.quantity == min(q for q in caps if q is not None), ev
        pair = PAIRS[intent.pair]
        # A cap is a sendable order: truncated to the pair's decimals, above its minimum.
        exponent = ev.quantity.as_tuple().exponent
        assert isinstance(exponent, int) and exponent >= -pair.base_decimals, ev
        assert ev.quantity >= pair.min_base, ev
    core_latch = any(name not in ("daily_loss", "drawdown") for name in world.breakers)
    if core_latch or (world.breakers and rules_ran):
        # While a breaker is tripped only orders that reduce a position pass: the core checks
        # the emergency stop and plugin breakers itself, the rules check their own.
        assert reduces_position(intent, world.ledger.position(intent.pair)), (world.name, ev)


async def test_every_answer_fails_closed_caps_within_the_pair_and_honours_the_latch(
    tmp_path: Path,
) -> None:
    rig = await open_rig(tmp_path)
    seen: set[tuple[str, str]] = set()
    try:
        async for _, world, intent, ev in evaluations(rig, full=False):
            if world is None:  # the bench stream: the bench rig's PAPER world, rules enforced
                world = World("bench", rig.bench.router, rig.bench.ledger, rig.bench.market,
                              True, [])  # fmt: skip
            check_answer(world, intent, ev)
            seen |= {(v.rule, str(v.action)) for v in ev.verdicts}
    finally:
        await rig.bench.__aexit__(None, None, None)
    # The grid reached every outcome of every rule, and the core's latch.
    for rule in RULES:
        assert {(rule, "accept"), (rule, "reject")} <= seen, rule
    assert ("position_limit", "cap") in seen
    assert {("emergency_stop", "reject"), ("breaker:vol_spike", "reject")} <= seen


async def test_an_answer_does_not_depend_on_the_orders_before_it(tmp_path: Path) -> None:
    """The limits keep the texts of the last equity and limit between orders (and the
    rules of one settings serve every account here, as one daemon's serve every order):
    each answer must equal the one rules that never saw another order give."""
    rig = await open_rig(tmp_path)
    try:
        intents = grid()[::3]
        for world in worlds(rig.store, tmp_path, full=False):
            if world.breakers or not world.enforce:
                continue
            used = world.router.rules
            # The limits are the subject here; fresh_prices' reason names the quote's age,
            # which the clock moves between the two evaluations.
            world.router.rules = limits = tuple(r for r in used if r.name != "fresh_prices")
            for intent in intents:
                seasoned = line("", intent, await world.router.evaluate(intent, Mode.LIVE))
                world.router.rules = essential_rules()
                fresh = line("", intent, await world.router.evaluate(intent, Mode.LIVE))
                world.router.rules = limits
                assert seasoned == fresh, world.name
            world.router.rules = used
    finally:
        await rig.bench.__aexit__(None, None, None)


# --------------------------------------------------------------------------- the script


async def dump(path: Path, full: bool) -> None:
    import tempfile

    logging.disable(logging.CRITICAL)  # rules that raise are logged; the lines say it all
    count = 0
    with tempfile.TemporaryDirectory(prefix="hd-scenarios-") as tmp:
        rig = await open_rig(Path(tmp))
        try:
            with path.open("w") as out:
                async for tag, _, intent, ev in evaluations(rig, full=full):
                    out.write(line(tag, intent, ev) + "\n")
                    count += 1
        finally:
            await rig.bench.__aexit__(None, None, None)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    import heliosd

    print(f"{count} evaluations by {heliosd.__file__}, sha256 {digest}", file=sys.stderr)


def main(argv: Iterable[str]) -> None:
    args = list(argv)
    full = "--full" in args
    paths = [a for a in args if a != "--full"]
    if len(paths) != 1:
        raise SystemExit("usage: test_router_scenarios.py [--full] OUT")
    asyncio.run(dump(Path(paths[0]), full))


if __name__ == "__main__":
    main(sys.argv[1:])
