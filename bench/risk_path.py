"""Benchmark 1 (issue 8): the pre-trade risk path, in process.

``ExecutionRouter.evaluate(intent)`` is what NautilusTrader's RiskEngine does before an order
leaves: read the mode (``PRAGMA data_version`` on a real SQLite file), run every built-in risk
rule (the four essential limits, registered through the real plugin manager) against a real
ledger and real market data, and combine the verdicts. Timed per order with perf_counter_ns
over a realistic, seeded order stream (two pairs, both sides, MARKET and LIMIT, sizes from
tiny to far over the position limit, a few unknown pairs): some orders are accepted, some
capped, some rejected.

``ExecutionRouter.submit`` is timed separately and reported as it is: it stores the order
durably (a group commit with fsync) before the paper client -- here an in-bench client that
accepts instantly -- is called, and records the answer in a second commit. It is inherently
milliseconds: the price of "an order exists on disk before it exists at the venue".

``--peer PYTHON`` runs ``bench/nautilus_peer.py`` with that interpreter (a venv with
nautilus_trader, made by ``make bench-peers``) on the same order stream in the same run and
reports the ratio heliosd / Nautilus.

Prints one JSON line. ``--quick`` is a smoke-test size (not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median_of, note, summary, us

from heliosd.core.config import Settings, parse_settings
from heliosd.core.errors import RiskRejected
from heliosd.core.types import (
    Mode,
    OrderIntent,
    OrderState,
    OrderType,
    PlaceRequest,
    PlaceResult,
    Quote,
    Side,
    VerdictAction,
    utcnow,
)
from heliosd.plugins.manager import collect, make_plugin_manager
from heliosd.risk.account import AccountRisk
from heliosd.risk.breakers import Breakers
from heliosd.risk.ledger import Ledger
from heliosd.store import Store
from heliosd.trading import orders as od
from heliosd.trading.marketdata import MarketData
from heliosd.trading.router import ExecutionRouter

HERE = Path(__file__).resolve().parent

# The market and the account both engines see (Nautilus gets the same numbers).
QUOTES = {"BTCZAR": ("1199000", "1201000"), "ETHZAR": ("59900", "60100")}
BALANCES = {"ZAR": "1000000", "BTC": "0.1", "ETH": "2"}
UNKNOWN_PAIR = "XRPZAR"  # not a configured pair: every engine must refuse it


def order_stream(n: int, seed: int = 8) -> list[dict[str, Any]]:
    """A seeded, realistic mix; plain data so the Nautilus peer can read the same stream."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        roll = rng.random()
        pair = UNKNOWN_PAIR if roll < 0.02 else ("BTCZAR" if roll < 0.62 else "ETHZAR")
        side = "BUY" if rng.random() < 0.55 else "SELL"
        kind = "MARKET" if rng.random() < 0.6 else "LIMIT"
        bid, ask = (Decimal(x) for x in QUOTES.get(pair, ("10", "11")))
        mid = (bid + ask) / 2
        # Notional log-uniform from 20 ZAR to 600k ZAR: most orders are small, some are far
        # over the 20% position limit (capped), a few are tiny.
        notional = Decimal(str(round(20 * (30000 ** rng.random()), 2)))
        quantity = (notional / mid).quantize(Decimal("0.00000001"))
        if quantity <= 0:
            quantity = Decimal("0.00000001")
        price = None
        if kind == "LIMIT":
            offset = Decimal(str(round(rng.uniform(-0.01, 0.01), 4)))
            price = (mid * (1 + offset)).quantize(Decimal(1))
        out.append(
            {
                "pair": pair,
                "side": side,
                "type": kind,
                "quantity": str(quantity),
                "price": None if price is None else str(price),
            }
        )
    return out


def intents(stream: list[dict[str, Any]]) -> list[OrderIntent]:
    return [
        OrderIntent(
            pair=o["pair"],
            side=Side(o["side"]),
            type=OrderType(o["type"]),
            quantity=Decimal(o["quantity"]),
            price=None if o["price"] is None else Decimal(o["price"]),
            reason="bench",
            source="bench",
        )
        for o in stream
    ]


