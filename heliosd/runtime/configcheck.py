"""``heliosd check-config`` warnings: a config that loads but will refuse LIVE or surprise.

Errors (a key that does not parse, an unknown plugin) stop the daemon and exit 78; these
are settings that load fine and then bite later: every LIVE switch refused by a gate, an
engine that is told to start with nothing to run, risk limits nobody chose, no VALR key.
``check-config`` prints them and still exits 0; ``--strict`` makes any of them a failure.
No warning ever shows a secret: credentials are named by key, never by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from heliosd.core.config import RiskSettings, Settings, risk_config_problems

# The limits a LIVE account trades under: worth choosing for the account, not inheriting.
CHOSEN_RISK_KEYS: Final = ("max_position_pct", "max_leverage", "daily_loss_pct",
                           "max_drawdown_pct")  # fmt: skip
EXIT_STRICT: Final = 1


def config_warnings(settings: Settings, raw: Mapping[str, Any]) -> list[str]:
    """Every warning for ``settings`` (as loaded) and ``raw`` (the file's own tables)."""
    out: list[str] = []
    if not settings.notify.urls:
        out.append(
            "notify.urls is empty: every LIVE switch is refused (gate risk_config_complete: "
            "LIVE needs somewhere to send stops and fills); add an Apprise URL"
        )
    for problem in risk_config_problems(settings):
        if "notification URL" not in problem:  # said above, with what to do
            out.append(f"risk configuration refuses LIVE (gate risk_config_complete): {problem}")
    engine = settings.engine
    if engine.autostart and not engine.strategy:
        out.append(
            "engine.autostart is true but engine.strategy is not set: nothing will start; "
            "name a strategy or set autostart = false"
        )
    table = raw.get("risk")
    given: Mapping[str, Any] = table if isinstance(table, Mapping) else {}
    defaults = RiskSettings()
    missing = [k for k in CHOSEN_RISK_KEYS if k not in given]
    if missing:
        shown = ", ".join(f"{k} = {getattr(defaults, k)}" for k in missing)
        out.append(f"[risk] left at the defaults ({shown}): choose these limits for this account")
    if not settings.valr.has_credentials:
        absent = [k for k in ("api_key", "api_secret") if getattr(settings.valr, k) is None]
        out.append(
            f"valr.{' and valr.'.join(absent)} not set: LIVE is refused (gate valr_credentials)"
        )
    return out
