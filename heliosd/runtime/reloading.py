"""SIGHUP on the running daemon: the config file re-read and the drop-ins reloaded
(:func:`heliosd.plugins.reload.reload_config`), swapped into the running registry and router
in one synchronous step, and audited either way."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pluggy

from heliosd import store as st
from heliosd.core.config import Settings
from heliosd.core.errors import ConfigError
from heliosd.plugins.manager import ConfigReload, Registry, reload_config

if TYPE_CHECKING:
    from heliosd.store import Store
    from heliosd.trading.router import ExecutionRouter

log = logging.getLogger(__name__)


async def reload_running(
    pm: pluggy.PluginManager,
    settings: Settings,
    registry: Registry,
    router: ExecutionRouter,
    store: Store,
    *,
    actor: str = "SIGHUP",
) -> ConfigReload:
    """Re-read the config file and reload the drop-ins (SIGHUP); audited either way.

    Nothing changes unless everything loaded: on any error the running rules, gates,
    monitors and settings stay, a ``refused`` audit row is written and a ConfigError
    naming the key and the file propagates. On success the new gates, monitors and risk
    rules decide from the next switch, update and order, and every plugin reads its new
    section from ``settings.plugins``. Core sections are never applied live: the keys
    whose value differs are logged and returned in ``not_applied`` (a restart applies
    them, after the same validation as any start).
    """
    source = settings.source
    try:
        if not isinstance(settings.plugins, dict):
            raise ConfigError("plugin sections of the running settings are read-only")
        result = reload_config(pm, settings)
    except BaseException as exc:
        # A drop-in may even raise SystemExit at import: on a reload that must cost the
        # reload, never the daemon (the previous plugins are back in place by now).
        error = (
            exc
            if isinstance(exc, ConfigError)
            else ConfigError(f"reload failed: {type(exc).__name__}: {exc}", source=source)
        )
        await _audit_reload(store, actor, "refused", str(error),
                            {"file": source, "key": error.key})  # fmt: skip
        if error is exc:
            raise
        raise error from exc
    _apply_reload(settings, registry, router, result)
    for key in result.not_applied:
        log.warning("%s changed in %s; restart heliosd to apply", key, source)
    details = {
        "file": source,
        "dropins": [{"name": r.name, "path": r.path, "sha256": r.sha256}
                    for r in result.dropins],
        "not_applied": list(result.not_applied),
        "risk_rules": [getattr(x, "name", "?") for x in result.registry.risk_rules],
    }  # fmt: skip
    reason = "not applied until a restart: " + ", ".join(result.not_applied)
    await _audit_reload(store, actor, "ok", reason if result.not_applied else "", details)
    return result


def _apply_reload(
    settings: Settings, running: Registry, router: ExecutionRouter, result: ConfigReload
) -> None:
    """Swap in what a reload loaded, in one synchronous step (no await): no order,
    switch or update can see half of it."""
    plugins = settings.plugins
    assert isinstance(plugins, dict)  # checked before the reload began
    # In place, not a new Settings object: the router, engine, gates' and monitors'
    # contexts all hold this one and plugins read their sections from it on each call.
    # Only this mapping changes, so no core value can change with it.
    plugins.clear()
    plugins.update(result.settings.plugins)
    registry = result.registry
    running.gates[:] = registry.gates
    running.monitors[:] = registry.monitors
    running.risk_rules[:] = registry.risk_rules
    router.rules = tuple(registry.risk_rules)


async def _audit_reload(
    store: Store, actor: str, outcome: str, reason: str, details: dict[str, Any]
) -> None:
    try:
        await store.write(
            lambda c: st.audit(
                c, actor=actor, action="reload", outcome=outcome, reason=reason, details=details
            )
        )
    except Exception:
        # The reload's outcome stands (and is logged by the daemon); a lost audit row
        # must not turn an applied reload into a reported failure.
        log.exception("could not write the audit row of a %s reload", outcome)
