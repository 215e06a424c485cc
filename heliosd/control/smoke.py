"""``heliosctl live-smoke PAIR``: the first real trade, checked end to end, in one command.

For the day the VALR account has been funded and the daemon switched to LIVE. Everything goes
through the running daemon's control API, so the router, the risk rules and the ledger that
will trade from now on are the ones tested:

1. Refuse (exit 1) unless the mode is LIVE *and verified* (a gated, confirmed switch), no stop
   is latched and the daemon reports itself healthy.
2. Choose the pair's minimum market BUY: from the pair limits the daemon publishes in
   ``GET /api/risk`` (``pairs``) when it does, else the operator's ``--quantity``. heliosctl
   never asks VALR itself: the daemon's view is the one that trades.
3. Ask for confirmation (``--yes`` skips it; without a terminal it is required).
4. ``POST /api/orders`` one MARKET BUY, then check, each printed PASSED / FAILED / SKIPPED:

   * ``order placed``  - 201 from the daemon, mode LIVE, VALR's order id;
   * ``risk limits``   - every configured rule gave a verdict on it and none rejected;
   * ``filled on VALR``- the order reached ``filled`` within ``--timeout`` with VALR's
     average price (the daemon only learns fills from VALR: account stream or trade history);
   * ``database``      - the stored ORDER in ``GET /api/orders`` matches;
   * ``ledger``        - the live position in the pair grew (``GET /api/positions``);
   * ``P&L``           - the live P&L counts it: fees or gross exposure grew (``GET /api/pnl``);
   * ``notification``  - an ``order`` or ``fill`` notification about it was committed to the
     outbox (seen on ``GET /api/events``; delivery then retries from the database).

Exit status: 0 when every check passed, 1 otherwise (refusals included), 3 daemon not running,
4 daemon error. The bought amount is left in the account: the command says how to sell it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from heliosd.control.client import ControlClient
from heliosd.control.eventtap import EventTap
from heliosd.control.smoke_quantity import _dec, minimum_quantity
from heliosd.control.smoke_result import (
    CHECKS,
    EXIT_FAILED,
    EXIT_SERVER,
    FAILED,
    PASSED,
    SKIPPED,
    Check,
    Plan,
    SmokeRefused,
    SmokeResult,
)
from heliosd.control.smoke_verdicts import _fill_check, _order_of, _verdict_check

DEFAULT_TIMEOUT_S: Final = 30.0
_OPEN_STATES: Final = frozenset({"new", "sent", "placed", "partially_filled"})
_REASON: Final = "live-smoke: minimum-size MARKET BUY"


# --------------------------------------------------------------------------- the run


class LiveSmoke:
    """One smoke run against the daemon behind ``client``. ``report`` sees each Check."""

    def __init__(
        self,
        client: ControlClient,
        pair: str,
        *,
        quantity: Decimal | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_s: float = 0.2,
        report: Callable[[Check], None] | None = None,
    ) -> None:
        self.client = client
        self.pair = pair.upper()
        self.quantity = quantity
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.report = report or (lambda _c: None)

    def get(self, path: str) -> Any:
        status, body = self.client.request("GET", path)
        if status != 200 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise SmokeRefused(
                f"GET {path} answered HTTP {status}: {message or body}",
                exit_code=EXIT_SERVER if status >= 500 else EXIT_FAILED,
            )
        return body

    # ---------------------------------------------------------------- before the trade

    def preflight(self) -> Plan:
        """Refuse unless trading real money now is what the daemon says is safe."""
        mode = self.get("/api/trading/mode")
        venue = str(mode.get("live_venue") or "VALR")
        if mode.get("mode") != "LIVE":
            raise SmokeRefused(
                f"the daemon is in {mode.get('mode')} mode; live-smoke trades on the live "
                "account only. Switch first: heliosctl mode live"
            )
        if mode.get("verified") is not True:
            raise SmokeRefused(
                "LIVE is not verified (no gated, confirmed switch in the history): the daemon "
                "refuses LIVE orders. Switch to PAPER and back with heliosctl mode live"
            )
        if mode.get("halted"):
            raise SmokeRefused(
                f"trading is halted ({mode.get('halt_reason') or 'stop latched'}); "
                "clear it with heliosctl resume --reason ... first"
            )
        status, health = self.client.request("GET", "/api/health")
        if status != 200:
            raise SmokeRefused(f"the daemon reports itself unhealthy (HTTP {status}): {health}")
        risk = self.get("/api/risk")
        if risk.get("halted"):
            raise SmokeRefused("a breaker is tripped (GET /api/risk): not trading")
        return Plan(self.pair, *self._quantity(risk), venue, mode.get("live_is_simulator") is True)

    def _quantity(self, risk: Mapping[str, Any]) -> tuple[Decimal, str]:
        pairs = risk.get("pairs")
        limits = pairs.get(self.pair) if isinstance(pairs, Mapping) else None
        minimum: Decimal | None = None
        if isinstance(limits, Mapping):
            try:
                minimum = minimum_quantity(limits)
            except ValueError as exc:
                raise SmokeRefused(
                    f"{self.pair}: the daemon's pair limits are unusable: {exc}"
                ) from None
        elif isinstance(pairs, Mapping):
            known = ", ".join(sorted(pairs)) or "none"
            raise SmokeRefused(f"the daemon does not trade {self.pair} (its pairs: {known})")
        if self.quantity is not None:
            if self.quantity <= 0:
                raise SmokeRefused(f"--quantity must be positive, got {self.quantity}")
            if minimum is not None and self.quantity < minimum:
                raise SmokeRefused(
                    f"--quantity {self.quantity} is below {self.pair}'s minimum {minimum}"
                )
            return self.quantity, "--quantity"
        if minimum is None:
            raise SmokeRefused(
                f"this daemon does not publish {self.pair}'s limits (GET /api/risk has no "
                f"'pairs'); pass --quantity with VALR's minimum for {self.pair} "
                "(minBaseAmount in https://api.valr.com/v1/public/pairs)"
            )
        return minimum, "the pair's minimum, from GET /api/risk"

    # ---------------------------------------------------------------- the trade

    def run(self, plan: Plan, *, events: EventTap | None = None) -> SmokeResult:
        """Place the order and run every check. ``events`` must be started already."""
        result = SmokeResult(plan)

        def record(name: str, status: str, detail: str) -> None:
            check = Check(name, status, detail)
            result.checks.append(check)
            self.report(check)

        def skip_rest(why: str) -> SmokeResult:
            for name in CHECKS[len(result.checks) :]:
                record(name, SKIPPED, why)
            return result

        before_qty = self._live_position()
        before_pnl = self._live_pnl()
        rules = list(self.get("/api/risk").get("rules") or [])
        status, body = self.client.request(
            "POST",
            "/api/orders",
            {
                "pair": plan.pair,
                "side": "BUY",
                "type": "MARKET",
                "quantity": str(plan.quantity),
                "reason": _REASON,
            },
        )
        order = _order_of(body)
        result.order = order
        if status != 201 or order is None:
            message = body.get("message") if isinstance(body, dict) else None
            code = body.get("error") if isinstance(body, dict) else None
            where = f" (order {order['id']} {order.get('state')})" if order else ""
            record(CHECKS[0], FAILED, f"HTTP {status} {code or ''}: {message or body}{where}")
            if order is not None and order.get("verdicts"):
                record(CHECKS[1], *_verdict_check(order, rules))
            return skip_rest("the order was not placed")
        if order.get("mode") != "LIVE":
            record(CHECKS[0], FAILED, f"order {order['id']} went to {order.get('mode')}, not LIVE")
            return skip_rest("the order did not go to the live account")
        record(
            CHECKS[0],
            PASSED,
            f"order {order['id']} MARKET BUY {order.get('quantity')} {plan.pair} on "
            f"{plan.venue}, VALR order id {order.get('exchange_order_id') or '-'}",
        )
        record(CHECKS[1], *_verdict_check(order, rules))
        try:
            self._after_placement(order, result, record, before_qty, before_pnl, events)
        except SmokeRefused as exc:
            # The order is out: a daemon that stops answering now is a failed check (with
            # the order named), never a "refused" that would read as "nothing happened".
            record(CHECKS[len(result.checks)], FAILED, f"order {order['id']}: {exc.message}")
            return skip_rest("the daemon stopped answering; check heliosctl orders")
        return result

    def _after_placement(
        self,
        order: dict[str, Any],
        result: SmokeResult,
        record: Callable[[str, str, str], None],
        before_qty: Decimal,
        before_pnl: Mapping[str, Any],
        events: EventTap | None,
    ) -> None:
        order = self._wait_filled(order)
        result.order = order
        state = order.get("state")
        if state != "filled":
            detail = f"order {order['id']} is {state}"
            if order.get("failed_reason"):
                detail += f": {order['failed_reason']}"
            if state in _OPEN_STATES:
                detail += f" after {self.timeout_s:g} s; {self._cancel(order)}"
            record(CHECKS[2], FAILED, detail)
        else:
            status, detail = _fill_check(order)
            if status == PASSED:
                status, detail = self._venue_history_check(order, detail)
            record(CHECKS[2], status, detail)
        self._database_check(order, record)
        filled = _dec(order.get("filled_quantity")) or Decimal(0)
        record(CHECKS[4], *self._ledger_check(before_qty, filled))
        record(CHECKS[5], *self._pnl_check(before_pnl, filled))
        record(CHECKS[6], *self._notification_check(order, events))

    def _venue_history_check(self, order: Mapping[str, Any], detail: str) -> tuple[str, str]:
        """Every stored fill of the order must be in VALR's own trade history."""

        def probe() -> tuple[str, str]:
            status, body = self.client.request("GET", f"/api/orders/{order['id']}/fills")
            if status != 200 or not isinstance(body, dict):
                return FAILED, f"GET /api/orders/{order['id']}/fills answered HTTP {status}"
            fills = body.get("fills") or []
            if not body.get("venue_checked") or not fills:
                return FAILED, f"order {order['id']}: no fill confirmed by VALR's trade history"
            missing = [f["trade_id"] for f in fills if not f.get("in_venue_history")]
            if missing:
                return FAILED, f"not in VALR's trade history: {', '.join(missing)}"
            ids = ", ".join(f["trade_id"] for f in fills)
            return PASSED, f"{detail}; VALR's trade history lists trade {ids}"

        return self._poll(probe)

    def _wait_filled(self, order: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while order.get("state") in _OPEN_STATES and time.monotonic() < deadline:
            time.sleep(self.poll_s)
            fresh = _order_of(self.get(f"/api/orders/{order['id']}"))
            if fresh is not None:
                order = fresh
        return order

    def _cancel(self, order: Mapping[str, Any]) -> str:
        # A market order still open this long is not what we asked for: take it off rather
        # than leave an unknown exposure behind.
        status, body = self.client.request("DELETE", f"/api/orders/{order['id']}")
        return "cancel sent" if status == 200 else f"cancel refused (HTTP {status}): {body}"

    def _database_check(
        self, order: Mapping[str, Any], record: Callable[[str, str, str], None]
    ) -> None:
        listed = self.get("/api/orders?state=all&limit=50").get("orders") or []
        row = next((o for o in listed if o.get("id") == order["id"]), None)
        if row is None:
            record(CHECKS[3], FAILED, f"order {order['id']} is not among the latest 50 stored")
            return
        diffs = [
            k
            for k in (
                "customer_order_id",
                "exchange_order_id",
                "mode",
                "pair",
                "side",
                "state",
                "filled_quantity",
            )
            if row.get(k) != order.get(k)
        ]
        if diffs or row.get("mode") != "LIVE" or row.get("state") != "filled":
            differs = f", differs in {', '.join(diffs)}" if diffs else ""
            text = f"stored order {row['id']}: mode {row.get('mode')}, state {row.get('state')}"
            record(CHECKS[3], FAILED, text + differs)
            return
        record(
            CHECKS[3],
            PASSED,
            f"order {row['id']} stored LIVE filled, customer order id "
            f"{row.get('customer_order_id')}",
        )

    def _live_position(self) -> Decimal:
        rows = self.get("/api/positions").get("live") or []
        for row in rows:
            if isinstance(row, Mapping) and row.get("pair") == self.pair:
                return _dec(row.get("quantity")) or Decimal(0)
        return Decimal(0)

    def _live_pnl(self) -> Mapping[str, Any]:
        live = self.get("/api/pnl").get("live")
        return live if isinstance(live, Mapping) else {}

    def _poll(self, probe: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        # The fill, the order state and the balance update arrive separately (VALR's account
        # stream): give the ledger the same time budget as the fill.
        deadline = time.monotonic() + self.timeout_s
        outcome = probe()
        while outcome[0] != PASSED and time.monotonic() < deadline:
            time.sleep(self.poll_s)
            outcome = probe()
        return outcome

    def _ledger_check(self, before: Decimal, filled: Decimal) -> tuple[str, str]:
        if filled <= 0:
            return FAILED, "nothing was filled, so nothing to find in the ledger"

        def probe() -> tuple[str, str]:
            after = self._live_position()
            grew = after - before
            text = f"live {self.pair} position {before} -> {after} (filled {filled})"
            # Grows by the fill less a fee VALR takes in the bought currency, never by more.
            return (PASSED if 0 < grew <= filled else FAILED), text

        return self._poll(probe)

    def _pnl_check(self, before: Mapping[str, Any], filled: Decimal) -> tuple[str, str]:
        if filled <= 0:
            return FAILED, "nothing was filled, so nothing to find in the P&L"
        zero = Decimal(0)
        fees0 = _dec(before.get("fees")) or zero
        gross0 = _dec(before.get("gross_exposure")) or zero

        def probe() -> tuple[str, str]:
            now = self._live_pnl()
            fees = _dec(now.get("fees")) or zero
            gross = _dec(now.get("gross_exposure")) or zero
            ccy = now.get("reference_currency", "")
            text = (
                f"live fees {fees0} -> {fees} {ccy}, gross exposure {gross0} -> {gross} {ccy}, "
                f"equity {now.get('equity')}, daily P&L {now.get('daily_pnl')}"
            )
            ok = now.get("ready") is True and (fees > fees0 or gross > gross0)
            return (PASSED if ok else FAILED), text

        return self._poll(probe)

    def _notification_check(
        self, order: Mapping[str, Any], events: EventTap | None
    ) -> tuple[str, str]:
        if events is None:
            return SKIPPED, "not following the daemon's events"
        oid = order["id"]

        def about_order(kind: str, data: Any) -> bool:
            if kind != "notification" or not isinstance(data, Mapping):
                return False
            inner = data.get("data")
            return (
                data.get("kind") in ("order", "fill")
                and isinstance(inner, Mapping)
                and inner.get("order_id") == oid
            )

        found = events.wait_for(about_order, self.timeout_s)
        if found is None:
            why = f" ({events.error})" if events.error else ""
            return FAILED, (
                f"no order or fill notification about order {oid} within {self.timeout_s:g} s"
                f"{why}; check [notify] events"
            )
        return PASSED, (
            f"outbox notification #{found.get('id')} ({found.get('kind')}): "
            f"{found.get('title')}; delivered from the outbox with retries"
        )
