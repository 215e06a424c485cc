"""The seven essential gates' names, as each reports it (``GATE_NAMES``: in the order their
results are reported), and the failure a gate gives when it cannot find out
(:func:`_cannot`: not knowing is never a pass). Shared by :mod:`heliosd.builtin.gates` and
:mod:`heliosd.builtin.valr_gates`.
"""

from __future__ import annotations

from heliosd.core.errors import HeliosError
from heliosd.core.types import GateResult

POSITIONS = "no_open_positions"
PENDING = "no_pending_orders"
CREDENTIALS = "valr_credentials"
RISK_CONFIG = "risk_config_complete"
CLOCK = "clock_skew"
VENUE = "venue_online"
ENGINE = "engine_stopped"

GATE_NAMES = (POSITIONS, PENDING, CREDENTIALS, RISK_CONFIG, CLOCK, VENUE, ENGINE)


def _cannot(name: str, what: str, exc: HeliosError) -> GateResult:
    return GateResult(name, False, f"cannot check {what} ({exc.message})")
