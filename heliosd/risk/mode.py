"""ModeOrchestrator: the only way heliosd changes the trading mode.

PAPER -> LIVE (docs/api.md, "Switching the mode"): every gate runs concurrently, each under a
timeout; an exception or a timeout is a failure (fail closed). Any failure answers
GateRejected with every gate's result. All passing answers ConfirmationRequired with a
single-use token valid for ``token_ttl_s`` and bound to the caller's uid. The second request
with the token re-runs the gates, takes an online backup of the database (then prunes old
ones through ``after_backup``), and switches in one transaction together with its history
row, audit row and notification. Anything failing midway leaves PAPER: the
transaction is all or nothing and nothing is written before it.

LIVE -> PAPER is always allowed (the safe direction); the answer lists what is left open on
the live account.

A switch to LIVE and a stop serialize through the database, not a lock: the switch is refused
unless the trading state is ACTIVE; its confirm token is bound to the epoch it was issued
under (a token from before a stop or resume is refused); and the confirmed switch captures
the epoch before its gates run and calls ``state.require(conn, epoch=...)`` in the very
transaction that writes LIVE. A stop that commits while the gates run has moved the epoch, so
the switch answers StateChanged and the mode stays PAPER (invariant: LIVE never coexists with
an active breaker).

Tokens are :mod:`heliosd.control.confirm`'s (the one token mechanism; a close of positions
uses it too): in memory only, so a restart invalidates them, which is the safe failure.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from heliosd import store as st
from heliosd.control.backend import Actor
from heliosd.control.confirm import ConfirmTokens
from heliosd.core.errors import (
    ConfirmationRequired,
    GateRejected,
    HaltedError,
    InvalidConfirmToken,
    StateChanged,
)
from heliosd.core.protocols import Event, Gate, GateContext
from heliosd.core.types import GateResult, Mode, TradingState, utcnow
from heliosd.notify import journal
from heliosd.notify.notices import live_refused_event, mode_change_event
from heliosd.risk import state as trading
from heliosd.store import ModeState, Store

log = logging.getLogger(__name__)

EnqueueFn = Callable[[sqlite3.Connection, Event], Any]

# What a mode token confirms (a close's tokens name their own request).
_LIVE_BINDING = "mode:LIVE"


def mode_json(state: ModeState) -> dict[str, Any]:
    return {
        "mode": str(state.mode),
        "updated_at": state.updated_at,
        "updated_by": state.updated_by,
        "verified": state.verified,
        "trading_state": str(state.trading_state),
        "state_reason": state.state_reason,
        "epoch": state.epoch,
    }


def gates_json(results: Sequence[GateResult]) -> list[dict[str, Any]]:
    return [{"name": r.name, "ok": r.ok, "reason": r.reason} for r in results]


class ModeOrchestrator:
    def __init__(
        self,
        store: Store,
        *,
        gates: Callable[[], Sequence[Gate]],
        gate_context: Callable[[], GateContext],
        gate_timeout_s: float,
        backup_dir: Path,
        enqueue: EnqueueFn | None = None,
        halted: Callable[[], str | None] = lambda: None,
        live_leftovers: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        after_change: Callable[[Mode], Awaitable[None]] | None = None,
        after_backup: Callable[[Path], Awaitable[None]] | None = None,
        token_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        live_is_simulator: bool = False,
    ) -> None:
        self._store = store
        self._gates = gates
        self._gate_context = gate_context
        self._gate_timeout = gate_timeout_s
        self._backup_dir = backup_dir
        self._enqueue = enqueue
        self._halted = halted
        self._live_leftovers = live_leftovers
        self._after_change = after_change
        self._after_backup = after_backup  # pruning old backups (heliosd.runtime.backup)
        self._ttl = token_ttl_s
        self._tokens = ConfirmTokens(token_ttl_s, clock)
        self._simulator = live_is_simulator  # notices say "not real money", not "real"
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ reads

    def state(self) -> ModeState:
        return self._store.mode_state()

    # ------------------------------------------------------------------ gates

    async def run_gates(self) -> list[GateResult]:
        """Run every gate concurrently; errors and timeouts are failures."""
        ctx = self._gate_context()
        gates = list(self._gates())
        return list(await asyncio.gather(*(self._run_gate(g, ctx) for g in gates)))

    async def _run_gate(self, gate: Gate, ctx: GateContext) -> GateResult:
        name = getattr(gate, "name", type(gate).__name__)
        try:
            # Typed as Any: a third-party gate may return anything; only a GateResult counts.
            result: Any = await asyncio.wait_for(gate.check(ctx), self._gate_timeout)
        except TimeoutError:
            return GateResult(name, False, f"gate {name} timed out after {self._gate_timeout:g} s")
        except Exception as exc:
            log.warning("gate %s raised %s: %s", name, type(exc).__name__, exc)
            return GateResult(name, False, f"gate {name} failed: {type(exc).__name__}: {exc}")
        if not isinstance(result, GateResult):
            return GateResult(name, False, f"gate {name} returned {type(result).__name__}")
        return result

    # ------------------------------------------------------------------ switching

    async def switch(
        self, mode: Mode, *, confirm_token: str | None, reason: str, actor: Actor
    ) -> dict[str, Any]:
        async with self._lock:
            if mode is Mode.PAPER:
                return await self._to_paper(reason=reason, actor=actor)
            return await self._to_live(confirm_token=confirm_token, reason=reason, actor=actor)

    async def _to_paper(self, *, reason: str, actor: Actor) -> dict[str, Any]:
        current = self.state()
        who = str(actor)
        if current.mode is Mode.PAPER:
            await self._audit(who, "mode_paper", "noop", reason)
            return {**mode_json(current), "changed": False}

        def tx(conn: sqlite3.Connection) -> None:
            st.set_mode(self._store, conn, Mode.PAPER, actor=who, reason=reason, confirmed=False)
            st.audit(conn, actor=who, action="mode_paper", outcome="switched", reason=reason)
            self._event(conn, mode_change_event(Mode.LIVE, Mode.PAPER, actor=who, reason=reason))

        await self._store.write(tx)
        journal.event("mode_change", from_=Mode.LIVE, to=Mode.PAPER, by=actor, reason=reason)
        if self._after_change is not None:
            await self._after_change(Mode.PAPER)
        out = {**mode_json(self.state()), "changed": True}
        if self._live_leftovers is not None:
            try:
                out["left_open"] = await self._live_leftovers()
            except Exception as exc:  # the switch stands; say what we could not check
                out["left_open"] = {"error": f"could not list live orders: {exc}"}
        return out

    async def _to_live(
        self, *, confirm_token: str | None, reason: str, actor: Actor
    ) -> dict[str, Any]:
        who = str(actor)
        current = self.state()
        if current.mode is Mode.LIVE and current.verified:
            await self._audit(who, "mode_live", "noop", reason)
            return {**mode_json(current), "changed": False}
        # The epoch every check below is made under; the switch's transaction requires it.
        epoch = current.epoch
        halt = self._halted()
        if current.trading_state is not TradingState.ACTIVE or halt:
            why = current.state_reason or halt or str(current.trading_state)
            refused = {"halt": why, "trading_state": str(current.trading_state)}
            await self._audit(who, "mode_live", "refused_halted", reason, refused)
            journal.event("mode_refused", to=Mode.LIVE, by=actor, reason=reason, why=why)
            raise HaltedError(
                f"Cannot switch to LIVE: trading is {current.trading_state} ({why}); resume first",
                details={"trading_state": str(current.trading_state), "reason": why},
            )

        if confirm_token is not None:
            token = self._tokens.take(confirm_token)
            if token is None or token.uid != actor.uid or token.binding != _LIVE_BINDING:
                await self._audit(who, "mode_live", "invalid_token", reason)
                raise InvalidConfirmToken(
                    "confirm_token is unknown, already used, expired or issued to someone else;"
                    " request a new one"
                )
            if token.epoch != epoch:
                await self._audit(who, "mode_live", "invalid_token", reason,
                                  {"token_epoch": token.epoch, "epoch": epoch})  # fmt: skip
                raise InvalidConfirmToken(
                    f"confirm_token was issued before the trading state changed (epoch"
                    f" {token.epoch} -> {epoch}: a stop, halt, resume or switch); request a new"
                    " one",
                    details={"epoch": epoch},
                )

        results = await self.run_gates()
        failed = [r for r in results if not r.ok]
        details: dict[str, Any] = {"gates": gates_json(results)}
        if failed:
            message = "Cannot switch to LIVE: " + "; ".join(r.reason or r.name for r in failed)

            def refuse(conn: sqlite3.Connection) -> None:
                st.audit(
                    conn,
                    actor=who,
                    action="mode_live",
                    outcome="gate_rejected",
                    reason=reason,
                    details=details,
                )
                self._event(conn, live_refused_event(who, gates=results))

            await self._store.write(refuse)
            journal.event("mode_refused", to=Mode.LIVE, by=actor, reason=reason, why=message,
                          gates=",".join(r.name for r in failed))  # fmt: skip
            raise GateRejected(message, details=details)

        if confirm_token is None:
            token_text = self._tokens.issue(actor, epoch, binding=_LIVE_BINDING)
            details |= {"confirm_token": token_text, "expires_in": int(self._ttl)}
            await self._audit(
                who, "mode_live", "confirmation_issued", reason, {"gates": details["gates"]}
            )
            raise ConfirmationRequired(
                "All gates passed. Repeat the request with confirm_token within "
                f"{int(self._ttl)} s to switch to LIVE.",
                details=details,
            )

        # Confirmed: back up, then switch in one transaction.
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        backup = await self._store.backup(self._backup_dir / f"pre-live-{stamp}.db")
        if self._after_backup is not None:
            try:
                await self._after_backup(backup)
            except Exception:  # housekeeping (pruning) is never why a switch fails
                log.exception("after the pre-LIVE backup %s", backup)

        def switch(conn: sqlite3.Connection) -> None:
            # A stop, halt or resume that committed while the gates ran wins (invariant S4).
            trading.require(conn, epoch=epoch)
            st.set_mode(self._store, conn, Mode.LIVE, actor=who, reason=reason, confirmed=True)
            st.audit(
                conn,
                actor=who,
                action="mode_live",
                outcome="switched",
                reason=reason,
                details={**details, "backup": str(backup)},
            )
            self._event(
                conn,
                mode_change_event(
                    current.mode, Mode.LIVE, actor=who, reason=reason, simulator=self._simulator
                ),
            )

        try:
            await self._store.write(switch)
        except StateChanged as exc:
            await self._audit(who, "mode_live", "state_changed", reason,
                              {**exc.details, "checked_epoch": epoch})  # fmt: skip
            raise StateChanged(
                f"Cannot switch to LIVE: {exc.message}; the mode stays {self.state().mode}",
                details={**exc.details, "checked_epoch": epoch},
            ) from None
        journal.event("mode_change", from_=current.mode, to=Mode.LIVE, by=actor, reason=reason,
                      epoch=self.state().epoch)  # fmt: skip
        if self._after_change is not None:
            await self._after_change(Mode.LIVE)
        return {
            **mode_json(self.state()),
            "changed": True,
            "backup": str(backup),
            "gates": details["gates"],
        }

    # ------------------------------------------------------------------ helpers

    def _event(self, conn: sqlite3.Connection, event: Event) -> None:
        if self._enqueue is not None:
            self._enqueue(conn, event)

    async def _audit(
        self,
        who: str,
        action: str,
        outcome: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._store.write(
            lambda c: st.audit(
                c, actor=who, action=action, outcome=outcome, reason=reason, details=details
            )
        )
