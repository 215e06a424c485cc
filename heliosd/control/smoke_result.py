"""What a live-smoke run reports: its exit codes, the checks it runs and their outcomes
(PASSED / FAILED / SKIPPED, one ``Check`` each), the ``Plan`` it trades and the
``SmokeResult``; ``SmokeRefused`` when it must not run at all."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_SERVER: Final = 4

PASSED: Final = "PASSED"
FAILED: Final = "FAILED"
SKIPPED: Final = "SKIPPED"

CHECKS: Final = (
    "order placed",
    "risk limits",
    "filled on VALR",
    "database",
    "ledger",
    "P&L",
    "notification",
)


class SmokeRefused(Exception):
    """The smoke test must not run (not LIVE, halted, unhealthy, no quantity, no consent)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASSED | FAILED | SKIPPED
    detail: str

    @property
    def line(self) -> str:
        return f"{self.status:<7}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class Plan:
    """What will be traded, and why that quantity."""

    pair: str
    quantity: Decimal
    quantity_source: str
    venue: str
    simulator: bool = False  # LIVE is the VALR simulator: not real money


@dataclass
class SmokeResult:
    plan: Plan
    checks: list[Check] = field(default_factory=list)
    order: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return len(self.checks) == len(CHECKS) and all(c.status == PASSED for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pair": self.plan.pair,
            "quantity": str(self.plan.quantity),
            "quantity_source": self.plan.quantity_source,
            "venue": self.plan.venue,
            "order": self.order,
            "checks": [asdict(c) for c in self.checks],
        }