class InstantClient:
    """A paper client that answers every order at once (the bench measures our side).

    It answers "cancelled" (as a venue does for an immediate-or-cancel order that found
    nothing): the order is stored, sent and answered like any other, and leaves no resting
    exposure. Open orders count toward the position and leverage limits, so orders left
    resting would fill the account's room and turn the rest of the stream into refusals.
    """

    name = "instant"

    def __init__(self) -> None:
        self.placed = 0

    async def place(self, request: PlaceRequest) -> PlaceResult:
        self.placed += 1
        return PlaceResult(OrderState.CANCELLED, f"x-{self.placed}")


class Rig:
    """The router with every real part it reads: Store file, ledger, market, breakers."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    async def __aenter__(self) -> Rig:
        d = self.state_dir
        self.settings: Settings = parse_settings(
            {
                "daemon": {"state_dir": str(d), "control_socket": str(d / "s.sock")},
                "paper": {"starting_balances": BALANCES},
            }
        )
        self.store = await Store.open(d / "heliosd.db")
        self.market = MarketData()
        now = utcnow()
        for pair, (bid, ask) in QUOTES.items():
            self.market.update(Quote(pair, Decimal(bid), Decimal(ask), Decimal(bid), now))
        s = self.settings
        ref, tz, pairs = s.risk.reference_currency, s.risk.tz, self.market.pairs()
        self.ledger = Ledger(Mode.PAPER, ref, tz, pairs, self.market, s.paper.starting_balances)
        live = Ledger(Mode.LIVE, ref, tz, pairs, self.market)
        self.breakers = Breakers(self.store)
        await self.breakers.load()
        registry = collect(make_plugin_manager(s), s)
        self.rule_names = [getattr(r, "name", "?") for r in registry.risk_rules]
        self.client = InstantClient()
        clients: Any = {Mode.PAPER: self.client, Mode.LIVE: self.client}
        # The account risk model the daemon wires (heliosd.runtime.service): the limits read its
        # snapshot (holdings and the open orders' reserved exposure).
        counters = od.OrderCounters()
        for mode, ledger in ((Mode.PAPER, self.ledger), (Mode.LIVE, live)):
            counters.accounts[mode] = AccountRisk(mode, ledger, self.market)
        self.router = ExecutionRouter(
            store=self.store, settings=s, clients=clients,
            ledgers={Mode.PAPER: self.ledger, Mode.LIVE: live}, market=self.market,
            breakers=self.breakers, counters=counters, rules=registry.risk_rules,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


async def time_evaluate(router: ExecutionRouter, orders: list[OrderIntent]) -> list[int]:
    """Per-order nanoseconds of ``evaluate`` (mode read included: mode=None)."""
    clock = time.perf_counter_ns
    evaluate = router.evaluate
    samples = [0] * len(orders)
    for i, intent in enumerate(orders):
        t0 = clock()
        await evaluate(intent)
        samples[i] = clock() - t0
    return samples


async def throughput_evaluate(router: ExecutionRouter, orders: list[OrderIntent]) -> float:
    """Orders per second of a tight loop without per-order clock reads."""
    evaluate = router.evaluate
    t0 = time.perf_counter_ns()
    for intent in orders:
        await evaluate(intent)
    return len(orders) / ((time.perf_counter_ns() - t0) / 1e9)


async def verdict_kinds(router: ExecutionRouter, orders: list[OrderIntent]) -> list[str]:
    """Each order's outcome: "accepted", "capped" or "rejected" (the ledger and market stay
    still during the bench, so an order's outcome is the same on every pass)."""
    kinds = []
    for intent in orders:
        ev = await router.evaluate(intent)
        if ev.quantity is None:
            kinds.append("rejected")
        elif any(v.action is VerdictAction.CAP for v in ev.verdicts):
            kinds.append("capped")
        else:
            kinds.append("accepted")
    return kinds


def by_kind(kinds: list[str], runs: list[list[float]]) -> dict[str, dict[str, float]]:
    """Latency per outcome over all runs: the p99 of the stream is set by its slowest kind."""
    split: dict[str, list[float]] = {"accepted": [], "capped": [], "rejected": []}
    for run in runs:
        for kind, sample in zip(kinds, run, strict=True):
            split[kind].append(sample)
    return {kind: summary(samples) for kind, samples in split.items() if samples}


