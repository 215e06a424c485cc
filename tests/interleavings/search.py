"""The seeded search: random sequences of operator actions, venue faults and crashes.

Each step is drawn from ``ACTIONS`` (weighted) by a ``random.Random(seed)``; everything a
step chooses (sides, sizes, prices, fault lengths, how many placements to leave in flight)
comes from the same generator, so a seed names one sequence of steps. The timing of a real
process is not replayable, so a seed reproduces the sequence, not the microseconds: the
steps are printed with every failure so the interleaving can be rebuilt as a test.
"""

from __future__ import annotations

import asyncio
import os
import random
from decimal import Decimal
from typing import Any

from . import invariants as inv
from .findings import classify
from .world import BTC_MIN, PAIR, SETTLE_S, Step, StopRecord, World, now

# HELIOSD_STRICT=1: known findings fail like any other violation.
STRICT = os.environ.get("HELIOSD_STRICT", "") not in ("", "0")
QUIET_EVERY = 6  # a forced quiet point (I3, I4) at least this often
NATURAL_S = 4.0  # how long agreement may take by itself before a reconnect forces it


class Violation(AssertionError):
    pass


class Search:
    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.notes: list[str] = []
        self.since_quiet = 0
        self.step: Step | None = None
        self.known: dict[str, list[str]] = {}  # finding name -> its violations
        self.seen: set[str] = set()

    # ------------------------------------------------------------------ driving

    async def run(self, steps: int) -> None:
        for number in range(1, steps + 1):
            await self.one(number)
        await self.check_quiet(force=True)

    async def one(self, number: int) -> None:
        names = [a for a, _ in ACTIONS]
        weights = [w for _, w in ACTIONS]
        action = self.rng.choices(names, weights)[0]
        self.step = Step(number, action)
        self.world.steps.append(self.step)
        await getattr(self, action)()
        await self.check_always()
        self.since_quiet += 1
        if self.since_quiet >= QUIET_EVERY or (
            not self.world.inflight and not self.world.faults_active()
        ):
            await self.check_quiet(force=self.since_quiet >= QUIET_EVERY)

    def say(self, detail: str = "", outcome: str = "") -> None:
        if self.step is None:  # driven by a test, not by the search
            self.step = Step(len(self.world.steps) + 1, "(test)")
            self.world.steps.append(self.step)
        if detail:
            self.step.detail = detail
        if outcome:
            self.step.outcome = outcome

    def fail(self, problems: list[str]) -> None:
        """Record known findings (once each); raise on anything else."""
        new = []
        for problem in problems:
            if problem in self.seen:  # a known finding's trace, seen again in a later step
                continue
            action = self.step.action if self.step else ""
            finding = classify(problem, action) if not STRICT else None
            if finding is None:
                new.append(problem)
            else:
                self.seen.add(problem)
                self.known.setdefault(finding.name, []).append(
                    f"step {self.step.number if self.step else 0}: {problem}"
                )
        if new:
            raise Violation(self.world.report(new))

    # ------------------------------------------------------------------ checks

    async def check_always(self) -> None:
        w = self.world
        problems = inv.i1_no_order_after_stop(w, self.notes)
        w.checks["I1"] += 1
        problems += inv.i2_live_never_with_stop(w, await w.mode())
        w.checks["I2"] += 1
        self.fail(problems)

    async def check_quiet(self, force: bool) -> None:
        """I3 and I4 once nothing moves: faults off, our requests answered, streams up; the
        daemon then gets a bounded time (polled) to reconcile."""
        w = self.world
        if force:
            await w.quiesce()
        self.since_quiet = 0
        last: list[str] = []

        async def agreed() -> bool:
            nonlocal last
            last = inv.i3_fills_once(w, await self.live_position()) + inv.i4_open_orders_agree(w)
            return not last

        try:
            await w.until(agreed, "the venue and heliosd agree", timeout=NATURAL_S)
        except AssertionError:
            # heliosd reconciles open orders when its account stream reconnects, not on a
            # timer: force that reconciliation, then judge (I4 is about "after" it).
            self.notes.append(
                f"step {self.step.number if self.step else 0}: agreement needed a reconnect: {last}"
            )
            w.checks["reconnects forced"] += 1
            w.sim.sim.drop_ws_connections()
            await asyncio.sleep(0.1)
            await w.wait_streams()
            try:
                await w.until(agreed, "the venue and heliosd agree (I3, I4)")
            except AssertionError:
                self.fail(last)
        w.checks["I3"] += 1
        w.checks["I4"] += 1
        await self.check_always()

    async def live_position(self) -> Decimal:
        status, body = await self.world.request("GET", "/api/positions")
        assert status == 200, body
        rows = [r for r in body["live"] if r["pair"] == PAIR]
        return Decimal(rows[0]["quantity"]) if rows else Decimal(0)

    # ------------------------------------------------------------------ orders

    def order_body(self, kind: str) -> dict[str, Any]:
        qty = Decimal(self.rng.choice(["0.0002", "0.0005", "0.001", "0.002"]))
        side = "SELL" if self.rng.random() < 0.35 else "BUY"
        body: dict[str, Any] = {
            "pair": PAIR,
            "side": side,
            "quantity": str(qty),
            "reason": "interleaving search",
        }
        mid = self.world.mid()
        if kind == "MARKET":
            body["type"] = "MARKET"
        else:
            body["type"] = "LIMIT"
            if kind == "rest":  # far from the market: it rests until cancelled
                factor = Decimal(self.rng.choice(["0.6", "0.7", "0.8"]))
                if side == "SELL":
                    factor = 2 - factor
            else:  # crossing: trades at once
                factor = Decimal("1.02") if side == "BUY" else Decimal("0.98")
            body["price"] = str((mid * factor).quantize(Decimal(1)))
        return body

    async def order_market(self) -> None:
        body = self.order_body("MARKET")
        status, answer = await self.world.request("POST", "/api/orders", body)
        self.say(f"{body['side']} {body['quantity']} market", _outcome(status, answer))

    async def order_limit_rest(self) -> None:
        body = self.order_body("rest")
        status, answer = await self.world.request("POST", "/api/orders", body)
        self.say(f"{body['side']} {body['quantity']} @ {body['price']}", _outcome(status, answer))

    async def order_limit_cross(self) -> None:
        body = self.order_body("cross")
        status, answer = await self.world.request("POST", "/api/orders", body)
        self.say(
            f"{body['side']} {body['quantity']} @ {body['price']} (crossing)",
            _outcome(status, answer),
        )

    async def orders_in_flight(self) -> None:
        n = self.rng.randint(2, 8)
        kinds = [self.rng.choice(["MARKET", "rest", "rest"]) for _ in range(n)]
        for kind in kinds:
            self.world.fire("POST", "/api/orders", self.order_body(kind))
        await asyncio.sleep(self.rng.uniform(0, 0.05))
        self.say(f"{n} placements left in flight ({','.join(kinds)})")

    async def cancel_one(self) -> None:
        status, body = await self.world.request("GET", "/api/orders?state=open&limit=50")
        live = [o for o in body.get("orders", []) if o["mode"] == "LIVE"] if status == 200 else []
        if not live:
            self.say("", "nothing open")
            return
        order = self.rng.choice(live)
        status, _answer = await self.world.request("DELETE", f"/api/orders/{order['id']}")
        self.say(f"order {order['id']}", f"{status}")

    # ------------------------------------------------------------------ the market and faults

    async def price_move(self) -> None:
        pct = Decimal(self.rng.choice(["-3", "-1", "-0.5", "0.5", "1", "3"]))
        price = (self.world.mid() * (1 + pct / 100)).quantize(Decimal(1))
        self.world.sim.sim.set_price(PAIR, price)
        self.say(f"{pct}% to {price}")
        await asyncio.sleep(0.05)

    async def fault_429(self) -> None:
        seconds = self.rng.uniform(0.5, 3)
        retry = self.rng.choice([1, 2])
        rate = self.rng.choice([0.5, 1.0])
        self.world.fault_for(seconds, http_429_rate=rate, retry_after_s=retry)
        self.say(f"429 rate {rate}, Retry-After {retry} s, for {seconds:.1f} s")

    async def fault_5xx(self) -> None:
        seconds = self.rng.uniform(0.5, 3)
        rate = self.rng.choice([0.3, 0.7])
        self.world.fault_for(seconds, http_5xx_rate=rate)
        self.say(f"5xx rate {rate} for {seconds:.1f} s")

    async def fault_slow(self) -> None:
        seconds = self.rng.uniform(0.5, 3)
        before, after = self.rng.choice([(0.3, 0.0), (0.0, 0.3), (1.0, 0.0)])
        self.world.fault_for(seconds, delay_s=before, delay_after_s=after)
        self.say(f"delay {before} s before / {after} s after handling, for {seconds:.1f} s")

    async def drop_streams(self) -> None:
        self.world.sim.sim.drop_ws_connections()
        self.say("every WebSocket closed")

    # ------------------------------------------------------------------ stops and modes

    async def stop(self) -> StopRecord:
        w = self.world
        sent = now()
        status, body = await w.request(
            "POST", "/api/trading/emergency-stop", {"reason": "interleaving search"}
        )
        # Read the venue before anything else can run in this loop: the answer's instant.
        number = self.step.number if self.step else 0
        stop = StopRecord(sent, now(), status, body, w.venue_open(), number)
        w.stops.append(stop)
        w.checks["I5"] += 1
        return stop

    async def emergency_stop(self) -> None:
        stop = await self.stop()
        self.say("", _stop_outcome(stop))
        self.fail(inv.i5_stop_answer_matches(stop))

    async def stop_during_retry_after(self) -> None:
        """Issue 12's first finding as a step: placements inside a 429's Retry-After when
        the stop comes (the 429s end before the stop, so its own cancels get through)."""
        w = self.world
        retry = self.rng.choice([1, 2])
        w.fault_for(0.25, http_429_rate=1.0, retry_after_s=retry)
        n = self.rng.randint(1, 5)
        for _ in range(n):
            w.fire("POST", "/api/orders", self.order_body(self.rng.choice(["MARKET", "rest"])))
        await asyncio.sleep(0.3)
        stop = await self.stop()
        self.say(f"{n} placements in a {retry} s Retry-After, then a stop", _stop_outcome(stop))
        self.fail(inv.i5_stop_answer_matches(stop))

    async def resume(self) -> None:
        status, _body = await self.world.request(
            "POST", "/api/trading/resume", {"reason": "interleaving search"}
        )
        self.say("", f"{status}")

    async def to_paper(self) -> None:
        status, _body = await self.world.request(
            "POST", "/api/trading/mode", {"mode": "PAPER", "reason": "search"}
        )
        self.say("", f"{status}")

    async def engine_start(self) -> None:
        status, _body = await self.world.request("POST", "/api/autonomous-engine/start")
        self.say("", f"{status}")

    async def engine_stop(self) -> None:
        status, _body = await self.world.request("POST", "/api/autonomous-engine/stop")
        self.say("", f"{status}")

    async def flatten(self) -> None:
        """What an operator does before a LIVE switch: engine off, orders cancelled, holdings
        sold in both ledgers (the gates refuse otherwise)."""
        w = self.world
        await w.request("POST", "/api/autonomous-engine/stop")
        status, body = await w.request("GET", "/api/orders?state=open&limit=500")
        for order in body.get("orders", []) if status == 200 else []:
            await w.request("DELETE", f"/api/orders/{order['id']}")
        held = w.venue_btc()
        if held >= BTC_MIN:
            await w.operator_sell(held.quantize(Decimal("1e-8")))
        status, body = await w.request("GET", "/api/positions")
        paper = [r for r in body.get("paper", []) if r["pair"] == PAIR] if status == 200 else []
        qty = Decimal(paper[0]["quantity"]) if paper else Decimal(0)
        if qty >= BTC_MIN and (await w.mode())["mode"] == "PAPER":
            await w.request(
                "POST",
                "/api/orders",
                {
                    "pair": PAIR,
                    "side": "SELL",
                    "type": "MARKET",
                    "quantity": str(qty),
                    "reason": "flatten",
                },
            )

    async def switch_live(self, concurrent_stop: bool) -> None:
        w = self.world
        if (await w.mode())["mode"] == "LIVE":
            self.say("", "already LIVE")
            return
        await self.flatten()
        if (await w.mode()).get("halted") and self.rng.random() < 0.8:
            await w.request("POST", "/api/trading/resume", {"reason": "search: before LIVE"})
        status, body = await w.request("POST", "/api/trading/mode", {"mode": "LIVE"})
        token = body.get("details", {}).get("confirm_token") if isinstance(body, dict) else None
        if token is None:
            self.say("", f"gates refused: {body.get('message', body)}"[:160])
            return
        confirm = {"mode": "LIVE", "confirm_token": token, "reason": "interleaving search"}
        if not concurrent_stop:
            status, body = await w.request("POST", "/api/trading/mode", confirm)
            self.say("", f"{status} {body.get('mode', body.get('error'))}")
            return
        switching = w.fire("POST", "/api/trading/mode", confirm)
        pause = self.rng.uniform(0, 0.03)
        await asyncio.sleep(pause)
        stop = await self.stop()
        result = await switching
        answer = result[1].get("mode", result[1].get("error")) if isinstance(result, tuple) else ""
        self.say(
            f"confirm sent, emergency stop {pause * 1000:.0f} ms later",
            f"switch {result[0] if isinstance(result, tuple) else result!r} {answer};"
            f" stop {_stop_outcome(stop)}",
        )
        problems = inv.i5_stop_answer_matches(stop) + inv.i2_live_never_with_stop(w, await w.mode())
        self.fail(problems)
        if problems:  # known finding: LIVE outlived the stop; the operator would undo it
            await w.request("POST", "/api/trading/mode", {"mode": "PAPER", "reason": "undo"})

    async def go_live(self) -> None:
        await self.switch_live(concurrent_stop=False)

    async def live_switch_vs_stop(self) -> None:
        await self.switch_live(concurrent_stop=True)

    async def kill9_restart(self) -> None:
        await self.world.kill9_restart()
        self.say("", f"restarted ({self.world.restarts})")


