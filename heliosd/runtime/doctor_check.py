"""What a doctor check is: the :class:`DoctorContext` it reads, the :class:`Finding` it
returns (``ok``, ``warn`` or ``fail``), its :class:`Check` entry with its timeout, the
:class:`CheckResult` reported for it, and the checks' names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from heliosd.core.config import Settings
from heliosd.core.protocols import GateContext, Notifier
from heliosd.plugins.manager import PluginRecord, SectionParser

Status = Literal["ok", "warn", "fail"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"

# The test notification may take Apprise's own timeout per URL; this much more for the rest.
NOTIFY_MARGIN_S: Final = 5.0
SKIPPED_NOTIFY: Final = "skipped (use --notify)"


@dataclass(frozen=True, slots=True)
class Finding:
    """What one check found."""

    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class DoctorContext:
    """What the checks look at: the running daemon's parts, taken when the doctor is asked."""

    settings: Settings
    gates: GateContext
    live: Any  # the LIVE exchange client
    live_streams: Mapping[str, tuple[bool, str, str]]  # stream -> (up, detail, since)
    notifiers: Sequence[Notifier]
    plugins: Sequence[PluginRecord]
    strategies: Collection[str]
    config_sections: Mapping[str, SectionParser]
    engine_running: bool = False
    notify: bool = False
    actor: str = "heliosd"


CheckFn = Callable[[DoctorContext], Awaitable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn
    # What to do when the check itself raises or times out.
    fix: str = "see the daemon's log (journalctl -u heliosd) for the error"

    def timeout_s(self, settings: Settings) -> float:
        if self.name == NOTIFY:
            urls = max(1, len(settings.notify.urls))
            return float(settings.notify.timeout_s) * urls + NOTIFY_MARGIN_S
        return float(settings.risk.gate_timeout_s)


CONFIG = "config"
STATE_DIR = "state_dir"
BACKUP_DIR = "backup_dir"
TRADE_STREAM = "trade_stream"
ACCOUNT_STREAM = "account_stream"
NOTIFY = "notify"
PLUGINS = "plugins"
ENGINE = "engine"