async def time_submit(rig: Rig, orders: list[OrderIntent], concurrency: int) -> dict[str, Any]:
    """The full submit: evaluate, durable insert, client.place, durable answer."""
    clock = time.perf_counter_ns
    latencies: list[float] = []
    rejected = 0
    queue = list(orders)

    async def worker() -> None:
        nonlocal rejected
        while queue:
            intent = queue.pop()
            t0 = clock()
            try:
                await rig.router.submit(intent, actor="bench")
            except RiskRejected:
                rejected += 1
            latencies.append(clock() - t0)

    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = (clock() - t0) / 1e9
    ms_samples = [x / 1e6 for x in latencies]
    return {
        "concurrency": concurrency,
        "orders": len(orders),
        "rejected_stored": rejected,
        "orders_per_s": round(len(orders) / seconds),
        "latency_ms": summary(ms_samples),
    }


def run_peer(python: str, stream_file: Path, repeats: int, warmup: int) -> dict[str, Any]:
    script = HERE / "nautilus_peer.py"
    if not Path(python).exists():
        return {"error": f"{python} not found: run `make bench-peers` to build the peer venv"}
    proc = subprocess.run(
        [python, str(script), "--stream", str(stream_file), "--repeats", str(repeats),
         "--warmup", str(warmup)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"peer exited {proc.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer", metavar="PYTHON", help="interpreter with nautilus_trader")
    args = parser.parse_args()
    n, repeats, warmup, n_submit = args.orders, args.repeats, 5_000, 1_000
    if args.quick:
        n, repeats, warmup, n_submit = 500, 2, 200, 40

    stream = order_stream(n)
    orders = intents(stream)
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        async with Rig(Path(tmp)) as rig:
            kinds = await verdict_kinds(rig.router, orders)
            mix = {kind: kinds.count(kind) for kind in ("accepted", "capped", "rejected")}
            for intent in orders[: min(warmup, n)] * max(1, warmup // n):
                await rig.router.evaluate(intent)
            runs: list[list[float]] = []
            run_medians, run_p99s, rates = [], [], []
            for _ in range(repeats):
                gc.collect()
                run = [us(x) for x in await time_evaluate(rig.router, orders)]
                s = summary(run)
                run_medians.append(s["median"])
                run_p99s.append(s["p99"])
                runs.append(run)
                rates.append(await throughput_evaluate(rig.router, orders))
            evaluate = {
                "orders": n,
                "repeats": repeats,
                "latency_us": summary([x for run in runs for x in run]),
                "run_medians_us": run_medians,
                "run_p99s_us": run_p99s,
                "by_kind_us": by_kind(kinds, runs),
                "orders_per_s": round(median_of(rates)),
                "mix": mix,
            }
            submit_orders = orders[:n_submit]
            submit = [
                await time_submit(rig, submit_orders, concurrency=1),
                await time_submit(rig, orders[n_submit : 2 * n_submit] or submit_orders, 64),
            ]
            commits = rig.store.commits

        figures: dict[str, Any] = {
            "rules": rig.rule_names,
            "mode": "PAPER (enforce_in_paper: the same rules as LIVE)",
            "evaluate": evaluate,
            "submit": submit,
            "store_commits": commits,
        }
        med, p99 = evaluate["latency_us"]["median"], evaluate["latency_us"]["p99"]
        targets = {"median_under_10us": med < 10, "p99_under_25us": p99 < 25}
        if args.peer:
            stream_file = Path(tmp) / "stream.json"
            stream_file.write_text(json.dumps({"quotes": QUOTES, "balances": BALANCES,
                                               "orders": stream}))  # fmt: skip
            peer = run_peer(args.peer, stream_file, repeats, warmup)
            figures["nautilus"] = peer
            if "error" in peer:
                note(f"nautilus peer unavailable: {peer['error']}")
                targets["ratio_at_most_1_5"] = False
            else:
                peer_med = peer["latency_us"]["median"]
                peer_p99 = peer["latency_us"]["p99"]
                figures["ratio_heliosd_over_nautilus"] = {
                    "median": round(med / peer_med, 3),
                    "p99": round(p99 / peer_p99, 3),
                }
                targets["ratio_at_most_1_5"] = med / peer_med <= 1.5
        emit("risk_path", figures, targets)


if __name__ == "__main__":
    asyncio.run(main())