def _stop_outcome(stop: StopRecord) -> str:
    body = stop.body if isinstance(stop.body, dict) else {}
    return (
        f"{stop.status} mode={body.get('mode')} remaining={body.get('remaining_open_orders')}"
        f" venue_open={len(stop.venue_open)}"
    )


def _outcome(status: int, answer: Any) -> str:
    if isinstance(answer, dict) and "order" in answer:
        return f"{status} {answer['order']['state']}"
    if isinstance(answer, dict):
        return f"{status} {answer.get('error')}: {str(answer.get('message', ''))[:90]}"
    return str(status)


ACTIONS: list[tuple[str, int]] = [
    ("order_market", 5),
    ("order_limit_rest", 6),
    ("order_limit_cross", 2),
    ("orders_in_flight", 5),
    ("cancel_one", 2),
    ("price_move", 4),
    ("fault_429", 4),
    ("fault_5xx", 2),
    ("fault_slow", 2),
    ("drop_streams", 2),
    ("emergency_stop", 3),
    ("stop_during_retry_after", 2),
    ("resume", 4),
    ("go_live", 8),
    ("live_switch_vs_stop", 2),
    ("to_paper", 1),
    ("engine_start", 2),
    ("engine_stop", 1),
    ("kill9_restart", 1),
]

__all__ = ["ACTIONS", "SETTLE_S", "Search", "Violation"]
