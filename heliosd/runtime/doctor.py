"""``heliosctl doctor`` / ``GET /api/doctor``: is this running daemon ready to go LIVE?

Contract (docs/api.md, "Doctor"): the answer is ``{"ok": bool, "checks": [{"name",
"status": "ok"|"warn"|"fail", "detail", "fix"}]}``, one entry per check of :data:`CHECKS`
in that order; ``ok`` is false when any check failed (warnings do not count).

Every check is fail-closed: it runs under a timeout, and a check that raises or times out
is ``fail`` with the error as its detail. Where a pre-LIVE gate asks the same question
(credentials, risk configuration, clock skew, VALR's status) the check calls the gate's own
code in :mod:`heliosd.builtin.gates`, so the doctor can never pass what a LIVE switch would
refuse, or the other way round. Nothing here changes state; only ``notify=True`` has an
effect outside the daemon (one test message through every notifier).

What a check is (its context, its finding, its timeout) is :mod:`heliosd.runtime.doctor_check`;
the checks are :mod:`heliosd.runtime.doctor_local` and :mod:`heliosd.runtime.doctor_valr`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

from heliosd.core.errors import HeliosError
from heliosd.runtime.doctor_check import (
    ACCOUNT_STREAM,
    BACKUP_DIR,
    CONFIG,
    ENGINE,
    FAIL,
    NOTIFY,
    OK,
    PLUGINS,
    STATE_DIR,
    TRADE_STREAM,
    WARN,
    Check,
    CheckResult,
    DoctorContext,
    Finding,
    Status,
)
from heliosd.runtime.doctor_local import (
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    check_backup_dir,
    check_config,
    check_engine,
    check_notify,
    check_plugins,
    check_risk_config,
    check_state_dir,
    probe_dir,
)
from heliosd.runtime.doctor_valr import (
    check_account_stream,
    check_clock,
    check_credentials,
    check_trade_stream,
    check_venue,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- running

# In the order they are reported. The gate-backed checks carry the gate's name.
CHECKS: Final[tuple[Check, ...]] = (
    Check(CONFIG, check_config),
    Check(STATE_DIR, check_state_dir),
    Check(BACKUP_DIR, check_backup_dir),
    Check("venue_online", check_venue),
    Check("valr_credentials", check_credentials),
    Check("clock_skew", check_clock),
    Check(TRADE_STREAM, check_trade_stream),
    Check(ACCOUNT_STREAM, check_account_stream),
    Check(NOTIFY, check_notify),
    Check("risk_config_complete", check_risk_config),
    Check(PLUGINS, check_plugins),
    Check(ENGINE, check_engine),
)


async def _run_one(check: Check, ctx: DoctorContext) -> CheckResult:
    timeout = check.timeout_s(ctx.settings)
    try:
        found = await asyncio.wait_for(check.run(ctx), timeout)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return CheckResult(check.name, FAIL, f"check timed out after {timeout:g} s", check.fix)
    except HeliosError as exc:
        return CheckResult(check.name, FAIL, f"check failed: {exc.message}", check.fix)
    except Exception as exc:
        log.exception("doctor check %s raised", check.name)
        return CheckResult(
            check.name, FAIL, f"check failed: {type(exc).__name__}: {exc}", check.fix
        )
    if found.status not in (OK, WARN, FAIL):  # a check's bug must not read as a pass
        return CheckResult(check.name, FAIL, f"check gave status {found.status!r}", check.fix)
    return CheckResult(check.name, found.status, found.detail, found.fix)


async def run_doctor(ctx: DoctorContext, checks: Sequence[Check] = CHECKS) -> dict[str, Any]:
    """Every check, concurrently, each under its own timeout; the answer of GET /api/doctor."""
    results = await asyncio.gather(*(_run_one(c, ctx) for c in checks))
    return {
        "ok": all(r.status != FAIL for r in results),
        "checks": [r.as_json() for r in results],
    }


__all__ = [
    "CHECKS",
    "DISK_FAIL_BYTES",
    "DISK_WARN_BYTES",
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "CheckResult",
    "DoctorContext",
    "Finding",
    "Status",
    "probe_dir",
    "run_doctor",
]
